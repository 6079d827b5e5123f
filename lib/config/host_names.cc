#include "lib/config/host_names.h"

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sluice::config {
namespace {

bool IsLabelChar(char c) { return absl::ascii_isalnum(c) || c == '-'; }

// A literal IPv4 or IPv6 address, optionally in brackets or with a /prefix length.
bool LooksLikeIp(absl::string_view host) {
  if (host.empty()) return false;
  std::string address(host);
  if (address.front() == '[' && address.back() == ']')
    address = address.substr(1, address.size() - 2);
  const size_t slash = address.find('/');
  int max_prefix = 32;
  std::string prefix;
  if (slash != std::string::npos) {
    prefix = address.substr(slash + 1);
    address = address.substr(0, slash);
  }
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, address.c_str(), buf) != 1) {
    if (inet_pton(AF_INET6, address.c_str(), buf) != 1) return false;
    max_prefix = 128;
  }
  int bits = 0;
  return slash == std::string::npos ||
         (absl::SimpleAtoi(prefix, &bits) && bits >= 0 && bits <= max_prefix);
}

}  // namespace

bool IsIpAddress(absl::string_view host) { return LooksLikeIp(host); }

std::string ResolveHost(absl::string_view host, absl::string_view namespace_name) {
  std::string lower = absl::AsciiStrToLower(host);
  if (lower.empty() || lower == "*" || absl::StartsWith(lower, "*.") ||
      lower.find('.') != std::string::npos || LooksLikeIp(lower)) {
    return lower;
  }
  return absl::StrCat(lower, ".", namespace_name.empty() ? "default" : namespace_name, ".",
                      kClusterDomainSuffix);
}

absl::string_view StripPort(absl::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return close == absl::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  size_t colon = authority.rfind(':');
  if (colon == absl::string_view::npos) return authority;
  // Only strip a numeric port; a bare IPv6 address has several colons.
  if (authority.find(':') != colon) return authority;
  return authority.substr(0, colon);
}

bool IsDns1123Label(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (s.front() == '-' || s.back() == '-') return false;
  for (char c : s) {
    if (!IsLabelChar(c)) return false;
  }
  return true;
}

bool IsDns1123Subdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (!IsDns1123Label(label)) return false;
    for (char c : label) {
      if (absl::ascii_isupper(c)) return false;
    }
  }
  return true;
}

std::string CheckHostName(absl::string_view host, bool allow_wildcard) {
  if (host.empty()) return "must not be empty";
  if (host == "*") return allow_wildcard ? "" : "wildcard host * is not allowed here";
  if (LooksLikeIp(host)) return "";
  absl::string_view name = host;
  if (absl::StartsWith(name, "*.")) {
    if (!allow_wildcard) return "wildcard hosts are not allowed here";
    name.remove_prefix(2);
  }
  if (name.size() > 255) return "must be at most 255 characters";
  absl::string_view last;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (!IsDns1123Label(label)) {
      return absl::StrCat("\"", host, "\" is not a valid domain name");
    }
    last = label;
  }
  // A numeric top-level label is neither a domain nor (having failed above) an address.
  if (std::all_of(last.begin(), last.end(), absl::ascii_isdigit)) {
    return absl::StrCat("\"", host, "\" is not a valid domain name or IP address");
  }
  return "";
}

bool HostMatches(absl::string_view pattern, absl::string_view host) {
  if (pattern == "*") return true;
  if (absl::StartsWith(pattern, "*.")) {
    absl::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && absl::EndsWithIgnoreCase(host, suffix);
  }
  return absl::EqualsIgnoreCase(pattern, host);
}

}  // namespace sluice::config
