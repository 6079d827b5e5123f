#include "server/canary/sequential_judge.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace sluice::canary {
namespace {

constexpr double kDefaultAlpha = 0.01;

SequentialJudgeOptions Sanitize(SequentialJudgeOptions options) {
  if (!(options.false_rollback_rate > 0 && options.false_rollback_rate < 1)) {
    options.false_rollback_rate = kDefaultAlpha;
  }
  // r <= 1 does not describe a worse canary; dropping it keeps every component pointed at the
  // alternative that matters (any r > 0 would keep the H0 guarantee).
  std::erase_if(options.relative_risks, [](double r) { return !(std::isfinite(r) && r > 1); });
  if (options.relative_risks.empty()) {
    options.relative_risks = SequentialJudgeOptions{}.relative_risks;
  }
  return options;
}

// log(mean(exp(x))) without overflow.
double LogMeanExp(const std::vector<double>& x) {
  const double m = *std::max_element(x.begin(), x.end());
  if (std::isinf(m)) return m;
  double sum = 0;
  for (double v : x) sum += std::exp(v - m);
  return m + std::log(sum) - std::log(static_cast<double>(x.size()));
}

}  // namespace

SequentialJudge::SequentialJudge(SequentialJudgeOptions options)
    : options_(Sanitize(std::move(options))),
      log_bound_(-std::log(options_.false_rollback_rate)),
      component_log_lrs_(options_.relative_risks.size(), 0.0) {
  log_relative_risks_.reserve(options_.relative_risks.size());
  for (double r : options_.relative_risks) log_relative_risks_.push_back(std::log(r));
}

void SequentialJudge::Observe(const ArmCounts& stable, const ArmCounts& canary) {
  if (rollback_) return;
  // An idle arm gives no comparison, and a tick without failures has nothing to place.
  if (stable.requests == 0 || canary.requests == 0) return;
  const uint64_t fs = std::min(stable.failures, stable.requests);
  const uint64_t fc = std::min(canary.failures, canary.requests);
  if (fs + fc == 0) return;
  failures_seen_ += fs + fc;

  const double ns = static_cast<double>(stable.requests);
  const double nc = static_cast<double>(canary.requests);
  const double pi0 = nc / (nc + ns);  // in (0, 1): both arms served requests
  // With pi1 = r Nc / (r Nc + Ns): log(pi1 / pi0) = log r - log(1 + (r - 1) pi0) and
  // log((1 - pi1) / (1 - pi0)) = -log(1 + (r - 1) pi0); this form never takes the log of 0, even
  // when pi1 rounds to 1.
  const double f_canary = static_cast<double>(fc);
  const double f_total = static_cast<double>(fs + fc);
  for (size_t i = 0; i < component_log_lrs_.size(); ++i) {
    const double r = options_.relative_risks[i];
    component_log_lrs_[i] +=
        f_canary * log_relative_risks_[i] - f_total * std::log1p((r - 1) * pi0);
  }
  Update();
}

double SequentialJudge::progress() const { return std::clamp(log_lr_ / log_bound_, 0.0, 1.0); }

SequentialJudge SequentialJudge::Restore(SequentialJudgeOptions options,
                                         std::vector<double> component_log_lrs) {
  SequentialJudge judge(std::move(options));
  const bool fits = component_log_lrs.size() == judge.component_log_lrs_.size() &&
                    std::none_of(component_log_lrs.begin(), component_log_lrs.end(), [](double v) {
                      return std::isnan(v) || (std::isinf(v) && v > 0);
                    });
  if (!fits) return judge;
  judge.component_log_lrs_ = std::move(component_log_lrs);
  judge.Update();
  return judge;
}

void SequentialJudge::Update() {
  log_lr_ = LogMeanExp(component_log_lrs_);
  if (log_lr_ >= log_bound_) rollback_ = true;
}

}  // namespace sluice::canary
