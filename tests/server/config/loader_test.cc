#include "server/config/loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/utf8.h"

namespace sluice::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

namespace fs = std::filesystem;

class LoaderFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sluice-loader-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "nested");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& relative, const std::string& text) {
    const fs::path path = dir_ / relative;
    std::ofstream(path) << text;
    return path.string();
  }

  fs::path dir_;
};

constexpr char kServiceEntry[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews]
  ports:
  - number: 9080
    name: http
  endpoints:
  - address: 127.0.0.1
    ports: {http: 19081}
    labels: {version: v1}
)";

constexpr char kDestinationRule[] = R"(apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
)";

TEST_F(LoaderFilesTest, ReadsFoldersRecursivelyInNameOrderAndOnlyYaml) {
  Write("b.yaml", kDestinationRule);
  Write("nested/a.yml", kServiceEntry);
  Write("notes.txt", "this is not configuration: [");
  LoadResult r = LoadPaths({dir_.string()});
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_EQ(r.config.service_entries.size(), 1u);
  EXPECT_EQ(r.config.destination_rules.size(), 1u);
  EXPECT_THAT(r.config.service_entries[0].meta.location.file, HasSubstr("nested/a.yml"));
}

TEST_F(LoaderFilesTest, AConfigMapMountIsReadOnce) {
  // The kubelet's layout: visible names are symlinks through "..data" into a hidden,
  // timestamped folder that holds the real files.
  std::filesystem::create_directories(dir_ / "..2026_11_27_10_00_00.123");
  Write("..2026_11_27_10_00_00.123/shop.yaml", kServiceEntry);
  Write("..2026_11_27_10_00_00.123/rules.yaml", kDestinationRule);
  std::filesystem::create_directory_symlink("..2026_11_27_10_00_00.123", dir_ / "..data");
  std::filesystem::create_symlink("..data/shop.yaml", dir_ / "shop.yaml");
  std::filesystem::create_symlink("..data/rules.yaml", dir_ / "rules.yaml");
  LoadResult r = LoadPaths({dir_.string()});
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_EQ(r.config.service_entries.size(), 1u);
  EXPECT_EQ(r.config.destination_rules.size(), 1u);
  EXPECT_EQ(
      ConfigFilesIn(dir_.string()),
      (std::vector<std::string>{(dir_ / "rules.yaml").string(), (dir_ / "shop.yaml").string()}));
}

TEST_F(LoaderFilesTest, MissingPathIsAnError) {
  LoadResult r = LoadPaths({(dir_ / "absent.yaml").string()});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.diagnostics.all()[0].ToString(), HasSubstr("absent.yaml: no such file"));
}

TEST_F(LoaderFilesTest, ErrorsNameTheFileTheyCameFrom) {
  Write("good.yaml", kServiceEntry);
  const std::string bad = Write("bad.yaml", R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    outlierDetection:
      maxEjectionPercent: 120
)");
  LoadResult r = LoadPaths({dir_.string()});
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.error_count(), 1);
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            bad +
                ":9: spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between "
                "0 and 100, found 120");
}

TEST(LoadText, LinesCountAcrossDocuments) {
  LoadResult r = LoadText(std::string(kServiceEntry) + "---\n" + kDestinationRule +
                              "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                              "metadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n"
                              "  - route:\n    - destination: {host: reviews, subset: v1}\n"
                              "    timeout: 0s\n",
                          "all.yaml");
  ASSERT_FALSE(r.ok());
  const Diagnostic d = r.diagnostics.Filter(Severity::kError).at(0);
  EXPECT_EQ(d.where.line, 34);
  EXPECT_EQ(d.field_path, "spec.http[0].timeout");
  EXPECT_EQ(d.ToString(), "all.yaml:34: spec.http[0].timeout: must be at least 1ms");
}

TEST(LoadText, InvalidYamlSyntaxNamesTheLine) {
  LoadResult r = LoadText("apiVersion: networking.istio.io/v1\nkind: [unclosed\n", "x.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.diagnostics.all()[0].ToString(), HasSubstr("x.yaml:"));
  EXPECT_THAT(r.diagnostics.all()[0].message, HasSubstr("invalid YAML"));
}

TEST(LoadText, ParsesEveryKindIntoItsStruct) {
  LoadResult r = LoadText(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: prod}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http, targetPort: 18080}]
  workloadSelector:
    labels: {app: shop}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-1, namespace: prod}
spec:
  address: 127.0.0.2
  labels: {app: shop, version: v2}
  weight: 3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: prod}
spec:
  host: shop
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 3, maxRetries: 2}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: prod}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: v1}
      weight: 90
    - destination: {host: shop, subset: v2}
      weight: 10
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,429"}
    fault:
      abort: {httpStatus: 503, percentage: {value: 0.1}}
      delay: {fixedDelay: 2s, percent: 5}
---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop, namespace: prod}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
  analysis:
    interval: 10s
    threshold: 2
    minRequests: 100
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99.5}
)",
                          "shop.yaml");
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  ASSERT_EQ(r.config.workload_entries.size(), 1u);
  EXPECT_EQ(r.config.workload_entries[0].spec.weight, 3u);
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  EXPECT_EQ(r.config.service_entries[0].ports[0].target_port, 18080u);
  EXPECT_EQ(r.config.service_entries[0].meta.namespace_name, "prod");

  const DestinationRule& dr = r.config.destination_rules.at(0);
  EXPECT_EQ(dr.traffic_policy->connection_pool->tcp->max_connections, 7);
  EXPECT_EQ(dr.traffic_policy->connection_pool->tcp->connect_timeout, absl::Milliseconds(250));
  EXPECT_EQ(dr.traffic_policy->connection_pool->http->http1_max_pending_requests, 3);

  const HTTPRoute& route = r.config.virtual_services.at(0).http.at(0);
  EXPECT_EQ(route.timeout, absl::Seconds(5));
  EXPECT_EQ(route.retries->attempts, 3);
  EXPECT_EQ(route.retries->per_try_timeout, absl::Seconds(2));
  EXPECT_EQ(route.retries->retry_on, "5xx,429");
  // 0.1% is 1000 parts per million; the deprecated integer percent is over a hundred.
  EXPECT_EQ(route.fault->abort->percentage->numerator, 1000u);
  EXPECT_EQ(route.fault->abort->percentage->denominator, 1'000'000u);
  EXPECT_EQ(route.fault->delay->percentage->numerator, 5u);
  EXPECT_EQ(route.fault->delay->percentage->denominator, 100u);
  EXPECT_EQ(route.route[1].weight, 10);

  const Canary& c = r.config.canaries.at(0);
  EXPECT_EQ(c.analysis.interval, absl::Seconds(10));
  EXPECT_EQ(c.analysis.threshold, 2);
  EXPECT_EQ(c.analysis.min_requests, 100);
  EXPECT_EQ(c.analysis.metrics.at(0).threshold_min, 99.5);
}

TEST(LoadText, CanaryJudgeAndMetricSources) {
  const std::string base = R"(apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
  analysis:
)";
  // After the Canary, so its line numbers stay put: the split it needs.
  const std::string split = R"(---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
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
  - route:
    - {destination: {host: shop, subset: v1}, weight: 100}
    - {destination: {host: shop, subset: v2}, weight: 0}
)";
  LoadResult r = LoadText(base + R"yaml(    judge: sequential
    falseRollbackRate: 0.05
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
    - {name: request-duration, thresholdRange: {max: 500}, source: prometheus}
    - {name: errors, query: "sum(x)", thresholdRange: {
  max:
    1}
}
)yaml" + split,
                          "c.yaml");
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  const CanaryAnalysis& a = r.config.canaries.at(0).analysis;
  EXPECT_EQ(a.judge, CanaryJudge::kSequential);
  EXPECT_DOUBLE_EQ(a.false_rollback_rate, 0.05);
  EXPECT_EQ(a.metrics.at(0).source, MetricSource::kBuiltin);
  EXPECT_EQ(a.metrics.at(1).source, MetricSource::kPrometheus);
  EXPECT_EQ(a.metrics.at(2).source, MetricSource::kPrometheus);  // a query runs on Prometheus

  LoadResult defaults = LoadText(base + "    threshold: 2\n" + split, "d.yaml");
  ASSERT_TRUE(defaults.ok()) << defaults.diagnostics.ToString();
  EXPECT_EQ(defaults.config.canaries.at(0).analysis.judge, CanaryJudge::kThreshold);
  EXPECT_DOUBLE_EQ(defaults.config.canaries.at(0).analysis.false_rollback_rate, 0.01);

  LoadResult bad = LoadText(base + R"yaml(    judge: bayesian
    falseRollbackRate: 0.9
    metrics:
    - {name: request-duration, thresholdRange: {max: 500}, source: graphite}
    - {name: errors, query: "sum(x)", thresholdRange: {max: 1}, source: builtin
  }
)yaml" + split,
                            "bad.yaml");
  EXPECT_FALSE(bad.ok());
  const std::string errors = bad.diagnostics.ToString();
  EXPECT_THAT(errors, HasSubstr("bad.yaml:9: spec.analysis.judge"));
  EXPECT_THAT(errors, HasSubstr("\"bayesian\" is not a judge: threshold or sequential"));
  EXPECT_THAT(errors, HasSubstr("bad.yaml:10: spec.analysis.falseRollbackRate: must be greater"));
  EXPECT_THAT(errors, HasSubstr("spec.analysis.metrics[0].source: \"graphite\" is not a source"));
  EXPECT_THAT(errors,
              HasSubstr("spec.analysis.metrics[1].source: must be prometheus for a metric with a "
                        "query"));
}

TEST(LoadText, SkipsOtherKindsWithANoticeAndReadsKubernetesLists) {
  LoadResult r = LoadText(R"(apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1alpha3
  kind: DestinationRule
  metadata: {name: a, uid: 1234, resourceVersion: "9"}
  spec:
    host: a
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec: {replicas: 1}
- apiVersion: networking.istio.io/v1
  kind: Gateway
  metadata: {name: g}
  spec: {selector: {istio: ingressgateway}}
)",
                          "list.yaml");
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  EXPECT_EQ(r.config.destination_rules.size(), 1u);
  const std::vector<Diagnostic> notices = r.diagnostics.Filter(Severity::kNotice);
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_THAT(notices[0].ToString(), HasSubstr("list.yaml:9: notice: skipping Deployment"));
  EXPECT_THAT(notices[1].ToString(), HasSubstr("skipping Gateway"));
}

// yaml-cpp stops at 500 levels with "bad file"; sluice stops at 64 and says where.
TEST(LoaderLimits, NestingDeeperThan64LevelsNamesTheLine) {
  // Block style after a valid document: the n-th `k:` opens level n.
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += std::string(2 * i, ' ') + "k:\n";
  const std::string prefix = std::string(kServiceEntry) + "---\n";
  const int prefix_lines = static_cast<int>(std::count(prefix.begin(), prefix.end(), '\n'));
  LoadResult r = LoadText(prefix + deep, "deep.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            "deep.yaml:" + std::to_string(prefix_lines + 65) + ": nesting deeper than 64 levels");
  EXPECT_EQ(r.config.service_entries.size(), 1u);

  // Flow style, far past yaml-cpp's own limit: the 63rd bracket opens level 65.
  r = LoadText("a:\n  b: " + std::string(100000, '[') + std::string(100000, ']') + "\n",
               "flow.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            "flow.yaml:2: nesting deeper than 64 levels");

  // 64 levels are read (the document is no resource, which is another error).
  std::string limit;
  for (int i = 0; i < 64; ++i) limit += std::string(2 * i, ' ') + "k:\n";
  r = LoadText(limit, "limit.yaml");
  for (const Diagnostic& d : r.diagnostics.all()) {
    EXPECT_THAT(d.message, Not(HasSubstr("nesting"))) << d.ToString();
    EXPECT_THAT(d.message, Not(HasSubstr("invalid YAML"))) << d.ToString();
  }
}

// yaml-cpp shares what an alias names, but reading walks every alias: 300 routes, each an
// alias of one with 300 destinations, are 90,000 destinations from 600 lines. Refused at the
// alias that takes the expansion past the budget.
TEST(LoaderLimits, AliasesExpandingPastTheBudgetAreRefusedAtTheAlias) {
  std::string bomb = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lol}
spec:
  hosts: [lol]
  http:
  - &h
    route:
    - &d {destination: {host: lol}, weight: 1}
)";
  for (int i = 1; i < 300; ++i) bomb += "    - *d\n";
  int line = static_cast<int>(std::count(bomb.begin(), bomb.end(), '\n'));
  for (int i = 1; i < 300; ++i) bomb += "  - *h\n";
  // A destination is 7 nodes, the route 2,103 (2,093 of them through aliases); the 47th *h
  // takes the aliases past 100,000 nodes.
  line += 47;
  LoadResult r = LoadText(bomb, "bomb.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString().substr(0, 2000);
  EXPECT_EQ(
      r.diagnostics.Filter(Severity::kError)[0].ToString(),
      "bomb.yaml:" + std::to_string(line) + ": aliases expand to more than 100000 nodes (here *h)");
  EXPECT_EQ(r.config.size(), 0u);
}

// yaml-cpp builds `&x [..., *x]` as a list that contains itself: its expansion never ends.
TEST(LoaderLimits, AnAliasInsideItsOwnAnchorIsRefused) {
  LoadResult r = LoadText(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: loop}
spec:
  hosts: [loop]
  ports: &x [{number: 80, name: http, more: *x}]
)",
                          "loop.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            "loop.yaml:6: alias *x refers to a node that contains it");
}

TEST(LoaderLimits, OrdinaryAliasesStillWork) {
  LoadResult r = LoadText(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  labels: &labels {app: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19081}, labels: *labels}
  - {address: 127.0.0.2, ports: {http: 19081}, labels: *labels}
)",
                          "aliases.yaml");
  ASSERT_TRUE(r.ok()) << r.diagnostics.ToString();
  ASSERT_EQ(r.config.service_entries.size(), 1u);
  ASSERT_EQ(r.config.service_entries[0].endpoints.size(), 2u);
  EXPECT_THAT(r.config.service_entries[0].endpoints[1].labels,
              ::testing::Contains(::testing::Pair("app", "reviews")));
}

// YAML is Unicode; bytes that are not UTF-8 are named with their line and offset instead of
// being carried into names and stored documents.
TEST(LoaderLimits, InvalidUtf8NamesTheLineAndOffset) {
  LoadResult r =
      LoadText("apiVersion: networking.istio.io/v1\nkind: Virtual\xff\xfeService\n", "x.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            "x.yaml:2: not valid UTF-8 (byte 0xff at offset 48); YAML must be UTF-8");
}

// A NUL byte is valid UTF-8 but no YAML character, and it makes yaml-cpp read the text as
// UTF-16 or UTF-32 (YAML's encoding detection without a byte order mark): the document it
// parses is then not the one sent. The admin fuzzer found it through a diagnostic that
// quoted a garbled character and made the ApplyResponse unserializable.
TEST(LoaderLimits, NulBytesAreRefusedWithTheirLineAndOffset) {
  LoadResult r = LoadText(std::string("apiVersion: networking.istio.io/v1\n\0\0\0\0kind: X\n", 47),
                          "nul.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_EQ(r.diagnostics.Filter(Severity::kError)[0].ToString(),
            "nul.yaml:2: a NUL byte at offset 35; YAML text cannot hold one");
  // UTF-16LE without a byte order mark is ASCII and NULs to a UTF-8 reader: refused too,
  // rather than read as UTF-16.
  std::string utf16;
  for (const char c : std::string("apiVersion: networking.istio.io/v1\n")) {
    utf16.push_back(c);
    utf16.push_back('\0');
  }
  r = LoadText(utf16, "utf16.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  EXPECT_THAT(r.diagnostics.ToString(), HasSubstr("utf16.yaml:1: a NUL byte at offset 1"));
}

// yaml-cpp's messages quote single bytes ("unknown escape character: " and the byte after
// the backslash): when that byte starts a multi-byte character, the message alone is not
// UTF-8, and a diagnostic that is not breaks every protobuf message that carries it.
TEST(LoaderLimits, DiagnosticsStayUtf8WhenYamlCppQuotesPartOfACharacter) {
  LoadResult r = LoadText("kind: \"\\\xc3\xa9\"\n", "escape.yaml");
  ASSERT_EQ(r.diagnostics.error_count(), 1) << r.diagnostics.ToString();
  const std::string text = r.diagnostics.ToString();
  EXPECT_THAT(text, HasSubstr("unknown escape character: \\xc3"));
  EXPECT_EQ(FindInvalidUtf8(text), std::nullopt) << text;
}
}  // namespace
}  // namespace sluice::config

namespace sluice::config {
namespace {

// Inputs the fuzzer once found to crash or hang; each must now load (with or without errors).
TEST(LoadText, FuzzRegressionsComplete) {
  const fs::path dir = fs::path(SLUICE_SOURCE_DIR) / "tests/fuzz/regressions";
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    SCOPED_TRACE(entry.path().string());
    LoadResult r = LoadPaths({entry.path().string()});
    ++count;
    // Loading returned: the yaml-cpp LoadAll hang is avoided. The input is not valid config.
    EXPECT_FALSE(r.ok());
  }
  EXPECT_GT(count, 0);
}

}  // namespace
}  // namespace sluice::config
