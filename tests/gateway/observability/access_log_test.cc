#include "gateway/observability/access_log.h"

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

TEST(AccessLogTest, EnvoysDefaultFormat) {
  AccessLogEntry e;
  e.start_time = absl::FromCivil(absl::CivilSecond(2026, 11, 27, 0, 0, 0), absl::UTCTimeZone()) +
                 absl::Milliseconds(123);
  e.method = "GET";
  e.path = "/reviews/1";
  e.response_code = 200;
  e.bytes_received = 0;
  e.bytes_sent = 295;
  e.duration = absl::Milliseconds(12);
  e.upstream_service_time = "10";
  e.forwarded_for = "127.0.0.1";
  e.user_agent = "curl/7.88.1";
  e.request_id = "5e5b2e0c-2a4f-4c1a-9f5e-0a7d7d1b9c11";
  e.authority = "reviews:9080";
  e.upstream_host = "127.0.0.1:19081";
  EXPECT_EQ(FormatAccessLog(e),
            "[2026-11-27T00:00:00.123Z] \"GET /reviews/1 HTTP/1.1\" 200 - 0 295 12 10 "
            "\"127.0.0.1\" \"curl/7.88.1\" \"5e5b2e0c-2a4f-4c1a-9f5e-0a7d7d1b9c11\" "
            "\"reviews:9080\" \"127.0.0.1:19081\"\n");
}

TEST(AccessLogTest, AppendAddsTheLineAfterWhatTheBufferHolds) {
  AccessLogEntry e;
  e.start_time = absl::FromUnixMillis(1'764'892'800'007);  // 2025-12-05T00:00:00.007Z
  e.method = "POST";
  e.path = "/cart";
  e.protocol = "HTTP/1.0";
  e.response_code = 201;
  e.authority = "shop";
  std::string lines = "earlier line\n";
  AppendAccessLog(e, lines);
  EXPECT_EQ(lines,
            "earlier line\n[2025-12-05T00:00:00.007Z] \"POST /cart HTTP/1.0\" 201 - 0 0 0 - \"-\" "
            "\"-\" \"-\" \"shop\" \"-\"\n");
  EXPECT_EQ(FormatAccessLog(e), lines.substr(std::string("earlier line\n").size()));
}

TEST(AccessLogTest, LocalRepliesPrintDashesAndFlags) {
  AccessLogEntry e;
  e.start_time = absl::FromUnixMillis(0);
  e.method = "GET";
  e.path = "/ratings/1";
  e.response_code = 503;
  e.response_flags = "FI";
  e.bytes_sent = 18;
  e.authority = "ratings";
  EXPECT_EQ(FormatAccessLog(e),
            "[1970-01-01T00:00:00.000Z] \"GET /ratings/1 HTTP/1.1\" 503 FI 0 18 0 - \"-\" \"-\" "
            "\"-\" \"ratings\" \"-\"\n");
}

}  // namespace
}  // namespace sluice::gateway
