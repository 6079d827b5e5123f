#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"

namespace sluice::gateway {

// The retry policy a decision carries (sluice.v1.RetryPolicy), as the gateway uses it.
struct RetryPolicy {
  uint32_t num_retries = 0;
  uint32_t retry_on = 0;  // sluice.v1.RetryOnBit values, or-ed
  std::vector<uint32_t> retriable_status_codes;
  absl::Duration per_try_timeout = absl::ZeroDuration();
  absl::Duration backoff_base = absl::Milliseconds(25);
  absl::Duration backoff_max = absl::Milliseconds(250);
};

// How one upstream attempt ended.
struct AttemptResult {
  enum class Kind {
    kResponse,        // headers arrived: see status
    kConnectFailure,  // TCP connect refused or timed out (flag UF)
    kReset,           // connection closed or reset before a complete response (UC/UR)
    kPerTryTimeout,   // the per-try timer fired before response headers (UT)
    kOverflow,        // refused by a connection-pool limit (UO): never retried
  };
  Kind kind = Kind::kResponse;
  uint32_t status = 0;
  bool rate_limited = false;  // the response carried x-envoy-ratelimited
  int grpc_status = -1;       // grpc-status in the response headers; -1: none
  bool request_sent = true;   // any request byte reached the upstream
  bool dns_failure = false;   // kConnectFailure because the host name did not resolve (DF)
};

// Envoy's retry decision for one request (envoy retry_state_impl.cc): which failed attempts
// a policy retries, how many retries remain, and how long to back off before each. Pure:
// the back-off's jitter comes from the injected generator.
class RetryState {
 public:
  enum class Verdict {
    kDone,       // not retriable under the policy: the attempt's outcome stands
    kRetry,      // retry after `backoff`
    kExhausted,  // retriable, but no retry left: the outcome stands with flag URX
  };

  RetryState(const RetryPolicy& policy, absl::BitGenRef rng) : policy_(policy), rng_(rng) {}

  // Whether the policy's conditions cover this outcome, regardless of retries left.
  bool Retriable(const AttemptResult& result) const;

  // Called once per failed or finished attempt. On kRetry, `*backoff` is the jittered wait
  // before the next attempt and one retry is used.
  Verdict OnAttempt(const AttemptResult& result, absl::Duration* backoff);

  uint32_t retries_used() const { return retries_used_; }
  uint32_t retries_left() const { return policy_.num_retries - retries_used_; }

  // Envoy's JitteredExponentialBackOffStrategy: retry k waits uniform [0, min(base * 2^(k-1),
  // max)) milliseconds.
  absl::Duration NextBackoff();

 private:
  bool RetriableResponse(const AttemptResult& result) const;
  bool RetriableReset(const AttemptResult& result) const;

  RetryPolicy policy_;
  absl::BitGenRef rng_;
  uint32_t retries_used_ = 0;
};

}  // namespace sluice::gateway
