#include "lib/routing/table_codec.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "re2/re2.h"

namespace sluice::routing {
namespace {

using LabelList = google::protobuf::RepeatedPtrField<v1::TableLabel>;

// absl::Duration counts quarter nanoseconds, the table whole nanoseconds: lossless for every
// duration Istio accepts (whole milliseconds) and every default. An infinite duration (none
// is compiled today) travels as the largest seconds value.
constexpr int64_t kInfiniteSeconds = std::numeric_limits<int64_t>::max();
constexpr int32_t kMaxNanos = 999'999'999;

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

std::string Indexed(absl::string_view path, absl::string_view field, int index) {
  return absl::StrCat(path, path.empty() ? "" : ".", field, "[", index, "]");
}

std::string Field(absl::string_view path, absl::string_view field) {
  return absl::StrCat(path, ".", field);
}

// ---------------------------------------------------------------------------------------------
// Encoding

void EncodeDuration(absl::Duration d, google::protobuf::Duration& out) {
  if (d == absl::InfiniteDuration()) {
    out.set_seconds(kInfiniteSeconds);
    out.set_nanos(0);
    return;
  }
  absl::Duration remainder;
  out.set_seconds(absl::IDivDuration(d, absl::Seconds(1), &remainder));
  out.set_nanos(static_cast<int32_t>(remainder / absl::Nanoseconds(1)));
}

void EncodeLabels(const config::Labels& labels, LabelList& out) {
  for (const auto& [name, value] : labels) {
    v1::TableLabel* l = out.Add();
    l->set_name(name);
    l->set_value(value);
  }
}

void EncodeLocation(const config::SourceLocation& location, v1::TableSourceLocation& out) {
  out.set_file(location.file);
  out.set_line(location.line);
}

v1::TableStringMatchKind EncodeKind(config::StringMatch::Kind kind) {
  switch (kind) {
    case config::StringMatch::Kind::kExact:
      return v1::TABLE_STRING_MATCH_KIND_EXACT;
    case config::StringMatch::Kind::kPrefix:
      return v1::TABLE_STRING_MATCH_KIND_PREFIX;
    case config::StringMatch::Kind::kRegex:
      return v1::TABLE_STRING_MATCH_KIND_REGEX;
    case config::StringMatch::Kind::kPresent:
      return v1::TABLE_STRING_MATCH_KIND_PRESENT;
  }
  return v1::TABLE_STRING_MATCH_KIND_UNSPECIFIED;
}

void EncodeStringMatch(const config::StringMatch& match, v1::TableStringMatch& out) {
  out.set_kind(EncodeKind(match.kind));
  out.set_value(match.value);
}

void EncodeNamedMatches(const std::vector<config::NamedStringMatch>& matches,
                        google::protobuf::RepeatedPtrField<v1::TableNamedStringMatch>& out) {
  for (const config::NamedStringMatch& m : matches) {
    v1::TableNamedStringMatch* n = out.Add();
    n->set_name(m.name);
    EncodeStringMatch(m.match, *n->mutable_match());
  }
}

void EncodeMatch(const config::HTTPMatchRequest& match, v1::TableMatch& out) {
  out.set_name(match.name);
  if (match.uri) EncodeStringMatch(*match.uri, *out.mutable_uri());
  if (match.scheme) EncodeStringMatch(*match.scheme, *out.mutable_scheme());
  if (match.method) EncodeStringMatch(*match.method, *out.mutable_method());
  if (match.authority) EncodeStringMatch(*match.authority, *out.mutable_authority());
  EncodeNamedMatches(match.headers, *out.mutable_headers());
  EncodeNamedMatches(match.without_headers, *out.mutable_without_headers());
  EncodeNamedMatches(match.query_params, *out.mutable_query_params());
  out.set_ignore_uri_case(match.ignore_uri_case);
  if (match.port) out.set_port(*match.port);
  EncodeLabels(match.source_labels, *out.mutable_source_labels());
  for (const std::string& g : match.gateways) out.add_gateways(g);
  out.set_source_namespace(match.source_namespace);
  out.set_path(match.path);
  EncodeLocation(match.location, *out.mutable_location());
}

void EncodeHeaderOperations(const config::HeaderOperations& ops, v1::TableHeaderOperations& out) {
  EncodeLabels(ops.set, *out.mutable_set());
  EncodeLabels(ops.add, *out.mutable_add());
  for (const std::string& name : ops.remove) out.add_remove(name);
}

void EncodeHeaders(const config::Headers& headers, v1::TableHeaders& out) {
  EncodeHeaderOperations(headers.request, *out.mutable_request());
  EncodeHeaderOperations(headers.response, *out.mutable_response());
}

void EncodePercent(const config::FractionalPercent& p, v1::TableFractionalPercent& out) {
  out.set_numerator(p.numerator);
  out.set_denominator(p.denominator);
}

void EncodeDestination(const RouteDestination& d, v1::TableDestination& out) {
  out.set_host(d.host);
  out.set_subset(d.subset);
  out.set_port(d.port);
  out.set_cluster_name(d.cluster_name);
  if (d.cluster != nullptr) out.set_cluster_id(d.cluster->id);
  out.set_weight(d.weight);
  EncodeHeaders(d.headers, *out.mutable_headers());
}

v1::TableDerivePort EncodeDerivePort(config::HTTPRedirect::DerivePort p) {
  switch (p) {
    case config::HTTPRedirect::DerivePort::kUnset:
      return v1::TABLE_DERIVE_PORT_UNSET;
    case config::HTTPRedirect::DerivePort::kFromProtocolDefault:
      return v1::TABLE_DERIVE_PORT_FROM_PROTOCOL_DEFAULT;
    case config::HTTPRedirect::DerivePort::kFromRequestPort:
      return v1::TABLE_DERIVE_PORT_FROM_REQUEST_PORT;
  }
  return v1::TABLE_DERIVE_PORT_UNSET;
}

void EncodeRetry(const RetryPolicy& retry, v1::TableRetryPolicy& out) {
  out.set_num_retries(retry.num_retries);
  out.set_retry_on(retry.retry_on);
  for (uint32_t code : retry.retriable_status_codes) out.add_retriable_status_codes(code);
  EncodeDuration(retry.per_try_timeout, *out.mutable_per_try_timeout());
  EncodeDuration(retry.backoff_base, *out.mutable_backoff_base());
  EncodeDuration(retry.backoff_max, *out.mutable_backoff_max());
  out.set_retry_other_hosts(retry.retry_other_hosts);
  out.set_host_selection_max_attempts(retry.host_selection_max_attempts);
}

void EncodeFault(const config::HTTPFaultInjection& fault, v1::TableFault& out) {
  if (fault.delay) {
    v1::TableFaultDelay& delay = *out.mutable_delay();
    if (fault.delay->fixed_delay)
      EncodeDuration(*fault.delay->fixed_delay, *delay.mutable_fixed_delay());
    if (fault.delay->percentage)
      EncodePercent(*fault.delay->percentage, *delay.mutable_percentage());
  }
  if (fault.abort) {
    v1::TableFaultAbort& abort = *out.mutable_abort();
    if (fault.abort->http_status) abort.set_http_status(*fault.abort->http_status);
    abort.set_grpc_status(fault.abort->grpc_status);
    if (fault.abort->percentage)
      EncodePercent(*fault.abort->percentage, *abort.mutable_percentage());
  }
}

v1::TableRouteAction EncodeAction(RouteAction action) {
  switch (action) {
    case RouteAction::kForward:
      return v1::TABLE_ROUTE_ACTION_FORWARD;
    case RouteAction::kRedirect:
      return v1::TABLE_ROUTE_ACTION_REDIRECT;
    case RouteAction::kDirectResponse:
      return v1::TABLE_ROUTE_ACTION_DIRECT_RESPONSE;
  }
  return v1::TABLE_ROUTE_ACTION_UNSPECIFIED;
}

void EncodeRoute(const Route& route, v1::TableRoute& out) {
  out.set_id(route.id);
  out.set_name(route.name);
  out.set_display_name(route.display_name);
  out.set_virtual_service(route.virtual_service);
  for (const RouteMatcher& m : route.matches) EncodeMatch(m.source(), *out.add_matches());
  out.set_action(EncodeAction(route.action));
  for (const RouteDestination& d : route.weights.destinations()) {
    EncodeDestination(d, *out.add_destinations());
  }
  if (route.redirect) {
    const config::HTTPRedirect& in = *route.redirect;
    v1::TableRedirect& r = *out.mutable_redirect();
    r.set_uri(in.uri);
    r.set_authority(in.authority);
    r.set_scheme(in.scheme);
    if (in.port) r.set_port(*in.port);
    r.set_derive_port(EncodeDerivePort(in.derive_port));
    r.set_redirect_code(in.redirect_code);
  }
  if (route.direct_response) {
    v1::TableDirectResponse& r = *out.mutable_direct_response();
    r.set_status(route.direct_response->status);
    if (route.direct_response->body) r.set_body(*route.direct_response->body);
  }
  EncodeDuration(route.timeout, *out.mutable_timeout());
  EncodeRetry(route.retry, *out.mutable_retry());
  if (route.fault) EncodeFault(*route.fault, *out.mutable_fault());
  for (const Mirror& m : route.mirrors) {
    v1::TableMirror& mirror = *out.add_mirrors();
    EncodeDestination(m.destination, *mirror.mutable_destination());
    EncodePercent(m.percentage, *mirror.mutable_percentage());
  }
  if (route.rewrite) {
    v1::TableRewrite& rw = *out.mutable_rewrite();
    rw.set_uri(route.rewrite->uri);
    rw.set_authority(route.rewrite->authority);
    if (route.rewrite->regex != nullptr) rw.set_regex(route.rewrite->regex->pattern());
    rw.set_regex_substitution(route.rewrite->regex_substitution);
  }
  EncodeHeaders(route.headers, *out.mutable_headers());
  EncodeLocation(route.location, *out.mutable_location());
}

v1::TableLoadBalancer EncodeLoadBalancer(LoadBalancer lb) {
  switch (lb) {
    case LoadBalancer::kLeastRequest:
      return v1::TABLE_LOAD_BALANCER_LEAST_REQUEST;
    case LoadBalancer::kRoundRobin:
      return v1::TABLE_LOAD_BALANCER_ROUND_ROBIN;
    case LoadBalancer::kRandom:
      return v1::TABLE_LOAD_BALANCER_RANDOM;
  }
  return v1::TABLE_LOAD_BALANCER_UNSPECIFIED;
}

void EncodePolicy(const TrafficPolicy& policy, v1::TableTrafficPolicy& out) {
  out.set_load_balancer(EncodeLoadBalancer(policy.load_balancer));
  const ConnectionPoolLimits& pool = policy.connection_pool;
  v1::TableConnectionPool& p = *out.mutable_connection_pool();
  p.set_max_connections(pool.max_connections);
  EncodeDuration(pool.connect_timeout, *p.mutable_connect_timeout());
  p.set_max_pending_requests(pool.max_pending_requests);
  p.set_max_requests(pool.max_requests);
  p.set_max_retries(pool.max_retries);
  p.set_max_requests_per_connection(pool.max_requests_per_connection);
  EncodeDuration(pool.idle_timeout, *p.mutable_idle_timeout());
  EncodeDuration(pool.max_connection_duration, *p.mutable_max_connection_duration());
  const OutlierPolicy& outlier = policy.outlier;
  v1::TableOutlierPolicy& o = *out.mutable_outlier();
  o.set_enabled(outlier.enabled);
  o.set_consecutive_5xx(outlier.consecutive_5xx);
  o.set_enforce_consecutive_5xx(outlier.enforce_consecutive_5xx);
  o.set_consecutive_gateway_errors(outlier.consecutive_gateway_errors);
  o.set_enforce_consecutive_gateway_errors(outlier.enforce_consecutive_gateway_errors);
  o.set_split_external_local_origin_errors(outlier.split_external_local_origin_errors);
  o.set_consecutive_local_origin_failures(outlier.consecutive_local_origin_failures);
  o.set_enforce_consecutive_local_origin_failures(
      outlier.enforce_consecutive_local_origin_failures);
  EncodeDuration(outlier.interval, *o.mutable_interval());
  EncodeDuration(outlier.base_ejection_time, *o.mutable_base_ejection_time());
  EncodeDuration(outlier.max_ejection_time, *o.mutable_max_ejection_time());
  o.set_max_ejection_percent(outlier.max_ejection_percent);
  o.set_healthy_panic_threshold(outlier.healthy_panic_threshold);
}

void EncodeCluster(const Cluster& cluster, v1::TableCluster& out) {
  out.set_id(cluster.id);
  out.set_name(cluster.name);
  out.set_host(cluster.host);
  out.set_subset(cluster.subset);
  out.set_port(cluster.port);
  for (const Endpoint& e : cluster.endpoints) {
    v1::TableEndpoint& ep = *out.add_endpoints();
    ep.set_address(e.address);
    ep.set_port(e.port);
    EncodeLabels(e.labels, *ep.mutable_labels());
    ep.set_weight(e.weight);
    ep.set_id(e.id);
    ep.set_ejected(e.runtime != nullptr && e.runtime->ejected.load(std::memory_order_relaxed));
  }
  EncodePolicy(cluster.policy, *out.mutable_policy());
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers that need no snapshot

absl::Status DecodeDuration(const google::protobuf::Duration& in, absl::string_view path,
                            absl::Duration& out) {
  if (in.seconds() == kInfiniteSeconds && in.nanos() == 0) {
    out = absl::InfiniteDuration();
    return absl::OkStatus();
  }
  if (in.seconds() < 0 || in.nanos() < 0 || in.nanos() > kMaxNanos) {
    return Invalid(path, absl::StrCat("invalid duration (", in.seconds(), "s, ", in.nanos(),
                                      "ns): must be non-negative, nanos below 1e9"));
  }
  out = absl::Seconds(in.seconds()) + absl::Nanoseconds(in.nanos());
  return absl::OkStatus();
}

config::Labels DecodeLabels(const LabelList& in) {
  config::Labels out;
  out.reserve(in.size());
  for (const v1::TableLabel& l : in) out.emplace_back(l.name(), l.value());
  return out;
}

config::SourceLocation DecodeLocation(const v1::TableSourceLocation& in) {
  return config::SourceLocation{in.file(), in.line()};
}

// The RE2 options the matcher and the compiler use, so validity is judged alike.
absl::Status CheckRegex(const std::string& pattern, absl::string_view path) {
  RE2::Options options;
  options.set_log_errors(false);
  const RE2 re(pattern, options);
  if (!re.ok()) {
    return Invalid(path, absl::StrCat("invalid regex \"", pattern, "\": ", re.error()));
  }
  return absl::OkStatus();
}

absl::Status DecodeStringMatch(const v1::TableStringMatch& in, absl::string_view path,
                               config::StringMatch& out) {
  switch (in.kind()) {
    case v1::TABLE_STRING_MATCH_KIND_EXACT:
      out.kind = config::StringMatch::Kind::kExact;
      break;
    case v1::TABLE_STRING_MATCH_KIND_PREFIX:
      out.kind = config::StringMatch::Kind::kPrefix;
      break;
    case v1::TABLE_STRING_MATCH_KIND_REGEX:
      out.kind = config::StringMatch::Kind::kRegex;
      // Checked here, though RouteMatcher::Create checks again, to name the exact field.
      if (absl::Status s = CheckRegex(in.value(), Field(path, "value")); !s.ok()) return s;
      break;
    case v1::TABLE_STRING_MATCH_KIND_PRESENT:
      out.kind = config::StringMatch::Kind::kPresent;
      break;
    default:
      return Invalid(Field(path, "kind"), absl::StrCat("unknown string match kind ", in.kind()));
  }
  out.value = in.value();
  return absl::OkStatus();
}

absl::Status DecodeOptionalStringMatch(bool present, const v1::TableStringMatch& in,
                                       absl::string_view path,
                                       std::optional<config::StringMatch>& out) {
  if (!present) return absl::OkStatus();
  config::StringMatch m;
  if (absl::Status s = DecodeStringMatch(in, path, m); !s.ok()) return s;
  out = std::move(m);
  return absl::OkStatus();
}

absl::Status DecodeNamedMatches(
    const google::protobuf::RepeatedPtrField<v1::TableNamedStringMatch>& in, absl::string_view path,
    absl::string_view field, std::vector<config::NamedStringMatch>& out) {
  for (int i = 0; i < in.size(); ++i) {
    config::NamedStringMatch m;
    m.name = in[i].name();
    if (absl::Status s =
            DecodeStringMatch(in[i].match(), Field(Indexed(path, field, i), "match"), m.match);
        !s.ok()) {
      return s;
    }
    out.push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::Status DecodeMatch(const v1::TableMatch& in, absl::string_view path,
                         config::HTTPMatchRequest& out) {
  out.name = in.name();
  if (absl::Status s =
          DecodeOptionalStringMatch(in.has_uri(), in.uri(), Field(path, "uri"), out.uri);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = DecodeOptionalStringMatch(in.has_scheme(), in.scheme(),
                                                 Field(path, "scheme"), out.scheme);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = DecodeOptionalStringMatch(in.has_method(), in.method(),
                                                 Field(path, "method"), out.method);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = DecodeOptionalStringMatch(in.has_authority(), in.authority(),
                                                 Field(path, "authority"), out.authority);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = DecodeNamedMatches(in.headers(), path, "headers", out.headers); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          DecodeNamedMatches(in.without_headers(), path, "without_headers", out.without_headers);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          DecodeNamedMatches(in.query_params(), path, "query_params", out.query_params);
      !s.ok()) {
    return s;
  }
  out.ignore_uri_case = in.ignore_uri_case();
  if (in.has_port()) out.port = in.port();
  out.source_labels = DecodeLabels(in.source_labels());
  out.gateways.assign(in.gateways().begin(), in.gateways().end());
  out.source_namespace = in.source_namespace();
  out.path = in.path();
  out.location = DecodeLocation(in.location());
  return absl::OkStatus();
}

config::HeaderOperations DecodeHeaderOperations(const v1::TableHeaderOperations& in) {
  config::HeaderOperations out;
  out.set = DecodeLabels(in.set());
  out.add = DecodeLabels(in.add());
  out.remove.assign(in.remove().begin(), in.remove().end());
  return out;
}

config::Headers DecodeHeaders(const v1::TableHeaders& in) {
  return config::Headers{DecodeHeaderOperations(in.request()),
                         DecodeHeaderOperations(in.response())};
}

absl::Status DecodePercent(const v1::TableFractionalPercent& in, absl::string_view path,
                           config::FractionalPercent& out) {
  if (in.denominator() == 0) return Invalid(Field(path, "denominator"), "must be positive");
  out.numerator = in.numerator();
  out.denominator = in.denominator();
  return absl::OkStatus();
}

absl::Status DecodeRetry(const v1::TableRetryPolicy& in, absl::string_view path, RetryPolicy& out) {
  out.num_retries = in.num_retries();
  out.retry_on = in.retry_on();
  out.retriable_status_codes.assign(in.retriable_status_codes().begin(),
                                    in.retriable_status_codes().end());
  if (absl::Status s =
          DecodeDuration(in.per_try_timeout(), Field(path, "per_try_timeout"), out.per_try_timeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          DecodeDuration(in.backoff_base(), Field(path, "backoff_base"), out.backoff_base);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          DecodeDuration(in.backoff_max(), Field(path, "backoff_max"), out.backoff_max);
      !s.ok()) {
    return s;
  }
  out.retry_other_hosts = in.retry_other_hosts();
  out.host_selection_max_attempts = in.host_selection_max_attempts();
  return absl::OkStatus();
}

absl::Status DecodeFault(const v1::TableFault& in, absl::string_view path,
                         config::HTTPFaultInjection& out) {
  if (in.has_delay()) {
    const std::string delay_path = Field(path, "delay");
    config::FaultDelay delay;
    if (in.delay().has_fixed_delay()) {
      absl::Duration d;
      if (absl::Status s =
              DecodeDuration(in.delay().fixed_delay(), Field(delay_path, "fixed_delay"), d);
          !s.ok()) {
        return s;
      }
      delay.fixed_delay = d;
    }
    if (in.delay().has_percentage()) {
      config::FractionalPercent p;
      if (absl::Status s =
              DecodePercent(in.delay().percentage(), Field(delay_path, "percentage"), p);
          !s.ok()) {
        return s;
      }
      delay.percentage = p;
    }
    out.delay = std::move(delay);
  }
  if (in.has_abort()) {
    config::FaultAbort abort;
    if (in.abort().has_http_status()) abort.http_status = in.abort().http_status();
    abort.grpc_status = in.abort().grpc_status();
    if (in.abort().has_percentage()) {
      config::FractionalPercent p;
      if (absl::Status s =
              DecodePercent(in.abort().percentage(), Field(path, "abort.percentage"), p);
          !s.ok()) {
        return s;
      }
      abort.percentage = p;
    }
    out.abort = std::move(abort);
  }
  return absl::OkStatus();
}

absl::Status DecodeRedirect(const v1::TableRedirect& in, absl::string_view path,
                            config::HTTPRedirect& out) {
  out.uri = in.uri();
  out.authority = in.authority();
  out.scheme = in.scheme();
  if (in.has_port()) out.port = in.port();
  switch (in.derive_port()) {
    case v1::TABLE_DERIVE_PORT_UNSET:
      out.derive_port = config::HTTPRedirect::DerivePort::kUnset;
      break;
    case v1::TABLE_DERIVE_PORT_FROM_PROTOCOL_DEFAULT:
      out.derive_port = config::HTTPRedirect::DerivePort::kFromProtocolDefault;
      break;
    case v1::TABLE_DERIVE_PORT_FROM_REQUEST_PORT:
      out.derive_port = config::HTTPRedirect::DerivePort::kFromRequestPort;
      break;
    default:
      return Invalid(Field(path, "derive_port"),
                     absl::StrCat("unknown derive port ", in.derive_port()));
  }
  out.redirect_code = in.redirect_code();
  return absl::OkStatus();
}

absl::Status DecodePolicy(const v1::TableTrafficPolicy& in, absl::string_view path,
                          TrafficPolicy& out) {
  switch (in.load_balancer()) {
    case v1::TABLE_LOAD_BALANCER_LEAST_REQUEST:
      out.load_balancer = LoadBalancer::kLeastRequest;
      break;
    case v1::TABLE_LOAD_BALANCER_ROUND_ROBIN:
      out.load_balancer = LoadBalancer::kRoundRobin;
      break;
    case v1::TABLE_LOAD_BALANCER_RANDOM:
      out.load_balancer = LoadBalancer::kRandom;
      break;
    default:
      return Invalid(Field(path, "load_balancer"),
                     absl::StrCat("unknown load balancer ", in.load_balancer()));
  }
  const v1::TableConnectionPool& p = in.connection_pool();
  const std::string pool_path = Field(path, "connection_pool");
  ConnectionPoolLimits& pool = out.connection_pool;
  pool.max_connections = p.max_connections();
  pool.max_pending_requests = p.max_pending_requests();
  pool.max_requests = p.max_requests();
  pool.max_retries = p.max_retries();
  pool.max_requests_per_connection = p.max_requests_per_connection();
  for (const auto& [proto, name, target] :
       {std::tuple{&p.connect_timeout(), "connect_timeout", &pool.connect_timeout},
        std::tuple{&p.idle_timeout(), "idle_timeout", &pool.idle_timeout},
        std::tuple{&p.max_connection_duration(), "max_connection_duration",
                   &pool.max_connection_duration}}) {
    if (absl::Status s = DecodeDuration(*proto, Field(pool_path, name), *target); !s.ok()) {
      return s;
    }
  }
  const v1::TableOutlierPolicy& o = in.outlier();
  const std::string outlier_path = Field(path, "outlier");
  OutlierPolicy& outlier = out.outlier;
  outlier.enabled = o.enabled();
  outlier.consecutive_5xx = o.consecutive_5xx();
  outlier.enforce_consecutive_5xx = o.enforce_consecutive_5xx();
  outlier.consecutive_gateway_errors = o.consecutive_gateway_errors();
  outlier.enforce_consecutive_gateway_errors = o.enforce_consecutive_gateway_errors();
  outlier.split_external_local_origin_errors = o.split_external_local_origin_errors();
  outlier.consecutive_local_origin_failures = o.consecutive_local_origin_failures();
  outlier.enforce_consecutive_local_origin_failures = o.enforce_consecutive_local_origin_failures();
  for (const auto& [proto, name, target] :
       {std::tuple{&o.interval(), "interval", &outlier.interval},
        std::tuple{&o.base_ejection_time(), "base_ejection_time", &outlier.base_ejection_time},
        std::tuple{&o.max_ejection_time(), "max_ejection_time", &outlier.max_ejection_time}}) {
    if (absl::Status s = DecodeDuration(*proto, Field(outlier_path, name), *target); !s.ok()) {
      return s;
    }
  }
  outlier.max_ejection_percent = o.max_ejection_percent();
  outlier.healthy_panic_threshold = o.healthy_panic_threshold();
  return absl::OkStatus();
}

}  // namespace

// The one other builder of snapshots (with SnapshotCompiler): a friend of Snapshot.
class TableDecoder {
 public:
  TableDecoder(const v1::DecisionTable& table, RuntimeStore* runtime_store)
      : table_(table), runtime_store_(runtime_store), snapshot_(new Snapshot()) {}

  absl::StatusOr<std::shared_ptr<const Snapshot>> Decode() {
    snapshot_->version_ = table_.version();
    // Nothing of the Istio resources travels; source() must still be safe to read.
    snapshot_->source_ = std::make_shared<const config::ConfigSet>();
    snapshot_->clusters_.reserve(table_.clusters_size());
    for (int i = 0; i < table_.clusters_size(); ++i) {
      if (absl::Status s = AddCluster(table_.clusters(i), i); !s.ok()) return s;
    }
    absl::flat_hash_set<std::string> host_names;
    uint32_t next_route_id = 0;
    snapshot_->virtual_hosts_.reserve(table_.virtual_hosts_size());
    for (int h = 0; h < table_.virtual_hosts_size(); ++h) {
      const v1::TableVirtualHost& in = table_.virtual_hosts(h);
      const std::string path = Indexed("", "virtual_hosts", h);
      if (!host_names.insert(in.name()).second) {
        return Invalid(Field(path, "name"), absl::StrCat("duplicate host \"", in.name(), "\""));
      }
      VirtualHost host;
      host.name = in.name();
      host.routes.reserve(in.routes_size());
      for (int r = 0; r < in.routes_size(); ++r) {
        Route route;
        if (absl::Status s =
                DecodeRoute(in.routes(r), Indexed(path, "routes", r), next_route_id++, route);
            !s.ok()) {
          return s;
        }
        host.routes.push_back(std::move(route));
      }
      snapshot_->virtual_hosts_.push_back(std::move(host));
    }
    snapshot_->FinishIndex(table_.client_namespace());
    for (const auto& [runtime, ejected] : health_) {
      runtime->ejected.store(ejected, std::memory_order_relaxed);
    }
    return std::shared_ptr<const Snapshot>(std::move(snapshot_));
  }

 private:
  std::vector<std::pair<std::shared_ptr<EndpointRuntime>, bool>> health_;
  absl::Status AddCluster(const v1::TableCluster& in, int index) {
    const std::string path = Indexed("", "clusters", index);
    if (in.id() != static_cast<uint32_t>(index)) {
      return Invalid(Field(path, "id"),
                     absl::StrCat(in.id(), ", expected ", index, " (clusters are listed by id)"));
    }
    if (snapshot_->clusters_by_name_.contains(in.name())) {
      return Invalid(Field(path, "name"), absl::StrCat("duplicate cluster \"", in.name(), "\""));
    }
    auto cluster = std::make_unique<Cluster>();
    cluster->id = in.id();
    cluster->name = in.name();
    cluster->host = in.host();
    cluster->subset = in.subset();
    cluster->port = in.port();
    if (absl::Status s = DecodePolicy(in.policy(), Field(path, "policy"), cluster->policy);
        !s.ok()) {
      return s;
    }
    cluster->endpoints.reserve(in.endpoints_size());
    for (const v1::TableEndpoint& ep : in.endpoints()) {
      Endpoint e;
      e.address = ep.address();
      e.port = ep.port();
      e.labels = DecodeLabels(ep.labels());
      e.weight = ep.weight();
      e.id = ep.id();
      // Keyed as the compiler keys them, so load and health carry over between tables.
      e.runtime = runtime_store_ != nullptr ? runtime_store_->Endpoint(cluster->name, e.id)
                                            : std::make_shared<EndpointRuntime>();
      // Applied only once the whole table decoded: the runtime may be shared with the table
      // in use, whose health a refused table must not change.
      health_.emplace_back(e.runtime, ep.ejected());
      cluster->endpoints.push_back(std::move(e));
    }
    cluster->runtime = runtime_store_ != nullptr ? runtime_store_->Cluster(cluster->name)
                                                 : std::make_shared<ClusterRuntime>();
    snapshot_->clusters_by_name_.emplace(cluster->name, cluster.get());
    snapshot_->clusters_.push_back(std::move(cluster));
    return absl::OkStatus();
  }

  absl::Status DecodeDestination(const v1::TableDestination& in, absl::string_view path,
                                 RouteDestination& out) {
    out.host = in.host();
    out.subset = in.subset();
    out.port = in.port();
    out.cluster_name = in.cluster_name();
    if (in.has_cluster_id()) {
      const auto& clusters = snapshot_->clusters_;
      if (in.cluster_id() >= clusters.size()) {
        return Invalid(Field(path, "cluster_id"), absl::StrCat(in.cluster_id(), " out of range (",
                                                               clusters.size(), " clusters)"));
      }
      out.cluster = clusters[in.cluster_id()].get();
      if (out.cluster->name != out.cluster_name) {
        return Invalid(Field(path, "cluster_name"),
                       absl::StrCat("\"", out.cluster_name, "\" but cluster ", in.cluster_id(),
                                    " is \"", out.cluster->name, "\""));
      }
    }
    out.weight = in.weight();
    out.headers = DecodeHeaders(in.headers());
    return absl::OkStatus();
  }

  absl::Status DecodeRoute(const v1::TableRoute& in, const std::string& path, uint32_t expected_id,
                           Route& out) {
    if (in.id() != expected_id) {
      return Invalid(Field(path, "id"), absl::StrCat(in.id(), ", expected ", expected_id,
                                                     " (routes are numbered in table order)"));
    }
    out.name = in.name();
    out.display_name = in.display_name();
    out.virtual_service = in.virtual_service();
    for (int i = 0; i < in.matches_size(); ++i) {
      const std::string match_path = Indexed(path, "matches", i);
      config::HTTPMatchRequest match;
      if (absl::Status s = DecodeMatch(in.matches(i), match_path, match); !s.ok()) return s;
      absl::StatusOr<RouteMatcher> matcher = RouteMatcher::Create(match);
      if (!matcher.ok()) return Invalid(match_path, matcher.status().message());
      // As the compiler does: every block's header names, first appearance first.
      matcher->CollectHeaderNames(snapshot_->match_header_names_);
      out.matches.push_back(*std::move(matcher));
    }
    switch (in.action()) {
      case v1::TABLE_ROUTE_ACTION_FORWARD:
        out.action = RouteAction::kForward;
        break;
      case v1::TABLE_ROUTE_ACTION_REDIRECT:
        out.action = RouteAction::kRedirect;
        break;
      case v1::TABLE_ROUTE_ACTION_DIRECT_RESPONSE:
        out.action = RouteAction::kDirectResponse;
        break;
      default:
        return Invalid(Field(path, "action"), absl::StrCat("unknown route action ", in.action()));
    }
    std::vector<RouteDestination> destinations;
    destinations.reserve(in.destinations_size());
    for (int i = 0; i < in.destinations_size(); ++i) {
      RouteDestination d;
      if (absl::Status s =
              DecodeDestination(in.destinations(i), Indexed(path, "destinations", i), d);
          !s.ok()) {
        return s;
      }
      destinations.push_back(std::move(d));
    }
    out.weights = WeightTable(std::move(destinations));
    // The decider indexes the weight table unchecked: a forwarding route without a
    // destination would read past its end.
    if (out.action == RouteAction::kForward && out.weights.empty()) {
      return Invalid(Field(path, "destinations"),
                     "a FORWARD route needs a destination with a positive weight");
    }
    if (in.has_redirect()) {
      config::HTTPRedirect redirect;
      if (absl::Status s = DecodeRedirect(in.redirect(), Field(path, "redirect"), redirect);
          !s.ok()) {
        return s;
      }
      out.redirect = std::move(redirect);
    } else if (out.action == RouteAction::kRedirect) {
      return Invalid(Field(path, "redirect"), "missing for a REDIRECT route");
    }
    if (in.has_direct_response()) {
      config::HTTPDirectResponse response;
      response.status = in.direct_response().status();
      if (in.direct_response().has_body()) response.body = in.direct_response().body();
      out.direct_response = std::move(response);
    } else if (out.action == RouteAction::kDirectResponse) {
      return Invalid(Field(path, "direct_response"), "missing for a DIRECT_RESPONSE route");
    }
    if (absl::Status s = DecodeDuration(in.timeout(), Field(path, "timeout"), out.timeout);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = DecodeRetry(in.retry(), Field(path, "retry"), out.retry); !s.ok()) {
      return s;
    }
    if (in.has_fault()) {
      config::HTTPFaultInjection fault;
      if (absl::Status s = DecodeFault(in.fault(), Field(path, "fault"), fault); !s.ok()) {
        return s;
      }
      out.fault = std::move(fault);
    }
    for (int i = 0; i < in.mirrors_size(); ++i) {
      const std::string mirror_path = Indexed(path, "mirrors", i);
      const v1::TableMirror& m = in.mirrors(i);
      Mirror mirror;
      if (absl::Status s = DecodeDestination(m.destination(), Field(mirror_path, "destination"),
                                             mirror.destination);
          !s.ok()) {
        return s;
      }
      if (!m.has_percentage()) return Invalid(Field(mirror_path, "percentage"), "missing");
      if (absl::Status s =
              DecodePercent(m.percentage(), Field(mirror_path, "percentage"), mirror.percentage);
          !s.ok()) {
        return s;
      }
      out.mirrors.push_back(std::move(mirror));
    }
    if (in.has_rewrite()) {
      const v1::TableRewrite& rw_in = in.rewrite();
      Rewrite rw;
      rw.uri = rw_in.uri();
      rw.authority = rw_in.authority();
      if (rw_in.has_regex()) {
        // The compiler's options: the decoded regex must rewrite exactly as the original.
        RE2::Options options;
        options.set_log_errors(false);
        auto re = std::make_shared<RE2>(rw_in.regex(), options);
        if (!re->ok()) {
          return Invalid(Field(path, "rewrite.regex"),
                         absl::StrCat("invalid regex \"", rw_in.regex(), "\": ", re->error()));
        }
        rw.regex = std::move(re);
      }
      rw.regex_substitution = rw_in.regex_substitution();
      out.rewrite = std::move(rw);
    }
    out.headers = DecodeHeaders(in.headers());
    out.location = DecodeLocation(in.location());
    return absl::OkStatus();
  }

  const v1::DecisionTable& table_;
  RuntimeStore* runtime_store_;
  std::shared_ptr<Snapshot> snapshot_;
};

void EncodeTable(const Snapshot& snapshot, v1::DecisionTable& out) {
  out.Clear();
  out.set_version(snapshot.version());
  out.set_client_namespace(snapshot.client_namespace());
  for (const VirtualHost& host : snapshot.virtual_hosts()) {
    v1::TableVirtualHost& h = *out.add_virtual_hosts();
    h.set_name(host.name);
    for (const Route& route : host.routes) EncodeRoute(route, *h.add_routes());
  }
  for (const std::unique_ptr<Cluster>& cluster : snapshot.clusters()) {
    EncodeCluster(*cluster, *out.add_clusters());
  }
}

absl::StatusOr<std::shared_ptr<const Snapshot>> DecodeTable(const v1::DecisionTable& table,
                                                            RuntimeStore* runtime_store) {
  return TableDecoder(table, runtime_store).Decode();
}

}  // namespace sluice::routing
