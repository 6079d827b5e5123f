#pragma once

// HOST:PORT on every command line: `127.0.0.1:7070`, `localhost:7070`, `[::1]:7070`.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

struct HostPort {
  // Without brackets ("::1"): what Asio's make_address and getaddrinfo take.
  std::string host;
  uint16_t port = 0;

  // "127.0.0.1:7070", "[::1]:7070": brackets around a host holding ':', as gRPC's target
  // names and URLs want it. Parses back to the same value.
  std::string ToString() const;

  friend bool operator==(const HostPort&, const HostPort&) = default;
};

// Parses HOST:PORT. An IPv6 address needs its brackets (`::1:7070` could be the address
// ::1:7070 without a port, or ::1 with port 7070); the host may not be empty and the port is
// 0 to 65535 in decimal digits. The error's message says what is wrong ("no port"), for the
// caller to put after what it wants (HostPortWant() for a plain HOST:PORT).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// "want HOST:PORT such as 127.0.0.1:7070 or [::1]:7070 (no port)": the message of a flag or a
// variable ParseHostPort refused with `error`.
std::string HostPortWant(const absl::Status& error);

// Abseil flags of type HostPort (`ABSL_FLAG(sluice::HostPort, listen, ...)`).
bool AbslParseFlag(absl::string_view text, HostPort* out, std::string* error);
std::string AbslUnparseFlag(const HostPort& value);

}  // namespace sluice
