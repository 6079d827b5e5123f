// In-process decision time: the decider alone, on the bundled bookinfo-like example and on
// a synthetic 500-route configuration. The baseline in the same run is the cheapest thing a
// decision must do anyway: finding the virtual host.

#include <string>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "lib/routing/decider.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/health/health_tracker.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

std::shared_ptr<const Snapshot> Compile(config::LoadResult loaded) {
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s", loaded.diagnostics.ToString().c_str());
    std::abort();
  }
  return *CompileSnapshot(std::move(loaded.config), 1);
}

const Snapshot& Example() {
  static const auto snapshot =
      Compile(config::LoadPaths({std::string(SLUICE_SOURCE_DIR) + "/deploy/examples"}));
  return *snapshot;
}

// 500 routes on one host, each matching a path prefix and a header, as a large service's
// VirtualService might; the last one splits 90/10.
const Snapshot& FiveHundredRoutes() {
  static const auto snapshot = [] {
    std::string yaml = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: big}
spec:
  hosts: [big]
  ports: [{number: 80, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 20001}, labels: {version: v1}}
  - {address: 127.0.0.2, ports: {http: 20001}, labels: {version: v1}}
  - {address: 127.0.0.3, ports: {http: 20001}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: big}
spec:
  host: big
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: big}
spec:
  hosts: [big]
  http:
)";
    for (int i = 0; i < 499; ++i) {
      absl::StrAppend(&yaml, "  - match:\n    - uri: {prefix: /api/v", i,
                      "/}\n      headers:\n        x-tenant: {exact: t", i,
                      "}\n    route:\n    - destination: {host: big, subset: v1}\n");
    }
    absl::StrAppend(&yaml, R"(  - route:
    - destination: {host: big, subset: v1}
      weight: 90
    - destination: {host: big, subset: v2}
      weight: 10
    timeout: 5s
    retries: {attempts: 3, retryOn: 5xx}
)");
    return Compile(config::LoadText(yaml, "big.yaml"));
  }();
  return *snapshot;
}

RequestAttributes Request(std::string authority, std::string path,
                          std::vector<std::pair<std::string, std::string>> headers = {}) {
  RequestAttributes r;
  r.authority = std::move(authority);
  r.path = std::move(path);
  r.headers = std::move(headers);
  return r;
}

void BM_FindVirtualHost_Baseline(benchmark::State& state) {
  const Snapshot& s = Example();
  const RequestAttributes r = Request("reviews:9080", "/reviews/1");
  for (auto _ : state) benchmark::DoNotOptimize(s.FindVirtualHost(r.authority));
}
BENCHMARK(BM_FindVirtualHost_Baseline);

void BM_Decide_Example_WeightedSplit(benchmark::State& state) {
  const Snapshot& s = Example();
  const RequestAttributes r = Request("reviews:9080", "/reviews/1", {{"end-user", "alice"}});
  absl::BitGen gen;
  for (auto _ : state) benchmark::DoNotOptimize(Decide(s, r, gen));
}
BENCHMARK(BM_Decide_Example_WeightedSplit);

void BM_Decide_Example_HeaderMatch(benchmark::State& state) {
  const Snapshot& s = Example();
  const RequestAttributes r = Request("reviews:9080", "/reviews/1", {{"end-user", "jason"}});
  absl::BitGen gen;
  for (auto _ : state) benchmark::DoNotOptimize(Decide(s, r, gen));
}
BENCHMARK(BM_Decide_Example_HeaderMatch);

void BM_Decide_Example_FaultRoute(benchmark::State& state) {
  const Snapshot& s = Example();
  const RequestAttributes r = Request("shop:8080", "/cart");
  absl::BitGen gen;
  for (auto _ : state) benchmark::DoNotOptimize(Decide(s, r, gen));
}
BENCHMARK(BM_Decide_Example_FaultRoute);

void BM_Decide_500Routes_Middle(benchmark::State& state) {
  const Snapshot& s = FiveHundredRoutes();
  const RequestAttributes r = Request("big", "/api/v250/items", {{"x-tenant", "t250"}});
  absl::BitGen gen;
  for (auto _ : state) benchmark::DoNotOptimize(Decide(s, r, gen));
}
BENCHMARK(BM_Decide_500Routes_Middle);

void BM_Decide_500Routes_LastRule(benchmark::State& state) {
  const Snapshot& s = FiveHundredRoutes();
  const RequestAttributes r = Request("big", "/other", {{"x-tenant", "none"}});
  absl::BitGen gen;
  for (auto _ : state) benchmark::DoNotOptimize(Decide(s, r, gen));
}
BENCHMARK(BM_Decide_500Routes_LastRule);

// A decision plus what its attempt report costs the server later: reviews has an
// outlierDetection block, so the report runs the outlier detector and the success-rate
// window under the tracker's lock. Two threads show what that lock costs when contended.
void BM_DecideAndReport_OutlierOn(benchmark::State& state) {
  const Snapshot& s = Example();
  static health::HealthTracker* tracker = [&s] {
    auto* t = new health::HealthTracker([] { return absl::Now(); }, nullptr);
    t->OnSnapshot(s);
    return t;
  }();
  const RequestAttributes r = Request("reviews:9080", "/reviews/1", {{"end-user", "alice"}});
  absl::BitGen gen;
  for (auto _ : state) {
    const Decision d = Decide(s, r, gen);
    tracker->OnAttempt({s.version(),
                        d.cluster->id,
                        static_cast<uint32_t>(d.endpoint_index),
                        {health::AttemptEvent::Kind::kResponse, 200}});
  }
}
BENCHMARK(BM_DecideAndReport_OutlierOn)->Threads(1)->Threads(2);

}  // namespace
}  // namespace sluice::routing

BENCHMARK_MAIN();
