#include "gateway/event/socket.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::gateway::event {
namespace {

absl::Status SetIntOption(int fd, int level, int name, int value, absl::string_view what) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("setsockopt(", what, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

void UniqueFd::reset(int fd) {
  // close(2) releases the fd even when it reports EINTR: never retry it.
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

absl::StatusOr<SocketAddress> SocketAddress::Parse(absl::string_view host, uint16_t port) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string text(host);
  SocketAddress address;
  sockaddr_in v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&address.storage_, &v4, sizeof(v4));
    address.length_ = sizeof(v4);
    return address;
  }
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&address.storage_, &v6, sizeof(v6));
    address.length_ = sizeof(v6);
    return address;
  }
  return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"", host, "\""));
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* address, socklen_t length) {
  SocketAddress result;
  result.length_ = std::min<socklen_t>(length, sizeof(result.storage_));
  std::memcpy(&result.storage_, address, result.length_);
  return result;
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::Host() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
              sizeof(text));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}

std::string SocketAddress::ToString() const {
  if (family() == AF_INET6) return absl::StrCat("[", Host(), "]:", port());
  return absl::StrCat(Host(), ":", port());
}

absl::StatusOr<ListenSocket> ListenTcp(absl::string_view host, uint16_t port, bool reuse_port,
                                       int backlog) {
  absl::StatusOr<SocketAddress> address = SocketAddress::Parse(host, port);
  if (!address.ok()) return address.status();
  UniqueFd fd(socket(address->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  // Restarting must not wait for TIME_WAIT sockets of the last run to expire.
  if (absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
      !s.ok()) {
    return s;
  }
  if (reuse_port) {
    if (absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = SetIntOption(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
      !s.ok()) {
    return s;
  }
  if (bind(fd.get(), address->sockaddr_ptr(), address->length()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", address->ToString()));
  }
  if (listen(fd.get(), backlog) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen ", address->ToString()));
  }
  absl::StatusOr<SocketAddress> bound = LocalAddress(fd.get());
  if (!bound.ok()) return bound.status();
  return ListenSocket{std::move(fd), bound->port()};
}

absl::Status AcceptAll(int listen_fd,
                       absl::FunctionRef<void(UniqueFd fd, const SocketAddress& peer)> on_accept) {
  for (;;) {
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof(peer);
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      on_accept(UniqueFd(fd),
                SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&peer), peer_length));
      continue;
    }
    const int error = errno;
    switch (error) {
      case EAGAIN:
        return absl::OkStatus();
      case EINTR:
      // accept(2): Linux passes pending network errors of the new connection to accept;
      // the listener itself is fine.
      case ECONNABORTED:
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
      case EPERM:  // a firewall rule refused it
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        return absl::ResourceExhaustedError(absl::StrCat("accept4: ", std::strerror(error),
                                                         error == EMFILE ? " (EMFILE)" : "",
                                                         error == ENFILE ? " (ENFILE)" : ""));
      default:
        return absl::ErrnoToStatus(error, "accept4");
    }
  }
}

absl::StatusOr<ConnectingSocket> ConnectTcp(absl::string_view address, uint16_t port) {
  absl::StatusOr<SocketAddress> parsed = SocketAddress::Parse(address, port);
  if (!parsed.ok()) return parsed.status();
  return ConnectTcp(*parsed);
}

absl::StatusOr<ConnectingSocket> ConnectTcp(const SocketAddress& address) {
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  // Requests and responses are written whole with one writev: Nagle would only delay them.
  if (absl::Status s = SetIntOption(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
      !s.ok()) {
    return s;
  }
  if (connect(fd.get(), address.sockaddr_ptr(), address.length()) == 0) {
    return ConnectingSocket{std::move(fd), false};
  }
  // EINTR on a non-blocking connect: the connect goes on asynchronously, like EINPROGRESS.
  if (errno == EINPROGRESS || errno == EINTR) return ConnectingSocket{std::move(fd), true};
  return absl::ErrnoToStatus(errno, absl::StrCat("connect ", address.ToString()));
}

absl::Status ConnectResult(int fd) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
    return absl::ErrnoToStatus(errno, "getsockopt(SO_ERROR)");
  }
  if (error != 0) return absl::ErrnoToStatus(error, "connect");
  return absl::OkStatus();
}

absl::Status IoResult::ToStatus(absl::string_view operation) const {
  switch (kind) {
    case Kind::kData:
      return absl::OkStatus();
    case Kind::kAgain:
      return absl::UnavailableError(absl::StrCat(operation, ": would block"));
    case Kind::kEof:
      return absl::UnavailableError(absl::StrCat(operation, ": end of stream"));
    case Kind::kError:
      break;
  }
  return absl::ErrnoToStatus(error, operation);
}

IoResult ReadSome(int fd, void* buffer, size_t length) {
  if (length == 0) return IoResult{};
  for (;;) {
    const ssize_t n = read(fd, buffer, length);
    if (n > 0) return IoResult{IoResult::Kind::kData, static_cast<size_t>(n), 0};
    if (n == 0) return IoResult{IoResult::Kind::kEof, 0, 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return IoResult{IoResult::Kind::kAgain, 0, 0};
    return IoResult{IoResult::Kind::kError, 0, errno};
  }
}

IoResult WriteSome(int fd, absl::Span<const iovec> buffers) {
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(buffers.data());
  message.msg_iovlen = std::min<size_t>(buffers.size(), IOV_MAX);
  for (;;) {
    const ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n >= 0) return IoResult{IoResult::Kind::kData, static_cast<size_t>(n), 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return IoResult{IoResult::Kind::kAgain, 0, 0};
    return IoResult{IoResult::Kind::kError, 0, errno};
  }
}

IoResult WriteSome(int fd, const void* data, size_t length) {
  const iovec buffer{const_cast<void*>(data), length};
  return WriteSome(fd, absl::MakeConstSpan(&buffer, 1));
}

absl::StatusOr<SocketAddress> PeerAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return absl::ErrnoToStatus(errno, "getpeername");
  }
  return SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

absl::StatusOr<SocketAddress> LocalAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  return SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

}  // namespace sluice::gateway::event
