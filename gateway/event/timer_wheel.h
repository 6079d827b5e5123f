#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "gateway/event/time_source.h"

namespace sluice::gateway::event {

class Timer;
class TimerWheel;

// Implemented by an owner that has one timer, or that tells its timers apart itself.
class TimerHandler {
 public:
  virtual void OnTimer() = 0;

 protected:
  ~TimerHandler() = default;
};

// What a timer calls when it fires: a function pointer and a context pointer, two words
// copied into the timer when it is armed. Unlike std::function it never allocates, and it
// lets an owner with several timers (route, per-try, idle) bind each to its own method:
//
//   idle_timer_.ArmAfter(kIdle, TimerCallback::Bind<&Session::OnIdleTimeout>(this));
class TimerCallback {
 public:
  using Fn = void (*)(void* context);

  TimerCallback() = default;
  TimerCallback(Fn fn, void* context) : fn_(fn), context_(context) {}
  // Calls handler->OnTimer().
  TimerCallback(TimerHandler* handler)  // NOLINT(google-explicit-constructor): a handler is one
      : fn_([](void* context) { static_cast<TimerHandler*>(context)->OnTimer(); }),
        context_(handler) {}

  // Calls (object->*kMethod)().
  template <auto kMethod, typename C>
  static TimerCallback Bind(C* object) {
    return TimerCallback([](void* context) { (static_cast<C*>(context)->*kMethod)(); }, object);
  }

  void operator()() const { fn_(context_); }
  explicit operator bool() const { return fn_ != nullptr; }

 private:
  Fn fn_ = nullptr;
  void* context_ = nullptr;
};

namespace internal {

// The link of an intrusive circular doubly linked list; a list's head is a TimerLink too.
struct TimerLink {
  TimerLink* prev = nullptr;
  TimerLink* next = nullptr;
};

}  // namespace internal

// A one-shot timer embedded in its owner (a session, a stream): arming links it into its
// wheel and allocates nothing; cancelling unlinks it; both are O(1). Re-arming an armed
// timer moves it. Destroying an armed timer cancels it, so an owner may be deleted from any
// callback, including this timer's own. Not thread-safe: use it on the wheel's thread only.
class Timer : private internal::TimerLink {
 public:
  explicit Timer(TimerWheel& wheel) : wheel_(&wheel) {}
  ~Timer() { Cancel(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires `callback` once, on the first TimerWheel::Advance whose time is at or after
  // `deadline` (rounded up to the wheel's millisecond tick: never early, at most one tick
  // late). A deadline not after the wheel's current time fires on the next Advance.
  void ArmAt(MonotonicTime deadline, TimerCallback callback);
  // Same, `delay` after the wheel's current time (the dispatcher's cached Now()).
  void ArmAfter(MonotonicDuration delay, TimerCallback callback);
  void ArmAfter(absl::Duration delay, TimerCallback callback) {
    ArmAfter(absl::ToChronoNanoseconds(delay), callback);
  }
  // Nothing happens if the timer is not armed.
  void Cancel();

  // False again once the timer has fired (before its callback runs) or been cancelled.
  bool armed() const { return next != nullptr; }
  // The deadline of the last ArmAt/ArmAfter.
  MonotonicTime deadline() const { return deadline_; }

 private:
  friend class TimerWheel;

  TimerWheel* wheel_;
  TimerCallback callback_;
  MonotonicTime deadline_{};
  int64_t tick_ = 0;   // deadline in wheel ticks, rounded up
  uint16_t list_ = 0;  // which list links the timer: a wheel slot, or kReadyList/kFiringList
};

// A hierarchical timing wheel (Varghese & Lauck; the classic Linux kernel timer layout) with
// a 1 ms tick, for one worker thread. Four levels of 256 slots: level L's slots are 256^L
// ticks wide, so level 0 holds timers due within 256 ms at exact ticks, level 1 within 65 s,
// level 2 within 4.6 h and level 3 within 49.7 days; a timer further away waits in level 3
// and is placed again when its slot comes round. Higher-level slots are cascaded down as the
// wheel turns, so every timer fires at its exact tick, and a timer is moved at most three
// times in its life (most request timers are cancelled before they ever move). Occupancy
// bitmaps let Advance and NextDeadline skip empty slots, so an idle hour costs a handful of
// steps, not 3.6 million.
//
// Firing order: timers fire in order of their deadline tick. Timers due in the same tick
// fire in an unspecified (deterministic) order. A timer armed from a callback, or anywhere,
// with a deadline at or before the wheel's current time is "ready": it fires at the start of
// the next Advance, before any other timer, in arming order. (Firing it in the running
// Advance would let a callback that re-arms itself at zero delay spin forever; libevent and
// Envoy defer zero-delay timers to the next loop iteration too.) A timer armed from a
// callback for a later time fires in the Advance that reaches it.
class TimerWheel {
 public:
  static constexpr MonotonicDuration kTick = std::chrono::milliseconds(1);

  explicit TimerWheel(MonotonicTime now);
  // Timers still armed are disarmed (their callbacks never run).
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Moves the wheel's time to `now` (a time before the current one is taken as the current
  // one) and fires every timer due by then, in deadline order. Must not be called from a
  // timer callback. Returns how many timers fired.
  size_t Advance(MonotonicTime now);

  // When the next Advance may have work: the current time if a timer is ready, nullopt if
  // no timer is armed. It may be earlier than the earliest deadline (a point where a higher
  // level's slot has to be cascaded, at most three per timer) but never later, so a loop
  // that sleeps until then misses nothing.
  std::optional<MonotonicTime> NextDeadline() const;

  // The time of the last Advance (or of construction): ArmAfter counts from it.
  MonotonicTime now() const { return now_; }
  size_t armed_count() const { return armed_count_; }

 private:
  friend class Timer;

  static constexpr int kLevels = 4;
  static constexpr int kSlotBits = 8;
  static constexpr int kSlots = 1 << kSlotBits;
  static constexpr int kWords = kSlots / 64;
  static constexpr uint16_t kReadyList = kLevels * kSlots;
  static constexpr uint16_t kFiringList = kReadyList + 1;

  void Arm(Timer& timer, MonotonicTime deadline, TimerCallback callback);
  void Unlink(Timer& timer);
  // Links an unlinked timer whose tick_ is at or after now_tick_ into its slot.
  void Place(Timer& timer);
  // Re-places the timers of level `level`'s slot that comes due at tick `tick`.
  void Cascade(int level, int64_t tick);
  // Fires the timers linked into `firing_` one by one. Returns how many fired.
  size_t FireList();
  // The first tick after now_tick_ with work (a level-0 slot to fire or a higher-level
  // slot to cascade), or `limit` if none comes before it.
  int64_t NextEventTick(int64_t limit) const;
  // Moves all timers of `from` to the end of `to`.
  static void Splice(internal::TimerLink& from, internal::TimerLink& to);

  internal::TimerLink& slot(uint16_t index) { return slots_[index]; }
  void MarkOccupied(uint16_t index);
  void MarkEmpty(uint16_t index);
  // Circular scan of one level's bitmap: distance from `start` (0..255) to the first
  // occupied slot, or -1.
  int FindOccupied(int level, int start) const;

  std::array<internal::TimerLink, kLevels * kSlots> slots_;
  std::array<std::array<uint64_t, kWords>, kLevels> occupied_{};
  internal::TimerLink ready_;   // armed with a deadline already due
  internal::TimerLink firing_;  // taken out of their slot, about to fire
  MonotonicTime now_;
  int64_t now_tick_;  // every timer of a tick at or before it has fired (or is ready)
  size_t armed_count_ = 0;
  bool advancing_ = false;
};

}  // namespace sluice::gateway::event
