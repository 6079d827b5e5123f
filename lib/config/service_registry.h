#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "lib/config/resources.h"

namespace sluice::config {

// One upstream address of a service port, from a ServiceEntry's endpoints or from a
// WorkloadEntry its workloadSelector picks.
struct ServiceEndpoint {
  std::string address;
  uint32_t port = 0;
  Labels labels;
  uint32_t weight = 1;
  SourceLocation location;
};

struct ServiceInfo {
  std::string host;  // fully qualified
  std::vector<ServicePort> ports;
  // Endpoints before port resolution: each keeps its named ports.
  std::vector<const WorkloadEntrySpec*> workloads;
};

// Which services exist and where their endpoints are. Pointers stay valid as long as the
// ConfigSet it was built from.
class ServiceRegistry {
 public:
  explicit ServiceRegistry(const ConfigSet& config);

  const ServiceInfo* Find(absl::string_view fqdn) const;

  // Endpoints of `fqdn` whose labels include every label of `selector`, with their port
  // resolved for the service port `port` (0: the service's first port).
  std::vector<ServiceEndpoint> Select(absl::string_view fqdn, const Labels& selector,
                                      uint32_t port) const;

  const absl::flat_hash_map<std::string, ServiceInfo>& services() const { return services_; }

 private:
  absl::flat_hash_map<std::string, ServiceInfo> services_;
};

// True when `labels` contains every key/value of `selector`.
bool LabelsMatch(const Labels& selector, const Labels& labels);

}  // namespace sluice::config
