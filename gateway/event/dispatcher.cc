#include "gateway/event/dispatcher.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::gateway::event {
namespace {

// The longest single wait: a sleeping loop with no timer still wakes once a day, which
// keeps the millisecond arithmetic far from int overflow.
constexpr int kMaxWaitMs = 24 * 60 * 60 * 1000;

uint64_t Token(int fd, uint32_t generation) {
  return (uint64_t{generation} << 32) | static_cast<uint32_t>(fd);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dispatcher>> Dispatcher::Create(TimeSource& time_source,
                                                               std::unique_ptr<Poller> poller) {
  if (poller == nullptr) {
    absl::StatusOr<std::unique_ptr<Poller>> epoll = CreateEpollPoller();
    if (!epoll.ok()) return epoll.status();
    poller = *std::move(epoll);
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return absl::ErrnoToStatus(errno, "eventfd");
  // The constructor is private, hence no make_unique. The dispatcher owns wake_fd from here.
  std::unique_ptr<Dispatcher> dispatcher(new Dispatcher(time_source, std::move(poller), wake_fd));
  if (absl::Status status =
          dispatcher->RegisterFd(wake_fd, &dispatcher->wake_handler_, kIoReadable);
      !status.ok()) {
    return status;
  }
  return dispatcher;
}

Dispatcher::Dispatcher(TimeSource& time_source, std::unique_ptr<Poller> poller, int wake_fd)
    : time_source_(time_source),
      poller_(std::move(poller)),
      wake_fd_(wake_fd),
      wake_handler_(wake_fd),
      now_(time_source.Now()),
      timers_(now_) {}

Dispatcher::~Dispatcher() {
  RunDeferredDeletes();
  close(wake_fd_);
}

absl::Status Dispatcher::RegisterFd(int fd, IoHandler* handler, uint32_t interest) {
  // kIoHangup alone: a socket whose reads and writes go through the ring.
  if (fd < 0 || handler == nullptr || interest == 0 ||
      ((interest & ~kReadWrite) != 0 && interest != kIoHangup)) {
    return absl::InvalidArgumentError(absl::StrCat("RegisterFd(", fd, "): bad arguments"));
  }
  const auto index = static_cast<size_t>(fd);
  if (index >= registrations_.size()) {
    // Grows with the highest fd number, so at most a few times in a worker's life.
    registrations_.resize(std::max(index + 1, registrations_.size() * 2));
  }
  Registration& registration = registrations_[index];
  if (registration.handler != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("fd ", fd, " is already registered"));
  }
  const uint32_t generation = registration.generation + 1;
  if (absl::Status status = poller_->Add(fd, Token(fd, generation), interest); !status.ok()) {
    return status;
  }
  registration = Registration{handler, interest, generation};
  return absl::OkStatus();
}

absl::Status Dispatcher::Unregister(int fd) {
  const auto index = static_cast<size_t>(fd);
  if (fd < 0 || index >= registrations_.size() || registrations_[index].handler == nullptr) {
    return absl::NotFoundError(absl::StrCat("fd ", fd, " is not registered"));
  }
  Registration& registration = registrations_[index];
  registration.handler = nullptr;
  // Events of this batch still carry the old generation: Dispatch() drops them.
  ++registration.generation;
  return poller_->Remove(fd);
}

void Dispatcher::Post(absl::AnyInvocable<void()> callback) {
  bool wake = false;
  {
    MutexLock lock(&mutex_);
    posted_.push_back(std::move(callback));
    // Only the first poster after the loop went to sleep writes the eventfd; a loop that is
    // awake sees posted_ before it next waits.
    wake = sleeping_;
    sleeping_ = false;
    if (wake) ++wake_writes_;
  }
  if (wake) Wake();
}

void Dispatcher::Exit() {
  bool wake = false;
  {
    MutexLock lock(&mutex_);
    exit_requested_ = true;
    wake = sleeping_;
    sleeping_ = false;
    if (wake) ++wake_writes_;
  }
  if (wake) Wake();
}

void Dispatcher::Wake() {
  const uint64_t one = 1;
  // Cannot fail but for a counter at 2^64 - 1; EINTR does not occur on a non-blocking fd.
  [[maybe_unused]] ssize_t written = write(wake_fd_, &one, sizeof(one));
}

void Dispatcher::WakeHandler::OnReadable() {
  uint64_t count = 0;
  // Resets the counter. EAGAIN (a wake-up written after this iteration's wait returned, and
  // read by an earlier call) is harmless.
  [[maybe_unused]] ssize_t read_bytes = read(fd_, &count, sizeof(count));
}

void Dispatcher::Run() {
  while (Iterate(/*max_wait_ms=*/-1, /*stop_on_exit=*/true)) {
  }
}

void Dispatcher::RunOnce(std::chrono::milliseconds max_wait) {
  const auto ms = std::clamp<int64_t>(max_wait.count(), 0, kMaxWaitMs);
  Iterate(static_cast<int>(ms), /*stop_on_exit=*/false);
}

Dispatcher::Stats Dispatcher::stats() const {
  MutexLock lock(&mutex_);
  return Stats{iterations_, wake_writes_};
}

bool Dispatcher::Iterate(int max_wait_ms, bool stop_on_exit) {
  int wait_ms = TimeoutMs(max_wait_ms);
  {
    MutexLock lock(&mutex_);
    if (exit_requested_ && stop_on_exit) {
      exit_requested_ = false;
      return false;
    }
    if (!posted_.empty() || exit_requested_) wait_ms = 0;
    // Set under the same lock that Post() takes, so a post either is seen here or finds
    // sleeping_ set and writes the eventfd: no lost wake-up.
    sleeping_ = wait_ms != 0;
    ++iterations_;
  }
  absl::StatusOr<int> ready = poller_->Wait(wait_ms, absl::MakeSpan(events_));
  if (wait_ms != 0) {
    MutexLock lock(&mutex_);
    sleeping_ = false;
  }
  if (!ready.ok()) {
    // EBADF, EFAULT, EINVAL: a broken loop cannot serve anything; crash loudly, as Envoy's
    // RELEASE_ASSERT does, rather than spin.
    std::fprintf(stderr, "sluice event loop: %s\n", ready.status().ToString().c_str());
    std::abort();
  }
  now_ = time_source_.Now();
  // Timers first, so that the wheel's time is this wake-up's before any handler arms a
  // timer relative to it.
  timers_.Advance(now_);
  for (int i = 0; i < *ready; ++i) Dispatch(events_[i]);
  RunPosted();
  RunDeferredDeletes();
  return true;
}

int Dispatcher::TimeoutMs(int max_wait_ms) const {
  const std::optional<MonotonicTime> next = timers_.NextDeadline();
  if (!next.has_value()) return max_wait_ms < 0 ? kMaxWaitMs : max_wait_ms;
  if (*next <= now_) return 0;
  // Rounded up: waking a little late costs nothing, waking early costs an empty iteration.
  const auto until = std::chrono::ceil<std::chrono::milliseconds>(*next - now_).count();
  const int timer_ms = static_cast<int>(std::min<int64_t>(until, kMaxWaitMs));
  return max_wait_ms < 0 ? timer_ms : std::min(timer_ms, max_wait_ms);
}

bool Dispatcher::Current(int fd, uint32_t generation) const {
  const auto index = static_cast<size_t>(fd);
  return index < registrations_.size() && registrations_[index].handler != nullptr &&
         registrations_[index].generation == generation;
}

void Dispatcher::Dispatch(const Poller::Event& event) {
  if ((event.events & kIoCompletion) != 0) {
    // Alive until its operation completes, whatever started it (see Completion).
    reinterpret_cast<Completion*>(event.token)->OnComplete(event.result, event.flags);
    return;
  }
  const int fd = static_cast<int>(static_cast<uint32_t>(event.token));
  const auto generation = static_cast<uint32_t>(event.token >> 32);
  // Each handler call may unregister the fd (or register a new fd under the same number):
  // check again before the next one. The vector may have grown, so no reference is kept.
  if (!Current(fd, generation)) return;
  const uint32_t interest = registrations_[fd].interest;
  if ((event.events & (kIoHangup | kIoError)) != 0) {
    registrations_[fd].handler->OnHangup((event.events & kIoError) != 0);
    if (!Current(fd, generation)) return;
  }
  if ((event.events & interest & kIoReadable) != 0) {
    registrations_[fd].handler->OnReadable();
    if (!Current(fd, generation)) return;
  }
  if ((event.events & interest & kIoWritable) != 0) registrations_[fd].handler->OnWritable();
}

void Dispatcher::RunPosted() {
  {
    MutexLock lock(&mutex_);
    if (posted_.empty()) return;
    running_.swap(posted_);
  }
  // Callbacks posted by these run in the next iteration, which then does not block.
  for (absl::AnyInvocable<void()>& callback : running_) callback();
  running_.clear();
}

void Dispatcher::RunDeferredDeletes() {
  // A destructor may defer more deletions: index, and copy each entry before the call, as
  // push_back may reallocate.
  for (size_t i = 0; i < deferred_.size(); ++i) {
    const DeferredObject entry = deferred_[i];
    entry.destroy(entry.object);
  }
  deferred_.clear();
}

}  // namespace sluice::gateway::event
