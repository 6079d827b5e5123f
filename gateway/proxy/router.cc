#include "gateway/proxy/router.h"

#include <utility>

#include "absl/strings/match.h"

namespace sluice::gateway {
v1::Outcome ReportedOutcome(AttemptResult::Kind kind) {
  switch (kind) {
    case AttemptResult::Kind::kResponse:
      return v1::RESPONSE;
    case AttemptResult::Kind::kConnectFailure:
      return v1::CONNECT_FAILURE;
    case AttemptResult::Kind::kReset:
      return v1::RESET;
    case AttemptResult::Kind::kPerTryTimeout:
      return v1::TIMEOUT;
    case AttemptResult::Kind::kOverflow:
      return v1::OVERFLOW;
  }
  return v1::OUTCOME_UNSPECIFIED;
}

Router::Router(event::TimerWheel& wheel, event::TimeSource& clock, RequestFlow::Plan plan,
               ClusterLimits& limits, absl::BitGenRef rng, bool request_complete)
    : wheel_(wheel),
      clock_(clock),
      plan_(std::move(plan)),
      limits_(limits),
      rng_(rng),
      request_complete_(request_complete),
      route_timer_(wheel),
      backoff_(wheel) {}

void Router::RequestComplete() {
  if (request_complete_) return;
  request_complete_ = true;
  ArmRouteTimer();
}

void Router::ClientGone() {
  if ((done_ && !relaying_) || client_gone_) return;
  client_gone_ = true;
  Interrupt();
}

void Router::Finish() {
  done_ = true;
  relaying_ = false;
  route_timer_.Cancel();
}

void Router::ArmRouteTimer() {
  if (upstream_ == nullptr || done_ || plan_.route_timeout <= absl::ZeroDuration()) return;
  route_timer_.ArmAfter(plan_.route_timeout,
                        event::TimerCallback::Bind<&Router::OnRouteTimer>(this));
}

void Router::OnRouteTimer() {
  if (done_ && !relaying_) return;
  route_timed_out_ = true;
  Interrupt();
}

void Router::Interrupt() {
  if ((in_attempt_ || relaying_) && upstream_ != nullptr) upstream_->Stop();
  backoff_.Cancel();
}

event::Task<Router::Outcome> Router::Run(Upstream& upstream) {
  upstream_ = &upstream;
  Outcome outcome;
  ClusterLimits::Ticket request_ticket = limits_.TryRequest();
  if (!request_ticket) {
    upstream.CountOverflow("requests");
    upstream.Report(plan_.primary, 0, v1::OVERFLOW, 0, absl::ZeroDuration(), "UO", true);
    outcome.status = 503;
    outcome.body =
        "upstream connect error or disconnect/reset before headers. reset reason: overflow";
    outcome.overloaded = true;
    outcome.flags = "UO";
    done_ = true;
    co_return outcome;
  }

  RequestFlow flow(plan_, rng_);
  outcome.first_sent = clock_.Now();
  RequestFlow::Step step = flow.Start(outcome.first_sent);
  if (request_complete_) ArmRouteTimer();
  ClusterLimits::Ticket retry_ticket;
  for (;;) {
    if (client_gone_) break;
    if (step.kind == RequestFlow::Step::Kind::kAttempt) {
      if (route_timed_out_) {
        step = flow.OnRouteTimeout();
        continue;
      }
      outcome.last_endpoint = step.endpoint;
      const event::MonotonicTime started = clock_.Now();
      in_attempt_ = true;
      const Upstream::AttemptEnd end =
          co_await upstream.Attempt(step.endpoint, step.attempt, step.per_try);
      in_attempt_ = false;
      const absl::Duration latency = absl::FromChrono(clock_.Now() - started);
      if (end.request_over) {
        outcome.kind = Outcome::Kind::kRequestOver;
        break;
      }
      if (client_gone_) {
        // Envoy resets the upstream request: not the endpoint's failure.
        upstream.Report(step.endpoint, flow.attempts(), v1::NOT_SENT, 0, latency, "DC", true);
        break;
      }
      if (route_timed_out_) {
        step = flow.OnRouteTimeout();
        upstream.Report(outcome.last_endpoint, flow.attempts(), v1::TIMEOUT, 0, latency, "UT",
                        true);
        continue;
      }
      retry_ticket.Release();
      const bool slot = limits_.RetrySlotFree();
      step = flow.OnAttempt(end.result, clock_.Now(), slot);
      const bool retrying = step.kind == RequestFlow::Step::Kind::kBackoff;
      if (!slot && !retrying && absl::StrContains(flow.flags(), "UO") &&
          end.result.kind != AttemptResult::Kind::kOverflow) {
        limits_.CountRetryOverflow();
        upstream.CountOverflow("retries");
      }
      if (end.result.kind == AttemptResult::Kind::kOverflow) upstream.CountOverflow("pending");
      upstream.Report(outcome.last_endpoint, flow.attempts(), ReportedOutcome(end.result.kind),
                      end.result.status, latency, retrying ? "-" : flow.flags(), !retrying);
      if (retrying) {
        retry_ticket = limits_.TryRetry();
        upstream.CountRetry();
      }
      continue;
    }
    if (step.kind == RequestFlow::Step::Kind::kBackoff) {
      (void)co_await backoff_.WaitFor(absl::ToChronoNanoseconds(step.wait));
      if (client_gone_) break;  // the attempt before was reported
      step = route_timed_out_ ? flow.OnRouteTimeout() : flow.OnBackoffDone(clock_.Now());
      continue;
    }
    break;
  }
  done_ = true;
  outcome.attempts = flow.attempts();
  if (outcome.kind == Outcome::Kind::kRequestOver) {
    route_timer_.Cancel();
    co_return outcome;
  }
  if (client_gone_) {
    route_timer_.Cancel();
    outcome.kind = Outcome::Kind::kClientGone;
    outcome.flags = "DC";
    co_return outcome;
  }
  outcome.flags = flow.flags();
  if (step.kind == RequestFlow::Step::Kind::kPassResponse) {
    outcome.kind = Outcome::Kind::kPassResponse;
    relaying_ = true;  // the route timer runs on until Finish()
  } else {
    route_timer_.Cancel();
    outcome.kind = Outcome::Kind::kLocalReply;
    outcome.status = step.status;
    outcome.body = step.body;
    outcome.overloaded = step.overloaded;
  }
  co_return outcome;
}

}  // namespace sluice::gateway
