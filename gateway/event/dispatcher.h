#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gateway/event/poller.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "lib/common/mutex.h"

namespace sluice::gateway::event {

// Receives the readiness of one registered fd. Edge-triggered: each call reports a change,
// so a handler reads (or writes) until the kernel says EAGAIN or a read comes back short,
// or remembers that the fd is still ready. The handler may unregister its fd, close it and
// hand itself to Dispatcher::DeferredDelete from any of these calls; the dispatcher then
// calls nothing more for that registration.
class IoHandler {
 public:
  // Data arrived, or a read will not block: EOF after the peer's FIN, or a pending error.
  virtual void OnReadable() = 0;
  // Room to write, or a write will not block because of an error. The first call after
  // a non-blocking connect means the connect finished: check ConnectResult(fd).
  virtual void OnWritable() = 0;
  // The peer shut down its write side (EPOLLRDHUP), the connection hung up, or, if `error`,
  // an error is pending. Called before OnReadable/OnWritable of the same wake-up, so that a
  // handler whose reading is paused (back-pressure) still learns that its client left.
  // The default ignores it: the next read reports EOF or the error anyway.
  virtual void OnHangup(bool error) { (void)error; }

 protected:
  ~IoHandler() = default;
};

// One event loop per worker thread, in the manner of Envoy's and h2o's: edge-triggered
// readiness from a Poller (epoll), the worker's TimerWheel, callbacks posted from other
// threads, and deferred deletion. Everything except Post() and Exit() is for the loop's own
// thread.
//
// One iteration: wait (one system call), read the clock once (Now() is that value for the
// whole iteration), fire due timers, run I/O handlers, run posted callbacks, then delete
// what was handed to DeferredDelete.
class Dispatcher {
 public:
  // The registration's interest: what the handler may ever want. An fd is registered once
  // for its life; there is no per-request change of interest.
  static constexpr uint32_t kReadWrite = kIoReadable | kIoWritable;

  struct Stats {
    uint64_t iterations = 0;   // loop iterations (poller waits)
    uint64_t wake_writes = 0;  // eventfd writes by Post/Exit: only when the loop slept
  };

  // `poller` defaults to epoll. `time_source` must outlive the dispatcher.
  static absl::StatusOr<std::unique_ptr<Dispatcher>> Create(
      TimeSource& time_source, std::unique_ptr<Poller> poller = nullptr);
  // Runs pending deferred deletions; posted callbacks that never ran are destroyed unrun.
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Calls `handler` for events on `fd` (non-blocking) until Unregister(fd). `interest` is
  // kIoReadable, kIoWritable or both, or kIoHangup alone (hang-ups and errors only). The handler
  // must stay alive until then.
  absl::Status RegisterFd(int fd, IoHandler* handler, uint32_t interest = kReadWrite);
  // Stops events for `fd`, including those already collected in the running iteration.
  // Call it before closing the fd.
  absl::Status Unregister(int fd);

  // Runs `callback` on the loop thread in its next iteration (or this one's posted-callback
  // step, if it has not started yet). Thread-safe. Wakes the loop only if it is asleep.
  void Post(absl::AnyInvocable<void()> callback) ABSL_LOCKS_EXCLUDED(mutex_);

  // Deletes `object` at the end of this loop iteration, after every callback has returned:
  // a connection may destroy itself from inside its own handler. Loop thread only.
  template <typename T>
  void DeferredDelete(std::unique_ptr<T> object) {
    if (object == nullptr) return;
    deferred_.push_back(
        DeferredObject{object.release(), [](void* p) { delete static_cast<T*>(p); }});
  }

  // The poller's completion ring, when it has one (io_uring): AsyncSocket then submits its
  // reads and writes there. Null with epoll.
  IoRing* ring() { return poller_->ring(); }
  // At the end of the loop's life, on its thread, once its sockets are destroyed: the ring's
  // operations that outlived their sockets are cancelled and finished, so none is left to
  // the kernel or leaked (the destructor does it too, when it runs on the loop's thread).
  void FinishOperations() { poller_->FinishOperations(); }
  // Makes the calling thread the loop's: with io_uring, the one thread that may queue and
  // submit. Call it first on the thread that will Run() the loop.
  void BindToCurrentThread() { poller_->BindToCurrentThread(); }

  // The worker's timers. ArmAfter counts from the time of this iteration's wake-up.
  TimerWheel& timers() { return timers_; }
  // The monotonic time read once at this iteration's wake-up (Envoy's approximate time,
  // HAProxy's now_ms): a request's timers and latencies cost no clock read each.
  MonotonicTime Now() const { return now_; }
  TimeSource& time_source() { return time_source_; }

  // Loops until Exit(). Returns at once if Exit() was called since the last Run().
  void Run();
  // Stops Run() at the end of its current iteration. Thread-safe.
  void Exit() ABSL_LOCKS_EXCLUDED(mutex_);
  // One iteration that waits at most `max_wait` for events (less if a timer is due
  // sooner, none if a callback is posted). For tests and for embedding in another loop.
  // Must not be called from inside a callback of this dispatcher.
  void RunOnce(std::chrono::milliseconds max_wait);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  struct Registration {
    IoHandler* handler = nullptr;
    uint32_t interest = 0;
    // Bumped on every Register and Unregister of the fd number, and part of the poller
    // token, so an event collected for an earlier registration of the same number is stale.
    uint32_t generation = 0;
  };
  struct DeferredObject {
    void* object;
    void (*destroy)(void*);
  };
  // Reads the wake-up eventfd.
  class WakeHandler final : public IoHandler {
   public:
    explicit WakeHandler(int fd) : fd_(fd) {}
    void OnReadable() override;
    void OnWritable() override {}

   private:
    int fd_;
  };

  Dispatcher(TimeSource& time_source, std::unique_ptr<Poller> poller, int wake_fd);

  // One loop iteration; `max_wait_ms` -1 means no limit but the timers'. With
  // `stop_on_exit`, a pending Exit() is consumed instead: returns false without iterating.
  bool Iterate(int max_wait_ms, bool stop_on_exit) ABSL_LOCKS_EXCLUDED(mutex_);
  int TimeoutMs(int max_wait_ms) const;
  void Dispatch(const Poller::Event& event);
  bool Current(int fd, uint32_t generation) const;
  void RunPosted() ABSL_LOCKS_EXCLUDED(mutex_);
  void RunDeferredDeletes();
  void Wake();

  TimeSource& time_source_;
  std::unique_ptr<Poller> poller_;
  const int wake_fd_;
  WakeHandler wake_handler_;
  MonotonicTime now_;
  TimerWheel timers_;
  std::vector<Registration> registrations_;  // by fd number
  std::array<Poller::Event, 256> events_;
  std::vector<DeferredObject> deferred_;
  // Swapped with posted_ under the lock, so both keep their capacity: no allocation per post
  // in the steady state.
  std::vector<absl::AnyInvocable<void()>> running_;

  mutable Mutex mutex_;
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(mutex_);
  // The loop is (about to be) blocked in the poller and nobody has written the eventfd yet.
  bool sleeping_ ABSL_GUARDED_BY(mutex_) = false;
  bool exit_requested_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t wake_writes_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t iterations_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace sluice::gateway::event
