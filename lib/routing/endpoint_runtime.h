#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace sluice::routing {

// The mutable state of one endpoint of one cluster, shared by every snapshot that contains
// it, so a configuration change keeps load and health. Written from many threads.
struct EndpointRuntime {
  // Requests decided to this endpoint whose first attempt has not been reported yet.
  std::atomic<int32_t> in_flight{0};
  // Set by outlier detection: load balancers skip ejected endpoints.
  std::atomic<bool> ejected{false};
};

struct ClusterRuntime {
  std::atomic<uint64_t> round_robin{0};
};

// Hands out runtime state by cluster and endpoint name; snapshot compilation reuses what the
// previous snapshot had.
class RuntimeStore {
 public:
  std::shared_ptr<EndpointRuntime> Endpoint(const std::string& cluster, const std::string& id);
  std::shared_ptr<ClusterRuntime> Cluster(const std::string& cluster);

 private:
  absl::Mutex mu_;
  // weak: state of endpoints no snapshot holds any more goes away with the last snapshot.
  absl::flat_hash_map<std::string, std::weak_ptr<EndpointRuntime>> endpoints_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::weak_ptr<ClusterRuntime>> clusters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::routing
