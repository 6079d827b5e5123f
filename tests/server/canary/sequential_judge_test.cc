// The sequential canary judge: exact unit cases against the documented formula, then seeded
// simulations of whole rollouts (10, 25, 50, 75 %) for the false-rollback guarantee and for how
// many canary requests (and, at Flagger's 1-minute interval, seconds) a broken release costs
// compared with Flagger's threshold checks.
//
// Randomness: std::mt19937_64 with fixed seeds and std::binomial_distribution, so the figures
// are deterministic for a given standard library.

#include "server/canary/sequential_judge.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace sluice::canary {
namespace {

constexpr double kAlpha = 0.01;

double LogBound() { return std::log(1 / kAlpha); }

// The documented per-tick formula, written with pi0 and pi1 directly (the judge uses an
// algebraically equal form).
double ComponentIncrement(double r, const ArmCounts& stable, const ArmCounts& canary) {
  const double ns = stable.requests, nc = canary.requests;
  const double pi0 = nc / (nc + ns);
  const double pi1 = r * nc / (r * nc + ns);
  return canary.failures * std::log(pi1 / pi0) + stable.failures * std::log((1 - pi1) / (1 - pi0));
}

TEST(SequentialJudgeTest, StartsAtZero) {
  SequentialJudge judge;
  EXPECT_EQ(judge.log_likelihood_ratio(), 0);
  EXPECT_EQ(judge.progress(), 0);
  EXPECT_FALSE(judge.rollback());
  EXPECT_EQ(judge.failures_seen(), 0u);
  EXPECT_EQ(judge.component_log_lrs(), std::vector<double>(7, 0.0));
}

TEST(SequentialJudgeTest, NoFailuresLeavesTheRatioAtZero) {
  SequentialJudge judge;
  for (int i = 0; i < 1000; ++i) judge.Observe({.requests = 900}, {.requests = 100});
  EXPECT_EQ(judge.log_likelihood_ratio(), 0);
  EXPECT_FALSE(judge.rollback());
  EXPECT_EQ(judge.failures_seen(), 0u);
}

TEST(SequentialJudgeTest, StableOnlyFailuresPushTheRatioDown) {
  SequentialJudge judge;
  judge.Observe({.requests = 100, .failures = 3}, {.requests = 100});
  const double after_one = judge.log_likelihood_ratio();
  EXPECT_LT(after_one, 0);
  judge.Observe({.requests = 100, .failures = 3}, {.requests = 100});
  EXPECT_LT(judge.log_likelihood_ratio(), after_one);
  for (double c : judge.component_log_lrs()) EXPECT_LT(c, 0);
  EXPECT_EQ(judge.progress(), 0) << "clamped at 0";
  EXPECT_EQ(judge.failures_seen(), 6u);
  EXPECT_FALSE(judge.rollback());
}

TEST(SequentialJudgeTest, AnIdleArmChangesNothing) {
  SequentialJudge judge;
  judge.Observe({.requests = 500, .failures = 1}, {.requests = 500, .failures = 4});
  const std::vector<double> before = judge.component_log_lrs();
  const double lr = judge.log_likelihood_ratio();
  ASSERT_GT(lr, 0);

  judge.Observe({.requests = 0}, {.requests = 100, .failures = 50});  // all traffic on canary
  judge.Observe({.requests = 100, .failures = 50}, {.requests = 0});  // rolled to 0 %
  judge.Observe({}, {});                                              // no traffic at all
  EXPECT_EQ(judge.component_log_lrs(), before);
  EXPECT_EQ(judge.log_likelihood_ratio(), lr);
  EXPECT_EQ(judge.failures_seen(), 5u);
}

TEST(SequentialJudgeTest, MatchesTheDocumentedFormula) {
  const SequentialJudgeOptions options;
  SequentialJudge judge(options);
  std::vector<double> expected(options.relative_risks.size(), 0.0);
  const std::vector<std::pair<ArmCounts, ArmCounts>> ticks = {
      {{900, 2}, {100, 1}}, {{750, 0}, {250, 3}}, {{500, 4}, {500, 1}}, {{1, 1}, {3000, 7}}};
  for (const auto& [stable, canary] : ticks) {
    judge.Observe(stable, canary);
    for (size_t i = 0; i < expected.size(); ++i) {
      expected[i] += ComponentIncrement(options.relative_risks[i], stable, canary);
    }
  }
  ASSERT_EQ(judge.component_log_lrs().size(), expected.size());
  double mean_lr = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(judge.component_log_lrs()[i], expected[i], 1e-9)
        << "r=" << options.relative_risks[i];
    mean_lr += std::exp(expected[i]) / expected.size();
  }
  EXPECT_NEAR(judge.log_likelihood_ratio(), std::log(mean_lr), 1e-9);
}

TEST(SequentialJudgeTest, CanaryAtTwentyTimesTheStableRateRollsBackAfterFewFailures) {
  // Equal traffic; per 21 failures, 1 in stable (first, the unfavourable order) and 20 in canary.
  auto tick = [](uint64_t failure) {
    const bool in_stable = failure % 21 == 1;
    return std::pair<ArmCounts, ArmCounts>{{.requests = 1000, .failures = in_stable ? 1u : 0u},
                                           {.requests = 1000, .failures = in_stable ? 0u : 1u}};
  };
  // Upper bound: the mixture is at least its r=20 component minus log(#components), so the judge
  // must have rolled back by the time that component alone clears log(1/alpha) + log(7).
  const SequentialJudgeOptions options;
  const double log_components = std::log(options.relative_risks.size());
  double r20 = 0;
  uint64_t bound = 0;
  while (r20 - log_components < LogBound()) {
    const auto [stable, canary] = tick(++bound);
    r20 += ComponentIncrement(20, stable, canary);
  }

  SequentialJudge judge(options);
  for (uint64_t failure = 1; failure <= 1000 && !judge.rollback(); ++failure) {
    const auto [stable, canary] = tick(failure);
    judge.Observe(stable, canary);
  }
  ASSERT_TRUE(judge.rollback());
  std::cout << "20x canary, equal traffic: rollback after " << judge.failures_seen()
            << " failures (r=20 bound " << bound << ")\n";
  EXPECT_LE(judge.failures_seen(), bound);
  EXPECT_LE(bound, 20u);
  // Lower bound: a canary failure adds at most log(2r / (1 + r)) < log 2 with equal traffic, so
  // fewer than log(1/alpha) / log 2 canary failures (plus the stable one) cannot roll back.
  EXPECT_GE(judge.failures_seen(), 1 + static_cast<uint64_t>(std::ceil(LogBound() / std::log(2))));
  EXPECT_GE(judge.log_likelihood_ratio(), LogBound());
  EXPECT_EQ(judge.progress(), 1);
}

TEST(SequentialJudgeTest, RollbackIsStickyAndFreezesTheState) {
  SequentialJudge judge;
  while (!judge.rollback()) judge.Observe({.requests = 100}, {.requests = 100, .failures = 1});
  const std::vector<double> at_rollback = judge.component_log_lrs();
  const uint64_t failures = judge.failures_seen();
  for (int i = 0; i < 100; ++i) judge.Observe({.requests = 100, .failures = 10}, {.requests = 100});
  EXPECT_TRUE(judge.rollback());
  EXPECT_EQ(judge.component_log_lrs(), at_rollback);
  EXPECT_EQ(judge.failures_seen(), failures);
}

TEST(SequentialJudgeTest, RestoreContinuesExactlyWhereItLeftOff) {
  std::mt19937_64 rng(20240611);
  std::binomial_distribution<uint64_t> binomial;
  auto tick = [&](double weight, double stable_rate, double canary_rate) {
    const uint64_t nc = binomial(rng, decltype(binomial)::param_type(400, weight));
    const uint64_t ns = 400 - nc;
    return std::pair<ArmCounts, ArmCounts>{
        {ns, binomial(rng, decltype(binomial)::param_type(ns, stable_rate))},
        {nc, binomial(rng, decltype(binomial)::param_type(nc, canary_rate))}};
  };
  SequentialJudge uninterrupted;
  for (int i = 0; i < 30; ++i) {
    const auto [stable, canary] = tick(0.25, 0.01, 0.012);
    uninterrupted.Observe(stable, canary);
  }
  ASSERT_NE(uninterrupted.log_likelihood_ratio(), 0);
  SequentialJudge restored =
      SequentialJudge::Restore(SequentialJudgeOptions{}, uninterrupted.component_log_lrs());
  EXPECT_EQ(restored.log_likelihood_ratio(), uninterrupted.log_likelihood_ratio());
  for (int i = 0; i < 100 && !uninterrupted.rollback(); ++i) {
    const auto [stable, canary] = tick(0.5, 0.01, 0.03);
    uninterrupted.Observe(stable, canary);
    restored.Observe(stable, canary);
    ASSERT_EQ(restored.log_likelihood_ratio(), uninterrupted.log_likelihood_ratio()) << i;
    ASSERT_EQ(restored.rollback(), uninterrupted.rollback()) << i;
  }
  EXPECT_TRUE(uninterrupted.rollback());
  EXPECT_EQ(restored.component_log_lrs(), uninterrupted.component_log_lrs());

  // A rolled-back state restores as rolled back.
  EXPECT_TRUE(SequentialJudge::Restore(SequentialJudgeOptions{}, uninterrupted.component_log_lrs())
                  .rollback());
  // A vector that does not fit the options starts over.
  const SequentialJudge mismatched = SequentialJudge::Restore(SequentialJudgeOptions{}, {50, 50});
  EXPECT_FALSE(mismatched.rollback());
  EXPECT_EQ(mismatched.log_likelihood_ratio(), 0);
  EXPECT_EQ(mismatched.component_log_lrs().size(), 7u);
}

TEST(SequentialJudgeTest, InvalidOptionsFallBackToDefaults) {
  SequentialJudge judge(
      {.false_rollback_rate = 2, .relative_risks = {0.5, 1, -3, std::nan(""), 4}});
  ASSERT_EQ(judge.component_log_lrs().size(), 1u) << "only r=4 is kept";
  while (!judge.rollback()) judge.Observe({.requests = 100}, {.requests = 100, .failures = 1});
  // With r=4 alone and equal traffic each canary failure adds log(8/5); alpha fell back to 0.01.
  EXPECT_EQ(judge.failures_seen(), static_cast<uint64_t>(std::ceil(LogBound() / std::log(1.6))));
}

// ---------------------------------------------------------------------------------------------
// Whole rollouts. Each tick carries 200 requests split between the arms by the step's weight
// (binomial), and each request fails independently at its arm's rate. The ladder is 10, 25, 50,
// 75 % (100 % has no stable arm to compare with). A step lasts 5 ticks that gave evidence to the
// threshold method (the canary had >= minRequests requests); a tick without evidence holds the
// step, as sluice does. Both judges see the same ticks.

constexpr uint64_t kRequestsPerTick = 200;
constexpr int kTicksPerStep = 5;
constexpr int kMaxTicksPerStep = 100;  // a safety net; at 10 % about half the ticks have evidence
constexpr double kWeights[] = {0.10, 0.25, 0.50, 0.75};

// Flagger's request-success-rate check: thresholdRange.min 99 %, threshold 2 failed checks.
constexpr uint64_t kMinRequests = 20;
constexpr double kMinSuccessRate = 0.99;
constexpr int kThreshold = 2;

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct RolloutResult {
  // Canary requests served up to and including the tick that rolled back; kNever: no rollback.
  uint64_t sequential = kNever;
  uint64_t threshold = kNever;
};

RolloutResult SimulateRollout(std::mt19937_64& rng, double stable_rate, double canary_rate) {
  std::binomial_distribution<uint64_t> binomial;
  using Param = std::binomial_distribution<uint64_t>::param_type;
  SequentialJudge judge({.false_rollback_rate = kAlpha});
  RolloutResult result;
  uint64_t canary_requests = 0;
  int failed_checks = 0;
  for (double weight : kWeights) {
    int evidence_ticks = 0;
    for (int t = 0; t < kMaxTicksPerStep && evidence_ticks < kTicksPerStep; ++t) {
      const uint64_t nc = binomial(rng, Param(kRequestsPerTick, weight));
      const uint64_t ns = kRequestsPerTick - nc;
      const uint64_t fc = binomial(rng, Param(nc, canary_rate));
      const uint64_t fs = binomial(rng, Param(ns, stable_rate));
      canary_requests += nc;

      if (result.sequential == kNever) {
        judge.Observe({ns, fs}, {nc, fc});
        if (judge.rollback()) result.sequential = canary_requests;
      }
      if (nc >= kMinRequests) {
        ++evidence_ticks;
        const double success_rate = static_cast<double>(nc - fc) / static_cast<double>(nc);
        if (success_rate < kMinSuccessRate && ++failed_checks == kThreshold) {
          result.threshold = canary_requests;
        }
      }
      if (result.sequential != kNever && result.threshold != kNever) return result;
    }
  }
  return result;
}

// Upper median; kNever sorts last, so a method that often fails to roll back gets a worse median.
uint64_t Median(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

TEST(SequentialJudgeSimulationTest, HealthyRolloutsRarelyRollBack) {
  constexpr int kRollouts = 5000;
  // The measured rate is a binomial proportion over kRollouts; allow alpha plus 3 standard
  // deviations of it at rate alpha (0.0142 for 5,000 rollouts).
  const double tolerance = kAlpha + 3 * std::sqrt(kAlpha * (1 - kAlpha) / kRollouts);
  for (const double rate : {0.001, 0.01}) {
    std::mt19937_64 rng(rate == 0.001 ? 1001 : 1010);
    int sequential = 0, threshold = 0;
    for (int i = 0; i < kRollouts; ++i) {
      const RolloutResult r = SimulateRollout(rng, rate, rate);
      sequential += r.sequential != kNever;
      threshold += r.threshold != kNever;
    }
    const double sequential_rate = static_cast<double>(sequential) / kRollouts;
    const double threshold_rate = static_cast<double>(threshold) / kRollouts;
    std::cout << "healthy, both arms failing " << rate * 100 << "%: false rollbacks sequential "
              << sequential_rate << ", threshold method " << threshold_rate << " (" << kRollouts
              << " rollouts)\n";
    const std::string key = absl::StrCat("healthy_", rate == 0.001 ? "0_1pct" : "1pct");
    RecordProperty(key + "_sequential_false_rollback_rate", absl::StrCat(sequential_rate));
    RecordProperty(key + "_threshold_false_rollback_rate", absl::StrCat(threshold_rate));
    EXPECT_LE(sequential_rate, tolerance) << "failure rate " << rate;
  }
}

// Ville's bound holds however long the test runs and however traffic, weights and the shared
// failure rate move: long runs where all three jump every tick.
TEST(SequentialJudgeSimulationTest, LongHealthyRunsWithShiftingWeightsStayWithinAlpha) {
  constexpr int kRuns = 1000;
  constexpr int kTicks = 250;
  // alpha plus 3 binomial standard deviations over kRuns (0.0194).
  const double tolerance = kAlpha + 3 * std::sqrt(kAlpha * (1 - kAlpha) / kRuns);
  std::mt19937_64 rng(7007);
  std::binomial_distribution<uint64_t> binomial;
  using Param = std::binomial_distribution<uint64_t>::param_type;
  std::uniform_real_distribution<double> unit;
  std::uniform_int_distribution<uint64_t> requests(0, 400);
  int rollbacks = 0;
  uint64_t failures = 0;
  for (int run = 0; run < kRuns; ++run) {
    SequentialJudge judge({.false_rollback_rate = kAlpha});
    for (int t = 0; t < kTicks && !judge.rollback(); ++t) {
      const uint64_t n = requests(rng);
      const double weight = 0.01 + 0.98 * unit(rng);
      const double rate = 0.05 * unit(rng);
      const uint64_t nc = binomial(rng, Param(n, weight));
      const uint64_t ns = n - nc;
      // Drawn in statements of their own: argument evaluation order would differ by compiler.
      const uint64_t fs = binomial(rng, Param(ns, rate));
      const uint64_t fc = binomial(rng, Param(nc, rate));
      judge.Observe({ns, fs}, {nc, fc});
    }
    rollbacks += judge.rollback();
    failures += judge.failures_seen();
  }
  const double rate = static_cast<double>(rollbacks) / kRuns;
  std::cout << "long healthy runs (" << kTicks << " ticks, ~" << failures / kRuns
            << " failures each): false rollbacks " << rate << " (" << kRuns << " runs)\n";
  RecordProperty("long_healthy_false_rollback_rate", absl::StrCat(rate));
  EXPECT_LE(rate, tolerance);
}

TEST(SequentialJudgeSimulationTest, BrokenRolloutsRollBackSoonerThanThresholdChecks) {
  constexpr int kRollouts = 2000;
  std::mt19937_64 rng(5001);
  std::vector<uint64_t> sequential, threshold;
  int sequential_rollbacks = 0, threshold_rollbacks = 0;
  for (int i = 0; i < kRollouts; ++i) {
    const RolloutResult r = SimulateRollout(rng, /*stable_rate=*/0.001, /*canary_rate=*/0.05);
    sequential.push_back(r.sequential);
    threshold.push_back(r.threshold);
    sequential_rollbacks += r.sequential != kNever;
    threshold_rollbacks += r.threshold != kNever;
  }
  const uint64_t sequential_median = Median(sequential);
  const uint64_t threshold_median = Median(threshold);
  const double ratio = static_cast<double>(sequential_median) / threshold_median;
  std::cout << "broken (canary 5% vs stable 0.1%), " << kRollouts << " rollouts: rolled back "
            << "sequential " << sequential_rollbacks << ", threshold method " << threshold_rollbacks
            << "; median canary requests until rollback: sequential " << sequential_median
            << ", threshold method " << threshold_median << ", ratio " << ratio << "\n";
  RecordProperty("broken_sequential_rollbacks", sequential_rollbacks);
  RecordProperty("broken_threshold_rollbacks", threshold_rollbacks);
  RecordProperty("broken_sequential_median_canary_requests", absl::StrCat(sequential_median));
  RecordProperty("broken_threshold_median_canary_requests", absl::StrCat(threshold_median));
  RecordProperty("broken_median_ratio", absl::StrCat(ratio));
  EXPECT_GE(sequential_rollbacks, 0.99 * kRollouts);
  EXPECT_LT(sequential_median, threshold_median);
}

// ---------------------------------------------------------------------------------------------
// A realistic Flagger set-up: a check every minute (interval 1m) on 2,000 requests per minute
// across both arms (~200 canary requests per check at 10 %), minRequests 20, success rate >= 99 %,
// rollback after 3 failed checks. As in Flagger, a passing check advances one step of the ladder
// and a failing one holds the weight. The sequential judge gets the same traffic in 1-second
// ticks, as sluice feeds it: each minute's 2,000 requests spread over its 60 seconds (33 or 34 a
// second), each second's split between the arms by the weight (binomial). The minute's check is
// on the sum of its 60 ticks, so both methods see exactly the same requests. Each method's cost
// is counted on this shared stream up to its own rollback.

constexpr uint64_t kRequestsPerMinute = 2000;
constexpr int kSecondsPerMinute = 60;
constexpr int kFlaggerThreshold = 3;
constexpr int kMaxMinutes = 60;  // a safety net; a broken canary decides within a few minutes

struct TimedRolloutResult {
  // Canary requests served up to and including the tick (second) or check (minute) that rolled
  // back, and the seconds since the rollout started; kNever: no rollback.
  uint64_t sequential_requests = kNever;
  uint64_t sequential_seconds = kNever;
  uint64_t threshold_requests = kNever;
  uint64_t threshold_seconds = kNever;
};

TimedRolloutResult SimulateMinuteIntervalRollout(std::mt19937_64& rng, double stable_rate,
                                                 double canary_rate) {
  std::binomial_distribution<uint64_t> binomial;
  using Param = std::binomial_distribution<uint64_t>::param_type;
  SequentialJudge judge({.false_rollback_rate = kAlpha});
  TimedRolloutResult result;
  uint64_t canary_requests = 0;
  int failed_checks = 0;
  size_t step = 0;
  for (int minute = 0; minute < kMaxMinutes && step < std::size(kWeights); ++minute) {
    const double weight = kWeights[step];
    uint64_t minute_nc = 0, minute_fc = 0;
    for (int s = 0; s < kSecondsPerMinute; ++s) {
      const uint64_t n = kRequestsPerMinute * (s + 1) / kSecondsPerMinute -
                         kRequestsPerMinute * s / kSecondsPerMinute;
      const uint64_t nc = binomial(rng, Param(n, weight));
      const uint64_t ns = n - nc;
      const uint64_t fc = binomial(rng, Param(nc, canary_rate));
      const uint64_t fs = binomial(rng, Param(ns, stable_rate));
      canary_requests += nc;
      minute_nc += nc;
      minute_fc += fc;
      if (result.sequential_requests == kNever) {
        judge.Observe({ns, fs}, {nc, fc});
        if (judge.rollback()) {
          result.sequential_requests = canary_requests;
          result.sequential_seconds = static_cast<uint64_t>(minute * kSecondsPerMinute + s + 1);
        }
      }
    }
    if (minute_nc < kMinRequests) continue;  // no check: the step holds
    const double success_rate =
        static_cast<double>(minute_nc - minute_fc) / static_cast<double>(minute_nc);
    if (success_rate >= kMinSuccessRate) {
      ++step;
    } else if (++failed_checks == kFlaggerThreshold) {
      result.threshold_requests = canary_requests;
      result.threshold_seconds = static_cast<uint64_t>((minute + 1) * kSecondsPerMinute);
    }
    if (result.sequential_requests != kNever && result.threshold_requests != kNever) break;
  }
  return result;
}

TEST(SequentialJudgeSimulationTest, BrokenRolloutsAtFlaggerMinuteIntervalsRollBackMuchSooner) {
  constexpr int kRollouts = 2000;
  std::mt19937_64 rng(6001);
  std::vector<uint64_t> sequential_requests, threshold_requests, sequential_seconds,
      threshold_seconds;
  int sequential_rollbacks = 0, threshold_rollbacks = 0;
  for (int i = 0; i < kRollouts; ++i) {
    const TimedRolloutResult r =
        SimulateMinuteIntervalRollout(rng, /*stable_rate=*/0.001, /*canary_rate=*/0.05);
    sequential_requests.push_back(r.sequential_requests);
    threshold_requests.push_back(r.threshold_requests);
    sequential_seconds.push_back(r.sequential_seconds);
    threshold_seconds.push_back(r.threshold_seconds);
    sequential_rollbacks += r.sequential_requests != kNever;
    threshold_rollbacks += r.threshold_requests != kNever;
  }
  const uint64_t sequential_median = Median(sequential_requests);
  const uint64_t threshold_median = Median(threshold_requests);
  const uint64_t sequential_median_seconds = Median(sequential_seconds);
  const uint64_t threshold_median_seconds = Median(threshold_seconds);
  const double ratio = static_cast<double>(sequential_median) / threshold_median;
  const double seconds_ratio =
      static_cast<double>(sequential_median_seconds) / threshold_median_seconds;
  std::cout << "broken (canary 5% vs stable 0.1%), 1-minute interval, 2000 requests/minute, "
            << "threshold " << kFlaggerThreshold << ", " << kRollouts << " rollouts: rolled back "
            << "sequential " << sequential_rollbacks << ", threshold method " << threshold_rollbacks
            << "; median canary requests until rollback: sequential " << sequential_median
            << ", threshold method " << threshold_median << ", ratio " << ratio
            << "; median seconds until rollback: sequential " << sequential_median_seconds
            << ", threshold method " << threshold_median_seconds << ", ratio " << seconds_ratio
            << "\n";
  RecordProperty("minute_broken_sequential_rollbacks", sequential_rollbacks);
  RecordProperty("minute_broken_threshold_rollbacks", threshold_rollbacks);
  RecordProperty("minute_broken_sequential_median_canary_requests",
                 absl::StrCat(sequential_median));
  RecordProperty("minute_broken_threshold_median_canary_requests", absl::StrCat(threshold_median));
  RecordProperty("minute_broken_median_ratio", absl::StrCat(ratio));
  RecordProperty("minute_broken_sequential_median_seconds",
                 absl::StrCat(sequential_median_seconds));
  RecordProperty("minute_broken_threshold_median_seconds", absl::StrCat(threshold_median_seconds));
  RecordProperty("minute_broken_median_seconds_ratio", absl::StrCat(seconds_ratio));
  EXPECT_GE(sequential_rollbacks, 0.99 * kRollouts);
  EXPECT_GE(threshold_rollbacks, 0.99 * kRollouts);
  EXPECT_LE(2 * sequential_median, threshold_median);
}

}  // namespace
}  // namespace sluice::canary
