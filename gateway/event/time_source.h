#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice::gateway::event {

// A point on the monotonic clock. A std::chrono time point rather than a bare int64: it is
// the same 64-bit nanosecond count under libstdc++ (no cost), but the type keeps monotonic
// instants apart from wall-clock absl::Time and from durations, and chrono durations
// (std::chrono::milliseconds(15)) add to it directly. Envoy's MonotonicTime is the same type.
using MonotonicTime = std::chrono::steady_clock::time_point;
using MonotonicDuration = std::chrono::nanoseconds;

// Where the event core reads time. Intervals (timers, timeouts, latencies) use Now() only;
// WallNow() is for log lines and headers that show a date, never for arithmetic, because the
// wall clock can jump.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual MonotonicTime Now() = 0;
  virtual absl::Time WallNow() = 0;
};

// The process clocks: CLOCK_MONOTONIC (a vDSO read, no system call) and the system clock.
class RealTimeSource final : public TimeSource {
 public:
  MonotonicTime Now() override { return std::chrono::steady_clock::now(); }
  absl::Time WallNow() override { return absl::Now(); }
};

// A clock that moves only when a test says so, so that timer rules are tested without sleeps.
// Both clocks move together on Advance(); SetWall() jumps the wall clock alone, as NTP might.
// Thread-safe: a test may advance it while a dispatcher thread reads it.
class SimulatedTimeSource final : public TimeSource {
 public:
  // Starts away from the clock's epoch, so that code assuming time zero is caught.
  static constexpr MonotonicTime kDefaultStart = MonotonicTime(std::chrono::hours(1000));

  explicit SimulatedTimeSource(MonotonicTime start = kDefaultStart,
                               absl::Time wall = absl::FromUnixSeconds(1700000000))
      : now_ns_(start.time_since_epoch().count()), wall_ns_(absl::ToUnixNanos(wall)) {}

  MonotonicTime Now() override {
    return MonotonicTime(MonotonicTime::duration(now_ns_.load(std::memory_order_acquire)));
  }
  absl::Time WallNow() override {
    return absl::FromUnixNanos(wall_ns_.load(std::memory_order_acquire));
  }

  // Moves both clocks forward. A negative duration is ignored: the monotonic clock never
  // goes back.
  void Advance(MonotonicDuration duration);
  void Advance(absl::Duration duration) { Advance(absl::ToChronoNanoseconds(duration)); }
  void SetWall(absl::Time wall) {
    wall_ns_.store(absl::ToUnixNanos(wall), std::memory_order_release);
  }

 private:
  static_assert(std::is_same_v<MonotonicTime::duration, std::chrono::nanoseconds>,
                "the steady clock counts nanoseconds under libstdc++ and libc++");
  std::atomic<int64_t> now_ns_;
  std::atomic<int64_t> wall_ns_;
};

}  // namespace sluice::gateway::event
