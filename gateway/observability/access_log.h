#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace sluice::gateway {

// One request as Envoy's default access-log format describes it.
struct AccessLogEntry {
  absl::Time start_time;
  std::string method;
  std::string path;  // x-envoy-original-path when the path was rewritten, else :path
  std::string protocol = "HTTP/1.1";
  uint32_t response_code = 0;  // 0: no response was sent
  std::string response_flags = "-";
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  absl::Duration duration;
  std::string upstream_service_time;  // x-envoy-upstream-service-time, ms
  std::string forwarded_for;
  std::string user_agent;
  std::string request_id;
  std::string authority;
  std::string upstream_host;
};

// Envoy's default format, one line with its newline:
// [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
// %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
// Empty values print as "-".
std::string FormatAccessLog(const AccessLogEntry& entry);

}  // namespace sluice::gateway
