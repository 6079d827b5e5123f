#include "server/canary/canary_run.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sluice::canary {
namespace {

std::string FormatValue(double v) { return absl::StrFormat("%.4g", v); }

}  // namespace

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kInitializing:
      return "Initializing";
    case Phase::kProgressing:
      return "Progressing";
    case Phase::kPromoting:
      return "Promoting";
    case Phase::kSucceeded:
      return "Succeeded";
    case Phase::kFailed:
      return "Failed";
    case Phase::kPaused:
      return "Paused";
  }
  return "Initializing";
}

std::optional<Phase> ParsePhase(const std::string& name) {
  for (Phase p : {Phase::kInitializing, Phase::kProgressing, Phase::kPromoting, Phase::kSucceeded,
                  Phase::kFailed, Phase::kPaused}) {
    if (name == PhaseName(p)) return p;
  }
  return std::nullopt;
}

const char* CheckOutcomeName(CheckOutcome outcome) {
  switch (outcome) {
    case CheckOutcome::kPassed:
      return "passed";
    case CheckOutcome::kFailed:
      return "failed";
    case CheckOutcome::kNoEvidence:
      return "no_evidence";
  }
  return "no_evidence";
}

MetricCheck EvaluateMetric(const config::CanaryMetric& metric, std::optional<double> value,
                           std::string no_value_reason) {
  MetricCheck check;
  check.name = metric.name;
  check.value = value;
  std::vector<std::string> range;
  if (metric.threshold_min)
    range.push_back(absl::StrCat("min ", FormatValue(*metric.threshold_min)));
  if (metric.threshold_max)
    range.push_back(absl::StrCat("max ", FormatValue(*metric.threshold_max)));
  check.threshold = absl::StrJoin(range, " ");
  if (!value) {
    check.outcome = CheckOutcome::kNoEvidence;
    check.detail = std::move(no_value_reason);
    return check;
  }
  check.outcome = CheckOutcome::kPassed;
  if (metric.threshold_min && *value < *metric.threshold_min) {
    check.outcome = CheckOutcome::kFailed;
    check.detail = absl::StrCat(FormatValue(*value), " < min ", FormatValue(*metric.threshold_min));
  } else if (metric.threshold_max && *value > *metric.threshold_max) {
    check.outcome = CheckOutcome::kFailed;
    check.detail = absl::StrCat(FormatValue(*value), " > max ", FormatValue(*metric.threshold_max));
  }
  return check;
}

CheckOutcome Combine(const std::vector<MetricCheck>& checks) {
  bool no_evidence = false;
  for (const MetricCheck& c : checks) {
    if (c.outcome == CheckOutcome::kFailed) return CheckOutcome::kFailed;
    if (c.outcome == CheckOutcome::kNoEvidence) no_evidence = true;
  }
  return no_evidence ? CheckOutcome::kNoEvidence : CheckOutcome::kPassed;
}

CanaryRun::CanaryRun(config::Canary spec, CanaryState state)
    : spec_(std::move(spec)), state_(std::move(state)) {
  if (spec_.analysis.judge == config::CanaryJudge::kSequential) {
    SequentialJudgeOptions options;
    options.false_rollback_rate = spec_.analysis.false_rollback_rate;
    failure_judge_ = state_.failure_judge.empty()
                         ? SequentialJudge(options)
                         : SequentialJudge::Restore(options, state_.failure_judge);
    latency_judge_ = state_.latency_judge.empty()
                         ? SequentialJudge(options)
                         : SequentialJudge::Restore(options, state_.latency_judge);
  }
}

CanaryState CanaryRun::Fresh(std::string fingerprint, absl::Time now) {
  CanaryState s;
  s.fingerprint = std::move(fingerprint);
  s.started = now;
  s.last_transition = now;
  s.next_check = now;
  s.message = "initializing: the canary takes no traffic until the first step";
  return s;
}

bool CanaryRun::active() const {
  return state_.phase != Phase::kSucceeded && state_.phase != Phase::kFailed;
}

bool CanaryRun::DueForCheck(absl::Time now) const {
  return active() && state_.phase != Phase::kPaused && now >= state_.next_check;
}

std::string CanaryRun::WeightText() const { return absl::StrCat(state_.weight, "%"); }

void CanaryRun::Transition(Phase phase, int32_t weight, std::string message, absl::Time now) {
  state_.phase = phase;
  state_.weight = weight;
  state_.message = std::move(message);
  state_.last_transition = now;
}

void CanaryRun::StepUp(absl::Time now) {
  const std::vector<int32_t>& steps = spec_.analysis.step_weights;
  if (state_.step + 1 < static_cast<int32_t>(steps.size())) {
    ++state_.step;
    const int32_t weight = steps[static_cast<size_t>(state_.step)];
    Transition(weight >= 100 ? Phase::kPromoting : Phase::kProgressing, weight,
               absl::StrCat("checks passed: canary at ", weight, "%"), now);
  } else {
    // The last step was below 100 (maxWeight): promotion sends everything to the canary.
    Transition(Phase::kPromoting, 100, "checks passed at the last step: promoting to 100%", now);
  }
}

void CanaryRun::FailCheck(const std::string& why, absl::Time now) {
  ++state_.failed_checks;
  ++state_.checks_failed;
  if (state_.failed_checks >= spec_.analysis.threshold) {
    Transition(Phase::kFailed, 0,
               absl::StrCat("rolled back: ", why, " (", state_.failed_checks, " of ",
                            spec_.analysis.threshold, " failed checks)"),
               now);
    return;
  }
  state_.message =
      absl::StrCat("check failed at ", WeightText(), ": ", why, " (", state_.failed_checks, " of ",
                   spec_.analysis.threshold, " failed checks); holding");
}

void CanaryRun::OnCheck(std::vector<MetricCheck> checks, absl::Time now) {
  if (!DueForCheck(now)) return;
  state_.next_check = now + spec_.analysis.interval;
  if (state_.phase == Phase::kInitializing) {
    // Nothing to judge yet: the canary has had no traffic. Take the first step.
    StepUp(now);
    return;
  }
  const CheckOutcome outcome = Combine(checks);
  state_.last_checks = std::move(checks);
  switch (outcome) {
    case CheckOutcome::kFailed: {
      std::vector<std::string> why;
      for (const MetricCheck& c : state_.last_checks) {
        if (c.outcome == CheckOutcome::kFailed) why.push_back(absl::StrCat(c.name, " ", c.detail));
      }
      FailCheck(absl::StrJoin(why, ", "), now);
      break;
    }
    case CheckOutcome::kNoEvidence: {
      // Too little traffic says nothing: hold the step, neither fail nor promote.
      ++state_.checks_no_evidence;
      std::vector<std::string> why;
      for (const MetricCheck& c : state_.last_checks) {
        if (c.outcome == CheckOutcome::kNoEvidence)
          why.push_back(absl::StrCat(c.name, ": ", c.detail));
      }
      state_.message = absl::StrCat("holding at ", WeightText(), ": not enough evidence (",
                                    absl::StrJoin(why, "; "), ")");
      break;
    }
    case CheckOutcome::kPassed:
      ++state_.checks_passed;
      if (state_.phase == Phase::kPromoting) {
        Transition(Phase::kSucceeded, 100, "promoted: the canary takes all traffic", now);
      } else {
        StepUp(now);
      }
      break;
  }
}

void CanaryRun::OnTraffic(const ArmCounts& stable, const ArmCounts& canary,
                          const ArmCounts& stable_slow, const ArmCounts& canary_slow,
                          absl::Time now) {
  if (!failure_judge_ || !active() || state_.phase == Phase::kPaused ||
      state_.phase == Phase::kInitializing) {
    return;
  }
  failure_judge_->Observe(stable, canary);
  latency_judge_->Observe(stable_slow, canary_slow);
  state_.failure_judge = failure_judge_->component_log_lrs();
  state_.latency_judge = latency_judge_->component_log_lrs();
  const char* what = failure_judge_->rollback()   ? "fails more often"
                     : latency_judge_->rollback() ? "is slow more often"
                                                  : nullptr;
  if (what == nullptr) return;
  ++state_.checks_failed;
  Transition(Phase::kFailed, 0,
             absl::StrCat("rolled back by the sequential judge: the canary ", what,
                          " than the stable subset (likelihood ratio past 1/",
                          FormatValue(spec_.analysis.false_rollback_rate), ")"),
             now);
}

double CanaryRun::judge_progress() const {
  if (!failure_judge_) return 0;
  return std::max(failure_judge_->progress(), latency_judge_->progress());
}

absl::Status CanaryRun::Promote(absl::Time now) {
  if (state_.phase == Phase::kFailed) {
    return absl::FailedPreconditionError(
        "the canary was rolled back; restart it (sluicectl canary restart) to run it again");
  }
  if (state_.phase == Phase::kSucceeded) {
    return absl::FailedPreconditionError("the canary is already promoted");
  }
  Transition(Phase::kSucceeded, 100, "promoted by hand: the canary takes all traffic", now);
  return absl::OkStatus();
}

absl::Status CanaryRun::Rollback(absl::Time now) {
  if (state_.phase == Phase::kFailed) {
    return absl::FailedPreconditionError("the canary is already rolled back");
  }
  Transition(Phase::kFailed, 0, "rolled back by hand", now);
  return absl::OkStatus();
}

absl::Status CanaryRun::Pause(absl::Time now) {
  if (!active()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the canary has finished (", PhaseName(state_.phase), ")"));
  }
  if (state_.phase == Phase::kPaused) return absl::FailedPreconditionError("already paused");
  state_.paused_from = state_.phase;
  Transition(Phase::kPaused, state_.weight,
             absl::StrCat("paused by hand at ", WeightText(), ": weights stay until resume"), now);
  return absl::OkStatus();
}

absl::Status CanaryRun::Resume(absl::Time now) {
  if (state_.phase != Phase::kPaused) {
    return absl::FailedPreconditionError(
        absl::StrCat("the canary is not paused (", PhaseName(state_.phase), ")"));
  }
  // Where to go on follows from the weight, whatever the phase was: at 0% the canary has
  // no traffic to judge, so it takes its next step at once; at 100% it is judged a last
  // time; in between it goes on from the step above its weight.
  if (state_.weight <= 0) {
    Transition(Phase::kInitializing, 0, "resumed at 0%: the next step is taken at once", now);
    state_.next_check = now;
    return absl::OkStatus();
  }
  Transition(state_.weight >= 100 ? Phase::kPromoting : Phase::kProgressing, state_.weight,
             absl::StrCat("resumed at ", WeightText()), now);
  state_.next_check = now + spec_.analysis.interval;
  return absl::OkStatus();
}

absl::Status CanaryRun::SetWeight(int32_t weight, absl::Time now) {
  if (weight < 0 || weight > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", weight, " is not a percentage (0 to 100)"));
  }
  if (!active()) {
    return absl::FailedPreconditionError(absl::StrCat("the canary has finished (",
                                                      PhaseName(state_.phase),
                                                      "); restart it to move weights again"));
  }
  // Resume continues from the first step above the weight set here.
  const std::vector<int32_t>& steps = spec_.analysis.step_weights;
  state_.step = -1;
  for (size_t i = 0; i < steps.size() && steps[i] <= weight; ++i) {
    state_.step = static_cast<int32_t>(i);
  }
  if (state_.phase != Phase::kPaused) {
    state_.paused_from = state_.phase == Phase::kInitializing ? Phase::kProgressing : state_.phase;
  }
  Transition(Phase::kPaused, weight,
             absl::StrCat("weight set to ", weight, "% by hand; paused until resume"), now);
  return absl::OkStatus();
}

void CanaryRun::Restart(absl::Time now) {
  state_ = Fresh(state_.fingerprint, now);
  state_.message = "restarted: the analysis begins again from 0%";
  *this = CanaryRun(spec_, state_);
}

}  // namespace sluice::canary
