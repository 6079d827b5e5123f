#include "gateway/event/timer_wheel.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <limits>

namespace sluice::gateway::event {
namespace {

using internal::TimerLink;

constexpr int64_t kTickNs = std::chrono::nanoseconds(TimerWheel::kTick).count();

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

// The last tick at or before `t`: the wheel has reached tick k once its time is k ms.
int64_t FloorTick(MonotonicTime t) { return FloorDiv(t.time_since_epoch().count(), kTickNs); }

// The first tick at or after `t`: a timer never fires before its deadline.
int64_t CeilTick(MonotonicTime t) { return -FloorDiv(-t.time_since_epoch().count(), kTickNs); }

MonotonicTime TickTime(int64_t tick) {
  constexpr int64_t kMaxTick = std::numeric_limits<int64_t>::max() / kTickNs;
  if (tick >= kMaxTick) return MonotonicTime::max();
  return MonotonicTime(MonotonicDuration(tick * kTickNs));
}

void InitHead(TimerLink& head) { head.prev = head.next = &head; }

bool IsEmpty(const TimerLink& head) { return head.next == &head; }

void LinkBack(TimerLink& head, TimerLink& node) {
  node.prev = head.prev;
  node.next = &head;
  head.prev->next = &node;
  head.prev = &node;
}

void Detach(TimerLink& node) {
  node.prev->next = node.next;
  node.next->prev = node.prev;
  node.prev = node.next = nullptr;
}

}  // namespace

void Timer::ArmAt(MonotonicTime deadline, TimerCallback callback) {
  wheel_->Arm(*this, deadline, callback);
}

void Timer::ArmAfter(MonotonicDuration delay, TimerCallback callback) {
  const MonotonicTime now = wheel_->now();
  MonotonicTime deadline = now;
  if (delay > MonotonicDuration::zero()) {
    // Saturate rather than overflow for "never" (hours::max() and the like).
    deadline = now.time_since_epoch() > MonotonicTime::max().time_since_epoch() - delay
                   ? MonotonicTime::max()
                   : now + delay;
  }
  wheel_->Arm(*this, deadline, callback);
}

void Timer::Cancel() {
  if (armed()) wheel_->Unlink(*this);
}

TimerWheel::TimerWheel(MonotonicTime now) : now_(now), now_tick_(FloorTick(now)) {
  for (TimerLink& head : slots_) InitHead(head);
  InitHead(ready_);
  InitHead(firing_);
}

TimerWheel::~TimerWheel() {
  // Leave no timer pointing into freed slots: a timer destroyed later then has nothing to do.
  auto disarm_all = [](TimerLink& head) {
    while (!IsEmpty(head)) Detach(*head.next);
  };
  for (TimerLink& head : slots_) disarm_all(head);
  disarm_all(ready_);
  disarm_all(firing_);
}

void TimerWheel::Arm(Timer& timer, MonotonicTime deadline, TimerCallback callback) {
  assert(callback && "a timer needs a callback");
  if (timer.armed()) Unlink(timer);
  timer.deadline_ = deadline;
  timer.callback_ = callback;
  ++armed_count_;
  if (deadline <= now_) {
    LinkBack(ready_, timer);
    timer.list_ = kReadyList;
    return;
  }
  // deadline > now_ >= now_tick_ ms, so the tick is after now_tick_, as Place requires.
  timer.tick_ = CeilTick(deadline);
  Place(timer);
}

void TimerWheel::Unlink(Timer& timer) {
  Detach(timer);
  --armed_count_;
  // A timer of firing_ may still carry the slot it was spliced out of; the emptiness test
  // keeps that harmless.
  if (timer.list_ < kReadyList && IsEmpty(slots_[timer.list_])) MarkEmpty(timer.list_);
}

void TimerWheel::Place(Timer& timer) {
  constexpr int64_t kMaxDelta = int64_t{1} << (kSlotBits * kLevels);
  int64_t tick = timer.tick_;
  int64_t delta = tick - now_tick_;
  assert(delta >= 0);
  if (delta >= kMaxDelta) {
    // Beyond the top level's reach (49.7 days): park it in the top level's last slot in
    // reach; the cascade of that slot places it again from its true tick_.
    tick = now_tick_ + kMaxDelta - 1;
    delta = kMaxDelta - 1;
  }
  int level = 0;
  while (level < kLevels - 1 && delta >= (int64_t{1} << (kSlotBits * (level + 1)))) ++level;
  const int index = static_cast<int>((tick >> (kSlotBits * level)) & (kSlots - 1));
  const auto list = static_cast<uint16_t>(level * kSlots + index);
  LinkBack(slots_[list], timer);
  timer.list_ = list;
  MarkOccupied(list);
}

void TimerWheel::Cascade(int level, int64_t tick) {
  const int index = static_cast<int>((tick >> (kSlotBits * level)) & (kSlots - 1));
  const auto list = static_cast<uint16_t>(level * kSlots + index);
  TimerLink& head = slots_[list];
  if (IsEmpty(head)) return;
  TimerLink pending;
  InitHead(pending);
  Splice(head, pending);
  MarkEmpty(list);
  while (!IsEmpty(pending)) {
    Timer& timer = static_cast<Timer&>(*pending.next);
    Detach(timer);
    Place(timer);
  }
}

size_t TimerWheel::Advance(MonotonicTime now) {
  assert(!advancing_ && "TimerWheel::Advance called from a timer callback");
  advancing_ = true;
  if (now > now_) now_ = now;
  const int64_t target = FloorTick(now_);
  // Timers that were due when armed come first: their deadlines precede every slotted one.
  Splice(ready_, firing_);
  size_t fired = FireList();
  while (now_tick_ < target) {
    const int64_t tick = NextEventTick(target);
    now_tick_ = tick;
    if ((tick & (kSlots - 1)) == 0) {
      // Top level first, though the order does not matter: Place() counts from now_tick_.
      for (int level = kLevels - 1; level >= 1; --level) {
        const int64_t width = int64_t{1} << (kSlotBits * level);
        if ((tick & (width - 1)) == 0) Cascade(level, tick);
      }
    }
    // Level 0 slots hold ticks in (now_tick_, now_tick_ + 256): this one holds `tick` only.
    const auto list = static_cast<uint16_t>(tick & (kSlots - 1));
    if (!IsEmpty(slots_[list])) {
      Splice(slots_[list], firing_);
      MarkEmpty(list);
      fired += FireList();
    }
  }
  advancing_ = false;
  return fired;
}

size_t TimerWheel::FireList() {
  size_t fired = 0;
  while (!IsEmpty(firing_)) {
    Timer& timer = static_cast<Timer&>(*firing_.next);
    const TimerCallback callback = timer.callback_;
    Unlink(timer);
    ++fired;
    // The callback may re-arm, cancel or destroy this timer or any other, and destroy the
    // owner: nothing of `timer` is touched after it.
    callback();
  }
  return fired;
}

int64_t TimerWheel::NextEventTick(int64_t limit) const {
  int64_t best = limit;
  if (const int d = FindOccupied(0, static_cast<int>((now_tick_ + 1) & (kSlots - 1))); d >= 0) {
    best = std::min(best, now_tick_ + 1 + d);
  }
  for (int level = 1; level < kLevels; ++level) {
    const int shift = kSlotBits * level;
    const int64_t base = now_tick_ >> shift;  // floor, also for negative ticks
    if (const int d = FindOccupied(level, static_cast<int>((base + 1) & (kSlots - 1))); d >= 0) {
      best = std::min(best, (base + 1 + d) << shift);
    }
  }
  return best;
}

std::optional<MonotonicTime> TimerWheel::NextDeadline() const {
  if (!IsEmpty(ready_)) return now_;
  if (armed_count_ == 0) return std::nullopt;
  return TickTime(NextEventTick(std::numeric_limits<int64_t>::max()));
}

void TimerWheel::Splice(TimerLink& from, TimerLink& to) {
  if (IsEmpty(from)) return;
  TimerLink* first = from.next;
  TimerLink* last = from.prev;
  first->prev = to.prev;
  to.prev->next = first;
  last->next = &to;
  to.prev = last;
  InitHead(from);
}

void TimerWheel::MarkOccupied(uint16_t index) {
  occupied_[index / kSlots][(index % kSlots) / 64] |= uint64_t{1} << (index % 64);
}

void TimerWheel::MarkEmpty(uint16_t index) {
  occupied_[index / kSlots][(index % kSlots) / 64] &= ~(uint64_t{1} << (index % 64));
}

int TimerWheel::FindOccupied(int level, int start) const {
  const std::array<uint64_t, kWords>& words = occupied_[level];
  int word_index = start / 64;
  uint64_t word = words[word_index] & (~uint64_t{0} << (start % 64));
  // kWords + 1 looks: the start word's low bits come last, after the wrap.
  for (int i = 0; i <= kWords; ++i) {
    if (word != 0) {
      const int position = word_index * 64 + std::countr_zero(word);
      return (position - start) & (kSlots - 1);
    }
    word_index = (word_index + 1) % kWords;
    word = words[word_index];
  }
  return -1;
}

}  // namespace sluice::gateway::event
