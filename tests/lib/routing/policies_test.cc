// Istio's translation of VirtualService retries and DestinationRule traffic policies
// (routing-semantics.md sections 2-3; destinationrule-outlier-metrics.md sections 0-3).

#include "lib/routing/policies.h"

#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint32_t kIstioDefaultRetryOn = kRetryOnConnectFailure | kRetryOnRefusedStream |
                                          kRetryOnUnavailable | kRetryOnCancelled |
                                          kRetryOnRetriableStatusCodes;

// The conditions of a retry_on string, whatever their order.
std::set<std::string> Conditions(absl::string_view retry_on) {
  return absl::StrSplit(retry_on, ',', absl::SkipEmpty());
}

// ---------------------------------------------------------------------------------------------
// Retries

class RetryPolicyTest : public ::testing::Test {
 protected:
  static config::HTTPRetry Attempts(int32_t attempts) {
    config::HTTPRetry r;
    r.attempts = attempts;
    return r;
  }
};

TEST_F(RetryPolicyTest, NoRetriesBlockGetsIstiosDefaultPolicy) {
  const RetryPolicy p = ResolveRetryPolicy(std::nullopt, absl::ZeroDuration());
  EXPECT_EQ(p.num_retries, 2u);
  EXPECT_EQ(p.num_retries, kDefaultNumRetries);
  EXPECT_EQ(p.retry_on, kIstioDefaultRetryOn);
  EXPECT_EQ(Conditions(RetryOnToString(p.retry_on)), Conditions(kDefaultRetryOn));
  // Istio >= 1.24 no longer lists 503 (scenario 5).
  EXPECT_THAT(p.retriable_status_codes, IsEmpty());
  EXPECT_EQ(p.per_try_timeout, absl::ZeroDuration());
  EXPECT_EQ(p.backoff_base, absl::Milliseconds(25));
  EXPECT_EQ(p.backoff_max, absl::Milliseconds(250));
  EXPECT_TRUE(p.retry_other_hosts);
  EXPECT_EQ(p.host_selection_max_attempts, 5u);
}

TEST_F(RetryPolicyTest, DefaultPolicyIgnoresTheRouteTimeout) {
  const RetryPolicy p = ResolveRetryPolicy(std::nullopt, absl::Seconds(1));
  EXPECT_EQ(p.num_retries, 2u);
  EXPECT_EQ(p.retry_on, kIstioDefaultRetryOn);
  EXPECT_EQ(p.per_try_timeout, absl::ZeroDuration());
}

TEST_F(RetryPolicyTest, ZeroOrNegativeAttemptsDisableRetries) {
  for (int32_t attempts : {0, -1}) {
    SCOPED_TRACE(attempts);
    config::HTTPRetry r = Attempts(attempts);
    r.per_try_timeout = absl::Milliseconds(100);
    const RetryPolicy p = ResolveRetryPolicy(r, absl::Seconds(1));
    EXPECT_EQ(p.num_retries, 0u);
    EXPECT_EQ(p.retry_on, 0u);
    EXPECT_THAT(p.retriable_status_codes, IsEmpty());
    EXPECT_EQ(p.per_try_timeout, absl::ZeroDuration());
  }
}

TEST_F(RetryPolicyTest, AttemptsWithoutRetryOnKeepTheDefaultConditions) {
  const RetryPolicy p = ResolveRetryPolicy(Attempts(3), absl::ZeroDuration());
  EXPECT_EQ(p.num_retries, 3u);
  EXPECT_EQ(p.retry_on, kIstioDefaultRetryOn);
  EXPECT_THAT(p.retriable_status_codes, IsEmpty());
  EXPECT_TRUE(p.retry_other_hosts);
  EXPECT_EQ(p.host_selection_max_attempts, 5u);
}

TEST_F(RetryPolicyTest, EmptyRetryOnKeepsTheDefaultConditions) {
  // Istio's ConvertPolicy only replaces retry_on when `in.RetryOn != ""`: a proto3 string
  // that is empty is the same as one that is unset.
  config::HTTPRetry r = Attempts(3);
  r.retry_on = "";
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.num_retries, 3u);
  EXPECT_EQ(p.retry_on, kIstioDefaultRetryOn);
}

TEST_F(RetryPolicyTest, RetryOnReplacesTheDefaultConditions) {
  config::HTTPRetry r = Attempts(3);
  r.retry_on = "5xx";
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.retry_on, kRetryOn5xx);
  EXPECT_THAT(p.retriable_status_codes, IsEmpty());
}

TEST_F(RetryPolicyTest, BareStatusCodesBecomeRetriableStatusCodes) {
  config::HTTPRetry r = Attempts(2);
  r.retry_on = "5xx,429,503";
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.retry_on, kRetryOn5xx | kRetryOnRetriableStatusCodes);
  EXPECT_THAT(p.retriable_status_codes, ElementsAre(429u, 503u));
  EXPECT_EQ(RetryOnToString(p.retry_on), "5xx,retriable-status-codes");
}

TEST_F(RetryPolicyTest, OnlyStatusCodesSwitchOnRetriableStatusCodes) {
  // Scenario 7: retryOn "429" -> retry_on retriable-status-codes, codes [429].
  config::HTTPRetry r = Attempts(2);
  r.retry_on = "429";
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.retry_on, kRetryOnRetriableStatusCodes);
  EXPECT_THAT(p.retriable_status_codes, ElementsAre(429u));
}

TEST_F(RetryPolicyTest, RetryOnTokensAreTrimmed) {
  config::HTTPRetry r = Attempts(1);
  r.retry_on = "5xx, reset ,429";
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.retry_on, kRetryOn5xx | kRetryOnReset | kRetryOnRetriableStatusCodes);
  EXPECT_THAT(p.retriable_status_codes, ElementsAre(429u));
}

TEST_F(RetryPolicyTest, EveryIstioConditionHasItsBit) {
  const std::pair<const char*, uint32_t> conditions[] = {
      {"5xx", kRetryOn5xx},
      {"gateway-error", kRetryOnGatewayError},
      {"reset", kRetryOnReset},
      {"reset-before-request", kRetryOnResetBeforeRequest},
      {"connect-failure", kRetryOnConnectFailure},
      {"retriable-4xx", kRetryOnRetriable4xx},
      {"refused-stream", kRetryOnRefusedStream},
      {"retriable-status-codes", kRetryOnRetriableStatusCodes},
      {"retriable-headers", kRetryOnRetriableHeaders},
      {"envoy-ratelimited", kRetryOnEnvoyRateLimited},
      {"http3-post-connect-failure", kRetryOnHttp3PostConnectFailure},
      {"cancelled", kRetryOnCancelled},
      {"deadline-exceeded", kRetryOnDeadlineExceeded},
      {"internal", kRetryOnInternal},
      {"resource-exhausted", kRetryOnResourceExhausted},
      {"unavailable", kRetryOnUnavailable},
  };
  for (const auto& [name, bit] : conditions) {
    SCOPED_TRACE(name);
    config::HTTPRetry r = Attempts(1);
    r.retry_on = name;
    const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
    EXPECT_EQ(p.retry_on, bit);
    EXPECT_EQ(RetryOnToString(bit), name);
  }
}

TEST_F(RetryPolicyTest, PerTryTimeoutNotShorterThanTheRouteTimeoutIsDropped) {
  const struct {
    absl::Duration per_try;
    absl::Duration route;
    absl::Duration expected;
  } cases[] = {
      {absl::Seconds(2), absl::Seconds(1), absl::ZeroDuration()},            // scenario 3
      {absl::Seconds(1), absl::Seconds(1), absl::ZeroDuration()},            // equal: dropped too
      {absl::Milliseconds(400), absl::Seconds(1), absl::Milliseconds(400)},  // scenario 1
      {absl::Milliseconds(200), absl::ZeroDuration(), absl::Milliseconds(200)},  // scenario 4
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat("perTry ", absl::FormatDuration(c.per_try), " route ",
                              absl::FormatDuration(c.route)));
    config::HTTPRetry r = Attempts(3);
    r.retry_on = "5xx";
    r.per_try_timeout = c.per_try;
    EXPECT_EQ(ResolveRetryPolicy(r, c.route).per_try_timeout, c.expected);
  }
}

TEST_F(RetryPolicyTest, BackoffSetsTheBaseAndTenTimesTheMaximum) {
  config::HTTPRetry r = Attempts(4);
  r.backoff = absl::Milliseconds(100);
  const RetryPolicy p = ResolveRetryPolicy(r, absl::ZeroDuration());
  EXPECT_EQ(p.backoff_base, absl::Milliseconds(100));
  EXPECT_EQ(p.backoff_max, absl::Seconds(1));

  const RetryPolicy defaults = ResolveRetryPolicy(Attempts(4), absl::ZeroDuration());
  EXPECT_EQ(defaults.backoff_base, absl::Milliseconds(25));
  EXPECT_EQ(defaults.backoff_max, absl::Milliseconds(250));
}

TEST_F(RetryPolicyTest, RetryIgnorePreviousHostsFalseDropsThePreviousHostsPredicate) {
  const struct {
    std::optional<bool> ignore_previous_hosts;
    bool retry_other_hosts;
  } cases[] = {{std::nullopt, true}, {true, true}, {false, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.ignore_previous_hosts ? (*c.ignore_previous_hosts ? "true" : "false") : "unset");
    config::HTTPRetry r = Attempts(2);
    r.retry_ignore_previous_hosts = c.ignore_previous_hosts;
    EXPECT_EQ(ResolveRetryPolicy(r, absl::ZeroDuration()).retry_other_hosts, c.retry_other_hosts);
  }
}

TEST(RetryOnToStringTest, ListsConditionsInBitOrder) {
  EXPECT_EQ(RetryOnToString(0), "");
  EXPECT_EQ(RetryOnToString(kRetryOnUnavailable | kRetryOn5xx), "5xx,unavailable");
  EXPECT_EQ(RetryOnToString(kRetryOn5xx | kRetryOnGatewayError | kRetryOnReset),
            "5xx,gateway-error,reset");
  EXPECT_EQ(RetryOnToString(kIstioDefaultRetryOn),
            "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable");
  EXPECT_EQ(Conditions(RetryOnToString(kIstioDefaultRetryOn)), Conditions(kDefaultRetryOn));
}

// ---------------------------------------------------------------------------------------------
// Traffic policies

class TrafficPolicyTest : public ::testing::Test {
 protected:
  static config::DestinationRule Rule(config::TrafficPolicy policy) {
    config::DestinationRule dr;
    dr.host = "reviews";
    dr.traffic_policy = std::move(policy);
    return dr;
  }

  static config::TrafficPolicy WithOutlier(config::OutlierDetection od) {
    config::TrafficPolicy p;
    p.outlier_detection = std::move(od);
    return p;
  }

  static void ExpectIstioDefaults(const TrafficPolicy& p) {
    EXPECT_EQ(p.load_balancer, LoadBalancer::kLeastRequest);
    EXPECT_EQ(p.connection_pool.max_connections, 4294967295u);
    EXPECT_EQ(p.connection_pool.max_pending_requests, kUnlimited);
    EXPECT_EQ(p.connection_pool.max_requests, kUnlimited);
    EXPECT_EQ(p.connection_pool.max_retries, kUnlimited);
    EXPECT_EQ(p.connection_pool.max_requests_per_connection, 0u);
    EXPECT_EQ(p.connection_pool.connect_timeout, absl::Seconds(10));
    EXPECT_EQ(p.connection_pool.idle_timeout, absl::Hours(1));
    EXPECT_EQ(p.connection_pool.max_connection_duration, absl::ZeroDuration());
    EXPECT_FALSE(p.outlier.enabled);
    EXPECT_EQ(p.outlier.healthy_panic_threshold, 50u);
  }

  // An outlierDetection block with no field set, as Istio translates it.
  static void ExpectEmptyOutlierBlock(const OutlierPolicy& o) {
    EXPECT_TRUE(o.enabled);
    EXPECT_EQ(o.consecutive_5xx, 5u);
    EXPECT_TRUE(o.enforce_consecutive_5xx);
    EXPECT_EQ(o.consecutive_gateway_errors, 5u);
    EXPECT_FALSE(o.enforce_consecutive_gateway_errors);
    EXPECT_FALSE(o.split_external_local_origin_errors);
    EXPECT_EQ(o.consecutive_local_origin_failures, 5u);
    EXPECT_TRUE(o.enforce_consecutive_local_origin_failures);
    EXPECT_EQ(o.interval, absl::Seconds(10));
    EXPECT_EQ(o.base_ejection_time, absl::Seconds(30));
    EXPECT_EQ(o.max_ejection_time, absl::Seconds(300));
    EXPECT_EQ(o.max_ejection_percent, 10u);
    EXPECT_EQ(o.healthy_panic_threshold, 0u);
  }
};

TEST_F(TrafficPolicyTest, NoDestinationRuleGetsIstioDefaults) {
  ExpectIstioDefaults(ResolveTrafficPolicy(nullptr, nullptr));
}

TEST_F(TrafficPolicyTest, RuleWithoutTrafficPolicyGetsIstioDefaults) {
  config::DestinationRule dr;
  dr.host = "reviews";
  config::Subset v1;
  v1.name = "v1";
  v1.labels = {{"version", "v1"}};
  dr.subsets.push_back(v1);
  ExpectIstioDefaults(ResolveTrafficPolicy(&dr, nullptr));
  ExpectIstioDefaults(ResolveTrafficPolicy(&dr, &dr.subsets[0]));
}

TEST_F(TrafficPolicyTest, LoadBalancerSimple) {
  const struct {
    config::LoadBalancerKind simple;
    LoadBalancer expected;
    const char* name;
  } cases[] = {
      {config::LoadBalancerKind::kUnspecified, LoadBalancer::kLeastRequest, "LEAST_REQUEST"},
      {config::LoadBalancerKind::kLeastRequest, LoadBalancer::kLeastRequest, "LEAST_REQUEST"},
      {config::LoadBalancerKind::kRoundRobin, LoadBalancer::kRoundRobin, "ROUND_ROBIN"},
      {config::LoadBalancerKind::kRandom, LoadBalancer::kRandom, "RANDOM"},
      {config::LoadBalancerKind::kPassthrough, LoadBalancer::kLeastRequest, "LEAST_REQUEST"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.simple));
    config::TrafficPolicy p;
    p.load_balancer = config::LoadBalancerSettings{c.simple, false};
    const config::DestinationRule dr = Rule(p);
    const TrafficPolicy resolved = ResolveTrafficPolicy(&dr, nullptr);
    EXPECT_EQ(resolved.load_balancer, c.expected);
    EXPECT_STREQ(LoadBalancerName(resolved.load_balancer), c.name);
  }
}

TEST_F(TrafficPolicyTest, ConnectionPoolValuesAreApplied) {
  config::ConnectionPoolSettings pool;
  pool.tcp.emplace();
  pool.tcp->max_connections = 100;
  pool.tcp->connect_timeout = absl::Milliseconds(250);
  pool.tcp->max_connection_duration = absl::Minutes(30);
  pool.http.emplace();
  pool.http->http1_max_pending_requests = 10;
  pool.http->http2_max_requests = 20;
  pool.http->max_retries = 3;
  pool.http->max_requests_per_connection = 1;
  pool.http->idle_timeout = absl::Seconds(30);
  config::TrafficPolicy p;
  p.connection_pool = pool;
  const config::DestinationRule dr = Rule(p);
  const ConnectionPoolLimits limits = ResolveTrafficPolicy(&dr, nullptr).connection_pool;
  EXPECT_EQ(limits.max_connections, 100u);
  EXPECT_EQ(limits.connect_timeout, absl::Milliseconds(250));
  EXPECT_EQ(limits.max_connection_duration, absl::Minutes(30));
  EXPECT_EQ(limits.max_pending_requests, 10u);
  EXPECT_EQ(limits.max_requests, 20u);
  EXPECT_EQ(limits.max_retries, 3u);
  EXPECT_EQ(limits.max_requests_per_connection, 1u);
  EXPECT_EQ(limits.idle_timeout, absl::Seconds(30));
}

TEST_F(TrafficPolicyTest, ZeroLimitsMeanTheDefault) {
  // "You cannot set 0": Istio only writes limits > 0, otherwise 2^32-1.
  config::ConnectionPoolSettings pool;
  pool.tcp.emplace();
  pool.tcp->max_connections = 0;
  pool.http.emplace();
  pool.http->http1_max_pending_requests = 0;
  pool.http->http2_max_requests = 0;
  pool.http->max_retries = 0;
  pool.http->max_requests_per_connection = 0;
  config::TrafficPolicy p;
  p.connection_pool = pool;
  const config::DestinationRule dr = Rule(p);
  ExpectIstioDefaults(ResolveTrafficPolicy(&dr, nullptr));
}

TEST_F(TrafficPolicyTest, HttpIdleTimeoutWinsOverTcpIdleTimeout) {
  const struct {
    std::optional<absl::Duration> tcp;
    std::optional<absl::Duration> http;
    absl::Duration expected;
  } cases[] = {
      {absl::Minutes(5), absl::Seconds(30), absl::Seconds(30)},
      {absl::Minutes(5), std::nullopt, absl::Minutes(5)},
      {std::nullopt, absl::Seconds(30), absl::Seconds(30)},
      {std::nullopt, std::nullopt, absl::Hours(1)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat("tcp ", c.tcp ? absl::FormatDuration(*c.tcp) : "unset", ", http ",
                              c.http ? absl::FormatDuration(*c.http) : "unset"));
    config::ConnectionPoolSettings pool;
    pool.tcp.emplace();
    pool.tcp->idle_timeout = c.tcp;
    pool.http.emplace();
    pool.http->idle_timeout = c.http;
    config::TrafficPolicy p;
    p.connection_pool = pool;
    const config::DestinationRule dr = Rule(p);
    EXPECT_EQ(ResolveTrafficPolicy(&dr, nullptr).connection_pool.idle_timeout, c.expected);
  }
}

TEST_F(TrafficPolicyTest, EmptyOutlierBlockEnablesEnvoyDefaultsAndTurnsPanicModeOff) {
  const config::DestinationRule dr = Rule(WithOutlier({}));
  const TrafficPolicy p = ResolveTrafficPolicy(&dr, nullptr);
  ExpectEmptyOutlierBlock(p.outlier);
  // The other blocks keep their defaults.
  EXPECT_EQ(p.load_balancer, LoadBalancer::kLeastRequest);
  EXPECT_EQ(p.connection_pool.max_connections, kUnlimited);
}

TEST_F(TrafficPolicyTest, ConsecutiveErrorThresholds) {
  const struct {
    std::string label;
    std::optional<uint32_t> consecutive_5xx;
    std::optional<uint32_t> gateway;
    uint32_t expected_5xx;
    bool enforce_5xx;
    uint32_t expected_gateway;
    bool enforce_gateway;
  } cases[] = {
      {"unset", std::nullopt, std::nullopt, 5, true, 5, false},
      {"5xx 3", 3u, std::nullopt, 3, true, 5, false},
      {"5xx 0 disables", 0u, std::nullopt, 0, false, 5, false},
      {"gateway 2 is enforced", std::nullopt, 2u, 5, true, 2, true},
      {"gateway 0 disables", std::nullopt, 0u, 5, true, 0, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    config::OutlierDetection od;
    od.consecutive_5xx_errors = c.consecutive_5xx;
    od.consecutive_gateway_errors = c.gateway;
    const config::DestinationRule dr = Rule(WithOutlier(od));
    const OutlierPolicy o = ResolveTrafficPolicy(&dr, nullptr).outlier;
    EXPECT_TRUE(o.enabled);
    EXPECT_EQ(o.consecutive_5xx, c.expected_5xx);
    EXPECT_EQ(o.enforce_consecutive_5xx, c.enforce_5xx);
    EXPECT_EQ(o.consecutive_gateway_errors, c.expected_gateway);
    EXPECT_EQ(o.enforce_consecutive_gateway_errors, c.enforce_gateway);
  }
}

TEST_F(TrafficPolicyTest, MaxEjectionTimeIsTheLargerOf300sAndBaseEjectionTime) {
  const struct {
    absl::Duration base;
    absl::Duration max;
  } cases[] = {
      {absl::Seconds(400), absl::Seconds(400)},
      {absl::Seconds(60), absl::Seconds(300)},
      {absl::Seconds(300), absl::Seconds(300)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::FormatDuration(c.base));
    config::OutlierDetection od;
    od.base_ejection_time = c.base;
    const config::DestinationRule dr = Rule(WithOutlier(od));
    const OutlierPolicy o = ResolveTrafficPolicy(&dr, nullptr).outlier;
    EXPECT_EQ(o.base_ejection_time, c.base);
    EXPECT_EQ(o.max_ejection_time, c.max);
  }
}

TEST_F(TrafficPolicyTest, MinHealthPercentBecomesThePanicThreshold) {
  config::OutlierDetection od;
  od.min_health_percent = 30;
  const config::DestinationRule dr = Rule(WithOutlier(od));
  EXPECT_EQ(ResolveTrafficPolicy(&dr, nullptr).outlier.healthy_panic_threshold, 30u);
}

TEST_F(TrafficPolicyTest, MaxEjectionPercentZeroMeansEnvoysTen) {
  const std::pair<std::optional<int32_t>, uint32_t> cases[] = {
      {std::nullopt, 10}, {0, 10}, {50, 50}, {100, 100}};
  for (const auto& [configured, expected] : cases) {
    SCOPED_TRACE(configured ? std::to_string(*configured) : "unset");
    config::OutlierDetection od;
    od.max_ejection_percent = configured;
    const config::DestinationRule dr = Rule(WithOutlier(od));
    EXPECT_EQ(ResolveTrafficPolicy(&dr, nullptr).outlier.max_ejection_percent, expected);
  }
}

TEST_F(TrafficPolicyTest, IntervalAndLocalOriginSettingsPassThrough) {
  config::OutlierDetection od;
  od.interval = absl::Seconds(2);
  od.split_external_local_origin_errors = true;
  od.consecutive_local_origin_failures = 3;
  const config::DestinationRule dr = Rule(WithOutlier(od));
  const OutlierPolicy o = ResolveTrafficPolicy(&dr, nullptr).outlier;
  EXPECT_EQ(o.interval, absl::Seconds(2));
  EXPECT_TRUE(o.split_external_local_origin_errors);
  EXPECT_EQ(o.consecutive_local_origin_failures, 3u);
  EXPECT_TRUE(o.enforce_consecutive_local_origin_failures);
}

// A DestinationRule whose top level sets every block, and subsets that override some.
class SubsetPolicyTest : public TrafficPolicyTest {
 protected:
  void SetUp() override {
    config::TrafficPolicy top;
    top.load_balancer = config::LoadBalancerSettings{config::LoadBalancerKind::kRoundRobin, false};
    config::ConnectionPoolSettings pool;
    pool.tcp.emplace();
    pool.tcp->max_connections = 100;
    pool.http.emplace();
    pool.http->http2_max_requests = 50;
    top.connection_pool = pool;
    config::OutlierDetection od;
    od.consecutive_5xx_errors = 3;
    od.consecutive_gateway_errors = 2;
    od.interval = absl::Seconds(30);
    od.base_ejection_time = absl::Seconds(60);
    od.max_ejection_percent = 50;
    od.min_health_percent = 20;
    top.outlier_detection = od;
    rule_ = Rule(top);
  }

  config::Subset& AddSubset(const std::string& name, std::optional<config::TrafficPolicy> policy) {
    config::Subset s;
    s.name = name;
    s.labels = {{"version", name}};
    s.traffic_policy = std::move(policy);
    rule_.subsets.push_back(std::move(s));
    return rule_.subsets.back();
  }

  config::DestinationRule rule_;
};

TEST_F(SubsetPolicyTest, TopLevelPolicyAppliesToTheHostCluster) {
  const TrafficPolicy p = ResolveTrafficPolicy(&rule_, nullptr);
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRoundRobin);
  EXPECT_EQ(p.connection_pool.max_connections, 100u);
  EXPECT_EQ(p.connection_pool.max_requests, 50u);
  EXPECT_TRUE(p.outlier.enabled);
  EXPECT_EQ(p.outlier.consecutive_5xx, 3u);
  EXPECT_EQ(p.outlier.consecutive_gateway_errors, 2u);
  EXPECT_TRUE(p.outlier.enforce_consecutive_gateway_errors);
  EXPECT_EQ(p.outlier.interval, absl::Seconds(30));
  EXPECT_EQ(p.outlier.base_ejection_time, absl::Seconds(60));
  EXPECT_EQ(p.outlier.max_ejection_percent, 50u);
  EXPECT_EQ(p.outlier.healthy_panic_threshold, 20u);
}

TEST_F(SubsetPolicyTest, SubsetWithoutPolicyInheritsEveryBlock) {
  const config::Subset& v1 = AddSubset("v1", std::nullopt);
  const TrafficPolicy p = ResolveTrafficPolicy(&rule_, &v1);
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRoundRobin);
  EXPECT_EQ(p.connection_pool.max_connections, 100u);
  EXPECT_EQ(p.outlier.consecutive_5xx, 3u);
  EXPECT_EQ(p.outlier.interval, absl::Seconds(30));
}

TEST_F(SubsetPolicyTest, SubsetOutlierBlockReplacesTheTopLevelBlockWhole) {
  // destinationrule-outlier-metrics.md section 1: a subset that sets
  // `outlierDetection: {interval: 5s}` loses every other top-level outlier field.
  config::OutlierDetection od;
  od.interval = absl::Seconds(5);
  const config::Subset& v2 = AddSubset("v2", WithOutlier(od));
  const TrafficPolicy p = ResolveTrafficPolicy(&rule_, &v2);
  EXPECT_EQ(p.outlier.interval, absl::Seconds(5));
  EXPECT_TRUE(p.outlier.enabled);
  EXPECT_EQ(p.outlier.consecutive_5xx, 5u);
  EXPECT_TRUE(p.outlier.enforce_consecutive_5xx);
  EXPECT_EQ(p.outlier.consecutive_gateway_errors, 5u);
  EXPECT_FALSE(p.outlier.enforce_consecutive_gateway_errors);
  EXPECT_EQ(p.outlier.base_ejection_time, absl::Seconds(30));
  EXPECT_EQ(p.outlier.max_ejection_time, absl::Seconds(300));
  EXPECT_EQ(p.outlier.max_ejection_percent, 10u);
  EXPECT_EQ(p.outlier.healthy_panic_threshold, 0u);
  // Blocks the subset does not set are inherited whole.
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRoundRobin);
  EXPECT_EQ(p.connection_pool.max_connections, 100u);
  EXPECT_EQ(p.connection_pool.max_requests, 50u);
}

TEST_F(SubsetPolicyTest, SubsetConnectionPoolReplacesTheTopLevelPoolWhole) {
  config::ConnectionPoolSettings pool;
  pool.http.emplace();
  pool.http->http1_max_pending_requests = 5;
  config::TrafficPolicy own;
  own.connection_pool = pool;
  const config::Subset& v3 = AddSubset("v3", own);
  const TrafficPolicy p = ResolveTrafficPolicy(&rule_, &v3);
  EXPECT_EQ(p.connection_pool.max_pending_requests, 5u);
  EXPECT_EQ(p.connection_pool.max_connections, kUnlimited);
  EXPECT_EQ(p.connection_pool.max_requests, kUnlimited);
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRoundRobin);
  EXPECT_EQ(p.outlier.consecutive_5xx, 3u);
}

TEST_F(SubsetPolicyTest, SubsetLoadBalancerReplacesTheTopLevelOne) {
  config::TrafficPolicy own;
  own.load_balancer = config::LoadBalancerSettings{config::LoadBalancerKind::kRandom, false};
  const config::Subset& v4 = AddSubset("v4", own);
  const TrafficPolicy p = ResolveTrafficPolicy(&rule_, &v4);
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRandom);
  EXPECT_EQ(p.connection_pool.max_connections, 100u);
  EXPECT_EQ(p.outlier.consecutive_5xx, 3u);
}

TEST_F(TrafficPolicyTest, SubsetPolicyWithoutTopLevelPolicy) {
  config::DestinationRule dr;
  dr.host = "reviews";
  config::Subset v1;
  v1.name = "v1";
  v1.traffic_policy = WithOutlier({});
  dr.subsets.push_back(v1);
  ExpectIstioDefaults(ResolveTrafficPolicy(&dr, nullptr));
  ExpectEmptyOutlierBlock(ResolveTrafficPolicy(&dr, &dr.subsets[0]).outlier);
}

// The same merge rule, from YAML through the compiled snapshot's clusters.
TEST(TrafficPolicyYamlTest, SubsetClustersGetTheMergedPolicy) {
  config::LoadResult loaded = config::LoadText(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 100}
    outlierDetection:
      consecutive5xxErrors: 3
      baseEjectionTime: 400s
      maxEjectionPercent: 100
      minHealthPercent: 30
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      outlierDetection: {interval: 5s}
)",
                                               "t.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.diagnostics.ToString();
  absl::StatusOr<std::shared_ptr<const Snapshot>> s = CompileSnapshot(std::move(loaded.config), 7);
  ASSERT_TRUE(s.ok()) << s.status();
  const Cluster* host = (*s)->FindCluster("outbound|9080||reviews.default.svc.cluster.local");
  const Cluster* v1 = (*s)->FindCluster("outbound|9080|v1|reviews.default.svc.cluster.local");
  const Cluster* v2 = (*s)->FindCluster("outbound|9080|v2|reviews.default.svc.cluster.local");
  ASSERT_NE(host, nullptr);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(v2, nullptr);

  for (const Cluster* c : {host, v1}) {
    SCOPED_TRACE(c->name);
    EXPECT_EQ(c->policy.load_balancer, LoadBalancer::kRoundRobin);
    EXPECT_EQ(c->policy.connection_pool.max_connections, 100u);
    EXPECT_EQ(c->policy.outlier.consecutive_5xx, 3u);
    EXPECT_EQ(c->policy.outlier.base_ejection_time, absl::Seconds(400));
    EXPECT_EQ(c->policy.outlier.max_ejection_time, absl::Seconds(400));
    EXPECT_EQ(c->policy.outlier.max_ejection_percent, 100u);
    EXPECT_EQ(c->policy.outlier.healthy_panic_threshold, 30u);
  }

  const TrafficPolicy& p = v2->policy;
  EXPECT_EQ(p.load_balancer, LoadBalancer::kRoundRobin);
  EXPECT_EQ(p.connection_pool.max_connections, 100u);
  EXPECT_TRUE(p.outlier.enabled);
  EXPECT_EQ(p.outlier.interval, absl::Seconds(5));
  EXPECT_EQ(p.outlier.consecutive_5xx, 5u);
  EXPECT_EQ(p.outlier.base_ejection_time, absl::Seconds(30));
  EXPECT_EQ(p.outlier.max_ejection_time, absl::Seconds(300));
  EXPECT_EQ(p.outlier.max_ejection_percent, 10u);
  EXPECT_EQ(p.outlier.healthy_panic_threshold, 0u);
}

}  // namespace
}  // namespace sluice::routing
