// The gateway's request path allocates nothing on the heap once a keep-alive connection has
// served its first request (the proxy-core issue's target), counted on the real binary with
// bench/malloc_count.c preloaded: a canary split, retries, the access log and Istio's metrics
// on, in both decision modes.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

// A sanitizer's runtime replaces malloc itself and must come first: the counter cannot be
// preloaded into such a build.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLUICE_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(SLUICE_SANITIZED)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

std::string ShopConfig(const std::string& stub_port) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: )",
                      stub_port, R"(}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: )",
                      stub_port, R"(}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - timeout: 5s
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "connect-failure,5xx"}
    route:
    - {destination: {host: shop, subset: v1}, weight: 90}
    - {destination: {host: shop, subset: v2}, weight: 10}
)");
}

// One keep-alive connection: each request written whole, each response read to its end.
class KeepAliveClient {
 public:
  explicit KeepAliveClient(const std::string& address) {
    const size_t colon = address.rfind(':');
    int port = 0;
    if (!absl::SimpleAtoi(address.substr(colon + 1), &port)) return;
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~KeepAliveClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  // The status of one GET, or 0 when the connection failed.
  int Get() {
    static constexpr char kRequest[] =
        "GET /items HTTP/1.1\r\nHost: shop\r\nUser-Agent: sluice-allocations-test/1.0\r\n\r\n";
    if (fd_ < 0 || ::send(fd_, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) < 0) return 0;
    std::string in;
    char buffer[4096];
    for (;;) {
      const size_t end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        for (absl::string_view line : absl::StrSplit(in.substr(0, end), "\r\n")) {
          constexpr absl::string_view kLength = "content-length:";
          if (line.size() > kLength.size() &&
              absl::EqualsIgnoreCase(line.substr(0, kLength.size()), kLength)) {
            (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(kLength.size())),
                                   &length);
          }
        }
        if (in.size() >= end + 4 + length) {
          int status = 0;
          (void)absl::SimpleAtoi(in.substr(9, 3), &status);
          return status;
        }
      }
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) return 0;
      in.append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

// The count malloc_count writes on SIGUSR2 ("mallocs=N frees=M").
int64_t Mallocs(const testing::Process& process, const std::string& count_file) {
  std::remove(count_file.c_str());
  ::kill(process.pid(), SIGUSR2);
  for (const absl::Time give_up = absl::Now() + absl::Seconds(5); absl::Now() < give_up;) {
    std::ifstream in(count_file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    constexpr absl::string_view kMallocs = "mallocs=";
    if (absl::StartsWith(text, kMallocs)) {
      int64_t n = -1;
      if (absl::SimpleAtoi(text.substr(kMallocs.size(), text.find(' ') - kMallocs.size()), &n)) {
        return n;
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -1;
}

class AllocationsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AllocationsTest, AKeepAliveConnectionsRequestsAllocateNothing) {
  if (kSanitized) GTEST_SKIP() << "a sanitizer build cannot preload the allocation counter";
  testing::TempDir dir;
  testing::Process stub;
  ASSERT_TRUE(
      stub.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop"}, "listening "))
      << stub.error();
  const std::string stub_http = stub.Field("http");
  const std::string config =
      dir.Write("shop.yaml", ShopConfig(stub_http.substr(stub_http.rfind(':') + 1)));
  testing::Process server;
  ASSERT_TRUE(server.Start({SLUICE_SERVER_BINARY, "--plaintext", "--config", config, "--listen",
                            "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
                           "listening "))
      << server.error();
  const std::string count_file = dir.path() + "/gateway.mallocs";
  testing::Process gateway;
  ASSERT_TRUE(gateway.Start(
      {"/usr/bin/env", absl::StrCat("LD_PRELOAD=", SLUICE_MALLOC_COUNT_LIBRARY),
       absl::StrCat("MALLOC_COUNT_FILE=", count_file), SLUICE_GATEWAY_BINARY, "--plaintext",
       "--listen", "127.0.0.1:0", "--decision", server.Field("grpc"), "--metrics", "127.0.0.1:0",
       "--decisions", GetParam(), "--access-log", dir.path() + "/access.log"},
      "listening "))
      << gateway.error();
  ASSERT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"))) << gateway.Log();

  KeepAliveClient client(gateway.Field("http"));
  // The connection's first requests grow its buffers; every later one finds them.
  for (int i = 0; i < 200; ++i) ASSERT_EQ(client.Get(), 200) << gateway.Log();
  const int64_t before = Mallocs(gateway, count_file);
  ASSERT_GE(before, 0) << "no count from the preloaded counter";
  constexpr int kRequests = 4000;
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(client.Get(), 200) << gateway.Log();
  const int64_t after = Mallocs(gateway, count_file);
  const double per_request = static_cast<double>(after - before) / kRequests;
  // What is left is the decision stream's own, per message and not per request: in local mode
  // the reports every 5 ms (0.13-0.20 per request here); in server mode gRPC's own per message
  // (7.03 in five runs; one connection asks one decision at a time, so one message each way
  // per request). One more allocation per request fails either bound. Before the exchange,
  // target and decision were reused, the benchmark's local mode allocated 11 times per request;
  // with them reused this path still allocated 2.1, the idle-pool entry re-created.
  const double bound = GetParam() == "local" ? 0.5 : 7.5;
  EXPECT_LT(per_request, bound) << (after - before) << " allocations for " << kRequests
                                << " requests";
  std::cout << GetParam() << " mode: " << per_request << " heap allocations per request\n";
}

INSTANTIATE_TEST_SUITE_P(Modes, AllocationsTest, ::testing::Values("local", "server"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice
