#pragma once

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/health/health_tracker.h"

namespace sluice::api {

// Tells ejections and returns to people: one event line each in the server log, and
// per-cluster metrics named after Envoy's outlier_detection stats:
//   sluice_outlier_ejections_active{cluster_name}
//   sluice_outlier_ejections_total{cluster_name, reason}  (Envoy: ejections_enforced_*)
//   sluice_outlier_ejections_overflow_total{cluster_name}
class HealthEventSink final : public health::HealthEvents {
 public:
  explicit HealthEventSink(prometheus::Registry& registry);

  // Creates the ejections_active series (at 0) of every cluster with outlier detection, so
  // dashboards and alerts see the series before the first ejection.
  void DeclareClusters(const routing::Snapshot& snapshot);

  // health::HealthEvents
  void OnEjected(const std::string& cluster, const std::string& endpoint,
                 health::EjectionReason reason, uint32_t ejections,
                 absl::Duration duration) override;
  void OnReturned(const std::string& cluster, const std::string& endpoint,
                  absl::Duration ejected_for) override;
  void OnShared(const std::string& cluster, const std::string& endpoint, bool ejected) override;
  void OnOverflow(const std::string& cluster, const std::string& endpoint) override;
  void OnEjectionsActive(const std::string& cluster, size_t active) override;

 private:
  prometheus::Family<prometheus::Gauge>& active_;
  prometheus::Family<prometheus::Counter>& ejections_;
  prometheus::Family<prometheus::Counter>& overflows_;
};

}  // namespace sluice::api
