#include "gateway/upstream/cluster_limits.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

using Admission = ClusterLimits::Admission;

PoolLimits Limits(uint32_t connections, uint32_t pending, uint32_t requests = 0,
                  uint32_t retries = 0) {
  PoolLimits l;
  l.max_connections = connections;
  l.max_pending_requests = pending;
  l.max_requests = requests;
  l.max_retries = retries;
  return l;
}

// Istio's circuit-breaking task: maxConnections 1, http1MaxPendingRequests 1.
TEST(ClusterLimitsTest, OneConnectionOnePendingThenOverflow) {
  ClusterLimits limits(Limits(1, 1));
  ClusterLimits::Ticket c1, p1, c2, p2, c3, p3;
  EXPECT_EQ(limits.Admit(false, false, &c1, &p1), Admission::kOpenNew);
  EXPECT_TRUE(c1);
  EXPECT_TRUE(p1) << "pending while its connection connects, as in Envoy";
  p1.Release();  // connected
  EXPECT_EQ(limits.Admit(false, true, &c2, &p2), Admission::kQueue);
  EXPECT_TRUE(p2);
  EXPECT_FALSE(c2);
  EXPECT_EQ(limits.Admit(false, true, &c3, &p3), Admission::kOverflow);
  EXPECT_EQ(limits.cx_overflow(), 1u);
  EXPECT_EQ(limits.pending_overflow(), 1u);
  // The pending request gets its turn once the connection is free.
  p2.Release();
  EXPECT_EQ(limits.pending(), 0u);
  EXPECT_EQ(limits.Admit(true, true, &c3, &p3), Admission::kUseIdle);
}

// Envoy checks the cluster's pending limit before it opens any connection: a request for a
// host the worker has no connection to is pending like any other, so a full queue refuses it
// even though its host's pool would have opened a connection past maxConnections.
TEST(ClusterLimitsTest, PendingLimitBindsBeforeAHostWithoutAConnectionOpensOne) {
  ClusterLimits limits(Limits(1, 1));
  ClusterLimits::Ticket c1, p1, c2, p2, c3, p3;
  ASSERT_EQ(limits.Admit(false, false, &c1, &p1), Admission::kOpenNew);
  p1.Release();
  ASSERT_EQ(limits.Admit(false, true, &c2, &p2), Admission::kQueue);  // behind c1's host
  EXPECT_EQ(limits.Admit(false, false, &c3, &p3), Admission::kOverflow) << "another host";
  EXPECT_FALSE(c3);
  EXPECT_EQ(limits.connections(), 1u);

  // With the queue free, a host without a connection opens one past maxConnections, and it
  // counts: the cluster's limit keeps binding its other connections.
  p2.Release();
  ASSERT_EQ(limits.Admit(false, false, &c3, &p3), Admission::kOpenNew);
  EXPECT_TRUE(c3);
  EXPECT_EQ(limits.connections(), 2u);
  p3.Release();
  c1.Release();
  EXPECT_FALSE(limits.TryConnection()) << "the forced connection still holds the only slot";
  c3.Release();
  EXPECT_EQ(limits.connections(), 0u);
}

// A queued request asking again keeps its pending ticket and does not count twice.
TEST(ClusterLimitsTest, AQueuedRequestAsksAgainWithItsPendingTicket) {
  ClusterLimits limits(Limits(1, 1));
  ClusterLimits::Ticket c1, p1, c2, p2;
  ASSERT_EQ(limits.Admit(false, false, &c1, &p1), Admission::kOpenNew);
  p1.Release();
  ASSERT_EQ(limits.Admit(false, true, &c2, &p2), Admission::kQueue);
  EXPECT_EQ(limits.Admit(false, true, &c2, &p2), Admission::kQueue);
  EXPECT_EQ(limits.pending(), 1u);
  c1.Release();
  EXPECT_EQ(limits.Admit(false, true, &c2, &p2), Admission::kOpenNew);
  EXPECT_TRUE(c2);
  EXPECT_EQ(limits.pending_overflow(), 0u);
}

TEST(ClusterLimitsTest, TicketsReleaseOnDestruction) {
  ClusterLimits limits(Limits(2, 0, 2, 1));
  {
    ClusterLimits::Ticket a = limits.TryRequest();
    ClusterLimits::Ticket b = limits.TryRequest();
    EXPECT_TRUE(a);
    EXPECT_TRUE(b);
    EXPECT_FALSE(limits.TryRequest());
    EXPECT_EQ(limits.requests(), 2u);
    ClusterLimits::Ticket moved = std::move(a);
    EXPECT_EQ(limits.requests(), 2u);
  }
  EXPECT_EQ(limits.requests(), 0u);
  EXPECT_EQ(limits.rq_overflow(), 1u);
}

TEST(ClusterLimitsTest, MaxRetriesCapsConcurrentRetries) {
  ClusterLimits limits(Limits(0, 0, 0, 1));
  ClusterLimits::Ticket first = limits.TryRetry();
  EXPECT_TRUE(first);
  EXPECT_FALSE(limits.TryRetry());
  first.Release();
  EXPECT_TRUE(limits.TryRetry());
  EXPECT_EQ(limits.retry_overflow(), 1u);
}

TEST(ClusterLimitsTest, ZeroMeansUnlimitedAsIstioSends) {
  ClusterLimits limits(Limits(0, 0, 0, 0));
  std::vector<ClusterLimits::Ticket> held;
  for (int i = 0; i < 10000; ++i) held.push_back(limits.TryRequest());
  EXPECT_EQ(limits.requests(), 10000u);
  EXPECT_EQ(limits.rq_overflow(), 0u);
}

TEST(ClusterLimitsTest, NewLimitsApplyToTheCountsInProgress) {
  ClusterLimits limits(Limits(0, 0, 5));
  std::vector<ClusterLimits::Ticket> held;
  for (int i = 0; i < 3; ++i) held.push_back(limits.TryRequest());
  limits.Update(Limits(0, 0, 3));
  EXPECT_FALSE(limits.TryRequest());
  held.pop_back();
  EXPECT_TRUE(limits.TryRequest());
}

TEST(ClusterLimitsTest, WorkersSharingALimitNeverHoldMoreThanIt) {
  ClusterLimits limits(Limits(0, 0, 8));
  std::atomic<uint32_t> peak{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        ClusterLimits::Ticket t = limits.TryRequest();
        if (!t) continue;
        uint32_t seen = limits.requests();
        uint32_t p = peak.load();
        while (seen > p && !peak.compare_exchange_weak(p, seen)) {
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(limits.requests(), 0u);
  // Racing increments may pass the limit briefly (as in Envoy), but never by more than the
  // number of racing workers.
  EXPECT_LE(peak.load(), 8u + 4u);
}

TEST(ClusterLimitsRegistryTest, ForgetsClustersNothingUsesAnyMore) {
  ClusterLimitsRegistry registry;
  std::shared_ptr<ClusterLimits> a = registry.Get("a");
  std::shared_ptr<ClusterLimits> b = registry.Get("b");
  EXPECT_EQ(registry.Get("a"), a) << "one object per cluster, shared by every worker";
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.Sweep(), 0u) << "both held";

  // A pooled connection keeps its slot after the table and the request let go.
  ClusterLimits::Ticket pooled = a->TryConnection();
  a.reset();
  EXPECT_EQ(registry.Sweep(), 0u);
  EXPECT_EQ(registry.Get("a")->connections(), 1u) << "the same entry, not a fresh one";
  pooled.Release();
  EXPECT_EQ(registry.Sweep(), 1u);
  EXPECT_EQ(registry.size(), 1u);

  ClusterLimits::Ticket request = b->TryRequest();
  b.reset();
  EXPECT_EQ(registry.Sweep(), 0u) << "a request in progress";
  request.Release();
  EXPECT_EQ(registry.Sweep(), 1u);
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_EQ(registry.Get("a")->connections(), 0u);
}

// Workers take and drop clusters and tickets while another thread sweeps: an entry in use
// is never dropped (a second Get finds the same object), and the registry ends empty.
TEST(ClusterLimitsRegistryTest, SweepsWhileWorkersUseIt) {
  ClusterLimitsRegistry registry;
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0};
  std::thread sweeper([&] {
    while (!done.load()) registry.Sweep();
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      ClusterLimits::Ticket pooled;  // outlives the holder that took it
      std::string pooled_cluster;
      for (int i = 0; i < 5000; ++i) {
        const std::string name = "cluster-" + std::to_string((i * 7 + w) % 5);
        std::shared_ptr<ClusterLimits> held = registry.Get(name);
        ClusterLimits::Ticket request = held->TryRequest();
        if (registry.Get(name) != held) mismatches.fetch_add(1);
        if (!pooled_cluster.empty() && registry.Get(pooled_cluster)->connections() == 0) {
          mismatches.fetch_add(1);  // its entry was dropped under the pooled connection
        }
        if (i % 3 == 0) {
          pooled = held->TryConnection();
          pooled_cluster = name;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  done.store(true);
  sweeper.join();
  EXPECT_EQ(mismatches.load(), 0);
  registry.Sweep();
  EXPECT_EQ(registry.size(), 0u);
}

}  // namespace
}  // namespace sluice::gateway
