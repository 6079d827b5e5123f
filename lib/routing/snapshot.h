#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/config/resources.h"
#include "lib/routing/endpoint_runtime.h"
#include "lib/routing/matcher.h"
#include "lib/routing/policies.h"
#include "re2/re2.h"

namespace sluice::routing {

struct Endpoint {
  std::string address;
  uint32_t port = 0;
  config::Labels labels;
  uint32_t weight = 1;
  std::string id;  // "address:port", unique within a cluster
  std::shared_ptr<EndpointRuntime> runtime;
};

// Envoy's unit of upstream policy: one host, one subset (possibly none), one port.
struct Cluster {
  uint32_t id = 0;   // index in Snapshot::clusters()
  std::string name;  // Istio's name: outbound|9080|v1|reviews.default.svc.cluster.local
  std::string host;
  std::string subset;
  uint32_t port = 0;
  std::vector<Endpoint> endpoints;
  TrafficPolicy policy;
  std::shared_ptr<ClusterRuntime> runtime;
};

struct RouteDestination {
  std::string host;
  std::string subset;
  uint32_t port = 0;
  std::string cluster_name;
  const Cluster* cluster = nullptr;  // nullptr: no such cluster, requests get 503 NC
  uint32_t weight = 0;
  config::Headers headers;
};

// Destinations with positive weight, in listed order. Envoy's pick: `random % total`, then
// the destination whose cumulative range holds it.
class WeightTable {
 public:
  WeightTable() = default;
  explicit WeightTable(std::vector<RouteDestination> destinations);

  const std::vector<RouteDestination>& destinations() const { return destinations_; }
  uint64_t total_weight() const { return total_; }
  bool empty() const { return destinations_.empty(); }
  // Index of the destination that `random` selects.
  size_t Pick(uint64_t random) const;

 private:
  std::vector<RouteDestination> destinations_;
  std::vector<uint64_t> upper_bounds_;  // cumulative weights
  uint64_t total_ = 0;
};

struct Mirror {
  RouteDestination destination;
  config::FractionalPercent percentage{1'000'000, 1'000'000};
};

struct Rewrite {
  std::string uri;  // prefix rewrite: replaces the matched prefix, or the whole path
  std::string authority;
  std::shared_ptr<const RE2> regex;  // uriRegexRewrite
  std::string regex_substitution;
};

enum class RouteAction { kForward, kRedirect, kDirectResponse };

struct Route {
  uint32_t id = 0;                    // index in Snapshot::routes()
  std::string name;                   // Istio's `name`, may be empty
  std::string display_name;           // name, or "<virtual service>.<namespace>.<index>"
  std::string virtual_service;        // namespace/name
  std::vector<RouteMatcher> matches;  // empty: every request
  RouteAction action = RouteAction::kForward;
  WeightTable weights;
  std::optional<config::HTTPRedirect> redirect;
  std::optional<config::HTTPDirectResponse> direct_response;
  absl::Duration timeout = absl::ZeroDuration();  // zero: no route timeout (Istio's default)
  RetryPolicy retry;
  std::optional<config::HTTPFaultInjection> fault;
  std::vector<Mirror> mirrors;
  std::optional<Rewrite> rewrite;
  config::Headers headers;
  config::SourceLocation location;
};

struct VirtualHost {
  std::string name;  // the host as resolved: FQDN, *.suffix or *
  std::vector<Route> routes;
};

// The canary subset's share, set by a canary controller, of every route that splits a host's
// traffic between its stable and canary subsets (the route's declared weights are replaced).
struct CanaryWeight {
  std::string host;  // FQDN
  std::string stable_subset;
  std::string canary_subset;
  int32_t weight = 0;  // percent of the split's total to the canary
  bool operator==(const CanaryWeight&) const = default;
};

// One immutable, versioned view of the whole configuration. Built once per change and
// shared read-only by every request.
class Snapshot {
 public:
  uint64_t version() const { return version_; }

  // The virtual host serving `authority` (a Host header, port allowed): exact names and
  // their short-name aliases first, then the longest matching wildcard, then `*`.
  const VirtualHost* FindVirtualHost(absl::string_view authority) const;
  const Cluster* FindCluster(absl::string_view name) const;

  const std::vector<VirtualHost>& virtual_hosts() const { return virtual_hosts_; }
  const std::vector<std::unique_ptr<Cluster>>& clusters() const { return clusters_; }
  // Every route of every host, by Route::id.
  const std::vector<const Route*>& routes() const { return routes_; }
  // Every header name any match rule reads: the only headers a gateway needs to send.
  const std::vector<std::string>& match_header_names() const { return match_header_names_; }
  const config::ConfigSet& source() const { return *source_; }
  // The namespace short host names resolve in (the aliases FindVirtualHost accepts).
  const std::string& client_namespace() const { return client_namespace_; }

 private:
  friend class SnapshotCompiler;  // server/routing: from validated Istio resources
  friend class TableDecoder;      // lib/routing/table_codec: from the pushed table

  // Builds the host lookup (exact names, short-name aliases of `client_namespace`,
  // wildcards longest first) and numbers the routes. The last step of every builder.
  void FinishIndex(absl::string_view client_namespace);

  uint64_t version_ = 0;
  std::vector<VirtualHost> virtual_hosts_;
  std::vector<std::unique_ptr<Cluster>> clusters_;
  std::vector<const Route*> routes_;
  absl::flat_hash_map<std::string, size_t> exact_hosts_;
  std::vector<std::pair<std::string, size_t>> wildcard_hosts_;  // ".suffix", longest first
  std::optional<size_t> catch_all_host_;
  absl::flat_hash_map<std::string, const Cluster*> clusters_by_name_;
  std::vector<std::string> match_header_names_;
  std::shared_ptr<const config::ConfigSet> source_;
  std::string client_namespace_;
};

// Applies `weights` to `destinations` (one route's) where they split a host between its stable
// and canary subsets: the canary gets `weight` percent of the pair's total (100 when both
// are declared 0) and the stable subset the rest. Returns whether anything changed.
bool ApplyCanaryWeights(const std::vector<CanaryWeight>& weights,
                        std::vector<RouteDestination>& destinations);

// "outbound|9080|v1|reviews.default.svc.cluster.local"
std::string ClusterName(absl::string_view host, absl::string_view subset, uint32_t port);

}  // namespace sluice::routing
