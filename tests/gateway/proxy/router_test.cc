// The router's timer rules on a simulated clock: the attempts are a script played by a fake
// upstream, time moves only when the test advances it, and nothing sleeps.
#include "gateway/proxy/router.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gateway/event/async_socket.h"
#include "gateway/event/task.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gtest/gtest.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {
namespace {

using std::chrono::milliseconds;
using Kind = AttemptResult::Kind;

// Plays the upstream: each attempt takes its scripted time on the wheel, then ends with its
// scripted result; Stop() ends the attempt in progress at once.
class ScriptedUpstream final : public Router::Upstream {
 public:
  struct Step {
    AttemptResult result;
    event::MonotonicDuration takes{};
    bool request_over = false;
  };
  struct Started {
    uint32_t endpoint;
    uint32_t attempt;
    absl::Duration per_try;
    event::MonotonicTime at;
  };
  struct Reported {
    uint32_t attempt;
    v1::Outcome outcome;
    uint32_t status;
    std::string flags;
    bool final;
  };

  explicit ScriptedUpstream(event::TimerWheel& wheel) : wheel_(wheel), wait_(wheel) {}

  void Respond(uint32_t status, event::MonotonicDuration takes) {
    Step step;
    step.result.kind = Kind::kResponse;
    step.result.status = status;
    step.takes = takes;
    script_.push_back(step);
  }
  void Fail(Kind kind, event::MonotonicDuration takes) {
    Step step;
    step.result.kind = kind;
    step.takes = takes;
    script_.push_back(step);
  }

  event::Task<AttemptEnd> Attempt(uint32_t endpoint, uint32_t attempt,
                                  absl::Duration per_try) override {
    started.push_back({endpoint, attempt, per_try, wheel_.now()});
    const Step step = script_.front();
    script_.pop_front();
    const bool finished = co_await wait_.WaitFor(step.takes);
    AttemptEnd end;
    if (!finished) {
      end.result.kind = Kind::kReset;  // stopped: the router ignores it
      co_return end;
    }
    end.result = step.result;
    end.request_over = step.request_over;
    co_return end;
  }
  void Stop() override {
    ++stops;
    wait_.Cancel();
  }
  void Report(uint32_t endpoint, uint32_t attempt, v1::Outcome outcome, uint32_t status,
              absl::Duration latency, const std::string& flags, bool final) override {
    (void)endpoint;
    (void)latency;
    reports.push_back({attempt, outcome, status, flags, final});
  }
  void CountRetry() override { ++retries; }

  std::vector<Started> started;
  std::vector<Reported> reports;
  int stops = 0;
  int retries = 0;

 private:
  event::TimerWheel& wheel_;
  event::Alarm wait_;
  std::deque<Step> script_;
};

event::Task<void> Route(Router& router, Router::Upstream& upstream,
                        std::optional<Router::Outcome>* outcome) {
  *outcome = co_await router.Run(upstream);
}

class RouterTest : public ::testing::Test {
 protected:
  void Advance(event::MonotonicDuration by) {
    clock_.Advance(by);
    wheel_.Advance(clock_.Now());
  }
  event::MonotonicDuration Since(event::MonotonicTime start) const { return wheel_.now() - start; }
  static RequestFlow::Plan Plan(uint32_t retries, absl::Duration route_timeout) {
    RequestFlow::Plan plan;
    plan.retry.num_retries = retries;
    plan.retry.retry_on = v1::RETRY_ON_5XX;
    plan.route_timeout = route_timeout;
    plan.primary = 0;
    plan.alternates = {1};
    return plan;
  }

  event::SimulatedTimeSource clock_;
  event::TimerWheel wheel_{clock_.Now()};
  std::mt19937 rng_{7};
  ClusterLimits limits_;
  ScriptedUpstream upstream_{wheel_};
};

TEST_F(RouterTest, A503IsRetriedAfterItsBackoffOnTheAlternateAndTheSecondResponsePasses) {
  Router router(wheel_, clock_, Plan(2, absl::ZeroDuration()), limits_, rng_);
  upstream_.Respond(503, milliseconds(10));
  upstream_.Respond(200, milliseconds(10));
  std::optional<Router::Outcome> outcome;
  const event::MonotonicTime start = wheel_.now();
  event::Spawn(Route(router, upstream_, &outcome));
  ASSERT_EQ(upstream_.started.size(), 1u);
  Advance(milliseconds(10));  // the 503: a back-off of [0, 25 ms) starts
  ASSERT_EQ(upstream_.reports.size(), 1u);
  EXPECT_EQ(upstream_.reports[0].status, 503u);
  EXPECT_FALSE(upstream_.reports[0].final) << "a retried attempt is not the last";
  for (int ms = 0; ms < 25 && upstream_.started.size() < 2; ++ms) Advance(milliseconds(1));
  ASSERT_EQ(upstream_.started.size(), 2u) << "the retry starts within the 25 ms back-off";
  EXPECT_EQ(upstream_.started[1].attempt, 2u);
  EXPECT_EQ(upstream_.started[1].endpoint, 1u) << "Envoy's retry host predicate: another host";
  EXPECT_LT(Since(start), milliseconds(10 + 25 + 1));
  Advance(milliseconds(10));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->kind, Router::Outcome::Kind::kPassResponse);
  EXPECT_EQ(outcome->attempts, 2u);
  EXPECT_EQ(upstream_.retries, 1);
  ASSERT_EQ(upstream_.reports.size(), 2u);
  EXPECT_TRUE(upstream_.reports[1].final);
  router.Finish();
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(RouterTest, TheRouteTimerEndsAHungAttemptWith504UTAtItsExactTime) {
  Router router(wheel_, clock_, Plan(2, absl::Milliseconds(100)), limits_, rng_);
  upstream_.Respond(200, std::chrono::seconds(60));  // hangs
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  Advance(milliseconds(99));
  EXPECT_FALSE(outcome.has_value());
  EXPECT_EQ(upstream_.stops, 0);
  Advance(milliseconds(1));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(upstream_.stops, 1) << "the attempt's connection is closed";
  EXPECT_EQ(outcome->kind, Router::Outcome::Kind::kLocalReply);
  EXPECT_EQ(outcome->status, 504u);
  EXPECT_EQ(outcome->flags, "UT");
  EXPECT_TRUE(router.route_timed_out());
  ASSERT_EQ(upstream_.reports.size(), 1u);
  EXPECT_EQ(upstream_.reports[0].outcome, v1::TIMEOUT);
  EXPECT_EQ(upstream_.started.size(), 1u) << "no retry after the route timeout";
}

// A generator whose every draw is its largest value: the back-off is the top of its range.
struct LargestDraws {
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }
  result_type operator()() { return max(); }
};

TEST_F(RouterTest, TheRouteTimerEndsABackoffAndNoFurtherAttemptStarts) {
  RequestFlow::Plan plan = Plan(3, absl::Milliseconds(30));
  plan.retry.backoff_base = absl::Milliseconds(200);  // a back-off just under 200 ms
  plan.retry.backoff_max = absl::Milliseconds(400);
  LargestDraws draws;
  Router router(wheel_, clock_, plan, limits_, draws);
  upstream_.Respond(503, milliseconds(20));
  upstream_.Respond(200, milliseconds(1));
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  Advance(milliseconds(20));  // the 503; the back-off starts
  EXPECT_FALSE(outcome.has_value());
  Advance(milliseconds(9));
  EXPECT_FALSE(outcome.has_value());
  Advance(milliseconds(1));  // 30 ms: the route timeout, inside the back-off
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->status, 504u);
  EXPECT_EQ(outcome->flags, "UT");
  EXPECT_EQ(upstream_.started.size(), 1u) << "no attempt after the route timeout";
  EXPECT_EQ(upstream_.stops, 0) << "nothing was in flight to stop";
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(RouterTest, AClientThatLeavesEndsTheAttemptAndGetsNoReply) {
  Router router(wheel_, clock_, Plan(2, absl::Seconds(15)), limits_, rng_);
  upstream_.Respond(200, std::chrono::seconds(5));
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  Advance(milliseconds(300));
  router.ClientGone();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->kind, Router::Outcome::Kind::kClientGone);
  EXPECT_EQ(outcome->flags, "DC");
  EXPECT_EQ(upstream_.stops, 1);
  ASSERT_EQ(upstream_.reports.size(), 1u);
  EXPECT_EQ(upstream_.reports[0].outcome, v1::NOT_SENT) << "not the endpoint's failure";
  EXPECT_EQ(wheel_.armed_count(), 0u) << "route timer cancelled";
}

TEST_F(RouterTest, TheRouteTimerStartsWhenAStreamedUploadEnds) {
  Router router(wheel_, clock_, Plan(0, absl::Milliseconds(100)), limits_, rng_,
                /*request_complete=*/false);
  upstream_.Respond(200, std::chrono::seconds(1));
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  Advance(milliseconds(500));  // the upload goes on: no route timer yet
  EXPECT_FALSE(outcome.has_value());
  router.RequestComplete();
  Advance(milliseconds(99));
  EXPECT_FALSE(outcome.has_value());
  Advance(milliseconds(1));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->status, 504u);
}

TEST_F(RouterTest, TheRouteTimerBoundsTheRelayedResponseUntilFinish) {
  Router router(wheel_, clock_, Plan(0, absl::Milliseconds(100)), limits_, rng_);
  upstream_.Respond(200, milliseconds(40));
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  Advance(milliseconds(40));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->kind, Router::Outcome::Kind::kPassResponse);
  EXPECT_EQ(upstream_.stops, 0);
  Advance(milliseconds(60));  // the body is still streaming at the route timeout
  EXPECT_TRUE(router.route_timed_out());
  EXPECT_EQ(upstream_.stops, 1) << "the relay is cut: the client gets UT";
  router.Finish();
}

TEST_F(RouterTest, AFullRequestCircuitBreakerAnswers503UOWithoutAnAttempt) {
  PoolLimits tight;
  tight.max_requests = 1;
  ClusterLimits limits(tight);
  ClusterLimits::Ticket held = limits.TryRequest();
  ASSERT_TRUE(held);
  Router router(wheel_, clock_, Plan(2, absl::ZeroDuration()), limits, rng_);
  std::optional<Router::Outcome> outcome;
  event::Spawn(Route(router, upstream_, &outcome));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->status, 503u);
  EXPECT_EQ(outcome->flags, "UO");
  EXPECT_TRUE(outcome->overloaded);
  EXPECT_TRUE(upstream_.started.empty());
  ASSERT_EQ(upstream_.reports.size(), 1u);
  EXPECT_EQ(upstream_.reports[0].outcome, v1::OVERFLOW);
}

}  // namespace
}  // namespace sluice::gateway
