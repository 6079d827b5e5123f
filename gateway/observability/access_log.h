#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace sluice::gateway {

// One request as Envoy's default access-log format describes it.
struct AccessLogEntry {
  absl::Time start_time;
  // Views of the caller's strings, which outlive the formatting.
  absl::string_view method;
  absl::string_view path;  // x-envoy-original-path when the path was rewritten, else :path
  absl::string_view protocol = "HTTP/1.1";
  uint32_t response_code = 0;  // 0: no response was sent
  absl::string_view response_flags = "-";
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  absl::Duration duration;
  absl::string_view upstream_service_time;  // x-envoy-upstream-service-time, ms
  absl::string_view forwarded_for;
  absl::string_view user_agent;
  absl::string_view request_id;
  absl::string_view authority;
  absl::string_view upstream_host;
};

// Envoy's default format, one line with its newline:
// [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
// %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
// Empty values print as "-".
std::string FormatAccessLog(const AccessLogEntry& entry);
// The same line appended to `out` (no allocation when `out` has the room).
void AppendAccessLog(const AccessLogEntry& entry, std::string& out);

}  // namespace sluice::gateway
