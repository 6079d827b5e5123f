#include "gateway/upstream/dns_cache.h"

#include <atomic>
#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/mutex.h"

namespace sluice::gateway {
namespace {

using ::testing::ElementsAre;

// A resolver that answers from a map the test edits, counts its calls, and can be held
// (a lookup that hangs) until the test releases it.
class FakeResolver {
 public:
  DnsCache::Resolver AsResolver() {
    return [this](const std::string& host) -> absl::StatusOr<DnsCache::Addresses> {
      MutexLock lock(&mu_);
      ++calls_;
      ++calls_by_host_[host];
      started_.SignalAll();
      while (held_) released_.Wait(&mu_);
      auto it = answers_.find(host);
      if (it == answers_.end()) return absl::UnavailableError("no such host: " + host);
      return it->second;
    };
  }
  void Answer(const std::string& host, DnsCache::Addresses addresses) {
    MutexLock lock(&mu_);
    answers_[host] = std::move(addresses);
  }
  void Forget(const std::string& host) {
    MutexLock lock(&mu_);
    answers_.erase(host);
  }
  void Hold() {
    MutexLock lock(&mu_);
    held_ = true;
  }
  void Release() {
    MutexLock lock(&mu_);
    held_ = false;
    released_.SignalAll();
  }
  // Waits (bounded) until `n` lookups have started.
  bool WaitForCalls(int n) {
    MutexLock lock(&mu_);
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (calls_ < n) {
      if (started_.WaitWithTimeout(&mu_, give_up - absl::Now())) return calls_ >= n;
    }
    return true;
  }
  int calls() {
    MutexLock lock(&mu_);
    return calls_;
  }
  int calls_for(const std::string& host) {
    MutexLock lock(&mu_);
    return calls_by_host_[host];
  }

 private:
  Mutex mu_;
  CondVar started_, released_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> calls_by_host_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, DnsCache::Addresses> answers_ ABSL_GUARDED_BY(mu_);
};

// Waits (bounded) for `host`'s resolution that is running or queued to end.
void WaitResolved(DnsCache& cache, const std::string& host) {
  auto done = std::make_shared<absl::Notification>();
  cache.WhenResolved(host, [done] { done->Notify(); });
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(10)));
}

class DnsCacheTest : public ::testing::Test {
 protected:
  DnsCache::Options options_{.refresh = absl::Seconds(5),
                             .failure_refresh = absl::Seconds(1),
                             .forget_after = absl::Minutes(5)};
  event::SimulatedTimeSource clock_;
  FakeResolver resolver_;
};

TEST_F(DnsCacheTest, AFirstLookupWaitsThenEveryLookupIsAnsweredFromTheCache) {
  resolver_.Answer("reviews.internal", {"10.0.0.7", "10.0.0.8"});
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  EXPECT_FALSE(cache.Lookup("reviews.internal").has_value());  // resolution started
  WaitResolved(cache, "reviews.internal");
  for (int i = 0; i < 100; ++i) {
    std::optional<DnsCache::Result> r = cache.Lookup("reviews.internal");
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->status.ok());
    EXPECT_THAT(r->addresses, ElementsAre("10.0.0.7", "10.0.0.8"));
    clock_.Advance(absl::Milliseconds(40));  // 4 s in all: within the refresh interval
  }
  // Once per host, not once per connection.
  EXPECT_EQ(resolver_.calls(), 1);
  EXPECT_EQ(cache.resolutions(), 1u);
}

TEST_F(DnsCacheTest, AStaleEntryServesWhileOneRefreshRuns) {
  resolver_.Answer("reviews.internal", {"10.0.0.7"});
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  cache.Lookup("reviews.internal");
  WaitResolved(cache, "reviews.internal");
  resolver_.Answer("reviews.internal", {"10.0.0.9"});
  resolver_.Hold();
  clock_.Advance(absl::Seconds(5));
  // Past the refresh interval: the old address still answers while the refresh runs, and
  // many lookups start one refresh only.
  for (int i = 0; i < 10; ++i) {
    std::optional<DnsCache::Result> r = cache.Lookup("reviews.internal");
    ASSERT_TRUE(r.has_value());
    EXPECT_THAT(r->addresses, ElementsAre("10.0.0.7"));
  }
  ASSERT_TRUE(resolver_.WaitForCalls(2));
  resolver_.Release();
  WaitResolved(cache, "reviews.internal");
  EXPECT_THAT(cache.Lookup("reviews.internal")->addresses, ElementsAre("10.0.0.9"));
  EXPECT_EQ(resolver_.calls(), 2);
}

TEST_F(DnsCacheTest, AFailureIsKeptThenRetriedAtTheFailureRefreshInterval) {
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  cache.Lookup("ratings.internal");
  WaitResolved(cache, "ratings.internal");
  std::optional<DnsCache::Result> r = cache.Lookup("ratings.internal");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r->status.message(), ::testing::HasSubstr("ratings.internal"));
  EXPECT_EQ(resolver_.calls(), 1);  // requests fail fast from the cache, no new lookup
  resolver_.Answer("ratings.internal", {"10.0.0.3"});
  clock_.Advance(absl::Seconds(1));
  cache.Lookup("ratings.internal");
  WaitResolved(cache, "ratings.internal");
  r = cache.Lookup("ratings.internal");
  ASSERT_TRUE(r->status.ok());
  EXPECT_THAT(r->addresses, ElementsAre("10.0.0.3"));
}

TEST_F(DnsCacheTest, AFailedRefreshKeepsTheAddressesThatWorked) {
  resolver_.Answer("ratings.internal", {"10.0.0.3"});
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  cache.Lookup("ratings.internal");
  WaitResolved(cache, "ratings.internal");
  resolver_.Forget("ratings.internal");
  clock_.Advance(absl::Seconds(5));
  cache.Lookup("ratings.internal");
  WaitResolved(cache, "ratings.internal");
  EXPECT_EQ(resolver_.calls(), 2);
  std::optional<DnsCache::Result> r = cache.Lookup("ratings.internal");
  ASSERT_TRUE(r->status.ok());
  EXPECT_THAT(r->addresses, ElementsAre("10.0.0.3"));
}

TEST_F(DnsCacheTest, AHungLookupWakesNoWaiterAndDoesNotHoldUpShutdown) {
  // Owned by the resolver function too: the resolver thread outlives the cache here.
  auto resolver = std::make_shared<FakeResolver>();
  resolver->Answer("slow.internal", {"10.0.0.5"});
  resolver->Hold();
  auto cache = std::make_unique<DnsCache>(
      [resolver](const std::string& host) { return resolver->AsResolver()(host); }, clock_,
      options_);
  cache->Lookup("slow.internal");
  ASSERT_TRUE(resolver->WaitForCalls(1));
  std::atomic<bool> woken{false};
  cache->WhenResolved("slow.internal", [&woken] { woken = true; });
  EXPECT_FALSE(cache->Lookup("slow.internal").has_value());
  // The caller's own timer bounds its wait; the cache must only not call it back late.
  const absl::Time before = absl::Now();
  cache.reset();  // the lookup still hangs
  EXPECT_LT(absl::Now() - before, absl::Seconds(1));
  resolver->Release();  // the detached thread ends; the dropped waiter is never called
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woken);
}

TEST_F(DnsCacheTest, DestructionWaitsForAnIdleResolverThreadToEnd) {
  // The resolver thread holds its own copy of the resolver function: once that copy is
  // destroyed, the thread has returned. A thread left running past the cache would still be
  // unwinding while the process exits (the gateway destroys its cache last).
  for (int round = 0; round < 20; ++round) {
    auto alive = std::make_shared<int>(0);
    {
      DnsCache cache(
          [alive](const std::string&) -> absl::StatusOr<DnsCache::Addresses> {
            return DnsCache::Addresses{"10.0.0.1"};
          },
          clock_, options_);
      cache.Lookup("reviews.internal");
      WaitResolved(cache, "reviews.internal");
    }
    EXPECT_EQ(alive.use_count(), 1) << "round " << round;
  }
}

TEST_F(DnsCacheTest, WhenResolvedWithNothingRunningCallsAtOnce) {
  resolver_.Answer("reviews.internal", {"10.0.0.7"});
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  bool called = false;
  cache.WhenResolved("never-asked.internal", [&called] { called = true; });
  EXPECT_TRUE(called);
  EXPECT_EQ(resolver_.calls(), 0);
}

TEST_F(DnsCacheTest, HostsNoRequestAskedForLeaveTheCache) {
  resolver_.Answer("a.internal", {"10.0.0.1"});
  resolver_.Answer("b.internal", {"10.0.0.2"});
  DnsCache cache(resolver_.AsResolver(), clock_, options_);
  cache.Lookup("a.internal");
  cache.Lookup("b.internal");
  WaitResolved(cache, "a.internal");
  WaitResolved(cache, "b.internal");
  EXPECT_EQ(cache.size(), 2u);
  clock_.Advance(absl::Minutes(4));
  cache.Lookup("b.internal");  // b stays in use (and refreshes)
  WaitResolved(cache, "b.internal");
  clock_.Advance(absl::Minutes(1));
  // The resolver thread sweeps when it has nothing queued; a lookup of another host wakes it.
  cache.Lookup("c.internal");
  WaitResolved(cache, "c.internal");
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (cache.size() != 2u && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(cache.size(), 2u);  // b and c; a was forgotten
  EXPECT_EQ(resolver_.calls_for("a.internal"), 1);
  EXPECT_FALSE(cache.Lookup("a.internal").has_value());  // asked again: resolved anew
}

TEST(DnsCacheSystemResolverTest, ResolvesLocalhostAndNamesAnUnknownHost) {
  DnsCache::Resolver resolve = DnsCache::SystemResolver();
  absl::StatusOr<DnsCache::Addresses> local = resolve("localhost");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_FALSE(local->empty());
  // RFC 6761: names under .invalid never resolve.
  absl::StatusOr<DnsCache::Addresses> unknown = resolve("sluice-test.invalid");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), ::testing::HasSubstr("sluice-test.invalid"));
}

}  // namespace
}  // namespace sluice::gateway
