#pragma once

// HOST:PORT on every command line: `127.0.0.1:7070`, `localhost:7070`, `[::1]:7070`.

#include <cstdint>
#include <string>
#include <vector>

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

// Several HOST:PORT, comma-separated (`10.0.0.1:7070,10.0.0.2:7070`): every replica of a
// service, for a client that fails over between them.
struct HostPortList {
  std::vector<HostPort> entries;

  // The entries joined by commas; parses back to the same value.
  std::string ToString() const;
};

// Abseil flags of type HostPortList. Each entry is read as ParseHostPort reads one; an empty
// entry or list is an error.
bool AbslParseFlag(absl::string_view text, HostPortList* out, std::string* error);
std::string AbslUnparseFlag(const HostPortList& value);

// The gRPC channel target that reaches every entry: one entry as it is (gRPC's resolver finds
// every address of a name), several IP addresses of one family as gRPC's `ipv4:` or `ipv6:`
// address list. Several entries with a host name among them are refused (gRPC cannot list
// names in one target): the message says to give the name once.
absl::StatusOr<std::string> GrpcTarget(const HostPortList& list);

}  // namespace sluice
