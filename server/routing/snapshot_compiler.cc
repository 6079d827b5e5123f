#include "server/routing/snapshot_compiler.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/config/host_names.h"
#include "lib/config/service_registry.h"
#include "server/config/validation.h"

namespace sluice::routing {

class SnapshotCompiler {
 public:
  SnapshotCompiler(std::shared_ptr<const config::ConfigSet> config, uint64_t version,
                   config::Diagnostics* diagnostics, const CompileOptions& options)
      : config_(*config), registry_(*config), diagnostics_(diagnostics), options_(options) {
    snapshot_ = std::shared_ptr<Snapshot>(new Snapshot());
    snapshot_->version_ = version;
    snapshot_->source_ = std::move(config);
    for (const config::DestinationRule& dr : config_.destination_rules) {
      // The first rule per host wins (validation reports the others).
      rules_.emplace(config::ResolveHost(dr.host, dr.meta.namespace_name), &dr);
    }
  }

  absl::StatusOr<std::shared_ptr<const Snapshot>> Compile() {
    CreateServiceClusters();
    for (const config::VirtualService& vs : config_.virtual_services) {
      if (absl::Status s = AddVirtualService(vs); !s.ok()) return s;
    }
    AddDefaultRoutes();
    snapshot_->FinishIndex(options_.client_namespace);
    return std::shared_ptr<const Snapshot>(std::move(snapshot_));
  }

 private:
  const config::DestinationRule* RuleFor(const std::string& host) const {
    return config::FindDestinationRule(rules_, host);
  }

  static const config::Subset* FindSubset(const config::DestinationRule* rule,
                                          absl::string_view name) {
    if (rule == nullptr) return nullptr;
    for (const config::Subset& s : rule->subsets) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }

  uint32_t ServicePort(const config::ServiceInfo& service, uint32_t requested) const {
    if (requested != 0) return requested;
    return service.ports.empty() ? 80 : service.ports.front().number;
  }

  // The cluster for a destination, created on first use; nullptr when Envoy would have no
  // such cluster (unknown host, or a subset no DestinationRule defines).
  const Cluster* GetCluster(const std::string& host, const std::string& subset_name,
                            uint32_t requested_port, std::string* name_out) {
    const config::ServiceInfo* service = registry_.Find(host);
    const uint32_t port = service != nullptr ? ServicePort(*service, requested_port)
                                             : (requested_port != 0 ? requested_port : 80);
    *name_out = ClusterName(host, subset_name, port);
    if (const Cluster* existing = snapshot_->FindCluster(*name_out)) return existing;
    if (service == nullptr) return nullptr;
    // Istio builds outbound clusters only for the ports a service declares.
    if (requested_port != 0 && !service->ports.empty() &&
        std::none_of(service->ports.begin(), service->ports.end(),
                     [&](const config::ServicePort& p) { return p.number == requested_port; })) {
      return nullptr;
    }
    const config::DestinationRule* rule = RuleFor(host);
    const config::Subset* subset = nullptr;
    if (!subset_name.empty()) {
      subset = FindSubset(rule, subset_name);
      if (subset == nullptr) return nullptr;
    }
    auto cluster = std::make_unique<Cluster>();
    cluster->id = static_cast<uint32_t>(snapshot_->clusters_.size());
    cluster->name = *name_out;
    cluster->host = host;
    cluster->subset = subset_name;
    cluster->port = port;
    cluster->policy = ResolveTrafficPolicy(rule, subset);
    for (config::ServiceEndpoint& ep :
         registry_.Select(host, subset != nullptr ? subset->labels : config::Labels{}, port)) {
      Endpoint e;
      e.id = absl::StrCat(ep.address, ":", ep.port);
      e.address = std::move(ep.address);
      e.port = ep.port;
      e.labels = std::move(ep.labels);
      e.weight = ep.weight;
      e.runtime = options_.runtime_store != nullptr
                      ? options_.runtime_store->Endpoint(cluster->name, e.id)
                      : std::make_shared<EndpointRuntime>();
      cluster->endpoints.push_back(std::move(e));
    }
    cluster->runtime = options_.runtime_store != nullptr
                           ? options_.runtime_store->Cluster(cluster->name)
                           : std::make_shared<ClusterRuntime>();
    const Cluster* raw = cluster.get();
    snapshot_->clusters_by_name_.emplace(cluster->name, raw);
    snapshot_->clusters_.push_back(std::move(cluster));
    return raw;
  }

  // Every service gets a cluster per port, and every subset a cluster on the first port, so
  // endpoint listings show them before any route points there.
  void CreateServiceClusters() {
    std::vector<std::string> hosts;
    for (const auto& [host, info] : registry_.services()) hosts.push_back(host);
    std::sort(hosts.begin(), hosts.end());
    std::string ignored;
    for (const std::string& host : hosts) {
      const config::ServiceInfo& info = *registry_.Find(host);
      if (info.ports.empty()) GetCluster(host, "", 0, &ignored);
      for (const config::ServicePort& p : info.ports) GetCluster(host, "", p.number, &ignored);
      if (const config::DestinationRule* rule = RuleFor(host)) {
        for (const config::Subset& s : rule->subsets) GetCluster(host, s.name, 0, &ignored);
      }
    }
  }

  RouteDestination MakeDestination(const config::Destination& d, const std::string& ns) {
    RouteDestination out;
    out.host = config::ResolveHost(d.host, ns);
    out.subset = d.subset;
    out.cluster = GetCluster(out.host, d.subset, d.port.value_or(0), &out.cluster_name);
    out.port = out.cluster != nullptr ? out.cluster->port : d.port.value_or(0);
    return out;
  }

  VirtualHost& HostFor(const std::string& name) {
    auto it = host_index_.find(name);
    if (it != host_index_.end()) return snapshot_->virtual_hosts_[it->second];
    host_index_.emplace(name, snapshot_->virtual_hosts_.size());
    snapshot_->virtual_hosts_.push_back(VirtualHost{name, {}});
    return snapshot_->virtual_hosts_.back();
  }

  absl::StatusOr<Route> CompileRoute(const config::VirtualService& vs, size_t index) {
    const config::HTTPRoute& in = vs.http[index];
    const std::string& ns = vs.meta.namespace_name;
    Route r;
    r.name = in.name;
    r.display_name = in.name.empty() ? absl::StrCat(vs.meta.name, ".", ns, ".", index) : in.name;
    r.virtual_service = absl::StrCat(ns, "/", vs.meta.name);
    r.location = in.location;
    for (const config::HTTPMatchRequest& m : in.match) {
      absl::StatusOr<RouteMatcher> matcher = RouteMatcher::Create(m);
      if (!matcher.ok()) return matcher.status();
      matcher->CollectHeaderNames(snapshot_->match_header_names_);
      r.matches.push_back(*std::move(matcher));
    }
    if (in.redirect) {
      r.action = RouteAction::kRedirect;
      r.redirect = in.redirect;
    } else if (in.direct_response) {
      r.action = RouteAction::kDirectResponse;
      r.direct_response = in.direct_response;
    } else {
      std::vector<RouteDestination> destinations;
      for (const config::HTTPRouteDestination& d : in.route) {
        RouteDestination dest = MakeDestination(d.destination, ns);
        dest.weight = static_cast<uint32_t>(d.weight);
        dest.headers = d.headers;
        destinations.push_back(std::move(dest));
      }
      ApplyCanaryWeights(options_.canary_weights, destinations);
      r.weights = WeightTable(std::move(destinations));
    }
    r.timeout = in.timeout.value_or(absl::ZeroDuration());
    r.retry = ResolveRetryPolicy(in.retries, r.timeout);
    r.fault = in.fault;
    for (const config::HTTPMirrorPolicy& m : in.mirrors) {
      Mirror mirror;
      mirror.destination = MakeDestination(m.destination, ns);
      if (m.percentage) mirror.percentage = *m.percentage;
      r.mirrors.push_back(std::move(mirror));
    }
    if (in.rewrite) {
      Rewrite rw;
      rw.uri = in.rewrite->uri;
      rw.authority = in.rewrite->authority;
      if (in.rewrite->uri_regex_rewrite) {
        RE2::Options options;
        options.set_log_errors(false);
        auto re = std::make_shared<RE2>(in.rewrite->uri_regex_rewrite->match, options);
        if (!re->ok()) return absl::InvalidArgumentError(re->error());
        rw.regex = std::move(re);
        rw.regex_substitution = in.rewrite->uri_regex_rewrite->rewrite;
      }
      r.rewrite = std::move(rw);
    }
    r.headers = in.headers;
    return r;
  }

  static bool RouteIsCatchAll(const Route& r) {
    if (r.matches.empty()) return true;
    return std::any_of(r.matches.begin(), r.matches.end(),
                       [](const RouteMatcher& m) { return m.IsCatchAll(); });
  }

  absl::Status AddVirtualService(const config::VirtualService& vs) {
    if (vs.http.empty()) return absl::OkStatus();  // tcp/tls only: nothing sluice serves
    for (const std::string& raw_host : vs.hosts) {
      VirtualHost& vhost = HostFor(config::ResolveHost(raw_host, vs.meta.namespace_name));
      for (size_t i = 0; i < vs.http.size(); ++i) {
        if (caught_all_.contains(vhost.name)) {
          if (diagnostics_ != nullptr) {
            diagnostics_->Warning(vs.http[i].location, vs.http[i].path,
                                  absl::StrCat("can never match on host ", vhost.name,
                                               ": an earlier rule matches every request"));
          }
          continue;
        }
        absl::StatusOr<Route> route = CompileRoute(vs, i);
        if (!route.ok()) return route.status();
        if (RouteIsCatchAll(*route)) caught_all_.insert(vhost.name);
        vhost.routes.push_back(*std::move(route));
      }
    }
    return absl::OkStatus();
  }

  // A service without a VirtualService still routes, as an Istio sidecar does: one
  // catch-all route to the whole service with the default retry policy.
  void AddDefaultRoutes() {
    std::vector<std::string> hosts;
    for (const auto& service : registry_.services()) {
      // A named reference, not a structured binding: clang 14 cannot capture those.
      const std::string& host = service.first;
      if (host_index_.contains(host)) continue;
      // Istio attaches a service to the most specific wildcard VirtualService that covers it
      // (`*.example.com`) instead of giving it a default route. The bare `*` of a
      // gateway-bound VirtualService does not take services over.
      const bool covered =
          std::any_of(host_index_.begin(), host_index_.end(), [&](const auto& entry) {
            return entry.first.size() > 1 && entry.first[0] == '*' &&
                   config::HostMatches(entry.first, host);
          });
      if (!covered) hosts.push_back(host);
    }
    std::sort(hosts.begin(), hosts.end());
    for (const std::string& host : hosts) {
      Route r;
      r.display_name = "default";
      r.virtual_service = "";
      RouteDestination d;
      d.host = host;
      d.cluster = GetCluster(host, "", 0, &d.cluster_name);
      d.port = d.cluster != nullptr ? d.cluster->port : 0;
      d.weight = 100;
      r.weights = WeightTable({d});
      r.retry = ResolveRetryPolicy(std::nullopt, absl::ZeroDuration());
      HostFor(host).routes.push_back(std::move(r));
    }
  }

  const config::ConfigSet& config_;
  config::ServiceRegistry registry_;
  config::Diagnostics* diagnostics_;
  CompileOptions options_;
  std::shared_ptr<Snapshot> snapshot_;
  config::DestinationRuleIndex rules_;
  absl::flat_hash_map<std::string, size_t> host_index_;
  absl::flat_hash_set<std::string> caught_all_;
};

absl::StatusOr<std::shared_ptr<const Snapshot>> CompileSnapshot(config::ConfigSet config,
                                                                uint64_t version,
                                                                config::Diagnostics* diagnostics,
                                                                const CompileOptions& options) {
  auto shared = std::make_shared<const config::ConfigSet>(std::move(config));
  SnapshotCompiler compiler(shared, version, diagnostics, options);
  return compiler.Compile();
}

}  // namespace sluice::routing
