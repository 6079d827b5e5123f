#pragma once

namespace sluice {

// Turns off absl::Mutex's deadlock detection for a serving process. Debian builds Abseil
// without NDEBUG, which leaves the detection on: every lock and unlock then updates a
// global lock-order graph (GraphCycles), and gRPC takes its locks through absl::Mutex too.
// Unit tests keep it on, where it catches lock-order bugs in our own classes; a server under
// load should not pay for it on every request. Call it first thing in main.
void DisableMutexDeadlockDetection();

}  // namespace sluice
