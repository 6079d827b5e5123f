#include "gateway/event/time_source.h"

namespace sluice::gateway::event {

void SimulatedTimeSource::Advance(MonotonicDuration duration) {
  if (duration <= MonotonicDuration::zero()) return;
  now_ns_.fetch_add(duration.count(), std::memory_order_acq_rel);
  wall_ns_.fetch_add(duration.count(), std::memory_order_acq_rel);
}

}  // namespace sluice::gateway::event
