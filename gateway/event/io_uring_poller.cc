// The io_uring poller: the same edge-triggered readiness as epoll, from multishot
// IORING_OP_POLL_ADD requests, so that the two kernel interfaces can be measured against each
// other under one dispatcher. Adds and removes are queued in the submission ring and go to
// the kernel with the next wait: no system call of their own, where epoll_ctl costs one each.
//
// It is also an IoRing: AsyncSocket hands it receives and sends (buffers with the request,
// "read into this", instead of "you may read now"), which go to the kernel with the next
// wait too, so a loop turn costs one io_uring_enter however many reads and writes it
// started, where epoll costs one system call per read and per write.

#include "gateway/event/poller.h"

#if SLUICE_HAVE_IO_URING

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sluice::gateway::event {
namespace {

// user_data of requests whose completion means nothing (poll removals, cancellations).
constexpr uint64_t kIgnore = std::numeric_limits<uint64_t>::max();
// Set in the user_data of readiness polls; clear in a Completion's (a user-space pointer,
// whose top bit is 0 on Linux).
constexpr uint64_t kReadinessBit = uint64_t{1} << 63;

class IoUringPoller final : public Poller, public IoRing {
 public:
  IoUringPoller() = default;
  ~IoUringPoller() override {
    if (!initialized_) return;
    DrainOperations();
    io_uring_queue_exit(&ring_);
  }
  IoUringPoller(const IoUringPoller&) = delete;
  IoUringPoller& operator=(const IoUringPoller&) = delete;

  absl::Status Init(unsigned entries) {
    // One thread submits (SINGLE_ISSUER) and the kernel runs completion work only when that
    // thread enters the ring to wait (DEFER_TASKRUN, Linux 6.1+): a completion never
    // interrupts the loop, and a cancel queued before a completion's work is done first, so
    // the kernel does not copy into a buffer whose operation was cancelled. Older kernels
    // (no DEFER_TASKRUN; before 5.13 not even multishot poll) get epoll instead. The ring
    // starts disabled and is enabled on the loop's thread (BindToCurrentThread, or the first
    // wait): the worker is built on another. The completion ring is larger than the
    // submission ring: a busy loop may have more operations in flight than it submits in one
    // turn.
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
    params.cq_entries = entries * 8;
    const int rc = io_uring_queue_init_params(entries, &ring_, &params);
    if (rc == -EINVAL) {
      return absl::UnimplementedError(
          "io_uring without IORING_SETUP_DEFER_TASKRUN (Linux 6.1 or later is needed)");
    }
    if (rc < 0) return absl::ErrnoToStatus(-rc, "io_uring_queue_init");
    initialized_ = true;
    disabled_ = true;
    return absl::OkStatus();
  }

  void BindToCurrentThread() override { (void)Enable(); }

  absl::Status Add(int fd, uint64_t token, uint32_t interest) override {
    if (fd < 0) return absl::InvalidArgumentError("io_uring poller: negative fd");
    const auto index = static_cast<size_t>(fd);
    if (index >= entries_.size()) entries_.resize(std::max(index + 1, entries_.size() * 2));
    Entry& entry = entries_[index];
    if (entry.registered) return absl::AlreadyExistsError(absl::StrCat("fd ", fd, " is polled"));
    entry.token = token;
    entry.mask = POLLRDHUP;
    if ((interest & kIoReadable) != 0) entry.mask |= POLLIN;
    if ((interest & kIoWritable) != 0) entry.mask |= POLLOUT;
    // kIoHangup alone: a socket whose reads and writes go through the IoRing, which only
    // needs to hear that its peer left while nothing reads from it.
    if (!Arm(fd)) return absl::ResourceExhaustedError("io_uring submission ring full");
    entry.registered = true;
    return absl::OkStatus();
  }

  absl::Status Remove(int fd) override {
    const auto index = static_cast<size_t>(fd);
    if (fd < 0 || index >= entries_.size() || !entries_[index].registered) {
      return absl::NotFoundError(absl::StrCat("fd ", fd, " is not polled"));
    }
    Entry& entry = entries_[index];
    entry.registered = false;
    if (!entry.armed) return absl::OkStatus();
    entry.armed = false;
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return absl::ResourceExhaustedError("io_uring submission ring full");
    io_uring_prep_poll_remove(sqe, UserData(fd, entry.sequence));
    io_uring_sqe_set_data64(sqe, kIgnore);
    return absl::OkStatus();
  }

  absl::StatusOr<int> Wait(int timeout_ms, absl::Span<Event> events) override {
    if (absl::Status enabled = Enable(); !enabled.ok()) return enabled;
    io_uring_cqe* cqe = nullptr;
    int rc = 0;
    if (timeout_ms < 0) {
      rc = io_uring_submit_and_wait(&ring_, 1);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
      return absl::ErrnoToStatus(-rc, "io_uring_submit_and_wait");
    }
    ++batch_;
    int count = 0;
    unsigned seen = 0;
    unsigned head = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (count == static_cast<int>(events.size())) break;
      ++seen;
      Reap(*cqe, events, count);
    }
    io_uring_cq_advance(&ring_, seen);
    return count;
  }

  IoRing* ring() override { return this; }

  bool Recv(int fd, char* buffer, size_t size, Completion* completion) override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    ++operations_;
    io_uring_prep_recv(sqe, fd, buffer, size, 0);
    io_uring_sqe_set_data(sqe, completion);
    return true;
  }

  bool SendMsg(int fd, const msghdr* message, Completion* completion) override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    ++operations_;
    io_uring_prep_sendmsg(sqe, fd, message, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, completion);
    return true;
  }

  bool PollOnce(int fd, uint32_t events, Completion* completion) override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    ++operations_;
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data(sqe, completion);
    return true;
  }

  bool Withdraw(Completion* completion) override {
    // The entries queued since the last submission: [sqe_head, sqe_tail).
    bool found = false;
    const uint64_t data = reinterpret_cast<uintptr_t>(completion);
    for (unsigned i = ring_.sq.sqe_head; i != ring_.sq.sqe_tail; ++i) {
      io_uring_sqe* sqe = &ring_.sq.sqes[i & ring_.sq.ring_mask];
      if (sqe->user_data != data) continue;
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, data);
      found = true;
    }
    return found;
  }

  bool CancelOp(Completion* completion) override {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    io_uring_prep_cancel(sqe, completion, 0);
    io_uring_sqe_set_data64(sqe, kIgnore);
    return true;
  }

 private:
  struct Entry {
    uint64_t token = 0;
    uint32_t mask = 0;
    // Bumped on every arming: a completion of an earlier poll request of this fd number
    // (cancelled, or of a previous registration) is recognised and dropped.
    uint32_t sequence = 0;
    bool registered = false;  // between Add and Remove
    bool armed = false;       // a poll request is in the kernel (or queued for it)
    uint64_t batch = 0;       // the last Wait that reported this fd, and at which index
    int slot = 0;
  };

  static uint64_t UserData(int fd, uint32_t sequence) {
    return kReadinessBit | (uint64_t{sequence & 0x7fffffffu} << 32) | static_cast<uint32_t>(fd);
  }

  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      // Full: hand the queued requests to the kernel now rather than fail (enabling the ring
      // first if no wait has yet: this is the loop's thread, the only one that queues).
      (void)Enable();
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  bool Arm(int fd) {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    Entry& entry = entries_[static_cast<size_t>(fd)];
    entry.sequence = (entry.sequence + 1) & 0x7fffffffu;
    entry.armed = true;
    // Multishot without IORING_POLL_ADD_LEVEL is edge-triggered, as EPOLLET.
    io_uring_prep_poll_multishot(sqe, fd, entry.mask);
    io_uring_sqe_set_data64(sqe, UserData(fd, entry.sequence));
    return true;
  }

  // A multishot poll completes once per wake-up of the socket, where epoll coalesces them
  // into one ready entry: merge those of one batch into one event, as epoll does.
  void Emit(Entry& entry, uint32_t bits, absl::Span<Event> events, int& count) {
    if (entry.batch == batch_) {
      events[entry.slot].events |= bits;
      return;
    }
    entry.batch = batch_;
    entry.slot = count;
    events[count++] = Event{entry.token, bits};
  }

  void Reap(const io_uring_cqe& cqe, absl::Span<Event> events, int& count) {
    const uint64_t data = io_uring_cqe_get_data64(&cqe);
    if (data == kIgnore) return;
    if ((data & kReadinessBit) == 0) {
      // A socket's operation (each completes once): the dispatcher hands it to its
      // Completion, in order with the readiness events of this batch.
      --operations_;
      events[count++] = Event{data, kIoCompletion, cqe.res, cqe.flags};
      return;
    }
    const int fd = static_cast<int>(static_cast<uint32_t>(data));
    const auto sequence = static_cast<uint32_t>((data & ~kReadinessBit) >> 32);
    const auto index = static_cast<size_t>(fd);
    if (index >= entries_.size()) return;
    Entry& entry = entries_[index];
    if (!entry.registered || entry.sequence != sequence) return;
    const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
    if (cqe.res < 0) {
      // The poll itself failed (EBADF: closed without Remove): report it once, as an error
      // that the handler sees on its next read or write; do not re-arm.
      entry.armed = false;
      Emit(entry, kIoError | kIoReadable | kIoWritable, events, count);
      return;
    }
    const auto raw = static_cast<uint32_t>(cqe.res);
    uint32_t bits = 0;
    if ((raw & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0) bits |= kIoReadable;
    if ((raw & (POLLOUT | POLLHUP | POLLERR)) != 0) bits |= kIoWritable;
    if ((raw & (POLLRDHUP | POLLHUP)) != 0) bits |= kIoHangup;
    if ((raw & POLLERR) != 0) bits |= kIoError;
    if (bits != 0) Emit(entry, bits, events, count);
    // The kernel ends a multishot poll on its own at times (a full completion ring): arm a
    // new one, which reports at once if the fd is still ready.
    if (!more) Arm(fd);
  }

  void FinishOperations() override { DrainOperations(); }

  // A ring created disabled is enabled by the first thread that waits on it (the loop's),
  // which from then on is the only one that may submit. (The system call itself: Debian's
  // liburing 2.3 declares io_uring_enable_rings but does not export it.)
  absl::Status Enable() {
    if (!disabled_) return absl::OkStatus();
    if (syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) <
        0) {
      return absl::ErrnoToStatus(errno, "io_uring_register(ENABLE_RINGS)");
    }
    disabled_ = false;
    // The ring's fd registered with itself: each io_uring_enter skips the fd table lookup.
    // An optimisation only; ignored if refused.
    (void)io_uring_register_ring_fd(&ring_);
    return absl::OkStatus();
  }

  // At the end of the loop's life, operations still in the kernel belong to sockets that are
  // gone (their RingOps wait for the completion to free themselves): cancel them all and
  // hand each its completion, so that no memory of ours is left to the kernel or leaked.
  // Bounded: a kernel that does not answer within a second is left to the ring's exit. Only
  // the loop's thread may enter a single-issuer ring: elsewhere the first wait fails, and
  // this gives up at once.
  void DrainOperations() {
    // A loop that never ran has its operations still queued: this thread enables the ring.
    if (operations_ == 0 || !Enable().ok()) return;
    if (io_uring_sqe* sqe = GetSqe(); sqe != nullptr) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, kIgnore);
    }
    for (int turn = 0; turn < 100 && operations_ > 0; ++turn) {
      __kernel_timespec ts{.tv_sec = 0, .tv_nsec = 10'000'000};
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR) return;  // -EEXIST: not the loop's thread
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        const uint64_t data = io_uring_cqe_get_data64(cqe);
        if (data == kIgnore || (data & kReadinessBit) != 0) continue;
        --operations_;
        reinterpret_cast<Completion*>(data)->OnComplete(cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

  io_uring ring_{};
  bool initialized_ = false;
  int64_t operations_ = 0;  // sockets' operations submitted and not yet completed
  bool disabled_ = false;   // created disabled: the first Wait enables it
  uint64_t batch_ = 0;
  std::vector<Entry> entries_;  // by fd number
};

}  // namespace

absl::StatusOr<std::unique_ptr<Poller>> CreateIoUringPoller() {
  auto poller = std::make_unique<IoUringPoller>();
  if (absl::Status status = poller->Init(256); !status.ok()) return status;
  return poller;
}

}  // namespace sluice::gateway::event

#else  // !SLUICE_HAVE_IO_URING

namespace sluice::gateway::event {

absl::StatusOr<std::unique_ptr<Poller>> CreateIoUringPoller() {
  return absl::UnimplementedError("built without liburing");
}

}  // namespace sluice::gateway::event

#endif  // SLUICE_HAVE_IO_URING
