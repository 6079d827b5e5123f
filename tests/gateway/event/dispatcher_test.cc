#include "gateway/event/dispatcher.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gateway/event/socket.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/mutex.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SLUICE_RUNNING_ON_VALGRIND() RUNNING_ON_VALGRIND
#else
#define SLUICE_RUNNING_ON_VALGRIND() 0
#endif

namespace sluice::gateway::event {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;

// Every wait in these tests is bounded: a broken loop fails the test instead of hanging it.
constexpr milliseconds kWait = milliseconds(5000);

struct Pair {
  UniqueFd a, b;
};

Pair MakePair() {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return Pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void WriteByte(int fd) { ASSERT_TRUE(WriteSome(fd, "x", 1).data()); }

// Reads until EAGAIN or EOF; returns the bytes read.
size_t Drain(int fd) {
  char buffer[65536];
  size_t total = 0;
  for (;;) {
    const IoResult r = ReadSome(fd, buffer, sizeof(buffer));
    if (!r.data()) return total;
    total += r.bytes;
  }
}

class RecordingHandler final : public IoHandler {
 public:
  void OnReadable() override {
    ++readable;
    if (on_readable) on_readable();
  }
  void OnWritable() override {
    ++writable;
    if (on_writable) on_writable();
  }
  void OnHangup(bool error) override {
    ++hangups;
    hangup_error = error;
  }

  int readable = 0;
  int writable = 0;
  int hangups = 0;
  bool hangup_error = false;
  std::function<void()> on_readable;
  std::function<void()> on_writable;
};

// Every dispatcher test runs on each poller: the handlers' contract is the same.
class DispatcherTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::unique_ptr<Poller> poller;
    if (GetParam() == "io_uring") {
      // Valgrind holds its thread lock across io_uring_enter (unlike epoll_wait), so a loop
      // thread waiting there starves every other thread.
      if (SLUICE_RUNNING_ON_VALGRIND()) GTEST_SKIP() << "io_uring under valgrind";
      absl::StatusOr<std::unique_ptr<Poller>> uring = CreateIoUringPoller();
      if (!uring.ok()) GTEST_SKIP() << "io_uring unavailable: " << uring.status();
      poller = *std::move(uring);
    }
    absl::StatusOr<std::unique_ptr<Dispatcher>> d = Dispatcher::Create(clock_, std::move(poller));
    ASSERT_TRUE(d.ok()) << d.status();
    dispatcher_ = *std::move(d);
  }

  // Runs iterations until `done` or kWait of real time passed.
  void RunUntil(const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + kWait;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      dispatcher_->RunOnce(milliseconds(100));
    }
  }

  void WaitForFirstIteration() {
    const auto give_up = std::chrono::steady_clock::now() + kWait;
    while (dispatcher_->stats().iterations == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
  }

  RealTimeSource clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_P(DispatcherTest, ReadableIsEdgeTriggered) {
  Pair p = MakePair();
  RecordingHandler h;
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h, kIoReadable).ok());
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(h.readable, 0);

  WriteByte(p.b.get());
  RunUntil([&] { return h.readable == 1; });
  EXPECT_EQ(h.readable, 1);
  // Unread data is not reported again: edge, not level.
  dispatcher_->RunOnce(milliseconds(0));
  dispatcher_->RunOnce(milliseconds(10));
  EXPECT_EQ(h.readable, 1);
  // New data is a new edge.
  WriteByte(p.b.get());
  RunUntil([&] { return h.readable == 2; });
  EXPECT_EQ(h.readable, 2);
  EXPECT_EQ(Drain(p.a.get()), 2u);
  EXPECT_EQ(h.writable, 0);  // read-only interest: no writable calls
  EXPECT_EQ(h.hangups, 0);
  ASSERT_TRUE(dispatcher_->Unregister(p.a.get()).ok());
}

TEST_P(DispatcherTest, WritableEdgeAfterTheBufferDrains) {
  Pair p = MakePair();
  RecordingHandler h;
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h).ok());
  RunUntil([&] { return h.writable == 1; });  // an fresh socket is writable
  EXPECT_EQ(h.writable, 1);
  dispatcher_->RunOnce(milliseconds(10));
  EXPECT_EQ(h.writable, 1);

  // Fill the socket until the kernel says EAGAIN.
  const std::string chunk(16384, 'z');
  size_t written = 0;
  for (;;) {
    const IoResult r = WriteSome(p.a.get(), chunk.data(), chunk.size());
    if (r.kind == IoResult::Kind::kAgain) break;
    ASSERT_TRUE(r.data());
    written += r.bytes;
  }
  dispatcher_->RunOnce(milliseconds(10));
  EXPECT_EQ(h.writable, 1);
  // The peer reads everything: room again, a new edge. (At least one: io_uring may report
  // each wake-up of the socket as its own edge where epoll coalesces them.)
  size_t read = 0;
  RunUntil([&] {
    read += Drain(p.b.get());
    return h.writable >= 2;
  });
  EXPECT_GE(h.writable, 2);
  read += Drain(p.b.get());
  EXPECT_EQ(read, written);
  ASSERT_TRUE(dispatcher_->Unregister(p.a.get()).ok());
}

TEST_P(DispatcherTest, PeerCloseIsHangupThenReadableEof) {
  Pair p = MakePair();
  RecordingHandler h;
  IoResult last;
  h.on_readable = [&] {
    // OnHangup came first in the same wake-up.
    EXPECT_EQ(h.hangups, 1);
    char c;
    last = ReadSome(p.a.get(), &c, 1);
  };
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h, kIoReadable).ok());
  p.b.reset();
  RunUntil([&] { return h.readable == 1; });
  EXPECT_EQ(h.hangups, 1);
  EXPECT_FALSE(h.hangup_error);
  EXPECT_EQ(last.kind, IoResult::Kind::kEof);
  ASSERT_TRUE(dispatcher_->Unregister(p.a.get()).ok());
}

// A connection that owns its fd and destroys itself from its own read callback, as a
// session does when its client leaves.
class SelfDeletingConnection final : public IoHandler {
 public:
  SelfDeletingConnection(Dispatcher& dispatcher, UniqueFd fd, bool* destroyed,
                         std::unique_ptr<SelfDeletingConnection>* owner)
      : dispatcher_(dispatcher), fd_(std::move(fd)), destroyed_(destroyed), owner_(owner) {}
  ~SelfDeletingConnection() {
    *destroyed_ = true;
    // Deferring from a destructor that runs in the deferred step: deleted in the same step.
    dispatcher_.DeferredDelete(std::move(trailer));
  }

  void OnReadable() override {
    EXPECT_TRUE(dispatcher_.Unregister(fd_.get()).ok());
    dispatcher_.DeferredDelete(std::move(*owner_));
    // Still alive until the iteration ends: touching members is fine (ASan would object).
    ++calls_after_delete_;
    EXPECT_FALSE(*destroyed_);
    idle_.Cancel();
  }
  void OnWritable() override { ADD_FAILURE() << "unregistered in OnReadable"; }

  struct Trailer {
    bool* destroyed = nullptr;
    ~Trailer() { *destroyed = true; }
  };
  std::unique_ptr<Trailer> trailer;

 private:
  Dispatcher& dispatcher_;
  UniqueFd fd_;
  bool* destroyed_;
  std::unique_ptr<SelfDeletingConnection>* owner_;
  int calls_after_delete_ = 0;
  Timer idle_{dispatcher_.timers()};
};

TEST_P(DispatcherTest, HandlerDeletesItselfViaDeferredDelete) {
  Pair p = MakePair();
  bool destroyed = false;
  bool trailer_destroyed = false;
  const int fd = p.a.get();
  std::unique_ptr<SelfDeletingConnection> connection;
  connection = std::make_unique<SelfDeletingConnection>(*dispatcher_, std::move(p.a), &destroyed,
                                                        &connection);
  connection->trailer = std::make_unique<SelfDeletingConnection::Trailer>();
  connection->trailer->destroyed = &trailer_destroyed;
  ASSERT_TRUE(dispatcher_->RegisterFd(fd, connection.get()).ok());
  WriteByte(p.b.get());
  RunUntil([&] { return destroyed; });
  EXPECT_TRUE(destroyed);
  EXPECT_TRUE(trailer_destroyed);
  EXPECT_EQ(connection, nullptr);
}

TEST_P(DispatcherTest, EventsOfAnFdUnregisteredInTheSameBatchAreDropped) {
  Pair first = MakePair();
  Pair second = MakePair();
  RecordingHandler h1, h2, h3;
  Pair reused;
  int closed_fd = -1;
  // Whichever of the two runs first unregisters and closes the other, then opens a new
  // socket that takes the closed fd's number and registers a third handler on it.
  auto kill_other = [&](Pair& other, RecordingHandler& self) {
    return [&] {
      if (closed_fd >= 0) return;
      closed_fd = other.a.get();
      EXPECT_TRUE(dispatcher_->Unregister(closed_fd).ok());
      other.a.reset();
      other.b.reset();
      reused = MakePair();
      EXPECT_TRUE(dispatcher_->RegisterFd(reused.a.get(), &h3).ok());
      WriteByte(reused.b.get());
      (void)self;
    };
  };
  h1.on_readable = kill_other(second, h1);
  h2.on_readable = kill_other(first, h2);
  ASSERT_TRUE(dispatcher_->RegisterFd(first.a.get(), &h1, kIoReadable).ok());
  ASSERT_TRUE(dispatcher_->RegisterFd(second.a.get(), &h2, kIoReadable).ok());
  // Both readable before the loop waits: one epoll_wait returns both events.
  WriteByte(first.b.get());
  WriteByte(second.b.get());
  dispatcher_->RunOnce(kWait);
  EXPECT_EQ(h1.readable + h2.readable, 1);
  // The stale event of the closed fd did not reach the new registration of its number.
  EXPECT_EQ(reused.a.get(), closed_fd);
  EXPECT_EQ(h3.readable, 0);
  EXPECT_EQ(h3.writable, 0);
  RunUntil([&] { return h3.readable == 1; });
  EXPECT_EQ(h3.readable, 1);
  EXPECT_EQ(h1.readable + h2.readable, 1);
}

TEST_P(DispatcherTest, UnregisterFromOnReadableSuppressesOnWritableOfTheSameEvent) {
  Pair p = MakePair();
  RecordingHandler h;
  h.on_readable = [&] { EXPECT_TRUE(dispatcher_->Unregister(p.a.get()).ok()); };
  WriteByte(p.b.get());  // readable and writable in the first event
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h).ok());
  dispatcher_->RunOnce(kWait);
  EXPECT_EQ(h.readable, 1);
  EXPECT_EQ(h.writable, 0);
}

TEST_P(DispatcherTest, RegistrationErrors) {
  Pair p = MakePair();
  RecordingHandler h;
  EXPECT_EQ(dispatcher_->RegisterFd(-1, &h).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dispatcher_->RegisterFd(p.a.get(), nullptr).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h).ok());
  EXPECT_EQ(dispatcher_->RegisterFd(p.a.get(), &h).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(dispatcher_->Unregister(p.a.get()).ok());
  EXPECT_EQ(dispatcher_->Unregister(p.a.get()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dispatcher_->Unregister(100000).code(), absl::StatusCode::kNotFound);
  // Registering again after Unregister works (a new generation).
  ASSERT_TRUE(dispatcher_->RegisterFd(p.a.get(), &h).ok());
  ASSERT_TRUE(dispatcher_->Unregister(p.a.get()).ok());
}

TEST_P(DispatcherTest, PostFromAnotherThreadWakesASleepingLoop) {
  std::thread::id loop_thread;
  std::thread::id ran_on;
  Notification ran;
  Notification stopped;
  std::thread loop([&] {
    loop_thread = std::this_thread::get_id();
    dispatcher_->Run();  // no fd is ready and no timer armed: it sleeps until woken
    stopped.Notify();
  });
  // The first iteration counts itself under the same lock in which it decides to sleep, so
  // once it is counted the loop is (about to be) asleep and only the eventfd can wake it.
  WaitForFirstIteration();
  dispatcher_->Post([&] {
    ran_on = std::this_thread::get_id();
    ran.Notify();
  });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Milliseconds(kWait.count())));
  dispatcher_->Exit();
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Milliseconds(kWait.count())));
  loop.join();
  EXPECT_EQ(ran_on, loop_thread);
  EXPECT_GE(dispatcher_->stats().wake_writes, 1u);
}

TEST_P(DispatcherTest, PostOnAnAwakeLoopWritesNoEventfd) {
  std::vector<int> order;
  dispatcher_->Post([&] {
    order.push_back(1);
    // From the loop thread itself: the loop is awake.
    for (int i = 2; i <= 100; ++i) dispatcher_->Post([&order, i] { order.push_back(i); });
  });
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(order.size(), 1u);  // posted while running: the next iteration
  const auto start = std::chrono::steady_clock::now();
  dispatcher_->RunOnce(kWait);  // pending posts: does not block
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWait / 2);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i + 1);
  EXPECT_EQ(dispatcher_->stats().wake_writes, 0u);
}

TEST_P(DispatcherTest, ExitFromAnotherThreadStopsRun) {
  Notification stopped;
  std::thread loop([&] {
    dispatcher_->Run();
    stopped.Notify();
  });
  WaitForFirstIteration();
  dispatcher_->Exit();
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Milliseconds(kWait.count())));
  loop.join();
}

TEST_P(DispatcherTest, ExitBeforeRunReturnsAtOnceAndIsConsumed) {
  dispatcher_->Exit();
  dispatcher_->Run();
  // Consumed: a second Run would block; check with a timer that exits it.
  struct Exiter {
    Dispatcher* d;
    bool fired = false;
    void OnTimer() {
      fired = true;
      d->Exit();
    }
  } exiter{dispatcher_.get()};
  Timer t(dispatcher_->timers());
  t.ArmAfter(milliseconds(5), TimerCallback::Bind<&Exiter::OnTimer>(&exiter));
  dispatcher_->Run();
  EXPECT_TRUE(exiter.fired);
}

// Timers through Run() on the real clock: short, and bounded by a guard timer.
struct Fire {
  std::vector<int>* order;
  int id;
  Dispatcher* exit_on_fire = nullptr;
  void OnTimer() {
    order->push_back(id);
    if (exit_on_fire != nullptr) exit_on_fire->Exit();
  }
};

TEST_P(DispatcherTest, TimersFireThroughRunOnTheRealClock) {
  std::vector<int> order;
  Fire f1{&order, 1}, f5{&order, 5}, f20{&order, 20, dispatcher_.get()};
  Fire guard{&order, -1, dispatcher_.get()};
  Timer t1(dispatcher_->timers()), t5(dispatcher_->timers()), t20(dispatcher_->timers());
  Timer tguard(dispatcher_->timers());
  // Delays count from the loop's time (read once per iteration, as Envoy's dispatcher
  // does), which may be a little older than the real clock when they are armed.
  const MonotonicTime start = dispatcher_->Now();
  t20.ArmAfter(milliseconds(20), TimerCallback::Bind<&Fire::OnTimer>(&f20));
  t5.ArmAfter(milliseconds(5), TimerCallback::Bind<&Fire::OnTimer>(&f5));
  t1.ArmAfter(milliseconds(1), TimerCallback::Bind<&Fire::OnTimer>(&f1));
  tguard.ArmAfter(kWait, TimerCallback::Bind<&Fire::OnTimer>(&guard));
  dispatcher_->Run();
  const auto elapsed = clock_.Now() - start;
  EXPECT_THAT(order, ElementsAre(1, 5, 20));
  EXPECT_GE(elapsed, milliseconds(20));
  EXPECT_LT(elapsed, kWait);
  // Sleeping until timers, not spinning.
  EXPECT_LT(dispatcher_->stats().iterations, 50u);
}

TEST_P(DispatcherTest, RunOnceWaitIsBoundedByTheNextTimer) {
  std::vector<int> order;
  Fire f{&order, 1};
  Timer t(dispatcher_->timers());
  t.ArmAfter(milliseconds(30), TimerCallback::Bind<&Fire::OnTimer>(&f));
  const auto start = std::chrono::steady_clock::now();
  RunUntil([&] { return !order.empty(); });
  EXPECT_THAT(order, ElementsAre(1));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWait);
}

TEST_P(DispatcherTest, DestructorRunsPendingDeferredDeletes) {
  struct Flag {
    bool* destroyed = nullptr;
    ~Flag() { *destroyed = true; }
  };
  bool destroyed = false;
  auto flag = std::make_unique<Flag>();
  flag->destroyed = &destroyed;
  dispatcher_->DeferredDelete(std::move(flag));
  EXPECT_FALSE(destroyed);
  dispatcher_.reset();
  EXPECT_TRUE(destroyed);
}

INSTANTIATE_TEST_SUITE_P(Pollers, DispatcherTest, ::testing::Values("epoll", "io_uring"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// The simulated clock: timers are deterministic, and Now() is read once per iteration.
class SimulatedDispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Dispatcher>> d = Dispatcher::Create(clock_);
    ASSERT_TRUE(d.ok()) << d.status();
    dispatcher_ = *std::move(d);
  }
  SimulatedTimeSource clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(SimulatedDispatcherTest, TimersFollowTheInjectedClock) {
  std::vector<int> order;
  Fire f{&order, 1};
  Timer t(dispatcher_->timers());
  t.ArmAfter(std::chrono::minutes(15), TimerCallback::Bind<&Fire::OnTimer>(&f));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(order.empty());
  clock_.Advance(std::chrono::minutes(15) - milliseconds(1));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(order.empty());
  clock_.Advance(milliseconds(1));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_THAT(order, ElementsAre(1));
  EXPECT_EQ(dispatcher_->Now(), clock_.Now());
}

TEST_F(SimulatedDispatcherTest, NowIsCachedForTheIteration) {
  MonotonicTime seen_first{}, seen_second{};
  dispatcher_->Post([&] {
    seen_first = dispatcher_->Now();
    clock_.Advance(std::chrono::seconds(10));  // the clock moves under a running iteration
    seen_second = dispatcher_->Now();
  });
  const MonotonicTime before = clock_.Now();
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(seen_first, before);
  EXPECT_EQ(seen_second, before);
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(dispatcher_->Now(), before + std::chrono::seconds(10));
}

TEST_F(SimulatedDispatcherTest, ArmAfterInAHandlerCountsFromThisWakeUp) {
  clock_.Advance(std::chrono::hours(1));  // the loop slept for an hour
  MonotonicTime deadline{};
  Timer t(dispatcher_->timers());
  std::vector<int> order;
  Fire f{&order, 1};
  dispatcher_->Post([&] {
    t.ArmAfter(milliseconds(100), TimerCallback::Bind<&Fire::OnTimer>(&f));
    deadline = t.deadline();
  });
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(deadline, clock_.Now() + milliseconds(100));
}

}  // namespace
}  // namespace sluice::gateway::event
