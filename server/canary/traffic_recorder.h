#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/routing/snapshot.h"

namespace sluice::canary {

// Envoy's default histogram buckets (ms), the ones istio_request_duration_milliseconds uses,
// so built-in p99 and Prometheus's histogram_quantile agree.
inline constexpr std::array<double, 19> kLatencyBoundsMs = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

// Requests, failures and a latency histogram of one subset over some stretch of time.
struct TrafficTotals {
  uint64_t requests = 0;
  uint64_t failures = 0;  // 5xx responses, resets, connect failures, timeouts
  std::array<uint64_t, kLatencyBoundsMs.size() + 1> latency_buckets{};  // last: above all

  void Add(const TrafficTotals& other);
  // Percent of requests that did not fail; nullopt without requests.
  std::optional<double> SuccessRatePercent() const;
  // The q-quantile in ms, interpolated linearly inside its bucket as Prometheus's
  // histogram_quantile does; nullopt without requests.
  std::optional<double> LatencyQuantileMs(double q) const;
  // Requests in buckets entirely above `ms` (slower than it): exact when `ms` is a bucket bound.
  uint64_t SlowerThan(double ms) const;
  // Requests with a latency (the histogram's count): local failures such as UH have none.
  uint64_t Timed() const;
};

// One cluster's traffic in one-second buckets over the last kSeconds. Not thread-safe.
class TrafficWindow {
 public:
  static constexpr int64_t kSeconds = 600;
  // `latency_ms` nullopt: a request that failed without an upstream attempt (UH).
  void Add(bool failed, std::optional<double> latency_ms, absl::Time now);
  // Everything recorded in the whole seconds from `from` (rounded up) to `to` (the second
  // `to` is in excluded), as far back as the window reaches.
  TrafficTotals Sum(absl::Time from, absl::Time to) const;

 private:
  struct Bucket {
    int64_t second = -1;
    TrafficTotals totals;
  };
  std::vector<Bucket> buckets_ = std::vector<Bucket>(kSeconds);
};

// The canary's built-in evidence: per (host, subset) windows of the attempts the gateways
// report, for the hosts a Canary names (other hosts cost nothing). Thread-safe; reports are
// addressed like the decision named their cluster (snapshot version and cluster index).
class TrafficRecorder {
 public:
  using Clock = std::function<absl::Time()>;
  explicit TrafficRecorder(Clock clock);

  void OnSnapshot(const routing::Snapshot& snapshot);
  // An attempt decided on snapshot `version`. The current and the previous version are
  // known; older reports are dropped (requests in flight across two changes).
  void OnAttempt(uint64_t version, uint32_t cluster_id, bool failed,
                 std::optional<double> latency_ms);
  // An attempt another replica forwarded, by cluster name (its versions are its own).
  void OnAttemptByCluster(const std::string& cluster, bool failed,
                          std::optional<double> latency_ms);
  // The traffic of `host`'s `subset` (every port) in [from, to).
  TrafficTotals Sum(const std::string& host, const std::string& subset, absl::Time from,
                    absl::Time to) const;
  absl::Time Now() const { return clock_(); }

 private:
  Clock clock_;
  mutable absl::Mutex mu_;
  // By "host|subset"; kept across snapshots while a Canary names the host.
  absl::flat_hash_map<std::string, std::shared_ptr<TrafficWindow>> windows_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<TrafficWindow*> by_cluster_ ABSL_GUARDED_BY(mu_);  // null: not recorded
  absl::flat_hash_map<std::string, TrafficWindow*> by_cluster_name_ ABSL_GUARDED_BY(mu_);
  uint64_t previous_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<TrafficWindow>> previous_by_cluster_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::canary
