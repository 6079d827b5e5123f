#include "gateway/event/task.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gateway/event/async_socket.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/socket.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gtest/gtest.h"

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
Task<void> HoldAnHour(TimerWheel& wheel, Tracked tracked) {
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

// Sockets: a real dispatcher on one end of a socket pair; the test plays the peer.
class AsyncSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_.reset(fds[1]);
    auto dispatcher = Dispatcher::Create(clock_);
    ASSERT_TRUE(dispatcher.ok()) << dispatcher.status();
    dispatcher_ = *std::move(dispatcher);
    auto socket = AsyncSocket::Create(*dispatcher_, UniqueFd(fds[0]));
    ASSERT_TRUE(socket.ok()) << socket.status();
    socket_ = *std::move(socket);
  }
  void TearDown() override {
    socket_.reset();
    dispatcher_.reset();
  }

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

TEST_F(AsyncSocketTest, AReadWaitsForItsBytes) {
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

TEST_F(AsyncSocketTest, BytesAlreadyThereAreReadWithoutTheLoop) {
  PeerWrite("ready");
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  ASSERT_TRUE(result.has_value()) << "completed inside Spawn: no suspension";
  EXPECT_EQ(buffer.substr(0, result->bytes), "ready");
}

TEST_F(AsyncSocketTest, CancelEndsAWaitingReadAndTheSocketStaysUsable) {
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  EXPECT_TRUE(socket_->Cancel(ETIMEDOUT));
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

// The watch a proxy keeps on a client it is not reading from: the callback runs when the
// peer goes, once.
TEST_F(AsyncSocketTest, WatchHangupCallsBackOnceWhenThePeerCloses) {
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
// drained the socket, not once bytes or a hang-up have come (seen by the loop).
TEST_F(AsyncSocketTest, QuietUntilSomethingArrives) {
  EXPECT_FALSE(socket_->quiet()) << "nothing read yet: unknown";
  PeerWrite("response");
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_TRUE(socket_->quiet()) << "a short read drained it";
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(socket_->quiet());
  PeerWrite("x");
  RunUntil([&] { return !socket_->quiet(); });
  EXPECT_FALSE(socket_->quiet()) << "unsolicited bytes";

  result.reset();
  Spawn(ReadOnce(*socket_, &buffer, &result));
  ASSERT_TRUE(result.has_value() && result->data());
  EXPECT_TRUE(socket_->quiet());
  peer_.reset();
  RunUntil([&] { return !socket_->quiet(); });
  EXPECT_FALSE(socket_->quiet()) << "the peer closed";
}

TEST_F(AsyncSocketTest, APeerThatClosesEndsAWaitingReadWithEof) {
  std::string buffer(64, '\0');
  std::optional<IoResult> result;
  Spawn(ReadOnce(*socket_, &buffer, &result));
  peer_.reset();
  RunUntil([&] { return result.has_value(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind, IoResult::Kind::kEof);
  EXPECT_TRUE(socket_->hung_up());
}

Task<void> WriteAll(AsyncSocket& socket, const std::string& head, const std::string& body,
                    std::optional<IoResult>* result) {
  *result = co_await socket.Write(head, body);
}

TEST_F(AsyncSocketTest, AWriteLargerThanTheSocketBufferWaitsForRoomAndSendsEverything) {
  const std::string head = "HEAD:";
  const std::string body(4 << 20, 'b');
  std::optional<IoResult> result;
  Spawn(WriteAll(*socket_, head, body, &result));
  EXPECT_FALSE(result.has_value()) << "4 MiB does not fit a socket buffer";
  std::string received;
  char chunk[65536];
  for (int i = 0; i < 10000 && received.size() < head.size() + body.size(); ++i) {
    const ssize_t n = read(peer_.get(), chunk, sizeof(chunk));
    if (n > 0) received.append(chunk, static_cast<size_t>(n));
    dispatcher_->RunOnce(milliseconds(0));
  }
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->data());
  EXPECT_EQ(result->bytes, head.size() + body.size());
  ASSERT_EQ(received.size(), head.size() + body.size());
  EXPECT_EQ(received.substr(0, head.size()), head);
  EXPECT_EQ(received.find_first_not_of('b', head.size()), std::string::npos);
}

Task<void> ConnectAndWrite(AsyncSocket& socket, std::optional<absl::Status>* connected,
                           std::optional<IoResult>* wrote) {
  *connected = co_await socket.Connect();
  if (!connected->value().ok()) co_return;
  *wrote = co_await socket.Write("ping");
}

TEST(AsyncSocketConnectTest, AConnectInProgressIsAwaitedThenTheSocketWrites) {
  RealTimeSource clock;
  auto dispatcher = Dispatcher::Create(clock);
  ASSERT_TRUE(dispatcher.ok());
  auto listener = ListenTcp("127.0.0.1", 0, /*reuse_port=*/false, 16);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto connecting = ConnectTcp("127.0.0.1", listener->port);
  ASSERT_TRUE(connecting.ok()) << connecting.status();
  auto socket =
      AsyncSocket::Create(**dispatcher, std::move(connecting->fd), connecting->in_progress);
  ASSERT_TRUE(socket.ok());
  std::optional<absl::Status> connected;
  std::optional<IoResult> wrote;
  Spawn(ConnectAndWrite(**socket, &connected, &wrote));
  for (int i = 0; i < 100 && !wrote.has_value(); ++i) (*dispatcher)->RunOnce(milliseconds(10));
  ASSERT_TRUE(connected.has_value());
  EXPECT_TRUE(connected->ok()) << *connected;
  ASSERT_TRUE(wrote.has_value());
  EXPECT_EQ(wrote->bytes, 4u);
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
  socket->reset();
}

}  // namespace
}  // namespace sluice::gateway::event
