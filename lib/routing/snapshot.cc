#include "lib/routing/snapshot.h"

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

std::string ClusterName(absl::string_view host, absl::string_view subset, uint32_t port) {
  return absl::StrCat("outbound|", port, "|", subset, "|", host);
}

WeightTable::WeightTable(std::vector<RouteDestination> destinations) {
  // One destination takes everything whatever its weight; with several, Istio drops the
  // zero-weight ones.
  if (destinations.size() == 1) {
    destinations.front().weight = 100;
  } else {
    std::erase_if(destinations, [](const RouteDestination& d) { return d.weight == 0; });
  }
  destinations_ = std::move(destinations);
  for (const RouteDestination& d : destinations_) {
    total_ += d.weight;
    upper_bounds_.push_back(total_);
  }
}

bool ApplyCanaryWeights(const std::vector<CanaryWeight>& weights,
                        std::vector<RouteDestination>& destinations) {
  bool changed = false;
  for (const CanaryWeight& w : weights) {
    RouteDestination* stable = nullptr;
    RouteDestination* canary = nullptr;
    for (RouteDestination& d : destinations) {
      if (d.host != w.host) continue;
      if (d.subset == w.stable_subset && stable == nullptr) stable = &d;
      if (d.subset == w.canary_subset && canary == nullptr) canary = &d;
    }
    if (stable == nullptr || canary == nullptr) continue;
    uint32_t total = stable->weight + canary->weight;
    if (total == 0) total = 100;
    const uint32_t share = static_cast<uint32_t>(std::clamp(w.weight, 0, 100)) * total / 100;
    canary->weight = share;
    stable->weight = total - share;
    changed = true;
  }
  return changed;
}

size_t WeightTable::Pick(uint64_t random) const {
  const uint64_t point = random % total_;
  // Few destinations in practice; a linear walk is Envoy's algorithm and cache-friendly.
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    if (point < upper_bounds_[i]) return i;
  }
  return upper_bounds_.size() - 1;
}

const VirtualHost* Snapshot::FindVirtualHost(absl::string_view authority) const {
  const std::string host = absl::AsciiStrToLower(config::StripPort(authority));
  if (auto it = exact_hosts_.find(host); it != exact_hosts_.end()) {
    return &virtual_hosts_[it->second];
  }
  for (const auto& [suffix, index] : wildcard_hosts_) {
    if (host.size() > suffix.size() && absl::EndsWith(host, suffix)) {
      return &virtual_hosts_[index];
    }
  }
  return catch_all_host_ ? &virtual_hosts_[*catch_all_host_] : nullptr;
}

const Cluster* Snapshot::FindCluster(absl::string_view name) const {
  auto it = clusters_by_name_.find(name);
  return it == clusters_by_name_.end() ? nullptr : it->second;
}

void Snapshot::FinishIndex(absl::string_view client_namespace) {
  exact_hosts_.clear();
  wildcard_hosts_.clear();
  catch_all_host_.reset();
  routes_.clear();
  client_namespace_ = std::string(client_namespace);
  const std::string cluster_suffix = absl::StrCat(".", config::kClusterDomainSuffix);
  for (size_t i = 0; i < virtual_hosts_.size(); ++i) {
    const std::string& name = virtual_hosts_[i].name;
    if (name == "*") {
      catch_all_host_ = i;
    } else if (absl::StartsWith(name, "*.")) {
      wildcard_hosts_.emplace_back(name.substr(1), i);
    } else {
      exact_hosts_.emplace(name, i);
    }
  }
  // Aliases a Kubernetes client could use: name.ns.svc, name.ns, and the bare name for
  // services in the client's namespace. Explicit hosts always win over aliases.
  for (size_t i = 0; i < virtual_hosts_.size(); ++i) {
    const std::string& name = virtual_hosts_[i].name;
    if (!absl::EndsWith(name, cluster_suffix)) continue;
    const std::string short_name = name.substr(0, name.size() - cluster_suffix.size());
    const size_t dot = short_name.find('.');
    if (dot == std::string::npos) continue;
    exact_hosts_.emplace(absl::StrCat(short_name, ".svc"), i);
    exact_hosts_.emplace(short_name, i);
    if (short_name.substr(dot + 1) == client_namespace) {
      exact_hosts_.emplace(short_name.substr(0, dot), i);
    }
  }
  std::sort(wildcard_hosts_.begin(), wildcard_hosts_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (VirtualHost& host : virtual_hosts_) {
    for (Route& r : host.routes) {
      r.id = static_cast<uint32_t>(routes_.size());
      routes_.push_back(&r);
    }
  }
}

}  // namespace sluice::routing
