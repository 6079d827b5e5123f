#include "gateway/observability/access_log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

int OpenForAppend(const std::string& path) {
  // fopen(path, "a")'s mode, without stdio's buffer: the flusher writes large
  // pieces.
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
}

}  // namespace

void AccessLogWriter::Buffer::Append(absl::string_view lines) {
  bool reached = false;
  {
    MutexLock lock(&mu_);
    const size_t before = lines_.size();
    lines_.append(lines.data(), lines.size());
    const size_t limit = writer_->options_.flush_bytes;
    reached = before < limit && lines_.size() >= limit;
  }
  // Once per filling: the flusher empties the buffer before it can cross the
  // limit again.
  if (reached) writer_->Wake();
}

std::unique_ptr<AccessLogWriter> AccessLogWriter::Open(const std::string& path, int buffers,
                                                       const AccessLogWriterOptions& options,
                                                       std::string* error) {
  int fd = STDOUT_FILENO;
  if (path != "-") {
    fd = OpenForAppend(path);
    if (fd < 0) {
      *error = absl::StrCat("cannot open access log ", path, ": ", std::strerror(errno));
      return nullptr;
    }
  }
  return std::unique_ptr<AccessLogWriter>(new AccessLogWriter(path, fd, buffers, options));
}

AccessLogWriter::AccessLogWriter(std::string path, int fd, int buffers,
                                 const AccessLogWriterOptions& options)
    : path_(std::move(path)), options_(options), fd_(fd) {
  for (int i = 0; i < buffers; ++i) buffers_.push_back(std::unique_ptr<Buffer>(new Buffer(this)));
  flusher_ = std::thread([this] { Run(); });
}

AccessLogWriter::~AccessLogWriter() {
  Stop();
  if (path_ != "-") ::close(fd_);
}

void AccessLogWriter::Wake() {
  MutexLock lock(&mu_);
  wake_ = true;
  work_.Signal();
}

void AccessLogWriter::Reopen() {
  MutexLock lock(&mu_);
  reopen_ = true;
  work_.Signal();
}

void AccessLogWriter::Flush() {
  MutexLock lock(&mu_);
  const uint64_t target = ++flush_requested_;
  work_.Signal();
  // Until a cycle that began after the request has ended, or no cycle will come.
  while (flushed_ < target && !stopped_) cycle_done_.Wait(&mu_);
}

void AccessLogWriter::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    work_.Signal();
  }
  if (flusher_.joinable()) flusher_.join();
}

bool AccessLogWriter::HasWork() const {
  return wake_ || reopen_ || stop_ || flush_requested_ != flushed_;
}

void AccessLogWriter::Run() {
  // Cycles start at least every flush_interval, counted on the steady clock from the start
  // of the previous one.
  auto cycle_start = std::chrono::steady_clock::now();
  for (;;) {
    bool reopen = false, stop = false;
    uint64_t generation = 0;
    {
      MutexLock lock(&mu_);
      while (!HasWork()) {
        const absl::Duration left =
            options_.flush_interval -
            absl::FromChrono(std::chrono::steady_clock::now() - cycle_start);
        if (left <= absl::ZeroDuration()) break;
        work_.WaitWithTimeout(&mu_, left);
      }
      reopen = std::exchange(reopen_, false);
      wake_ = false;
      stop = stop_;
      generation = flush_requested_;
    }
    cycle_start = std::chrono::steady_clock::now();
    WriteBuffers();
    if (reopen) ReopenFile();
    MutexLock lock(&mu_);
    flushed_ = generation;
    // The Flush() calls whose request this cycle took in return; the others wait on (for
    // the next cycle, or stopped_).
    cycle_done_.SignalAll();
    if (stop) {
      stopped_ = true;
      return;
    }
  }
}

void AccessLogWriter::WriteBuffers() {
  for (const auto& buffer : buffers_) {
    {
      MutexLock lock(&buffer->mu_);
      buffer->lines_.swap(buffer->writing_);
    }
    if (buffer->writing_.empty()) continue;
    WriteAll(buffer->writing_);
    buffer->writing_.clear();  // keeps its capacity for the next swap
  }
}

void AccessLogWriter::WriteAll(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!write_failed_) {
        std::fprintf(stderr, "sluice-gateway: access log %s: write failed: %s\n", path_.c_str(),
                     n < 0 ? std::strerror(errno) : "nothing written");
      }
      write_failed_ = true;
      return;  // these lines are lost; the next flush tries again
    }
    done += static_cast<size_t>(n);
  }
  write_failed_ = false;
}

void AccessLogWriter::ReopenFile() {
  if (path_ == "-") return;
  const int fd = OpenForAppend(path_);
  if (fd < 0) {
    // Keep writing to the file we have rather than lose lines.
    std::fprintf(stderr, "sluice-gateway: cannot reopen access log %s: %s\n", path_.c_str(),
                 std::strerror(errno));
    return;
  }
  ::close(fd_);
  fd_ = fd;
}

}  // namespace sluice::gateway
