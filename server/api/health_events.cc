#include "server/api/health_events.h"

#include "lib/common/log.h"

namespace sluice::api {

HealthEventSink::HealthEventSink(prometheus::Registry& registry)
    : active_(prometheus::BuildGauge()
                  .Name("sluice_outlier_ejections_active")
                  .Help("Endpoints currently ejected by outlier detection, per cluster")
                  .Register(registry)),
      ejections_(prometheus::BuildCounter()
                     .Name("sluice_outlier_ejections_total")
                     .Help("Ejections enforced by outlier detection, per cluster and reason")
                     .Register(registry)),
      overflows_(prometheus::BuildCounter()
                     .Name("sluice_outlier_ejections_overflow_total")
                     .Help("Detections not ejected because of maxEjectionPercent, per cluster")
                     .Register(registry)) {}

void HealthEventSink::DeclareClusters(const routing::Snapshot& snapshot) {
  for (const auto& cluster : snapshot.clusters()) {
    // Family::Add returns the existing series unchanged when there is one.
    if (cluster->policy.outlier.enabled) active_.Add({{"cluster_name", cluster->name}});
  }
}

void HealthEventSink::OnEjected(const std::string& cluster, const std::string& endpoint,
                                health::EjectionReason reason, uint32_t ejections,
                                absl::Duration duration) {
  const char* reason_name = health::EjectionReasonName(reason);
  ejections_.Add({{"cluster_name", cluster}, {"reason", reason_name}}).Increment();
  LogWarning("outlier: ejected ", endpoint, " of ", cluster, " (", reason_name, ", ejection ",
             ejections, ", for ", absl::FormatDuration(duration), ")");
}

void HealthEventSink::OnReturned(const std::string& cluster, const std::string& endpoint,
                                 absl::Duration ejected_for) {
  LogInfo("outlier: returned ", endpoint, " of ", cluster, " to rotation after ",
          absl::FormatDuration(absl::Trunc(ejected_for, absl::Milliseconds(1))));
}

void HealthEventSink::OnShared(const std::string& cluster, const std::string& endpoint,
                               bool ejected) {
  // Counted in sluice_outlier_ejections_total by the replica that detected it only: a sum
  // over replicas counts each ejection once.
  LogInfo("outlier: ", endpoint, " of ", cluster,
          ejected ? " ejected by the leading replica" : " returned by the leading replica");
}

void HealthEventSink::OnOverflow(const std::string& cluster, const std::string& endpoint) {
  overflows_.Add({{"cluster_name", cluster}}).Increment();
  LogWarning("outlier: ", endpoint, " of ", cluster,
             " failed its check but stays: maxEjectionPercent reached");
}

void HealthEventSink::OnEjectionsActive(const std::string& cluster, size_t active) {
  active_.Add({{"cluster_name", cluster}}).Set(static_cast<double>(active));
}

}  // namespace sluice::api
