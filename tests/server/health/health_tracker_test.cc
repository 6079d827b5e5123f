// The health tracker on a simulated clock: attempt reports addressed by snapshot version,
// cluster and endpoint reach the right detector; ejections reach the load balancers through
// EndpointRuntime::ejected and end on the cluster's own interval tick; state survives
// configuration changes that keep the endpoint; subset policies replace the top-level one.

#include "server/health/health_tracker.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/loader.h"
#include "server/health/recent_outcomes.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::health {
namespace {

using Kind = AttemptEvent::Kind;
using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

// ratings: three endpoints of subset v1 (19091..19093) and one of v2 (19094).
constexpr char kServices[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19091}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19092}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19093}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19094}, labels: {version: v2}}
)";

// The same with a fourth v1 endpoint listed first, which changes every index.
constexpr char kServicesPlusOne[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19090}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19091}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19092}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19093}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19094}, labels: {version: v2}}
)";

// A DestinationRule for ratings: `top` is the top-level outlierDetection (flow map, or empty
// for none), `v2` the v2 subset's own (or empty).
std::string Rule(const std::string& top, const std::string& v2 = "") {
  std::string text = R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
)";
  if (!top.empty()) absl::StrAppend(&text, "  trafficPolicy:\n    outlierDetection: ", top, "\n");
  absl::StrAppend(&text, "  subsets:\n  - name: v1\n    labels: {version: v1}\n",
                  "  - name: v2\n    labels: {version: v2}\n");
  if (!v2.empty()) absl::StrAppend(&text, "    trafficPolicy:\n      outlierDetection: ", v2, "\n");
  return text;
}

constexpr char kV1[] = "outbound|9080|v1|ratings.default.svc.cluster.local";
constexpr char kV2[] = "outbound|9080|v2|ratings.default.svc.cluster.local";

// Records every event as a line, to compare with what should have happened.
class RecordingEvents : public HealthEvents {
 public:
  void OnEjected(const std::string& cluster, const std::string& endpoint, EjectionReason reason,
                 uint32_t ejections, absl::Duration duration) override {
    lines.push_back(absl::StrCat("ejected ", Short(cluster), " ", endpoint, " ",
                                 EjectionReasonName(reason), " #", ejections, " for ",
                                 absl::FormatDuration(duration)));
  }
  void OnReturned(const std::string& cluster, const std::string& endpoint,
                  absl::Duration ejected_for) override {
    lines.push_back(absl::StrCat("returned ", Short(cluster), " ", endpoint, " after ",
                                 absl::FormatDuration(ejected_for)));
  }
  void OnOverflow(const std::string& cluster, const std::string& endpoint) override {
    lines.push_back(absl::StrCat("overflow ", Short(cluster), " ", endpoint));
  }
  void OnShared(const std::string& cluster, const std::string& endpoint, bool ejected) override {
    lines.push_back(absl::StrCat(ejected ? "shared ejected " : "shared returned ", Short(cluster),
                                 " ", endpoint));
  }
  void OnEjectionsActive(const std::string& cluster, size_t active) override {
    lines.push_back(absl::StrCat("active ", Short(cluster), " ", active));
  }
  static std::string Short(const std::string& cluster) { return cluster.substr(14, 2); }

  std::vector<std::string> lines;
};

class HealthTrackerTest : public ::testing::Test {
 protected:
  HealthTrackerTest() : tracker_([this] { return now_; }, &events_) {
    runtime_ = std::make_unique<routing::RuntimeStore>();
  }

  // Compiles `services` plus `rule` as the next version and hands it to the tracker.
  void Serve(const std::string& rule, const char* services = kServices) {
    std::string text = absl::StrCat(services, "---\n", rule);
    config::LoadResult r = config::LoadText(text, "t.yaml");
    ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
    routing::CompileOptions options;
    options.runtime_store = runtime_.get();
    auto snap = routing::CompileSnapshot(std::move(r.config), ++version_, nullptr, options);
    ASSERT_TRUE(snap.ok()) << snap.status();
    snapshot_ = *std::move(snap);
    tracker_.OnSnapshot(*snapshot_);
  }

  const routing::Cluster& ClusterOf(const std::string& name) const {
    const routing::Cluster* c = snapshot_->FindCluster(name);
    EXPECT_NE(c, nullptr) << name;
    return *c;
  }
  size_t IndexOf(const routing::Cluster& c, uint32_t port) const {
    for (size_t i = 0; i < c.endpoints.size(); ++i) {
      if (c.endpoints[i].port == port) return i;
    }
    ADD_FAILURE() << "no port " << port << " in " << c.name;
    return 0;
  }
  // A report of `n` attempts on the endpoint at `port` of `cluster`, as decided on the
  // serving snapshot (or on `snapshot` when given).
  void Report(const std::string& cluster, uint32_t port, AttemptEvent event, int n = 1,
              const routing::Snapshot* snapshot = nullptr) {
    const routing::Snapshot& s = snapshot != nullptr ? *snapshot : *snapshot_;
    const routing::Cluster* c = s.FindCluster(cluster);
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < n; ++i) {
      tracker_.OnAttempt({s.version(), c->id, static_cast<uint32_t>(IndexOf(*c, port)), event});
    }
  }
  bool Ejected(const std::string& cluster, uint32_t port) const {
    const routing::Cluster& c = ClusterOf(cluster);
    return c.endpoints[IndexOf(c, port)].runtime->ejected.load();
  }
  // Advances the clock to `t` and ticks.
  void TickAt(absl::Time t) {
    now_ = t;
    next_tick_ = tracker_.Tick();
  }

  absl::Time now_ = kT0;
  absl::Time next_tick_ = absl::InfinitePast();
  RecordingEvents events_;
  HealthTracker tracker_;
  std::unique_ptr<routing::RuntimeStore> runtime_;
  std::shared_ptr<const routing::Snapshot> snapshot_;
  uint64_t version_ = 0;
};

const AttemptEvent k503{Kind::kResponse, 503};
const AttemptEvent k200{Kind::kResponse, 200};

TEST_F(HealthTrackerTest, ReportsEjectAtTheThresholdAndTheLoadBalancerSeesIt) {
  Serve(
      Rule("{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s, "
           "maxEjectionPercent: 100}"));
  Report(kV1, 19092, k503, 2);
  EXPECT_FALSE(Ejected(kV1, 19092));
  Report(kV1, 19092, k503);
  EXPECT_TRUE(Ejected(kV1, 19092));
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_THAT(events_.lines,
              ElementsAre("ejected v1 127.0.0.1:19092 consecutive_5xx #1 for 5s", "active v1 1"));
  const std::optional<ClusterHealth> view = tracker_.Describe(kV1);
  ASSERT_TRUE(view.has_value());
  EXPECT_TRUE(view->outlier_detection);
  EXPECT_EQ(view->ejected, 1u);
  const EndpointHealth& e = view->endpoints[IndexOf(ClusterOf(kV1), 19092)];
  EXPECT_EQ(e.reason, EjectionReason::kConsecutive5xx);
  EXPECT_EQ(e.ejected_since, kT0);
  EXPECT_EQ(e.ejected_until, kT0 + absl::Seconds(5));
  EXPECT_EQ(e.recent.attempts, 3u);
  EXPECT_EQ(e.recent.failures, 3u);
}

TEST_F(HealthTrackerTest, ReturnsOnTheFirstIntervalTickAfterTheEjectionTime) {
  Serve(
      Rule("{consecutive5xxErrors: 1, interval: 2s, baseEjectionTime: 3s, "
           "maxEjectionPercent: 100}"));
  // The interval timer is armed when the cluster appears: ticks at T0+2s, +4s, +6s...
  TickAt(kT0);
  EXPECT_EQ(next_tick_, kT0 + absl::Seconds(2));
  now_ = kT0 + absl::Milliseconds(500);
  Report(kV1, 19091, k503);
  ASSERT_TRUE(Ejected(kV1, 19091));
  TickAt(kT0 + absl::Seconds(2));
  EXPECT_TRUE(Ejected(kV1, 19091));  // 1.5 s of 3 s
  EXPECT_EQ(next_tick_, kT0 + absl::Seconds(4));
  TickAt(kT0 + absl::Milliseconds(3600));  // time is up at 3.5 s, but this is no tick
  EXPECT_TRUE(Ejected(kV1, 19091));
  TickAt(kT0 + absl::Seconds(4));
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_EQ(events_.lines.back(), "active v1 0");
  EXPECT_EQ(events_.lines[events_.lines.size() - 2], "returned v1 127.0.0.1:19091 after 3.5s");
}

TEST_F(HealthTrackerTest, EachClusterTicksOnItsOwnInterval) {
  // v2's subset policy replaces the top-level block whole: its interval is 5s and its
  // consecutive5xxErrors is Envoy's default 5, not the top level's 1.
  Serve(
      Rule("{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1s, "
           "maxEjectionPercent: 100}",
           "{interval: 5s, baseEjectionTime: 1s, maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503);
  Report(kV2, 19094, k503, 4);
  EXPECT_TRUE(Ejected(kV1, 19091));
  EXPECT_FALSE(Ejected(kV2, 19094));
  Report(kV2, 19094, k503);
  EXPECT_TRUE(Ejected(kV2, 19094));
  TickAt(kT0 + absl::Seconds(1));
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_TRUE(Ejected(kV2, 19094));
  EXPECT_EQ(next_tick_, kT0 + absl::Seconds(2));
  TickAt(kT0 + absl::Seconds(4));
  EXPECT_TRUE(Ejected(kV2, 19094));
  TickAt(kT0 + absl::Seconds(5));
  EXPECT_FALSE(Ejected(kV2, 19094));
}

TEST_F(HealthTrackerTest, StateSurvivesAChangeThatKeepsTheEndpoint) {
  const std::string rule = Rule(
      "{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}");
  Serve(rule);
  Report(kV1, 19091, k503, 2);  // two of three
  Report(kV1, 19092, k503, 3);  // ejected
  // Another endpoint joins v1: the new snapshot orders endpoints differently, yet counters
  // and the ejection follow the address.
  Serve(rule, kServicesPlusOne);
  ASSERT_EQ(ClusterOf(kV1).endpoints.size(), 4u);
  EXPECT_TRUE(Ejected(kV1, 19092));
  Report(kV1, 19091, k503);  // the third in a row: ejected
  EXPECT_TRUE(Ejected(kV1, 19091));
  // The interval timer keeps its phase: due at T0+1s as before.
  TickAt(kT0);
  EXPECT_EQ(next_tick_, kT0 + absl::Seconds(1));
  // A shorter interval in a new policy applies at once.
  Serve(Rule("{consecutive5xxErrors: 3, interval: 500ms, baseEjectionTime: 30s, "
             "maxEjectionPercent: 100}"),
        kServicesPlusOne);
  TickAt(kT0);
  EXPECT_EQ(next_tick_, kT0 + absl::Milliseconds(500));
  EXPECT_TRUE(Ejected(kV1, 19092));  // a new policy keeps ejections
}

TEST_F(HealthTrackerTest, ANewPolicyStartsTheCountersAgain) {
  Serve(Rule("{consecutive5xxErrors: 10, maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503, 5);
  // Lowered below the count: kept, the counter would pass 3 without ever equalling it.
  Serve(Rule("{consecutive5xxErrors: 3, maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503, 2);
  EXPECT_FALSE(Ejected(kV1, 19091));
  Report(kV1, 19091, k503);
  EXPECT_TRUE(Ejected(kV1, 19091));
}

TEST_F(HealthTrackerTest, ReportsOfAnOlderSnapshotFindTheirEndpointByAddress) {
  Serve(Rule("{consecutive5xxErrors: 2, maxEjectionPercent: 100}"));
  const std::shared_ptr<const routing::Snapshot> old = snapshot_;
  Serve(Rule("{consecutive5xxErrors: 2, maxEjectionPercent: 100}"), kServicesPlusOne);
  Report(kV1, 19093, k503, 1, old.get());
  Report(kV1, 19093, k503, 1);
  EXPECT_TRUE(Ejected(kV1, 19093));
  EXPECT_EQ(tracker_.dropped_reports(), 0u);
  // Not a version the tracker ever saw, and an endpoint index past the end: dropped.
  tracker_.OnAttempt({99, 0, 0, k503});
  tracker_.OnAttempt({snapshot_->version(), ClusterOf(kV1).id, 17, k503});
  EXPECT_EQ(tracker_.dropped_reports(), 2u);
}

TEST_F(HealthTrackerTest, SwitchingOutlierDetectionOffEndsEveryEjection) {
  Serve(Rule("{consecutive5xxErrors: 1, maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503);
  ASSERT_TRUE(Ejected(kV1, 19091));
  events_.lines.clear();
  now_ = kT0 + absl::Seconds(2);
  Serve(Rule(""));
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_THAT(events_.lines, ElementsAre("returned v1 127.0.0.1:19091 after 2s", "active v1 0"));
  Report(kV1, 19091, k503, 10);
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_EQ(tracker_.Tick(), absl::InfiniteFuture());
  // Success rates are still kept for people to see.
  const std::optional<ClusterHealth> view = tracker_.Describe(kV1);
  ASSERT_TRUE(view.has_value());
  EXPECT_FALSE(view->outlier_detection);
  EXPECT_EQ(view->endpoints[IndexOf(ClusterOf(kV1), 19091)].recent.failures, 11u);
}

TEST_F(HealthTrackerTest, OverflowsAreToldAndNothingIsEjected) {
  // Three endpoints and 10%: (0 + 1) / 3 > 10%, so nothing can ever be ejected.
  Serve(Rule("{consecutive5xxErrors: 2}"));
  Report(kV1, 19091, k503, 4);
  EXPECT_FALSE(Ejected(kV1, 19091));
  EXPECT_THAT(events_.lines,
              ElementsAre("overflow v1 127.0.0.1:19091", "overflow v1 127.0.0.1:19091"));
  EXPECT_EQ(tracker_.Describe(kV1)->overflows, 2u);
}

TEST_F(HealthTrackerTest, NotCountedAttemptsChangeNothingAndSuccessesReset) {
  Serve(Rule("{consecutive5xxErrors: 2, maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503);
  Report(kV1, 19091, {Kind::kNotCounted, 0}, 5);
  Report(kV1, 19091, k200);
  Report(kV1, 19091, k503);
  EXPECT_FALSE(Ejected(kV1, 19091));
  Report(kV1, 19091, {Kind::kConnectFailure, 0});  // counts as a 503 without split mode
  EXPECT_TRUE(Ejected(kV1, 19091));
  const EndpointHealth e = tracker_.Describe(kV1)->endpoints[IndexOf(ClusterOf(kV1), 19091)];
  EXPECT_EQ(e.recent.attempts, 4u);
  EXPECT_EQ(e.recent.failures, 3u);
}

TEST(RecentOutcomesTest, CountsOverTheLastMinuteInTenSecondBuckets) {
  RecentOutcomes r;
  const absl::Time t = absl::FromUnixSeconds(600);  // a bucket boundary
  r.Add(true, t);
  r.Add(false, t + absl::Seconds(9));
  r.Add(false, t + absl::Seconds(25));
  EXPECT_EQ(r.Sum(t + absl::Seconds(25)).attempts, 3u);
  EXPECT_EQ(r.Sum(t + absl::Seconds(25)).failures, 1u);
  // At t+60s the first bucket (t..t+10s) has left the window; t+20s..t+30s stays until t+80s.
  EXPECT_EQ(r.Sum(t + absl::Seconds(60)).attempts, 1u);
  EXPECT_EQ(r.Sum(t + absl::Seconds(60)).failures, 0u);
  EXPECT_EQ(r.Sum(t + absl::Seconds(80)).attempts, 0u);
  // A bucket slot reused after a full turn starts from zero.
  // (t+61s uses the slot of t..t+10s; the sum is that one failure plus t+25s's success.)
  r.Add(true, t + absl::Seconds(61));
  EXPECT_EQ(r.Sum(t + absl::Seconds(61)).attempts, 2u);
  EXPECT_EQ(r.Sum(t + absl::Seconds(61)).failures, 1u);
}

}  // namespace
}  // namespace sluice::health

namespace sluice::health {
namespace {

// Replicas (--store etcd://): a follower does not detect, takes the leader's ejections, and
// takes them over (times and multipliers) when it starts detecting.
class ReplicaHealthTrackerTest : public HealthTrackerTest {
 protected:
  static SharedEjections One(const std::string& cluster, const std::string& endpoint,
                             absl::Time since, absl::Duration time, uint32_t multiplier) {
    SharedEjections shared;
    shared[cluster][endpoint] = {EjectionReason::kConsecutive5xx, multiplier, multiplier, since,
                                 since + time};
    return shared;
  }
};

TEST_F(ReplicaHealthTrackerTest, AFollowerCountsNothingAndServesTheSharedEjections) {
  Serve(
      Rule("{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5s, "
           "maxEjectionPercent: 100}"));
  tracker_.SetDetecting(false);
  Report(kV1, 19092, k503, 5);
  EXPECT_FALSE(Ejected(kV1, 19092));  // the leader decides
  HealthTracker::Named named;
  const routing::Cluster& v1 = ClusterOf(kV1);
  tracker_.OnAttempt({snapshot_->version(), v1.id, static_cast<uint32_t>(IndexOf(v1, 19091)), k503},
                     &named);
  EXPECT_EQ(named.cluster, kV1);
  EXPECT_EQ(named.endpoint, "127.0.0.1:19091");
  EXPECT_EQ(tracker_.ClusterName(snapshot_->version(), v1.id), kV1);

  tracker_.SetShared(One(kV1, "127.0.0.1:19093", kT0, absl::Seconds(5), 1));
  EXPECT_TRUE(Ejected(kV1, 19093));
  EXPECT_FALSE(Ejected(kV1, 19092));
  std::optional<ClusterHealth> view = tracker_.Describe(kV1);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->ejected, 1u);
  const EndpointHealth& e = view->endpoints[IndexOf(v1, 19093)];
  EXPECT_TRUE(e.ejected);
  EXPECT_EQ(e.ejected_until, kT0 + absl::Seconds(5));
  EXPECT_EQ(view->endpoints[IndexOf(v1, 19092)].recent.failures, 5u);  // counted for `endpoints`
  // A configuration change keeps serving the shared set.
  Serve(Rule("{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5s, "
             "maxEjectionPercent: 100}"),
        kServicesPlusOne);
  EXPECT_TRUE(Ejected(kV1, 19093));
  tracker_.SetShared({});
  EXPECT_FALSE(Ejected(kV1, 19093));
  EXPECT_THAT(events_.lines, ElementsAre("shared ejected v1 127.0.0.1:19093", "active v1 1",
                                         "shared returned v1 127.0.0.1:19093", "active v1 0"));
}

TEST_F(ReplicaHealthTrackerTest, ANewLeaderKeepsTheSharedEjectionForItsTimeAndCountsForwarded) {
  Serve(
      Rule("{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5s, "
           "maxEjectionPercent: 100}"));
  tracker_.SetDetecting(false);
  // The old leader ejected 19093 for the second time (10 s) two seconds ago.
  tracker_.SetShared(One(kV1, "127.0.0.1:19093", kT0 - absl::Seconds(2), absl::Seconds(10), 2));
  tracker_.SetDetecting(true);
  EXPECT_TRUE(Ejected(kV1, 19093));
  TickAt(kT0 + absl::Seconds(7));
  EXPECT_TRUE(Ejected(kV1, 19093));
  TickAt(kT0 + absl::Seconds(8));  // 10 s after its ejection
  EXPECT_FALSE(Ejected(kV1, 19093));
  // Reports forwarded by name count like its own gateways'.
  tracker_.OnNamedAttempt(kV1, "127.0.0.1:19091", k503);
  EXPECT_FALSE(Ejected(kV1, 19091));
  tracker_.OnNamedAttempt(kV1, "127.0.0.1:19091", k503);
  EXPECT_TRUE(Ejected(kV1, 19091));
  tracker_.OnNamedAttempt(kV1, "127.0.0.1:29999", k503);  // no such endpoint
  tracker_.OnNamedAttempt("outbound|1|x|nothing", "127.0.0.1:19091", k503);
  EXPECT_EQ(tracker_.dropped_reports(), 2u);
  EXPECT_THAT(events_.lines,
              ElementsAre("shared ejected v1 127.0.0.1:19093", "active v1 1",
                          "returned v1 127.0.0.1:19093 after 10s", "active v1 0",
                          "ejected v1 127.0.0.1:19091 consecutive_5xx #1 for 5s", "active v1 1"));
}

TEST_F(ReplicaHealthTrackerTest, AFollowersSharedEjectionEndsByItselfWhenNoLeaderEndsIt) {
  Serve(Rule("{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5s, "
             "maxEjectionPercent: 100}"));
  tracker_.SetDetecting(false);
  tracker_.SetShared(One(kV1, "127.0.0.1:19093", kT0, absl::Seconds(5), 1));
  TickAt(kT0 + absl::Seconds(5));  // its time is up: the leader's tick would return it now
  EXPECT_TRUE(Ejected(kV1, 19093));
  TickAt(kT0 + absl::Seconds(6));  // one interval later no leader has: it ends here
  EXPECT_FALSE(Ejected(kV1, 19093));
  EXPECT_THAT(events_.lines,
              ElementsAre("shared ejected v1 127.0.0.1:19093", "active v1 1",
                          "shared returned v1 127.0.0.1:19093", "active v1 0"));
}

TEST_F(ReplicaHealthTrackerTest, TheSameLeaderBackAfterAMomentWithoutItsLeaseKeepsItsDetector) {
  Serve(Rule("{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s, "
             "maxEjectionPercent: 100}"));
  Report(kV1, 19091, k503, 3);  // ejected by this leader, not yet in the shared set
  Report(kV1, 19092, k503, 2);  // two of three
  EXPECT_TRUE(Ejected(kV1, 19091));
  tracker_.SetDetecting(false);
  EXPECT_FALSE(Ejected(kV1, 19091));  // a follower serves the shared set only
  tracker_.SetDetecting(true, /*take_over=*/false);
  EXPECT_TRUE(Ejected(kV1, 19091));
  Report(kV1, 19092, k503);  // the count went on from two
  EXPECT_TRUE(Ejected(kV1, 19092));
}

}  // namespace
}  // namespace sluice::health
