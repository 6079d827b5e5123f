#include "lib/common/mutex_mode.h"

#include "absl/synchronization/mutex.h"

namespace sluice {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace sluice
