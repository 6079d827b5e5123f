// RequestFlow against the timing scenarios of shared/reference/routing-semantics.md section 8,
// on a simulated clock: a small driver plays the upstream and the adapter's timers.

#include "gateway/proxy/request_flow.h"

#include <functional>

#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;
using Kind = AttemptResult::Kind;

// What the upstream does with one attempt.
struct Behaviour {
  enum class What {
    kRespond,
    kHang,
    kConnectFailure,
    kDnsFailure,
    kReset,
    kOverflow
  } what = What::kRespond;
  uint32_t status = 200;
  absl::Duration latency = absl::ZeroDuration();
  bool rate_limited = false;
};
Behaviour Respond(uint32_t status, absl::Duration latency = absl::ZeroDuration()) {
  return {Behaviour::What::kRespond, status, latency};
}
Behaviour Hang() { return {Behaviour::What::kHang}; }
Behaviour Refuse() { return {Behaviour::What::kConnectFailure}; }

struct Outcome {
  uint32_t status = 0;
  std::string body;
  std::string flags;
  uint32_t attempts = 0;
  absl::Duration elapsed;
  std::vector<uint32_t> endpoints;
  bool overloaded = false;
  absl::Duration total_backoff;
};

// Runs a request to completion the way the gateway's adapter will: attempts end at the
// earliest of the upstream's answer, the per-try timer and the route timer.
Outcome Drive(RequestFlow::Plan plan, const std::function<Behaviour(uint32_t attempt)>& upstream,
              absl::BitGenRef rng, bool retry_slots = true) {
  const event::MonotonicTime start = event::SimulatedTimeSource::kDefaultStart;
  event::MonotonicTime now = start;
  auto d = [](absl::Duration duration) { return absl::ToChronoNanoseconds(duration); };
  RequestFlow flow(std::move(plan), rng);
  RequestFlow::Step step = flow.Start(now);
  Outcome out;
  for (int guard = 0; guard < 100; ++guard) {
    if (step.kind == RequestFlow::Step::Kind::kAttempt) {
      out.endpoints.push_back(step.endpoint);
      const Behaviour b = upstream(step.attempt);
      AttemptResult result;
      event::MonotonicTime ends = event::MonotonicTime::max();
      switch (b.what) {
        case Behaviour::What::kRespond:
          result.kind = Kind::kResponse;
          result.status = b.status;
          result.rate_limited = b.rate_limited;
          ends = now + d(b.latency);
          break;
        case Behaviour::What::kHang:
          break;
        case Behaviour::What::kConnectFailure:
          result.kind = Kind::kConnectFailure;
          result.request_sent = false;
          ends = now;
          break;
        case Behaviour::What::kDnsFailure:
          result.kind = Kind::kConnectFailure;
          result.dns_failure = true;
          result.request_sent = false;
          ends = now;
          break;
        case Behaviour::What::kReset:
          result.kind = Kind::kReset;
          ends = now;
          break;
        case Behaviour::What::kOverflow:
          result.kind = Kind::kOverflow;
          ends = now;
          break;
      }
      if (step.per_try > absl::ZeroDuration() && now + d(step.per_try) < ends) {
        ends = now + d(step.per_try);
        result = AttemptResult{};
        result.kind = Kind::kPerTryTimeout;
      }
      if (ends >= flow.deadline()) {
        now = flow.deadline();
        step = flow.OnRouteTimeout();
        continue;
      }
      now = ends;
      step = flow.OnAttempt(result, now, retry_slots);
    } else if (step.kind == RequestFlow::Step::Kind::kBackoff) {
      out.total_backoff += step.wait;
      if (now + d(step.wait) >= flow.deadline()) {
        now = flow.deadline();
        step = flow.OnRouteTimeout();
        continue;
      }
      now += d(step.wait);
      step = flow.OnBackoffDone(now);
    } else {
      out.status = step.status;
      out.body = step.body;
      out.overloaded = step.overloaded;
      break;
    }
  }
  out.flags = flow.flags();
  out.attempts = flow.attempts();
  out.elapsed = absl::FromChrono(now - start);
  return out;
}

RequestFlow::Plan Plan(uint32_t retry_on, uint32_t retries, absl::Duration timeout,
                       absl::Duration per_try, std::vector<uint32_t> codes = {}) {
  RequestFlow::Plan p;
  p.retry.retry_on = retry_on;
  p.retry.num_retries = retries;
  p.retry.retriable_status_codes = std::move(codes);
  p.retry.per_try_timeout = per_try;
  p.route_timeout = timeout;
  p.primary = 0;
  p.alternates = {1, 2};
  return p;
}

constexpr uint32_t kIstioDefault = v1::RETRY_ON_CONNECT_FAILURE | v1::RETRY_ON_REFUSED_STREAM |
                                   v1::RETRY_ON_UNAVAILABLE | v1::RETRY_ON_CANCELLED |
                                   v1::RETRY_ON_RETRIABLE_STATUS_CODES;

class RequestFlowTest : public ::testing::Test {
 protected:
  absl::BitGen gen_{std::seed_seq{11}};
};

// 1. The route timeout spans retries: exactly 3 attempts, 504 UT at 1.0s.
TEST_F(RequestFlowTest, RouteTimeoutSpansRetries) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_5XX, 3, absl::Seconds(1), absl::Milliseconds(400)),
      [](uint32_t) { return Hang(); }, gen_);
  EXPECT_EQ(o.status, 504u);
  EXPECT_EQ(o.body, "upstream request timeout");
  EXPECT_EQ(o.flags, "UT");
  EXPECT_EQ(o.attempts, 3u);
  EXPECT_EQ(o.elapsed, absl::Seconds(1));
}

// 2. Istio's default retryOn does not retry a per-try timeout.
TEST_F(RequestFlowTest, PerTryTimeoutNotRetriedUnderTheDefaultPolicy) {
  const Outcome o = Drive(
      Plan(kIstioDefault, 2, absl::Seconds(1), absl::Milliseconds(400)),
      [](uint32_t) { return Hang(); }, gen_);
  EXPECT_EQ(o.status, 504u);
  EXPECT_EQ(o.flags, "UT");
  EXPECT_EQ(o.attempts, 1u);
  EXPECT_EQ(o.elapsed, absl::Milliseconds(400));
}

// 3. A per-try timeout not below the route timeout is dropped by the server (zero here).
TEST_F(RequestFlowTest, WithoutPerTryTheRouteTimeoutEndsTheOnlyAttempt) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_5XX, 3, absl::Seconds(1), absl::ZeroDuration()),
      [](uint32_t) { return Hang(); }, gen_);
  EXPECT_EQ(o.status, 504u);
  EXPECT_EQ(o.attempts, 1u);
  EXPECT_EQ(o.elapsed, absl::Seconds(1));
}

// 4. No route timeout, per-try only: every attempt times out, then URX.
TEST_F(RequestFlowTest, PerTryOnlyExhaustsRetries) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_GATEWAY_ERROR, 2, absl::ZeroDuration(), absl::Milliseconds(200)),
      [](uint32_t) { return Hang(); }, gen_);
  EXPECT_EQ(o.status, 504u);
  EXPECT_EQ(o.flags, "UT,URX");
  EXPECT_EQ(o.attempts, 3u);
  EXPECT_GE(o.elapsed, absl::Milliseconds(600));
  EXPECT_LT(o.elapsed, absl::Milliseconds(600 + 25 + 50));
}

// 5. The default policy does not retry a 503 (Istio >= 1.24): passed through unchanged.
TEST_F(RequestFlowTest, DefaultPolicyPassesA503Through) {
  const Outcome o = Drive(
      Plan(kIstioDefault, 2, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Respond(503); }, gen_);
  EXPECT_EQ(o.status, 503u);
  EXPECT_EQ(o.flags, "-");
  EXPECT_EQ(o.attempts, 1u);
}

// 6. retriable-4xx is 409 only.
TEST_F(RequestFlowTest, Retriable4xxRetries409Not429) {
  const RequestFlow::Plan p =
      Plan(v1::RETRY_ON_RETRIABLE_4XX, 3, absl::ZeroDuration(), absl::ZeroDuration());
  Outcome o = Drive(
      p, [](uint32_t) { return Respond(429); }, gen_);
  EXPECT_EQ(o.status, 429u);
  EXPECT_EQ(o.attempts, 1u);
  o = Drive(
      p, [](uint32_t) { return Respond(409); }, gen_);
  EXPECT_EQ(o.status, 409u);
  EXPECT_EQ(o.attempts, 4u);
  EXPECT_EQ(o.flags, "URX");
}

// 7. A bare 429 in retryOn retries it, unless the response says x-envoy-ratelimited.
TEST_F(RequestFlowTest, BareStatusCodeAndTheRateLimitedVeto) {
  const RequestFlow::Plan p = Plan(v1::RETRY_ON_RETRIABLE_STATUS_CODES, 2, absl::ZeroDuration(),
                                   absl::ZeroDuration(), {429});
  Outcome o = Drive(
      p, [](uint32_t a) { return a == 1 ? Respond(429) : Respond(200); }, gen_);
  EXPECT_EQ(o.status, 200u);
  EXPECT_EQ(o.attempts, 2u);
  EXPECT_EQ(o.flags, "-");
  o = Drive(
      p,
      [](uint32_t) {
        Behaviour b = Respond(429);
        b.rate_limited = true;
        return b;
      },
      gen_);
  EXPECT_EQ(o.status, 429u);
  EXPECT_EQ(o.attempts, 1u);
}

// 8. Connect failures under the default policy: 3 tries on different hosts, then 503 UF,URX.
TEST_F(RequestFlowTest, ConnectFailuresTryOtherHostsThenFail) {
  const Outcome o = Drive(
      Plan(kIstioDefault, 2, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Refuse(); }, gen_);
  EXPECT_EQ(o.status, 503u);
  EXPECT_EQ(o.flags, "UF,URX");
  EXPECT_EQ(o.attempts, 3u);
  EXPECT_THAT(o.endpoints, ElementsAre(0, 1, 2));
  EXPECT_THAT(o.body, StartsWith("upstream connect error or disconnect/reset before headers. "
                                 "retried and the latest reset reason: "));
}

// A host name that does not resolve is a connect failure for retries (other hosts are
// tried), reported with Envoy's DNS flag DF and reason.
TEST_F(RequestFlowTest, AnUnresolvableHostIsRetriedAsAConnectFailureAndFlaggedDF) {
  const Outcome o = Drive(
      Plan(kIstioDefault, 2, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t attempt) {
        return attempt == 1 ? Behaviour{Behaviour::What::kDnsFailure} : Respond(200);
      },
      gen_);
  EXPECT_EQ(o.status, 200u);
  EXPECT_EQ(o.attempts, 2u);
  const Outcome failed = Drive(
      Plan(0, 0, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Behaviour{Behaviour::What::kDnsFailure}; }, gen_);
  EXPECT_EQ(failed.status, 503u);
  EXPECT_EQ(failed.flags, "DF");
  EXPECT_EQ(failed.body,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "DNS resolution failure");
}

TEST_F(RequestFlowTest, AResetWithoutRetryHasNoRetriedWords) {
  const Outcome o = Drive(
      Plan(0, 0, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Behaviour{Behaviour::What::kReset}; }, gen_);
  EXPECT_EQ(o.status, 503u);
  EXPECT_EQ(o.flags, "UC");
  EXPECT_EQ(o.body,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection termination");
}

// 10. Back-off bounds: four retries of instant 503s wait under 25+50+100+200 ms in total.
TEST_F(RequestFlowTest, BackoffFollowsEnvoysCodeNotItsOldDocs) {
  for (int i = 0; i < 200; ++i) {
    const Outcome o = Drive(
        Plan(v1::RETRY_ON_5XX, 4, absl::ZeroDuration(), absl::ZeroDuration()),
        [](uint32_t) { return Respond(503); }, gen_);
    ASSERT_EQ(o.attempts, 5u);
    ASSERT_EQ(o.flags, "URX");
    ASSERT_LT(o.total_backoff, absl::Milliseconds(375));
  }
}

TEST_F(RequestFlowTest, OverflowIsNeverRetriedAndSaysOverloaded) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_5XX, 3, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Behaviour{Behaviour::What::kOverflow}; }, gen_);
  EXPECT_EQ(o.status, 503u);
  EXPECT_EQ(o.flags, "UO");
  EXPECT_TRUE(o.overloaded);
  EXPECT_EQ(o.attempts, 1u);
}

TEST_F(RequestFlowTest, AFullRetryBreakerPassesTheResponseWithUO) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_5XX, 3, absl::ZeroDuration(), absl::ZeroDuration()),
      [](uint32_t) { return Respond(503); }, gen_, /*retry_slots=*/false);
  EXPECT_EQ(o.status, 503u);
  EXPECT_EQ(o.flags, "UO");
  EXPECT_EQ(o.attempts, 1u);
}

TEST_F(RequestFlowTest, RetriesCycleThroughAlternatesAndFallBackToThePrimary) {
  RequestFlow::Plan p = Plan(v1::RETRY_ON_5XX, 4, absl::ZeroDuration(), absl::ZeroDuration());
  Outcome o = Drive(
      p, [](uint32_t) { return Respond(500); }, gen_);
  EXPECT_THAT(o.endpoints, ElementsAre(0, 1, 2, 1, 2));
  p.alternates.clear();
  o = Drive(
      p, [](uint32_t) { return Respond(500); }, gen_);
  EXPECT_THAT(o.endpoints, ElementsAre(0, 0, 0, 0, 0));
}

TEST_F(RequestFlowTest, ASuccessfulFirstAttemptHasNoFlags) {
  const Outcome o = Drive(
      Plan(v1::RETRY_ON_5XX, 3, absl::Seconds(5), absl::Seconds(2)),
      [](uint32_t) { return Respond(200, absl::Milliseconds(30)); }, gen_);
  EXPECT_EQ(o.status, 200u);
  EXPECT_EQ(o.flags, "-");
  EXPECT_EQ(o.attempts, 1u);
  EXPECT_EQ(o.elapsed, absl::Milliseconds(30));
}

}  // namespace
}  // namespace sluice::gateway
