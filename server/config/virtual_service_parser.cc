#include <algorithm>
#include <array>
#include <set>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/config/host_names.h"
#include "re2/re2.h"
#include "server/config/http_status.h"
#include "server/config/parsers.h"

namespace sluice::config {
namespace {

constexpr size_t kMaxRegexLength = 1024;
constexpr size_t kMaxDirectResponseBody = 1 << 20;
constexpr size_t kWarnDirectResponseBody = 100 << 10;

constexpr std::array<absl::string_view, 16> kRetryOnConditions = {"5xx",
                                                                  "gateway-error",
                                                                  "reset",
                                                                  "reset-before-request",
                                                                  "connect-failure",
                                                                  "retriable-4xx",
                                                                  "refused-stream",
                                                                  "retriable-status-codes",
                                                                  "retriable-headers",
                                                                  "envoy-ratelimited",
                                                                  "http3-post-connect-failure",
                                                                  "cancelled",
                                                                  "deadline-exceeded",
                                                                  "internal",
                                                                  "resource-exhausted",
                                                                  "unavailable"};

constexpr std::array<absl::string_view, 17> kGrpcStatusNames = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

bool IsHeaderNameChar(char c) {
  return absl::ascii_isalnum(c) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

// Header names in match rules and header operations: an HTTP token. Match rules also require
// lower case, as Istio's webhook does.
bool CheckHeaderName(const std::string& name, const Field& f, const ParseContext& ctx,
                     bool require_lower_case) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), IsHeaderNameChar)) {
    ctx.Error(f.node, f.path, absl::StrCat("\"", name, "\" is not a valid header name"));
    return false;
  }
  if (require_lower_case && name != absl::AsciiStrToLower(name)) {
    ctx.Error(f.node, f.path, "header names must be lower case");
    return false;
  }
  return true;
}

// Envoy's HTTP_HEADER_VALUE rule (base.proto's HeaderValue.value, and the rewrites' literals):
// no NUL, CR or LF. A value with a line break would end the header line early and let the
// configuration write headers of its own, or a second request, into the upstream stream.
bool CheckHeaderValue(const std::string& value, const Field& f, const ParseContext& ctx) {
  const size_t bad = value.find_first_of(std::string_view("\0\r\n", 3));
  if (bad == std::string::npos) return true;
  const char* what = value[bad] == '\0' ? "a NUL byte" : value[bad] == '\r' ? "a CR" : "a LF";
  ctx.Error(f.node, f.path,
            absl::StrCat("contains ", what, " at offset ", bad,
                         ": a header value or rewrite must be one line (Envoy's HTTP_HEADER_VALUE "
                         "rule), or it would split the upstream request"));
  return false;
}

bool CheckRegex(const std::string& regex, const Field& f, const ParseContext& ctx) {
  if (regex.empty()) {
    ctx.Error(f.node, f.path, "regex must not be empty");
    return false;
  }
  if (regex.size() > kMaxRegexLength) {
    ctx.Error(f.node, f.path,
              absl::StrCat("regex must be at most ", kMaxRegexLength, " characters, found ",
                           regex.size()));
    return false;
  }
  RE2 re(regex, RE2::Quiet);
  if (!re.ok()) {
    ctx.Error(f.node, f.path, absl::StrCat("invalid RE2 regex: ", re.error()));
    return false;
  }
  return true;
}

// `allow_presence`: an empty StringMatch ({}) or regex "*" means "present" in headers and
// query parameters; for uri, scheme, method and authority a match type is required.
std::optional<StringMatch> ParseStringMatch(const Field& f, const ParseContext& ctx,
                                            bool allow_presence, bool is_uri = false) {
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  StringMatch out;
  int kinds = 0;
  for (auto [key, kind] : {std::pair{"exact", StringMatch::Kind::kExact},
                           std::pair{"prefix", StringMatch::Kind::kPrefix},
                           std::pair{"regex", StringMatch::Kind::kRegex}}) {
    std::optional<Field> v = m.Get(key);
    if (!v) continue;
    std::optional<std::string> s = ReadString(*v, ctx);
    if (!s) return std::nullopt;
    ++kinds;
    out.kind = kind;
    out.value = *s;
    // Istio's validateStringMatch: an empty prefix is allowed for uri only.
    if (kind == StringMatch::Kind::kPrefix && s->empty() && !is_uri) {
      ctx.Error(v->node, v->path, "prefix must not be empty");
      return std::nullopt;
    }
    if (kind == StringMatch::Kind::kRegex) {
      if (allow_presence && *s == "*") {
        out.kind = StringMatch::Kind::kPresent;
        out.value.clear();
      } else if (!CheckRegex(*s, *v, ctx)) {
        return std::nullopt;
      }
    }
  }
  if (kinds > 1) {
    ctx.Error(f.node, f.path, "only one of exact, prefix or regex may be set");
    return std::nullopt;
  }
  if (kinds == 0) {
    if (!allow_presence) {
      ctx.Error(f.node, f.path, "must set one of exact, prefix or regex");
      return std::nullopt;
    }
    out.kind = StringMatch::Kind::kPresent;
  }
  return out;
}

std::vector<NamedStringMatch> ParseNamedMatches(const Field& f, const ParseContext& ctx,
                                                bool header_names) {
  std::vector<NamedStringMatch> out;
  ForEachEntry(f, ctx, [&](const std::string& key, const Field& value) {
    if (header_names) {
      if (!CheckHeaderName(key, value, ctx, /*require_lower_case=*/true)) return;
      if (key == "uri" || key == "scheme" || key == "method" || key == "authority") {
        ctx.Warning(value.node, value.path,
                    absl::StrCat("Istio ignores the header key \"", key, "\"; use the ", key,
                                 " field of the match instead"));
        return;
      }
    } else if (key.empty()) {
      ctx.Error(value.node, value.path, "query parameter name must not be empty");
      return;
    }
    if (std::optional<StringMatch> m = ParseStringMatch(value, ctx, /*allow_presence=*/true)) {
      out.push_back(NamedStringMatch{key, *m});
    }
  });
  return out;
}

std::optional<uint32_t> ReadPort(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 1, 65535);
  if (!v) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

// `port: {number: 9080}` as used by Destination and PortSelector.
std::optional<uint32_t> ReadPortSelector(const Field& f, const ParseContext& ctx) {
  MapReader m(f, ctx);
  std::optional<Field> number = m.Get("number");
  if (!number) {
    if (m.ok()) ctx.Error(f.node, JoinPath(f.path, "number"), "is required");
    return std::nullopt;
  }
  return ReadPort(*number, ctx);
}

HTTPMatchRequest ParseMatch(const Field& f, const ParseContext& ctx) {
  HTTPMatchRequest out;
  out.path = f.path;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (auto v = m.Get("name")) out.name = ReadString(*v, ctx).value_or("");
  if (auto v = m.Get("uri")) out.uri = ParseStringMatch(*v, ctx, false, /*is_uri=*/true);
  if (auto v = m.Get("scheme")) out.scheme = ParseStringMatch(*v, ctx, false);
  if (auto v = m.Get("method")) out.method = ParseStringMatch(*v, ctx, false);
  if (auto v = m.Get("authority")) out.authority = ParseStringMatch(*v, ctx, false);
  if (auto v = m.Get("headers")) out.headers = ParseNamedMatches(*v, ctx, true);
  if (auto v = m.Get("withoutHeaders")) out.without_headers = ParseNamedMatches(*v, ctx, true);
  if (auto v = m.Get("queryParams")) out.query_params = ParseNamedMatches(*v, ctx, false);
  if (auto v = m.Get("ignoreUriCase")) out.ignore_uri_case = ReadBool(*v, ctx).value_or(false);
  if (auto v = m.Get("port")) out.port = ReadPort(*v, ctx);
  if (auto v = m.Get("sourceLabels")) out.source_labels = ReadStringMap(*v, ctx);
  if (auto v = m.Get("gateways")) out.gateways = ReadStringList(*v, ctx);
  if (auto v = m.Get("sourceNamespace")) out.source_namespace = ReadString(*v, ctx).value_or("");
  m.Ignore("statPrefix");
  if (out.ignore_uri_case && out.uri && out.uri->kind == StringMatch::Kind::kRegex) {
    ctx.Warning(f.node, JoinPath(f.path, "ignoreUriCase"),
                "has no effect on a regex uri match (Envoy ignores it); use (?i) in the regex");
  }
  return out;
}

Destination ParseDestination(const Field& f, const ParseContext& ctx) {
  Destination out;
  MapReader m(f, ctx);
  if (auto v = m.Get("host")) {
    out.host = ReadString(*v, ctx).value_or("");
    if (out.host == "*") {
      ctx.Error(v->node, v->path, "destination host must not be *");
    } else if (std::string problem = CheckHostName(out.host, /*allow_wildcard=*/false);
               !problem.empty()) {
      ctx.Error(v->node, v->path, problem);
    }
  } else if (m.ok()) {
    ctx.Error(f.node, JoinPath(f.path, "host"), "is required");
  }
  if (auto v = m.Get("subset")) {
    out.subset = ReadString(*v, ctx).value_or("");
    out.subset_location = ctx.At(v->node);
    if (!out.subset.empty() && !IsDns1123Label(out.subset)) {
      ctx.Error(v->node, v->path,
                absl::StrCat("subset \"", out.subset, "\" is not a valid DNS-1123 label"));
    }
  }
  if (auto v = m.Get("port")) out.port = ReadPortSelector(*v, ctx);
  return out;
}

HeaderOperations ParseHeaderOperations(const Field& f, const ParseContext& ctx) {
  HeaderOperations out;
  MapReader m(f, ctx);
  auto read_pairs = [&](const char* key, Labels& into) {
    if (auto v = m.Get(key)) {
      ForEachEntry(*v, ctx, [&](const std::string& name, const Field& value) {
        if (!CheckHeaderName(name, value, ctx, /*require_lower_case=*/false)) return;
        if (auto s = ReadString(value, ctx); s && CheckHeaderValue(*s, value, ctx)) {
          into.emplace_back(absl::AsciiStrToLower(name), *s);
        }
      });
    }
  };
  read_pairs("set", out.set);
  read_pairs("add", out.add);
  if (auto v = m.Get("remove")) {
    ForEachItem(*v, ctx, [&](const Field& item, size_t) {
      if (auto s = ReadString(item, ctx)) {
        if (CheckHeaderName(*s, item, ctx, false)) out.remove.push_back(absl::AsciiStrToLower(*s));
      }
    });
  }
  return out;
}

Headers ParseHeaders(const Field& f, const ParseContext& ctx) {
  Headers out;
  MapReader m(f, ctx);
  if (auto v = m.Get("request")) out.request = ParseHeaderOperations(*v, ctx);
  if (auto v = m.Get("response")) out.response = ParseHeaderOperations(*v, ctx);
  return out;
}

// Istio's validatePercentage: 0, or between 0.0001 and 100. Envoy receives value x 10^4 parts
// per million, truncated.
std::optional<FractionalPercent> ParsePercentage(const Field& f, const ParseContext& ctx,
                                                 bool allow_tiny) {
  MapReader m(f, ctx);
  std::optional<Field> value = m.Get("value");
  double v = 0;
  if (value) {
    std::optional<double> d = ReadDouble(*value, ctx);
    if (!d) return std::nullopt;
    v = *d;
    if (v < 0 || v > 100 || (!allow_tiny && v > 0 && v < 0.0001)) {
      ctx.Error(value->node, value->path,
                absl::StrCat("must be 0 or between 0.0001 and 100, found ", value->node.Scalar()));
      return std::nullopt;
    }
  }
  return FractionalPercent{static_cast<uint32_t>(v * 10000.0), 1'000'000};
}

std::optional<FractionalPercent> ParseIntPercent(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 0, 100);
  if (!v) return std::nullopt;
  return FractionalPercent{static_cast<uint32_t>(*v), 100};
}

std::optional<HTTPRetry> ParseRetries(const Field& f, const ParseContext& ctx,
                                      const std::optional<absl::Duration>& route_timeout) {
  HTTPRetry out;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("attempts")) {
    out.attempts = static_cast<int32_t>(ReadInt(*v, ctx, 0, INT32_MAX).value_or(0));
  }
  std::optional<Field> per_try = m.Get("perTryTimeout");
  if (per_try) out.per_try_timeout = ReadIstioDuration(*per_try, ctx);
  std::optional<Field> retry_on = m.Get("retryOn");
  if (retry_on) {
    out.retry_on = ReadString(*retry_on, ctx);
    // An empty retryOn is accepted and keeps Istio's default conditions.
    if (out.retry_on && !out.retry_on->empty()) {
      // Istio's webhook splits on ',' without trimming, so "5xx, reset" is an error.
      for (absl::string_view token : absl::StrSplit(*out.retry_on, ',')) {
        int code = 0;
        const bool has_space = std::any_of(token.begin(), token.end(), absl::ascii_isspace);
        if (IsRetryOnCondition(token)) {
          if (token == "retriable-4xx") {
            ctx.Warning(retry_on->node, retry_on->path,
                        "retriable-4xx retries 409 only (as Envoy does); list 429 or other "
                        "codes explicitly to retry them");
          }
          continue;
        }
        // Go's strconv.Atoi, unlike SimpleAtoi, takes no surrounding spaces.
        if (!has_space && absl::SimpleAtoi(token, &code) && IsKnownHttpStatus(code)) continue;
        ctx.Error(retry_on->node, retry_on->path,
                  absl::StrCat("\"", token,
                               "\" is not a valid retryOn condition or HTTP "
                               "status code (conditions are comma-separated, without spaces)"));
      }
    }
  }
  std::optional<Field> remote = m.Get("retryRemoteLocalities");
  if (remote) out.retry_remote_localities = ReadBool(*remote, ctx).value_or(false);
  if (auto v = m.Get("retryIgnorePreviousHosts")) {
    out.retry_ignore_previous_hosts = ReadBool(*v, ctx);
  }
  if (auto v = m.Get("backoff")) out.backoff = ReadIstioDuration(*v, ctx);
  if (out.attempts == 0) {
    const bool retry_on_set = retry_on.has_value() && out.retry_on && !out.retry_on->empty();
    for (const auto& [field, set] :
         {std::pair{&per_try, per_try.has_value()}, std::pair{&retry_on, retry_on_set},
          std::pair{&remote, remote.has_value()}}) {
      if (set) {
        ctx.Error((*field)->node, (*field)->path,
                  "cannot be set when attempts is 0 (retries are disabled)");
      }
    }
  }
  if (out.per_try_timeout && route_timeout && *out.per_try_timeout >= *route_timeout) {
    ctx.Warning(per_try->node, per_try->path,
                "is not shorter than the route timeout, so Envoy ignores it");
  }
  return out;
}

std::optional<HTTPFaultInjection> ParseFault(const Field& f, const ParseContext& ctx) {
  HTTPFaultInjection out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto d = m.Get("delay")) {
    FaultDelay delay;
    MapReader dm(*d, ctx);
    if (auto v = dm.Get("fixedDelay")) delay.fixed_delay = ReadIstioDuration(*v, ctx);
    if (auto v = dm.Get("exponentialDelay")) {
      ctx.Error(v->node, v->path, "exponentialDelay is not supported (Istio rejects it too)");
    }
    std::optional<Field> pct = dm.Get("percentage");
    std::optional<Field> legacy = dm.Get("percent");
    if (pct && legacy) {
      ctx.Error(legacy->node, legacy->path, "cannot be set together with percentage");
    } else if (pct) {
      delay.percentage = ParsePercentage(*pct, ctx, false);
    } else if (legacy) {
      delay.percentage = ParseIntPercent(*legacy, ctx);
    }
    if (!d->node.IsMap() || (!dm.Has("fixedDelay") && !dm.Has("exponentialDelay"))) {
      if (dm.ok()) ctx.Error(d->node, JoinPath(d->path, "fixedDelay"), "is required");
    }
    out.delay = delay;
  }
  if (auto a = m.Get("abort")) {
    FaultAbort abort;
    MapReader am(*a, ctx);
    int kinds = 0;
    if (auto v = am.Get("httpStatus")) {
      ++kinds;
      // Istio's webhook allows 600 but Envoy's proto is [200, 600) and would reject it.
      if (auto s = ReadInt(*v, ctx, 200, 599)) abort.http_status = static_cast<uint32_t>(*s);
    }
    if (auto v = am.Get("grpcStatus")) {
      ++kinds;
      abort.grpc_status = ReadString(*v, ctx).value_or("");
      if (std::find(kGrpcStatusNames.begin(), kGrpcStatusNames.end(), abort.grpc_status) ==
          kGrpcStatusNames.end()) {
        ctx.Error(v->node, v->path,
                  absl::StrCat("\"", abort.grpc_status,
                               "\" is not a gRPC status name (for example UNAVAILABLE)"));
      }
    }
    if (auto v = am.Get("http2Error")) {
      ++kinds;
      ctx.Error(v->node, v->path, "http2Error is not supported (Istio rejects it too)");
    }
    if (kinds > 1) {
      ctx.Error(a->node, a->path, "only one of httpStatus, grpcStatus or http2Error may be set");
    }
    if (kinds == 0 && am.ok()) {
      ctx.Warning(a->node, a->path, "has no httpStatus or grpcStatus, so it never aborts");
    }
    if (auto v = am.Get("percentage")) abort.percentage = ParsePercentage(*v, ctx, false);
    out.abort = abort;
  }
  if (!out.delay && !out.abort) {
    ctx.Error(f.node, f.path, "must set delay, abort or both");
    return std::nullopt;
  }
  if ((out.delay && !out.delay->percentage) || (out.abort && !out.abort->percentage)) {
    ctx.Notice(f.node, f.path,
               "a delay or abort without percentage never fires (Istio's default is 0%)");
  }
  return out;
}

std::optional<HTTPRedirect> ParseRedirect(const Field& f, const ParseContext& ctx) {
  HTTPRedirect out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("uri")) {
    out.uri = ReadString(*v, ctx).value_or("");
    CheckHeaderValue(out.uri, *v, ctx);  // it becomes the Location header
  }
  if (auto v = m.Get("authority")) {
    out.authority = ReadString(*v, ctx).value_or("");
    CheckHeaderValue(out.authority, *v, ctx);
  }
  if (auto v = m.Get("scheme")) {
    out.scheme = ReadString(*v, ctx).value_or("");
    if (out.scheme != "http" && out.scheme != "https") {
      ctx.Error(v->node, v->path, "must be http or https");
    }
  }
  std::optional<Field> port = m.Get("port");
  if (port) out.port = ReadPort(*port, ctx);
  if (auto v = m.Get("derivePort")) {
    std::string s = ReadString(*v, ctx).value_or("");
    if (s == "FROM_PROTOCOL_DEFAULT") {
      out.derive_port = HTTPRedirect::DerivePort::kFromProtocolDefault;
    } else if (s == "FROM_REQUEST_PORT") {
      out.derive_port = HTTPRedirect::DerivePort::kFromRequestPort;
    } else {
      ctx.Error(v->node, v->path, "must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT");
    }
    if (port) ctx.Error(v->node, v->path, "cannot be set together with port");
  }
  if (auto v = m.Get("redirectCode")) {
    if (auto code = ReadInt(*v, ctx, 300, 399)) {
      out.redirect_code = static_cast<uint32_t>(*code);
      if (*code != 301 && *code != 302 && *code != 303 && *code != 307 && *code != 308) {
        ctx.Error(v->node, v->path, "must be one of 301, 302, 303, 307 or 308");
      }
    }
  }
  if (out.uri.empty() && out.authority.empty() && out.scheme.empty() && !out.port &&
      out.derive_port == HTTPRedirect::DerivePort::kUnset) {
    ctx.Error(f.node, f.path, "must set at least one of uri, authority, scheme or port");
  }
  return out;
}

std::optional<HTTPDirectResponse> ParseDirectResponse(const Field& f, const ParseContext& ctx) {
  HTTPDirectResponse out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("status")) {
    out.status = static_cast<uint32_t>(ReadInt(*v, ctx, 200, 599).value_or(0));
  } else {
    ctx.Error(f.node, JoinPath(f.path, "status"), "is required");
  }
  if (auto b = m.Get("body")) {
    MapReader bm(*b, ctx);
    std::optional<Field> str = bm.Get("string");
    std::optional<Field> bytes = bm.Get("bytes");
    if (str && bytes) ctx.Error(b->node, b->path, "only one of string or bytes may be set");
    if (str) out.body = ReadString(*str, ctx);
    if (bytes) {
      // Base64 in the Kubernetes API; sluice serves it decoded.
      std::string raw = ReadString(*bytes, ctx).value_or("");
      std::string decoded;
      if (!absl::Base64Unescape(raw, &decoded)) {
        ctx.Error(bytes->node, bytes->path, "must be base64");
      }
      out.body = decoded;
    }
    if (out.body && out.body->size() > kMaxDirectResponseBody) {
      ctx.Error(b->node, b->path, "must be at most 1 MB");
    } else if (out.body && out.body->size() > kWarnDirectResponseBody) {
      ctx.Warning(b->node, b->path, "is larger than 100 KB");
    }
  }
  return out;
}

std::optional<HTTPRewrite> ParseRewrite(const Field& f, const ParseContext& ctx) {
  HTTPRewrite out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("uri")) {
    out.uri = ReadString(*v, ctx).value_or("");
    CheckHeaderValue(out.uri, *v, ctx);  // it becomes the request line's target
  }
  if (auto v = m.Get("authority")) {
    out.authority = ReadString(*v, ctx).value_or("");
    CheckHeaderValue(out.authority, *v, ctx);  // it becomes the Host header
  }
  if (auto v = m.Get("uriRegexRewrite")) {
    RegexRewrite rr;
    MapReader rm(*v, ctx);
    if (auto match = rm.Get("match")) {
      rr.match = ReadString(*match, ctx).value_or("");
      CheckRegex(rr.match, *match, ctx);
    } else if (rm.ok()) {
      ctx.Error(v->node, JoinPath(v->path, "match"), "is required");
    }
    if (auto rewrite = rm.Get("rewrite")) {
      rr.rewrite = ReadString(*rewrite, ctx).value_or("");
      CheckHeaderValue(rr.rewrite, *rewrite, ctx);
    } else if (rm.ok() && !rm.Has("rewrite")) {
      ctx.Error(v->node, JoinPath(v->path, "rewrite"), "is required");
    }
    out.uri_regex_rewrite = rr;
    if (!out.uri.empty()) ctx.Error(v->node, v->path, "cannot be set together with uri");
  }
  if (out.uri.empty() && out.authority.empty() && !out.uri_regex_rewrite) {
    ctx.Error(f.node, f.path, "must set uri, uriRegexRewrite or authority");
  }
  return out;
}

HTTPMirrorPolicy ParseMirrorPolicy(const Field& f, const ParseContext& ctx) {
  HTTPMirrorPolicy out;
  MapReader m(f, ctx);
  if (auto v = m.Get("destination")) {
    out.destination = ParseDestination(*v, ctx);
  } else if (m.ok()) {
    ctx.Error(f.node, JoinPath(f.path, "destination"), "is required");
  }
  if (auto v = m.Get("percentage")) out.percentage = ParsePercentage(*v, ctx, true);
  return out;
}

HTTPRoute ParseHttpRoute(const Field& f, const ParseContext& ctx) {
  HTTPRoute out;
  out.path = f.path;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (!m.ok()) return out;
  if (auto v = m.Get("name")) out.name = ReadString(*v, ctx).value_or("");
  if (auto v = m.Get("match")) {
    ForEachItem(*v, ctx,
                [&](const Field& item, size_t) { out.match.push_back(ParseMatch(item, ctx)); });
  }
  std::optional<Field> route = m.Get("route");
  if (route) {
    ForEachItem(*route, ctx, [&](const Field& item, size_t) {
      HTTPRouteDestination d;
      d.path = item.path;
      d.location = ctx.At(item.node);
      MapReader dm(item, ctx);
      if (auto v = dm.Get("destination")) {
        d.destination = ParseDestination(*v, ctx);
      } else if (dm.ok()) {
        ctx.Error(item.node, JoinPath(item.path, "destination"), "is required");
      }
      if (auto v = dm.Get("weight")) {
        d.weight = static_cast<int32_t>(ReadInt(*v, ctx, 0, INT32_MAX).value_or(0));
        d.weight_set = true;
      }
      if (auto v = dm.Get("headers")) d.headers = ParseHeaders(*v, ctx);
      out.route.push_back(std::move(d));
    });
    if (out.route.empty() && route->node.IsSequence()) {
      ctx.Error(route->node, route->path, "must list at least one destination");
    }
    if (out.route.size() > 1) {
      int64_t total = 0;
      for (const HTTPRouteDestination& d : out.route) total += d.weight;
      if (total == 0) {
        ctx.Error(route->node, route->path,
                  "with more than one destination the total weight must be greater than 0");
      } else if (total > UINT32_MAX) {
        ctx.Error(route->node, route->path, "total weight must be at most 4294967295");
      }
    }
  }
  std::optional<Field> redirect = m.Get("redirect");
  if (redirect) out.redirect = ParseRedirect(*redirect, ctx);
  std::optional<Field> direct = m.Get("directResponse");
  if (direct) out.direct_response = ParseDirectResponse(*direct, ctx);
  if (auto v = m.Get("delegate")) {
    ctx.Error(v->node, v->path, "delegate is not supported by sluice; inline the routes instead");
  }
  const int actions = (route ? 1 : 0) + (redirect ? 1 : 0) + (direct ? 1 : 0);
  if (actions == 0 && !m.Has("delegate")) {
    ctx.Error(f.node, f.path, "must set one of route, redirect or directResponse");
  } else if (actions > 1) {
    ctx.Error(f.node, f.path, "only one of route, redirect or directResponse may be set");
  }
  std::optional<Field> rewrite = m.Get("rewrite");
  if (rewrite) {
    out.rewrite = ParseRewrite(*rewrite, ctx);
    if (redirect || direct) {
      ctx.Error(rewrite->node, rewrite->path, "cannot be combined with redirect or directResponse");
    }
  }
  std::optional<Field> timeout = m.Get("timeout");
  if (timeout) out.timeout = ReadIstioDuration(*timeout, ctx);
  if (auto v = m.Get("retries")) out.retries = ParseRetries(*v, ctx, out.timeout);
  std::optional<Field> fault = m.Get("fault");
  if (fault) {
    out.fault = ParseFault(*fault, ctx);
    if (redirect || direct) {
      ctx.Error(fault->node, fault->path, "cannot be combined with redirect or directResponse");
    }
  }
  std::optional<Field> mirror = m.Get("mirror");
  std::optional<Field> mirrors = m.Get("mirrors");
  std::optional<Field> mirror_percentage = m.Get("mirrorPercentage");
  std::optional<Field> mirror_percent = m.Get("mirrorPercent");
  if (!mirror_percent) mirror_percent = m.Get("mirror_percent");
  if (mirror && mirrors) {
    ctx.Error(mirrors->node, mirrors->path, "cannot be set together with mirror");
  }
  if (mirror) {
    HTTPMirrorPolicy p;
    p.destination = ParseDestination(*mirror, ctx);
    if (mirror_percentage) {
      p.percentage = ParsePercentage(*mirror_percentage, ctx, true);
    } else if (mirror_percent) {
      p.percentage = ParseIntPercent(*mirror_percent, ctx);
    }
    out.mirrors.push_back(std::move(p));
  } else if (mirror_percentage || mirror_percent) {
    const Field& stray = mirror_percentage ? *mirror_percentage : *mirror_percent;
    ctx.Error(stray.node, stray.path, "needs mirror to be set");
  }
  if (mirrors) {
    ForEachItem(*mirrors, ctx, [&](const Field& item, size_t) {
      out.mirrors.push_back(ParseMirrorPolicy(item, ctx));
    });
  }
  if (auto v = m.Get("headers")) out.headers = ParseHeaders(*v, ctx);
  m.Ignore("corsPolicy", "CORS is not handled by sluice; the policy is ignored");
  // Authority may be set in one place only (Istio's validateAuthorityRewrite).
  if (out.rewrite && !out.rewrite->authority.empty()) {
    for (const auto& [name, value] : out.headers.request.set) {
      if (name == "host" || name == ":authority") {
        ctx.Error(rewrite->node, JoinPath(rewrite->path, "authority"),
                  "cannot be combined with a host/:authority header operation");
      }
    }
  }
  return out;
}

}  // namespace

bool IsRetryOnCondition(absl::string_view token) {
  return std::find(kRetryOnConditions.begin(), kRetryOnConditions.end(), token) !=
         kRetryOnConditions.end();
}

VirtualService ParseVirtualService(ObjectMeta meta, const Field& spec, const ParseContext& ctx) {
  VirtualService vs;
  vs.meta = std::move(meta);
  MapReader m(spec, ctx);
  if (!m.ok()) return vs;
  if (auto v = m.Get("gateways")) vs.gateways = ReadStringList(*v, ctx);
  const bool applies_to_mesh =
      vs.gateways.empty() ||
      std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") != vs.gateways.end();
  if (auto v = m.Get("hosts")) {
    std::set<std::string> seen;
    ForEachItem(*v, ctx, [&](const Field& item, size_t) {
      std::optional<std::string> host = ReadString(item, ctx);
      if (!host) return;
      if (*host == "*" && applies_to_mesh) {
        ctx.Error(item.node, item.path,
                  "wildcard host * is not allowed for a VirtualService that applies to the mesh "
                  "(set gateways)");
      } else if (std::string problem = CheckHostName(*host, /*allow_wildcard=*/true);
                 !problem.empty()) {
        ctx.Error(item.node, item.path, problem);
      }
      std::string resolved = ResolveHost(*host, vs.meta.namespace_name);
      // Istio rejects hosts of one VirtualService that overlap, such as *.example.com and
      // api.example.com, not only exact repeats.
      for (const std::string& other : seen) {
        if (HostMatches(other, resolved) || HostMatches(resolved, other)) {
          ctx.Error(item.node, item.path,
                    absl::StrCat("duplicate host \"", *host, "\": it overlaps \"", other, "\""));
          break;
        }
      }
      seen.insert(resolved);
      vs.hosts.push_back(*host);
    });
  }
  if (vs.hosts.empty()) {
    ctx.Error(spec.node, JoinPath(spec.path, "hosts"),
              "at least one host is required (delegate VirtualServices are not supported)");
  }
  if (auto v = m.Get("http")) {
    ForEachItem(*v, ctx,
                [&](const Field& item, size_t) { vs.http.push_back(ParseHttpRoute(item, ctx)); });
  }
  for (const char* key : {"tcp", "tls"}) {
    if (auto v = m.Get(key)) {
      int count = 0;
      ForEachItem(*v, ctx, [&](const Field& item, size_t) {
        MapReader rm(item, ctx);
        if (!rm.Has("route")) ctx.Error(item.node, JoinPath(item.path, "route"), "is required");
        rm.Ignore("match");
        rm.Ignore("route");
        ++count;
      });
      (absl::string_view(key) == "tcp" ? vs.tcp_route_count : vs.tls_route_count) = count;
      if (count > 0) {
        ctx.Warning(v->node, v->path,
                    absl::StrCat(count, " ", key,
                                 " route(s) are not supported by sluice (HTTP only) and are "
                                 "not served"));
      }
    }
  }
  m.Ignore("exportTo");
  if (vs.http.empty() && vs.tcp_route_count == 0 && vs.tls_route_count == 0) {
    ctx.Error(spec.node, spec.path, "must have at least one http, tcp or tls route");
  }
  return vs;
}

}  // namespace sluice::config
