#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/canary/canary_run.h"
#include "server/canary/prometheus_client.h"
#include "server/canary/traffic_recorder.h"
#include "server/store/config_store.h"
#include "sluice/v1/admin.pb.h"

namespace sluice::canary {

// Runs every Canary of the configuration: one CanaryRun each, fed with evidence from the
// server's own traffic windows or from Prometheus, its weights applied through the config
// store (a new snapshot per step, swapped atomically like any change), its progress kept in
// the state directory, its metrics exported. A thread ticks it; the admin API reads and acts.
class CanaryManager {
 public:
  struct Options {
    std::string state_dir;       // empty: progress is not kept across restarts
    std::string prometheus_url;  // empty: metrics with source prometheus have no evidence
    absl::Duration prometheus_timeout = absl::Seconds(2);
    absl::Duration tick = absl::Milliseconds(100);
    std::function<absl::Time()> clock = [] { return absl::Now(); };
    // Several replicas (sluice-server --store etcd://): the leader alone steps canaries and
    // saves their progress; the other replicas load what it saved, serve its weights and
    // refuse actions, naming it. Replaces state_dir.
    struct Shared {
      std::function<bool()> is_leader;
      std::function<std::string()> leader;                // who leads, for messages ("" if nobody)
      std::function<absl::StatusOr<std::string>()> load;  // "" when nothing is saved
      // Refused (not OK) once this replica no longer leads.
      std::function<absl::Status(const std::string&)> save;
      // How often a follower reads the leader's progress.
      absl::Duration follow_interval = absl::Milliseconds(500);
    };
    std::optional<Shared> shared;
  };

  // Fails when the Prometheus URL is unusable.
  static absl::StatusOr<std::unique_ptr<CanaryManager>> Create(store::ConfigStore& store,
                                                               TrafficRecorder& recorder,
                                                               prometheus::Registry& registry,
                                                               Options options);
  ~CanaryManager();

  // The config store's listener: takes note of the Canary resources (never calls the store).
  void OnSnapshot(const routing::Snapshot& snapshot);
  // Starts the ticking thread; Stop ends it (the destructor too).
  void Start();
  void Stop();
  // One pass: follow the configuration's Canaries, feed traffic, run due checks, apply
  // weights, persist and export. The thread calls it every `tick`.
  void RunOnce();

  v1::CanaryStatusResponse Status(const std::string& name, const std::string& namespace_name);
  absl::StatusOr<v1::CanaryStatusResponse> Act(const v1::CanaryActionRequest& request);

 private:
  struct Entry {
    std::unique_ptr<CanaryRun> run;
    std::string host;                                 // FQDN
    absl::Time traffic_until = absl::InfinitePast();  // fed to the sequential judge up to here
    int64_t exported_passed = 0, exported_failed = 0, exported_no_evidence = 0;
  };

  // A due check, taken out of the lock to gather its evidence.
  struct CheckJob {
    std::string key;
    config::Canary spec;
    std::string host;
    absl::Time started;
    bool first_step = false;  // Initializing: nothing to judge yet
  };

  CanaryManager(store::ConfigStore& store, TrafficRecorder& recorder,
                prometheus::Registry& registry, Options options,
                std::optional<PrometheusClient> prometheus);

  void Reconcile(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FeedTraffic(Entry& entry, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without the lock: reads only the job, the recorder and Prometheus.
  std::vector<MetricCheck> Gather(const CheckJob& job, absl::Time now) const;
  MetricCheck GatherOne(const CheckJob& job, const config::CanaryMetric& metric,
                        absl::Time now) const;
  // Persists (unless a follower), pushes weights and locks to the store when they changed,
  // exports, then logs the transitions held since the last pass. A shared leader saves to etcd
  // first: a step exists once it is saved, so a leader that dies before its save has taken no
  // step (its successor takes it, once) and traffic never sees a weight the store lacks. Fails
  // only then (not saved; the weights and the log wait for a save that succeeds).
  absl::Status Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes canaries.json (state directory or etcd) when it changed. The judges' state alone is
  // written at most every 10 s.
  absl::Status Persist(const v1::CanaryStates& states) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `text` (canaries.json) as the progress to resume from at the next Reconcile.
  void Adopt(const std::string& text, const std::string& source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Options::shared: a follower's pass (or the first pass of a new leader): loads the leader's
  // progress when it changed and serves its weights.
  void Follow(absl::Time now, bool becoming_leader);
  // Options::shared, a leader: whether it still leads now (not only at the start of the
  // pass). Without Options::shared: true.
  bool StillLeading() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Export(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unexport(const Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::CanaryState ToProto(const Entry& entry) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Holds a line for a transition; Publish logs it once the transition is saved.
  void Log(const std::string& key, const CanaryState& before, const CanaryState& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushLog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A shared leader lost its role: what it held unsaved was never a step.
  void StepDown() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::ConfigStore& store_;
  TrafficRecorder& recorder_;
  Options options_;
  std::optional<PrometheusClient> prometheus_;

  absl::Mutex specs_mu_;
  std::vector<config::Canary> specs_ ABSL_GUARDED_BY(specs_mu_);
  uint64_t specs_generation_ ABSL_GUARDED_BY(specs_mu_) = 0;

  absl::Mutex mu_;
  uint64_t reconciled_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);              // by "namespace/name"
  std::map<std::string, v1::CanaryState> persisted_ ABSL_GUARDED_BY(mu_);  // read at start
  std::string pushed_ ABSL_GUARDED_BY(mu_);          // weights and locks last given to the store
  std::string persisted_text_ ABSL_GUARDED_BY(mu_);  // canaries.json as last written
  std::string persisted_progress_ ABSL_GUARDED_BY(mu_);  // the same without judge state
  absl::Time persisted_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Transitions not yet logged: {warning?, line}.
  std::vector<std::pair<bool, std::string>> unlogged_ ABSL_GUARDED_BY(mu_);
  // Options::shared, a leader whose last save failed: no check runs until it succeeds (a second
  // step on top of an unsaved one would reach etcd as a skip).
  bool unsaved_ ABSL_GUARDED_BY(mu_) = false;
  // Options::shared.
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  std::string followed_text_ ABSL_GUARDED_BY(mu_);  // the leader's progress as last loaded
  absl::Time followed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string resume_source_ = "the state directory";

  prometheus::Family<prometheus::Gauge>& weight_;
  prometheus::Family<prometheus::Gauge>& phase_;
  prometheus::Family<prometheus::Counter>& checks_;
  prometheus::Family<prometheus::Gauge>& judge_progress_;
  prometheus::Family<prometheus::Gauge>& flagger_status_;
  prometheus::Family<prometheus::Gauge>& flagger_weight_;

  absl::Notification stop_;
  std::thread thread_;
};

// What identifies a Canary's rollout (host and subsets): a change to it restarts the run.
std::string Fingerprint(const config::Canary& canary);
// Everything of the spec: a change to the rest (the analysis) applies to the running run.
std::string FullSpecText(const config::Canary& canary);

}  // namespace sluice::canary
