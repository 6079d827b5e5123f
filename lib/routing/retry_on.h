#pragma once

#include <cstdint>

namespace sluice::routing {

// Shared by the server, which resolves retryOn into these bits, and the gateway, which
// executes them; sluice.v1.RetryPolicy.retry_on carries them in this order.
// Envoy's retry_on conditions, as bits.
enum RetryOn : uint32_t {
  kRetryOn5xx = 1u << 0,
  kRetryOnGatewayError = 1u << 1,
  kRetryOnReset = 1u << 2,
  kRetryOnResetBeforeRequest = 1u << 3,
  kRetryOnConnectFailure = 1u << 4,
  kRetryOnRetriable4xx = 1u << 5,
  kRetryOnRefusedStream = 1u << 6,
  kRetryOnRetriableStatusCodes = 1u << 7,
  kRetryOnRetriableHeaders = 1u << 8,
  kRetryOnEnvoyRateLimited = 1u << 9,
  kRetryOnHttp3PostConnectFailure = 1u << 10,
  kRetryOnCancelled = 1u << 11,
  kRetryOnDeadlineExceeded = 1u << 12,
  kRetryOnInternal = 1u << 13,
  kRetryOnResourceExhausted = 1u << 14,
  kRetryOnUnavailable = 1u << 15,
};

}  // namespace sluice::routing
