#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sluice::gateway::event {

// Readiness bits, the same for every Poller implementation.
enum IoEvent : uint32_t {
  kIoReadable = 1u << 0,  // data, or a read that will not block (EOF, pending error)
  kIoWritable = 1u << 1,  // room to write, or a write that will not block (error)
  kIoHangup = 1u << 2,    // the peer shut down its write side, or the connection hung up
  kIoError = 1u << 3,     // an error is pending on the socket (SO_ERROR)
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
    uint64_t token;   // as given to Add
    uint32_t events;  // IoEvent bits
  };

  virtual ~Poller() = default;

  // Watches `fd` for `interest` (kIoReadable and/or kIoWritable; hang-ups and errors are
  // always reported) and reports its events with `token`.
  virtual absl::Status Add(int fd, uint64_t token, uint32_t interest) = 0;
  virtual absl::Status Remove(int fd) = 0;
  // Waits up to `timeout_ms` (-1: no limit, 0: do not block) for events; fills `events` and
  // returns how many. EINTR returns 0.
  virtual absl::StatusOr<int> Wait(int timeout_ms, absl::Span<Event> events) = 0;
};

// The epoll poller: EPOLLET with EPOLLRDHUP, one epoll_wait per loop iteration.
absl::StatusOr<std::unique_ptr<Poller>> CreateEpollPoller();

// The io_uring poller, for comparison: multishot IORING_OP_POLL_ADD (edge-triggered), adds
// and removes batched into the next wait's io_uring_enter. UNIMPLEMENTED when built without
// liburing; the kernel may also refuse io_uring (a seccomp filter, kernel.io_uring_disabled).
absl::StatusOr<std::unique_ptr<Poller>> CreateIoUringPoller();

}  // namespace sluice::gateway::event
