// Several sluice-server replicas on one real etcd cluster (three members on loopback): a change
// applied on any replica is served by every replica's gateways, and with the etcd majority
// gone changes are refused while traffic goes on.

#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

std::string ShopConfig(const std::string& host, const std::string& stub_port) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: )",
                      host, R"(
spec:
  hosts: [)",
                      host, R"(]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - {address: 127.0.0.1, ports: {http: )",
                      stub_port, "}}\n");
}

class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(etcd_.Start(3, dir_.path(), &error)) << error;
    store_ = absl::StrCat("etcd://", etcd_.Endpoints(), "/sluice");
    ASSERT_TRUE(stub_.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop"},
                            "listening "))
        << stub_.error();
    const std::string http = stub_.Field("http");
    stub_port_ = http.substr(http.rfind(':') + 1);
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(servers_[i].Start(
          {SLUICE_SERVER_BINARY, "--plaintext", "--store", store_, "--etcd-timeout", "1s",
           "--leader-ttl", "1s", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
          "listening "))
          << servers_[i].error() << servers_[i].Log();
      // A gateway per replica, one in each decision mode.
      ASSERT_TRUE(
          gateways_[i].Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0",
                              "--decision", servers_[i].Field("grpc"), "--metrics", "127.0.0.1:0",
                              "--workers", "1", "--decisions", i == 0 ? "local" : "server"},
                             "listening "))
          << gateways_[i].error();
      ASSERT_TRUE(testing::WaitForGatewayServing(gateways_[i].Field("metrics")));
    }
  }

  testing::Ran Sluicectl(int server, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SLUICECTL_BINARY, "--plaintext", "--server",
                                     servers_[server].Field("grpc")};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunToEnd(argv);
  }

  // Which replica leads: its log says so last.
  int Leader() {
    for (int i = 0; i < 2; ++i) {
      const std::string log = servers_[i].Log();
      const size_t leads = log.rfind(" leads");
      const size_t lost = log.rfind("no longer leads");
      if (leads != std::string::npos && (lost == std::string::npos || leads > lost + 10)) return i;
    }
    return -1;
  }

  int Status(int gateway, const std::string& host) {
    return testing::HttpExchange(gateways_[gateway].Field("http"), "GET", "/", {{"Host", host}})
        .status;
  }

  testing::TempDir dir_;
  testing::EtcdCluster etcd_;
  std::string store_;
  testing::Process stub_;
  std::string stub_port_;
  testing::Process servers_[2];
  testing::Process gateways_[2];
};

TEST_F(ReplicasTest, AnApplyOnOneReplicaReachesTheGatewaysOfEveryReplica) {
  EXPECT_EQ(Status(0, "shop"), 404);
  EXPECT_EQ(Status(1, "shop"), 404);
  const std::string file = dir_.Write("shop.yaml", ShopConfig("shop", stub_port_));
  const absl::Time applied = absl::Now();
  const testing::Ran ran = Sluicectl(0, {"apply", "-f", file});
  ASSERT_EQ(ran.exit_code, 0) << ran.out << ran.err;

  // The other replica's gateway (server mode) routes it once that replica has taken it in.
  absl::Duration served[2] = {absl::InfiniteDuration(), absl::InfiniteDuration()};
  while (absl::Now() - applied < absl::Seconds(5)) {
    for (int g = 0; g < 2; ++g) {
      if (served[g] == absl::InfiniteDuration() && Status(g, "shop") == 200) {
        served[g] = absl::Now() - applied;
      }
    }
    if (served[0] != absl::InfiniteDuration() && served[1] != absl::InfiniteDuration()) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::printf(
      "apply on replica 0 -> served by its own gateway (local mode) in %s, by replica 1's "
      "gateway (server mode) in %s\n",
      absl::FormatDuration(served[0]).c_str(), absl::FormatDuration(served[1]).c_str());
  EXPECT_LT(served[0], absl::Seconds(2));
  EXPECT_LT(served[1], absl::Seconds(2)) << servers_[1].Log();

  // Both replicas list it, as applied, at the same version.
  const testing::Ran listed = Sluicectl(1, {"get", "serviceentries"});
  EXPECT_THAT(listed.out, HasSubstr("applied"));
  EXPECT_EQ(listed.out, Sluicectl(0, {"get", "serviceentries"}).out);
}

TEST_F(ReplicasTest, WithoutAnEtcdMajorityChangesAreRefusedTrafficGoesOnAndNothingIsLost) {
  ASSERT_EQ(
      Sluicectl(0, {"apply", "-f", dir_.Write("a.yaml", ShopConfig("shop", stub_port_))}).exit_code,
      0);
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (Status(1, "shop") != 200 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(Status(1, "shop"), 200);

  etcd_.Stop(0);
  etcd_.Stop(1);
  const testing::Ran refused =
      Sluicectl(1, {"apply", "-f", dir_.Write("b.yaml", ShopConfig("cart", stub_port_))});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.out + refused.err, HasSubstr("could not persist the change: etcd at"));
  // Both replicas go on serving what they had.
  for (int g = 0; g < 2; ++g) {
    EXPECT_EQ(Status(g, "shop"), 200);
    EXPECT_EQ(Status(g, "cart"), 404);
  }

  std::string error;
  ASSERT_TRUE(etcd_.Restart(0, &error)) << error;
  ASSERT_TRUE(etcd_.Restart(1, &error)) << error;
  testing::Ran again;
  const absl::Time retry_until = absl::Now() + absl::Seconds(30);
  do {
    again = Sluicectl(1, {"apply", "-f", dir_.path() + "/b.yaml"});
  } while (again.exit_code != 0 && absl::Now() < retry_until);
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  const absl::Time served_until = absl::Now() + absl::Seconds(5);
  while (Status(0, "cart") != 200 && absl::Now() < served_until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Status(0, "cart"), 200);
  EXPECT_EQ(Status(0, "shop"), 200);  // the change before the outage is still there
}

// One endpoint (the stub) for shop, ejected after 4 consecutive 5xx for 6 s; no retries, so
// every failed request is one failed attempt.
std::string OutlierConfig(const std::string& stub_port) {
  return absl::StrCat(ShopConfig("shop", stub_port), R"(---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 4, interval: 200ms, baseEjectionTime: 6s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop}
    retries: {attempts: 0}
)");
}

// Reports from both replicas' gateways reach one detector (the leader's), its ejection
// reaches both replicas' gateways through etcd, and a new leader keeps it for its time.
TEST_F(ReplicasTest, GatewaysOfEveryReplicaFeedOneDetectorAndEveryGatewaySkipsItsEjections) {
  ASSERT_EQ(
      Sluicectl(0, {"apply", "-f", dir_.Write("shop.yaml", OutlierConfig(stub_port_))}).exit_code,
      0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while ((Status(0, "shop") != 200 || Status(1, "shop") != 200 || Leader() < 0) &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(Status(0, "shop"), 200);
  ASSERT_EQ(Status(1, "shop"), 200);
  const int leader = Leader();
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  const std::string stub = stub_.Field("http");
  const int64_t before = testing::StubReceived(stub);
  ASSERT_EQ(testing::HttpExchange(stub, "POST", "/stub/config?error-rate=1").status, 200);

  // The leader's detector counts what `sluicectl endpoints -o json` shows.
  auto consecutive = [&](int server) {
    const testing::Ran ran = Sluicectl(server, {"endpoints", "shop", "-o", "json"});
    const size_t at = ran.out.find("\"consecutive_5xx\": ");
    int n = 0;
    if (at != std::string::npos) {
      (void)absl::SimpleAtoi(
          absl::string_view(ran.out).substr(at + 19, ran.out.find_first_of(",\n}", at) - at - 19),
          &n);
    }
    return n;
  };
  // Two failures through the follower's gateway, one through the leader's: 3 in a row at the
  // leader, though neither gateway alone saw 3 (and the follower counts nothing itself).
  const int order[] = {follower, leader, follower};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Status(order[i], "shop"), 503);
    const absl::Time counted_by = absl::Now() + absl::Seconds(5);
    while (consecutive(leader) < i + 1 && absl::Now() < counted_by) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(consecutive(leader), i + 1) << "after failure " << i + 1 << "\n"
                                          << servers_[leader].Log() << servers_[follower].Log();
  }
  EXPECT_EQ(consecutive(follower), 0);

  // The fourth, through the follower's gateway, ejects it; both gateways stop sending to it.
  ASSERT_EQ(Status(follower, "shop"), 503);
  const absl::Time failed_at = absl::Now();
  EXPECT_EQ(testing::StubReceived(stub) - before, 4);
  bool skipped[2] = {false, false};
  while (!(skipped[0] && skipped[1]) && absl::Now() - failed_at < absl::Seconds(5)) {
    for (int g = 0; g < 2; ++g) {
      if (!skipped[g]) {
        const testing::HttpResult r =
            testing::HttpExchange(gateways_[g].Field("http"), "GET", "/", {{"Host", "shop"}});
        skipped[g] = r.status == 503 && r.body == "no healthy upstream";
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Duration reached_all = absl::Now() - failed_at;
  std::printf("ejection by the leader reached both replicas' gateways in %s\n",
              absl::FormatDuration(reached_all).c_str());
  EXPECT_TRUE(skipped[0] && skipped[1]);
  // Requests made while the ejection travelled may have reached the stub; none after.
  const int64_t after_ejection = testing::StubReceived(stub);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Status(i % 2, "shop"), 503);
  EXPECT_EQ(testing::StubReceived(stub), after_ejection);
  const testing::Ran shown = Sluicectl(follower, {"endpoints", "shop"});
  EXPECT_THAT(shown.out, HasSubstr("1 of 1 ejected")) << shown.out;
  EXPECT_THAT(shown.out, HasSubstr("consecutive_5xx since")) << shown.out;
  EXPECT_THAT(servers_[follower].Log(), HasSubstr("ejected by the leading replica"));

  // The leader dies: the follower takes over, keeps the ejection for its 6 s, then returns it
  // on its own tick (the stub is healthy again by then).
  ASSERT_EQ(testing::HttpExchange(stub, "POST", "/stub/config?error-rate=0").status, 200);
  kill(servers_[leader].pid(), SIGKILL);
  const absl::Time takeover_by = absl::Now() + absl::Seconds(5);
  // (The killed leader's log still says it leads: only the survivor's counts.)
  while (!absl::StrContains(servers_[follower].Log(), " leads (") && absl::Now() < takeover_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_THAT(servers_[follower].Log(), HasSubstr(" leads ("));
  EXPECT_EQ(Status(follower, "shop"), 503);  // still ejected under the new leader
  while (Status(follower, "shop") != 200 && absl::Now() - failed_at < absl::Seconds(15)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration ejected_for = absl::Now() - failed_at;
  EXPECT_EQ(Status(follower, "shop"), 200);
  EXPECT_GE(ejected_for, absl::Milliseconds(5500)) << servers_[follower].Log();
  EXPECT_LE(ejected_for, absl::Seconds(10)) << servers_[follower].Log();
  EXPECT_THAT(servers_[follower].Log(), HasSubstr("outlier: returned 127.0.0.1:" + stub_port_));
}

// Ten steps, one every 500 ms, with no metric to wait for: each check passes.
constexpr char kTenSteps[] = R"(    interval: 500ms
    threshold: 3
    stepWeights: [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
)";

// shop's subsets v1 and v2 on the ports given, all traffic on v1 with no retries, and a
// Canary to v2 with `analysis` (the block's lines under `analysis:`).
std::string CanaryConfig(const std::string& v1_port = "18081", const std::string& v2_port = "18082",
                         const std::string& analysis = kTenSteps) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: )",
                      v1_port, R"(}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: )",
                      v2_port, R"(}, labels: {version: v2}}
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
    retries: {attempts: 0}
---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
  analysis:
)",
                      analysis);
}

// The leader judges a canary on the traffic of every replica's gateways: with requests only
// through the follower's gateway and the canary failing them all, it rolls back (without
// the forwarded reports it would see no traffic and hold).
TEST_F(ReplicasTest, TheLeadersCanaryJudgesTrafficOfTheFollowersGateways) {
  testing::Process failing;
  ASSERT_TRUE(failing.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop",
                             "--subset", "v2", "--error-rate", "1"},
                            "listening "))
      << failing.error();
  const std::string v2 = failing.Field("http");
  const std::string config = CanaryConfig(stub_port_, v2.substr(v2.rfind(':') + 1),
                                          R"(    interval: 1s
    threshold: 2
    stepWeights: [50, 100]
    minRequests: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 10s
)");
  ASSERT_EQ(Sluicectl(0, {"apply", "-f", dir_.Write("canary.yaml", config)}).exit_code, 0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Leader() < 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(50));
  const int leader = Leader();
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  auto phase = [&](int server) {
    const testing::Ran ran = Sluicectl(server, {"canary", "status", "shop"});
    for (absl::string_view line : absl::StrSplit(ran.out, '\n')) {
      if (absl::ConsumePrefix(&line, "phase")) return std::string(absl::StripAsciiWhitespace(line));
    }
    return std::string();
  };
  int requests = 0;
  int failed = 0;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (phase(leader) != "Failed" && absl::Now() < until) {
    for (int i = 0; i < 20; ++i, ++requests) failed += Status(follower, "shop") == 503 ? 1 : 0;
  }
  EXPECT_EQ(phase(leader), "Failed") << servers_[leader].Log();
  EXPECT_GT(failed, 0);
  EXPECT_GT(testing::StubReceived(v2), 0);
  // Rolled back: the follower's gateway sends nothing to v2 any more.
  const absl::Time rolled_back_by = absl::Now() + absl::Seconds(5);
  int64_t received = testing::StubReceived(v2);
  while (absl::Now() < rolled_back_by) {
    received = testing::StubReceived(v2);
    bool any = false;
    for (int i = 0; i < 20; ++i) any = Status(follower, "shop") != 200 || any;
    if (!any && testing::StubReceived(v2) == received) break;
  }
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Status(follower, "shop"), 200);
  EXPECT_EQ(testing::StubReceived(v2), received);
  std::printf("canary judged on the follower's gateway's %d requests (%d failed): rolled back\n",
              requests, failed);
}

// The canary's weight and phase as replica `server` reports them; weight -1 when it cannot.
struct CanaryView {
  int weight = -1;
  std::string phase;
};

class ReplicasCanaryTest : public ReplicasTest {
 protected:
  CanaryView View(int server) {
    const testing::Ran ran = Sluicectl(server, {"canary", "status", "shop"});
    CanaryView view;
    for (absl::string_view line : absl::StrSplit(ran.out, '\n')) {
      if (absl::ConsumePrefix(&line, "weight")) {
        line = absl::StripLeadingAsciiWhitespace(line);
        (void)absl::SimpleAtoi(line.substr(0, line.find('%')), &view.weight);
      } else if (absl::ConsumePrefix(&line, "phase")) {
        view.phase = std::string(absl::StripAsciiWhitespace(line));
      }
    }
    return view;
  }

  // Polls `server` every 50 ms until the canary succeeds (at most `timeout`), appending each
  // new weight to `steps`.
  void Record(int server, std::vector<int>& steps, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (absl::Now() < give_up) {
      const CanaryView v = View(server);
      if (v.weight >= 0 && (steps.empty() || steps.back() != v.weight)) steps.push_back(v.weight);
      if (v.phase == "Succeeded") return;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
};

// The steps the replicas whose logs are given took, in time order: each step is one log line
// ("2026-12-05T12:00:00.123Z ... canary default/shop: Progressing at 30%: checks passed: canary
// at 30%"), stamped to the millisecond, and steps are 500 ms apart. Unlike polling
// `sluicectl canary status`, which a slow machine may do less often than the canary steps,
// the logs miss none.
std::vector<int> StepsTaken(const std::vector<std::string>& logs) {
  std::vector<std::pair<std::string, int>> stamped;
  for (const std::string& log : logs) {
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      constexpr absl::string_view kStep = ": checks passed: canary at ";
      const size_t at = line.find(kStep);
      if (at == absl::string_view::npos || !absl::StrContains(line, "canary default/shop: ")) {
        continue;
      }
      absl::string_view weight = line.substr(at + kStep.size());
      weight = weight.substr(0, weight.find('%'));
      int w = -1;
      if (absl::SimpleAtoi(weight, &w)) {
        stamped.emplace_back(std::string(line.substr(0, line.find(' '))), w);
      }
    }
  }
  std::stable_sort(stamped.begin(), stamped.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<int> steps;
  for (const auto& [stamp, weight] : stamped) steps.push_back(weight);
  return steps;
}

constexpr int kEverySteps[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};

// What clients saw through `canary status` polls: never a step back, never a weight twice.
void ExpectOnlyForward(const std::vector<int>& polled) {
  for (size_t i = 1; i < polled.size(); ++i) {
    EXPECT_GT(polled[i], polled[i - 1]) << "weights polled: " << absl::StrJoin(polled, ",");
  }
}

TEST_F(ReplicasCanaryTest, TheLeaderKilledMidCanaryAnotherFinishesWithoutSkippingOrRepeating) {
  ASSERT_EQ(Sluicectl(0, {"apply", "-f", dir_.Write("canary.yaml", CanaryConfig())}).exit_code, 0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Leader() < 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(50));
  const int leader = Leader();
  ASSERT_GE(leader, 0) << servers_[0].Log() << servers_[1].Log();
  const int follower = 1 - leader;
  // The follower refuses to act, naming the leader (once its own campaign has seen who leads:
  // within a third of the lease TTL of its start).
  testing::Ran refused;
  const absl::Time named_by = absl::Now() + absl::Seconds(5);
  do {
    refused = Sluicectl(follower, {"canary", "pause", "shop"});
  } while (!absl::StrContains(refused.err + refused.out, "the leader is") &&
           absl::Now() < named_by);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.out + refused.err,
              HasSubstr("the leader is " + servers_[leader].Field("grpc")));
  // `canary status` says who runs the controllers, on either replica.
  EXPECT_THAT(Sluicectl(follower, {"canary", "status", "shop"}).out,
              HasSubstr("controllers  " + servers_[leader].Field("grpc") + " (pid "));
  EXPECT_THAT(Sluicectl(leader, {"canary", "status", "shop"}).out,
              ::testing::ContainsRegex("controllers  .* \\(this replica\\)"));

  // Before the kill, the leader's own view (a follower reads the leader's progress every
  // 500 ms, as often as the canary steps here, so it may show two steps at once).
  std::vector<int> steps;
  while (absl::Now() < give_up) {
    const CanaryView v = View(leader);
    if (v.weight >= 0 && (steps.empty() || steps.back() != v.weight)) steps.push_back(v.weight);
    if (v.weight >= 30) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_FALSE(steps.empty());
  ASSERT_GE(steps.back(), 30);
  const int at_kill = steps.back();
  const absl::Time killed = absl::Now();
  kill(servers_[leader].pid(), SIGKILL);
  // Until it takes over, the other replica shows the progress it last read (up to 500 ms
  // old); from then on, its own, which must go on from the killed leader's last step.
  const absl::Time takeover_by = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(servers_[follower].Log(), " leads (") && absl::Now() < takeover_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  Record(follower, steps, absl::Seconds(20));
  servers_[leader].Stop();
  std::printf("leader killed at %d%%: steps seen on the other replica %s; succeeded %s later\n",
              at_kill, absl::StrJoin(steps, ",").c_str(),
              absl::FormatDuration(absl::Now() - killed).c_str());
  EXPECT_EQ(View(follower).phase, "Succeeded") << servers_[follower].Log();
  ExpectOnlyForward(steps);
  EXPECT_THAT(StepsTaken({servers_[leader].Log(), servers_[follower].Log()}),
              ::testing::ElementsAreArray(kEverySteps));
  EXPECT_THAT(servers_[follower].Log(), HasSubstr("resumes Progressing at"));
}

TEST_F(ReplicasCanaryTest, ALeaderStoppedPastItsLeaseDoesNotActWhenItWakes) {
  ASSERT_EQ(Sluicectl(0, {"apply", "-f", dir_.Write("canary.yaml", CanaryConfig())}).exit_code, 0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Leader() < 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(50));
  const int leader = Leader();
  ASSERT_GE(leader, 0);
  const int other = 1 - leader;
  while (View(other).weight < 20 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(50));

  // Stopped for three lease TTLs: the other replica takes over meanwhile.
  kill(servers_[leader].pid(), SIGSTOP);
  ASSERT_TRUE(testing::WaitForProcessState(servers_[leader].pid(), 'T'));
  // Each step the leader takes is a log line; none may follow the wake.
  const size_t steps_before = StepsTaken({servers_[leader].Log()}).size();
  std::vector<int> steps;
  const absl::Time stopped_until = absl::Now() + absl::Seconds(3);
  while (absl::Now() < stopped_until) {
    const CanaryView v = View(other);
    if (v.weight >= 0 && (steps.empty() || steps.back() != v.weight)) steps.push_back(v.weight);
    absl::SleepFor(absl::Milliseconds(50));
  }
  kill(servers_[leader].pid(), SIGCONT);
  Record(other, steps, absl::Seconds(20));
  EXPECT_EQ(View(other).phase, "Succeeded");
  ExpectOnlyForward(steps);
  EXPECT_THAT(StepsTaken({servers_[leader].Log(), servers_[other].Log()}),
              ::testing::ElementsAreArray(kEverySteps));
  // The woken replica follows: it reports the new leader's outcome and stepped down.
  const absl::Time follow_until = absl::Now() + absl::Seconds(5);
  while (View(leader).phase != "Succeeded" && absl::Now() < follow_until) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(View(leader).phase, "Succeeded");
  EXPECT_EQ(View(leader).weight, 100);
  EXPECT_EQ(StepsTaken({servers_[leader].Log()}).size(), steps_before) << servers_[leader].Log();
  EXPECT_THAT(servers_[leader].Log(), HasSubstr("no longer leads"))
      << servers_[leader].Log() << "\nother:\n"
      << servers_[other].Log();
}

// Three replicas, two gateways naming all three (one per decision mode), traffic all along:
// one etcd member stops, then the leader is killed mid-canary. Nothing a client sees fails,
// and the rollout finishes with every step once.
class ThreeReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(etcd_.Start(3, dir_.path(), &error)) << error;
    const std::string store = absl::StrCat("etcd://", etcd_.Endpoints(), "/sluice");
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(stubs_[i].Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop",
                                   "--subset", i == 0 ? "v1" : "v2"},
                                  "listening "))
          << stubs_[i].error();
    }
    std::vector<std::string> grpc;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(servers_[i].Start(
          {SLUICE_SERVER_BINARY, "--plaintext", "--store", store, "--etcd-timeout", "1s",
           "--leader-ttl", "1s", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
          "listening "))
          << servers_[i].error() << servers_[i].Log();
      grpc.push_back(servers_[i].Field("grpc"));
    }
    for (int g = 0; g < 2; ++g) {
      ASSERT_TRUE(
          gateways_[g].Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0",
                              "--decision", absl::StrJoin(grpc, ","), "--metrics", "127.0.0.1:0",
                              "--workers", "2", "--decisions", g == 0 ? "local" : "server"},
                             "listening "))
          << gateways_[g].error();
      ASSERT_TRUE(testing::WaitForGatewayServing(gateways_[g].Field("metrics")));
    }
  }

  std::string Config() const {
    auto port = [&](int i) {
      const std::string http = stubs_[i].Field("http");
      return http.substr(http.rfind(':') + 1);
    };
    return CanaryConfig(port(0), port(1));
  }

  testing::Ran Sluicectl(int server, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SLUICECTL_BINARY, "--plaintext", "--server",
                                     servers_[server].Field("grpc")};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunToEnd(argv);
  }

  // The replica whose log says last that it leads, among those still running.
  int Leader(int skip = -1) {
    for (int i = 0; i < 3; ++i) {
      if (i == skip) continue;
      const std::string log = servers_[i].Log();
      const size_t leads = log.rfind(" leads");
      const size_t lost = log.rfind("no longer leads");
      if (leads != std::string::npos && (lost == std::string::npos || leads > lost + 10)) return i;
    }
    return -1;
  }

  int Weight(int server) {
    const testing::Ran ran = Sluicectl(server, {"canary", "status", "shop"});
    for (absl::string_view line : absl::StrSplit(ran.out, '\n')) {
      if (absl::ConsumePrefix(&line, "weight")) {
        int weight = -1;
        line = absl::StripLeadingAsciiWhitespace(line);
        if (absl::SimpleAtoi(line.substr(0, line.find('%')), &weight)) return weight;
      }
    }
    return -1;
  }
  std::string Phase(int server) {
    const testing::Ran ran = Sluicectl(server, {"canary", "status", "shop"});
    for (absl::string_view line : absl::StrSplit(ran.out, '\n')) {
      if (absl::ConsumePrefix(&line, "phase")) return std::string(absl::StripAsciiWhitespace(line));
    }
    return "";
  }

  testing::TempDir dir_;
  testing::EtcdCluster etcd_;
  testing::Process stubs_[2];
  testing::Process servers_[3];
  testing::Process gateways_[2];
};

TEST_F(ThreeReplicasTest, UnderLoadAnEtcdMemberStopsAndTheLeaderDiesMidCanaryAndNothingFails) {
  ASSERT_EQ(Sluicectl(0, {"apply", "-f", dir_.Write("canary.yaml", Config())}).exit_code, 0);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Leader() < 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(50));
  const int leader = Leader();
  ASSERT_GE(leader, 0);

  // Load: both gateways in turn, one request every 2 ms, until told to stop (at most 60 s).
  std::atomic<bool> stop{false};
  int sent[2] = {0, 0};
  std::vector<std::string> failures;
  std::thread load([&] {
    const absl::Time until = absl::Now() + absl::Seconds(60);
    for (int i = 0; !stop.load() && absl::Now() < until; ++i) {
      const int g = i % 2;
      const testing::HttpResult r =
          testing::HttpExchange(gateways_[g].Field("http"), "GET", "/", {{"Host", "shop"}});
      ++sent[g];
      if (r.status != 200) {
        failures.push_back(absl::StrCat(
            g == 0 ? "local" : "server", "-mode gateway: ",
            r.answered ? absl::StrCat(r.status, " ", r.body) : std::string("no answer")));
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  // Joined on every way out: an ASSERT returning early must not destroy a running thread (which
  // aborts the whole test binary and hides the failure).
  absl::Cleanup join_load = [&] {
    stop = true;
    if (load.joinable()) load.join();
  };

  // The leader's steps; at 30% one etcd member (not the one the test started first) stops.
  std::vector<int> steps;
  auto record = [&](int server, int until_weight, absl::Time deadline) {
    while (absl::Now() < deadline) {
      const int w = Weight(server);
      if (w >= 0 && (steps.empty() || steps.back() != w)) steps.push_back(w);
      if (w >= until_weight) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
  };
  record(leader, 30, absl::Now() + absl::Seconds(15));
  etcd_.Stop(2);
  record(leader, 50, absl::Now() + absl::Seconds(15));
  ASSERT_GE(steps.back(), 50) << servers_[leader].Log();
  const int at_kill = steps.back();
  const absl::Time killed = absl::Now();
  kill(servers_[leader].pid(), SIGKILL);
  int next = -1;
  while ((next = Leader(leader)) < 0 && absl::Now() < killed + absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(next, 0);
  const absl::Duration takeover = absl::Now() - killed;
  record(next, 100, absl::Now() + absl::Seconds(20));
  const absl::Time succeeded_by = absl::Now() + absl::Seconds(5);
  while (Phase(next) != "Succeeded" && absl::Now() < succeeded_by) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Phase(next), "Succeeded") << servers_[next].Log();
  // Every replica still running agrees.
  EXPECT_EQ(Weight(3 - leader - next), 100);
  absl::SleepFor(absl::Milliseconds(300));  // traffic at 100% for a moment
  stop.store(true);
  load.join();
  servers_[leader].Stop();

  std::printf(
      "3 replicas, 2 gateways: %d + %d requests (local, server mode), %zu failed; etcd member "
      "stopped at 30%%, leader killed at %d%%, new leader in %s; steps polled %s, logged %s\n",
      sent[0], sent[1], failures.size(), at_kill, absl::FormatDuration(takeover).c_str(),
      absl::StrJoin(steps, ",").c_str(),
      absl::StrJoin(StepsTaken({servers_[0].Log(), servers_[1].Log(), servers_[2].Log()}), ",")
          .c_str());
  EXPECT_GT(sent[0], 500);
  EXPECT_GT(sent[1], 500);
  EXPECT_THAT(failures, ::testing::IsEmpty());
  ExpectOnlyForward(steps);
  // Every step once across the replicas, the killed leader's included (its log file keeps them).
  EXPECT_THAT(StepsTaken({servers_[0].Log(), servers_[1].Log(), servers_[2].Log()}),
              ::testing::ElementsAreArray(kEverySteps));
  // The last requests went to v2 only: the rollout reached every gateway.
  const testing::HttpResult last =
      testing::HttpExchange(gateways_[0].Field("http"), "GET", "/", {{"Host", "shop"}});
  EXPECT_EQ(last.Header("x-stub-subset"), "v2");
}

TEST(ReplicasFlagsTest, AStoreThatIsNotEtcdOrCollidesWithStateDirIsAUsageError) {
  testing::TempDir dir;
  const testing::Ran wrong = testing::RunToEnd(
      {SLUICE_SERVER_BINARY, "--plaintext", "--store", "http://127.0.0.1:2379/sluice"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("not an etcd:// address"));
  const testing::Ran both =
      testing::RunToEnd({SLUICE_SERVER_BINARY, "--plaintext", "--store",
                         "etcd://127.0.0.1:2379/sluice", "--state-dir", dir.path()});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_THAT(both.err, HasSubstr("--store and --state-dir exclude each other"));
  // Other replicas forward reports to the address the election key names: a wildcard is
  // none they could reach.
  const testing::Ran wildcard =
      testing::RunToEnd({SLUICE_SERVER_BINARY, "--plaintext", "--store",
                         "etcd://127.0.0.1:2379/sluice", "--listen", "0.0.0.0:7070"});
  EXPECT_EQ(wildcard.exit_code, 2);
  EXPECT_THAT(wildcard.err, HasSubstr("give --advertise HOST:PORT"));
  const testing::Ran alone =
      testing::RunToEnd({SLUICE_SERVER_BINARY, "--plaintext", "--advertise", "10.0.0.5:7070"});
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_THAT(alone.err, HasSubstr("need --store etcd://"));
}

}  // namespace
}  // namespace sluice
