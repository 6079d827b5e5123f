// Dashboards and alerts against live data: sluice-server, sluice-gateway, stub upstreams and
// a real Prometheus using deploy/prometheus (its scrape jobs, target files and rules, with
// the intervals shortened to a second). Traffic flows while a canary is promoted, then a
// broken one is rolled back (and its endpoint ejected). Then every PromQL expression of every
// Grafana dashboard panel and annotation, and of every recording and alerting rule, is
// evaluated through Prometheus's HTTP API: none may fail or come back empty. The alerts the
// scenario should raise are checked, and the canary graph is rendered to a PNG artefact.

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "yaml-cpp/yaml.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One PromQL expression found in a file, and where.
struct Expression {
  std::string where;  // "dashboards/traffic.json: panel \"Requests\" A"
  std::string expr;
};

// Grafana's variables as the test fills them in: built-in intervals, and every template
// variable as "match anything" (dashboards use them as =~"$var").
std::string SubstituteGrafanaVariables(std::string expr) {
  expr = absl::StrReplaceAll(expr, {{"${__rate_interval}", "1m"},
                                    {"$__rate_interval", "1m"},
                                    {"${__interval}", "15s"},
                                    {"$__interval", "15s"},
                                    {"${__range}", "5m"},
                                    {"$__range", "5m"}});
  static const std::regex kVariable(R"(\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*)");
  return std::regex_replace(expr, kVariable, ".*");
}

void CollectPanels(const google::protobuf::Value& panels, const std::string& file,
                   std::vector<Expression>& out) {
  for (const google::protobuf::Value& panel : panels.list_value().values()) {
    const auto& fields = panel.struct_value().fields();
    const std::string title = fields.count("title") ? fields.at("title").string_value() : "?";
    if (fields.count("panels")) CollectPanels(fields.at("panels"), file, out);  // rows
    if (!fields.count("targets")) continue;
    for (const google::protobuf::Value& target : fields.at("targets").list_value().values()) {
      const auto& t = target.struct_value().fields();
      const std::string ref = t.count("refId") ? t.at("refId").string_value() : "?";
      const std::string expr = t.count("expr") ? t.at("expr").string_value() : "";
      out.push_back({absl::StrCat(file, ": panel \"", title, "\" ", ref), expr});
    }
  }
}

std::vector<Expression> DashboardExpressions(const fs::path& dir, int* dashboards) {
  std::vector<Expression> out;
  *dashboards = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++*dashboards;
    const std::string file = absl::StrCat("dashboards/", entry.path().filename().string());
    google::protobuf::Struct dashboard;
    const auto status =
        google::protobuf::util::JsonStringToMessage(ReadAll(entry.path()), &dashboard);
    EXPECT_TRUE(status.ok()) << file << ": " << status.message();
    const auto& fields = dashboard.fields();
    if (fields.count("panels")) CollectPanels(fields.at("panels"), file, out);
    if (fields.count("annotations")) {
      const auto& annotations = fields.at("annotations").struct_value().fields();
      if (annotations.count("list")) {
        for (const auto& a : annotations.at("list").list_value().values()) {
          const auto& af = a.struct_value().fields();
          if (!af.count("expr")) continue;  // Grafana's built-in annotations have none
          out.push_back({absl::StrCat(file, ": annotation \"", af.at("name").string_value(), "\""),
                         af.at("expr").string_value()});
        }
      }
    }
  }
  return out;
}

struct Rule {
  std::string file;
  std::string name;  // record or alert name
  bool alert = false;
  std::string expr;
};

std::vector<Rule> Rules(const fs::path& dir) {
  std::vector<Rule> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const YAML::Node root = YAML::LoadFile(entry.path().string());
    for (const YAML::Node& group : root["groups"]) {
      for (const YAML::Node& rule : group["rules"]) {
        Rule r;
        r.file = entry.path().filename().string();
        r.alert = rule["alert"].IsDefined();
        r.name = r.alert ? rule["alert"].as<std::string>() : rule["record"].as<std::string>();
        r.expr = rule["expr"].as<std::string>();
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

// An alert's "signal OP threshold" as "signal OP bool threshold": a series whether or not
// the alert would fire now. Empty when the expression has another shape.
std::string AlertSignal(const std::string& expr) {
  static const std::regex kComparison(R"(^(.*\S)\s*(==|!=|>=|<=|>|<)\s*(-?[0-9.]+)\s*$)");
  std::smatch m;
  std::string flat = std::regex_replace(expr, std::regex("\\s+"), " ");
  if (!std::regex_match(flat, m, kComparison)) return "";
  return absl::StrCat(m[1].str(), " ", m[2].str(), " bool ", m[3].str());
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void TearDown() override { StopTraffic(); }

  void StartStubs() {
    for (const char* subset : {"v1", "v2"}) {
      auto stub = std::make_unique<testing::Process>();
      ASSERT_TRUE(stub->Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name",
                               absl::StrCat("shop-", subset), "--subset", subset},
                              "listening "))
          << stub->error();
      stub_addresses_.push_back(stub->Field("http"));
      stubs_.push_back(std::move(stub));
    }
  }

  static std::string PortOf(const std::string& address) {
    return address.substr(address.rfind(':') + 1);
  }

  // deploy/examples/canary.yaml on the stubs' ports, its Canary's intervals shortened:
  // everything but the Canary (`canary` false), or the Canary alone.
  std::string Config(bool canary) const {
    std::string text = ReadAll(fs::path(SLUICE_SOURCE_DIR) / "deploy/examples/canary.yaml");
    text = absl::StrReplaceAll(text, {{"18081", PortOf(stub_addresses_[0])},
                                      {"18082", PortOf(stub_addresses_[1])},
                                      {"interval: 30s", "interval: 2s"},
                                      {"interval: 1m", "interval: 4s"},
                                      {"minRequests: 50", "minRequests: 10"}});
    const size_t at = text.find("---\napiVersion: sluice.dev/v1");
    EXPECT_NE(at, std::string::npos) << "the Canary is no longer the last document";
    return canary ? text.substr(at + 4) : text.substr(0, at);
  }

  // deploy/prometheus copied whole, its target files naming this test's server and gateway,
  // its intervals a second.
  std::string PrometheusDir(const std::string& server_metrics,
                            const std::string& gateway_metrics) const {
    const fs::path dir = fs::path(dir_.path()) / "prometheus";
    fs::copy(fs::path(SLUICE_SOURCE_DIR) / "deploy/prometheus", dir, fs::copy_options::recursive);
    std::string config = ReadAll(dir / "prometheus.yml");
    config = absl::StrReplaceAll(config, {{"scrape_interval: 15s", "scrape_interval: 1s"},
                                          {"evaluation_interval: 15s", "evaluation_interval: 1s"}});
    std::ofstream(dir / "prometheus.yml") << config;
    std::ofstream(dir / "targets/sluice-server.json")
        << "[{\"targets\": [\"" << server_metrics
        << "\"], \"labels\": {\"component\": \"server\"}}]\n";
    std::ofstream(dir / "targets/sluice-gateway.json")
        << "[{\"targets\": [\"" << gateway_metrics
        << "\"], \"labels\": {\"component\": \"gateway\"}}]\n";
    return dir.string();
  }

  void StartAll() {
    StartStubs();
    ASSERT_TRUE(server_.Start({SLUICE_SERVER_BINARY, "--plaintext", "--config",
                               dir_.Write("shop.yaml", Config(false)), "--listen", "127.0.0.1:0",
                               "--metrics", "127.0.0.1:0", "--state-dir", dir_.path() + "/state"},
                              "listening "))
        << server_.error();
    grpc_ = server_.Field("grpc");
    ASSERT_TRUE(gateway_.Start({SLUICE_GATEWAY_BINARY, "--plaintext", "--listen", "127.0.0.1:0",
                                "--decision", grpc_, "--metrics", "127.0.0.1:0"},
                               "listening "))
        << gateway_.error();
    gateway_address_ = gateway_.Field("http");
    gateway_admin_ = gateway_.Field("metrics");
    const std::string prom_dir = PrometheusDir(server_.Field("metrics"), gateway_admin_);
    prometheus_ = testing::StartPrometheus(prometheus_process_, prom_dir + "/prometheus.yml",
                                           dir_.path() + "/tsdb");
    ASSERT_FALSE(prometheus_.empty()) << prometheus_process_.error() << prometheus_process_.Log();
  }

  void StartTraffic() {
    stop_ = false;
    for (int i = 0; i < 2; ++i) {
      loops_.emplace_back([this] {
        while (!stop_) testing::HttpExchange(gateway_address_, "GET", "/cart", {{"Host", "shop"}});
      });
    }
  }
  void StopTraffic() {
    stop_ = true;
    for (std::thread& t : loops_) t.join();
    loops_.clear();
  }

  std::string Sluicectl(const std::string& args) const {
    const std::string out = dir_.path() + "/ctl.out";
    std::system(absl::StrCat(SLUICECTL_BINARY, " --plaintext ", args, " --server ", grpc_, " > ",
                             out, " 2>&1")
                    .c_str());
    return ReadAll(out);
  }

  void WaitForPhase(const std::string& phase, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    std::string status;
    while (absl::Now() < give_up) {
      status = Sluicectl("canary status shop");
      if (absl::StrContains(status, absl::StrCat("phase        ", phase))) return;
      absl::SleepFor(absl::Milliseconds(200));
    }
    FAIL() << "no " << phase << " within " << timeout << ":\n" << status << server_.Log();
  }

  // Prometheus's JSON answer to an instant query.
  google::protobuf::Struct Query(const std::string& promql) const {
    google::protobuf::Struct answer;
    const std::string body =
        testing::HttpGet(prometheus_, "/api/v1/query?query=" + testing::UrlEncode(promql));
    google::protobuf::util::JsonStringToMessage(body, &answer);
    return answer;
  }
  // "" when the query succeeded with at least one series, else what went wrong.
  std::string Problem(const std::string& promql) const {
    const google::protobuf::Struct answer = Query(promql);
    const auto& f = answer.fields();
    if (!f.count("status")) return "no answer from Prometheus";
    if (f.at("status").string_value() != "success") {
      return absl::StrCat("error: ", f.count("error") ? f.at("error").string_value() : "?");
    }
    const auto& data = f.at("data").struct_value().fields();
    if (data.at("resultType").string_value() == "scalar") return "";
    if (data.at("result").list_value().values_size() == 0) return "no series";
    return "";
  }

  std::string Get(const std::string& path) const { return testing::HttpGet(prometheus_, path); }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<testing::Process>> stubs_;
  std::vector<std::string> stub_addresses_;
  testing::Process server_, gateway_, prometheus_process_;
  std::string grpc_, gateway_address_, gateway_admin_, prometheus_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> loops_;
};

TEST_F(ObservabilityTest, EveryDashboardAndRuleExpressionHasLiveSeries) {
  StartAll();
  StartTraffic();
  // The Canary comes once Prometheus has scraped both targets, so the graph shows it all.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (Problem("up{job=~\"sluice-.*\"} == 1 and on () count(up{job=~\"sluice-.*\"} == 1) == 2")
                 .size() > 0 &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  const int64_t started = absl::ToUnixSeconds(absl::Now());
  absl::SleepFor(absl::Seconds(2));
  EXPECT_THAT(Sluicectl(absl::StrCat("apply -f ", dir_.Write("canary.yaml", Config(true)))),
              HasSubstr("Canary/default/shop"));
  WaitForPhase("Succeeded", absl::Seconds(60));
  // A broken v2: the analysis starts again and rolls it back; outlier detection ejects it.
  ASSERT_EQ(testing::HttpExchange(stub_addresses_[1], "POST", "/stub/config?error-rate=1").status,
            200);
  Sluicectl("canary restart shop");
  WaitForPhase("Failed", absl::Seconds(60));
  absl::SleepFor(absl::Seconds(4));  // a few scrapes and rule evaluations of the end state
  StopTraffic();

  int dashboards = 0;
  const std::vector<Expression> panels =
      DashboardExpressions(fs::path(SLUICE_SOURCE_DIR) / "dashboards", &dashboards);
  EXPECT_GE(dashboards, 4);
  EXPECT_GE(panels.size(), 20u);
  std::vector<std::string> problems;
  for (const Expression& e : panels) {
    if (e.expr.empty()) {
      problems.push_back(absl::StrCat(e.where, ": empty expr"));
      continue;
    }
    const std::string promql = SubstituteGrafanaVariables(e.expr);
    if (std::string p = Problem(promql); !p.empty()) {
      problems.push_back(absl::StrCat(e.where, ": ", p, "\n    ", promql));
    }
  }
  const std::vector<Rule> rules = Rules(fs::path(SLUICE_SOURCE_DIR) / "deploy/prometheus/rules");
  EXPECT_GE(rules.size(), 10u);
  for (const Rule& r : rules) {
    std::string promql = r.expr;
    if (r.alert) {
      promql = AlertSignal(r.expr);
      if (promql.empty()) {
        problems.push_back(
            absl::StrCat(r.file, ": alert ", r.name, ": not of the form \"signal OP threshold\""));
        continue;
      }
    }
    if (std::string p = Problem(promql); !p.empty()) {
      problems.push_back(absl::StrCat(r.file, ": ", r.name, ": ", p, "\n    ", promql));
    }
    // A recording rule's own series exists too: Prometheus evaluates it every second.
    if (!r.alert) {
      if (std::string p = Problem(r.name); !p.empty()) {
        problems.push_back(absl::StrCat(r.file, ": recorded ", r.name, ": ", p));
      }
    }
  }
  EXPECT_THAT(problems, ::testing::IsEmpty())
      << problems.size() << " expression(s) of " << panels.size() + rules.size() << ":\n"
      << absl::StrJoin(problems, "\n");

  // Prometheus evaluated every rule without an error.
  const std::string rule_state = Get("/api/v1/rules");
  EXPECT_THAT(rule_state, Not(HasSubstr("\"health\":\"err\""))) << rule_state;
  EXPECT_THAT(rule_state, HasSubstr("\"health\":\"ok\""));
  // The scenario's alerts are raised: the rollback at once, the ejection pending its minute.
  const std::string alerts = Get("/api/v1/alerts");
  EXPECT_THAT(alerts, HasSubstr("\"alertname\":\"SluiceCanaryRolledBack\"")) << alerts;
  EXPECT_THAT(alerts, HasSubstr("\"alertname\":\"SluiceEndpointsEjected\"")) << alerts;

  // The decision service goes away: the gateway says so, and the alert starts pending.
  ASSERT_EQ(server_.Stop(), 0);
  const absl::Time alert_give_up = absl::Now() + absl::Seconds(20);
  std::string now_alerts;
  while (absl::Now() < alert_give_up) {
    now_alerts = Get("/api/v1/alerts");
    if (absl::StrContains(now_alerts, "SluiceDecisionServiceUnreachable")) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_THAT(now_alerts, HasSubstr("\"alertname\":\"SluiceDecisionServiceUnreachable\""));

  // The picture: weight and success rates from this Prometheus, kept as an artefact.
  fs::create_directories(SLUICE_ARTIFACT_DIR);
  const std::string png = absl::StrCat(SLUICE_ARTIFACT_DIR, "/canary-rollout.png");
  fs::remove(png);
  const std::string command =
      absl::StrCat("WINDOW=5s STEP=1s ", SLUICE_SOURCE_DIR,
                   "/scripts/render-canary-graph.sh http://", prometheus_, " ", png, " ", started,
                   " ", absl::ToUnixSeconds(absl::Now()), " > ", dir_.path(), "/render.out 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << ReadAll(dir_.path() + "/render.out");
  const std::string image = ReadAll(png);
  ASSERT_GT(image.size(), 10'000u) << ReadAll(dir_.path() + "/render.out");
  EXPECT_EQ(image.substr(1, 3), "PNG");
}

}  // namespace
}  // namespace sluice
