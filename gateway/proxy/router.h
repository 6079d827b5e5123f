#pragma once

#include <cstdint>
#include <string>

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/task.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gateway/proxy/request_flow.h"
#include "gateway/upstream/cluster_limits.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

// How an attempt ended, as an AttemptReport says it.
v1::Outcome ReportedOutcome(AttemptResult::Kind kind);

// The router of one request, Envoy's router filter as a coroutine on the event core: it runs
// the attempts RequestFlow asks for, arms the route timer once the whole request is in,
// waits the back-off between attempts, takes the cluster's request and retry tickets
// (maxRequests and maxRetries circuit breakers), and stops whatever it awaits when the route
// timer fires or the client leaves. An attempt itself (pool admission, connect, write, the
// response head, the per-try timer) is the UpstreamRequest's business, behind `Upstream`;
// the router sees only how each ended. Every interval is on the dispatcher's timer wheel, so
// the router's timer rules are unit tests on a simulated clock.
class Router {
 public:
  // What the router drives. Implemented by the session (the real UpstreamRequest) and by
  // tests.
  class Upstream {
   public:
    virtual ~Upstream() = default;

    struct AttemptEnd {
      AttemptResult result;
      // The attempt ended the request itself (its client broke off, stalled or overflowed
      // its limits while the body streamed): no retry, no reply from the router; the caller
      // already knows what to answer.
      bool request_over = false;
    };
    // Runs attempt `attempt` (1-based) to `endpoint` with its per-try timeout (zero: none).
    // After Stop() it must end promptly; its result is then ignored.
    virtual event::Task<AttemptEnd> Attempt(uint32_t endpoint, uint32_t attempt,
                                            absl::Duration per_try) = 0;
    // The route timer fired, or the client left, while an attempt ran: end it now (close
    // its connection).
    virtual void Stop() = 0;
    // How each attempt ended, for the decision stream (AttemptReport) and the metrics.
    virtual void Report(uint32_t endpoint, uint32_t attempt, v1::Outcome outcome, uint32_t status,
                        absl::Duration latency, const std::string& flags, bool final) = 0;
    // A retry is about to be sent (sluice_gateway_retries_total).
    virtual void CountRetry() {}
    // `limit` overflowed ("requests", "retries", "pending"): sluice_gateway_overflows_total.
    virtual void CountOverflow(const char* limit) { (void)limit; }
  };

  struct Outcome {
    enum class Kind {
      kPassResponse,  // give the client the last attempt's response
      kLocalReply,    // answer `status` with `body`
      kClientGone,    // the client left: nobody to answer (Envoy logs DC)
      kRequestOver,   // an attempt ended the request (Upstream::AttemptEnd::request_over)
    };
    Kind kind = Kind::kLocalReply;
    uint32_t status = 0;
    std::string body;
    bool overloaded = false;  // x-envoy-overloaded: true
    std::string flags = "-";  // Envoy's response flags
    uint32_t attempts = 0;
    uint32_t last_endpoint = 0;
    event::MonotonicTime first_sent{};  // when the first attempt started
  };

  // `limits` must outlive the router. `request_complete`: the whole request is in (a
  // buffered body); otherwise the route timer waits for RequestComplete().
  Router(event::TimerWheel& wheel, event::TimeSource& clock, RequestFlow::Plan plan,
         ClusterLimits& limits, absl::BitGenRef rng, bool request_complete = true);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Routes the request through `upstream`. Await it once.
  event::Task<Outcome> Run(Upstream& upstream);

  // The streamed body's upload has ended: the route timer starts now (Envoy arms it when it
  // has the whole request).
  void RequestComplete();
  // The client closed or reset its connection: whatever the router awaits ends now.
  void ClientGone();
  // After kPassResponse the route timer keeps running while the response is relayed (Envoy's
  // route timeout bounds the whole response); when it fires, or the client leaves, the
  // router calls Upstream::Stop(). Call Finish() once the response is relayed.
  void Finish();
  // The route timer fired (also while the client's body was still uploading, never then).
  bool route_timed_out() const { return route_timed_out_; }

 private:
  void ArmRouteTimer();
  void OnRouteTimer();
  // Stops what the router awaits: the attempt or the back-off.
  void Interrupt();

  event::TimerWheel& wheel_;
  event::TimeSource& clock_;
  RequestFlow::Plan plan_;
  ClusterLimits& limits_;
  absl::BitGenRef rng_;
  bool request_complete_;
  event::Timer route_timer_;
  event::Alarm backoff_;
  Upstream* upstream_ = nullptr;
  bool in_attempt_ = false;
  bool relaying_ = false;  // Run ended with kPassResponse and Finish() has not been called
  bool route_timed_out_ = false;
  bool client_gone_ = false;
  bool done_ = false;
};

}  // namespace sluice::gateway
