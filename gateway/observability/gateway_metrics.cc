#include "gateway/observability/gateway_metrics.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sluice::gateway {
namespace {

// reviews.default.svc.cluster.local -> {"reviews", "default"}; other hosts keep their name.
std::pair<std::string, std::string> NameAndNamespace(absl::string_view host) {
  std::vector<std::string> parts = absl::StrSplit(host, '.');
  if (parts.size() >= 3 && parts[2] == "svc") return {parts[0], parts[1]};
  return {std::string(host), "unknown"};
}

std::string OrUnknown(absl::string_view s) { return s.empty() ? "unknown" : std::string(s); }

}  // namespace

const std::vector<double>& IstioMetrics::DefaultBuckets() {
  static const std::vector<double> kBuckets = {0.5,   1,      5,      10,      25,     50,    100,
                                               250,   500,    1000,   2500,    5000,   10000, 30000,
                                               60000, 300000, 600000, 1800000, 3600000};
  return kBuckets;
}

IstioMetrics::IstioMetrics(prometheus::Registry& registry, std::string workload,
                           std::string namespace_name)
    : workload_(std::move(workload)),
      namespace_(std::move(namespace_name)),
      requests_(prometheus::BuildCounter()
                    .Name("istio_requests_total")
                    .Help("Requests, as Istio's standard metric")
                    .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("istio_request_duration_milliseconds")
                    .Help("Request duration in milliseconds, as Istio's standard metric")
                    .Register(registry)),
      request_bytes_(prometheus::BuildHistogram()
                         .Name("istio_request_bytes")
                         .Help("Request size in bytes, as Istio's standard metric")
                         .Register(registry)),
      response_bytes_(prometheus::BuildHistogram()
                          .Name("istio_response_bytes")
                          .Help("Response size in bytes, as Istio's standard metric")
                          .Register(registry)) {}

IstioMetrics::Series IstioMetrics::SeriesFor(const RequestOutcome& o) {
  MutexLock lock(&mu_);
  auto it = series_.find(SeriesKeyView(o));
  if (it != series_.end()) return it->second;
  const auto [service, service_namespace] = NameAndNamespace(o.destination_host);
  const std::string version = OrUnknown(o.subset);
  const std::string workload = o.subset.empty() ? service : absl::StrCat(service, "-", o.subset);
  // Istio's labels and values for reporter="source"; see the metrics reference section 5.
  const std::map<std::string, std::string> labels = {
      {"reporter", "source"},
      {"source_workload", workload_},
      {"source_canonical_service", workload_},
      {"source_canonical_revision", "latest"},
      {"source_workload_namespace", namespace_},
      {"source_principal", "unknown"},
      {"source_app", workload_},
      {"source_version", "unknown"},
      {"source_cluster", "unknown"},
      {"destination_workload", workload},
      {"destination_workload_namespace", service_namespace},
      {"destination_principal", "unknown"},
      {"destination_app", service},
      {"destination_version", version},
      {"destination_service", OrUnknown(o.destination_host)},
      {"destination_canonical_service", service},
      {"destination_canonical_revision", o.subset.empty() ? "latest" : std::string(o.subset)},
      {"destination_service_name", service},
      {"destination_service_namespace", service_namespace},
      {"destination_cluster", "unknown"},
      {"request_protocol", "http"},
      {"response_code", std::to_string(o.response_code)},
      {"grpc_response_status", ""},
      {"response_flags", o.response_flags.empty() ? "-" : std::string(o.response_flags)},
      {"connection_security_policy", "unknown"},
  };
  Series s;
  s.requests = &requests_.Add(labels);
  s.duration = &duration_.Add(labels, DefaultBuckets());
  s.request_bytes = &request_bytes_.Add(labels, DefaultBuckets());
  s.response_bytes = &response_bytes_.Add(labels, DefaultBuckets());
  SeriesKey key{std::string(o.destination_host), std::string(o.subset), o.response_code,
                std::string(o.response_flags)};
  return series_.emplace(std::move(key), s).first->second;
}

void IstioMetrics::Record(const RequestOutcome& outcome, absl::Duration duration,
                          uint64_t request_bytes, uint64_t response_bytes) {
  const Series s = SeriesFor(outcome);
  s.requests->Increment();
  s.duration->Observe(absl::ToDoubleMilliseconds(duration));
  s.request_bytes->Observe(static_cast<double>(request_bytes));
  s.response_bytes->Observe(static_cast<double>(response_bytes));
}

}  // namespace sluice::gateway
