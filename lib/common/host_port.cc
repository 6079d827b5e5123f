#include "lib/common/host_port.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sluice {
namespace {

absl::Status Bad(absl::string_view why) { return absl::InvalidArgumentError(why); }

}  // namespace

std::string HostPort::ToString() const {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  HostPort out;
  absl::string_view port;
  if (absl::StartsWith(text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) return Bad("no ']' after the IPv6 address");
    out.host = std::string(text.substr(1, close - 1));
    if (out.host.empty()) return Bad("empty host");
    // Brackets are for IPv6 addresses only, as in URLs.
    if (!absl::StrContains(out.host, ':')) return Bad("brackets around a host that is not IPv6");
    absl::string_view rest = text.substr(close + 1);
    if (!absl::ConsumePrefix(&rest, ":")) return Bad("no port after the ']'");
    port = rest;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return Bad("no port");
    out.host = std::string(text.substr(0, colon));
    if (out.host.empty()) return Bad("empty host");
    if (absl::StrContains(out.host, ':')) return Bad("an IPv6 address needs brackets");
    port = text.substr(colon + 1);
  }
  if (port.empty()) return Bad("no port");
  // Digits only: SimpleAtoi would also take a sign and surrounding spaces.
  uint32_t n = 0;
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &n) || n > 65535) {
    return Bad(absl::StrCat("the port, ", port, ", is not a number from 0 to 65535"));
  }
  out.port = static_cast<uint16_t>(n);
  return out;
}

std::string HostPortWant(const absl::Status& error) {
  return absl::StrCat("want HOST:PORT such as 127.0.0.1:7070 or [::1]:7070 (", error.message(),
                      ")");
}

bool AbslParseFlag(absl::string_view text, HostPort* out, std::string* error) {
  absl::StatusOr<HostPort> parsed = ParseHostPort(text);
  if (!parsed.ok()) {
    *error = HostPortWant(parsed.status());
    return false;
  }
  *out = *std::move(parsed);
  return true;
}

std::string AbslUnparseFlag(const HostPort& value) { return value.ToString(); }

}  // namespace sluice
