#include "server/canary/traffic_recorder.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "lib/config/host_names.h"

namespace sluice::canary {
namespace {

std::string Key(const std::string& host, const std::string& subset) {
  return absl::StrCat(host, "|", subset);
}

int64_t SecondOf(absl::Time t) { return absl::ToUnixSeconds(t); }

}  // namespace

void TrafficTotals::Add(const TrafficTotals& other) {
  requests += other.requests;
  failures += other.failures;
  for (size_t i = 0; i < latency_buckets.size(); ++i) {
    latency_buckets[i] += other.latency_buckets[i];
  }
}

std::optional<double> TrafficTotals::SuccessRatePercent() const {
  if (requests == 0) return std::nullopt;
  return 100.0 * static_cast<double>(requests - failures) / static_cast<double>(requests);
}

uint64_t TrafficTotals::Timed() const {
  uint64_t n = 0;
  for (uint64_t b : latency_buckets) n += b;
  return n;
}

std::optional<double> TrafficTotals::LatencyQuantileMs(double q) const {
  const uint64_t timed = Timed();
  if (timed == 0) return std::nullopt;
  const double rank = q * static_cast<double>(timed);
  uint64_t below = 0;
  for (size_t i = 0; i < latency_buckets.size(); ++i) {
    const uint64_t in_bucket = latency_buckets[i];
    if (static_cast<double>(below + in_bucket) >= rank && in_bucket > 0) {
      // Prometheus: the highest finite bound when the rank falls in the +Inf bucket.
      if (i == kLatencyBoundsMs.size()) return kLatencyBoundsMs.back();
      const double lower = i == 0 ? 0.0 : kLatencyBoundsMs[i - 1];
      const double upper = kLatencyBoundsMs[i];
      return lower +
             (upper - lower) * (rank - static_cast<double>(below)) / static_cast<double>(in_bucket);
    }
    below += in_bucket;
  }
  return kLatencyBoundsMs.back();
}

uint64_t TrafficTotals::SlowerThan(double ms) const {
  uint64_t slow = 0;
  for (size_t i = 0; i < latency_buckets.size(); ++i) {
    const double lower = i == 0 ? 0.0 : kLatencyBoundsMs[i - 1];
    if (lower >= ms) slow += latency_buckets[i];
  }
  return slow;
}

void TrafficWindow::Add(bool failed, std::optional<double> latency_ms, absl::Time now) {
  const int64_t second = SecondOf(now);
  Bucket& b = buckets_[static_cast<size_t>(((second % kSeconds) + kSeconds) % kSeconds)];
  if (b.second != second) b = Bucket{second, {}};
  ++b.totals.requests;
  if (failed) ++b.totals.failures;
  if (!latency_ms) return;
  const auto bound =
      std::lower_bound(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end(), *latency_ms);
  ++b.totals.latency_buckets[static_cast<size_t>(bound - kLatencyBoundsMs.begin())];
}

TrafficTotals TrafficWindow::Sum(absl::Time from, absl::Time to) const {
  // A second only partly inside the range is left out at the start: a range that begins
  // when a run (re)started must not count what came just before.
  int64_t first = SecondOf(from);
  if (absl::FromUnixSeconds(first) < from) ++first;
  const int64_t end = SecondOf(to);
  TrafficTotals sum;
  for (const Bucket& b : buckets_) {
    if (b.second >= first && b.second < end) sum.Add(b.totals);
  }
  return sum;
}

TrafficRecorder::TrafficRecorder(Clock clock) : clock_(std::move(clock)) {}

void TrafficRecorder::OnSnapshot(const routing::Snapshot& snapshot) {
  absl::flat_hash_set<std::string> canary_hosts;
  for (const config::Canary& c : snapshot.source().canaries) {
    canary_hosts.insert(config::ResolveHost(c.host, c.meta.namespace_name));
  }
  absl::MutexLock lock(&mu_);
  // The previous version's mapping stays usable (shared ownership keeps its windows alive).
  previous_version_ = version_;
  previous_by_cluster_.clear();
  for (TrafficWindow* w : by_cluster_) {
    std::shared_ptr<TrafficWindow> owner;
    if (w != nullptr) {
      for (const auto& [key, window] : windows_) {
        if (window.get() == w) owner = window;
      }
    }
    previous_by_cluster_.push_back(std::move(owner));
  }
  absl::flat_hash_map<std::string, std::shared_ptr<TrafficWindow>> next;
  by_cluster_.assign(snapshot.clusters().size(), nullptr);
  by_cluster_name_.clear();
  for (const auto& cluster : snapshot.clusters()) {
    if (!canary_hosts.contains(cluster->host)) continue;
    const std::string key = Key(cluster->host, cluster->subset);
    std::shared_ptr<TrafficWindow>& window = next[key];
    if (window == nullptr) {
      auto it = windows_.find(key);
      window = it != windows_.end() ? it->second : std::make_shared<TrafficWindow>();
    }
    by_cluster_[cluster->id] = window.get();
    by_cluster_name_[cluster->name] = window.get();
  }
  windows_ = std::move(next);
  version_ = snapshot.version();
}

void TrafficRecorder::OnAttempt(uint64_t version, uint32_t cluster_id, bool failed,
                                std::optional<double> latency_ms) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  TrafficWindow* window = nullptr;
  if (version == version_ && cluster_id < by_cluster_.size()) {
    window = by_cluster_[cluster_id];
  } else if (version == previous_version_ && cluster_id < previous_by_cluster_.size()) {
    window = previous_by_cluster_[cluster_id].get();
  }
  if (window != nullptr) window->Add(failed, latency_ms, now);
}

void TrafficRecorder::OnAttemptByCluster(const std::string& cluster, bool failed,
                                         std::optional<double> latency_ms) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = by_cluster_name_.find(cluster);
  if (it != by_cluster_name_.end()) it->second->Add(failed, latency_ms, now);
}

TrafficTotals TrafficRecorder::Sum(const std::string& host, const std::string& subset,
                                   absl::Time from, absl::Time to) const {
  absl::MutexLock lock(&mu_);
  auto it = windows_.find(Key(host, subset));
  if (it == windows_.end()) return {};
  return it->second->Sum(from, to);
}

}  // namespace sluice::canary
