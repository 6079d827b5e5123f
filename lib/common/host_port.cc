#include "lib/common/host_port.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

std::string HostPortList::ToString() const {
  return absl::StrJoin(entries, ",", [](std::string* out, const HostPort& hp) {
    absl::StrAppend(out, hp.ToString());
  });
}

bool AbslParseFlag(absl::string_view text, HostPortList* out, std::string* error) {
  HostPortList list;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(entry);
    if (!parsed.ok()) {
      *error = absl::StrCat(
          "want HOST:PORT[,HOST:PORT...] such as 127.0.0.1:7070 or "
          "10.0.0.1:7070,10.0.0.2:7070 (",
          entry.empty() ? "an empty entry" : parsed.status().message(), ")");
      return false;
    }
    list.entries.push_back(*std::move(parsed));
  }
  *out = std::move(list);
  return true;
}

std::string AbslUnparseFlag(const HostPortList& value) { return value.ToString(); }

absl::StatusOr<std::string> GrpcTarget(const HostPortList& list) {
  if (list.entries.empty()) return Bad("no address");
  if (list.entries.size() == 1) return list.entries.front().ToString();
  const auto is = [](int family, const std::string& host) {
    unsigned char buffer[sizeof(in6_addr)];
    return inet_pton(family, host.c_str(), buffer) == 1;
  };
  for (int family : {AF_INET, AF_INET6}) {
    if (std::all_of(list.entries.begin(), list.entries.end(),
                    [&](const HostPort& hp) { return is(family, hp.host); })) {
      return absl::StrCat(family == AF_INET ? "ipv4:" : "ipv6:", list.ToString());
    }
  }
  return Bad(
      "several addresses must all be IPv4 or all IPv6 addresses; for replicas behind a host "
      "name, give the name once (every address it resolves to is used)");
}

}  // namespace sluice
