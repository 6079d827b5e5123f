// The canary's built-in evidence: per-subset windows of reported attempts, the success rate
// and Prometheus-style p99 they give, and how reports find their window across snapshots.

#include "server/canary/traffic_recorder.h"

#include "gtest/gtest.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::canary {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(3'000'000);

constexpr char kConfig[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other}
spec:
  hosts: [other]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18083}, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - {destination: {host: shop, subset: v1}, weight: 100}
    - {destination: {host: shop, subset: v2}, weight: 0}
---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
)";

constexpr char kShop[] = "shop.default.svc.cluster.local";

std::shared_ptr<const routing::Snapshot> Compile(uint64_t version) {
  config::LoadResult r = config::LoadText(kConfig, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.diagnostics.ToString();
  return *routing::CompileSnapshot(std::move(r.config), version);
}

uint32_t ClusterId(const routing::Snapshot& s, const std::string& name) {
  const routing::Cluster* c = s.FindCluster(name);
  EXPECT_NE(c, nullptr) << name;
  return c != nullptr ? c->id : 0;
}

TEST(TrafficTotalsTest, SuccessRateAndQuantilesLikePrometheus) {
  TrafficTotals t;
  EXPECT_EQ(t.SuccessRatePercent(), std::nullopt);
  EXPECT_EQ(t.LatencyQuantileMs(0.99), std::nullopt);
  TrafficWindow w;
  // 100 requests: 90 at 20 ms (bucket (10,25]), 10 at 300 ms (bucket (250,500]); 4 failures.
  for (int i = 0; i < 100; ++i) w.Add(i < 4, i < 90 ? 20.0 : 300.0, kT0);
  t = w.Sum(kT0, kT0 + absl::Seconds(1));
  EXPECT_EQ(t.requests, 100u);
  EXPECT_DOUBLE_EQ(*t.SuccessRatePercent(), 96.0);
  // histogram_quantile: rank 99 falls in (250,500] holding ranks 91..100: 250 + 250 * 9/10.
  EXPECT_DOUBLE_EQ(*t.LatencyQuantileMs(0.99), 475.0);
  // rank 50 in (10,25] holding 1..90: 10 + 15 * 50/90.
  EXPECT_NEAR(*t.LatencyQuantileMs(0.5), 10 + 15.0 * 50 / 90, 1e-9);
  EXPECT_EQ(t.SlowerThan(250), 10u);
  EXPECT_EQ(t.SlowerThan(500), 0u);
  // Failures without an attempt (no healthy upstream) count, but have no latency to skew p99.
  for (int i = 0; i < 100; ++i) w.Add(true, std::nullopt, kT0);
  t = w.Sum(kT0, kT0 + absl::Seconds(1));
  EXPECT_EQ(t.requests, 200u);
  EXPECT_EQ(t.Timed(), 100u);
  EXPECT_DOUBLE_EQ(*t.SuccessRatePercent(), 48.0);
  EXPECT_DOUBLE_EQ(*t.LatencyQuantileMs(0.99), 475.0);
}

TEST(TrafficWindowTest, SumsWholeSecondsAndForgetsPastTheWindow) {
  TrafficWindow w;
  w.Add(false, 1, kT0);
  w.Add(true, 1, kT0 + absl::Milliseconds(999));
  w.Add(false, 1, kT0 + absl::Seconds(5));
  EXPECT_EQ(w.Sum(kT0, kT0 + absl::Seconds(1)).requests, 2u);
  EXPECT_EQ(w.Sum(kT0, kT0 + absl::Seconds(1)).failures, 1u);
  EXPECT_EQ(w.Sum(kT0 + absl::Seconds(1), kT0 + absl::Seconds(6)).requests, 1u);
  // A range starting inside a second leaves that second out: what came before a restart of
  // the analysis is not evidence for the new run.
  EXPECT_EQ(w.Sum(kT0 + absl::Milliseconds(500), kT0 + absl::Seconds(6)).requests, 1u);
  // The same slot a full window later starts from zero.
  const absl::Time later = kT0 + absl::Seconds(TrafficWindow::kSeconds);
  w.Add(false, 1, later);
  EXPECT_EQ(w.Sum(kT0, later + absl::Seconds(1)).requests, 2u);  // later's one + kT0+5s
}

TEST(TrafficRecorderTest, RecordsCanaryHostsBySubsetAcrossSnapshots) {
  absl::Time now = kT0;
  TrafficRecorder recorder([&now] { return now; });
  auto v1 = Compile(1);
  recorder.OnSnapshot(*v1);
  const uint32_t stable = ClusterId(*v1, "outbound|8080|v1|shop.default.svc.cluster.local");
  const uint32_t canary = ClusterId(*v1, "outbound|8080|v2|shop.default.svc.cluster.local");
  const uint32_t other = ClusterId(*v1, "outbound|8080||other.default.svc.cluster.local");
  for (int i = 0; i < 10; ++i) recorder.OnAttempt(1, stable, false, 5);
  recorder.OnAttempt(1, canary, true, 5);
  recorder.OnAttempt(1, other, true, 5);  // no Canary names it: not recorded
  const absl::Time to = kT0 + absl::Seconds(1);
  EXPECT_EQ(recorder.Sum(kShop, "v1", kT0, to).requests, 10u);
  EXPECT_EQ(recorder.Sum(kShop, "v2", kT0, to).failures, 1u);
  EXPECT_EQ(recorder.Sum("other.default.svc.cluster.local", "", kT0, to).requests, 0u);

  // A new version keeps the windows; the previous version's reports still count, older
  // ones are dropped.
  auto v2 = Compile(2);
  recorder.OnSnapshot(*v2);
  recorder.OnAttempt(1, canary, false, 5);
  recorder.OnAttempt(2, ClusterId(*v2, "outbound|8080|v2|shop.default.svc.cluster.local"), false,
                     5);
  auto v3 = Compile(3);
  recorder.OnSnapshot(*v3);
  recorder.OnAttempt(1, canary, false, 5);
  EXPECT_EQ(recorder.Sum(kShop, "v2", kT0, to).requests, 3u);
  EXPECT_EQ(recorder.Sum(kShop, "v1", kT0, to).requests, 10u);
}

}  // namespace
}  // namespace sluice::canary
