#include "lib/common/mutex.h"

#include <chrono>

namespace sluice {

void CondVar::Wait(Mutex* mu) {
  // The caller holds the mutex: adopt it for the wait, and hand it back held.
  std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
  cv_.wait(lock);
  lock.release();
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  Clock::time_point deadline = now;
  if (timeout >= absl::FromChrono(Clock::time_point::max() - now)) {
    // InfiniteDuration, or too long to add to the clock without overflow.
    deadline = Clock::time_point::max();
  } else if (timeout > absl::ZeroDuration()) {
    deadline = now + absl::ToChronoNanoseconds(timeout);
  }
  std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
  const bool timed_out = cv_.wait_until(lock, deadline) == std::cv_status::timeout;
  lock.release();
  return timed_out;
}

void Notification::Notify() {
  MutexLock lock(&mu_);
  notified_ = true;
  cv_.SignalAll();
}

bool Notification::HasBeenNotified() const {
  MutexLock lock(&mu_);
  return notified_;
}

void Notification::WaitForNotification() const {
  MutexLock lock(&mu_);
  while (!notified_) cv_.Wait(&mu_);
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  const auto start = std::chrono::steady_clock::now();
  MutexLock lock(&mu_);
  while (!notified_) {
    const absl::Duration left =
        timeout - absl::FromChrono(std::chrono::steady_clock::now() - start);
    if (left <= absl::ZeroDuration()) return false;
    cv_.WaitWithTimeout(&mu_, left);
  }
  return true;
}

}  // namespace sluice
