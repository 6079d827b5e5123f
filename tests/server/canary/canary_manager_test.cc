// The canary manager against a real config store, on a simulated clock: what it keeps or
// starts again across restarts and spec edits, and which changes make a new configuration
// version.

#include "server/canary/canary_manager.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::canary {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kShop[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 18083}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
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
    - {destination: {host: shop, subset: v3}, weight: 0}
)";

std::string CanaryYaml(const std::string& canary_subset = "v2", int threshold = 2) {
  return absl::StrCat(R"(apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: )",
                      canary_subset, R"(
  analysis:
    interval: 10s
    threshold: )",
                      threshold, R"(
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
)");
}

class CanaryManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("sluice-canary-manager-", ::getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "config");
    std::ofstream(dir_ / "config/shop.yaml") << kShop;
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // A server's worth of store, recorder and manager on the state directory, as at start-up.
  void Start() {
    manager_.reset();
    store_.reset();
    store::ConfigStore::Options options;
    options.config_paths = {(dir_ / "config").string()};
    options.state_dir = (dir_ / "state").string();
    auto store = store::ConfigStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    recorder_ = std::make_unique<TrafficRecorder>([this] { return now_; });
    registry_ = std::make_unique<prometheus::Registry>();
    CanaryManager::Options canary_options;
    canary_options.state_dir = (dir_ / "state").string();
    canary_options.clock = [this] { return now_; };
    auto manager = CanaryManager::Create(*store_, *recorder_, *registry_, canary_options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
    store_->OnSwap([this](const routing::Snapshot& s) {
      recorder_->OnSnapshot(s);
      manager_->OnSnapshot(s);
    });
    manager_->RunOnce();
  }

  void Apply(const std::string& yaml) {
    const store::ChangeResult r = store_->Apply({{"canary.yaml", yaml}}, false);
    ASSERT_TRUE(r.applied) << r.diagnostics.ToString();
    manager_->RunOnce();
  }

  void Act(const std::string& action, int weight = 0) {
    v1::CanaryActionRequest request;
    request.set_name("shop");
    request.set_action(action);
    request.set_weight(weight);
    ASSERT_TRUE(manager_->Act(request).ok());
  }

  std::string PhaseAndWeight() {
    const v1::CanaryStatusResponse status = manager_->Status("shop", "default");
    if (status.canaries_size() != 1) return "none";
    return absl::StrCat(status.canaries(0).phase(), " ", status.canaries(0).weight());
  }

  fs::path dir_;
  absl::Time now_ = absl::FromUnixSeconds(4'000'000);
  std::unique_ptr<store::ConfigStore> store_;
  std::unique_ptr<TrafficRecorder> recorder_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<CanaryManager> manager_;
};

TEST_F(CanaryManagerTest, ProgressComesBackAfterARestart) {
  Start();
  Apply(CanaryYaml());
  EXPECT_EQ(PhaseAndWeight(), "Progressing 10");
  Act("set-weight", 50);
  Start();  // the same state directory; the Canary was applied, so it is there too
  EXPECT_EQ(PhaseAndWeight(), "Paused 50");
}

TEST_F(CanaryManagerTest, SavedProgressOfACanaryDeletedMeanwhileIsNotResumedLater) {
  Start();
  Apply(CanaryYaml());
  Act("promote");
  ASSERT_EQ(PhaseAndWeight(), "Succeeded 100");
  // Gone while the server was down, then the server starts without it.
  manager_.reset();
  store_.reset();
  fs::remove_all(dir_ / "state/applied.yaml");
  Start();
  EXPECT_EQ(PhaseAndWeight(), "none");
  // Applied again later: a new rollout from 0%, not "resumed Succeeded at 100%".
  Apply(CanaryYaml());
  EXPECT_EQ(PhaseAndWeight(), "Progressing 10");
}

TEST_F(CanaryManagerTest, AnalysisEditsApplyInPlaceAndNewSubsetsStartAgain) {
  Start();
  Apply(CanaryYaml());
  Act("set-weight", 50);
  Apply(CanaryYaml("v2", /*threshold=*/5));
  EXPECT_EQ(PhaseAndWeight(), "Paused 50");
  EXPECT_EQ(manager_->Status("shop", "default").canaries(0).threshold(), 5);
  Apply(CanaryYaml("v3"));
  EXPECT_EQ(PhaseAndWeight(), "Progressing 10");
  EXPECT_EQ(manager_->Status("shop", "default").canaries(0).canary_subset(), "v3");
}

TEST_F(CanaryManagerTest, OnlyWeightChangesMakeNewVersions) {
  Start();
  Apply(CanaryYaml());
  const uint64_t at_ten = store_->version();
  Act("pause");  // the lock's description changes; routing does not
  Act("resume");
  EXPECT_EQ(store_->version(), at_ten);
  Act("set-weight", 30);
  EXPECT_EQ(store_->version(), at_ten + 1);
  // And the store refuses edits of the split it drives, naming the Canary.
  const store::ChangeResult r = store_->Apply({{"vs.yaml", R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - {destination: {host: shop, subset: v1}, weight: 50}
    - {destination: {host: shop, subset: v2}, weight: 50}
)"}},
                                              false);
  EXPECT_FALSE(r.applied);
  EXPECT_THAT(r.diagnostics.ToString(), HasSubstr("Canary default/shop (Paused, canary at 30%)"));
}

// Two replicas sharing progress as sluice-server's etcd store does (here an in-memory cell
// with a leader name standing for the election): only the leader steps and saves, the other
// serves what was saved and refuses actions, and a new leader resumes from the saved step.
class SharedCanaryTest : public CanaryManagerTest {
 protected:
  struct Replica {
    std::string name;
    std::unique_ptr<store::ConfigStore> store;
    std::unique_ptr<TrafficRecorder> recorder;
    std::unique_ptr<prometheus::Registry> registry;
    std::unique_ptr<CanaryManager> manager;
  };

  std::unique_ptr<Replica> MakeReplica(const std::string& name) {
    auto r = std::make_unique<Replica>();
    r->name = name;
    store::ConfigStore::Options options;
    options.config_paths = {(dir_ / "config").string()};
    auto store = store::ConfigStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    r->store = *std::move(store);
    r->recorder = std::make_unique<TrafficRecorder>([this] { return now_; });
    r->registry = std::make_unique<prometheus::Registry>();
    CanaryManager::Options canary_options;
    canary_options.clock = [this] { return now_; };
    canary_options.shared = CanaryManager::Options::Shared{
        .is_leader = [this, name] { return leader_ == name; },
        .leader = [this] { return leader_; },
        .load = [this]() -> absl::StatusOr<std::string> { return saved_; },
        .save = [this, name](const std::string& text) -> absl::Status {
          ++save_attempts_;
          if (leader_ != name) return absl::AbortedError("another replica leads now");
          if (etcd_down_) return absl::UnavailableError("etcd: connection refused");
          saved_ = text;
          ++saves_;
          return absl::OkStatus();
        }};
    auto manager = CanaryManager::Create(*r->store, *r->recorder, *r->registry, canary_options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    r->manager = *std::move(manager);
    Replica* raw = r.get();
    r->store->OnSwap([raw](const routing::Snapshot& s) {
      raw->recorder->OnSnapshot(s);
      raw->manager->OnSnapshot(s);
    });
    // The configuration is shared too (etcd): every replica gets the Canary.
    const store::ChangeResult applied = r->store->Apply({{"canary.yaml", CanaryYaml()}}, false);
    EXPECT_TRUE(applied.applied) << applied.diagnostics.ToString();
    return r;
  }

  static std::string View(Replica& r) {
    const v1::CanaryStatusResponse status = r.manager->Status("shop", "default");
    if (status.canaries_size() != 1) return "none";
    return absl::StrCat(status.canaries(0).phase(), " ", status.canaries(0).weight());
  }

  static absl::Status Act(Replica& r, const std::string& action, int weight = 0) {
    v1::CanaryActionRequest request;
    request.set_name("shop");
    request.set_action(action);
    request.set_weight(weight);
    return r.manager->Act(request).status();
  }

  // A pass of each replica, after the follow interval.
  void Tick(Replica& r) {
    now_ += absl::Seconds(1);
    r.manager->RunOnce();
  }

  static int CountOf(const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }

  std::string leader_;
  bool etcd_down_ = false;
  std::string saved_;
  int saves_ = 0;
  int save_attempts_ = 0;
};

TEST_F(SharedCanaryTest, TheFollowerServesTheLeadersStepsAndANewLeaderResumesFromThem) {
  leader_ = "a";
  std::unique_ptr<Replica> a = MakeReplica("a");
  std::unique_ptr<Replica> b = MakeReplica("b");
  Tick(*a);
  ASSERT_EQ(View(*a), "Progressing 10");
  ASSERT_TRUE(Act(*a, "set-weight", 40).ok());
  EXPECT_GT(saves_, 0);
  const std::string saved_by_a = saved_;

  const int attempts = save_attempts_;
  Tick(*b);
  EXPECT_EQ(View(*b), "Paused 40");     // the leader's state, not a run of its own
  EXPECT_EQ(save_attempts_, attempts);  // a follower does not even try to save
  EXPECT_EQ(saved_, saved_by_a);
  const absl::Status refused = Act(*b, "resume");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("the leader is a"));

  // The leader changes. Before either replica's next pass: a, which thought it led, finds
  // out at the action; b, elected but not yet caught up, asks to try again.
  leader_ = "b";
  const absl::Status stale = Act(*a, "set-weight", 60);
  EXPECT_TRUE(absl::IsFailedPrecondition(stale)) << stale;
  EXPECT_THAT(stale.message(), HasSubstr("the leader is b"));
  EXPECT_TRUE(absl::IsUnavailable(Act(*b, "resume")));
  EXPECT_EQ(saved_, saved_by_a);
  // b's pass: it resumes at 40 and acts.
  Tick(*b);
  EXPECT_EQ(View(*b), "Paused 40");
  ASSERT_TRUE(Act(*b, "set-weight", 70).ok());
  EXPECT_THAT(saved_, HasSubstr("70"));
  const std::string saved_by_b = saved_;
  const int attempts_by_b = save_attempts_;
  Tick(*a);  // a follows now
  EXPECT_EQ(View(*a), "Paused 70");
  EXPECT_EQ(saved_, saved_by_b);
  EXPECT_EQ(save_attempts_, attempts_by_b);
  EXPECT_TRUE(absl::IsFailedPrecondition(Act(*a, "promote")));
}

// A change exists once etcd has it: until then the leader's gateways keep the old weights, the
// log says nothing of it, and no step is stacked on it (which etcd would see as a skip).
TEST_F(SharedCanaryTest, ALeaderThatCannotSaveChangesNoWeightTakesNoStepAndLogsNothing) {
  leader_ = "a";
  std::unique_ptr<Replica> a = MakeReplica("a");
  const uint64_t version = a->store->version();
  etcd_down_ = true;
  ::testing::internal::CaptureStderr();
  Tick(*a);
  now_ += absl::Seconds(30);  // three intervals: steps, if anything were saved
  Tick(*a);
  const absl::Status held = Act(*a, "set-weight", 40);
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(absl::IsUnavailable(held)) << held;
  EXPECT_THAT(held.message(), HasSubstr("set-weight is not saved yet"));
  EXPECT_EQ(a->store->version(), version);
  EXPECT_EQ(CountOf(log, "checks passed"), 0) << log;
  EXPECT_EQ(CountOf(log, "Paused at 40%"), 0) << log;
  EXPECT_THAT(log, HasSubstr("canary progress could not be saved (no step is taken until it is): "
                             "etcd: connection refused"));
  EXPECT_TRUE(saved_.empty());

  // etcd is back: what was held is saved, then served and logged, once; no step was taken.
  etcd_down_ = false;
  ::testing::internal::CaptureStderr();
  Tick(*a);
  log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(a->store->version(), version + 1);
  EXPECT_THAT(saved_, HasSubstr("\"weight\": 40"));
  EXPECT_EQ(CountOf(log, "Paused at 40%"), 1) << log;
  EXPECT_EQ(CountOf(log, "checks passed"), 0) << log;
  EXPECT_EQ(View(*a), "Paused 40");
}

// A leader deposed before its save lands made no change: the new leader goes on from what etcd
// holds, and the old one's gateways never saw the unsaved weight.
TEST_F(SharedCanaryTest, ALeaderDeposedBeforeItsSaveMadeNoChange) {
  leader_ = "a";
  std::unique_ptr<Replica> a = MakeReplica("a");
  std::unique_ptr<Replica> b = MakeReplica("b");
  Tick(*a);
  ASSERT_EQ(View(*a), "Progressing 10");
  const uint64_t version = a->store->version();
  etcd_down_ = true;
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(absl::IsUnavailable(Act(*a, "set-weight", 40)));
  etcd_down_ = false;
  leader_ = "b";
  Tick(*a);  // a finds it no longer leads and drops what it held
  Tick(*b);  // b leads from what etcd has
  Tick(*a);  // a follows b
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(CountOf(log, "at 40%"), 0) << log;
  EXPECT_EQ(View(*a), "Progressing 10");
  EXPECT_EQ(View(*b), "Progressing 10");
  EXPECT_EQ(a->store->version(), version);
  EXPECT_THAT(saved_, Not(HasSubstr("\"weight\": 40")));
}

TEST_F(SharedCanaryTest, WithNoLeaderEveryReplicaHoldsAndSaysSo) {
  std::unique_ptr<Replica> a = MakeReplica("a");
  Tick(*a);
  EXPECT_EQ(save_attempts_, 0);
  const absl::Status refused = Act(*a, "promote");
  EXPECT_THAT(refused.message(), HasSubstr("no replica leads right now"));
}

}  // namespace
}  // namespace sluice::canary
