#include "lib/routing/policies.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace sluice::routing {
namespace {

constexpr std::pair<const char*, uint32_t> kRetryOnNames[] = {
    {"5xx", kRetryOn5xx},
    {"gateway-error", kRetryOnGatewayError},
    {"reset", kRetryOnReset},
    {"reset-before-request", kRetryOnResetBeforeRequest},
    {"connect-failure", kRetryOnConnectFailure},
    {"retriable-4xx", kRetryOnRetriable4xx},
    {"refused-stream", kRetryOnRefusedStream},
    {"retriable-status-codes", kRetryOnRetriableStatusCodes},
    {"retriable-headers", kRetryOnRetriableHeaders},
    {"envoy-ratelimited", kRetryOnEnvoyRateLimited},
    {"http3-post-connect-failure", kRetryOnHttp3PostConnectFailure},
    {"cancelled", kRetryOnCancelled},
    {"deadline-exceeded", kRetryOnDeadlineExceeded},
    {"internal", kRetryOnInternal},
    {"resource-exhausted", kRetryOnResourceExhausted},
    {"unavailable", kRetryOnUnavailable},
};

// Istio's parseRetryOn: named conditions become bits, bare status codes become retriable
// status codes and switch on retriable-status-codes.
void ParseRetryOn(absl::string_view text, RetryPolicy& policy) {
  for (absl::string_view token : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    token = absl::StripAsciiWhitespace(token);
    uint32_t code = 0;
    if (absl::SimpleAtoi(token, &code)) {
      if (std::find(policy.retriable_status_codes.begin(), policy.retriable_status_codes.end(),
                    code) == policy.retriable_status_codes.end()) {
        policy.retriable_status_codes.push_back(code);
      }
      policy.retry_on |= kRetryOnRetriableStatusCodes;
      continue;
    }
    for (const auto& [name, bit] : kRetryOnNames) {
      if (token == name) policy.retry_on |= bit;
    }
  }
}

uint32_t LimitOrDefault(const std::optional<int32_t>& v) {
  return v && *v > 0 ? static_cast<uint32_t>(*v) : kUnlimited;
}

void ApplyConnectionPool(const config::ConnectionPoolSettings& in, ConnectionPoolLimits& out) {
  if (in.tcp) {
    out.max_connections = LimitOrDefault(in.tcp->max_connections);
    if (in.tcp->connect_timeout) out.connect_timeout = *in.tcp->connect_timeout;
    if (in.tcp->idle_timeout) out.idle_timeout = *in.tcp->idle_timeout;
    if (in.tcp->max_connection_duration) {
      out.max_connection_duration = *in.tcp->max_connection_duration;
    }
  }
  if (in.http) {
    out.max_pending_requests = LimitOrDefault(in.http->http1_max_pending_requests);
    out.max_requests = LimitOrDefault(in.http->http2_max_requests);
    out.max_retries = LimitOrDefault(in.http->max_retries);
    if (in.http->max_requests_per_connection && *in.http->max_requests_per_connection > 0) {
      out.max_requests_per_connection =
          static_cast<uint32_t>(*in.http->max_requests_per_connection);
    }
    // http.idleTimeout wins over tcp.idleTimeout.
    if (in.http->idle_timeout) out.idle_timeout = *in.http->idle_timeout;
  }
}

void ApplyOutlierDetection(const config::OutlierDetection& in, OutlierPolicy& out) {
  out.enabled = true;
  if (in.consecutive_5xx_errors) {
    out.consecutive_5xx = *in.consecutive_5xx_errors;
    out.enforce_consecutive_5xx = *in.consecutive_5xx_errors > 0;
  }
  if (in.consecutive_gateway_errors) {
    out.consecutive_gateway_errors = *in.consecutive_gateway_errors;
    out.enforce_consecutive_gateway_errors = *in.consecutive_gateway_errors > 0;
  }
  out.split_external_local_origin_errors = in.split_external_local_origin_errors;
  if (in.consecutive_local_origin_failures && *in.consecutive_local_origin_failures > 0) {
    out.consecutive_local_origin_failures = *in.consecutive_local_origin_failures;
  }
  if (in.interval) out.interval = *in.interval;
  if (in.base_ejection_time) out.base_ejection_time = *in.base_ejection_time;
  out.max_ejection_time = std::max(absl::Seconds(300), out.base_ejection_time);
  if (in.max_ejection_percent && *in.max_ejection_percent > 0) {
    out.max_ejection_percent = static_cast<uint32_t>(*in.max_ejection_percent);
  }
  out.healthy_panic_threshold = static_cast<uint32_t>(in.min_health_percent.value_or(0));
}

}  // namespace

std::string RetryOnToString(uint32_t bits) {
  std::vector<const char*> names;
  for (const auto& [name, bit] : kRetryOnNames) {
    if (bits & bit) names.push_back(name);
  }
  return absl::StrJoin(names, ",");
}

RetryPolicy ResolveRetryPolicy(const std::optional<config::HTTPRetry>& retries,
                               absl::Duration route_timeout) {
  RetryPolicy policy;
  if (!retries) {
    policy.num_retries = kDefaultNumRetries;
    ParseRetryOn(kDefaultRetryOn, policy);
    return policy;
  }
  if (retries->attempts <= 0) return policy;  // no retry policy at all
  policy.num_retries = static_cast<uint32_t>(retries->attempts);
  // Istio replaces the default conditions only with a non-empty retryOn.
  const bool has_retry_on = retries->retry_on.has_value() && !retries->retry_on->empty();
  ParseRetryOn(has_retry_on ? *retries->retry_on : kDefaultRetryOn, policy);
  if (retries->per_try_timeout &&
      (route_timeout == absl::ZeroDuration() || *retries->per_try_timeout < route_timeout)) {
    policy.per_try_timeout = *retries->per_try_timeout;
  }
  if (retries->backoff) {
    policy.backoff_base = *retries->backoff;
    policy.backoff_max = 10 * *retries->backoff;
  }
  policy.retry_other_hosts = retries->retry_ignore_previous_hosts.value_or(true);
  return policy;
}

TrafficPolicy ResolveTrafficPolicy(const config::DestinationRule* rule,
                                   const config::Subset* subset) {
  TrafficPolicy out;
  const config::TrafficPolicy* top =
      rule != nullptr && rule->traffic_policy ? &*rule->traffic_policy : nullptr;
  const config::TrafficPolicy* own =
      subset != nullptr && subset->traffic_policy ? &*subset->traffic_policy : nullptr;
  auto pick = [&](auto member) -> decltype(&(top->*member).value()) {
    if (own != nullptr && (own->*member).has_value()) return &(own->*member).value();
    if (top != nullptr && (top->*member).has_value()) return &(top->*member).value();
    return nullptr;
  };
  if (const auto* lb = pick(&config::TrafficPolicy::load_balancer)) {
    switch (lb->simple) {
      case config::LoadBalancerKind::kRoundRobin:
        out.load_balancer = LoadBalancer::kRoundRobin;
        break;
      case config::LoadBalancerKind::kRandom:
        out.load_balancer = LoadBalancer::kRandom;
        break;
      default:
        out.load_balancer = LoadBalancer::kLeastRequest;
        break;
    }
  }
  if (const auto* pool = pick(&config::TrafficPolicy::connection_pool)) {
    ApplyConnectionPool(*pool, out.connection_pool);
  }
  if (const auto* od = pick(&config::TrafficPolicy::outlier_detection)) {
    ApplyOutlierDetection(*od, out.outlier);
  }
  return out;
}

const char* LoadBalancerName(LoadBalancer lb) {
  switch (lb) {
    case LoadBalancer::kLeastRequest:
      return "LEAST_REQUEST";
    case LoadBalancer::kRoundRobin:
      return "ROUND_ROBIN";
    case LoadBalancer::kRandom:
      return "RANDOM";
  }
  return "";
}

}  // namespace sluice::routing
