#include "server/store/etcd_client.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice::store {
namespace {

using ::testing::HasSubstr;

TEST(ParseEtcdLocationTest, ReadsEndpointsAndPrefix) {
  absl::StatusOr<EtcdLocation> one = ParseEtcdLocation("etcd://127.0.0.1:2379/sluice");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->endpoints.entries.size(), 1u);
  EXPECT_EQ(one->endpoints.entries[0].port, 2379);
  EXPECT_EQ(one->prefix, "/sluice/");
  EXPECT_EQ(one->ToString(), "etcd://127.0.0.1:2379/sluice");

  absl::StatusOr<EtcdLocation> three =
      ParseEtcdLocation("etcd://10.0.0.1:2379,10.0.0.2:2379,[::1]:2379/prod/sluice/");
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->endpoints.entries.size(), 3u);
  EXPECT_EQ(three->endpoints.entries[2].host, "::1");
  EXPECT_EQ(three->prefix, "/prod/sluice/");
}

TEST(ParseEtcdLocationTest, RefusesWhatIsNotALocationAndSaysWhy) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://127.0.0.1:2379/sluice", "not an etcd:// address"},
      {"etcd://127.0.0.1:2379", "no /PREFIX"},
      {"etcd://127.0.0.1:2379/", "the PREFIX is empty"},
      {"etcd://127.0.0.1/sluice", "no port"},
      {"etcd://127.0.0.1:2379,/sluice", "empty"},
  };
  for (const auto& [url, why] : cases) {
    absl::StatusOr<EtcdLocation> parsed = ParseEtcdLocation(url);
    ASSERT_FALSE(parsed.ok()) << url;
    EXPECT_THAT(parsed.status().message(), HasSubstr(why)) << url;
    EXPECT_THAT(parsed.status().message(), HasSubstr(url));
  }
}

TEST(PrefixRangeEndTest, IsTheFirstKeyPastThePrefix) {
  EXPECT_EQ(PrefixRangeEnd("/sluice/"), "/sluice0");  // '/' + 1 == '0'
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
}

// Against a real single-member etcd.
class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(cluster_.Start(1, dir_.path(), &error)) << error;
    client_ = Connect(cluster_.Endpoints());
  }

  static std::unique_ptr<EtcdClient> Connect(const std::string& endpoints) {
    absl::StatusOr<EtcdLocation> location =
        ParseEtcdLocation(absl::StrCat("etcd://", endpoints, "/test"));
    EXPECT_TRUE(location.ok()) << location.status();
    absl::StatusOr<std::unique_ptr<EtcdClient>> client =
        EtcdClient::Create(*location, {.timeout = absl::Seconds(2)});
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  testing::TempDir dir_;
  testing::EtcdCluster cluster_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdClientTest, PutThenGetPrefixReadsEveryKeyAtOneRevision) {
  ASSERT_TRUE(client_->Put("/test/a", "1").ok());
  absl::StatusOr<int64_t> second = client_->Put("/test/b", "2");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(client_->Put("/other/c", "3").ok());  // outside the prefix

  absl::StatusOr<EtcdClient::Range> range = client_->GetPrefix("/test/");
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, "/test/a");
  EXPECT_EQ(range->kvs[1].value, "2");
  EXPECT_EQ(range->kvs[1].mod_revision, *second);
  EXPECT_GT(range->revision, *second);  // the put outside the prefix came after
}

TEST_F(EtcdClientTest, CompareAndWriteAppliesAllOrNothing) {
  // Absent key: compare against revision 0.
  absl::StatusOr<EtcdClient::TxnResult> first = client_->CompareAndWrite(
      "/test/version", 0, {EtcdWrite::Put("/test/version", "1"), EtcdWrite::Put("/test/x", "a")});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->succeeded);

  // A writer that read before the first write loses, and writes nothing.
  absl::StatusOr<EtcdClient::TxnResult> stale = client_->CompareAndWrite(
      "/test/version", 0, {EtcdWrite::Put("/test/version", "2"), EtcdWrite::Delete("/test/x")});
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->succeeded);
  absl::StatusOr<EtcdClient::Range> x = client_->Get("/test/x");
  ASSERT_TRUE(x.ok());
  ASSERT_EQ(x->kvs.size(), 1u);
  EXPECT_EQ(x->kvs[0].value, "a");

  // One that compares against what it read wins.
  absl::StatusOr<EtcdClient::TxnResult> next = client_->CompareAndWrite(
      "/test/version", first->revision,
      {EtcdWrite::Put("/test/version", "2"), EtcdWrite::Delete("/test/x")});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->succeeded);
  x = client_->Get("/test/x");
  ASSERT_TRUE(x.ok());
  EXPECT_TRUE(x->kvs.empty());
}

TEST_F(EtcdClientTest, WatchReportsEachChangeUnderThePrefixOnly) {
  absl::StatusOr<EtcdClient::Range> start = client_->GetPrefix("/test/");
  ASSERT_TRUE(start.ok());
  std::atomic<int64_t> seen{0};
  std::atomic<int> calls{0};
  auto watch = client_->WatchPrefix("/test/", start->revision, [&](int64_t revision) {
    seen.store(revision);
    calls.fetch_add(1);
  });
  ASSERT_TRUE(client_->Put("/elsewhere", "x").ok());
  absl::StatusOr<int64_t> put = client_->Put("/test/k", "v");
  ASSERT_TRUE(put.ok());
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (seen.load() != *put && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(seen.load(), *put);
  EXPECT_EQ(calls.load(), 1);  // the key outside the prefix made no call
}

TEST_F(EtcdClientTest, WatchResumesFromItsRevisionAfterEtcdRestarts) {
  std::atomic<int64_t> seen{0};
  auto watch = client_->WatchPrefix("/test/", 0, [&](int64_t revision) { seen.store(revision); });
  cluster_.Stop(0);
  std::string error;
  ASSERT_TRUE(cluster_.Restart(0, &error)) << error;
  absl::StatusOr<int64_t> put;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  do {
    put = client_->Put("/test/after", "1");
  } while (!put.ok() && absl::Now() < give_up);
  ASSERT_TRUE(put.ok()) << put.status();
  while (seen.load() != *put && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(seen.load(), *put);
}

TEST_F(EtcdClientTest, LeasedKeysGoWhenTheLeaseIsRevokedAndKeepAliveSaysWhenItIsGone) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("/test/leased", "x", *lease).ok());
  EXPECT_TRUE(client_->KeepAlive(*lease).ok());
  ASSERT_TRUE(client_->RevokeLease(*lease).ok());
  absl::StatusOr<EtcdClient::Range> got = client_->Get("/test/leased");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->kvs.empty());
  const absl::Status gone = client_->KeepAlive(*lease);
  EXPECT_TRUE(absl::IsNotFound(gone)) << gone;
}

TEST_F(EtcdClientTest, ALeaseNotKeptAliveExpiresWithItsKeys) {
  absl::StatusOr<int64_t> lease = client_->GrantLease(absl::Seconds(1));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("/test/leased", "x", *lease).ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<EtcdClient::Range> got;
  do {
    absl::SleepFor(absl::Milliseconds(100));
    got = client_->Get("/test/leased");
    ASSERT_TRUE(got.ok());
  } while (!got->kvs.empty() && absl::Now() - start < absl::Seconds(10));
  std::printf("a 1 s lease expired after %s\n", absl::FormatDuration(absl::Now() - start).c_str());
  EXPECT_TRUE(got->kvs.empty());
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_F(EtcdClientTest, AnUnreachableEtcdFailsWithinTheTimeoutNamingIt) {
  const std::string nowhere = absl::StrCat("127.0.0.1:", testing::FreePort());
  std::unique_ptr<EtcdClient> client = Connect(nowhere);
  const absl::Time start = absl::Now();
  absl::StatusOr<EtcdClient::Range> range = client->GetPrefix("/test/");
  ASSERT_FALSE(range.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(range.status().message(), HasSubstr(nowhere));
  EXPECT_THAT(range.status().message(), HasSubstr("reading failed"));
}

}  // namespace
}  // namespace sluice::store
