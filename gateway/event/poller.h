#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

struct msghdr;

namespace sluice::gateway::event {

// Readiness bits, the same for every Poller implementation.
enum IoEvent : uint32_t {
  kIoReadable = 1u << 0,  // data, or a read that will not block (EOF, pending error)
  kIoWritable = 1u << 1,  // room to write, or a write that will not block (error)
  kIoHangup = 1u << 2,    // the peer shut down its write side, or the connection hung up
  kIoError = 1u << 3,     // an error is pending on the socket (SO_ERROR)
  // Not readiness: an operation submitted through the IoRing finished (see Event).
  kIoCompletion = 1u << 4,
};

// An operation handed to the kernel through an IoRing (a receive, a send, a one-shot poll):
// told its outcome when the kernel completes it. It must stay alive until then, even if
// what started it is gone.
class Completion {
 public:
  // `result`: the operation's return value (bytes, or -errno); `flags`: the completion's
  // flags (IORING_CQE_F_*).
  virtual void OnComplete(int32_t result, uint32_t flags) = 0;

 protected:
  ~Completion() = default;
};

// The submission side of a completion-based poller (io_uring): operations queued here go
// to the kernel with the loop's next wait, in the same system call, however many there are.
class IoRing {
 public:
  virtual ~IoRing() = default;
  // Queues recv(2) of at most `size` bytes into `buffer`.
  virtual bool Recv(int fd, char* buffer, size_t size, Completion* completion) = 0;
  // Queues sendmsg(2) of `message` (MSG_NOSIGNAL); `message` and what it points to must stay
  // put until the completion.
  virtual bool SendMsg(int fd, const struct msghdr* message, Completion* completion) = 0;
  // Queues a one-shot poll(2) for `events` (POLLOUT: a non-blocking connect's end).
  virtual bool PollOnce(int fd, uint32_t events, Completion* completion) = 0;
  // Asks the kernel to cancel the operation of `completion` (which then completes, with
  // -ECANCELED or its real outcome if that came first).
  virtual bool CancelOp(Completion* completion) = 0;
  // Turns the operations of `completion` still queued here (not yet handed to the kernel)
  // into no-ops, which complete with 0 and touch neither the fd nor the buffer they named.
  // Returns whether there was one.
  virtual bool Withdraw(Completion* completion) = 0;
  // Each returns false when the submission ring is full even after handing it to the kernel.
};

// The one interface between the dispatcher and the kernel's readiness API, so that an
// io_uring poller can be measured against epoll without touching the dispatcher or its
// handlers. Edge-triggered: an fd is added once for its life with the events it may ever
// want, and each becomes ready again only after the handler drained it (read or wrote until
// the kernel said EAGAIN, or saw a short read/write). No per-request change of interest, so
// no per-request system call here. Used by one thread.
class Poller {
 public:
  struct Event {
    uint64_t token;      // as given to Add; a Completion* with kIoCompletion
    uint32_t events;     // IoEvent bits
    int32_t result = 0;  // kIoCompletion only: the operation's result and flags
    uint32_t flags = 0;
  };

  virtual ~Poller() = default;

  // Watches `fd` for `interest` (kIoReadable and/or kIoWritable, or kIoHangup alone; hang-ups
  // and errors are always reported) and reports its events with `token`.
  virtual absl::Status Add(int fd, uint64_t token, uint32_t interest) = 0;
  virtual absl::Status Remove(int fd) = 0;
  // Waits up to `timeout_ms` (-1: no limit, 0: do not block) for events; fills `events` and
  // returns how many. EINTR returns 0.
  virtual absl::StatusOr<int> Wait(int timeout_ms, absl::Span<Event> events) = 0;
  // The completion-based side, when the poller has one (io_uring): sockets then hand their
  // reads and writes to the kernel instead of making the system calls themselves.
  virtual IoRing* ring() { return nullptr; }
  // Cancels what sockets left in the kernel and waits (briefly) for it to be over; on the
  // loop's thread, once the sockets are gone. Nothing to do for epoll.
  virtual void FinishOperations() {}
  // Makes the calling thread the loop's (io_uring: the only one that may submit). Called
  // first thing on a worker's thread; the first wait does it otherwise.
  virtual void BindToCurrentThread() {}
};

// The epoll poller: EPOLLET with EPOLLRDHUP, one epoll_wait per loop iteration.
absl::StatusOr<std::unique_ptr<Poller>> CreateEpollPoller();

// The io_uring poller: multishot IORING_OP_POLL_ADD for readiness (edge-triggered), adds
// and removes batched into the next wait's io_uring_enter, and an IoRing for sockets' reads
// and writes. UNIMPLEMENTED when built without
// liburing; the kernel may also refuse io_uring (a seccomp filter, kernel.io_uring_disabled).
absl::StatusOr<std::unique_ptr<Poller>> CreateIoUringPoller();

}  // namespace sluice::gateway::event
