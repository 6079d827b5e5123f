#include "gateway/event/timer_wheel.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gateway/event/time_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::gateway::event {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;

// A timer owner that records when (in simulated time) and in which order it fired.
struct Recorder {
  std::vector<int>* order = nullptr;
  int id = 0;
  SimulatedTimeSource* clock = nullptr;
  MonotonicTime fired_at{};
  int fired = 0;

  void OnTimer() {
    ++fired;
    if (clock != nullptr) fired_at = clock->Now();
    if (order != nullptr) order->push_back(id);
  }
  TimerCallback callback() { return TimerCallback::Bind<&Recorder::OnTimer>(this); }
};

class TimerWheelTest : public ::testing::Test {
 protected:
  // Moves the clock and the wheel together, as the dispatcher does each iteration.
  size_t AdvanceBy(MonotonicDuration d) {
    clock_.Advance(d);
    return wheel_.Advance(clock_.Now());
  }

  SimulatedTimeSource clock_;
  TimerWheel wheel_{clock_.Now()};
};

TEST_F(TimerWheelTest, FiresInDeadlineOrderNeverEarly) {
  std::vector<int> order;
  const std::vector<int> delays_ms = {30, 5, 300, 1, 70000, 17, 256, 255, 65536, 2};
  std::vector<std::unique_ptr<Recorder>> owners;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int delay : delays_ms) {
    owners.push_back(std::make_unique<Recorder>(Recorder{&order, delay, &clock_}));
    timers.push_back(std::make_unique<Timer>(wheel_));
    timers.back()->ArmAfter(milliseconds(delay), owners.back()->callback());
  }
  EXPECT_EQ(wheel_.armed_count(), delays_ms.size());

  // One millisecond at a time: each timer fires exactly at its deadline.
  for (int ms = 1; ms <= 70000; ++ms) AdvanceBy(milliseconds(1));
  EXPECT_THAT(order, ElementsAre(1, 2, 5, 17, 30, 255, 256, 300, 65536, 70000));
  for (const auto& owner : owners) {
    EXPECT_EQ(owner->fired, 1);
    EXPECT_EQ(owner->fired_at, SimulatedTimeSource::kDefaultStart + milliseconds(owner->id));
  }
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(TimerWheelTest, OneBigAdvanceFiresAllInOrder) {
  std::vector<int> order;
  Recorder a{&order, 1}, b{&order, 2}, c{&order, 3}, d{&order, 4};
  Timer ta(wheel_), tb(wheel_), tc(wheel_), td(wheel_);
  tc.ArmAfter(hours(2), c.callback());
  ta.ArmAfter(milliseconds(3), a.callback());
  td.ArmAfter(hours(5), d.callback());
  tb.ArmAfter(seconds(90), b.callback());
  EXPECT_EQ(AdvanceBy(hours(6)), 4u);
  EXPECT_THAT(order, ElementsAre(1, 2, 3, 4));
}

TEST_F(TimerWheelTest, SubMillisecondDeadlineRoundsUp) {
  Recorder r;
  Timer t(wheel_);
  t.ArmAfter(microseconds(1500), r.callback());
  AdvanceBy(microseconds(1000));
  AdvanceBy(microseconds(999));
  EXPECT_EQ(r.fired, 0);  // 1.999 ms: never early
  AdvanceBy(microseconds(1));
  EXPECT_EQ(r.fired, 1);  // the 2 ms tick
}

TEST_F(TimerWheelTest, CancelAndCancelUnarmed) {
  Recorder r;
  Timer t(wheel_);
  t.Cancel();  // not armed: nothing
  t.ArmAfter(milliseconds(10), r.callback());
  EXPECT_TRUE(t.armed());
  t.Cancel();
  EXPECT_FALSE(t.armed());
  EXPECT_EQ(wheel_.armed_count(), 0u);
  EXPECT_FALSE(wheel_.NextDeadline().has_value());
  AdvanceBy(seconds(1));
  EXPECT_EQ(r.fired, 0);
}

TEST_F(TimerWheelTest, ReArmMovesTheTimer) {
  Recorder r{nullptr, 0, &clock_};
  Timer t(wheel_);
  t.ArmAfter(milliseconds(100), r.callback());
  t.ArmAfter(milliseconds(10), r.callback());  // earlier
  EXPECT_EQ(wheel_.armed_count(), 1u);
  AdvanceBy(milliseconds(10));
  EXPECT_EQ(r.fired, 1);
  t.ArmAfter(milliseconds(5), r.callback());
  t.ArmAfter(seconds(20), r.callback());  // later: the 5 ms arming is gone
  AdvanceBy(seconds(19));
  EXPECT_EQ(r.fired, 1);
  AdvanceBy(seconds(1));
  EXPECT_EQ(r.fired, 2);
  EXPECT_EQ(r.fired_at, SimulatedTimeSource::kDefaultStart + milliseconds(10) + seconds(20));
}

// Re-arms itself from its own callback: a periodic timer.
struct Periodic {
  Timer timer;
  int fired = 0;
  explicit Periodic(TimerWheel& wheel) : timer(wheel) {}
  void OnTimer() {
    ++fired;
    timer.ArmAfter(milliseconds(10), TimerCallback::Bind<&Periodic::OnTimer>(this));
  }
};

TEST_F(TimerWheelTest, ReArmFromOwnCallbackIsPeriodic) {
  Periodic p(wheel_);
  p.timer.ArmAfter(milliseconds(10), TimerCallback::Bind<&Periodic::OnTimer>(&p));
  for (int i = 0; i < 100; ++i) AdvanceBy(milliseconds(1));
  EXPECT_EQ(p.fired, 10);
  // One big step: the re-armed timer counts from the wheel's time, the end of the step, so
  // a late loop does not fire a burst of catch-up callbacks.
  AdvanceBy(seconds(1));
  EXPECT_EQ(p.fired, 11);
}

// Arms a zero-delay timer from a callback: it is due, and fires on the next Advance, not in
// the running one (no livelock for a callback that keeps re-arming at zero).
struct ZeroRearm {
  Timer timer;
  int fired = 0;
  explicit ZeroRearm(TimerWheel& wheel) : timer(wheel) {}
  void OnTimer() {
    ++fired;
    timer.ArmAfter(MonotonicDuration::zero(), TimerCallback::Bind<&ZeroRearm::OnTimer>(this));
  }
};

TEST_F(TimerWheelTest, DueTimerArmedInCallbackFiresOnNextAdvance) {
  ZeroRearm z(wheel_);
  z.timer.ArmAfter(milliseconds(1), TimerCallback::Bind<&ZeroRearm::OnTimer>(&z));
  AdvanceBy(milliseconds(1));
  EXPECT_EQ(z.fired, 1);
  EXPECT_EQ(wheel_.NextDeadline(), wheel_.now());  // ready: the loop must not sleep
  EXPECT_EQ(wheel_.Advance(wheel_.now()), 1u);     // same time, no tick: still fires
  EXPECT_EQ(z.fired, 2);
  z.timer.Cancel();
}

TEST_F(TimerWheelTest, PastDeadlineFiresOnNextAdvanceInArmingOrder) {
  std::vector<int> order;
  Recorder a{&order, 1}, b{&order, 2};
  Timer ta(wheel_), tb(wheel_);
  ta.ArmAt(clock_.Now() - milliseconds(5), a.callback());
  tb.ArmAt(clock_.Now() - milliseconds(50), b.callback());
  EXPECT_EQ(wheel_.Advance(clock_.Now()), 2u);
  EXPECT_THAT(order, ElementsAre(1, 2));
}

// Arms a later timer from a callback in the middle of a long Advance.
struct Chain {
  Timer first, second;
  std::vector<int>* order;
  explicit Chain(TimerWheel& wheel, std::vector<int>* o) : first(wheel), second(wheel), order(o) {}
  void OnFirst() {
    order->push_back(1);
    second.ArmAt(first.deadline() + milliseconds(500), TimerCallback::Bind<&Chain::OnSecond>(this));
  }
  void OnSecond() { order->push_back(2); }
};

TEST_F(TimerWheelTest, TimerArmedInCallbackForLaterFiresWhenReached) {
  std::vector<int> order;
  Chain chain(wheel_, &order);
  Recorder third{&order, 3};
  Timer t3(wheel_);
  chain.first.ArmAfter(milliseconds(100), TimerCallback::Bind<&Chain::OnFirst>(&chain));
  t3.ArmAfter(milliseconds(2000), third.callback());
  // One jump to +3 s: the first callback (at +100 ms) arms the second for +600 ms, which is
  // at or before the wheel's time (+3 s) and so ready: it fires on the next Advance, after
  // timer 3 (+2 s), which was in the wheel.
  AdvanceBy(seconds(3));
  EXPECT_THAT(order, ElementsAre(1, 3));
  wheel_.Advance(clock_.Now());
  EXPECT_THAT(order, ElementsAre(1, 3, 2));

  // Stepping in small increments, the callback's timer lands in the future and fires at
  // its deadline, before a timer due after it.
  order.clear();
  chain.first.ArmAfter(milliseconds(100), TimerCallback::Bind<&Chain::OnFirst>(&chain));
  t3.ArmAfter(milliseconds(700), third.callback());
  for (int i = 0; i < 1000; ++i) AdvanceBy(milliseconds(1));
  EXPECT_THAT(order, ElementsAre(1, 2, 3));
}

TEST_F(TimerWheelTest, LongTimeoutsWrapTheWheel) {
  struct Case {
    MonotonicDuration delay;
    Recorder recorder;
  };
  std::vector<Case> cases = {
      {hours(1), {}},
      {hours(5), {}},
      {hours(24 * 10), {}},
      {hours(24 * 49 + 17), {}},
      {hours(24 * 50), {}},  // past 2^32 ms (49.7 days)
      {hours(24 * 400), {}},
      {milliseconds(4294967295), {}},
      {milliseconds(4294967296), {}},
  };
  std::vector<std::unique_ptr<Timer>> timers;
  for (Case& c : cases) {
    c.recorder.clock = &clock_;
    timers.push_back(std::make_unique<Timer>(wheel_));
    timers.back()->ArmAfter(c.delay, c.recorder.callback());
  }
  const MonotonicTime start = clock_.Now();
  // Sleep from deadline to deadline as the dispatcher does; each timer fires exactly at its
  // deadline, with a bounded number of wake-ups (cascade points) in between.
  int wakeups = 0;
  while (std::optional<MonotonicTime> next = wheel_.NextDeadline()) {
    ASSERT_GT(*next, clock_.Now());
    clock_.Advance(*next - clock_.Now());
    wheel_.Advance(clock_.Now());
    ASSERT_LT(++wakeups, 200);
  }
  for (const Case& c : cases) {
    EXPECT_EQ(c.recorder.fired, 1) << c.delay.count();
    EXPECT_EQ(c.recorder.fired_at, start + c.delay) << c.delay.count();
  }
}

TEST_F(TimerWheelTest, LongTimeoutNotEarlyAcrossOneJump) {
  Recorder r;
  Timer t(wheel_);
  t.ArmAfter(hours(24 * 60), r.callback());
  AdvanceBy(hours(24 * 60) - milliseconds(1));
  EXPECT_EQ(r.fired, 0);
  EXPECT_TRUE(t.armed());
  AdvanceBy(milliseconds(1));
  EXPECT_EQ(r.fired, 1);
}

TEST_F(TimerWheelTest, ManyRandomTimersFireOnceAtTheirFirstDueAdvance) {
  constexpr int kTimers = 20000;
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> delay_us(1, int64_t{2} * 3600 * 1000 * 1000);
  struct Owner {
    MonotonicTime deadline;
    MonotonicTime fired_at{};
    MonotonicTime previous_advance{};
    int fired = 0;
    TimerWheel* wheel;
    MonotonicTime* last_advance;
    void OnTimer() {
      ++fired;
      fired_at = wheel->now();
      previous_advance = *last_advance;
    }
  };
  MonotonicTime last_advance = clock_.Now();
  std::vector<Owner> owners(kTimers);
  std::vector<std::unique_ptr<Timer>> timers;
  for (Owner& owner : owners) {
    owner.wheel = &wheel_;
    owner.last_advance = &last_advance;
    owner.deadline = clock_.Now() + microseconds(delay_us(rng));
    timers.push_back(std::make_unique<Timer>(wheel_));
    timers.back()->ArmAt(owner.deadline, TimerCallback::Bind<&Owner::OnTimer>(&owner));
  }
  // Cancel a third, re-arm a third.
  for (int i = 0; i < kTimers; i += 3) timers[i]->Cancel();
  for (int i = 1; i < kTimers; i += 3) {
    owners[i].deadline = clock_.Now() + microseconds(delay_us(rng));
    timers[i]->ArmAt(owners[i].deadline, TimerCallback::Bind<&Owner::OnTimer>(&owners[i]));
  }
  std::uniform_int_distribution<int64_t> step_us(1, 5 * 1000 * 1000);
  size_t fired = 0;
  while (wheel_.armed_count() > 0) {
    clock_.Advance(microseconds(step_us(rng)));
    fired += wheel_.Advance(clock_.Now());
    last_advance = clock_.Now();
  }
  EXPECT_EQ(fired, static_cast<size_t>(kTimers - (kTimers + 2) / 3));
  for (int i = 0; i < kTimers; ++i) {
    const Owner& owner = owners[i];
    if (i % 3 == 0) {
      EXPECT_EQ(owner.fired, 0);
      continue;
    }
    ASSERT_EQ(owner.fired, 1) << i;
    // Fired on the first Advance whose time reached the deadline's millisecond tick.
    const MonotonicTime tick = std::chrono::ceil<milliseconds>(owner.deadline);
    EXPECT_GE(owner.fired_at, tick) << i;
    EXPECT_LT(owner.previous_advance, tick) << i;
  }
}

// Random arms, cancels and advances of every size against a model: after each Advance,
// exactly the timers whose deadline tick has been reached have fired, in tick order.
TEST_F(TimerWheelTest, MatchesAModelUnderRandomOperations) {
  constexpr int kTimers = 300;
  std::mt19937_64 rng(7);
  struct Owner {
    int id;
    std::vector<int>* fired;
    void OnTimer() { fired->push_back(id); }
  };
  std::vector<int> fired;
  std::vector<Owner> owners;
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<std::optional<MonotonicTime>> model(kTimers);  // armed deadline
  std::vector<bool> ready(kTimers);  // deadline not after the wheel's time when armed
  for (int i = 0; i < kTimers; ++i) {
    owners.push_back(Owner{i, &fired});
    timers.push_back(std::make_unique<Timer>(wheel_));
  }
  auto random_duration = [&rng]() -> MonotonicDuration {
    // Mostly request-sized, sometimes hours or months, sometimes zero.
    const int64_t scales_us[] = {0, 1, 1000, 300000, 60000000, 3600000000LL, 86400000000LL * 60};
    const int64_t scale = scales_us[std::uniform_int_distribution<int>(0, 6)(rng)];
    return microseconds(std::uniform_int_distribution<int64_t>(0, scale)(rng));
  };
  for (int step = 0; step < 20000; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 9)(rng);
    const int i = std::uniform_int_distribution<int>(0, kTimers - 1)(rng);
    if (op < 5) {
      const MonotonicTime deadline = clock_.Now() + random_duration();
      timers[i]->ArmAt(deadline, TimerCallback::Bind<&Owner::OnTimer>(&owners[i]));
      model[i] = deadline;
      ready[i] = deadline <= wheel_.now();
    } else if (op < 7) {
      timers[i]->Cancel();
      model[i].reset();
    } else {
      clock_.Advance(op == 9 ? random_duration()
                             : microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
      fired.clear();
      wheel_.Advance(clock_.Now());
      std::vector<int> expected;
      for (int j = 0; j < kTimers; ++j) {
        if (!model[j].has_value()) continue;
        // Due if its tick is reached, or if it was already due when armed (ready).
        const bool due = ready[j] || std::chrono::ceil<milliseconds>(*model[j]) <=
                                         std::chrono::floor<milliseconds>(clock_.Now());
        if (due) {
          expected.push_back(j);
          model[j].reset();
        }
      }
      std::vector<int> sorted_fired = fired;
      std::sort(sorted_fired.begin(), sorted_fired.end());
      ASSERT_EQ(sorted_fired, expected) << "step " << step;
      for (size_t k = 1; k < fired.size(); ++k) {
        ASSERT_LE(std::chrono::ceil<milliseconds>(timers[fired[k - 1]]->deadline()),
                  std::chrono::ceil<milliseconds>(timers[fired[k]]->deadline()))
            << "step " << step;
      }
    }
    size_t armed = 0;
    for (const auto& deadline : model) armed += deadline.has_value() ? 1 : 0;
    ASSERT_EQ(wheel_.armed_count(), armed);
  }
}

TEST_F(TimerWheelTest, SameTickTimersAllFire) {
  int fired = 0;
  struct Counter {
    int* fired;
    void OnTimer() { ++*fired; }
  } counter{&fired};
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < 1000; ++i) {
    timers.push_back(std::make_unique<Timer>(wheel_));
    timers.back()->ArmAfter(milliseconds(300), TimerCallback::Bind<&Counter::OnTimer>(&counter));
  }
  AdvanceBy(milliseconds(299));
  EXPECT_EQ(fired, 0);
  AdvanceBy(milliseconds(1));
  EXPECT_EQ(fired, 1000);
}

TEST_F(TimerWheelTest, DestroyingAnArmedTimerUnlinksIt) {
  Recorder r;
  auto t = std::make_unique<Timer>(wheel_);
  t->ArmAfter(milliseconds(5), r.callback());
  auto far = std::make_unique<Timer>(wheel_);
  far->ArmAfter(hours(3), r.callback());
  EXPECT_EQ(wheel_.armed_count(), 2u);
  t.reset();
  far.reset();
  EXPECT_EQ(wheel_.armed_count(), 0u);
  EXPECT_FALSE(wheel_.NextDeadline().has_value());
  AdvanceBy(hours(4));
  EXPECT_EQ(r.fired, 0);
}

// A session with three timers that deletes itself (and so its other timers, due in the
// same tick) from a callback.
struct Session {
  Timer route, per_try, idle;
  std::unique_ptr<Session>* self;
  int* callbacks;
  Session(TimerWheel& wheel, std::unique_ptr<Session>* s, int* c)
      : route(wheel), per_try(wheel), idle(wheel), self(s), callbacks(c) {}
  void OnAny() {
    ++*callbacks;
    self->reset();  // destroys this object and its timers
  }
};

TEST_F(TimerWheelTest, OwnerDeletedFromCallbackTakesItsOtherDueTimers) {
  int callbacks = 0;
  std::unique_ptr<Session> session;
  session = std::make_unique<Session>(wheel_, &session, &callbacks);
  const TimerCallback cb = TimerCallback::Bind<&Session::OnAny>(session.get());
  session->route.ArmAfter(milliseconds(15), cb);
  session->per_try.ArmAfter(milliseconds(15), cb);
  session->idle.ArmAfter(milliseconds(15), cb);
  Recorder other;
  Timer other_timer(wheel_);
  other_timer.ArmAfter(milliseconds(15), other.callback());
  AdvanceBy(milliseconds(20));
  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(session, nullptr);
  EXPECT_EQ(other.fired, 1);
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(TimerWheelTest, NextDeadline) {
  EXPECT_FALSE(wheel_.NextDeadline().has_value());
  Recorder r;
  Timer a(wheel_), b(wheel_);
  a.ArmAfter(milliseconds(40), r.callback());
  b.ArmAfter(milliseconds(5), r.callback());
  EXPECT_EQ(wheel_.NextDeadline(), clock_.Now() + milliseconds(5));
  b.Cancel();
  EXPECT_EQ(wheel_.NextDeadline(), clock_.Now() + milliseconds(40));
  a.ArmAfter(microseconds(2500), r.callback());
  EXPECT_EQ(wheel_.NextDeadline(), clock_.Now() + milliseconds(3));  // the tick it fires at
  a.Cancel();
  // A far timer: the next deadline is a cascade point, never after the timer's deadline.
  a.ArmAfter(seconds(30), r.callback());
  const std::optional<MonotonicTime> next = wheel_.NextDeadline();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, clock_.Now());
  EXPECT_LE(*next, clock_.Now() + seconds(30));
}

TEST_F(TimerWheelTest, TimeDoesNotGoBack) {
  Recorder r;
  Timer t(wheel_);
  const MonotonicTime start = clock_.Now();
  AdvanceBy(milliseconds(10));
  wheel_.Advance(start);  // ignored
  EXPECT_EQ(wheel_.now(), start + milliseconds(10));
  t.ArmAfter(milliseconds(5), r.callback());
  EXPECT_EQ(t.deadline(), start + milliseconds(15));
}

TEST_F(TimerWheelTest, ArmAfterHugeDelaySaturates) {
  Recorder r;
  Timer t(wheel_);
  t.ArmAfter(MonotonicDuration::max(), r.callback());
  EXPECT_EQ(t.deadline(), MonotonicTime::max());
  AdvanceBy(hours(24 * 365));
  EXPECT_EQ(r.fired, 0);
  EXPECT_TRUE(t.armed());
}

// An owner with one timer implements TimerHandler; the timer is disarmed when it fires.
class IdleWatch final : public TimerHandler {
 public:
  explicit IdleWatch(TimerWheel& wheel) : timer_(wheel) {}
  void Start() { timer_.ArmAfter(absl::Seconds(30), this); }
  void OnTimer() override {
    armed_in_callback_ = timer_.armed();
    ++fired_;
  }
  int fired_ = 0;
  bool armed_in_callback_ = true;

 private:
  Timer timer_;
};

TEST_F(TimerWheelTest, TimerHandlerAndAbslDuration) {
  IdleWatch watch(wheel_);
  watch.Start();
  AdvanceBy(seconds(29));
  EXPECT_EQ(watch.fired_, 0);
  AdvanceBy(seconds(1));
  EXPECT_EQ(watch.fired_, 1);
  EXPECT_FALSE(watch.armed_in_callback_);
}

TEST(TimerWheelStandaloneTest, WheelDestroyedFirstDisarmsTimers) {
  auto wheel = std::make_unique<TimerWheel>(MonotonicTime(seconds(5)));
  Timer t(*wheel);
  Recorder r;
  t.ArmAfter(milliseconds(1), r.callback());
  wheel.reset();
  EXPECT_FALSE(t.armed());  // and ~Timer has nothing to unlink
}

TEST(TimerWheelStandaloneTest, NegativeTicksNearTheEpoch) {
  // A clock before its epoch (a simulated one) still works: ticks are floored, not truncated.
  SimulatedTimeSource clock(MonotonicTime(-milliseconds(300)));
  TimerWheel wheel(clock.Now());
  std::vector<int> order;
  Recorder a{&order, 1, &clock}, b{&order, 2, &clock};
  Timer ta(wheel), tb(wheel);
  ta.ArmAfter(microseconds(299500), a.callback());  // deadline -0.5 ms: fires at tick 0
  tb.ArmAfter(milliseconds(600), b.callback());     // +300 ms
  for (int i = 0; i < 700; ++i) {
    clock.Advance(milliseconds(1));
    wheel.Advance(clock.Now());
  }
  EXPECT_THAT(order, ElementsAre(1, 2));
  EXPECT_EQ(a.fired_at, MonotonicTime(milliseconds(0)));
  EXPECT_EQ(b.fired_at, MonotonicTime(milliseconds(300)));
}

TEST(SimulatedTimeSourceTest, AdvanceMovesBothClocksSetWallOnlyWall) {
  SimulatedTimeSource clock;
  const MonotonicTime start = clock.Now();
  const absl::Time wall = clock.WallNow();
  clock.Advance(milliseconds(1500));
  EXPECT_EQ(clock.Now(), start + milliseconds(1500));
  EXPECT_EQ(clock.WallNow(), wall + absl::Milliseconds(1500));
  clock.SetWall(absl::FromUnixSeconds(42));
  EXPECT_EQ(clock.Now(), start + milliseconds(1500));
  EXPECT_EQ(clock.WallNow(), absl::FromUnixSeconds(42));
  clock.Advance(absl::Seconds(-1));  // ignored
  EXPECT_EQ(clock.Now(), start + milliseconds(1500));
}

}  // namespace
}  // namespace sluice::gateway::event
