// CompileSnapshot: virtual hosts and their aliases, weighted destinations, clusters and
// endpoints, rule ordering, defaults, and the printer (routing-semantics.md sections 1-3).

#include "lib/routing/snapshot.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/request.h"
#include "lib/routing/snapshot_printer.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kReviewsFqdn[] = "reviews.default.svc.cluster.local";
constexpr char kRatingsFqdn[] = "ratings.other.svc.cluster.local";

// reviews (default namespace, three versions, a named endpoint port), details (targetPort),
// ratings (namespace other), subsets for reviews.
constexpr char kServices[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  endpoints:
  - address: 10.0.0.1
    ports: {http: 19080}
    labels: {app: reviews, version: v1}
  - address: 10.0.0.2
    labels: {app: reviews, version: v2}
  - address: 10.0.0.3
    labels: {app: reviews, version: v3}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP, targetPort: 18080}
  endpoints:
  - address: 10.0.1.1
    ports: {http: 28080}
  - address: 10.0.1.2
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: other}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  endpoints:
  - address: 10.0.2.1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
)";

std::string VirtualService(const std::string& name, const std::string& spec) {
  return "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name +
         ", namespace: default}\nspec:\n" + spec;
}

RequestAttributes Request(std::string path) {
  RequestAttributes r;
  r.authority = "reviews";
  r.path = std::move(path);
  return r;
}

class SnapshotTest : public ::testing::Test {
 protected:
  // Loads `yaml` (which must have no errors) and compiles it as version 7.
  std::shared_ptr<const Snapshot> Compile(const std::string& yaml,
                                          const CompileOptions& options = {}) {
    config::LoadResult loaded = config::LoadText(yaml, "t.yaml");
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.diagnostics.ToString();
      return nullptr;
    }
    load_diagnostics_ = loaded.diagnostics;
    absl::StatusOr<std::shared_ptr<const Snapshot>> s =
        CompileSnapshot(std::move(loaded.config), /*version=*/7, &diagnostics_, options);
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      return nullptr;
    }
    return *std::move(s);
  }

  // The routes of the virtual host that serves `authority` (none when there is no such host).
  static const std::vector<Route>& RoutesFor(const Snapshot& s, absl::string_view authority) {
    static const std::vector<Route> kNone;
    const VirtualHost* host = s.FindVirtualHost(authority);
    return host == nullptr ? kNone : host->routes;
  }

  // Envoy's route selection: the first route with a matching block; nullptr: 404 NR.
  static const Route* FirstMatch(const Snapshot& s, const RequestAttributes& request) {
    const VirtualHost* host = s.FindVirtualHost(request.authority);
    if (host == nullptr) return nullptr;
    const RequestView view(request);
    for (const Route& r : host->routes) {
      if (r.matches.empty()) return &r;
      for (const RouteMatcher& m : r.matches) {
        if (m.Matches(view)) return &r;
      }
    }
    return nullptr;
  }

  static std::vector<std::string> Addresses(const Cluster& c) {
    std::vector<std::string> out;
    for (const Endpoint& e : c.endpoints) out.push_back(e.address);
    return out;
  }

  config::Diagnostics load_diagnostics_;
  config::Diagnostics diagnostics_;
};

// ---------------------------------------------------------------------------------------------
// Virtual hosts

TEST_F(SnapshotTest, KeepsTheVersionItWasCompiledAs) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->version(), 7u);
  EXPECT_EQ(s->source().service_entries.size(), 3u);
}

TEST_F(SnapshotTest, FindVirtualHostAcceptsEveryKubernetesNameOfAService) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
)"));
  ASSERT_NE(s, nullptr);
  for (const char* authority :
       {"reviews", "reviews:9080", "reviews.default", "reviews.default:9080", "reviews.default.svc",
        "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080", "REVIEWS",
        "Reviews.Default.Svc.Cluster.Local"}) {
    SCOPED_TRACE(authority);
    const VirtualHost* host = s->FindVirtualHost(authority);
    ASSERT_NE(host, nullptr);
    EXPECT_EQ(host->name, kReviewsFqdn);
    ASSERT_EQ(host->routes.size(), 1u);
    EXPECT_EQ(host->routes[0].virtual_service, "default/reviews");
  }
}

TEST_F(SnapshotTest, BareNameOnlyResolvesInTheClientNamespace) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  for (const char* authority :
       {"ratings.other", "ratings.other:9080", "ratings.other.svc", kRatingsFqdn}) {
    SCOPED_TRACE(authority);
    const VirtualHost* host = s->FindVirtualHost(authority);
    ASSERT_NE(host, nullptr);
    EXPECT_EQ(host->name, kRatingsFqdn);
  }
  EXPECT_EQ(s->FindVirtualHost("ratings"), nullptr);
  EXPECT_EQ(s->FindVirtualHost("ratings:9080"), nullptr);
  ASSERT_NE(s->FindVirtualHost("reviews"), nullptr);
}

TEST_F(SnapshotTest, ClientNamespaceOptionChoosesWhichBareNamesResolve) {
  CompileOptions options;
  options.client_namespace = "other";
  std::shared_ptr<const Snapshot> s = Compile(kServices, options);
  ASSERT_NE(s, nullptr);
  ASSERT_NE(s->FindVirtualHost("ratings"), nullptr);
  EXPECT_EQ(s->FindVirtualHost("ratings")->name, kRatingsFqdn);
  EXPECT_EQ(s->FindVirtualHost("reviews"), nullptr);
  ASSERT_NE(s->FindVirtualHost("reviews.default"), nullptr);
}

TEST_F(SnapshotTest, UnknownHostIsNotServed) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  for (const char* authority : {"nowhere.example.org", "reviews.prod", "", "reviewsx"}) {
    SCOPED_TRACE(authority);
    EXPECT_EQ(s->FindVirtualHost(authority), nullptr);
  }
}

constexpr char kWildcardHosts[] = R"(
  hosts: ["*.example.com"]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
)";

TEST_F(SnapshotTest, WildcardHostsMatchSubdomainsAndTheLongestSuffixWins) {
  std::shared_ptr<const Snapshot> s =
      Compile(std::string(kServices) + VirtualService("wild", kWildcardHosts) +
              VirtualService("api-wild", R"(
  hosts: ["*.api.example.com"]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
)") + VirtualService("www", R"(
  hosts: [www.example.com]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
)"));
  ASSERT_NE(s, nullptr);
  const std::pair<const char*, const char*> cases[] = {
      {"a.example.com", "*.example.com"},
      {"a.b.example.com", "*.example.com"},
      {"A.Example.COM:8080", "*.example.com"},
      {"api.example.com", "*.example.com"},  // *.api.example.com needs one more label
      {"v1.api.example.com", "*.api.example.com"},
      {"www.example.com", "www.example.com"},  // exact beats wildcard
      {"www.example.com:443", "www.example.com"},
  };
  for (const auto& [authority, host] : cases) {
    SCOPED_TRACE(authority);
    const VirtualHost* vh = s->FindVirtualHost(authority);
    ASSERT_NE(vh, nullptr);
    EXPECT_EQ(vh->name, host);
  }
  EXPECT_EQ(s->FindVirtualHost("example.com"), nullptr);
  EXPECT_EQ(s->FindVirtualHost("example.org"), nullptr);
}

TEST_F(SnapshotTest, StarHostCatchesEveryOtherAuthority) {
  std::shared_ptr<const Snapshot> s =
      Compile(std::string(kServices) + VirtualService("catch-all", R"(
  hosts: ["*"]
  gateways: [ingress]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
)") + VirtualService("wild", kWildcardHosts));
  ASSERT_NE(s, nullptr);
  const std::pair<const char*, const char*> cases[] = {
      {"anything.test", "*"},    {"ratings", "*"},  // no bare alias for namespace other
      {"10.1.2.3:8080", "*"},    {"a.example.com", "*.example.com"},
      {"reviews", kReviewsFqdn}, {"ratings.other", kRatingsFqdn},
  };
  for (const auto& [authority, host] : cases) {
    SCOPED_TRACE(authority);
    const VirtualHost* vh = s->FindVirtualHost(authority);
    ASSERT_NE(vh, nullptr);
    EXPECT_EQ(vh->name, host);
  }
}

// ---------------------------------------------------------------------------------------------
// Weights

RouteDestination Weighted(std::string subset, uint32_t weight) {
  RouteDestination d;
  d.host = kReviewsFqdn;
  d.subset = std::move(subset);
  d.weight = weight;
  return d;
}

TEST(WeightTableTest, PickUsesRandomModuloTotalOverCumulativeRanges) {
  const WeightTable table({Weighted("v1", 90), Weighted("v2", 10)});
  EXPECT_EQ(table.total_weight(), 100u);
  const std::pair<uint64_t, size_t> cases[] = {
      {0, 0},   {1, 0},   {89, 0},  {90, 1},  {99, 1},
      {100, 0}, {189, 0}, {190, 1}, {199, 1}, {UINT64_MAX, 0},  // 2^64-1 = 15 (mod 100)
  };
  for (const auto& [random, index] : cases) {
    SCOPED_TRACE(random);
    EXPECT_EQ(table.Pick(random), index);
  }
}

TEST(WeightTableTest, WeightsAreRelativeShares) {
  // Scenario 11: weights 1 and 3 are 25 % / 75 % (valid since Istio 1.15).
  const WeightTable table({Weighted("v1", 1), Weighted("v2", 3)});
  EXPECT_EQ(table.total_weight(), 4u);
  EXPECT_EQ(table.Pick(0), 0u);
  EXPECT_EQ(table.Pick(1), 1u);
  EXPECT_EQ(table.Pick(3), 1u);
  EXPECT_EQ(table.Pick(4), 0u);
}

TEST(WeightTableTest, ZeroWeightDestinationsAreDroppedWhenThereAreSeveral) {
  const WeightTable table(
      {Weighted("v1", 0), Weighted("v2", 50), Weighted("v3", 0), Weighted("v4", 50)});
  ASSERT_EQ(table.destinations().size(), 2u);
  EXPECT_EQ(table.destinations()[0].subset, "v2");
  EXPECT_EQ(table.destinations()[1].subset, "v4");
  EXPECT_EQ(table.total_weight(), 100u);
  EXPECT_EQ(table.Pick(49), 0u);
  EXPECT_EQ(table.Pick(50), 1u);

  const WeightTable all_to_one({Weighted("v1", 100), Weighted("v2", 0)});
  ASSERT_EQ(all_to_one.destinations().size(), 1u);
  EXPECT_EQ(all_to_one.destinations()[0].subset, "v1");
  for (uint64_t random : {0u, 57u, 99u, 12345u}) EXPECT_EQ(all_to_one.Pick(random), 0u);
}

TEST(WeightTableTest, ASingleDestinationGetsEverythingWhateverItsWeight) {
  for (uint32_t weight : {0u, 1u, 30u, 100u}) {
    SCOPED_TRACE(weight);
    const WeightTable table({Weighted("v1", weight)});
    ASSERT_EQ(table.destinations().size(), 1u);
    EXPECT_EQ(table.destinations()[0].weight, 100u);
    EXPECT_EQ(table.total_weight(), 100u);
    EXPECT_EQ(table.Pick(0), 0u);
    EXPECT_EQ(table.Pick(99), 0u);
    EXPECT_EQ(table.Pick(12345), 0u);
  }
  EXPECT_TRUE(WeightTable().empty());
}

TEST_F(SnapshotTest, RouteWeightsComeFromTheVirtualService) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /canary}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
  - match: [{uri: {prefix: /pinned}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    - destination: {host: reviews, subset: v2}
      weight: 0
  - route:
    - destination: {host: reviews, subset: v3}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 3u);

  const WeightTable& canary = routes[0].weights;
  ASSERT_EQ(canary.destinations().size(), 2u);
  EXPECT_EQ(canary.destinations()[0].subset, "v1");
  EXPECT_EQ(canary.destinations()[0].weight, 90u);
  EXPECT_EQ(canary.destinations()[1].subset, "v2");
  EXPECT_EQ(canary.destinations()[1].weight, 10u);
  EXPECT_EQ(canary.Pick(89), 0u);
  EXPECT_EQ(canary.Pick(90), 1u);
  EXPECT_EQ(canary.Pick(100), 0u);

  ASSERT_EQ(routes[1].weights.destinations().size(), 1u);
  EXPECT_EQ(routes[1].weights.destinations()[0].subset, "v1");

  ASSERT_EQ(routes[2].weights.destinations().size(), 1u);
  EXPECT_EQ(routes[2].weights.destinations()[0].weight, 100u);
}

// ---------------------------------------------------------------------------------------------
// Clusters and endpoints

TEST(ClusterNameTest, IsIstiosOutboundSubsetKey) {
  EXPECT_EQ(ClusterName(kReviewsFqdn, "v1", 9080),
            "outbound|9080|v1|reviews.default.svc.cluster.local");
  EXPECT_EQ(ClusterName(kReviewsFqdn, "", 9080),
            "outbound|9080||reviews.default.svc.cluster.local");
}

TEST_F(SnapshotTest, EveryServicePortAndSubsetHasACluster) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  std::vector<std::string> names;
  for (const auto& c : s->clusters()) names.push_back(c->name);
  EXPECT_THAT(names, UnorderedElementsAre("outbound|8080||details.default.svc.cluster.local",
                                          "outbound|9080||ratings.other.svc.cluster.local",
                                          "outbound|9080||reviews.default.svc.cluster.local",
                                          "outbound|9080|v1|reviews.default.svc.cluster.local",
                                          "outbound|9080|v2|reviews.default.svc.cluster.local",
                                          "outbound|9080|v3|reviews.default.svc.cluster.local"));
  const Cluster* v1 = s->FindCluster("outbound|9080|v1|reviews.default.svc.cluster.local");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->host, kReviewsFqdn);
  EXPECT_EQ(v1->subset, "v1");
  EXPECT_EQ(v1->port, 9080u);
  EXPECT_EQ(s->FindCluster("outbound|9080|v9|reviews.default.svc.cluster.local"), nullptr);
}

TEST_F(SnapshotTest, SubsetClustersSelectEndpointsByLabels) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  const std::pair<const char*, std::vector<std::string>> cases[] = {
      {"outbound|9080||reviews.default.svc.cluster.local", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
      {"outbound|9080|v1|reviews.default.svc.cluster.local", {"10.0.0.1"}},
      {"outbound|9080|v2|reviews.default.svc.cluster.local", {"10.0.0.2"}},
      {"outbound|9080|v3|reviews.default.svc.cluster.local", {"10.0.0.3"}},
  };
  for (const auto& [name, addresses] : cases) {
    SCOPED_TRACE(name);
    const Cluster* c = s->FindCluster(name);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(Addresses(*c), addresses);
  }
}

TEST_F(SnapshotTest, EndpointPortIsTheNamedPortThenTargetPortThenServicePort) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  const Cluster* reviews = s->FindCluster("outbound|9080||reviews.default.svc.cluster.local");
  const Cluster* details = s->FindCluster("outbound|8080||details.default.svc.cluster.local");
  ASSERT_NE(reviews, nullptr);
  ASSERT_NE(details, nullptr);
  ASSERT_EQ(reviews->endpoints.size(), 3u);
  EXPECT_EQ(reviews->endpoints[0].port, 19080u);  // ports: {http: 19080}
  EXPECT_EQ(reviews->endpoints[0].id, "10.0.0.1:19080");
  EXPECT_EQ(reviews->endpoints[1].port, 9080u);  // the service port
  EXPECT_EQ(reviews->endpoints[1].id, "10.0.0.2:9080");
  EXPECT_THAT(reviews->endpoints[0].labels,
              UnorderedElementsAre(std::pair<std::string, std::string>("app", "reviews"),
                                   std::pair<std::string, std::string>("version", "v1")));
  EXPECT_EQ(reviews->endpoints[0].weight, 1u);

  ASSERT_EQ(details->endpoints.size(), 2u);
  EXPECT_EQ(details->endpoints[0].port, 28080u);  // the named port beats targetPort
  EXPECT_EQ(details->endpoints[1].port, 18080u);  // targetPort
}

TEST_F(SnapshotTest, DestinationsPointAtTheirClusters) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 1u);
  const RouteDestination& d = routes[0].weights.destinations().at(0);
  EXPECT_EQ(d.host, kReviewsFqdn);
  EXPECT_EQ(d.subset, "v2");
  EXPECT_EQ(d.port, 9080u);
  EXPECT_EQ(d.cluster_name, "outbound|9080|v2|reviews.default.svc.cluster.local");
  EXPECT_EQ(d.cluster, s->FindCluster(d.cluster_name));
  ASSERT_NE(d.cluster, nullptr);
  EXPECT_THAT(Addresses(*d.cluster), ElementsAre("10.0.0.2"));
}

TEST_F(SnapshotTest, UndefinedSubsetHasAClusterNameButNoCluster) {
  // 503 NC at request time; validation only warns.
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
)"));
  ASSERT_NE(s, nullptr);
  EXPECT_THAT(load_diagnostics_.ToString(), HasSubstr("subset \"v9\""));
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 1u);
  const RouteDestination& d = routes[0].weights.destinations().at(0);
  EXPECT_EQ(d.cluster, nullptr);
  EXPECT_EQ(d.cluster_name, "outbound|9080|v9|reviews.default.svc.cluster.local");
  EXPECT_EQ(s->FindCluster(d.cluster_name), nullptr);
}

TEST_F(SnapshotTest, UnknownDestinationHostHasNoCluster) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /ext}}]
    route:
    - destination: {host: nowhere.example.org, port: {number: 8443}}
  - route:
    - destination: {host: nowhere.example.org}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 2u);
  const RouteDestination& with_port = routes[0].weights.destinations().at(0);
  EXPECT_EQ(with_port.cluster, nullptr);
  EXPECT_EQ(with_port.cluster_name, "outbound|8443||nowhere.example.org");
  EXPECT_EQ(routes[1].weights.destinations().at(0).cluster, nullptr);
}

TEST_F(SnapshotTest, DestinationToAPortTheServiceDoesNotDeclareHasNoCluster) {
  // Istio builds outbound clusters only for the ports a service declares, so a route to
  // outbound|9999||reviews... names a cluster Envoy does not have: 503 NC.
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, port: {number: 9999}}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 1u);
  const RouteDestination& d = routes[0].weights.destinations().at(0);
  EXPECT_EQ(d.cluster_name, "outbound|9999||reviews.default.svc.cluster.local");
  EXPECT_EQ(d.cluster, nullptr) << "no cluster for a port the ServiceEntry does not declare";
  EXPECT_EQ(s->FindCluster(d.cluster_name), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Rule order

TEST_F(SnapshotTest, FirstMatchWinsAndNoMatchIsNotFound) {
  // Scenario 12.
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - name: a
    match: [{uri: {prefix: /api}}]
    route:
    - destination: {host: reviews, subset: v1}
  - name: b
    match: [{uri: {prefix: /api/v2}}]
    route:
    - destination: {host: reviews, subset: v2}
)"));
  ASSERT_NE(s, nullptr);
  const std::pair<const char*, const char*> cases[] = {
      {"/api/v2/x", "a"}, {"/apiary", "a"}, {"/api", "a"}, {"/other", nullptr}};
  for (const auto& [path, route] : cases) {
    SCOPED_TRACE(path);
    const Route* r = FirstMatch(*s, Request(path));
    if (route == nullptr) {
      EXPECT_EQ(r, nullptr);
    } else {
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(r->name, route);
    }
  }
}

TEST_F(SnapshotTest, RulesAfterACatchAllAreDroppedWithAWarning) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v2}
  - match: [{uri: {prefix: /late}}]
    route:
    - destination: {host: reviews, subset: v3}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[1].weights.destinations().at(0).subset, "v2");
  const std::vector<config::Diagnostic> warnings = diagnostics_.Filter(config::Severity::kWarning);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].field_path, "spec.http[2]");
  EXPECT_THAT(warnings[0].message, HasSubstr("can never match"));
  EXPECT_THAT(warnings[0].message, HasSubstr(kReviewsFqdn));
}

TEST_F(SnapshotTest, PrefixSlashAndRegexDotStarAreCatchAllsButNotWithConditions) {
  const struct {
    std::string label;
    std::string first_match;
    size_t routes;
  } cases[] = {
      {"prefix /", "[{uri: {prefix: /}}]", 1},
      {"regex .*", "[{uri: {regex: \".*\"}}]", 1},
      {"one of several blocks", "[{uri: {prefix: /a}}, {uri: {prefix: /}}]", 1},
      {"prefix / with a header", "[{uri: {prefix: /}, headers: {end-user: {exact: jason}}}]", 2},
      {"prefix / with a query", "[{uri: {prefix: /}, queryParams: {debug: {}}}]", 2},
      {"prefix /api", "[{uri: {prefix: /api}}]", 2},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    diagnostics_ = config::Diagnostics();
    std::shared_ptr<const Snapshot> s =
        Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: )" + c.first_match + R"(
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v2}
)"));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(RoutesFor(*s, "reviews").size(), c.routes);
    EXPECT_EQ(diagnostics_.Filter(config::Severity::kWarning).size(), c.routes == 1 ? 1u : 0u);
  }
}

TEST_F(SnapshotTest, VirtualServicesForTheSameHostAreMergedInOrder) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("first", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route:
    - destination: {host: reviews, subset: v1}
)") + VirtualService("second", R"(
  hosts: [reviews.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /b}}]
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v3}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0].virtual_service, "default/first");
  EXPECT_EQ(routes[0].display_name, "first.default.0");
  EXPECT_EQ(routes[1].virtual_service, "default/second");
  EXPECT_EQ(routes[1].display_name, "second.default.0");
  EXPECT_EQ(routes[2].display_name, "second.default.1");
  EXPECT_EQ(FirstMatch(*s, Request("/a/x")), &routes[0]);
  EXPECT_EQ(FirstMatch(*s, Request("/b/x")), &routes[1]);
  EXPECT_EQ(FirstMatch(*s, Request("/c")), &routes[2]);
  // One virtual host, not two.
  size_t reviews_hosts = 0;
  for (const VirtualHost& h : s->virtual_hosts()) reviews_hosts += h.name == kReviewsFqdn;
  EXPECT_EQ(reviews_hosts, 1u);
}

TEST_F(SnapshotTest, ServiceWithoutVirtualServiceGetsOneDefaultRoute) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "ratings.other");
  ASSERT_EQ(routes.size(), 1u);
  const Route& r = routes[0];
  EXPECT_EQ(r.display_name, "default");
  EXPECT_THAT(r.matches, IsEmpty());
  EXPECT_EQ(r.action, RouteAction::kForward);
  EXPECT_EQ(r.timeout, absl::ZeroDuration());
  ASSERT_EQ(r.weights.destinations().size(), 1u);
  const RouteDestination& d = r.weights.destinations()[0];
  EXPECT_EQ(d.host, kRatingsFqdn);
  EXPECT_EQ(d.subset, "");
  EXPECT_EQ(d.cluster_name, "outbound|9080||ratings.other.svc.cluster.local");
  ASSERT_NE(d.cluster, nullptr);
  EXPECT_THAT(Addresses(*d.cluster), ElementsAre("10.0.2.1"));
  // Istio's default retry policy.
  EXPECT_EQ(r.retry.num_retries, 2u);
  EXPECT_EQ(r.retry.retry_on, kRetryOnConnectFailure | kRetryOnRefusedStream | kRetryOnUnavailable |
                                  kRetryOnCancelled | kRetryOnRetriableStatusCodes);
  EXPECT_THAT(r.retry.retriable_status_codes, IsEmpty());
  // Every request gets there.
  RequestAttributes any = Request("/whatever?x=1");
  any.authority = "ratings.other";
  EXPECT_EQ(FirstMatch(*s, any), &r);
}

TEST_F(SnapshotTest, WildcardVirtualServiceCoversTheServicesItMatches) {
  // Istio (route.go separateVSHostsAndServices) attaches every registry service that a
  // wildcard VirtualService host matches to that VirtualService, and builds a default route
  // only for services no VirtualService covers.
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + R"(---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.0.3.1}]
)" + VirtualService("wild", kWildcardHosts));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "shop.example.com");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0].virtual_service, "default/wild");
  EXPECT_EQ(routes[0].weights.destinations().at(0).subset, "v1");
}

// ---------------------------------------------------------------------------------------------
// Route contents

TEST_F(SnapshotTest, MatchHeaderNamesListsEveryHeaderThatRulesRead) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    - headers: {end-user: {prefix: j}, x-version: {}}
    route:
    - destination: {host: reviews, subset: v2}
  - match:
    - withoutHeaders: {x-canary: {exact: "true"}}
      method: {exact: GET}
      queryParams: {debug: {}}
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v3}
)"));
  ASSERT_NE(s, nullptr);
  EXPECT_THAT(s->match_header_names(), UnorderedElementsAre("end-user", "x-version", "x-canary"));
}

TEST_F(SnapshotTest, NoHeaderRulesNoHeaderNames) {
  std::shared_ptr<const Snapshot> s = Compile(kServices);
  ASSERT_NE(s, nullptr);
  EXPECT_THAT(s->match_header_names(), IsEmpty());
}

TEST_F(SnapshotTest, RoutesCarryTheirTimeoutAndResolvedRetryPolicy) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,429"}
    route:
    - destination: {host: reviews, subset: v1}
  - match: [{uri: {prefix: /b}}]
    timeout: 1s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx"}
    route:
    - destination: {host: reviews, subset: v1}
  - match: [{uri: {prefix: /c}}]
    retries: {attempts: 0}
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v1}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 4u);

  EXPECT_EQ(routes[0].timeout, absl::Seconds(2));
  EXPECT_EQ(routes[0].retry.num_retries, 3u);
  EXPECT_EQ(routes[0].retry.retry_on, kRetryOn5xx | kRetryOnRetriableStatusCodes);
  EXPECT_THAT(routes[0].retry.retriable_status_codes, ElementsAre(429u));
  EXPECT_EQ(routes[0].retry.per_try_timeout, absl::Milliseconds(500));

  // Scenario 3: a per-try timeout not shorter than the route timeout is dropped.
  EXPECT_EQ(routes[1].timeout, absl::Seconds(1));
  EXPECT_EQ(routes[1].retry.per_try_timeout, absl::ZeroDuration());

  EXPECT_EQ(routes[2].retry.num_retries, 0u);
  EXPECT_EQ(routes[2].retry.retry_on, 0u);

  // No timeout: disabled (Istio writes 0). No retries block: Istio's default.
  EXPECT_EQ(routes[3].timeout, absl::ZeroDuration());
  EXPECT_EQ(routes[3].retry.num_retries, 2u);
}

TEST_F(SnapshotTest, FaultAndMirrorPercentagesArePartsPerMillion) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fault}}]
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 50}}
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    mirror: {host: reviews, subset: v2}
    route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, subset: v3}
      percentage: {value: 25}
    - destination: {host: reviews, subset: v2}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 2u);

  ASSERT_TRUE(routes[0].fault.has_value());
  ASSERT_TRUE(routes[0].fault->delay.has_value());
  EXPECT_EQ(routes[0].fault->delay->fixed_delay, absl::Seconds(2));
  ASSERT_TRUE(routes[0].fault->delay->percentage.has_value());
  EXPECT_EQ(routes[0].fault->delay->percentage->numerator, 500'000u);
  EXPECT_EQ(routes[0].fault->delay->percentage->denominator, 1'000'000u);
  ASSERT_TRUE(routes[0].fault->abort.has_value());
  EXPECT_EQ(routes[0].fault->abort->http_status, 503u);
  ASSERT_TRUE(routes[0].fault->abort->percentage.has_value());
  EXPECT_EQ(routes[0].fault->abort->percentage->numerator, 1'000u);
  EXPECT_EQ(routes[0].fault->abort->percentage->denominator, 1'000'000u);

  // `mirror` without mirrorPercentage: 100 %.
  ASSERT_EQ(routes[0].mirrors.size(), 1u);
  EXPECT_EQ(routes[0].mirrors[0].percentage.numerator, 1'000'000u);
  EXPECT_EQ(routes[0].mirrors[0].percentage.denominator, 1'000'000u);
  EXPECT_EQ(routes[0].mirrors[0].destination.cluster_name,
            "outbound|9080|v2|reviews.default.svc.cluster.local");
  EXPECT_NE(routes[0].mirrors[0].destination.cluster, nullptr);

  EXPECT_FALSE(routes[1].fault.has_value());
  ASSERT_EQ(routes[1].mirrors.size(), 2u);
  EXPECT_EQ(routes[1].mirrors[0].destination.subset, "v3");
  EXPECT_EQ(routes[1].mirrors[0].percentage.numerator, 250'000u);
  EXPECT_EQ(routes[1].mirrors[0].percentage.denominator, 1'000'000u);
  EXPECT_EQ(routes[1].mirrors[1].destination.subset, "v2");
  EXPECT_EQ(routes[1].mirrors[1].percentage.numerator, 1'000'000u);
  EXPECT_EQ(routes[1].mirrors[1].percentage.denominator, 1'000'000u);
}

TEST_F(SnapshotTest, RedirectAndDirectResponseRoutesHaveNoDestinations) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - route:
    - destination: {host: reviews, subset: v1}
)"));
  ASSERT_NE(s, nullptr);
  const std::vector<Route>& routes = RoutesFor(*s, "reviews");
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0].action, RouteAction::kRedirect);
  ASSERT_TRUE(routes[0].redirect.has_value());
  EXPECT_EQ(routes[0].redirect->uri, "/new");
  EXPECT_EQ(routes[0].redirect->redirect_code, 302u);
  EXPECT_TRUE(routes[0].weights.empty());
  EXPECT_EQ(routes[1].action, RouteAction::kDirectResponse);
  ASSERT_TRUE(routes[1].direct_response.has_value());
  EXPECT_EQ(routes[1].direct_response->status, 200u);
  EXPECT_EQ(routes[1].direct_response->body, "ok");
  EXPECT_TRUE(routes[1].weights.empty());
  EXPECT_EQ(routes[2].action, RouteAction::kForward);
}

// ---------------------------------------------------------------------------------------------
// Printer

TEST_F(SnapshotTest, SummaryCountsHostsRoutesSubsetsEndpointsAndCanaries) {
  std::shared_ptr<const Snapshot> s = Compile(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.0.3}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
)" + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
)"));
  ASSERT_NE(s, nullptr);
  const SnapshotSummary summary = Summarize(*s);
  EXPECT_EQ(summary.hosts, 2u);
  EXPECT_EQ(summary.routes, 3u);
  EXPECT_EQ(summary.subsets, 2u);
  EXPECT_EQ(summary.endpoints, 3u);
  EXPECT_EQ(summary.canaries, 0u);
  EXPECT_EQ(FormatSummary(summary), "2 hosts, 3 routes, 2 subsets, 3 endpoints, 0 canaries");
  EXPECT_EQ(FormatSummary({1, 1, 1, 1, 1}), "1 host, 1 route, 1 subset, 1 endpoint, 1 canary");

  const std::string text = DescribeSnapshot(*s);
  EXPECT_THAT(text, HasSubstr("configuration version 7: 2 hosts, 3 routes"));
  EXPECT_THAT(text, HasSubstr("host reviews.default.svc.cluster.local"));
  EXPECT_THAT(text, HasSubstr("host ratings.default.svc.cluster.local"));
  EXPECT_THAT(text, HasSubstr("header end-user exact \"jason\""));
  EXPECT_THAT(text, HasSubstr("outbound|9080|v2|reviews.default.svc.cluster.local"));
  EXPECT_THAT(text, HasSubstr("10.0.0.3:9080"));
}

TEST_F(SnapshotTest, DescribeSnapshotShowsWeightsTimeoutsRetriesFaultsAndMirrors) {
  std::shared_ptr<const Snapshot> s = Compile(std::string(kServices) + VirtualService("reviews", R"(
  hosts: [reviews]
  http:
  - timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,429"}
    fault:
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 10}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v9}
      weight: 10
)"));
  ASSERT_NE(s, nullptr);
  const std::string text = DescribeSnapshot(*s);
  for (const char* part :
       {"host reviews.default.svc.cluster.local", "host details.default.svc.cluster.local",
        "host ratings.other.svc.cluster.local", " 90.0%", " 10.0%",
        "subset v9 (no such cluster: 503 NC)", "timeout  2s",
        "retries  3 on 5xx,retriable-status-codes (codes 429), per try 500ms",
        "abort HTTP 503 for 0.1%", "mirror   10% to"}) {
    EXPECT_THAT(text, HasSubstr(part));
  }
}

TEST(FormatPercentTest, UsesFourSignificantDigits) {
  EXPECT_EQ(FormatPercent({100'000, 1'000'000}), "10%");
  EXPECT_EQ(FormatPercent({1'000, 1'000'000}), "0.1%");
  EXPECT_EQ(FormatPercent({1, 1'000'000}), "0.0001%");
  EXPECT_EQ(FormatPercent({50, 100}), "50%");
}

}  // namespace
}  // namespace sluice::routing
