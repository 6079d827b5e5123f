// A gateway given several sluice-server replicas (--decision A,B) fails over to a live one
// when its replica dies: within one second, and without a failed request, in both modes.

#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

std::string ShopConfig(const std::string& stub_port) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: shop
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - {address: 127.0.0.1, ports: {http: )",
                      stub_port, "}}\n");
}

// How many gateway workers hold a stream to the server at `grpc` (sluicectl gateways).
int StreamsOn(const std::string& grpc) {
  const testing::Ran ran =
      testing::RunToEnd({SLUICECTL_BINARY, "--plaintext", "--server", grpc, "gateways"});
  if (ran.exit_code != 0) return -1;
  // "server version N, K gateway worker(s)"
  const std::vector<std::string> words = absl::StrSplit(ran.out, ' ');
  int n = -1;
  if (words.size() > 3 && absl::SimpleAtoi(words[3], &n)) return n;
  return -1;
}

class FailoverTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FailoverTest, AWorkerWhoseReplicaDiesMovesToAnotherWithinASecond) {
  testing::TempDir dir;
  testing::Process stub;
  ASSERT_TRUE(
      stub.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop"}, "listening "))
      << stub.error();
  const std::string stub_http = stub.Field("http");
  const std::string config =
      dir.Write("shop.yaml", ShopConfig(stub_http.substr(stub_http.rfind(':') + 1)));
  // Two replicas with the same configuration, as two servers on one etcd would serve it.
  testing::Process replicas[2];
  std::string grpc[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(replicas[i].Start({SLUICE_SERVER_BINARY, "--plaintext", "--config", config,
                                   "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
                                  "listening "))
        << replicas[i].error();
    grpc[i] = replicas[i].Field("grpc");
  }
  testing::Process gateway;
  ASSERT_TRUE(gateway.Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0",
                             "--decision", absl::StrCat(grpc[0], ",", grpc[1]), "--metrics",
                             "127.0.0.1:0", "--workers", "2", "--decisions", GetParam()},
                            "listening "))
      << gateway.error();
  EXPECT_EQ(gateway.Field("decision"), absl::StrCat(grpc[0], ",", grpc[1]));
  ASSERT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"))) << gateway.Log();

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0};
  std::thread load([&] {
    // Bounded: at most 20,000 requests, or until told to stop.
    while (!stop.load() && sent.load() < 20000) {
      const testing::HttpResult r =
          testing::HttpExchange(gateway.Field("http"), "GET", "/", {{"Host", "shop"}});
      ++sent;
      if (r.status != 200) ++failed;
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  // Joined on every way out: an ASSERT returning early must not destroy a running thread (which
  // aborts the whole test binary and hides the failure).
  absl::Cleanup join_load = [&] {
    stop = true;
    if (load.joinable()) load.join();
  };
  absl::SleepFor(absl::Milliseconds(300));
  // Kill the replica that holds a stream (both may), under load.
  const int victim = StreamsOn(grpc[0]) > 0 ? 0 : 1;
  const int survivor = 1 - victim;
  ASSERT_GT(StreamsOn(grpc[victim]), 0);
  const absl::Time killed = absl::Now();
  kill(replicas[victim].pid(), SIGKILL);
  absl::Duration moved = absl::InfiniteDuration();
  while (absl::Now() - killed < absl::Seconds(5)) {
    if (StreamsOn(grpc[survivor]) == 2) {
      moved = absl::Now() - killed;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  load.join();
  replicas[victim].Stop();
  std::printf("failover (%s mode): both workers on the surviving replica %s after the kill\n",
              GetParam().c_str(), absl::FormatDuration(moved).c_str());
  EXPECT_LT(moved, absl::Seconds(1)) << gateway.Log();
  EXPECT_GT(sent.load(), 100);
  EXPECT_EQ(failed.load(), 0) << "of " << sent.load();
  EXPECT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"), absl::Seconds(1)));
}

INSTANTIATE_TEST_SUITE_P(Modes, FailoverTest, ::testing::Values("local", "server"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice
