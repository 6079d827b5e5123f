// The canary state machine on a simulated clock: every transition, Flagger's cumulative
// threshold counting, holds without evidence, the sequential judge's early rollback, manual
// actions, and a restart in the middle (a run rebuilt from its saved state carries on).

#include "server/canary/canary_run.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::canary {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(2'000'000);
constexpr absl::Duration kInterval = absl::Seconds(10);

config::CanaryMetric SuccessRate(double min) {
  config::CanaryMetric m;
  m.name = "request-success-rate";
  m.threshold_min = min;
  return m;
}

config::CanaryMetric Duration(double max) {
  config::CanaryMetric m;
  m.name = "request-duration";
  m.threshold_max = max;
  return m;
}

config::Canary Spec(int threshold = 2, std::vector<int32_t> steps = {10, 25, 50, 75, 100}) {
  config::Canary c;
  c.meta.name = "shop";
  c.host = "shop";
  c.stable_subset = "v1";
  c.canary_subset = "v2";
  c.analysis.interval = kInterval;
  c.analysis.threshold = threshold;
  c.analysis.step_weights = std::move(steps);
  c.analysis.metrics = {SuccessRate(99), Duration(500)};
  return c;
}

// The checks of one interval: success rate and p99 values (nullopt: no evidence).
std::vector<MetricCheck> Checks(std::optional<double> success, std::optional<double> p99) {
  return {EvaluateMetric(SuccessRate(99), success, "5 requests < minRequests 20"),
          EvaluateMetric(Duration(500), p99, "5 requests < minRequests 20")};
}
std::vector<MetricCheck> Healthy() { return Checks(99.9, 120); }
std::vector<MetricCheck> Broken() { return Checks(80, 120); }
std::vector<MetricCheck> Quiet() { return Checks(std::nullopt, std::nullopt); }

class CanaryRunTest : public ::testing::Test {
 protected:
  void Start(config::Canary spec) {
    run_ = std::make_unique<CanaryRun>(spec, CanaryRun::Fresh("fp", now_));
  }
  // Advances to the next check and runs it with `checks`.
  void Check(std::vector<MetricCheck> checks) {
    now_ = std::max(now_, run_->state().next_check);
    ASSERT_TRUE(run_->DueForCheck(now_));
    run_->OnCheck(std::move(checks), now_);
  }
  Phase phase() const { return run_->state().phase; }
  int32_t weight() const { return run_->state().weight; }

  absl::Time now_ = kT0;
  std::unique_ptr<CanaryRun> run_;
};

TEST_F(CanaryRunTest, HealthyCanaryStepsThroughEveryWeightToSucceeded) {
  Start(Spec());
  EXPECT_EQ(phase(), Phase::kInitializing);
  EXPECT_EQ(weight(), 0);
  EXPECT_TRUE(run_->DueForCheck(kT0));
  Check({});  // the first check only starts the rollout
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_EQ(weight(), 10);
  // Not due again before the interval.
  EXPECT_FALSE(run_->DueForCheck(kT0 + kInterval - absl::Milliseconds(1)));
  std::vector<int32_t> seen;
  for (int i = 0; i < 4; ++i) {
    Check(Healthy());
    seen.push_back(weight());
  }
  EXPECT_EQ(seen, (std::vector<int32_t>{25, 50, 75, 100}));
  EXPECT_EQ(phase(), Phase::kPromoting);  // at 100%, judged one last time
  Check(Healthy());
  EXPECT_EQ(phase(), Phase::kSucceeded);
  EXPECT_EQ(weight(), 100);
  EXPECT_EQ(run_->state().checks_passed, 5);
  EXPECT_FALSE(run_->active());
  EXPECT_FALSE(run_->DueForCheck(now_ + absl::Hours(1)));
  EXPECT_EQ(now_, kT0 + 5 * kInterval);
}

TEST_F(CanaryRunTest, MaxWeightBelowHundredPromotesAfterTheLastStep) {
  Start(Spec(2, {20, 40}));
  Check({});
  Check(Healthy());
  EXPECT_EQ(weight(), 40);
  EXPECT_EQ(phase(), Phase::kProgressing);
  Check(Healthy());
  EXPECT_EQ(phase(), Phase::kPromoting);
  EXPECT_EQ(weight(), 100);
  Check(Healthy());
  EXPECT_EQ(phase(), Phase::kSucceeded);
}

TEST_F(CanaryRunTest, FailedChecksAccumulateAndRollBackAtTheThreshold) {
  Start(Spec(/*threshold=*/3));
  Check({});
  Check(Broken());
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_EQ(weight(), 10);  // held, not stepped
  EXPECT_EQ(run_->state().failed_checks, 1);
  EXPECT_THAT(run_->state().message, HasSubstr("request-success-rate 80 < min 99"));
  Check(Healthy());  // a pass steps up but does not forgive (Flagger counts for the run)
  EXPECT_EQ(weight(), 25);
  EXPECT_EQ(run_->state().failed_checks, 1);
  Check(Broken());
  EXPECT_EQ(phase(), Phase::kProgressing);
  Check(Broken());
  EXPECT_EQ(phase(), Phase::kFailed);
  EXPECT_EQ(weight(), 0);
  EXPECT_THAT(run_->state().message, HasSubstr("rolled back"));
  EXPECT_THAT(run_->state().message, HasSubstr("3 of 3 failed checks"));
}

TEST_F(CanaryRunTest, NoEvidenceHoldsTheStepWithoutFailingOrPromoting) {
  Start(Spec(/*threshold=*/1));
  Check({});
  for (int i = 0; i < 20; ++i) Check(Quiet());
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_EQ(weight(), 10);
  EXPECT_EQ(run_->state().failed_checks, 0);
  EXPECT_EQ(run_->state().checks_no_evidence, 20);
  EXPECT_THAT(run_->state().message, HasSubstr("not enough evidence"));
  EXPECT_THAT(run_->state().message, HasSubstr("minRequests"));
  // One metric without evidence is enough to hold; a failing one still fails.
  Check(Checks(99.9, std::nullopt));
  EXPECT_EQ(weight(), 10);
  Check(Checks(50, std::nullopt));
  EXPECT_EQ(phase(), Phase::kFailed);
}

TEST_F(CanaryRunTest, AtOneHundredPercentAFailureStillRollsBack) {
  Start(Spec(/*threshold=*/1, {100}));
  Check({});
  EXPECT_EQ(phase(), Phase::kPromoting);
  Check(Quiet());
  EXPECT_EQ(phase(), Phase::kPromoting);  // never promoted without evidence
  Check(Broken());
  EXPECT_EQ(phase(), Phase::kFailed);
  EXPECT_EQ(weight(), 0);
}

TEST_F(CanaryRunTest, SequentialJudgeRollsBackBetweenChecks) {
  config::Canary spec = Spec(/*threshold=*/5);
  spec.analysis.judge = config::CanaryJudge::kSequential;
  spec.analysis.false_rollback_rate = 0.01;
  Start(spec);
  // Traffic before the first step is not judged.
  run_->OnTraffic({100, 50}, {100, 50}, {}, {}, now_);
  EXPECT_DOUBLE_EQ(run_->judge_progress(), 0);
  Check({});
  ASSERT_EQ(weight(), 10);
  // Every second: 90 stable requests with no failure, 10 canary requests with 2 failures.
  int seconds = 0;
  while (phase() == Phase::kProgressing && seconds < 30) {
    now_ += absl::Seconds(1);
    run_->OnTraffic({90, 0}, {10, 2}, {90, 0}, {10, 0}, now_);
    ++seconds;
  }
  EXPECT_EQ(phase(), Phase::kFailed);
  EXPECT_LT(seconds, 10) << "well before one interval of checks";
  EXPECT_THAT(run_->state().message, HasSubstr("sequential judge"));
  EXPECT_THAT(run_->state().message, HasSubstr("fails more often"));
}

TEST_F(CanaryRunTest, SequentialJudgeLeavesAnEqualCanaryAlone) {
  config::Canary spec = Spec();
  spec.analysis.judge = config::CanaryJudge::kSequential;
  Start(spec);
  Check({});
  for (int i = 0; i < 100; ++i) {
    now_ += absl::Seconds(1);
    // 1% failures in both subsets, split 90/10.
    run_->OnTraffic({900, 9}, {100, 1}, {}, {}, now_);
  }
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_LT(run_->judge_progress(), 0.5);
}

TEST_F(CanaryRunTest, ManualActions) {
  Start(Spec());
  Check({});
  Check(Healthy());
  ASSERT_EQ(weight(), 25);

  ASSERT_TRUE(run_->Pause(now_).ok());
  EXPECT_EQ(phase(), Phase::kPaused);
  EXPECT_FALSE(run_->DueForCheck(now_ + absl::Hours(1)));  // no checks while paused
  EXPECT_FALSE(run_->Pause(now_).ok());
  ASSERT_TRUE(run_->Resume(now_).ok());
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_EQ(weight(), 25);
  EXPECT_FALSE(run_->Resume(now_).ok());

  // set-weight pauses there; resume goes on from the next step above it.
  ASSERT_TRUE(run_->SetWeight(60, now_).ok());
  EXPECT_EQ(phase(), Phase::kPaused);
  EXPECT_EQ(weight(), 60);
  EXPECT_FALSE(run_->SetWeight(101, now_).ok());
  ASSERT_TRUE(run_->Resume(now_).ok());
  Check(Healthy());
  EXPECT_EQ(weight(), 75);

  ASSERT_TRUE(run_->Rollback(now_).ok());
  EXPECT_EQ(phase(), Phase::kFailed);
  EXPECT_EQ(weight(), 0);
  EXPECT_FALSE(run_->Rollback(now_).ok());
  const absl::Status promote = run_->Promote(now_);
  EXPECT_FALSE(promote.ok());
  EXPECT_THAT(std::string(promote.message()), HasSubstr("restart"));

  run_->Restart(now_);
  EXPECT_EQ(phase(), Phase::kInitializing);
  EXPECT_EQ(weight(), 0);
  EXPECT_EQ(run_->state().failed_checks, 0);
  ASSERT_TRUE(run_->Promote(now_).ok());
  EXPECT_EQ(phase(), Phase::kSucceeded);
  EXPECT_EQ(weight(), 100);
  // Rolling back a promoted canary is allowed: it puts the stable subset back.
  ASSERT_TRUE(run_->Rollback(now_).ok());
  EXPECT_EQ(weight(), 0);
}

TEST_F(CanaryRunTest, ResumeGoesOnFromTheWeightWhateverThePhaseWas) {
  Start(Spec(/*threshold=*/2, {10, 25, 50, 75, 100}));
  Check({});
  // set-weight 0 then resume: nothing to judge at 0%, so the next step comes at once.
  ASSERT_TRUE(run_->SetWeight(0, now_).ok());
  ASSERT_TRUE(run_->Resume(now_).ok());
  EXPECT_EQ(phase(), Phase::kInitializing);
  EXPECT_TRUE(run_->DueForCheck(now_));
  run_->OnCheck({}, now_);
  EXPECT_EQ(phase(), Phase::kProgressing);
  EXPECT_EQ(weight(), 10);
  // Paused while Promoting at 100%, set to 50%: resume continues at 75%, not straight to
  // Succeeded.
  for (int i = 0; i < 4; ++i) Check(Healthy());
  ASSERT_EQ(phase(), Phase::kPromoting);
  ASSERT_TRUE(run_->Pause(now_).ok());
  ASSERT_TRUE(run_->SetWeight(50, now_).ok());
  ASSERT_TRUE(run_->Resume(now_).ok());
  EXPECT_EQ(phase(), Phase::kProgressing);
  Check(Healthy());
  EXPECT_EQ(weight(), 75);
  EXPECT_EQ(phase(), Phase::kProgressing);
}

TEST_F(CanaryRunTest, ARunRebuiltFromItsSavedStateCarriesOn) {
  config::Canary spec = Spec(/*threshold=*/2);
  spec.analysis.judge = config::CanaryJudge::kSequential;
  Start(spec);
  Check({});
  Check(Healthy());
  Check(Broken());
  now_ += absl::Seconds(1);
  run_->OnTraffic({90, 0}, {10, 1}, {}, {}, now_);
  const CanaryState saved = run_->state();
  ASSERT_EQ(saved.weight, 25);
  ASSERT_EQ(saved.failed_checks, 1);
  ASSERT_FALSE(saved.failure_judge.empty());

  // "The server restarts": a new run from the saved state, the same spec.
  CanaryRun restored(spec, saved);
  EXPECT_EQ(restored.state().phase, Phase::kProgressing);
  EXPECT_EQ(restored.state().weight, 25);
  EXPECT_DOUBLE_EQ(restored.judge_progress(), run_->judge_progress());
  // Both see the same future and end in the same place: one more failed check rolls back.
  for (CanaryRun* r : {run_.get(), &restored}) {
    const absl::Time at = r->state().next_check;
    r->OnCheck(Broken(), at);
    EXPECT_EQ(r->state().phase, Phase::kFailed);
  }
}

TEST(CanaryChecksTest, EvaluateAndCombine) {
  const MetricCheck low = EvaluateMetric(SuccessRate(99), 98.5);
  EXPECT_EQ(low.outcome, CheckOutcome::kFailed);
  EXPECT_EQ(low.threshold, "min 99");
  EXPECT_EQ(low.detail, "98.5 < min 99");
  EXPECT_EQ(EvaluateMetric(SuccessRate(99), 99).outcome, CheckOutcome::kPassed);
  EXPECT_EQ(EvaluateMetric(Duration(500), 500.5).outcome, CheckOutcome::kFailed);
  const MetricCheck none = EvaluateMetric(Duration(500), std::nullopt, "no traffic");
  EXPECT_EQ(none.outcome, CheckOutcome::kNoEvidence);
  EXPECT_EQ(none.detail, "no traffic");
  EXPECT_EQ(Combine({}), CheckOutcome::kPassed);
  EXPECT_EQ(Combine({none, EvaluateMetric(SuccessRate(99), 100)}), CheckOutcome::kNoEvidence);
  EXPECT_EQ(Combine({none, low}), CheckOutcome::kFailed);
  for (Phase p : {Phase::kInitializing, Phase::kProgressing, Phase::kPromoting, Phase::kSucceeded,
                  Phase::kFailed, Phase::kPaused}) {
    EXPECT_EQ(ParsePhase(PhaseName(p)), p);
  }
  EXPECT_EQ(ParsePhase("Nope"), std::nullopt);
}

}  // namespace
}  // namespace sluice::canary
