// PrometheusClient against a real Prometheus (/usr/bin/prometheus), started once for the suite
// on a free port and scraping itself every second: literals, scalars, NaN and empty answers,
// the self-scrape, several series, range vectors, parse errors and large (chunked) answers.
// Connection failures use a closed port and a port that never answers; the HTTP framing and
// malformed answers use a one-shot fake server. RenderQueryTemplate is pure.

#include "server/canary/prometheus_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::canary {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr char kPrometheus[] = "/usr/bin/prometheus";

// A TCP socket bound to 127.0.0.1 on a port the kernel picks; -1 on failure.
int BindLoopback(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A port that was free a moment ago.
int FreePort() {
  int port = 0;
  const int fd = BindLoopback(&port);
  if (fd < 0) return 0;
  close(fd);
  return port;
}

// The HTTP status of GET `path` on 127.0.0.1:port, or -1 when there is no answer.
int HttpStatus(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int status = -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[64] = {};
      const ssize_t n = recv(fd, buffer, sizeof(buffer) - 1, 0);
      // "HTTP/1.1 200 OK"
      if (n >= 12 && absl::StartsWith(buffer, "HTTP/1.")) status = std::atoi(buffer + 9);
    }
  }
  close(fd);
  return status;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A child process with stdout and stderr in a log file; killed on destruction, and by the kernel
// should the test binary die first.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { Stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool Start(const std::vector<std::string>& argv, const std::string& log_path) {
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log < 0) return false;
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      close(log);
      return false;
    }
    if (pid == 0) {
      // Async-signal-safe calls only, until execv.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
      const int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, STDIN_FILENO);
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      execv(args[0], args.data());
      _exit(127);
    }
    close(log);
    pid_ = pid;
    return true;
  }

  // True while the process runs; reaps it once it has exited.
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // SIGTERM, then SIGKILL after `grace`; always reaps.
  void Stop(absl::Duration grace = absl::Seconds(5)) {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    while (absl::Now() < deadline) {
      if (!Running()) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// Accepts one connection on 127.0.0.1, records the request head and answers with `response`.
class OneShotHttpServer {
 public:
  explicit OneShotHttpServer(std::string response) : response_(std::move(response)) {
    fd_ = BindLoopback(&port_);
    if (fd_ >= 0 && listen(fd_, 4) != 0) {
      close(fd_);
      fd_ = -1;
    }
    if (fd_ >= 0) thread_ = std::thread([this] { Serve(); });
  }
  ~OneShotHttpServer() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }

  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  // The request head received; waits for the server thread.
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  void Serve() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return;
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return;
    timeval tv{5, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buffer[4096];
    while (!absl::StrContains(request_, "\r\n\r\n")) {
      const ssize_t n = recv(conn, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      request_.append(buffer, static_cast<size_t>(n));
    }
    // In small pieces, so that the client sees partial answers.
    for (size_t pos = 0; pos < response_.size(); pos += 7) {
      const std::string piece = response_.substr(pos, 7);
      if (send(conn, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
    }
    close(conn);
  }

  std::string response_;
  int fd_ = -1;
  int port_ = 0;
  std::string request_;
  std::thread thread_;
};

class PrometheusClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setup_error_ = new std::string();
    prometheus_ = new ChildProcess();
    char dir_template[] = "/tmp/prometheus_client_test.XXXXXX";
    if (mkdtemp(dir_template) == nullptr) {
      *setup_error_ = absl::StrCat("mkdtemp: ", std::strerror(errno));
      return;
    }
    dir_ = new std::string(dir_template);
    if (access(kPrometheus, X_OK) != 0) {
      *setup_error_ = absl::StrCat(kPrometheus, " is not installed (apt-get install prometheus)");
      return;
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    std::string failures;
    for (int attempt = 1; attempt <= 3 && absl::Now() < deadline; ++attempt) {
      const int port = FreePort();
      if (port == 0) continue;
      const std::string config = absl::StrCat(*dir_, "/prometheus.yml");
      std::ofstream(config) << "global:\n"
                               "  scrape_interval: 1s\n"
                               "  evaluation_interval: 1s\n"
                               "scrape_configs:\n"
                               "  - job_name: prometheus\n"
                               "    static_configs:\n"
                               "      - targets: ['127.0.0.1:"
                            << port << "']\n";
      const std::string log = absl::StrCat(*dir_, "/prometheus.", attempt, ".log");
      const std::string data = absl::StrCat(*dir_, "/data.", attempt);
      if (!prometheus_->Start(
              {kPrometheus, "--config.file=" + config, "--storage.tsdb.path=" + data,
               absl::StrCat("--web.listen-address=127.0.0.1:", port)},
              log)) {
        *setup_error_ = absl::StrCat("cannot start ", kPrometheus, ": ", std::strerror(errno));
        return;
      }
      while (absl::Now() < deadline && prometheus_->Running()) {
        if (HttpStatus(port, "/-/ready") == 200) {
          port_ = port;
          base_url_ = new std::string(absl::StrCat("http://127.0.0.1:", port));
          return;
        }
        absl::SleepFor(absl::Milliseconds(100));
      }
      prometheus_->Stop();
      std::string text = ReadFile(log);
      if (text.size() > 2000) text = text.substr(text.size() - 2000);
      absl::StrAppend(&failures, "\nattempt ", attempt, " on port ", port, ":\n", text);
    }
    *setup_error_ = absl::StrCat("Prometheus did not become ready within 20s:", failures);
  }

  static void TearDownTestSuite() {
    prometheus_->Stop();
    delete prometheus_;
    prometheus_ = nullptr;
    if (dir_ != nullptr) {
      std::error_code ignored;
      std::filesystem::remove_all(*dir_, ignored);
    }
    delete dir_;
    dir_ = nullptr;
    delete base_url_;
    base_url_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }

  void SetUp() override {
    if (!setup_error_->empty()) GTEST_FAIL() << *setup_error_;
  }

  static PrometheusClient Client() {
    absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(*base_url_);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // Waits (at most 15 s) until Prometheus has scraped itself at least once.
  static bool WaitForSelfScrape(const PrometheusClient& client) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      absl::StatusOr<std::optional<double>> up = client.Query("up{job=\"prometheus\"}");
      if (up.ok() && up->has_value() && **up == 1) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }

  static std::string* setup_error_;
  static ChildProcess* prometheus_;
  static std::string* dir_;
  static std::string* base_url_;
  static int port_;
};

std::string* PrometheusClientTest::setup_error_ = nullptr;
ChildProcess* PrometheusClientTest::prometheus_ = nullptr;
std::string* PrometheusClientTest::dir_ = nullptr;
std::string* PrometheusClientTest::base_url_ = nullptr;
int PrometheusClientTest::port_ = 0;

TEST_F(PrometheusClientTest, VectorLiteral) {
  const PrometheusClient client = Client();
  EXPECT_EQ(client.base_url(), *base_url_);
  absl::StatusOr<std::optional<double>> value = client.Query("vector(42)");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(42.0));
}

TEST_F(PrometheusClientTest, Scalars) {
  const PrometheusClient client = Client();
  absl::StatusOr<std::optional<double>> value = client.Query("scalar(vector(0.25))");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(0.25));

  value = client.Query("-1.5");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(-1.5));

  value = client.Query("1e6 * 3");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(3e6));
}

TEST_F(PrometheusClientTest, NaNAndInfinityAreNoEvidence) {
  const PrometheusClient client = Client();
  for (const char* query : {"0/0", "vector(0)/0", "vector(1)/0", "-vector(1)/0"}) {
    absl::StatusOr<std::optional<double>> value = client.Query(query);
    ASSERT_TRUE(value.ok()) << query << ": " << value.status();
    EXPECT_EQ(*value, std::nullopt) << query;
  }
}

TEST_F(PrometheusClientTest, EmptyVectorIsNoEvidence) {
  const PrometheusClient client = Client();
  absl::StatusOr<std::optional<double>> value = client.Query("up{job=\"nothing\"}");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, std::nullopt);
}

TEST_F(PrometheusClientTest, SelfScrape) {
  const PrometheusClient client = Client();
  ASSERT_TRUE(WaitForSelfScrape(client)) << "no self-scrape within 15s";
  absl::StatusOr<std::optional<double>> value = client.Query("sum(up)");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(1.0));

  // A query with quotes, backticks, backslashes, braces, brackets and spaces survives URL
  // encoding.
  value = client.Query(
      "count(max_over_time(up{job=\"prometheus\", instance=~`127\\.0\\.0\\.1:[0-9]+`}[1m]) "
      "> 0.5) == bool 1");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(1.0));
}

TEST_F(PrometheusClientTest, SeveralSeriesIsAnError) {
  const PrometheusClient client = Client();
  const std::string query =
      "label_replace(vector(1),\"a\",\"x\",\"\",\"\") or "
      "label_replace(vector(2),\"a\",\"y\",\"\",\"\")";
  absl::StatusOr<std::optional<double>> value = client.Query(query);
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(value.status().message(),
              AllOf(HasSubstr("2 series"), HasSubstr("sum("), HasSubstr(query),
                    HasSubstr(*base_url_), HasSubstr("a=\"x\""), HasSubstr("a=\"y\"")));
}

TEST_F(PrometheusClientTest, LargeAnswerWithManySeries) {
  // Every series Prometheus has: a large answer, which Prometheus sends chunked.
  const PrometheusClient client = Client();
  ASSERT_TRUE(WaitForSelfScrape(client)) << "no self-scrape within 15s";
  absl::StatusOr<std::optional<double>> value = client.Query("{__name__=~\".+\"}");
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument) << value.status();
  EXPECT_THAT(value.status().message(),
              AllOf(HasSubstr(" series; a check needs one"), HasSubstr(", ...)")));
}

// Answers a check cannot use, one row each: the error is InvalidArgument and says why.
TEST_F(PrometheusClientTest, QueriesWithoutOneNumberAreErrors) {
  const PrometheusClient client = Client();
  const struct {
    std::string query;
    std::vector<std::string> says;
  } rows[] = {
      {"up[1m]", {"range vector"}},
      {"\"text\"", {"string"}},
      {"sum(", {"parse error", "`sum(`", *base_url_, "bad_data"}},  // Prometheus's own text
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.query);
    absl::StatusOr<std::optional<double>> value = client.Query(row.query);
    ASSERT_FALSE(value.ok());
    EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& part : row.says) {
      EXPECT_THAT(value.status().message(), HasSubstr(part));
    }
  }
}

TEST_F(PrometheusClientTest, ConcurrentQueries) {
  const PrometheusClient client = Client();
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&client, &good, t] {
      for (int i = 0; i < 5; ++i) {
        absl::StatusOr<std::optional<double>> value =
            client.Query(absl::StrCat("vector(", t * 10 + i, ")"));
        if (value.ok() && *value == std::optional<double>(t * 10 + i)) ++good;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(good.load(), 20);
}

TEST(PrometheusClientConnectionTest, ClosedPortIsRefusedQuickly) {
  // A port bound but not listening: connecting is refused, and nobody else can take it.
  int port = 0;
  const int fd = BindLoopback(&port);
  ASSERT_GE(fd, 0);
  const std::string url = absl::StrCat("http://127.0.0.1:", port);
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(url);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::optional<double>> value = client->Query("vector(1)");
  const absl::Duration took = absl::Now() - start;
  close(fd);
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(value.status().message(),
              AllOf(HasSubstr(url), HasSubstr("vector(1)"), HasSubstr("refused")));
  EXPECT_LT(took, absl::Seconds(1));
}

TEST(PrometheusClientConnectionTest, SilentServerTimesOut) {
  // Listening, so the connection completes in the kernel, but never accepted nor answered.
  int port = 0;
  const int fd = BindLoopback(&port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(listen(fd, 4), 0);
  const std::string url = absl::StrCat("http://127.0.0.1:", port);
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(url, absl::Milliseconds(300));
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::optional<double>> value = client->Query("vector(1)");
  const absl::Duration took = absl::Now() - start;
  close(fd);
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(value.status().message(), AllOf(HasSubstr(url), HasSubstr("300ms")));
  EXPECT_GE(took, absl::Milliseconds(290));
  EXPECT_LT(took, absl::Seconds(2));
}

TEST(PrometheusClientCreateTest, RejectsHttps) {
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create("https://127.0.0.1:9090");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), AllOf(HasSubstr("https"), HasSubstr("http://")));
}

TEST(PrometheusClientCreateTest, RejectsBadUrls) {
  for (const char* url :
       {"", "127.0.0.1:9090", "ftp://host", "http://", "http://:9090",
        "http://host:", "http://host:0", "http://host:65536", "http://host:x", "http://host:+80",
        "http://user@host", "http://host/?q=1", "http://[::1", "http://[::1]x"}) {
    absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(url);
    EXPECT_FALSE(client.ok()) << url;
    if (!client.ok()) {
      EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << url;
    }
  }
  EXPECT_FALSE(PrometheusClient::Create("http://host", absl::ZeroDuration()).ok());
}

TEST(PrometheusClientCreateTest, AcceptsPrefixesAndDefaultPort) {
  for (const char* url : {"http://host", "HTTP://host:9090", "http://host:9090/prefix",
                          "http://[::1]:9090", "http://[::1]"}) {
    EXPECT_TRUE(PrometheusClient::Create(url).ok()) << url;
  }
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create("http://host:9090/p/");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->base_url(), "http://host:9090/p");
}

constexpr char kOneSampleJson[] = R"({"status":"success","data":{"resultType":"vector","result":[)"
                                  R"({"metric":{"job":"x"},"value":[1700000000.123,"0.5"]}]}})";

TEST(PrometheusClientHttpTest, PathPrefixAndUrlEncoding) {
  OneShotHttpServer server(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
                                        "Content-Length: ", sizeof(kOneSampleJson) - 1, "\r\n\r\n",
                                        kOneSampleJson));
  ASSERT_TRUE(server.ok());
  absl::StatusOr<PrometheusClient> client =
      PrometheusClient::Create(server.url() + "/prom/", absl::Seconds(2));
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::optional<double>> value =
      client->Query("sum(rate(x{a=\"b c\"}[1m])) / 2 + ~é");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(0.5));
  const std::string request = server.request();
  EXPECT_THAT(request,
              HasSubstr("GET /prom/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D"
                        "%29%29%20%2F%202%20%2B%20~%C3%A9 HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr(absl::StrCat("\r\nHost: 127.0.0.1:", server.port(), "\r\n")));
  EXPECT_THAT(request, HasSubstr("\r\nConnection: close\r\n"));
}

TEST(PrometheusClientHttpTest, ChunkedAnswer) {
  const std::string json = kOneSampleJson;
  const std::string chunked =
      absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
                   "Transfer-Encoding: chunked\r\n\r\n", "a;ext=1\r\n", json.substr(0, 10), "\r\n",
                   absl::Hex(json.size() - 10), "\r\n", json.substr(10), "\r\n0\r\n\r\n");
  OneShotHttpServer server(chunked);
  ASSERT_TRUE(server.ok());
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(server.url());
  ASSERT_TRUE(client.ok());
  absl::StatusOr<std::optional<double>> value = client->Query("x");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_THAT(*value, Optional(0.5));
}

TEST(PrometheusClientHttpTest, AnswerWithoutLengthEndsAtClose) {
  OneShotHttpServer server(
      absl::StrCat("HTTP/1.0 200 OK\r\n\r\n",
                   R"({"status":"success","data":{"resultType":"scalar","result":[1.5,"+Inf"]}})"));
  ASSERT_TRUE(server.ok());
  absl::StatusOr<PrometheusClient> client = PrometheusClient::Create(server.url());
  ASSERT_TRUE(client.ok());
  absl::StatusOr<std::optional<double>> value = client->Query("x");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, std::nullopt);
}

// The status and message of a query answered with `response`.
absl::Status QueryAnsweredWith(const std::string& response) {
  OneShotHttpServer server(response);
  if (!server.ok()) return absl::InternalError("no server");
  absl::StatusOr<PrometheusClient> client =
      PrometheusClient::Create(server.url(), absl::Seconds(2));
  if (!client.ok()) return client.status();
  absl::StatusOr<std::optional<double>> value = client->Query("q");
  return value.status();
}

TEST(PrometheusClientHttpTest, MalformedAnswers) {
  struct Case {
    std::string response;
    absl::StatusCode code;
    std::string text;
  };
  const std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", absl::StatusCode::kInternal,
       "not JSON"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", absl::StatusCode::kInternal,
       "closed after 2 of 50"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}", absl::StatusCode::kInternal,
       "chunked"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
       absl::StatusCode::kInternal, "chunk size"},
      {"SSH-2.0-OpenSSH\r\n\r\n", absl::StatusCode::kInternal, "not an HTTP response"},
      {"", absl::StatusCode::kUnavailable, "without answering"},
      {"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nBad Gateway",
       absl::StatusCode::kUnavailable, "HTTP 502: Bad Gateway"},
      {"HTTP/1.1 404 Not Found\r\nContent-Length: 18\r\n\r\n404 page not found",
       absl::StatusCode::kNotFound, "HTTP 404"},
      {"HTTP/1.1 200 OK\r\n\r\n{\"status\":\"success\",\"data\":{}}", absl::StatusCode::kInternal,
       "resultType"},
      {"HTTP/1.1 200 OK\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\","
       "\"result\":[1,\"abc\"]}}",
       absl::StatusCode::kInternal, "not a number"},
      {"HTTP/1.1 200 OK\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\","
       "\"result\":[1,2]}}",
       absl::StatusCode::kInternal, "pair"},
      {"HTTP/1.1 422 Unprocessable Entity\r\n\r\n{\"status\":\"error\",\"errorType\":"
       "\"execution\",\"error\":\"many-to-many matching not allowed\"}",
       absl::StatusCode::kInvalidArgument, "execution: many-to-many matching not allowed"},
      {"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"error\",\"errorType\":"
       "\"timeout\",\"error\":\"query timed out\"}",
       absl::StatusCode::kDeadlineExceeded, "query timed out"},
  };
  for (const Case& c : cases) {
    const absl::Status status = QueryAnsweredWith(c.response);
    EXPECT_EQ(status.code(), c.code) << c.response << "\n" << status;
    EXPECT_THAT(status.message(), AllOf(HasSubstr(c.text), HasSubstr("`q`"))) << c.response;
  }
}

TEST(RenderQueryTemplateTest, ReplacesVariables) {
  const std::map<std::string, std::string> variables = {
      {"namespace", "prod"}, {"target", "ratings"}, {"interval", "1m"}};
  EXPECT_EQ(*RenderQueryTemplate(
                "sum(rate(requests{namespace=\"{{ namespace }}\",app=\"{{target}}\"}[{{  interval"
                "  }}]))",
                variables),
            "sum(rate(requests{namespace=\"prod\",app=\"ratings\"}[1m]))");
  EXPECT_EQ(*RenderQueryTemplate("{{target}}/{{ target }}:{{target }}", variables),
            "ratings/ratings:ratings");
  EXPECT_EQ(*RenderQueryTemplate("{{interval}}", variables), "1m");
}

TEST(RenderQueryTemplateTest, TextWithoutDoubleBracesIsUnchanged) {
  const std::map<std::string, std::string> variables = {{"target", "ratings"}};
  for (const char* text : {"", "sum(up)", "up{job=\"x\"}", "a}}b", "{ target }"}) {
    absl::StatusOr<std::string> rendered = RenderQueryTemplate(text, variables);
    ASSERT_TRUE(rendered.ok()) << text << ": " << rendered.status();
    EXPECT_EQ(*rendered, text);
  }
}

TEST(RenderQueryTemplateTest, Errors) {
  const std::map<std::string, std::string> variables = {{"target", "ratings"}};
  absl::StatusOr<std::string> rendered = RenderQueryTemplate("x{a=\"{{ nope }}\"}", variables);
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rendered.status().message(), AllOf(HasSubstr("\"nope\""), HasSubstr("target")));

  rendered = RenderQueryTemplate("x{{ target", variables);
  ASSERT_FALSE(rendered.ok());
  EXPECT_THAT(rendered.status().message(), HasSubstr("no closing"));

  rendered = RenderQueryTemplate("x{{  }}", variables);
  ASSERT_FALSE(rendered.ok());
  EXPECT_THAT(rendered.status().message(), HasSubstr("empty"));
}

}  // namespace
}  // namespace sluice::canary
