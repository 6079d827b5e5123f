#include "gateway/observability/access_log_writer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

namespace fs = std::filesystem;
using ::testing::IsEmpty;

constexpr absl::Duration kNever = absl::Hours(1);  // no timed flush within a test

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Polls until `path` holds `want` (bounded), and returns what it holds.
std::string WaitForContents(const std::string& path, const std::string& want) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  std::string got = ReadFile(path);
  while (got != want && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(2));
    got = ReadFile(path);
  }
  return got;
}

class AccessLogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/access_log_writer_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/access.log";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<AccessLogWriter> Open(int buffers, absl::Duration interval,
                                        size_t flush_bytes = 64 * 1024) {
    AccessLogWriterOptions options;
    options.flush_interval = interval;
    options.flush_bytes = flush_bytes;
    std::string error;
    auto writer = AccessLogWriter::Open(path_, buffers, options, &error);
    EXPECT_NE(writer, nullptr) << error;
    return writer;
  }

  std::string dir_, path_;
};

TEST_F(AccessLogWriterTest, LinesFromEveryWorkerLandWhole) {
  constexpr int kWorkers = 4, kLines = 5000;
  // Small buffers and a short interval: flushes run all along while the workers
  // append.
  auto writer = Open(kWorkers, absl::Milliseconds(1), 512);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      for (int i = 0; i < kLines; ++i) {
        writer->ForWorker(w).Append(
            absl::StrCat("worker=", w, " line=", i, " ", std::string(i % 97, 'x'), "\n"));
      }
    });
  }
  for (auto& t : workers) t.join();
  writer->Stop();

  const std::string log = ReadFile(path_);
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.back(), '\n');
  std::set<std::string> seen;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    seen.insert(std::string(line));
  }
  std::set<std::string> expected;
  for (int w = 0; w < kWorkers; ++w) {
    for (int i = 0; i < kLines; ++i) {
      expected.insert(absl::StrCat("worker=", w, " line=", i, " ", std::string(i % 97, 'x')));
    }
  }
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_TRUE(seen == expected) << "a line was lost, cut or mixed with another";
}

TEST_F(AccessLogWriterTest, NothingIsWrittenBeforeTheIntervalUnlessFlushed) {
  auto writer = Open(2, kNever);
  writer->ForWorker(0).Append("a\n");
  writer->ForWorker(1).Append("b\n");
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_THAT(ReadFile(path_), IsEmpty()) << "written on the worker's call";
  writer->Flush();
  EXPECT_EQ(ReadFile(path_), "a\nb\n");
}

TEST_F(AccessLogWriterTest, WritesEveryInterval) {
  auto writer = Open(1, absl::Milliseconds(20));
  writer->ForWorker(0).Append("first\n");
  EXPECT_EQ(WaitForContents(path_, "first\n"), "first\n");
  writer->ForWorker(0).Append("second\n");
  EXPECT_EQ(WaitForContents(path_, "first\nsecond\n"), "first\nsecond\n");
}

TEST_F(AccessLogWriterTest, WritesABufferThatReachesItsSize) {
  auto writer = Open(2, kNever, 100);
  const std::string line = std::string(59, 'x') + "\n";
  writer->ForWorker(1).Append(line);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_THAT(ReadFile(path_), IsEmpty()) << "below the size";
  writer->ForWorker(1).Append(line);  // 120 bytes
  EXPECT_EQ(WaitForContents(path_, line + line), line + line);
}

TEST_F(AccessLogWriterTest, ReopenAfterRenameWritesToTheNewFile) {
  auto writer = Open(1, kNever);
  writer->ForWorker(0).Append("before\n");
  const std::string rotated = path_ + ".1";
  fs::rename(path_, rotated);  // logrotate without copytruncate, then SIGUSR1
  writer->Reopen();
  writer->Flush();
  writer->ForWorker(0).Append("after\n");
  writer->Flush();
  EXPECT_EQ(ReadFile(rotated), "before\n") << "lines of before the signal stay in the old file";
  EXPECT_EQ(ReadFile(path_), "after\n");
}

TEST_F(AccessLogWriterTest, AFailedReopenKeepsTheOldFile) {
  auto writer = Open(1, kNever);
  const std::string rotated = path_ + ".1";
  fs::rename(path_, rotated);
  fs::create_directory(path_);  // cannot be opened for writing
  writer->Reopen();
  writer->ForWorker(0).Append("kept\n");
  writer->Flush();
  writer->ForWorker(0).Append("still\n");
  writer->Flush();
  EXPECT_EQ(ReadFile(rotated), "kept\nstill\n");
}

TEST_F(AccessLogWriterTest, StopWritesTheRest) {
  auto writer = Open(3, kNever);
  writer->ForWorker(0).Append("zero\n");
  writer->ForWorker(2).Append("two\n");
  writer->Stop();
  EXPECT_EQ(ReadFile(path_), "zero\ntwo\n");
  writer->Flush();  // returns: nothing left to write it
  writer->Stop();
}

TEST_F(AccessLogWriterTest, AStuckFileNeverBlocksAWorker) {
  // A FIFO nobody reads: once its 64 KiB are full, every write to it blocks, as
  // on a stuck disk or a full stdout pipe.
  ASSERT_EQ(mkfifo(path_.c_str(), 0600), 0);
  const int reader = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  auto writer = Open(1, absl::Milliseconds(1), 4096);
  const std::string line = std::string(1023, 'y') + "\n";
  auto appends = std::async(std::launch::async, [&] {
    for (int i = 0; i < 4096; ++i) writer->ForWorker(0).Append(line);  // 4 MiB
  });
  const bool returned = appends.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  EXPECT_TRUE(returned) << "a worker waited for the file";
  // Drain the FIFO so that the flusher (and a blocked worker) can finish.
  std::atomic<bool> done{false};
  std::thread drain([&] {
    char sink[65536];
    while (!done.load()) {
      if (::read(reader, sink, sizeof(sink)) <= 0) absl::SleepFor(absl::Milliseconds(1));
    }
  });
  appends.wait();
  writer->Stop();
  done = true;
  drain.join();
  ::close(reader);
}

TEST(AccessLogWriterStdoutTest, DashWritesToStdout) {
  ::testing::internal::CaptureStdout();
  std::string error;
  auto writer = AccessLogWriter::Open("-", 1, AccessLogWriterOptions{}, &error);
  ASSERT_NE(writer, nullptr) << error;
  writer->ForWorker(0).Append("to stdout\n");
  writer->Stop();
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "to stdout\n");
}

}  // namespace
}  // namespace sluice::gateway
