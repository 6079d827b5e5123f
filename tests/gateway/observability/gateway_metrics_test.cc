#include "gateway/observability/gateway_metrics.h"

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
