#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "gateway/event/time_source.h"
#include "gateway/proxy/retry_state.h"

namespace sluice::gateway {

// The router's part of one request, as Envoy runs it (router.cc): attempts, per-try and route
// timeouts, retries with back-off, and the reply the client finally gets with its response
// flags. Pure: the adapter performs attempts and timers and tells the flow what happened,
// with the time it happened; the flow says what to do next.
class RequestFlow {
 public:
  struct Plan {
    RetryPolicy retry;
    absl::Duration route_timeout = absl::ZeroDuration();  // zero: none (Istio's default)
    uint32_t primary = 0;                                 // endpoint indexes in the cluster
    std::vector<uint32_t> alternates;
  };

  struct Step {
    enum class Kind {
      kAttempt,       // send to `endpoint`; fail it with kPerTryTimeout after `per_try`
      kBackoff,       // wait `wait`, then call OnBackoffDone
      kPassResponse,  // give the client the upstream response of the last attempt
      kLocalReply,    // answer the client with status/body
    };
    Kind kind = Kind::kAttempt;
    uint32_t endpoint = 0;
    uint32_t attempt = 0;                           // 1-based, for x-envoy-attempt-count
    absl::Duration per_try = absl::ZeroDuration();  // zero: no per-try timer
    absl::Duration wait = absl::ZeroDuration();
    uint32_t status = 0;
    std::string body;
    bool overloaded = false;  // add x-envoy-overloaded: true
  };

  RequestFlow(Plan plan, absl::BitGenRef rng);

  // The router sees the request at `now` (after any injected delay): the route timer starts.
  Step Start(event::MonotonicTime now);
  // How the attempt ended. `retry_slot_available`: the cluster's maxRetries circuit breaker
  // has room for one more concurrent retry.
  Step OnAttempt(const AttemptResult& result, event::MonotonicTime now,
                 bool retry_slot_available = true);
  Step OnBackoffDone(event::MonotonicTime now);
  // The route timer fired: 504 upstream request timeout, flag UT.
  Step OnRouteTimeout();

  // When the route timer fires, on the monotonic clock; MonotonicTime::max() without a
  // route timeout.
  event::MonotonicTime deadline() const { return deadline_; }
  // Envoy's response flags so far, comma-joined ("UF,URX"), or "-" when none.
  std::string flags() const;
  uint32_t attempts() const { return attempts_; }

 private:
  Step Attempt();
  Step Finish(const AttemptResult& result, bool exhausted);
  void AddFlag(const char* flag);

  Plan plan_;
  RetryState retry_;
  event::MonotonicTime deadline_ = event::MonotonicTime::max();
  uint32_t attempts_ = 0;
  std::vector<const char*> flags_;
};

inline constexpr char kUpstreamTimeoutBody[] = "upstream request timeout";
inline constexpr char kNoHealthyUpstreamBody[] = "no healthy upstream";
inline constexpr char kFaultAbortBody[] = "fault filter abort";

}  // namespace sluice::gateway
