#include "gateway/observability/access_log.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sluice::gateway {
namespace {

absl::string_view OrDash(absl::string_view s) { return s.empty() ? "-" : s; }

}  // namespace

std::string FormatAccessLog(const AccessLogEntry& e) {
  std::string line;
  AppendAccessLog(e, line);
  return line;
}

void AppendAccessLog(const AccessLogEntry& e, std::string& out) {
  // The time by hand: absl::FormatTime returns a new string, and this runs for every request.
  const absl::TimeZone::CivilInfo t = absl::UTCTimeZone().At(e.start_time);
  const int64_t millis = absl::ToInt64Milliseconds(t.subsecond);
  char time[32];
  const int n = std::snprintf(time, sizeof time, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              static_cast<int>(t.cs.year()), t.cs.month(), t.cs.day(), t.cs.hour(),
                              t.cs.minute(), t.cs.second(), static_cast<int>(millis));
  absl::StrAppend(&out, "[", absl::string_view(time, static_cast<size_t>(n)), "] \"",
                  OrDash(e.method), " ", OrDash(e.path), " ", OrDash(e.protocol), "\" ",
                  e.response_code, " ", OrDash(e.response_flags), " ", e.bytes_received, " ",
                  e.bytes_sent, " ", absl::ToInt64Milliseconds(e.duration), " ",
                  OrDash(e.upstream_service_time), " \"", OrDash(e.forwarded_for), "\" \"",
                  OrDash(e.user_agent), "\" \"", OrDash(e.request_id), "\" \"", OrDash(e.authority),
                  "\" \"", OrDash(e.upstream_host), "\"\n");
}

}  // namespace sluice::gateway
