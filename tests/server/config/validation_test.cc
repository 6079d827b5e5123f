// Istio-conformant validation: every rejected document must be reported with the file, the
// 1-based line and the full field path of the offending value; every accepted edge case must
// load without errors. The rules come from Istio's webhook and CRD schemas (see
// shared/reference/destinationrule-outlier-metrics.md section 9 and routing-semantics.md).
//
// A row's `why` names the Istio rule it pins where that is not obvious; many are rules an
// earlier sluice got wrong (the rows in the "once wrong" sections), kept as regressions.

#include "server/config/validation.h"

#include <algorithm>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"
#include "server/config/loader.h"

namespace sluice::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kFile[] = "test.yaml";

// ---------------------------------------------------------------------------------------------
// Document builders. Each states the line on which its variable part starts.

std::string ApiVersionOf(const std::string& kind) {
  return kind == "Canary" ? "sluice.dev/v1" : "networking.istio.io/v1";
}

// Lines 1-5 are the header (one metadata line); `spec_body` starts on line kSpec.
constexpr int kSpec = 6;
std::string Doc(const std::string& kind, const std::string& spec_body,
                const std::string& metadata = "  name: reviews\n") {
  return "apiVersion: " + ApiVersionOf(kind) + "\nkind: " + kind + "\nmetadata:\n" + metadata +
         "spec:\n" + spec_body;
}

// VirtualService for host `reviews`; the items of spec.http start on line kHttp.
constexpr int kHttp = 8;
std::string Vs(const std::string& http) {
  return Doc("VirtualService", "  hosts: [reviews]\n  http:\n" + http);
}
// The smallest valid first line of an http route item.
const std::string kRoute = "  - route: [{destination: {host: reviews}}]\n";

// DestinationRule for host `reviews`; `body` (more spec fields) starts on line kDr.
constexpr int kDr = 7;
std::string Dr(const std::string& body) {
  return Doc("DestinationRule", "  host: reviews\n" + body);
}

// Canary for host `reviews`; `body` starts on line kCanary.
constexpr int kCanary = 7;
std::string CanaryDoc(const std::string& body) { return Doc("Canary", "  host: reviews\n" + body); }

// Concatenates documents into one stream.
std::string Stream(const std::vector<std::string>& docs) {
  std::string out;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i > 0) out += "---\n";
    out += docs[i];
  }
  return out;
}

// Number of lines in `text` (every line ends with '\n').
int Lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// The text with line numbers, for failure messages.
std::string Numbered(const std::string& text) {
  std::string out;
  int line = 1;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += std::to_string(line++) + "| " + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

const std::string kDrV1V2 =
    Dr("  subsets:\n"
       "  - {name: v1, labels: {version: v1}}\n"
       "  - {name: v2, labels: {version: v2}}\n");
const std::string kDrV1Only =
    Dr("  subsets:\n"
       "  - {name: v1, labels: {version: v1}}\n");
const std::string kVsSplitV1V2 =
    Vs("  - route:\n"
       "    - destination: {host: reviews, subset: v1}\n"
       "      weight: 90\n"
       "    - destination: {host: reviews, subset: v2}\n"
       "      weight: 10\n");
const std::string kVsOnlyV1 = Vs("  - route: [{destination: {host: reviews, subset: v1}}]\n");
// A whole Canary document on one line: every field of it is on that line.
const std::string kCanaryOneLine =
    "{apiVersion: sluice.dev/v1, kind: Canary, metadata: {name: reviews}, "
    "spec: {host: reviews, stableSubset: v1, canarySubset: v2}}\n";

// A ServiceEntry for `reviews` with `count` static endpoints labelled version: v1 (and, when
// `v2_count` > 0, that many more labelled version: v2).
std::string ServiceEntryWithEndpoints(int count, int v2_count = 0) {
  std::string body =
      "  hosts: [reviews]\n"
      "  location: MESH_INTERNAL\n"
      "  resolution: STATIC\n"
      "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
      "  endpoints:\n";
  for (int i = 1; i <= count + v2_count; ++i) {
    body += "  - {address: 10.0.0." + std::to_string(i) +
            ", labels: {version: " + (i <= count ? "v1" : "v2") + "}}\n";
  }
  return Doc("ServiceEntry", body);
}

const Diagnostic* FindDiagnostic(const LoadResult& r, Severity severity, const std::string& path,
                                 const std::string& fragment) {
  for (const Diagnostic& d : r.diagnostics.all()) {
    if (d.severity == severity && d.field_path == path &&
        d.message.find(fragment) != std::string::npos) {
      return &d;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Invalid configurations.

struct InvalidCase {
  InvalidCase(std::string name, std::string yaml, std::string path, int line, std::string fragment,
              std::string why = "")
      : name(std::move(name)),
        yaml(std::move(yaml)),
        path(std::move(path)),
        line(line),
        fragment(std::move(fragment)),
        why(std::move(why)) {}

  std::string name;
  std::string yaml;
  std::string path;  // expected field_path of the error, exactly
  int line;          // expected 1-based line of the error
  std::string fragment;
  std::string why;  // the Istio rule this row pins, where it is not obvious
};

void PrintTo(const InvalidCase& c, std::ostream* os) { *os << c.name; }

std::vector<InvalidCase> InvalidCases() {
  std::vector<InvalidCase> rows = {
      // --- Durations: at least 1ms, whole milliseconds, Go syntax with a unit.
      {"TimeoutZero", Vs(kRoute + "    timeout: 0s\n"), "spec.http[0].timeout", kHttp + 1,
       "at least 1ms"},
      {"TimeoutNotWholeMilliseconds", Vs(kRoute + "    timeout: 1.5ms\n"), "spec.http[0].timeout",
       kHttp + 1, "whole number of milliseconds"},
      {"PerTryTimeoutMicroseconds",
       Vs(kRoute + "    retries: {attempts: 2, perTryTimeout: 500us}\n"),
       "spec.http[0].retries.perTryTimeout", kHttp + 1, "at least 1ms"},
      {"TimeoutNegative", Vs(kRoute + "    timeout: -1s\n"), "spec.http[0].timeout", kHttp + 1,
       "non-negative"},
      {"TimeoutWithoutUnit", Vs(kRoute + "    timeout: 10\n"), "spec.http[0].timeout", kHttp + 1,
       "with a unit"},
      {"TimeoutGarbage", Vs(kRoute + "    timeout: soon\n"), "spec.http[0].timeout", kHttp + 1,
       "invalid duration \"soon\""},
      {"FixedDelayZero",
       Vs(kRoute + "    fault: {delay: {fixedDelay: 0s, percentage: {value: 10}}}\n"),
       "spec.http[0].fault.delay.fixedDelay", kHttp + 1, "at least 1ms"},

      // --- Retries.
      {"RetryOnSpaceAfterComma",
       Vs(kRoute + "    retries: {attempts: 2, retryOn: \"5xx, reset\"}\n"),
       "spec.http[0].retries.retryOn", kHttp + 1, "\" reset\" is not a valid retryOn"},
      {"RetryOnUnknownCondition",
       Vs(kRoute + "    retries: {attempts: 2, retryOn: \"5xx,server-error\"}\n"),
       "spec.http[0].retries.retryOn", kHttp + 1, "\"server-error\" is not a valid retryOn"},
      {"RetryOnUnknownStatusCode", Vs(kRoute + "    retries: {attempts: 2, retryOn: \"600\"}\n"),
       "spec.http[0].retries.retryOn", kHttp + 1, "\"600\" is not a valid retryOn"},
      {"AttemptsZeroWithPerTryTimeout",
       Vs(kRoute + "    retries: {attempts: 0, perTryTimeout: 1s}\n"),
       "spec.http[0].retries.perTryTimeout", kHttp + 1, "attempts is 0"},
      {"AttemptsZeroWithRetryOn", Vs(kRoute + "    retries: {attempts: 0, retryOn: 5xx}\n"),
       "spec.http[0].retries.retryOn", kHttp + 1, "attempts is 0"},
      {"AttemptsNegative", Vs(kRoute + "    retries: {attempts: -1}\n"),
       "spec.http[0].retries.attempts", kHttp + 1, "found -1"},
      {"AttemptsNotAnInteger", Vs(kRoute + "    retries: {attempts: three}\n"),
       "spec.http[0].retries.attempts", kHttp + 1, "must be an integer, found \"three\""},

      // --- Fault injection.
      {"FaultPercentageAbove100",
       Vs(kRoute + "    fault: {abort: {httpStatus: 503, percentage: {value: 150}}}\n"),
       "spec.http[0].fault.abort.percentage.value", kHttp + 1, "found 150"},
      {"FaultPercentageBelowMinimum",
       Vs(kRoute + "    fault: {delay: {fixedDelay: 1s, percentage: {value: 0.00001}}}\n"),
       "spec.http[0].fault.delay.percentage.value", kHttp + 1, "between 0.0001 and 100"},
      {"AbortStatus199",
       Vs(kRoute + "    fault: {abort: {httpStatus: 199, percentage: {value: 1}}}\n"),
       "spec.http[0].fault.abort.httpStatus", kHttp + 1, "between 200 and 599, found 199"},
      // Istio's webhook allows 600, Envoy's proto is [200, 600) and would reject the route
      // (routing-semantics.md 4); sluice follows Envoy.
      {"AbortStatus600",
       Vs(kRoute + "    fault: {abort: {httpStatus: 600, percentage: {value: 1}}}\n"),
       "spec.http[0].fault.abort.httpStatus", kHttp + 1, "between 200 and 599, found 600"},
      {"AbortUnknownGrpcStatus",
       Vs(kRoute + "    fault: {abort: {grpcStatus: NOPE, percentage: {value: 1}}}\n"),
       "spec.http[0].fault.abort.grpcStatus", kHttp + 1, "not a gRPC status name"},
      {"AbortHttp2Error",
       Vs(kRoute + "    fault: {abort: {http2Error: CANCEL, percentage: {value: 1}}}\n"),
       "spec.http[0].fault.abort.http2Error", kHttp + 1, "not supported"},
      {"DelayExponential",
       Vs(kRoute + "    fault: {delay: {exponentialDelay: 1s, percentage: {value: 1}}}\n"),
       "spec.http[0].fault.delay.exponentialDelay", kHttp + 1, "not supported"},
      // Istio's webhook lets a delay without fixedDelay through and the translator drops it;
      // sluice rejects it.
      {"DelayWithoutFixedDelay", Vs(kRoute + "    fault: {delay: {percentage: {value: 1}}}\n"),
       "spec.http[0].fault.delay.fixedDelay", kHttp + 1, "is required"},
      {"FaultWithoutDelayOrAbort", Vs(kRoute + "    fault: {}\n"), "spec.http[0].fault", kHttp + 1,
       "must set delay, abort or both"},

      // --- Destinations and weights.
      {"WeightNegative",
       Vs("  - route:\n"
          "    - destination: {host: reviews}\n"
          "      weight: -5\n"),
       "spec.http[0].route[0].weight", kHttp + 2, "found -5"},
      {"AllWeightsZero",
       Vs("  - route:\n"
          "    - destination: {host: reviews}\n"
          "      weight: 0\n"
          "    - destination: {host: ratings}\n"
          "      weight: 0\n"),
       "spec.http[0].route", kHttp + 1, "total weight must be greater than 0"},
      {"DestinationHostWildcard", Vs("  - route: [{destination: {host: \"*\"}}]\n"),
       "spec.http[0].route[0].destination.host", kHttp, "must not be *"},
      {"DestinationWithoutHost", Vs("  - route: [{destination: {subset: v1}}]\n"),
       "spec.http[0].route[0].destination.host", kHttp, "is required"},
      {"DestinationSubsetUnderscore",
       Vs("  - route: [{destination: {host: reviews, subset: v_1}}]\n"),
       "spec.http[0].route[0].destination.subset", kHttp, "not a valid DNS-1123 label"},
      {"DestinationPortZero",
       Vs("  - route: [{destination: {host: reviews, port: {number: 0}}}]\n"),
       "spec.http[0].route[0].destination.port.number", kHttp, "between 1 and 65535, found 0"},
      {"DestinationPort70000",
       Vs("  - route: [{destination: {host: reviews, port: {number: 70000}}}]\n"),
       "spec.http[0].route[0].destination.port.number", kHttp, "between 1 and 65535, found 70000"},

      // --- Route actions and what may be combined with them.
      {"RouteAndRedirect", Vs(kRoute + "    redirect: {uri: /v2}\n"), "spec.http[0]", kHttp,
       "only one of route, redirect or directResponse"},
      {"NoRouteRedirectOrDirectResponse", Vs("  - timeout: 5s\n"), "spec.http[0]", kHttp,
       "must set one of route, redirect or directResponse"},
      {"RewriteWithRedirect", Vs("  - redirect: {uri: /v2}\n    rewrite: {uri: /v3}\n"),
       "spec.http[0].rewrite", kHttp + 1, "cannot be combined with redirect"},
      {"FaultWithDirectResponse",
       Vs("  - directResponse: {status: 503}\n"
          "    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n"),
       "spec.http[0].fault", kHttp + 1, "cannot be combined with redirect or directResponse"},
      {"MirrorAndMirrors",
       Vs(kRoute + "    mirror: {host: ratings}\n    mirrors: [{destination: {host: details}}]\n"),
       "spec.http[0].mirrors", kHttp + 2, "cannot be set together with mirror"},
      {"MirrorPercentageAbove100",
       Vs(kRoute + "    mirror: {host: ratings}\n    mirrorPercentage: {value: 101}\n"),
       "spec.http[0].mirrorPercentage.value", kHttp + 2, "found 101"},
      // Istio's webhook ignores a stray mirrorPercentage; sluice rejects it (see the report).
      {"MirrorPercentageWithoutMirror", Vs(kRoute + "    mirrorPercentage: {value: 50}\n"),
       "spec.http[0].mirrorPercentage", kHttp + 1, "needs mirror"},
      // The webhook accepts any 3xx, but the translator drops the action for codes other than
      // 301/302/303/307/308 (routing-semantics.md 1.10); sluice rejects them up front.
      {"RedirectCode305", Vs("  - redirect: {uri: /v2, redirectCode: 305}\n"),
       "spec.http[0].redirect.redirectCode", kHttp, "must be one of 301, 302, 303, 307 or 308"},
      {"RedirectCode200", Vs("  - redirect: {uri: /v2, redirectCode: 200}\n"),
       "spec.http[0].redirect.redirectCode", kHttp, "between 300 and 399, found 200"},
      {"RedirectSchemeFtp", Vs("  - redirect: {scheme: ftp}\n"), "spec.http[0].redirect.scheme",
       kHttp, "must be http or https"},
      {"RedirectPortAndDerivePort",
       Vs("  - redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}\n"),
       "spec.http[0].redirect.derivePort", kHttp, "cannot be set together with port"},
      {"DirectResponseStatus100", Vs("  - directResponse: {status: 100}\n"),
       "spec.http[0].directResponse.status", kHttp, "between 200 and 599, found 100"},

      // --- Match conditions.
      {"UriRegexDoesNotCompile",
       Vs("  - match: [{uri: {regex: \"(\"}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].uri.regex", kHttp, "invalid RE2 regex"},
      {"UriRegexEmpty",
       Vs("  - match: [{uri: {regex: \"\"}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].uri.regex", kHttp, "regex must not be empty"},
      {"UriRegexTooLong",
       Vs("  - match: [{uri: {regex: \"" + std::string(1025, 'a') +
          "\"}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].uri.regex", kHttp, "at most 1024 characters, found 1025"},
      {"UriExactAndPrefix",
       Vs("  - match: [{uri: {exact: /a, prefix: /b}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].uri", kHttp, "only one of exact, prefix or regex"},
      // The API requires lower-case header names in matches (routing-semantics.md 1.3).
      {"HeaderNameUpperCase",
       Vs("  - match: [{headers: {X-User: {exact: jason}}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].headers.X-User", kHttp, "lower case"},

      // Envoy's HTTP_HEADER_VALUE rule: a configured value with a line break would split the
      // upstream request (the code review's header injection).
      {"HeaderValueWithLineBreak",
       Vs("  - route: [{destination: {host: reviews}}]\n"
          "    headers: {request: {set: {x-a: \"1\\r\\nx-injected: yes\"}}}\n"),
       "spec.http[0].headers.request.set.x-a", kHttp + 1, "contains a CR at offset 1"},
      {"ResponseHeaderValueWithNul",
       Vs("  - route: [{destination: {host: reviews}}]\n"
          "    headers: {response: {add: {x-a: \"a\\0b\"}}}\n"),
       "spec.http[0].headers.response.add.x-a", kHttp + 1, "contains a NUL byte at offset 1"},
      {"DestinationHeaderValueWithLineBreak",
       Vs("  - route:\n"
          "    - destination: {host: reviews}\n"
          "      headers: {request: {add: {x-a: \"a\\nb\"}}}\n"),
       "spec.http[0].route[0].headers.request.add.x-a", kHttp + 2, "contains a LF at offset 1"},
      {"RewriteUriWithLineBreak",
       Vs("  - rewrite: {uri: \"/v2\\r\\nGET /admin HTTP/1.1\"}\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].rewrite.uri", kHttp, "would split the upstream request"},
      {"RewriteAuthorityWithLineBreak",
       Vs("  - rewrite: {authority: \"a\\nb\"}\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].rewrite.authority", kHttp, "contains a LF"},
      {"RegexRewriteWithLineBreak",
       Vs("  - rewrite: {uriRegexRewrite: {match: \"^/a\", rewrite: \"/b\\n\"}}\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].rewrite.uriRegexRewrite.rewrite", kHttp, "contains a LF"},
      {"RedirectUriWithLineBreak", Vs("  - redirect: {uri: \"/x\\r\\nSet-Cookie: a=b\"}\n"),
       "spec.http[0].redirect.uri", kHttp, "contains a CR"},

      // --- Unknown fields, at several depths (structural schemas reject them).
      {"UnknownFieldInSpec",
       Doc("VirtualService", "  hosts: [reviews]\n  hostz: [ratings]\n  http:\n" + kRoute),
       "spec.hostz", kSpec + 1, "unknown field"},
      {"UnknownFieldInHttpRoute", Vs(kRoute + "    retry: {attempts: 3}\n"), "spec.http[0].retry",
       kHttp + 1, "unknown field"},
      {"UnknownFieldInMatch",
       Vs("  - match:\n"
          "    - uri: {prefix: /}\n"
          "      header: {x-env: {exact: dev}}\n"
          "    route: [{destination: {host: reviews}}]\n"),
       "spec.http[0].match[0].header", kHttp + 2, "unknown field"},
      {"UnknownFieldInOutlierDetection",
       Dr("  trafficPolicy:\n"
          "    outlierDetection:\n"
          "      consecutive5xx: 3\n"),
       "spec.trafficPolicy.outlierDetection.consecutive5xx", kDr + 2, "unknown field"},
      {"UnknownFieldInMetadata",
       Doc("DestinationRule", "  host: reviews\n", "  name: reviews\n  labelz: {app: reviews}\n"),
       "metadata.labelz", 5, "unknown field"},

      // --- VirtualService hosts and routes.
      {"WildcardHostWithoutGateways", Doc("VirtualService", "  hosts: [\"*\"]\n  http:\n" + kRoute),
       "spec.hosts[0]", kSpec, "wildcard host * is not allowed"},
      // No hosts makes a delegate VirtualService in Istio; sluice does not support delegates.
      {"VirtualServiceWithoutHosts", Doc("VirtualService", "  http:\n" + kRoute), "spec.hosts",
       kSpec, "at least one host is required"},
      {"VirtualServiceWithoutRoutes", Doc("VirtualService", "  hosts: [reviews]\n"), "spec", kSpec,
       "must have at least one http, tcp or tls route"},
      {"DuplicateHosts",
       Doc("VirtualService", "  hosts: [reviews, ratings, reviews]\n  http:\n" + kRoute),
       "spec.hosts[2]", kSpec, "duplicate host \"reviews\""},
      {"InvalidHostName", Doc("VirtualService", "  hosts: [re_views]\n  http:\n" + kRoute),
       "spec.hosts[0]", kSpec, "is not a valid domain name"},

      // --- DestinationRule.
      {"DestinationRuleWithoutHost",
       Doc("DestinationRule", "  subsets: [{name: v1, labels: {version: v1}}]\n"), "spec.host",
       kSpec, "is required"},
      {"DuplicateSubsetNames",
       Dr("  subsets:\n"
          "  - {name: v1, labels: {version: v1}}\n"
          "  - {name: v1, labels: {version: v2}}\n"),
       "spec.subsets[1].name", kDr + 2, "duplicate subset \"v1\""},
      {"SubsetWithoutName",
       Dr("  subsets:\n"
          "  - labels: {version: v1}\n"),
       "spec.subsets[0].name", kDr + 1, "is required"},
      {"SubsetNameUnderscore", Dr("  subsets: [{name: v_1, labels: {version: v1}}]\n"),
       "spec.subsets[0].name", kDr, "not a valid DNS-1123 label"},
      {"EmptyTrafficPolicy", Dr("  trafficPolicy: {}\n"), "spec.trafficPolicy", kDr,
       "must set at least one field"},
      {"TrafficPolicyIsAScalar", Dr("  trafficPolicy: fast\n"), "spec.trafficPolicy", kDr,
       "must be a mapping, found a scalar"},
      {"EmptyConnectionPool", Dr("  trafficPolicy:\n    connectionPool: {}\n"),
       "spec.trafficPolicy.connectionPool", kDr + 1, "must set http, tcp or both"},
      {"MaxEjectionPercent101",
       Dr("  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 101}\n"),
       "spec.trafficPolicy.outlierDetection.maxEjectionPercent", kDr + 1,
       "between 0 and 100, found 101"},
      {"MinHealthPercentNegative",
       Dr("  trafficPolicy:\n    outlierDetection: {minHealthPercent: -1}\n"),
       "spec.trafficPolicy.outlierDetection.minHealthPercent", kDr + 1,
       "between 0 and 100, found -1"},
      {"LocalOriginFailuresWithoutSplit",
       Dr("  trafficPolicy:\n    outlierDetection: {consecutiveLocalOriginFailures: 5}\n"),
       "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", kDr + 1,
       "requires splitExternalLocalOriginErrors"},
      {"HttpIdleTimeoutZero",
       Dr("  trafficPolicy:\n    connectionPool: {http: {idleTimeout: 0s}}\n"),
       "spec.trafficPolicy.connectionPool.http.idleTimeout", kDr + 1, "at least 1ms"},
      {"LoadBalancerSimpleUnknown", Dr("  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n"),
       "spec.trafficPolicy.loadBalancer.simple", kDr + 1, "\"FASTEST\" is not one of"},
      {"LoadBalancerSimpleAndConsistentHash",
       Dr("  trafficPolicy:\n"
          "    loadBalancer:\n"
          "      simple: ROUND_ROBIN\n"
          "      consistentHash: {httpHeaderName: x-user}\n"),
       "spec.trafficPolicy.loadBalancer.consistentHash", kDr + 3,
       "cannot be set together with simple"},

      // --- ServiceEntry and WorkloadEntry.
      {"ServiceEntryWithoutHosts",
       Doc("ServiceEntry",
           "  resolution: DNS\n"
           "  ports: [{number: 80, name: http, protocol: HTTP}]\n"),
       "spec.hosts", kSpec, "is required"},
      {"EndpointsAndWorkloadSelector",
       Doc("ServiceEntry",
           "  hosts: [reviews]\n"
           "  resolution: STATIC\n"
           "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
           "  endpoints: [{address: 10.0.0.1}]\n"
           "  workloadSelector: {labels: {app: reviews}}\n"),
       "spec.workloadSelector", kSpec + 4, "cannot be set together with endpoints"},
      {"EndpointPortNamesUnknownServicePort",
       Doc("ServiceEntry",
           "  hosts: [reviews]\n"
           "  resolution: STATIC\n"
           "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
           "  endpoints: [{address: 10.0.0.1, ports: {grpc: 9090}}]\n"),
       "spec.endpoints[0].ports.grpc", kSpec + 3, "names no port"},
      {"WorkloadEntryWithoutAddress", Doc("WorkloadEntry", "  labels: {app: reviews}\n"),
       "spec.address", kSpec, "is required"},

      // --- Canary.
      {"CanaryWithoutStableSubset", CanaryDoc("  canarySubset: v2\n"), "spec.stableSubset", kSpec,
       "is required"},
      {"CanarySubsetEqualsStableSubset",
       "apiVersion: sluice.dev/v1\nkind: Canary\nmetadata: {name: reviews}\n"
       "spec: {host: reviews, stableSubset: v1, canarySubset: v1}\n",
       "spec.canarySubset", 4, "must differ from stableSubset"},
      {"StepWeightsNotIncreasing",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n"
                 "    stepWeights: [10, 50, 30]\n"),
       "spec.analysis.stepWeights[2]", kCanary + 3, "step weights must increase"},
      {"StepWeightAboveMaxWeight",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n"
                 "    stepWeight: 60\n    maxWeight: 50\n"),
       "spec.analysis.stepWeight", kCanary + 3, "must not be greater than maxWeight"},
      {"StepWeightsWithStepWeight",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n"
                 "    stepWeights: [10, 20]\n    stepWeight: 5\n"),
       "spec.analysis.stepWeight", kCanary + 4, "cannot be set together with stepWeights"},
      {"SuccessRateMinAbove100",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n    metrics:\n"
                 "    - name: request-success-rate\n"
                 "      thresholdRange: {min: 150}\n"),
       "spec.analysis.metrics[0].thresholdRange.min", kCanary + 5, "between 0 and 100"},
      {"CustomMetricWithoutQuery",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n    metrics:\n"
                 "    - name: error-budget\n"
                 "      thresholdRange: {max: 5}\n"),
       "spec.analysis.metrics[0].query", kCanary + 4, "is required for custom metric"},

      // --- Documents, kinds and versions.
      {"UnsupportedIstioVersion",
       "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: reviews}\n"
       "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n",
       "apiVersion", 1, "unsupported version \"networking.istio.io/v2\""},
      {"UnknownIstioKind",
       "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: reviews}\n"
       "spec: {hosts: [reviews]}\n",
       "kind", 2, "unknown kind \"VirtualServce\""},
      {"MissingMetadataName", Doc("DestinationRule", "  host: reviews\n", "  namespace: prod\n"),
       "metadata.name", 4, "is required"},
      {"DuplicateResourceNames",
       "{apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: reviews}, "
       "spec: {host: reviews}}\n"
       "---\n"
       "{apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: reviews}, "
       "spec: {host: ratings}}\n",
       "metadata.name", 3, "duplicate DestinationRule default/reviews"},
  };

  // Invalid YAML in the second document: the line counts from the start of the stream.
  {
    const std::string first = kDrV1Only + "---\n";
    rows.push_back({"InvalidYamlSyntax",
                    first + "apiVersion: networking.istio.io/v1\n"
                            "kind: VirtualService\n"
                            "metadata:\n"
                            "  name: reviews\n"
                            "spec:\n"
                            "  hosts: [reviews]\n"
                            "  http: [{route: [{destination: {host: reviews}}]}]\n"
                            "    gateways: mesh\n",
                    "", Lines(first) + 8, "invalid YAML"});
  }

  // Cross-resource Canary checks. The Canary is a one-line document so that the check's
  // location cannot differ from the field it names; the *Block rows below pin the line.
  {
    const std::string prefix = Stream({kDrV1Only, kVsSplitV1V2}) + "---\n";
    rows.push_back({"CanarySubsetNotInAnyDestinationRule", prefix + kCanaryOneLine,
                    "spec.canarySubset", Lines(prefix) + 1,
                    "subset \"v2\" of reviews.default.svc.cluster.local is not defined"});
  }
  {
    const std::string prefix = Stream({kDrV1V2, kVsOnlyV1}) + "---\n";
    rows.push_back({"CanaryWithoutSplittingRoute", prefix + kCanaryOneLine, "spec.host",
                    Lines(prefix) + 1, "lists both subsets \"v1\" and \"v2\""});
  }

  // ---- Once wrong in sluice, now regressions: Istio's rule is in `why`. -------------------

  rows.push_back(
      {"AttemptsZeroWithPerTryTimeoutBlockStyle",
       Vs(kRoute + "    retries:\n"
                   "      attempts: 0\n"
                   "      perTryTimeout: 1s\n"),
       "spec.http[0].retries.perTryTimeout", kHttp + 3, "attempts is 0",
       "ParseRetries reports the attempts==0 conflict at the retries mapping (its first key's "
       "line), not at the perTryTimeout/retryOn/retryRemoteLocalities field its path names"});
  rows.push_back(
      {"CanarySubsetEqualsStableSubsetBlockStyle",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v1\n"), "spec.canarySubset", kCanary + 1,
       "must differ from stableSubset",
       "ParseCanary reports canarySubset == stableSubset at the spec mapping's first line, not "
       "at canarySubset"});
  rows.push_back(
      {"SuccessRateMinAbove100BlockStyle",
       CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n  analysis:\n    metrics:\n"
                 "    - name: request-success-rate\n"
                 "      thresholdRange:\n"
                 "        max: 200\n"
                 "        min: 150\n"),
       "spec.analysis.metrics[0].thresholdRange.min", kCanary + 7, "between 0 and 100",
       "ParseMetric reports thresholdRange.min/max range problems at the thresholdRange mapping "
       "(its first key's line), not at the min/max value"});
  rows.push_back(
      {"EndpointPortNamesUnknownServicePortBlockStyle",
       Doc("ServiceEntry",
           "  hosts: [reviews]\n"
           "  resolution: STATIC\n"
           "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
           "  endpoints:\n"
           "  - address: 10.0.0.1\n"
           "    ports:\n"
           "      grpc: 9090\n"),
       "spec.endpoints[0].ports.grpc", kSpec + 6, "names no port",
       "ParseServiceEntry reports an endpoint port naming no service port at the endpoint's "
       "first line, not at the port entry"});
  {
    const std::string first = Dr("") + "---\n";
    rows.push_back({"DuplicateResourceNamesBlockStyle", first + Dr(""), "metadata.name",
                    Lines(first) + 4, "duplicate DestinationRule default/reviews",
                    "CheckDuplicates (validation.cc) reports at the document's first line "
                    "(ObjectMeta::location), not at metadata.name"});
  }
  {
    const std::string prefix = Stream({kDrV1Only, kVsSplitV1V2}) + "---\n";
    rows.push_back({"CanarySubsetNotInAnyDestinationRuleBlockStyle",
                    prefix + CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n"),
                    "spec.canarySubset", Lines(prefix) + kCanary + 1, "is not defined",
                    "CheckCanaries (validation.cc) reports at the Canary document's first line, "
                    "not at the stableSubset/canarySubset field"});
  }
  {
    const std::string prefix = Stream({kDrV1V2, kVsOnlyV1}) + "---\n";
    rows.push_back({"CanaryWithoutSplittingRouteBlockStyle",
                    prefix + CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n"), "spec.host",
                    Lines(prefix) + kSpec, "lists both subsets",
                    "CheckCanaries (validation.cc) reports the missing split route at the Canary "
                    "document's first line, not at spec.host"});
  }
  rows.push_back(
      {"RetryOnSpaceBeforeStatusCode",
       Vs(kRoute + "    retries: {attempts: 2, retryOn: \"5xx, 503\"}\n"),
       "spec.http[0].retries.retryOn", kHttp + 1, "\" 503\"",
       "ParseRetries accepts \" 503\": absl::SimpleAtoi skips white space, Go's strconv.Atoi "
       "(Istio) does not"});
  rows.push_back(
      {"OverlappingWildcardHosts",
       Doc("VirtualService", "  hosts: [\"*.example.com\", api.example.com]\n  http:\n" + kRoute),
       "spec.hosts[1]", kSpec, "duplicate host",
       "ParseVirtualService only finds literal duplicates; Istio rejects hosts that overlap "
       "(host.Name.Matches), e.g. *.example.com and api.example.com"});
  rows.push_back({"HostWithPort",
                  Doc("VirtualService", "  hosts: [\"reviews:9080\"]\n  http:\n" + kRoute),
                  "spec.hosts[0]", kSpec, "is not a valid",
                  "CheckHostName treats any name containing ':' as an IPv6 address "
                  "(LooksLikeIp) and accepts it"});
  rows.push_back({"HostNotAnIpAddress",
                  Doc("VirtualService", "  hosts: [\"1.2.3\"]\n  http:\n" + kRoute),
                  "spec.hosts[0]", kSpec, "is not a valid",
                  "CheckHostName accepts any string of digits, dots and slashes as an IP "
                  "address (LooksLikeIp); Istio rejects 1.2.3 (all-numeric top-level domain, "
                  "not an IP)"});
  rows.push_back({"ServiceEntryWildcardHost",
                  Doc("ServiceEntry",
                      "  hosts: [\"*\"]\n"
                      "  resolution: DNS\n"
                      "  ports: [{number: 80, name: http, protocol: HTTP}]\n"),
                  "spec.hosts[0]", kSpec, "not allowed",
                  "ParseServiceEntry accepts host \"*\"; Istio rejects it (\"invalid host *\")"});
  rows.push_back({"ServiceEntryEndpointsWithResolutionNone",
                  Doc("ServiceEntry",
                      "  hosts: [reviews]\n"
                      "  resolution: NONE\n"
                      "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
                      "  endpoints: [{address: 10.0.0.1}]\n"),
                  "spec.endpoints", kSpec + 3, "resolution",
                  "Istio: \"no endpoints should be provided for resolution type none\"; sluice "
                  "rejects an explicit NONE and reads an omitted resolution as STATIC"});
  rows.push_back({"ServiceEntryStaticEndpointNotAnIp",
                  Doc("ServiceEntry",
                      "  hosts: [reviews]\n"
                      "  resolution: STATIC\n"
                      "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
                      "  endpoints: [{address: reviews-1.example.com}]\n"),
                  "spec.endpoints[0].address", kSpec + 3, "IP",
                  "ParseWorkloadEntrySpec does not check addresses; Istio requires an IP "
                  "address for STATIC resolution (and an IP or FQDN for DNS)"});
  rows.push_back({"ServiceEntryPortWithoutName",
                  Doc("ServiceEntry",
                      "  hosts: [reviews.example.com]\n"
                      "  resolution: DNS\n"
                      "  ports: [{number: 80, protocol: HTTP}]\n"),
                  "spec.ports[0].name", kSpec + 2, "is required",
                  "ParseServiceEntry does not check port names; Istio requires a DNS-1123 "
                  "label (ValidatePortName) and rejects duplicate names"});
  rows.push_back({"HeaderMatchEmptyPrefix",
                  Vs("  - match: [{headers: {x-env: {prefix: \"\"}}}]\n"
                     "    route: [{destination: {host: reviews}}]\n"),
                  "spec.http[0].match[0].headers.x-env.prefix", kHttp, "must not be empty",
                  "ParseStringMatch accepts an empty prefix for headers, queryParams, method, "
                  "scheme and authority; Istio's validateStringMatch rejects it (only uri may "
                  "have an empty prefix)"});
  rows.push_back({"UriRegexRewriteWithoutRewrite",
                  Vs(kRoute + "    rewrite: {uriRegexRewrite: {match: \"^/old(.*)\"}}\n"),
                  "spec.http[0].rewrite.uriRegexRewrite.rewrite", kHttp + 1, "is required",
                  "ParseRewrite accepts uriRegexRewrite without rewrite; Istio requires both "
                  "match and rewrite"});
  rows.push_back({"EmptyHttpList", Doc("VirtualService", "  hosts: [reviews]\n  http: []\n"),
                  "spec", kSpec, "must have at least one http, tcp or tls route",
                  "ParseVirtualService tests m.Has(\"http\"), which is true for an empty list; "
                  "Istio tests len(http) == 0"});
  rows.push_back({"TcpIdleTimeoutNotWholeMilliseconds",
                  Dr("  trafficPolicy:\n    connectionPool: {tcp: {idleTimeout: 1.5ms}}\n"),
                  "spec.trafficPolicy.connectionPool.tcp.idleTimeout", kDr + 1,
                  "whole number of milliseconds",
                  "ParseConnectionPool reads tcp.idleTimeout with ReadAnyDuration; Istio skips "
                  "ValidateDuration only when the value rounds to 0ms"});
  rows.push_back({"ListItemWithoutName",
                  "apiVersion: v1\n"
                  "kind: List\n"
                  "items:\n"
                  "- apiVersion: networking.istio.io/v1\n"
                  "  kind: DestinationRule\n"
                  "  metadata: {namespace: prod}\n"
                  "  spec: {host: reviews}\n",
                  "items[0].metadata.name", 6, "is required",
                  "ParseMetadata hard-codes \"metadata.name\" instead of joining it to the "
                  "document path (items[0].metadata.name inside a List)"});
  rows.push_back(
      {"NamespaceUpperCase",
       Doc("DestinationRule", "  host: reviews\n", "  name: reviews\n  namespace: Prod\n"),
       "metadata.namespace", 5, "is not a valid namespace",
       "ParseMetadata checks the namespace with IsDns1123Label, which accepts upper "
       "case; Kubernetes namespaces are lower-case RFC 1123 labels"});
  return rows;
}

class InvalidConfigTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidConfigTest, IsRejectedAtTheOffendingField) {
  const InvalidCase& row = GetParam();
  SCOPED_TRACE(row.name);
  const LoadResult r = LoadText(row.yaml, kFile);
  EXPECT_FALSE(r.ok());
  const Diagnostic* found = nullptr;
  for (const Diagnostic& d : r.diagnostics.all()) {
    if (d.severity == Severity::kError && d.field_path == row.path && d.where.line == row.line &&
        d.message.find(row.fragment) != std::string::npos) {
      found = &d;
      break;
    }
  }
  ASSERT_NE(found, nullptr) << "expected an error at line " << row.line << ", path \"" << row.path
                            << "\", containing \"" << row.fragment << "\"; got:\n"
                            << r.diagnostics.ToString() << "for:\n"
                            << Numbered(row.yaml);
  const std::string prefix = std::string(kFile) + ":" + std::to_string(row.line) + ": " +
                             (row.path.empty() ? std::string() : row.path + ": ");
  EXPECT_THAT(found->ToString(), StartsWith(prefix));
}

INSTANTIATE_TEST_SUITE_P(Istio, InvalidConfigTest, ::testing::ValuesIn(InvalidCases()),
                         [](const ::testing::TestParamInfo<InvalidCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Valid edge cases: they load without a single error.

struct ValidCase {
  ValidCase(std::string name, std::string yaml,
            std::function<void(const LoadResult&)> check = nullptr, std::string why = "")
      : name(std::move(name)),
        yaml(std::move(yaml)),
        check(std::move(check)),
        why(std::move(why)) {}

  std::string name;
  std::string yaml;
  std::function<void(const LoadResult&)> check;  // optional further expectations
  std::string why;  // the Istio rule this row pins, where it is not obvious
};

void PrintTo(const ValidCase& c, std::ostream* os) { *os << c.name; }

// A DestinationRule with subsets v1 and v2, a route splitting between them, and a Canary with
// `analysis` (empty: defaults).
std::string CanaryBundle(const std::string& analysis) {
  return Stream(
      {kDrV1V2, kVsSplitV1V2, CanaryDoc("  stableSubset: v1\n  canarySubset: v2\n" + analysis)});
}

std::vector<ValidCase> ValidCases() {
  return {
      {"WeightsNeedNotSumTo100", Vs("  - route:\n"
                                    "    - destination: {host: reviews}\n"
                                    "      weight: 1\n"
                                    "    - destination: {host: ratings}\n"
                                    "      weight: 3\n")},
      {"SingleDestinationWithWeightZero", Vs("  - route:\n"
                                             "    - destination: {host: reviews}\n"
                                             "      weight: 0\n")},
      {"HeaderExactEmptyString", Vs("  - match: [{headers: {x-env: {exact: \"\"}}}]\n"
                                    "    route: [{destination: {host: reviews}}]\n")},
      {"HeaderPresenceEmptyMatch", Vs("  - match: [{headers: {x-env: {}}}]\n"
                                      "    route: [{destination: {host: reviews}}]\n")},
      {"QueryParamRegexStarIsPresence",
       Vs("  - match: [{queryParams: {debug: {regex: \"*\"}}}]\n"
          "    route: [{destination: {host: reviews}}]\n"),
       [](const LoadResult& r) {
         const HTTPMatchRequest& m = r.config.virtual_services.at(0).http.at(0).match.at(0);
         ASSERT_EQ(m.query_params.size(), 1u);
         EXPECT_EQ(m.query_params[0].match.kind, StringMatch::Kind::kPresent);
       }},
      {"Timeout1ms", Vs(kRoute + "    timeout: 1ms\n")},
      {"PerTryTimeoutNotShorterThanTimeoutOnlyWarns",
       Vs(kRoute + "    timeout: 1s\n    retries: {attempts: 3, perTryTimeout: 2s}\n"),
       [](const LoadResult& r) {
         const Diagnostic* w =
             FindDiagnostic(r, Severity::kWarning, "spec.http[0].retries.perTryTimeout",
                            "not shorter than the route timeout");
         ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
         EXPECT_EQ(w->where.line, kHttp + 2);
       }},
      {"FaultPercentageSmallest",
       Vs(kRoute + "    fault: {abort: {httpStatus: 503, percentage: {value: 0.0001}}}\n"),
       [](const LoadResult& r) {
         const HTTPRoute& route = r.config.virtual_services.at(0).http.at(0);
         EXPECT_EQ(route.fault->abort->percentage->numerator, 1u);
       }},
      {"FaultPercentageZero",
       Vs(kRoute + "    fault: {delay: {fixedDelay: 1s, percentage: {value: 0}}}\n")},
      {"MirrorPercentageBelowFaultMinimum",
       Vs(kRoute + "    mirror: {host: ratings}\n    mirrorPercentage: {value: 0.00001}\n")},
      {"AbortStatus599",
       Vs(kRoute + "    fault: {abort: {httpStatus: 599, percentage: {value: 100}}}\n")},
      {"RetryOnConditionsAndStatusCodes",
       Vs(kRoute + "    retries: {attempts: 3, retryOn: \"5xx,reset,429,503,unavailable\"}\n")},
      {"TcpIdleTimeoutZero",
       Dr("  trafficPolicy:\n    connectionPool: {tcp: {idleTimeout: 0s}}\n")},
      {"UpperCaseSubsetName",
       Stream({Dr("  subsets: [{name: V1, labels: {version: v1}}]\n"),
               Vs("  - route: [{destination: {host: reviews, subset: V1}}]\n")})},
      {"WildcardHostWithGateways",
       Doc("VirtualService",
           "  hosts: [\"*\"]\n  gateways: [istio-system/ingress]\n  http:\n" + kRoute)},
      {"GatewayDocumentIsSkippedWithANotice",
       Stream({"apiVersion: networking.istio.io/v1\n"
               "kind: Gateway\n"
               "metadata: {name: ingress}\n"
               "spec:\n"
               "  selector: {istio: ingressgateway}\n"
               "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
               Vs(kRoute)}),
       [](const LoadResult& r) {
         const std::vector<Diagnostic> notices = r.diagnostics.Filter(Severity::kNotice);
         ASSERT_EQ(notices.size(), 1u) << r.diagnostics.ToString();
         EXPECT_THAT(notices[0].ToString(),
                     StartsWith("test.yaml:1: notice: skipping Gateway (networking.istio.io/v1)"));
         EXPECT_EQ(r.config.virtual_services.size(), 1u);
       }},
      {"KubernetesServiceIsSkippedWithANotice",
       Stream({Vs(kRoute),
               "apiVersion: v1\n"
               "kind: Service\n"
               "metadata: {name: reviews}\n"
               "spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}\n"}),
       [](const LoadResult& r) {
         const std::vector<Diagnostic> notices = r.diagnostics.Filter(Severity::kNotice);
         ASSERT_EQ(notices.size(), 1u) << r.diagnostics.ToString();
         EXPECT_EQ(notices[0].where.line, Lines(Vs(kRoute)) + 2);
         EXPECT_THAT(notices[0].message, HasSubstr("skipping Service (v1)"));
       }},
      {"EmptyDocuments", "---\n---\n" + Vs(kRoute) + "---\n---\n",
       [](const LoadResult& r) { EXPECT_EQ(r.config.virtual_services.size(), 1u); }},
      {"EveryIstioApiVersion",
       "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\n"
       "metadata: {name: a}\nspec: {host: a}\n"
       "---\n"
       "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
       "metadata: {name: b}\nspec: {host: b}\n"
       "---\n"
       "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
       "metadata: {name: c}\nspec: {host: c}\n",
       [](const LoadResult& r) { EXPECT_EQ(r.config.destination_rules.size(), 3u); }},
      {"KubernetesServerMetadataFields",
       Doc("DestinationRule", "  host: reviews\n",
           "  name: reviews\n"
           "  namespace: prod\n"
           "  uid: 0b7e3c1a-6f4e-4a43-9a8e-2f3b9c1d5e77\n"
           "  resourceVersion: \"123456\"\n"
           "  generation: 3\n"
           "  creationTimestamp: \"2024-05-01T10:00:00Z\"\n"
           "  labels: {app: reviews}\n"
           "  annotations: {kubectl.kubernetes.io/last-applied-configuration: \"{}\"}\n")},
      {"CanaryStepWeightRampEndsAtMaxWeight",
       CanaryBundle("  analysis: {stepWeight: 20, maxWeight: 50}\n"),
       [](const LoadResult& r) {
         EXPECT_THAT(r.config.canaries.at(0).analysis.step_weights, ElementsAre(20, 40, 50));
       }},
      {"CanaryDefaultSteps", CanaryBundle(""),
       [](const LoadResult& r) {
         EXPECT_THAT(r.config.canaries.at(0).analysis.step_weights,
                     ElementsAre(10, 25, 50, 75, 100));
       }},
      // ---- Once wrong in sluice, now regressions.
      {"AttemptsZeroWithEmptyRetryOn", Vs(kRoute + "    retries: {attempts: 0, retryOn: \"\"}\n"),
       nullptr,
       "ParseRetries counts an empty retryOn as set for the attempts==0 check; Istio tests "
       "retryOn != \"\" (an empty string is the proto default, i.e. unset)"},
      {"EmptySubsetMeansNoSubset",
       Vs("  - route: [{destination: {host: reviews, subset: \"\"}}]\n"), nullptr,
       "ParseDestination checks IsDns1123Label(\"\") and rejects subset: \"\"; Istio validates "
       "the subset only when it is not empty"},
  };
}

class ValidConfigTest : public ::testing::TestWithParam<ValidCase> {};

TEST_P(ValidConfigTest, LoadsWithoutErrors) {
  const ValidCase& row = GetParam();
  SCOPED_TRACE(row.name);
  const LoadResult r = LoadText(row.yaml, kFile);
  EXPECT_TRUE(r.ok()) << r.diagnostics.ToString() << "for:\n" << Numbered(row.yaml);
  EXPECT_EQ(r.diagnostics.error_count(), 0);
  if (row.check) row.check(r);
}

INSTANTIATE_TEST_SUITE_P(Istio, ValidConfigTest, ::testing::ValuesIn(ValidCases()),
                         [](const ::testing::TestParamInfo<ValidCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Warnings: legal but surprising settings.

TEST(ValidationWarnings, Retriable4xxRetriesOnly409) {
  const LoadResult r =
      LoadText(Vs(kRoute + "    retries: {attempts: 2, retryOn: \"retriable-4xx\"}\n"), kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w =
      FindDiagnostic(r, Severity::kWarning, "spec.http[0].retries.retryOn", "409");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_EQ(w->where.line, kHttp + 1);
  EXPECT_THAT(w->ToString(), StartsWith("test.yaml:9: warning: spec.http[0].retries.retryOn: "));
}

TEST(ValidationWarnings, RouteToUndefinedSubsetWarnsAbout503NC) {
  const LoadResult r = LoadText(
      Stream({kDrV1Only, Vs("  - route: [{destination: {host: reviews, subset: v3}}]\n")}), kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const std::vector<Diagnostic> warnings = r.diagnostics.Filter(Severity::kWarning);
  ASSERT_EQ(warnings.size(), 1u) << r.diagnostics.ToString();
  EXPECT_THAT(warnings[0].field_path, ::testing::EndsWith(".destination.subset"));
  EXPECT_EQ(warnings[0].field_path, "spec.http[0].route[0].destination.subset");
  EXPECT_THAT(warnings[0].message, HasSubstr("NC"));
  EXPECT_THAT(warnings[0].message, HasSubstr("\"v3\""));
}

TEST(ValidationWarnings, RouteToDefinedSubsetDoesNotWarn) {
  const LoadResult r = LoadText(Stream({kDrV1V2, kVsSplitV1V2}), kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_THAT(r.diagnostics.Filter(Severity::kWarning), ::testing::IsEmpty())
      << r.diagnostics.ToString();
}

TEST(ValidationWarnings, UndefinedSubsetWarningPointsAtTheSubsetLine) {
  const std::string first = kDrV1Only + "---\n";
  const LoadResult r = LoadText(first + Vs("  - route:\n"
                                           "    - destination:\n"
                                           "        host: reviews\n"
                                           "        subset: v3\n"),
                                kFile);
  const Diagnostic* w =
      FindDiagnostic(r, Severity::kWarning, "spec.http[0].route[0].destination.subset", "NC");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_EQ(w->where.line, Lines(first) + kHttp + 3);
}

constexpr char kEjectionPath[] = "spec.trafficPolicy.outlierDetection.maxEjectionPercent";

std::string DrWithOutlierDetection(const std::string& outlier_detection) {
  return Dr("  trafficPolicy:\n    outlierDetection: " + outlier_detection +
            "\n  subsets:\n  - {name: v1, labels: {version: v1}}\n");
}

TEST(ValidationWarnings, MaxEjectionPercentTooLowForTheEndpointCount) {
  const LoadResult r = LoadText(
      Stream({ServiceEntryWithEndpoints(3), DrWithOutlierDetection("{maxEjectionPercent: 20}")}),
      kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w = FindDiagnostic(r, Severity::kWarning, kEjectionPath, "34");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_THAT(w->message, HasSubstr("3 endpoint(s)"));
}

TEST(ValidationWarnings, MaxEjectionPercentTooLowInASubsetPolicy) {
  const LoadResult r =
      LoadText(Stream({ServiceEntryWithEndpoints(3),
                       Dr("  subsets:\n"
                          "  - name: v1\n"
                          "    labels: {version: v1}\n"
                          "    trafficPolicy: {outlierDetection: {maxEjectionPercent: 20}}\n")}),
               kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w =
      FindDiagnostic(r, Severity::kWarning,
                     "spec.subsets[0].trafficPolicy.outlierDetection.maxEjectionPercent", "34");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_THAT(w->message, HasSubstr("subset v1"));
}

TEST(ValidationWarnings, MaxEjectionPercentHighEnoughDoesNotWarn) {
  const LoadResult r = LoadText(
      Stream({ServiceEntryWithEndpoints(3), DrWithOutlierDetection("{maxEjectionPercent: 34}")}),
      kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_EQ(FindDiagnostic(r, Severity::kWarning, kEjectionPath, ""), nullptr)
      << r.diagnostics.ToString();
}

TEST(ValidationWarnings, UnsetMaxEjectionPercentUsesTheDefaultOf10) {
  const LoadResult r = LoadText(
      Stream({ServiceEntryWithEndpoints(4), DrWithOutlierDetection("{consecutive5xxErrors: 3}")}),
      kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w = FindDiagnostic(r, Severity::kWarning, kEjectionPath, "10");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_THAT(w->message, HasSubstr("at least 25"));
}

TEST(ValidationWarnings, MaxEjectionPercentZeroMeansTheDefaultOf10) {
  const LoadResult r = LoadText(
      Stream({ServiceEntryWithEndpoints(10), DrWithOutlierDetection("{maxEjectionPercent: 0}")}),
      kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_EQ(FindDiagnostic(r, Severity::kWarning, kEjectionPath, ""), nullptr)
      << r.diagnostics.ToString();
}

TEST(ValidationWarnings, InheritedOutlierDetectionIsCheckedPerSubset) {
  const LoadResult r =
      LoadText(Stream({ServiceEntryWithEndpoints(5, 5),
                       Dr("  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 10}\n"
                          "  subsets:\n"
                          "  - {name: v1, labels: {version: v1}}\n"
                          "  - {name: v2, labels: {version: v2}}\n")}),
               kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w = FindDiagnostic(r, Severity::kWarning, kEjectionPath, "subset v1");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_THAT(w->message, HasSubstr("at least 20"));
}

TEST(ValidationWarnings, TcpRoutesAreNotSupported) {
  const LoadResult r =
      LoadText(Doc("VirtualService",
                   "  hosts: [reviews]\n"
                   "  tcp:\n"
                   "  - route: [{destination: {host: reviews, port: {number: 9080}}}]\n"),
               kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w = FindDiagnostic(r, Severity::kWarning, "spec.tcp", "not supported");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_EQ(w->where.line, kSpec + 2);
  EXPECT_EQ(r.config.virtual_services.at(0).tcp_route_count, 1);
}

TEST(ValidationWarnings, DeprecatedConsecutiveErrors) {
  const LoadResult r =
      LoadText(Dr("  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 5}\n"), kFile);
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const Diagnostic* w = FindDiagnostic(
      r, Severity::kWarning, "spec.trafficPolicy.outlierDetection.consecutiveErrors", "deprecated");
  ASSERT_NE(w, nullptr) << r.diagnostics.ToString();
  EXPECT_EQ(w->where.line, kDr + 1);
}

// ---------------------------------------------------------------------------------------------
// A rejected document gets the one error that explains it, not follow-on noise.

TEST(ValidationErrors, UnsupportedVersionIsTheOnlyError) {
  const LoadResult r = LoadText(
      "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: reviews}\n"
      "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n",
      kFile);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(FindDiagnostic(r, Severity::kError, "metadata", "unknown field"), nullptr)
      << r.diagnostics.ToString();
  EXPECT_EQ(FindDiagnostic(r, Severity::kError, "spec", "unknown field"), nullptr)
      << r.diagnostics.ToString();
}

// ---------------------------------------------------------------------------------------------
// Every mistake is reported, not only the first.

TEST(ValidationReportsEverything, ThreeMistakesInOneFileGiveThreeErrors) {
  const std::string vs = Vs(kRoute +
                            "    timeout: 0s\n"
                            "    retries: {attempts: 2, retryOn: \"5xx, reset\"}\n");
  const std::string first = vs + "---\n";
  const LoadResult r = LoadText(
      first + Dr("  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 101}\n"), kFile);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.diagnostics.error_count(), 3) << r.diagnostics.ToString();
  const Diagnostic* timeout =
      FindDiagnostic(r, Severity::kError, "spec.http[0].timeout", "at least 1ms");
  const Diagnostic* retry_on =
      FindDiagnostic(r, Severity::kError, "spec.http[0].retries.retryOn", "\" reset\"");
  const Diagnostic* ejection = FindDiagnostic(
      r, Severity::kError, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "101");
  ASSERT_NE(timeout, nullptr) << r.diagnostics.ToString();
  ASSERT_NE(retry_on, nullptr) << r.diagnostics.ToString();
  ASSERT_NE(ejection, nullptr) << r.diagnostics.ToString();
  EXPECT_EQ(timeout->where.line, kHttp + 1);
  EXPECT_EQ(retry_on->where.line, kHttp + 2);
  EXPECT_EQ(ejection->where.line, Lines(first) + kDr + 1);
  // Nothing half-parsed is dropped silently: both documents are still read.
  EXPECT_EQ(r.config.virtual_services.size(), 1u);
  EXPECT_EQ(r.config.destination_rules.size(), 1u);
}

}  // namespace
}  // namespace sluice::config

namespace sluice::config {
namespace {

// Compilation picks the most specific wildcard DestinationRule for a host; validation must
// look subsets up the same way, or it warns about (and rejects Canaries on) defined subsets.
TEST(ValidationWildcardRules, SubsetsOfAWildcardDestinationRuleAreDefined) {
  LoadResult r = LoadText(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  ports: [{number: 80, name: http}]
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all-example}
spec:
  host: "*.example.com"
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  http:
  - route:
    - destination: {host: shop.example.com, subset: v1}
      weight: 90
    - destination: {host: shop.example.com, subset: v2}
      weight: 10
---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec: {host: shop.example.com, stableSubset: v1, canarySubset: v2}
)",
                          "wild.yaml");
  EXPECT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_TRUE(r.diagnostics.Filter(Severity::kWarning).empty()) << r.diagnostics.ToString();
}

TEST(ValidationWildcardRules, ExactRulesBeatWildcardsAndLongerWildcardsBeatShorter) {
  DestinationRule exact, wide, narrow;
  DestinationRuleIndex index = {
      {"shop.example.com", &exact}, {"*.com", &wide}, {"*.example.com", &narrow}};
  EXPECT_EQ(FindDestinationRule(index, "shop.example.com"), &exact);
  EXPECT_EQ(FindDestinationRule(index, "cart.example.com"), &narrow);
  EXPECT_EQ(FindDestinationRule(index, "other.com"), &wide);
  EXPECT_EQ(FindDestinationRule(index, "example.org"), nullptr);
}

}  // namespace
}  // namespace sluice::config
