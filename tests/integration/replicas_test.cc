// Several sluice-server replicas on one real etcd cluster (three members on loopback): a change
// applied on any replica is served by every replica's gateways, and with the etcd majority
// gone changes are refused while traffic goes on.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
           "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
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
  EXPECT_THAT(refused.out + refused.err, HasSubstr("nothing was applied"));
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
}

}  // namespace
}  // namespace sluice
