#pragma once

// Istio's translation of VirtualService retries and DestinationRule traffic policies into
// the values Envoy (and so the gateway) enforces, every default resolved.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "lib/config/resources.h"
#include "lib/routing/retry_on.h"

namespace sluice::routing {

// "5xx,connect-failure" for a bit set.
std::string RetryOnToString(uint32_t bits);

// Istio's built-in default when a route has no `retries` block.
inline constexpr char kDefaultRetryOn[] =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
inline constexpr uint32_t kDefaultNumRetries = 2;

struct RetryPolicy {
  uint32_t num_retries = 0;  // retries, not attempts: at most 1 + num_retries requests
  uint32_t retry_on = 0;     // RetryOn bits
  std::vector<uint32_t> retriable_status_codes;
  absl::Duration per_try_timeout = absl::ZeroDuration();  // zero: none
  absl::Duration backoff_base = absl::Milliseconds(25);
  absl::Duration backoff_max = absl::Milliseconds(250);
  bool retry_other_hosts = true;  // Istio's previous_hosts predicate
  uint32_t host_selection_max_attempts = 5;
};

// `route_timeout` zero means no route timeout. A per-try timeout not shorter than the route
// timeout is dropped, as Envoy does.
RetryPolicy ResolveRetryPolicy(const std::optional<config::HTTPRetry>& retries,
                               absl::Duration route_timeout);

inline constexpr uint32_t kUnlimited = std::numeric_limits<uint32_t>::max();

// DestinationRule connectionPool with Istio's defaults (it writes 2^32-1 for unset limits).
struct ConnectionPoolLimits {
  uint32_t max_connections = kUnlimited;
  absl::Duration connect_timeout = absl::Seconds(10);  // MeshConfig.connectTimeout
  uint32_t max_pending_requests = kUnlimited;
  uint32_t max_requests = kUnlimited;
  uint32_t max_retries = kUnlimited;
  uint32_t max_requests_per_connection = 0;  // 0: unlimited
  absl::Duration idle_timeout = absl::Hours(1);
  absl::Duration max_connection_duration = absl::ZeroDuration();  // zero: none
};

// outlierDetection as Istio translates it for Envoy.
struct OutlierPolicy {
  bool enabled = false;
  uint32_t consecutive_5xx = 5;
  bool enforce_consecutive_5xx = true;
  uint32_t consecutive_gateway_errors = 5;
  bool enforce_consecutive_gateway_errors = false;  // counted but not enforced unless set
  bool split_external_local_origin_errors = false;
  uint32_t consecutive_local_origin_failures = 5;
  bool enforce_consecutive_local_origin_failures = true;
  absl::Duration interval = absl::Seconds(10);
  absl::Duration base_ejection_time = absl::Seconds(30);
  absl::Duration max_ejection_time = absl::Seconds(300);
  uint32_t max_ejection_percent = 10;
  // Envoy's healthy_panic_threshold: Istio writes minHealthPercent (default 0, panic off)
  // whenever an outlierDetection block exists; otherwise Envoy's 50% stands.
  uint32_t healthy_panic_threshold = 50;

  bool operator==(const OutlierPolicy&) const = default;
};

enum class LoadBalancer { kLeastRequest, kRoundRobin, kRandom };

struct TrafficPolicy {
  LoadBalancer load_balancer = LoadBalancer::kLeastRequest;  // Istio's default since 1.14
  ConnectionPoolLimits connection_pool;
  OutlierPolicy outlier;
};

// The policy of the cluster for `subset` (nullptr: the whole host): each block the subset
// sets replaces the DestinationRule's top-level block whole; blocks it omits are inherited.
TrafficPolicy ResolveTrafficPolicy(const config::DestinationRule* rule,
                                   const config::Subset* subset);

const char* LoadBalancerName(LoadBalancer lb);

}  // namespace sluice::routing
