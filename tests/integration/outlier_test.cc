// Outlier detection end to end: a real sluice-server, two sluice-gateways and three
// sluice-stub endpoints of one subset on loopback. The server sees the attempts of both
// gateways, so an endpoint is ejected after exactly consecutive5xxErrors failures in total,
// whichever gateway saw them; ejected endpoints get no traffic, come back after the
// ejection time, and a cluster with every endpoint ejected answers 503 UH at once.

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCluster[] = "outbound|8080|v1|shop.default.svc.cluster.local";

// Every test runs with the gateways in both decision modes: ejections reach local-mode
// gateways as pushed endpoint changes.
class OutlierTest : public ::testing::TestWithParam<std::string> {
 protected:
  struct Stub {
    testing::Process process;
    std::string address;
    std::string port;
  };

  void StartStubs(int n) {
    for (int i = 0; i < n; ++i) {
      auto stub = std::make_unique<Stub>();
      ASSERT_TRUE(stub->process.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name",
                                       absl::StrCat("shop-", i), "--subset", "v1"},
                                      "listening "))
          << stub->process.error();
      stub->address = stub->process.Field("http");
      stub->port = stub->address.substr(stub->address.rfind(':') + 1);
      stubs_.push_back(std::move(stub));
    }
  }

  // Every stub as an endpoint of shop's subset v1, round robin so each endpoint's share is
  // exact, no retries so every failed attempt is a failed request, and `outlier` as the
  // DestinationRule's outlierDetection (a flow map).
  std::string Config(const std::string& outlier) const {
    std::string endpoints;
    for (const auto& stub : stubs_) {
      absl::StrAppend(&endpoints, "  - {address: 127.0.0.1, ports: {http: ", stub->port,
                      "}, labels: {version: v1}}\n");
    }
    return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: shop
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
)",
                        endpoints, R"(---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
spec:
  host: shop
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: )",
                        outlier, R"(
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: v1}
    retries: {attempts: 0}
)");
  }

  void StartAll(const std::string& outlier, int gateways) {
    ASSERT_TRUE(server_.Start(
        {SLUICE_SERVER_BINARY, "--plaintext", "--config", dir_.Write("shop.yaml", Config(outlier)),
         "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
        "listening "))
        << server_.error();
    grpc_ = server_.Field("grpc");
    server_metrics_ = server_.Field("metrics");
    for (int i = 0; i < gateways; ++i) {
      auto gateway = std::make_unique<testing::Process>();
      const std::string log = absl::StrCat(dir_.path(), "/access-", i, ".log");
      ASSERT_TRUE(gateway->Start(
          {SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0", "--decision", grpc_,
           "--metrics", "127.0.0.1:0", "--access-log", log, "--access-log-flush-interval", "50ms",
           "--name", absl::StrCat("gw-", i), "--decisions", GetParam()},
          "listening "))
          << gateway->error();
      ASSERT_TRUE(testing::WaitForGatewayServing(gateway->Field("metrics"))) << gateway->Log();
      gateway_addresses_.push_back(gateway->Field("http"));
      access_logs_.push_back(log);
      gateways_.push_back(std::move(gateway));
    }
  }

  testing::HttpResult Get(size_t gateway) {
    return testing::HttpExchange(gateway_addresses_[gateway], "GET", "/item", {{"Host", "shop"}});
  }

  void SetErrorRate(size_t stub, double rate) {
    const testing::HttpResult r = testing::HttpExchange(
        stubs_[stub]->address, "POST", absl::StrCat("/stub/config?error-rate=", rate));
    ASSERT_EQ(r.status, 200);
  }

  int64_t Received(size_t stub) const { return testing::StubReceived(stubs_[stub]->address); }

  // The sum of every sample of the server's metric `name` whose labels contain `labels`.
  double ServerMetric(const std::string& name, const std::string& labels = "") const {
    return testing::SumMetric(testing::HttpGet(server_metrics_, "/metrics"), name, labels);
  }

  // Waits until the server has taken in `n` attempt reports: the next decision then sees
  // every ejection those attempts caused.
  void WaitForReports(double n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (ServerMetric("sluice_attempt_reports_total") < n && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_GE(ServerMetric("sluice_attempt_reports_total"), n);
  }

  // Waits until every gateway worker's stream has installed at least `n` endpoint changes
  // (ejections and returns): in local mode the gateways decide from their own tables, so a
  // report reaching the server is not enough for the next request to see its ejection.
  void WaitForGatewaysToApply(int64_t n) {
    const std::string out = dir_.path() + "/gateways.out";
    const std::string command = absl::StrCat(
        SLUICECTL_BINARY, " --plaintext gateways -o json --server ", grpc_, " > ", out, " 2>&1");
    auto all_applied = [&] {
      if (std::system(command.c_str()) != 0) return false;
      std::ifstream in(out);
      const std::string json((std::istreambuf_iterator<char>(in)), {});
      // sluicectl's JSON (field names as in the proto, zeros printed): one "name" per stream.
      int streams = 0, applied = 0;
      for (size_t at = json.find("\"name\""); at != std::string::npos;
           at = json.find("\"name\"", at + 1)) {
        ++streams;
      }
      constexpr std::string_view kAcked = "\"endpoint_changes_acked\": \"";
      for (size_t at = json.find(kAcked); at != std::string::npos; at = json.find(kAcked, at + 1)) {
        int64_t value = 0;
        const size_t begin = at + kAcked.size();
        if (absl::SimpleAtoi(json.substr(begin, json.find('"', begin) - begin), &value) &&
            value >= n) {
          ++applied;
        }
      }
      return streams > 0 && applied == streams;
    };
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    bool done = all_applied();
    while (!done && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
      done = all_applied();
    }
    ASSERT_TRUE(done) << "gateways did not apply " << n << " endpoint changes";
  }

  std::string Endpoints(const std::string& format = "") const {
    const std::string out = dir_.path() + "/endpoints.out";
    const std::string command =
        absl::StrCat(SLUICECTL_BINARY, " --plaintext endpoints shop --server ", grpc_, format,
                     " > ", out, " 2>&1");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    std::ifstream in(out);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<Stub>> stubs_;
  testing::Process server_;
  std::vector<std::unique_ptr<testing::Process>> gateways_;
  std::vector<std::string> gateway_addresses_, access_logs_;
  std::string grpc_, server_metrics_;
};

TEST_P(OutlierTest, EjectsAfterExactlyTheThresholdAcrossTwoGatewaysAndReturnsWhenHealthy) {
  constexpr int kThreshold = 5;
  StartStubs(3);
  StartAll(absl::StrCat("{consecutive5xxErrors: ", kThreshold,
                        ", interval: 200ms, baseEjectionTime: 2s, maxEjectionPercent: 50}"),
           2);
  // The gauge exists, at 0, before any ejection, for dashboards and alerts.
  EXPECT_THAT(testing::HttpGet(server_metrics_, "/metrics"),
              HasSubstr(absl::StrCat("sluice_outlier_ejections_active{cluster_name=\"", kCluster,
                                     "\"} 0")));
  SetErrorRate(1, 1.0);  // stub 1 starts failing

  // One request at a time, alternating gateways, each report taken in before the next
  // request: the requests that fail are exactly the ones decided before the ejection.
  int failures = 0;
  int failures_by_gateway[2] = {0, 0};
  int requests = 0;
  while (ServerMetric("sluice_outlier_ejections_total") == 0 && requests < 100) {
    const size_t gateway = requests % 2;
    const testing::HttpResult r = Get(gateway);
    ASSERT_TRUE(r.answered);
    if (r.status == 503) {
      ++failures;
      ++failures_by_gateway[gateway];
    } else {
      ASSERT_EQ(r.status, 200) << r.body;
    }
    ++requests;
    WaitForReports(requests);
  }
  const absl::Time ejected_at = absl::Now();
  EXPECT_EQ(failures, kThreshold) << "after " << requests << " requests";
  EXPECT_EQ(Received(1), kThreshold);
  // Round robin over three endpoints with alternating gateways: both saw failures, and
  // neither alone reached the threshold.
  EXPECT_GT(failures_by_gateway[0], 0);
  EXPECT_GT(failures_by_gateway[1], 0);
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_total", "reason=\"consecutive_5xx\""), 1);
  // The counter and the gauge are two updates one after the other: a scrape between them (a
  // loaded machine can pause the server there) sees the counter only.
  const absl::Time gauge_by = absl::Now() + absl::Seconds(1);
  while (ServerMetric("sluice_outlier_ejections_active") != 1 && absl::Now() < gauge_by) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_active"), 1);
  const std::string ejected_port = stubs_[1]->port;
  EXPECT_THAT(server_.Log(), HasSubstr(absl::StrCat("outlier: ejected 127.0.0.1:", ejected_port,
                                                    " of ", kCluster, " (consecutive_5xx")));
  const std::string table = Endpoints();
  EXPECT_THAT(table, HasSubstr("outlier detection: 1 of 3 ejected")) << table;
  EXPECT_THAT(table, HasSubstr("consecutive_5xx since")) << table;
  const std::string json = Endpoints(" -o json");
  EXPECT_THAT(json, HasSubstr("\"ejection_reason\": \"consecutive_5xx\"")) << json;

  // Client-visible errors stop: the healthy two take every request from both gateways.
  const int64_t before = Received(0) + Received(2);
  for (int i = 0; i < 40; ++i) {
    const testing::HttpResult r = Get(i % 2);
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.body;
  }
  EXPECT_EQ(Received(1), kThreshold);
  EXPECT_EQ(Received(0) + Received(2), before + 40);

  // Healthy again, it returns after the ejection time, on an interval tick.
  SetErrorRate(1, 0.0);
  while (ServerMetric("sluice_outlier_ejections_active") > 0 &&
         absl::Now() < ejected_at + absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration ejected_for = absl::Now() - ejected_at;
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_active"), 0);
  // 2 s plus at most one interval (200 ms); the upper bound leaves room for a loaded machine.
  EXPECT_GE(ejected_for, absl::Milliseconds(1900));
  EXPECT_LE(ejected_for, absl::Seconds(4));
  EXPECT_THAT(server_.Log(),
              HasSubstr(absl::StrCat("outlier: returned 127.0.0.1:", ejected_port, " of ")));
  for (int i = 0; i < 30; ++i) ASSERT_EQ(Get(i % 2).status, 200);
  EXPECT_EQ(Received(1), kThreshold + 10);  // its round-robin third again
  EXPECT_THAT(Endpoints(), Not(HasSubstr("ejected  ")));
}

TEST_P(OutlierTest, EveryEndpointEjectedAnswersNoHealthyUpstreamWithoutHanging) {
  StartStubs(3);
  StartAll(
      "{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, "
      "maxEjectionPercent: 100}",
      1);
  for (size_t i = 0; i < stubs_.size(); ++i) SetErrorRate(i, 1.0);

  int stub_failures = 0;
  int no_healthy = 0;
  for (int i = 0; i < 12; ++i) {
    const absl::Time start = absl::Now();
    const testing::HttpResult r = Get(0);
    ASSERT_TRUE(r.answered);
    EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "request " << i;
    ASSERT_EQ(r.status, 503);
    if (r.body == "no healthy upstream") {
      ++no_healthy;
    } else {
      ++stub_failures;
    }
    // Local replies (UH) reach no endpoint and are not reported; the stubs' 503s are.
    WaitForReports(stub_failures);
    // Each stub failure ejects its endpoint: the next request must see it, in either mode.
    WaitForGatewaysToApply(stub_failures);
  }
  // One failure ejects each endpoint; after the third, nothing is left to route to.
  EXPECT_EQ(stub_failures, 3);
  EXPECT_EQ(no_healthy, 9);
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_active"), 3);
  EXPECT_EQ(Received(0) + Received(1) + Received(2), 3);
  // The gateway writes its access log every 50ms: wait for the line (at most 3s).
  auto read_log = [&] {
    std::ifstream in(access_logs_[0]);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::string log = read_log();
  for (const absl::Time give_up = absl::Now() + absl::Seconds(3);
       !absl::StrContains(log, "\" 503 UH ") && absl::Now() < give_up; log = read_log()) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(log, HasSubstr("\" 503 UH "));
  EXPECT_THAT(Endpoints(), HasSubstr("outlier detection: 3 of 3 ejected; min health 0%"));
}

TEST_P(OutlierTest, MaxEjectionPercentKeepsTheLastEndpointsAndCountsOverflows) {
  // 3 endpoints at 50%: one may be ejected ((0+1)/3 = 33%), a second may not (67%).
  StartStubs(3);
  StartAll(
      "{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, "
      "maxEjectionPercent: 50}",
      1);
  for (size_t i = 0; i < stubs_.size(); ++i) SetErrorRate(i, 1.0);
  for (int i = 0; i < 9; ++i) {
    ASSERT_EQ(Get(0).status, 503);
    WaitForReports(i + 1);
    // The first failure ejects its endpoint: in local mode the next request must not go to it
    // from a table that has not heard yet (a failure of an ejected endpoint is no overflow).
    if (i == 0) WaitForGatewaysToApply(1);
  }
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_active"), 1);
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_total"), 1);
  // The other failures found the limit reached: every one after the first ejection.
  EXPECT_EQ(ServerMetric("sluice_outlier_ejections_overflow_total"), 8);
  EXPECT_EQ(Received(0) + Received(1) + Received(2), 9);  // never UH: two stay in rotation
}

INSTANTIATE_TEST_SUITE_P(Modes, OutlierTest, ::testing::Values("server", "local"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace sluice
