// Leader election against a real single-member etcd.

#include "server/store/leader_election.h"

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice::store {
namespace {

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(cluster_.Start(1, dir_.path(), &error)) << error;
    absl::StatusOr<EtcdLocation> location =
        ParseEtcdLocation(absl::StrCat("etcd://", cluster_.Endpoints(), "/test"));
    ASSERT_TRUE(location.ok());
    etcd_ = *EtcdClient::Create(*location, {.timeout = absl::Seconds(2)});
  }

  LeaderElection::Options Options(const std::string& identity, absl::Duration ttl) {
    return {.key = "/test/leader", .identity = identity, .ttl = ttl};
  }

  static bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (!done()) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  testing::TempDir dir_;
  testing::EtcdCluster cluster_;
  std::unique_ptr<EtcdClient> etcd_;
};

TEST_F(LeaderElectionTest, OneLeadsAndWhenItResignsTheOtherTakesOverWithANewFence) {
  auto a = std::make_unique<LeaderElection>(*etcd_, Options("a", absl::Seconds(2)));
  ASSERT_TRUE(WaitFor([&] { return a->IsLeader(); }, absl::Seconds(5)));
  LeaderElection b(*etcd_, Options("b", absl::Seconds(2)));
  ASSERT_TRUE(WaitFor([&] { return b.leader() == "a"; }, absl::Seconds(5)));
  EXPECT_FALSE(b.IsLeader());
  EXPECT_EQ(b.fence(), 0);
  const int64_t fence_a = a->fence();
  EXPECT_GT(fence_a, 0);

  a.reset();  // resigns: its lease is revoked, the key goes at once
  ASSERT_TRUE(WaitFor([&] { return b.IsLeader(); }, absl::Seconds(3)));
  EXPECT_GT(b.fence(), fence_a);
  EXPECT_EQ(b.leader(), "b");
}

TEST_F(LeaderElectionTest, ALeaderWhoseClockPassedItsLeaseIsNoLeaderBeforeItRenews) {
  // A process stopped past its lease wakes with its clock moved on: it must not lead on the
  // strength of a renewal older than the TTL. (The TTL is long so that no renewal runs
  // between the clock's jump and the check.)
  std::atomic<int64_t> offset_s{0};
  LeaderElection::Options options = Options("a", absl::Seconds(30));
  options.clock = [&] { return absl::Now() + absl::Seconds(offset_s.load()); };
  LeaderElection a(*etcd_, options);
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, absl::Seconds(5)));
  offset_s = 31;
  EXPECT_FALSE(a.IsLeader());
  EXPECT_EQ(a.fence(), 0);
}

TEST_F(LeaderElectionTest, ALeaderThatStopsRenewingLosesTheKeyWithinItsTtl) {
  // Stands for a killed leader: its lease is left to expire (not revoked).
  absl::StatusOr<int64_t> lease = etcd_->GrantLease(absl::Seconds(1));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(etcd_->CompareAndWrite("/test/leader", 0,
                                     {EtcdWrite::Put("/test/leader", "dead", *lease)})
                  .ok());
  LeaderElection b(*etcd_, Options("b", absl::Seconds(1)));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return b.IsLeader(); }, absl::Seconds(5)));
  std::printf("took over %s after the dead leader's last renewal (TTL 1s)\n",
              absl::FormatDuration(absl::Now() - start).c_str());
}

}  // namespace
}  // namespace sluice::store
