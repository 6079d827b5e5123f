// Tests for the decision table codec (lib/routing/table_codec.cc): a snapshot encoded and
// decoded again must encode to the same message and, above all, decide exactly like the
// compiled original when both are fed the same random numbers.

#include "lib/routing/table_codec.h"

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "lib/routing/decider.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

// Every rule kind the table has to carry. Services:
//   reviews: v1 19081, v2 19082 and 127.0.0.2:19082, v3 19083 (ROUND_ROBIN; v2 RANDOM,
//            v3 LEAST_REQUEST; connectionPool and outlierDetection with minHealthPercent).
//   ratings: three endpoints (default LEAST_REQUEST, no DestinationRule).
//   details: weights 3 and 1 (RANDOM: the weighted draw).
constexpr char kInlineConfig[] = R"yaml(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19082}, labels: {version: v2}}
  - {address: 127.0.0.2, ports: {http: 19082}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 19083}, labels: {version: v3}}
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
kind: ServiceEntry
metadata: {name: details}
spec:
  hosts: [details]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19101}, weight: 3}
  - {address: 127.0.0.1, ports: {http: 19102}, weight: 1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 5, maxRequestsPerConnection: 3, maxRetries: 4, idleTimeout: 30s}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 5s
      baseEjectionTime: 15s
      maxEjectionPercent: 50
      minHealthPercent: 40
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
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
      headers:
        request:
          set: {x-dest: v2}
          add: {x-added: "1"}
          remove: [x-internal]
        response:
          set: {x-served-by: v2}
  - name: api
    match:
    - uri: {regex: "/api/v[0-9]+/.*"}
      queryParams:
        debug: {exact: "1"}
    - uri: {prefix: /API}
      ignoreUriCase: true
      withoutHeaders:
        x-skip: {}
    rewrite: {uri: /v2}
    route:
    - destination: {host: reviews, subset: v3}
  - name: regex-rewrite
    match:
    - uri: {prefix: /re/}
    rewrite:
      uriRegexRewrite: {match: "^/re/([a-z]+)", rewrite: "/new/\\1"}
      authority: reviews.internal
    route:
    - destination: {host: reviews, subset: v1}
  - name: faulty
    match:
    - uri: {prefix: /fault}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 30}}
      abort: {httpStatus: 503, percentage: {value: 20.5}}
    route:
    - destination: {host: ratings}
  - name: mirrored
    match:
    - uri: {exact: /mirror}
    route:
    - destination: {host: details}
    mirror: {host: ratings}
    mirrorPercentage: {value: 40}
  - name: moved
    match:
    - uri: {prefix: /old}
    redirect: {uri: /new, authority: example.com, redirectCode: 302}
  - name: health
    match:
    - uri: {exact: /health}
    directResponse: {status: 200, body: {string: ok}}
  - name: missing-subset
    match:
    - uri: {prefix: /nc}
    route:
    - destination: {host: reviews, subset: v9}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure,503"}
    headers:
      request:
        set: {x-route: split}
      response:
        remove: [server]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["*.example.com"]
  http:
  - match:
    - uri: {prefix: /shop}
      method: {exact: POST}
      port: 8080
    route:
    - destination: {host: details}
  - directResponse: {status: 418, body: {string: teapot}}
)yaml";

std::shared_ptr<const Snapshot> Compile(config::LoadResult loaded) {
  if (!loaded.ok()) {
    ADD_FAILURE() << loaded.diagnostics.ToString();
    return nullptr;
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot =
      CompileSnapshot(std::move(loaded.config), 42);
  if (!snapshot.ok()) {
    ADD_FAILURE() << snapshot.status();
    return nullptr;
  }
  return *std::move(snapshot);
}

// "bookinfo" and "canary" are deploy/examples; "inline" is kInlineConfig.
std::shared_ptr<const Snapshot> CompileNamed(const std::string& name) {
  if (name == "inline") return Compile(config::LoadText(kInlineConfig, "inline.yaml"));
  return Compile(
      config::LoadPaths({absl::StrCat(SLUICE_SOURCE_DIR, "/deploy/examples/", name, ".yaml")}));
}

std::shared_ptr<const Snapshot> Decode(const v1::DecisionTable& table,
                                       RuntimeStore* store = nullptr) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> decoded = DecodeTable(table, store);
  if (!decoded.ok()) {
    ADD_FAILURE() << decoded.status();
    return nullptr;
  }
  return *std::move(decoded);
}

// Everything a decision says, endpoints and clusters by id and name: two snapshots decide
// alike when these strings are equal.
std::string Fingerprint(const Decision& d) {
  std::string out =
      absl::StrCat("kind=", static_cast<int>(d.kind), " status=", d.status, " body=\"", d.body,
                   "\" location=\"", d.location, "\" flags=", d.response_flags,
                   " vhost=", d.virtual_host != nullptr ? d.virtual_host->name : "-");
  absl::StrAppend(&out, " route=",
                  d.route != nullptr ? absl::StrCat(d.route->id, ":", d.route->display_name) : "-");
  absl::StrAppend(&out, " destination=",
                  d.destination != nullptr
                      ? absl::StrCat(d.destination->host, "|", d.destination->subset, "|",
                                     d.destination->port, "|", d.destination->cluster_name)
                      : "-");
  absl::StrAppend(&out, " cluster=",
                  d.cluster != nullptr ? absl::StrCat(d.cluster->id, ":", d.cluster->name) : "-",
                  " endpoint=", d.endpoint_index);
  if (d.cluster != nullptr && d.endpoint_index >= 0) {
    absl::StrAppend(&out, ":", d.cluster->endpoints[d.endpoint_index].id);
  }
  absl::StrAppend(&out, " alternates=", absl::StrJoin(d.alternates, ","),
                  " delay=", absl::FormatDuration(d.delay), " abort=", d.abort_http_status, "/",
                  d.abort_grpc_status);
  absl::StrAppend(
      &out, " mirror=", d.mirror != nullptr ? d.mirror->destination.cluster_name : "-",
      " mirror_cluster=", d.mirror_cluster != nullptr ? absl::StrCat(d.mirror_cluster->id) : "-",
      " mirror_endpoint=", d.mirror_endpoint_index);
  absl::StrAppend(&out, " path=\"", d.rewritten_path, "\" authority=\"", d.rewritten_authority,
                  "\"");
  return out;
}

std::string TraceText(const DecisionTrace& t) {
  std::string out = absl::StrCat("host=", t.virtual_host);
  for (const DecisionTrace::Step& s : t.steps) {
    absl::StrAppend(&out, " | ", s.route, " [", s.match, "] ", s.matched, " ", s.reason);
  }
  absl::StrAppend(&out, " | weight: ", t.weight_draw, " | fault: ", t.fault_draw,
                  " | endpoint: ", t.endpoint_choice);
  return out;
}

RequestAttributes MakeRequest(std::string authority, std::string path,
                              std::vector<std::pair<std::string, std::string>> headers = {},
                              std::string method = "GET") {
  RequestAttributes r;
  r.authority = std::move(authority);
  r.path = std::move(path);
  r.headers = std::move(headers);
  r.method = std::move(method);
  return r;
}

// Hosts by every alias, paths reaching every kind of rule, with and without headers.
std::vector<RequestAttributes> Requests() {
  const std::vector<std::string> authorities = {"reviews",
                                                "reviews.default",
                                                "reviews.default.svc.cluster.local:9080",
                                                "REVIEWS.default.svc",
                                                "ratings",
                                                "details",
                                                "shop:8080",
                                                "productpage",
                                                "api.example.com:8080",
                                                "unknown.test"};
  std::vector<RequestAttributes> out;
  for (const std::string& a : authorities) {
    out.push_back(MakeRequest(a, "/"));
    out.push_back(MakeRequest(a, "/", {{"end-user", "jason"}}));
    out.push_back(MakeRequest(a, "/productpage", {{"end-user", "kate"}}));
    out.push_back(MakeRequest(a, "/api/v1/items?debug=1"));
    out.push_back(MakeRequest(a, "/api/v1/items?debug=0"));
    out.push_back(MakeRequest(a, "/Api/list?x=1"));
    out.push_back(MakeRequest(a, "/Api/list", {{"x-skip", "yes"}}));
    out.push_back(MakeRequest(a, "/re/abc/def?q=1"));
    out.push_back(MakeRequest(a, "/fault/x"));
    out.push_back(MakeRequest(a, "/mirror"));
    out.push_back(MakeRequest(a, "/old/page?x=1"));
    out.push_back(MakeRequest(a, "/health"));
    out.push_back(MakeRequest(a, "/nc/x"));
    out.push_back(MakeRequest(a, "/shop/cart", {}, "POST"));
  }
  return out;
}

bool AnyContains(const std::set<std::string>& fingerprints, absl::string_view needle) {
  for (const std::string& s : fingerprints) {
    if (absl::StrContains(s, needle)) return true;
  }
  return false;
}

constexpr int kDrawsPerRequest = 2'000;

// Decides every request kDrawsPerRequest times on both snapshots, each with its own
// generator seeded alike, and requires identical decisions (and traces, for the first draw).
// Returns every distinct fingerprint of `original`, so callers can check what was covered.
std::set<std::string> ExpectDecideAlike(const Snapshot& original, const Snapshot& decoded) {
  std::set<std::string> seen;
  uint64_t seed = 1;
  for (const RequestAttributes& request : Requests()) {
    std::mt19937_64 gen_a(seed);
    std::mt19937_64 gen_b(seed);
    ++seed;
    for (int i = 0; i < kDrawsPerRequest; ++i) {
      DecisionTrace trace_a;
      DecisionTrace trace_b;
      const bool traced = i == 0;
      const Decision a =
          Decide(original, request, absl::BitGenRef(gen_a), traced ? &trace_a : nullptr);
      const Decision b =
          Decide(decoded, request, absl::BitGenRef(gen_b), traced ? &trace_b : nullptr);
      const std::string fa = Fingerprint(a);
      const std::string fb = Fingerprint(b);
      if (fa != fb) {
        ADD_FAILURE() << request.method << " " << request.authority << request.path << " draw " << i
                      << ":\n original: " << fa << "\n decoded:  " << fb;
        return seen;
      }
      if (traced) {
        EXPECT_EQ(TraceText(trace_a), TraceText(trace_b)) << request.authority << request.path;
      }
      seen.insert(fa);
    }
  }
  return seen;
}

std::string Differences(const v1::DecisionTable& a, const v1::DecisionTable& b) {
  std::string report;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&report);
  differencer.Compare(a, b);
  return report;
}

class TableCodecConfigTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TableCodecConfigTest, EncodeDecodeEncodeIsIdentical) {
  std::shared_ptr<const Snapshot> original = CompileNamed(GetParam());
  ASSERT_NE(original, nullptr);
  v1::DecisionTable first;
  EncodeTable(*original, first);
  EXPECT_EQ(first.version(), 42u);
  EXPECT_EQ(first.client_namespace(), "default");
  EXPECT_GT(first.virtual_hosts_size(), 0);
  EXPECT_EQ(static_cast<size_t>(first.clusters_size()), original->clusters().size());

  std::shared_ptr<const Snapshot> decoded = Decode(first);
  ASSERT_NE(decoded, nullptr);
  v1::DecisionTable second;
  EncodeTable(*decoded, second);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first, second))
      << Differences(first, second);
  // And through the wire format, as a gateway receives it.
  v1::DecisionTable parsed;
  ASSERT_TRUE(parsed.ParseFromString(first.SerializeAsString()));
  std::shared_ptr<const Snapshot> from_wire = Decode(parsed);
  ASSERT_NE(from_wire, nullptr);
  v1::DecisionTable third;
  EncodeTable(*from_wire, third);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first, third))
      << Differences(first, third);
}

TEST_P(TableCodecConfigTest, DecodedSnapshotIndexesLikeTheOriginal) {
  std::shared_ptr<const Snapshot> original = CompileNamed(GetParam());
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  std::shared_ptr<const Snapshot> decoded = Decode(table);
  ASSERT_NE(decoded, nullptr);

  EXPECT_EQ(decoded->version(), original->version());
  EXPECT_EQ(decoded->client_namespace(), original->client_namespace());
  // The order of first appearance may differ (the compiler walks VirtualServices, the
  // decoder hosts); the gateway uses the names as a set.
  EXPECT_THAT(decoded->match_header_names(),
              UnorderedElementsAreArray(original->match_header_names()));
  EXPECT_EQ(decoded->source().size(), 0u);
  ASSERT_EQ(decoded->routes().size(), original->routes().size());
  for (size_t i = 0; i < decoded->routes().size(); ++i) {
    EXPECT_EQ(decoded->routes()[i]->id, i);
    EXPECT_EQ(decoded->routes()[i]->display_name, original->routes()[i]->display_name);
  }
  ASSERT_EQ(decoded->clusters().size(), original->clusters().size());
  for (const std::unique_ptr<Cluster>& c : original->clusters()) {
    const Cluster* found = decoded->FindCluster(c->name);
    ASSERT_NE(found, nullptr) << c->name;
    EXPECT_EQ(found->id, c->id);
    EXPECT_EQ(found->policy.outlier, c->policy.outlier);
    EXPECT_EQ(found->policy.load_balancer, c->policy.load_balancer);
    EXPECT_EQ(found->policy.connection_pool.connect_timeout,
              c->policy.connection_pool.connect_timeout);
    EXPECT_EQ(found->policy.connection_pool.idle_timeout, c->policy.connection_pool.idle_timeout);
    EXPECT_EQ(found->policy.connection_pool.max_connections,
              c->policy.connection_pool.max_connections);
    ASSERT_EQ(found->endpoints.size(), c->endpoints.size());
    for (const Endpoint& e : found->endpoints) {
      ASSERT_NE(e.runtime, nullptr);
    }
    ASSERT_NE(found->runtime, nullptr);
  }
  for (absl::string_view host : {"reviews", "reviews.default", "reviews.default.svc", "shop",
                                 "ratings:9080", "x.example.com", "nowhere.test"}) {
    const VirtualHost* a = original->FindVirtualHost(host);
    const VirtualHost* b = decoded->FindVirtualHost(host);
    ASSERT_EQ(a == nullptr, b == nullptr) << host;
    if (a != nullptr) {
      EXPECT_EQ(a->name, b->name) << host;
    }
  }
}

TEST_P(TableCodecConfigTest, DecodedSnapshotDecidesAlike) {
  std::shared_ptr<const Snapshot> original = CompileNamed(GetParam());
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  std::shared_ptr<const Snapshot> decoded = Decode(table);
  ASSERT_NE(decoded, nullptr);
  const std::set<std::string> seen = ExpectDecideAlike(*original, *decoded);
  EXPECT_TRUE(AnyContains(seen, "kind=0 "));  // some forwarded
  EXPECT_TRUE(AnyContains(seen, "flags=NR"));
}

INSTANTIATE_TEST_SUITE_P(Configs, TableCodecConfigTest,
                         ::testing::Values("bookinfo", "canary", "inline"),
                         [](const auto& info) { return info.param; });

// The inline configuration reaches every kind of decision: otherwise "decides alike" would
// prove less than it claims.
TEST(TableCodecTest, InlineRequestsCoverEveryKindOfDecision) {
  std::shared_ptr<const Snapshot> original = CompileNamed("inline");
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  std::shared_ptr<const Snapshot> decoded = Decode(table);
  ASSERT_NE(decoded, nullptr);
  const std::set<std::string> seen = ExpectDecideAlike(*original, *decoded);
  auto any = [&](absl::string_view needle) { return AnyContains(seen, needle); };
  EXPECT_TRUE(any("flags=NR"));
  EXPECT_TRUE(any("flags=NC"));
  EXPECT_TRUE(any("status=302"));
  EXPECT_TRUE(any("location=\"http://example.com/new?x=1\""));
  EXPECT_TRUE(any("body=\"ok\""));
  EXPECT_TRUE(any("body=\"teapot\""));
  EXPECT_TRUE(any("delay=100ms"));
  EXPECT_TRUE(any("abort=503/"));
  EXPECT_TRUE(any("mirror_endpoint=0"));
  EXPECT_TRUE(any("path=\"/v2/list?x=1\""));
  EXPECT_TRUE(any("path=\"/new/abc/def?q=1\" authority=\"reviews.internal\""));
  EXPECT_TRUE(any("route=0:jason"));
  EXPECT_TRUE(any("endpoint=1:127.0.0.1:19102"));  // details' lighter endpoint
  EXPECT_TRUE(any("alternates=1,2"));
}

// Ejects `ejected` (cluster name -> endpoint indexes) in the compiled snapshot of `config`,
// checks that exactly those arrive ejected in the decoded one, and returns what
// ExpectDecideAlike saw.
std::set<std::string> EjectAndDecideAlike(const std::string& config,
                                          const std::map<std::string, std::set<size_t>>& ejected) {
  std::shared_ptr<const Snapshot> original = CompileNamed(config);
  if (original == nullptr) return {};
  for (const auto& [name, indices] : ejected) {
    const Cluster* c = original->FindCluster(name);
    if (c == nullptr) {
      ADD_FAILURE() << "no cluster " << name;
      return {};
    }
    for (size_t i : indices) c->endpoints[i].runtime->ejected.store(true);
  }
  v1::DecisionTable table;
  EncodeTable(*original, table);
  std::shared_ptr<const Snapshot> decoded = Decode(table);
  if (decoded == nullptr) return {};
  for (const std::unique_ptr<Cluster>& c : decoded->clusters()) {
    const auto it = ejected.find(c->name);
    for (size_t i = 0; i < c->endpoints.size(); ++i) {
      const bool expected = it != ejected.end() && it->second.contains(i);
      EXPECT_EQ(c->endpoints[i].runtime->ejected.load(), expected) << c->name << " " << i;
    }
  }
  return ExpectDecideAlike(*original, *decoded);
}

constexpr char kReviewsFqdn[] = "reviews.default.svc.cluster.local";
constexpr char kRatingsFqdn[] = "ratings.default.svc.cluster.local";

TEST(TableCodecTest, EjectionWithoutPanicTravelsAsNoHealthyUpstream) {
  // bookinfo's reviews rule has outlierDetection without minHealthPercent: panic mode off,
  // so the v1 subset's only endpoint ejected means 503 UH for v1's share of the split.
  const std::set<std::string> seen =
      EjectAndDecideAlike("bookinfo", {{ClusterName(kReviewsFqdn, "v1", 9080), {0}}});
  EXPECT_TRUE(AnyContains(seen, "flags=UH"));
  EXPECT_TRUE(AnyContains(seen, "destination=reviews.default.svc.cluster.local|v3"));
}

TEST(TableCodecTest, EjectionAvoidanceAndPanicModeTravel) {
  // reviews v2 (minHealthPercent 40): one of two ejected leaves 50%, so every request goes to
  // the other and no retry alternate exists. ratings (Envoy's 50%): two of three ejected is
  // panic mode, every endpoint a candidate again.
  const std::set<std::string> seen =
      EjectAndDecideAlike("inline", {{ClusterName(kReviewsFqdn, "v2", 9080), {0}},
                                     {ClusterName(kRatingsFqdn, "", 9080), {1, 2}}});
  EXPECT_TRUE(AnyContains(seen, "endpoint=1:127.0.0.2:19082 alternates= "));
  EXPECT_FALSE(AnyContains(seen, "endpoint=0:127.0.0.1:19082"));
  EXPECT_TRUE(AnyContains(seen, "endpoint=2:127.0.0.1:19093"));
}

TEST(TableCodecTest, RuntimeStoreSharesStateAndTakesEjectionFromTheTable) {
  std::shared_ptr<const Snapshot> original = CompileNamed("bookinfo");
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  RuntimeStore store;
  std::shared_ptr<const Snapshot> first = Decode(table, &store);
  ASSERT_NE(first, nullptr);
  const Cluster* c = first->FindCluster("outbound|9080||ratings.default.svc.cluster.local");
  ASSERT_NE(c, nullptr);
  c->endpoints[0].runtime->in_flight.store(7);
  c->endpoints[0].runtime->ejected.store(true);

  // The next table (nothing ejected) keeps load and lifts the local ejection.
  std::shared_ptr<const Snapshot> second = Decode(table, &store);
  ASSERT_NE(second, nullptr);
  const Cluster* again = second->FindCluster(c->name);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->endpoints[0].runtime, c->endpoints[0].runtime);
  EXPECT_EQ(again->runtime, c->runtime);
  EXPECT_EQ(again->endpoints[0].runtime->in_flight.load(), 7);
  EXPECT_FALSE(again->endpoints[0].runtime->ejected.load());
}

TEST(TableCodecTest, DecodedSplitKeepsItsWeights) {
  std::shared_ptr<const Snapshot> original = CompileNamed("inline");
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  std::shared_ptr<const Snapshot> decoded = Decode(table);
  ASSERT_NE(decoded, nullptr);
  std::mt19937_64 gen(20240611);
  constexpr int kDraws = 20'000;
  int v1 = 0;
  int v2 = 0;
  const RequestAttributes request = MakeRequest("reviews", "/");
  for (int i = 0; i < kDraws; ++i) {
    const Decision d = Decide(*decoded, request, absl::BitGenRef(gen));
    ASSERT_NE(d.route, nullptr);
    ASSERT_EQ(d.route->display_name, "split");
    ASSERT_NE(d.destination, nullptr);
    if (d.destination->subset == "v1") ++v1;
    if (d.destination->subset == "v2") ++v2;
  }
  EXPECT_EQ(v1 + v2, kDraws);
  EXPECT_NEAR(100.0 * v2 / kDraws, 10.0, 1.5);
  EXPECT_NEAR(100.0 * v1 / kDraws, 90.0, 1.5);
}

// -------------------------------------------------------------------------------------------
// Hostile tables: rejected with the field named, never a crash.

// The inline table and the position of its route with the given display name.
struct Located {
  v1::DecisionTable table;
  int host = -1;
  int route = -1;
  v1::TableRoute* Route() { return table.mutable_virtual_hosts(host)->mutable_routes(route); }
  std::string Path() const { return absl::StrCat("virtual_hosts[", host, "].routes[", route, "]"); }
};

Located InlineRoute(absl::string_view display_name) {
  Located out;
  std::shared_ptr<const Snapshot> original = CompileNamed("inline");
  if (original == nullptr) return out;
  EncodeTable(*original, out.table);
  for (int h = 0; h < out.table.virtual_hosts_size(); ++h) {
    for (int r = 0; r < out.table.virtual_hosts(h).routes_size(); ++r) {
      if (out.table.virtual_hosts(h).routes(r).display_name() == display_name) {
        out.host = h;
        out.route = r;
        return out;
      }
    }
  }
  ADD_FAILURE() << "no route " << display_name;
  return out;
}

void ExpectInvalid(const v1::DecisionTable& table, absl::string_view message) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> decoded = DecodeTable(table, nullptr);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr(message));
}

TEST(TableCodecHostileTest, ClusterIdOutOfRange) {
  Located l = InlineRoute("split");
  ASSERT_GE(l.route, 0);
  const int clusters = l.table.clusters_size();
  l.Route()->mutable_destinations(1)->set_cluster_id(clusters + 2);
  ExpectInvalid(l.table, absl::StrCat(l.Path(), ".destinations[1].cluster_id: ", clusters + 2,
                                      " out of range (", clusters, " clusters)"));
}

TEST(TableCodecHostileTest, MirrorClusterIdOutOfRange) {
  Located l = InlineRoute("mirrored");
  ASSERT_GE(l.route, 0);
  l.Route()->mutable_mirrors(0)->mutable_destination()->set_cluster_id(1'000'000);
  ExpectInvalid(l.table, absl::StrCat(l.Path(), ".mirrors[0].destination.cluster_id"));
}

TEST(TableCodecHostileTest, ClusterNameThatIsNotTheClusters) {
  Located l = InlineRoute("split");
  ASSERT_GE(l.route, 0);
  l.Route()->mutable_destinations(0)->set_cluster_name("outbound|1||elsewhere");
  ExpectInvalid(l.table, absl::StrCat(l.Path(), ".destinations[0].cluster_name"));
}

TEST(TableCodecHostileTest, InvalidMatchRegex) {
  Located l = InlineRoute("api");
  ASSERT_GE(l.route, 0);
  l.Route()->mutable_matches(0)->mutable_uri()->set_value("/api/(unclosed");
  ExpectInvalid(l.table,
                absl::StrCat(l.Path(), ".matches[0].uri.value: invalid regex \"/api/(unclosed\""));
}

TEST(TableCodecHostileTest, InvalidHeaderRegex) {
  Located l = InlineRoute("jason");
  ASSERT_GE(l.route, 0);
  v1::TableStringMatch* m = l.Route()->mutable_matches(0)->mutable_headers(0)->mutable_match();
  m->set_kind(v1::TABLE_STRING_MATCH_KIND_REGEX);
  m->set_value("[z-a]");
  ExpectInvalid(l.table, absl::StrCat(l.Path(), ".matches[0].headers[0].match.value"));
}

TEST(TableCodecHostileTest, InvalidRewriteRegex) {
  Located l = InlineRoute("regex-rewrite");
  ASSERT_GE(l.route, 0);
  l.Route()->mutable_rewrite()->set_regex("(");
  ExpectInvalid(l.table, absl::StrCat(l.Path(), ".rewrite.regex: invalid regex"));
}

TEST(TableCodecHostileTest, UnknownEnumValues) {
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.Route()->set_action(static_cast<v1::TableRouteAction>(42));
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".action: unknown route action 42"));
  }
  {
    Located l = InlineRoute("api");
    ASSERT_GE(l.route, 0);
    l.Route()->mutable_matches(1)->mutable_uri()->set_kind(v1::TABLE_STRING_MATCH_KIND_UNSPECIFIED);
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".matches[1].uri.kind"));
  }
  {
    Located l = InlineRoute("moved");
    ASSERT_GE(l.route, 0);
    l.Route()->mutable_redirect()->set_derive_port(static_cast<v1::TableDerivePort>(9));
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".redirect.derive_port"));
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.table.mutable_clusters(2)->mutable_policy()->set_load_balancer(
        v1::TABLE_LOAD_BALANCER_UNSPECIFIED);
    ExpectInvalid(l.table, "clusters[2].policy.load_balancer: unknown load balancer 0");
  }
}

TEST(TableCodecHostileTest, InconsistentIdsAndMissingParts) {
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.table.mutable_clusters(1)->set_id(0);
    ExpectInvalid(l.table, "clusters[1].id: 0, expected 1");
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.Route()->set_id(l.Route()->id() + 1);
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".id"));
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.Route()->clear_destinations();
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".destinations: a FORWARD route"));
  }
  {
    Located l = InlineRoute("moved");
    ASSERT_GE(l.route, 0);
    l.Route()->clear_redirect();
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".redirect: missing"));
  }
  {
    Located l = InlineRoute("health");
    ASSERT_GE(l.route, 0);
    l.Route()->clear_direct_response();
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".direct_response: missing"));
  }
  {
    Located l = InlineRoute("faulty");
    ASSERT_GE(l.route, 0);
    l.Route()->mutable_fault()->mutable_abort()->mutable_percentage()->set_denominator(0);
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".fault.abort.percentage.denominator"));
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.Route()->mutable_timeout()->set_seconds(-5);
    ExpectInvalid(l.table, absl::StrCat(l.Path(), ".timeout: invalid duration"));
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    l.table.mutable_clusters(1)->set_name(l.table.clusters(0).name());
    ExpectInvalid(l.table, "clusters[1].name: duplicate cluster");
  }
  {
    Located l = InlineRoute("split");
    ASSERT_GE(l.route, 0);
    *l.table.add_virtual_hosts() = l.table.virtual_hosts(0);
    ExpectInvalid(l.table, absl::StrCat("virtual_hosts[", l.table.virtual_hosts_size() - 1,
                                        "].name: duplicate host"));
  }
}

TEST(TableCodecHostileTest, EmptyTableDecodesToNoRoutes) {
  v1::DecisionTable table;
  table.set_version(9);
  absl::StatusOr<std::shared_ptr<const Snapshot>> decoded = DecodeTable(table, nullptr);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const Snapshot& s = **decoded;
  EXPECT_EQ(s.version(), 9u);
  EXPECT_TRUE(s.virtual_hosts().empty());
  EXPECT_TRUE(s.clusters().empty());
  EXPECT_TRUE(s.match_header_names().empty());
  EXPECT_EQ(s.source().size(), 0u);
  std::mt19937_64 gen(1);
  for (const RequestAttributes& request : Requests()) {
    const Decision d = Decide(s, request, absl::BitGenRef(gen));
    EXPECT_EQ(d.kind, Decision::Kind::kDirectResponse);
    EXPECT_EQ(d.status, 404u);
    EXPECT_STREQ(d.response_flags, "NR");
  }
}

// Garbage bytes parse into something or nothing; either way decoding must not crash.
TEST(TableCodecHostileTest, MutatedWireBytesNeverCrash) {
  std::shared_ptr<const Snapshot> original = CompileNamed("inline");
  ASSERT_NE(original, nullptr);
  v1::DecisionTable table;
  EncodeTable(*original, table);
  const std::string wire = table.SerializeAsString();
  std::mt19937_64 gen(7);
  int decoded_ok = 0;
  // Mutated strings are often invalid UTF-8, which the parser rejects with a log line each.
  google::protobuf::LogSilencer quiet;
  for (int round = 0; round < 300; ++round) {
    std::string mutated = wire;
    for (int k = 0; k < 4; ++k) {
      mutated[gen() % mutated.size()] = static_cast<char>(gen() & 0xff);
    }
    v1::DecisionTable parsed;
    if (!parsed.ParseFromString(mutated)) continue;
    absl::StatusOr<std::shared_ptr<const Snapshot>> d = DecodeTable(parsed, nullptr);
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    ++decoded_ok;
    std::mt19937_64 rng(round);
    for (const RequestAttributes& request : Requests()) {
      Decide(**d, request, absl::BitGenRef(rng));
    }
  }
  EXPECT_GT(decoded_ok, 0);
}

}  // namespace
}  // namespace sluice::routing
