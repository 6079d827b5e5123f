// Automated canary analysis end to end: a real sluice-server, sluice-gateway, stub upstreams
// v1 and v2, and a request loop; with the server's own evidence and with a real Prometheus
// server scraping the gateway. A healthy v2 is promoted through every step, a v2 failing 20%
// of its requests is rolled back and clients stop seeing its errors, progress survives a
// server restart, and an apply that edits the weights a canary drives is refused.
// Intervals are shortened to a second.

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

using testing::FreePort;

enum class Evidence { kBuiltin, kPrometheus };

// Where the canary's evidence comes from, and how the gateway takes its decisions (the
// server drives the weights either way; local-mode gateways get them in the pushed table).
struct CanaryParam {
  Evidence evidence = Evidence::kBuiltin;
  const char* decisions = "server";
};

std::string ParamName(const ::testing::TestParamInfo<CanaryParam>& info) {
  return absl::StrCat(info.param.evidence == Evidence::kBuiltin ? "Builtin" : "Prometheus",
                      info.param.decisions == std::string("local") ? "Local" : "");
}

class CanaryTest : public ::testing::TestWithParam<CanaryParam> {
 protected:
  void TearDown() override { StopTraffic(); }

  void StartStubs() {
    for (const char* subset : {"v1", "v2"}) {
      auto stub = std::make_unique<testing::Process>();
      ASSERT_TRUE(stub->Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name",
                               absl::StrCat("shop-", subset), "--subset", subset},
                              "listening "))
          << stub->error();
      stub_addresses_.push_back(stub->Field("http"));
      stubs_.push_back(std::move(stub));
    }
  }

  std::string Port(size_t stub) const {
    return stub_addresses_[stub].substr(stub_addresses_[stub].rfind(':') + 1);
  }

  // shop: v1 and v2, one route splitting them (declared 100/0, retries off so clients see
  // every failure), and the Canary with 1 s intervals.
  // `analysis`: more fields of the Canary's analysis (indented four spaces), e.g. the judge.
  std::string Config(int threshold = 2, const std::string& interval = "1s",
                     const std::string& analysis = "") const {
    const bool prom = GetParam().evidence == Evidence::kPrometheus;
    // rate() needs two scrapes inside its range: Prometheus windows are longer.
    const std::string window = prom ? "5s" : "3s";
    const std::string source = prom ? "\n      source: prometheus" : "";
    return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: )",
                        Port(0), R"(}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: )",
                        Port(1), R"(}, labels: {version: v2}}
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
)",
                        VirtualService(100, 0), R"(---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
  analysis:
    interval: )",
                        interval, R"(
    threshold: )",
                        threshold, R"(
    minRequests: 10
)",
                        analysis, R"(    metrics:
    - name: request-success-rate
      thresholdRange: {min: 95}
      interval: )",
                        window, source, R"(
    - name: request-duration
      thresholdRange: {max: 500}
      interval: )",
                        window, source, "\n");
  }

  static std::string VirtualService(int v1, int v2) {
    return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - name: split
    route:
    - {destination: {host: shop, subset: v1}, weight: )",
                        v1, R"(}
    - {destination: {host: shop, subset: v2}, weight: )",
                        v2, R"(}
    retries: {attempts: 0}
)");
  }

  void StartServer() {
    config_path_ = dir_.Write("shop.yaml", Config(threshold_, interval_, analysis_));
    std::vector<std::string> argv = {
        SLUICE_SERVER_BINARY, "--plaintext", "--config",    config_path_,  "--listen",
        grpc_listen_,         "--metrics",   "127.0.0.1:0", "--state-dir", dir_.path() + "/state"};
    if (GetParam().evidence == Evidence::kPrometheus) {
      argv.push_back("--prometheus-url");
      argv.push_back(prometheus_url_);
    }
    ASSERT_TRUE(server_.Start(argv, "listening ")) << server_.error();
    grpc_ = server_.Field("grpc");
    grpc_listen_ = grpc_;  // a restart comes back on the same port, for the gateway
  }

  // `wait`: until its decision streams are up (false when the server is not started yet).
  void StartGateway(bool wait = true) {
    ASSERT_TRUE(gateway_.Start(
        {SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0", "--decision", grpc_,
         "--metrics", "127.0.0.1:0", "--decisions", GetParam().decisions},
        "listening "))
        << gateway_.error();
    gateway_address_ = gateway_.Field("http");
    gateway_admin_ = gateway_.Field("metrics");
    if (wait) {
      ASSERT_TRUE(testing::WaitForGatewayServing(gateway_admin_)) << gateway_.Log();
    }
  }

  void StartPrometheus() {
    const std::string config = dir_.Write("prometheus.yml", absl::StrCat(R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: sluice-gateway
  static_configs:
  - targets: [')",
                                                                         gateway_admin_, "']\n"));
    const std::string address =
        testing::StartPrometheus(prometheus_, config, dir_.path() + "/tsdb");
    ASSERT_FALSE(address.empty()) << prometheus_.error() << prometheus_.Log();
    prometheus_url_ = absl::StrCat("http://", address);
  }

  // Everything, in the order each needs the other; v2 fails `v2_error_rate` of its requests.
  void StartAll(double v2_error_rate = 0) {
    StartStubs();
    if (v2_error_rate > 0) SetErrorRate(1, v2_error_rate);
    grpc_listen_ = absl::StrCat("127.0.0.1:", FreePort());
    if (GetParam().evidence == Evidence::kPrometheus) {
      // The gateway needs the server's address and Prometheus the gateway's: start the
      // gateway against the server's future port, then Prometheus, then the server.
      grpc_ = grpc_listen_;
      StartGateway(/*wait=*/false);
      StartPrometheus();
      StartServer();
    } else {
      StartServer();
      StartGateway();
    }
  }

  // Two loops of requests through the gateway until StopTraffic; counts by subset.
  void StartTraffic() {
    stop_ = false;
    for (int i = 0; i < 2; ++i) {
      loops_.emplace_back([this] {
        while (!stop_) {
          const testing::HttpResult r =
              testing::HttpExchange(gateway_address_, "GET", "/item", {{"Host", "shop"}});
          const std::string subset = r.Header("x-stub-subset");
          if (subset == "v2") {
            ++to_v2_;
            if (r.status >= 500) ++v2_errors_;
          } else if (subset == "v1") {
            ++to_v1_;
          } else {
            ++unanswered_;  // no upstream answered: a local reply such as 503 DSU or UH
          }
        }
      });
    }
  }
  void StopTraffic() {
    stop_ = true;
    for (std::thread& t : loops_) t.join();
    loops_.clear();
  }

  std::string Sluicectl(const std::string& args, int* exit_code = nullptr) const {
    const std::string out = dir_.path() + "/ctl.out";
    const std::string command = absl::StrCat(SLUICECTL_BINARY, " --plaintext ", args, " --server ",
                                             grpc_, " > ", out, " 2>&1");
    const int status = std::system(command.c_str());
    if (exit_code != nullptr) *exit_code = WEXITSTATUS(status);
    std::ifstream in(out);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // "phase weight" from the status JSON, e.g. "Progressing 25".
  std::string PhaseAndWeight() const {
    const std::string json = Sluicectl("canary status shop -o json");
    const auto field = [&](const std::string& name) -> std::string {
      const size_t at = json.find(absl::StrCat("\"", name, "\": "));
      if (at == std::string::npos) return "";
      size_t start = at + name.size() + 4;
      if (json[start] == '"') ++start;
      const size_t end = json.find_first_of("\",\n", start);
      return json.substr(start, end - start);
    };
    const std::string weight = field("weight");
    return absl::StrCat(field("phase"), " ", weight.empty() ? "0" : weight);
  }

  // Polls until the phase is `phase` (bounded); returns the phases and weights seen.
  std::vector<std::string> WaitForPhase(const std::string& phase, absl::Duration timeout) {
    std::vector<std::string> seen;
    const absl::Time give_up = absl::Now() + timeout;
    while (absl::Now() < give_up) {
      const std::string now = PhaseAndWeight();
      if (seen.empty() || seen.back() != now) seen.push_back(now);
      if (absl::StartsWith(now, phase + " ")) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return seen;
  }

  void SetErrorRate(size_t stub, double rate) {
    const testing::HttpResult r = testing::HttpExchange(
        stub_addresses_[stub], "POST", absl::StrCat("/stub/config?error-rate=", rate));
    ASSERT_EQ(r.status, 200);
  }

  absl::Duration PhaseTimeout() const {
    return GetParam().evidence == Evidence::kPrometheus ? absl::Seconds(90) : absl::Seconds(40);
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<testing::Process>> stubs_;
  std::vector<std::string> stub_addresses_;
  testing::Process prometheus_;
  testing::Process server_;
  testing::Process gateway_;
  int threshold_ = 2;
  std::string interval_ = "1s";
  std::string analysis_;
  std::string config_path_, grpc_, grpc_listen_, gateway_address_, gateway_admin_, prometheus_url_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> to_v1_{0}, to_v2_{0}, v2_errors_{0}, unanswered_{0};
  std::vector<std::thread> loops_;
};

// The canary's weights in the order the server logged its transitions
// ("canary default/shop: PHASE at W%"), repeats folded. Polling the status every 100 ms can
// miss a step that a slow (sanitizer) build keeps short; the log has every one.
std::vector<int> LoggedWeights(const std::string& log) {
  std::vector<int> weights;
  const std::string kStep = "canary default/shop: ";
  for (size_t at = log.find(kStep); at != std::string::npos; at = log.find(kStep, at + 1)) {
    const size_t phase_at = at + kStep.size();
    const size_t weight_at = log.find(" at ", phase_at);
    const size_t percent = log.find('%', phase_at);
    if (weight_at == std::string::npos || percent == std::string::npos || percent < weight_at) {
      continue;
    }
    int w = 0;
    if (!absl::SimpleAtoi(log.substr(weight_at + 4, percent - weight_at - 4), &w)) continue;
    if (weights.empty() || weights.back() != w) weights.push_back(w);
  }
  return weights;
}

TEST_P(CanaryTest, HealthyCanaryIsPromotedThroughEveryStep) {
  StartAll();
  StartTraffic();
  // While it runs, the canary owns the split's weights: an edit to them is refused.
  std::vector<std::string> seen = WaitForPhase("Progressing", absl::Seconds(20));
  int code = 0;
  const std::string refused =
      Sluicectl(absl::StrCat("apply -f ", dir_.Write("edit.yaml", VirtualService(50, 50))), &code);
  EXPECT_EQ(code, 1) << refused;
  EXPECT_THAT(refused, HasSubstr("drives"));
  EXPECT_THAT(refused, HasSubstr("Canary default/shop"));

  const std::vector<std::string> rest = WaitForPhase("Succeeded", PhaseTimeout());
  seen.insert(seen.end(), rest.begin(), rest.end());
  StopTraffic();
  ASSERT_EQ(PhaseAndWeight(), "Succeeded 100") << absl::StrJoin(seen, " | ") << server_.Log();
  // Every step was taken, in order. The server logs each transition; polling the status
  // every 100 ms can miss a step that a slow (sanitizer) build keeps short.
  const std::string log = server_.Log();
  const std::vector<int> weights = LoggedWeights(log);
  EXPECT_THAT(weights, ::testing::IsSupersetOf({10, 25, 50, 75, 100}))
      << absl::StrJoin(seen, " | ") << "\n"
      << log;
  EXPECT_TRUE(std::is_sorted(weights.begin(), weights.end())) << log;
  EXPECT_THAT(server_.Log(), HasSubstr("canary default/shop: Succeeded at 100%"));
  // v2 now takes everything.
  const int64_t v1_before = to_v1_;
  StartTraffic();
  absl::SleepFor(absl::Milliseconds(500));
  StopTraffic();
  EXPECT_EQ(to_v1_, v1_before);
  const std::string metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("flagger_canary_status{name=\"shop\",namespace=\"default\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("sluice_canary_weight{host=\"shop.default.svc.cluster.local\","
                                 "name=\"shop\",namespace=\"default\"} 100"));
}

TEST_P(CanaryTest, FailingCanaryIsRolledBackAndClientsStopSeeingItsErrors) {
  StartAll(/*v2_error_rate=*/0.2);
  StartTraffic();
  const std::vector<std::string> seen = WaitForPhase("Failed", PhaseTimeout());
  ASSERT_EQ(PhaseAndWeight(), "Failed 0") << absl::StrJoin(seen, " | ") << server_.Log();
  EXPECT_GT(v2_errors_, 0);  // the canary's errors were real, and seen
  EXPECT_THAT(Sluicectl("canary status shop"), HasSubstr("rolled back"));
  // After the rollback swap no request reaches v2 and none fails.
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t v2_before = to_v2_;
  const int64_t errors_before = v2_errors_;
  const int64_t v1_before = to_v1_;
  absl::SleepFor(absl::Seconds(1));
  StopTraffic();
  EXPECT_EQ(to_v2_, v2_before);
  EXPECT_EQ(v2_errors_, errors_before);
  EXPECT_GT(to_v1_, v1_before + 50);
  const std::string metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("flagger_canary_status{name=\"shop\",namespace=\"default\"} 2"));
}

INSTANTIATE_TEST_SUITE_P(Evidence, CanaryTest,
                         ::testing::Values(CanaryParam{Evidence::kBuiltin, "server"},
                                           CanaryParam{Evidence::kPrometheus, "server"},
                                           CanaryParam{Evidence::kBuiltin, "local"}),
                         ParamName);

class CanaryRestartTest : public CanaryTest {};

TEST_P(CanaryRestartTest, ProgressSurvivesAServerRestart) {
  threshold_ = 5;
  StartAll();
  StartTraffic();
  const std::vector<std::string> seen = WaitForPhase("Progressing", absl::Seconds(20));
  // Hold it at 50% by hand, then restart the server on the same state directory.
  int code = 0;
  Sluicectl("canary set-weight shop 50", &code);
  ASSERT_EQ(code, 0);
  ASSERT_EQ(PhaseAndWeight(), "Paused 50");
  ASSERT_EQ(server_.Stop(), 0);
  StartServer();
  EXPECT_EQ(PhaseAndWeight(), "Paused 50") << server_.Log();
  // The gateway reconnects (with back-off) before the split can be measured.
  ASSERT_TRUE(testing::WaitForGatewayServing(gateway_admin_));
  EXPECT_THAT(server_.Log(), HasSubstr("resumes Paused at 50% from the state directory"));
  // The restored weight is what the gateway routes by.
  absl::SleepFor(absl::Milliseconds(500));
  const int64_t v1 = to_v1_, v2 = to_v2_, unanswered = unanswered_;
  absl::SleepFor(absl::Seconds(1));
  // Every request is answered by an upstream: the gateway trusts no route table of the
  // server before the restart, and versions never go back.
  EXPECT_EQ(unanswered_, unanswered);
  const double share =
      static_cast<double>(to_v2_ - v2) / static_cast<double>(to_v1_ - v1 + to_v2_ - v2);
  EXPECT_NEAR(share, 0.5, 0.15);  // ~500+ requests: 0.15 is over 6 standard deviations
  // Resumed, it carries on from the next step to the end.
  Sluicectl("canary resume shop", &code);
  ASSERT_EQ(code, 0);
  const std::vector<std::string> rest = WaitForPhase("Succeeded", PhaseTimeout());
  StopTraffic();
  EXPECT_EQ(PhaseAndWeight(), "Succeeded 100") << absl::StrJoin(rest, " | ");
  // From the step it was held at onwards, never back to an earlier one: the restarted
  // server's log of its transitions (polling can miss a short step under a sanitizer).
  const std::string log = server_.Log();
  const std::vector<int> weights = LoggedWeights(log);
  ASSERT_FALSE(weights.empty()) << log;
  EXPECT_EQ(weights.front(), 50) << log;
  EXPECT_THAT(weights, ::testing::IsSupersetOf({50, 75, 100})) << log;
  EXPECT_TRUE(std::is_sorted(weights.begin(), weights.end())) << log;
}

class SequentialJudgeTest : public CanaryTest {};

TEST_P(SequentialJudgeTest, RollsABrokenCanaryBackBeforeItsFirstCheck) {
  // With the threshold method this canary could not roll back before interval x threshold
  // = 30 s. The sequential judge compares it with v1 every second and needs only a handful
  // of v2's failures (20% of its requests) against v1's none.
  threshold_ = 3;
  interval_ = "10s";
  analysis_ = "    judge: sequential\n    falseRollbackRate: 0.01\n";
  StartAll(/*v2_error_rate=*/0.2);
  StartTraffic();
  const std::vector<std::string> progressing = WaitForPhase("Progressing", absl::Seconds(20));
  const absl::Time stepped = absl::Now();
  const std::vector<std::string> seen = WaitForPhase("Failed", absl::Seconds(30));
  const absl::Duration took = absl::Now() - stepped;
  StopTraffic();
  ASSERT_EQ(PhaseAndWeight(), "Failed 0") << absl::StrJoin(seen, " | ") << server_.Log();
  EXPECT_LT(took, absl::Seconds(10)) << "the first check was due 10 s after the first step";
  const std::string status = Sluicectl("canary status shop");
  EXPECT_THAT(status, HasSubstr("rolled back by the sequential judge"));
  EXPECT_THAT(status, HasSubstr("checks       0 passed, 1 failed"));
}

INSTANTIATE_TEST_SUITE_P(Evidence, SequentialJudgeTest,
                         ::testing::Values(CanaryParam{Evidence::kBuiltin, "server"},
                                           CanaryParam{Evidence::kBuiltin, "local"}),
                         ParamName);

INSTANTIATE_TEST_SUITE_P(Evidence, CanaryRestartTest,
                         ::testing::Values(CanaryParam{Evidence::kBuiltin, "server"},
                                           CanaryParam{Evidence::kBuiltin, "local"}),
                         ParamName);

}  // namespace
}  // namespace sluice
