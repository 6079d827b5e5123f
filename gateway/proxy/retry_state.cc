#include "gateway/proxy/retry_state.h"

#include <algorithm>

#include "absl/random/distributions.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {
namespace {

bool Has(uint32_t bits, v1::RetryOnBit flag) { return (bits & flag) != 0; }

}  // namespace

bool RetryState::RetriableResponse(const AttemptResult& r) const {
  const uint32_t on = policy_.retry_on;
  // A rate-limited response is retried only for envoy-ratelimited; every other condition
  // is skipped for it.
  if (r.rate_limited) return Has(on, v1::RETRY_ON_ENVOY_RATELIMITED);
  if (Has(on, v1::RETRY_ON_5XX) && r.status >= 500 && r.status <= 599) return true;
  if (Has(on, v1::RETRY_ON_GATEWAY_ERROR) &&
      (r.status == 502 || r.status == 503 || r.status == 504)) {
    return true;
  }
  if (Has(on, v1::RETRY_ON_RETRIABLE_4XX) && r.status == 409) return true;
  if (Has(on, v1::RETRY_ON_RETRIABLE_STATUS_CODES) &&
      std::find(policy_.retriable_status_codes.begin(), policy_.retriable_status_codes.end(),
                r.status) != policy_.retriable_status_codes.end()) {
    return true;
  }
  // gRPC conditions look at grpc-status in the response headers only.
  switch (r.grpc_status) {
    case 1:
      return Has(on, v1::RETRY_ON_CANCELLED);
    case 4:
      return Has(on, v1::RETRY_ON_DEADLINE_EXCEEDED);
    case 8:
      return Has(on, v1::RETRY_ON_RESOURCE_EXHAUSTED);
    case 13:
      return Has(on, v1::RETRY_ON_INTERNAL);
    case 14:
      return Has(on, v1::RETRY_ON_UNAVAILABLE);
    default:
      return false;
  }
}

bool RetryState::RetriableReset(const AttemptResult& r) const {
  const uint32_t on = policy_.retry_on;
  // 5xx, gateway-error and reset cover every upstream reset, per-try timeouts and connect
  // failures included.
  if (Has(on, v1::RETRY_ON_5XX) || Has(on, v1::RETRY_ON_GATEWAY_ERROR) ||
      Has(on, v1::RETRY_ON_RESET)) {
    return true;
  }
  if (r.kind == AttemptResult::Kind::kConnectFailure && Has(on, v1::RETRY_ON_CONNECT_FAILURE)) {
    return true;
  }
  return Has(on, v1::RETRY_ON_RESET_BEFORE_REQUEST) && !r.request_sent;
}

bool RetryState::Retriable(const AttemptResult& r) const {
  switch (r.kind) {
    case AttemptResult::Kind::kResponse:
      return RetriableResponse(r);
    case AttemptResult::Kind::kConnectFailure:
    case AttemptResult::Kind::kReset:
    case AttemptResult::Kind::kPerTryTimeout:
      return RetriableReset(r);
    case AttemptResult::Kind::kOverflow:
      return false;  // Envoy never retries an overflow
  }
  return false;
}

RetryState::Verdict RetryState::OnAttempt(const AttemptResult& result, absl::Duration* backoff) {
  if (!Retriable(result)) return Verdict::kDone;
  if (retries_used_ >= policy_.num_retries) return Verdict::kExhausted;
  ++retries_used_;
  *backoff = NextBackoff();
  return Verdict::kRetry;
}

absl::Duration RetryState::NextBackoff() {
  const int64_t base_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(policy_.backoff_base));
  const int64_t max_ms = std::max(base_ms, absl::ToInt64Milliseconds(policy_.backoff_max));
  // retries_used_ is already the 1-based number of this retry.
  int64_t interval = base_ms;
  for (uint32_t k = 1; k < retries_used_ && interval < max_ms; ++k) interval *= 2;
  interval = std::min(interval, max_ms);
  return absl::Milliseconds(absl::Uniform<int64_t>(rng_, 0, interval));
}

}  // namespace sluice::gateway
