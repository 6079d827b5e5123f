#include "server/store/open_writers.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace sluice::store {
namespace {
namespace fs = std::filesystem;

class OpenWritersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("sluice-writers-", ::getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "config/sub");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(OpenWritersTest, AFileIsOpenFromItsFirstWriteUntilItsWriterCloses) {
  auto writers = OpenWriters::Create({(dir_ / "config").string()});
  ASSERT_TRUE(writers.ok()) << writers.status();
  EXPECT_FALSE((*writers)->AnyOpen());
  {
    std::ofstream out(dir_ / "config/sub/vs.yaml");  // a subfolder is watched too
    out << "kind: VirtualService\n" << std::flush;
    EXPECT_TRUE((*writers)->AnyOpen());
    out << "metadata: {name: shop}\n" << std::flush;
    EXPECT_TRUE((*writers)->AnyOpen());
  }
  EXPECT_FALSE((*writers)->AnyOpen());
}

// `cat new > vs.yaml` empties the file before its first write: a reader in between would
// see no configuration at all.
TEST_F(OpenWritersTest, ATruncatedFileIsOpenBeforeItsFirstWrite) {
  std::ofstream(dir_ / "config/vs.yaml") << "kind: VirtualService\n";
  auto writers = OpenWriters::Create({(dir_ / "config").string()});
  ASSERT_TRUE(writers.ok()) << writers.status();
  {
    std::ofstream out(dir_ / "config/vs.yaml", std::ios::trunc);
    EXPECT_TRUE((*writers)->AnyOpen());
  }
  EXPECT_FALSE((*writers)->AnyOpen());
}

TEST_F(OpenWritersTest, ReadersAndRenamesAreNotWriters) {
  std::ofstream(dir_ / "config/vs.yaml") << "kind: VirtualService\n";
  auto writers = OpenWriters::Create({(dir_ / "config").string()});
  ASSERT_TRUE(writers.ok()) << writers.status();
  {
    std::ifstream in(dir_ / "config/vs.yaml");
    std::string line;
    std::getline(in, line);
    EXPECT_FALSE((*writers)->AnyOpen());
  }
  // The atomic way: write elsewhere, rename into place.
  std::ofstream(dir_ / "vs.yaml.tmp") << "kind: VirtualService\n";
  fs::rename(dir_ / "vs.yaml.tmp", dir_ / "config/vs.yaml");
  EXPECT_FALSE((*writers)->AnyOpen());
}

TEST_F(OpenWritersTest, AConfiguredFileIsWatchedThroughItsFolder) {
  const fs::path file = dir_ / "config/vs.yaml";
  std::ofstream(file) << "kind: VirtualService\n";
  auto writers = OpenWriters::Create({file.string()});
  ASSERT_TRUE(writers.ok()) << writers.status();
  FILE* out = std::fopen(file.c_str(), "w");
  ASSERT_NE(out, nullptr);
  std::fputs("kind: Virtual", out);
  std::fflush(out);
  EXPECT_TRUE((*writers)->AnyOpen());
  std::fclose(out);
  EXPECT_FALSE((*writers)->AnyOpen());
}

// Only what the loader reads counts: a log written beside a configured file, or a file the
// loader skips in a configured folder, never holds the configuration back.
TEST_F(OpenWritersTest, OtherFilesWrittenBesideConfigurationDoNotCount) {
  const fs::path file = dir_ / "vs.yaml";
  std::ofstream(file) << "kind: VirtualService\n";
  auto writers = OpenWriters::Create({file.string(), (dir_ / "config").string()});
  ASSERT_TRUE(writers.ok()) << writers.status();
  std::ofstream log(dir_ / "access.log");
  log << "GET / 200\n" << std::flush;
  std::ofstream notes(dir_ / "config/notes.txt");
  notes << "not configuration\n" << std::flush;
  std::ofstream hidden(dir_ / "config/.vs.yaml.tmp");
  hidden << "kind: Virtual" << std::flush;
  EXPECT_FALSE((*writers)->AnyOpen());
}

TEST_F(OpenWritersTest, AWriterThatNeverClosesIsForgottenAfterMaxOpen) {
  auto writers = OpenWriters::Create({(dir_ / "config").string()}, absl::Seconds(30));
  ASSERT_TRUE(writers.ok()) << writers.status();
  std::ofstream out(dir_ / "config/vs.yaml");
  out << "kind: VirtualService\n" << std::flush;
  const absl::Time now = absl::Now();
  EXPECT_TRUE((*writers)->AnyOpen(now));
  EXPECT_TRUE((*writers)->AnyOpen(now + absl::Seconds(29)));
  EXPECT_FALSE((*writers)->AnyOpen(now + absl::Seconds(30)));
}

TEST_F(OpenWritersTest, AMissingFolderIsAnErrorNamingIt) {
  auto writers = OpenWriters::Create({(dir_ / "nowhere/vs.yaml").string()});
  ASSERT_FALSE(writers.ok());
  EXPECT_NE(writers.status().message().find("nowhere"), std::string::npos) << writers.status();
}

}  // namespace
}  // namespace sluice::store
