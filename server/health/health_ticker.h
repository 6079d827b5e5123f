#pragma once

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/health/health_tracker.h"

namespace sluice::health {

// Runs HealthTracker::Tick on a thread of its own, on the wall clock: it sleeps until the
// next tick is due, but never longer than `max_sleep`, so a cluster created by a later
// configuration change gets its first tick on time. Stops and joins on destruction.
class HealthTicker {
 public:
  explicit HealthTicker(HealthTracker& tracker, absl::Duration max_sleep = absl::Milliseconds(50));
  ~HealthTicker();

  HealthTicker(const HealthTicker&) = delete;
  HealthTicker& operator=(const HealthTicker&) = delete;

 private:
  void Run();

  HealthTracker& tracker_;
  absl::Duration max_sleep_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sluice::health
