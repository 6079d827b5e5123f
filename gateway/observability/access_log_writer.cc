#include "gateway/observability/access_log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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
    absl::MutexLock lock(&mu_);
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
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void AccessLogWriter::Reopen() {
  absl::MutexLock lock(&mu_);
  reopen_ = true;
}

void AccessLogWriter::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = ++flush_requested_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // A cycle that began after the request has ended, or no cycle will come.
    return flushed_ >= target || stopped_;
  };
  mu_.Await(absl::Condition(&done));
}

void AccessLogWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (flusher_.joinable()) flusher_.join();
}

void AccessLogWriter::Run() {
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return wake_ || reopen_ || stop_ || flush_requested_ != flushed_;
  };
  absl::Time next = absl::Now() + options_.flush_interval;
  for (;;) {
    bool reopen = false, stop = false;
    uint64_t generation = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(&has_work), next);
      reopen = std::exchange(reopen_, false);
      wake_ = false;
      stop = stop_;
      generation = flush_requested_;
    }
    next = absl::Now() + options_.flush_interval;
    WriteBuffers();
    if (reopen) ReopenFile();
    absl::MutexLock lock(&mu_);
    flushed_ = generation;
    if (stop) {
      stopped_ = true;
      return;
    }
  }
}

void AccessLogWriter::WriteBuffers() {
  for (const auto& buffer : buffers_) {
    {
      absl::MutexLock lock(&buffer->mu_);
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
