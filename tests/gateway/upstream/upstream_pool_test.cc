// UpstreamPool on real loopback sockets: which idle connections it hands out and which it
// drops, and how it frees connection slots.

#include "gateway/upstream/upstream_pool.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

namespace asio = net::asio;
using net::tcp;

class UpstreamPoolTest : public ::testing::Test {
 protected:
  UpstreamPoolTest() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}

  // A connected pair: the pool's side, and the upstream's side (kept to close it at will).
  // Its pool is the cluster's generation `generation`.
  std::unique_ptr<UpstreamConnection> Connect(const std::string& cluster = "c",
                                              const std::string& generation = "1") {
    auto c = std::make_unique<UpstreamConnection>(io_.get_executor());
    c->stream.socket().connect(acceptor_.local_endpoint());
    peers_.push_back(acceptor_.accept());
    c->cluster = cluster;
    c->pool = cluster + "#" + generation;
    c->endpoint = cluster + "-endpoint";
    c->ticket = limits_.TryConnection();
    return c;
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> peers_;
  ClusterLimits limits_{PoolLimits{.max_connections = 8}};
  UpstreamPool pool_{io_};
  const event::MonotonicTime t0_ = event::SimulatedTimeSource::kDefaultStart;
  event::MonotonicTime At(absl::Duration since_t0) const {
    return t0_ + absl::ToChronoNanoseconds(since_t0);
  }
};

TEST_F(UpstreamPoolTest, ReusesMostRecentlyReleased) {
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

TEST_F(UpstreamPoolTest, DropsConnectionsIdlePastTheTimeoutAndFreesTheirSlot) {
  pool_.Release(Connect(), 0, t0_);
  EXPECT_EQ(limits_.connections(), 1u);
  EXPECT_NE(pool_.TakeIdle("c#1", "c-endpoint", absl::Seconds(5), At(absl::Seconds(4))), nullptr);
  pool_.Release(Connect(), 0, t0_);
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::Seconds(5), At(absl::Seconds(5))), nullptr);
  EXPECT_EQ(pool_.idle_count(), 0u);
}

TEST_F(UpstreamPoolTest, CloseIdleClosesConnectionsPastTheirOwnIdleTimeoutOnly) {
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

TEST_F(UpstreamPoolTest, CloseIdleClosesConnectionsTheUpstreamClosedWithoutARequest) {
  pool_.Release(Connect(), 0, t0_);  // no idle timeout
  pool_.Release(Connect(), 0, t0_);
  peers_.front().close();
  absl::SleepFor(absl::Milliseconds(20));  // the FIN needs a moment, even on loopback
  EXPECT_EQ(pool_.CloseIdle(At(absl::Hours(100))), 1u);
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_EQ(limits_.connections(), 1u);
}

TEST_F(UpstreamPoolTest, DropsConnectionsTheUpstreamClosed) {
  pool_.Release(Connect(), 0, t0_);
  peers_.back().close();
  absl::SleepFor(absl::Milliseconds(20));  // the FIN needs a moment, even on loopback
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(limits_.connections(), 0u);
}

TEST_F(UpstreamPoolTest, DropsConnectionsWithUnsolicitedBytes) {
  pool_.Release(Connect(), 0, t0_);
  asio::write(peers_.back(), asio::buffer("HTTP/1.1 200 OK\r\n", 17));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(pool_.TakeIdle("c#1", "c-endpoint", absl::ZeroDuration(), t0_), nullptr);
}

TEST_F(UpstreamPoolTest, ClosesConnectionsThatServedMaxRequests) {
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

TEST_F(UpstreamPoolTest, CloseOneIdleFreesASlotOfThatClusterOnly) {
  pool_.Release(Connect("a"), 0, t0_);
  EXPECT_FALSE(pool_.CloseOneIdle("b"));
  EXPECT_TRUE(pool_.CloseOneIdle("a"));
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
}

// Endpoints come and go with the configuration: an endpoint left without idle connections
// leaves nothing behind in the pool, whichever way its last one went.
TEST_F(UpstreamPoolTest, EndpointsWithoutIdleConnectionsAreForgotten) {
  pool_.Release(Connect("a"), 0, t0_);
  pool_.Release(Connect("b"), 0, t0_);
  EXPECT_EQ(pool_.idle_endpoints(), 2u);
  EXPECT_NE(pool_.TakeIdle("a#1", "a-endpoint", absl::ZeroDuration(), t0_), nullptr);  // taken
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
  EXPECT_EQ(pool_.idle_endpoints(), 0u) << "dropped as stale when asked for";
  EXPECT_EQ(pool_.TakeIdle("d#1", "never-seen", absl::ZeroDuration(), t0_), nullptr);
  EXPECT_EQ(pool_.idle_endpoints(), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
}

// Envoy keeps a pool per cluster: a connection kept alive for one cluster (or for one
// generation of a cluster's pool settings) never carries another's request, although it goes
// to the same endpoint.
TEST_F(UpstreamPoolTest, ConnectionsOfOnePoolAreNotHandedToAnother) {
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

TEST_F(UpstreamPoolTest, OpenCountIsPerPoolAndEndpoint) {
  auto a = Connect("a");
  pool_.NoteOpened(*a);
  EXPECT_EQ(pool_.OpenCount("a#1", "a-endpoint"), 1u);
  EXPECT_EQ(pool_.OpenCount("a#2", "a-endpoint"), 0u) << "a new generation's pool has none";
  pool_.Discard(std::move(a));
  EXPECT_EQ(pool_.OpenCount("a#1", "a-endpoint"), 0u);
}

// A configuration change drains the pools it leaves behind: their idle connections close at
// once (freeing their maxConnections slots), busy ones when they come back.
TEST_F(UpstreamPoolTest, PoolsNoLongerLiveAreDrained) {
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

TEST_F(UpstreamPoolTest, AReleaseWakesAWaiterOfTheSameCluster) {
  absl::Time woke = absl::InfiniteFuture();
  const absl::Time start = absl::Now();
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await pool_.WaitForRelease("c", absl::InfiniteDuration());
        woke = absl::Now();
      },
      asio::detached);
  auto c = Connect();
  asio::post(io_, [&] { pool_.Discard(std::move(c)); });
  io_.run_for(std::chrono::seconds(2));
  EXPECT_LT(woke - start, absl::Seconds(1)) << "woken by the release";
}

// A connection whose request ended without handing it back (destroyed with its coroutine) is
// still uncounted and frees its slot for whoever waits: nothing polls for it.
TEST_F(UpstreamPoolTest, AConnectionDestroyedWithoutDiscardIsUncountedAndWakesAWaiter) {
  bool woke = false;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await pool_.WaitForRelease("c", absl::InfiniteDuration());
        woke = true;
      },
      asio::detached);
  auto c = Connect();
  pool_.NoteOpened(*c);
  EXPECT_EQ(pool_.OpenCount("c#1", "c-endpoint"), 1u);
  EXPECT_EQ(limits_.connections(), 1u);
  io_.poll();
  ASSERT_EQ(pool_.waiters(), 1u);
  c.reset();
  EXPECT_EQ(pool_.OpenCount("c#1", "c-endpoint"), 0u);
  EXPECT_EQ(limits_.connections(), 0u);
  io_.run_for(std::chrono::seconds(2));
  EXPECT_TRUE(woke);
  EXPECT_EQ(pool_.waiters(), 0u);
}

// A waiter with no time limit waits for a wake, however long; cancelling its timer (the
// request's route timer firing) ends the wait at once.
TEST_F(UpstreamPoolTest, AWaitWithoutLimitEndsOnAWakeOrWhenCancelled) {
  asio::steady_timer* cancel = nullptr;
  bool woke = false;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await pool_.WaitForRelease("c", absl::InfiniteDuration(), &cancel);
        woke = true;
      },
      asio::detached);
  io_.run_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(woke) << "no poll ends the wait";
  ASSERT_NE(cancel, nullptr);
  cancel->cancel();
  io_.run_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(woke);
  EXPECT_EQ(cancel, nullptr) << "cleared once the wait is over";
}

// A connection that outlives its pool (a request's coroutine destroyed after the worker's
// pool at shutdown) touches nothing of it.
TEST_F(UpstreamPoolTest, AConnectionOutlivingItsPoolIsHarmless) {
  auto pool = std::make_unique<UpstreamPool>(io_);
  auto c = Connect();
  pool->NoteOpened(*c);
  pool.reset();
  c.reset();
  EXPECT_EQ(limits_.connections(), 0u);
}

}  // namespace
}  // namespace sluice::gateway
