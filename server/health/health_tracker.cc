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
  if (previous != nullptr && events_ != nullptr && !cluster->policy.enabled && detecting_) {
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
  if (!detecting_) {
    // The ejections are the detecting replica's; its table push carries them.
    PublishShared(*cluster);
    return cluster;
  }
  for (size_t i = 0; i < n; ++i) Publish(*cluster, i);
  if (events_ != nullptr && cluster->detector.ejected_count() != ejected_before) {
    events_->OnEjectionsActive(cluster->name, cluster->detector.ejected_count());
  }
  return cluster;
}

const SharedEjection* HealthTracker::Shared(const Cluster& cluster, size_t slot) const {
  auto by_cluster = shared_.find(cluster.name);
  if (by_cluster == shared_.end()) return nullptr;
  auto it = by_cluster->second.find(cluster.endpoint_ids[slot]);
  return it == by_cluster->second.end() ? nullptr : &it->second;
}

bool HealthTracker::Ejected(const Cluster& cluster, size_t slot) const {
  if (!cluster.policy.enabled) return false;
  return detecting_ ? cluster.detector.host(slot).ejected : Shared(cluster, slot) != nullptr;
}

bool HealthTracker::Publish(Cluster& cluster, size_t slot) {
  const bool ejected = Ejected(cluster, slot);
  return cluster.runtimes[slot]->ejected.exchange(ejected, std::memory_order_relaxed) != ejected;
}

void HealthTracker::PublishShared(Cluster& cluster) {
  bool changed = false;
  size_t active = 0;
  for (size_t slot = 0; slot < cluster.endpoint_ids.size(); ++slot) {
    if (Publish(cluster, slot)) {
      changed = true;
      if (events_ != nullptr) {
        events_->OnShared(cluster.name, cluster.endpoint_ids[slot], Ejected(cluster, slot));
      }
    }
    if (Ejected(cluster, slot)) ++active;
  }
  if (changed && events_ != nullptr) events_->OnEjectionsActive(cluster.name, active);
}

void HealthTracker::TakeOver(Cluster& cluster, absl::Time now) {
  if (!cluster.policy.enabled) return;
  std::vector<OutlierDetector::Host> hosts(cluster.endpoint_ids.size());
  for (size_t slot = 0; slot < hosts.size(); ++slot) {
    const SharedEjection* shared = Shared(cluster, slot);
    if (shared == nullptr) continue;
    OutlierDetector::Host& h = hosts[slot];
    h.ejected = true;
    h.reason = shared->reason;
    h.ejections = shared->ejections;
    h.multiplier = std::max<uint32_t>(shared->multiplier, 1);
    h.last_ejection = shared->since;
  }
  cluster.detector = OutlierDetector(cluster.policy, std::move(hosts));
  cluster.next_tick = now + cluster.policy.interval;
}

void HealthTracker::SetDetecting(bool detecting, bool take_over) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (detecting == detecting_) return;
  detecting_ = detecting;
  for (auto& [name, cluster] : clusters_) {
    if (detecting && take_over) TakeOver(*cluster, now);
    PublishShared(*cluster);
  }
}

bool HealthTracker::detecting() const {
  absl::MutexLock lock(&mu_);
  return detecting_;
}

void HealthTracker::ExpireShared(Cluster& cluster, absl::Time now) {
  auto by_cluster = shared_.find(cluster.name);
  if (by_cluster == shared_.end()) return;
  bool expired = false;
  for (auto it = by_cluster->second.begin(); it != by_cluster->second.end();) {
    // The leader returns it on its first tick after `until`; past one interval more, no
    // leader is left to (etcd without a majority, or a follower cut off from it).
    if (now >= it->second.until + cluster.policy.interval) {
      by_cluster->second.erase(it++);
      expired = true;
    } else {
      ++it;
    }
  }
  if (expired) PublishShared(cluster);
}

void HealthTracker::SetShared(SharedEjections shared) {
  absl::MutexLock lock(&mu_);
  shared_ = std::move(shared);
  if (detecting_) return;  // kept for a takeover
  for (auto& [name, cluster] : clusters_) PublishShared(*cluster);
}

std::optional<HealthTracker::Named> HealthTracker::Name(const AttemptRecord& record) const {
  absl::MutexLock lock(&mu_);
  Cluster* cluster = nullptr;
  size_t slot = 0;
  if (!Resolve(record, &cluster, &slot)) return std::nullopt;
  return Named{cluster->name, cluster->endpoint_ids[slot]};
}

std::optional<std::string> HealthTracker::ClusterName(uint64_t version, uint32_t cluster_id) const {
  absl::MutexLock lock(&mu_);
  for (const VersionIndex& v : versions_) {
    if (v.version == version && cluster_id < v.cluster_names.size()) {
      return v.cluster_names[cluster_id];
    }
  }
  return std::nullopt;
}

void HealthTracker::OnNamedAttempt(const std::string& cluster_name, const std::string& endpoint,
                                   const AttemptEvent& event) {
  if (event.kind == AttemptEvent::Kind::kNotCounted) return;
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto cluster = clusters_.find(cluster_name);
  if (cluster == clusters_.end()) {
    ++dropped_reports_;
    return;
  }
  auto slot = cluster->second->slot_by_id.find(endpoint);
  if (slot == cluster->second->slot_by_id.end()) {
    ++dropped_reports_;
    return;
  }
  Count(*cluster->second, slot->second, event, now);
}

bool HealthTracker::Resolve(const AttemptRecord& record, Cluster** cluster, size_t* slot) const {
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

void HealthTracker::OnAttempt(const AttemptRecord& record, Named* named) {
  if (record.event.kind == AttemptEvent::Kind::kNotCounted) return;
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  Cluster* cluster = nullptr;
  size_t slot = 0;
  if (!Resolve(record, &cluster, &slot)) {
    ++dropped_reports_;
    return;
  }
  if (named != nullptr) {
    named->cluster = cluster->name;
    named->endpoint = cluster->endpoint_ids[slot];
  }
  Count(*cluster, slot, record.event, now);
}

void HealthTracker::Count(Cluster& cluster, size_t slot, const AttemptEvent& event,
                          absl::Time now) {
  cluster.recent[slot].Add(IsFailure(event), now);
  if (!cluster.policy.enabled || !detecting_) return;
  OutlierDetector& detector = cluster.detector;
  const uint64_t overflows_before = detector.overflows();
  const bool ejected = detector.OnAttempt(slot, event, now);
  if (ejected) Publish(cluster, slot);
  if (events_ == nullptr) return;
  if (ejected) {
    const OutlierDetector::Host& h = detector.host(slot);
    events_->OnEjected(cluster.name, cluster.endpoint_ids[slot], h.reason, h.ejections,
                       detector.EjectionTime(slot));
    events_->OnEjectionsActive(cluster.name, detector.ejected_count());
  }
  for (uint64_t i = overflows_before; i < detector.overflows(); ++i) {
    events_->OnOverflow(cluster.name, cluster.endpoint_ids[slot]);
  }
}

absl::Time HealthTracker::Tick() {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (auto& [name, cluster] : clusters_) {
    if (!cluster->policy.enabled) continue;
    if (cluster->next_tick <= now) {
      // A replica that does not detect keeps the rhythm only: its detector starts over when
      // it takes detection over.
      const std::vector<size_t> returned =
          detecting_ ? cluster->detector.OnInterval(now) : std::vector<size_t>();
      if (!detecting_) ExpireShared(*cluster, now);
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
  out.ejected = detecting_ ? cluster.detector.ejected_count() : 0;
  out.overflows = cluster.detector.overflows();
  out.next_tick = cluster.next_tick;
  out.interval = cluster.policy.interval;
  for (size_t i = 0; i < cluster.endpoint_ids.size(); ++i) {
    EndpointHealth e;
    e.id = cluster.endpoint_ids[i];
    e.recent = cluster.recent[i].Sum(now);
    if (!detecting_) {
      // The detecting replica's view, as it shares it; its counters stay there.
      if (const SharedEjection* shared = Ejected(cluster, i) ? Shared(cluster, i) : nullptr) {
        ++out.ejected;
        e.ejected = true;
        e.reason = shared->reason;
        e.ejections = shared->ejections;
        e.multiplier = shared->multiplier;
        e.ejected_since = shared->since;
        e.ejected_until = shared->until;
      }
      out.endpoints.push_back(std::move(e));
      continue;
    }
    const OutlierDetector::Host& h = cluster.detector.host(i);
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
    out.endpoints.push_back(std::move(e));
  }
  return out;
}

uint64_t HealthTracker::dropped_reports() const {
  absl::MutexLock lock(&mu_);
  return dropped_reports_;
}

}  // namespace sluice::health
