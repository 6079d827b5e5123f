#include "lib/routing/decision_proto.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice::routing {
namespace {

uint32_t Millis(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return static_cast<uint32_t>(std::clamp<int64_t>(ms, 0, std::numeric_limits<uint32_t>::max()));
}

void FillHeaderOps(const config::HeaderOperations& ops, v1::HeaderMutation& out) {
  for (const auto& [name, value] : ops.set) {
    v1::Header* h = out.add_set();
    h->set_name(name);
    h->set_value(value);
  }
  for (const auto& [name, value] : ops.add) {
    v1::Header* h = out.add_add();
    h->set_name(name);
    h->set_value(value);
  }
  for (const std::string& name : ops.remove) out.add_remove(name);
}

void FillEndpoint(const Endpoint& e, v1::Endpoint& out) {
  out.set_address(e.address);
  out.set_port(e.port);
}

}  // namespace

absl::Status CheckRequest(const v1::DecideRequest& request) {
  if (request.authority().empty()) {
    return absl::InvalidArgumentError("authority is required (the request's Host header)");
  }
  if (request.path().empty() || (request.path()[0] != '/' && request.path() != "*")) {
    return absl::InvalidArgumentError(
        absl::StrCat("path must start with '/', got \"", request.path().substr(0, 64), "\""));
  }
  if (request.path().size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is ", request.path().size(), " bytes; the limit is ", kMaxPathBytes));
  }
  if (static_cast<size_t>(request.headers_size()) > kMaxHeaders) {
    return absl::InvalidArgumentError(
        absl::StrCat(request.headers_size(), " headers; the limit is ", kMaxHeaders));
  }
  size_t bytes = 0;
  for (const v1::Header& h : request.headers()) {
    if (h.name().empty()) return absl::InvalidArgumentError("a header has an empty name");
    bytes += h.name().size() + h.value().size();
  }
  if (bytes > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers take ", bytes, " bytes; the limit is ", kMaxHeaderBytes));
  }
  return absl::OkStatus();
}

void ToAttributes(const v1::DecideRequest& request, RequestAttributes& out) {
  out.authority = request.authority();
  out.method = request.method().empty() ? "GET" : request.method();
  out.path = request.path();
  out.scheme = request.scheme().empty() ? "http" : request.scheme();
  out.port = request.port();
  out.source_namespace = request.source_namespace();
  out.headers.clear();
  out.headers.reserve(request.headers_size());
  for (const v1::Header& h : request.headers()) out.headers.emplace_back(h.name(), h.value());
  out.source_labels.clear();
  for (const auto& [k, v] : request.source_labels()) out.source_labels.emplace_back(k, v);
}

void FillRetryPolicy(const RetryPolicy& policy, v1::RetryPolicy& out) {
  out.set_num_retries(policy.num_retries);
  out.set_retry_on(policy.retry_on);
  for (uint32_t code : policy.retriable_status_codes) out.add_retriable_status_codes(code);
  out.set_per_try_timeout_ms(Millis(policy.per_try_timeout));
  out.set_backoff_base_ms(Millis(policy.backoff_base));
  out.set_backoff_max_ms(Millis(policy.backoff_max));
  out.set_retry_other_hosts(policy.retry_other_hosts);
}

void FillConnectionPool(const ConnectionPoolLimits& limits, v1::ConnectionPool& out) {
  out.set_max_connections(limits.max_connections);
  out.set_connect_timeout_ms(Millis(limits.connect_timeout));
  out.set_max_pending_requests(limits.max_pending_requests);
  out.set_max_requests(limits.max_requests);
  out.set_max_retries(limits.max_retries);
  out.set_max_requests_per_connection(limits.max_requests_per_connection);
  out.set_idle_timeout_ms(Millis(limits.idle_timeout));
}

void FillRouteTable(const Snapshot& snapshot, v1::RouteTable& out) {
  out.set_version(snapshot.version());
  for (const std::string& name : snapshot.match_header_names()) out.add_match_header_names(name);
  for (const Route* route : snapshot.routes()) {
    v1::RouteInfo* r = out.add_routes();
    r->set_id(route->id);
    r->set_name(route->display_name);
    r->set_timeout_ms(Millis(route->timeout));
    FillRetryPolicy(route->retry, *r->mutable_retry());
    FillHeaderOps(route->headers.request, *r->mutable_request_headers());
    FillHeaderOps(route->headers.response, *r->mutable_response_headers());
  }
  for (const auto& cluster : snapshot.clusters()) {
    v1::ClusterInfo* c = out.add_clusters();
    c->set_id(cluster->id);
    c->set_name(cluster->name);
    c->set_host(cluster->host);
    c->set_subset(cluster->subset);
    FillConnectionPool(cluster->policy.connection_pool, *c->mutable_pool());
    for (const Endpoint& e : cluster->endpoints) FillEndpoint(e, *c->add_endpoints());
  }
}

void FillDecision(const Decision& d, const Snapshot& snapshot, bool details, v1::Decision& out) {
  out.set_config_version(snapshot.version());
  switch (d.kind) {
    case Decision::Kind::kForward:
      out.set_action(v1::FORWARD);
      break;
    case Decision::Kind::kDirectResponse:
      out.set_action(v1::DIRECT_RESPONSE);
      break;
    case Decision::Kind::kRedirect:
      out.set_action(v1::REDIRECT);
      break;
  }
  if (d.status != 0) out.set_status(d.status);
  if (!d.body.empty()) out.set_body(d.body);
  if (!d.location.empty()) out.set_location(d.location);
  if (d.response_flags[0] != '\0') out.set_response_flags(d.response_flags);
  if (d.route != nullptr) out.set_route_id(d.route->id);
  if (d.destination != nullptr) {
    out.set_host(d.destination->host);
    out.set_subset(d.destination->subset);
    if (!d.destination->headers.request.empty()) {
      FillHeaderOps(d.destination->headers.request, *out.mutable_request_headers());
    }
    if (!d.destination->headers.response.empty()) {
      FillHeaderOps(d.destination->headers.response, *out.mutable_response_headers());
    }
  }
  if (d.cluster != nullptr) out.set_cluster_id(d.cluster->id);
  if (d.endpoint_index >= 0) out.set_endpoint_index(static_cast<uint32_t>(d.endpoint_index));
  for (uint32_t alt : d.alternates) out.add_alternate_indexes(alt);
  if (d.delay > absl::ZeroDuration() || d.abort_http_status != 0 || !d.abort_grpc_status.empty()) {
    v1::Fault* f = out.mutable_fault();
    f->set_delay_ms(Millis(d.delay));
    f->set_abort_http_status(d.abort_http_status);
    f->set_abort_grpc_status(d.abort_grpc_status);
  }
  if (d.mirror_cluster != nullptr) {
    out.mutable_mirror()->set_cluster_id(d.mirror_cluster->id);
    out.mutable_mirror()->set_endpoint_index(static_cast<uint32_t>(d.mirror_endpoint_index));
  }
  if (!d.rewritten_path.empty()) out.set_path(d.rewritten_path);
  if (!d.rewritten_authority.empty()) out.set_authority(d.rewritten_authority);
  if (!details) return;

  v1::DecisionDetails* det = out.mutable_details();
  if (d.route != nullptr) {
    det->set_route_name(d.route->display_name);
    det->set_timeout_ms(Millis(d.route->timeout));
    FillRetryPolicy(d.route->retry, *det->mutable_retry());
    det->mutable_retry()->set_retry_on_names(RetryOnToString(d.route->retry.retry_on));
  }
  if (d.cluster != nullptr) {
    det->set_cluster(d.cluster->name);
    FillConnectionPool(d.cluster->policy.connection_pool, *det->mutable_pool());
    if (d.endpoint_index >= 0) {
      FillEndpoint(d.cluster->endpoints[d.endpoint_index], *det->mutable_endpoint());
    }
    for (uint32_t alt : d.alternates)
      FillEndpoint(d.cluster->endpoints[alt], *det->add_alternates());
  } else if (d.destination != nullptr) {
    det->set_cluster(d.destination->cluster_name);
  }
  if (d.mirror_cluster != nullptr) {
    det->set_mirror_cluster(d.mirror_cluster->name);
    FillEndpoint(d.mirror_cluster->endpoints[d.mirror_endpoint_index], *det->mutable_mirror());
  }
}

}  // namespace sluice::routing
