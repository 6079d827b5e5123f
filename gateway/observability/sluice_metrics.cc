#include "gateway/observability/sluice_metrics.h"

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

SluiceGatewayMetrics::SluiceGatewayMetrics(prometheus::Registry& registry)
    : retries_(Counter(registry, "sluice_gateway_retries_total",
                       "Upstream retries, by destination service and subset")),
      faults_(Counter(registry, "sluice_gateway_faults_total",
                      "Injected faults executed, by destination service and kind")),
      overflows_(Counter(registry, "sluice_gateway_overflows_total",
                         "Requests or retries refused by a connection-pool limit (flag UO)")),
      decision_failures_(Counter(registry, "sluice_gateway_decision_failures_total",
                                 "Requests the decision service did not decide, by reason")),
      decision_seconds_(
          prometheus::BuildHistogram()
              .Name("sluice_gateway_decision_duration_seconds")
              .Help("Round trip of one decision, gateway to server and back")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001,
                                                               0.0025, 0.005, 0.01, 0.025, 0.05,
                                                               0.1, 0.25, 0.5, 1})),
      decision_up_(prometheus::BuildGauge()
                       .Name("sluice_gateway_decision_service_up")
                       .Help("1 while the gateway's decision streams are connected")
                       .Register(registry)
                       .Add({})),
      table_age_(prometheus::BuildGauge()
                     .Name("sluice_gateway_table_age_seconds")
                     .Help("Seconds since the worker's decision table was last confirmed by the "
                           "server (0 while connected; -1: no table yet)")
                     .Register(registry)),
      stream_messages_(Counter(registry, "sluice_gateway_decision_stream_messages_total",
                               "Messages the gateway sent on its decision streams")
                           .Add({})),
      stream_decide_requests_(
          Counter(registry, "sluice_gateway_decision_stream_decide_requests_total",
                  "Decide requests the gateway sent on its decision streams (server mode)")
              .Add({})),
      stream_reports_(Counter(registry, "sluice_gateway_decision_stream_reports_total",
                              "Attempt reports the gateway sent on its decision streams")
                          .Add({})) {
  auto& decisions = Counter(registry, "sluice_gateway_decisions_total",
                            "Requests decided, by source: the server (server mode), this "
                            "gateway on the current table (local mode), or on the last table "
                            "while the server cannot be reached (stale)");
  decisions_by_source_ = {&decisions.Add({{"source", "server"}}),
                          &decisions.Add({{"source", "local"}}),
                          &decisions.Add({{"source", "stale"}})};
}

void SluiceGatewayMetrics::SetTableAge(int worker, absl::Duration age) {
  prometheus::Gauge* gauge;
  {
    MutexLock lock(&gauges_mu_);
    prometheus::Gauge*& slot = table_age_by_worker_[worker];
    if (slot == nullptr) slot = &table_age_.Add({{"worker", absl::StrCat(worker)}});
    gauge = slot;
  }
  gauge->Set(age == absl::InfiniteDuration() ? -1 : absl::ToDoubleSeconds(age));
}

prometheus::Counter& SluiceGatewayMetrics::Cached(
    prometheus::Family<prometheus::Counter>& family,
    const std::map<std::string, std::string>& labels) {
  std::string key = absl::StrCat(reinterpret_cast<uintptr_t>(&family));
  for (const auto& [k, v] : labels) absl::StrAppend(&key, "|", k, "=", v);
  MutexLock lock(&mu_);
  prometheus::Counter*& slot = cache_[key];
  if (slot == nullptr) slot = &family.Add(labels);
  return *slot;
}

void SluiceGatewayMetrics::CountRetry(const std::string& host, const std::string& subset) {
  Cached(retries_, {{"destination_service", host}, {"destination_version", subset}}).Increment();
}

void SluiceGatewayMetrics::CountFault(const std::string& host, const char* kind) {
  Cached(faults_, {{"destination_service", host}, {"fault", kind}}).Increment();
}

void SluiceGatewayMetrics::CountOverflow(const std::string& cluster, const char* limit) {
  Cached(overflows_, {{"cluster", cluster}, {"limit", limit}}).Increment();
}

void SluiceGatewayMetrics::CountDecisionFailure(const char* reason) {
  Cached(decision_failures_, {{"reason", reason}}).Increment();
}

void SluiceGatewayMetrics::ObserveDecision(absl::Duration round_trip) {
  decision_seconds_.Observe(absl::ToDoubleSeconds(round_trip));
}

}  // namespace sluice::gateway
