#include "server/config/validation.h"

#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "lib/config/host_names.h"
#include "lib/config/service_registry.h"
#include "server/config/yaml_reader.h"

namespace sluice::config {
namespace {

std::string Where(const SourceLocation& loc) {
  return loc.line > 0 ? absl::StrCat(loc.file, ":", loc.line) : loc.file;
}

template <typename T>
void CheckDuplicates(const std::vector<T>& items, absl::string_view kind, Diagnostics& diags) {
  std::map<std::pair<std::string, std::string>, SourceLocation> seen;
  for (const T& item : items) {
    auto key = std::make_pair(item.meta.namespace_name, item.meta.name);
    auto [it, inserted] = seen.emplace(key, item.meta.location);
    if (!inserted) {
      diags.Error(item.meta.name_location, absl::StrCat(item.meta.path_prefix, "metadata.name"),
                  absl::StrCat("duplicate ", kind, " ", key.first, "/", key.second,
                               " (first defined at ", Where(it->second), ")"));
    }
  }
}

// The first DestinationRule for each host wins, as in Istio; later ones are reported.
DestinationRuleIndex IndexDestinationRules(const ConfigSet& config, Diagnostics& diags) {
  DestinationRuleIndex by_host;
  for (const DestinationRule& dr : config.destination_rules) {
    const std::string host = ResolveHost(dr.host, dr.meta.namespace_name);
    auto [it, inserted] = by_host.emplace(host, &dr);
    if (!inserted) {
      diags.Warning(
          dr.meta.location, "spec.host",
          absl::StrCat("another DestinationRule for ", host, " (", it->second->meta.namespace_name,
                       "/", it->second->meta.name, ") was read first; this one is ignored"));
    }
  }
  return by_host;
}

const Subset* FindSubset(const DestinationRule* dr, absl::string_view name) {
  if (dr == nullptr) return nullptr;
  for (const Subset& s : dr->subsets) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

void CheckDestination(const Destination& d, const std::string& path, const SourceLocation& item,
                      const std::string& ns, const DestinationRuleIndex& drs,
                      const ServiceRegistry& registry, Diagnostics& diags) {
  const std::string host = ResolveHost(d.host, ns);
  if (!d.subset.empty() && FindSubset(FindDestinationRule(drs, host), d.subset) == nullptr) {
    diags.Warning(d.subset_location.line > 0 ? d.subset_location : item,
                  JoinPath(path, "destination.subset"),
                  absl::StrCat("subset \"", d.subset, "\" of ", host,
                               " is not defined by any DestinationRule; requests routed here "
                               "get 503 with flag NC"));
  }
  const ServiceInfo* service = registry.Find(host);
  if (service != nullptr && service->ports.size() > 1 && !d.port) {
    diags.Warning(item, JoinPath(path, "destination.port"),
                  absl::StrCat(host,
                               " has several ports; without port.number sluice uses the "
                               "first (",
                               service->ports.front().number, ")"));
  }
}

void CheckEjectionPercent(const OutlierDetection& od, const std::string& host,
                          const std::string& subset_label, size_t endpoints, Diagnostics& diags) {
  if (endpoints == 0) return;
  // 0 or unset: Istio sends nothing and Envoy's 10% applies.
  const int percent = od.max_ejection_percent.value_or(0) > 0 ? *od.max_ejection_percent
                                                              : kDefaultMaxEjectionPercent;
  // Current Envoy ejects only while 100 * (ejected + 1) / hosts <= maxEjectionPercent.
  if (100.0 / static_cast<double>(endpoints) > percent) {
    const int needed = static_cast<int>((100 + endpoints - 1) / endpoints);
    diags.Warning(od.location, absl::StrCat(od.path, ".maxEjectionPercent"),
                  absl::StrCat("with ", endpoints, " endpoint(s) in ", host, subset_label,
                               ", maxEjectionPercent ", percent,
                               " never allows an ejection (Envoy needs at least ", needed, ")"));
  }
}

void CheckOutlierSettings(const DestinationRuleIndex& drs, const ServiceRegistry& registry,
                          Diagnostics& diags) {
  for (const auto& [host, dr] : drs) {
    const OutlierDetection* top = dr->traffic_policy && dr->traffic_policy->outlier_detection
                                      ? &*dr->traffic_policy->outlier_detection
                                      : nullptr;
    if (top != nullptr) {
      CheckEjectionPercent(*top, host, "", registry.Select(host, {}, 0).size(), diags);
    }
    for (const Subset& s : dr->subsets) {
      // A subset's own block replaces the top-level one whole.
      const OutlierDetection* od = s.traffic_policy && s.traffic_policy->outlier_detection
                                       ? &*s.traffic_policy->outlier_detection
                                       : top;
      // Every subset is a cluster of its own, with its own (smaller) endpoint count, whether
      // its outlier block is its own or inherited.
      if (od == nullptr) continue;
      CheckEjectionPercent(*od, host, absl::StrCat(" subset ", s.name),
                           registry.Select(host, s.labels, 0).size(), diags);
    }
  }
}

void CheckCanaries(const ConfigSet& config, const DestinationRuleIndex& drs, Diagnostics& diags) {
  std::map<std::string, const Canary*> by_host;
  for (const Canary& c : config.canaries) {
    const std::string host = ResolveHost(c.host, c.meta.namespace_name);
    auto [it, inserted] = by_host.emplace(host, &c);
    if (!inserted) {
      diags.Error(c.host_location, "spec.host",
                  absl::StrCat("Canary ", it->second->meta.name, " already runs for ", host,
                               "; only one Canary per host"));
      continue;
    }
    const DestinationRule* dr = FindDestinationRule(drs, host);
    for (const auto& [field, subset, where] :
         {std::tuple{"spec.stableSubset", &c.stable_subset, &c.stable_subset_location},
          std::tuple{"spec.canarySubset", &c.canary_subset, &c.canary_subset_location}}) {
      if (!subset->empty() && FindSubset(dr, *subset) == nullptr) {
        diags.Error(*where, field,
                    absl::StrCat("subset \"", *subset, "\" of ", host,
                                 " is not defined by any DestinationRule"));
      }
    }
    // The controller drives the weights of a route that already splits between the two.
    bool has_split_route = false;
    for (const VirtualService& vs : config.virtual_services) {
      for (const HTTPRoute& r : vs.http) {
        bool stable = false, canary = false;
        for (const HTTPRouteDestination& d : r.route) {
          if (ResolveHost(d.destination.host, vs.meta.namespace_name) != host) continue;
          stable = stable || d.destination.subset == c.stable_subset;
          canary = canary || d.destination.subset == c.canary_subset;
        }
        has_split_route = has_split_route || (stable && canary);
      }
    }
    if (!has_split_route) {
      diags.Error(c.host_location, "spec.host",
                  absl::StrCat("no VirtualService route for ", host, " lists both subsets \"",
                               c.stable_subset, "\" and \"", c.canary_subset,
                               "\"; the Canary needs one to drive its weights"));
    }
  }
}

}  // namespace

const DestinationRule* FindDestinationRule(const DestinationRuleIndex& rules,
                                           const std::string& host) {
  auto exact = rules.find(host);
  if (exact != rules.end()) return exact->second;
  const DestinationRule* best = nullptr;
  size_t best_length = 0;
  for (const auto& [pattern, rule] : rules) {
    if (pattern.size() < 2 || pattern[0] != '*' || !HostMatches(pattern, host)) continue;
    if (best == nullptr || pattern.size() > best_length) {
      best = rule;
      best_length = pattern.size();
    }
  }
  return best;
}

void ValidateConfigSet(const ConfigSet& config, Diagnostics& diags) {
  CheckDuplicates(config.virtual_services, "VirtualService", diags);
  CheckDuplicates(config.destination_rules, "DestinationRule", diags);
  CheckDuplicates(config.service_entries, "ServiceEntry", diags);
  CheckDuplicates(config.workload_entries, "WorkloadEntry", diags);
  CheckDuplicates(config.canaries, "Canary", diags);

  const auto drs = IndexDestinationRules(config, diags);
  const ServiceRegistry registry(config);
  for (const VirtualService& vs : config.virtual_services) {
    for (const HTTPRoute& r : vs.http) {
      for (const HTTPRouteDestination& d : r.route) {
        CheckDestination(d.destination, d.path, d.location, vs.meta.namespace_name, drs, registry,
                         diags);
      }
    }
  }
  CheckOutlierSettings(drs, registry, diags);
  CheckCanaries(config, drs, diags);
}

}  // namespace sluice::config
