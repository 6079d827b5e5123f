// Envoy's consecutive-error outlier detection on a simulated clock: when ejections start
// and end (to the tick), the multiplier rising and decaying, the cap, maxEjectionPercent,
// gateway errors and split local-origin mode.

#include "server/health/outlier_detector.h"

#include "gtest/gtest.h"

namespace sluice::health {
namespace {

using Kind = AttemptEvent::Kind;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

AttemptEvent Status(uint32_t status) { return {Kind::kResponse, status}; }

routing::OutlierPolicy Policy() {
  routing::OutlierPolicy p;
  p.enabled = true;
  p.consecutive_5xx = 5;
  p.interval = absl::Seconds(10);
  p.base_ejection_time = absl::Seconds(30);
  p.max_ejection_time = absl::Seconds(300);
  p.max_ejection_percent = 100;
  return p;
}

// `n` failures of `host` at `now`; returns how many of them ejected.
int Fail(OutlierDetector& d, size_t host, int n, absl::Time now, uint32_t status = 503) {
  int ejected = 0;
  for (int i = 0; i < n; ++i) ejected += d.OnAttempt(host, Status(status), now);
  return ejected;
}

TEST(OutlierDetectorTest, EjectsAtExactlyTheThresholdAndAtOnce) {
  OutlierDetector d(Policy(), 3);
  EXPECT_EQ(Fail(d, 0, 4, kT0), 0);
  EXPECT_FALSE(d.host(0).ejected);
  EXPECT_TRUE(d.OnAttempt(0, Status(500), kT0)) << "the 5th consecutive 5xx ejects, no tick";
  EXPECT_TRUE(d.host(0).ejected);
  EXPECT_EQ(d.host(0).reason, EjectionReason::kConsecutive5xx);
  EXPECT_EQ(d.ejected_count(), 1u);
  EXPECT_EQ(d.EjectionTime(0), absl::Seconds(30));
}

TEST(OutlierDetectorTest, ASuccessResetsTheCount) {
  OutlierDetector d(Policy(), 3);
  Fail(d, 0, 4, kT0);
  d.OnAttempt(0, Status(200), kT0);
  EXPECT_EQ(Fail(d, 0, 4, kT0), 0);
  EXPECT_EQ(Fail(d, 0, 1, kT0), 1);
}

TEST(OutlierDetectorTest, UnejectionWaitsForTheTickAfterTheEjectionTime) {
  OutlierDetector d(Policy(), 3);
  Fail(d, 0, 5, kT0 + absl::Seconds(5));  // ejected at t=5s for 30s
  for (int tick = 10; tick <= 30; tick += 10) {
    EXPECT_TRUE(d.OnInterval(kT0 + absl::Seconds(tick)).empty()) << "tick " << tick;
    EXPECT_TRUE(d.host(0).ejected);
  }
  // 35s is not a tick: it comes back at 40s, rounded up to the interval.
  EXPECT_EQ(d.OnInterval(kT0 + absl::Seconds(40)), std::vector<size_t>{0});
  EXPECT_FALSE(d.host(0).ejected);
  EXPECT_EQ(d.host(0).consecutive_5xx, 0u);
  EXPECT_EQ(d.ejected_count(), 0u);
}

TEST(OutlierDetectorTest, MultiplierRisesWithEachEjectionAndIsCapped) {
  routing::OutlierPolicy p = Policy();
  p.max_ejection_time = absl::Seconds(70);
  OutlierDetector d(p, 2);
  absl::Time t = kT0;
  const absl::Duration expected[] = {absl::Seconds(30), absl::Seconds(60), absl::Seconds(70),
                                     absl::Seconds(70)};
  for (absl::Duration want : expected) {
    ASSERT_EQ(Fail(d, 0, 5, t), 1);
    EXPECT_EQ(d.EjectionTime(0), want);
    // Tick until it is back; no healthy interval passes in between, so no decay.
    absl::Time tick = t;
    do {
      tick += absl::Seconds(10);
    } while (d.OnInterval(tick).empty());
    EXPECT_EQ(tick - t, want);
    t = tick;
  }
  EXPECT_EQ(d.host(0).ejections, 4u);
  // The multiplier rises while base x multiplier < max + base (30 x 4 = 120 >= 100: stop).
  EXPECT_EQ(d.host(0).multiplier, 4u);
  Fail(d, 0, 5, t);
  EXPECT_EQ(d.host(0).multiplier, 4u);
}

TEST(OutlierDetectorTest, MultiplierDecaysOnePerHealthyInterval) {
  OutlierDetector d(Policy(), 2);
  Fail(d, 0, 5, kT0);
  d.OnInterval(kT0 + absl::Seconds(30));  // back, multiplier 1
  Fail(d, 0, 5, kT0 + absl::Seconds(30));
  EXPECT_EQ(d.host(0).multiplier, 2u);
  d.OnInterval(kT0 + absl::Seconds(90));  // back after 60s
  EXPECT_EQ(d.host(0).multiplier, 2u) << "no decay in the tick that returns it";
  d.OnInterval(kT0 + absl::Seconds(100));
  EXPECT_EQ(d.host(0).multiplier, 1u);
  d.OnInterval(kT0 + absl::Seconds(110));
  EXPECT_EQ(d.host(0).multiplier, 0u);
  d.OnInterval(kT0 + absl::Seconds(120));
  EXPECT_EQ(d.host(0).multiplier, 0u);
  Fail(d, 0, 5, kT0 + absl::Seconds(120));
  EXPECT_EQ(d.EjectionTime(0), absl::Seconds(30)) << "fully decayed: base again";
}

// maxEjectionPercent as current Envoy applies it: (ejected + 1) / hosts <= percent.
TEST(OutlierDetectorTest, MaxEjectionPercentWithOneTwoFourAndTenHosts) {
  struct Case {
    size_t hosts;
    uint32_t percent;
    size_t can_eject;
  };
  for (const Case c : {Case{1, 10, 0}, Case{2, 10, 0}, Case{4, 10, 0}, Case{10, 10, 1},
                       Case{1, 100, 1}, Case{2, 50, 1}, Case{4, 50, 2}, Case{10, 35, 3}}) {
    routing::OutlierPolicy p = Policy();
    p.max_ejection_percent = c.percent;
    OutlierDetector d(p, c.hosts);
    // 500: a 5xx that is not a gateway error, so only the 5xx counter fires.
    for (size_t h = 0; h < c.hosts; ++h) Fail(d, h, 5, kT0, 500);
    EXPECT_EQ(d.ejected_count(), c.can_eject) << c.hosts << " hosts at " << c.percent << "%";
    EXPECT_EQ(d.overflows(), c.hosts - c.can_eject);
  }
}

// Envoy counts an overflow for every detection past the limit, enforced or not: a 503 fires
// the (unenforced) gateway counter and the 5xx counter together.
TEST(OutlierDetectorTest, OverflowsCountEveryDetectionPastTheLimit) {
  routing::OutlierPolicy p = Policy();
  p.max_ejection_percent = 10;
  OutlierDetector d(p, 4);
  Fail(d, 0, 5, kT0, 503);
  EXPECT_EQ(d.ejected_count(), 0u);
  EXPECT_EQ(d.overflows(), 2u);
}

TEST(OutlierDetectorTest, GatewayErrorsCountOnlyWhenEnforced) {
  routing::OutlierPolicy p = Policy();
  p.consecutive_5xx = 0;  // disabled: a threshold of 0 never fires
  p.consecutive_gateway_errors = 3;
  p.enforce_consecutive_gateway_errors = false;  // Istio's default: counted, not enforced
  OutlierDetector counted(p, 2);
  EXPECT_EQ(Fail(counted, 0, 10, kT0, 502), 0);

  p.enforce_consecutive_gateway_errors = true;
  OutlierDetector d(p, 2);
  EXPECT_EQ(Fail(d, 0, 2, kT0, 504), 0);
  EXPECT_EQ(Fail(d, 0, 1, kT0, 500), 0) << "a non-gateway 5xx resets the gateway count";
  EXPECT_EQ(Fail(d, 0, 2, kT0, 503), 0);
  EXPECT_TRUE(d.OnAttempt(0, {Kind::kReset, 0}, kT0)) << "a reset counts as 503";
  EXPECT_EQ(d.host(0).reason, EjectionReason::kConsecutiveGatewayErrors);
}

TEST(OutlierDetectorTest, LocalOriginErrorsCountAs5xxUnlessSplit) {
  OutlierDetector joined(Policy(), 2);
  for (int i = 0; i < 4; ++i) joined.OnAttempt(0, {Kind::kConnectFailure, 0}, kT0);
  EXPECT_TRUE(joined.OnAttempt(0, {Kind::kTimeout, 0}, kT0)) << "503 and 504 are 5xx";

  routing::OutlierPolicy p = Policy();
  p.split_external_local_origin_errors = true;
  p.consecutive_local_origin_failures = 3;
  OutlierDetector split(p, 2);
  for (int i = 0; i < 4; ++i) split.OnAttempt(0, Status(503), kT0);
  split.OnAttempt(0, {Kind::kConnectFailure, 0}, kT0);
  EXPECT_FALSE(split.host(0).ejected) << "local-origin failures do not add to the 5xx count";
  EXPECT_EQ(split.host(0).consecutive_5xx, 4u);
  split.OnAttempt(0, Status(200), kT0);  // a response resets the local-origin count too
  split.OnAttempt(0, {Kind::kConnectFailure, 0}, kT0);
  split.OnAttempt(0, {Kind::kTimeout, 0}, kT0);
  EXPECT_FALSE(split.host(0).ejected);
  EXPECT_TRUE(split.OnAttempt(0, {Kind::kConnectFailure, 0}, kT0));
  EXPECT_EQ(split.host(0).reason, EjectionReason::kConsecutiveLocalOrigin);
}

TEST(OutlierDetectorTest, NotCountedEventsChangeNothing) {
  OutlierDetector d(Policy(), 1);
  Fail(d, 0, 4, kT0);
  for (int i = 0; i < 10; ++i) d.OnAttempt(0, {Kind::kNotCounted, 0}, kT0);
  EXPECT_EQ(d.host(0).consecutive_5xx, 4u);
  EXPECT_FALSE(d.OnAttempt(7, Status(503), kT0)) << "an unknown endpoint index is ignored";
}

}  // namespace
}  // namespace sluice::health
