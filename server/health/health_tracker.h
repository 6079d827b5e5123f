#pragma once

#include <cstdint>
#include <deque>
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
#include "server/health/outlier_detector.h"
#include "server/health/recent_outcomes.h"

namespace sluice::health {

// One attempt as a gateway reported it, addressed the way the decision named its endpoint:
// by the snapshot version, the cluster's index in it and the endpoint's index in the cluster.
struct AttemptRecord {
  uint64_t config_version = 0;
  uint32_t cluster_id = 0;
  uint32_t endpoint_index = 0;
  AttemptEvent event;
};

// What people see of one endpoint (sluicectl endpoints).
struct EndpointHealth {
  std::string id;  // address:port
  bool ejected = false;
  EjectionReason reason = EjectionReason::kNone;
  absl::Time ejected_since = absl::InfinitePast();  // InfinitePast: never ejected
  // When the ejection time is up; the endpoint returns on the first interval tick after it.
  absl::Time ejected_until = absl::InfinitePast();
  uint32_t ejections = 0;
  uint32_t multiplier = 0;
  uint32_t consecutive_5xx = 0;
  uint32_t consecutive_gateway_errors = 0;
  uint32_t consecutive_local_origin_failures = 0;
  RecentOutcomes::Totals recent;  // over RecentOutcomes::kWindow
};

struct ClusterHealth {
  std::string cluster;
  bool outlier_detection = false;
  size_t ejected = 0;
  uint64_t overflows = 0;
  absl::Time next_tick = absl::InfiniteFuture();
  absl::Duration interval = absl::ZeroDuration();  // outlierDetection.interval
  std::vector<EndpointHealth> endpoints;           // in the snapshot's order
};

// An ejection the detecting replica made, as it shares it through the store (PREFIX/ejections
// in etcd): what the other replicas need to skip the endpoint and to take the detector over.
struct SharedEjection {
  EjectionReason reason = EjectionReason::kNone;
  uint32_t ejections = 0;
  uint32_t multiplier = 0;
  absl::Time since = absl::InfinitePast();
  absl::Time until = absl::InfinitePast();  // when the ejection time is up
};
// By cluster name, then endpoint id.
using SharedEjections =
    absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, SharedEjection>>;

// Where ejections and returns are told (server log, metrics). Called with the tracker's
// lock held, so implementations must be quick and must not call back into the tracker.
class HealthEvents {
 public:
  virtual ~HealthEvents() = default;
  virtual void OnEjected(const std::string& cluster, const std::string& endpoint,
                         EjectionReason reason, uint32_t ejections, absl::Duration duration) = 0;
  virtual void OnReturned(const std::string& cluster, const std::string& endpoint,
                          absl::Duration ejected_for) = 0;
  // A replica that does not detect took an ejection (or its end) from the one that does:
  // gateways must hear of it, but it is not a detection of this replica's.
  virtual void OnShared(const std::string& /*cluster*/, const std::string& /*endpoint*/,
                        bool /*ejected*/) {}
  // A detection that maxEjectionPercent kept from ejecting.
  virtual void OnOverflow(const std::string& cluster, const std::string& endpoint) = 0;
  // The number of ejected endpoints of `cluster` changed (0 when the cluster goes away).
  virtual void OnEjectionsActive(const std::string& cluster, size_t active) = 0;
};

// Endpoint health for the whole server: one outlier detector per cluster (host + subset,
// with the subset's own policy), fed by every gateway's attempt reports, kept across
// configuration changes by cluster name and endpoint address, and published to the load
// balancers through EndpointRuntime::ejected. Thread-safe; time comes from the injected
// clock, and the interval ticks run when Tick() is called (by HealthTicker in the server).
class HealthTracker {
 public:
  using Clock = std::function<absl::Time()>;

  // `events` may be null; it must outlive the tracker.
  HealthTracker(Clock clock, HealthEvents* events);

  // A new snapshot is serving: clusters and endpoints follow it, state carried over by name.
  void OnSnapshot(const routing::Snapshot& snapshot);
  // Names a cluster and endpoint the way every replica knows them (their versions and ids
  // differ): what a follower forwards to the detecting replica.
  struct Named {
    std::string cluster;
    std::string endpoint;
  };
  // Counts one reported attempt. Reports naming a snapshot too old to remember, or an
  // endpoint that no longer exists, are dropped (counted in dropped_reports()). `named`, when
  // given, receives the names of what the record named (left empty when dropped).
  void OnAttempt(const AttemptRecord& record, Named* named = nullptr);
  // Runs the interval tick of every cluster whose tick is due. Returns when the next one is
  // due (InfiniteFuture when no cluster has outlier detection).
  absl::Time Tick();

  // Several replicas (--store etcd://): only the leader detects. A replica that does not
  // counts reports in the recent outcomes only and takes its ejections from SetShared (each
  // ends by itself one interval after its time is up, should no leader be left to end it);
  // one that starts detecting takes the shared ejections over (their times and multipliers),
  // with its counters at zero. A single server detects from the start.
  // `take_over` false: the same leader again after a moment without its lease (its own
  // detector state stands).
  void SetDetecting(bool detecting, bool take_over = true);
  bool detecting() const;
  // The ejections the detecting replica shares, replacing the previous set.
  void SetShared(SharedEjections shared);
  // The cluster name and endpoint id a record names, or nullopt when it names nothing known.
  std::optional<Named> Name(const AttemptRecord& record) const;
  // The name of cluster `cluster_id` of snapshot `version`, if still remembered.
  std::optional<std::string> ClusterName(uint64_t version, uint32_t cluster_id) const;
  // Counts an attempt another replica forwarded, by name; dropped when it names nothing known.
  void OnNamedAttempt(const std::string& cluster, const std::string& endpoint,
                      const AttemptEvent& event);

  std::optional<ClusterHealth> Describe(const std::string& cluster) const;
  uint64_t dropped_reports() const;

 private:
  struct Cluster {
    std::string name;
    routing::OutlierPolicy policy;
    std::vector<std::string> endpoint_ids;  // in the current snapshot's order
    absl::flat_hash_map<std::string, size_t> slot_by_id;
    std::vector<std::shared_ptr<routing::EndpointRuntime>> runtimes;
    std::vector<RecentOutcomes> recent;
    OutlierDetector detector{routing::OutlierPolicy{}, size_t{0}};
    absl::Time next_tick = absl::InfiniteFuture();
  };
  // How a remembered snapshot version named its clusters and endpoints.
  struct VersionIndex {
    uint64_t version = 0;
    std::vector<std::string> cluster_names;              // by cluster id
    std::vector<std::vector<std::string>> endpoint_ids;  // by cluster id, endpoint index
  };
  static constexpr size_t kVersionsKept = 8;

  std::unique_ptr<Cluster> Rebuild(const routing::Cluster& source,
                                   std::unique_ptr<Cluster> previous, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cluster and slot a record names, or false.
  bool Resolve(const AttemptRecord& record, Cluster** cluster, size_t* slot) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(Cluster& cluster, size_t slot, const AttemptEvent& event, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the endpoint in `slot` is ejected: by the detector, or by the shared set when
  // this replica does not detect.
  bool Ejected(const Cluster& cluster, size_t slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const SharedEjection* Shared(const Cluster& cluster, size_t slot) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores Ejected() where the load balancers read it; true when that changed it.
  bool Publish(Cluster& cluster, size_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes every endpoint, telling each change as shared (SetShared, SetDetecting).
  void PublishShared(Cluster& cluster) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A follower's shared ejections of `cluster` whose time is up by an interval end.
  void ExpireShared(Cluster& cluster, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The detector of a replica that starts detecting: the shared ejections, counters at zero.
  void TakeOver(Cluster& cluster, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock clock_;
  HealthEvents* events_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Cluster>> clusters_ ABSL_GUARDED_BY(mu_);
  // The serving version's clusters by id: slot == endpoint index for them.
  uint64_t current_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Cluster*> current_ ABSL_GUARDED_BY(mu_);
  std::deque<VersionIndex> versions_ ABSL_GUARDED_BY(mu_);  // newest last
  uint64_t dropped_reports_ ABSL_GUARDED_BY(mu_) = 0;
  bool detecting_ ABSL_GUARDED_BY(mu_) = true;
  SharedEjections shared_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::health
