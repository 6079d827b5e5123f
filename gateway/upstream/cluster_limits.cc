#include "gateway/upstream/cluster_limits.h"

namespace sluice::gateway {

void ClusterLimits::Update(const PoolLimits& limits) {
  // Istio writes 2^32-1 for limits left unset, and a 0 never reaches here (it means unset).
  auto set = [](std::atomic<uint32_t>& slot, uint32_t value) {
    slot.store(value == 0 ? PoolLimits::kUnlimited : value, std::memory_order_relaxed);
  };
  set(max_requests_, limits.max_requests);
  set(max_retries_, limits.max_retries);
  set(max_connections_, limits.max_connections);
  set(max_pending_, limits.max_pending_requests);
}

ClusterLimits::Ticket ClusterLimits::TryAcquire(std::atomic<uint32_t>& count,
                                                const std::atomic<uint32_t>& max,
                                                std::atomic<uint64_t>& overflow) {
  const uint32_t limit = max.load(std::memory_order_relaxed);
  if (count.fetch_add(1, std::memory_order_relaxed) >= limit) {
    count.fetch_sub(1, std::memory_order_relaxed);
    overflow.fetch_add(1, std::memory_order_relaxed);
    return Ticket();
  }
  return Ticket(&count);
}

bool ClusterLimits::Unused() const {
  return requests_.load(std::memory_order_acquire) == 0 &&
         retries_.load(std::memory_order_acquire) == 0 &&
         connections_.load(std::memory_order_acquire) == 0 &&
         pending_.load(std::memory_order_acquire) == 0;
}

ClusterLimits::Admission ClusterLimits::Admit(bool idle_available, bool host_has_connection,
                                              Ticket* connection, Ticket* pending) {
  if (idle_available) return Admission::kUseIdle;
  if (!*pending) {
    *pending = TryPending();
    if (!*pending) return Admission::kOverflow;
  }
  if (Ticket c = TryConnection()) {
    *connection = std::move(c);
    return Admission::kOpenNew;
  }
  if (!host_has_connection) {
    *connection = ForceConnection();
    return Admission::kOpenNew;
  }
  return Admission::kQueue;
}

std::shared_ptr<ClusterLimits> ClusterLimitsRegistry::Get(const std::string& cluster_name) {
  MutexLock lock(&mu_);
  std::shared_ptr<ClusterLimits>& slot = limits_[cluster_name];
  if (slot == nullptr) slot = std::make_shared<ClusterLimits>();
  return slot;
}

size_t ClusterLimitsRegistry::Sweep() {
  MutexLock lock(&mu_);
  size_t removed = 0;
  for (auto it = limits_.begin(); it != limits_.end();) {
    // Held only here: no one can take a new ticket (a ticket is taken through a holder, and
    // a new holder only through Get, under this lock). The acquire fence pairs with the
    // holders' releases of their references, so every ticket they took is seen in the
    // counts; tickets still out keep the entry.
    const bool unheld = it->second.use_count() == 1;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (unheld && it->second->Unused()) {
      limits_.erase(it++);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

size_t ClusterLimitsRegistry::size() const {
  MutexLock lock(&mu_);
  return limits_.size();
}

}  // namespace sluice::gateway
