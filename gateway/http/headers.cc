#include "gateway/http/headers.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace sluice::gateway {

void StripHopByHop(http::HeaderMap& headers) {
  // Headers named by Connection are hop-by-hop too (RFC 9110 7.6.1). Copied out before any
  // removal: Remove() keeps the views valid, but the names outlive this loop.
  std::vector<std::string> named;
  headers.ForEach([&](absl::string_view name, absl::string_view value) {
    if (!absl::EqualsIgnoreCase(name, "connection")) return;
    for (absl::string_view token : absl::StrSplit(value, ',')) {
      token = absl::StripAsciiWhitespace(token);
      if (!token.empty()) named.emplace_back(token);
    }
  });
  for (const std::string& name : named) headers.Remove(name);
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                           "transfer-encoding", "upgrade"}) {
    headers.Remove(name);
  }
}

void StripInternalRequestHeaders(http::HeaderMap& headers) {
  static constexpr const char* kInternal[] = {
      "x-envoy-retry-on",
      "x-envoy-retry-grpc-on",
      "x-envoy-max-retries",
      "x-envoy-retriable-status-codes",
      "x-envoy-retriable-header-names",
      "x-envoy-upstream-rq-timeout-ms",
      "x-envoy-upstream-rq-per-try-timeout-ms",
      "x-envoy-upstream-rq-timeout-alt-response",
      "x-envoy-expected-rq-timeout-ms",
      "x-envoy-hedge-on-per-try-timeout",
      "x-envoy-internal",
      "x-envoy-original-path",
      "x-envoy-attempt-count",
  };
  for (const char* name : kInternal) headers.Remove(name);
}

void SetForwardingHeaders(http::HeaderMap& headers, const ForwardContext& c) {
  if (!c.request_id.empty()) headers.Set("x-request-id", c.request_id);
  if (!c.client_address.empty()) {
    std::optional<absl::string_view> existing = headers.Get("x-forwarded-for");
    if (!existing.has_value()) {
      headers.Set("x-forwarded-for", c.client_address);
    } else {
      headers.Set("x-forwarded-for", absl::StrCat(*existing, ", ", c.client_address));
    }
  }
  if (!headers.Get("x-forwarded-proto").has_value()) headers.Set("x-forwarded-proto", "http");
  headers.Set("x-envoy-attempt-count", absl::StrCat(c.attempt));
  if (!c.authority.empty()) headers.Set("host", c.authority);
  if (!c.original_path.empty()) headers.Set("x-envoy-original-path", c.original_path);
}

void ApplyHeaderMutation(http::HeaderMap& headers, const v1::HeaderMutation& m) {
  for (const std::string& name : m.remove()) headers.Remove(name);
  for (const v1::Header& h : m.set()) headers.Set(h.name(), h.value());
  for (const v1::Header& h : m.add()) headers.Add(h.name(), h.value());
}

std::string NewRequestId(absl::BitGenRef rng) {
  std::string id;
  NewRequestId(rng, id);
  return id;
}

void NewRequestId(absl::BitGenRef rng, std::string& id) {
  const uint64_t hi = absl::Uniform<uint64_t>(rng);
  const uint64_t lo = absl::Uniform<uint64_t>(rng);
  // Version 4 (random) and the RFC 4122 variant bits.
  const uint64_t h = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const uint64_t l = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  // 8-4-4-4-12 hex digits, written by hand: this runs for most requests, and a formatted
  // print costs more than the rest of the id.
  static constexpr char kHex[] = "0123456789abcdef";
  id.assign(36, '-');  // in the buffer `id` has, when it holds 36 bytes
  size_t at = 0;
  auto put = [&](uint64_t value, int digits) {
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
      id[at++] = kHex[(value >> shift) & 0xf];
    ++at;  // past the '-'
  };
  put(h >> 32, 8);
  put((h >> 16) & 0xffff, 4);
  put(h & 0xffff, 4);
  put(l >> 48, 4);
  put(l & 0xffffffffffffULL, 12);
}

}  // namespace sluice::gateway
