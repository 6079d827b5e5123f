#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "gateway/event/poller.h"

namespace sluice::gateway::event {
namespace {

class EpollPoller final : public Poller {
 public:
  explicit EpollPoller(int epoll_fd) : epoll_fd_(epoll_fd) {}
  ~EpollPoller() override { close(epoll_fd_); }
  EpollPoller(const EpollPoller&) = delete;
  EpollPoller& operator=(const EpollPoller&) = delete;

  absl::Status Add(int fd, uint64_t token, uint32_t interest) override {
    epoll_event event{};
    event.events = EPOLLET | EPOLLRDHUP;
    if ((interest & kIoReadable) != 0) event.events |= EPOLLIN;
    if ((interest & kIoWritable) != 0) event.events |= EPOLLOUT;
    event.data.u64 = token;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl(ADD, ", fd, ")"));
    }
    return absl::OkStatus();
  }

  absl::Status Remove(int fd) override {
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl(DEL, ", fd, ")"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> Wait(int timeout_ms, absl::Span<Event> events) override {
    const int capacity = static_cast<int>(std::min(events.size(), raw_.size()));
    const int n = epoll_wait(epoll_fd_, raw_.data(), capacity, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return 0;
      return absl::ErrnoToStatus(errno, "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const uint32_t raw = raw_[i].events;
      uint32_t bits = 0;
      // A hang-up or error makes both directions non-blocking: the handler's next read or
      // write reports it (EOF, ECONNRESET, a failed connect).
      if ((raw & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) bits |= kIoReadable;
      if ((raw & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) bits |= kIoWritable;
      if ((raw & (EPOLLRDHUP | EPOLLHUP)) != 0) bits |= kIoHangup;
      if ((raw & EPOLLERR) != 0) bits |= kIoError;
      events[i] = Event{raw_[i].data.u64, bits};
    }
    return n;
  }

 private:
  const int epoll_fd_;
  std::array<epoll_event, 256> raw_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Poller>> CreateEpollPoller() {
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "epoll_create1");
  return std::make_unique<EpollPoller>(fd);
}

}  // namespace sluice::gateway::event
