#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/routing/snapshot.h"

namespace sluice::store {

// Holds the current snapshot. Readers take no lock on the common path: each thread keeps the
// snapshot it read last, with its version, and only goes to the mutex when the published
// version has moved on. libstdc++'s atomic<shared_ptr> (and atomic_load) would take a
// hashed spinlock on every read.
class SnapshotCell {
 public:
  SnapshotCell() : id_(NextId()) {}
  SnapshotCell(const SnapshotCell&) = delete;
  SnapshotCell& operator=(const SnapshotCell&) = delete;

  std::shared_ptr<const routing::Snapshot> Load() const {
    thread_local Cache cache;
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    if (cache.owner == id_ && cache.generation == generation) return cache.snapshot;
    absl::MutexLock lock(&mu_);
    cache.owner = id_;
    cache.generation = generation_.load(std::memory_order_relaxed);
    cache.snapshot = snapshot_;
    return cache.snapshot;
  }

  void Store(std::shared_ptr<const routing::Snapshot> snapshot) {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(snapshot);
    generation_.fetch_add(1, std::memory_order_release);
  }

 private:
  // Cells are told apart by an id, never reused: a new cell at a dead one's address must
  // not be served the dead one's cached snapshot.
  static uint64_t NextId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  struct Cache {
    uint64_t owner = 0;
    uint64_t generation = 0;
    std::shared_ptr<const routing::Snapshot> snapshot;
  };

  // Bumped after every Store, under the mutex; a reader that sees the new value and takes the
  // mutex finds the new snapshot. Starts at 1 so an empty cache never matches.
  const uint64_t id_;
  std::atomic<uint64_t> generation_{1};
  mutable absl::Mutex mu_;
  std::shared_ptr<const routing::Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::store
