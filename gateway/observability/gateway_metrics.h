#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "lib/common/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice::gateway {

// The destination and outcome of one request, as the Istio metrics label it.
struct RequestOutcome {
  std::string destination_host;  // FQDN, e.g. reviews.default.svc.cluster.local
  std::string subset;            // destination_version; empty when none
  uint32_t response_code = 0;    // 0: no response was sent
  std::string response_flags = "-";
};

// Istio's standard metrics as a client-side sidecar (reporter="source") reports them, with
// Istio's label names and values and Envoy's default histogram buckets, so Istio's
// dashboards and Flagger's queries read them unchanged. Thread-safe; each label set's series
// are created once and cached.
class IstioMetrics {
 public:
  IstioMetrics(prometheus::Registry& registry, std::string workload, std::string namespace_name);

  void Record(const RequestOutcome& outcome, absl::Duration duration, uint64_t request_bytes,
              uint64_t response_bytes);

  // Envoy's default buckets (ms for durations, bytes for sizes).
  static const std::vector<double>& DefaultBuckets();

 private:
  struct Series {
    prometheus::Counter* requests;
    prometheus::Histogram* duration;
    prometheus::Histogram* request_bytes;
    prometheus::Histogram* response_bytes;
  };
  // A copy: another worker's insert may rehash `series_` as soon as the lock is released
  // (the metric objects themselves stay where prometheus-cpp put them).
  Series SeriesFor(const RequestOutcome& outcome);

  const std::string workload_;
  const std::string namespace_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& request_bytes_;
  prometheus::Family<prometheus::Histogram>& response_bytes_;
  Mutex mu_;
  absl::flat_hash_map<std::string, Series> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::gateway
