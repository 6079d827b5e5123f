#include "server/store/config_store.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::store {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kBase[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 80, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
)";

std::string Split(int v1, int v2) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: v1}
      weight: )",
                      v1, R"(
    - destination: {host: shop, subset: v2}
      weight: )",
                      v2, "\n");
}

class ConfigStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("sluice-store-", ::getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "config");
    std::ofstream(dir_ / "config/base.yaml") << kBase;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<ConfigStore> Open(absl::Duration settle = absl::Milliseconds(20)) {
    ConfigStore::Options options;
    options.config_paths = {(dir_ / "config").string()};
    options.state_dir = (dir_ / "state").string();
    options.settle = settle;
    auto store = ConfigStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static const routing::WeightTable& Weights(const ConfigStore& store) {
    return store.Current()->FindVirtualHost("shop")->routes.at(0).weights;
  }

  fs::path dir_;
};

TEST_F(ConfigStoreTest, ApplySwapsInANewVersion) {
  auto store = Open();
  EXPECT_EQ(store->version(), 1u);
  ChangeResult r = store->Apply({{"split.yaml", Split(90, 10)}}, false);
  ASSERT_TRUE(r.applied) << r.diagnostics.ToString();
  EXPECT_EQ(r.version, 2u);
  EXPECT_EQ(store->version(), 2u);
  EXPECT_EQ(Weights(*store).destinations().at(1).weight, 10u);
}

TEST_F(ConfigStoreTest, AFailedChangeChangesNothing) {
  auto store = Open();
  ASSERT_TRUE(store->Apply({{"split.yaml", Split(90, 10)}}, false).applied);
  const auto before = store->Current();
  ChangeResult r = store->Apply({{"bad.yaml", Split(0, 0)}}, false);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.version, 2u);
  EXPECT_THAT(r.diagnostics.ToString(), HasSubstr("bad.yaml:8: spec.http[0].route"));
  EXPECT_EQ(store->Current(), before);
  // Nor was the bad change persisted: a restart still has 90/10.
  store.reset();
  auto reopened = Open();
  EXPECT_EQ(Weights(*reopened).destinations().at(1).weight, 10u);
}

TEST_F(ConfigStoreTest, FilesTogetherAreOneChange) {
  auto store = Open();
  // A Canary needs its VirtualService: alone it is refused, with it both apply at once.
  const std::string canary = R"(apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec: {host: shop, stableSubset: v1, canarySubset: v2}
)";
  EXPECT_FALSE(store->Apply({{"canary.yaml", canary}}, false).applied);
  ChangeResult r = store->Apply({{"canary.yaml", canary}, {"vs.yaml", Split(100, 0)}}, false);
  EXPECT_TRUE(r.applied) << r.diagnostics.ToString();
  EXPECT_THAT(r.changed, ::testing::UnorderedElementsAre("Canary/default/shop",
                                                         "VirtualService/default/shop"));
}

TEST_F(ConfigStoreTest, CanaryWeightsReplaceTheDeclaredSplitAndLockIt) {
  auto store = Open();
  ASSERT_TRUE(store->Apply({{"split.yaml", Split(100, 0)}}, false).applied);
  const std::string host = "shop.default.svc.cluster.local";
  ChangeResult r = store->SetCanaryWeights(
      {{host, "v1", "v2", 30}}, {{host, "v1", "v2", "Canary default/shop (Progressing)"}});
  ASSERT_TRUE(r.applied) << r.diagnostics.ToString();
  EXPECT_EQ(r.version, 3u);
  ASSERT_EQ(Weights(*store).destinations().size(), 2u);
  EXPECT_EQ(Weights(*store).destinations()[0].weight, 70u);
  EXPECT_EQ(Weights(*store).destinations()[1].weight, 30u);

  // An edit of the declared weights is refused while the lock holds, and names why.
  const auto before = store->Current();
  r = store->Apply({{"edit.yaml", Split(50, 50)}}, false);
  EXPECT_FALSE(r.applied);
  EXPECT_THAT(r.diagnostics.ToString(),
              HasSubstr("edit.yaml:7: VirtualService default/shop spec.http[0]: changes the "
                        "weights of shop.default.svc.cluster.local's v1/v2 split, which Canary "
                        "default/shop (Progressing) drives"));
  EXPECT_EQ(store->Current(), before);
  // Other changes go through, and keep the canary's weights.
  r = store->Apply({{"other.yaml", R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other}
spec:
  hosts: [other.example.com]
  http:
  - route:
    - destination: {host: shop, subset: v1}
)"}},
                   false);
  ASSERT_TRUE(r.applied) << r.diagnostics.ToString();
  EXPECT_EQ(Weights(*store).destinations()[1].weight, 30u);
  // Without locks (the canary finished) the edit applies; the weights stay the canary's
  // until they are cleared.
  ASSERT_TRUE(store->SetCanaryWeights({{host, "v1", "v2", 100}}, {}).applied);
  ASSERT_EQ(Weights(*store).destinations().size(), 1u);  // v1 at 0 is dropped
  EXPECT_EQ(Weights(*store).destinations()[0].subset, "v2");
  ASSERT_TRUE(store->Apply({{"edit.yaml", Split(50, 50)}}, false).applied);
  EXPECT_EQ(Weights(*store).destinations()[0].subset, "v2");
  ASSERT_TRUE(store->SetCanaryWeights({}, {}).applied);
  EXPECT_EQ(Weights(*store).destinations()[0].weight, 50u);
  EXPECT_EQ(Weights(*store).destinations()[1].weight, 50u);
}

TEST_F(ConfigStoreTest, DryRunReportsTheNextVersionWithoutSwapping) {
  auto store = Open();
  ChangeResult r = store->Apply({{"split.yaml", Split(50, 50)}}, /*dry_run=*/true);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.version, 2u);
  EXPECT_EQ(store->version(), 1u);
  EXPECT_EQ(store->Current()->FindVirtualHost("shop")->routes.at(0).virtual_service, "");
}

TEST_F(ConfigStoreTest, AppliedLayerReplacesFileResourcesAndDeleteRestoresThem) {
  std::ofstream(dir_ / "config/vs.yaml") << Split(100, 0);
  auto store = Open();
  ASSERT_TRUE(store->Apply({{"split.yaml", Split(0, 100)}}, false).applied);
  EXPECT_EQ(Weights(*store).destinations().at(0).subset, "v2");
  EXPECT_EQ(store->Get({"VirtualService", "default", "shop"})->source, "applied");
  ASSERT_TRUE(store->Delete({"VirtualService", "default", "shop"}).applied);
  EXPECT_EQ(Weights(*store).destinations().at(0).subset, "v1");
  ChangeResult again = store->Delete({"VirtualService", "default", "shop"});
  EXPECT_FALSE(again.applied);
  EXPECT_THAT(again.diagnostics.ToString(), HasSubstr("configuration file"));
}

TEST_F(ConfigStoreTest, StateSurvivesAndVersionsNeverGoBack) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Apply({{"a.yaml", Split(90, 10)}}, false).applied);
    ASSERT_TRUE(store->Apply({{"b.yaml", Split(80, 20)}}, false).applied);
    EXPECT_EQ(store->version(), 3u);
  }
  auto store = Open();
  EXPECT_EQ(store->version(), 4u);
  EXPECT_EQ(Weights(*store).destinations().at(1).weight, 20u);
  // Written whole: no temporary file left behind.
  EXPECT_FALSE(fs::exists(dir_ / "state/applied.yaml.tmp"));
}

TEST_F(ConfigStoreTest, ReloadSeesFileEditsAndRefusesBadOnes) {
  auto store = Open();
  EXPECT_FALSE(store->ReloadFilesIfChanged().has_value());
  std::ofstream(dir_ / "config/vs.yaml") << Split(70, 30);
  auto change = store->ReloadFilesIfChanged();
  ASSERT_TRUE(change.has_value());
  EXPECT_TRUE(change->applied) << change->diagnostics.ToString();
  EXPECT_EQ(Weights(*store).destinations().at(1).weight, 30u);
  std::ofstream(dir_ / "config/vs.yaml") << "kind: [\n";
  change = store->ReloadFilesIfChanged();
  ASSERT_TRUE(change.has_value());
  EXPECT_FALSE(change->applied);
  EXPECT_EQ(Weights(*store).destinations().at(1).weight, 30u);
}

// An in-place edit (`cat new > vs.yaml`) is caught half-written when a poll comes between the
// truncation and the last write: such a file is never loaded, and each edit makes exactly one
// version, complete.
TEST_F(ConfigStoreTest, AFileCaughtMidWriteIsNotLoadedAndEachEditMakesOneVersion) {
  auto store = Open(absl::Milliseconds(100));
  std::ofstream(dir_ / "config/vs.yaml") << Split(50, 50);
  ASSERT_TRUE(store->ReloadFilesIfChanged().has_value());
  const uint64_t first = store->version();

  absl::Mutex mu;
  std::vector<std::pair<uint32_t, uint32_t>> served;  // weights of every version swapped in
  store->OnSwap([&](const routing::Snapshot& s) {
    const routing::VirtualHost* host = s.FindVirtualHost("shop");
    absl::MutexLock lock(&mu);
    if (host == nullptr || host->routes.at(0).weights.destinations().size() != 2) {
      served.emplace_back(0, 0);  // a route without its split: a half-read file
      return;
    }
    served.emplace_back(host->routes.at(0).weights.destinations().at(0).weight,
                        host->routes.at(0).weights.destinations().at(1).weight);
  });
  std::atomic<bool> stop{false};
  std::thread poller([&] {  // the server's reload loop, polling faster than it does
    while (!stop.load()) {
      store->ReloadFilesIfChanged();
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  constexpr int kEdits = 8;
  for (int i = 1; i <= kEdits; ++i) {
    const std::string text = Split(90 - i, 10 + i);
    const size_t cut = text.size() * 6 / 10;
    {
      std::ofstream out(dir_ / "config/vs.yaml", std::ios::trunc);
      out << text.substr(0, cut) << std::flush;
      absl::SleepFor(absl::Milliseconds(40));  // a slow writer: polls see the partial file
      out << text.substr(cut);
    }
    absl::SleepFor(absl::Milliseconds(400));  // settled and loaded before the next edit
  }
  stop = true;
  poller.join();

  absl::MutexLock lock(&mu);
  ASSERT_FALSE(served.empty());
  served.erase(served.begin());  // OnSwap's call with the version serving at registration
  EXPECT_EQ(store->version(), first + kEdits);
  ASSERT_EQ(served.size(), static_cast<size_t>(kEdits));
  for (int i = 1; i <= kEdits; ++i) {
    const std::pair<uint32_t, uint32_t> expected(90 - i, 10 + i);
    EXPECT_EQ(served[i - 1], expected) << "edit " << i;
  }
}

// A writer that pauses mid-write for much longer than the settle delay (a loaded machine, a
// slow disk, a script): the file is still open for writing, so it is not read until closed.
// With the settle delay alone the partial file loaded as a route without its split.
TEST_F(ConfigStoreTest, AWriterPausingLongerThanTheSettleDelayIsWaitedFor) {
  auto store = Open(absl::Milliseconds(20));
  std::ofstream(dir_ / "config/vs.yaml") << Split(50, 50);
  ASSERT_TRUE(store->ReloadFilesIfChanged().has_value());
  const uint64_t first = store->version();
  const std::string text = Split(70, 30);
  const size_t cut = text.size() * 6 / 10;
  {
    std::ofstream out(dir_ / "config/vs.yaml", std::ios::trunc);
    out << text.substr(0, cut) << std::flush;
    for (int i = 0; i < 10; ++i) {  // 300 ms: fifteen settle delays
      absl::SleepFor(absl::Milliseconds(30));
      EXPECT_FALSE(store->ReloadFilesIfChanged().has_value()) << "read while being written";
    }
    EXPECT_EQ(store->version(), first);
    out << text.substr(cut);
  }
  std::optional<ChangeResult> loaded = store->ReloadFilesIfChanged();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(loaded->applied) << loaded->diagnostics.ToString();
  EXPECT_EQ(store->version(), first + 1);
  ASSERT_EQ(Weights(*store).destinations().size(), 2u);
  EXPECT_EQ(Weights(*store).destinations().at(0).weight, 70u);
}

TEST_F(ConfigStoreTest, AnInvalidStartIsRefusedWithEveryProblem) {
  std::ofstream(dir_ / "config/vs.yaml") << Split(0, 0);
  ConfigStore::Options options;
  options.config_paths = {(dir_ / "config").string()};
  auto store = ConfigStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("vs.yaml:8: spec.http[0].route"));
}

}  // namespace
}  // namespace sluice::store
