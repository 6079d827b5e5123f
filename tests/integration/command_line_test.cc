// The command lines of the four programs (sluice-server, sluice-gateway, sluicectl,
// sluice-stub), run as real processes: --help lists every flag with its default, a bad value
// is refused with exit code 2 and a message naming the flag before anything starts, `--flag
// value` and `--flag=value` both work, and HOST:PORT takes IPv6 in brackets.

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/host_port.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const std::string kBookinfo = absl::StrCat(SLUICE_SOURCE_DIR, "/deploy/examples/bookinfo.yaml");
const std::string kCanary = absl::StrCat(SLUICE_SOURCE_DIR, "/deploy/examples/canary.yaml");

using testing::Ran;
using testing::RunToEnd;

// The flags --help lists: "--listen" -> "127.0.0.1:7070" ("-f, --filename" -> "none").
std::map<std::string, std::string> HelpFlags(const std::string& help) {
  std::map<std::string, std::string> flags;
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    if (!absl::ConsumePrefix(&line, "  -")) continue;
    const size_t at = line.find("  default: ");
    if (at == absl::string_view::npos) continue;
    absl::string_view value = line.substr(at + std::strlen("  default: "));
    absl::ConsumeSuffix(&value, " (repeatable)");
    flags[absl::StrCat("-", line.substr(0, at))] = std::string(value);
  }
  return flags;
}

struct Program {
  std::string name;
  std::string binary;
  std::map<std::string, std::string> flags;  // every flag, as --help shows it, and its default
};

void PrintTo(const Program& program, std::ostream* os) { *os << program.name; }

std::vector<Program> Programs() {
  return {
      {"sluice_server",
       SLUICE_SERVER_BINARY,
       {{"--config", "none"},
        {"--state-dir", "none"},
        {"--listen", "127.0.0.1:7070"},
        {"--metrics", "127.0.0.1:9464"},
        {"--reload-interval", "1s"},
        {"--shutdown-grace", "1s"},
        {"--prometheus-url", "none"},
        {"--max-apply-bytes", "16m"},
        {"--max-apply-resources", "10000"},
        {"--tls-cert", "none"},
        {"--tls-key", "none"},
        {"--tls-ca", "none"},
        {"--tls-refresh-interval", "10s"},
        {"--plaintext", "false"},
        {"--access-policy", "none"},
        {"--allow-identity", "none"},
        {"--audit-log", "none"},
        {"--health", "none"},
        {"--store", "none"},
        {"--etcd-timeout", "3s"},
        {"--leader-ttl", "5s"},
        {"--advertise", "none"},
        {"--replica-tls-server-name", "none"}}},
      {"sluice_gateway",
       SLUICE_GATEWAY_BINARY,
       {{"--listen", "none"},
        {"--decision", "none"},
        {"--metrics", "none"},
        {"--workers", "1"},
        {"--decisions", "server"},
        {"--io", "auto"},
        {"--decision-failure", "deny"},
        {"--decision-deadline", "250ms"},
        {"--max-table-age", "inf"},
        {"--access-log", "none"},
        {"--access-log-flush-interval", "1s"},
        {"--max-request-headers", "60k"},
        {"--max-request-header-count", "100"},
        {"--max-request-body", "16m"},
        {"--retry-buffer", "64k"},
        {"--request-header-timeout", "10s"},
        {"--idle-timeout", "1m"},
        {"--drain-timeout", "30s"},
        {"--name", "sluice-gateway"},
        {"--dns-refresh-rate", "5s"},
        {"--shadow-host-suffix", "false"},
        {"--tls-cert", "none"},
        {"--tls-key", "none"},
        {"--tls-ca", "none"},
        {"--tls-server-name", "none"},
        {"--tls-refresh-interval", "10s"},
        {"--plaintext", "false"}}},
      {"sluicectl",
       SLUICECTL_BINARY,
       {{"--server", "none"},
        {"-f, --filename", "none"},
        {"--describe", "false"},
        {"--quiet, -q", "false"},
        {"--dry-run", "false"},
        {"--max-apply-bytes", "16m"},
        {"-n, --namespace", "default"},
        {"-o, --output", "none"},
        {"--host", "none"},
        {"--path", "/"},
        {"-X, --method", "GET"},
        {"--scheme", "http"},
        {"-H, --header", "none"},
        {"--source-label", "none"},
        {"--watch", "false"},
        {"--tls-cert", "none"},
        {"--tls-key", "none"},
        {"--tls-ca", "none"},
        {"--tls-server-name", "none"},
        {"--token-file", "none"},
        {"--plaintext", "false"},
        {"--limit", "20"}}},
      {"sluice_stub",
       SLUICE_STUB_BINARY,
       {{"--listen", "127.0.0.1:0"},
        {"--name", "stub"},
        {"--subset", "none"},
        {"--error-rate", "0"},
        {"--latency", "0"},
        {"--threads", "1"},
        {"--seed", "0"}}},
  };
}

class CommandLineTest : public ::testing::TestWithParam<Program> {};

TEST_P(CommandLineTest, HelpListsEveryFlagWithItsDefault) {
  for (const char* help : {"--help", "-h"}) {
    const Ran ran = RunToEnd({GetParam().binary, help});
    EXPECT_EQ(ran.exit_code, 0) << help << ": " << ran.err;
    EXPECT_THAT(ran.out, HasSubstr("usage: "));
    // Every flag, each once, and nothing else (none of Abseil's own).
    EXPECT_EQ(HelpFlags(ran.out), GetParam().flags) << ran.out;
    EXPECT_THAT(ran.err, IsEmpty());
  }
}

TEST_P(CommandLineTest, UnknownFlagIsAUsageError) {
  const Ran ran = RunToEnd({GetParam().binary, "--bogus=1"});
  EXPECT_EQ(ran.exit_code, 2);
  EXPECT_THAT(ran.err, HasSubstr("unknown flag --bogus=1"));
  EXPECT_THAT(ran.err, HasSubstr("--help"));
  EXPECT_THAT(ran.out, IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Programs, CommandLineTest, ::testing::ValuesIn(Programs()),
                         [](const auto& info) { return info.param.name; });

// What a bad value gets: exit code 2, one message naming the flag, the value and what is
// wanted, and nothing started (no "listening" line).
struct BadValue {
  std::vector<std::string> argv;
  std::string message;
};

TEST(CommandLineBadValueTest, RefusedWithTheFlagAndWhatItWants) {
  const std::vector<std::string> gateway = {SLUICE_GATEWAY_BINARY,  "--plaintext", "--listen",
                                            "127.0.0.1:0",          "--decision",  "127.0.0.1:1",
                                            "--metrics=127.0.0.1:0"};
  auto with = [](std::vector<std::string> argv, std::vector<std::string> more) {
    argv.insert(argv.end(), more.begin(), more.end());
    return argv;
  };
  const std::vector<BadValue> cases = {
      {{SLUICE_SERVER_BINARY, "--reload-interval", "0s"},
       "--reload-interval \"0s\": want a positive duration"},
      {{SLUICE_SERVER_BINARY, "--listen", "::1:7070"},
       "--listen \"::1:7070\": want HOST:PORT such as 127.0.0.1:7070 or [::1]:7070 (an IPv6 "
       "address needs brackets)"},
      {{SLUICE_SERVER_BINARY, "--max-apply-bytes=2g"}, "--max-apply-bytes \"2g\": want a size"},
      {{SLUICE_SERVER_BINARY, "--shutdown-grace=soon"}, "--shutdown-grace \"soon\": want a"},
      {{SLUICE_SERVER_BINARY, "--config", kBookinfo, "--state-dir"}, "--state-dir needs a value"},
      {with(gateway, {"--workers", "0"}), "--workers \"0\": want a number from 1 to 256"},
      {with(gateway, {"--idle-timeout=5"}), "--idle-timeout \"5\": want a duration"},
      {with(gateway, {"--max-request-headers", "2m"}),
       "--max-request-headers \"2m\": want a size from 1k to 1m"},
      {with(gateway, {"--decisions=remote"}), "--decisions \"remote\": want server or local"},
      {with(gateway, {"--io", "kqueue"}), "--io \"kqueue\": want auto, io_uring or epoll"},
      {with(gateway, {"--decision-failure", "fallback=x"}),
       "--decision-failure \"fallback=x\": want deny or fallback=HOST:PORT (no port)"},
      {with(gateway, {"--shadow-host-suffix=maybe"}),
       "--shadow-host-suffix \"maybe\": want true or false"},
      {{SLUICE_GATEWAY_BINARY, "--plaintext", "--decision", "127.0.0.1:1", "--metrics",
        "127.0.0.1:0"},
       "--listen is required: want HOST:PORT"},
      {{SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:99999"},
       "--listen \"127.0.0.1:99999\": want HOST:PORT"},
      {{SLUICE_STUB_BINARY, "--error-rate", "2"}, "--error-rate \"2\": want a number between 0"},
      {{SLUICE_STUB_BINARY, "--listen=localhost"}, "--listen \"localhost\": want HOST:PORT"},
      {{SLUICE_STUB_BINARY, "--threads", "many"}, "--threads \"many\": want a number"},
      {{SLUICECTL_BINARY, "gateways", "--server", "::1:7070"},
       "--server \"::1:7070\": want HOST:PORT"},
      {{SLUICECTL_BINARY, "apply", "-f", kBookinfo, "--max-apply-bytes=0"},
       "--max-apply-bytes \"0\": want a size up to 1024m"},
      {{SLUICECTL_BINARY, "get", "-o", "yaml"}, "-o \"yaml\": want json"},
      // Transport security is chosen on purpose: mutual TLS, or --plaintext by name.
      {{SLUICE_SERVER_BINARY, "--config", kBookinfo},
       "no transport security chosen: give --tls-cert, --tls-key and --tls-ca for mutual TLS, or "
       "--plaintext"},
      {{SLUICE_SERVER_BINARY, "--plaintext", "--tls-ca", kBookinfo},
       "--plaintext and --tls-cert/--tls-key/--tls-ca exclude each other"},
      {{SLUICE_SERVER_BINARY, "--tls-cert", kBookinfo, "--tls-ca", kBookinfo},
       "TLS is missing --tls-key"},
      {{SLUICE_SERVER_BINARY, "--plaintext", "--access-policy", kBookinfo},
       "--access-policy and --allow-identity need mutual TLS"},
      {{SLUICE_SERVER_BINARY, "--tls-cert", kBookinfo, "--tls-key", kBookinfo, "--tls-ca",
        kBookinfo},
       "mutual TLS needs --access-policy"},
      {{SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:0", "--decision", "127.0.0.1:1", "--metrics",
        "127.0.0.1:0"},
       "no transport security chosen"},
      {{SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0", "--decision",
        "127.0.0.1:7070,localhost:7071", "--metrics", "127.0.0.1:0"},
       "--decision: several addresses must all be IPv4 or all IPv6 addresses"},
      {{SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:0", "--decision",
        "127.0.0.1:7070,127.0.0.2:7070", "--metrics", "127.0.0.1:0", "--tls-ca", kBookinfo},
       "several --decision addresses over TLS need --tls-server-name"},
      {{SLUICECTL_BINARY, "get", "--tls-ca", kBookinfo, "--tls-key", kBookinfo},
       "TLS is missing --tls-cert"},
      {{SLUICECTL_BINARY, "get", "--plaintext", "--token-file", kBookinfo},
       "--token-file: a token is sent over TLS only"},
  };
  for (const BadValue& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.argv, " "));
    const Ran ran = RunToEnd(c.argv);
    EXPECT_EQ(ran.exit_code, 2);
    EXPECT_THAT(ran.err, HasSubstr(c.message));
    EXPECT_THAT(ran.out, Not(HasSubstr("listening")));
  }
  // sluicectl reads $SLUICE_SERVER as strictly as --server.
  const Ran ran = RunToEnd({SLUICECTL_BINARY, "gateways"}, {"SLUICE_SERVER=[::1]"});
  EXPECT_EQ(ran.exit_code, 2);
  EXPECT_THAT(ran.err, HasSubstr("$SLUICE_SERVER \"[::1]\": want HOST:PORT"));
}

// Runs sluicectl, which must succeed; returns what it printed.
std::string ListResources(const std::vector<std::string>& argv) {
  const Ran ran = RunToEnd(argv);
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  return ran.out;
}

TEST(CommandLineFormsTest, ServerTakesBothFormsAndSeveralPathsAfterConfig) {
  // `--config a b` (several paths after one --config) and spaces ...
  testing::Process spaced;
  ASSERT_TRUE(spaced.Start({SLUICE_SERVER_BINARY, "--plaintext", "--config", kBookinfo, kCanary,
                            "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                            "--reload-interval", "50ms", "--max-apply-bytes", "1m"},
                           "listening "))
      << spaced.error();
  // ... and `--config=a --config=b` with equals signs.
  testing::Process equals;
  ASSERT_TRUE(equals.Start({SLUICE_SERVER_BINARY, "--plaintext=true", "--config=" + kBookinfo,
                            "--config=" + kCanary, "--listen=127.0.0.1:0", "--metrics=127.0.0.1:0",
                            "--reload-interval=50ms", "--max-apply-bytes=1m"},
                           "listening "))
      << equals.error();
  for (testing::Process* server : {&spaced, &equals}) {
    EXPECT_THAT(testing::HttpGet(server->Field("metrics"), "/metrics"),
                HasSubstr("sluice_config_version"));
  }
  // sluicectl's --server before or after the command, with a space or '='; both files loaded.
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {SLUICECTL_BINARY, "--plaintext", "--server", spaced.Field("grpc"), "get", "-o", "json"},
           {SLUICECTL_BINARY, "get", "--output=json", "--server=" + equals.Field("grpc"),
            "--plaintext=true"}}) {
    const std::string listed = ListResources(argv);
    EXPECT_THAT(listed, HasSubstr("bookinfo.yaml"));
    EXPECT_THAT(listed, HasSubstr("canary.yaml"));
  }
  // Each takes over a second to stop: both at once.
  kill(spaced.pid(), SIGTERM);
  kill(equals.pid(), SIGTERM);
}

TEST(CommandLineFormsTest, GatewayTakesBothForms) {
  testing::Process spaced;
  ASSERT_TRUE(spaced.Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0",
                            "--decision", "127.0.0.1:1", "--metrics", "127.0.0.1:0", "--workers",
                            "2", "--access-log", "-", "--decision-failure", "deny"},
                           "listening "))
      << spaced.error();
  EXPECT_EQ(spaced.Field("workers"), "2");
  EXPECT_EQ(spaced.Field("decisions"), "server");
  testing::Process equals;
  ASSERT_TRUE(equals.Start(
      {SLUICE_GATEWAY_BINARY, "--plaintext=true", "--listen=127.0.0.1:0", "--decision=127.0.0.1:1",
       "--metrics=127.0.0.1:0", "--workers=3", "--decisions=local", "--shadow-host-suffix",
       "--decision-failure=fallback=127.0.0.1:9"},
      "listening "))
      << equals.error();
  EXPECT_EQ(equals.Field("workers"), "3");
  EXPECT_EQ(equals.Field("decisions"), "local");
  // No server answers at 127.0.0.1:1: each still serves its admin port.
  EXPECT_THAT(testing::HttpGet(spaced.Field("metrics"), "/healthz"),
              HasSubstr("\"decision_failure\":\"deny\""));
  EXPECT_THAT(testing::HttpGet(equals.Field("metrics"), "/healthz"),
              HasSubstr("\"decision_failure\":\"fallback=127.0.0.1:9\""));
}

TEST(CommandLineFormsTest, StubTakesBothForms) {
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "spaced", "--latency", "1ms"},
           {SLUICE_STUB_BINARY, "--listen=127.0.0.1:0", "--name=equals", "--latency=1ms"}}) {
    testing::Process stub;
    ASSERT_TRUE(stub.Start(argv, "listening ")) << stub.error();
    const testing::HttpResult r = testing::HttpExchange(stub.Field("http"), "GET", "/x");
    ASSERT_TRUE(r.answered);
    EXPECT_EQ(r.Header("x-stub-name"), stub.Field("name"));
  }
}

TEST(CommandLineFormsTest, SluicectlTakesBothFormsAndSeveralPathsAfterF) {
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {SLUICECTL_BINARY, "validate", "-f", kBookinfo, kCanary},
           {SLUICECTL_BINARY, "validate", "--filename=" + kBookinfo, "-f=" + kCanary, "-q"},
           {SLUICECTL_BINARY, "--quiet", "validate", "--filename", kBookinfo, "--filename",
            kCanary}}) {
    SCOPED_TRACE(absl::StrJoin(argv, " "));
    const Ran ran = RunToEnd(argv);
    EXPECT_EQ(ran.exit_code, 0) << ran.err;
    EXPECT_THAT(ran.out, HasSubstr("valid: 3 hosts, 5 routes, 8 subsets, 8 endpoints, 1 canary"));
  }
  const Ran none = RunToEnd({SLUICECTL_BINARY});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("usage: sluicectl"));
}

// One HTTP/1.1 GET to HOST:PORT or [IPv6]:PORT (process.h's helpers speak IPv4 only); the
// raw response, or "" when nothing answered.
std::string Get(const std::string& address, const std::string& target) {
  const absl::StatusOr<HostPort> hp = ParseHostPort(address);
  if (!hp.ok()) return "";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* found = nullptr;
  if (getaddrinfo(hp->host.c_str(), std::to_string(hp->port).c_str(), &hints, &found) != 0) {
    return "";
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string response;
  if (connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    const std::string request =
        absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  freeaddrinfo(found);
  return response;
}

bool HaveIPv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

TEST(CommandLineIPv6Test, EveryProgramOnIPv6Loopback) {
  if (!HaveIPv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here (cannot bind [::1]:0)";
  // The server's metrics stay on IPv4: civetweb, its HTTP server, has no IPv6 as Debian builds
  // it.
  testing::Process server;
  ASSERT_TRUE(server.Start({SLUICE_SERVER_BINARY, "--plaintext", "--config", kCanary, "--listen",
                            "[::1]:0", "--metrics", "127.0.0.1:0"},
                           "listening "))
      << server.error();
  ASSERT_TRUE(absl::StartsWith(server.Field("grpc"), "[::1]:")) << server.Field("grpc");
  testing::Process gateway;
  ASSERT_TRUE(
      gateway.Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "[::1]:0", "--decision",
                     server.Field("grpc"), "--metrics=[::1]:0", "--decisions=local"},
                    "listening "))
      << gateway.error();
  ASSERT_TRUE(absl::StartsWith(gateway.Field("http"), "[::1]:")) << gateway.Field("http");
  EXPECT_EQ(gateway.Field("decision"), server.Field("grpc"));
  // Its decision streams reach the server over IPv6.
  std::string health;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(10); absl::Now() < give_up;) {
    health = Get(gateway.Field("metrics"), "/healthz");
    if (absl::StrContains(health, "\"serving\"")) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(health, HasSubstr("\"serving\""));
  // The example's upstreams are not running: the answer is the gateway's own (503).
  EXPECT_THAT(Get(gateway.Field("http"), "/cart"), HasSubstr("HTTP/1.1 5"));
  const Ran ran =
      RunToEnd({SLUICECTL_BINARY, "gateways", "--plaintext", "--server", server.Field("grpc")});
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_THAT(ran.out, HasSubstr("sluice-gateway/0"));

  testing::Process stub;
  ASSERT_TRUE(stub.Start({SLUICE_STUB_BINARY, "--listen=[::1]:0", "--name", "six"}, "listening "))
      << stub.error();
  EXPECT_THAT(Get(stub.Field("http"), "/x"), HasSubstr("x-stub-name: six"));
}

}  // namespace
}  // namespace sluice
