#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sluice::gateway::event {

// Owns a file descriptor and closes it when destroyed. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the fd held, if any, and holds `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An IPv4 or IPv6 socket address.
class SocketAddress {
 public:
  // `host` is an IP literal ("10.0.0.1", "::1", "[::1]"): no name resolution on this path.
  static absl::StatusOr<SocketAddress> Parse(absl::string_view host, uint16_t port);
  static SocketAddress FromSockaddr(const sockaddr* address, socklen_t length);

  SocketAddress() = default;
  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  int family() const { return storage_.ss_family; }
  uint16_t port() const;
  // "10.0.0.1", "::1".
  std::string Host() const;
  // "10.0.0.1:80", "[::1]:80".
  std::string ToString() const;

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

struct ListenSocket {
  UniqueFd fd;
  uint16_t port = 0;  // the bound port: the kernel's pick when 0 was asked for
};

// A non-blocking, close-on-exec TCP listener on an IP literal, with SO_REUSEADDR and, if
// `reuse_port`, SO_REUSEPORT (one listener per worker, the kernel spreading connections).
// TCP_NODELAY is set on the listener: Linux copies it to accepted sockets, which saves a
// setsockopt per connection.
absl::StatusOr<ListenSocket> ListenTcp(absl::string_view host, uint16_t port, bool reuse_port,
                                       int backlog);

// Accepts every pending connection with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until the
// kernel says EAGAIN, passing each to `on_accept`. Returns OK once drained. Returns
// RESOURCE_EXHAUSTED on EMFILE/ENFILE (and ENOBUFS/ENOMEM): the connections left in the
// backlog are not reported again by an edge-triggered poller, and retrying at once would
// spin (as the old core did at 100% CPU), so the caller stops accepting and retries from a
// back-off timer. Connections aborted before accept (ECONNABORTED, EPROTO, network errors)
// are skipped. Other errors are returned as they are.
absl::Status AcceptAll(int listen_fd,
                       absl::FunctionRef<void(UniqueFd fd, const SocketAddress& peer)> on_accept);

struct ConnectingSocket {
  UniqueFd fd;
  // True while the connect is in progress: it completes (or fails) with the first
  // writable event; ConnectResult() then tells which.
  bool in_progress = false;
};

// Starts a non-blocking TCP connect with TCP_NODELAY to an IP literal. An error the kernel
// knows at once (no route, or a refusal on loopback) is returned here.
absl::StatusOr<ConnectingSocket> ConnectTcp(absl::string_view address, uint16_t port);
absl::StatusOr<ConnectingSocket> ConnectTcp(const SocketAddress& address);
// The outcome of a non-blocking connect, from SO_ERROR, after the first writable event.
absl::Status ConnectResult(int fd);

// The outcome of one read or write, without errno games or exceptions.
struct IoResult {
  enum class Kind : uint8_t {
    kData,   // `bytes` moved (for a write, possibly fewer than offered)
    kAgain,  // EAGAIN: wait for the next edge
    kEof,    // read only: the peer shut down its write side
    kError,  // `error` holds the errno (ECONNRESET, EPIPE, ...)
  };
  Kind kind = Kind::kData;
  size_t bytes = 0;
  int error = 0;

  bool data() const { return kind == Kind::kData; }
  // For logs; allocates, so not for the common path.
  absl::Status ToStatus(absl::string_view operation) const;
};

// One read(2). A read that returns fewer bytes than `length` drained the socket's receive
// queue at that moment: an edge-triggered caller may stop there without the extra read
// that would only say EAGAIN (a new edge comes when more data arrives). Zero `length`
// returns kData with 0 bytes and makes no system call.
IoResult ReadSome(int fd, void* buffer, size_t length);

// One gathering write: sendmsg(2) with MSG_NOSIGNAL, which is writev(2) that raises EPIPE
// instead of SIGPIPE when the peer has gone. At most IOV_MAX buffers are taken per call.
IoResult WriteSome(int fd, absl::Span<const iovec> buffers);
IoResult WriteSome(int fd, const void* data, size_t length);

// The connected peer's address (getpeername).
absl::StatusOr<SocketAddress> PeerAddress(int fd);
// The socket's own address (getsockname).
absl::StatusOr<SocketAddress> LocalAddress(int fd);

}  // namespace sluice::gateway::event
