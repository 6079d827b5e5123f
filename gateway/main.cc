// sluice-gateway: the HTTP/1.1 proxy that asks sluice-server for a decision per request and
// executes it as Envoy would. See gateway/README.md.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gateway/event/poller.h"
#include "gateway/http/beast.h"
#include "gateway/worker/admin_server.h"
#include "gateway/worker/gateway_context.h"
#include "gateway/worker/worker.h"
#include "grpcpp/grpcpp.h"
#include "lib/common/flags.h"
#include "lib/common/host_port.h"
#include "lib/common/log.h"
#include "lib/common/mutex_mode.h"
#include "lib/common/signals.h"
#include "lib/common/sizes.h"
#include "lib/security/tls.h"
#include "prometheus/registry.h"

namespace {

using sluice::gateway::DecisionFailurePolicy;
using sluice::gateway::GatewayOptions;
namespace asio = sluice::net::asio;
using sluice::net::tcp;

// --decision-failure: `deny`, or `fallback=HOST:PORT`.
struct DecisionFailureFlag {
  DecisionFailurePolicy policy;
};

bool AbslParseFlag(absl::string_view text, DecisionFailureFlag* out, std::string* error) {
  constexpr char kWant[] = "want deny or fallback=HOST:PORT";
  if (text == "deny") {
    out->policy = DecisionFailurePolicy{};
    return true;
  }
  if (!absl::ConsumePrefix(&text, "fallback=")) {
    *error = kWant;
    return false;
  }
  absl::StatusOr<sluice::HostPort> fallback = sluice::ParseHostPort(text);
  if (!fallback.ok()) {
    *error = absl::StrCat(kWant, " (", fallback.status().message(), ")");
    return false;
  }
  if (fallback->port == 0) {
    *error = absl::StrCat(kWant, " with a port other than 0");
    return false;
  }
  out->policy.kind = DecisionFailurePolicy::Kind::kFallback;
  out->policy.fallback_host = fallback->host;
  out->policy.fallback_port = fallback->port;
  return true;
}

std::string AbslUnparseFlag(const DecisionFailureFlag& value) {
  if (value.policy.kind == DecisionFailurePolicy::Kind::kDeny) return "deny";
  return absl::StrCat(
      "fallback=",
      sluice::HostPort{value.policy.fallback_host, value.policy.fallback_port}.ToString());
}

}  // namespace

// Defaults are GatewayOptions' own, so the two cannot disagree.
ABSL_FLAG(std::optional<sluice::HostPort>, listen, std::nullopt,
          "HOST:PORT where clients connect (required); port 0 picks a free one.");
ABSL_FLAG(std::optional<sluice::HostPortList>, decision, std::nullopt,
          "HOST:PORT of sluice-server's gRPC (required); several replicas as "
          "HOST:PORT,HOST:PORT (IP addresses) or one host name with several addresses: each "
          "worker's stream goes to one and fails over to another.");
ABSL_FLAG(std::optional<sluice::HostPort>, metrics, std::nullopt,
          "HOST:PORT of the admin port, /metrics and /healthz (required); port 0 picks a free "
          "one.");
ABSL_FLAG(int, workers, GatewayOptions{}.workers,
          "Event loops, one thread each, each with its own listener (SO_REUSEPORT), upstream "
          "pool and decision stream; 1 to 256.");
ABSL_FLAG(std::string, io, "auto",
          "How workers do socket I/O: io_uring (reads and writes queued in a ring, one system "
          "call per loop turn for all of them; Linux 6.1 or later, io_uring not disabled), "
          "epoll (readiness, then a system call per read and per write), or auto: io_uring "
          "when the kernel allows it, else epoll.");
ABSL_FLAG(std::string, decisions, "server",
          "Where decisions are taken: server (asked per request) or local (on the table the "
          "server pushes).");
ABSL_FLAG(DecisionFailureFlag, decision_failure, DecisionFailureFlag{},
          "With no decision and no usable table: deny (503, flag DSU), or fallback=HOST:PORT "
          "to send such requests there, once and without retries (flag DSF).");
ABSL_FLAG(absl::Duration, decision_deadline, GatewayOptions{}.decision_deadline,
          "How long a server-mode decision may take before the last table (or "
          "--decision-failure) decides.");
ABSL_FLAG(absl::Duration, max_table_age, GatewayOptions{}.max_table_age,
          "Decide from the last table only while the server has been unreachable for less than "
          "this (inf as Envoy; 0s never decides from an unconfirmed table).");
ABSL_FLAG(std::string, access_log, GatewayOptions{}.access_log,
          "Envoy's default access-log format, one line per request, to this file, or - for "
          "stdout; SIGUSR1 reopens the file.");
ABSL_FLAG(absl::Duration, access_log_flush_interval, GatewayOptions{}.access_log_flush_interval,
          "Buffered access-log lines are written at least this often.");
ABSL_FLAG(sluice::ByteSize, max_request_headers,
          (sluice::ByteSize{GatewayOptions{}.max_request_headers_bytes}),
          "Request header limit, from 1k to 1m; beyond it 431 and close.");
ABSL_FLAG(uint32_t, max_request_header_count, GatewayOptions{}.max_request_header_count,
          "Header fields per request, Host and repeated names included, from 1 to 10000; one "
          "more is answered 431 and the connection closed.");
ABSL_FLAG(sluice::ByteSize, max_request_body,
          (sluice::ByteSize{GatewayOptions{}.max_request_body_bytes}),
          "Request body limit; beyond it 413 and close.");
ABSL_FLAG(sluice::ByteSize, retry_buffer, (sluice::ByteSize{GatewayOptions{}.retry_buffer_bytes}),
          "Request bodies up to this size are kept for replay on retry; longer ones are streamed "
          "upstream and not retried.");
ABSL_FLAG(absl::Duration, request_header_timeout, GatewayOptions{}.request_header_timeout,
          "A client must finish its headers within this, else 408 and close.");
ABSL_FLAG(absl::Duration, idle_timeout, GatewayOptions{}.idle_timeout,
          "A keep-alive connection with no request is closed after this; it also bounds each "
          "wait for the next piece of a request body.");
ABSL_FLAG(absl::Duration, drain_timeout, GatewayOptions{}.drain_timeout,
          "On SIGTERM, how long requests in flight may finish before connections are closed.");
ABSL_FLAG(std::string, name, GatewayOptions{}.gateway_name,
          "This gateway's name in its metrics and in `sluicectl gateways`.");
ABSL_FLAG(absl::Duration, dns_refresh_rate, GatewayOptions{}.dns_refresh_rate,
          "How often endpoint host names are resolved again.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain this gateway presents to sluice-server (mutual TLS with "
          "--tls-key and --tls-ca).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle that verifies sluice-server's certificate.");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name sluice-server's certificate must carry, when not the host of --decision.");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Seconds(10),
          "How often the --tls-* files are re-read (rotation without a restart).");
ABSL_FLAG(bool, plaintext, false,
          "Talk to sluice-server without TLS (its --plaintext): for tests and demos on "
          "loopback.");
ABSL_FLAG(bool, shadow_host_suffix, GatewayOptions{}.shadow_host_suffix,
          "Mirrored requests carry Host: NAME-shadow, as Istio before 1.28 sent them "
          "(--shadow-host-suffix, or =true|false).");

namespace {

constexpr char kUsage[] =
    R"(usage: sluice-gateway --listen HOST:PORT --decision HOST:PORT --metrics HOST:PORT [flags]

The HTTP/1.1 proxy that executes sluice-server's decisions as Envoy would. Port 0 picks a
free port; the chosen ports are printed on start-up:
  listening http=HOST:PORT metrics=HOST:PORT workers=N decision=ADDR decisions=MODE io=IO
)";

sluice::flags::Program FlagsProgram() {
  using sluice::flags::Require;
  sluice::flags::Program program;
  program.name = "sluice-gateway";
  program.usage = kUsage;
  const auto non_negative = [](absl::Duration d) { return d >= absl::ZeroDuration(); };
  const auto positive = [](absl::Duration d) { return d > absl::ZeroDuration(); };
  const auto given = [](const std::optional<sluice::HostPort>& a) { return a.has_value(); };
  program.requirements = {
      Require(FLAGS_listen, "HOST:PORT", given),
      Require(FLAGS_decision, "HOST:PORT[,HOST:PORT...] with ports other than 0",
              [](const std::optional<sluice::HostPortList>& a) {
                return a && std::all_of(a->entries.begin(), a->entries.end(),
                                        [](const sluice::HostPort& hp) { return hp.port != 0; });
              }),
      Require(FLAGS_metrics, "HOST:PORT", given),
      Require(FLAGS_workers, "a number from 1 to 256", [](int n) { return n >= 1 && n <= 256; }),
      Require(FLAGS_io, "auto, io_uring or epoll",
              [](const std::string& m) { return m == "auto" || m == "epoll" || m == "io_uring"; }),
      Require(FLAGS_decisions, "server or local",
              [](const std::string& m) { return m == "server" || m == "local"; }),
      Require(FLAGS_decision_deadline, "a positive duration such as 250ms", positive),
      Require(FLAGS_max_table_age, "a duration such as 30s or inf", non_negative),
      Require(FLAGS_access_log_flush_interval, "a positive duration such as 1s", positive),
      Require(FLAGS_max_request_headers, "a size from 1k to 1m",
              [](sluice::ByteSize s) { return s.bytes >= 1024 && s.bytes <= 1024 * 1024; }),
      Require(FLAGS_max_request_header_count, "a number from 1 to 10000",
              [](uint32_t n) { return n >= 1 && n <= 10000; }),
      Require(FLAGS_request_header_timeout, "a duration such as 10s", non_negative),
      Require(FLAGS_idle_timeout, "a duration such as 60s", non_negative),
      Require(FLAGS_drain_timeout, "a duration such as 30s", non_negative),
      Require(FLAGS_dns_refresh_rate, "a positive duration such as 5s", positive),
  };
  return program;
}

// The options the flags set, once sluice::flags::Parse has checked them.
GatewayOptions OptionsFromFlags() {
  GatewayOptions o;
  const sluice::HostPort listen = *absl::GetFlag(FLAGS_listen);
  o.listen_host = listen.host;
  o.listen_port = listen.port;
  // As given (for logs and the listening line); the channel's target is derived in main.
  o.decision_address = absl::GetFlag(FLAGS_decision)->ToString();
  const sluice::HostPort metrics = *absl::GetFlag(FLAGS_metrics);
  o.metrics_host = metrics.host;
  o.metrics_port = metrics.port;
  o.workers = absl::GetFlag(FLAGS_workers);
  o.io_uring = absl::GetFlag(FLAGS_io) != "epoll";
  o.decision_failure = absl::GetFlag(FLAGS_decision_failure).policy;
  o.access_log = absl::GetFlag(FLAGS_access_log);
  o.access_log_flush_interval = absl::GetFlag(FLAGS_access_log_flush_interval);
  o.decision_deadline = absl::GetFlag(FLAGS_decision_deadline);
  o.decision_mode = absl::GetFlag(FLAGS_decisions) == "local" ? sluice::v1::DECISION_MODE_LOCAL
                                                              : sluice::v1::DECISION_MODE_SERVER;
  o.max_table_age = absl::GetFlag(FLAGS_max_table_age);
  o.max_request_headers_bytes =
      static_cast<uint32_t>(absl::GetFlag(FLAGS_max_request_headers).bytes);
  o.max_request_header_count = absl::GetFlag(FLAGS_max_request_header_count);
  o.max_request_body_bytes = absl::GetFlag(FLAGS_max_request_body).bytes;
  o.retry_buffer_bytes = absl::GetFlag(FLAGS_retry_buffer).bytes;
  o.request_header_timeout = absl::GetFlag(FLAGS_request_header_timeout);
  o.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  o.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  o.gateway_name = absl::GetFlag(FLAGS_name);
  o.shadow_host_suffix = absl::GetFlag(FLAGS_shadow_host_suffix);
  o.dns_refresh_rate = absl::GetFlag(FLAGS_dns_refresh_rate);
  return o;
}

// One SO_REUSEPORT listener per worker on the same port: the kernel spreads connections.
bool OpenListeners(asio::io_context& io, const GatewayOptions& o, int count,
                   std::vector<tcp::acceptor>* out, uint16_t* bound_port, std::string* error) {
  using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(o.listen_host, ec);
  if (ec) {
    *error = absl::StrCat("--listen ", o.listen_host, ": not an IP address");
    return false;
  }
  uint16_t port = o.listen_port;
  for (int i = 0; i < count; ++i) {
    tcp::acceptor acceptor(io);
    const tcp::endpoint endpoint(address, port);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.set_option(reuse_port(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      *error = absl::StrCat("cannot listen on ", o.listen_host, ":", port, ": ", ec.message());
      return false;
    }
    port = acceptor.local_endpoint().port();
    out->push_back(std::move(acceptor));
  }
  *bound_port = port;
  return true;
}

const char* StateName(sluice::gateway::DecisionClient::State state) {
  switch (state) {
    case sluice::gateway::DecisionClient::State::kConnected:
      return "connected";
    case sluice::gateway::DecisionClient::State::kConnecting:
      return "connecting";
    case sluice::gateway::DecisionClient::State::kDisconnected:
      return "disconnected";
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice::gateway;
  const sluice::flags::Program program = FlagsProgram();
  if (const std::vector<std::string> extra = sluice::flags::Parse(argc, argv, program);
      !extra.empty()) {
    sluice::flags::UsageError(program, absl::StrCat("unexpected argument \"", extra.front(), "\""));
  }
  GatewayOptions options = OptionsFromFlags();
  if (options.io_uring) {
    if (auto ring = sluice::gateway::event::CreateIoUringPoller(); !ring.ok()) {
      // Asked for by name: refused loudly. By default: epoll, said once (a container's
      // seccomp profile or kernel.io_uring_disabled often forbids io_uring).
      if (absl::GetFlag(FLAGS_io) == "io_uring") {
        std::cerr << "sluice-gateway: --io io_uring: " << ring.status().message() << "\n";
        return 1;
      }
      sluice::LogInfo("io_uring unavailable (", ring.status().message(), "): workers use epoll");
      options.io_uring = false;
    }
  }
  absl::StatusOr<sluice::security::Transport> transport = sluice::security::ChooseTransport(
      sluice::security::Side::kClient, absl::GetFlag(FLAGS_plaintext),
      {.cert = absl::GetFlag(FLAGS_tls_cert),
       .key = absl::GetFlag(FLAGS_tls_key),
       .ca = absl::GetFlag(FLAGS_tls_ca),
       .refresh = absl::GetFlag(FLAGS_tls_refresh_interval),
       .server_name = absl::GetFlag(FLAGS_tls_server_name)});
  if (!transport.ok()) sluice::flags::UsageError(program, transport.status().message());
  const sluice::HostPortList decision = *absl::GetFlag(FLAGS_decision);
  absl::StatusOr<std::string> decision_target = sluice::GrpcTarget(decision);
  if (!decision_target.ok()) {
    sluice::flags::UsageError(program,
                              absl::StrCat("--decision: ", decision_target.status().message()));
  }
  const bool replicas = decision.entries.size() > 1;
  if (replicas && !transport->plaintext && transport->files.server_name.empty()) {
    // gRPC would check each server's certificate against the whole address list.
    sluice::flags::UsageError(program,
                              "several --decision addresses over TLS need --tls-server-name: "
                              "the name every server's certificate carries");
  }
  if (transport->plaintext) {
    sluice::LogWarning("--plaintext: the decision stream to ", options.decision_address,
                       " is unencrypted and unauthenticated; use mutual TLS (--tls-cert, "
                       "--tls-key, --tls-ca) outside tests and demos");
  }

  sluice::DisableMutexDeadlockDetection();
  // SIGUSR1: reopen the access log (logrotate).
  const sigset_t signals = sluice::BlockTerminationSignals({SIGUSR1});
  // gRPC starts threads of its own from here on: after the signal mask, which they inherit.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      sluice::security::ChannelCredentials(*transport);
  if (!credentials.ok()) {
    std::cerr << "sluice-gateway: " << credentials.status().message() << "\n";
    return 1;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  IstioMetrics istio_metrics(*registry, options.gateway_name, "default");
  SluiceGatewayMetrics sluice_metrics(*registry);
  GatewayContext context;
  context.options = options;
  context.istio_metrics = &istio_metrics;
  context.sluice_metrics = &sluice_metrics;
  sluice::gateway::event::RealTimeSource clock;
  sluice::gateway::DnsCache::Options dns_options;
  dns_options.refresh = options.dns_refresh_rate;
  dns_options.failure_refresh = std::min(dns_options.refresh, absl::Seconds(1));
  sluice::gateway::DnsCache dns(sluice::gateway::DnsCache::SystemResolver(), clock, dns_options);
  context.dns = &dns;
  context.clock = &clock;
  std::unique_ptr<AccessLogWriter> access_log;
  if (!options.access_log.empty()) {
    std::string error;
    AccessLogWriterOptions log_options;
    log_options.flush_interval = options.access_log_flush_interval;
    access_log = AccessLogWriter::Open(options.access_log, options.workers, log_options, &error);
    if (access_log == nullptr) {
      std::cerr << "sluice-gateway: " << error << "\n";
      return 1;
    }
    context.access_log = access_log.get();
  }

  asio::io_context setup_io;
  std::vector<tcp::acceptor> acceptors;
  uint16_t http_port = 0;
  if (std::string error;
      !OpenListeners(setup_io, options, options.workers, &acceptors, &http_port, &error)) {
    std::cerr << "sluice-gateway: " << error << "\n";
    return 1;
  }

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < options.workers; ++i) {
    // A channel per worker: each has its own HTTP/2 connection and stream, so workers never
    // queue behind each other's messages.
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);  // see server/main.cc
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    sluice::security::AddServerNameOverride(*transport, args);
    // Several replicas (listed, or one DNS name with several addresses): round_robin keeps a
    // connection to each, so a worker whose server goes away reconnects at once to one known
    // to be up (pick_first would try the dead address first again). Each channel starts at a
    // random replica: workers spread out. With one address it is that address.
    args.SetLoadBalancingPolicyName("round_robin");
    auto channel = grpc::CreateCustomChannel(*decision_target, *credentials, args);
    workers.push_back(std::make_unique<Worker>(i, context, std::move(channel)));
  }

  AdminServer admin(registry, [&] {
    AdminServer::Health health;
    size_t connected = 0, stale = 0;
    double table_age = 0;  // the oldest worker's, in seconds; -1: a worker has no table
    uint64_t table_version = 0;
    // Workers whose decisions are not coming from a server that answers: the stream is down,
    // silent, or let a decision pass its deadline (a hung or overloaded server keeps its
    // connection open, so the connection alone does not tell).
    std::vector<std::string> affected;
    for (size_t i = 0; i < workers.size(); ++i) {
      const auto& w = workers[i];
      const bool up = w->decision_state() == DecisionClient::State::kConnected;
      if (up) ++connected;
      const WorkerTableState t = w->table_state();
      if (t.stale) ++stale;
      if (!up || t.unanswered) affected.push_back(std::to_string(i));
      if (table_age >= 0) table_age = t.age_seconds < 0 ? -1 : std::max(table_age, t.age_seconds);
      table_version = std::max(table_version, t.version);
    }
    const bool fallback = options.decision_failure.kind == DecisionFailurePolicy::Kind::kFallback;
    std::string state = "serving";
    if (context.draining.load()) {
      state = "draining";
    } else if (connected < workers.size() && stale + connected == workers.size()) {
      // Deciding from the last table while the server cannot confirm it (as Envoy does).
      state = "stale";
    } else if (connected < workers.size()) {
      state = fallback ? "degraded" : "unavailable";
    } else if (!affected.empty()) {
      state = "degraded";  // connected, but decisions miss their deadline
    }
    health.status = state == "serving" || state == "degraded" || state == "stale" ? 200 : 503;
    const std::string policy = AbslUnparseFlag(DecisionFailureFlag{options.decision_failure});
    health.body =
        absl::StrCat("{\"state\":\"", state, "\",\"decision_service\":\"",
                     StateName(workers.front()->decision_state()),
                     "\",\"workers_connected\":", connected, ",\"workers\":", workers.size(),
                     ",\"workers_affected\":[", absl::StrJoin(affected, ","), "],\"decisions\":\"",
                     options.decision_mode == sluice::v1::DECISION_MODE_LOCAL ? "local" : "server",
                     "\",\"table_version\":", table_version, ",\"table_age_seconds\":", table_age,
                     ",\"decision_failure\":\"", policy, "\"}\n");
    return health;
  });
  if (std::string error; !admin.Start(options.metrics_host, options.metrics_port, &error)) {
    std::cerr << "sluice-gateway: cannot serve metrics on " << options.metrics_host << ":"
              << options.metrics_port << ": " << error << "\n";
    return 1;
  }
  // Each worker's loop adopts its listener's descriptor.
  for (size_t i = 0; i < workers.size(); ++i) workers[i]->Start(acceptors[i].release());

  std::printf("listening http=%s metrics=%s workers=%d decision=%s decisions=%s io=%s\n",
              sluice::HostPort{options.listen_host, http_port}.ToString().c_str(),
              sluice::HostPort{options.metrics_host, admin.port()}.ToString().c_str(),
              options.workers, options.decision_address.c_str(),
              options.decision_mode == sluice::v1::DECISION_MODE_LOCAL ? "local" : "server",
              options.io_uring ? "io_uring" : "epoll");
  std::fflush(stdout);

  int sig = sluice::WaitForSignal(signals);
  for (; sig == SIGUSR1; sig = sluice::WaitForSignal(signals)) {
    if (access_log != nullptr) access_log->Reopen();  // done by its flusher
  }
  // Graceful drain: refuse new connections, finish what is in flight, then stop.
  std::fprintf(stderr, "sluice-gateway: signal %d, draining (at most %s)\n", sig,
               absl::FormatDuration(options.drain_timeout).c_str());
  context.draining.store(true);
  for (auto& w : workers) w->BeginDrain();
  const absl::Time give_up = absl::Now() + options.drain_timeout;
  for (;;) {
    size_t open = 0;
    for (const auto& w : workers) open += w->sessions();
    if (open == 0 || absl::Now() >= give_up) {
      if (open > 0) {
        std::fprintf(stderr, "sluice-gateway: drain timeout, closing %zu connections\n", open);
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : workers) w->Stop();
  dns.Shutdown();  // no resolution posts to the workers' loops once they are gone
  if (access_log != nullptr) access_log->Stop();  // writes what the workers left
  admin.Stop();
  std::fprintf(stderr, "sluice-gateway: stopped\n");
  return 0;
}
