// sluice-server: wires the config store, the decision and admin services, health,
// reflection and metrics together, then waits for a signal while watching config files.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "lib/common/flags.h"
#include "lib/common/host_port.h"
#include "lib/common/log.h"
#include "lib/common/mutex_mode.h"
#include "lib/common/signals.h"
#include "lib/common/sizes.h"
#include "lib/routing/snapshot_printer.h"
#include "lib/security/tls.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/api/admin_service.h"
#include "server/api/decision_service.h"
#include "server/api/health_events.h"
#include "server/api/replica_health.h"
#include "server/api/replica_service.h"
#include "server/api/server_metrics.h"
#include "server/canary/canary_manager.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_ticker.h"
#include "server/health/health_tracker.h"
#include "server/security/access_control.h"
#include "server/security/audit_log.h"
#include "server/store/config_store.h"
#include "server/store/leader_election.h"

ABSL_FLAG(std::vector<std::string>, config, {},
          "Istio YAML files or folders, watched and reloaded. Several paths may follow one "
          "--config (--config a.yaml b.yaml), and --config may be repeated.");
ABSL_FLAG(std::string, state_dir, "",
          "Where configuration applied through the API (and canary progress) is kept across "
          "restarts; without it applied configuration is lost on restart.");
ABSL_FLAG(std::string, store, "",
          "etcd://HOST:PORT[,HOST:PORT...]/PREFIX: keep configuration applied through the API "
          "in etcd under PREFIX instead of --state-dir, shared by every sluice-server replica "
          "that names the same PREFIX (each follows the others' changes; concurrent changes "
          "cannot both win). Empty: --state-dir.");
ABSL_FLAG(absl::Duration, etcd_timeout, absl::Seconds(3),
          "With --store etcd://: how long a call to etcd may take; a change etcd does not "
          "confirm within it is refused and nothing is applied.");
ABSL_FLAG(absl::Duration, leader_ttl, absl::Seconds(5),
          "With --store etcd://: the lease of the replica that runs the canary controllers; "
          "when it dies another takes over within about this long.");
ABSL_FLAG(std::optional<sluice::HostPort>, advertise, std::nullopt,
          "With --store etcd://: HOST:PORT at which the other replicas reach this one's gRPC "
          "(followers forward their gateways' reports to the leader there). Default: --listen "
          "with the port it got; required when --listen is a wildcard address.");
ABSL_FLAG(std::string, replica_tls_server_name, "",
          "With --store and mutual TLS: the name the replicas' certificates carry, when other "
          "replicas are reached by an address it does not name (a pod IP).");
ABSL_FLAG(sluice::HostPort, listen, (sluice::HostPort{"127.0.0.1", 7070}),
          "HOST:PORT for gRPC, decisions and administration; port 0 picks a free port.");
ABSL_FLAG(sluice::HostPort, metrics, (sluice::HostPort{"127.0.0.1", 9464}),
          "HOST:PORT for Prometheus /metrics; port 0 picks a free port.");
ABSL_FLAG(absl::Duration, reload_interval, absl::Seconds(1),
          "How often the --config files are checked for changes.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(1),
          "On SIGTERM or SIGINT, how long RPCs in progress may finish; gateway streams open "
          "longer are cancelled and reconnect.");
ABSL_FLAG(std::string, prometheus_url, "",
          "Prometheus server (http://HOST:PORT[/prefix]) for canary metrics with `source: "
          "prometheus` or a `query`.");
ABSL_FLAG(sluice::ByteSize, max_apply_bytes, (sluice::ByteSize{16 << 20}),
          "The largest admin request (an apply's YAML with the request around it), from 1k to "
          "1024m; a larger one is refused with RESOURCE_EXHAUSTED before any of it is parsed.");
ABSL_FLAG(uint64_t, max_apply_resources, 10000,
          "The most resources one apply may hold; more are refused with INVALID_ARGUMENT.");
ABSL_FLAG(std::optional<sluice::HostPort>, health, std::nullopt,
          "HOST:PORT serving gRPC health checks (grpc.health.v1) in plaintext, for probes that "
          "cannot do mutual TLS (Kubernetes' grpc probes); every other call there is refused.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain this server presents (mutual TLS with --tls-key and --tls-ca).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that verifies the certificates of gateways and sluicectl.");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Seconds(10),
          "How often the --tls-* files are re-read; a rotated certificate is served to new "
          "connections from then on, without a restart.");
ABSL_FLAG(bool, plaintext, false,
          "Serve without TLS: anyone who reaches --listen can read decisions and, without "
          "--access-policy, change the configuration. For tests and demos on loopback.");
ABSL_FLAG(std::string, access_policy, "",
          "YAML file of identities and their roles (read, write, canary, gateway), re-read when "
          "it changes; required with mutual TLS.");
ABSL_FLAG(std::vector<std::string>, allow_identity, {},
          "A client certificate SAN (URI or DNS name; a trailing * matches a prefix) allowed to "
          "call at all; repeatable. Without it, every identity the CA verifies may.");
ABSL_FLAG(std::string, audit_log, "",
          "File (created 0600) that gets one JSON line per change and refused change: who, what, "
          "when, versions before and after; sluicectl history shows the recent ones.");

namespace {

constexpr char kUsage[] = R"(usage: sluice-server [flags]

The decision server: holds the configuration (Istio YAML from --config and what is applied
through the API), endpoint health and canary weights, and answers gateways and sluicectl.

On start it prints one line to stdout:
  listening grpc=HOST:PORT metrics=HOST:PORT version=N
)";

sluice::flags::Program FlagsProgram() {
  sluice::flags::Program program;
  program.name = "sluice-server";
  program.usage = kUsage;
  program.take_following = {&FLAGS_config};
  program.repeated = {&FLAGS_allow_identity};
  const auto finite_positive = [](absl::Duration d) {
    return d > absl::ZeroDuration() && d != absl::InfiniteDuration();
  };
  program.requirements = {
      sluice::flags::Require(FLAGS_reload_interval, "a positive duration such as 1s",
                             finite_positive),
      sluice::flags::Require(FLAGS_shutdown_grace, "a finite duration of 0s or more, such as 1s",
                             [](absl::Duration d) {
                               return d >= absl::ZeroDuration() && d != absl::InfiniteDuration();
                             }),
      sluice::flags::Require(
          FLAGS_max_apply_bytes, "a size from 1k to 1024m",
          [](sluice::ByteSize s) { return s.bytes >= 1024 && s.bytes <= uint64_t{1024} << 20; }),
      sluice::flags::Require(FLAGS_max_apply_resources, "a positive number",
                             [](uint64_t n) { return n > 0; }),
  };
  return program;
}

}  // namespace

int main(int argc, char** argv) {
  const sluice::flags::Program program = FlagsProgram();
  if (const std::vector<std::string> extra = sluice::flags::Parse(argc, argv, program);
      !extra.empty()) {
    sluice::flags::UsageError(program, absl::StrCat("unexpected argument \"", extra.front(),
                                                    "\" (paths go after --config)"));
  }
  const std::vector<std::string> config_paths = absl::GetFlag(FLAGS_config);
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  std::optional<sluice::store::EtcdLocation> etcd_location;
  if (const std::string store = absl::GetFlag(FLAGS_store); !store.empty()) {
    absl::StatusOr<sluice::store::EtcdLocation> parsed = sluice::store::ParseEtcdLocation(store);
    if (!parsed.ok()) {
      sluice::flags::UsageError(program, absl::StrCat("--store ", parsed.status().message()));
    }
    if (!state_dir.empty()) {
      sluice::flags::UsageError(program,
                                "--store and --state-dir exclude each other: applied "
                                "configuration lives in one place");
    }
    etcd_location = *std::move(parsed);
  }
  const sluice::HostPort listen = absl::GetFlag(FLAGS_listen);
  const std::optional<sluice::HostPort> advertise = absl::GetFlag(FLAGS_advertise);
  if (!etcd_location.has_value() &&
      (advertise.has_value() || !absl::GetFlag(FLAGS_replica_tls_server_name).empty())) {
    sluice::flags::UsageError(program,
                              "--advertise and --replica-tls-server-name are for replicas: they "
                              "need --store etcd://...");
  }
  if (etcd_location.has_value() && !advertise.has_value() &&
      (listen.host.empty() || listen.host == "0.0.0.0" || listen.host == "::")) {
    sluice::flags::UsageError(
        program, absl::StrCat("--listen ", listen.ToString(),
                              " is no address another replica can reach: give --advertise "
                              "HOST:PORT (in Kubernetes, the pod's IP)"));
  }
  const sluice::HostPort metrics_listen = absl::GetFlag(FLAGS_metrics);

  absl::StatusOr<sluice::security::Transport> transport = sluice::security::ChooseTransport(
      sluice::security::Side::kServer, absl::GetFlag(FLAGS_plaintext),
      {.cert = absl::GetFlag(FLAGS_tls_cert),
       .key = absl::GetFlag(FLAGS_tls_key),
       .ca = absl::GetFlag(FLAGS_tls_ca),
       .refresh = absl::GetFlag(FLAGS_tls_refresh_interval)});
  if (!transport.ok()) sluice::flags::UsageError(program, transport.status().message());
  if (transport->plaintext && (!absl::GetFlag(FLAGS_access_policy).empty() ||
                               !absl::GetFlag(FLAGS_allow_identity).empty())) {
    sluice::flags::UsageError(program,
                              "--access-policy and --allow-identity need mutual TLS: over "
                              "--plaintext no caller can be identified");
  }
  if (!transport->plaintext && absl::GetFlag(FLAGS_access_policy).empty()) {
    sluice::flags::UsageError(program,
                              "mutual TLS needs --access-policy (which identity holds which "
                              "role: read, write, canary, gateway); scripts/make-certs.sh writes "
                              "one");
  }
  auto access = sluice::security::AccessControl::Create(
      {.policy_path = absl::GetFlag(FLAGS_access_policy),
       .allowed_identities = absl::GetFlag(FLAGS_allow_identity),
       .require_tls = !transport->plaintext});
  if (!access.ok()) {
    std::cerr << "sluice-server: " << access.status().message() << "\n";
    return 1;
  }
  if (transport->plaintext) {
    sluice::LogWarning(
        "--plaintext: decisions and administration travel unencrypted and "
        "clients are not authenticated; use mutual TLS (--tls-cert, --tls-key, "
        "--tls-ca) outside tests and demos");
  }

  sluice::DisableMutexDeadlockDetection();
  // Signals are taken by this thread only; every thread started below inherits the mask.
  const sigset_t signals = sluice::BlockTerminationSignals();
  // gRPC starts threads of its own from here on: after the signal mask, which they inherit.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      sluice::security::ServerCredentials(*transport);
  if (!credentials.ok()) {
    std::cerr << "sluice-server: " << credentials.status().message() << "\n";
    return 1;
  }

  sluice::store::ConfigStore::Options options;
  options.config_paths = config_paths;
  options.state_dir = state_dir;
  options.max_apply_resources = absl::GetFlag(FLAGS_max_apply_resources);
  std::shared_ptr<sluice::store::EtcdClient> etcd;
  if (etcd_location.has_value()) {
    auto created = sluice::store::EtcdClient::Create(
        *etcd_location, {.timeout = absl::GetFlag(FLAGS_etcd_timeout)});
    if (!created.ok()) {
      std::cerr << "sluice-server: --store " << created.status().message() << "\n";
      return 1;
    }
    etcd = *std::move(created);
    options.etcd = etcd;
  }
  auto store = sluice::store::ConfigStore::Open(options);
  if (!store.ok()) {
    std::cerr << "sluice-server: " << store.status().message() << "\n";
    return 1;
  }
  if (etcd_location.has_value()) {
    sluice::LogInfo("configuration store: ", etcd_location->ToString(), " at revision ",
                    (*store)->etcd_revision());
  } else if (state_dir.empty()) {
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
  // With etcd the election starts once this server's address is known (it is what the
  // election key says); until then this replica neither leads nor knows who does.
  std::unique_ptr<sluice::store::LeaderElection> election;
  std::atomic<sluice::store::LeaderElection*> elected{nullptr};
  auto leads = [&elected] {
    const sluice::store::LeaderElection* e = elected.load();
    return e != nullptr && e->IsLeader();
  };
  auto leader = [&elected] {
    const sluice::store::LeaderElection* e = elected.load();
    return e != nullptr ? e->leader() : std::string();
  };
  auto identity = [&elected] {
    const sluice::store::LeaderElection* e = elected.load();
    return e != nullptr ? e->identity() : std::string();
  };
  // One outlier detector per cluster across replicas, the leader's: followers forward their
  // gateways' reports to it and take its ejections from etcd (replica_health.h).
  std::unique_ptr<sluice::api::ReportForwarder> forwarder;
  std::unique_ptr<sluice::api::ReplicaHealth> replica_health;
  if (etcd != nullptr) {
    sluice::security::Transport replica_transport = *transport;
    replica_transport.files.server_name = absl::GetFlag(FLAGS_replica_tls_server_name);
    // The election key holds "ADDRESS (pid N, started T)".
    auto address_of = [](const std::string& who) { return who.substr(0, who.find(' ')); };
    forwarder = std::make_unique<sluice::api::ReportForwarder>(
        sluice::api::ReportForwarder::Options{
            .replica = identity,
            .leader_address = [leader, address_of] { return address_of(leader()); },
            .own_address = [identity, address_of] { return address_of(identity()); },
            .transport = replica_transport},
        *registry);
    auto started = sluice::api::ReplicaHealth::Start(
        *etcd, health, forwarder.get(),
        {.replica = identity,
         .leader_key = etcd->location().prefix + "leader",
         .fence = [&elected]() -> int64_t {
           const sluice::store::LeaderElection* e = elected.load();
           return e != nullptr ? e->fence() : 0;
         }});
    if (!started.ok()) {
      std::cerr << "sluice-server: --store: reading the shared ejections: "
                << started.status().message() << "\n";
      (*store)->StopFollowing();  // before the listeners go away
      return 1;
    }
    replica_health = *std::move(started);
    health_fanout.Add(replica_health.get());
  }
  // On every way out: the health ticker outlives the replicas' listener.
  absl::Cleanup unlisten = [&] { health_fanout.Remove(replica_health.get()); };
  sluice::canary::CanaryManager::Options canary_options;
  canary_options.state_dir = state_dir;
  // With etcd: one replica, elected, runs the canary controllers. The election is declared
  // before the canary manager: it outlives the manager's thread.
  if (etcd != nullptr) {
    const std::string leader_key = etcd->location().prefix + "leader";
    const std::string state_key = etcd->location().prefix + "canary-state";
    canary_options.shared = sluice::canary::CanaryManager::Options::Shared{
        .is_leader = leads,
        .leader = leader,
        .load = [etcd, state_key]() -> absl::StatusOr<std::string> {
          absl::StatusOr<sluice::store::EtcdClient::Range> got = etcd->Get(state_key);
          if (!got.ok()) return got.status();
          return got->kvs.empty() ? std::string() : got->kvs[0].value;
        },
        // Fenced: written only while the election key is still the one this replica created.
        .save = [etcd, state_key, leader_key, &elected](const std::string& text) -> absl::Status {
          const sluice::store::LeaderElection* e = elected.load();
          const int64_t fence = e != nullptr ? e->fence() : 0;
          if (fence == 0) return absl::AbortedError("this replica no longer leads");
          absl::StatusOr<sluice::store::EtcdClient::TxnResult> txn = etcd->CompareAndWrite(
              leader_key, fence, {sluice::store::EtcdWrite::Put(state_key, text)});
          if (!txn.ok()) return txn.status();
          if (!txn->succeeded) return absl::AbortedError("another replica leads now");
          return absl::OkStatus();
        }};
  }
  canary_options.prometheus_url = absl::GetFlag(FLAGS_prometheus_url);
  auto canaries =
      sluice::canary::CanaryManager::Create(**store, traffic, *registry, canary_options);
  if (!canaries.ok()) {
    std::cerr << "sluice-server: --prometheus-url: " << canaries.status().message() << "\n";
    (*store)->StopFollowing();  // before the listeners go away
    return 2;
  }
  (*store)->OnSwap([&canaries](const sluice::routing::Snapshot& s) { (*canaries)->OnSnapshot(s); });
  // One pass before serving: a canary restored at 0% (Failed) must not get its declared
  // share for the moment before its weights are applied.
  (*canaries)->RunOnce();

  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(metrics_listen.ToString());
  } catch (const std::exception& e) {
    std::cerr << "sluice-server: cannot serve metrics on " << metrics_listen.ToString() << ": "
              << e.what() << "\n";
    if (absl::StrContains(metrics_listen.host, ':')) {
      // Checked with civetweb's mg_check_feature(8): Debian 12 builds it without USE_IPV6.
      std::cerr << "sluice-server: the metrics server (civetweb, as Debian builds it) has no "
                   "IPv6; give --metrics an IPv4 address or a host name\n";
    }
    (*store)->StopFollowing();  // before the listeners go away
    return 1;
  }
  exposer->RegisterCollectable(registry);

  auto audit =
      sluice::security::AuditLog::Open({.path = absl::GetFlag(FLAGS_audit_log)}, *registry);
  if (!audit.ok()) {
    std::cerr << "sluice-server: " << audit.status().message() << "\n";
    (*store)->StopFollowing();  // before the listeners go away
    return 1;
  }
  sluice::api::DecisionServiceImpl decision_service(**store, metrics, health, traffic, hub);
  decision_service.SetAccessControl(access->get());
  decision_service.SetForwarder(forwarder.get());
  // Forwarded reports are taken once this replica's detectors count (a new leader reads the
  // shared ejections first); until then the follower keeps them as dropped.
  sluice::api::ReplicaServiceImpl replica_service(
      health, traffic, [&leads, &health] { return leads() && health.detecting(); });
  replica_service.SetAccessControl(access->get());
  (*store)->OnSwap(
      [&decision_service](const sluice::routing::Snapshot& s) { decision_service.OnSnapshot(s); });
  // After the health tracker's listener: the table carries the ejections it carried over.
  (*store)->OnSwap([&hub](const sluice::routing::Snapshot& s) { hub.OnSnapshot(s); });
  hub.Start();
  sluice::api::AdminServiceImpl admin_service(**store, metrics, health, **canaries, hub,
                                              absl::GetFlag(FLAGS_max_apply_bytes).bytes);
  admin_service.SetSecurity(access->get(), audit->get());
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
  builder.AddListeningPort(listen.ToString(), *credentials, &grpc_port);
  int health_port = 0;
  const std::optional<sluice::HostPort> health_listen = absl::GetFlag(FLAGS_health);
  if (health_listen) {
    builder.AddListeningPort(health_listen->ToString(), grpc::InsecureServerCredentials(),
                             &health_port);
  }
  builder.RegisterService(&decision_service);
  builder.RegisterService(&admin_service);
  if (etcd != nullptr) builder.RegisterService(&replica_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0 || (health_listen && health_port == 0)) {
    std::cerr << "sluice-server: cannot listen on " << listen.ToString()
              << (health_listen ? absl::StrCat(" and ", health_listen->ToString()) : "") << "\n";
    (*store)->StopFollowing();  // before the listeners go away
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus("", true);
  server->GetHealthCheckService()->SetServingStatus("sluice.v1.DecisionService", true);

  const auto ports = exposer->GetListeningPorts();
  const std::string grpc_address =
      sluice::HostPort{listen.host, static_cast<uint16_t>(grpc_port)}.ToString();
  const std::string metrics_address =
      sluice::HostPort{metrics_listen.host,
                       static_cast<uint16_t>(ports.empty() ? 0 : ports.front())}
          .ToString();
  const auto snapshot = (*store)->Current();
  sluice::LogInfo("configuration version ", snapshot->version(), ": ",
                  sluice::routing::FormatSummary(sluice::routing::Summarize(*snapshot)));
  sluice::LogInfo("decisions and administration on ", grpc_address, " (gRPC); metrics on http://",
                  metrics_address, "/metrics");
  if (etcd != nullptr) {
    election = std::make_unique<sluice::store::LeaderElection>(
        *etcd,
        sluice::store::LeaderElection::Options{
            .key = etcd->location().prefix + "leader",
            // The start time tells a restarted container (same address, pid 1) from
            // the one whose key may still be there.
            .identity = absl::StrCat(
                advertise ? advertise->ToString() : grpc_address, " (pid ", getpid(), ", started ",
                absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::UTCTimeZone()), ")"),
            .ttl = absl::GetFlag(FLAGS_leader_ttl)});
    elected.store(election.get());
  }
  (*canaries)->Start();
  // health=HOST:PORT only with --health, after the fields scripts already read.
  const std::string health_field =
      health_listen ? absl::StrCat(" health=", sluice::HostPort{health_listen->host,
                                                                static_cast<uint16_t>(health_port)}
                                                   .ToString())
                    : "";
  std::printf("listening grpc=%s metrics=%s version=%llu%s\n", grpc_address.c_str(),
              metrics_address.c_str(), static_cast<unsigned long long>(snapshot->version()),
              health_field.c_str());
  std::fflush(stdout);

  const timespec tick = absl::ToTimespec(absl::GetFlag(FLAGS_reload_interval));
  while (true) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      sluice::LogInfo("signal ", sig, ": shutting down");
      break;
    }
    if (std::optional<absl::Status> policy = (*access)->ReloadIfChanged()) {
      if (policy->ok()) {
        sluice::LogInfo("--access-policy ", absl::GetFlag(FLAGS_access_policy), " re-read");
      } else {
        sluice::LogError(policy->message());
      }
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
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_shutdown_grace)));
  // No snapshot may be swapped in from here on: the store's listeners (the decision service,
  // the hub) go away as main returns, before the store and the canary manager would.
  (*canaries)->Stop();
  (*store)->StopFollowing();
  std::move(unlisten).Invoke();
  decision_service.SetForwarder(nullptr);
  replica_health.reset();
  forwarder.reset();
  sluice::LogInfo("stopped");
  return 0;
}
