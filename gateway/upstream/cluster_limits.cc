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

ClusterLimits::Admission ClusterLimits::Admit(bool idle_available, Ticket* connection,
                                              Ticket* pending) {
  if (idle_available) return Admission::kUseIdle;
  if (Ticket c = TryConnection()) {
    *connection = std::move(c);
    return Admission::kOpenNew;
  }
  if (Ticket p = TryPending()) {
    *pending = std::move(p);
    return Admission::kQueue;
  }
  return Admission::kOverflow;
}

}  // namespace sluice::gateway
