#pragma once

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace sluice::config {

inline constexpr absl::string_view kClusterDomainSuffix = "svc.cluster.local";

// Istio's rule for hosts in VirtualService, DestinationRule and Canary: a short name (no
// dot) is qualified with the resource's namespace, so `reviews` in namespace `default`
// becomes `reviews.default.svc.cluster.local`. Names with a dot and wildcards are kept.
// The result is lower case.
std::string ResolveHost(absl::string_view host, absl::string_view namespace_name);

// `reviews:9080` -> `reviews`; `[::1]:80` -> `[::1]`. Leaves a bare host unchanged.
absl::string_view StripPort(absl::string_view authority);

// Empty string when valid, else what is wrong. Accepts DNS names, `*` and `*.suffix`
// wildcards (when allowed) and IP addresses.
std::string CheckHostName(absl::string_view host, bool allow_wildcard);

// A literal IPv4/IPv6 address (brackets and a /prefix length allowed).
bool IsIpAddress(absl::string_view host);

// RFC 1123 label: 1-63 characters of letters, digits and '-', not starting or ending in '-'.
bool IsDns1123Label(absl::string_view s);
// RFC 1123 subdomain: dot-separated labels, at most 253 characters, lower case.
bool IsDns1123Subdomain(absl::string_view s);

// True when `host` (a concrete name) is covered by `pattern` (a name or a wildcard).
bool HostMatches(absl::string_view pattern, absl::string_view host);

}  // namespace sluice::config
