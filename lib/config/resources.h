#pragma once

// Plain structs for the Istio resources sluice reads (networking.istio.io v1alpha3, v1beta1
// and v1 share one schema) and for sluice's own Canary. Optional fields stay std::optional so
// "unset" differs from zero, exactly where Istio's wrapper types make that difference.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "lib/config/diagnostics.h"

namespace sluice::config {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct ObjectMeta {
  std::string name;
  std::string namespace_name = "default";
  Labels labels;
  SourceLocation location;       // the document's first line
  SourceLocation name_location;  // metadata.name
  std::string path_prefix;       // "items[3]." inside a Kubernetes List, else ""
  std::string yaml;              // the resource as read, re-emitted (for Get and persistence)
};

// ---------------------------------------------------------------------------------------------
// VirtualService

struct StringMatch {
  enum class Kind { kExact, kPrefix, kRegex, kPresent };
  Kind kind = Kind::kPresent;
  std::string value;
};

struct NamedStringMatch {
  std::string name;
  StringMatch match;
};

struct HTTPMatchRequest {
  std::string name;
  std::optional<StringMatch> uri;
  std::optional<StringMatch> scheme;
  std::optional<StringMatch> method;
  std::optional<StringMatch> authority;
  std::vector<NamedStringMatch> headers;
  std::vector<NamedStringMatch> without_headers;
  std::vector<NamedStringMatch> query_params;
  bool ignore_uri_case = false;
  std::optional<uint32_t> port;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
  std::string path;  // field path, for diagnostics
  SourceLocation location;
};

struct Destination {
  std::string host;
  std::string subset;
  std::optional<uint32_t> port;
  SourceLocation subset_location;
};

struct HeaderOperations {
  Labels set;
  Labels add;
  std::vector<std::string> remove;
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

struct Headers {
  HeaderOperations request;
  HeaderOperations response;
};

struct HTTPRouteDestination {
  Destination destination;
  int32_t weight = 0;
  bool weight_set = false;
  Headers headers;
  std::string path;
  SourceLocation location;
};

struct HTTPRedirect {
  enum class DerivePort { kUnset, kFromProtocolDefault, kFromRequestPort };
  std::string uri;
  std::string authority;
  std::string scheme;
  std::optional<uint32_t> port;
  DerivePort derive_port = DerivePort::kUnset;
  uint32_t redirect_code = 301;
};

struct HTTPDirectResponse {
  uint32_t status = 0;
  std::optional<std::string> body;
};

struct RegexRewrite {
  std::string match;
  std::string rewrite;
};

struct HTTPRewrite {
  std::string uri;
  std::string authority;
  std::optional<RegexRewrite> uri_regex_rewrite;
};

struct HTTPRetry {
  int32_t attempts = 0;
  std::optional<absl::Duration> per_try_timeout;
  std::optional<std::string> retry_on;
  bool retry_remote_localities = false;
  std::optional<bool> retry_ignore_previous_hosts;
  std::optional<absl::Duration> backoff;
  SourceLocation location;
};

// Fault percentages are kept as Envoy's FractionalPercent: numerator over a denominator.
struct FractionalPercent {
  uint32_t numerator = 0;
  uint32_t denominator = 1'000'000;
};

struct FaultDelay {
  std::optional<absl::Duration> fixed_delay;
  std::optional<FractionalPercent> percentage;  // unset: never fires
};

struct FaultAbort {
  std::optional<uint32_t> http_status;
  std::string grpc_status;
  std::optional<FractionalPercent> percentage;  // unset: never fires
};

struct HTTPFaultInjection {
  std::optional<FaultDelay> delay;
  std::optional<FaultAbort> abort;
};

struct HTTPMirrorPolicy {
  Destination destination;
  std::optional<FractionalPercent> percentage;  // unset: 100%
};

struct HTTPRoute {
  std::string name;
  std::vector<HTTPMatchRequest> match;
  std::vector<HTTPRouteDestination> route;
  std::optional<HTTPRedirect> redirect;
  std::optional<HTTPDirectResponse> direct_response;
  std::optional<HTTPRewrite> rewrite;
  std::optional<absl::Duration> timeout;
  std::optional<HTTPRetry> retries;
  std::optional<HTTPFaultInjection> fault;
  std::vector<HTTPMirrorPolicy> mirrors;  // `mirror` and `mirrors` both land here
  Headers headers;
  std::string path;
  SourceLocation location;
};

struct VirtualService {
  ObjectMeta meta;
  std::vector<std::string> hosts;
  std::vector<std::string> gateways;
  std::vector<HTTPRoute> http;
  // tcp and tls routes are read and validated for shape but not served: sluice is an HTTP proxy.
  int tcp_route_count = 0;
  int tls_route_count = 0;
};

// ---------------------------------------------------------------------------------------------
// DestinationRule

struct ConnectionPoolSettings {
  struct Tcp {
    std::optional<int32_t> max_connections;
    std::optional<absl::Duration> connect_timeout;
    std::optional<absl::Duration> idle_timeout;
    std::optional<absl::Duration> max_connection_duration;
  };
  struct Http {
    std::optional<int32_t> http1_max_pending_requests;
    std::optional<int32_t> http2_max_requests;
    std::optional<int32_t> max_requests_per_connection;
    std::optional<int32_t> max_retries;
    std::optional<int32_t> max_concurrent_streams;
    std::optional<absl::Duration> idle_timeout;
  };
  std::optional<Tcp> tcp;
  std::optional<Http> http;
};

struct OutlierDetection {
  std::optional<uint32_t> consecutive_5xx_errors;
  std::optional<uint32_t> consecutive_gateway_errors;
  std::optional<uint32_t> consecutive_local_origin_failures;
  bool split_external_local_origin_errors = false;
  std::optional<absl::Duration> interval;
  std::optional<absl::Duration> base_ejection_time;
  std::optional<int32_t> max_ejection_percent;
  std::optional<int32_t> min_health_percent;
  std::string path;
  SourceLocation location;
};

enum class LoadBalancerKind { kUnspecified, kLeastRequest, kRoundRobin, kRandom, kPassthrough };

struct LoadBalancerSettings {
  LoadBalancerKind simple = LoadBalancerKind::kUnspecified;
  bool consistent_hash = false;  // parsed and validated; sluice balances it as LEAST_REQUEST
};

struct TrafficPolicy {
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  bool has_tls = false;
  bool has_port_level_settings = false;
};

struct Subset {
  std::string name;
  Labels labels;
  std::optional<TrafficPolicy> traffic_policy;
  std::string path;
  SourceLocation location;
};

struct DestinationRule {
  ObjectMeta meta;
  std::string host;
  std::optional<TrafficPolicy> traffic_policy;
  std::vector<Subset> subsets;
};

// ---------------------------------------------------------------------------------------------
// ServiceEntry and WorkloadEntry

struct ServicePort {
  uint32_t number = 0;
  std::string protocol;
  std::string name;
  std::optional<uint32_t> target_port;
};

struct WorkloadEntrySpec {
  std::string address;
  std::vector<std::pair<std::string, uint32_t>> ports;  // port name -> port
  Labels labels;
  std::string network;
  std::string locality;
  uint32_t weight = 0;  // 0: unset (Envoy treats it as 1)
  std::string path;
  SourceLocation location;
};

struct ServiceEntry {
  enum class Resolution { kNone, kStatic, kDns, kDnsRoundRobin };
  ObjectMeta meta;
  std::vector<std::string> hosts;
  std::vector<std::string> addresses;
  std::vector<ServicePort> ports;
  std::string location;
  Resolution resolution = Resolution::kNone;
  std::vector<WorkloadEntrySpec> endpoints;
  std::optional<Labels> workload_selector;
};

struct WorkloadEntry {
  ObjectMeta meta;
  WorkloadEntrySpec spec;
};

// ---------------------------------------------------------------------------------------------
// Canary (sluice.dev/v1), with Flagger's field names.

enum class MetricSource { kBuiltin, kPrometheus };
enum class CanaryJudge { kThreshold, kSequential };

struct CanaryMetric {
  std::string name;
  // Where the value comes from: the server's own windows of the gateways' reports (the
  // default for the built-in metrics), or PromQL against --prometheus-url (custom queries).
  MetricSource source = MetricSource::kBuiltin;
  std::optional<double> threshold_min;
  std::optional<double> threshold_max;
  std::optional<absl::Duration> interval;
  std::string query;  // PromQL; empty for the built-in metrics
  std::string path;
  SourceLocation location;
};

struct CanaryAnalysis {
  absl::Duration interval = absl::Minutes(1);
  int32_t threshold = 1;
  std::vector<int32_t> step_weights;  // resolved: explicit list or stepWeight up to maxWeight
  int64_t min_requests = 0;
  std::vector<CanaryMetric> metrics;
  // threshold: Flagger's checks only. sequential: the checks, plus a sequential comparison
  // of canary and stable failures that may roll back between checks (server/canary/JUDGE.md).
  CanaryJudge judge = CanaryJudge::kThreshold;
  double false_rollback_rate = 0.01;
};

struct Canary {
  ObjectMeta meta;
  std::string host;
  std::string stable_subset;
  std::string canary_subset;
  SourceLocation host_location;
  SourceLocation stable_subset_location;
  SourceLocation canary_subset_location;
  CanaryAnalysis analysis;
};

// ---------------------------------------------------------------------------------------------

// Everything one configuration change holds, in the order it was read.
struct ConfigSet {
  std::vector<VirtualService> virtual_services;
  std::vector<DestinationRule> destination_rules;
  std::vector<ServiceEntry> service_entries;
  std::vector<WorkloadEntry> workload_entries;
  std::vector<Canary> canaries;

  // Adds every resource of `other` after this set's own.
  void Append(ConfigSet other);
  size_t size() const {
    return virtual_services.size() + destination_rules.size() + service_entries.size() +
           workload_entries.size() + canaries.size();
  }
};

}  // namespace sluice::config
