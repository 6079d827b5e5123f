#include "server/store/snapshot_cell.h"

#include <atomic>
#include <new>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::store {
namespace {

std::shared_ptr<const routing::Snapshot> Version(uint64_t v) {
  return *routing::CompileSnapshot(config::ConfigSet{}, v);
}

TEST(SnapshotCell, ReadersSeeEveryStoreInOrderAndEndOnTheLast) {
  SnapshotCell cell;
  cell.Store(Version(1));
  constexpr uint64_t kLast = 2000;
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  std::atomic<int> regressions{0};
  std::atomic<int> saw_last{0};
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      uint64_t previous = 0;
      while (true) {
        const bool finished = done.load();
        const uint64_t v = cell.Load()->version();
        if (v < previous) ++regressions;
        previous = v;
        if (finished) {
          if (v == kLast) ++saw_last;
          return;
        }
      }
    });
  }
  for (uint64_t v = 2; v <= kLast; ++v) cell.Store(Version(v));
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(regressions.load(), 0);
  EXPECT_EQ(saw_last.load(), 3);
}

TEST(SnapshotCell, TwoCellsOnOneThreadDoNotShareTheCache) {
  SnapshotCell a, b;
  a.Store(Version(10));
  b.Store(Version(20));
  EXPECT_EQ(a.Load()->version(), 10u);
  EXPECT_EQ(b.Load()->version(), 20u);
  EXPECT_EQ(a.Load()->version(), 10u);
}

TEST(SnapshotCell, ANewCellWhereADeadOneWasIsNotServedItsCache) {
  // Same storage, same number of stores: only the cell's identity tells them apart.
  alignas(SnapshotCell) unsigned char storage[sizeof(SnapshotCell)];
  auto* first = new (storage) SnapshotCell;
  first->Store(Version(7));
  ASSERT_EQ(first->Load()->version(), 7u);
  first->~SnapshotCell();
  auto* second = new (storage) SnapshotCell;
  second->Store(Version(1));
  EXPECT_EQ(second->Load()->version(), 1u);
  second->~SnapshotCell();
}

}  // namespace
}  // namespace sluice::store
