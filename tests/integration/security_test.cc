// Mutual TLS, the access policy and the audit log, with the real programs on loopback and
// certificates made by a test CA: every kind of bad credential refused with its status, roles
// enforced per method, a gateway's decision stream over TLS through a certificate rotation,
// and the audit trail of allowed and refused changes.

#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/security/tls.h"
#include "protos/grpc/health/v1/health.grpc.pb.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "sluice/v1/decision.grpc.pb.h"
#include "tests/integration/process.h"
#include "tests/lib/security/test_ca.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "ci-token-0123456789";
constexpr char kOtherToken[] = "ops-bot-token-9876543210";
// The policy's tokenSha256, computed as the README tells users to: sha256sum of the file.
std::string Sha256Of(const std::string& text, const testing::TempDir& dir) {
  const std::string file = dir.Write("token-for-hash", text);
  const testing::Ran ran = testing::RunToEnd({"/usr/bin/sha256sum", file});
  return ran.out.substr(0, 64);
}

constexpr char kShop[] = R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: shop
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - {address: 127.0.0.1, ports: {http: STUB_PORT}}
)";

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = dir_.path();
    testing::WriteKeyPair(ca_.Issue("server", {"DNS:localhost", "IP:127.0.0.1"}), certs_, "server");
    testing::WriteKeyPair(ca_.Issue("gateway", {"URI:spiffe://t/gateway"}), certs_, "gateway");
    testing::WriteKeyPair(ca_.Issue("admin", {"URI:spiffe://t/admin"}), certs_, "admin");
    testing::WriteKeyPair(ca_.Issue("reader", {"URI:spiffe://t/reader"}), certs_, "reader");
    testing::WriteKeyPair(ca_.Issue("stranger", {"URI:spiffe://elsewhere/x"}), certs_, "stranger");
    testing::WriteKeyPair(
        ca_.Issue("expired", {"URI:spiffe://t/admin"}, absl::Hours(-48), absl::Hours(-24)), certs_,
        "expired");
    testing::WriteKeyPair(other_ca_.Issue("impostor", {"URI:spiffe://t/admin"}), certs_,
                          "impostor");
    ca_file_ = dir_.Write("ca.crt", ca_.cert_pem());
    other_ca_file_ = dir_.Write("other-ca.crt", other_ca_.cert_pem());
    token_file_ = dir_.Write("ci.token", std::string(kToken) + "\n");
    policy_ = dir_.Write("policy.yaml", Policy("[read]"));
    audit_ = dir_.path() + "/state/audit.log";
  }

  // The reader's roles are the argument, so a test can edit them.
  std::string Policy(const std::string& reader_roles) {
    return absl::StrCat(
        "identities:\n"
        "  - {name: spiffe://t/gateway, roles: [gateway]}\n"
        "  - {name: spiffe://t/admin, roles: [read, write, canary]}\n"
        "  - {name: spiffe://t/reader, roles: ",
        reader_roles,
        "}\n"
        "  - {name: spiffe://elsewhere/*, roles: [read]}\n"
        "  - name: ci\n"
        "    tokenSha256: ",
        Sha256Of(kToken, dir_),
        "\n    roles: [read, write]\n"
        "  - name: ops-bot\n"
        "    tokenSha256: ",
        Sha256Of(kOtherToken, dir_), "\n    roles: [read, write, canary]\n");
  }

  // `listen`: 127.0.0.1:0 picks a port; a restart passes the one it had.
  void StartServer(std::vector<std::string> extra = {}, const std::string& listen = "127.0.0.1:0") {
    std::vector<std::string> argv = {SLUICE_SERVER_BINARY,
                                     "--listen",
                                     listen,
                                     "--metrics",
                                     "127.0.0.1:0",
                                     "--tls-cert",
                                     certs_ + "/server.crt",
                                     "--tls-key",
                                     certs_ + "/server.key",
                                     "--tls-ca",
                                     ca_file_,
                                     "--access-policy",
                                     policy_,
                                     "--audit-log",
                                     audit_,
                                     "--state-dir",
                                     dir_.path() + "/state",
                                     "--reload-interval",
                                     "100ms",
                                     "--tls-refresh-interval",
                                     "1s",
                                     "--config",
                                     dir_.Write("shop.yaml", Shop())};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(server_.Start(argv, "listening ")) << server_.error();
    grpc_ = server_.Field("grpc");
  }

  std::string Shop() const {
    std::string yaml = kShop;
    yaml.replace(yaml.find("STUB_PORT"), 9, stub_port_);
    return yaml;
  }

  // sluicectl as `who` (a key pair's name, or "" for none) trusting `ca`.
  testing::Ran Ctl(const std::string& who, std::vector<std::string> args,
                   const std::string& ca = "", std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {SLUICECTL_BINARY, "--server", grpc_, "--tls-ca",
                                     ca.empty() ? ca_file_ : ca};
    if (!who.empty()) {
      argv.insert(argv.end(), {"--tls-cert", certs_ + "/" + who + ".crt", "--tls-key",
                               certs_ + "/" + who + ".key"});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunToEnd(argv, env);
  }

  std::string ApplyFile() {
    return dir_.Write("apply.yaml", R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop}
)");
  }

  testing::TempDir dir_;
  testing::TestCa ca_{"sluice test CA"};
  testing::TestCa other_ca_{"another CA"};
  std::string certs_, ca_file_, other_ca_file_, token_file_, policy_, audit_;
  std::string stub_port_ = "1";
  testing::Process server_;
  std::string grpc_;
};

TEST_F(SecurityTest, TheAdminAppliesAndTheChangeIsAuditedInAPrivateFile) {
  StartServer();
  const testing::Ran applied = Ctl("admin", {"apply", "-f", ApplyFile()});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;

  // An invalid change is audited too, as changing nothing.
  const std::string bad = dir_.Write("bad.yaml",
                                     "apiVersion: networking.istio.io/v1\n"
                                     "kind: VirtualService\nmetadata: {name: x}\n"
                                     "spec: {hosts: [x], http: [{timeout: soon}]}\n");
  EXPECT_EQ(Ctl("admin", {"apply", "-f", bad}).exit_code, 1);

  const testing::Ran history = Ctl("reader", {"history"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("spiffe://t/admin"));
  EXPECT_THAT(history.out, HasSubstr("VirtualService/default/shop"));
  EXPECT_THAT(history.out, HasSubstr("invalid"));
  EXPECT_THAT(history.out, HasSubstr("error(s); nothing changed"));
  std::ifstream in(audit_);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_THAT(line, HasSubstr("\"identity\":\"spiffe://t/admin\",\"action\":\"apply\""));
  EXPECT_THAT(line, HasSubstr("\"outcome\":\"applied\""));
  EXPECT_THAT(line, HasSubstr("\"version_before\":\"1\",\"version_after\":\"2\""));
  struct stat st {};
  ASSERT_EQ(stat(audit_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_.path() + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The metric of changes by identity.
  EXPECT_EQ(testing::SumMetric(testing::HttpGet(server_.Field("metrics"), "/metrics"),
                               "sluice_admin_changes_total",
                               "identity=\"spiffe://t/admin\",outcome=\"applied\""),
            1);
}

TEST_F(SecurityTest, EachBadCredentialIsRefusedWithItsStatusAndChangesNothing) {
  StartServer({"--allow-identity", "spiffe://t/*", "--allow-identity", "ci"});
  const std::string file = ApplyFile();
  struct Case {
    std::string name;
    std::string who;
    std::string ca;
    std::vector<std::string> env;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      // The handshake fails: gRPC says UNAVAILABLE (exit 3), nothing reaches the services.
      {"client certificate of another CA", "impostor", "", {}, 3, ""},
      {"server not trusted (wrong CA)", "admin", other_ca_file_, {}, 3, ""},
      {"expired client certificate", "expired", "", {}, 3, ""},
      // The call arrives, and is refused with a reason.
      {"no certificate, no token",
       "",
       "",
       {},
       1,
       "not authenticated: no client certificate and no bearer token"},
      {"SAN not allowed",
       "stranger",
       "",
       {},
       1,
       "permission denied: client identity \"spiffe://elsewhere/x\" is not in the server's "
       "--allow-identity list"},
      {"read identity applies",
       "reader",
       "",
       {},
       1,
       "permission denied: client identity \"spiffe://t/reader\" lacks role 'write', which Apply "
       "needs (it holds: read)"},
      {"gateway identity applies",
       "gateway",
       "",
       {},
       1,
       "lacks role 'write', which Apply needs (it holds: gateway)"},
      {"wrong token",
       "",
       "",
       {"SLUICE_TOKEN_FILE=" + dir_.Write("wrong.token", "nope\n")},
       1,
       "not authenticated: the bearer token matches no identity of the access policy"},
      {"token holder not allowed",
       "",
       "",
       {"SLUICE_TOKEN_FILE=" + dir_.Write("ops.token", kOtherToken)},
       1,
       "permission denied: token holder \"ops-bot\" is not in the server's --allow-identity "
       "list"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const testing::Ran ran = Ctl(c.who, {"apply", "-f", file}, c.ca, c.env);
    EXPECT_EQ(ran.exit_code, c.exit_code) << ran.out << ran.err;
    EXPECT_THAT(ran.err, HasSubstr(c.message));
    EXPECT_THAT(ran.err, Not(HasSubstr("nope")));  // a token never appears in a message
  }
  // Nothing changed: the version is the one the server started with, and the refusals that
  // reached the service are in the audit log as denied.
  const testing::Ran history = Ctl("admin", {"history", "-o", "json"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, Not(HasSubstr("\"applied\"")));
  for (const char* who :
       {"anonymous", "spiffe://elsewhere/x", "spiffe://t/reader", "spiffe://t/gateway"}) {
    EXPECT_THAT(history.out, HasSubstr(absl::StrCat("\"identity\": \"", who, "\"")));
  }
  EXPECT_THAT(history.out, HasSubstr("\"outcome\": \"denied\""));
  // What a refused apply asked for: its file, by the name sluicectl sent.
  EXPECT_THAT(history.out, HasSubstr(absl::StrCat("\"file:", dir_.path(), "/apply.yaml\"")));

  // The right token, with no client certificate, holds read and write but not canary.
  const std::vector<std::string> token_env = {"SLUICE_TOKEN_FILE=" + token_file_};
  const testing::Ran by_token = Ctl("", {"apply", "-f", file}, "", token_env);
  EXPECT_EQ(by_token.exit_code, 0) << by_token.err;
  const testing::Ran promote = Ctl("", {"canary", "promote", "shop"}, "", token_env);
  EXPECT_EQ(promote.exit_code, 1);
  EXPECT_THAT(promote.err, HasSubstr("token holder \"ci\" lacks role 'canary'"));
  EXPECT_THAT(promote.err, Not(HasSubstr(kToken)));
  EXPECT_THAT(server_.Log(), Not(HasSubstr(kToken)));
}

TEST_F(SecurityTest, APolicyEditTakesEffectAndABadOneKeepsThePreviousPolicy) {
  StartServer();
  EXPECT_EQ(Ctl("reader", {"apply", "-f", ApplyFile()}).exit_code, 1);
  dir_.Write("policy.yaml", Policy("[read, write]"));
  bool allowed = false;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(10); absl::Now() < give_up;) {
    if (Ctl("reader", {"apply", "-f", ApplyFile()}).exit_code == 0) {
      allowed = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(allowed) << server_.Log();
  dir_.Write("policy.yaml", "identities:\n  - name: spiffe://t/reader\n    roles: [root]\n");
  absl::SleepFor(absl::Milliseconds(500));  // five reload intervals
  EXPECT_THAT(server_.Log(), HasSubstr("unknown role \"root\""));
  EXPECT_THAT(server_.Log(), HasSubstr("the previous policy holds"));
  const testing::Ran still = Ctl("reader", {"apply", "-f", ApplyFile()});
  EXPECT_EQ(still.exit_code, 0) << still.err;
}

TEST_F(SecurityTest, OnlyGatewayIdentitiesOpenDecisionStreams) {
  StartServer();
  testing::Process intruder;
  ASSERT_TRUE(
      intruder.Start({SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:0", "--decision", grpc_,
                      "--metrics", "127.0.0.1:0", "--decisions", "local", "--tls-ca", ca_file_,
                      "--tls-cert", certs_ + "/admin.crt", "--tls-key", certs_ + "/admin.key"},
                     "listening "))
      << intruder.error();
  EXPECT_FALSE(testing::WaitForGatewayServing(intruder.Field("metrics"), absl::Seconds(2)));
  EXPECT_THAT(intruder.Log(),
              HasSubstr("decision server refused this gateway: client identity "
                        "\"spiffe://t/admin\" lacks role 'gateway', which Stream needs"));
  const testing::Ran gateways = Ctl("admin", {"gateways"});
  EXPECT_THAT(gateways.out, HasSubstr("0 gateway workers"));
}

// Kubernetes' gRPC probes cannot present certificates: --health serves grpc.health.v1 in
// plaintext, and nothing else.
TEST_F(SecurityTest, TheHealthPortAnswersProbesAndRefusesEverythingElse) {
  StartServer({"--health", "127.0.0.1:0"});
  const std::string health = server_.Field("health");
  ASSERT_FALSE(health.empty()) << "no health= field on the listening line";
  auto channel = grpc::CreateChannel(health, grpc::InsecureChannelCredentials());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("sluice.v1.DecisionService");
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  const grpc::Status status =
      grpc::health::v1::Health::NewStub(channel)->Check(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  v1::ListRequest list;
  v1::ListResponse listed;
  grpc::ClientContext admin_context;
  const grpc::Status refused =
      v1::AdminService::NewStub(channel)->List(&admin_context, list, &listed);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("this port serves health checks only"));
}

TEST_F(SecurityTest, AServerCertificateForAnotherNameIsRefusedUnlessThatNameIsExpected) {
  testing::WriteKeyPair(ca_.Issue("elsewhere", {"DNS:sluice.example.org"}), certs_, "server");
  StartServer();
  const testing::Ran wrong = Ctl("admin", {"get"});
  EXPECT_EQ(wrong.exit_code, 3) << wrong.out << wrong.err;
  const testing::Ran named = Ctl("admin", {"get", "--tls-server-name", "sluice.example.org"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
}

TEST_F(SecurityTest, DecideIsForGatewaysOnly) {
  StartServer();
  const auto call = [&](const std::string& who) {
    security::Transport transport{.plaintext = false,
                                  .files = {.cert = certs_ + "/" + who + ".crt",
                                            .key = certs_ + "/" + who + ".key",
                                            .ca = ca_file_,
                                            .refresh = absl::Seconds(10),
                                            .server_name = ""}};
    auto credentials = security::ChannelCredentials(transport);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    auto stub = v1::DecisionService::NewStub(grpc::CreateChannel(grpc_, *credentials));
    v1::DecideRequest request;
    request.set_authority("shop");
    request.set_path("/");
    request.set_method("GET");
    v1::Decision decision;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->Decide(&context, request, &decision);
  };
  const grpc::Status admin = call("admin");
  EXPECT_EQ(admin.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(admin.error_message(), HasSubstr("lacks role 'gateway', which Decide needs"));
  const grpc::Status gateway = call("gateway");
  EXPECT_TRUE(gateway.ok()) << gateway.error_message();
}

// Taking the gateway role away ends the streams the identity has open, at their next
// message: a policy edit does not wait for reconnections.
TEST_F(SecurityTest, APolicyEditEndsTheStreamsOfAnIdentityThatLostTheGatewayRole) {
  testing::Process stub;
  ASSERT_TRUE(
      stub.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop"}, "listening "))
      << stub.error();
  stub_port_ = stub.Field("http").substr(stub.Field("http").rfind(':') + 1);
  StartServer();
  testing::Process gateway;
  ASSERT_TRUE(
      gateway.Start({SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:0", "--decision", grpc_,
                     "--metrics", "127.0.0.1:0", "--decisions", "local", "--tls-ca", ca_file_,
                     "--tls-cert", certs_ + "/gateway.crt", "--tls-key", certs_ + "/gateway.key"},
                    "listening "))
      << gateway.error();
  ASSERT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"))) << gateway.Log();
  dir_.Write("policy.yaml",
             "identities:\n  - {name: spiffe://t/admin, roles: [read, write, canary]}\n");
  bool ended = false;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(10); absl::Now() < give_up;) {
    // Traffic makes the gateway report, and its next message meets the new policy.
    testing::HttpExchange(gateway.Field("http"), "GET", "/", {{"Host", "shop"}});
    if (absl::StrContains(gateway.Log(), "decision server refused this gateway")) {
      ended = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(ended) << gateway.Log() << server_.Log();
  EXPECT_THAT(server_.Log(), HasSubstr("has no role in the access policy; it lacks role "
                                       "'gateway'"));
  EXPECT_THAT(Ctl("admin", {"gateways"}).out, HasSubstr("0 gateway workers"));
}

// A gateway deciding locally keeps serving, without one failed request, while the server's
// certificate is replaced; new connections get the new certificate without a restart.
TEST_F(SecurityTest, TheServerCertificateRotatesWhileAGatewayStreams) {
  testing::Process stub;
  ASSERT_TRUE(
      stub.Start({SLUICE_STUB_BINARY, "--listen", "127.0.0.1:0", "--name", "shop"}, "listening "))
      << stub.error();
  stub_port_ = stub.Field("http").substr(stub.Field("http").rfind(':') + 1);
  StartServer();
  testing::Process gateway;
  ASSERT_TRUE(gateway.Start({SLUICE_GATEWAY_BINARY, "--listen", "127.0.0.1:0", "--decision", grpc_,
                             "--metrics", "127.0.0.1:0", "--decisions", "local", "--tls-ca",
                             ca_file_, "--tls-cert", certs_ + "/gateway.crt", "--tls-key",
                             certs_ + "/gateway.key", "--tls-refresh-interval", "1s"},
                            "listening "))
      << gateway.error();
  ASSERT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"))) << gateway.Log();

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0};
  std::thread load([&] {
    // Bounded: at most 20,000 requests, or until told to stop.
    while (!stop.load() && sent.load() < 20000) {
      const testing::HttpResult r =
          testing::HttpExchange(gateway.Field("http"), "GET", "/", {{"Host", "shop"}});
      ++sent;
      if (r.status != 200) ++failed;
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  // Joined on every way out: an ASSERT returning early must not destroy a running thread (which
  // aborts the whole test binary and hides the failure).
  absl::Cleanup join_load = [&] {
    stop = true;
    if (load.joinable()) load.join();
  };
  absl::SleepFor(absl::Milliseconds(300));
  const testing::KeyPair rotated = ca_.Issue("server-2", {"DNS:localhost", "IP:127.0.0.1"});
  testing::WriteKeyPair(rotated, certs_, "server");
  // The server re-reads its files every second: after three, new handshakes get the new one.
  absl::SleepFor(absl::Seconds(3));
  const testing::Ran s_client =
      testing::RunToEnd({"/bin/sh", "-c",
                         absl::StrCat("openssl s_client -connect ", grpc_, " -CAfile ", ca_file_,
                                      " -cert ", certs_, "/admin.crt -key ", certs_,
                                      "/admin.key -alpn h2 </dev/null "
                                      "2>/dev/null | openssl x509 -noout -subject")});
  EXPECT_THAT(s_client.out, HasSubstr("CN = server-2")) << s_client.err;
  EXPECT_EQ(Ctl("admin", {"get"}).exit_code, 0);
  // The gateway's stream was opened before the rotation. Restart the server on its port:
  // the gateway reconnects, verifying the new certificate, while local decisions go on.
  const std::string address = grpc_;
  ASSERT_EQ(server_.Stop(), 0) << server_.Log();
  StartServer({}, address);
  bool reconnected = false;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(10); absl::Now() < give_up;) {
    const testing::Ran streams = Ctl("admin", {"gateways"});
    if (absl::StrContains(streams.out, "1 gateway worker")) {
      reconnected = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(reconnected) << gateway.Log();
  stop = true;
  load.join();
  EXPECT_GT(sent.load(), 100);
  EXPECT_EQ(failed.load(), 0) << "of " << sent.load();
  EXPECT_TRUE(testing::WaitForGatewayServing(gateway.Field("metrics"), absl::Seconds(1)));
}

}  // namespace
}  // namespace sluice
