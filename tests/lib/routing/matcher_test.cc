// RouteMatcher and RequestView against Envoy's route matching as Istio configures it
// (routing-semantics.md sections 1.2-1.4, scenarios 12-14).

#include "lib/routing/matcher.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/request.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"

namespace sluice::routing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = config::StringMatch::Kind;

config::StringMatch Exact(std::string value) { return {Kind::kExact, std::move(value)}; }
config::StringMatch Prefix(std::string value) { return {Kind::kPrefix, std::move(value)}; }
config::StringMatch Regex(std::string value) { return {Kind::kRegex, std::move(value)}; }
config::StringMatch Present() { return {Kind::kPresent, ""}; }

RequestAttributes Get(std::string path) {
  RequestAttributes r;
  r.authority = "reviews";
  r.path = std::move(path);
  return r;
}

RequestAttributes WithHeaders(std::vector<std::pair<std::string, std::string>> headers) {
  RequestAttributes r = Get("/");
  r.headers = std::move(headers);
  return r;
}

// A request and whether the match under test accepts it.
struct Case {
  RequestAttributes request;
  bool matches;
  std::string label;
};

class RouteMatcherTest : public ::testing::Test {
 protected:
  static std::optional<RouteMatcher> Compile(const config::HTTPMatchRequest& match) {
    absl::StatusOr<RouteMatcher> m = RouteMatcher::Create(match);
    if (!m.ok()) {
      ADD_FAILURE() << "RouteMatcher::Create: " << m.status();
      return std::nullopt;
    }
    return *std::move(m);
  }

  static bool Matches(const config::HTTPMatchRequest& match, const RequestAttributes& request) {
    std::optional<RouteMatcher> m = Compile(match);
    if (!m) return false;
    const RequestView view(request);
    const bool matched = m->Matches(view);
    std::string reason;
    EXPECT_EQ(m->Explain(view, &reason), matched) << "Explain disagrees with Matches";
    return matched;
  }

  static void ExpectCases(const config::HTTPMatchRequest& match, const std::vector<Case>& cases) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.label.empty() ? c.request.path : c.label);
      EXPECT_EQ(Matches(match, c.request), c.matches);
    }
  }

  static void ExpectPaths(const config::HTTPMatchRequest& match,
                          const std::vector<std::pair<std::string, bool>>& paths) {
    for (const auto& [path, expected] : paths) {
      SCOPED_TRACE(path);
      EXPECT_EQ(Matches(match, Get(path)), expected);
    }
  }

  static config::HTTPMatchRequest Uri(config::StringMatch uri, bool ignore_case = false) {
    config::HTTPMatchRequest m;
    m.uri = std::move(uri);
    m.ignore_uri_case = ignore_case;
    return m;
  }

  static config::HTTPMatchRequest Header(std::string name, config::StringMatch match) {
    config::HTTPMatchRequest m;
    m.headers.push_back({std::move(name), std::move(match)});
    return m;
  }

  static config::HTTPMatchRequest WithoutHeader(std::string name, config::StringMatch match) {
    config::HTTPMatchRequest m;
    m.without_headers.push_back({std::move(name), std::move(match)});
    return m;
  }

  static config::HTTPMatchRequest Query(std::string name, config::StringMatch match) {
    config::HTTPMatchRequest m;
    m.query_params.push_back({std::move(name), std::move(match)});
    return m;
  }
};

// ---------------------------------------------------------------------------------------------
// uri

TEST_F(RouteMatcherTest, ExactUriComparesThePathWithoutItsQuery) {
  ExpectPaths(Uri(Exact("/login")), {{"/login", true},
                                     {"/login?next=/home", true},
                                     {"/login?", true},
                                     {"/login/", false},
                                     {"/logins", false},
                                     {"/Login", false},
                                     {"/", false}});
}

TEST_F(RouteMatcherTest, PrefixUriIsAPlainStringPrefixOfTheRawPath) {
  // Scenario 12: a VirtualService prefix is not path-separated, so /api matches /apiary.
  ExpectPaths(Uri(Prefix("/api")), {{"/api", true},
                                    {"/api/v2/x", true},
                                    {"/apiary", true},
                                    {"/api?x=1", true},
                                    {"/ap", false},
                                    {"/API", false},
                                    {"/v1/api", false}});
}

TEST_F(RouteMatcherTest, PrefixUriSeesTheQueryString) {
  ExpectPaths(Uri(Prefix("/search?q=")),
              {{"/search?q=cats", true}, {"/search", false}, {"/search?page=2&q=cats", false}});
}

TEST_F(RouteMatcherTest, RegexUriMustMatchTheWholePathWithoutQuery) {
  // Scenario 13.
  ExpectPaths(Uri(Regex("/api/v[0-9]+")), {{"/api/v1", true},
                                           {"/api/v12?debug=1", true},
                                           {"/api/v1/users", false},
                                           {"/x/api/v1", false},
                                           {"/api/v", false}});
}

TEST_F(RouteMatcherTest, IgnoreUriCaseAppliesToExactAndPrefix) {
  // Scenario 13: exact /Login + ignoreUriCase matches /login?x=1.
  ExpectPaths(Uri(Exact("/Login"), /*ignore_case=*/true),
              {{"/login?x=1", true}, {"/LOGIN", true}, {"/Login", true}, {"/logins", false}});
  ExpectPaths(Uri(Prefix("/Api"), /*ignore_case=*/true),
              {{"/api/v1", true}, {"/APIARY", true}, {"/ap", false}});
}

TEST_F(RouteMatcherTest, IgnoreUriCaseHasNoEffectOnRegex) {
  // Scenario 13: Envoy ignores case_sensitive for safe_regex.
  ExpectPaths(Uri(Regex("/api/v[0-9]+"), /*ignore_case=*/true),
              {{"/API/v1", false}, {"/api/V1", false}, {"/api/v1", true}});
  // (?i) inside the regex is the way to ignore case.
  ExpectPaths(Uri(Regex("(?i)/api/v[0-9]+")), {{"/API/V1", true}});
}

TEST_F(RouteMatcherTest, NoUriMatchesEveryPath) {
  ExpectPaths(config::HTTPMatchRequest{}, {{"/", true}, {"/anything?x=1", true}});
}

// ---------------------------------------------------------------------------------------------
// headers

TEST_F(RouteMatcherTest, HeaderExactPrefixAndRegex) {
  ExpectCases(Header("end-user", Exact("jason")),
              {{WithHeaders({{"end-user", "jason"}}), true, "exact equal"},
               {WithHeaders({{"end-user", "Jason"}}), false, "exact is case sensitive"},
               {WithHeaders({{"end-user", "jason2"}}), false, "exact longer"}});
  ExpectCases(Header("end-user", Prefix("ja")),
              {{WithHeaders({{"end-user", "jason"}}), true, "prefix"},
               {WithHeaders({{"end-user", "bob"}}), false, "prefix differs"}});
  ExpectCases(Header("x-version", Regex("v[0-9]+")),
              {{WithHeaders({{"x-version", "v12"}}), true, "regex whole value"},
               {WithHeaders({{"x-version", "v12-beta"}}), false, "regex is a full match"},
               {WithHeaders({{"x-version", "av1"}}), false, "regex anchored at start"}});
}

TEST_F(RouteMatcherTest, HeaderPresenceMatchesAnyValueIncludingEmpty) {
  // Scenario 14: headers {x-canary: {}}.
  ExpectCases(Header("x-canary", Present()),
              {{WithHeaders({{"x-canary", "true"}}), true, "any value"},
               {WithHeaders({{"x-canary", ""}}), true, "empty value"},
               {WithHeaders({}), false, "absent"}});
}

TEST_F(RouteMatcherTest, ExactEmptyMatchesOnlyAnEmptyValue) {
  // Scenario 14: headers {x-canary: {exact: ""}} is a real exact match, not presence.
  ExpectCases(Header("x-canary", Exact("")),
              {{WithHeaders({{"x-canary", ""}}), true, "empty value"},
               {WithHeaders({{"x-canary", "true"}}), false, "some value"},
               {WithHeaders({}), false, "absent"}});
}

TEST_F(RouteMatcherTest, MissingHeaderFailsEveryValueMatcher) {
  // Even matchers that accept any value fail when the header is absent.
  for (const config::StringMatch& m : {Prefix(""), Regex(".*"), Exact("")}) {
    SCOPED_TRACE(static_cast<int>(m.kind));
    EXPECT_FALSE(Matches(Header("x-user", m), WithHeaders({{"x-other", "1"}})));
  }
}

TEST_F(RouteMatcherTest, RepeatedHeaderLinesAreJoinedWithComma) {
  const RequestAttributes request = WithHeaders({{"x-tag", "a"}, {"x-other", "z"}, {"x-tag", "b"}});
  EXPECT_TRUE(Matches(Header("x-tag", Exact("a,b")), request));
  EXPECT_FALSE(Matches(Header("x-tag", Exact("a")), request));
  EXPECT_FALSE(Matches(Header("x-tag", Exact("b")), request));
  EXPECT_TRUE(Matches(Header("x-tag", Regex("a,b")), request));
  EXPECT_TRUE(Matches(Header("x-tag", Prefix("a,")), request));
}

TEST(RequestViewTest, HeaderJoinsEveryValueAndIsAbsentWhenNotSent) {
  RequestAttributes r = WithHeaders({{"x-tag", "a"}, {"x-tag", ""}, {"x-tag", "c"}});
  const RequestView view(r);
  std::string scratch;
  EXPECT_EQ(view.Header("x-tag", &scratch), std::optional<absl::string_view>("a,,c"));
  EXPECT_EQ(view.Header("x-missing", &scratch), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// withoutHeaders

TEST_F(RouteMatcherTest, WithoutHeadersTreatsAMissingHeaderAsEmpty) {
  // Scenario 14: withoutHeaders {x-canary: {exact: "true"}}.
  ExpectCases(WithoutHeader("x-canary", Exact("true")),
              {{WithHeaders({}), true, "absent"},
               {WithHeaders({{"x-canary", "false"}}), true, "false"},
               {WithHeaders({{"x-canary", ""}}), true, "empty"},
               {WithHeaders({{"x-canary", "true"}}), false, "true"}});
}

TEST_F(RouteMatcherTest, WithoutHeadersPresenceMatchesOnlyWhenAbsent) {
  ExpectCases(WithoutHeader("x-debug", Present()),
              {{WithHeaders({}), true, "absent"},
               {WithHeaders({{"x-debug", ""}}), false, "empty"},
               {WithHeaders({{"x-debug", "1"}}), false, "some value"}});
}

TEST_F(RouteMatcherTest, WithoutHeadersExactEmptyRejectsAbsentHeaders) {
  // treat_missing_header_as_empty: an absent header is "", which equals "", so the inverted
  // matcher fails.
  ExpectCases(WithoutHeader("x-user", Exact("")),
              {{WithHeaders({}), false, "absent"},
               {WithHeaders({{"x-user", ""}}), false, "empty"},
               {WithHeaders({{"x-user", "bob"}}), true, "some value"}});
}

TEST_F(RouteMatcherTest, WithoutHeadersRegexIsInvertedFullMatch) {
  ExpectCases(WithoutHeader("x-user", Regex("admin.*")),
              {{WithHeaders({}), true, "absent"},
               {WithHeaders({{"x-user", "admin-7"}}), false, "matches"},
               {WithHeaders({{"x-user", "superadmin"}}), true, "full match fails"}});
}

// ---------------------------------------------------------------------------------------------
// method, authority, scheme, port

TEST_F(RouteMatcherTest, MethodMatchesTheRequestMethod) {
  config::HTTPMatchRequest m;
  m.method = Exact("POST");
  RequestAttributes post = Get("/");
  post.method = "POST";
  ExpectCases(m, {{post, true, "POST"}, {Get("/"), false, "GET"}});
}

TEST_F(RouteMatcherTest, AuthorityIsComparedWithItsPort) {
  RequestAttributes with_port = Get("/");
  with_port.authority = "reviews:9080";
  RequestAttributes bare = Get("/");
  bare.authority = "reviews";

  config::HTTPMatchRequest exact;
  exact.authority = Exact("reviews");
  ExpectCases(exact, {{bare, true, "bare"}, {with_port, false, "with port"}});

  config::HTTPMatchRequest exact_with_port;
  exact_with_port.authority = Exact("reviews:9080");
  ExpectCases(exact_with_port, {{with_port, true, "with port"}, {bare, false, "bare"}});

  config::HTTPMatchRequest prefix;
  prefix.authority = Prefix("reviews");
  ExpectCases(prefix, {{with_port, true, "with port"}, {bare, true, "bare"}});
}

TEST_F(RouteMatcherTest, SchemeMatchesTheRequestScheme) {
  config::HTTPMatchRequest m;
  m.scheme = Exact("https");
  RequestAttributes https = Get("/");
  https.scheme = "https";
  ExpectCases(m, {{https, true, "https"}, {Get("/"), false, "http"}});
}

TEST_F(RouteMatcherTest, PortComesFromTheAuthorityThenTheExplicitPortThenTheSchemeDefault) {
  auto request = [](std::string authority, std::string scheme, uint32_t port) {
    RequestAttributes r = Get("/");
    r.authority = std::move(authority);
    r.scheme = std::move(scheme);
    r.port = port;
    return r;
  };
  const struct {
    RequestAttributes request;
    uint32_t port;
  } cases[] = {
      {request("reviews:9080", "http", 0), 9080},
      {request("reviews", "http", 0), 80},
      {request("reviews", "https", 0), 443},
      {request("reviews:8443", "https", 0), 8443},
      {request("reviews:8080", "http", 9080), 9080},  // explicit port wins
      {request("reviews", "https", 9080), 9080},
      {request("[::1]:9080", "http", 0), 9080},
      {request("[::1]", "http", 0), 80},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.request.authority + " " + c.request.scheme + " port " +
                 std::to_string(c.request.port));
    EXPECT_EQ(RequestView(c.request).port(), c.port);
    config::HTTPMatchRequest m;
    m.port = c.port;
    EXPECT_TRUE(Matches(m, c.request));
    m.port = c.port + 1;
    EXPECT_FALSE(Matches(m, c.request));
  }
}

TEST(RequestViewTest, SplitsPathAndAuthority) {
  RequestAttributes r = Get("/a/b?x=1&y=2");
  r.authority = "reviews.default:9080";
  const RequestView view(r);
  EXPECT_EQ(view.path_without_query(), "/a/b");
  EXPECT_EQ(view.host(), "reviews.default");
  EXPECT_EQ(view.port(), 9080u);
}

// ---------------------------------------------------------------------------------------------
// queryParams

TEST_F(RouteMatcherTest, QueryParamExact) {
  ExpectPaths(Query("env", Exact("prod")), {{"/?env=prod", true},
                                            {"/x?a=1&env=prod&b=2", true},
                                            {"/?env=production", false},
                                            {"/?envx=prod", false},
                                            {"/?env=", false},
                                            {"/", false}});
}

TEST_F(RouteMatcherTest, QueryParamRegexIsAFullMatch) {
  ExpectPaths(Query("id", Regex("\\d+$")), {{"/?id=123", true},
                                            {"/?id=a123", false},
                                            {"/?id=123a", false},
                                            {"/?id=", false},
                                            {"/", false}});
}

TEST_F(RouteMatcherTest, QueryParamPresence) {
  ExpectPaths(Query("debug", Present()), {{"/?debug", true},
                                          {"/?debug=", true},
                                          {"/?debug=1", true},
                                          {"/?x=1&debug", true},
                                          {"/?debugger=1", false},
                                          {"/?", false},
                                          {"/", false}});
}

TEST_F(RouteMatcherTest, QueryKeyWithoutValueMatchesExactEmpty) {
  ExpectPaths(Query("debug", Exact("")),
              {{"/?debug", true}, {"/?debug=", true}, {"/?debug=1", false}, {"/", false}});
}

TEST_F(RouteMatcherTest, OnlyTheFirstOccurrenceOfARepeatedKeyCounts) {
  ExpectPaths(Query("v", Exact("b")), {{"/?v=b&v=a", true}, {"/?v=a&v=b", false}});
}

TEST(RequestViewTest, QueryParamReturnsTheFirstValue) {
  RequestAttributes r = Get("/p?a=1&flag&a=2&b=x%20y#frag");
  const RequestView view(r);
  EXPECT_EQ(view.QueryParam("a"), std::optional<absl::string_view>("1"));
  EXPECT_EQ(view.QueryParam("flag"), std::optional<absl::string_view>(""));
  // Values stay percent-encoded; the fragment is not part of the query.
  EXPECT_EQ(view.QueryParam("b"), std::optional<absl::string_view>("x%20y"));
  EXPECT_EQ(view.QueryParam("c"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// source selectors

TEST_F(RouteMatcherTest, SourceLabelsMustBeASubsetOfTheCallerLabels) {
  config::HTTPMatchRequest m;
  m.source_labels = {{"app", "productpage"}, {"version", "v1"}};
  auto from = [](config::Labels labels) {
    RequestAttributes r = Get("/");
    r.source_labels = std::move(labels);
    return r;
  };
  ExpectCases(m, {{from({{"app", "productpage"}, {"version", "v1"}}), true, "equal"},
                  {from({{"version", "v1"}, {"team", "x"}, {"app", "productpage"}}), true,
                   "superset, other order"},
                  {from({{"app", "productpage"}}), false, "missing label"},
                  {from({{"app", "productpage"}, {"version", "v2"}}), false, "other value"},
                  {from({}), false, "no labels"}});
}

TEST_F(RouteMatcherTest, SourceNamespaceMustEqualTheCallerNamespace) {
  config::HTTPMatchRequest m;
  m.source_namespace = "prod";
  auto from = [](std::string ns) {
    RequestAttributes r = Get("/");
    r.source_namespace = std::move(ns);
    return r;
  };
  ExpectCases(m, {{from("prod"), true, "prod"},
                  {from("default"), false, "default"},
                  {from(""), false, "unknown"}});
}

// ---------------------------------------------------------------------------------------------
// conjunction, Explain, Describe

class EveryConditionTest : public RouteMatcherTest {
 protected:
  void SetUp() override {
    match_.uri = Prefix("/api");
    match_.method = Exact("GET");
    match_.authority = Prefix("reviews");
    match_.scheme = Exact("http");
    match_.port = 9080;
    match_.headers.push_back({"end-user", Exact("jason")});
    match_.without_headers.push_back({"x-canary", Exact("true")});
    match_.query_params.push_back({"v", Regex("[0-9]+")});
    match_.source_labels = {{"app", "productpage"}};
    match_.source_namespace = "default";
  }

  static RequestAttributes Good() {
    RequestAttributes r;
    r.authority = "reviews:9080";
    r.path = "/api/x?v=2";
    r.headers = {{"end-user", "jason"}};
    r.source_labels = {{"app", "productpage"}};
    r.source_namespace = "default";
    return r;
  }

  config::HTTPMatchRequest match_;
};

TEST_F(EveryConditionTest, AllConditionsAreAnded) { EXPECT_TRUE(Matches(match_, Good())); }

TEST_F(EveryConditionTest, ExplainNamesTheConditionThatFailed) {
  const struct {
    std::string label;
    void (*spoil)(RequestAttributes&);
    std::string reason;
  } cases[] = {
      {"uri", [](RequestAttributes& r) { r.path = "/other?v=2"; },
       "uri prefix \"/api\" does not match \"/other?v=2\""},
      {"method", [](RequestAttributes& r) { r.method = "POST"; },
       "method exact \"GET\" does not match \"POST\""},
      {"authority", [](RequestAttributes& r) { r.authority = "ratings:9080"; },
       "authority prefix \"reviews\" does not match \"ratings:9080\""},
      {"scheme", [](RequestAttributes& r) { r.scheme = "https"; },
       "scheme exact \"http\" does not match \"https\""},
      {"port", [](RequestAttributes& r) { r.authority = "reviews:9090"; },
       "port 9080 does not match 9090"},
      {"header absent", [](RequestAttributes& r) { r.headers.clear(); },
       "header end-user is absent"},
      {"header value",
       [](RequestAttributes& r) {
         r.headers = {{"end-user", "bob"}};
       },
       "header end-user exact \"jason\" does not match \"bob\""},
      {"withoutHeaders",
       [](RequestAttributes& r) {
         r.headers.push_back({"x-canary", "true"});
       },
       "withoutHeaders x-canary exact \"true\" matches \"true\""},
      {"query absent", [](RequestAttributes& r) { r.path = "/api/x"; },
       "query parameter v is absent"},
      {"query value", [](RequestAttributes& r) { r.path = "/api/x?v=two"; },
       "query parameter v regex \"[0-9]+\" does not match \"two\""},
      {"source labels",
       [](RequestAttributes& r) {
         r.source_labels = {{"app", "other"}};
       },
       "sourceLabels"},
      {"source namespace", [](RequestAttributes& r) { r.source_namespace = "prod"; },
       "source namespace \"prod\" is not \"default\""},
  };
  std::optional<RouteMatcher> m = Compile(match_);
  ASSERT_TRUE(m.has_value());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    RequestAttributes r = Good();
    c.spoil(r);
    const RequestView view(r);
    EXPECT_FALSE(m->Matches(view));
    std::string reason;
    EXPECT_FALSE(m->Explain(view, &reason));
    EXPECT_THAT(reason, HasSubstr(c.reason));
  }
}

TEST_F(EveryConditionTest, ExplainSucceedsWithoutAReason) {
  std::optional<RouteMatcher> m = Compile(match_);
  ASSERT_TRUE(m.has_value());
  const RequestAttributes r = Good();
  std::string reason;
  EXPECT_TRUE(m->Explain(RequestView(r), &reason));
  EXPECT_THAT(reason, IsEmpty());
  EXPECT_TRUE(m->Explain(RequestView(r), nullptr));
}

TEST_F(EveryConditionTest, DescribeListsEveryCondition) {
  std::optional<RouteMatcher> m = Compile(match_);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->Describe(),
            "uri prefix \"/api\", method exact \"GET\", authority prefix \"reviews\", scheme exact "
            "\"http\", port 9080, header end-user exact \"jason\", without header x-canary exact "
            "\"true\", query v regex \"[0-9]+\", source app=productpage, source namespace default");
}

TEST_F(RouteMatcherTest, DescribeReadsLikeTheRule) {
  config::HTTPMatchRequest m = Uri(Prefix("/api"));
  m.headers.push_back({"end-user", Exact("jason")});
  EXPECT_EQ(Compile(m)->Describe(), "uri prefix \"/api\", header end-user exact \"jason\"");
  EXPECT_EQ(Compile(Uri(Exact("/Login"), true))->Describe(),
            "uri exact \"/Login\" (ignoring case)");
  EXPECT_EQ(Compile(Uri(Regex("/v[0-9]+"), true))->Describe(), "uri regex \"/v[0-9]+\"");
  EXPECT_EQ(Compile(Header("x-debug", Present()))->Describe(), "header x-debug present");
  EXPECT_EQ(Compile(config::HTTPMatchRequest{})->Describe(), "every request");
  EXPECT_EQ(RouteMatcher::CatchAll().Describe(), "every request");
}

TEST_F(RouteMatcherTest, KeepsTheMatchName) {
  config::HTTPMatchRequest m = Uri(Prefix("/api"));
  m.name = "api-calls";
  EXPECT_EQ(Compile(m)->name(), "api-calls");
  ASSERT_TRUE(Compile(m)->uri().has_value());
  EXPECT_EQ(Compile(m)->uri()->value(), "/api");
}

// ---------------------------------------------------------------------------------------------
// catch-all detection

TEST_F(RouteMatcherTest, IsCatchAllOnlyForMatchesWithoutConditionsBesidesSlashOrDotStar) {
  auto with = [](config::HTTPMatchRequest m, void (*add)(config::HTTPMatchRequest&)) {
    add(m);
    return m;
  };
  const config::HTTPMatchRequest slash = Uri(Prefix("/"));
  const struct {
    std::string label;
    config::HTTPMatchRequest match;
    bool catch_all;
  } cases[] = {
      {"no uri", config::HTTPMatchRequest{}, true},
      {"prefix /", slash, true},
      {"prefix / ignoring case", Uri(Prefix("/"), true), true},
      {"regex .*", Uri(Regex(".*")), true},
      {"prefix /api", Uri(Prefix("/api")), false},
      {"exact /", Uri(Exact("/")), false},
      {"regex .+", Uri(Regex(".+")), false},
      {"prefix / and header",
       with(slash,
            [](config::HTTPMatchRequest& m) {
              m.headers.push_back({"x", Present()});
            }),
       false},
      {"no uri and header", Header("end-user", Exact("jason")), false},
      {"prefix / and withoutHeaders",
       with(slash,
            [](config::HTTPMatchRequest& m) {
              m.without_headers.push_back({"x", Present()});
            }),
       false},
      {"prefix / and query",
       with(slash,
            [](config::HTTPMatchRequest& m) {
              m.query_params.push_back({"q", Present()});
            }),
       false},
      {"prefix / and method",
       with(slash, [](config::HTTPMatchRequest& m) { m.method = Exact("GET"); }), false},
      {"prefix / and authority",
       with(slash, [](config::HTTPMatchRequest& m) { m.authority = Exact("a"); }), false},
      {"prefix / and scheme",
       with(slash, [](config::HTTPMatchRequest& m) { m.scheme = Exact("http"); }), false},
      {"prefix / and port", with(slash, [](config::HTTPMatchRequest& m) { m.port = 80; }), false},
      {"prefix / and sourceLabels",
       with(slash,
            [](config::HTTPMatchRequest& m) {
              m.source_labels = {{"app", "a"}};
            }),
       false},
      {"prefix / and sourceNamespace",
       with(slash, [](config::HTTPMatchRequest& m) { m.source_namespace = "prod"; }), false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    std::optional<RouteMatcher> m = Compile(c.match);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->IsCatchAll(), c.catch_all);
  }
  EXPECT_TRUE(RouteMatcher::CatchAll().IsCatchAll());
}

TEST_F(RouteMatcherTest, CatchAllMatchesEveryRequest) {
  RequestAttributes r = Get("/anything?x=1");
  r.method = "DELETE";
  r.headers = {{"x", "y"}};
  EXPECT_TRUE(RouteMatcher::CatchAll().Matches(RequestView(r)));
}

// ---------------------------------------------------------------------------------------------
// compilation

TEST_F(RouteMatcherTest, CollectHeaderNamesListsHeadersAndWithoutHeadersOnce) {
  config::HTTPMatchRequest m = Header("end-user", Exact("jason"));
  m.headers.push_back({"x-version", Present()});
  m.without_headers.push_back({"x-canary", Exact("true")});
  m.query_params.push_back({"not-a-header", Present()});
  m.method = Exact("GET");
  std::vector<std::string> names = {"x-version"};
  Compile(m)->CollectHeaderNames(names);
  EXPECT_THAT(names, ElementsAre("x-version", "end-user", "x-canary"));
}

TEST_F(RouteMatcherTest, InvalidRegexIsAnError) {
  for (config::HTTPMatchRequest m :
       {Uri(Regex("(")), Header("x", Regex("[a-")), Query("q", Regex("*x"))}) {
    absl::StatusOr<RouteMatcher> compiled = RouteMatcher::Create(m);
    ASSERT_FALSE(compiled.ok());
    EXPECT_EQ(compiled.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(compiled.status().message(), HasSubstr("invalid regex"));
  }
}

TEST(StringMatcherTest, KindsAndDescriptions) {
  const struct {
    config::StringMatch match;
    bool ignore_case;
    std::string candidate;
    bool matches;
    std::string description;
  } cases[] = {
      {Exact("/a"), false, "/a", true, "exact \"/a\""},
      {Exact("/a"), true, "/A", true, "exact \"/a\" (ignoring case)"},
      {Prefix("/a"), false, "/ab", true, "prefix \"/a\""},
      {Prefix("/a"), true, "/AB", true, "prefix \"/a\" (ignoring case)"},
      {Regex("a+"), false, "aaa", true, "regex \"a+\""},
      {Regex("a+"), true, "AAA", false, "regex \"a+\""},
      {Regex("a+"), false, "aab", false, "regex \"a+\""},
      {Present(), false, "", true, "present"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.description + " vs " + c.candidate);
    absl::StatusOr<StringMatcher> m = StringMatcher::Create(c.match, c.ignore_case);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->kind(), c.match.kind);
    EXPECT_EQ(m->value(), c.match.value);
    EXPECT_EQ(m->Matches(c.candidate), c.matches);
    EXPECT_EQ(m->Describe(), c.description);
  }
}

// ---------------------------------------------------------------------------------------------
// Through the YAML loader and the snapshot: what a user writes is what is matched.

class YamlMatchTest : public ::testing::Test {
 protected:
  // The first match block of the first route of host `reviews`; nullptr (and a failure) when
  // the configuration does not load.
  const RouteMatcher* Load(const std::string& match_yaml) {
    const std::string yaml = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - )" + match_yaml + R"(
    route:
    - destination: {host: reviews}
)";
    config::LoadResult loaded = config::LoadText(yaml, "t.yaml");
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.diagnostics.ToString();
      return nullptr;
    }
    absl::StatusOr<std::shared_ptr<const Snapshot>> s =
        CompileSnapshot(std::move(loaded.config), 7);
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      return nullptr;
    }
    snapshot_ = *std::move(s);
    const VirtualHost* host = snapshot_->FindVirtualHost("reviews");
    if (host == nullptr || host->routes.empty() || host->routes.front().matches.empty()) {
      ADD_FAILURE() << "no match block for host reviews";
      return nullptr;
    }
    return &host->routes.front().matches.front();
  }

  std::shared_ptr<const Snapshot> snapshot_;
};

TEST_F(YamlMatchTest, WithoutHeadersScenario14) {
  const RouteMatcher* m = Load(R"(withoutHeaders: {x-canary: {exact: "true"}})");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->Matches(RequestView(WithHeaders({}))));
  EXPECT_TRUE(m->Matches(RequestView(WithHeaders({{"x-canary", "false"}}))));
  EXPECT_FALSE(m->Matches(RequestView(WithHeaders({{"x-canary", "true"}}))));
}

TEST_F(YamlMatchTest, EmptyStringMatchAndRegexStarArePresenceChecks) {
  for (const char* yaml : {"headers: {x-canary: {}}", R"(headers: {x-canary: {regex: "*"}})"}) {
    SCOPED_TRACE(yaml);
    const RouteMatcher* m = Load(yaml);
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->Matches(RequestView(WithHeaders({{"x-canary", ""}}))));
    EXPECT_TRUE(m->Matches(RequestView(WithHeaders({{"x-canary", "yes"}}))));
    EXPECT_FALSE(m->Matches(RequestView(WithHeaders({}))));
  }
}

TEST_F(YamlMatchTest, ExactEmptyStringIsNotAPresenceCheck) {
  const RouteMatcher* m = Load(R"(headers: {x-canary: {exact: ""}})");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->Matches(RequestView(WithHeaders({{"x-canary", ""}}))));
  EXPECT_FALSE(m->Matches(RequestView(WithHeaders({{"x-canary", "yes"}}))));
}

TEST_F(YamlMatchTest, RegexUriWithIgnoreUriCaseScenario13) {
  const RouteMatcher* m = Load(R"({uri: {regex: "/api/v[0-9]+"}, ignoreUriCase: true})");
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->Matches(RequestView(Get("/API/v1"))));
  EXPECT_FALSE(m->Matches(RequestView(Get("/api/v1/users"))));
  EXPECT_TRUE(m->Matches(RequestView(Get("/api/v12?debug=1"))));
}

TEST_F(YamlMatchTest, QueryParamRegexFullMatch) {
  const RouteMatcher* m = Load(R"(queryParams: {id: {regex: "\\d+$"}})");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->Matches(RequestView(Get("/?id=123"))));
  EXPECT_FALSE(m->Matches(RequestView(Get("/?id=a123"))));
}

}  // namespace
}  // namespace sluice::routing

namespace sluice::routing {
namespace {

TEST(RequestViewTest, AnEmptyFirstValueStillGetsItsComma) {
  RequestAttributes r;
  r.headers = {{"x-tag", ""}, {"x-tag", "b"}};
  const RequestView view(r);
  std::string scratch;
  EXPECT_EQ(view.Header("x-tag", &scratch), std::optional<absl::string_view>(",b"));
}

}  // namespace
}  // namespace sluice::routing
