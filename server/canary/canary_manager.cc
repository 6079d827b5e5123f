#include "server/canary/canary_manager.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "lib/common/files.h"
#include "lib/common/log.h"
#include "lib/config/host_names.h"

namespace sluice::canary {
namespace {

constexpr char kStateFile[] = "canaries.json";
constexpr char kSuccessRate[] = "request-success-rate";
constexpr char kDuration[] = "request-duration";
// Flagger's default metric interval.
constexpr absl::Duration kDefaultMetricWindow = absl::Minutes(1);

std::string KeyOf(const config::Canary& c) {
  return absl::StrCat(c.meta.namespace_name, "/", c.meta.name);
}

int64_t UnixMs(absl::Time t) {
  return t == absl::InfinitePast() || t == absl::InfiniteFuture() ? 0 : absl::ToUnixMillis(t);
}
absl::Time FromUnixMs(int64_t ms) {
  return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms);
}

// A PromQL range: "90s", "1500ms".
std::string PromDuration(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return ms % 1000 == 0 ? absl::StrCat(ms / 1000, "s") : absl::StrCat(ms, "ms");
}

// Flagger's built-in Istio queries, on the labels sluice-gateway exports (reporter="source").
constexpr char kSuccessRateQuery[] =
    "100 * sum(rate(istio_requests_total{reporter=\"source\",destination_service=\"{{ host }}\","
    "destination_version=\"{{ canary }}\",response_code!~\"5.*\"}[{{ interval }}])) / "
    "sum(rate(istio_requests_total{reporter=\"source\",destination_service=\"{{ host }}\","
    "destination_version=\"{{ canary }}\"}[{{ interval }}]))";
constexpr char kDurationQuery[] =
    "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="
    "\"source\",destination_service=\"{{ host }}\",destination_version=\"{{ canary }}\"}"
    "[{{ interval }}])) by (le))";

const config::CanaryMetric* DurationMetric(const config::Canary& spec) {
  for (const config::CanaryMetric& m : spec.analysis.metrics) {
    if (m.name == kDuration && m.query.empty() && m.threshold_max) return &m;
  }
  return nullptr;
}

CanaryState FromProto(const v1::CanaryState& p) {
  CanaryState s;
  s.fingerprint = p.fingerprint();
  s.phase = ParsePhase(p.phase()).value_or(Phase::kInitializing);
  s.paused_from = ParsePhase(p.paused_from()).value_or(Phase::kProgressing);
  s.weight = p.weight();
  s.step = p.step();
  s.failed_checks = p.failed_checks();
  s.checks_passed = p.checks_passed();
  s.checks_failed = p.checks_failed();
  s.checks_no_evidence = p.checks_no_evidence();
  s.started = FromUnixMs(p.started_unix_ms());
  s.last_transition = FromUnixMs(p.last_transition_unix_ms());
  s.next_check = FromUnixMs(p.next_check_unix_ms());
  s.message = p.message();
  for (const v1::CanaryCheck& c : p.last_checks()) {
    MetricCheck m;
    m.name = c.name();
    if (c.has_value()) m.value = c.value();
    m.threshold = c.threshold();
    m.outcome = c.outcome() == "passed"   ? CheckOutcome::kPassed
                : c.outcome() == "failed" ? CheckOutcome::kFailed
                                          : CheckOutcome::kNoEvidence;
    m.detail = c.detail();
    s.last_checks.push_back(std::move(m));
  }
  s.failure_judge.assign(p.failure_judge().begin(), p.failure_judge().end());
  s.latency_judge.assign(p.latency_judge().begin(), p.latency_judge().end());
  return s;
}

}  // namespace

std::string Fingerprint(const config::Canary& c) {
  return absl::StrCat(config::ResolveHost(c.host, c.meta.namespace_name), "|", c.stable_subset, "|",
                      c.canary_subset);
}

std::string FullSpecText(const config::Canary& c) {
  const config::CanaryAnalysis& a = c.analysis;
  std::string out =
      absl::StrCat(Fingerprint(c), "|", absl::FormatDuration(a.interval), "|", a.threshold, "|",
                   absl::StrJoin(a.step_weights, ","), "|", a.min_requests, "|",
                   static_cast<int>(a.judge), "|", a.false_rollback_rate);
  for (const config::CanaryMetric& m : a.metrics) {
    absl::StrAppend(&out, "|", m.name, ",", static_cast<int>(m.source), ",",
                    m.threshold_min.value_or(-1), ",", m.threshold_max.value_or(-1), ",",
                    m.interval ? absl::FormatDuration(*m.interval) : "", ",", m.query);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CanaryManager>> CanaryManager::Create(store::ConfigStore& store,
                                                                     TrafficRecorder& recorder,
                                                                     prometheus::Registry& registry,
                                                                     Options options) {
  std::optional<PrometheusClient> client;
  if (!options.prometheus_url.empty()) {
    absl::StatusOr<PrometheusClient> created =
        PrometheusClient::Create(options.prometheus_url, options.prometheus_timeout);
    if (!created.ok()) return created.status();
    client = *std::move(created);
  }
  return std::unique_ptr<CanaryManager>(
      new CanaryManager(store, recorder, registry, std::move(options), std::move(client)));
}

CanaryManager::CanaryManager(store::ConfigStore& store, TrafficRecorder& recorder,
                             prometheus::Registry& registry, Options options,
                             std::optional<PrometheusClient> prometheus)
    : store_(store),
      recorder_(recorder),
      options_(std::move(options)),
      prometheus_(std::move(prometheus)),
      weight_(prometheus::BuildGauge()
                  .Name("sluice_canary_weight")
                  .Help("Percent of the split's traffic the canary subset receives")
                  .Register(registry)),
      phase_(prometheus::BuildGauge()
                 .Name("sluice_canary_phase")
                 .Help("1 for the canary's current phase, 0 for the others")
                 .Register(registry)),
      checks_(prometheus::BuildCounter()
                  .Name("sluice_canary_checks_total")
                  .Help("Canary checks by result: passed, failed, no_evidence")
                  .Register(registry)),
      judge_progress_(prometheus::BuildGauge()
                          .Name("sluice_canary_judge_progress")
                          .Help("Sequential judge: progress toward a rollback, 0 to 1")
                          .Register(registry)),
      flagger_status_(prometheus::BuildGauge()
                          .Name("flagger_canary_status")
                          .Help("Flagger-compatible: 0 running, 1 successful, 2 failed")
                          .Register(registry)),
      flagger_weight_(prometheus::BuildGauge()
                          .Name("flagger_canary_weight")
                          .Help("Flagger-compatible: traffic weight of primary (stable) and canary")
                          .Register(registry)) {
  if (options_.shared.has_value()) {
    resume_source_ = "the leader's progress in etcd";
    return;  // the first pass loads it (Follow)
  }
  if (options_.state_dir.empty()) return;
  const std::string text = ReadFile(std::filesystem::path(options_.state_dir) / kStateFile);
  if (text.empty()) return;
  absl::MutexLock lock(&mu_);
  Adopt(text, absl::StrCat(options_.state_dir, "/", kStateFile));
}

void CanaryManager::Adopt(const std::string& text, const std::string& source) {
  v1::CanaryStates states;
  if (!google::protobuf::util::JsonStringToMessage(text, &states).ok()) {
    LogWarning("canary state in ", source, " is unreadable; canaries start afresh");
    return;
  }
  persisted_.clear();
  for (const v1::CanaryState& s : states.canaries()) {
    persisted_[absl::StrCat(s.namespace_(), "/", s.name())] = s;
  }
  persisted_text_ = text;
}

void CanaryManager::Follow(absl::Time now, bool becoming_leader) {
  {
    absl::MutexLock lock(&mu_);
    if (!becoming_leader && now - followed_at_ < options_.shared->follow_interval) {
      Reconcile(now);           // a Canary applied or deleted meanwhile
      Publish().IgnoreError();  // a follower's cannot fail
      return;
    }
  }
  // etcd is read without the lock.
  absl::StatusOr<std::string> text = options_.shared->load();
  absl::MutexLock lock(&mu_);
  followed_at_ = now;
  if (!text.ok()) {
    LogWarning("canary progress could not be read: ", text.status().message());
    // A new leader must not step from what it held as a follower (it may be behind what the
    // last leader saved): it leads once the saved progress has been read.
    if (becoming_leader) leading_ = false;
    return;
  }
  if (*text != followed_text_ || becoming_leader) {
    followed_text_ = *text;
    // Every run resumes from the leader's state: drop the runs held so far. Their metrics
    // series stay, set again at once; the checks already counted are not counted twice.
    std::map<std::string, Entry> previous = std::move(entries_);
    entries_.clear();
    if (!text->empty()) Adopt(*text, "etcd");
    // Reconcile runs when the generation moved or state waits to be consumed.
    reconciled_generation_ = 0;
    Reconcile(now);
    for (auto& [key, entry] : entries_) {
      if (auto old = previous.find(key); old != previous.end()) {
        entry.exported_passed = old->second.exported_passed;
        entry.exported_failed = old->second.exported_failed;
        entry.exported_no_evidence = old->second.exported_no_evidence;
      }
    }
    if (becoming_leader) {
      LogInfo("canary controllers: this replica leads; canaries resume from their saved step");
    }
  }
  Reconcile(now);
  Publish().IgnoreError();  // logged; a new leader's save is tried again at the next pass
}

bool CanaryManager::StillLeading() {
  if (!options_.shared.has_value() || !leading_) return !options_.shared.has_value();
  if (options_.shared->is_leader()) return true;
  // Lost the role since this pass began (a stop past the lease, a slow query): act on
  // nothing more, and take the new leader's progress at the next pass.
  LogWarning("canary controllers: this replica no longer leads; it follows from now on");
  StepDown();
  return false;
}

CanaryManager::~CanaryManager() { Stop(); }

void CanaryManager::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void CanaryManager::OnSnapshot(const routing::Snapshot& snapshot) {
  absl::MutexLock lock(&specs_mu_);
  if (snapshot.source().canaries.size() == specs_.size()) {
    bool same = true;
    for (size_t i = 0; i < specs_.size() && same; ++i) {
      same = KeyOf(specs_[i]) == KeyOf(snapshot.source().canaries[i]) &&
             FullSpecText(specs_[i]) == FullSpecText(snapshot.source().canaries[i]);
    }
    if (same) return;  // weight steps make snapshots too; nothing changed for the canaries
  }
  specs_ = snapshot.source().canaries;
  ++specs_generation_;
}

void CanaryManager::Start() {
  thread_ = std::thread([this] {
    while (!stop_.HasBeenNotified()) {
      RunOnce();
      stop_.WaitForNotificationWithTimeout(options_.tick);
    }
  });
}

void CanaryManager::Reconcile(absl::Time now) {
  std::vector<config::Canary> specs;
  {
    absl::MutexLock lock(&specs_mu_);
    // The first pass always runs: it is what consumes (or discards) the persisted state.
    if (specs_generation_ == reconciled_generation_ && persisted_.empty()) return;
    reconciled_generation_ = specs_generation_;
    specs = specs_;
  }
  std::map<std::string, Entry> next;
  for (config::Canary& spec : specs) {
    const std::string key = KeyOf(spec);
    const std::string identity = Fingerprint(spec);
    auto existing = entries_.find(key);
    if (existing != entries_.end() && existing->second.run->state().fingerprint == identity) {
      // The same rollout: analysis edits (steps, thresholds, metrics, judge) apply to it
      // from its next check, without starting again.
      Entry& entry = existing->second;
      if (FullSpecText(entry.run->spec()) != FullSpecText(spec)) {
        LogInfo("canary ", key, ": analysis updated; it applies from the next check");
        entry.run = std::make_unique<CanaryRun>(std::move(spec), entry.run->state());
      }
      next.emplace(key, std::move(entry));
      entries_.erase(existing);
      continue;
    }
    Entry entry;
    entry.host = config::ResolveHost(spec.host, spec.meta.namespace_name);
    CanaryState state;
    if (existing != entries_.end()) {
      LogInfo("canary ", key, ": its host or subsets changed; the analysis starts again from 0%");
      Unexport(existing->second);
      entries_.erase(existing);
      state = CanaryRun::Fresh(identity, now);
    } else if (auto kept = persisted_.find(key);
               kept != persisted_.end() && kept->second.fingerprint() == identity) {
      state = FromProto(kept->second);
      // The windows start empty after a restart: the next check is an interval away.
      state.next_check = now + spec.analysis.interval;
      if (!options_.shared.has_value() || leading_) {
        LogInfo("canary ", key, ": resumes ", PhaseName(state.phase), " at ", state.weight,
                "% from ", resume_source_);
      }
    } else {
      state = CanaryRun::Fresh(identity, now);
      LogInfo("canary ", key, ": new; ", entry.host, " ", spec.stable_subset, " -> ",
              spec.canary_subset, ", steps ", absl::StrJoin(spec.analysis.step_weights, ","));
    }
    entry.traffic_until = now;
    entry.run = std::make_unique<CanaryRun>(std::move(spec), std::move(state));
    next.emplace(key, std::move(entry));
  }
  for (const auto& [key, gone] : entries_) {
    LogInfo("canary ", key, ": deleted; the VirtualService's own weights apply again");
    Unexport(gone);
  }
  entries_ = std::move(next);
  persisted_.clear();  // used once, at start: a Canary applied later starts afresh
}

void CanaryManager::FeedTraffic(Entry& entry, absl::Time now) {
  const config::Canary& spec = entry.run->spec();
  if (spec.analysis.judge != config::CanaryJudge::kSequential) return;
  // Whole seconds only: the current one is still filling.
  const absl::Time until = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  if (until <= entry.traffic_until) return;
  const TrafficTotals stable =
      recorder_.Sum(entry.host, spec.stable_subset, entry.traffic_until, until);
  const TrafficTotals canary =
      recorder_.Sum(entry.host, spec.canary_subset, entry.traffic_until, until);
  entry.traffic_until = until;
  ArmCounts stable_slow, canary_slow;
  if (const config::CanaryMetric* d = DurationMetric(spec)) {
    stable_slow = {stable.Timed(), stable.SlowerThan(*d->threshold_max)};
    canary_slow = {canary.Timed(), canary.SlowerThan(*d->threshold_max)};
  }
  entry.run->OnTraffic({stable.requests, stable.failures}, {canary.requests, canary.failures},
                       stable_slow, canary_slow, now);
}

MetricCheck CanaryManager::GatherOne(const CheckJob& job, const config::CanaryMetric& metric,
                                     absl::Time now) const {
  const config::Canary& spec = job.spec;
  const absl::Duration window = metric.interval.value_or(kDefaultMetricWindow);
  if (metric.source == config::MetricSource::kBuiltin) {
    // Never before the run started: a restarted analysis must not judge the last run's
    // traffic.
    const absl::Time from = std::max(now - window, job.started);
    const TrafficTotals t = recorder_.Sum(job.host, spec.canary_subset, from, now);
    if (static_cast<int64_t>(t.requests) < spec.analysis.min_requests || t.requests == 0) {
      return EvaluateMetric(
          metric, std::nullopt,
          absl::StrCat(t.requests, " canary requests in the last ", absl::FormatDuration(window),
                       " < minRequests ", spec.analysis.min_requests));
    }
    return EvaluateMetric(
        metric, metric.name == kSuccessRate ? t.SuccessRatePercent() : t.LatencyQuantileMs(0.99));
  }
  if (!prometheus_) {
    return EvaluateMetric(metric, std::nullopt,
                          "source prometheus, but sluice-server has no --prometheus-url");
  }
  const std::string& text = !metric.query.empty()         ? metric.query
                            : metric.name == kSuccessRate ? std::string(kSuccessRateQuery)
                                                          : std::string(kDurationQuery);
  const std::map<std::string, std::string> variables = {{"name", spec.meta.name},
                                                        {"namespace", spec.meta.namespace_name},
                                                        {"host", job.host},
                                                        {"service", job.host},
                                                        {"target", spec.canary_subset},
                                                        {"canary", spec.canary_subset},
                                                        {"stable", spec.stable_subset},
                                                        {"interval", PromDuration(window)}};
  absl::StatusOr<std::string> query = RenderQueryTemplate(text, variables);
  if (!query.ok())
    return EvaluateMetric(metric, std::nullopt, std::string(query.status().message()));
  absl::StatusOr<std::optional<double>> value = prometheus_->Query(*query);
  if (!value.ok()) {
    // Held, not failed: a Prometheus outage must not roll back a healthy release.
    LogWarning("canary ", KeyOf(spec), ": ", value.status().message());
    return EvaluateMetric(metric, std::nullopt,
                          absl::StrCat("query failed: ", value.status().message()));
  }
  return EvaluateMetric(metric, *value, "Prometheus returned no value (no traffic in the window)");
}

std::vector<MetricCheck> CanaryManager::Gather(const CheckJob& job, absl::Time now) const {
  std::vector<MetricCheck> checks;
  for (const config::CanaryMetric& metric : job.spec.analysis.metrics) {
    checks.push_back(GatherOne(job, metric, now));
  }
  return checks;
}

void CanaryManager::RunOnce() {
  const absl::Time now = options_.clock();
  if (options_.shared.has_value()) {
    const bool leader = options_.shared->is_leader();
    bool was_leader;
    {
      absl::MutexLock lock(&mu_);
      was_leader = leading_;
      if (was_leader && !leader) StepDown();
      leading_ = leader;
    }
    if (!leader || !was_leader) {
      Follow(now, /*becoming_leader=*/leader);
      if (!leader) return;
    }
  }
  std::vector<CheckJob> jobs;
  {
    absl::MutexLock lock(&mu_);
    Reconcile(now);
    for (auto& [key, entry] : entries_) {
      const CanaryState before = entry.run->state();
      FeedTraffic(entry, now);
      Log(key, before, entry.run->state());
      if (entry.run->DueForCheck(now)) {
        jobs.push_back({key, entry.run->spec(), entry.host, entry.run->state().started,
                        entry.run->state().phase == Phase::kInitializing});
      }
    }
    if (jobs.empty() || unsaved_) {
      Publish().IgnoreError();  // logged
      return;
    }
  }
  // Evidence is gathered without the lock: a Prometheus query may take seconds, and status
  // calls or an emergency rollback must not wait behind it.
  std::vector<std::vector<MetricCheck>> evidence;
  for (const CheckJob& job : jobs) {
    evidence.push_back(job.first_step ? std::vector<MetricCheck>{} : Gather(job, now));
  }
  absl::MutexLock lock(&mu_);
  if (options_.shared.has_value() && !StillLeading()) return;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto it = entries_.find(jobs[i].key);
    // Deleted, edited or acted on by hand meanwhile: that evidence no longer applies.
    if (it == entries_.end() ||
        FullSpecText(it->second.run->spec()) != FullSpecText(jobs[i].spec) ||
        it->second.run->state().started != jobs[i].started || !it->second.run->DueForCheck(now)) {
      continue;
    }
    const CanaryState before = it->second.run->state();
    it->second.run->OnCheck(std::move(evidence[i]), now);
    Log(jobs[i].key, before, it->second.run->state());
  }
  Publish().IgnoreError();  // logged
}

void CanaryManager::Log(const std::string& key, const CanaryState& before,
                        const CanaryState& after) {
  if (before.phase == after.phase && before.weight == after.weight &&
      before.message == after.message) {
    return;
  }
  unlogged_.emplace_back(after.phase == Phase::kFailed && before.phase != Phase::kFailed,
                         absl::StrCat("canary ", key, ": ", PhaseName(after.phase), " at ",
                                      after.weight, "%: ", after.message));
}

void CanaryManager::StepDown() {
  leading_ = false;
  followed_text_.clear();  // reload, whatever it held
  unlogged_.clear();
  unsaved_ = false;
}

absl::Status CanaryManager::Publish() {
  // A leader pushes weights only while it still leads; a follower pushes the leader's.
  if (options_.shared.has_value() && leading_ && !StillLeading()) {
    return absl::AbortedError("this replica no longer leads");
  }
  v1::CanaryStates states;
  for (auto& [key, entry] : entries_) {
    v1::CanaryState p = ToProto(entry);
    p.clear_next_check_unix_ms();  // changes every interval; not worth a write
    *states.add_canaries() = std::move(p);
  }
  const bool shared_leader = options_.shared.has_value() && leading_;
  if (shared_leader) {
    if (absl::Status saved = Persist(states); !saved.ok()) {
      unsaved_ = true;
      LogError("canary progress could not be saved (no step is taken until it is): ",
               saved.message());
      return saved;
    }
    unsaved_ = false;
    // Logged at once: the steps are taken (a leader killed from here on has taken them).
    FlushLog();
  }
  std::vector<routing::CanaryWeight> weights;
  std::vector<store::ConfigStore::CanaryLock> locks;
  for (const auto& [key, entry] : entries_) {
    const config::Canary& spec = entry.run->spec();
    const CanaryState& s = entry.run->state();
    weights.push_back({entry.host, spec.stable_subset, spec.canary_subset, s.weight});
    if (entry.run->active()) {
      locks.push_back(
          {entry.host, spec.stable_subset, spec.canary_subset,
           absl::StrCat("Canary ", key, " (", PhaseName(s.phase), ", canary at ", s.weight, "%)")});
    }
  }
  std::string pushed;
  for (const auto& w : weights) absl::StrAppend(&pushed, w.host, w.canary_subset, w.weight, ";");
  for (const auto& l : locks) absl::StrAppend(&pushed, "lock ", l.description, ";");
  if (pushed != pushed_) {
    const store::ChangeResult result =
        store_.SetCanaryWeights(std::move(weights), std::move(locks));
    if (!result.applied) {
      LogError("canary weights could not be applied: ", result.diagnostics.ToString());
    } else {
      pushed_ = std::move(pushed);
    }
  }
  for (auto& [key, entry] : entries_) Export(entry);
  if (!options_.shared.has_value() && !options_.state_dir.empty()) {
    // One server: a failed write is logged and tried again; the canary goes on (its progress
    // is the memory's until the disk takes it).
    if (absl::Status saved = Persist(states); !saved.ok()) {
      LogError("canary progress could not be saved: ", saved.message());
    }
  }
  FlushLog();
  return absl::OkStatus();
}

void CanaryManager::FlushLog() {
  for (const auto& [warning, line] : unlogged_) {
    if (warning) {
      LogWarning(line);
    } else {
      LogInfo(line);
    }
  }
  unlogged_.clear();
}

absl::Status CanaryManager::Persist(const v1::CanaryStates& states) {
  std::string text;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(states, &text, print).ok()) {
    return absl::InternalError("canary progress cannot be written as JSON");
  }
  if (text == persisted_text_) return absl::OkStatus();
  // The sequential judges' state moves every second while traffic flows: on its own it is
  // written at most every 10 s (a restart loses at most that much of their evidence).
  v1::CanaryStates without_judges = states;
  for (v1::CanaryState& c : *without_judges.mutable_canaries()) {
    c.clear_failure_judge();
    c.clear_latency_judge();
    c.clear_judge_progress();
  }
  std::string progress;
  google::protobuf::util::MessageToJsonString(without_judges, &progress, print);
  const absl::Time now = options_.clock();
  if (progress == persisted_progress_ && now - persisted_at_ < absl::Seconds(10)) {
    return absl::OkStatus();
  }
  if (absl::Status s =
          options_.shared.has_value()
              ? options_.shared->save(text)
              : WriteFileAtomically(std::filesystem::path(options_.state_dir) / kStateFile, text);
      !s.ok()) {
    return s;
  }
  persisted_text_ = std::move(text);
  persisted_progress_ = std::move(progress);
  persisted_at_ = now;
  return absl::OkStatus();
}

void CanaryManager::Export(Entry& entry) {
  const config::Canary& spec = entry.run->spec();
  const CanaryState& s = entry.run->state();
  const std::string& ns = spec.meta.namespace_name;
  weight_.Add({{"name", spec.meta.name}, {"namespace", ns}, {"host", entry.host}}).Set(s.weight);
  for (Phase p : {Phase::kInitializing, Phase::kProgressing, Phase::kPromoting, Phase::kSucceeded,
                  Phase::kFailed, Phase::kPaused}) {
    phase_.Add({{"name", spec.meta.name}, {"namespace", ns}, {"phase", PhaseName(p)}})
        .Set(p == s.phase ? 1 : 0);
  }
  const auto count = [&](const char* result, int64_t now, int64_t& exported) {
    prometheus::Counter& c =
        checks_.Add({{"name", spec.meta.name}, {"namespace", ns}, {"result", result}});
    if (now > exported) c.Increment(static_cast<double>(now - exported));
    exported = std::max(exported, now);
  };
  count("passed", s.checks_passed, entry.exported_passed);
  count("failed", s.checks_failed, entry.exported_failed);
  count("no_evidence", s.checks_no_evidence, entry.exported_no_evidence);
  judge_progress_.Add({{"name", spec.meta.name}, {"namespace", ns}})
      .Set(entry.run->judge_progress());
  flagger_status_.Add({{"name", spec.meta.name}, {"namespace", ns}})
      .Set(s.phase == Phase::kSucceeded ? 1
           : s.phase == Phase::kFailed  ? 2
                                        : 0);
  flagger_weight_.Add({{"workload", absl::StrCat(spec.meta.name, "-primary")}, {"namespace", ns}})
      .Set(100 - s.weight);
  flagger_weight_.Add({{"workload", spec.meta.name}, {"namespace", ns}}).Set(s.weight);
}

void CanaryManager::Unexport(const Entry& entry) {
  const config::Canary& spec = entry.run->spec();
  const std::string& ns = spec.meta.namespace_name;
  weight_.Remove(&weight_.Add({{"name", spec.meta.name}, {"namespace", ns}, {"host", entry.host}}));
  for (Phase p : {Phase::kInitializing, Phase::kProgressing, Phase::kPromoting, Phase::kSucceeded,
                  Phase::kFailed, Phase::kPaused}) {
    phase_.Remove(
        &phase_.Add({{"name", spec.meta.name}, {"namespace", ns}, {"phase", PhaseName(p)}}));
  }
  judge_progress_.Remove(&judge_progress_.Add({{"name", spec.meta.name}, {"namespace", ns}}));
  flagger_status_.Remove(&flagger_status_.Add({{"name", spec.meta.name}, {"namespace", ns}}));
  flagger_weight_.Remove(&flagger_weight_.Add(
      {{"workload", absl::StrCat(spec.meta.name, "-primary")}, {"namespace", ns}}));
  flagger_weight_.Remove(&flagger_weight_.Add({{"workload", spec.meta.name}, {"namespace", ns}}));
}

v1::CanaryState CanaryManager::ToProto(const Entry& entry) const {
  const config::Canary& spec = entry.run->spec();
  const CanaryState& s = entry.run->state();
  v1::CanaryState p;
  p.set_name(spec.meta.name);
  p.set_namespace_(spec.meta.namespace_name);
  p.set_host(entry.host);
  p.set_stable_subset(spec.stable_subset);
  p.set_canary_subset(spec.canary_subset);
  p.set_phase(PhaseName(s.phase));
  p.set_paused_from(PhaseName(s.paused_from));
  p.set_weight(s.weight);
  p.set_step(s.step);
  for (int32_t w : spec.analysis.step_weights) p.add_step_weights(w);
  p.set_failed_checks(s.failed_checks);
  p.set_threshold(spec.analysis.threshold);
  p.set_checks_passed(s.checks_passed);
  p.set_checks_failed(s.checks_failed);
  p.set_checks_no_evidence(s.checks_no_evidence);
  p.set_started_unix_ms(UnixMs(s.started));
  p.set_last_transition_unix_ms(UnixMs(s.last_transition));
  p.set_next_check_unix_ms(entry.run->active() ? UnixMs(s.next_check) : 0);
  p.set_message(s.message);
  for (const MetricCheck& c : s.last_checks) {
    v1::CanaryCheck* out = p.add_last_checks();
    out->set_name(c.name);
    out->set_has_value(c.value.has_value());
    out->set_value(c.value.value_or(0));
    out->set_threshold(c.threshold);
    out->set_outcome(CheckOutcomeName(c.outcome));
    out->set_detail(c.detail);
  }
  p.set_judge(spec.analysis.judge == config::CanaryJudge::kSequential ? "sequential" : "threshold");
  p.set_judge_progress(entry.run->judge_progress());
  for (double v : s.failure_judge) p.add_failure_judge(v);
  for (double v : s.latency_judge) p.add_latency_judge(v);
  p.set_fingerprint(s.fingerprint);
  p.set_interval_ms(absl::ToInt64Milliseconds(spec.analysis.interval));
  return p;
}

v1::CanaryStatusResponse CanaryManager::Status(const std::string& name,
                                               const std::string& namespace_name) {
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&mu_);
  Reconcile(now);
  v1::CanaryStatusResponse response;
  response.set_now_unix_ms(absl::ToUnixMillis(now));
  if (options_.shared.has_value()) {
    response.set_leader(options_.shared->leader());
    response.set_answered_by_leader(options_.shared->is_leader());
  }
  for (const auto& [key, entry] : entries_) {
    const config::Canary& spec = entry.run->spec();
    if (!name.empty() && (spec.meta.name != name || spec.meta.namespace_name != namespace_name)) {
      continue;
    }
    *response.add_canaries() = ToProto(entry);
  }
  return response;
}

absl::StatusOr<v1::CanaryStatusResponse> CanaryManager::Act(
    const v1::CanaryActionRequest& request) {
  const absl::Time now = options_.clock();
  const std::string ns = request.namespace_().empty() ? "default" : request.namespace_();
  {
    absl::MutexLock lock(&mu_);
    // A leader checks it still is (it may have lost the role since its last pass).
    if (options_.shared.has_value() && leading_) (void)StillLeading();
    if (options_.shared.has_value() && !leading_ && options_.shared->is_leader()) {
      return absl::UnavailableError(
          "this sluice-server replica has just been elected to run the canary controllers and "
          "is reading their progress: try again in a moment");
    }
    if (options_.shared.has_value() && !leading_) {
      const std::string leader = options_.shared->leader();
      return absl::FailedPreconditionError(absl::StrCat(
          "this sluice-server replica does not run the canary controllers; ",
          leader.empty() ? std::string("no replica leads right now (or etcd cannot say which)")
                         : absl::StrCat("the leader is ", leader),
          ": send the command there"));
    }
    Reconcile(now);
    auto it = entries_.find(absl::StrCat(ns, "/", request.name()));
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("no Canary ", ns, "/", request.name()));
    }
    CanaryRun& run = *it->second.run;
    const CanaryState before = run.state();
    absl::Status status;
    const std::string& action = request.action();
    if (action == "promote") {
      status = run.Promote(now);
    } else if (action == "rollback") {
      status = run.Rollback(now);
    } else if (action == "pause") {
      status = run.Pause(now);
    } else if (action == "resume") {
      status = run.Resume(now);
    } else if (action == "set-weight") {
      status = run.SetWeight(request.weight(), now);
    } else if (action == "restart") {
      run.Restart(now);
      it->second.traffic_until = now;
      // The run's counts start again from 0; so does what was exported of them.
      it->second.exported_passed = it->second.exported_failed = it->second.exported_no_evidence = 0;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown action \"", action,
                       "\": promote, rollback, pause, resume, restart or set-weight"));
    }
    if (!status.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("canary ", ns, "/", request.name(), ": ", status.message()));
    }
    Log(it->first, before, run.state());
    if (absl::Status saved = Publish(); !saved.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "canary ", ns, "/", request.name(), ": ", action, " is not saved yet (", saved.message(),
          "); it takes effect once saved, unless this replica stops leading first: see "
          "`sluicectl canary status`"));
    }
  }
  return Status(request.name(), ns);
}

}  // namespace sluice::canary
