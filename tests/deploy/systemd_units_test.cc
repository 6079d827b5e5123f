// Checks the systemd units in deploy/systemd/: systemd's own verifier finds nothing to say
// about them, each keeps its sandboxing, and each stops within what its flags allow.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;

const fs::path kSystemdDir = fs::path(SLUICE_SOURCE_DIR) / "deploy" / "systemd";
constexpr char kSystemdAnalyze[] = "/usr/bin/systemd-analyze";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A unit file: for each section, its assignments in order (a key may repeat).
using Unit = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;

Unit ParseUnit(const std::string& text) {
  Unit unit;
  std::string section;
  std::string pending;  // a line continued with a trailing backslash
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    std::string line = pending + std::string(absl::StripAsciiWhitespace(raw));
    pending.clear();
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (absl::EndsWith(line, "\\")) {
      pending = line.substr(0, line.size() - 1) + " ";
      continue;
    }
    if (line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
      unit[section];
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    unit[section].emplace_back(std::string(absl::StripAsciiWhitespace(line.substr(0, eq))),
                               std::string(absl::StripAsciiWhitespace(line.substr(eq + 1))));
  }
  return unit;
}

// The last value assigned to `key` in `section` (the one systemd uses for single values).
std::optional<std::string> Last(const Unit& unit, const std::string& section,
                                const std::string& key) {
  auto it = unit.find(section);
  if (it == unit.end()) return std::nullopt;
  std::optional<std::string> value;
  for (const auto& [k, v] : it->second) {
    if (k == key) value = v;
  }
  return value;
}

std::vector<std::string> All(const Unit& unit, const std::string& section, const std::string& key) {
  std::vector<std::string> out;
  auto it = unit.find(section);
  if (it == unit.end()) return out;
  for (const auto& [k, v] : it->second) {
    if (k == key) out.push_back(v);
  }
  return out;
}

// KEY=value and KEY="value" lines of an environment file.
std::map<std::string, std::string> ParseEnvFile(const std::string& text) {
  std::map<std::string, std::string> env;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    const std::string line(absl::StripAsciiWhitespace(raw));
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    env[line.substr(0, eq)] = value;
  }
  return env;
}

// systemd's time spans as these units write them: "15s", "45s", "1min", "90" (seconds).
absl::Duration ParseTimeSpan(std::string text) {
  int seconds = 0;
  if (absl::SimpleAtoi(text, &seconds)) return absl::Seconds(seconds);
  absl::StrReplaceAll({{"min", "m"}, {" ", ""}}, &text);
  absl::Duration d = absl::ZeroDuration();
  EXPECT_TRUE(absl::ParseDuration(text, &d)) << "time span " << text;
  return d;
}

// Runs `command` through the shell; returns (exit status, stdout and stderr).
std::pair<int, std::string> RunShell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

struct Program {
  std::string name;       // unit sluice-NAME.service, binary /usr/local/bin/sluice-NAME
  std::string args_var;   // the variable in the environment file holding its flags
  std::string stop_flag;  // the flag bounding how long it takes to stop
  absl::Duration stop_default;
  std::set<std::string> flags;  // every flag the program takes (its usage text)
};

const std::vector<Program>& Programs() {
  static const auto* programs = new std::vector<Program>{
      {"sluice-server",
       "SLUICE_SERVER_ARGS",
       "--shutdown-grace",
       absl::Seconds(1),
       {"--config", "--state-dir", "--listen", "--metrics", "--reload-interval", "--shutdown-grace",
        "--prometheus-url", "--max-apply-bytes", "--max-apply-resources", "--tls-cert", "--tls-key",
        "--tls-ca", "--tls-refresh-interval", "--plaintext", "--access-policy", "--allow-identity",
        "--audit-log", "--health"}},
      {"sluice-gateway",
       "SLUICE_GATEWAY_ARGS",
       "--drain-timeout",
       absl::Seconds(30),
       {"--listen",
        "--decision",
        "--metrics",
        "--workers",
        "--decision-failure",
        "--access-log",
        "--decision-deadline",
        "--max-request-headers",
        "--max-request-body",
        "--retry-buffer",
        "--request-header-timeout",
        "--idle-timeout",
        "--drain-timeout",
        "--name",
        "--decisions",
        "--max-table-age",
        "--access-log-flush-interval",
        "--shadow-host-suffix",
        "--max-request-header-count",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--tls-server-name",
        "--tls-refresh-interval",
        "--plaintext",
        "--io"}},
  };
  return *programs;
}

void PrintTo(const Program& program, std::ostream* os) { *os << program.name; }

class SystemdUnitTest : public ::testing::TestWithParam<Program> {
 protected:
  void SetUp() override {
    unit_path_ = kSystemdDir / (GetParam().name + ".service");
    env_path_ = kSystemdDir / (GetParam().name + ".env");
    ASSERT_TRUE(fs::is_regular_file(unit_path_)) << unit_path_;
    ASSERT_TRUE(fs::is_regular_file(env_path_)) << env_path_;
    unit_ = ParseUnit(ReadFile(unit_path_));
    env_ = ParseEnvFile(ReadFile(env_path_));
    args_ = absl::StrSplit(env_[GetParam().args_var], ' ', absl::SkipWhitespace());
  }

  std::string Service(const std::string& key) const {
    return Last(unit_, "Service", key).value_or("<unset>");
  }

  // The value of `flag` in the environment file's flags.
  std::optional<std::string> EnvFlag(const std::string& flag) const {
    std::optional<std::string> value;
    for (size_t i = 0; i < args_.size(); ++i) {
      if (args_[i] == flag && i + 1 < args_.size()) value = args_[i + 1];
      if (absl::StartsWith(args_[i], flag + "=")) value = args_[i].substr(flag.size() + 1);
    }
    return value;
  }

  fs::path unit_path_;
  fs::path env_path_;
  Unit unit_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> args_;
};

TEST_P(SystemdUnitTest, HasTheSandboxingDirectives) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"NoNewPrivileges", "yes"},
      {"ProtectSystem", "strict"},
      {"ProtectHome", "yes"},
      {"PrivateTmp", "yes"},
      {"PrivateDevices", "yes"},
      {"ProtectKernelTunables", "yes"},
      {"ProtectKernelModules", "yes"},
      {"ProtectKernelLogs", "yes"},
      {"ProtectControlGroups", "yes"},
      {"ProtectClock", "yes"},
      {"ProtectHostname", "yes"},
      {"RestrictNamespaces", "yes"},
      {"LockPersonality", "yes"},
      {"MemoryDenyWriteExecute", "yes"},
      {"RestrictRealtime", "yes"},
      {"RestrictSUIDSGID", "yes"},
      {"SystemCallArchitectures", "native"},
      {"CapabilityBoundingSet", ""},  // empty: no capabilities at all
  };
  for (const auto& [key, value] : expected) {
    EXPECT_EQ(Service(key), value) << unit_path_.filename() << ": " << key;
  }
  EXPECT_THAT(All(unit_, "Service", "SystemCallFilter"), ::testing::Contains("@system-service"))
      << unit_path_.filename();
  if (GetParam().name == "sluice-gateway") {
    // Its workers' I/O (--io auto) needs io_uring, which @system-service does not allow.
    EXPECT_THAT(All(unit_, "Service", "SystemCallFilter"),
                ::testing::Contains("io_uring_setup io_uring_enter io_uring_register"));
  }

  const std::vector<std::string> families =
      absl::StrSplit(Service("RestrictAddressFamilies"), ' ', absl::SkipWhitespace());
  EXPECT_THAT(families, ::testing::UnorderedElementsAre("AF_INET", "AF_INET6", "AF_UNIX"))
      << unit_path_.filename();

  // UMask: others get no access to what the service creates.
  const std::string umask_text = Service("UMask");
  char* end = nullptr;
  const long umask = std::strtol(umask_text.c_str(), &end, 8);
  ASSERT_TRUE(!umask_text.empty() && *end == '\0')
      << unit_path_.filename() << ": UMask=" << umask_text;
  EXPECT_EQ(umask & 07, 07) << unit_path_.filename() << ": UMask=" << umask_text;
}

TEST_P(SystemdUnitTest, RunsUnprivilegedWithFlagsFromTheEnvironmentFile) {
  const Program& program = GetParam();
  EXPECT_THAT(Service("Type"), ::testing::AnyOf("simple", "exec"));
  EXPECT_EQ(Service("Restart"), "on-failure");
  EXPECT_EQ(Service("KillSignal"), "SIGTERM");
  const bool dynamic_user = Service("DynamicUser") == "yes";
  const std::string user = Last(unit_, "Service", "User").value_or("");
  EXPECT_TRUE(dynamic_user || (!user.empty() && user != "root" && user != "0")) << "runs as root";
  EXPECT_FALSE(All(unit_, "Install", "WantedBy").empty()) << "systemctl enable would do nothing";

  // ExecStart=/usr/local/bin/NAME ... $ARGS_VAR, ARGS_VAR from /etc/default/NAME.
  const std::string exec_start = Service("ExecStart");
  EXPECT_TRUE(absl::StartsWith(exec_start, "/usr/local/bin/" + program.name + " ")) << exec_start;
  EXPECT_TRUE(absl::StrContains(exec_start, "$" + program.args_var) ||
              absl::StrContains(exec_start, "${" + program.args_var + "}"))
      << exec_start;
  const std::string env_file_value = Service("EnvironmentFile");
  absl::string_view env_file = env_file_value;
  absl::ConsumePrefix(&env_file, "-");
  EXPECT_EQ(env_file, "/etc/default/" + program.name);
  ASSERT_TRUE(env_.count(program.args_var))
      << env_path_.filename() << " does not set " << program.args_var;

  // Every flag in the example is one the program takes.
  ASSERT_FALSE(args_.empty());
  for (const std::string& arg : args_) {
    if (!absl::StartsWith(arg, "--")) continue;
    const std::string flag = arg.substr(0, arg.find('='));
    EXPECT_TRUE(program.flags.count(flag)) << env_path_.filename() << ": unknown flag " << flag;
  }
}

// Every channel is mutual TLS: the unit passes the three files as systemd credentials (%d),
// each loaded by a LoadCredential= line, and nothing asks for plaintext.
TEST_P(SystemdUnitTest, TalksMutualTlsWithFilesFromCredentials) {
  const std::string exec_start = Service("ExecStart");
  std::set<std::string> loaded;
  for (const std::string& line : All(unit_, "Service", "LoadCredential")) {
    const size_t colon = line.find(':');
    ASSERT_NE(colon, std::string::npos) << "LoadCredential=" << line;
    loaded.insert(line.substr(0, colon));
    EXPECT_TRUE(absl::StartsWith(line.substr(colon + 1), "/etc/sluice-tls/")) << line;
  }
  const std::vector<std::string> words = absl::StrSplit(exec_start, ' ', absl::SkipWhitespace());
  for (const char* flag : {"--tls-cert", "--tls-key", "--tls-ca"}) {
    auto it = std::find(words.begin(), words.end(), flag);
    ASSERT_NE(it, words.end()) << exec_start;
    ASSERT_NE(it + 1, words.end());
    absl::string_view file = *(it + 1);
    ASSERT_TRUE(absl::ConsumePrefix(&file, "%d/")) << flag << " " << file;
    EXPECT_TRUE(loaded.count(std::string(file))) << "no LoadCredential= for " << file;
  }
  EXPECT_FALSE(absl::StrContains(exec_start, "--plaintext"));
  EXPECT_FALSE(EnvFlag("--plaintext").has_value());
  for (const std::string& arg : args_) EXPECT_NE(arg, "--plaintext");
}

// systemd kills what is still running after TimeoutStopSec: it must exceed the time the
// program takes to stop (the server's --shutdown-grace, the gateway's --drain-timeout).
TEST_P(SystemdUnitTest, StopTimeoutCoversShutdown) {
  const Program& program = GetParam();
  absl::Duration stop = program.stop_default;
  if (const auto value = EnvFlag(program.stop_flag)) {
    ASSERT_TRUE(absl::ParseDuration(*value, &stop)) << program.stop_flag << " " << *value;
  }
  const std::optional<std::string> timeout = Last(unit_, "Service", "TimeoutStopSec");
  ASSERT_TRUE(timeout) << "no TimeoutStopSec: systemd's default (90s) is not a decision";
  EXPECT_GT(ParseTimeSpan(*timeout), stop)
      << "TimeoutStopSec=" << *timeout << " but " << program.stop_flag << " is "
      << absl::FormatDuration(stop);
}

// Copies of the units whose ExecStart runs a stub in a temporary folder: systemd-analyze
// checks that the command exists and is executable.
class UnitCopies {
 public:
  UnitCopies() : dir_(fs::temp_directory_path() / ("sluice-units-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
    for (const Program& program : Programs()) {
      const fs::path stub = dir_ / program.name;
      std::ofstream(stub) << "#!/bin/sh\nexit 0\n";
      fs::permissions(stub, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
      const std::string text =
          absl::StrReplaceAll(ReadFile(kSystemdDir / (program.name + ".service")),
                              {{"/usr/local/bin/" + program.name, stub.string()}});
      const fs::path unit = dir_ / (program.name + ".service");
      std::ofstream(unit) << text;
      units_.push_back(unit.string());
    }
  }
  ~UnitCopies() { fs::remove_all(dir_); }

  std::string Paths() const { return absl::StrJoin(units_, " "); }

 private:
  fs::path dir_;
  std::vector<std::string> units_;
};

TEST(SystemdAnalyzeTest, VerifyFindsNothingToSayAboutTheUnits) {
  if (!fs::exists(kSystemdAnalyze)) GTEST_SKIP() << kSystemdAnalyze << " is not installed";
  UnitCopies copies;
  const auto [status, output] =
      RunShell(absl::StrCat(kSystemdAnalyze, " verify --man=no ", copies.Paths()));
  EXPECT_EQ(status, 0) << output;
  // Warnings about our units name them; anything about other units is not ours to fix.
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    EXPECT_FALSE(absl::StrContains(line, "sluice-")) << "systemd-analyze verify: " << line;
  }
}

// systemd's own rating of the sandboxing: 1.6 when written; fail above 2.0 ("OK").
TEST(SystemdAnalyzeTest, SecurityExposureStaysLow) {
  if (!fs::exists(kSystemdAnalyze)) GTEST_SKIP() << kSystemdAnalyze << " is not installed";
  UnitCopies copies;
  const auto [status, output] = RunShell(absl::StrCat(
      kSystemdAnalyze, " security --offline=yes --threshold=20 --no-pager ", copies.Paths()));
  if (absl::StrContains(output, "unrecognized option")) {
    GTEST_SKIP() << "this systemd-analyze has no --offline/--threshold: " << output;
  }
  EXPECT_EQ(status, 0) << "exposure above 2.0:\n" << output;
  EXPECT_TRUE(absl::StrContains(output, "Overall exposure level")) << output;
}

INSTANTIATE_TEST_SUITE_P(Units, SystemdUnitTest, ::testing::ValuesIn(Programs()),
                         [](const auto& info) {
                           std::string name = info.param.name;
                           absl::StrReplaceAll({{"-", "_"}}, &name);
                           return name;
                         });

// The server keeps its state and reads its configuration where the unit says systemd
// creates them.
TEST(SystemdServerTest, StateAndConfigurationDirectories) {
  const Unit unit = ParseUnit(ReadFile(kSystemdDir / "sluice-server.service"));
  EXPECT_EQ(Last(unit, "Service", "StateDirectory").value_or(""), "sluice");
  EXPECT_EQ(Last(unit, "Service", "ConfigurationDirectory").value_or(""), "sluice");
  const std::string exec_start = Last(unit, "Service", "ExecStart").value_or("");
  EXPECT_TRUE(absl::StrContains(exec_start, "--state-dir /var/lib/sluice ") ||
              absl::StrContains(exec_start, "--state-dir ${STATE_DIRECTORY}"))
      << exec_start;

  const auto env = ParseEnvFile(ReadFile(kSystemdDir / "sluice-server.env"));
  const std::vector<std::string> args =
      absl::StrSplit(env.count("SLUICE_SERVER_ARGS") ? env.at("SLUICE_SERVER_ARGS") : "", ' ',
                     absl::SkipWhitespace());
  bool config = false;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    EXPECT_NE(args[i], "--state-dir") << "the unit sets --state-dir already";
    if (args[i] != "--config") continue;
    for (size_t j = i + 1; j < args.size() && !absl::StartsWith(args[j], "--"); ++j) {
      config = true;
      EXPECT_TRUE(args[j] == "/etc/sluice" || absl::StartsWith(args[j], "/etc/sluice/"))
          << "--config " << args[j] << " is outside ConfigurationDirectory=sluice";
    }
  }
  EXPECT_TRUE(config) << "the example flags have no --config";
}

}  // namespace
