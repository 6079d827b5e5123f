#include "lib/common/flags.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/host_port.h"
#include "lib/common/sizes.h"

ABSL_FLAG(std::string, state_dir, "", "A folder.");
ABSL_FLAG(sluice::HostPort, listen, (sluice::HostPort{"127.0.0.1", 7070}), "Where to listen.");
ABSL_FLAG(std::optional<sluice::HostPort>, decision, std::nullopt, "The server (required).");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(60), "Idle connections close after it.");
ABSL_FLAG(int, workers, 1, "Event loops.");
ABSL_FLAG(sluice::ByteSize, retry_buffer, (sluice::ByteSize{64 * 1024}), "Kept for replay.");
ABSL_FLAG(bool, shadow_host_suffix, false, "Mirrored requests carry NAME-shadow.");
ABSL_FLAG(std::vector<std::string>, config, {}, "YAML files or folders.");
ABSL_FLAG(std::vector<std::string>, H, {}, "A header.");

namespace sluice::flags {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Program TestProgram() {
  Program program;
  program.name = "prog";
  program.usage = "usage: prog [flags]\n";
  program.take_following = {&FLAGS_config};
  program.repeated = {&FLAGS_H};
  program.aliases = {{"header", "H"}};
  program.requirements = {
      Require(FLAGS_workers, "a number from 1 to 256", [](int n) { return n >= 1 && n <= 256; }),
      Require(FLAGS_decision, "HOST:PORT",
              [](const std::optional<HostPort>& d) { return d.has_value(); }),
  };
  return program;
}

class FlagsTest : public ::testing::Test {
 protected:
  absl::StatusOr<Parsed> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), {"--decision", "127.0.0.1:7070"});
    return ParseArgs(args, TestProgram());
  }
  // The usage error for `args` ("" when they parse).
  std::string Error(std::vector<std::string> args) {
    absl::StatusOr<Parsed> parsed = Parse(std::move(args));
    return parsed.ok() ? "" : std::string(parsed.status().message());
  }

  absl::FlagSaver saver_;  // each test starts from the defaults
};

TEST_F(FlagsTest, DashedNamesWithSpaceOrEquals) {
  ASSERT_TRUE(Parse({"--state-dir", "/var/lib/sluice", "--listen=[::1]:0"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_state_dir), "/var/lib/sluice");
  EXPECT_EQ(absl::GetFlag(FLAGS_listen), (HostPort{"::1", 0}));
  ASSERT_TRUE(Parse({"--state-dir=/tmp/x", "--listen", "localhost:1"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_state_dir), "/tmp/x");
  EXPECT_EQ(absl::GetFlag(FLAGS_listen), (HostPort{"localhost", 1}));
  // Abseil's own spellings too: underscores, one dash.
  ASSERT_TRUE(Parse({"--state_dir", "a", "-idle-timeout=5s"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_state_dir), "a");
  EXPECT_EQ(absl::GetFlag(FLAGS_idle_timeout), absl::Seconds(5));
}

TEST_F(FlagsTest, ValuesThatStartWithADash) {
  ASSERT_TRUE(Parse({"--state-dir", "-"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_state_dir), "-");
}

TEST_F(FlagsTest, Booleans) {
  ASSERT_TRUE(Parse({"--shadow-host-suffix"}).ok());
  EXPECT_TRUE(absl::GetFlag(FLAGS_shadow_host_suffix));
  ASSERT_TRUE(Parse({"--shadow-host-suffix=false"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_shadow_host_suffix));
  ASSERT_TRUE(Parse({"--shadow-host-suffix=true"}).ok());
  ASSERT_TRUE(Parse({"--noshadow-host-suffix"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_shadow_host_suffix));
  ASSERT_TRUE(Parse({"--shadow-host-suffix", "--no-shadow-host-suffix"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_shadow_host_suffix));
  // A boolean takes no separate value: what follows is an argument.
  absl::StatusOr<Parsed> parsed = Parse({"--shadow-host-suffix", "true"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(parsed->positional, ElementsAre("true"));
  EXPECT_EQ(Error({"--shadow-host-suffix=maybe"}),
            "--shadow-host-suffix \"maybe\": want true or false");
  EXPECT_THAT(Error({"--noshadow-host-suffix=true"}), HasSubstr("takes no value"));
  EXPECT_EQ(Error({"--noworkers"}), "unknown flag --noworkers");
}

TEST_F(FlagsTest, RepeatedFlagsKeepEveryValueWhole) {
  ASSERT_TRUE(Parse({"-H", "accept: a, b", "--header=x-a:1", "--H", "x-b:2"}).ok());
  EXPECT_THAT(absl::GetFlag(FLAGS_H), ElementsAre("accept: a, b", "x-a:1", "x-b:2"));
}

TEST_F(FlagsTest, TakeFollowingCollectsPathsUpToTheNextFlag) {
  absl::StatusOr<Parsed> parsed =
      Parse({"--config", "a.yaml", "b,c.yaml", "--workers", "2", "--config=d/", "e/", "--", "f"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(absl::GetFlag(FLAGS_config), ElementsAre("a.yaml", "b,c.yaml", "d/", "e/"));
  EXPECT_EQ(absl::GetFlag(FLAGS_workers), 2);
  EXPECT_THAT(parsed->positional, ElementsAre("f"));
}

TEST_F(FlagsTest, PositionalArgumentsInOrder) {
  absl::StatusOr<Parsed> parsed = Parse({"canary", "set-weight", "--workers=3", "shop", "40"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positional, ElementsAre("canary", "set-weight", "shop", "40"));
  EXPECT_FALSE(parsed->help);
}

TEST_F(FlagsTest, ErrorsNameTheFlagAndWhatIsWanted) {
  // First: a failed parse may leave the flags before the error set (the program exits).
  EXPECT_EQ(ParseArgs({}, TestProgram()).status().message(),
            "--decision is required: want HOST:PORT");
  EXPECT_EQ(Error({"--bogus", "1"}), "unknown flag --bogus");
  EXPECT_EQ(Error({"--listen"}), "--listen needs a value");
  EXPECT_EQ(Error({"--listen", "::1:7070"}),
            "--listen \"::1:7070\": want HOST:PORT such as 127.0.0.1:7070 or [::1]:7070 (an "
            "IPv6 address needs brackets)");
  EXPECT_EQ(Error({"--idle-timeout=5"}),
            "--idle-timeout \"5\": want a duration such as 250ms, 1s, 2m or 1h30m");
  EXPECT_EQ(Error({"--retry-buffer", "lots"}),
            "--retry-buffer \"lots\": want a size in bytes such as 65536, 64k or 16m");
  // A requirement's words serve for a value that does not even parse.
  EXPECT_EQ(Error({"--workers", "two"}), "--workers \"two\": want a number from 1 to 256");
  EXPECT_EQ(Error({"--workers", "0"}), "--workers \"0\": want a number from 1 to 256");
}

TEST_F(FlagsTest, HelpWinsWherever) {
  for (const char* help : {"--help", "-h", "-help"}) {
    absl::StatusOr<Parsed> parsed = Parse({"--bogus", help});
    ASSERT_TRUE(parsed.ok()) << help;
    EXPECT_TRUE(parsed->help);
  }
  // After "--" it is an argument.
  absl::StatusOr<Parsed> parsed = Parse({"--", "--help"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->help);
  EXPECT_THAT(parsed->positional, ElementsAre("--help"));
}

TEST_F(FlagsTest, HelpListsEveryFlagWithItsDefault) {
  const std::string help = Help(TestProgram());
  EXPECT_THAT(help, HasSubstr("usage: prog [flags]\n"));
  for (const char* line :
       {"  --state-dir  default: none\n", "  --listen  default: 127.0.0.1:7070\n",
        "  --decision  default: none\n", "  --idle-timeout  default: 1m\n",
        "  --workers  default: 1\n", "  --retry-buffer  default: 64k\n",
        "  --shadow-host-suffix  default: false\n", "  --config  default: none (repeatable)\n",
        "  -H, --header  default: none (repeatable)\n", "      Where to listen.\n"}) {
    EXPECT_THAT(help, HasSubstr(line));
  }
  // Abseil's own flags are not the program's.
  EXPECT_THAT(help, ::testing::Not(HasSubstr("flagfile")));
  EXPECT_THAT(help, ::testing::Not(HasSubstr("helpfull")));
}

TEST(CommandLineName, DashesAndShortFlags) {
  EXPECT_EQ(CommandLineName("state_dir"), "--state-dir");
  EXPECT_EQ(CommandLineName("f"), "-f");
  EXPECT_EQ(CommandLineName("workers"), "--workers");
}

}  // namespace
}  // namespace sluice::flags
