#pragma once

#include <cstdint>
#include <vector>

namespace sluice::canary {

// Requests and failures of one arm (stable or canary) over one tick.
struct ArmCounts {
  uint64_t requests = 0;
  uint64_t failures = 0;
};

struct SequentialJudgeOptions {
  double false_rollback_rate = 0.01;  // alpha
  // Relative risks (canary failure rate / stable failure rate) of the mixture's components, equal
  // weights. A spread of values, because nobody knows in advance how much worse a bad canary is:
  // the mixture is close to the best single component, whichever that turns out to be.
  std::vector<double> relative_risks = {1.5, 2, 3, 5, 10, 20, 50};
};

// Decides whether to roll a canary back: a mixture sequential probability ratio test on *which
// arm each failure happened in*, conditional on exposure.
//
// Why this question: comparing against the concurrent stable arm cancels everything both arms
// share (time of day, a bad dependency, bursts), and conditioning on the requests each arm served
// makes the test indifferent to the weight schedule and to quiet periods: a tick with no failures
// or with an idle arm carries no information and changes nothing, so "no traffic" never counts
// against a release.
//
// In a tick with Ns stable and Nc canary requests, if both arms fail at the same rate (H0) a
// failure lands in the canary arm with probability pi0 = Nc / (Nc + Ns); if the canary fails r
// times as often (H1), with pi1 = r Nc / (r Nc + Ns). Each component adds the log likelihood ratio
// of the tick's failures, fc log(pi1 / pi0) + fs log((1 - pi1) / (1 - pi0)); the mixture LR is the
// equal-weight average of the components' LRs.
//
// Why the bound holds: given a tick's total failures, fc is hypergeometric under H0, which is
// dominated in convex order by Binomial(fc + fs, pi0), under which each component's tick LR has
// mean exactly 1; the LR is convex in fc, so its mean is at most 1. The mixture LR is therefore a
// nonnegative supermartingale under H0, and Ville's inequality gives P(it ever reaches 1/alpha)
// <= alpha however long the rollout runs and however the weights change. The assumption is that
// the canary is no worse than stable, and that requests are routed to an arm independently of
// whether they will fail.
//
// Only the upper (rollback) bound exists: a lower bound would declare "fine" on evidence that
// says nothing about rare failures; promotion is left to the step schedule and threshold checks.
//
// Not thread-safe; pure: counts in, decision out.
class SequentialJudge {
 public:
  // Relative risks that are not finite and > 1 are dropped (an empty list falls back to the
  // defaults); an alpha outside (0, 1) falls back to 0.01.
  explicit SequentialJudge(SequentialJudgeOptions options = {});

  // New requests and failures of both arms over the same stretch of time (one tick). Failures
  // above an arm's requests are capped at its requests. Ignored once rollback() is true, so the
  // state that made the decision is the state that gets persisted.
  void Observe(const ArmCounts& stable, const ArmCounts& canary);

  // Sticky once the mixture likelihood ratio reaches 1/alpha.
  bool rollback() const { return rollback_; }
  // Log of the mixture LR (0 at start).
  double log_likelihood_ratio() const { return log_lr_; }
  // Progress toward the rollback bound in [0, 1]: log LR / log(1/alpha), clamped.
  double progress() const;
  // Failures of both arms in the ticks that entered the test (both arms served requests) since
  // construction or Restore().
  uint64_t failures_seen() const { return failures_seen_; }

  // For persistence across a server restart: the per-component log LRs, and restore. The vector
  // is in the order of options.relative_risks after the constructor dropped invalid entries.
  const std::vector<double>& component_log_lrs() const { return component_log_lrs_; }
  // A vector that does not fit the options (wrong size, NaN) restarts the test from zero.
  static SequentialJudge Restore(SequentialJudgeOptions options,
                                 std::vector<double> component_log_lrs);

 private:
  void Update();

  SequentialJudgeOptions options_;
  double log_bound_;                        // log(1 / alpha)
  std::vector<double> log_relative_risks_;  // log r per component
  std::vector<double> component_log_lrs_;
  double log_lr_ = 0;
  bool rollback_ = false;
  uint64_t failures_seen_ = 0;
};

}  // namespace sluice::canary
