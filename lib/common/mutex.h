#pragma once

// The gateway's locks: std::mutex and std::condition_variable behind absl::Mutex's
// thread-safety annotations.
//
// Why not absl::Mutex: Debian ships Abseil as a prebuilt shared library without
// ThreadSanitizer instrumentation, so absl::Mutex's lock and unlock (futexes and atomics
// inside libabsl_synchronization) are invisible to TSan, and every field an absl::Mutex
// guards is reported as a data race in `make tsan-test`. std::mutex is pthread_mutex_t,
// whose functions TSan intercepts wherever they are called from. It is also cheaper here:
// Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock detection on
// (a global lock-order graph updated on every lock) unless a program turns it off. Lock-order
// inversions are ThreadSanitizer's to find instead: it checks pthread mutexes for them.
//
// The annotations keep clang's -Wthread-safety working: fields stay ABSL_GUARDED_BY a
// sluice::Mutex, functions ABSL_EXCLUSIVE_LOCKS_REQUIRED / ABSL_LOCKS_EXCLUDED it.

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace sluice {

// A non-recursive exclusive lock. Prefer MutexLock to calling Lock and Unlock.
class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Tells the thread-safety analysis that the caller holds this mutex. Checks nothing at
  // run time: std::mutex does not know its owner.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope. Takes a pointer, as absl::MutexLock does.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable for a sluice::Mutex. Unlike absl::Mutex::Await, nothing re-checks
// a condition by itself: whoever changes the state waited on calls Signal or SignalAll,
// and the waiter loops, as wake-ups may be spurious:
//   MutexLock lock(&mu_);
//   while (!done_) cv_.Wait(&mu_);
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases `mu`, blocks until signalled (or spuriously woken), takes `mu` again.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // As Wait, but gives up after `timeout` (InfiniteDuration: never) on the steady clock,
  // which a change of the wall clock neither cuts short nor stretches. Returns true if the
  // timeout expired. A caller that loops keeps its own deadline and waits for what is left.
  bool WaitWithTimeout(Mutex* mu, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Wakes one waiter; all waiters. Holding the mutex is not required.
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A one-shot event between threads, as absl::Notification: Notify once, wait any number of
// times.
class Notification {
 public:
  Notification() = default;
  Notification(const Notification&) = delete;
  Notification& operator=(const Notification&) = delete;

  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasBeenNotified() const ABSL_LOCKS_EXCLUDED(mu_);
  void WaitForNotification() const ABSL_LOCKS_EXCLUDED(mu_);
  // Returns whether it was notified within `timeout`.
  bool WaitForNotificationWithTimeout(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  mutable CondVar cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice
