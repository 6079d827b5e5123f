#include "gateway/proxy/retry_state.h"

#include "absl/random/mock_distributions.h"
#include "absl/random/mocking_bit_gen.h"
#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {
namespace {

using Kind = AttemptResult::Kind;
using Verdict = RetryState::Verdict;
using ::testing::Return;

RetryPolicy Policy(uint32_t retry_on, uint32_t retries = 3, std::vector<uint32_t> codes = {}) {
  RetryPolicy p;
  p.num_retries = retries;
  p.retry_on = retry_on;
  p.retriable_status_codes = std::move(codes);
  return p;
}

AttemptResult Response(uint32_t status, bool rate_limited = false) {
  AttemptResult r;
  r.kind = Kind::kResponse;
  r.status = status;
  r.rate_limited = rate_limited;
  return r;
}

AttemptResult Failure(Kind kind, bool request_sent = true) {
  AttemptResult r;
  r.kind = kind;
  r.request_sent = request_sent;
  return r;
}

bool Retriable(uint32_t retry_on, const AttemptResult& r, std::vector<uint32_t> codes = {}) {
  absl::BitGen gen;
  return RetryState(Policy(retry_on, 3, std::move(codes)), gen).Retriable(r);
}

TEST(RetryStateTest, FiveXxCoversServerErrorsAndEveryReset) {
  const uint32_t on = v1::RETRY_ON_5XX;
  for (uint32_t status : {500u, 501u, 503u, 599u}) EXPECT_TRUE(Retriable(on, Response(status)));
  for (uint32_t status : {200u, 404u, 409u, 429u}) EXPECT_FALSE(Retriable(on, Response(status)));
  for (Kind k : {Kind::kConnectFailure, Kind::kReset, Kind::kPerTryTimeout}) {
    EXPECT_TRUE(Retriable(on, Failure(k)));
  }
  EXPECT_FALSE(Retriable(on, Failure(Kind::kOverflow)));
}

TEST(RetryStateTest, GatewayErrorIsOnly502To504PlusResets) {
  const uint32_t on = v1::RETRY_ON_GATEWAY_ERROR;
  for (uint32_t status : {502u, 503u, 504u}) EXPECT_TRUE(Retriable(on, Response(status)));
  for (uint32_t status : {500u, 501u, 505u}) EXPECT_FALSE(Retriable(on, Response(status)));
  EXPECT_TRUE(Retriable(on, Failure(Kind::kPerTryTimeout)));
}

TEST(RetryStateTest, ResetCoversResetsButNoStatus) {
  const uint32_t on = v1::RETRY_ON_RESET;
  EXPECT_TRUE(Retriable(on, Failure(Kind::kReset)));
  EXPECT_TRUE(Retriable(on, Failure(Kind::kPerTryTimeout)));
  EXPECT_FALSE(Retriable(on, Response(503)));
}

TEST(RetryStateTest, ConnectFailureIsOnlyConnectFailures) {
  const uint32_t on = v1::RETRY_ON_CONNECT_FAILURE;
  EXPECT_TRUE(Retriable(on, Failure(Kind::kConnectFailure)));
  EXPECT_FALSE(Retriable(on, Failure(Kind::kReset)));
  EXPECT_FALSE(Retriable(on, Failure(Kind::kPerTryTimeout)));
  EXPECT_FALSE(Retriable(on, Response(503)));
}

TEST(RetryStateTest, ResetBeforeRequestNeedsNothingSent) {
  const uint32_t on = v1::RETRY_ON_RESET_BEFORE_REQUEST;
  EXPECT_TRUE(Retriable(on, Failure(Kind::kReset, /*request_sent=*/false)));
  EXPECT_FALSE(Retriable(on, Failure(Kind::kReset, /*request_sent=*/true)));
}

// Scenario 6 of the routing reference: retriable-4xx is 409 only.
TEST(RetryStateTest, Retriable4xxIs409Only) {
  const uint32_t on = v1::RETRY_ON_RETRIABLE_4XX;
  EXPECT_TRUE(Retriable(on, Response(409)));
  for (uint32_t status : {400u, 404u, 429u, 499u}) EXPECT_FALSE(Retriable(on, Response(status)));
}

// Scenario 7: bare codes become retriable status codes; x-envoy-ratelimited vetoes them.
TEST(RetryStateTest, StatusCodesAndTheRateLimitedRule) {
  const uint32_t on = v1::RETRY_ON_RETRIABLE_STATUS_CODES;
  EXPECT_TRUE(Retriable(on, Response(429), {429}));
  EXPECT_FALSE(Retriable(on, Response(429, /*rate_limited=*/true), {429}));
  EXPECT_TRUE(Retriable(on | v1::RETRY_ON_ENVOY_RATELIMITED, Response(429, true), {429}));
  EXPECT_FALSE(Retriable(on, Response(503), {429}));
  // envoy-ratelimited decides alone for a rate-limited response, even a 5xx.
  EXPECT_FALSE(Retriable(v1::RETRY_ON_5XX, Response(503, /*rate_limited=*/true)));
}

TEST(RetryStateTest, GrpcConditionsReadGrpcStatusInHeaders) {
  AttemptResult unavailable = Response(200);
  unavailable.grpc_status = 14;
  EXPECT_TRUE(Retriable(v1::RETRY_ON_UNAVAILABLE, unavailable));
  EXPECT_FALSE(Retriable(v1::RETRY_ON_CANCELLED, unavailable));
  AttemptResult cancelled = Response(200);
  cancelled.grpc_status = 1;
  EXPECT_TRUE(Retriable(v1::RETRY_ON_CANCELLED, cancelled));
}

TEST(RetryStateTest, CountsRetriesAndEndsExhausted) {
  absl::BitGen gen;
  RetryState state(Policy(v1::RETRY_ON_5XX, /*retries=*/2), gen);
  absl::Duration backoff;
  EXPECT_EQ(state.OnAttempt(Response(503), &backoff), Verdict::kRetry);
  EXPECT_EQ(state.OnAttempt(Response(503), &backoff), Verdict::kRetry);
  EXPECT_EQ(state.OnAttempt(Response(503), &backoff), Verdict::kExhausted);
  EXPECT_EQ(state.retries_used(), 2u);
  EXPECT_EQ(state.OnAttempt(Response(200), &backoff), Verdict::kDone);
}

TEST(RetryStateTest, NoRetriesMeansExhaustedOnARetriableOutcome) {
  absl::BitGen gen;
  RetryState state(Policy(v1::RETRY_ON_5XX, /*retries=*/0), gen);
  absl::Duration backoff;
  EXPECT_EQ(state.OnAttempt(Response(500), &backoff), Verdict::kExhausted);
  EXPECT_EQ(state.OnAttempt(Response(404), &backoff), Verdict::kDone);
}

// Envoy's code (not its older docs): retry k waits [0, min(25ms * 2^(k-1), 250ms)).
TEST(RetryStateTest, BackoffDoublesFrom25msAndCapsAt250ms) {
  absl::MockingBitGen gen;
  for (int64_t bound : {25, 50, 100, 200}) {
    EXPECT_CALL(absl::MockUniform<int64_t>(), Call(gen, 0, bound)).WillOnce(Return(bound - 1));
  }
  EXPECT_CALL(absl::MockUniform<int64_t>(), Call(gen, 0, 250)).Times(2).WillRepeatedly(Return(249));
  RetryState state(Policy(v1::RETRY_ON_5XX, /*retries=*/6), gen);
  std::vector<int64_t> waits;
  for (int i = 0; i < 6; ++i) {
    absl::Duration backoff;
    ASSERT_EQ(state.OnAttempt(Response(503), &backoff), Verdict::kRetry);
    waits.push_back(absl::ToInt64Milliseconds(backoff));
  }
  EXPECT_THAT(waits, ::testing::ElementsAre(24, 49, 99, 199, 249, 249));
}

// Scenario 10: four retries of instant 503s wait less than 25+50+100+200 = 375ms in total.
TEST(RetryStateTest, TotalBackoffOfFourRetriesStaysUnder375ms) {
  absl::BitGen gen(std::seed_seq{42});
  for (int trial = 0; trial < 1000; ++trial) {
    RetryState state(Policy(v1::RETRY_ON_5XX, /*retries=*/4), gen);
    absl::Duration total;
    for (int i = 0; i < 4; ++i) {
      absl::Duration backoff;
      ASSERT_EQ(state.OnAttempt(Response(503), &backoff), Verdict::kRetry);
      total += backoff;
    }
    ASSERT_LT(total, absl::Milliseconds(375));
  }
}

TEST(RetryStateTest, ConfiguredBaseScalesTheSchedule) {
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<int64_t>(), Call(gen, 0, 100)).WillOnce(Return(7));
  EXPECT_CALL(absl::MockUniform<int64_t>(), Call(gen, 0, 200)).WillOnce(Return(150));
  RetryPolicy p = Policy(v1::RETRY_ON_5XX, 2);
  p.backoff_base = absl::Milliseconds(100);
  p.backoff_max = absl::Milliseconds(1000);
  RetryState state(p, gen);
  absl::Duration backoff;
  state.OnAttempt(Response(503), &backoff);
  EXPECT_EQ(backoff, absl::Milliseconds(7));
  state.OnAttempt(Response(503), &backoff);
  EXPECT_EQ(backoff, absl::Milliseconds(150));
}

}  // namespace
}  // namespace sluice::gateway
