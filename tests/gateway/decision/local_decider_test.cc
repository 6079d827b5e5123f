// Tests for the gateway's local decider (gateway/decision/local_decider.cc): on a pushed
// DecisionTable it must decide exactly as the server does on the snapshot the table was
// encoded from, keep its own in-flight counts, follow pushed endpoint health and refuse a
// bad table without disturbing the one it has.

#include "gateway/decision/local_decider.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "lib/routing/decider.h"
#include "lib/routing/decision_proto.h"
#include "lib/routing/snapshot.h"
#include "lib/routing/table_codec.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"
#include "sluice/v1/decision.pb.h"
#include "sluice/v1/table.pb.h"

namespace sluice::gateway {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// shop: v1 and v2 with two endpoints each, LEAST_REQUEST, outlier detection. jason goes to
// v2 (one destination: the only draws are the load balancer's two picks); everyone else is
// split 70/30. ratings: ROUND_ROBIN, no outlier detection; /teapot is a direct response.
constexpr char kConfig[] = R"yaml(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18083}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 18084}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
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
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: shop, subset: v2}
  - name: split
    route:
    - destination: {host: shop, subset: v1}
      weight: 70
    - destination: {host: shop, subset: v2}
      weight: 30
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19091}}
  - {address: 127.0.0.1, ports: {http: 19092}}
  - {address: 127.0.0.1, ports: {http: 19093}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: teapot
    match:
    - uri: {prefix: /teapot}
    directResponse: {status: 418, body: {string: teapot}}
  - name: ratings
    route:
    - destination: {host: ratings}
)yaml";

std::shared_ptr<const routing::Snapshot> Compile(const std::string& yaml, uint64_t version) {
  config::LoadResult loaded = config::LoadText(yaml, "config.yaml");
  if (!loaded.ok()) {
    ADD_FAILURE() << loaded.diagnostics.ToString();
    return nullptr;
  }
  absl::StatusOr<std::shared_ptr<const routing::Snapshot>> snapshot =
      routing::CompileSnapshot(std::move(loaded.config), version);
  if (!snapshot.ok()) {
    ADD_FAILURE() << snapshot.status();
    return nullptr;
  }
  return *std::move(snapshot);
}

v1::DecisionTable Encode(const routing::Snapshot& snapshot) {
  v1::DecisionTable table;
  routing::EncodeTable(snapshot, table);
  return table;
}

v1::DecideRequest Request(uint64_t id, const std::string& authority, const std::string& path,
                          const std::string& user = "") {
  v1::DecideRequest r;
  r.set_id(id);
  r.set_authority(authority);
  r.set_method("GET");
  r.set_scheme("http");
  r.set_path(path);
  if (!user.empty()) {
    v1::Header* h = r.add_headers();
    h->set_name("end-user");
    h->set_value(user);
  }
  return r;
}

v1::DecideRequest Jason(uint64_t id) { return Request(id, "shop:8080", "/cart", "jason"); }

const routing::Cluster& ClusterOf(const routing::Snapshot& snapshot, const std::string& subset) {
  for (const auto& c : snapshot.clusters()) {
    if (absl::StartsWith(c->host, "shop") && c->subset == subset) return *c;
  }
  ADD_FAILURE() << "no shop cluster for subset " << subset;
  return *snapshot.clusters().front();
}

v1::EndpointChange Change(const std::string& cluster, const std::string& endpoint, bool ejected) {
  v1::EndpointChange change;
  change.set_cluster(cluster);
  change.set_endpoint(endpoint);
  change.set_ejected(ejected);
  return change;
}

// A generator whose draws alternate 0 and the largest value: each least-request decision's
// two random picks among two endpoints are then the first and the second endpoint, so the
// choice depends on in-flight counts only (the first wins a tie).
class AlternatingBits {
 public:
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()() { return (odd_ = !odd_) ? min() : max(); }

 private:
  bool odd_ = false;
};

class LocalDeciderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snapshot_ = Compile(kConfig, 1);
    ASSERT_NE(snapshot_, nullptr);
    table_ = Encode(*snapshot_);
  }

  std::shared_ptr<const routing::Snapshot> snapshot_;
  v1::DecisionTable table_;
};

TEST_F(LocalDeciderTest, DecidesAsTheServerDecidesWithTheSameRandomNumbers) {
  const std::vector<v1::DecideRequest> requests = {
      Request(0, "shop:8080", "/cart"),             // weighted split, least request
      Jason(0),                                     // header match
      Request(0, "ratings:9080", "/ratings/1"),     // round robin
      Request(0, "ratings:9080", "/teapot"),        // direct response
      Request(0, "nowhere:80", "/"),                // no virtual host: 404 NR
      Request(0, "shop:8080", "no-leading-slash"),  // malformed: 400 DPE
  };
  uint64_t seed = 11;
  uint64_t id = 1;
  for (const v1::DecideRequest& base : requests) {
    std::mt19937_64 local_gen(seed);
    std::mt19937_64 server_gen(seed);
    ++seed;
    LocalDecider local{absl::BitGenRef(local_gen)};
    ASSERT_TRUE(local.Install(table_).ok());
    ASSERT_TRUE(local.has_table());
    EXPECT_EQ(local.version(), 1u);
    routing::RequestAttributes attributes;
    for (int i = 0; i < 200; ++i) {
      v1::DecideRequest request = base;
      request.set_id(id++);
      const DecisionAnswer answer = local.Decide(request, nullptr);
      // Reported at once, so the least-request counts stay at zero as on the server side.
      local.OnReport(request.id());
      EXPECT_EQ(answer.table, local.route_table());

      v1::Decision expected;
      expected.set_id(request.id());
      if (absl::Status status = routing::CheckRequest(request); !status.ok()) {
        EXPECT_EQ(answer.decision.status(), 400u);
        EXPECT_EQ(answer.decision.response_flags(), "DPE");
        EXPECT_EQ(answer.decision.config_version(), 1u);
        EXPECT_EQ(answer.decision.body(), status.message());
        continue;
      }
      routing::ToAttributes(request, attributes);
      const routing::Decision d =
          routing::Decide(*snapshot_, attributes, absl::BitGenRef(server_gen));
      routing::FillDecision(d, *snapshot_, /*details=*/false, expected);
      std::string differences;
      MessageDifferencer differencer;
      differencer.ReportDifferencesToString(&differences);
      EXPECT_TRUE(differencer.Compare(expected, answer.decision))
          << base.authority() << base.path() << " draw " << i << ": " << differences;
    }
    EXPECT_EQ(local.outstanding(), 0u);
  }
}

TEST_F(LocalDeciderTest, DecisionsOfTheSplitCoverBothSubsetsAndEveryEndpoint) {
  std::mt19937_64 gen(5);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  std::set<std::string> seen;
  for (uint64_t id = 1; id <= 400; ++id) {
    const DecisionAnswer a = local.Decide(Request(id, "shop:8080", "/"), nullptr);
    local.OnReport(id);
    ASSERT_EQ(a.decision.action(), v1::FORWARD);
    seen.insert(absl::StrCat(a.decision.subset(), "/", a.decision.endpoint_index()));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"v1/0", "v1/1", "v2/0", "v2/1"}));
}

// A recycled decision's message carries the answer: the same answer as a fresh one (none of
// the spent decision's fields survive), in the spent message's string buffers, and the
// recycled message is left empty.
TEST_F(LocalDeciderTest, ARecycledDecisionCarriesTheSameAnswerInItsOwnBuffers) {
  std::mt19937_64 fresh_gen(9), recycled_gen(9);
  LocalDecider fresh{absl::BitGenRef(fresh_gen)};
  LocalDecider recycling{absl::BitGenRef(recycled_gen)};
  ASSERT_TRUE(fresh.Install(table_).ok());
  ASSERT_TRUE(recycling.Install(table_).ok());
  v1::Decision spent;
  for (uint64_t id = 1; id <= 50; ++id) {
    const v1::DecideRequest request = Request(id, "shop:8080", "/");
    const DecisionAnswer expected = fresh.Decide(request, nullptr);
    // The spent decision has fields the answer must not keep.
    spent.set_body("from an older answer");
    spent.set_location("/elsewhere");
    const std::string* host_buffer = &spent.host();
    const bool had_host = !spent.host().empty();
    DecisionAnswer answer = recycling.Decide(request, nullptr, &spent);
    EXPECT_TRUE(MessageDifferencer::Equals(answer.decision, expected.decision))
        << answer.decision.DebugString() << " vs " << expected.decision.DebugString();
    if (had_host) EXPECT_EQ(&answer.decision.host(), host_buffer);  // the same string object
    EXPECT_EQ(spent.ByteSizeLong(), 0u);
    fresh.OnReport(id);
    recycling.OnReport(id);
    spent.Swap(&answer.decision);  // the caller hands it back after its request
  }
}

TEST_F(LocalDeciderTest, RouteTableIsTheServersRouteTable) {
  std::mt19937_64 gen(1);
  LocalDecider local{absl::BitGenRef(gen)};
  EXPECT_FALSE(local.has_table());
  EXPECT_EQ(local.version(), 0u);
  ASSERT_TRUE(local.Install(table_).ok());
  ASSERT_NE(local.route_table(), nullptr);
  v1::RouteTable expected;
  routing::FillRouteTable(*snapshot_, expected);
  EXPECT_FALSE(expected.match_header_names().empty());
  std::string differences;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  differencer.TreatAsSet(v1::RouteTable::descriptor()->FindFieldByName("match_header_names"));
  EXPECT_TRUE(differencer.Compare(expected, *local.route_table())) << differences;
}

TEST_F(LocalDeciderTest, DecisionsCountInFlightUntilTheirFirstReport) {
  AlternatingBits bits;
  LocalDecider local{absl::BitGenRef(bits)};
  ASSERT_TRUE(local.Install(table_).ok());

  const v1::Decision first = local.Decide(Jason(1), nullptr).decision;
  ASSERT_EQ(first.action(), v1::FORWARD);
  EXPECT_EQ(local.outstanding(), 1u);
  // Decision 1 is not reported: its endpoint has one request in flight, the other none.
  const v1::Decision second = local.Decide(Jason(2), nullptr).decision;
  ASSERT_EQ(second.action(), v1::FORWARD);
  EXPECT_EQ(second.cluster_id(), first.cluster_id());
  EXPECT_NE(second.endpoint_index(), first.endpoint_index());
  EXPECT_EQ(local.outstanding(), 2u);

  // Reporting 1 (twice: only its first report counts) frees the first endpoint again; the
  // second still has decision 2 in flight.
  local.OnReport(1);
  local.OnReport(1);
  EXPECT_EQ(local.outstanding(), 1u);
  const v1::Decision third = local.Decide(Jason(3), nullptr).decision;
  EXPECT_EQ(third.endpoint_index(), first.endpoint_index());
  local.OnReport(3);

  // Decision 2 released twice must not make its endpoint look less loaded than idle: with
  // both at zero the tie goes to the first pick.
  local.OnReport(2);
  local.OnReport(2);
  local.OnReport(99);  // unknown ids are ignored
  EXPECT_EQ(local.outstanding(), 0u);
  const v1::Decision fourth = local.Decide(Jason(4), nullptr).decision;
  EXPECT_EQ(fourth.endpoint_index(), first.endpoint_index());
  local.OnReport(4);
  const v1::Decision fifth = local.Decide(Jason(5), nullptr).decision;
  EXPECT_EQ(fifth.endpoint_index(), first.endpoint_index());
}

TEST_F(LocalDeciderTest, AReusedIdStopsCountingTheOlderDecision) {
  AlternatingBits bits;
  LocalDecider local{absl::BitGenRef(bits)};
  ASSERT_TRUE(local.Install(table_).ok());
  const v1::Decision first = local.Decide(Jason(7), nullptr).decision;
  const v1::Decision second = local.Decide(Jason(7), nullptr).decision;
  // The first decision's count ended when its id was reused; the second's stands.
  EXPECT_NE(second.endpoint_index(), first.endpoint_index());
  EXPECT_EQ(local.outstanding(), 1u);
  const v1::Decision third = local.Decide(Jason(8), nullptr).decision;
  EXPECT_EQ(third.endpoint_index(), first.endpoint_index());
}

TEST_F(LocalDeciderTest, EveryEndpointEjectedIsNoHealthyUpstreamWithAReport) {
  std::mt19937_64 gen(3);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  const routing::Cluster& v2 = ClusterOf(*snapshot_, "v2");
  ASSERT_EQ(v2.endpoints.size(), 2u);
  for (const routing::Endpoint& e : v2.endpoints) local.Apply(Change(v2.name, e.id, true));

  std::optional<v1::AttemptReport> report;
  const v1::Decision d = local.Decide(Jason(21), &report).decision;
  EXPECT_EQ(d.id(), 21u);
  EXPECT_EQ(d.action(), v1::DIRECT_RESPONSE);
  EXPECT_EQ(d.status(), 503u);
  EXPECT_EQ(d.response_flags(), "UH");
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->id(), 21u);
  EXPECT_EQ(report->config_version(), 1u);
  EXPECT_EQ(report->cluster_id(), v2.id);
  EXPECT_EQ(report->outcome(), v1::NO_HEALTHY_UPSTREAM);
  EXPECT_EQ(report->status_code(), 503u);
  EXPECT_EQ(report->response_flags(), "UH");
  EXPECT_TRUE(report->final());
  EXPECT_EQ(local.outstanding(), 0u);
  // Without a place for the report the decision is the same.
  EXPECT_EQ(local.Decide(Jason(22), nullptr).decision.response_flags(), "UH");

  // v1 is untouched.
  std::optional<v1::AttemptReport> none;
  const v1::Decision other = local.Decide(Request(23, "shop:8080", "/", "bob"), &none).decision;
  if (other.subset() == "v1") {
    EXPECT_EQ(other.action(), v1::FORWARD);
    EXPECT_FALSE(none.has_value());
  }

  // One endpoint returns: jason's requests go to it.
  local.Apply(Change(v2.name, v2.endpoints[1].id, false));
  for (uint64_t id = 30; id < 40; ++id) {
    std::optional<v1::AttemptReport> r;
    const v1::Decision back = local.Decide(Jason(id), &r).decision;
    EXPECT_EQ(back.action(), v1::FORWARD);
    EXPECT_EQ(back.cluster_id(), v2.id);
    EXPECT_EQ(back.endpoint_index(), 1u);
    EXPECT_FALSE(r.has_value());
    local.OnReport(id);
  }
}

TEST_F(LocalDeciderTest, ChangesForUnknownEndpointsAreHarmless) {
  std::mt19937_64 gen(3);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  local.Apply(Change("outbound|1|x|nowhere", "10.0.0.1:1", true));
  local.Apply(Change(ClusterOf(*snapshot_, "v2").name, "10.0.0.1:1", true));
  EXPECT_EQ(local.Decide(Jason(1), nullptr).decision.action(), v1::FORWARD);
}

TEST_F(LocalDeciderTest, TheTableCarriesEjections) {
  // The server encodes ejections it knows of; the decider starts from them.
  const routing::Cluster& v2 = ClusterOf(*snapshot_, "v2");
  for (const routing::Endpoint& e : v2.endpoints) e.runtime->ejected.store(true);
  const v1::DecisionTable table = Encode(*snapshot_);
  for (const routing::Endpoint& e : v2.endpoints) e.runtime->ejected.store(false);
  std::mt19937_64 gen(3);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table).ok());
  EXPECT_EQ(local.Decide(Jason(1), nullptr).decision.response_flags(), "UH");
  // Returned by a pushed change.
  local.Apply(Change(v2.name, v2.endpoints[0].id, false));
  EXPECT_EQ(local.Decide(Jason(2), nullptr).decision.action(), v1::FORWARD);
}

// A table whose destination names a cluster id out of range.
v1::DecisionTable BreakDestination(v1::DecisionTable table, uint64_t version) {
  table.set_version(version);
  for (auto& host : *table.mutable_virtual_hosts()) {
    for (auto& route : *host.mutable_routes()) {
      for (auto& destination : *route.mutable_destinations()) {
        if (destination.has_cluster_id()) {
          destination.set_cluster_id(static_cast<uint32_t>(table.clusters_size()) + 5);
          return table;
        }
      }
    }
  }
  ADD_FAILURE() << "no destination with a cluster id";
  return table;
}

TEST_F(LocalDeciderTest, ABadTableIsRefusedAndThePreviousKeepsDeciding) {
  std::mt19937_64 gen(9);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  const std::shared_ptr<const v1::RouteTable> before = local.route_table();

  const absl::Status status = local.Install(BreakDestination(table_, 2));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("cluster_id"));
  EXPECT_THAT(status.message(), HasSubstr("out of range"));
  EXPECT_EQ(local.version(), 1u);
  EXPECT_EQ(local.route_table(), before);
  const v1::Decision d = local.Decide(Jason(1), nullptr).decision;
  EXPECT_EQ(d.config_version(), 1u);
  EXPECT_EQ(d.action(), v1::FORWARD);
  EXPECT_EQ(d.subset(), "v2");
}

TEST_F(LocalDeciderTest, ABadTableLeavesEndpointHealthAsItWas) {
  std::mt19937_64 gen(9);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  const routing::Cluster& v2 = ClusterOf(*snapshot_, "v2");
  for (const routing::Endpoint& e : v2.endpoints) local.Apply(Change(v2.name, e.id, true));
  ASSERT_EQ(local.Decide(Jason(1), nullptr).decision.response_flags(), "UH");

  // The bad table says v2's endpoints are healthy; it is refused, so they stay ejected.
  ASSERT_FALSE(local.Install(BreakDestination(table_, 2)).ok());
  EXPECT_EQ(local.Decide(Jason(2), nullptr).decision.response_flags(), "UH");
}

TEST_F(LocalDeciderTest, ANewerTableKeepsInFlightCountsOfEndpointsThatSurvive) {
  AlternatingBits bits;
  LocalDecider local{absl::BitGenRef(bits)};
  ASSERT_TRUE(local.Install(table_).ok());
  const v1::Decision first = local.Decide(Jason(1), nullptr).decision;
  ASSERT_EQ(first.action(), v1::FORWARD);

  // Version 2 changes the split only; v2's cluster and endpoints are the same.
  std::string yaml = kConfig;
  yaml.replace(yaml.find("weight: 70"), 10, "weight: 40");
  yaml.replace(yaml.find("weight: 30"), 10, "weight: 60");
  std::shared_ptr<const routing::Snapshot> next = Compile(yaml, 2);
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(local.Install(Encode(*next)).ok());
  EXPECT_EQ(local.version(), 2u);
  EXPECT_EQ(local.route_table()->version(), 2u);

  // Decision 1 (of version 1) is still in flight on its endpoint.
  const v1::Decision second = local.Decide(Jason(2), nullptr).decision;
  ASSERT_EQ(second.action(), v1::FORWARD);
  EXPECT_EQ(second.config_version(), 2u);
  EXPECT_NE(second.endpoint_index(), first.endpoint_index());
  // Its report ends that count on version 2's endpoint too.
  local.OnReport(1);
  local.OnReport(2);
  const v1::Decision third = local.Decide(Jason(3), nullptr).decision;
  EXPECT_EQ(third.endpoint_index(), first.endpoint_index());
  local.OnReport(3);
  EXPECT_EQ(local.outstanding(), 0u);
}

TEST_F(LocalDeciderTest, ANewerTableKeepsPushedEjectionsOnlyAsItSaysThem) {
  std::mt19937_64 gen(4);
  LocalDecider local{absl::BitGenRef(gen)};
  ASSERT_TRUE(local.Install(table_).ok());
  const routing::Cluster& v2 = ClusterOf(*snapshot_, "v2");
  for (const routing::Endpoint& e : v2.endpoints) local.Apply(Change(v2.name, e.id, true));
  ASSERT_EQ(local.Decide(Jason(1), nullptr).decision.response_flags(), "UH");
  // A newer table encoded by the server carries the server's health: here, all healthy.
  v1::DecisionTable newer = table_;
  newer.set_version(2);
  ASSERT_TRUE(local.Install(newer).ok());
  EXPECT_EQ(local.Decide(Jason(2), nullptr).decision.action(), v1::FORWARD);
}

}  // namespace
}  // namespace sluice::gateway
