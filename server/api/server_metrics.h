#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "lib/routing/decider.h"
#include "lib/routing/snapshot.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice::api {

// sluice-server's metrics, declared in one place. Decision counters are resolved per
// snapshot into a table indexed by route and destination, so counting a decision is one
// atomic add rather than a lookup by labels.
class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  // A new snapshot is serving: new counter table, config version gauge.
  void OnSnapshot(const routing::Snapshot& snapshot);
  // Counts a decision made on `snapshot`.
  void CountDecision(const routing::Snapshot& snapshot, const routing::Decision& decision);

  // Decision latency gathered over a batch, then added to the histogram in one call (the
  // histogram takes a lock per call).
  class LatencyBatch {
   public:
    explicit LatencyBatch(ServerMetrics& metrics);
    ~LatencyBatch();
    void Record(double seconds);

   private:
    ServerMetrics& metrics_;
    std::vector<double> counts_;
    double sum_ = 0;
    bool any_ = false;
  };

  prometheus::Counter& applies_ok;
  prometheus::Counter& apply_errors_api;
  prometheus::Counter& apply_errors_file;
  prometheus::Gauge& config_version;
  prometheus::Gauge& streams_open;
  prometheus::Counter& decide_invalid;
  prometheus::Counter& decide_resend;
  // Attempt reports by outcome, indexed by sluice.v1.Outcome.
  std::vector<prometheus::Counter*> attempt_reports;

 private:
  struct CounterTable;
  prometheus::Counter* Slot(CounterTable& table, size_t index);

  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Histogram& decision_seconds_;
  std::vector<double> bucket_bounds_;
  std::shared_ptr<CounterTable> table_;  // accessed with atomic_load/atomic_store
};

}  // namespace sluice::api
