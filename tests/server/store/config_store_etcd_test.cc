// ConfigStore with its applied layer in a real etcd: several replicas (stores) on one etcd.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/config_store.h"
#include "server/store/etcd_client.h"
#include "tests/integration/process.h"

namespace sluice::store {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 80, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
)";

std::string Route(const std::string& name, int timeout_ms) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: )",
                      name, R"(}
spec:
  hosts: [)",
                      name, R"(.example]
  http:
  - timeout: )",
                      timeout_ms, R"(ms
    route:
    - destination: {host: shop}
)");
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

std::string Errors(const ChangeResult& result) {
  std::string out;
  for (const config::Diagnostic& d : result.diagnostics.all()) absl::StrAppend(&out, d.ToString());
  return out;
}

class ConfigStoreEtcdTest : public ::testing::Test {
 protected:
  void StartEtcd(int members) {
    std::string error;
    ASSERT_TRUE(cluster_.Start(members, dir_.path(), &error)) << error;
  }
  void SetUp() override { StartEtcd(1); }

  std::unique_ptr<ConfigStore> Replica(bool follow = true) {
    absl::StatusOr<EtcdLocation> location =
        ParseEtcdLocation(absl::StrCat("etcd://", cluster_.Endpoints(), "/sluice"));
    EXPECT_TRUE(location.ok()) << location.status();
    absl::StatusOr<std::unique_ptr<EtcdClient>> client =
        EtcdClient::Create(*location, {.timeout = absl::Seconds(2)});
    EXPECT_TRUE(client.ok()) << client.status();
    ConfigStore::Options options;
    options.etcd = *std::move(client);
    options.follow_etcd = follow;
    absl::StatusOr<std::unique_ptr<ConfigStore>> store = ConfigStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static ChangeResult Apply(ConfigStore& store, const std::string& yaml) {
    return store.Apply({{"change.yaml", yaml}}, /*dry_run=*/false);
  }

  testing::TempDir dir_;
  testing::EtcdCluster cluster_;
};

TEST_F(ConfigStoreEtcdTest, AChangeOnOneReplicaIsServedByTheOtherAtTheSameVersion) {
  std::unique_ptr<ConfigStore> a = Replica();
  std::unique_ptr<ConfigStore> b = Replica();
  ASSERT_TRUE(a && b);
  const ChangeResult applied = Apply(*a, absl::StrCat(kService, "---\n", Route("cart", 700)));
  ASSERT_TRUE(applied.applied) << Errors(applied);

  ASSERT_TRUE(WaitFor([&] { return b->version() == applied.version; }))
      << "b serves version " << b->version() << ", a applied " << applied.version;
  const std::optional<StoredResource> route = b->Get({"VirtualService", "default", "cart"});
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->source, "applied");
  EXPECT_THAT(route->yaml, HasSubstr("700ms"));
  EXPECT_EQ(b->etcd_revision(), a->etcd_revision());

  // A delete travels the same way.
  const ChangeResult deleted = b->Delete({"VirtualService", "default", "cart"});
  ASSERT_TRUE(deleted.applied) << Errors(deleted);
  ASSERT_TRUE(WaitFor([&] { return a->version() == deleted.version; }));
  EXPECT_FALSE(a->Get({"VirtualService", "default", "cart"}).has_value());
}

TEST_F(ConfigStoreEtcdTest, AReplicaThatRestartsReadsTheConfigurationAndVersionFromEtcd) {
  ChangeResult applied;
  {
    std::unique_ptr<ConfigStore> a = Replica();
    applied = Apply(*a, absl::StrCat(kService, "---\n", Route("cart", 300)));
    ASSERT_TRUE(applied.applied) << Errors(applied);
  }
  std::unique_ptr<ConfigStore> again = Replica();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->version(), applied.version);
  EXPECT_TRUE(again->Get({"ServiceEntry", "default", "shop"}).has_value());
}

TEST_F(ConfigStoreEtcdTest, AChangeValidatedAgainstAStaleConfigurationIsRefusedAsAConflict) {
  std::unique_ptr<ConfigStore> behind = Replica(/*follow=*/false);
  std::unique_ptr<ConfigStore> a = Replica();
  ASSERT_TRUE(behind && a);
  ASSERT_TRUE(Apply(*a, absl::StrCat(kService, "---\n", Route("cart", 300))).applied);

  // `behind` never saw that change: its own, validated without it, must not overwrite it.
  const uint64_t before = behind->version();
  const ChangeResult lost = Apply(*behind, absl::StrCat(kService, "---\n", Route("cart", 900)));
  EXPECT_FALSE(lost.applied);
  EXPECT_THAT(Errors(lost), HasSubstr("conflict: another sluice-server replica changed"));
  EXPECT_THAT(Errors(lost), HasSubstr("nothing was applied"));
  EXPECT_EQ(behind->version(), before);
  EXPECT_FALSE(behind->Get({"VirtualService", "default", "cart"}).has_value());

  // etcd still holds the winner's change, which the other replica serves.
  std::unique_ptr<ConfigStore> reader = Replica();
  EXPECT_THAT(reader->Get({"VirtualService", "default", "cart"})->yaml, HasSubstr("300ms"));
}

TEST_F(ConfigStoreEtcdTest, ConcurrentAppliesOnTwoReplicasNeverLoseOneSilently) {
  std::unique_ptr<ConfigStore> a = Replica();
  std::unique_ptr<ConfigStore> b = Replica();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Apply(*a, kService).applied);
  ASSERT_TRUE(WaitFor([&] { return b->version() == a->version(); }));

  // Each replica adds its own routes as fast as it can; every apply either wins or is told
  // it lost. At the end, exactly the winners' routes exist on both.
  constexpr int kPerReplica = 25;
  std::atomic<int> won{0}, conflicts{0}, other{0};
  auto run = [&](ConfigStore& store, const std::string& tag) {
    for (int i = 0; i < kPerReplica; ++i) {
      const ChangeResult r = Apply(store, Route(absl::StrCat(tag, i), 100 + i));
      if (r.applied) {
        won.fetch_add(1);
      } else if (absl::StrContains(Errors(r), "conflict")) {
        conflicts.fetch_add(1);
      } else {
        other.fetch_add(1);
        ADD_FAILURE() << Errors(r);
      }
    }
  };
  std::thread ta([&] { run(*a, "a"); });
  std::thread tb([&] { run(*b, "b"); });
  ta.join();
  tb.join();
  EXPECT_EQ(won.load() + conflicts.load(), 2 * kPerReplica);
  EXPECT_EQ(other.load(), 0);
  ASSERT_TRUE(WaitFor([&] { return a->etcd_revision() == b->etcd_revision(); }));
  const size_t routes_a = a->List("VirtualService").size();
  EXPECT_EQ(routes_a, static_cast<size_t>(won.load()));
  EXPECT_EQ(b->List("VirtualService").size(), routes_a);
  std::unique_ptr<ConfigStore> reader = Replica();
  EXPECT_EQ(reader->List("VirtualService").size(), routes_a);
  std::printf("concurrent applies: %d won, %d refused as conflicts\n", won.load(),
              conflicts.load());
}

TEST_F(ConfigStoreEtcdTest, WithEtcdDownChangesAreRefusedAndTheLastConfigurationServes) {
  std::unique_ptr<ConfigStore> a = Replica();
  ASSERT_TRUE(a);
  ASSERT_TRUE(Apply(*a, kService).applied);
  const uint64_t serving = a->version();

  cluster_.Stop(0);
  const ChangeResult refused = Apply(*a, Route("cart", 300));
  EXPECT_FALSE(refused.applied);
  EXPECT_THAT(Errors(refused), HasSubstr("could not persist the change: etcd at"));
  EXPECT_THAT(Errors(refused), HasSubstr("nothing was applied"));
  EXPECT_EQ(a->version(), serving);
  EXPECT_TRUE(a->Get({"ServiceEntry", "default", "shop"}).has_value());

  std::string error;
  ASSERT_TRUE(cluster_.Restart(0, &error)) << error;
  // gRPC's connection to the restarted member can take up to ~10 s to come back (seen: the
  // first attempt waits for etcd's HTTP/2 SETTINGS); changes are refused until then.
  ChangeResult after;
  ASSERT_TRUE(WaitFor(
      [&] {
        after = Apply(*a, Route("cart", 300));
        return after.applied;
      },
      absl::Seconds(30)))
      << Errors(after);
  std::unique_ptr<ConfigStore> reader = Replica();
  EXPECT_TRUE(reader->Get({"ServiceEntry", "default", "shop"}).has_value());  // nothing lost
  EXPECT_TRUE(reader->Get({"VirtualService", "default", "cart"}).has_value());
}

TEST_F(ConfigStoreEtcdTest, OpeningWithoutAReachableEtcdFailsNamingIt) {
  const std::string nowhere = absl::StrCat("127.0.0.1:", testing::FreePort());
  absl::StatusOr<EtcdLocation> location =
      ParseEtcdLocation(absl::StrCat("etcd://", nowhere, "/sluice"));
  ASSERT_TRUE(location.ok());
  ConfigStore::Options options;
  options.etcd = *EtcdClient::Create(*location, {.timeout = absl::Seconds(1)});
  absl::StatusOr<std::unique_ptr<ConfigStore>> store = ConfigStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(nowhere));
}

class ConfigStoreEtcdClusterTest : public ConfigStoreEtcdTest {
 protected:
  void SetUp() override { StartEtcd(3); }
};

TEST_F(ConfigStoreEtcdClusterTest, OneMemberDownChangesNothingTheMajorityDownStopsChanges) {
  std::unique_ptr<ConfigStore> a = Replica();
  std::unique_ptr<ConfigStore> b = Replica();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Apply(*a, kService).applied);

  cluster_.Stop(0);
  ChangeResult with_two;
  // The client's connection to the stopped member fails over to the others.
  ASSERT_TRUE(WaitFor(
      [&] {
        with_two = Apply(*a, Route("cart", 300));
        return with_two.applied;
      },
      absl::Seconds(20)))
      << Errors(with_two);
  ASSERT_TRUE(WaitFor([&] { return b->version() == with_two.version; }));

  cluster_.Stop(1);  // two of three down: no quorum
  const ChangeResult no_quorum = Apply(*a, Route("cart", 900));
  EXPECT_FALSE(no_quorum.applied);
  // Refused (no member answered) or timed out (etcd may commit it later): either way this
  // replica did not apply it, and says which.
  EXPECT_THAT(Errors(no_quorum), HasSubstr("could not persist the change: etcd at"));
  EXPECT_THAT(Errors(no_quorum),
              ::testing::AnyOf(HasSubstr("nothing was applied"),
                               HasSubstr("etcd may still commit it once a majority")));
  EXPECT_THAT(a->Get({"VirtualService", "default", "cart"})->yaml, HasSubstr("300ms"));
  EXPECT_THAT(b->Get({"VirtualService", "default", "cart"})->yaml, HasSubstr("300ms"));
}

}  // namespace
}  // namespace sluice::store
