// sluice-server as a real process on a loopback port chosen by the kernel, driven over
// real gRPC: decisions (unary and streamed), administration, persistence, file reloads,
// health, reflection and metrics; and with real gateways, what sluicectl gateways shows.

#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "protos/grpc/health/v1/health.grpc.pb.h"
#include "protos/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "sluice/v1/decision.grpc.pb.h"
#include "tests/integration/process.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

constexpr char kConfig[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19082}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 19083}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
)";

std::string AllToV3(int weight_v3) {
  return absl::StrCat(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: )",
                      100 - weight_v3, R"(
    - destination: {host: reviews, subset: v3}
      weight: )",
                      weight_v3, "\n");
}

v1::DecideRequest Request(uint64_t id, const std::string& user = "") {
  v1::DecideRequest r;
  r.set_id(id);
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

class ServerTest : public ::testing::Test {
 protected:
  // Starts sluice-server on loopback port 0 with the config files in `config_dir_`.
  void StartServer(const std::string& config = kConfig, std::vector<std::string> extra = {}) {
    if (!config.empty()) config_dir_.Write("config/reviews.yaml", config);
    std::vector<std::string> argv = {
        SLUICE_SERVER_BINARY, "--plaintext",     "--config", config_dir_.path() + "/config",
        "--state-dir",        state_dir_.path(), "--listen", "127.0.0.1:0",
        "--metrics",          "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(server_.Start(argv, "listening ")) << server_.error();
    channel_ = grpc::CreateChannel(server_.Field("grpc"), grpc::InsecureChannelCredentials());
    decisions_ = v1::DecisionService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }

  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }

  v1::Decision Decide(const v1::DecideRequest& request, grpc::Status* status = nullptr) {
    v1::Decision out;
    grpc::Status s = decisions_->Decide(Ctx().get(), request, &out);
    if (status != nullptr)
      *status = s;
    else
      EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  v1::ApplyResponse Apply(const std::string& yaml, const std::string& name = "change.yaml") {
    v1::ApplyRequest request;
    v1::ApplyFile* f = request.add_files();
    f->set_name(name);
    f->set_yaml(yaml);
    v1::ApplyResponse response;
    grpc::Status s = admin_->Apply(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  std::map<std::string, int> SubsetCounts(int n) {
    std::map<std::string, int> counts;
    for (int i = 0; i < n; ++i) ++counts[Decide(Request(i)).subset()];
    return counts;
  }

  int TotalInFlight() {
    v1::ListEndpointsRequest request;
    request.set_host("reviews");
    v1::ListEndpointsResponse response;
    EXPECT_TRUE(admin_->ListEndpoints(Ctx().get(), request, &response).ok());
    int total = 0;
    for (const auto& c : response.clusters()) {
      for (const auto& e : c.endpoints()) total += e.in_flight();
    }
    return total;
  }

  testing::TempDir config_dir_;
  testing::TempDir state_dir_;
  testing::TempDir dir_;  // scratch files
  testing::Process server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> decisions_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(ServerTest, UnaryDecideRoutesAsTheVirtualServiceSays) {
  StartServer();
  const v1::Decision jason = Decide(Request(7, "jason"));
  EXPECT_EQ(jason.id(), 7u);
  EXPECT_EQ(jason.action(), v1::FORWARD);
  EXPECT_EQ(jason.subset(), "v2");
  EXPECT_EQ(jason.details().route_name(), "jason");
  EXPECT_EQ(jason.details().endpoint().port(), 19082u);
  EXPECT_EQ(jason.config_version(), 1u);

  const std::map<std::string, int> counts = SubsetCounts(400);
  EXPECT_EQ(counts.count("v2"), 0u);
  // 50/50 over 400: sigma 10, so 140..260 is a 6-sigma band.
  EXPECT_GT(counts.at("v1"), 140);
  EXPECT_GT(counts.at("v3"), 140);
}

TEST_F(ServerTest, UnknownHostIsANoRouteDecisionNotAnError) {
  StartServer();
  v1::DecideRequest r = Request(1);
  r.set_authority("nowhere.example.com");
  grpc::Status status;
  const v1::Decision d = Decide(r, &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(d.action(), v1::DIRECT_RESPONSE);
  EXPECT_EQ(d.status(), 404u);
  EXPECT_EQ(d.response_flags(), "NR");
}

TEST_F(ServerTest, MalformedRequestsAreInvalidArgumentWithTheReason) {
  StartServer();
  struct Row {
    const char* name;
    std::function<void(v1::DecideRequest&)> spoil;
    const char* reason;
  };
  const std::vector<Row> rows = {
      {"empty authority", [](v1::DecideRequest& r) { r.clear_authority(); }, "authority"},
      {"relative path", [](v1::DecideRequest& r) { r.set_path("reviews"); }, "path"},
      {"too many headers",
       [](v1::DecideRequest& r) {
         for (int i = 0; i < 150; ++i) r.add_headers()->set_name(absl::StrCat("x-", i));
       },
       "headers"},
      {"oversized header",
       [](v1::DecideRequest& r) {
         v1::Header* h = r.add_headers();
         h->set_name("x-big");
         h->set_value(std::string(70000, 'a'));
       },
       "bytes"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::DecideRequest r = Request(1);
    row.spoil(r);
    grpc::Status status;
    Decide(r, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr(row.reason));
  }
}

// Many requests in flight on two streams at once: every one answered exactly once by id,
// after a route table that resolves what the decisions refer to.
TEST_F(ServerTest, StreamsAnswerHundredsOfRequestsInFlightById) {
  StartServer();
  constexpr int kStreams = 2;
  constexpr int kMessages = 40;
  constexpr int kPerMessage = 10;  // 400 requests per stream, sent without waiting
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kStreams);
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      auto stream = decisions_->Stream(&ctx);
      std::set<uint64_t> sent;
      for (int m = 0; m < kMessages; ++m) {
        v1::GatewayMessage msg;
        for (int i = 0; i < kPerMessage; ++i) {
          const uint64_t id = (static_cast<uint64_t>(s) << 32) | (m * kPerMessage + i);
          *msg.add_decide() = Request(id, i % 4 == 0 ? "jason" : "");
          sent.insert(id);
        }
        if (!stream->Write(msg)) {
          failures[s] = "write failed";
          return;
        }
      }
      std::set<uint64_t> answered;
      v1::RouteTable table;
      v1::ServerMessage in;
      while (answered.size() < sent.size() && stream->Read(&in)) {
        if (in.has_table()) table = in.table();
        for (const v1::Decision& d : in.decisions()) {
          if (!answered.insert(d.id()).second) failures[s] += "duplicate answer; ";
          if (table.version() != d.config_version()) failures[s] += "decision before table; ";
          if (d.cluster_id() >= static_cast<uint32_t>(table.clusters_size())) {
            failures[s] += "cluster id outside the table; ";
            continue;
          }
          const v1::ClusterInfo& c = table.clusters(d.cluster_id());
          const bool jason = (d.id() & 0xffffffff) % kPerMessage % 4 == 0;
          if (c.subset() != d.subset() || (jason && d.subset() != "v2") ||
              d.endpoint_index() >= static_cast<uint32_t>(c.endpoints_size())) {
            failures[s] += absl::StrCat("decision ", d.id(), " resolves wrongly; ");
          }
        }
      }
      if (answered != sent)
        failures[s] += absl::StrCat("answered ", answered.size(), " of ", sent.size());
      stream->WritesDone();
      grpc::Status st = stream->Finish();
      if (!st.ok()) failures[s] += st.error_message();
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < kStreams; ++s) EXPECT_EQ(failures[s], "") << "stream " << s;
}

// In flight = decided over a stream and not yet reported; a closed stream releases its own.
TEST_F(ServerTest, InFlightCountsFollowReportsAndStreamEnds) {
  StartServer();
  grpc::ClientContext ctx;
  auto stream = decisions_->Stream(&ctx);
  v1::GatewayMessage msg;
  for (int i = 0; i < 20; ++i) *msg.add_decide() = Request(i);
  ASSERT_TRUE(stream->Write(msg));
  std::vector<v1::Decision> decisions;
  v1::ServerMessage in;
  while (decisions.size() < 20 && stream->Read(&in)) {
    for (const auto& d : in.decisions()) decisions.push_back(d);
  }
  ASSERT_EQ(decisions.size(), 20u);
  EXPECT_EQ(TotalInFlight(), 20);

  v1::GatewayMessage reports;
  for (int i = 0; i < 15; ++i) {
    v1::AttemptReport* r = reports.add_reports();
    r->set_id(decisions[i].id());
    r->set_attempt(1);
    r->set_outcome(v1::RESPONSE);
    r->set_status_code(200);
    r->set_final(true);
  }
  ASSERT_TRUE(stream->Write(reports));
  // Reports carry no answer; poll the admin API until they are counted (bounded).
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (TotalInFlight() != 5 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(TotalInFlight(), 5);

  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  const absl::Time closed_deadline = absl::Now() + absl::Seconds(5);
  while (TotalInFlight() != 0 && absl::Now() < closed_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(TotalInFlight(), 0);
}

TEST_F(ServerTest, MalformedStreamRequestIsAnsweredWithoutEndingTheStream) {
  StartServer();
  grpc::ClientContext ctx;
  auto stream = decisions_->Stream(&ctx);
  v1::GatewayMessage msg;
  *msg.add_decide() = Request(1);
  msg.add_decide()->set_id(2);  // no authority, no path
  *msg.add_decide() = Request(3);
  ASSERT_TRUE(stream->Write(msg));
  std::map<uint64_t, v1::Decision> answers;
  v1::ServerMessage in;
  while (answers.size() < 3 && stream->Read(&in)) {
    for (const auto& d : in.decisions()) answers[d.id()] = d;
  }
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[1].action(), v1::FORWARD);
  EXPECT_EQ(answers[2].status(), 400u);
  EXPECT_THAT(answers[2].body(), HasSubstr("authority"));
  EXPECT_EQ(answers[3].action(), v1::FORWARD);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// A GatewayMessage with more than any gateway batches ends its stream with the reason and
// the limits; nothing in it is decided, and other streams go on.
TEST_F(ServerTest, AnOversizedGatewayMessageEndsItsStreamNamingTheLimit) {
  StartServer();
  grpc::ClientContext ctx;
  auto stream = decisions_->Stream(&ctx);
  v1::GatewayMessage msg;
  for (int i = 0; i < 8193; ++i) *msg.add_decide() = Request(i + 1);
  ASSERT_TRUE(stream->Write(msg));
  stream->WritesDone();
  v1::ServerMessage in;
  int decided = 0;
  while (stream->Read(&in)) decided += in.decisions_size();
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("8193 decide requests and 0 reports: the limits are 8192 and 32768"));
  EXPECT_EQ(decided, 0);
  EXPECT_EQ(Decide(Request(1)).action(), v1::FORWARD) << "the server serves on";
}

TEST_F(ServerTest, InvalidApplyChangesNothingAndTheOldConfigKeepsServing) {
  StartServer();
  const v1::ApplyResponse bad = Apply(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
    retries:
      attempts: 3
      perTryTimeout: 0.5ms
)",
                                      "reviews-v3.yaml");
  EXPECT_FALSE(bad.applied());
  EXPECT_EQ(bad.version(), 1u);
  ASSERT_GE(bad.diagnostics_size(), 1);
  EXPECT_EQ(bad.diagnostics(0).text(),
            "reviews-v3.yaml:11: spec.http[0].retries.perTryTimeout: must be at least 1ms");
  // Still the original routes: jason to v2, the rest split.
  EXPECT_EQ(Decide(Request(1, "jason")).subset(), "v2");
  EXPECT_EQ(Decide(Request(2, "jason")).config_version(), 1u);

  const v1::ApplyResponse good = Apply(AllToV3(100));
  ASSERT_TRUE(good.applied());
  EXPECT_EQ(good.version(), 2u);
  EXPECT_THAT(good.changed(), ::testing::ElementsAre("VirtualService/default/reviews"));
  const std::map<std::string, int> counts = SubsetCounts(50);
  EXPECT_EQ(counts.at("v3"), 50);
}

TEST_F(ServerTest, DryRunValidatesWithoutApplying) {
  StartServer();
  v1::ApplyRequest request;
  request.set_dry_run(true);
  v1::ApplyFile* f = request.add_files();
  f->set_name("v3.yaml");
  f->set_yaml(AllToV3(100));
  v1::ApplyResponse response;
  ASSERT_TRUE(admin_->Apply(Ctx().get(), request, &response).ok());
  EXPECT_FALSE(response.applied());
  EXPECT_EQ(response.diagnostics_size(), 0);
  EXPECT_EQ(Decide(Request(1)).config_version(), 1u);
}

TEST_F(ServerTest, AppliedConfigurationSurvivesARestart) {
  StartServer();
  ASSERT_TRUE(Apply(AllToV3(100)).applied());
  ASSERT_EQ(server_.Stop(), 0) << server_.Log();

  StartServer("");  // same config files and state directory
  v1::GetRequest get;
  get.mutable_ref()->set_kind("VirtualService");
  get.mutable_ref()->set_name("reviews");
  v1::GetResponse got;
  ASSERT_TRUE(admin_->Get(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.resource().source(), "applied");
  EXPECT_THAT(got.resource().yaml(), HasSubstr("weight: 100"));
  const v1::Decision d = Decide(Request(1));
  EXPECT_EQ(d.subset(), "v3");
  // Versions never go back: the restart compiles version 3 from version 2's state.
  EXPECT_EQ(d.config_version(), 3u);
}

TEST_F(ServerTest, DeleteRemovesAppliedResourcesButNotFileOnes) {
  StartServer();
  ASSERT_TRUE(Apply(AllToV3(100)).applied());
  v1::DeleteRequest del;
  del.mutable_ref()->set_kind("VirtualService");
  del.mutable_ref()->set_name("reviews");
  v1::DeleteResponse response;
  ASSERT_TRUE(admin_->Delete(Ctx().get(), del, &response).ok());
  // The file's VirtualService is back in force.
  EXPECT_EQ(Decide(Request(1, "jason")).subset(), "v2");
  grpc::Status again = admin_->Delete(Ctx().get(), del, &response);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(again.error_message(), HasSubstr("configuration file"));
}

TEST_F(ServerTest, ChangedFilesAreReloadedAndInvalidOnesIgnored) {
  StartServer(kConfig, {"--reload-interval", "50ms"});
  std::string edited = kConfig;
  edited.replace(edited.find("weight: 50"), 10, "weight: 0 ");
  config_dir_.Write("config/reviews.yaml", edited);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Decide(Request(1)).config_version() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(Decide(Request(1)).config_version(), 2u);
  EXPECT_EQ(SubsetCounts(30).at("v3"), 30);

  config_dir_.Write("config/reviews.yaml", "apiVersion: networking.istio.io/v1\nkind: [\n");
  // Give the watcher several intervals; the bad file must not replace version 2.
  const absl::Time settle = absl::Now() + absl::Seconds(1);
  std::string metrics;
  while (absl::Now() < settle &&
         !absl::StrContains(metrics, "sluice_config_apply_errors_total{source=\"file\"} 1")) {
    metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(metrics, HasSubstr("sluice_config_apply_errors_total{source=\"file\"} 1"));
  EXPECT_EQ(Decide(Request(1)).config_version(), 2u);
  EXPECT_THAT(server_.Log(), HasSubstr("reviews.yaml:3: invalid YAML"));
}

TEST_F(ServerTest, HealthServiceSaysServing) {
  StartServer();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const char* service : {"", "sluice.v1.DecisionService"}) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(Ctx().get(), request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST_F(ServerTest, ReflectionListsTheServices) {
  StartServer();
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  grpc::ClientContext ctx;
  auto stream = reflection->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, IsSupersetOf({"sluice.v1.DecisionService", "sluice.v1.AdminService",
                                   "grpc.health.v1.Health"}));
  stream->WritesDone();
  stream->Finish();
}

TEST_F(ServerTest, MetricsCountDecisionsByRouteAndSubset) {
  StartServer();
  for (int i = 0; i < 5; ++i) Decide(Request(i, "jason"));
  v1::DecideRequest nowhere = Request(9);
  nowhere.set_authority("nowhere");
  Decide(nowhere);
  const std::string metrics = testing::HttpGet(server_.Field("metrics"), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("sluice_config_version 1"));
  EXPECT_THAT(metrics,
              HasSubstr("sluice_decisions_total{fault=\"none\",host=\"reviews.default.svc.cluster."
                        "local\",response_flags=\"-\",route=\"jason\",subset=\"v2\"} 5"));
  EXPECT_THAT(metrics, HasSubstr("host=\"unknown\",response_flags=\"NR\""));
  EXPECT_THAT(metrics, HasSubstr("sluice_decision_duration_seconds_count 6"));
}

// Runs sluicectl with `args` against `server`, its output in `dir`; returns stdout and stderr
// together, the exit code in `exit_code`.
std::string RunSluicectl(const testing::TempDir& dir, const std::string& server,
                         const std::string& args, int* exit_code) {
  const std::string out = dir.path() + "/ctl.out";
  const std::string command = absl::StrCat(SLUICECTL_BINARY, " --plaintext ", args, " --server ",
                                           server, " > ", out, " 2>&1");
  const int status = std::system(command.c_str());
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The peak resident set of process `pid` in bytes (VmHWM), or -1.
int64_t PeakRss(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmHWM:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    int64_t kb = 0;
    if (absl::SimpleAtoi(rest, &kb)) return kb * 1024;
  }
  return -1;
}

// Calls `method` with `request` as raw bytes, as a client that does not use the .proto (or
// a broken one) could: what the server answers to input its generated code cannot parse.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::Slice slice(request);
  grpc::ByteBuffer send(&slice, 1);
  grpc::ByteBuffer received;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &send, &received,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

// A length-delimited protobuf field, for writing messages by hand.
std::string WireField(int number, const std::string& bytes) {
  std::string out(1, static_cast<char>(number << 3 | 2));
  for (uint64_t n = bytes.size(); true; n >>= 7) {
    if (n < 0x80) {
      out.push_back(static_cast<char>(n));
      break;
    }
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  return out + bytes;
}

// About `bytes` of valid YAML: ServiceEntries of one endpoint each.
std::string ManyServiceEntries(size_t bytes) {
  std::string yaml;
  for (int i = 0; yaml.size() < bytes; ++i) {
    absl::StrAppend(&yaml, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n",
                    "metadata:\n  name: svc-", i, "\n  labels: {team: payments}\nspec:\n",
                    "  hosts: [svc-", i, "]\n  ports:\n  - {number: 8080, name: http}\n",
                    "  endpoints:\n  - {address: 10.0.", i / 250 % 250, ".", i % 250 + 1,
                    ", ports: {http: 8080}, labels: {version: v1}}\n");
  }
  return yaml;
}

// 20 MB of YAML, well past the default --max-apply-bytes (16 MiB): sluicectl refuses it
// before sending and says which limit; a client that sends it anyway is refused with
// RESOURCE_EXHAUSTED naming the limit before anything parses it; the server keeps its
// version and its memory.
TEST_F(ServerTest, AnApplyOverTheSizeLimitIsRefusedNamingTheLimit) {
  StartServer();
  const std::string big = dir_.Write("big.yaml", ManyServiceEntries(20 * 1000 * 1000));
  const std::string grpc_address = server_.Field("grpc");

  int exit_code = 0;
  std::string out = RunSluicectl(dir_, grpc_address, absl::StrCat("apply -f ", big), &exit_code);
  EXPECT_NE(exit_code, 0) << out;
  EXPECT_THAT(out, HasSubstr("of YAML exceeds the server's limit of 16 MiB (--max-apply-bytes)"));

  // Told to send up to 64 MiB, sluicectl sends it; the server refuses and sluicectl says why.
  out = RunSluicectl(dir_, grpc_address, absl::StrCat("apply -f ", big, " --max-apply-bytes 64m"),
                     &exit_code);
  EXPECT_NE(exit_code, 0) << out;
  EXPECT_THAT(out, HasSubstr("of YAML exceeds the server's limit of 16 MiB (--max-apply-bytes)"));

  // What the server answers a client that sends it anyway.
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto unlimited =
      grpc::CreateCustomChannel(grpc_address, grpc::InsecureChannelCredentials(), args);
  v1::ApplyRequest request;
  v1::ApplyFile* file = request.add_files();
  file->set_name("big.yaml");
  file->set_yaml(ManyServiceEntries(20 * 1000 * 1000));
  v1::ApplyResponse response;
  const grpc::Status status =
      v1::AdminService::NewStub(unlimited)->Apply(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr("of YAML exceeds the server's limit of 16 MiB (--max-apply-bytes)"));

  EXPECT_EQ(Decide(Request(1)).config_version(), 1u);
  EXPECT_EQ(Decide(Request(2, "jason")).subset(), "v2");
  const int64_t peak = PeakRss(server_.pid());
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, 200 << 20) << "the server's peak resident set";
}

TEST_F(ServerTest, TooManyResourcesInOneApplyAreInvalidArgumentNamingTheCountAndTheLimit) {
  ASSERT_NO_FATAL_FAILURE(StartServer(kConfig, {"--max-apply-resources", "3"}));
  std::string yaml;
  for (int i = 0; i < 5; ++i) {
    absl::StrAppend(&yaml, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n",
                    "metadata: {name: extra-", i, "}\nspec:\n  hosts: [extra-", i,
                    "]\n  ports: [{number: 80, name: http}]\n");
  }
  v1::ApplyRequest request;
  v1::ApplyFile* f = request.add_files();
  f->set_name("five.yaml");
  f->set_yaml(yaml);
  v1::ApplyResponse response;
  const grpc::Status status = admin_->Apply(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("5 resources"));
  EXPECT_THAT(status.error_message(), HasSubstr("at most 3"));
  EXPECT_THAT(status.error_message(), HasSubstr("--max-apply-resources"));
  EXPECT_EQ(Decide(Request(1)).config_version(), 1u);
  // Under the limit, applies go on as before.
  EXPECT_TRUE(Apply(AllToV3(100)).applied());
}

// An ApplyRequest whose YAML is not UTF-8 (proto3 strings must be) or that is no protobuf at
// all: INVALID_ARGUMENT saying what is wrong and where, not INTERNAL with no message.
TEST_F(ServerTest, ApplyRequestsThatCannotBeParsedAreInvalidArgumentWithTheReason) {
  StartServer();
  const std::string method = "/sluice.v1.AdminService/Apply";
  const std::string yaml = "apiVersion: networking.istio.io/v1\nkind: Virtual\xff\xfeService\n";
  grpc::Status status =
      RawCall(channel_, method, WireField(1, WireField(1, "bad.yaml") + WireField(2, yaml)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("bad.yaml:2:"));
  EXPECT_THAT(status.error_message(), HasSubstr("not valid UTF-8"));
  EXPECT_THAT(status.error_message(), HasSubstr("offset 48"));

  status = RawCall(channel_, method, WireField(1, WireField(1, "bad\xff.yaml") + WireField(2, "")));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("name is not valid UTF-8"));

  status = RawCall(channel_, method, "\xff\xff\xff\xff not a protobuf message");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("malformed"));

  // sluicectl says the same before sending.
  const std::string path = dir_.Write("latin1.yaml", yaml);
  int exit_code = 0;
  const std::string out =
      RunSluicectl(dir_, server_.Field("grpc"), absl::StrCat("apply -f ", path), &exit_code);
  EXPECT_EQ(exit_code, 1) << out;
  EXPECT_THAT(out, HasSubstr("latin1.yaml:2: not valid UTF-8")) << out;
  EXPECT_EQ(Decide(Request(1)).config_version(), 1u);
}

// sluicectl gateways against real gateways: two sluice-gateway processes of two workers each,
// one deciding locally and one asking the server, on deploy/examples.
class GatewaysServerTest : public ::testing::Test {
 protected:
  struct Row {
    std::string name, mode, version;  // version: "acked/sent"
    bool behind = false;
    std::string propagation;
  };
  struct Listing {
    std::string first_line;
    std::vector<Row> rows;
  };

  void SetUp() override {
    ASSERT_TRUE(
        server_.Start({SLUICE_SERVER_BINARY, "--plaintext", "--config",
                       absl::StrCat(SLUICE_SOURCE_DIR, "/deploy/examples"), "--state-dir",
                       state_dir_.path(), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
                      "listening "))
        << server_.error();
    grpc_ = server_.Field("grpc");
  }

  void StartGateway(testing::Process& gateway, const std::string& name, const std::string& mode) {
    ASSERT_TRUE(gateway.Start(
        {SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0", "--decision", grpc_,
         "--metrics", "127.0.0.1:0", "--name", name, "--workers", "2", "--decisions", mode},
        "listening "))
        << gateway.error();
    ASSERT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics")))
        << name << " never connected: " << gateway.Log();
  }

  std::string Sluicectl(const std::string& args, int* exit_code = nullptr) const {
    const std::string out = dir_.path() + "/ctl.out";
    const std::string command = absl::StrCat(SLUICECTL_BINARY, " --plaintext ", args, " --server ",
                                             grpc_, " > ", out, " 2>&1");
    const int status = std::system(command.c_str());
    if (exit_code != nullptr) *exit_code = WEXITSTATUS(status);
    std::ifstream in(out);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // `sluicectl gateways` parsed: the summary line and, per worker, the columns checked here.
  Listing Gateways(std::string* text = nullptr) const {
    int exit_code = -1;
    const std::string out = Sluicectl("gateways", &exit_code);
    if (text != nullptr) *text = out;
    Listing listing;
    EXPECT_EQ(exit_code, 0) << out;
    const std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
    if (lines.empty()) return listing;
    listing.first_line = lines[0];
    for (size_t i = 2; i < lines.size(); ++i) {  // lines[1] is the header
      const std::vector<std::string> f = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
      if (f.size() < 5) continue;
      Row row;
      row.name = f[0];
      row.mode = f[2];
      row.version = f[3];
      row.behind = f[4] == "(behind)";
      row.propagation = f[row.behind ? 5 : 4];
      listing.rows.push_back(row);
    }
    return listing;
  }

  static uint64_t ServerVersion(const Listing& listing) {
    // "server version N, M gateway workers"
    const std::vector<std::string> f = absl::StrSplit(listing.first_line, ' ');
    uint64_t version = 0;
    if (f.size() < 3 || !absl::SimpleAtoi(absl::StripSuffix(f[2], ","), &version)) return 0;
    return version;
  }

  // Polls `sluicectl gateways` (at most 10 s) until four workers acknowledged at least
  // `version` and the server's own version.
  Listing WaitForAllAcked(uint64_t version, std::string* text) const {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    Listing listing;
    while (true) {
      listing = Gateways(text);
      const uint64_t server_version = ServerVersion(listing);
      bool done = listing.rows.size() == 4 && server_version >= version;
      for (const Row& r : listing.rows) {
        done = done && !r.behind &&
               r.version.substr(0, r.version.find('/')) == absl::StrCat(server_version);
      }
      if (done || absl::Now() > give_up) return listing;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  testing::TempDir dir_;
  testing::TempDir state_dir_;
  testing::Process server_;
  testing::Process gateway_a_;
  testing::Process gateway_b_;
  std::string grpc_;
};

TEST_F(GatewaysServerTest, SluicectlGatewaysShowsEveryWorkerAcknowledgingEachVersion) {
  std::string text;
  Listing none = Gateways(&text);
  EXPECT_THAT(none.first_line, ::testing::StartsWith("server version ")) << text;
  EXPECT_THAT(none.first_line, HasSubstr(", 0 gateway workers")) << text;

  StartGateway(gateway_a_, "gw-a", "local");
  StartGateway(gateway_b_, "gw-b", "server");

  Listing listing = WaitForAllAcked(1, &text);
  const uint64_t first_version = ServerVersion(listing);
  ASSERT_GE(first_version, 1u) << text;
  EXPECT_EQ(listing.first_line,
            absl::StrCat("server version ", first_version, ", 4 gateway workers"))
      << text;
  ASSERT_EQ(listing.rows.size(), 4u) << text;
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"gw-a/0", "local"}, {"gw-a/1", "local"}, {"gw-b/0", "server"}, {"gw-b/1", "server"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(listing.rows[i].name, expected[i].first) << text;
    EXPECT_EQ(listing.rows[i].mode, expected[i].second) << text;
    EXPECT_EQ(listing.rows[i].version, absl::StrCat(first_version, "/", first_version)) << text;
    EXPECT_FALSE(listing.rows[i].behind) << text;
    EXPECT_THAT(listing.rows[i].propagation, ::testing::EndsWith("ms")) << text;
  }
  EXPECT_THAT(text, HasSubstr("NAME")) << text;
  EXPECT_THAT(text, HasSubstr("LAST REPORT")) << text;

  // A change: the reviews split of the example goes from 80/20 to 60/40.
  std::ifstream in(absl::StrCat(SLUICE_SOURCE_DIR, "/deploy/examples/bookinfo.yaml"));
  std::string yaml((std::istreambuf_iterator<char>(in)), {});
  ASSERT_NE(yaml.find("weight: 80"), std::string::npos);
  ASSERT_NE(yaml.find("weight: 20"), std::string::npos);
  yaml.replace(yaml.find("weight: 80"), 10, "weight: 60");
  yaml.replace(yaml.find("weight: 20"), 10, "weight: 40");
  const std::string path = dir_.Write("bookinfo.yaml", yaml);
  int exit_code = -1;
  const std::string applied = Sluicectl(absl::StrCat("apply -f ", path), &exit_code);
  ASSERT_EQ(exit_code, 0) << applied;
  const size_t at = applied.find("configuration version ");
  ASSERT_NE(at, std::string::npos) << applied;
  uint64_t new_version = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      absl::StripAsciiWhitespace(applied.substr(at + std::strlen("configuration version "))),
      &new_version))
      << applied;
  ASSERT_GT(new_version, first_version);

  listing = WaitForAllAcked(new_version, &text);
  ASSERT_EQ(listing.rows.size(), 4u) << text;
  const uint64_t server_version = ServerVersion(listing);
  EXPECT_GE(server_version, new_version) << text;
  for (const Row& r : listing.rows) {
    EXPECT_EQ(r.version, absl::StrCat(server_version, "/", server_version)) << text;
    EXPECT_FALSE(r.behind) << text;
    EXPECT_THAT(r.propagation, ::testing::EndsWith("ms")) << text;
  }

  // -o json: the ListGatewaysResponse, field names as in the .proto like every -o json.
  const std::string json = Sluicectl("gateways -o json", &exit_code);
  ASSERT_EQ(exit_code, 0) << json;
  EXPECT_THAT(json, HasSubstr("\"table_version_acked\"")) << json;
  v1::ListGatewaysResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  EXPECT_GE(parsed.server_version(), new_version);
  ASSERT_EQ(parsed.streams_size(), 4) << json;
  for (const v1::GatewayStream& s : parsed.streams()) {
    EXPECT_GE(s.table_version_acked(), new_version) << s.name();
    EXPECT_EQ(s.mode(), absl::StartsWith(s.name(), "gw-a/") ? v1::DECISION_MODE_LOCAL
                                                            : v1::DECISION_MODE_SERVER)
        << s.name();
    EXPECT_GE(s.propagation_us(), 0) << s.name();
  }

  // A gateway that stops leaves the list.
  gateway_b_.Stop();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  do {
    listing = Gateways(&text);
    if (listing.rows.size() == 2) break;
    absl::SleepFor(absl::Milliseconds(100));
  } while (absl::Now() < give_up);
  ASSERT_EQ(listing.rows.size(), 2u) << text;
  EXPECT_EQ(listing.rows[0].name, "gw-a/0");
  EXPECT_EQ(listing.rows[1].name, "gw-a/1");
}

}  // namespace
}  // namespace sluice
