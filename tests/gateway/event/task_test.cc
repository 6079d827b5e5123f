#include "gateway/event/task.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/event/async_socket.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/poller.h"
#include "gateway/event/socket.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gtest/gtest.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SLUICE_RUNNING_ON_VALGRIND() RUNNING_ON_VALGRIND
#else
#define SLUICE_RUNNING_ON_VALGRIND() 0
#endif

namespace sluice::gateway::event {
namespace {

using std::chrono::milliseconds;

// Coroutines take their inputs as parameters (copied into the frame), never as lambda
// captures: a capturing coroutine lambda reads its captures from a closure that is gone once
// the lambda expression ends.
Task<int> Add(int a, int b) { co_return a + b; }

Task<int> AddThree(int a) {
  const int once = co_await Add(a, 1);
  const int twice = co_await Add(once, 2);
  co_return twice;
}

Task<void> Store(int input, int* out) { *out = co_await AddThree(input); }

TEST(TaskTest, NestedTasksPassValuesAndRunToTheEndWhenNothingSuspends) {
  int out = 0;
  Spawn(Store(10, &out));
  EXPECT_EQ(out, 13);
}

TEST(TaskTest, FramesAreReusedOnceWarm) {
  int out = 0;
  Spawn(Store(1, &out));  // warms the pool
  const FramePoolStats warm = ThisThreadFramePoolStats();
  for (int i = 0; i < 1000; ++i) Spawn(Store(i, &out));
  const FramePoolStats after = ThisThreadFramePoolStats();
  EXPECT_EQ(out, 1002);
  EXPECT_EQ(after.fresh, warm.fresh) << "no frame memory allocated per request once warm";
  // Four frames per run (Store, AddThree, Add twice) with GCC; clang may fold the children
  // awaited at once into their parent's frame (coroutine allocation elision), leaving one.
  EXPECT_GE(after.reused - warm.reused, 1000u);
  EXPECT_LE(after.reused - warm.reused, 4000u);
}

TEST(TaskTest, ATaskNeverAwaitedIsDestroyedUnstarted) {
  int out = -1;
  { Task<void> unused = Store(5, &out); }
  EXPECT_EQ(out, -1);
}

Task<void> WaitAndRecord(Alarm& alarm, MonotonicDuration duration, std::optional<bool>* expired) {
  *expired = co_await alarm.WaitFor(duration);
}

class AlarmTest : public ::testing::Test {
 protected:
  SimulatedTimeSource clock_;
  TimerWheel wheel_{clock_.Now()};

  void Advance(MonotonicDuration by) {
    clock_.Advance(by);
    wheel_.Advance(clock_.Now());
  }
};

TEST_F(AlarmTest, ExpiresAtItsTimeOnASimulatedClock) {
  Alarm alarm(wheel_);
  std::optional<bool> expired;
  Spawn(WaitAndRecord(alarm, milliseconds(250), &expired));
  EXPECT_TRUE(alarm.waiting());
  Advance(milliseconds(249));
  EXPECT_FALSE(expired.has_value());
  Advance(milliseconds(1));
  ASSERT_TRUE(expired.has_value());
  EXPECT_TRUE(*expired);
  EXPECT_FALSE(alarm.waiting());
}

TEST_F(AlarmTest, CancelEndsTheWaitEarlyAndTheTimerWithIt) {
  Alarm alarm(wheel_);
  std::optional<bool> expired;
  Spawn(WaitAndRecord(alarm, std::chrono::seconds(30), &expired));
  EXPECT_TRUE(alarm.Cancel());
  ASSERT_TRUE(expired.has_value());
  EXPECT_FALSE(*expired) << "cut short, not expired";
  EXPECT_EQ(wheel_.armed_count(), 0u);
  EXPECT_FALSE(alarm.Cancel()) << "nothing waits any more";
  // The alarm can be waited on again.
  expired.reset();
  Spawn(WaitAndRecord(alarm, milliseconds(5), &expired));
  Advance(milliseconds(5));
  EXPECT_EQ(expired, std::optional<bool>(true));
}

TEST_F(AlarmTest, AZeroWaitDoesNotSuspend) {
  Alarm alarm(wheel_);
  std::optional<bool> expired;
  Spawn(WaitAndRecord(alarm, MonotonicDuration::zero(), &expired));
  EXPECT_EQ(expired, std::optional<bool>(true));
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(AlarmTest, WakeSoonEndsTheWaitAtTheNextAdvanceNotInsideTheCaller) {
  Alarm alarm(wheel_);
  std::optional<bool> expired;
  Spawn(WaitAndRecord(alarm, std::chrono::hours(1), &expired));
  alarm.WakeSoon();
  EXPECT_FALSE(expired.has_value()) << "not on the caller's stack";
  Advance(MonotonicDuration::zero());
  EXPECT_EQ(expired, std::optional<bool>(true));
  EXPECT_EQ(wheel_.armed_count(), 0u);
  alarm.WakeSoon();  // nobody waits: nothing is armed
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

// A task that waits on `alarm`, then counts itself done.
Task<void> WaitThenCount(Alarm& alarm, int* done) {
  (void)co_await alarm.WaitFor(std::chrono::seconds(1));
  ++*done;
}

// Owns a counter that a destroyed frame decrements: tells whether a frame was destroyed.
struct Tracked {
  int* alive;
  explicit Tracked(int* a) : alive(a) { ++*alive; }
  Tracked(Tracked&& other) noexcept : alive(std::exchange(other.alive, nullptr)) {}
  ~Tracked() {
    if (alive != nullptr) --*alive;
  }
};

// Waits on an alarm of its own frame, as the gateway's requests do.
Task<void> HoldAnHour(TimerWheel& wheel, [[maybe_unused]] Tracked tracked) {
  Alarm alarm(wheel);
  (void)co_await alarm.WaitFor(std::chrono::hours(1));
}

TEST_F(AlarmTest, ATaskGroupForgetsTasksThatEndAndDestroysThoseStillSuspended) {
  Alarm first(wheel_);
  int done = 0;
  int alive = 0;
  {
    TaskGroup group;
    group.Start(WaitThenCount(first, &done));
    group.Start(HoldAnHour(wheel_, Tracked(&alive)));
    EXPECT_EQ(group.size(), 2u);
    EXPECT_EQ(alive, 1);
    Advance(std::chrono::seconds(1));
    EXPECT_EQ(done, 1);
    EXPECT_EQ(group.size(), 1u) << "a task that ends leaves the group";
    EXPECT_EQ(wheel_.armed_count(), 1u);
  }
  EXPECT_EQ(alive, 0) << "the suspended task's frame went with the group";
  EXPECT_EQ(wheel_.armed_count(), 0u) << "and its alarm with it";
}

// A dispatcher on `poller` ("epoll" or "io_uring"); null, with `skip` set, when the
// kernel (or valgrind, which holds its lock across io_uring_enter) refuses io_uring.
std::unique_ptr<Dispatcher> MakeDispatcher(TimeSource& clock, const std::string& poller,
                                           std::string* skip) {
  std::unique_ptr<Poller> chosen;
  if (poller == "io_uring") {
    if (SLUICE_RUNNING_ON_VALGRIND()) {
      *skip = "io_uring under valgrind";
      return nullptr;
    }
    absl::StatusOr<std::unique_ptr<Poller>> uring = CreateIoUringPoller();
    if (!uring.ok()) {
      *skip = uring.status().ToString();
      return nullptr;
    }
    chosen = *std::move(uring);
  }
  absl::StatusOr<std::unique_ptr<Dispatcher>> dispatcher =
      Dispatcher::Create(clock, std::move(chosen));
  if (!dispatcher.ok()) {
    *skip = dispatcher.status().ToString();
    return nullptr;
  }
  return *std::move(dispatcher);
}

// Sockets: a real dispatcher on one end of a socket pair; the test plays the peer. Each test
// runs on epoll (reads and writes are system calls tried at once) and on io_uring (they are
// queued in the ring and complete at a turn of the loop).
class AsyncSocketTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_.reset(fds[1]);
    UniqueFd mine(fds[0]);
    std::string skip;
    dispatcher_ = MakeDispatcher(clock_, GetParam(), &skip);
    if (dispatcher_ == nullptr) GTEST_SKIP() << skip;
    auto socket = AsyncSocket::Create(*dispatcher_, std::move(mine));
    ASSERT_TRUE(socket.ok()) << socket.status();
    socket_ = *std::move(socket);
  }
  void TearDown() override {
    socket_.reset();
    dispatcher_.reset();
  }

  bool ring() const { return GetParam() == "io_uring"; }
  // Runs the loop until `done` or about a second has passed.
  template <typename Done>
  void RunUntil(Done done) {
    for (int i = 0; i < 100 && !done(); ++i) dispatcher_->RunOnce(milliseconds(10));
  }
  void PeerWrite(const std::string& bytes) {
    ASSERT_EQ(write(peer_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  RealTimeSource clock_;
  UniqueFd peer_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<AsyncSocket> socket_;
};

Task<void> ReadOnce(AsyncSocket& socket, std::string* buffer, std::optional<IoResult>* result) {
  *result = co_await socket.Read(buffer->data(), buffer->size());
}

TEST_P(AsyncSocketTest, AReadWaitsForItsBytes) {
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_FALSE(result.has_value()) << "nothing to read yet";
  PeerWrite("hello");
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->data());
  EXPECT_EQ(buffer.substr(0, result->bytes), "hello");
}

// epoll: the read is tried at once and completes inside Spawn; the ring: it completes at the
// next turn of the loop, which does not wait.
TEST_P(AsyncSocketTest, BytesAlreadyThereAreReadAtOnceOrAtTheNextTurn) {
  PeerWrite("ready");
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  if (ring()) {
    EXPECT_FALSE(result.has_value()) << "queued in the ring";
    dispatcher_->RunOnce(milliseconds(0));
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(buffer.substr(0, result->bytes), "ready");
}

TEST_P(AsyncSocketTest, CancelEndsAWaitingReadAndTheSocketStaysUsable) {
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(socket_->Cancel(ETIMEDOUT));
  // With the ring, the read ends once the kernel has let go of the buffer.
  if (ring()) RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind, IoResult::Kind::kError);
  EXPECT_EQ(result->error, ETIMEDOUT);
  EXPECT_FALSE(socket_->Cancel(ETIMEDOUT));

  result.reset();
  Spawn(ReadOnce(*socket_, &buffer, &result));
  PeerWrite("later");
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_EQ(buffer.substr(0, result->bytes), "later");
}

// A socket destroyed while its read is in the kernel (a task destroyed at a worker's stop):
// the read is cancelled, so bytes arriving later are not written into the gone buffer.
Task<void> ReadForever(AsyncSocket& socket, char* buffer, size_t size) {
  (void)co_await socket.Read(buffer, size);
  ADD_FAILURE() << "the read must not complete";
}

TEST_P(AsyncSocketTest, ASocketDestroyedWithAReadPendingLeavesItsBufferAlone) {
  std::string buffer(64, '.');
  // A duplicate keeps the connection open after the socket closes its fd, so that bytes
  // can still arrive: they must stay in the kernel, not land in the buffer.
  UniqueFd duplicate(dup(socket_->fd()));
  {
    TaskGroup group;
    group.Start(ReadForever(*socket_, buffer.data(), buffer.size()));
    dispatcher_->RunOnce(milliseconds(0));  // the read is in the kernel now
  }                                         // the suspended task is destroyed
  socket_.reset();
  for (int i = 0; i < 3; ++i) dispatcher_->RunOnce(milliseconds(10));
  PeerWrite("late");
  for (int i = 0; i < 3; ++i) dispatcher_->RunOnce(milliseconds(10));
  EXPECT_EQ(buffer, std::string(64, '.'));
  char late[8] = {};
  EXPECT_EQ(read(duplicate.get(), late, sizeof(late)), 4) << "the bytes wait in the socket";
}

// A socket destroyed with a read still queued in the ring (not yet handed to the kernel),
// and a new connection made in the same turn of the loop: the old read must not reach the
// new connection (its fd number could be the same once the old one is closed).
TEST_P(AsyncSocketTest, AReadQueuedForADestroyedSocketDoesNotReachTheNextConnection) {
  socket_->ReadAhead();  // queued: the loop has not turned since
  socket_.reset();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd next_peer(fds[1]);
  auto next = AsyncSocket::Create(*dispatcher_, UniqueFd(fds[0]));
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(write(next_peer.get(), "hello", 5), 5);
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(**next, &buffer, &result));
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->data()) << result->error;
  EXPECT_EQ(buffer.substr(0, result->bytes), "hello");
}

// More operations queued before the loop's first wait than the submission ring holds (a
// worker accepting a backlog as it starts): none fails for want of room.
TEST_P(AsyncSocketTest, MoreReadsThanTheRingHoldsBeforeTheFirstWaitAllComplete) {
  constexpr int kSockets = 300;  // the ring has 256 entries
  std::vector<UniqueFd> peers;
  std::vector<std::unique_ptr<AsyncSocket>> sockets;
  std::vector<std::string> buffers(kSockets, std::string(16, '\0'));
  std::vector<std::optional<IoResult>> results(kSockets);
  for (int i = 0; i < kSockets; ++i) {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peers.emplace_back(fds[1]);
    auto socket = AsyncSocket::Create(*dispatcher_, UniqueFd(fds[0]));
    ASSERT_TRUE(socket.ok()) << i << ": " << socket.status();
    sockets.push_back(*std::move(socket));
    Spawn(ReadOnce(*sockets.back(), &buffers[i], &results[i]));
  }
  for (UniqueFd& peer : peers) ASSERT_EQ(write(peer.get(), "x", 1), 1);
  auto all = [&] {
    for (const auto& r : results) {
      if (!r.has_value()) return false;
    }
    return true;
  };
  RunUntil(all);
  int read_ok = 0;
  for (const auto& r : results) read_ok += r.has_value() && r->data() && r->bytes == 1 ? 1 : 0;
  EXPECT_EQ(read_ok, kSockets);
}

// The watch a proxy keeps on a client it is not reading from: the callback runs when the
// peer goes, once.
TEST_P(AsyncSocketTest, WatchHangupCallsBackOnceWhenThePeerCloses) {
  int calls = 0;
  socket_->WatchHangup(TimerCallback([](void* count) { ++*static_cast<int*>(count); }, &calls));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_EQ(calls, 0);
  peer_.reset();
  RunUntil([&] { return calls > 0; });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(socket_->hung_up());
  dispatcher_->RunOnce(milliseconds(20));
  EXPECT_EQ(calls, 1) << "once";
}

// What lets a pool trust an idle connection without a system call: quiet after a read that
// drained the socket, not once a hang-up has come (seen by the loop), nor on epoll once
// bytes have come unasked (the ring watches hang-ups only).
TEST_P(AsyncSocketTest, QuietUntilSomethingArrives) {
  if (!ring()) {
    EXPECT_FALSE(socket_->quiet()) << "nothing read yet: unknown";
  }
  PeerWrite("response");
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_TRUE(socket_->quiet()) << "a short read drained it";
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(socket_->quiet());
  if (!ring()) {
    PeerWrite("x");
    RunUntil([&] { return !socket_->quiet(); });
    EXPECT_FALSE(socket_->quiet()) << "unsolicited bytes";
    result.reset();
    Spawn(ReadOnce(*socket_, &buffer, &result));
    ASSERT_TRUE(result.has_value() && result->data());
    EXPECT_TRUE(socket_->quiet());
  }
  peer_.reset();
  RunUntil([&] { return !socket_->quiet(); });
  EXPECT_FALSE(socket_->quiet()) << "the peer closed";
}

// A pooled connection with the ring: the read started as it goes idle keeps it quiet until
// the peer writes unasked (the pool then drops it), and hands its bytes to the next Read,
// in as many reads as the caller's buffer needs.
TEST_P(AsyncSocketTest, AfterReadAheadUnaskedBytesEndQuietAndGoToTheNextReads) {
  if (!ring()) GTEST_SKIP() << "epoll's readiness needs no read ahead";
  socket_->ReadAhead();
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(socket_->quiet());
  PeerWrite("unasked bytes");
  RunUntil([&] { return !socket_->quiet(); });
  EXPECT_FALSE(socket_->quiet());
  EXPECT_FALSE(socket_->hung_up());
  std::string small(7, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &small, &result));
  ASSERT_TRUE(result.has_value()) << "the bytes are here already";
  ASSERT_TRUE(result->data());
  EXPECT_EQ(small.substr(0, result->bytes), "unasked");
  result.reset();
  Spawn(ReadOnce(*socket_, &small, &result));
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_EQ(small.substr(0, result->bytes), " bytes");
  EXPECT_TRUE(socket_->quiet()) << "all taken";
  // The next read goes to the kernel again.
  result.reset();
  Spawn(ReadOnce(*socket_, &small, &result));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_FALSE(result.has_value());
  PeerWrite("more");
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_EQ(small.substr(0, result->bytes), "more");
}

// The common case: the request goes out on the idle connection and the response is the
// read ahead's, taken by the Read that waits for it.
TEST_P(AsyncSocketTest, AReadWaitingOnTheReadAheadGetsTheResponse) {
  if (!ring()) GTEST_SKIP() << "epoll's readiness needs no read ahead";
  socket_->ReadAhead();
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_FALSE(result.has_value());
  PeerWrite("response");
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_EQ(buffer.substr(0, result->bytes), "response");
  EXPECT_TRUE(socket_->quiet());
}

TEST_P(AsyncSocketTest, APeerClosingAnIdleConnectionEndsQuietAndTheReadSaysEof) {
  socket_->ReadAhead();  // nothing with epoll
  if (!ring()) {
    // epoll: quiet only after a read drained the socket.
    PeerWrite("x");
    std::string one(1, '\0');
    std::optional<IoResult> drained;
    Spawn(ReadOnce(*socket_, &one, &drained));
    ASSERT_TRUE(drained.has_value());
  }
  dispatcher_->RunOnce(milliseconds(0));
  peer_.reset();
  RunUntil([&] { return !socket_->quiet(); });
  EXPECT_FALSE(socket_->quiet());
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind, IoResult::Kind::kEof);
}

TEST_P(AsyncSocketTest, APeerThatClosesEndsAWaitingReadWithEof) {
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  peer_.reset();
  RunUntil([&] { return result.has_value() && socket_->hung_up(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind, IoResult::Kind::kEof);
  EXPECT_TRUE(socket_->hung_up());
}

Task<void> WriteAll(AsyncSocket& socket, const std::string& head, const std::string& body,
                    std::optional<IoResult>* result) {
  *result = co_await socket.Write(head, body);
}

TEST_P(AsyncSocketTest, AWriteLargerThanTheSocketBufferWaitsForRoomAndSendsEverything) {
  const std::string head = "HEAD:";
  const std::string body(4 << 20, 'b');
  std::optional<IoResult> result;
  Spawn(WriteAll(*socket_, head, body, &result));
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_FALSE(result.has_value()) << "4 MiB does not fit a socket buffer";
  std::string received;
  char chunk[65536];
  for (int i = 0; i < 10000 && received.size() < head.size() + body.size(); ++i) {
    const ssize_t n = read(peer_.get(), chunk, sizeof(chunk));
    if (n > 0) received.append(chunk, static_cast<size_t>(n));
    dispatcher_->RunOnce(milliseconds(0));
  }
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->data());
  EXPECT_EQ(result->bytes, head.size() + body.size());
  ASSERT_EQ(received.size(), head.size() + body.size());
  EXPECT_EQ(received.substr(0, head.size()), head);
  EXPECT_EQ(received.find_first_not_of('b', head.size()), std::string::npos);
}

TEST_P(AsyncSocketTest, CancelEndsAWriteThatWaitsForRoom) {
  const std::string body(4 << 20, 'b');
  std::optional<IoResult> result;
  Spawn(WriteAll(*socket_, "", body, &result));
  dispatcher_->RunOnce(milliseconds(0));
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(socket_->Cancel(ETIMEDOUT));
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind, IoResult::Kind::kError);
  EXPECT_EQ(result->error, ETIMEDOUT);
}

INSTANTIATE_TEST_SUITE_P(Pollers, AsyncSocketTest, ::testing::Values("epoll", "io_uring"),
                         [](const auto& info) { return info.param; });

Task<void> ConnectAndWrite(AsyncSocket& socket, std::optional<absl::Status>* connected,
                           std::optional<IoResult>* wrote) {
  *connected = co_await socket.Connect();
  if (!connected->value().ok()) co_return;
  *wrote = co_await socket.Write("ping");
}

class AsyncSocketConnectTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts a non-blocking connect to 127.0.0.1:`port` and a task that awaits it and then
  // writes "ping"; turns the loop until the connect has ended and, if it succeeded, the
  // write too (about a second at most). Skips the test when the poller is unavailable.
  void ConnectToPort(uint16_t port) {
    std::string skip;
    dispatcher_ = MakeDispatcher(clock_, GetParam(), &skip);
    if (dispatcher_ == nullptr) GTEST_SKIP() << skip;
    auto connecting = ConnectTcp("127.0.0.1", port);
    ASSERT_TRUE(connecting.ok()) << connecting.status();
    auto socket =
        AsyncSocket::Create(*dispatcher_, std::move(connecting->fd), connecting->in_progress);
    ASSERT_TRUE(socket.ok());
    socket_ = *std::move(socket);
    Spawn(ConnectAndWrite(*socket_, &connected_, &wrote_));
    for (int i = 0; i < 100; ++i) {
      if (connected_.has_value() && (!connected_->ok() || wrote_.has_value())) break;
      dispatcher_->RunOnce(milliseconds(10));
    }
  }
  void TearDown() override {
    socket_.reset();
    dispatcher_.reset();
  }

  RealTimeSource clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<AsyncSocket> socket_;
  std::optional<absl::Status> connected_;
  std::optional<IoResult> wrote_;
};

TEST_P(AsyncSocketConnectTest, AConnectInProgressIsAwaitedThenTheSocketWrites) {
  auto listener = ListenTcp("127.0.0.1", 0, /*reuse_port=*/false, 16);
  ASSERT_TRUE(listener.ok()) << listener.status();
  ConnectToPort(listener->port);
  if (IsSkipped() || HasFatalFailure()) return;
  ASSERT_TRUE(connected_.has_value());
  EXPECT_TRUE(connected_->ok()) << *connected_;
  ASSERT_TRUE(wrote_.has_value());
  EXPECT_EQ(wrote_->bytes, 4u);
  int accepted = -1;
  for (int i = 0; i < 100 && accepted < 0; ++i) {
    accepted = accept4(listener->fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) usleep(1000);
  }
  ASSERT_GE(accepted, 0);
  UniqueFd peer(accepted);
  char bytes[8] = {};
  EXPECT_EQ(read(peer.get(), bytes, sizeof(bytes)), 4);
  EXPECT_EQ(std::string(bytes, 4), "ping");
}

TEST_P(AsyncSocketConnectTest, AConnectToAClosedPortFails) {
  uint16_t port = 0;
  {
    auto listener = ListenTcp("127.0.0.1", 0, /*reuse_port=*/false, 16);
    ASSERT_TRUE(listener.ok()) << listener.status();
    port = listener->port;
  }  // closed: nothing listens there now
  ConnectToPort(port);
  if (IsSkipped() || HasFatalFailure()) return;
  ASSERT_TRUE(connected_.has_value());
  EXPECT_FALSE(connected_->ok());
  EXPECT_FALSE(wrote_.has_value());
}

INSTANTIATE_TEST_SUITE_P(Pollers, AsyncSocketConnectTest, ::testing::Values("epoll", "io_uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice::gateway::event
