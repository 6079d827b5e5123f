#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "lib/common/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice::gateway {

// sluice-gateway's own metrics, beside Istio's: what the gateway did to requests (retries,
// injected faults, circuit-breaker overflows) and how its decision service answers.
// Thread-safe; labelled series are created once and cached.
class SluiceGatewayMetrics {
 public:
  explicit SluiceGatewayMetrics(prometheus::Registry& registry);

  void CountRetry(const std::string& host, const std::string& subset);
  // kind: "delay" or "abort".
  void CountFault(const std::string& host, const char* kind);
  // limit: "connections", "pending", "requests" or "retries".
  void CountOverflow(const std::string& cluster, const char* limit);
  // reason: "unavailable" (stream down), "deadline" (no answer in time), "invalid" (400).
  void CountDecisionFailure(const char* reason);
  void ObserveDecision(absl::Duration round_trip);
  void SetDecisionServiceUp(bool up) { decision_up_.Set(up ? 1 : 0); }
  // Decisions by source, indexed as gateway::DecisionSource: 0 server, 1 local, 2 stale.
  void CountDecision(size_t source) {
    if (source < decisions_by_source_.size()) decisions_by_source_[source]->Increment();
  }
  // Seconds since worker `worker`'s table was last confirmed by the server (0 while
  // connected); InfiniteDuration (no table yet) is exported as -1.
  void SetTableAge(int worker, absl::Duration age);
  // What the workers' decision streams carried since the last call: messages sent, decide
  // requests and attempt reports in them. Decisions per message is the ratio of the first two
  // counters: how well a loaded gateway coalesces (each message is a wake-up of the server).
  void AddDecisionStreamTraffic(uint64_t messages, uint64_t decide_requests, uint64_t reports) {
    stream_messages_.Increment(static_cast<double>(messages));
    stream_decide_requests_.Increment(static_cast<double>(decide_requests));
    stream_reports_.Increment(static_cast<double>(reports));
  }

 private:
  prometheus::Counter& Cached(prometheus::Family<prometheus::Counter>& family,
                              const std::map<std::string, std::string>& labels);

  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& faults_;
  prometheus::Family<prometheus::Counter>& overflows_;
  prometheus::Family<prometheus::Counter>& decision_failures_;
  prometheus::Histogram& decision_seconds_;
  prometheus::Gauge& decision_up_;
  std::array<prometheus::Counter*, 3> decisions_by_source_{};
  prometheus::Counter& stream_messages_;
  prometheus::Counter& stream_decide_requests_;
  prometheus::Counter& stream_reports_;
  prometheus::Family<prometheus::Gauge>& table_age_;
  Mutex gauges_mu_;
  absl::flat_hash_map<int, prometheus::Gauge*> table_age_by_worker_ ABSL_GUARDED_BY(gauges_mu_);
  Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::gateway
