#pragma once

#include <cstdint>

#include "sluice/v1/decision.pb.h"

namespace sluice::routing {

// Envoy's retry_on conditions as bits. The wire contract is sluice.v1.RetryOnBit: the server
// resolves retryOn into these bits and every gateway executes them, so the values are the
// proto's and nothing else.
enum RetryOn : uint32_t {
  kRetryOn5xx = v1::RETRY_ON_5XX,
  kRetryOnGatewayError = v1::RETRY_ON_GATEWAY_ERROR,
  kRetryOnReset = v1::RETRY_ON_RESET,
  kRetryOnResetBeforeRequest = v1::RETRY_ON_RESET_BEFORE_REQUEST,
  kRetryOnConnectFailure = v1::RETRY_ON_CONNECT_FAILURE,
  kRetryOnRetriable4xx = v1::RETRY_ON_RETRIABLE_4XX,
  kRetryOnRefusedStream = v1::RETRY_ON_REFUSED_STREAM,
  kRetryOnRetriableStatusCodes = v1::RETRY_ON_RETRIABLE_STATUS_CODES,
  kRetryOnRetriableHeaders = v1::RETRY_ON_RETRIABLE_HEADERS,
  kRetryOnEnvoyRateLimited = v1::RETRY_ON_ENVOY_RATELIMITED,
  kRetryOnHttp3PostConnectFailure = v1::RETRY_ON_HTTP3_POST_CONNECT_FAILURE,
  kRetryOnCancelled = v1::RETRY_ON_CANCELLED,
  kRetryOnDeadlineExceeded = v1::RETRY_ON_DEADLINE_EXCEEDED,
  kRetryOnInternal = v1::RETRY_ON_INTERNAL,
  kRetryOnResourceExhausted = v1::RETRY_ON_RESOURCE_EXHAUSTED,
  kRetryOnUnavailable = v1::RETRY_ON_UNAVAILABLE,
};

}  // namespace sluice::routing
