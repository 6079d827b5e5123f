#include "server/health/health_ticker.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace sluice::health {

HealthTicker::HealthTicker(HealthTracker& tracker, absl::Duration max_sleep)
    : tracker_(tracker), max_sleep_(max_sleep), thread_([this] { Run(); }) {}

HealthTicker::~HealthTicker() {
  stop_.Notify();
  thread_.join();
}

void HealthTicker::Run() {
  while (!stop_.HasBeenNotified()) {
    const absl::Time next = tracker_.Tick();
    const absl::Duration wait = std::clamp(next - absl::Now(), absl::Milliseconds(1), max_sleep_);
    stop_.WaitForNotificationWithTimeout(wait);
  }
}

}  // namespace sluice::health
