// The gateway's decision client against a real sluice-server process on loopback.

#include "gateway/decision/decision_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "tests/integration/process.h"

namespace sluice::gateway {
namespace {

// A loopback port that was free a moment ago, so a restarted server can take it again.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The server to decide from: this build's, or the one SLUICE_TEST_SERVER_BINARY names. A
// ThreadSanitizer build of this test runs against the main build's server: a TSan build of
// the server reports false races of its own (through Debian's uninstrumented Abseil), and
// the client is what this test is about.
std::string ServerBinary() {
  const char* other = std::getenv("SLUICE_TEST_SERVER_BINARY");
  return other != nullptr && *other != '\0' ? other : SLUICE_SERVER_BINARY;
}

v1::DecideRequest Request(const std::string& user = "") {
  v1::DecideRequest r;
  r.set_authority("reviews:9080");
  r.set_method("GET");
  r.set_path("/reviews/1");
  if (!user.empty()) {
    v1::Header* h = r.add_headers();
    h->set_name("end-user");
    h->set_value(user);
  }
  return r;
}

// The report of a first attempt answered 200: what ends a decision on the server.
v1::AttemptReport FinalResponse(const v1::Decision& decision) {
  v1::AttemptReport r;
  r.set_id(decision.id());
  r.set_attempt(1);
  r.set_outcome(v1::RESPONSE);
  r.set_status_code(200);
  r.set_final(true);
  return r;
}

class DecisionClientTest : public ::testing::Test {
 protected:
  void SetUp() override { address_ = absl::StrCat("127.0.0.1:", FreePort()); }

  void StartServer() {
    ASSERT_TRUE(server_.Start({ServerBinary(), "--plaintext", "--config",
                               std::string(SLUICE_SOURCE_DIR) + "/deploy/examples", "--listen",
                               address_, "--metrics", "127.0.0.1:0"},
                              "listening "))
        << server_.error();
  }

  std::shared_ptr<DecisionClient> Client(
      absl::Duration deadline = absl::Milliseconds(500),
      const std::function<void(DecisionClient::Options&)>& configure = nullptr) {
    DecisionClient::Options options;
    options.deadline = deadline;
    options.reconnect_initial = absl::Milliseconds(20);
    options.reconnect_max = absl::Milliseconds(200);
    options.loop_keepalive = dispatcher_;
    if (configure) configure(options);
    auto client = DecisionClient::Create(
        *dispatcher_, grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()), options);
    client->Start();
    return client;
  }

  // Runs the loop until `done` or the time limit (then fails).
  void RunUntil(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(10)) {
    const absl::Time end = absl::Now() + limit;
    while (!done() && absl::Now() < end) {
      dispatcher_->RunOnce(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(done()) << "timed out";
  }

  // Stops `client` and runs the loop until gRPC has finished its stream: gRPC's last
  // callbacks post to the dispatcher, which must outlive them (Worker::Stop waits the same
  // way; the stream also holds it through Options::loop_keepalive).
  void StopClient(DecisionClient& client) {
    client.Stop();
    RunUntil([&] { return client.stream_closed(); });
  }

  event::RealTimeSource clock_;
  std::shared_ptr<event::Dispatcher> dispatcher_ = std::move(*event::Dispatcher::Create(clock_));
  std::string address_;
  testing::Process server_;
};

TEST_F(DecisionClientTest, ABurstIsAnsweredInFewMessages) {
  StartServer();
  auto client = Client();
  RunUntil([&] {
    return client->state() == DecisionClient::State::kConnecting ||
           client->state() == DecisionClient::State::kConnected;
  });
  constexpr int kRequests = 1000;
  int answered = 0, jason_on_v2 = 0, with_table = 0;
  // All issued in one turn of the loop: they must share messages.
  dispatcher_->Post([&] {
    for (int i = 0; i < kRequests; ++i) {
      client->Decide(Request(i % 2 ? "jason" : ""), [&,
                                                     i](absl::StatusOr<DecisionClient::Answer> a) {
        ASSERT_TRUE(a.ok()) << a.status();
        ++answered;
        with_table += a->table != nullptr && a->table->version() == a->decision.config_version();
        if (i % 2 && a->decision.subset() == "v2") ++jason_on_v2;
      });
    }
  });
  RunUntil([&] { return answered == kRequests; });
  EXPECT_EQ(jason_on_v2, kRequests / 2);
  EXPECT_EQ(with_table, kRequests);
  EXPECT_EQ(client->state(), DecisionClient::State::kConnected);
  EXPECT_LE(client->messages_sent(), 3u) << "requests of one loop turn were not coalesced";
  EXPECT_EQ(client->decide_requests_sent(), static_cast<uint64_t>(kRequests))
      << "every request asked once";
  EXPECT_EQ(client->reports_sent(), 0u);
  ASSERT_NE(client->latest_table(), nullptr);
  EXPECT_THAT(client->latest_table()->match_header_names(), ::testing::Contains("end-user"));
  StopClient(*client);
}

TEST_F(DecisionClientTest, NoServerMeansAQuickErrorNotAHang) {
  auto client = Client(absl::Milliseconds(300));
  absl::Status status;
  bool done = false;
  const absl::Time start = absl::Now();
  dispatcher_->Post([&] {
    client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
      status = a.status();
      done = true;
    });
  });
  RunUntil([&] { return done; });
  EXPECT_FALSE(status.ok());
  EXPECT_LE(absl::Now() - start, absl::Seconds(2));
  StopClient(*client);
}

TEST_F(DecisionClientTest, DecidesFromTheLastTableWhileTheServerIsDownAndReconnects) {
  StartServer();
  auto client = Client();
  bool first = false;
  dispatcher_->Post([&] {
    client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
      ASSERT_TRUE(a.ok()) << a.status();
      EXPECT_EQ(a->source, DecisionSource::kServer);
      first = true;
    });
  });
  RunUntil([&] { return first; });
  EXPECT_GT(client->table_version(), 0u) << "the server pushes its table on connect";

  server_.Stop();
  RunUntil([&] { return client->state() == DecisionClient::State::kDisconnected; });
  EXPECT_TRUE(client->stale());
  bool answered = false;
  client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->source, DecisionSource::kStale);
    EXPECT_EQ(a->decision.action(), v1::FORWARD);
    EXPECT_EQ(a->decision.host(), "reviews.default.svc.cluster.local");
    answered = true;
  });
  EXPECT_TRUE(answered) << "a request while disconnected is decided at once from the table";

  StartServer();
  bool again = false;
  RunUntil([&] {
    if (client->state() == DecisionClient::State::kConnected && !again) {
      client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
        again = a.ok() && a->source == DecisionSource::kServer;
      });
    }
    return again;
  });
  EXPECT_FALSE(client->stale());
  StopClient(*client);
}

TEST_F(DecisionClientTest, PastTheMaxTableAgeARequestFailsAtOnce) {
  StartServer();
  auto client = Client(absl::Milliseconds(500),
                       [](DecisionClient::Options& o) { o.max_table_age = absl::ZeroDuration(); });
  RunUntil([&] { return client->table_version() > 0; });
  server_.Stop();
  RunUntil([&] { return client->state() == DecisionClient::State::kDisconnected; });
  absl::Status while_down;
  bool failed = false;
  client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
    while_down = a.status();
    failed = true;
  });
  EXPECT_TRUE(failed) << "a request while disconnected must fail at once";
  EXPECT_EQ(while_down.code(), absl::StatusCode::kUnavailable);
  StopClient(*client);
}

TEST_F(DecisionClientTest, LocalModeDecidesWithoutAskingTheServer) {
  StartServer();
  auto client = Client(absl::Milliseconds(500),
                       [](DecisionClient::Options& o) { o.mode = v1::DECISION_MODE_LOCAL; });
  RunUntil([&] { return client->state() == DecisionClient::State::kConnected; });
  const uint64_t sent_before = client->messages_sent();
  int local = 0, v2 = 0;
  for (int i = 0; i < 200; ++i) {
    client->Decide(Request("jason"), [&](absl::StatusOr<DecisionClient::Answer> a) {
      ASSERT_TRUE(a.ok()) << a.status();
      if (a->source == DecisionSource::kLocal) ++local;
      if (a->decision.subset() == "v2") ++v2;
    });
  }
  EXPECT_EQ(local, 200) << "every answer comes at once, from the table";
  EXPECT_EQ(v2, 200) << "bookinfo sends end-user jason to v2";
  EXPECT_LE(client->messages_sent(), sent_before + 1) << "at most an acknowledgement went out";
  StopClient(*client);
}

// In-flight load the server counts on every endpoint of `host`.
int ServerInFlight(const std::string& address, const std::string& host) {
  auto stub =
      v1::AdminService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ListEndpointsRequest request;
  request.set_host(host);
  v1::ListEndpointsResponse response;
  if (!stub->ListEndpoints(&context, request, &response).ok()) return -1;
  int total = 0;
  for (const auto& cluster : response.clusters()) {
    for (const auto& e : cluster.endpoints()) total += e.in_flight();
  }
  return total;
}

// A decision that comes after its request was answered from the table (the server was
// stalled past the deadline) is reported NOT_SENT, so the server's in-flight count of the
// endpoint it chose goes back down; and requests expired while waiting are not sent at all.
TEST_F(DecisionClientTest, LateDecisionsAreReportedSoTheServerReleasesTheirLoad) {
  StartServer();
  auto client = Client(absl::Milliseconds(100));
  RunUntil([&] { return client->state() == DecisionClient::State::kConnected; });
  ASSERT_EQ(kill(server_.pid(), SIGSTOP), 0);
  ASSERT_TRUE(testing::WaitForProcessState(server_.pid(), 'T')) << "the server never stopped";
  int answered = 0, stale = 0;
  for (int i = 0; i < 20; ++i) {
    client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
      ASSERT_TRUE(a.ok()) << a.status();
      ++answered;
      stale += a->source == DecisionSource::kStale;
    });
  }
  RunUntil([&] { return answered == 20; });
  EXPECT_EQ(stale, 20) << "a stalled server: every answer came from the table at the deadline";
  ASSERT_EQ(kill(server_.pid(), SIGCONT), 0);
  // The server now decides the 20 requests it had queued, counting each as load, and the
  // client reports each late decision.
  RunUntil([&] { return client->late_decisions() == 20; });
  RunUntil([&] { return ServerInFlight(address_, "reviews") == 0; });
  EXPECT_EQ(ServerInFlight(address_, "reviews"), 0);
  StopClient(*client);
}

TEST_F(DecisionClientTest, ReportsReleaseInFlightLoad) {
  StartServer();
  // A generous deadline, asked once the stream is up: the decisions must come from the
  // server (a loaded machine under ThreadSanitizer can take longer than 500 ms to connect).
  auto client = Client(absl::Seconds(5));
  RunUntil([&] { return client->table_version() > 0; });
  std::vector<v1::Decision> decisions;
  dispatcher_->Post([&] {
    for (int i = 0; i < 10; ++i) {
      client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
        ASSERT_TRUE(a.ok());
        decisions.push_back(a->decision);
      });
    }
  });
  RunUntil([&] { return decisions.size() == 10; });
  for (const v1::Decision& d : decisions) client->Report(FinalResponse(d));
  // Reports need no answer; they are written by the next flush.
  const uint64_t before = client->messages_sent();
  RunUntil([&] { return client->messages_sent() > before; });
  EXPECT_EQ(client->reports_sent(), 10u) << "the ten reports, in the next message";
  const std::string metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
  StopClient(*client);
  RunUntil([&] {
    return testing::HttpGet(server_.Field("metrics"), "/metrics")
               .find("sluice_attempt_reports_total{outcome=\"response\"} 10") != std::string::npos;
  });
}

// The server's cost is per message: reports that would travel alone wait for company (the
// report delay), and ride at once with a decision that goes.
TEST_F(DecisionClientTest, ReportsAloneWaitForCompanyAndRideWithDecisions) {
  StartServer();
  auto client = Client(absl::Seconds(5),
                       [](DecisionClient::Options& o) { o.report_delay = absl::Seconds(1); });
  RunUntil([&] { return client->table_version() > 0; });
  std::vector<v1::Decision> decisions;
  auto decide = [&](int n) {
    for (int i = 0; i < n; ++i) {
      client->Decide(Request(), [&](absl::StatusOr<DecisionClient::Answer> a) {
        ASSERT_TRUE(a.ok());
        decisions.push_back(a->decision);
      });
    }
  };
  dispatcher_->Post([&] { decide(4); });
  RunUntil([&] { return decisions.size() == 4; });
  auto report = [&](const v1::Decision& d) { client->Report(FinalResponse(d)); };
  // Three reports on three turns of the loop: one message, after the delay.
  const uint64_t messages = client->messages_sent();
  const uint64_t reports = client->reports_sent();
  for (int i = 0; i < 3; ++i) {
    report(decisions[i]);
    dispatcher_->RunOnce(std::chrono::milliseconds(0));
  }
  EXPECT_EQ(client->messages_sent(), messages) << "not one message per turn";
  RunUntil([&] { return client->reports_sent() == reports + 3; });
  EXPECT_EQ(client->messages_sent(), messages + 1) << "the three together";

  // A report waiting when a decision goes rides with it, without waiting for the delay.
  report(decisions[3]);
  dispatcher_->Post([&] { decide(1); });
  RunUntil([&] { return decisions.size() == 5; }, absl::Milliseconds(900));
  EXPECT_EQ(client->reports_sent(), reports + 4);
  StopClient(*client);
}

}  // namespace
}  // namespace sluice::gateway
