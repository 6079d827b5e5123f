#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/common/mutex.h"

namespace sluice::gateway {

struct AccessLogWriterOptions {
  // Every buffer is written at least this often (Envoy's
  // file_flush_interval_msec, 1s).
  absl::Duration flush_interval = absl::Seconds(1);
  // A buffer that reaches this size is written without waiting for the interval
  // (Envoy flushes at its buffer size too).
  size_t flush_bytes = 64 * 1024;
};

// The access log as Envoy's AccessLogFileImpl writes it: lines are appended to
// memory and a flusher thread writes them. Each worker appends to its own
// buffer (no lock shared between workers); only the flusher touches the file,
// so a slow disk or a full stdout pipe holds up the flusher and nothing else.
// Lines are written whole; lines of different workers are grouped by worker
// within each flush.
class AccessLogWriter {
 public:
  // One worker's lines.
  class Buffer {
   public:
    // Appends whole lines (each ending with '\n'). Takes this buffer's mutex
    // only, which the flusher holds just long enough to swap the buffer out.
    void Append(absl::string_view lines);

   private:
    friend class AccessLogWriter;
    explicit Buffer(AccessLogWriter* writer) : writer_(writer) {}

    AccessLogWriter* const writer_;
    Mutex mu_;
    std::string lines_ ABSL_GUARDED_BY(mu_);
    std::string writing_;  // the flusher's: lines swapped out of `lines_`,
                           // being written
  };

  // Opens `path` for appending ("-" is stdout) with `buffers` buffers (one per
  // worker) and starts the flusher. Null with `error` set when the file cannot
  // be opened.
  static std::unique_ptr<AccessLogWriter> Open(const std::string& path, int buffers,
                                               const AccessLogWriterOptions& options,
                                               std::string* error);
  // Stop().
  ~AccessLogWriter();

  // Worker `index`'s buffer, 0 <= index < buffers.
  Buffer& ForWorker(int index) { return *buffers_[index]; }

  // Asks the flusher to reopen the file at the same path (SIGUSR1 after
  // logrotate renamed it): what was appended until it gets to it goes to the
  // old file, later lines to the new one. Returns at once. Nothing to do for
  // stdout.
  void Reopen();
  // Writes everything appended so far (and does a pending Reopen) on the
  // flusher; returns once it is written.
  void Flush();
  // Writes what is left and ends the flusher. Lines appended afterwards are not
  // written.
  void Stop();

 private:
  AccessLogWriter(std::string path, int fd, int buffers, const AccessLogWriterOptions& options);
  void Wake();  // a buffer reached `flush_bytes`
  // Something for the flusher to do before its interval is up.
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run();
  // The flusher's: every buffer to the file, then the reopen when asked.
  void WriteBuffers();
  void WriteAll(const std::string& data);
  void ReopenFile();

  const std::string path_;
  const AccessLogWriterOptions options_;
  int fd_;                     // the flusher's (and Open's and the destructor's)
  bool write_failed_ = false;  // the flusher's: the last write failed (reported once)
  std::vector<std::unique_ptr<Buffer>> buffers_;

  Mutex mu_;            // never held while writing
  CondVar work_;        // the flusher waits for HasWork() (or its interval)
  CondVar cycle_done_;  // Flush() waits for flushed_ (or stopped_)
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool reopen_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // the flusher has ended
  uint64_t flush_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flushed_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread flusher_;
};

}  // namespace sluice::gateway
