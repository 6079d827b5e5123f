// sluice-gateway end to end: real sluice-server, sluice-gateway and sluice-stub processes on
// loopback ports the kernel picks. Each test writes the Istio configuration it needs, with
// durations shortened so the timing checks run in well under a second each.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr char kFaultBody[] = "fault filter abort";

// The gateway under test: this build's, or the one SLUICE_TEST_GATEWAY_BINARY names (`make
// tsan-test` runs these tests against a ThreadSanitizer build of the gateway alone).
std::string GatewayBinary() {
  const char* other = std::getenv("SLUICE_TEST_GATEWAY_BINARY");
  return other != nullptr && *other != '\0' ? other : SLUICE_GATEWAY_BINARY;
}

// Every test runs in both decision modes: per request from the server, and local.
class GatewayTest : public ::testing::TestWithParam<std::string> {
 protected:
  struct Stub {
    testing::Process process;
    std::string address;
    std::string port;
  };

  // Stubs shop-v1 and shop-v2 (subsets v1 and v2), one endpoint each.
  void StartStubs() {
    for (const char* subset : {"v1", "v2"}) {
      auto stub = std::make_unique<Stub>();
      ASSERT_TRUE(stub->process.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name",
                                       absl::StrCat("shop-", subset), "--subset", subset},
                                      "listening "))
          << stub->process.error();
      stub->address = stub->process.Field("http");
      stub->port = stub->address.substr(stub->address.rfind(':') + 1);
      stubs_.push_back(std::move(stub));
    }
  }

  // The shop service's ServiceEntry and DestinationRule; `policy` is the DestinationRule's
  // trafficPolicy block (indented by four spaces) or empty.
  std::string ShopService(const std::string& policy = "") const {
    return Service("shop", "STATIC", "127.0.0.1", "127.0.0.1", policy);
  }

  // A service `name` with subsets v1 and v2, one endpoint each: stub 0 at `v1_address`, stub 1
  // at `v2_address`, found by `resolution`.
  std::string Service(const std::string& name, const std::string& resolution,
                      const std::string& v1_address, const std::string& v2_address,
                      const std::string& policy = "") const {
    return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: )",
                        name, R"(
spec:
  hosts: [)",
                        name, R"(]
  location: MESH_INTERNAL
  resolution: )",
                        resolution, R"(
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  endpoints:
  - address: )",
                        v1_address, R"(
    ports: {http: )",
                        stubs_[0]->port, R"(}
    labels: {version: v1}
  - address: )",
                        v2_address, R"(
    ports: {http: )",
                        stubs_[1]->port, R"(}
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: )",
                        name, R"(
spec:
  host: )",
                        name, "\n",
                        policy.empty() ? "" : absl::StrCat("  trafficPolicy:\n", policy),
                        R"(  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
)");
  }

  static std::string VirtualService(const std::string& http) {
    return absl::StrCat(R"(---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [shop]
  http:
)",
                        http);
  }

  // Weighted v1/v2 route with the given extra route fields (indented by four spaces).
  static std::string SplitRoute(int v1, int v2, const std::string& extra = "") {
    return absl::StrCat("  - name: split\n    route:\n",
                        "    - destination: {host: shop, subset: v1}\n      weight: ", v1, "\n",
                        "    - destination: {host: shop, subset: v2}\n      weight: ", v2, "\n",
                        extra);
  }

  void StartServer(const std::string& config, const std::string& listen = "127.0.0.1:0",
                   std::vector<std::string> extra = {}) {
    config_path_ = dir_.Write("shop.yaml", config);
    std::vector<std::string> argv = {SLUICE_SERVER_BINARY, "--plaintext", "--config",
                                     config_path_,         "--listen",    listen,
                                     "--metrics",          "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(server_.Start(argv, "listening ")) << server_.error();
    grpc_ = server_.Field("grpc");
  }

  // The server's configuration version, from its metrics (-1 when unreadable).
  int64_t ServerConfigVersion() const {
    const std::string metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
    const size_t at = metrics.find("\nsluice_config_version ");
    int64_t version = -1;
    if (at == std::string::npos) return version;
    const size_t start = at + std::strlen("\nsluice_config_version ");
    const std::string value = metrics.substr(start, metrics.find('\n', start) - start);
    double v = 0;
    return absl::SimpleAtod(value, &v) ? static_cast<int64_t>(v) : -1;
  }

  // Clients sending GET `target` through the gateway until stopped (and for at most 60 s),
  // counting what is not a 200.
  class BackgroundLoad {
   public:
    BackgroundLoad(GatewayTest& test, int threads, const std::string& target) {
      for (int t = 0; t < threads; ++t) {
        threads_.emplace_back([this, &test, target] {
          const absl::Time give_up = absl::Now() + absl::Seconds(60);
          while (!stop_.load() && absl::Now() < give_up) {
            testing::HttpResult r = test.Get(target);
            ++sent_;
            if (r.status == 200) continue;
            ++failed_;
            std::lock_guard<std::mutex> lock(mu_);
            if (first_failure_.empty()) {
              first_failure_ = absl::StrCat(r.status, " ", r.body, " after ", sent_.load(), " at ",
                                            absl::FormatTime(absl::Now()));
            }
          }
        });
      }
    }
    ~BackgroundLoad() { Stop(); }
    void Stop() {
      stop_ = true;
      for (auto& t : threads_) t.join();
      threads_.clear();
    }
    int sent() const { return sent_.load(); }
    int failed() const { return failed_.load(); }
    std::string first_failure() {
      std::lock_guard<std::mutex> lock(mu_);
      return first_failure_;
    }

   private:
    std::atomic<bool> stop_{false};
    std::atomic<int> sent_{0}, failed_{0};
    std::mutex mu_;
    std::string first_failure_;
    std::vector<std::thread> threads_;
  };

  // The access log is written every 50ms (the default, 1s, would slow the tests down); read
  // it with Logged().
  void StartGateway(std::vector<std::string> extra = {}) {
    access_log_ = dir_.path() + "/access.log";
    std::vector<std::string> argv = {GatewayBinary(), "--plaintext", "--listen",    "127.0.0.1:0",
                                     "--decision",    grpc_,         "--metrics",   "127.0.0.1:0",
                                     "--access-log",  access_log_,   "--decisions", GetParam()};
    argv.insert(argv.end(), {"--access-log-flush-interval", "50ms"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.begin(), launcher_.begin(), launcher_.end());
    ASSERT_TRUE(gateway_.Start(argv, "listening ")) << gateway_.error();
    gateway_address_ = gateway_.Field("http");
    admin_ = gateway_.Field("metrics");
    WaitHealthy();
  }

  void WaitHealthy() {
    ASSERT_TRUE(testing::WaitForGatewayServing(admin_))
        << "gateway never connected to the decision service: "
        << testing::HttpGet(admin_, "/healthz") << gateway_.Log();
  }

  testing::HttpResult Get(const std::string& target, Headers headers = {},
                          const std::string& host = "shop") {
    headers.emplace_back("Host", host);
    return testing::HttpExchange(gateway_address_, "GET", target, headers);
  }

  // Repeats until the answer is not an injected abort (routes with fault injection).
  testing::HttpResult GetPastFaults(const std::string& target, Headers headers = {}) {
    testing::HttpResult r;
    for (int i = 0; i < 100; ++i) {
      r = Get(target, headers);
      if (r.body != kFaultBody) break;
    }
    return r;
  }

  int64_t Received(size_t stub) const { return testing::StubReceived(stubs_[stub]->address); }
  int64_t ReceivedByAll() const { return Received(0) + Received(1); }

  std::string AccessLog() const { return ReadFile(access_log_); }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Whether the access log comes to contain `text` within 3s: the gateway writes it from
  // memory every --access-log-flush-interval.
  ::testing::AssertionResult Logged(const std::string& text) const {
    const absl::Time give_up = absl::Now() + absl::Seconds(3);
    std::string log = AccessLog();
    while (!absl::StrContains(log, text) && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
      log = AccessLog();
    }
    if (absl::StrContains(log, text)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "\"" << text << "\" not in the access log:\n" << log;
  }

  void Apply(const std::string& config) {
    const std::string path = dir_.Write("apply.yaml", config);
    const std::string command =
        absl::StrCat(SLUICECTL_BINARY, " --plaintext apply -f ", path, " --server ", grpc_, " > ",
                     dir_.path(), "/apply.out 2>&1");
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<Stub>> stubs_;
  testing::Process server_;
  testing::Process gateway_;
  std::string config_path_, grpc_, gateway_address_, admin_, access_log_;
  std::vector<std::string> launcher_;  // runs the gateway, e.g. prlimit (absolute path)
};

// The classic exercise: 5s timeout, 3 retries on 5xx,reset,connect-failure,retriable-4xx with
// a 2s per-try timeout, and 10% injected aborts.
constexpr char kClassicRoute[] = R"(    timeout: 5s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: 5xx,reset,connect-failure,retriable-4xx
    fault:
      abort:
        percentage: {value: 10}
        httpStatus: 503
)";

TEST_P(GatewayTest, ClassicExerciseFaultShareSplitAndRetries) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(50, 50, kClassicRoute)));
  StartGateway();

  // 1,000 requests: aborts are 10% within 4 binomial standard deviations (sd = 9.5), and
  // never reach an upstream; the rest are answered 200 and split 50/50 (sd 15 of 900).
  constexpr int kRequests = 1000;
  int aborted = 0, ok = 0, v1 = 0, other = 0;
  for (int i = 0; i < kRequests; ++i) {
    testing::HttpResult r = Get("/item");
    if (r.status == 503 && r.body == kFaultBody) {
      ++aborted;
    } else if (r.status == 200) {
      ++ok;
      if (r.Header("x-stub-subset") == "v1") ++v1;
      EXPECT_FALSE(r.Header("x-envoy-upstream-service-time").empty());
    } else {
      ++other;
    }
  }
  EXPECT_EQ(other, 0);
  EXPECT_NEAR(aborted, 100, 38);
  EXPECT_NEAR(v1, ok / 2.0, 4 * std::sqrt(ok * 0.25));
  EXPECT_EQ(ReceivedByAll(), ok) << "aborted requests must not reach an upstream";

  // Retries as the upstreams count them (the stub answers by x-envoy-attempt-count).
  int64_t before = ReceivedByAll();
  testing::HttpResult r = GetPastFaults("/r?status=503,503,200");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ReceivedByAll() - before, 3);

  before = ReceivedByAll();
  r = GetPastFaults("/r?status=409,200");
  EXPECT_EQ(r.status, 200) << "retriable-4xx retries 409";
  EXPECT_EQ(ReceivedByAll() - before, 2);

  before = ReceivedByAll();
  r = GetPastFaults("/r?status=429,200");
  EXPECT_EQ(r.status, 429) << "retriable-4xx does not retry 429 (Envoy: 409 only)";
  EXPECT_EQ(ReceivedByAll() - before, 1);

  // Every attempt fails: 1 + 3 retries, then the last upstream answer with flag URX.
  before = ReceivedByAll();
  r = GetPastFaults("/r?status=503");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(ReceivedByAll() - before, 4);
  EXPECT_TRUE(Logged("\"GET /r?status=503 HTTP/1.1\" 503 URX"));

  // Resets before a response are retried ("reset"), then UC with URX.
  before = ReceivedByAll();
  r = GetPastFaults("/r?reset=before");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("reset reason: connection termination"));
  EXPECT_EQ(ReceivedByAll() - before, 4);
  EXPECT_TRUE(Logged("503 UC,URX"));

  // Istio's metrics carry the flags.
  const std::string metrics = testing::HttpGet(admin_, "/metrics");
  EXPECT_THAT(metrics, HasSubstr("response_flags=\"FI\""));
  EXPECT_THAT(metrics, HasSubstr("destination_version=\"v2\""));
  EXPECT_THAT(metrics, HasSubstr("sluice_gateway_retries_total{"));
}

TEST_P(GatewayTest, BareStatusCodeInRetryOnRetries429) {
  StartStubs();
  StartServer(ShopService() +
              VirtualService(SplitRoute(100, 0, "    retries: {attempts: 2, retryOn: \"429\"}\n")));
  StartGateway();
  const int64_t before = ReceivedByAll();
  EXPECT_EQ(Get("/r?status=429,200").status, 200);
  EXPECT_EQ(ReceivedByAll() - before, 2);
}

TEST_P(GatewayTest, PerTryAndRouteTimeoutsAtTheirBoundaries) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - name: route-timeout
    match: [{headers: {x-case: {exact: route}}}]
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 300ms
    retries: {attempts: 0}
  - name: per-try
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 2s
    retries: {attempts: 2, perTryTimeout: 150ms, retryOn: 5xx}
)"));
  StartGateway();

  // Inside the per-try timeout: answered.
  EXPECT_EQ(Get("/t?delay=50ms").status, 200);

  // Each attempt hangs past 150ms: three attempts, each cut at 150ms, then 504 UT,URX.
  int64_t before = ReceivedByAll();
  absl::Time start = absl::Now();
  testing::HttpResult r = Get("/t?hang=5s");
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.body, "upstream request timeout");
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(1500));
  EXPECT_EQ(ReceivedByAll() - before, 3);
  EXPECT_TRUE(Logged("504 UT,URX"));

  // The route timeout ends the request at 300ms whatever the upstream does.
  start = absl::Now();
  r = Get("/t?delay=2s", {{"x-case", "route"}});
  took = absl::Now() - start;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.body, "upstream request timeout");
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Milliseconds(1200));
  // Just inside the route timeout.
  EXPECT_EQ(Get("/t?delay=100ms", {{"x-case", "route"}}).status, 200);
}

TEST_P(GatewayTest, ConnectionPoolOverflowAnswersUO) {
  StartStubs();
  StartServer(ShopService("    connectionPool:\n"
                          "      tcp: {maxConnections: 1}\n"
                          "      http: {http1MaxPendingRequests: 1}\n") +
              VirtualService(SplitRoute(100, 0, "    retries: {attempts: 0}\n")));
  StartGateway({"--workers", "1"});

  // Three at once against one connection and one pending slot: the third overflows.
  std::vector<testing::HttpResult> results(3);
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&, i] {
      absl::SleepFor(absl::Milliseconds(30 * i));
      results[i] = Get("/slow?delay=600ms");
    });
  }
  for (auto& c : clients) c.join();
  int ok = 0, overflow = 0;
  for (const auto& r : results) {
    if (r.status == 200) ++ok;
    if (r.status == 503 && r.Header("x-envoy-overloaded") == "true") {
      ++overflow;
      EXPECT_THAT(r.body, HasSubstr("overflow"));
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(overflow, 1);
  EXPECT_TRUE(Logged(" 503 UO "));
  EXPECT_THAT(testing::HttpGet(admin_, "/metrics"), HasSubstr("sluice_gateway_overflows_total{"));
}

// A streamed request has no route timer while its body uploads; queued behind a full
// connection pool it waits at most the idle timeout, then gets Envoy's stream idle timeout
// answer (408, flag SI) instead of waiting for as long as the pool stays full.
TEST_P(GatewayTest, StreamedRequestQueuedBehindAFullPoolEndsAtTheIdleTimeout) {
  StartStubs();
  StartServer(ShopService("    connectionPool:\n"
                          "      tcp: {maxConnections: 1}\n"
                          "      http: {http1MaxPendingRequests: 10}\n") +
              VirtualService(SplitRoute(100, 0, "    timeout: 30s\n    retries: {attempts: 0}\n")));
  StartGateway({"--workers", "1", "--idle-timeout", "500ms", "--retry-buffer", "1k"});

  // The pool's one connection is busy for 4s.
  testing::HttpResult held;
  std::thread holder([&] { held = Get("/hold?delay=4s"); });
  absl::SleepFor(absl::Milliseconds(300));

  const std::string body(40000, 'q');
  const absl::Time start = absl::Now();
  const testing::RawResult r = testing::RawExchange(
      gateway_address_, absl::StrCat("POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: ",
                                     body.size(), "\r\n\r\n", body));
  const absl::Duration took = absl::Now() - start;
  holder.join();
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 408")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("stream timeout"));
  EXPECT_TRUE(r.closed_by_peer);
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(3000)) << "it waited for the busy connection";
  EXPECT_EQ(held.status, 200);
  EXPECT_TRUE(Logged(" 408 SI "));
}

// A request queued for a connection waits without polling for one: the route timer ends the
// wait at the route's timeout, and a client that leaves frees its pending slot at once.
TEST_P(GatewayTest, AQueuedRequestEndsAtItsRouteTimeoutAndWhenItsClientLeaves) {
  StartStubs();
  StartServer(ShopService("    connectionPool:\n"
                          "      tcp: {maxConnections: 1}\n"
                          "      http: {http1MaxPendingRequests: 1}\n") +
              VirtualService(R"(  - match: [{headers: {x-case: {exact: short}}}]
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 400ms
    retries: {attempts: 0}
  - route: [{destination: {host: shop, subset: v1}}]
    timeout: 10s
    retries: {attempts: 0}
)"));
  StartGateway({"--workers", "1"});

  // The pool's one connection is busy for 3 s.
  testing::HttpResult held;
  std::thread holder([&] { held = Get("/hold?delay=3s"); });
  absl::SleepFor(absl::Milliseconds(300));

  const absl::Time start = absl::Now();
  testing::HttpResult timed_out = Get("/queued", {{"x-case", "short"}});
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(timed_out.status, 504);
  EXPECT_GE(took, absl::Milliseconds(350));
  EXPECT_LT(took, absl::Milliseconds(1500)) << "it waited for the busy connection";

  // A client that gives up while queued: its pending slot (the only one) frees, so the next
  // request queues rather than overflowing, and is served once the connection frees.
  const testing::RawResult left = testing::RawExchange(
      gateway_address_, "GET /left HTTP/1.1\r\nHost: shop\r\n\r\n", absl::Milliseconds(200));
  EXPECT_FALSE(left.closed_by_peer) << left.received;
  absl::SleepFor(absl::Milliseconds(100));
  testing::HttpResult next = Get("/next");
  holder.join();
  EXPECT_EQ(held.status, 200);
  EXPECT_EQ(next.status, 200) << next.body;
  EXPECT_TRUE(Logged(" 504 UT "));
  EXPECT_EQ(Received(0), 2) << "the request whose client left never went upstream";
}

TEST_P(GatewayTest, NoRouteAndNoClusterAndMirror) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - name: missing-subset
    match: [{headers: {x-case: {exact: nc}}}]
    route: [{destination: {host: shop, subset: v9}}]
  - name: mirrored
    route: [{destination: {host: shop, subset: v1}}]
    mirror: {host: shop, subset: v2}
)"));
  StartGateway();

  testing::HttpResult r = Get("/", {}, "nothing.example");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Get("/", {{"x-case", "nc"}}).status, 503);
  EXPECT_TRUE(Logged(" 404 NR "));
  EXPECT_TRUE(Logged(" 503 NC "));

  // Mirroring: v1 answers, v2 gets a copy whose answer is dropped.
  r = Get("/m");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-stub-subset"), "v1");
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (Received(1) < 1 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(Received(1), 1);
}

// Endpoints named by host name (ServiceEntry `resolution: DNS`): resolved off the worker's
// loop and cached, so requests to `localhost` go through; a name that does not resolve fails
// the request at once with Envoy's DNS flag, DF, instead of holding it to a timeout.
TEST_P(GatewayTest, EndpointHostNamesResolveAndUnresolvableOnesFailWithDF) {
  StartStubs();
  StartServer(Service("named", "DNS", "localhost", "sluice-test.invalid") + R"(---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: named
spec:
  hosts: [named]
  http:
  - match: [{headers: {x-case: {exact: unresolvable}}}]
    route: [{destination: {host: named, subset: v2}}]
    timeout: 5s
  - route: [{destination: {host: named, subset: v1}}]
)");
  StartGateway();

  for (int i = 0; i < 20; ++i) {
    testing::HttpResult r = Get("/", {}, "named");
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.body;
    EXPECT_EQ(r.Header("x-stub-subset"), "v1");
  }
  const absl::Time before = absl::Now();
  testing::HttpResult r = Get("/", {{"x-case", "unresolvable"}}, "named");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("DNS resolution failure"));
  EXPECT_LT(absl::Now() - before, absl::Seconds(4));  // well within the 5 s route timeout
  EXPECT_TRUE(Logged(" 503 DF"));
  EXPECT_EQ(Received(1), 0);
}

// Mirrored requests go through the mirror cluster's connection pool, as Envoy's shadow
// requests do: they reuse its kept-alive connections, and its maxConnections and
// http1MaxPendingRequests drop the copies that do not fit. Before, each copy opened its own
// connection outside the cluster's limits.
TEST_P(GatewayTest, MirrorsGoThroughTheMirrorClustersPoolAndLimits) {
  StartStubs();
  StartServer(ShopService() + "---\n" +
              Service("sink", "STATIC", "127.0.0.1", "127.0.0.1", R"(    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
)") + VirtualService(R"(  - name: mirrored
    route: [{destination: {host: shop, subset: v1}}]
    mirror: {host: sink, subset: v2}
)"));
  StartGateway({"--workers", "1"});
  auto wait_for_mirrors = [&](int64_t n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (Received(1) < n && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
    return Received(1);
  };

  // One after another: every copy arrives, over one kept-alive connection. Each request
  // waits for the previous copy to arrive (a copy may still be on its way when its request
  // is answered; two such behind the one connection would overflow the pending queue).
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Get("/m").Header("x-stub-subset"), "v1");
    EXPECT_EQ(wait_for_mirrors(i + 1), i + 1);
  }
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(testing::StubStat(stubs_[1]->address, "open_connections"), 1);

  // Four at once, each copy held 400 ms by the sink: one on the connection, one pending,
  // two overflow and are dropped. The requests themselves are not affected.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      if (Get("/m?delay=400ms").status == 200) ++ok;
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(wait_for_mirrors(7), 7);
  absl::SleepFor(absl::Milliseconds(600));  // the dropped copies never arrive
  EXPECT_EQ(Received(1), 7);
  EXPECT_LE(testing::StubStat(stubs_[1]->address, "open_connections"), 1);
}

// An upstream on a loopback port that keeps the head of every request it gets (lower-cased)
// and answers 200: to see what a mirror carries, whose response the gateway drops.
class RequestRecorder {
 public:
  RequestRecorder() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener_, 16) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RequestRecorder() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(listener_);
  }
  int port() const { return port_; }

  // The head of the next request not yet returned, waiting up to `timeout`; "" if none.
  std::string Next(absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time give_up = absl::Now() + timeout;
    while (absl::Now() < give_up) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!heads_.empty()) {
          std::string head = heads_.front();
          heads_.erase(heads_.begin());
          return head;
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return "";
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::string head;
      char chunk[1024];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0) break;
        head.append(chunk, static_cast<size_t>(n));
      }
      const std::string reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
      (void)!write(fd, reply.data(), reply.size());
      close(fd);
      std::lock_guard<std::mutex> lock(mu_);
      heads_.push_back(absl::AsciiStrToLower(head.substr(0, head.find("\r\n\r\n") + 2)));
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> heads_;
};

// Mirrors carry the request's Host as it is forwarded, as current Istio sends them (1.28
// sets Envoy's disable_shadow_host_suffix_append); --shadow-host-suffix brings back the
// "-shadow" suffix of older versions, after the host name and before any port.
TEST_P(GatewayTest, MirrorsKeepTheHostUnlessShadowHostSuffixIsSet) {
  StartStubs();
  RequestRecorder sink;
  ASSERT_NE(sink.port(), 0);
  const std::string sink_service = absl::StrCat(R"(
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: sink
spec:
  hosts: [sink]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  endpoints:
  - address: 127.0.0.1
    ports: {http: )",
                                                sink.port(), "}\n");
  StartServer(ShopService() + sink_service + VirtualService(R"(  - name: mirrored
    route: [{destination: {host: shop, subset: v1}}]
    mirror: {host: sink}
)"));

  StartGateway();
  EXPECT_EQ(Get("/m").Header("x-stub-subset"), "v1");
  std::string head = sink.Next();
  EXPECT_THAT(head, StartsWith("get /m http/1.1\r\n"));
  EXPECT_THAT(head, HasSubstr("\r\nhost: shop\r\n"));

  gateway_.Stop();
  StartGateway({"--shadow-host-suffix"});
  EXPECT_EQ(Get("/m").Header("x-stub-subset"), "v1");
  EXPECT_THAT(sink.Next(), HasSubstr("\r\nhost: shop-shadow\r\n"));
  EXPECT_EQ(Get("/m", {}, "shop:8080").Header("x-stub-subset"), "v1");
  EXPECT_THAT(sink.Next(), HasSubstr("\r\nhost: shop-shadow:8080\r\n"));

  gateway_.Stop();
  StartGateway({"--shadow-host-suffix=false"});
  EXPECT_EQ(Get("/m").Header("x-stub-subset"), "v1");
  EXPECT_THAT(sink.Next(), HasSubstr("\r\nhost: shop\r\n"));
}

TEST_P(GatewayTest, LocalRepliesKeepPipelinedConnectionsInStep) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - name: no-content
    match: [{headers: {x-case: {exact: empty}}}]
    directResponse: {status: 204, body: {string: "ignored"}}
  - name: main
    route: [{destination: {host: shop, subset: v1}}]
)"));
  StartGateway();
  // A HEAD answered locally (404 NR) carries no body; a 204 direct response neither, even
  // when configured with one. The pipelined GET after them must still be read as its own
  // response.
  testing::RawResult r =
      testing::RawExchange(gateway_address_,
                           "HEAD / HTTP/1.1\r\nHost: nothing.example\r\n\r\n"
                           "GET / HTTP/1.1\r\nHost: shop\r\nx-case: empty\r\n\r\n"
                           "GET /third HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 404"));
  const size_t no_content = r.received.find("HTTP/1.1 204");
  const size_t third = r.received.find("HTTP/1.1 200");
  ASSERT_NE(no_content, std::string::npos) << r.received;
  ASSERT_NE(third, std::string::npos) << r.received;
  EXPECT_LT(no_content, third);
  EXPECT_EQ(r.received.find("ignored"), std::string::npos);
  EXPECT_THAT(r.received.substr(third), HasSubstr("\"path\":\"/third\""));
  EXPECT_TRUE(r.closed_by_peer);
}

TEST_P(GatewayTest, MaxConnectionsNeverStrandsAWorkerWithoutAConnection) {
  StartStubs();
  // No route timeout: a request queued with no connection to wait for would hang.
  StartServer(ShopService("    connectionPool:\n"
                          "      tcp: {maxConnections: 1}\n") +
              VirtualService(SplitRoute(100, 0, "    retries: {attempts: 0}\n")));
  StartGateway({"--workers", "2"});
  // Fresh connections land on either worker; each worker's first connection to the
  // endpoint opens even though the other worker's idle one holds the cluster's only slot,
  // as Envoy opens one when a host's pool has none.
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(Get("/").status, 200) << "request " << i;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_P(GatewayTest, DecisionServiceDownDeniesFastThenRecovers) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--max-table-age", "0s"});  // no stale table: the failure policy applies
  EXPECT_EQ(Get("/").status, 200);

  const std::string grpc = grpc_;
  server_.Stop();
  const absl::Time start = absl::Now();
  testing::HttpResult r = Get("/");
  EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << "a client is never left hanging";
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "no routing decision: decision service unavailable");
  EXPECT_TRUE(Logged(" 503 DSU "));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"unavailable\""));
  EXPECT_THAT(testing::HttpGet(admin_, "/metrics"),
              HasSubstr("sluice_gateway_decision_failures_total{reason=\"unavailable\"}"));

  // The server comes back on the same address; the gateway reconnects by itself.
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)), grpc);
  WaitHealthy();
  EXPECT_EQ(Get("/").status, 200);
}

TEST_P(GatewayTest, DecisionServiceDownWithFallbackForwards) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(0, 100)));
  StartGateway({"--decision-failure", "fallback=" + stubs_[0]->address, "--max-table-age", "0s"});
  EXPECT_EQ(Get("/").Header("x-stub-subset"), "v2");
  server_.Stop();
  testing::HttpResult r = Get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-stub-subset"), "v1") << "the fallback address answers";
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"degraded\""));
  EXPECT_TRUE(Logged("\"GET / HTTP/1.1\" 200 DSF ")) << "fallback answers are flagged";
}

TEST_P(GatewayTest, MalformedHttpIsAnsweredAndClosed) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--max-request-body", "1k", "--max-request-headers", "8k"});

  struct Case {
    const char* name;
    std::string bytes;
    const char* status_line;
  };
  const std::vector<Case> cases = {
      {"content-length with chunked",
       "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       "HTTP/1.1 400"},
      {"two different lengths",
       "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
       "HTTP/1.1 400"},
      {"bad chunk size",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
       "HTTP/1.1 400"},
      {"no Host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
      // A coding the gateway does not implement (RFC 9112 §6.1: 501), and closed all the same
      // for the Content-Length beside it.
      {"transfer-encoding not ending in chunked",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n"
       "abcd",
       "HTTP/1.1 501"},
      {"not HTTP", "HELLO THERE\r\n\r\n", "HTTP/1.1 400"},
      {"headers too large",
       absl::StrCat("GET / HTTP/1.1\r\nHost: shop\r\nx-big: ", std::string(10000, 'a'), "\r\n\r\n"),
       "HTTP/1.1 431"},
      {"body too large",
       absl::StrCat("POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 5000\r\n\r\n",
                    std::string(5000, 'b')),
       "HTTP/1.1 413"},
  };
  for (const Case& c : cases) {
    testing::RawResult r = testing::RawExchange(gateway_address_, c.bytes);
    ASSERT_TRUE(r.connected) << c.name;
    EXPECT_THAT(r.received, StartsWith(c.status_line)) << c.name;
    EXPECT_TRUE(r.closed_by_peer) << c.name << ": the connection must be closed";
  }
  EXPECT_EQ(ReceivedByAll(), 0) << "nothing malformed reaches an upstream";
}

// RFC 9112 and Envoy: several Host fields are refused (400), a transfer coding other than
// `chunked` alone is not implemented (501, as Envoy answers), repeated lengths are refused
// even when equal (400); each closes the connection and reaches no upstream. A proxy must
// accept the absolute form, whose authority overrides any Host header.
TEST_P(GatewayTest, HostTransferCodingAndLengthRulesAndTheAbsoluteForm) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  struct Case {
    const char* name;
    std::string bytes;
    const char* status_line;
  };
  const std::vector<Case> cases = {
      {"two Host fields", "GET / HTTP/1.1\r\nHost: shop\r\nHost: elsewhere\r\n\r\n",
       "HTTP/1.1 400"},
      {"two equal Host fields", "GET / HTTP/1.1\r\nHost: shop\r\nHost: shop\r\n\r\n",
       "HTTP/1.1 400"},
      {"gzip before chunked",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
       "HTTP/1.1 501"},
      {"gzip alone", "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: gzip\r\n\r\n",
       "HTTP/1.1 501"},
      {"chunked, chunked",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
       "0\r\n\r\n",
       "HTTP/1.1 501"},
      {"gzip and chunked in two fields",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: gzip\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       "HTTP/1.1 501"},
      {"chunked in two fields (a list, as \"chunked, chunked\")",
       "POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       "HTTP/1.1 501"},
      {"two equal lengths",
       "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
       "HTTP/1.1 400"},
  };
  for (const Case& c : cases) {
    testing::RawResult r = testing::RawExchange(gateway_address_, c.bytes);
    ASSERT_TRUE(r.connected) << c.name;
    EXPECT_THAT(r.received, StartsWith(c.status_line)) << c.name;
    EXPECT_TRUE(r.closed_by_peer) << c.name << ": the connection must be closed";
  }
  EXPECT_EQ(ReceivedByAll(), 0) << "nothing refused reaches an upstream";
  EXPECT_TRUE(Logged("\"GET / HTTP/1.1\" 400 DPE"));
  EXPECT_TRUE(Logged("\"POST / HTTP/1.1\" 501 DPE"));

  // `chunked` in any case, with spaces around, is the one coding implemented.
  testing::RawResult r = testing::RawExchange(
      gateway_address_,
      "POST /chunked HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding:  Chunked \r\n"
      "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"request_bytes\":3"));

  // The absolute form: routed by its authority (Host says elsewhere, which has no route), and
  // forwarded in origin form.
  r = testing::RawExchange(gateway_address_,
                           "GET http://shop/abs?x=1 HTTP/1.1\r\nHost: elsewhere\r\n"
                           "Connection: close\r\n\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"path\":\"/abs?x=1\""));
  EXPECT_TRUE(Logged("\"GET /abs?x=1 HTTP/1.1\" 200 - "));
  r = testing::RawExchange(gateway_address_,
                           "GET HTTP://shop HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"path\":\"/\""));
}

// A response the upstream cuts mid-body is not passed off as complete: the client's
// connection is reset, and the access log says UC (Envoy's upstream connection termination).
TEST_P(GatewayTest, AResponseCutMidBodyResetsTheClientAndIsFlaggedUC) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  testing::RawResult r = testing::RawExchange(
      gateway_address_, "GET /cut?reset=after&body=100000 HTTP/1.1\r\nHost: shop\r\n\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received.substr(0, 200);
  EXPECT_THAT(r.received, HasSubstr("Content-Length: 100000"));
  EXPECT_LT(r.received.size(), 100000u) << "the client has part of the body only";
  EXPECT_TRUE(r.reset_by_peer) << "a reset, not an end the client could take for complete";
  EXPECT_TRUE(Logged("\"GET /cut?reset=after&body=100000 HTTP/1.1\" 200 UC "));
  EXPECT_EQ(Get("/").status, 200) << "the gateway serves on";
}

// A request body that stops arriving is ended by the idle timeout with 408 and flag SI
// (Envoy's stream idle timeout), whether it was buffered or streamed upstream.
TEST_P(GatewayTest, AStalledRequestBodyGets408SI) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--idle-timeout", "500ms", "--retry-buffer", "1k"});
  // Buffered: 10 of 100 promised bytes, then nothing.
  testing::RawResult r = testing::RawExchange(
      gateway_address_,
      absl::StrCat("POST /small HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n",
                   std::string(10, 'a')));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 408")) << r.received;
  EXPECT_TRUE(r.closed_by_peer);
  EXPECT_TRUE(Logged("\"POST /small HTTP/1.1\" 408 SI "));
  EXPECT_EQ(ReceivedByAll(), 0);
  // Streamed: past the 1k retry buffer the body goes upstream as it comes, then stops.
  r = testing::RawExchange(
      gateway_address_,
      absl::StrCat("POST /big HTTP/1.1\r\nHost: shop\r\nContent-Length: 100000\r\n\r\n",
                   std::string(4000, 'b')));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 408")) << r.received;
  EXPECT_TRUE(r.closed_by_peer);
  EXPECT_TRUE(Logged("\"POST /big HTTP/1.1\" 408 SI "));
}

// Envoy's max_request_headers_count: 100 header fields (Host included) by default; one more
// is answered 431 and the connection closed, and nothing reaches an upstream.
TEST_P(GatewayTest, MoreHeaderFieldsThanTheCountLimitGet431AndClose) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  // `count` header fields in all: Host, Connection: close when asked, and x-h-N.
  auto request = [](int count, bool close) {
    std::string r = "GET /headers HTTP/1.1\r\nHost: shop\r\n";
    if (close) r += "Connection: close\r\n";
    for (int i = close ? 2 : 1; i < count; ++i) absl::StrAppend(&r, "x-h-", i, ": v\r\n");
    return r + "\r\n";
  };
  testing::RawResult r = testing::RawExchange(gateway_address_, request(100, true));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_EQ(Received(0), 1);

  r = testing::RawExchange(gateway_address_, request(101, false));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 431")) << r.received;
  EXPECT_TRUE(r.closed_by_peer) << "the connection must be closed";
  EXPECT_EQ(Received(0), 1) << "a refused request reaches no upstream";
  EXPECT_TRUE(Logged("\"GET /headers HTTP/1.1\" 431 DPE"));

  // --max-request-header-count sets it.
  gateway_.Stop();
  ASSERT_NO_FATAL_FAILURE(StartGateway({"--max-request-header-count", "10"}));
  r = testing::RawExchange(gateway_address_, request(11, false));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 431")) << r.received;
  EXPECT_TRUE(r.closed_by_peer);
  r = testing::RawExchange(gateway_address_, request(10, true));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_EQ(Received(0), 2);
}

// Envoy arms the route timeout when the whole request is in, and the per-try timeout when
// the whole request is in and the connection is ready. A body past the retry buffer is
// streamed upstream while it arrives, so a slow upload must not eat either timeout.
TEST_P(GatewayTest, TimeoutsStartWhenAStreamedUploadEnds) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - name: route-timeout
    match: [{headers: {x-case: {exact: route}}}]
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 400ms
    retries: {attempts: 0}
  - name: per-try
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: 5xx}
)"));
  StartGateway({"--retry-buffer", "1k"});

  // 80 kB in two halves 900ms apart: past the 1 KiB retry buffer and the gateway's 16 KiB
  // read chunk, so the first half is on its way upstream while the second is awaited.
  const std::string half(40000, 'u');
  auto upload = [&](const std::string& query, const std::string& extra_header) {
    const std::string head =
        absl::StrCat("POST /upload", query, " HTTP/1.1\r\nHost: shop\r\n", extra_header,
                     "Content-Length: 80000\r\n", "Connection: close\r\n\r\n");
    return testing::RawExchangeInPieces(gateway_address_, {head + half, half},
                                        absl::Milliseconds(900));
  };

  // Longer than both timeouts, yet answered: neither runs while the body streams.
  testing::RawResult r = upload("", "x-case: route\r\n");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"request_bytes\":80000"));
  r = upload("", "");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"request_bytes\":80000"));

  // Both still bound the wait for the answer, counted from the upload's end: the route
  // timeout (400ms) and the per-try timeout (300ms; a streamed body is tried once).
  for (const auto& [header, timeout_ms] :
       std::vector<std::pair<std::string, int>>{{"x-case: route\r\n", 400}, {"", 300}}) {
    SCOPED_TRACE(timeout_ms);
    const absl::Time start = absl::Now();
    r = upload("?delay=3s", header);
    const absl::Duration took = absl::Now() - start;
    EXPECT_THAT(r.received, StartsWith("HTTP/1.1 504")) << r.received;
    EXPECT_THAT(r.received, HasSubstr("upstream request timeout"));
    EXPECT_GE(took, absl::Milliseconds(900 + timeout_ms));
    EXPECT_LT(took, absl::Milliseconds(900 + 2000));
  }
  EXPECT_TRUE(Logged("504 UT"));
}

// Envoy closes an upstream connection idle for the cluster's idleTimeout (1h when unset),
// whether or not another request comes: the upstream does not hold it open meanwhile.
TEST_P(GatewayTest, IdleUpstreamConnectionsCloseAtTheirIdleTimeout) {
  StartStubs();
  std::string config = ShopService();
  const std::string subsets = "  - {name: v1, labels: {version: v1}}\n";
  const size_t at = config.find(subsets);
  ASSERT_NE(at, std::string::npos);
  config.replace(at, subsets.size(), R"(  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        http: {idleTimeout: 1s}
)");
  StartServer(config + VirtualService(R"(  - name: by-subset
    match: [{headers: {x-subset: {exact: v2}}}]
    route: [{destination: {host: shop, subset: v2}}]
  - name: default
    route: [{destination: {host: shop, subset: v1}}]
)"));
  StartGateway();
  auto open = [&](size_t stub) {
    return testing::StubStat(stubs_[stub]->address, "open_connections");
  };

  const absl::Time sent = absl::Now();
  ASSERT_EQ(Get("/one").status, 200);
  ASSERT_EQ(Get("/two", {{"x-subset", "v2"}}).status, 200);
  EXPECT_EQ(open(0), 1) << "kept alive after the request";
  EXPECT_EQ(open(1), 1);

  // v1's connection closes within a second of its 1s idle timeout (the reaper runs each
  // second); v2's, with Envoy's 1h default, stays.
  absl::Time closed = absl::InfiniteFuture();
  while (absl::Now() - sent < absl::Seconds(5)) {
    if (open(0) == 0) {
      closed = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_NE(closed, absl::InfiniteFuture()) << "v1's idle connection was never closed";
  EXPECT_GE(closed - sent, absl::Milliseconds(950));
  EXPECT_LT(closed - sent, absl::Milliseconds(4000));
  EXPECT_EQ(open(1), 1);

  // The next request opens a new connection, and is answered as before.
  EXPECT_EQ(Get("/three").status, 200);
  EXPECT_EQ(open(0), 1);
}

TEST_P(GatewayTest, KeepAlivePipeliningChunkedBodiesAndSlowClients) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway(
      {"--request-header-timeout", "300ms", "--idle-timeout", "400ms", "--retry-buffer", "1k"});

  // Two pipelined requests in one write: answered in order on one connection.
  testing::RawResult r = testing::RawExchange(
      gateway_address_,
      "GET /first HTTP/1.1\r\nHost: shop\r\n\r\n"
      "POST /second HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close"
      "\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  const size_t first = r.received.find("\"path\":\"/first\"");
  const size_t second = r.received.find("\"path\":\"/second\"");
  ASSERT_NE(first, std::string::npos) << r.received;
  ASSERT_NE(second, std::string::npos) << r.received;
  EXPECT_LT(first, second);
  EXPECT_THAT(r.received, HasSubstr("\"request_bytes\":11"));
  EXPECT_TRUE(r.closed_by_peer);

  // A body past the retry buffer is streamed upstream whole.
  const std::string big(200000, 'z');
  testing::HttpResult posted =
      testing::HttpExchange(gateway_address_, "POST", "/upload", {{"Host", "shop"}}, big);
  EXPECT_EQ(posted.status, 200);
  EXPECT_THAT(posted.body, HasSubstr("\"request_bytes\":200000"));
  // A response body is streamed back whole (chunked when the upstream gave no length).
  EXPECT_EQ(Get("/download?body=300000").body.size(), 300000u);

  // A client that never finishes its headers gets 408 and is closed.
  absl::Time start = absl::Now();
  r = testing::RawExchange(gateway_address_, "GET / HTTP/1.1\r\nHost: sh");
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 408"));
  EXPECT_TRUE(r.closed_by_peer);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // An idle keep-alive connection is closed after the idle timeout.
  start = absl::Now();
  r = testing::RawExchange(gateway_address_, "");
  EXPECT_TRUE(r.closed_by_peer);
  EXPECT_TRUE(r.received.empty());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(350));
}

// Framing the HTTP/1 codec writes back: a HEAD response has its head only, so a pipelined
// request behind it is answered next; an HTTP/1.0 client that asks for keep-alive gets it
// (and one that does not is closed); a chunked upload past the retry buffer is streamed
// upstream chunked, whole.
TEST_P(GatewayTest, HeadHttp10KeepAliveAndStreamedChunkedUploadsKeepTheirFraming) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--retry-buffer", "1k"});

  testing::RawResult r =
      testing::RawExchange(gateway_address_,
                           "HEAD /download?body=5000 HTTP/1.1\r\nHost: shop\r\n\r\n"
                           "GET /after-head HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
  const size_t head_end = r.received.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << r.received;
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(r.received.substr(head_end + 4), StartsWith("HTTP/1.1 200"))
      << "no body after a HEAD response: " << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"path\":\"/after-head\""));
  EXPECT_TRUE(r.closed_by_peer);

  r = testing::RawExchange(gateway_address_,
                           "GET /ten-a HTTP/1.0\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n"
                           "GET /ten-b HTTP/1.0\r\nHost: shop\r\n\r\n");
  const size_t second = r.received.find("\"path\":\"/ten-b\"");
  ASSERT_NE(second, std::string::npos) << r.received;
  EXPECT_THAT(r.received.substr(0, r.received.find("\r\n\r\n")),
              HasSubstr("Connection: keep-alive"));
  EXPECT_TRUE(r.closed_by_peer) << "an HTTP/1.0 request without keep-alive ends the connection";

  const std::string piece(1500, 'c');
  r = testing::RawExchange(
      gateway_address_,
      absl::StrCat("POST /chunked-upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\n5dc\r\n",
                   piece, "\r\n5dc\r\n", piece, "\r\n0\r\n\r\n"));
  EXPECT_THAT(r.received, StartsWith("HTTP/1.1 200")) << r.received;
  EXPECT_THAT(r.received, HasSubstr("\"request_bytes\":3000"));
  EXPECT_TRUE(Logged("\"POST /chunked-upload HTTP/1.1\" 200 - 3000 "));
}

// The point of the whole exercise: weights and match rules change under steady load
// without one failed or hung request, and the split follows each change at once.
TEST_P(GatewayTest, ZeroDowntimeWeightAndMatchChangesUnderLoad) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--workers", "2"});

  BackgroundLoad load(*this, 4, "/load");
  auto share_v1 = [&](int n, const Headers& headers = {}) {
    int v1 = 0;
    for (int i = 0; i < n; ++i) v1 += Get("/probe", headers).Header("x-stub-subset") == "v1";
    return v1;
  };
  struct Step {
    int v1, v2;
  };
  for (const Step s : {Step{100, 0}, Step{90, 10}, Step{50, 50}, Step{0, 100}, Step{100, 0}}) {
    Apply(ShopService() + VirtualService(SplitRoute(s.v1, s.v2)));
    // 60 probes right after the change: exact for 100/0 and 0/100, within 4 sd otherwise.
    const int v1 = share_v1(60);
    const double expected = 60.0 * s.v1 / 100;
    const double sd = std::sqrt(60.0 * s.v1 / 100 * s.v2 / 100);
    EXPECT_NEAR(v1, expected, 4 * sd + 1e-9) << s.v1 << "/" << s.v2;
    absl::SleepFor(absl::Seconds(1));  // the load runs on under this split
  }
  // A change of match rules: jason goes to v2, everyone else stays on v1.
  Apply(ShopService() + VirtualService(R"(  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: shop, subset: v2}}]
)" + SplitRoute(100, 0)));
  EXPECT_EQ(share_v1(30, {{"end-user", "jason"}}), 0);
  EXPECT_EQ(share_v1(30), 30);

  load.Stop();
  EXPECT_GT(load.sent(), 100);
  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure() << "\n"
                              << AccessLog() << gateway_.Log();
}

// The fault campaign's configuration part: 100 in-place edits of a watched file (each written
// in two pieces, so the server sees it half-written) and 100 applies, under load: not one
// failed request, and exactly one new version per edit and per apply.
TEST_P(GatewayTest, HundredFileEditsAndHundredAppliesUnderLoadFailNothing) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)), "127.0.0.1:0",
              {"--reload-interval", "50ms"});
  StartGateway({"--workers", "2"});
  BackgroundLoad load(*this, 3, "/load");

  auto wait_for_version_past = [&](int64_t version) {
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    int64_t now = ServerConfigVersion();
    while (now <= version && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
      now = ServerConfigVersion();
    }
    return now;
  };
  // The file edits are the server's (the gateway's mode does not enter into them): once, with
  // the server-mode gateway, keeps the suite short.
  const int edits = GetParam() == "server" ? 100 : 0;
  const int64_t before_edits = ServerConfigVersion();
  ASSERT_GT(before_edits, 0);
  for (int i = 0; i < edits; ++i) {
    // As `cat new > shop.yaml` does: truncate, write, and here a pause in the middle.
    const std::string config =
        ShopService() + VirtualService(SplitRoute(i % 2 == 0 ? 0 : 100, i % 2 == 0 ? 100 : 0));
    const int64_t version = ServerConfigVersion();
    {
      std::ofstream out(config_path_, std::ios::trunc);
      out << config.substr(0, config.size() * 6 / 10) << std::flush;
      absl::SleepFor(absl::Milliseconds(60));
      out << config.substr(config.size() * 6 / 10);
    }
    ASSERT_GT(wait_for_version_past(version), version) << "edit " << i << " never loaded";
  }
  absl::SleepFor(absl::Milliseconds(500));  // a late second load of an edit would show here
  EXPECT_EQ(ServerConfigVersion() - before_edits, edits) << "one version per edit";

  const int64_t before_applies = ServerConfigVersion();
  for (int i = 0; i < 100; ++i) {
    Apply(ShopService() + VirtualService(SplitRoute(i % 2 == 0 ? 100 : 0, i % 2 == 0 ? 0 : 100)));
  }
  EXPECT_EQ(ServerConfigVersion() - before_applies, 100) << "one version per apply";

  load.Stop();
  EXPECT_GT(load.sent(), 100);
  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure() << "\n"
                              << "server log:\n"
                              << server_.Log() << "\ngateway log:\n"
                              << gateway_.Log();
}

// The fault campaign's upstream kill: one of the two endpoints is killed (SIGKILL) under load.
// Requests that meet its refused connections, or whose connection it resets, are retried on
// the other endpoint (Envoy's retry goes to another host first), so no client sees a failure;
// a route with no retries to the dead endpoint alone answers 503 with flag UF.
TEST_P(GatewayTest, AnUpstreamKilledUnderLoadIsRetriedAroundAndFlaggedUF) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - match: [{headers: {x-case: {exact: dead}}}]
    route: [{destination: {host: shop, subset: v2}}]
    retries: {attempts: 0}
  - route: [{destination: {host: shop}}]
    retries: {attempts: 3, retryOn: "connect-failure,reset"}
)"));
  StartGateway({"--workers", "2"});
  BackgroundLoad load(*this, 3, "/load");
  absl::SleepFor(absl::Milliseconds(300));
  const int64_t v2_before_kill = Received(1);
  EXPECT_GT(v2_before_kill, 0) << "both endpoints served before the kill";
  ASSERT_EQ(kill(stubs_[1]->process.pid(), SIGKILL), 0);
  stubs_[1]->process.Stop();
  const int64_t v1_at_kill = Received(0);
  absl::SleepFor(absl::Milliseconds(700));
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure();
  EXPECT_GT(Received(0) - v1_at_kill, 20) << "the live endpoint took the load";
  EXPECT_GT(
      testing::SumMetric(testing::HttpGet(admin_, "/metrics"), "sluice_gateway_retries_total"), 0)
      << "the dead endpoint's requests were retried";

  const testing::HttpResult r = Get("/dead", {{"x-case", "dead"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("reset reason: remote connection failure"));
  EXPECT_TRUE(Logged("\"GET /dead HTTP/1.1\" 503 UF "));
}

TEST_P(GatewayTest, SigtermUnderLoadCompletesRequestsInFlight) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--workers", "2"});

  constexpr int kInFlight = 8;
  std::vector<testing::HttpResult> results(kInFlight);
  std::vector<std::thread> clients;
  for (int i = 0; i < kInFlight; ++i) {
    clients.emplace_back([&, i] { results[i] = Get("/slow?delay=700ms"); });
  }
  absl::SleepFor(absl::Milliseconds(250));  // all of them are now waiting on the upstream
  ASSERT_EQ(kill(gateway_.pid(), SIGTERM), 0);
  absl::SleepFor(absl::Milliseconds(100));
  // Draining: no new connections.
  EXPECT_FALSE(testing::RawExchange(gateway_address_, "GET / HTTP/1.1\r\nHost: shop\r\n\r\n",
                                    absl::Seconds(1))
                   .connected);
  for (auto& c : clients) c.join();
  for (int i = 0; i < kInFlight; ++i) {
    EXPECT_EQ(results[i].status, 200) << "request " << i << " in flight at SIGTERM";
    EXPECT_EQ(results[i].Header("connection"), "close");
  }
  EXPECT_EQ(gateway_.Stop(absl::Seconds(5)), 0) << gateway_.Log();
}

// logrotate without copytruncate: the log is renamed, then SIGUSR1 makes the gateway reopen
// its path; earlier lines stay in the renamed file, later ones go to the new one.
TEST_P(GatewayTest, Sigusr1ReopensTheAccessLogAfterRotation) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--workers", "2"});
  EXPECT_EQ(Get("/before-rotation").status, 200);
  ASSERT_TRUE(Logged("/before-rotation"));

  const std::string rotated = access_log_ + ".1";
  ASSERT_EQ(std::rename(access_log_.c_str(), rotated.c_str()), 0);
  ASSERT_EQ(kill(gateway_.pid(), SIGUSR1), 0);
  // The reopen creates the file at the path again.
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (access(access_log_.c_str(), F_OK) != 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(access(access_log_.c_str(), F_OK), 0) << "not reopened\n" << gateway_.Log();

  EXPECT_EQ(Get("/after-rotation").status, 200) << gateway_.Log();
  EXPECT_TRUE(Logged("\"GET /after-rotation HTTP/1.1\" 200"));
  EXPECT_THAT(AccessLog(), Not(HasSubstr("/before-rotation")));
  const std::string old_log = ReadFile(rotated);
  EXPECT_THAT(old_log, HasSubstr("\"GET /before-rotation HTTP/1.1\" 200"));
  EXPECT_THAT(old_log, Not(HasSubstr("/after-rotation")));
  EXPECT_EQ(gateway_.Stop(absl::Seconds(5)), 0) << gateway_.Log();
}

// Lines are written from memory by a flusher, not by the workers; what is still in memory at
// SIGTERM is written before the gateway exits.
TEST_P(GatewayTest, AccessLogIsWrittenAtItsIntervalAndOnSigterm) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway({"--access-log-flush-interval", "1h"});
  EXPECT_EQ(Get("/kept-in-memory").status, 200);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_THAT(AccessLog(), Not(HasSubstr("/kept-in-memory"))) << "written by the worker";
  EXPECT_EQ(gateway_.Stop(absl::Seconds(5)), 0) << gateway_.Log();
  EXPECT_THAT(AccessLog(), HasSubstr("\"GET /kept-in-memory HTTP/1.1\" 200"));
}

// %PROTOCOL% is the request's version as the client sent it.
TEST_P(GatewayTest, AccessLogShowsTheRequestsHttpVersion) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  const testing::RawResult r =
      testing::RawExchange(gateway_address_, "GET /ten HTTP/1.0\r\nHost: shop\r\n\r\n");
  EXPECT_THAT(r.received, HasSubstr(" 200 ")) << r.received;
  EXPECT_EQ(Get("/eleven").status, 200);
  EXPECT_TRUE(Logged("\"GET /ten HTTP/1.0\" 200"));
  EXPECT_TRUE(Logged("\"GET /eleven HTTP/1.1\" 200"));
}

// The server dies (kill -9) under load: every gateway keeps deciding from its last table, as
// Envoy keeps its last configuration, says so, and returns to the server when it is back.
TEST_P(GatewayTest, ServerKilledUnderLoadServesFromTheLastTable) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(0, 100)));
  const std::string grpc = grpc_;
  StartGateway({"--workers", "2"});

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0}, not_v2{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&] {
      const absl::Time give_up = absl::Now() + absl::Seconds(20);  // bounded whatever happens
      while (!stop.load() && absl::Now() < give_up) {
        testing::HttpResult r = Get("/load");
        ++sent;
        if (r.status != 200) ++failed;
        if (r.Header("x-stub-subset") != "v2") ++not_v2;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  const int before_kill = sent.load();
  ASSERT_EQ(kill(server_.pid(), SIGKILL), 0);
  server_.Stop();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"stale\""));
  absl::SleepFor(absl::Milliseconds(500));
  stop = true;
  for (auto& t : load) t.join();
  EXPECT_GT(before_kill, 20);
  EXPECT_GT(sent.load() - before_kill, 20) << "traffic went on after the kill";
  EXPECT_EQ(failed.load(), 0) << AccessLog() << gateway_.Log();
  EXPECT_EQ(not_v2.load(), 0) << "the last table's route kept serving";
  EXPECT_THAT(testing::HttpGet(admin_, "/metrics"),
              HasSubstr("sluice_gateway_decisions_total{source=\"stale\"}"));

  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)), grpc);
  WaitHealthy();
  // The new server's table replaces the last one.
  for (int i = 0; i < 50 && Get("/").Header("x-stub-subset") != "v1"; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Get("/").Header("x-stub-subset"), "v1");
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"serving\""));
}

// A server that hangs (SIGSTOP: its connections stay open, nothing answers) is noticed by its
// silence: /healthz says stale within a few seconds, requests are decided from the last table
// meanwhile, and everything returns to normal when the server resumes.
TEST_P(GatewayTest, AHungServerIsNoticedAndRequestsAreServedFromTheLastTable) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(0, 100)));
  StartGateway({"--workers", "1"});  // so the affected worker is known
  EXPECT_EQ(Get("/").Header("x-stub-subset"), "v2");
  ASSERT_EQ(kill(server_.pid(), SIGSTOP), 0);
  ASSERT_TRUE(testing::WaitForProcessState(server_.pid(), 'T'));
  bool stale = false;
  bool degraded = false;  // before the silence tells: a decision missed its deadline
  for (int i = 0; i < 100 && !stale; ++i) {  // 3 s of silence, at most 10 s here
    testing::HttpResult r = Get("/");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-stub-subset"), "v2");
    absl::SleepFor(absl::Milliseconds(150));  // the workers' state is sampled every 100 ms
    const std::string health = testing::HttpGet(admin_, "/healthz");
    stale = health.find("\"stale\"") != std::string::npos;
    if (health.find("\"degraded\"") != std::string::npos) {
      degraded = true;
      EXPECT_THAT(health, HasSubstr("\"workers_affected\":[0]")) << "which worker waits in vain";
    }
  }
  EXPECT_TRUE(stale) << testing::HttpGet(admin_, "/healthz");
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"workers_affected\":[0]"));
  // In server mode the first decision past its deadline already tells; a local-mode gateway
  // asks nothing of the server, so only the silence does.
  EXPECT_EQ(degraded, GetParam() == "server");
  ASSERT_EQ(kill(server_.pid(), SIGCONT), 0);
  WaitHealthy();
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"serving\""));
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"workers_affected\":[]"));
  EXPECT_EQ(Get("/").status, 200);
}

// A request target with bytes that are not UTF-8 is refused at the gateway (400 DPE): the
// decision API carries it as a proto3 string, and the server would drop the whole stream.
TEST_P(GatewayTest, ARequestThatIsNotUtf8IsRefusedWithoutBreakingTheDecisionStream) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  const testing::RawResult r = testing::RawExchange(
      gateway_address_, "GET /\xff\xfe HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(r.received, HasSubstr("HTTP/1.1 400"));
  EXPECT_TRUE(Logged(" 400 DPE "));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(testing::HttpGet(admin_, "/healthz"), HasSubstr("\"serving\""));
  EXPECT_EQ(Get("/").status, 200);
}

// With no table ever received (no server since start), the failure policy answers within the
// decision deadline.
TEST_P(GatewayTest, WithoutAnyTableTheFailurePolicyAnswersWithinTheDeadline) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  server_.Stop();  // its address now leads nowhere
  access_log_ = dir_.path() + "/access.log";
  ASSERT_TRUE(
      gateway_.Start({GatewayBinary(), "--plaintext", "--listen", "127.0.0.1:0", "--decision",
                      grpc_, "--metrics", "127.0.0.1:0", "--access-log", access_log_, "--decisions",
                      GetParam(), "--decision-deadline", "200ms"},
                     "listening "))
      << gateway_.error();
  gateway_address_ = gateway_.Field("http");
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    testing::HttpResult r = Get("/");
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(900)) << "deadline 200ms";
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, "no routing decision: decision service unavailable");
  }
}

// A rule that reads a header no earlier rule read is honoured from the first request after
// the change: a request described with the old header names is never decided on the new
// version (server mode answers RESEND and the gateway describes it again).
TEST_P(GatewayTest, ANewHeaderMatchAppliesFromTheFirstRequest) {
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  StartGateway();
  for (int round = 0; round < 8; ++round) {
    const std::string header = absl::StrCat("x-round-", round);
    Apply(ShopService() + VirtualService(absl::StrCat("  - name: r", round, R"(
    match: [{headers: {)",
                                                      header, R"(: {exact: "yes"}}}]
    route: [{destination: {host: shop, subset: v2}}]
)") + SplitRoute(100, 0)));
    EXPECT_EQ(Get("/", {{header, "yes"}}).Header("x-stub-subset"), "v2") << header;
    EXPECT_EQ(Get("/").Header("x-stub-subset"), "v1");
  }
}

// A connected loopback socket to `address` (HOST:PORT), or -1.
int ConnectTo(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// User plus system CPU time process `pid` has used so far (/proc/PID/stat), or -1.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  const std::string stat(std::istreambuf_iterator<char>(in), {});
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return -1;
  std::istringstream fields(stat.substr(comm_end + 2));  // from field 3, the state
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Open descriptors of process `pid`.
int OpenDescriptors(pid_t pid) {
  const std::string command = absl::StrCat("ls /proc/", pid, "/fd | wc -l");
  std::FILE* out = popen(command.c_str(), "r");
  int n = -1;
  if (out != nullptr && std::fscanf(out, "%d", &n) != 1) n = -1;
  if (out != nullptr) pclose(out);
  return n;
}

// Out of file descriptors (EMFILE), a worker backs off before it accepts again: the
// connection waiting in the backlog keeps the listener readable, so retrying at once would
// spin at 100% CPU for as long as the shortage lasts. Once descriptors free up, it serves.
TEST_P(GatewayTest, OutOfFileDescriptorsTheWorkerWaitsInsteadOfSpinning) {
  if (access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "needs prlimit (util-linux)";
  StartStubs();
  StartServer(ShopService() + VirtualService(SplitRoute(100, 0)));
  constexpr int kMaxFiles = 64;
  launcher_ = {"/usr/bin/prlimit", absl::StrCat("--nofile=", kMaxFiles, ":", kMaxFiles), "--"};
  // Under UBSan (the asan-test stage) the vptr check cannot work in a process out of
  // descriptors: on a type-cache miss it probes the object's memory through a pipe
  // (sanitizer_common's IsAccessibleMemoryRange), the pipe cannot be made, and a valid object
  // is reported as "invalid vptr". This one gateway runs with that check suppressed; every
  // other check, and ASan, stay on.
  if (const char* ubsan = getenv("UBSAN_OPTIONS"); ubsan != nullptr) {
    const std::string suppressions = dir_.Write("ubsan.supp", "vptr:*\n");
    launcher_.insert(
        launcher_.begin(),
        {"/usr/bin/env", absl::StrCat("UBSAN_OPTIONS=", ubsan, ":suppressions=", suppressions)});
  }
  StartGateway();
  ASSERT_EQ(Get("/").status, 200);

  // More connections than the gateway has descriptors left: the rest wait in the backlog.
  std::vector<int> held;
  for (int i = 0; i < kMaxFiles + 16; ++i) {
    const int fd = ConnectTo(gateway_address_);
    ASSERT_GE(fd, 0) << "connection " << i;
    held.push_back(fd);
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (OpenDescriptors(gateway_.pid()) < kMaxFiles && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(OpenDescriptors(gateway_.pid()), kMaxFiles) << "the gateway never ran out; its log:\n"
                                                        << gateway_.Log();
  absl::SleepFor(absl::Milliseconds(100));

  const double cpu_before = CpuSeconds(gateway_.pid());
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(1));
  const double cpu = CpuSeconds(gateway_.pid()) - cpu_before;
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_LT(cpu, 0.2 * wall) << "CPU seconds used in " << wall << "s out of descriptors";

  for (int fd : held) close(fd);
  const absl::Time retry_start = absl::Now();
  testing::HttpResult r = Get("/");
  EXPECT_EQ(r.status, 200) << "served again once descriptors are free";
  EXPECT_LT(absl::Now() - retry_start, absl::Seconds(3));
  // One line per shortage, not one per failed accept.
  const std::string log = gateway_.Log();
  size_t lines = 0;
  for (size_t at = log.find("cannot accept"); at != std::string::npos;
       at = log.find("cannot accept", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
}

// `n` requests from `get`, each on its own thread and connection, `gap` apart.
std::vector<testing::HttpResult> Staggered(int n, absl::Duration gap,
                                           const std::function<testing::HttpResult(int)>& get) {
  std::vector<testing::HttpResult> results(n);
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back([&, i] {
      absl::SleepFor(gap * i);
      results[i] = get(i);
    });
  }
  for (auto& c : clients) c.join();
  return results;
}

bool Overflowed(const testing::HttpResult& r) {
  return r.status == 503 && r.Header("x-envoy-overloaded") == "true" &&
         absl::StrContains(r.body, "overflow");
}

// Envoy resets the upstream request as soon as its client disconnects, and logs it with DC
// (response code 0: nothing was sent); the route timeout has no part in it.
TEST_P(GatewayTest, AClientThatDisconnectsCancelsItsUpstreamRequest) {
  StartStubs();
  StartServer(ShopService() + VirtualService(R"(  - name: main
    route: [{destination: {host: shop, subset: v1}}]
    timeout: 2s
    retries: {attempts: 0}
)"));
  StartGateway({"--workers", "1"});
  auto open = [&] { return testing::StubStat(stubs_[0]->address, "open_connections"); };

  const int fd = ConnectTo(gateway_address_);
  ASSERT_GE(fd, 0);
  const std::string request = "GET /slow?delay=3s HTTP/1.1\r\nHost: shop\r\n\r\n";
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(open(), 1) << "the request waits at the upstream";
  close(fd);
  const absl::Time left = absl::Now();

  // The upstream connection closes at once (the stub looks every 10ms), not at the route
  // timeout 1.8s later.
  absl::Time closed = absl::InfiniteFuture();
  while (absl::Now() - left < absl::Seconds(3)) {
    if (open() == 0) {
      closed = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LT(closed - left, absl::Milliseconds(500)) << "the upstream request went on";

  // Logged as a downstream disconnect, well before the route timeout (the log is written
  // every 50ms).
  absl::Time logged = absl::InfiniteFuture();
  while (absl::Now() - left < absl::Seconds(3)) {
    if (absl::StrContains(AccessLog(), "GET /slow?delay=3s")) {
      logged = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LT(logged - left, absl::Milliseconds(800));
  EXPECT_THAT(AccessLog(), HasSubstr("\"GET /slow?delay=3s HTTP/1.1\" 0 DC "));
  EXPECT_THAT(AccessLog(), Not(HasSubstr(" 504 UT ")));
  EXPECT_THAT(testing::HttpGet(admin_, "/metrics"), HasSubstr("response_flags=\"DC\""));

  // The cancelled connection was not pooled: the next request is served on a new one.
  EXPECT_EQ(Get("/after").status, 200);
  EXPECT_EQ(open(), 1);
}

// Envoy's HTTP/1.1 pool makes a request pending before it opens any connection, so the
// cluster's http1MaxPendingRequests binds a request for an endpoint the worker has no
// connection to as it binds one for a busy endpoint. Such an endpoint still gets its first
// connection past maxConnections while the queue has room (request 2), as Envoy opens one
// when a host's pool has none. (maxRequestsPerConnection 1: the fast endpoint never keeps a
// connection.)
TEST_P(GatewayTest, PendingLimitBindsARequestForAnEndpointWithoutAConnection) {
  StartStubs();
  StartServer(
      ShopService("    loadBalancer: {simple: ROUND_ROBIN}\n"
                  "    connectionPool:\n"
                  "      tcp: {maxConnections: 1}\n"
                  "      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n") +
      VirtualService(R"(  - name: all
    route: [{destination: {host: shop}}]
    retries: {attempts: 0}
)"));
  StartGateway({"--workers", "1"});

  // Round robin alternates the endpoints: requests 1 and 3 go to one (slow: they wait 1s
  // there), 2 and 4 to the other. Request 3 is the cluster's one pending request, queued
  // behind request 1's connection, when request 4 comes.
  const std::vector<testing::HttpResult> r = Staggered(4, absl::Milliseconds(150), [&](int i) {
    return Get(i % 2 == 0 ? "/slow?delay=1s" : "/fast");
  });
  EXPECT_EQ(r[0].status, 200);
  EXPECT_EQ(r[1].status, 200) << "the fast endpoint's first connection";
  EXPECT_EQ(r[2].status, 200) << "pending, then served on the slow endpoint";
  EXPECT_TRUE(Overflowed(r[3])) << r[3].status << " " << r[3].headers;
  EXPECT_TRUE(Logged("\"GET /fast HTTP/1.1\" 503 UO "));
  const std::string fast =
      r[1].Header("x-stub-name") == "shop-v1" ? stubs_[0]->address : stubs_[1]->address;
  EXPECT_EQ(testing::StubReceived(fast), 1) << "request 4 reached the fast endpoint";
}

// Envoy keeps a connection pool per cluster: connections kept alive for a service's default
// cluster do not carry its subset cluster's requests once a VirtualService routes there, so
// the subset cluster's maxConnections binds from its first request as on a fresh gateway.
TEST_P(GatewayTest, ConnectionsKeptAliveForOneClusterDoNotServeAnother) {
  StartStubs();
  const std::string limits =
      "    connectionPool:\n"
      "      tcp: {maxConnections: 1}\n"
      "      http: {http1MaxPendingRequests: 1}\n";
  StartServer(ShopService(limits));  // no VirtualService: the default route, whole service
  StartGateway({"--workers", "1"});
  auto open = [&] { return testing::StubStat(stubs_[0]->address, "open_connections"); };
  for (int i = 0; i < 50 && open() < 1; ++i) ASSERT_EQ(Get("/warm").status, 200);
  ASSERT_EQ(open(), 1) << "the default cluster keeps a connection to v1's endpoint";

  Apply(ShopService(limits) + VirtualService(SplitRoute(100, 0, "    retries: {attempts: 0}\n")));
  const std::vector<testing::HttpResult> r =
      Staggered(3, absl::Milliseconds(30), [&](int) { return Get("/slow?delay=600ms"); });
  int ok = 0, overflow = 0;
  for (const auto& one : r) {
    ok += one.status == 200;
    overflow += Overflowed(one);
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(overflow, 1);
}

// Envoy drains a cluster's connection pool when the cluster changes: connections kept alive
// under a DestinationRule without limits carry no request once it sets maxConnections 1,
// which binds at once, as on a fresh gateway; the old ones close.
TEST_P(GatewayTest, PoolLimitsBindOnceTheDestinationRuleChanges) {
  StartStubs();
  const std::string route = VirtualService(SplitRoute(100, 0, "    retries: {attempts: 0}\n"));
  StartServer(ShopService() + route);
  StartGateway({"--workers", "1"});
  auto open = [&] { return testing::StubStat(stubs_[0]->address, "open_connections"); };
  for (const auto& one :
       Staggered(3, absl::ZeroDuration(), [&](int) { return Get("/slow?delay=300ms"); })) {
    ASSERT_EQ(one.status, 200);
  }
  ASSERT_EQ(open(), 3) << "three kept-alive connections";

  Apply(ShopService("    connectionPool:\n"
                    "      tcp: {maxConnections: 1}\n"
                    "      http: {http1MaxPendingRequests: 1}\n") +
        route);
  const std::vector<testing::HttpResult> r =
      Staggered(3, absl::Milliseconds(30), [&](int) { return Get("/slow?delay=600ms"); });
  int ok = 0, overflow = 0;
  for (const auto& one : r) {
    ok += one.status == 200;
    overflow += Overflowed(one);
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(overflow, 1);
  EXPECT_EQ(open(), 1) << "the old pool's connections closed; the new one is kept";
}

INSTANTIATE_TEST_SUITE_P(Modes, GatewayTest, ::testing::Values("server", "local"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace sluice
