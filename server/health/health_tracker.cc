#include "server/health/health_tracker.h"

#include <algorithm>
#include <utility>

namespace sluice::health {
namespace {

bool IsFailure(const AttemptEvent& event) {
  return event.kind != AttemptEvent::Kind::kResponse || event.status >= 500;
}

}  // namespace

HealthTracker::HealthTracker(Clock clock, HealthEvents* events)
    : clock_(std::move(clock)), events_(events) {}

void HealthTracker::OnSnapshot(const routing::Snapshot& snapshot) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Cluster>> next;
  current_.clear();
  VersionIndex index;
  index.version = snapshot.version();
  for (const auto& source : snapshot.clusters()) {
    Cluster* cluster = nullptr;
    if (auto same = next.find(source->name); same != next.end()) {
      cluster = same->second.get();  // names are unique; this only guards the invariant
    } else {
      std::unique_ptr<Cluster> previous;
      if (auto it = clusters_.find(source->name); it != clusters_.end()) {
        previous = std::move(it->second);
        clusters_.erase(it);
      }
      std::unique_ptr<Cluster> rebuilt = Rebuild(*source, std::move(previous), now);
      cluster = rebuilt.get();
      next.emplace(source->name, std::move(rebuilt));
    }
    current_.push_back(cluster);
    index.cluster_names.push_back(source->name);
    index.endpoint_ids.push_back(cluster->endpoint_ids);
  }
  // Clusters no snapshot serves any more take their ejections with them.
  for (const auto& [name, gone] : clusters_) {
    if (events_ != nullptr && gone->detector.ejected_count() > 0) {
      events_->OnEjectionsActive(name, 0);
    }
  }
  clusters_ = std::move(next);
  current_version_ = snapshot.version();
  versions_.push_back(std::move(index));
  while (versions_.size() > kVersionsKept) versions_.pop_front();
}

std::unique_ptr<HealthTracker::Cluster> HealthTracker::Rebuild(const routing::Cluster& source,
                                                               std::unique_ptr<Cluster> previous,
                                                               absl::Time now) {
  auto cluster = std::make_unique<Cluster>();
  cluster->name = source.name;
  cluster->policy = source.policy.outlier;
  const size_t n = source.endpoints.size();
  std::vector<OutlierDetector::Host> hosts(n);
  cluster->recent.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const routing::Endpoint& endpoint = source.endpoints[i];
    cluster->endpoint_ids.push_back(endpoint.id);
    cluster->slot_by_id.emplace(endpoint.id, i);
    cluster->runtimes.push_back(endpoint.runtime);
    if (previous == nullptr) continue;
    // An endpoint keeps its counters, ejection and multiplier across any change that keeps
    // it: weight changes and route edits must not forgive a failing endpoint.
    auto slot = previous->slot_by_id.find(endpoint.id);
    if (slot == previous->slot_by_id.end()) continue;
    cluster->recent[i] = previous->recent[slot->second];
    if (!cluster->policy.enabled) continue;
    hosts[i] = previous->detector.host(slot->second);
    if (!(previous->policy == cluster->policy)) {
      // Counters fire when they equal the threshold: kept across a lower threshold they
      // would never fire again. Ejections and multipliers stay.
      hosts[i].consecutive_5xx = hosts[i].consecutive_gateway = hosts[i].consecutive_local = 0;
    }
  }
  const size_t ejected_before = previous != nullptr ? previous->detector.ejected_count() : 0;
  if (previous != nullptr && events_ != nullptr && !cluster->policy.enabled) {
    // Outlier detection was switched off: every ejection ends now.
    for (size_t slot = 0; slot < previous->detector.size(); ++slot) {
      const OutlierDetector::Host& h = previous->detector.host(slot);
      if (h.ejected) {
        events_->OnReturned(cluster->name, previous->endpoint_ids[slot], now - h.last_ejection);
      }
    }
  }
  cluster->detector = OutlierDetector(cluster->policy, std::move(hosts));
  if (cluster->policy.enabled) {
    // Envoy arms the interval timer when the detector is created; a shorter new interval
    // takes effect at once.
    cluster->next_tick = now + cluster->policy.interval;
    if (previous != nullptr && previous->policy.enabled) {
      cluster->next_tick = std::min(cluster->next_tick, previous->next_tick);
    }
  }
  for (size_t i = 0; i < n; ++i) Publish(*cluster, i);
  if (events_ != nullptr && cluster->detector.ejected_count() != ejected_before) {
    events_->OnEjectionsActive(cluster->name, cluster->detector.ejected_count());
  }
  return cluster;
}

void HealthTracker::Publish(Cluster& cluster, size_t slot) {
  cluster.runtimes[slot]->ejected.store(cluster.detector.host(slot).ejected,
                                        std::memory_order_relaxed);
}

bool HealthTracker::Resolve(const AttemptRecord& record, Cluster** cluster, size_t* slot) {
  if (record.config_version == current_version_) {
    if (record.cluster_id >= current_.size()) return false;
    *cluster = current_[record.cluster_id];
    *slot = record.endpoint_index;
    return *slot < (*cluster)->endpoint_ids.size();
  }
  // Decided on an older snapshot (a change landed while the request was in flight): find
  // the same cluster and endpoint by name in the current state.
  auto version = std::find_if(versions_.begin(), versions_.end(), [&](const VersionIndex& v) {
    return v.version == record.config_version;
  });
  if (version == versions_.end() || record.cluster_id >= version->cluster_names.size()) {
    return false;
  }
  const std::vector<std::string>& ids = version->endpoint_ids[record.cluster_id];
  if (record.endpoint_index >= ids.size()) return false;
  auto it = clusters_.find(version->cluster_names[record.cluster_id]);
  if (it == clusters_.end()) return false;
  auto found = it->second->slot_by_id.find(ids[record.endpoint_index]);
  if (found == it->second->slot_by_id.end()) return false;
  *cluster = it->second.get();
  *slot = found->second;
  return true;
}

void HealthTracker::OnAttempt(const AttemptRecord& record) {
  if (record.event.kind == AttemptEvent::Kind::kNotCounted) return;
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  Cluster* cluster = nullptr;
  size_t slot = 0;
  if (!Resolve(record, &cluster, &slot)) {
    ++dropped_reports_;
    return;
  }
  cluster->recent[slot].Add(IsFailure(record.event), now);
  if (!cluster->policy.enabled) return;
  OutlierDetector& detector = cluster->detector;
  const uint64_t overflows_before = detector.overflows();
  const bool ejected = detector.OnAttempt(slot, record.event, now);
  if (ejected) Publish(*cluster, slot);
  if (events_ == nullptr) return;
  if (ejected) {
    const OutlierDetector::Host& h = detector.host(slot);
    events_->OnEjected(cluster->name, cluster->endpoint_ids[slot], h.reason, h.ejections,
                       detector.EjectionTime(slot));
    events_->OnEjectionsActive(cluster->name, detector.ejected_count());
  }
  for (uint64_t i = overflows_before; i < detector.overflows(); ++i) {
    events_->OnOverflow(cluster->name, cluster->endpoint_ids[slot]);
  }
}

absl::Time HealthTracker::Tick() {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (auto& [name, cluster] : clusters_) {
    if (!cluster->policy.enabled) continue;
    if (cluster->next_tick <= now) {
      const std::vector<size_t> returned = cluster->detector.OnInterval(now);
      for (size_t slot : returned) {
        Publish(*cluster, slot);
        if (events_ != nullptr) {
          events_->OnReturned(name, cluster->endpoint_ids[slot],
                              now - cluster->detector.host(slot).last_ejection);
        }
      }
      if (!returned.empty() && events_ != nullptr) {
        events_->OnEjectionsActive(name, cluster->detector.ejected_count());
      }
      cluster->next_tick += cluster->policy.interval;
      // A tick that came late (a stalled process) does not make up the missed ones.
      if (cluster->next_tick <= now) cluster->next_tick = now + cluster->policy.interval;
    }
    next = std::min(next, cluster->next_tick);
  }
  return next;
}

std::optional<ClusterHealth> HealthTracker::Describe(const std::string& name) const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return std::nullopt;
  const Cluster& cluster = *it->second;
  ClusterHealth out;
  out.cluster = name;
  out.outlier_detection = cluster.policy.enabled;
  out.ejected = cluster.detector.ejected_count();
  out.overflows = cluster.detector.overflows();
  out.next_tick = cluster.next_tick;
  for (size_t i = 0; i < cluster.endpoint_ids.size(); ++i) {
    const OutlierDetector::Host& h = cluster.detector.host(i);
    EndpointHealth e;
    e.id = cluster.endpoint_ids[i];
    e.ejected = h.ejected;
    e.reason = h.reason;
    e.ejections = h.ejections;
    e.multiplier = h.multiplier;
    if (h.ejected) {
      e.ejected_since = h.last_ejection;
      e.ejected_until = h.last_ejection + cluster.detector.EjectionTime(i);
    }
    e.consecutive_5xx = h.consecutive_5xx;
    e.consecutive_gateway_errors = h.consecutive_gateway;
    e.consecutive_local_origin_failures = h.consecutive_local;
    e.recent = cluster.recent[i].Sum(now);
    out.endpoints.push_back(std::move(e));
  }
  return out;
}

uint64_t HealthTracker::dropped_reports() const {
  absl::MutexLock lock(&mu_);
  return dropped_reports_;
}

}  // namespace sluice::health
