// UpstreamPool on real loopback sockets: which idle connections it hands out and which it
// drops, and how it frees connection slots.

#include "gateway/upstream/upstream_pool.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/poller.h"
#include "gateway/event/socket.h"
#include "gateway/event/task.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

using std::chrono::milliseconds;

// How long a step that needs only the loopback (a handshake, a FIN, a few bytes) may take
// before the test gives up on it: generous, for a loaded machine.
constexpr int kLoopbackWaitMs = 2000;

// Waits as a request queued behind maxConnections does: on an alarm of its own, until a
// connection of `cluster` frees, then records that it resumed. A free function taking its
// inputs as parameters, not a capturing lambda: a coroutine's inputs must live in its frame,
// and a lambda's captures die with the closure (see task.h).
event::Task<void> WaitForConnection(UpstreamPool& pool, event::TimerWheel& timers,
                                    std::string cluster, absl::Duration max_wait,
                                    event::Alarm** cancel, bool* woke) {
  event::Alarm alarm(timers);
  co_await pool.WaitForRelease(cluster, max_wait, alarm, cancel);
  *woke = true;
}

// Each test runs on epoll and on io_uring (where an idle connection's close or unsolicited
// bytes are seen by the read it starts as it goes idle, at a turn of the loop).
class UpstreamPoolTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::unique_ptr<event::Poller> poller;
    if (GetParam() == "io_uring") {
      auto ring = event::CreateIoUringPoller();
      if (!ring.ok()) GTEST_SKIP() << "io_uring unavailable: " << ring.status();
      poller = *std::move(ring);
    }
    auto dispatcher = event::Dispatcher::Create(clock_, std::move(poller));
    ASSERT_TRUE(dispatcher.ok()) << dispatcher.status();
    dispatcher_ = *std::move(dispatcher);
    auto listener = event::ListenTcp("127.0.0.1", 0, /*reuse_port=*/false, /*backlog=*/16);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
  }

  // A connected pair: the pool's side, and the upstream's side (kept to close it at will).
  // Its pool is the cluster's generation `generation`.
  std::unique_ptr<UpstreamConnection> Connect(const std::string& cluster = "c",
                                              const std::string& generation = "1") {
    auto c = std::make_unique<UpstreamConnection>();
    ConnectSocket(*c);
    c->cluster = cluster;
    c->pool = cluster + "#" + generation;
    c->endpoint = cluster + "-endpoint";
    c->ticket = limits_.TryConnection();
    return c;
  }

  // Connects `c` to the listener and accepts the upstream's side: a plain blocking socket,
  // accepted once the handshake is done, so that the test plays the upstream in sequence.
  void ConnectSocket(UpstreamConnection& c) {
    auto connecting = event::ConnectTcp("127.0.0.1", listener_.port);
    ASSERT_TRUE(connecting.ok()) << connecting.status();
    pollfd pending{listener_.fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pending, 1, kLoopbackWaitMs), 1) << "no connection to accept";
    event::UniqueFd peer(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(peer.valid()) << std::strerror(errno);
    auto socket = event::AsyncSocket::Create(*dispatcher_, std::move(connecting->fd),
                                             connecting->in_progress);
    ASSERT_TRUE(socket.ok()) << socket.status();
    c.socket = *std::move(socket);
    pool_sides_.push_back(c.socket->fd());
    peers_.push_back(std::move(peer));
  }

  // Closes the upstream's side of the `i`th pair, and waits until its FIN has reached the
  // pool's side: it takes a moment, even on loopback, and the pool must see it (not a sleep
  // that may be too short on a loaded machine).
  void ClosePeer(size_t i) {
    ASSERT_LT(i, peers_.size());
    peers_[i].reset();
    AwaitArrivalAtPoolSide(i);
  }
  // Writes `bytes` from the upstream's side of the `i`th pair, and waits until they arrived.
  void PeerWrite(size_t i, absl::string_view bytes) {
    ASSERT_LT(i, peers_.size());
    ASSERT_EQ(::send(peers_[i].get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    AwaitArrivalAtPoolSide(i);
  }
  // Only while the pair's connection is open: its fd number is reused once it closes.
  void AwaitArrivalAtPoolSide(size_t i) {
    pollfd pool_side{pool_sides_[i], POLLIN | POLLRDHUP, 0};
    ASSERT_EQ(::poll(&pool_side, 1, kLoopbackWaitMs), 1) << "nothing reached the pool's side";
  }

  // Starts a waiter for a connection of `cluster` (see WaitForConnection); it runs until it
  // suspends. The fixture owns it: one still waiting when the test ends is destroyed first.
  void StartWaiter(const std::string& cluster, absl::Duration max_wait, bool* woke,
                   event::Alarm** cancel = nullptr) {
    tasks_.Start(WaitForConnection(pool_, dispatcher_->timers(), cluster, max_wait, cancel, woke));
  }

  // Turns the loop until `done`; fails the test if that takes more than a couple of seconds
  // of real time.
  template <typename Done>
  void RunUntil(Done done, milliseconds limit = std::chrono::seconds(2)) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= give_up) {
        ADD_FAILURE() << "gave up after " << limit.count() << " ms";
        return;
      }
      dispatcher_->RunOnce(milliseconds(10));
    }
  }
  // Moves the simulated clock `simulated` forward (due timers fire), then turns the loop for
  // `real` of real time (I/O and anything posted or due at once run): what a test waiting for
  // nothing to happen must let happen.
  void RunFor(milliseconds real, absl::Duration simulated = absl::ZeroDuration()) {
    clock_.Advance(simulated);
    const auto until = std::chrono::steady_clock::now() + real;
    do {
      dispatcher_->RunOnce(milliseconds(10));
    } while (std::chrono::steady_clock::now() < until);
  }

  // The loop's clock is simulated, starting at t0_: the times the tests hand the pool and
  // the loop's timers are on one clock, and a wait can be watched over days without sleeping.
  event::SimulatedTimeSource clock_;
  // Declared before what it outlives: the sockets registered with it, the alarms on its wheel.
  std::unique_ptr<event::Dispatcher> dispatcher_;
  event::ListenSocket listener_;
  std::vector<event::UniqueFd> peers_;
  std::vector<int> pool_sides_;  // the pool's side of each pair, by the same index as peers_
  ClusterLimits limits_{PoolLimits{.max_connections = 8}};
  UpstreamPool pool_;
  // Destroyed first: a waiter still queued unlists itself from pool_ as its frame goes.
  event::TaskGroup tasks_;
  const event::MonotonicTime t0_ = event::SimulatedTimeSource::kDefaultStart;
  event::MonotonicTime At(absl::Duration since_t0) const {
    return t0_ + absl::ToChronoNanoseconds(since_t0);
  }
};

TEST_P(UpstreamPoolTest, ReusesMostRecentlyReleased) {
  auto a = Connect();
  auto b = Connect();
  UpstreamConnection* second = b.get();
  pool_.Release(std::move(a), 0, t0_);
  pool_.Release(std::move(b), 0, t0_);
  EXPECT_EQ(pool_.idle_count(), 2u);
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::ZeroDuration(), t0_).get(), second);
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_EQ(pool_.TakeIdle("c#1", "other", absl::ZeroDuration(), t0_), nullptr);
}

TEST_P(UpstreamPoolTest, DropsConnectionsIdlePastTheTimeoutAndFreesTheirSlot) {
  pool_.Release(Connect(), 0, t0_);
  EXPECT_EQ(limits_.connections(), 1u);
  EXPECT_NE(pool_.TakeIdle("c#1", "c-endpoint", absl::Seconds(5), At(absl::Seconds(4))), nullptr);
  pool_.Release(Connect(), 0, t0_);
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::Seconds(5), At(absl::Seconds(5))), nullptr);
  EXPECT_EQ(pool_.idle_count(), 0u);
}

TEST_P(UpstreamPoolTest, CloseIdleClosesConnectionsPastTheirOwnIdleTimeoutOnly) {
  auto short_lived = Connect();
  short_lived->idle_timeout = absl::Seconds(1);
  auto long_lived = Connect();
  long_lived->idle_timeout = absl::Hours(1);
  pool_.Release(std::move(short_lived), 0, t0_);
  pool_.Release(std::move(long_lived), 0, t0_);
  EXPECT_EQ(pool_.CloseIdle(At(absl::Milliseconds(999))), 0u);
  EXPECT_EQ(pool_.idle_count(), 2u);
  EXPECT_EQ(pool_.CloseIdle(At(absl::Seconds(1))), 1u);
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_EQ(limits_.connections(), 1u) << "the closed connection's slot frees";
  EXPECT_EQ(pool_.CloseIdle(At(absl::Minutes(59))), 0u);
  EXPECT_EQ(pool_.CloseIdle(At(absl::Hours(1))), 1u);
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
}

TEST_P(UpstreamPoolTest, CloseIdleClosesConnectionsTheUpstreamClosedWithoutARequest) {
  pool_.Release(Connect(), 0, t0_);  // no idle timeout
  pool_.Release(Connect(), 0, t0_);
  ClosePeer(0);
  RunFor(milliseconds(30));
  EXPECT_EQ(pool_.CloseIdle(At(absl::Hours(100))), 1u);
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_EQ(limits_.connections(), 1u);
}

TEST_P(UpstreamPoolTest, DropsConnectionsTheUpstreamClosed) {
  pool_.Release(Connect(), 0, t0_);
  ClosePeer(0);
  RunFor(milliseconds(30));
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(limits_.connections(), 0u);
}

TEST_P(UpstreamPoolTest, DropsConnectionsWithUnsolicitedBytes) {
  pool_.Release(Connect(), 0, t0_);
  PeerWrite(0, "HTTP/1.1 200 OK\r\n");
  RunFor(milliseconds(30));
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::ZeroDuration(), t0_), nullptr);
}

TEST_P(UpstreamPoolTest, ClosesConnectionsThatServedMaxRequests) {
  auto c = Connect();
  c->requests = 3;
  pool_.Release(std::move(c), 3, t0_);
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
  c = Connect();
  c->requests = 2;
  pool_.Release(std::move(c), 3, t0_);
  EXPECT_EQ(pool_.idle_count(), 1u);
}

TEST_P(UpstreamPoolTest, CloseOneIdleFreesASlotOfThatClusterOnly) {
  pool_.Release(Connect("a"), 0, t0_);
  EXPECT_FALSE(pool_.CloseOneIdle("b"));
  EXPECT_TRUE(pool_.CloseOneIdle("a"));
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
}

// Endpoints come and go with the configuration: an endpoint left without idle connections
// leaves nothing behind in the pool once it is swept, whichever way its last one went. Until
// the sweep, a connection taken for a request finds its entry again when it is released (no
// new key or vector per request).
TEST_P(UpstreamPoolTest, EndpointsWithoutIdleConnectionsAreForgotten) {
  pool_.Release(Connect("a"), 0, t0_);
  pool_.Release(Connect("b"), 0, t0_);
  EXPECT_EQ(pool_.idle_endpoints(), 2u);
  std::unique_ptr<UpstreamConnection> taken =
      pool_.TakeIdle("a#1", "a-endpoint", absl::ZeroDuration(), t0_);
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(pool_.idle_endpoints(), 2u);  // a's entry waits for its connection
  pool_.Release(std::move(taken), 0, t0_);
  EXPECT_EQ(pool_.idle_endpoints(), 2u);
  EXPECT_NE(pool_.TakeIdle("a#1", "a-endpoint", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(pool_.CloseIdle(t0_), 0u);  // nothing to close; a's empty entry goes
  EXPECT_EQ(pool_.idle_endpoints(), 1u);
  EXPECT_TRUE(pool_.CloseOneIdle("b"));  // closed to make room
  EXPECT_EQ(pool_.idle_endpoints(), 0u);

  auto stale = Connect("c");
  stale->idle_timeout = absl::Seconds(1);
  pool_.Release(std::move(stale), 0, t0_);
  EXPECT_EQ(pool_.CloseIdle(At(absl::Seconds(1))), 1u);  // swept past its idle timeout
  EXPECT_EQ(pool_.idle_endpoints(), 0u);

  pool_.Release(Connect("d"), 0, t0_);
  EXPECT_EQ(pool_.TakeIdle("d#1", "d-endpoint", absl::Seconds(1), At(absl::Seconds(2))), nullptr);
  EXPECT_EQ(pool_.idle_count(), 0u) << "dropped as stale when asked for";
  EXPECT_EQ(pool_.CloseIdle(At(absl::Seconds(2))), 0u);
  EXPECT_EQ(pool_.idle_endpoints(), 0u);
  EXPECT_EQ(pool_.TakeIdle("d#1", "never-seen", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(pool_.idle_endpoints(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
}

// Envoy keeps a pool per cluster: a connection kept alive for one cluster (or for one
// generation of a cluster's pool settings) never carries another's request, although it goes
// to the same endpoint.
TEST_P(UpstreamPoolTest, ConnectionsOfOnePoolAreNotHandedToAnother) {
  auto a = Connect("a");
  a->endpoint = "shared:80";
  pool_.Release(std::move(a), 0, t0_);
  EXPECT_FALSE(pool_.HasIdle("b#1", "shared:80"));
  EXPECT_EQ(pool_.TakeIdle("b#1", "shared:80", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(pool_.TakeIdle("a#2", "shared:80", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(pool_.idle_count(), 1u) << "left in its own pool";
  EXPECT_TRUE(pool_.HasIdle("a#1", "shared:80"));
  EXPECT_NE(pool_.TakeIdle("a#1", "shared:80", absl::ZeroDuration(), t0_), nullptr);
}

TEST_P(UpstreamPoolTest, OpenCountIsPerPoolAndEndpoint) {
  auto a = Connect("a");
  pool_.NoteOpened(*a);
  EXPECT_EQ(pool_.OpenCount("a#1", "a-endpoint"), 1u);
  EXPECT_EQ(pool_.OpenCount("a#2", "a-endpoint"), 0u) << "a new generation's pool has none";
  pool_.Discard(std::move(a));
  EXPECT_EQ(pool_.OpenCount("a#1", "a-endpoint"), 0u);
}

// A configuration change drains the pools it leaves behind: their idle connections close at
// once (freeing their maxConnections slots), busy ones when they come back.
TEST_P(UpstreamPoolTest, PoolsNoLongerLiveAreDrained) {
  pool_.Release(Connect("a", "1"), 0, t0_);
  pool_.Release(Connect("b", "1"), 0, t0_);
  auto busy = Connect("a", "1");
  EXPECT_EQ(limits_.connections(), 3u);
  EXPECT_EQ(pool_.SetLivePools({"a#2", "b#1"}), 1u) << "a's old generation";
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_TRUE(pool_.HasIdle("b#1", "b-endpoint"));
  EXPECT_EQ(limits_.connections(), 2u);
  pool_.Release(std::move(busy), 0, t0_);
  EXPECT_EQ(pool_.idle_count(), 1u) << "released into a drained pool: closed";
  EXPECT_EQ(limits_.connections(), 1u);
  pool_.Release(Connect("a", "2"), 0, t0_);
  EXPECT_EQ(pool_.idle_count(), 2u);
  EXPECT_EQ(pool_.SetLivePools({}), 2u);
  EXPECT_EQ(pool_.idle_endpoints(), 0u);
}

// The wake-up comes at the next turn of the loop, not on the stack of the request that
// freed the connection (it is in the middle of its own work), and only to a waiter of the
// connection's cluster. A discard frees a slot as a release does.
TEST_P(UpstreamPoolTest, AReleaseWakesAWaiterOfTheSameCluster) {
  bool other_woke = false;
  StartWaiter("other", absl::InfiniteDuration(), &other_woke);
  bool woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &woke);
  ASSERT_EQ(pool_.waiters(), 2u);

  pool_.Release(Connect(), 0, t0_);
  EXPECT_FALSE(woke) << "not inside the release";
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(woke) << "woken by the release, at the next turn of the loop";

  bool woke_again = false;
  StartWaiter("c", absl::InfiniteDuration(), &woke_again);
  pool_.Discard(Connect());
  EXPECT_FALSE(woke_again) << "not inside the discard";
  dispatcher_->RunOnce(milliseconds(0));
  EXPECT_TRUE(woke_again) << "woken by the discard";

  RunFor(milliseconds(200));
  EXPECT_FALSE(other_woke) << "another cluster's connections are no use to it";
  EXPECT_EQ(pool_.waiters(), 1u);
}

// A waiter woken for a freed connection whose wait then ends another way before it runs (its
// route timer fired in the same turn) passes the wake on to the next waiter of the cluster:
// otherwise that one would stay queued behind a free connection.
TEST_P(UpstreamPoolTest, AWakeThatFindsItsWaiterGoneGoesToTheNextWaiter) {
  event::Alarm* first_cancel = nullptr;
  bool first_woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &first_woke, &first_cancel);
  bool second_woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &second_woke);

  pool_.Discard(Connect());  // wakes the first, at the next turn
  ASSERT_NE(first_cancel, nullptr);
  first_cancel->Cancel();  // ... which its route timer ends first
  EXPECT_TRUE(first_woke);
  EXPECT_FALSE(second_woke);
  RunUntil([&] { return second_woke; });
  EXPECT_EQ(pool_.waiters(), 0u);
}

// A connection whose request ended without handing it back (destroyed with its coroutine) is
// still uncounted and frees its slot for whoever waits: nothing polls for it.
TEST_P(UpstreamPoolTest, AConnectionDestroyedWithoutDiscardIsUncountedAndWakesAWaiter) {
  bool woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &woke);
  auto c = Connect();
  pool_.NoteOpened(*c);
  EXPECT_EQ(pool_.OpenCount("c#1", "c-endpoint"), 1u);
  EXPECT_EQ(limits_.connections(), 1u);
  ASSERT_EQ(pool_.waiters(), 1u);
  c.reset();
  EXPECT_EQ(pool_.OpenCount("c#1", "c-endpoint"), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
  RunUntil([&] { return woke; });
  EXPECT_TRUE(woke);
  EXPECT_EQ(pool_.waiters(), 0u);
}

// A waiter with no time limit waits for a wake, however long; cancelling its alarm (the
// request's route timer firing) ends the wait at once.
TEST_P(UpstreamPoolTest, AWaitWithoutLimitEndsOnAWakeOrWhenCancelled) {
  event::Alarm* cancel = nullptr;
  bool woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &woke, &cancel);
  // Neither the loop turning nor time passing (a week: past any route timeout) ends it.
  RunFor(milliseconds(200), absl::Hours(24 * 7));
  EXPECT_FALSE(woke) << "no poll ends the wait";
  ASSERT_NE(cancel, nullptr);
  cancel->Cancel();
  EXPECT_TRUE(woke) << "at once, without a turn of the loop";
  EXPECT_EQ(cancel, nullptr) << "cleared once the wait is over";
  EXPECT_EQ(pool_.waiters(), 0u);
}

// A limited wait ends at its limit with no connection freed: the request gives up then.
TEST_P(UpstreamPoolTest, AWaitEndsAtItsLimit) {
  bool woke = false;
  StartWaiter("c", absl::Seconds(5), &woke);
  RunFor(milliseconds(0), absl::Milliseconds(4999));
  EXPECT_FALSE(woke);
  RunFor(milliseconds(0), absl::Milliseconds(1));
  EXPECT_TRUE(woke);
  EXPECT_EQ(pool_.waiters(), 0u);
}

// A waiter destroyed while queued (its worker stopping with requests in flight) leaves the
// pool nothing to wake: a later release touches neither its frame nor its alarm.
TEST_P(UpstreamPoolTest, AWaiterDestroyedWhileQueuedIsForgotten) {
  event::Alarm* cancel = nullptr;
  bool woke = false;
  StartWaiter("c", absl::InfiniteDuration(), &woke, &cancel);
  ASSERT_EQ(pool_.waiters(), 1u);
  tasks_.DestroyAll();
  EXPECT_EQ(pool_.waiters(), 0u);
  EXPECT_EQ(cancel, nullptr) << "the alarm it pointed at is gone";
  pool_.Release(Connect(), 0, t0_);
  RunFor(milliseconds(50));
  EXPECT_FALSE(woke);
  EXPECT_EQ(dispatcher_->timers().armed_count(), 0u);
}

// A connection that outlives its pool (a request's coroutine destroyed after the worker's
// pool at shutdown) touches nothing of it.
TEST_P(UpstreamPoolTest, AConnectionOutlivingItsPoolIsHarmless) {
  auto pool = std::make_unique<UpstreamPool>();
  auto c = Connect();
  pool->NoteOpened(*c);
  pool.reset();
  c.reset();
  EXPECT_EQ(limits_.connections(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Pollers, UpstreamPoolTest, ::testing::Values("epoll", "io_uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice::gateway
