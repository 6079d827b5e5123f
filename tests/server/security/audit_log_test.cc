#include "server/security/audit_log.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::security {
namespace {

using ::testing::HasSubstr;

v1::AuditEntry Entry(const std::string& identity, const std::string& action,
                     const std::string& outcome, uint64_t before, uint64_t after) {
  v1::AuditEntry e;
  e.set_identity(identity);
  e.set_action(action);
  e.set_outcome(outcome);
  e.set_version_before(before);
  e.set_version_after(after);
  e.add_resources("VirtualService/default/shop");
  return e;
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs the tests of this file in parallel processes.
    dir_ = ::testing::TempDir() + "/audit_log_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = dir_ + "/audit.log";
  }
  std::unique_ptr<AuditLog> Open(prometheus::Registry& registry, size_t keep = 1000) {
    AuditLog::Options options;
    options.path = path_;
    options.keep = keep;
    options.now = [this] { return now_; };
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options, registry);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }
  double Count(prometheus::Registry& registry, const std::string& identity,
               const std::string& outcome) {
    for (const auto& family : registry.Collect()) {
      if (family.name != "sluice_admin_changes_total") continue;
      for (const auto& metric : family.metric) {
        bool id = false, out = false;
        for (const auto& label : metric.label) {
          id |= label.name == "identity" && label.value == identity;
          out |= label.name == "outcome" && label.value == outcome;
        }
        if (id && out) return metric.counter.value;
      }
    }
    return 0;
  }

  std::string dir_, path_;
  absl::Time now_ = absl::FromUnixSeconds(1796000000);
};

TEST_F(AuditLogTest, EachChangeIsOneJsonLineInAPrivateFileAndCounted) {
  prometheus::Registry registry;
  auto log = Open(registry);
  log->Record(Entry("spiffe://t/admin", "apply", "applied", 4, 5));
  now_ += absl::Seconds(1);
  log->Record(Entry("spiffe://t/reader", "delete", "denied", 5, 5));

  std::ifstream in(path_);
  std::string first, second, third;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_FALSE(std::getline(in, third));
  EXPECT_THAT(first, HasSubstr("\"identity\":\"spiffe://t/admin\""));
  EXPECT_THAT(first, HasSubstr("\"version_before\":\"4\",\"version_after\":\"5\""));
  EXPECT_THAT(first, HasSubstr("\"time\":\"2026-11-30T00:53:20.000Z\""));
  EXPECT_THAT(second, HasSubstr("\"outcome\":\"denied\""));
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Count(registry, "spiffe://t/admin", "applied"), 1);
  EXPECT_EQ(Count(registry, "spiffe://t/reader", "denied"), 1);

  const std::vector<v1::AuditEntry> recent = log->Recent(1);
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].identity(), "spiffe://t/reader");
}

TEST_F(AuditLogTest, ARestartedServerShowsTheHistoryItHadAndSkipsBrokenLines) {
  {
    prometheus::Registry registry;
    auto log = Open(registry);
    for (int i = 0; i < 5; ++i) log->Record(Entry("a", "apply", "applied", i, i + 1));
  }
  std::ofstream(path_, std::ios::app) << "{not json\n";
  prometheus::Registry registry;
  auto log = Open(registry, /*keep=*/3);
  log->Record(Entry("b", "delete", "applied", 5, 6));
  const std::vector<v1::AuditEntry> recent = log->Recent(10);
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0].version_before(), 3u);
  EXPECT_EQ(recent[1].version_before(), 4u);
  EXPECT_EQ(recent[2].identity(), "b");
}

TEST_F(AuditLogTest, AFolderThatCannotBeWrittenIsAClearError) {
  prometheus::Registry registry;
  AuditLog::Options options;
  options.path = dir_ + "/no/such/folder/audit.log";
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options, registry);
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(std::string(log.status().message()),
              HasSubstr("--audit-log " + options.path + ": cannot open it for appending"));
}

TEST(AuditLogJsonTest, RoundTrips) {
  v1::AuditEntry e = Entry("x", "canary-promote", "failed", 1, 1);
  e.set_detail("no Canary default/shop");
  absl::StatusOr<v1::AuditEntry> back = AuditLog::FromJsonLine(AuditLog::ToJsonLine(e));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->SerializeAsString(), e.SerializeAsString());
}

}  // namespace
}  // namespace sluice::security
