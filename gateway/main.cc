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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gateway/http/beast.h"
#include "gateway/worker/admin_server.h"
#include "gateway/worker/gateway_context.h"
#include "gateway/worker/worker.h"
#include "grpcpp/grpcpp.h"
#include "lib/common/mutex_mode.h"
#include "lib/common/signals.h"
#include "lib/common/sizes.h"
#include "prometheus/registry.h"

namespace {

using sluice::gateway::DecisionFailurePolicy;
using sluice::gateway::GatewayOptions;
namespace asio = sluice::net::asio;
using sluice::net::tcp;

constexpr char kUsage[] =
    "usage: sluice-gateway --listen HOST:PORT --decision HOST:PORT --metrics HOST:PORT\n"
    "         [--workers N] [--decision-failure deny|fallback=HOST:PORT]\n"
    "         [--access-log PATH|-] [--access-log-flush-interval DURATION]\n"
    "         [--decision-deadline DURATION]\n"
    "         [--max-request-headers BYTES] [--max-request-header-count N]\n"
    "         [--max-request-body BYTES]\n"
    "         [--retry-buffer BYTES] [--request-header-timeout DURATION]\n"
    "         [--idle-timeout DURATION] [--drain-timeout DURATION] [--name NAME]\n"
    "         [--decisions server|local] [--max-table-age DURATION]\n"
    "         [--shadow-host-suffix[=true|false]] [--dns-refresh-rate DURATION]\n"
    "Port 0 picks a free port; the chosen ports are printed on start-up.\n";

bool SplitHostPort(const std::string& value, std::string* host, uint16_t* port) {
  const size_t colon = value.rfind(':');
  uint32_t p = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(value.substr(colon + 1), &p) ||
      p > 65535) {
    return false;
  }
  *host = value.substr(0, colon);
  *port = static_cast<uint16_t>(p);
  return true;
}

// "65536", "64k", "16m" (binary multiples).
bool ParseBytes(const std::string& text, uint64_t* out) {
  const std::optional<uint64_t> n = sluice::ParseBytes(text);
  if (n) *out = *n;
  return n.has_value();
}

// Returns an error message, or empty when every flag parsed.
std::string ParseFlags(int argc, char** argv, GatewayOptions& o) {
  bool have_listen = false, have_decision = false, have_metrics = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") return "help";
    // A boolean flag: alone, or with =true or =false.
    if (absl::string_view rest = flag;
        absl::ConsumePrefix(&rest, "--shadow-host-suffix") && (rest.empty() || rest[0] == '=')) {
      if (!rest.empty() && rest != "=true" && rest != "=false") {
        return absl::StrCat(flag, ": want true or false");
      }
      o.shadow_host_suffix = rest != "=false";
      continue;
    }
    if (i + 1 >= argc) return absl::StrCat(flag, " needs a value");
    const std::string value = argv[++i];
    auto bad = [&](const char* what) { return absl::StrCat(flag, " ", value, ": ", what); };
    auto duration = [&](absl::Duration* d) {
      return absl::ParseDuration(value, d) && *d >= absl::ZeroDuration();
    };
    if (flag == "--listen") {
      if (!SplitHostPort(value, &o.listen_host, &o.listen_port)) return bad("want HOST:PORT");
      have_listen = true;
    } else if (flag == "--decision") {
      std::string host;
      uint16_t port;
      if (!SplitHostPort(value, &host, &port) || port == 0) return bad("want HOST:PORT");
      o.decision_address = value;
      have_decision = true;
    } else if (flag == "--metrics") {
      if (!SplitHostPort(value, &o.metrics_host, &o.metrics_port)) return bad("want HOST:PORT");
      have_metrics = true;
    } else if (flag == "--workers") {
      if (!absl::SimpleAtoi(value, &o.workers) || o.workers < 1 || o.workers > 256) {
        return bad("want a number from 1 to 256");
      }
    } else if (flag == "--decision-failure") {
      if (value == "deny") {
        o.decision_failure.kind = DecisionFailurePolicy::Kind::kDeny;
      } else if (absl::StartsWith(value, "fallback=")) {
        o.decision_failure.kind = DecisionFailurePolicy::Kind::kFallback;
        if (!SplitHostPort(value.substr(9), &o.decision_failure.fallback_host,
                           &o.decision_failure.fallback_port) ||
            o.decision_failure.fallback_port == 0) {
          return bad("want deny or fallback=HOST:PORT");
        }
      } else {
        return bad("want deny or fallback=HOST:PORT");
      }
    } else if (flag == "--access-log") {
      o.access_log = value;
    } else if (flag == "--access-log-flush-interval") {
      if (!duration(&o.access_log_flush_interval) ||
          o.access_log_flush_interval == absl::ZeroDuration()) {
        return bad("want a positive duration such as 1s");
      }
    } else if (flag == "--decision-deadline") {
      if (!duration(&o.decision_deadline) || o.decision_deadline == absl::ZeroDuration()) {
        return bad("want a positive duration such as 250ms");
      }
    } else if (flag == "--max-request-headers") {
      uint64_t n = 0;
      if (!ParseBytes(value, &n) || n < 1024 || n > 1024 * 1024) {
        return bad("want a size from 1k to 1m");
      }
      o.max_request_headers_bytes = static_cast<uint32_t>(n);
    } else if (flag == "--max-request-header-count") {
      if (!absl::SimpleAtoi(value, &o.max_request_header_count) || o.max_request_header_count < 1 ||
          o.max_request_header_count > 10000) {
        return bad("want a number from 1 to 10000");
      }
    } else if (flag == "--max-request-body") {
      if (!ParseBytes(value, &o.max_request_body_bytes)) return bad("want a size such as 16m");
    } else if (flag == "--retry-buffer") {
      if (!ParseBytes(value, &o.retry_buffer_bytes)) return bad("want a size such as 64k");
    } else if (flag == "--request-header-timeout") {
      if (!duration(&o.request_header_timeout)) return bad("want a duration such as 10s");
    } else if (flag == "--idle-timeout") {
      if (!duration(&o.idle_timeout)) return bad("want a duration such as 60s");
    } else if (flag == "--drain-timeout") {
      if (!duration(&o.drain_timeout)) return bad("want a duration such as 30s");
    } else if (flag == "--name") {
      o.gateway_name = value;
    } else if (flag == "--decisions") {
      if (value == "server") {
        o.decision_mode = sluice::v1::DECISION_MODE_SERVER;
      } else if (value == "local") {
        o.decision_mode = sluice::v1::DECISION_MODE_LOCAL;
      } else {
        return bad("want server or local");
      }
    } else if (flag == "--dns-refresh-rate") {
      if (!duration(&o.dns_refresh_rate) || o.dns_refresh_rate <= absl::ZeroDuration()) {
        return bad("want a positive duration such as 5s");
      }
    } else if (flag == "--max-table-age") {
      if (!duration(&o.max_table_age)) return bad("want a duration such as 30s or inf");
    } else {
      return absl::StrCat("unknown flag ", flag);
    }
  }
  if (!have_listen || !have_decision || !have_metrics) {
    return "--listen, --decision and --metrics are required";
  }
  return "";
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
  GatewayOptions options;
  if (std::string error = ParseFlags(argc, argv, options); !error.empty()) {
    if (error == "help") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "sluice-gateway: " << error << "\n" << kUsage;
    return 2;
  }

  sluice::DisableMutexDeadlockDetection();
  // SIGUSR1: reopen the access log (logrotate).
  const sigset_t signals = sluice::BlockTerminationSignals({SIGUSR1});

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
    auto channel = grpc::CreateCustomChannel(options.decision_address,
                                             grpc::InsecureChannelCredentials(), args);
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
    const std::string policy =
        fallback ? absl::StrCat("fallback=", options.decision_failure.fallback_host, ":",
                                options.decision_failure.fallback_port)
                 : "deny";
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

  std::printf("listening http=%s:%u metrics=%s:%u workers=%d decision=%s decisions=%s\n",
              options.listen_host.c_str(), http_port, options.metrics_host.c_str(), admin.port(),
              options.workers, options.decision_address.c_str(),
              options.decision_mode == sluice::v1::DECISION_MODE_LOCAL ? "local" : "server");
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
