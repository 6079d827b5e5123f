#include "lib/routing/endpoint_runtime.h"

#include "absl/strings/str_cat.h"

namespace sluice::routing {
namespace {

template <typename T>
std::shared_ptr<T> GetOrCreate(absl::flat_hash_map<std::string, std::weak_ptr<T>>& map,
                               const std::string& key) {
  std::weak_ptr<T>& slot = map[key];
  std::shared_ptr<T> existing = slot.lock();
  if (existing) return existing;
  auto created = std::make_shared<T>();
  slot = created;
  // Drop entries whose state died with old snapshots, now and then.
  if (map.size() > 64 && map.size() % 64 == 0) {
    absl::erase_if(map, [](const auto& kv) { return kv.second.expired(); });
  }
  return created;
}

}  // namespace

std::shared_ptr<EndpointRuntime> RuntimeStore::Endpoint(const std::string& cluster,
                                                        const std::string& id) {
  absl::MutexLock lock(&mu_);
  return GetOrCreate(endpoints_, absl::StrCat(cluster, "/", id));
}

std::shared_ptr<ClusterRuntime> RuntimeStore::Cluster(const std::string& cluster) {
  absl::MutexLock lock(&mu_);
  return GetOrCreate(clusters_, cluster);
}

}  // namespace sluice::routing
