// sluice-stub as a real process: every per-request control and instance setting that the
// gateway's tests rely on behaves as documented.

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

class StubTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name",
                                     "reviews-v2",       "--subset", "v2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(stub_.Start(argv, "listening ")) << stub_.error();
    address_ = stub_.Field("http");
  }
  testing::HttpResult Get(const std::string& target,
                          std::vector<std::pair<std::string, std::string>> headers = {}) {
    return testing::HttpExchange(address_, "GET", target, headers);
  }

  testing::Process stub_;
  std::string address_;
};

TEST_F(StubTest, NamesItselfAndCounts) {
  Start();
  testing::HttpResult r = Get("/reviews/1");
  ASSERT_TRUE(r.answered);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-stub-name"), "reviews-v2");
  EXPECT_EQ(r.Header("x-stub-subset"), "v2");
  EXPECT_EQ(r.Header("x-stub-count"), "1");
  EXPECT_THAT(r.body, HasSubstr("\"path\":\"/reviews/1\""));
  EXPECT_EQ(Get("/reviews/2").Header("x-stub-count"), "2");
  EXPECT_THAT(testing::HttpGet(address_, "/stub/stats"), HasSubstr("\"received\":2"));
}

TEST_F(StubTest, StatusByQueryHeaderAndAttempt) {
  Start();
  EXPECT_EQ(Get("/x?status=503").status, 503);
  EXPECT_EQ(Get("/x", {{"x-stub-status", "409"}}).status, 409);
  // "429,200": the first attempt gets 429, the second 200 (x-envoy-attempt-count).
  EXPECT_EQ(Get("/x?status=429,200", {{"x-envoy-attempt-count", "1"}}).status, 429);
  EXPECT_EQ(Get("/x?status=429,200", {{"x-envoy-attempt-count", "2"}}).status, 200);
  EXPECT_EQ(Get("/x?status=429,200", {{"x-envoy-attempt-count", "5"}}).status, 200);
  EXPECT_THAT(testing::HttpGet(address_, "/stub/stats"),
              HasSubstr("\"by_status\":{\"200\":2,\"409\":1,\"429\":1,\"503\":1}"));
}

TEST_F(StubTest, ResetsAndBodies) {
  Start();
  EXPECT_FALSE(Get("/x?reset=before").answered);
  testing::HttpResult cut = Get("/x?reset=after&body=1000");
  ASSERT_TRUE(cut.answered);
  EXPECT_EQ(cut.Header("content-length"), "1000");
  EXPECT_LT(cut.body.size(), 1000u);
  EXPECT_EQ(Get("/x?body=5000").body.size(), 5000u);
}

TEST_F(StubTest, DelayAndHangHoldTheAnswer) {
  Start();
  absl::Time start = absl::Now();
  EXPECT_EQ(Get("/x?delay=150ms").status, 200);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  start = absl::Now();
  EXPECT_FALSE(Get("/x?hang=200ms").answered);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

TEST_F(StubTest, ErrorRateForTheInstanceAndAtRunTime) {
  Start({"--error-rate", "1"});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("/x").status, 503);
  testing::HttpExchange(address_, "POST", "/stub/config?error-rate=0");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("/x").status, 200);
  testing::HttpExchange(address_, "POST", "/stub/reset");
  EXPECT_THAT(testing::HttpGet(address_, "/stub/stats"), HasSubstr("\"received\":0"));
}

TEST_F(StubTest, PartialErrorRateIsRoughlyThatShare) {
  Start({"--error-rate", "0.3", "--seed", "7"});
  int errors = 0;
  constexpr int kN = 400;
  for (int i = 0; i < kN; ++i) errors += Get("/x").status == 503;
  // Binomial(400, 0.3): mean 120, sigma 9.2; 4 sigma either side.
  EXPECT_NEAR(errors, 120, 37);
}

}  // namespace
}  // namespace sluice
