#include "server/health/recent_outcomes.h"

namespace sluice::health {

int64_t RecentOutcomes::IndexOf(absl::Time now) {
  return absl::ToUnixNanos(now) / absl::ToInt64Nanoseconds(kBucketWidth);
}

void RecentOutcomes::Add(bool failed, absl::Time now) {
  const int64_t index = IndexOf(now);
  Bucket& bucket = buckets_[static_cast<size_t>(index % kBuckets)];
  if (bucket.index != index) bucket = Bucket{index, {}};
  ++bucket.totals.attempts;
  if (failed) ++bucket.totals.failures;
}

RecentOutcomes::Totals RecentOutcomes::Sum(absl::Time now) const {
  const int64_t index = IndexOf(now);
  Totals sum;
  for (const Bucket& bucket : buckets_) {
    if (bucket.index >= 0 && bucket.index > index - kBuckets && bucket.index <= index) {
      sum.attempts += bucket.totals.attempts;
      sum.failures += bucket.totals.failures;
    }
  }
  return sum;
}

}  // namespace sluice::health
