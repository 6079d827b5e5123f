#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lib/config/resources.h"
#include "server/canary/sequential_judge.h"

namespace sluice::canary {

// Flagger's phases, minus the ones that copy deployments (sluice only moves weights):
// Initializing (canary at 0), Progressing (stepping up), Promoting (at 100%, judged one last
// time), Succeeded (100% to the canary), Failed (rolled back: 0%), and Paused (by hand).
enum class Phase { kInitializing, kProgressing, kPromoting, kSucceeded, kFailed, kPaused };
const char* PhaseName(Phase phase);
std::optional<Phase> ParsePhase(const std::string& name);

enum class CheckOutcome { kPassed, kFailed, kNoEvidence };
const char* CheckOutcomeName(CheckOutcome outcome);

// One metric at one check.
struct MetricCheck {
  std::string name;
  std::optional<double> value;  // nullopt: no evidence, or the query failed
  std::string threshold;        // "min 99", "max 500", "min 1 max 5"
  CheckOutcome outcome = CheckOutcome::kNoEvidence;
  std::string detail;  // why there was no evidence, or the error
};

// Compares `value` with the metric's thresholdRange. No value is no evidence.
MetricCheck EvaluateMetric(const config::CanaryMetric& metric, std::optional<double> value,
                           std::string no_value_reason = "");
// A check fails if any metric fails, else has no evidence if any metric has none, else passes.
CheckOutcome Combine(const std::vector<MetricCheck>& checks);

// Everything a canary's progress is, kept across restarts.
struct CanaryState {
  std::string fingerprint;  // of the spec it runs; a different spec restarts the analysis
  Phase phase = Phase::kInitializing;
  Phase paused_from = Phase::kProgressing;
  int32_t weight = 0;         // canary percent
  int32_t step = -1;          // index of `weight` in the step weights; -1 before the first step
  int32_t failed_checks = 0;  // cumulative for the run, as Flagger counts them
  int64_t checks_passed = 0;
  int64_t checks_failed = 0;
  int64_t checks_no_evidence = 0;
  absl::Time started = absl::InfinitePast();
  absl::Time last_transition = absl::InfinitePast();
  absl::Time next_check = absl::InfinitePast();
  std::string message;  // what happened last, for people
  std::vector<MetricCheck> last_checks;
  // Sequential judge state: per-component log likelihood ratios, for failures and for slow
  // requests (empty: fresh).
  std::vector<double> failure_judge;
  std::vector<double> latency_judge;
};

// The canary state machine of one Canary: pure, time passed in. Each interval the caller
// gathers evidence into MetricChecks and calls OnCheck; the run steps up, holds or rolls
// back. With the sequential judge the caller also feeds both subsets' traffic as it comes
// (OnTraffic), which may roll back between checks.
class CanaryRun {
 public:
  CanaryRun(config::Canary spec, CanaryState state);
  // A new run: Initializing at weight 0, first check due at once.
  static CanaryState Fresh(std::string fingerprint, absl::Time now);

  bool active() const;  // Initializing, Progressing, Promoting or Paused
  bool DueForCheck(absl::Time now) const;
  void OnCheck(std::vector<MetricCheck> checks, absl::Time now);

  // New traffic of both subsets since the last call. `*_slow` count requests slower than the
  // request-duration threshold (empty when there is none).
  void OnTraffic(const ArmCounts& stable, const ArmCounts& canary, const ArmCounts& stable_slow,
                 const ArmCounts& canary_slow, absl::Time now);

  // By hand (sluicectl canary ...). Errors say why the action does not apply now.
  absl::Status Promote(absl::Time now);
  absl::Status Rollback(absl::Time now);
  absl::Status Pause(absl::Time now);
  absl::Status Resume(absl::Time now);
  absl::Status SetWeight(int32_t weight, absl::Time now);
  void Restart(absl::Time now);

  const CanaryState& state() const { return state_; }
  const config::Canary& spec() const { return spec_; }
  // Progress of the sequential judges toward a rollback, in [0, 1] (0 without them).
  double judge_progress() const;

 private:
  void Transition(Phase phase, int32_t weight, std::string message, absl::Time now);
  void StepUp(absl::Time now);
  void FailCheck(const std::string& why, absl::Time now);
  std::string WeightText() const;

  config::Canary spec_;
  CanaryState state_;
  std::optional<SequentialJudge> failure_judge_;
  std::optional<SequentialJudge> latency_judge_;
};

}  // namespace sluice::canary
