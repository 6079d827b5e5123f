// sluice-server: wires the config store, the decision and admin services, health,
// reflection and metrics together, then waits for a signal while watching config files.

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "lib/common/log.h"
#include "lib/common/mutex_mode.h"
#include "lib/common/signals.h"
#include "lib/common/sizes.h"
#include "lib/config/duration.h"
#include "lib/routing/snapshot_printer.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/api/admin_service.h"
#include "server/api/decision_service.h"
#include "server/api/health_events.h"
#include "server/api/server_metrics.h"
#include "server/canary/canary_manager.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_ticker.h"
#include "server/health/health_tracker.h"
#include "server/store/config_store.h"

namespace {

constexpr char kUsage[] = R"(usage: sluice-server [options]

  --config PATH...        Istio YAML files or folders (repeatable); watched and reloaded
  --state-dir DIR         where applied configuration is kept across restarts
                          (default: none, applied configuration is lost on restart)
  --listen HOST:PORT      gRPC address for decisions and administration
                          (default 127.0.0.1:7070; port 0 picks a free port)
  --metrics HOST:PORT     Prometheus /metrics address (default 127.0.0.1:9464; port 0 too)
  --reload-interval DUR   how often config files are checked for changes (default 1s)
  --shutdown-grace DUR    on SIGTERM, how long RPCs in progress may finish; gateway streams
                          open longer are cancelled and reconnect elsewhere (default 1s)
  --prometheus-url URL    Prometheus server for canary metrics with `source: prometheus` or a
                          `query` (e.g. http://127.0.0.1:9090); default: none
  --max-apply-bytes SIZE  the largest apply (its YAML with the request around it) the server
                          takes (default 16m); a larger one is refused with RESOURCE_EXHAUSTED
                          before any of it is parsed
  --max-apply-resources N the most resources one apply may hold (default 10000); more are
                          refused with INVALID_ARGUMENT

On start it prints one line to stdout:
  listening grpc=HOST:PORT metrics=HOST:PORT version=N
)";

constexpr uint64_t kDefaultMaxApplyBytes = 16 << 20;

struct Flags {
  std::vector<std::string> config_paths;
  std::string state_dir;
  std::string listen = "127.0.0.1:7070";
  std::string metrics = "127.0.0.1:9464";
  absl::Duration reload_interval = absl::Seconds(1);
  absl::Duration shutdown_grace = absl::Seconds(1);
  std::string prometheus_url;
  uint64_t max_apply_bytes = kDefaultMaxApplyBytes;
  uint64_t max_apply_resources = 10000;
};

bool ParseFlags(int argc, char** argv, Flags& flags, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const size_t eq = arg.find('=');
    if (absl::StartsWith(arg, "--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      error = absl::StrCat(arg, " needs a value");
      return false;
    }
    if (arg == "--config") {
      flags.config_paths.push_back(value);
      // `--config a.yaml b.yaml`: following arguments that are not flags are paths too.
      while (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        flags.config_paths.push_back(argv[++i]);
      }
    } else if (arg == "--state-dir") {
      flags.state_dir = value;
    } else if (arg == "--listen") {
      flags.listen = value;
    } else if (arg == "--metrics") {
      flags.metrics = value;
    } else if (arg == "--reload-interval") {
      auto d = sluice::config::ParseDuration(value);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        error = absl::StrCat("--reload-interval: ", value, " is not a positive duration");
        return false;
      }
      flags.reload_interval = *d;
    } else if (arg == "--shutdown-grace") {
      auto d = sluice::config::ParseDuration(value);
      if (!d.ok()) {
        error = absl::StrCat("--shutdown-grace: ", value, " is not a duration");
        return false;
      }
      flags.shutdown_grace = *d;
    } else if (arg == "--prometheus-url") {
      flags.prometheus_url = value;
    } else if (arg == "--max-apply-bytes") {
      const std::optional<uint64_t> n = sluice::ParseBytes(value);
      if (!n || *n < 1024 || *n > uint64_t{1024} << 20) {
        error = absl::StrCat("--max-apply-bytes: ", value, " is not a size from 1k to 1024m");
        return false;
      }
      flags.max_apply_bytes = *n;
    } else if (arg == "--max-apply-resources") {
      if (!absl::SimpleAtoi(value, &flags.max_apply_resources) || flags.max_apply_resources == 0) {
        error = absl::StrCat("--max-apply-resources: ", value, " is not a positive number");
        return false;
      }
    } else {
      error = absl::StrCat("unknown flag ", arg);
      return false;
    }
  }
  return true;
}

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, flags, error)) {
    std::cerr << "sluice-server: " << error << "\n" << kUsage;
    return 2;
  }

  sluice::DisableMutexDeadlockDetection();
  // Signals are taken by this thread only; every thread started below inherits the mask.
  const sigset_t signals = sluice::BlockTerminationSignals();

  sluice::store::ConfigStore::Options options;
  options.config_paths = flags.config_paths;
  options.state_dir = flags.state_dir;
  options.max_apply_resources = flags.max_apply_resources;
  auto store = sluice::store::ConfigStore::Open(options);
  if (!store.ok()) {
    std::cerr << "sluice-server: " << store.status().message() << "\n";
    return 1;
  }
  if (flags.state_dir.empty()) {
    sluice::LogWarning("no --state-dir: configuration applied through the API is lost on restart");
  }

  auto registry = std::make_shared<prometheus::Registry>();
  sluice::api::ServerMetrics metrics(*registry);
  (*store)->OnSwap([&metrics](const sluice::routing::Snapshot& s) { metrics.OnSnapshot(s); });
  sluice::api::HealthEventSink health_events(*registry);
  // Every gateway gets the decision table of each version and each health change (local
  // mode decides from it; server mode keeps it for when this server cannot be reached).
  sluice::api::GatewayHub hub(
      [] { return absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch()); },
      [] { return absl::Now(); });
  sluice::api::HealthEventFanout health_fanout({&health_events, &hub});
  sluice::health::HealthTracker health([] { return absl::Now(); }, &health_fanout);
  (*store)->OnSwap([&health, &health_events](const sluice::routing::Snapshot& s) {
    health_events.DeclareClusters(s);
    health.OnSnapshot(s);
  });
  sluice::health::HealthTicker health_ticker(health);
  sluice::canary::TrafficRecorder traffic([] { return absl::Now(); });
  (*store)->OnSwap([&traffic](const sluice::routing::Snapshot& s) { traffic.OnSnapshot(s); });
  sluice::canary::CanaryManager::Options canary_options;
  canary_options.state_dir = flags.state_dir;
  canary_options.prometheus_url = flags.prometheus_url;
  auto canaries =
      sluice::canary::CanaryManager::Create(**store, traffic, *registry, canary_options);
  if (!canaries.ok()) {
    std::cerr << "sluice-server: --prometheus-url: " << canaries.status().message() << "\n";
    return 2;
  }
  (*store)->OnSwap([&canaries](const sluice::routing::Snapshot& s) { (*canaries)->OnSnapshot(s); });
  // One pass before serving: a canary restored at 0% (Failed) must not get its declared
  // share for the moment before its weights are applied.
  (*canaries)->RunOnce();

  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(flags.metrics);
  } catch (const std::exception& e) {
    std::cerr << "sluice-server: cannot serve metrics on " << flags.metrics << ": " << e.what()
              << "\n";
    return 1;
  }
  exposer->RegisterCollectable(registry);

  sluice::api::DecisionServiceImpl decision_service(**store, metrics, health, traffic, hub);
  (*store)->OnSwap(
      [&decision_service](const sluice::routing::Snapshot& s) { decision_service.OnSnapshot(s); });
  // After the health tracker's listener: the table carries the ejections it carried over.
  (*store)->OnSwap([&hub](const sluice::routing::Snapshot& s) { hub.OnSnapshot(s); });
  hub.Start();
  sluice::api::AdminServiceImpl admin_service(**store, metrics, health, **canaries, hub,
                                              flags.max_apply_bytes);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Decisions carry no deadlines or census data: the minimal filter stack saves CPU per
  // message (measured in bench/README.md).
  builder.AddChannelArgument(GRPC_ARG_MINIMAL_STACK, 1);
  // gRPC sets SO_REUSEPORT by default: a second server started on the same port would bind
  // too and silently take half of the gateways' connections. Fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // No SetMaxReceiveMessageSize: with the minimal stack gRPC (1.51) leaves out its
  // message-size filter, so no limit would apply, gRPC's 4 MiB default neither. The admin
  // service refuses any request over --max-apply-bytes (in practice an Apply) itself, on the
  // received bytes, before anything parses them (a server has no per-method limit, and the
  // decision stream keeps none: it is the gateways').
  int grpc_port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.RegisterService(&decision_service);
  builder.RegisterService(&admin_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    std::cerr << "sluice-server: cannot listen on " << flags.listen << "\n";
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus("", true);
  server->GetHealthCheckService()->SetServingStatus("sluice.v1.DecisionService", true);

  const auto ports = exposer->GetListeningPorts();
  const std::string grpc_address = absl::StrCat(HostOf(flags.listen), ":", grpc_port);
  const std::string metrics_address =
      absl::StrCat(HostOf(flags.metrics), ":", ports.empty() ? 0 : ports.front());
  const auto snapshot = (*store)->Current();
  sluice::LogInfo("configuration version ", snapshot->version(), ": ",
                  sluice::routing::FormatSummary(sluice::routing::Summarize(*snapshot)));
  sluice::LogInfo("decisions and administration on ", grpc_address, " (gRPC); metrics on http://",
                  metrics_address, "/metrics");
  (*canaries)->Start();
  std::printf("listening grpc=%s metrics=%s version=%llu\n", grpc_address.c_str(),
              metrics_address.c_str(), static_cast<unsigned long long>(snapshot->version()));
  std::fflush(stdout);

  const timespec tick = absl::ToTimespec(flags.reload_interval);
  while (true) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      sluice::LogInfo("signal ", sig, ": shutting down");
      break;
    }
    // Poll the files: simple, and it sees edits made through editors that replace files.
    if (auto change = (*store)->ReloadFilesIfChanged()) {
      if (change->applied) {
        metrics.applies_ok.Increment();
        sluice::LogInfo("configuration files changed: now version ", change->version,
                        change->changed.empty()
                            ? std::string(" (no resource created or replaced)")
                            : absl::StrCat(" (created or replaced: ",
                                           absl::StrJoin(change->changed, ", "), ")"));
      } else {
        metrics.apply_errors_file.Increment();
        sluice::LogError("configuration files changed but are not valid; version ", change->version,
                         " keeps serving:\n", change->diagnostics.ToString());
      }
    }
  }
  // Health turns NOT_SERVING first so load balancers stop sending; then RPCs in progress get
  // the grace period. Gateway streams never end on their own, so they are cancelled at the
  // deadline and their gateways reconnect.
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(absl::ToChronoTime(absl::Now() + flags.shutdown_grace));
  sluice::LogInfo("stopped");
  return 0;
}
