#pragma once

#include <array>
#include <cstdint>

#include "absl/time/time.h"

namespace sluice::health {

// Attempts and failures of one endpoint over a trailing window, kept in a ring of fixed
// buckets so adding is O(1) and old counts fall out by themselves. Pure: time comes in.
class RecentOutcomes {
 public:
  static constexpr int kBuckets = 6;
  static constexpr absl::Duration kBucketWidth = absl::Seconds(10);
  // The window a sum covers: the current bucket plus the five before it (50 to 60 s).
  static constexpr absl::Duration kWindow = absl::Seconds(60);

  struct Totals {
    uint64_t attempts = 0;
    uint64_t failures = 0;
  };

  void Add(bool failed, absl::Time now);
  Totals Sum(absl::Time now) const;

 private:
  struct Bucket {
    int64_t index = -1;  // which kBucketWidth-long slice of time it counts; -1: unused
    Totals totals;
  };
  static int64_t IndexOf(absl::Time now);

  std::array<Bucket, kBuckets> buckets_;
};

}  // namespace sluice::health
