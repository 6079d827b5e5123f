#include "lib/config/service_registry.h"

#include "lib/config/host_names.h"

namespace sluice::config {

bool LabelsMatch(const Labels& selector, const Labels& labels) {
  for (const auto& [key, value] : selector) {
    bool found = false;
    for (const auto& [k, v] : labels) {
      if (k == key && v == value) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

ServiceRegistry::ServiceRegistry(const ConfigSet& config) {
  for (const ServiceEntry& se : config.service_entries) {
    std::vector<const WorkloadEntrySpec*> workloads;
    for (const WorkloadEntrySpec& ep : se.endpoints) workloads.push_back(&ep);
    if (se.workload_selector) {
      for (const WorkloadEntry& we : config.workload_entries) {
        if (we.meta.namespace_name == se.meta.namespace_name &&
            LabelsMatch(*se.workload_selector, we.spec.labels)) {
          workloads.push_back(&we.spec);
        }
      }
    }
    for (const std::string& host : se.hosts) {
      ServiceInfo& info = services_[ResolveHost(host, se.meta.namespace_name)];
      info.host = ResolveHost(host, se.meta.namespace_name);
      for (const ServicePort& p : se.ports) info.ports.push_back(p);
      info.workloads.insert(info.workloads.end(), workloads.begin(), workloads.end());
    }
  }
}

const ServiceInfo* ServiceRegistry::Find(absl::string_view fqdn) const {
  auto it = services_.find(fqdn);
  return it == services_.end() ? nullptr : &it->second;
}

std::vector<ServiceEndpoint> ServiceRegistry::Select(absl::string_view fqdn, const Labels& selector,
                                                     uint32_t port) const {
  std::vector<ServiceEndpoint> out;
  const ServiceInfo* info = Find(fqdn);
  if (info == nullptr) return out;
  const ServicePort* service_port = nullptr;
  for (const ServicePort& p : info->ports) {
    if (port == 0 || p.number == port) {
      service_port = &p;
      break;
    }
  }
  for (const WorkloadEntrySpec* w : info->workloads) {
    if (!LabelsMatch(selector, w->labels)) continue;
    ServiceEndpoint ep;
    ep.address = w->address;
    ep.labels = w->labels;
    ep.weight = w->weight == 0 ? 1 : w->weight;
    ep.location = w->location;
    // Istio's order: the endpoint's port for this port's name, then targetPort, then the
    // service port itself.
    if (service_port != nullptr) {
      ep.port = service_port->target_port.value_or(service_port->number);
      for (const auto& [name, number] : w->ports) {
        if (name == service_port->name) ep.port = number;
      }
    } else {
      ep.port = port;
    }
    if (ep.port == 0) continue;
    out.push_back(std::move(ep));
  }
  return out;
}

}  // namespace sluice::config
