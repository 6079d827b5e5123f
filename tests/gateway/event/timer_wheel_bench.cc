// The timer wheel's cost on the request path: a proxied request arms three timers (route,
// per-try, idle) and cancels them when the response completes. Not a test: run it by hand,
// e.g. build-event/tests/gateway/event/gateway_event_timer_wheel_bench.

#include <chrono>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "gateway/event/timer_wheel.h"

namespace sluice::gateway::event {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Owner {
  void OnTimer() { benchmark::DoNotOptimize(this); }
};

// Timers of other in-flight requests, spread over the first minute, so that slots are shared.
std::vector<std::unique_ptr<Timer>> Background(TimerWheel& wheel, Owner& owner, int count) {
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < count; ++i) {
    timers.push_back(std::make_unique<Timer>(wheel));
    timers.back()->ArmAfter(milliseconds(1 + (i * 7919) % 60000),
                            TimerCallback::Bind<&Owner::OnTimer>(&owner));
  }
  return timers;
}

void BM_ArmAndCancelThreeTimers(benchmark::State& state) {
  TimerWheel wheel(MonotonicTime(std::chrono::hours(1)));
  Owner owner;
  auto background = Background(wheel, owner, static_cast<int>(state.range(0)));
  Timer route(wheel), per_try(wheel), idle(wheel);
  const TimerCallback callback = TimerCallback::Bind<&Owner::OnTimer>(&owner);
  for (auto _ : state) {
    route.ArmAfter(seconds(15), callback);
    per_try.ArmAfter(seconds(5), callback);
    idle.ArmAfter(seconds(60), callback);
    per_try.Cancel();
    route.Cancel();
    idle.Cancel();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ArmAndCancelThreeTimers)->Arg(0)->Arg(10000)->Arg(100000);

// A keep-alive connection re-arms its idle timer on every request: a move, not a new timer.
void BM_ReArm(benchmark::State& state) {
  TimerWheel wheel(MonotonicTime(std::chrono::hours(1)));
  Owner owner;
  Timer idle(wheel);
  const TimerCallback callback = TimerCallback::Bind<&Owner::OnTimer>(&owner);
  for (auto _ : state) idle.ArmAfter(seconds(60), callback);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReArm);

// A connection's idle timer that, when it fires, is re-armed a minute later: keeps the wheel
// at a steady population while it turns.
struct Periodic {
  explicit Periodic(TimerWheel& wheel) : timer(wheel) {}
  void OnTimer() { timer.ArmAfter(seconds(60), TimerCallback::Bind<&Periodic::OnTimer>(this)); }
  Timer timer;
};

// The loop's per-iteration cost: advance 1 ms (firing what is due) and ask for the next
// deadline, with `range(0)` armed timers spread over a minute.
void BM_AdvanceOneTick(benchmark::State& state) {
  MonotonicTime now(std::chrono::hours(1));
  TimerWheel wheel(now);
  std::vector<std::unique_ptr<Periodic>> timers;
  for (int i = 0; i < state.range(0); ++i) {
    timers.push_back(std::make_unique<Periodic>(wheel));
    timers.back()->timer.ArmAfter(milliseconds(1 + (i * 7919) % 60000),
                                  TimerCallback::Bind<&Periodic::OnTimer>(timers.back().get()));
  }
  for (auto _ : state) {
    now += milliseconds(1);
    wheel.Advance(now);
    benchmark::DoNotOptimize(wheel.NextDeadline());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AdvanceOneTick)->Arg(0)->Arg(10000);

}  // namespace
}  // namespace sluice::gateway::event
