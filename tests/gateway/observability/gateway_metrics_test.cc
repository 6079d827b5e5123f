#include "gateway/observability/gateway_metrics.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace sluice::gateway {
namespace {

using ::testing::HasSubstr;

std::string Exposition(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(IstioMetricsTest, IstioNamesLabelsAndValues) {
  prometheus::Registry registry;
  IstioMetrics metrics(registry, "sluice-gateway", "default");
  RequestOutcome ok{"reviews.default.svc.cluster.local", "v2", 200, "-"};
  metrics.Record(ok, absl::Milliseconds(12), 0, 295);
  metrics.Record(ok, absl::Milliseconds(40), 0, 295);
  metrics.Record({"reviews.default.svc.cluster.local", "v2", 503, "URX"}, absl::Milliseconds(3), 0,
                 18);
  const std::string text = Exposition(registry);
  // Flagger's request-success-rate and request-duration read exactly these names and labels.
  EXPECT_THAT(text, HasSubstr("istio_requests_total{"));
  EXPECT_THAT(text, HasSubstr("reporter=\"source\""));
  EXPECT_THAT(text, HasSubstr("destination_service=\"reviews.default.svc.cluster.local\""));
  EXPECT_THAT(text, HasSubstr("destination_version=\"v2\""));
  EXPECT_THAT(text, HasSubstr("destination_workload=\"reviews-v2\""));
  EXPECT_THAT(text, HasSubstr("destination_service_name=\"reviews\""));
  EXPECT_THAT(text, HasSubstr("destination_service_namespace=\"default\""));
  EXPECT_THAT(text, HasSubstr("response_flags=\"URX\""));
  EXPECT_THAT(text, HasSubstr("connection_security_policy=\"unknown\""));
  EXPECT_THAT(text, HasSubstr("response_code=\"200\",response_flags=\"-\",source_app"));
  EXPECT_THAT(text, HasSubstr("} 2\n"));  // the two 200s share one series
  // Envoy's default buckets.
  EXPECT_THAT(text, HasSubstr("istio_request_duration_milliseconds_bucket{"));
  EXPECT_THAT(text, HasSubstr("le=\"0.5\""));
  EXPECT_THAT(text, HasSubstr("le=\"3600000\""));
  EXPECT_THAT(text, HasSubstr("istio_response_bytes_sum{"));
}

TEST(IstioMetricsTest, HostsOutsideTheClusterDomainKeepTheirName) {
  prometheus::Registry registry;
  IstioMetrics metrics(registry, "gw", "edge");
  metrics.Record({"www.googleapis.com", "", 404, "NR"}, absl::Milliseconds(1), 10, 0);
  const std::string text = Exposition(registry);
  EXPECT_THAT(text, HasSubstr("destination_service_name=\"www.googleapis.com\""));
  EXPECT_THAT(text, HasSubstr("destination_version=\"unknown\""));
  EXPECT_THAT(text, HasSubstr("source_workload_namespace=\"edge\""));
}

}  // namespace
}  // namespace sluice::gateway

#include "gateway/observability/sluice_metrics.h"

namespace sluice::gateway {
namespace {

// Workers record concurrently, and a new series may rehash the map of series while another
// worker is still using one it looked up (ThreadSanitizer saw exactly that in the gateway).
TEST(IstioMetricsTest, WorkersRecordingNewSeriesConcurrentlyLoseNothing) {
  prometheus::Registry registry;
  IstioMetrics metrics(registry, "sluice-gateway", "default");
  constexpr int kThreads = 4;
  constexpr int kCodes = 300;  // enough new series to rehash the map many times over
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&metrics] {
      for (int code = 0; code < kCodes; ++code) {
        metrics.Record(
            {"reviews.default.svc.cluster.local", "v1", static_cast<uint32_t>(200 + code), "-"},
            absl::Milliseconds(1), 0, 10);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  double total = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "istio_requests_total") continue;
    EXPECT_EQ(family.metric.size(), static_cast<size_t>(kCodes));
    for (const prometheus::ClientMetric& metric : family.metric) total += metric.counter.value;
  }
  EXPECT_EQ(total, kThreads * kCodes);
}

TEST(SluiceGatewayMetricsTest, CountsWhatTheGatewayDid) {
  prometheus::Registry registry;
  SluiceGatewayMetrics m(registry);
  m.CountRetry("reviews.default.svc.cluster.local", "v1");
  m.CountRetry("reviews.default.svc.cluster.local", "v1");
  m.CountFault("ratings.default.svc.cluster.local", "abort");
  m.CountOverflow("outbound|8000||httpbin.default.svc.cluster.local", "pending");
  m.CountDecisionFailure("deadline");
  m.ObserveDecision(absl::Microseconds(300));
  m.SetDecisionServiceUp(true);
  m.AddDecisionStreamTraffic(3, 1000, 20);
  m.AddDecisionStreamTraffic(1, 10, 5);
  const std::string text = Exposition(registry);
  EXPECT_THAT(text, HasSubstr("sluice_gateway_retries_total{destination_service=\"reviews.default."
                              "svc.cluster.local\",destination_version=\"v1\"} 2"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_faults_total{destination_service=\"ratings.default."
                              "svc.cluster.local\",fault=\"abort\"} 1"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_overflows_total{cluster=\"outbound|8000||httpbin."
                              "default.svc.cluster.local\",limit=\"pending\"} 1"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_failures_total{reason=\"deadline\"} 1"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_duration_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_service_up 1"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_stream_messages_total 4"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_stream_decide_requests_total 1010"));
  EXPECT_THAT(text, HasSubstr("sluice_gateway_decision_stream_reports_total 25"));
}

}  // namespace
}  // namespace sluice::gateway
