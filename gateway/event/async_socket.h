#pragma once
// Awaitable sockets and timers for coroutines on the Dispatcher (see task.h).
//
// An operation tries its system call at once and suspends only when the kernel has said
// EAGAIN (or a short read or write showed the socket drained or full); the next readiness
// edge resumes it. So a request that finds its bytes already there costs the system calls
// and nothing else: no handler object, no allocation, no hop through the loop. Each awaiter
// lives in the awaiting coroutine's frame.
//
// Resumption happens inside the dispatcher's callbacks (an I/O event, a timer) or inside
// Cancel(); a resumed coroutine may destroy the socket or the alarm it was waiting on.
//
// On a dispatcher whose poller has an IoRing (io_uring), a socket makes no system call of
// its own: each read and write is queued in the ring, goes to the kernel with the loop's
// next wait (with every other socket's), and resumes its coroutine when the kernel completes
// it. Cancel() then asks the kernel to cancel, and the operation resumes, with the error,
// when the kernel says it is over: the buffers it was given stay in the kernel's hands until
// that moment, never longer.
#include <sys/uio.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/socket.h"
#include "gateway/event/timer_wheel.h"

namespace sluice::gateway::event {

// A connected (or connecting) non-blocking TCP socket, registered with its dispatcher for
// its whole life. One read and one write may be awaited at a time (a reader and a writer
// coroutine, or one coroutine doing one after the other). Destroying the socket unregisters
// and closes it; no operation may be awaiting then.
class AsyncSocket final : public IoHandler {
 public:
  // Registers `fd`. `connecting`: a ConnectTcp still in progress; Connect() awaits it.
  static absl::StatusOr<std::unique_ptr<AsyncSocket>> Create(Dispatcher& dispatcher, UniqueFd fd,
                                                             bool connecting = false);
  ~AsyncSocket();
  AsyncSocket(const AsyncSocket&) = delete;
  AsyncSocket& operator=(const AsyncSocket&) = delete;

  class ReadAwaiter;
  class WriteAwaiter;
  class ConnectAwaiter;

  // One read of at most `size` bytes: data, kEof, or kError (ECANCELED, ETIMEDOUT after a
  // Cancel; the socket's errno otherwise). Never kAgain.
  ReadAwaiter Read(char* buffer, size_t size);
  // Writes all of `data` (then `more`), waiting for room as needed: kData with every byte
  // written, or kError. The bytes must stay put until it completes.
  WriteAwaiter Write(absl::string_view data, absl::string_view more = {});
  // The outcome of the connect in progress (OK at once if there was none).
  ConnectAwaiter Connect();

  // Ends the awaited operations: each completes with kError `error` (a connect with an error
  // status), at once with epoll, and with the ring once the kernel has let go of the
  // operation (a later turn of the loop). The socket stays usable: a request's read timeout
  // cancels the read and the client can still be answered 408. Returns whether anything
  // was waiting.
  bool Cancel(int error);

  int fd() const { return fd_.get(); }
  // The peer shut its side or the connection failed (seen as a hang-up event).
  bool hung_up() const { return hung_up_; }
  // Nothing has arrived since the last read drained the socket (it came back short or said
  // EAGAIN), and the peer has not hung up: no readiness edge since. A pooled connection in
  // this state needs no system call to tell that its upstream has neither closed it nor
  // written to it unasked. With the ring, only after ReadAhead(): until its read completes.
  bool quiet() const { return !readable_ && !hung_up_; }
  // Whether reads and writes go through the ring. Then a socket that is not quiet() has
  // been read from already (ReadAhead): a peek would not see what came.
  bool uses_ring() const { return ring_ops_ != nullptr; }
  // For a connection going idle (a pool): with the ring, starts the next read now, into a
  // buffer of the socket's own, so that whatever the peer sends or a close ends it and
  // quiet() turns false, as epoll's readiness would say; the next Read() takes its bytes.
  // No system call: it goes to the kernel with the loop's next wait. Nothing with epoll.
  void ReadAhead();
  // Calls `callback` at the next hang-up event (once; an empty callback stops watching):
  // how a proxy learns that its client left while nothing reads from it. It runs inside the
  // socket's event handling, before any waiting operation resumes, so it must not destroy
  // the socket (arm a timer to act later).
  void WatchHangup(TimerCallback callback) { on_hangup_ = callback; }

  void OnReadable() override;
  void OnWritable() override;
  void OnHangup(bool error) override;

  class ReadAwaiter {
   public:
    bool await_ready() { return socket_.TryRead(*this); }
    void await_suspend(std::coroutine_handle<> waiting) {
      waiting_ = waiting;
      socket_.reader_ = this;
    }
    IoResult await_resume() const { return result_; }

   private:
    friend class AsyncSocket;
    ReadAwaiter(AsyncSocket& socket, char* buffer, size_t size)
        : socket_(socket), buffer_(buffer), size_(size) {}
    AsyncSocket& socket_;
    char* buffer_;
    size_t size_;
    IoResult result_;
    std::coroutine_handle<> waiting_;
  };

  class WriteAwaiter {
   public:
    bool await_ready() { return socket_.TryWrite(*this); }
    void await_suspend(std::coroutine_handle<> waiting) {
      waiting_ = waiting;
      socket_.writer_ = this;
    }
    IoResult await_resume() const { return result_; }

   private:
    friend class AsyncSocket;
    WriteAwaiter(AsyncSocket& socket, absl::string_view first, absl::string_view second)
        : socket_(socket), pieces_{first, second} {}
    // What is left to write, as at most two buffers in `out`; returns how many.
    int Unwritten(iovec out[2]) const;
    AsyncSocket& socket_;
    absl::string_view pieces_[2];
    size_t written_ = 0;  // of both pieces together
    IoResult result_;
    std::coroutine_handle<> waiting_;
  };

  class ConnectAwaiter {
   public:
    bool await_ready() const { return !socket_.connecting_; }
    // False (do not suspend) when the ring has no room for the wait: status() says so.
    bool await_suspend(std::coroutine_handle<> waiting) {
      waiting_ = waiting;
      socket_.connector_ = this;
      return socket_.WaitForConnect();
    }
    absl::Status await_resume() const { return status_; }

   private:
    friend class AsyncSocket;
    explicit ConnectAwaiter(AsyncSocket& socket)
        : socket_(socket), status_(socket.connect_status_) {}
    AsyncSocket& socket_;
    absl::Status status_;
    std::coroutine_handle<> waiting_;
  };

 private:
  AsyncSocket(Dispatcher& dispatcher, UniqueFd fd, bool connecting)
      : dispatcher_(dispatcher), fd_(std::move(fd)), connecting_(connecting) {}

  // Try the operation now: true when it is complete (result set), false to wait. With the
  // ring, queue it there (false), unless the ring is full (true, with an error).
  bool TryRead(ReadAwaiter& read);
  bool TryWrite(WriteAwaiter& write);
  // With the ring, queues the poll that tells when a non-blocking connect is over; false
  // (the connect failed with ENOBUFS) when the ring has no room. True with epoll.
  bool WaitForConnect();

  // The socket's operations in the ring (ring mode only). Heap-allocated because it may
  // outlive the socket: a socket destroyed with an operation in the kernel hands it over,
  // and it deletes itself at that operation's completion.
  class RingOps;
  friend class RingOps;
  enum class RingOp : uint8_t { kRead, kWrite, kConnect };
  bool QueueRead(ReadAwaiter& read);
  bool QueueWrite(WriteAwaiter& write);
  // The ring's answer for operation `op`: `result` as the system call's (or -errno), or the
  // error of a Cancel() (`cancel_error` nonzero).
  void OnRingComplete(RingOp op, int32_t result, int cancel_error);

  Dispatcher& dispatcher_;
  UniqueFd fd_;
  bool connecting_;
  absl::Status connect_status_;  // how the connect ended, for a Connect() awaited after
  bool hung_up_ = false;
  // What the kernel last said: false once a read (write) said EAGAIN or came back short, true
  // again at the next readable (writable) edge.
  bool readable_ = true;
  bool writable_ = true;
  ReadAwaiter* reader_ = nullptr;
  WriteAwaiter* writer_ = nullptr;
  ConnectAwaiter* connector_ = nullptr;
  TimerCallback on_hangup_;
  RingOps* ring_ops_ = nullptr;
  // ReadAhead's read: in the kernel (`ahead_active_`), or done with `ahead_result_`, whose
  // bytes from `ahead_offset_` on are the next Read()'s (`ahead_ready_`).
  bool ahead_active_ = false;
  bool ahead_ready_ = false;
  IoResult ahead_result_;
  size_t ahead_offset_ = 0;
  // Serves `read` from ReadAhead's result.
  void TakeAhead(ReadAwaiter& read);
};

// A timer a coroutine can wait on, and that something else can cut short: a fault's delay,
// a retry's back-off. Embedded in its owner; nothing is allocated.
class Alarm {
 public:
  explicit Alarm(TimerWheel& wheel) : timer_(wheel) {}
  ~Alarm() { timer_.Cancel(); }
  Alarm(const Alarm&) = delete;
  Alarm& operator=(const Alarm&) = delete;

  class WaitAwaiter {
   public:
    bool await_ready() const { return alarm_.duration_ <= MonotonicDuration::zero(); }
    void await_suspend(std::coroutine_handle<> waiting) {
      alarm_.waiting_ = waiting;
      alarm_.fired_ = false;
      alarm_.timer_.ArmAfter(alarm_.duration_, TimerCallback::Bind<&Alarm::OnTimer>(&alarm_));
    }
    // True when the time ran out; false when Cancel() cut it short.
    bool await_resume() const {
      return alarm_.duration_ <= MonotonicDuration::zero() || alarm_.fired_;
    }

   private:
    friend class Alarm;
    explicit WaitAwaiter(Alarm& alarm) : alarm_(alarm) {}
    Alarm& alarm_;
  };

  // Waits `duration` from the wheel's current time (a zero or negative one does not wait).
  WaitAwaiter WaitFor(MonotonicDuration duration) {
    duration_ = duration;
    return WaitAwaiter(*this);
  }
  // Resumes the waiting coroutine now (its wait returns false). Returns whether one waited.
  bool Cancel();
  // Ends the wait at the next turn of the loop, not inside the caller (as Cancel does): for
  // a caller that must not have the waiting coroutine run on its stack. The wait returns
  // true. Nothing happens when nobody waits.
  void WakeSoon();
  bool waiting() const { return static_cast<bool>(waiting_); }

 private:
  void OnTimer();

  Timer timer_;
  MonotonicDuration duration_{};
  bool fired_ = false;
  std::coroutine_handle<> waiting_;
};

}  // namespace sluice::gateway::event
