#include "gateway/observability/access_log.h"

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

absl::string_view OrDash(absl::string_view s) { return s.empty() ? "-" : s; }

}  // namespace

std::string FormatAccessLog(const AccessLogEntry& e) {
  return absl::StrCat(
      "[", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", e.start_time, absl::UTCTimeZone()), "] \"",
      OrDash(e.method), " ", OrDash(e.path), " ", OrDash(e.protocol), "\" ", e.response_code, " ",
      OrDash(e.response_flags), " ", e.bytes_received, " ", e.bytes_sent, " ",
      absl::ToInt64Milliseconds(e.duration), " ", OrDash(e.upstream_service_time), " \"",
      OrDash(e.forwarded_for), "\" \"", OrDash(e.user_agent), "\" \"", OrDash(e.request_id),
      "\" \"", OrDash(e.authority), "\" \"", OrDash(e.upstream_host), "\"\n");
}

}  // namespace sluice::gateway
