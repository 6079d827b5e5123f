// Tests for the decision engine (server/routing/decider.cc) against Istio/Envoy behaviour as
// described in shared/reference/routing-semantics.md (sections 1, 4, 6, 8) and
// destinationrule-outlier-metrics.md (sections 2 and 4.3).
//
// Randomness: exact outcomes use absl::MockingBitGen. The engine draws
//   absl::Uniform<uint64_t>(rng, 0, total_weight)   weighted destination pick,
//   absl::Uniform<uint32_t>(rng, 0, denominator)    SampleFraction: delay, then abort, then mirror,
//   absl::Uniform<size_t>(rng, 0, n)                RANDOM and the two LEAST_REQUEST picks.
// Statistical tests use a seeded absl::BitGen, so they are deterministic for a given Abseil.

#include "lib/routing/decider.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/mock_distributions.h"
#include "absl/random/mocking_bit_gen.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

using ::testing::_;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Return;

// On LP64 Linux absl::Uniform<size_t> (load balancer picks) and absl::Uniform<uint64_t> (the
// weighted pick) are the same mock. Tests that mock one keep the other out of play: weighted
// tests route to single-endpoint subsets, load-balancer tests to a single destination.
static_assert(std::is_same_v<size_t, uint64_t>, "these tests assume size_t is uint64_t");

// reviews: one endpoint per version (v1 19081, v2 19082).
// ratings: three endpoints 19091..19093.
// details: six endpoints 19101..19106.
// weighted: two endpoints, load-balancing weights 3 (19111) and 1 (19112).
constexpr char kServices[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews]
  ports:
  - number: 9080
    name: http
  endpoints:
  - address: 127.0.0.1
    ports: {http: 19081}
    labels: {version: v1}
  - address: 127.0.0.1
    ports: {http: 19082}
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts: [ratings]
  ports:
  - number: 9080
    name: http
  endpoints:
  - address: 127.0.0.1
    ports: {http: 19091}
  - address: 127.0.0.1
    ports: {http: 19092}
  - address: 127.0.0.1
    ports: {http: 19093}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: details
spec:
  hosts: [details]
  ports:
  - number: 9080
    name: http
  endpoints:
  - address: 127.0.0.1
    ports: {http: 19101}
  - address: 127.0.0.1
    ports: {http: 19102}
  - address: 127.0.0.1
    ports: {http: 19103}
  - address: 127.0.0.1
    ports: {http: 19104}
  - address: 127.0.0.1
    ports: {http: 19105}
  - address: 127.0.0.1
    ports: {http: 19106}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: weighted
spec:
  hosts: [weighted]
  ports:
  - number: 9080
    name: http
  endpoints:
  - address: 127.0.0.1
    ports: {http: 19111}
    weight: 3
  - address: 127.0.0.1
    ports: {http: 19112}
    weight: 1
)";

constexpr char kReviewsSubsets[] = R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
)";

std::string Fqdn(absl::string_view short_name) {
  return absl::StrCat(short_name, ".default.svc.cluster.local");
}

// A DestinationRule for `host` with the given trafficPolicy body (YAML, indented 4).
std::string Rule(absl::string_view host, absl::string_view traffic_policy) {
  return absl::StrCat("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n",
                      "  name: ", host, "\nspec:\n  host: ", host, "\n  trafficPolicy:\n",
                      traffic_policy);
}

// A VirtualService for `host` whose `http` list is `http` (YAML, indented 2).
std::string Service(absl::string_view host, absl::string_view http) {
  return absl::StrCat("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n",
                      "  name: ", host, "\nspec:\n  hosts: [", host, "]\n  http:\n", http);
}

class DeciderTest : public ::testing::Test {
 protected:
  // Compiles the shared services plus `documents` (VirtualServices, DestinationRules, each
  // a complete YAML document), in that order.
  bool Build(const std::vector<std::string>& documents) {
    std::string text = kServices;
    for (const std::string& doc : documents) absl::StrAppend(&text, "---\n", doc);
    config::LoadResult r = config::LoadText(text, "t.yaml");
    if (!r.ok()) {
      ADD_FAILURE() << r.diagnostics.ToString() << "\n" << text;
      return false;
    }
    auto snap = CompileSnapshot(std::move(r.config), 1);
    if (!snap.ok()) {
      ADD_FAILURE() << snap.status();
      return false;
    }
    snapshot_ = *std::move(snap);
    return true;
  }

  Decision Run(absl::string_view authority, absl::string_view path, absl::BitGenRef rng,
               DecisionTrace* trace = nullptr) {
    RequestAttributes req;
    req.authority = std::string(authority);
    req.path = std::string(path);
    return Decide(*snapshot_, req, rng, trace);
  }

  Decision Run(const RequestAttributes& req, absl::BitGenRef rng) {
    return Decide(*snapshot_, req, rng);
  }

  const Cluster& ClusterOf(absl::string_view short_host, absl::string_view subset = "") {
    const Cluster* c = snapshot_->FindCluster(ClusterName(Fqdn(short_host), subset, 9080));
    EXPECT_NE(c, nullptr) << short_host << " " << subset;
    return *c;
  }

  void Eject(absl::string_view short_host, std::initializer_list<int> indices) {
    const Cluster& c = ClusterOf(short_host);
    for (int i : indices) c.endpoints[i].runtime->ejected.store(true);
  }

  // The port of the chosen endpoint: identifies it in these tests.
  static uint32_t Port(const Decision& d) {
    EXPECT_NE(d.cluster, nullptr);
    EXPECT_GE(d.endpoint_index, 0);
    if (d.cluster == nullptr || d.endpoint_index < 0) return 0;
    return d.cluster->endpoints[d.endpoint_index].port;
  }

  std::shared_ptr<const Snapshot> snapshot_;
};

// -------------------------------------------------------------------------------------------
// No route: 404 NR (reference 1.1, 6, scenario 12)

TEST_F(DeciderTest, UnknownAuthorityIsNotFoundWithFlagNR) {
  ASSERT_TRUE(Build({}));
  absl::MockingBitGen gen;
  DecisionTrace trace;
  const Decision d = Run("unknown.example.com:80", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 404u);
  EXPECT_STREQ(d.response_flags, "NR");
  EXPECT_THAT(d.body, IsEmpty());
  EXPECT_EQ(d.virtual_host, nullptr);
  EXPECT_EQ(d.route, nullptr);
  EXPECT_EQ(d.endpoint_index, -1);
  EXPECT_THAT(trace.virtual_host, HasSubstr("none"));
}

TEST_F(DeciderTest, KnownHostWithoutMatchingRuleIsNotFoundWithFlagNR) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {exact: /only}}]
    route: [{destination: {host: reviews}}]
)")}));
  absl::MockingBitGen gen;
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 404u);
  EXPECT_STREQ(d.response_flags, "NR");
  EXPECT_THAT(d.body, IsEmpty());
  ASSERT_NE(d.virtual_host, nullptr);
  EXPECT_EQ(d.virtual_host->name, Fqdn("reviews"));
  EXPECT_EQ(d.route, nullptr);
  ASSERT_EQ(trace.steps.size(), 1u);
  EXPECT_FALSE(trace.steps[0].matched);
}

TEST_F(DeciderTest, Scenario12FirstMatchWinsPlainPrefixAndNoMatchIsNR) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - name: a
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - name: b
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
)")}));
  absl::MockingBitGen gen;

  DecisionTrace trace;
  Decision d = Run("reviews:9080", "/api/v2/x", gen, &trace);
  ASSERT_NE(d.route, nullptr);
  EXPECT_EQ(d.route->name, "a");  // /api is listed first and matches
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(Port(d), 19081u);
  ASSERT_EQ(trace.steps.size(), 1u);  // rule b is never evaluated
  EXPECT_TRUE(trace.steps[0].matched);

  d = Run("reviews:9080", "/apiary", gen);  // plain string prefix, not path-separated
  ASSERT_NE(d.route, nullptr);
  EXPECT_EQ(d.route->name, "a");

  trace = {};
  d = Run("reviews:9080", "/other", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 404u);
  EXPECT_STREQ(d.response_flags, "NR");
  EXPECT_THAT(d.body, IsEmpty());
  EXPECT_EQ(d.endpoint_index, -1);
  EXPECT_EQ(trace.steps.size(), 2u);
}

TEST_F(DeciderTest, ServiceWithoutVirtualServiceForwardsOnTheDefaultRoute) {
  ASSERT_TRUE(Build({}));
  absl::BitGen gen(std::seed_seq{1});
  const Decision d = Run("ratings:9080", "/anything", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.cluster, &ClusterOf("ratings"));
  EXPECT_GE(d.endpoint_index, 0);
  ASSERT_NE(d.route, nullptr);
  EXPECT_EQ(d.route->retry.num_retries, 2u);  // Istio's default retry policy
}

// -------------------------------------------------------------------------------------------
// Weighted destinations (reference 1.6, scenario 11): random % total, cumulative ranges

TEST_F(DeciderTest, Scenario11Weights90To10WalkCumulativeRanges) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 100))
      .WillOnce(Return(0))
      .WillOnce(Return(89))
      .WillOnce(Return(90))
      .WillOnce(Return(99));
  for (const char* want : {"v1", "v1", "v2", "v2"}) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    ASSERT_NE(d.destination, nullptr);
    EXPECT_EQ(d.destination->subset, want);
    EXPECT_EQ(d.cluster, &ClusterOf("reviews", want));
    EXPECT_EQ(Port(d), std::string(want) == "v1" ? 19081u : 19082u);
  }
}

TEST_F(DeciderTest, Scenario11Weights1And3NeedNotSumTo100) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 1
    - destination: {host: reviews, subset: v2}
      weight: 3
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 4))
      .WillOnce(Return(0))
      .WillOnce(Return(1))
      .WillOnce(Return(3));
  for (const char* want : {"v1", "v2", "v2"}) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_NE(d.destination, nullptr);
    EXPECT_EQ(d.destination->subset, want);
  }
}

TEST_F(DeciderTest, ZeroWeightDestinationIsNeverChosen) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 0
    - destination: {host: ratings}
      weight: 50
)")}));
  absl::MockingBitGen gen;
  // v2 is dropped: the ranges are v1 [0,50), ratings [50,100).
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 100))
      .WillOnce(Return(49))
      .WillOnce(Return(50))
      .WillOnce(Return(99));
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 3))  // ratings' LEAST_REQUEST picks
      .WillRepeatedly(Return(0));
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 2))  // its retry alternates
      .WillRepeatedly(Return(0));
  std::vector<std::string> hosts;
  for (int i = 0; i < 3; ++i) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_NE(d.destination, nullptr);
    hosts.push_back(absl::StrCat(d.destination->host, "/", d.destination->subset));
  }
  EXPECT_THAT(hosts, ::testing::ElementsAre(absl::StrCat(Fqdn("reviews"), "/v1"),
                                            absl::StrCat(Fqdn("ratings"), "/"),
                                            absl::StrCat(Fqdn("ratings"), "/")));
}

TEST_F(DeciderTest, OnlyOnePositiveWeightLeavesASingleDestinationAndNoDraw) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    - destination: {host: reviews, subset: v2}
      weight: 0
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, _, _)).Times(0);
  for (int i = 0; i < 20; ++i) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_NE(d.destination, nullptr);
    EXPECT_EQ(d.destination->subset, "v1");
  }
}

TEST_F(DeciderTest, SingleDestinationDrawsNothingWhateverItsWeight) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v2}
      weight: 7
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, _, _)).Times(0);
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(Port(d), 19082u);
  EXPECT_EQ(trace.weight_draw, "single destination");
}

TEST_F(DeciderTest, TraceRecordsTheWeightDraw) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 100)).WillOnce(Return(93));
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.destination->subset, "v2");
  EXPECT_THAT(trace.weight_draw, HasSubstr("93"));
  EXPECT_THAT(trace.weight_draw, HasSubstr("100"));
  EXPECT_THAT(trace.weight_draw, HasSubstr("v2"));
  EXPECT_EQ(trace.virtual_host, Fqdn("reviews"));
}

// -------------------------------------------------------------------------------------------
// Missing cluster: 503 NC (reference 1.5, 6)

TEST_F(DeciderTest, SubsetNoDestinationRuleDefinesIsServiceUnavailableWithFlagNC) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v9}
)")}));
  absl::MockingBitGen gen;
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "NC");
  EXPECT_THAT(d.body, IsEmpty());
  EXPECT_EQ(d.cluster, nullptr);
  EXPECT_EQ(d.endpoint_index, -1);
  ASSERT_NE(d.destination, nullptr);
  EXPECT_EQ(d.destination->cluster_name, ClusterName(Fqdn("reviews"), "v9", 9080));
  EXPECT_THAT(trace.endpoint_choice, HasSubstr("does not exist"));
}

TEST_F(DeciderTest, SubsetWithoutAnyDestinationRuleIsNC) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "NC");
}

TEST_F(DeciderTest, UnknownDestinationHostIsNC) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - route:
    - destination: {host: nowhere.example.com}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "NC");
  EXPECT_EQ(d.cluster, nullptr);
}

TEST_F(DeciderTest, UndefinedSubsetIsNCWhenTheAbortDoesNotFire) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 418, percentage: {value: 50}}
    route:
    - destination: {host: reviews, subset: v9}
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(500000));  // not below 500000: no abort
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.abort_http_status, 0u);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "NC");
}

TEST_F(DeciderTest, NoMirrorWhenThePrimaryClusterIsMissing) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v9}
    mirror: {host: reviews, subset: v2}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_STREQ(d.response_flags, "NC");
  EXPECT_EQ(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_endpoint_index, -1);
}

// -------------------------------------------------------------------------------------------
// Health: 503 UH and panic mode (reference 1.5, 6; outlier doc 4.3)

TEST_F(DeciderTest, AllEndpointsEjectedWithOutlierDetectionIsNoHealthyUpstream) {
  // An outlierDetection block writes minHealthPercent (default 0) as the panic threshold.
  ASSERT_TRUE(Build({Rule("ratings", "    outlierDetection: {consecutive5xxErrors: 3}\n")}));
  ASSERT_EQ(ClusterOf("ratings").policy.outlier.healthy_panic_threshold, 0u);
  Eject("ratings", {0, 1, 2});
  absl::BitGen gen(std::seed_seq{2});
  DecisionTrace trace;
  const Decision d = Run("ratings:9080", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "UH");
  EXPECT_EQ(d.body, "no healthy upstream");
  EXPECT_EQ(d.endpoint_index, -1);
  EXPECT_EQ(d.cluster, &ClusterOf("ratings"));
  EXPECT_THAT(d.alternates, IsEmpty());
  EXPECT_THAT(trace.endpoint_choice, HasSubstr("no healthy endpoint"));
}

TEST_F(DeciderTest, SubsetWithoutEndpointsIsNoHealthyUpstream) {
  ASSERT_TRUE(Build({R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v3
    labels: {version: v3}
)",
                     Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v3}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.status, 503u);
  EXPECT_STREQ(d.response_flags, "UH");
  EXPECT_EQ(d.body, "no healthy upstream");
  ASSERT_NE(d.cluster, nullptr);
  EXPECT_TRUE(d.cluster->endpoints.empty());
}

TEST_F(DeciderTest, BelowMinHealthPercentPanicModeMayChooseEjectedEndpoints) {
  ASSERT_TRUE(Build({Rule("ratings", R"(    loadBalancer: {simple: RANDOM}
    outlierDetection: {minHealthPercent: 50}
)")}));
  Eject("ratings", {0, 1});  // 1 of 3 healthy: 33% < 50%
  absl::BitGen gen(std::seed_seq{3});
  std::set<uint32_t> chosen;
  DecisionTrace trace;
  for (int i = 0; i < 300; ++i) {
    const Decision d = Run("ratings:9080", "/x", gen, i == 0 ? &trace : nullptr);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    chosen.insert(Port(d));
  }
  // Each endpoint has chance 1/3 per decision; missing one in 300 has probability ~1e-52.
  EXPECT_EQ(chosen, (std::set<uint32_t>{19091, 19092, 19093}));
  EXPECT_THAT(trace.endpoint_choice, HasSubstr("panic"));
}

TEST_F(DeciderTest, EjectedEndpointsAreNeverChosenOutsidePanic) {
  ASSERT_TRUE(Build({Rule("details", "    outlierDetection: {minHealthPercent: 50}\n")}));
  Eject("details", {1, 4});  // 4 of 6 healthy: 67%, not below 50%
  absl::BitGen gen(std::seed_seq{4});
  std::set<uint32_t> chosen;
  for (int i = 0; i < 2000; ++i) {
    const Decision d = Run("details:9080", "/x", gen);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    chosen.insert(Port(d));
    for (uint32_t alt : d.alternates) {
      EXPECT_THAT(alt, Not(AnyOf(1u, 4u)));
    }
  }
  EXPECT_EQ(chosen, (std::set<uint32_t>{19101, 19103, 19104, 19106}));
}

TEST_F(DeciderTest, PanicNeedsOverprovisionedAvailabilityBelowFull) {
  // Outlier doc 4.3: panic is only considered when min(100, 140 * healthy / total) < 100.
  ASSERT_TRUE(Build({Rule("details", R"(    loadBalancer: {simple: RANDOM}
    outlierDetection: {minHealthPercent: 90}
)")}));
  Eject("details", {0});
  absl::BitGen gen(std::seed_seq{5});
  for (int i = 0; i < 600; ++i) {
    const Decision d = Run("details:9080", "/x", gen);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    ASSERT_NE(d.endpoint_index, 0) << "decision " << i << " chose the ejected endpoint";
  }
}

// -------------------------------------------------------------------------------------------
// Load balancers (outlier doc 2). Retries are off so that alternates draw nothing.

constexpr char kNoRetries[] = R"(  - retries: {attempts: 0}
    route:
    - destination: {host: ratings}
)";

TEST_F(DeciderTest, RoundRobinCyclesEndpointsInOrder) {
  ASSERT_TRUE(Build({Rule("ratings", "    loadBalancer: {simple: ROUND_ROBIN}\n"),
                     Service("ratings", kNoRetries)}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, _, _)).Times(0);
  std::vector<uint32_t> ports;
  for (int i = 0; i < 7; ++i) ports.push_back(Port(Run("ratings:9080", "/x", gen)));
  EXPECT_THAT(ports, ::testing::ElementsAre(19091, 19092, 19093, 19091, 19092, 19093, 19091));
}

TEST_F(DeciderTest, RoundRobinCyclesOverHealthyEndpointsOnly) {
  ASSERT_TRUE(Build({Rule("ratings", R"(    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5}
)"),
                     Service("ratings", kNoRetries)}));
  Eject("ratings", {1});
  absl::MockingBitGen gen;
  std::vector<uint32_t> ports;
  for (int i = 0; i < 4; ++i) ports.push_back(Port(Run("ratings:9080", "/x", gen)));
  EXPECT_THAT(ports, ::testing::ElementsAre(19091, 19093, 19091, 19093));
}

TEST_F(DeciderTest, RoundRobinPrimariesStayInOrderWhenRetryAlternatesAreComputed) {
  // Envoy chooses a retry host only when a retry happens, so first attempts keep cycling.
  ASSERT_TRUE(Build({Rule("details", "    loadBalancer: {simple: ROUND_ROBIN}\n")}));
  absl::MockingBitGen gen;
  std::vector<uint32_t> ports;
  for (int i = 0; i < 6; ++i) {
    const Decision d = Run("details:9080", "/x", gen);  // default route: 2 retries
    EXPECT_EQ(d.alternates.size(), 2u);
    ports.push_back(Port(d));
  }
  EXPECT_THAT(ports, ::testing::ElementsAre(19101, 19102, 19103, 19104, 19105, 19106));
}

TEST_F(DeciderTest, RoundRobinHonoursEndpointWeights) {
  ASSERT_TRUE(Build({Rule("weighted", "    loadBalancer: {simple: ROUND_ROBIN}\n"),
                     Service("weighted", R"(  - retries: {attempts: 0}
    route:
    - destination: {host: weighted}
)")}));
  absl::MockingBitGen gen;
  int heavy = 0;
  for (int i = 0; i < 400; ++i) heavy += Port(Run("weighted:9080", "/x", gen)) == 19111;
  // EDF keeps every window within one pick of the exact 3:1 share.
  EXPECT_NEAR(heavy, 300, 2);
}

TEST_F(DeciderTest, LeastRequestHonoursEndpointWeights) {
  ASSERT_TRUE(Build({Service("weighted", R"(  - retries: {attempts: 0}
    route:
    - destination: {host: weighted}
)")}));
  absl::BitGen gen(std::seed_seq{6});
  int heavy = 0;
  constexpr int kN = 4000;
  for (int i = 0; i < kN; ++i) heavy += Port(Run("weighted:9080", "/x", gen)) == 19111;
  // Deterministic EDF in Envoy; ±3 points leaves room for any tie-breaking.
  EXPECT_NEAR(static_cast<double>(heavy) / kN, 0.75, 0.03);
}

TEST_F(DeciderTest, RandomPicksTheDrawnIndex) {
  ASSERT_TRUE(Build(
      {Rule("ratings", "    loadBalancer: {simple: RANDOM}\n"), Service("ratings", kNoRetries)}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3))
      .WillOnce(Return(2))
      .WillOnce(Return(0))
      .WillOnce(Return(1));
  DecisionTrace trace;
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen, &trace)), 19093u);
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19091u);
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19092u);
  EXPECT_THAT(trace.endpoint_choice, HasSubstr("RANDOM"));
}

TEST_F(DeciderTest, LeastRequestIsTheDefaultAndKeepsTheLessLoadedOfTwoPicks) {
  ASSERT_TRUE(Build({Service("ratings", kNoRetries)}));
  const Cluster& c = ClusterOf("ratings");
  ASSERT_EQ(c.policy.load_balancer, LoadBalancer::kLeastRequest);
  c.endpoints[0].runtime->in_flight.store(5);
  c.endpoints[1].runtime->in_flight.store(2);
  c.endpoints[2].runtime->in_flight.store(1);
  absl::MockingBitGen gen;
  {
    InSequence seq;
    // (a, b) = (0, 2): b has fewer requests.
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(0));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(2));
    // (a, b) = (2, 0): a has fewer requests.
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(2));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(0));
    // (a, b) = (0, 1): b.
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(0));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(1));
  }
  DecisionTrace trace;
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen, &trace)), 19093u);
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19093u);
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19092u);
  EXPECT_THAT(trace.endpoint_choice, HasSubstr("LEAST_REQUEST"));
}

TEST_F(DeciderTest, LeastRequestTieKeepsTheFirstPick) {
  ASSERT_TRUE(Build({Service("ratings", kNoRetries)}));
  const Cluster& c = ClusterOf("ratings");
  c.endpoints[0].runtime->in_flight.store(3);
  c.endpoints[1].runtime->in_flight.store(3);
  absl::MockingBitGen gen;
  {
    InSequence seq;
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(1));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(0));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(0));
    EXPECT_CALL(absl::MockUniform<size_t>(), Call(gen, 0, 3)).WillOnce(Return(1));
  }
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19092u);
  EXPECT_EQ(Port(Run("ratings:9080", "/x", gen)), 19091u);
}

TEST_F(DeciderTest, LoadBalancerReadsButNeverWritesEndpointLoad) {
  ASSERT_TRUE(Build({Service("ratings", kNoRetries)}));
  const Cluster& c = ClusterOf("ratings");
  absl::BitGen gen(std::seed_seq{7});
  for (int i = 0; i < 50; ++i) Run("ratings:9080", "/x", gen);
  for (const Endpoint& e : c.endpoints) {
    EXPECT_EQ(e.runtime->in_flight.load(), 0);
    EXPECT_FALSE(e.runtime->ejected.load());
  }
}

// -------------------------------------------------------------------------------------------
// Retry alternates (Istio's previous-hosts predicate)

TEST_F(DeciderTest, TwoRetriesOverThreeEndpointsGiveTwoDistinctOtherAlternates) {
  ASSERT_TRUE(Build({Service("ratings", R"(  - retries: {attempts: 2}
    route:
    - destination: {host: ratings}
)")}));
  absl::BitGen gen(std::seed_seq{8});
  for (int i = 0; i < 100; ++i) {
    const Decision d = Run("ratings:9080", "/x", gen);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    ASSERT_EQ(d.alternates.size(), 2u);
    std::set<uint32_t> all{static_cast<uint32_t>(d.endpoint_index), d.alternates[0],
                           d.alternates[1]};
    EXPECT_EQ(all.size(), 3u) << "primary " << d.endpoint_index << " alternates " << d.alternates[0]
                              << "," << d.alternates[1];
  }
}

TEST_F(DeciderTest, SingleEndpointHasNoAlternates) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - retries: {attempts: 3}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(Port(d), 19081u);
  EXPECT_THAT(d.alternates, IsEmpty());
}

TEST_F(DeciderTest, RetryIgnorePreviousHostsFalseGivesNoAlternates) {
  ASSERT_TRUE(
      Build({Service("ratings", R"(  - retries: {attempts: 2, retryIgnorePreviousHosts: false}
    route:
    - destination: {host: ratings}
)")}));
  absl::BitGen gen(std::seed_seq{9});
  const Decision d = Run("ratings:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_THAT(d.alternates, IsEmpty());
}

TEST_F(DeciderTest, ZeroAttemptsGivesNoAlternates) {
  ASSERT_TRUE(Build({Service("ratings", kNoRetries)}));
  absl::BitGen gen(std::seed_seq{10});
  const Decision d = Run("ratings:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_THAT(d.alternates, IsEmpty());
}

TEST_F(DeciderTest, EjectedEndpointsAreNeverAlternates) {
  ASSERT_TRUE(Build({Rule("ratings", "    outlierDetection: {consecutive5xxErrors: 5}\n"),
                     Service("ratings", R"(  - retries: {attempts: 2}
    route:
    - destination: {host: ratings}
)")}));
  Eject("ratings", {1});
  absl::BitGen gen(std::seed_seq{11});
  for (int i = 0; i < 100; ++i) {
    const Decision d = Run("ratings:9080", "/x", gen);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    EXPECT_NE(d.endpoint_index, 1);
    ASSERT_EQ(d.alternates.size(), 1u);  // only one other healthy endpoint
    EXPECT_NE(d.alternates[0], 1u);
    EXPECT_NE(d.alternates[0], static_cast<uint32_t>(d.endpoint_index));
  }
}

// -------------------------------------------------------------------------------------------
// Fault injection (reference 4, scenario 15)

TEST_F(DeciderTest, Scenario15aAbortAtHundredPercentNeedsNoEndpointRetryOrMirror) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    retries: {attempts: 3, retryOn: 5xx}
    route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
)")}));
  absl::MockingBitGen gen;
  // 100% fires without a draw (numerator >= denominator).
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, _, _)).Times(0);
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.abort_http_status, 503u);
  EXPECT_THAT(d.abort_grpc_status, IsEmpty());
  EXPECT_EQ(d.endpoint_index, -1);
  EXPECT_THAT(d.alternates, IsEmpty());
  EXPECT_EQ(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_endpoint_index, -1);
  EXPECT_EQ(d.delay, absl::ZeroDuration());
  EXPECT_THAT(trace.fault_draw, HasSubstr("abort"));
  EXPECT_THAT(trace.fault_draw, HasSubstr("fired"));
}

TEST_F(DeciderTest, AbortWinsOverAnUndefinedSubsetBecauseTheFaultFilterRunsFirst) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v9}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.abort_http_status, 503u);
  EXPECT_STREQ(d.response_flags, "");
  EXPECT_EQ(d.cluster, nullptr);
  EXPECT_EQ(d.endpoint_index, -1);
}

TEST_F(DeciderTest, AbortWinsOverNoHealthyUpstream) {
  ASSERT_TRUE(Build({Rule("ratings", "    outlierDetection: {consecutive5xxErrors: 5}\n"),
                     Service("ratings", R"(  - fault:
      abort: {httpStatus: 429, percentage: {value: 100}}
    route:
    - destination: {host: ratings}
)")}));
  Eject("ratings", {0, 1, 2});
  absl::MockingBitGen gen;
  const Decision d = Run("ratings:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.abort_http_status, 429u);
  EXPECT_EQ(d.endpoint_index, -1);
}

TEST_F(DeciderTest, GrpcAbortCarriesTheStatusName) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.abort_grpc_status, "UNAVAILABLE");
  EXPECT_EQ(d.abort_http_status, 0u);
  EXPECT_EQ(d.endpoint_index, -1);
}

TEST_F(DeciderTest, Scenario15bAbortWithoutPercentageNeverFires) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 503}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::BitGen gen(std::seed_seq{12});
  for (int i = 0; i < 1000; ++i) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_EQ(d.abort_http_status, 0u);
    ASSERT_EQ(d.kind, Decision::Kind::kForward);
    ASSERT_EQ(Port(d), 19081u);
  }
}

TEST_F(DeciderTest, DelayWithoutPercentageNeverFires) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      delay: {fixedDelay: 2s}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::BitGen gen(std::seed_seq{13});
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(Run("reviews:9080", "/x", gen).delay, absl::ZeroDuration());
  }
}

TEST_F(DeciderTest, Scenario15cDelayAtHundredPercentDelaysAndStillForwards) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      delay: {fixedDelay: 2s, percentage: {value: 100}}
    timeout: 1s
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.delay, absl::Seconds(2));
  EXPECT_EQ(d.abort_http_status, 0u);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(Port(d), 19081u);
}

constexpr char kHalfDelayHalfAbort[] = R"(  - fault:
      delay: {fixedDelay: 5s, percentage: {value: 50}}
      abort: {httpStatus: 503, percentage: {value: 50}}
    route:
    - destination: {host: reviews, subset: v1}
)";

TEST_F(DeciderTest, DelayAndAbortAreIndependentDrawsDelayFiresAbortDoesNot) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", kHalfDelayHalfAbort)}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(499999))   // delay: 499999 < 500000 fires
      .WillOnce(Return(500000));  // abort: does not
  DecisionTrace trace;
  const Decision d = Run("reviews:9080", "/x", gen, &trace);
  EXPECT_EQ(d.delay, absl::Seconds(5));
  EXPECT_EQ(d.abort_http_status, 0u);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(Port(d), 19081u);
  EXPECT_THAT(trace.fault_draw, HasSubstr("delay"));
  EXPECT_THAT(trace.fault_draw, HasSubstr("not fired"));
}

TEST_F(DeciderTest, DelayAndAbortAreIndependentDrawsAbortFiresDelayDoesNot) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", kHalfDelayHalfAbort)}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(500000))  // delay: does not fire
      .WillOnce(Return(0));      // abort: fires
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.delay, absl::ZeroDuration());
  EXPECT_EQ(d.abort_http_status, 503u);
  EXPECT_EQ(d.endpoint_index, -1);
}

TEST_F(DeciderTest, DelayAndAbortCanBothFire) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", kHalfDelayHalfAbort)}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(0))
      .WillOnce(Return(1));
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.delay, absl::Seconds(5));
  EXPECT_EQ(d.abort_http_status, 503u);
}

TEST_F(DeciderTest, TenthOfAPercentIsOneThousandPartsPerMillion) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 500, percentage: {value: 0.1}}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  ASSERT_TRUE(snapshot_->routes()[0]->fault.has_value());
  const config::FractionalPercent& p = *snapshot_->routes()[0]->fault->abort->percentage;
  EXPECT_EQ(p.numerator, 1000u);
  EXPECT_EQ(p.denominator, 1000000u);
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(999))
      .WillOnce(Return(1000));
  EXPECT_EQ(Run("reviews:9080", "/x", gen).abort_http_status, 500u);
  EXPECT_EQ(Run("reviews:9080", "/x", gen).abort_http_status, 0u);
}

TEST_F(DeciderTest, DeprecatedIntegerPercentIsOverAHundred) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      delay: {fixedDelay: 100ms, percent: 5}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 100u))
      .WillOnce(Return(4))
      .WillOnce(Return(5));
  EXPECT_EQ(Run("reviews:9080", "/x", gen).delay, absl::Milliseconds(100));
  EXPECT_EQ(Run("reviews:9080", "/x", gen).delay, absl::ZeroDuration());
}

TEST_F(DeciderTest, SampleFractionIsRandomModDenominatorBelowNumerator) {
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 100u))
      .WillOnce(Return(29))
      .WillOnce(Return(30));
  EXPECT_TRUE(SampleFraction({30, 100}, gen));
  EXPECT_FALSE(SampleFraction({30, 100}, gen));
  // Edges draw nothing (a draw would hit the mock's unexpected-call check).
  EXPECT_FALSE(SampleFraction({0, 100}, gen));
  EXPECT_TRUE(SampleFraction({100, 100}, gen));
  EXPECT_TRUE(SampleFraction({250, 100}, gen));  // numerator above denominator: always
}

// -------------------------------------------------------------------------------------------
// Mirror (reference 1.7)

TEST_F(DeciderTest, MirrorWithoutPercentageAlwaysMirrors) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, _, _)).Times(0);
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(Port(d), 19081u);
  ASSERT_NE(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_cluster, &ClusterOf("reviews", "v2"));
  ASSERT_EQ(d.mirror_endpoint_index, 0);
  EXPECT_EQ(d.mirror_cluster->endpoints[0].port, 19082u);
}

TEST_F(DeciderTest, MirrorPercentageZeroNeverMirrors) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 0}
)")}));
  absl::BitGen gen(std::seed_seq{14});
  for (int i = 0; i < 1000; ++i) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ASSERT_EQ(d.mirror, nullptr);
    ASSERT_EQ(d.mirror_cluster, nullptr);
    ASSERT_EQ(d.mirror_endpoint_index, -1);
  }
}

TEST_F(DeciderTest, MirrorPercentageIsSampled) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25}
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
      .WillOnce(Return(249999))
      .WillOnce(Return(250000));
  EXPECT_NE(Run("reviews:9080", "/x", gen).mirror, nullptr);
  EXPECT_EQ(Run("reviews:9080", "/x", gen).mirror, nullptr);
}

TEST_F(DeciderTest, DeprecatedMirrorPercentIsOverAHundred) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrorPercent: 30
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 100u))
      .WillOnce(Return(29))
      .WillOnce(Return(30));
  EXPECT_NE(Run("reviews:9080", "/x", gen).mirror, nullptr);
  EXPECT_EQ(Run("reviews:9080", "/x", gen).mirror, nullptr);
}

TEST_F(DeciderTest, MirrorToUndefinedSubsetIsSkipped) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v9}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(Port(d), 19081u);
  EXPECT_EQ(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_cluster, nullptr);
  EXPECT_EQ(d.mirror_endpoint_index, -1);
}

TEST_F(DeciderTest, MirrorsListSkipsAnUndefinedSubsetForTheNextOne) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, subset: v9}
    - destination: {host: reviews, subset: v2}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/x", gen);
  ASSERT_NE(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_cluster, &ClusterOf("reviews", "v2"));
  EXPECT_EQ(d.mirror_endpoint_index, 0);
}

TEST_F(DeciderTest, DrawOrderIsWeightThenDelayThenAbortThenMirror) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      delay: {fixedDelay: 1s, percentage: {value: 50}}
      abort: {httpStatus: 503, percentage: {value: 50}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 50
    mirror: {host: ratings}
    mirrorPercentage: {value: 50}
)")}));
  absl::MockingBitGen gen;
  {
    InSequence seq;
    EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 100)).WillOnce(Return(75));
    EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, 0u, 1000000u))
        .WillOnce(Return(0))                                     // delay fires
        .WillOnce(Return(999999))                                // abort does not
        .WillOnce(Return(499999));                               // mirror fires
    EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, 0, 3))  // mirror's endpoint (P2C)
        .WillOnce(Return(2))
        .WillOnce(Return(2));
  }
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_EQ(d.destination->subset, "v2");
  EXPECT_EQ(d.delay, absl::Seconds(1));
  EXPECT_EQ(d.abort_http_status, 0u);
  EXPECT_EQ(Port(d), 19082u);
  ASSERT_NE(d.mirror, nullptr);
  EXPECT_EQ(d.mirror_cluster, &ClusterOf("ratings"));
  EXPECT_EQ(d.mirror_endpoint_index, 2);
}

// -------------------------------------------------------------------------------------------
// Rewrite (reference 1.8)

TEST_F(DeciderTest, PrefixRewriteReplacesTheMatchedPrefixAndKeepsTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {prefix: /foo}}]
    rewrite: {uri: /bar}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{15});
  const Decision d = Run("reviews:9080", "/foo/x?q=1", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kForward);
  EXPECT_EQ(d.rewritten_path, "/bar/x?q=1");
  EXPECT_THAT(d.rewritten_authority, IsEmpty());
}

TEST_F(DeciderTest, PrefixRewriteToSlashKeepsEnvoysDoubleSlash) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {prefix: /foo}}]
    rewrite: {uri: /}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{16});
  EXPECT_EQ(Run("reviews:9080", "/foo/bar", gen).rewritten_path, "//bar");
}

TEST_F(DeciderTest, ExactMatchRewriteReplacesTheWholePathAndKeepsTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {exact: /foo}}]
    rewrite: {uri: /bar/baz}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{17});
  EXPECT_EQ(Run("reviews:9080", "/foo?q=1&r=2", gen).rewritten_path, "/bar/baz?q=1&r=2");
  EXPECT_EQ(Run("reviews:9080", "/foo", gen).rewritten_path, "/bar/baz");
}

TEST_F(DeciderTest, RegexMatchRewriteReplacesTheWholePathAndKeepsTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {regex: "/item/[0-9]+"}}]
    rewrite: {uri: /item}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{18});
  EXPECT_EQ(Run("reviews:9080", "/item/42?x=y", gen).rewritten_path, "/item?x=y");
}

TEST_F(DeciderTest, RuleWithoutUriMatchRewritesAsPrefixSlash) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{headers: {x-v2: {exact: "yes"}}}]
    rewrite: {uri: /v2/}
    route: [{destination: {host: reviews}}]
  - rewrite: {uri: /v2/}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{19});
  RequestAttributes req;
  req.authority = "reviews:9080";
  req.path = "/a?z=1";
  req.headers = {{"x-v2", "yes"}};
  EXPECT_EQ(Run(req, gen).rewritten_path, "/v2/a?z=1");               // match block without uri
  EXPECT_EQ(Run("reviews:9080", "/a", gen).rewritten_path, "/v2/a");  // rule without match
}

TEST_F(DeciderTest, UriRegexRewriteSubstitutesCapturesAndKeepsTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {prefix: /service}}]
    rewrite:
      uriRegexRewrite:
        match: '^/service/([^/]+)(/.*)$'
        rewrite: '\2/instance/\1'
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{20});
  EXPECT_EQ(Run("reviews:9080", "/service/foo/v1/api?x=1", gen).rewritten_path,
            "/v1/api/instance/foo?x=1");
}

TEST_F(DeciderTest, UriRegexRewriteReplacesEveryMatch) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - rewrite:
      uriRegexRewrite: {match: 'a', rewrite: 'b'}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{21});
  EXPECT_EQ(Run("reviews:9080", "/aXa/a?a=a", gen).rewritten_path, "/bXb/b?a=a");
}

TEST_F(DeciderTest, AuthorityRewriteLeavesThePath) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - rewrite: {authority: backend.internal}
    route: [{destination: {host: reviews}}]
)")}));
  absl::BitGen gen(std::seed_seq{22});
  const Decision d = Run("reviews:9080", "/x?y=1", gen);
  EXPECT_EQ(d.rewritten_authority, "backend.internal");
  EXPECT_THAT(d.rewritten_path, IsEmpty());
}

TEST_F(DeciderTest, NoRewriteLeavesBothUnchanged) {
  ASSERT_TRUE(Build({}));
  absl::BitGen gen(std::seed_seq{23});
  const Decision d = Run("reviews:9080", "/x", gen);
  EXPECT_THAT(d.rewritten_path, IsEmpty());
  EXPECT_THAT(d.rewritten_authority, IsEmpty());
}

// -------------------------------------------------------------------------------------------
// Redirect and directResponse (reference 1.10, 1.11)

TEST_F(DeciderTest, RedirectDefaultsTo301AndKeepsTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - redirect: {uri: /new}
)")}));
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen, _, _)).Times(0);
  EXPECT_CALL(absl::MockUniform<uint32_t>(), Call(gen, _, _)).Times(0);
  const Decision d = Run("reviews:9080", "/old/path?q=1", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kRedirect);
  EXPECT_EQ(d.status, 301u);
  EXPECT_EQ(d.location, "http://reviews:9080/new?q=1");
  EXPECT_STREQ(d.response_flags, "");
  EXPECT_EQ(d.endpoint_index, -1);
}

TEST_F(DeciderTest, RedirectUriWithItsOwnQueryReplacesTheQuery) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - redirect: {uri: "/new?a=b"}
)")}));
  absl::MockingBitGen gen;
  EXPECT_EQ(Run("reviews:9080", "/old?q=1", gen).location, "http://reviews:9080/new?a=b");
}

TEST_F(DeciderTest, RedirectAuthorityReplacesTheHostAndItsPort) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - redirect: {authority: example.com, redirectCode: 302}
)")}));
  absl::MockingBitGen gen;
  const Decision d = Run("reviews:9080", "/p?q=1", gen);
  EXPECT_EQ(d.status, 302u);
  EXPECT_EQ(d.location, "http://example.com/p?q=1");
}

TEST_F(DeciderTest, RedirectToHttpsDropsPort80) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - redirect: {scheme: https}
)")}));
  absl::MockingBitGen gen;
  EXPECT_EQ(Run("reviews:80", "/p?q=1", gen).location, "https://reviews/p?q=1");
  EXPECT_EQ(Run("reviews", "/p", gen).location, "https://reviews/p");
}

TEST_F(DeciderTest, RedirectPortOverride) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - redirect: {port: 8443}
)")}));
  absl::MockingBitGen gen;
  EXPECT_EQ(Run("reviews:9080", "/p", gen).location, "http://reviews:8443/p");
}

TEST_F(DeciderTest, RedirectSchemeAndPortUseTheDefaultPortRule) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {prefix: /a}}]
    redirect: {scheme: https, port: 443}
  - match: [{uri: {prefix: /b}}]
    redirect: {scheme: https, port: 8443}
  - match: [{uri: {prefix: /c}}]
    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
  - match: [{uri: {prefix: /d}}]
    redirect: {uri: /e, derivePort: FROM_REQUEST_PORT}
)")}));
  absl::MockingBitGen gen;
  EXPECT_EQ(Run("reviews:9080", "/a", gen).location, "https://reviews/a");
  EXPECT_EQ(Run("reviews:9080", "/b", gen).location, "https://reviews:8443/b");
  EXPECT_EQ(Run("reviews:9080", "/c", gen).location, "https://reviews/c");
  EXPECT_EQ(Run("reviews:9080", "/d", gen).location, "http://reviews:9080/e");
}

TEST_F(DeciderTest, DirectResponseServesStatusAndBody) {
  ASSERT_TRUE(Build({Service("reviews", R"(  - match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - directResponse: {status: 204}
)")}));
  absl::MockingBitGen gen;
  Decision d = Run("reviews:9080", "/teapot", gen);
  EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
  EXPECT_EQ(d.status, 418u);
  EXPECT_EQ(d.body, "short and stout");
  EXPECT_STREQ(d.response_flags, "");
  EXPECT_EQ(d.endpoint_index, -1);
  d = Run("reviews:9080", "/other", gen);
  EXPECT_EQ(d.status, 204u);
  EXPECT_THAT(d.body, IsEmpty());
}

// -------------------------------------------------------------------------------------------
// Statistics over a seeded generator

TEST_F(DeciderTest, Statistics90To10Over100kDecisions) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
)")}));
  absl::BitGen gen(std::seed_seq{24, 25});
  constexpr int kN = 100000;
  int v2 = 0;
  for (int i = 0; i < kN; ++i) v2 += Run("reviews:9080", "/x", gen).destination->subset == "v2";
  // sigma = sqrt(0.9 * 0.1 / 1e5) = 0.095 points, so 3 sigma is about ±0.28 points; ±1 point
  // never flakes yet would catch an off-by-one range or a wrong total.
  EXPECT_NEAR(static_cast<double>(v2) / kN, 0.10, 0.01);
}

TEST_F(DeciderTest, StatisticsTenthOfAPercentAbortOverAMillionDecisions) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", R"(  - fault:
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    route:
    - destination: {host: reviews, subset: v1}
)")}));
  absl::BitGen gen(std::seed_seq{26, 27});
  constexpr int kN = 1000000;
  int aborted = 0;
  for (int i = 0; i < kN; ++i) aborted += Run("reviews:9080", "/x", gen).abort_http_status != 0;
  // Binomial(1e6, 0.001): mean 1000, sigma = sqrt(1e6 * 0.001 * 0.999) = 31.6; mean ± 4 sigma
  // is 874..1126 (a 1% or 0.01% mistake lands at 10000 or 100).
  EXPECT_GE(aborted, 874);
  EXPECT_LE(aborted, 1126);
}

TEST_F(DeciderTest, Scenario15dHalfDelayHalfAbortGiveFourEqualQuadrants) {
  ASSERT_TRUE(Build({kReviewsSubsets, Service("reviews", kHalfDelayHalfAbort)}));
  absl::BitGen gen(std::seed_seq{28, 29});
  constexpr int kN = 100000;
  int counts[2][2] = {{0, 0}, {0, 0}};  // [delayed][aborted]
  for (int i = 0; i < kN; ++i) {
    const Decision d = Run("reviews:9080", "/x", gen);
    ++counts[d.delay != absl::ZeroDuration()][d.abort_http_status != 0];
  }
  // Each quadrant is Binomial(1e5, 0.25): sigma = 0.137 points, 3 sigma about ±0.41 points;
  // ±1 point is safe, and correlated draws (one number for both) would leave two quadrants empty.
  for (int delayed = 0; delayed < 2; ++delayed) {
    for (int aborted = 0; aborted < 2; ++aborted) {
      EXPECT_NEAR(static_cast<double>(counts[delayed][aborted]) / kN, 0.25, 0.01)
          << "delayed=" << delayed << " aborted=" << aborted;
    }
  }
}

}  // namespace
}  // namespace sluice::routing
