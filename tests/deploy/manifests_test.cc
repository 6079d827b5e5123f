// Checks the Kubernetes manifests in deploy/kubernetes/ and deploy/kubernetes-replicas/
// against each other and against sluice itself: what `kubectl apply` would accept but leave
// broken (a Service selecting no pods, a probe on the wrong port, a ConfigMap sluice rejects,
// a grace period shorter than the drain, an etcd address sluice-server refuses) fails here.

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "lib/common/host_port.h"
#include "server/config/loader.h"
#include "server/security/access_policy.h"
#include "server/store/etcd_client.h"
#include "yaml-cpp/yaml.h"

namespace {

namespace fs = std::filesystem;

// One server with a state volume; the ManifestsTest tests check it.
const fs::path kKubernetesDir = fs::path(SLUICE_SOURCE_DIR) / "deploy" / "kubernetes";
// Three servers on a three-member etcd; the ReplicasManifestsTest tests check it. The helpers
// below take the folder, deploy/kubernetes by default.
const fs::path kReplicasDir = fs::path(SLUICE_SOURCE_DIR) / "deploy" / "kubernetes-replicas";

// root[a][b][0]... for the dotted path "a.b.0", or a null node when a step is missing
// (yaml-cpp throws when indexing a missing key's node again, and assigning Nodes would
// change the tree).
YAML::Node At(const YAML::Node& n, absl::string_view path) {
  if (path.empty()) return n;
  if (!n.IsDefined()) return YAML::Node();
  const size_t dot = path.find('.');
  const std::string step(path.substr(0, dot));
  const absl::string_view rest = dot == absl::string_view::npos ? "" : path.substr(dot + 1);
  int index = 0;
  if (n.IsSequence() && absl::SimpleAtoi(step, &index)) {
    if (index < 0 || static_cast<size_t>(index) >= n.size()) return YAML::Node();
    return At(n[index], rest);
  }
  if (n.IsMap()) {
    const YAML::Node child = n[step];
    if (!child.IsDefined()) return YAML::Node();
    return At(child, rest);
  }
  return YAML::Node();
}

bool Has(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

std::string Scalar(const YAML::Node& n) {
  return n.IsDefined() && n.IsScalar() ? n.as<std::string>() : "";
}

std::string Scalar(const YAML::Node& n, absl::string_view path) { return Scalar(At(n, path)); }

// An integer scalar, or `fallback`.
int Int(const YAML::Node& n, int fallback = -1) {
  int value = 0;
  return absl::SimpleAtoi(Scalar(n), &value) ? value : fallback;
}

struct Doc {
  std::string file;  // relative to its folder
  YAML::Node node;

  std::string Str(absl::string_view path) const { return Scalar(node, path); }
  std::string Kind() const { return Str("kind"); }
  std::string Name() const { return Str("metadata.name"); }
  std::string Namespace() const { return Str("metadata.namespace"); }
  std::string Where() const { return absl::StrCat(file, ": ", Kind(), " ", Name()); }
};

using Labels = std::map<std::string, std::string>;

Labels LabelsOf(const YAML::Node& map) {
  Labels out;
  if (!map.IsDefined() || !map.IsMap()) return out;
  for (const auto& kv : map) out[kv.first.as<std::string>()] = Scalar(kv.second);
  return out;
}

// A selector selects when it is not empty and every pair is among the labels.
bool Selects(const Labels& selector, const Labels& labels) {
  if (selector.empty()) return false;
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

std::vector<std::string> YamlFiles(const fs::path& dir = kKubernetesDir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      files.push_back(fs::relative(entry.path(), dir).string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Every non-empty document of every file in `dir`, the kustomization included.
const std::vector<Doc>& AllDocs(const fs::path& dir = kKubernetesDir) {
  static auto* cache = new std::map<std::string, std::vector<Doc>>();
  if (auto it = cache->find(dir.string()); it != cache->end()) return it->second;
  std::vector<Doc> docs;
  for (const std::string& file : YamlFiles(dir)) {
    for (const YAML::Node& node : YAML::LoadAllFromFile((dir / file).string())) {
      if (node.IsNull()) continue;  // comments before a leading `---`
      docs.push_back({file, node});
    }
  }
  return cache->emplace(dir.string(), std::move(docs)).first->second;
}

// The Kubernetes objects: every document but the kustomization.
std::vector<const Doc*> Objects(const std::string& kind = "",
                                const fs::path& dir = kKubernetesDir) {
  std::vector<const Doc*> out;
  for (const Doc& d : AllDocs(dir)) {
    if (d.Kind() == "Kustomization") continue;
    if (kind.empty() || d.Kind() == kind) out.push_back(&d);
  }
  return out;
}

const Doc* Find(const std::string& kind, const std::string& name, const std::string& ns,
                const fs::path& dir = kKubernetesDir) {
  for (const Doc* d : Objects(kind, dir)) {
    if (d->Name() == name && d->Namespace() == ns) return d;
  }
  return nullptr;
}

// A container's arguments: command after the program, then args.
std::vector<std::string> Args(const YAML::Node& container) {
  std::vector<std::string> out;
  const YAML::Node command = At(container, "command");
  if (command.IsSequence()) {
    for (size_t i = 1; i < command.size(); ++i) out.push_back(Scalar(command[i]));
  }
  for (const auto& a : At(container, "args")) out.push_back(Scalar(a));
  return out;
}

// The values of `--flag value` and `--flag=value`.
std::vector<std::string> FlagValues(const YAML::Node& container, const std::string& flag) {
  std::vector<std::string> out;
  const std::vector<std::string> args = Args(container);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      if (i + 1 < args.size()) out.push_back(args[i + 1]);
      // sluice-server's --config takes several paths: those that follow and are no flags.
      if (flag == "--config") {
        for (size_t j = i + 2; j < args.size() && !absl::StartsWith(args[j], "--"); ++j) {
          out.push_back(args[j]);
        }
      }
    } else if (absl::StartsWith(args[i], flag + "=")) {
      out.push_back(args[i].substr(flag.size() + 1));
    }
  }
  return out;
}

std::optional<std::string> Flag(const YAML::Node& container, const std::string& flag) {
  std::vector<std::string> values = FlagValues(container, flag);
  if (values.empty()) return std::nullopt;
  return values.back();
}

// "0.0.0.0:7070" -> 7070; -1 when there is no valid port.
int PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return -1;
  return port;
}

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// The program a container runs: the base name of command[0] (or of args[0] without one).
std::string Program(const YAML::Node& container) {
  std::string first = Scalar(container, "command.0");
  if (first.empty()) first = Scalar(container, "args.0");
  return fs::path(first).filename().string();
}

struct Workload {
  const Doc* deployment;  // the Deployment, or the StatefulSet
  YAML::Node pod;         // spec.template
  YAML::Node container;   // one of its containers
};

std::vector<Workload> Workloads(const fs::path& dir = kKubernetesDir) {
  std::vector<Workload> out;
  for (const char* kind : {"Deployment", "StatefulSet"}) {
    for (const Doc* d : Objects(kind, dir)) {
      const YAML::Node pod = At(d->node, "spec.template");
      for (const auto& c : At(pod, "spec.containers")) out.push_back({d, pod, c});
    }
  }
  return out;
}

std::optional<Workload> WorkloadRunning(const std::string& program,
                                        const fs::path& dir = kKubernetesDir) {
  for (const Workload& w : Workloads(dir)) {
    if (Program(w.container) == program) return w;
  }
  return std::nullopt;
}

// The containerPort a probe or Service names, by number or by name; -1 when there is none.
int ResolvePort(const YAML::Node& container, const YAML::Node& port) {
  const std::string text = Scalar(port);
  int number = -1;
  const bool numeric = absl::SimpleAtoi(text, &number);
  for (const auto& p : At(container, "ports")) {
    const int container_port = Int(At(p, "containerPort"));
    if (numeric ? container_port == number : Scalar(p, "name") == text) return container_port;
  }
  return -1;
}

std::set<int> ContainerPorts(const YAML::Node& container) {
  std::set<int> out;
  for (const auto& p : At(container, "ports")) out.insert(Int(At(p, "containerPort")));
  return out;
}

// The Deployments and StatefulSets (one container each here) whose pods `selector` selects
// in namespace `ns`.
std::vector<Workload> Selected(const Labels& selector, const std::string& ns,
                               const fs::path& dir = kKubernetesDir) {
  std::vector<Workload> out;
  for (const Workload& w : Workloads(dir)) {
    if (w.deployment->Namespace() == ns &&
        Selects(selector, LabelsOf(At(w.pod, "metadata.labels")))) {
      out.push_back(w);
    }
  }
  return out;
}

absl::Duration DurationFlag(const YAML::Node& container, const std::string& flag,
                            absl::Duration fallback) {
  const std::optional<std::string> value = Flag(container, flag);
  if (!value) return fallback;
  absl::Duration d;
  EXPECT_TRUE(absl::ParseDuration(*value, &d)) << flag << " " << *value;
  return d;
}

TEST(ManifestsTest, FilesExistAndParse) {
  ASSERT_TRUE(fs::is_directory(kKubernetesDir)) << kKubernetesDir;
  EXPECT_FALSE(YamlFiles().empty());
  EXPECT_FALSE(Objects().empty());
  EXPECT_TRUE(WorkloadRunning("sluice-server")) << "no Deployment runs sluice-server";
  EXPECT_TRUE(WorkloadRunning("sluice-gateway")) << "no Deployment runs sluice-gateway";
}

TEST(ManifestsTest, EveryDocumentHasApiVersionKindAndName) {
  for (const Doc& d : AllDocs()) {
    EXPECT_TRUE(d.node.IsMap()) << d.file;
    EXPECT_FALSE(d.Str("apiVersion").empty()) << d.file << ": a document has no apiVersion";
    EXPECT_FALSE(d.Kind().empty()) << d.file << ": a document has no kind";
    if (d.Kind() == "Kustomization") continue;  // a kustomize file, not an object
    EXPECT_FALSE(d.Name().empty()) << d.file << ": " << d.Kind() << " has no metadata.name";
  }
}

// One namespace for everything, the kustomization's: the gateway's --decision address and
// the ServiceMonitors' namespaceSelector name it.
TEST(ManifestsTest, NamespacedObjectsShareTheKustomizationNamespace) {
  std::string kustomize_namespace;
  for (const Doc& d : AllDocs()) {
    if (d.Kind() == "Kustomization") kustomize_namespace = d.Str("namespace");
  }
  ASSERT_FALSE(kustomize_namespace.empty()) << "kustomization.yaml sets no namespace";
  for (const Doc* d : Objects()) {
    if (d->Kind() == "Namespace") {
      EXPECT_EQ(d->Name(), kustomize_namespace) << d->Where();
    } else {
      EXPECT_EQ(d->Namespace(), kustomize_namespace) << d->Where();
    }
  }
}

// kubectl apply -k must not fail on a cluster without prometheus-operator: every file is
// listed unless all its objects come from monitoring.coreos.com (those are applied by hand).
TEST(ManifestsTest, KustomizationListsEveryPlainFile) {
  std::set<std::string> listed;
  for (const Doc& d : AllDocs()) {
    if (d.Kind() != "Kustomization") continue;
    for (const auto& r : At(d.node, "resources")) {
      const std::string resource = Scalar(r);
      listed.insert(resource);
      EXPECT_TRUE(fs::is_regular_file(kKubernetesDir / resource))
          << "kustomization.yaml lists " << resource << ", which does not exist";
    }
  }
  ASSERT_FALSE(listed.empty()) << "no kustomization.yaml with resources";
  for (const std::string& file : YamlFiles()) {
    if (file == "kustomization.yaml" || listed.count(file)) continue;
    for (const Doc* d : Objects()) {
      if (d->file != file) continue;
      EXPECT_TRUE(absl::StartsWith(d->Str("apiVersion"), "monitoring.coreos.com/"))
          << d->Where() << ": its file is not in kustomization.yaml";
    }
  }
}

TEST(ManifestsTest, ContainersHaveResourcesProbesAndSecurityContext) {
  ASSERT_FALSE(Workloads().empty());
  for (const Workload& w : Workloads()) {
    const YAML::Node& c = w.container;
    const std::string where = absl::StrCat(w.deployment->Where(), " container ", Scalar(c, "name"));
    for (const char* kind : {"requests", "limits"}) {
      for (const char* resource : {"cpu", "memory"}) {
        EXPECT_FALSE(Scalar(c, absl::StrCat("resources.", kind, ".", resource)).empty())
            << where << ": no resources." << kind << "." << resource;
      }
    }
    EXPECT_TRUE(At(c, "readinessProbe").IsMap()) << where << ": no readinessProbe";
    EXPECT_TRUE(At(c, "livenessProbe").IsMap()) << where << ": no livenessProbe";
    EXPECT_FALSE(Scalar(c, "image").empty()) << where << ": no image";

    EXPECT_EQ(Scalar(c, "securityContext.runAsNonRoot"), "true") << where;
    EXPECT_EQ(Scalar(c, "securityContext.readOnlyRootFilesystem"), "true") << where;
    EXPECT_EQ(Scalar(c, "securityContext.allowPrivilegeEscalation"), "false") << where;
    bool drops_all = false;
    for (const auto& cap : At(c, "securityContext.capabilities.drop")) {
      drops_all |= Scalar(cap) == "ALL";
    }
    EXPECT_TRUE(drops_all) << where << ": securityContext.capabilities.drop lacks ALL";
    // The container's seccomp profile, or else the pod's.
    std::string seccomp = Scalar(c, "securityContext.seccompProfile.type");
    if (seccomp.empty()) seccomp = Scalar(w.pod, "spec.securityContext.seccompProfile.type");
    EXPECT_EQ(seccomp, "RuntimeDefault") << where;
  }
}

TEST(ManifestsTest, DeploymentSelectorsMatchTheirPods) {
  for (const Doc* d : Objects("Deployment")) {
    EXPECT_TRUE(Selects(LabelsOf(At(d->node, "spec.selector.matchLabels")),
                        LabelsOf(At(d->node, "spec.template.metadata.labels"))))
        << d->Where() << ": selector.matchLabels does not select the pod template";
  }
}

// Every --listen/--metrics port is a containerPort and every containerPort is one of them;
// they listen on all addresses (127.0.0.1 would be unreachable for Services and probes).
TEST(ManifestsTest, ArgumentPortsAgreeWithContainerPorts) {
  for (const Workload& w : Workloads()) {
    const std::string where = w.deployment->Where();
    std::set<int> from_args;
    for (const char* flag : {"--listen", "--metrics", "--health"}) {
      const std::optional<std::string> address = Flag(w.container, flag);
      if (!address && std::string(flag) == "--health") continue;  // the server's only
      if (!address) {
        ADD_FAILURE() << where << ": no " << flag;
        continue;
      }
      const int port = PortOf(*address);
      EXPECT_GT(port, 0) << where << ": " << flag << " " << *address;
      EXPECT_TRUE(ContainerPorts(w.container).count(port))
          << where << ": " << flag << " " << *address << " is not a containerPort";
      const std::string host = HostOf(*address);
      EXPECT_TRUE(host == "0.0.0.0" || host == "[::]")
          << where << ": " << flag << " " << *address << " is not reachable from outside the pod";
      from_args.insert(port);
    }
    for (int port : ContainerPorts(w.container)) {
      EXPECT_TRUE(from_args.count(port))
          << where << ": containerPort " << port << " is in no --listen, --metrics or --health";
    }
  }
}

TEST(ManifestsTest, ServerIsOneReplicaWithGrpcProbesOnItsHealthPort) {
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  ASSERT_TRUE(server);
  const YAML::Node& d = server->deployment->node;
  EXPECT_EQ(Scalar(d, "spec.replicas"), "1") << "no leader election: one server only";
  EXPECT_EQ(Scalar(d, "spec.strategy.type"), "Recreate") << "one writer of the state volume";

  // The kubelet's grpc probes speak no TLS: they go to the plaintext --health port.
  const int port = PortOf(Flag(server->container, "--health").value_or(""));
  ASSERT_GT(port, 0) << "sluice-server has no --health port for its probes";
  const YAML::Node readiness = At(server->container, "readinessProbe.grpc");
  const YAML::Node liveness = At(server->container, "livenessProbe.grpc");
  ASSERT_TRUE(readiness.IsMap()) << "readinessProbe is not a grpc probe";
  ASSERT_TRUE(liveness.IsMap()) << "livenessProbe is not a grpc probe";
  // A grpc probe's port is a number (Kubernetes takes no names there): --health's.
  EXPECT_EQ(Int(At(readiness, "port")), port);
  EXPECT_EQ(Int(At(liveness, "port")), port);
  EXPECT_EQ(Scalar(readiness, "service"), "sluice.v1.DecisionService");
  // Liveness asks for the server as a whole ("") or for the decision service.
  const std::string liveness_service = Scalar(liveness, "service");
  EXPECT_TRUE(liveness_service.empty() || liveness_service == "sluice.v1.DecisionService")
      << liveness_service;
}

TEST(ManifestsTest, GatewayReadinessIsHealthzAndLivenessDoesNotDependOnTheServer) {
  const std::optional<Workload> gateway = WorkloadRunning("sluice-gateway");
  ASSERT_TRUE(gateway);
  const YAML::Node& d = gateway->deployment->node;
  EXPECT_GE(Int(At(d, "spec.replicas"), 1), 2);
  EXPECT_EQ(Scalar(d, "spec.strategy.type"), "RollingUpdate");

  const int metrics_port = PortOf(Flag(gateway->container, "--metrics").value_or(""));
  const YAML::Node readiness = At(gateway->container, "readinessProbe.httpGet");
  ASSERT_TRUE(readiness.IsMap()) << "readinessProbe is not httpGet";
  EXPECT_EQ(Scalar(readiness, "path"), "/healthz");
  EXPECT_EQ(ResolvePort(gateway->container, At(readiness, "port")), metrics_port);

  // /healthz is 503 while sluice-server is unreachable: a liveness probe on it would restart
  // every gateway whenever the server restarts.
  const YAML::Node liveness = At(gateway->container, "livenessProbe");
  EXPECT_NE(Scalar(liveness, "httpGet.path"), "/healthz");
  const YAML::Node liveness_port = Has(At(liveness, "tcpSocket")) ? At(liveness, "tcpSocket.port")
                                                                  : At(liveness, "httpGet.port");
  EXPECT_GT(ResolvePort(gateway->container, liveness_port), 0)
      << "the liveness probe's port is no containerPort";
}

TEST(ManifestsTest, ServicesSelectOneDeploymentAndTargetItsPorts) {
  ASSERT_FALSE(Objects("Service").empty());
  for (const Doc* svc : Objects("Service")) {
    const std::vector<Workload> selected =
        Selected(LabelsOf(At(svc->node, "spec.selector")), svc->Namespace());
    ASSERT_EQ(selected.size(), 1u)
        << svc->Where() << " selects the pods of " << selected.size() << " Deployments";
    for (const auto& p : At(svc->node, "spec.ports")) {
      const YAML::Node target = Has(At(p, "targetPort")) ? At(p, "targetPort") : At(p, "port");
      EXPECT_GT(ResolvePort(selected[0].container, target), 0)
          << svc->Where() << ": port " << Scalar(p, "name") << " targets " << Scalar(target)
          << ", which " << selected[0].deployment->Name() << " does not declare";
    }
  }
}

// maxUnavailable/minAvailable as a number of pods out of `total` (percentages round up, as
// Kubernetes rounds them).
int IntOrPercent(const YAML::Node& n, int total) {
  const std::string scalar = Scalar(n);
  absl::string_view text = scalar;
  const bool percent = absl::ConsumeSuffix(&text, "%");
  int value = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &value)) << scalar;
  return percent ? (value * total + 99) / 100 : value;
}

// Each budget selects one Deployment's pods, one selects the server, and none forbids every
// eviction: with one server replica, maxUnavailable: 0 would block node drains for good.
TEST(ManifestsTest, DisruptionBudgetsSelectPodsAndAllowDrains) {
  bool server_covered = false;
  for (const Doc* pdb : Objects("PodDisruptionBudget")) {
    const std::vector<Workload> selected =
        Selected(LabelsOf(At(pdb->node, "spec.selector.matchLabels")), pdb->Namespace());
    ASSERT_EQ(selected.size(), 1u)
        << pdb->Where() << " selects the pods of " << selected.size() << " Deployments";
    if (Program(selected[0].container) == "sluice-server") server_covered = true;
    const int replicas = Int(At(selected[0].deployment->node, "spec.replicas"), 1);
    const YAML::Node max_unavailable = At(pdb->node, "spec.maxUnavailable");
    const YAML::Node min_available = At(pdb->node, "spec.minAvailable");
    if (Has(max_unavailable)) {
      EXPECT_GE(IntOrPercent(max_unavailable, replicas), 1)
          << pdb->Where() << " allows no eviction: node drains would block";
    }
    if (Has(min_available)) {
      EXPECT_LT(IntOrPercent(min_available, replicas), replicas)
          << pdb->Where() << " allows no eviction: node drains would block";
    }
  }
  EXPECT_TRUE(server_covered) << "no PodDisruptionBudget selects the sluice-server pods";
}

// --decision is SERVICE.NAMESPACE.svc[.cluster.local]:PORT of a Service that selects the
// server and sends PORT to its --listen port.
TEST(ManifestsTest, GatewayDecisionAddressIsTheServerService) {
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  const std::optional<Workload> gateway = WorkloadRunning("sluice-gateway");
  ASSERT_TRUE(server && gateway);
  const std::optional<std::string> decision = Flag(gateway->container, "--decision");
  ASSERT_TRUE(decision) << "the gateway has no --decision";
  const std::string address_host = HostOf(*decision);
  absl::string_view host = address_host;
  absl::ConsumeSuffix(&host, ".cluster.local");
  const std::vector<std::string> parts = absl::StrSplit(host, '.');
  ASSERT_EQ(parts.size(), 3u) << *decision << ": want SERVICE.NAMESPACE.svc:PORT";
  EXPECT_EQ(parts[2], "svc") << *decision;
  const Doc* svc = Find("Service", parts[0], parts[1]);
  ASSERT_NE(svc, nullptr) << *decision << ": no Service " << parts[0] << " in " << parts[1];
  EXPECT_TRUE(Selects(LabelsOf(At(svc->node, "spec.selector")),
                      LabelsOf(At(server->pod, "metadata.labels"))))
      << svc->Where() << " does not select the server";
  const int listen_port = PortOf(Flag(server->container, "--listen").value_or(""));
  bool reaches_listen = false;
  for (const auto& p : At(svc->node, "spec.ports")) {
    if (Int(At(p, "port")) != PortOf(*decision)) continue;
    const YAML::Node target = Has(At(p, "targetPort")) ? At(p, "targetPort") : At(p, "port");
    reaches_listen = ResolvePort(server->container, target) == listen_port;
  }
  EXPECT_TRUE(reaches_listen) << *decision << " does not reach the server's --listen port";
}

TEST(ManifestsTest, GracePeriodsCoverShutdownAndDrain) {
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  const std::optional<Workload> gateway = WorkloadRunning("sluice-gateway");
  ASSERT_TRUE(server && gateway);

  // Defaults: the programs' own (--shutdown-grace 1s, --drain-timeout 30s) and Kubernetes'
  // grace period of 30s.
  auto grace = [](const Workload& w) {
    return absl::Seconds(Int(At(w.pod, "spec.terminationGracePeriodSeconds"), 30));
  };
  const absl::Duration shutdown =
      DurationFlag(server->container, "--shutdown-grace", absl::Seconds(1));
  EXPECT_GT(grace(*server), shutdown) << "the server's grace period is under --shutdown-grace";

  const absl::Duration pre_stop =
      absl::Seconds(Int(At(gateway->container, "lifecycle.preStop.sleep.seconds"), 0));
  const absl::Duration drain =
      DurationFlag(gateway->container, "--drain-timeout", absl::Seconds(30));
  EXPECT_GT(grace(*gateway), pre_stop + drain)
      << "the gateway's grace period is under preStop + --drain-timeout: requests in flight "
         "would be killed";
}

// The volume mounted at `path` and its mount, or null nodes.
std::pair<YAML::Node, YAML::Node> VolumeAt(const Workload& w, const std::string& path) {
  for (const auto& mount : At(w.container, "volumeMounts")) {
    if (Scalar(mount, "mountPath") != path) continue;
    for (const auto& volume : At(w.pod, "spec.volumes")) {
      if (Scalar(volume, "name") == Scalar(mount, "name")) return {volume, mount};
    }
  }
  return {YAML::Node(), YAML::Node()};
}

TEST(ManifestsTest, StateDirIsAWritablePersistentVolume) {
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  ASSERT_TRUE(server);
  const std::optional<std::string> state_dir = Flag(server->container, "--state-dir");
  ASSERT_TRUE(state_dir) << "sluice-server runs without --state-dir";
  const auto [volume, mount] = VolumeAt(*server, *state_dir);
  ASSERT_TRUE(Has(volume)) << "no volume is mounted at --state-dir " << *state_dir;
  EXPECT_NE(Scalar(mount, "readOnly"), "true");
  const std::string claim = Scalar(volume, "persistentVolumeClaim.claimName");
  ASSERT_FALSE(claim.empty()) << "--state-dir is not on a PersistentVolumeClaim";
  EXPECT_NE(Find("PersistentVolumeClaim", claim, server->deployment->Namespace()), nullptr)
      << "no PersistentVolumeClaim " << claim;
  // The pod runs as non-root: fsGroup makes the volume writable for it.
  EXPECT_TRUE(Has(At(server->pod, "spec.securityContext.fsGroup")));
}

// Each --config is a ConfigMap key's file (KEY under the mount), not the mount folder, where
// Kubernetes keeps a hidden timestamped copy of every key that sluice would read as well.
// And what the key holds is valid sluice configuration.
TEST(ManifestsTest, ConfigPointsAtConfigMapKeysThatSluiceAccepts) {
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  ASSERT_TRUE(server);
  const std::vector<std::string> paths = FlagValues(server->container, "--config");
  ASSERT_FALSE(paths.empty()) << "sluice-server runs without --config";
  for (const std::string& path : paths) {
    const fs::path p(path);
    const auto [volume, mount] = VolumeAt(*server, p.parent_path().string());
    ASSERT_TRUE(Has(volume)) << "--config " << path << " is no file of a mounted volume";
    const std::string name = Scalar(volume, "configMap.name");
    ASSERT_FALSE(name.empty()) << "--config " << path << ": the volume is no ConfigMap";
    const Doc* config_map = Find("ConfigMap", name, server->deployment->Namespace());
    ASSERT_NE(config_map, nullptr) << "no ConfigMap " << name;
    const std::string key = p.filename().string();
    // Not At(): the key has a dot in it.
    const YAML::Node data = At(config_map->node, "data");
    const YAML::Node text = data.IsMap() ? data[key] : YAML::Node();
    ASSERT_TRUE(Has(text) && text.IsScalar()) << "ConfigMap " << name << " has no key " << key;

    const sluice::config::LoadResult loaded = sluice::config::LoadText(
        text.as<std::string>(), absl::StrCat("configmap/", name, "/", key));
    EXPECT_TRUE(loaded.ok()) << "ConfigMap " << name << " key " << key << ":\n"
                             << loaded.diagnostics.ToString();
    EXPECT_GT(loaded.config.size(), 0u) << "ConfigMap " << name << " key " << key << " is empty";
  }
}

// Every channel is mutual TLS with files from a mounted Secret (never --plaintext), and the
// server's access policy is a ConfigMap key that sluice accepts.
TEST(ManifestsTest, ChannelsAreMutualTlsFromSecretsAndThePolicyParses) {
  for (const Workload& w : Workloads()) {
    const std::string where = w.deployment->Where();
    for (const char* flag : {"--tls-cert", "--tls-key", "--tls-ca"}) {
      const std::optional<std::string> path = Flag(w.container, flag);
      ASSERT_TRUE(path) << where << ": no " << flag;
      const auto [volume, mount] = VolumeAt(w, fs::path(*path).parent_path().string());
      ASSERT_TRUE(Has(volume)) << where << ": " << flag << " " << *path << " is on no volume";
      EXPECT_FALSE(Scalar(volume, "secret.secretName").empty())
          << where << ": " << flag << " " << *path << " is not from a Secret";
    }
    EXPECT_FALSE(Flag(w.container, "--plaintext").has_value()) << where;
    for (const std::string& arg : Args(w.container)) {
      EXPECT_FALSE(absl::StartsWith(arg, "--plaintext")) << where;
    }
  }
  const std::optional<Workload> server = WorkloadRunning("sluice-server");
  ASSERT_TRUE(server);
  const std::optional<std::string> policy = Flag(server->container, "--access-policy");
  ASSERT_TRUE(policy) << "sluice-server runs without --access-policy";
  const fs::path p(*policy);
  const auto [volume, mount] = VolumeAt(*server, p.parent_path().string());
  ASSERT_TRUE(Has(volume)) << "--access-policy " << *policy << " is on no volume";
  const std::string name = Scalar(volume, "configMap.name");
  const Doc* config_map = Find("ConfigMap", name, server->deployment->Namespace());
  ASSERT_NE(config_map, nullptr) << "no ConfigMap " << name;
  const YAML::Node data = At(config_map->node, "data");
  const YAML::Node text = data.IsMap() ? data[p.filename().string()] : YAML::Node();
  ASSERT_TRUE(Has(text) && text.IsScalar()) << "ConfigMap " << name << " has no " << p.filename();
  sluice::config::Diagnostics diagnostics;
  const sluice::security::AccessPolicy parsed =
      sluice::security::AccessPolicy::Parse(text.as<std::string>(), name, diagnostics);
  EXPECT_FALSE(diagnostics.HasErrors()) << diagnostics.ToString();
  // The gateways' identity holds the gateway role, and nobody else does.
  bool gateway = false;
  for (const auto& entry : parsed.entries()) {
    for (sluice::security::Role role : entry.roles) {
      if (role == sluice::security::Role::kGateway) gateway = true;
    }
  }
  EXPECT_TRUE(gateway) << "no identity in the policy may open decision streams";
}

TEST(ManifestsTest, ScrapeAnnotationsNameTheMetricsPort) {
  for (const Workload& w : Workloads()) {
    const Labels annotations = LabelsOf(At(w.pod, "metadata.annotations"));
    const std::string where = w.deployment->Where();
    auto get = [&](const std::string& key) {
      auto it = annotations.find(key);
      return it == annotations.end() ? std::string() : it->second;
    };
    EXPECT_EQ(get("prometheus.io/scrape"), "true") << where;
    EXPECT_EQ(get("prometheus.io/port"),
              std::to_string(PortOf(Flag(w.container, "--metrics").value_or(""))))
        << where;
    const std::string path = get("prometheus.io/path");
    EXPECT_TRUE(path.empty() || path == "/metrics") << where;
  }
}

// Each ServiceMonitor selects a Service in the namespaces it looks at and names its ports;
// every Service with a `metrics` port is scraped by one.
TEST(ManifestsTest, ServiceMonitorsSelectMetricsPorts) {
  std::set<std::string> scraped;
  for (const Doc* sm : Objects("ServiceMonitor")) {
    std::set<std::string> namespaces;
    for (const auto& n : At(sm->node, "spec.namespaceSelector.matchNames")) {
      namespaces.insert(Scalar(n));
    }
    if (namespaces.empty()) namespaces.insert(sm->Namespace());
    const Labels selector = LabelsOf(At(sm->node, "spec.selector.matchLabels"));
    int matched = 0;
    for (const Doc* svc : Objects("Service")) {
      if (!namespaces.count(svc->Namespace()) ||
          !Selects(selector, LabelsOf(At(svc->node, "metadata.labels")))) {
        continue;
      }
      ++matched;
      for (const auto& e : At(sm->node, "spec.endpoints")) {
        bool found = false;
        for (const auto& p : At(svc->node, "spec.ports")) {
          found |= Scalar(p, "name") == Scalar(e, "port");
        }
        EXPECT_TRUE(found) << sm->Where() << ": " << svc->Where() << " has no port "
                           << Scalar(e, "port");
        if (found) scraped.insert(svc->Namespace() + "/" + svc->Name());
      }
    }
    EXPECT_GE(matched, 1) << sm->Where() << " selects no Service";
  }
  for (const Doc* svc : Objects("Service")) {
    for (const auto& p : At(svc->node, "spec.ports")) {
      if (Scalar(p, "name") == "metrics") {
        EXPECT_TRUE(scraped.count(svc->Namespace() + "/" + svc->Name()))
            << svc->Where() << " has a metrics port but no ServiceMonitor";
      }
    }
  }
}

// --- deploy/kubernetes-replicas: three servers on a three-member etcd ---

std::string KustomizeNamespace(const fs::path& dir) {
  for (const Doc& d : AllDocs(dir)) {
    if (d.Kind() == "Kustomization") return d.Str("namespace");
  }
  return "";
}

// A name in cluster DNS: SERVICE or POD.SERVICE (a StatefulSet's pod under its serviceName),
// relative to the caller's namespace, or either followed by .NAMESPACE.svc[.cluster.local].
struct DnsName {
  std::string pod;  // empty: the Service's own name
  std::string service;
  std::string ns;  // empty: the caller's namespace
};

std::optional<DnsName> ParseDnsName(absl::string_view host) {
  absl::ConsumeSuffix(&host, ".cluster.local");
  std::vector<std::string> labels = absl::StrSplit(host, '.');
  DnsName out;
  if (labels.size() >= 3 && labels.back() == "svc") {
    labels.pop_back();
    out.ns = labels.back();
    labels.pop_back();
  }
  for (const std::string& label : labels) {
    if (label.empty()) return std::nullopt;
  }
  if (labels.size() == 1) {
    out.service = labels[0];
  } else if (labels.size() == 2) {
    out.pod = labels[0];
    out.service = labels[1];
  } else {
    return std::nullopt;
  }
  return out;
}

// "http://0.0.0.0:2379" -> "0.0.0.0:2379"; empty without the http:// scheme.
std::string HostPortOfUrl(absl::string_view url) {
  return absl::ConsumePrefix(&url, "http://") ? std::string(absl::StripSuffix(url, "/")) : "";
}

// The env entry `name` of a container, or a null node.
YAML::Node EnvVar(const YAML::Node& container, const std::string& name) {
  for (const auto& e : At(container, "env")) {
    if (Scalar(e, "name") == name) return e;
  }
  return YAML::Node();
}

// The $(VAR) references Kubernetes expands in an argument ($$( is an escaped one).
std::set<std::string> EnvReferences(const std::string& arg) {
  std::set<std::string> out;
  for (size_t pos = arg.find("$("); pos != std::string::npos; pos = arg.find("$(", pos + 2)) {
    if (pos > 0 && arg[pos - 1] == '$') continue;
    const size_t end = arg.find(')', pos);
    if (end == std::string::npos) break;
    out.insert(arg.substr(pos + 2, end - pos - 2));
  }
  return out;
}

// The names of a StatefulSet's pods: NAME-0 ... NAME-(replicas-1).
std::set<std::string> PodNames(const Doc& stateful_set) {
  std::set<std::string> out;
  const int replicas = Int(At(stateful_set.node, "spec.replicas"), 1);
  for (int i = 0; i < replicas; ++i) out.insert(absl::StrCat(stateful_set.Name(), "-", i));
  return out;
}

// The workload running `program` in the replicas folder; fails the test without one.
Workload Running(const std::string& program) {
  std::optional<Workload> w = WorkloadRunning(program, kReplicasDir);
  EXPECT_TRUE(w) << "nothing in " << kReplicasDir << " runs " << program;
  return w.value_or(Workload{nullptr, YAML::Node(), YAML::Node()});
}

// The container port in `w` that port number `port` of a Service sends to; -1 if the
// Service has no such port.
int ServiceTargetPort(const Doc& svc, int port, const Workload& w) {
  for (const auto& p : At(svc.node, "spec.ports")) {
    if (Int(At(p, "port")) != port) continue;
    const YAML::Node target = Has(At(p, "targetPort")) ? At(p, "targetPort") : At(p, "port");
    return ResolvePort(w.container, target);
  }
  return -1;
}

bool Headless(const Doc& svc) { return Scalar(svc.node, "spec.clusterIP") == "None"; }

TEST(ReplicasManifestsTest, EveryDocumentParsesAndNamesTheKustomizationNamespace) {
  ASSERT_TRUE(fs::is_directory(kReplicasDir)) << kReplicasDir;
  EXPECT_TRUE(fs::is_regular_file(kReplicasDir / "README.md"));
  ASSERT_FALSE(YamlFiles(kReplicasDir).empty());
  for (const std::string& file : YamlFiles(kReplicasDir)) {
    ASSERT_NO_THROW(YAML::LoadAllFromFile((kReplicasDir / file).string())) << file;
  }
  const std::string ns = KustomizeNamespace(kReplicasDir);
  ASSERT_FALSE(ns.empty()) << "kustomization.yaml sets no namespace";
  std::set<std::string> seen;
  for (const Doc& d : AllDocs(kReplicasDir)) {
    ASSERT_TRUE(d.node.IsMap()) << d.file;
    EXPECT_FALSE(d.Str("apiVersion").empty()) << d.file << ": a document has no apiVersion";
    EXPECT_FALSE(d.Kind().empty()) << d.file << ": a document has no kind";
    if (d.Kind() == "Kustomization") continue;
    EXPECT_FALSE(d.Name().empty()) << d.file << ": " << d.Kind() << " has no metadata.name";
    EXPECT_TRUE(seen.insert(absl::StrCat(d.Kind(), "/", d.Name())).second)
        << d.Where() << " is defined twice";
    EXPECT_EQ(d.Kind() == "Namespace" ? d.Name() : d.Namespace(), ns) << d.Where();
  }
  EXPECT_TRUE(WorkloadRunning("sluice-server", kReplicasDir));
  EXPECT_TRUE(WorkloadRunning("sluice-gateway", kReplicasDir));
  EXPECT_TRUE(WorkloadRunning("etcd", kReplicasDir));
}

// `kubectl apply -k` applies what the kustomization lists: every file of the folder, and no
// file that is not there.
TEST(ReplicasManifestsTest, KustomizationListsEveryFileAndOnlyExistingOnes) {
  std::vector<std::string> listed;
  int kustomizations = 0;
  for (const Doc& d : AllDocs(kReplicasDir)) {
    if (d.Kind() != "Kustomization") continue;
    ++kustomizations;
    EXPECT_EQ(d.file, "kustomization.yaml");
    for (const auto& r : At(d.node, "resources")) listed.push_back(Scalar(r));
  }
  ASSERT_EQ(kustomizations, 1);
  std::set<std::string> unique(listed.begin(), listed.end());
  EXPECT_EQ(unique.size(), listed.size()) << "kustomization.yaml lists a file twice";
  for (const std::string& resource : listed) {
    EXPECT_TRUE(fs::is_regular_file(kReplicasDir / resource))
        << "kustomization.yaml lists " << resource << ", which does not exist";
  }
  for (const std::string& file : YamlFiles(kReplicasDir)) {
    if (file == "kustomization.yaml") continue;
    EXPECT_TRUE(unique.count(file)) << file << " is not in kustomization.yaml";
  }
}

TEST(ReplicasManifestsTest, WorkloadsHaveResourcesProbesSecurityContextAndMatchingSelectors) {
  ASSERT_FALSE(Workloads(kReplicasDir).empty());
  for (const Workload& w : Workloads(kReplicasDir)) {
    const YAML::Node& c = w.container;
    const std::string where = absl::StrCat(w.deployment->Where(), " container ", Scalar(c, "name"));
    EXPECT_TRUE(Selects(LabelsOf(At(w.deployment->node, "spec.selector.matchLabels")),
                        LabelsOf(At(w.pod, "metadata.labels"))))
        << where << ": selector.matchLabels does not select the pod template";
    for (const char* kind : {"requests", "limits"}) {
      for (const char* resource : {"cpu", "memory"}) {
        EXPECT_FALSE(Scalar(c, absl::StrCat("resources.", kind, ".", resource)).empty())
            << where << ": no resources." << kind << "." << resource;
      }
    }
    EXPECT_TRUE(At(c, "readinessProbe").IsMap()) << where << ": no readinessProbe";
    EXPECT_TRUE(At(c, "livenessProbe").IsMap()) << where << ": no livenessProbe";
    EXPECT_EQ(Scalar(c, "securityContext.runAsNonRoot"), "true") << where;
    EXPECT_EQ(Scalar(c, "securityContext.readOnlyRootFilesystem"), "true") << where;
    EXPECT_EQ(Scalar(c, "securityContext.allowPrivilegeEscalation"), "false") << where;
    EXPECT_EQ(Scalar(c, "securityContext.capabilities.drop.0"), "ALL") << where;
    EXPECT_EQ(Scalar(c, "securityContext.seccompProfile.type"), "RuntimeDefault") << where;
    // Kubernetes leaves a $(VAR) the container does not define as it is, text and all.
    for (const std::string& arg : Args(c)) {
      for (const std::string& var : EnvReferences(arg)) {
        EXPECT_TRUE(Has(EnvVar(c, var))) << where << ": " << arg << " uses $(" << var
                                         << "), which the container's env does not define";
      }
    }
  }
  // sluice is tested against etcd 3.4 (Debian 12's etcd-server).
  const std::string image = Scalar(Running("etcd").container, "image");
  EXPECT_TRUE(absl::StrContains(image, ":v3.4.")) << image << " is no etcd 3.4 release";
}

TEST(ReplicasManifestsTest, ServicesSelectOneWorkloadAndTargetItsPorts) {
  ASSERT_FALSE(Objects("Service", kReplicasDir).empty());
  for (const Doc* svc : Objects("Service", kReplicasDir)) {
    const std::vector<Workload> selected =
        Selected(LabelsOf(At(svc->node, "spec.selector")), svc->Namespace(), kReplicasDir);
    ASSERT_EQ(selected.size(), 1u)
        << svc->Where() << " selects the pods of " << selected.size() << " workloads";
    for (const auto& p : At(svc->node, "spec.ports")) {
      EXPECT_GT(ServiceTargetPort(*svc, Int(At(p, "port")), selected[0]), 0)
          << svc->Where() << ": port " << Scalar(p, "name") << " targets no port "
          << selected[0].deployment->Name() << " declares";
    }
  }
}

// No state volume: the state is etcd's. Nothing may name --state-dir (sluice refuses it
// beside --store) or mount a claim, and the audit log goes to a volume of the pod's own.
TEST(ReplicasManifestsTest, ServerIsThreeReplicasOnEtcdWithoutAStateVolume) {
  const Workload server = Running("sluice-server");
  ASSERT_NE(server.deployment, nullptr);
  EXPECT_EQ(server.deployment->Kind(), "Deployment");
  EXPECT_EQ(Int(At(server.deployment->node, "spec.replicas")), 3);
  EXPECT_NE(Scalar(server.deployment->node, "spec.strategy.type"), "Recreate");
  for (const std::string& arg : Args(server.container)) {
    EXPECT_FALSE(absl::StartsWith(arg, "--state-dir")) << "the server has " << arg;
  }
  for (const auto& volume : At(server.pod, "spec.volumes")) {
    EXPECT_FALSE(Has(At(volume, "persistentVolumeClaim")))
        << "the server mounts the claim " << Scalar(volume, "persistentVolumeClaim.claimName");
  }
  EXPECT_TRUE(Objects("PersistentVolumeClaim", kReplicasDir).empty());
  ASSERT_TRUE(Flag(server.container, "--store")) << "the server has no --store";
  EXPECT_GT(DurationFlag(server.container, "--leader-ttl", absl::ZeroDuration()),
            absl::ZeroDuration())
      << "no --leader-ttl";

  if (const std::optional<std::string> audit = Flag(server.container, "--audit-log")) {
    const auto [volume, mount] = VolumeAt(server, fs::path(*audit).parent_path().string());
    ASSERT_TRUE(Has(volume)) << "--audit-log " << *audit << " is on no volume";
    EXPECT_TRUE(Has(At(volume, "emptyDir"))) << "--audit-log " << *audit << " is no emptyDir";
    EXPECT_NE(Scalar(mount, "readOnly"), "true");
  }

  // The kubelet's grpc probes speak no TLS: they go to the plaintext --health port.
  const int health = PortOf(Flag(server.container, "--health").value_or(""));
  ASSERT_GT(health, 0) << "sluice-server has no --health port for its probes";
  EXPECT_EQ(Int(At(server.container, "readinessProbe.grpc.port")), health);
  EXPECT_EQ(Scalar(server.container, "readinessProbe.grpc.service"), "sluice.v1.DecisionService");
  EXPECT_EQ(Int(At(server.container, "livenessProbe.grpc.port")), health);
  for (const char* flag : {"--listen", "--metrics", "--health"}) {
    const std::string address = Flag(server.container, flag).value_or("");
    EXPECT_TRUE(ContainerPorts(server.container).count(PortOf(address)))
        << flag << " " << address << " is not a containerPort";
    EXPECT_EQ(HostOf(address), "0.0.0.0") << flag << " " << address;
  }
}

// --store as sluice-server reads it (several host names are refused at start: one gRPC
// channel cannot list them), and between its addresses every etcd member on the client port.
TEST(ReplicasManifestsTest, StoreReachesEveryEtcdMemberOnItsClientPort) {
  const Workload server = Running("sluice-server");
  const Workload etcd = Running("etcd");
  ASSERT_TRUE(server.deployment && etcd.deployment);
  ASSERT_EQ(etcd.deployment->Kind(), "StatefulSet");
  const std::string ns = KustomizeNamespace(kReplicasDir);
  const std::string store = Flag(server.container, "--store").value_or("");
  const absl::StatusOr<sluice::store::EtcdLocation> location =
      sluice::store::ParseEtcdLocation(store);
  ASSERT_TRUE(location.ok()) << location.status();
  const absl::StatusOr<std::string> target = sluice::GrpcTarget(location->endpoints);
  EXPECT_TRUE(target.ok()) << "sluice-server would refuse --store " << store << ": "
                           << target.status();

  const int client_port =
      PortOf(HostPortOfUrl(Flag(etcd.container, "--listen-client-urls").value_or("")));
  ASSERT_GT(client_port, 0) << "etcd has no http:// --listen-client-urls";
  const std::set<std::string> pods = PodNames(*etcd.deployment);
  const std::string service_name = Scalar(etcd.deployment->node, "spec.serviceName");
  std::set<std::string> reached;
  for (const sluice::HostPort& endpoint : location->endpoints.entries) {
    const std::optional<DnsName> name = ParseDnsName(endpoint.host);
    ASSERT_TRUE(name) << endpoint.ToString() << " is no Service or pod name";
    EXPECT_TRUE(name->ns.empty() || name->ns == ns)
        << endpoint.ToString() << " names namespace " << name->ns << ", not " << ns;
    if (!name->pod.empty()) {
      // A pod's own name: POD.SERVICE, the port its container's.
      EXPECT_EQ(name->service, service_name) << endpoint.ToString();
      EXPECT_TRUE(pods.count(name->pod)) << endpoint.ToString() << " names no etcd pod";
      EXPECT_EQ(endpoint.port, client_port) << endpoint.ToString() << " is not the client port";
      reached.insert(name->pod);
      continue;
    }
    // A Service: headless, so the name resolves to every member it selects.
    const Doc* svc = Find("Service", name->service, ns, kReplicasDir);
    ASSERT_NE(svc, nullptr) << endpoint.ToString() << ": no Service " << name->service;
    EXPECT_TRUE(Headless(*svc)) << svc->Where() << " is not headless: one virtual address";
    EXPECT_TRUE(Selects(LabelsOf(At(svc->node, "spec.selector")),
                        LabelsOf(At(etcd.pod, "metadata.labels"))))
        << svc->Where() << " does not select the etcd pods";
    EXPECT_EQ(ServiceTargetPort(*svc, endpoint.port, etcd), client_port)
        << endpoint.ToString() << " does not reach etcd's client port";
    reached.insert(pods.begin(), pods.end());
  }
  EXPECT_EQ(reached, pods) << "--store " << store << " does not reach every etcd member";
}

// --initial-cluster names each pod of the StatefulSet by its stable name (POD.SERVICE under
// the StatefulSet's headless serviceName) and the peer port, and each member advertises
// exactly its own entry.
TEST(ReplicasManifestsTest, EtcdIsThreeMembersWhoseInitialClusterNamesThePods) {
  const Workload etcd = Running("etcd");
  ASSERT_NE(etcd.deployment, nullptr);
  ASSERT_EQ(etcd.deployment->Kind(), "StatefulSet");
  const YAML::Node& set = etcd.deployment->node;
  const std::string ns = KustomizeNamespace(kReplicasDir);
  EXPECT_EQ(Int(At(set, "spec.replicas")), 3);
  // Members are ready only once a majority runs: OrderedReady would never start the second.
  EXPECT_EQ(Scalar(set, "spec.podManagementPolicy"), "Parallel");

  const int peer_port =
      PortOf(HostPortOfUrl(Flag(etcd.container, "--listen-peer-urls").value_or("")));
  const int client_port =
      PortOf(HostPortOfUrl(Flag(etcd.container, "--listen-client-urls").value_or("")));
  EXPECT_TRUE(ContainerPorts(etcd.container).count(peer_port)) << "peer port " << peer_port;
  EXPECT_TRUE(ContainerPorts(etcd.container).count(client_port)) << "client port " << client_port;

  // The serviceName: headless, selecting the members, publishing them before they are ready
  // (they must find each other to become ready), with the peer port.
  const std::string service_name = Scalar(set, "spec.serviceName");
  const Doc* svc = Find("Service", service_name, ns, kReplicasDir);
  ASSERT_NE(svc, nullptr) << "no Service " << service_name << " (the StatefulSet's serviceName)";
  EXPECT_TRUE(Headless(*svc)) << svc->Where();
  EXPECT_EQ(Scalar(svc->node, "spec.publishNotReadyAddresses"), "true") << svc->Where();
  EXPECT_TRUE(
      Selects(LabelsOf(At(svc->node, "spec.selector")), LabelsOf(At(etcd.pod, "metadata.labels"))))
      << svc->Where() << " does not select the etcd pods";
  EXPECT_EQ(ServiceTargetPort(*svc, peer_port, etcd), peer_port) << svc->Where();

  // --name $(POD_NAME), POD_NAME being the pod's name.
  EXPECT_EQ(Flag(etcd.container, "--name").value_or(""), "$(POD_NAME)");
  EXPECT_EQ(Scalar(EnvVar(etcd.container, "POD_NAME"), "valueFrom.fieldRef.fieldPath"),
            "metadata.name");

  const std::set<std::string> pods = PodNames(*etcd.deployment);
  std::map<std::string, std::string> initial_cluster;  // member name -> peer URL
  for (absl::string_view entry :
       absl::StrSplit(Flag(etcd.container, "--initial-cluster").value_or(""), ',')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    EXPECT_TRUE(initial_cluster.insert(kv).second) << kv.first << " is named twice";
    const std::string host_port = HostPortOfUrl(kv.second);
    ASSERT_FALSE(host_port.empty()) << entry << ": want NAME=http://HOST:PORT";
    EXPECT_EQ(PortOf(host_port), peer_port) << entry << " is not the peer port";
    const std::optional<DnsName> name = ParseDnsName(HostOf(host_port));
    ASSERT_TRUE(name) << entry;
    EXPECT_EQ(name->pod, kv.first) << entry << ": the URL names another pod";
    EXPECT_EQ(name->service, service_name) << entry;
    EXPECT_TRUE(name->ns.empty() || name->ns == ns) << entry << " names another namespace";
  }
  std::set<std::string> members;
  for (const auto& [member, url] : initial_cluster) members.insert(member);
  EXPECT_EQ(members, pods) << "--initial-cluster does not name the StatefulSet's pods";
  EXPECT_EQ(Flag(etcd.container, "--initial-cluster-state").value_or("new"), "new");

  // What each pod advertises, $(POD_NAME) expanded, is its own --initial-cluster entry.
  const std::string peer_urls = Flag(etcd.container, "--initial-advertise-peer-urls").value_or("");
  const std::string client_urls = Flag(etcd.container, "--advertise-client-urls").value_or("");
  for (const std::string& pod : pods) {
    EXPECT_EQ(absl::StrReplaceAll(peer_urls, {{"$(POD_NAME)", pod}}), initial_cluster[pod])
        << "--initial-advertise-peer-urls " << peer_urls;
    const std::string client =
        HostPortOfUrl(absl::StrReplaceAll(client_urls, {{"$(POD_NAME)", pod}}));
    EXPECT_EQ(PortOf(client), client_port) << "--advertise-client-urls " << client_urls;
    const std::optional<DnsName> name = ParseDnsName(HostOf(client));
    EXPECT_TRUE(name && name->pod == pod && name->service == service_name)
        << "--advertise-client-urls " << client_urls;
  }

  // The data on a claim of its own per member.
  const std::string data_dir = Flag(etcd.container, "--data-dir").value_or("");
  std::set<std::string> claims;
  for (const auto& t : At(set, "spec.volumeClaimTemplates"))
    claims.insert(Scalar(t, "metadata.name"));
  bool on_claim = false;
  for (const auto& mount : At(etcd.container, "volumeMounts")) {
    const std::string path = Scalar(mount, "mountPath");
    on_claim |= claims.count(Scalar(mount, "name")) &&
                (data_dir == path || absl::StartsWith(data_dir, path + "/"));
  }
  EXPECT_TRUE(on_claim) << "--data-dir " << data_dir << " is on no volumeClaimTemplate";
}

// --advertise is where the other replicas reach this one: the pod's IP (the downward API's
// status.podIP) on the --listen port.
TEST(ReplicasManifestsTest, AdvertiseIsThePodIpOnTheListenPort) {
  const Workload server = Running("sluice-server");
  ASSERT_NE(server.deployment, nullptr);
  const std::optional<std::string> advertise = Flag(server.container, "--advertise");
  ASSERT_TRUE(advertise) << "the server has no --advertise";
  const std::string host = HostOf(*advertise);
  EXPECT_TRUE(host == "$(POD_IP)" || host == "[$(POD_IP)]") << "--advertise " << *advertise;
  EXPECT_EQ(PortOf(*advertise), PortOf(Flag(server.container, "--listen").value_or("")))
      << "--advertise " << *advertise << " is not the --listen port";
  const YAML::Node pod_ip = EnvVar(server.container, "POD_IP");
  ASSERT_TRUE(Has(pod_ip)) << "the server's env has no POD_IP";
  EXPECT_EQ(Scalar(pod_ip, "valueFrom.fieldRef.fieldPath"), "status.podIP");
  EXPECT_FALSE(Has(At(pod_ip, "value"))) << "POD_IP has a fixed value";
}

// The replicas call each other by pod IP and check the name their certificate carries,
// --replica-tls-server-name: the server's Service in this namespace. The gateways, which dial
// another name, check the same one; the access policy gives it the replica role.
TEST(ReplicasManifestsTest, ReplicasAndGatewaysCheckTheServerServiceName) {
  const Workload server = Running("sluice-server");
  const Workload gateway = Running("sluice-gateway");
  ASSERT_TRUE(server.deployment && gateway.deployment);
  const std::string ns = KustomizeNamespace(kReplicasDir);
  const std::string tls_name = Flag(server.container, "--replica-tls-server-name").value_or("");
  const std::optional<DnsName> name = ParseDnsName(tls_name);
  ASSERT_TRUE(name && name->pod.empty()) << "--replica-tls-server-name " << tls_name;
  EXPECT_EQ(name->ns, ns) << "--replica-tls-server-name " << tls_name
                          << ": want SERVICE.NAMESPACE.svc";
  const Doc* svc = Find("Service", name->service, ns, kReplicasDir);
  ASSERT_NE(svc, nullptr) << "--replica-tls-server-name " << tls_name << ": no such Service";
  EXPECT_TRUE(Selects(LabelsOf(At(svc->node, "spec.selector")),
                      LabelsOf(At(server.pod, "metadata.labels"))))
      << svc->Where() << " does not select the server";

  const std::string decision_host = HostOf(Flag(gateway.container, "--decision").value_or(""));
  EXPECT_EQ(Flag(gateway.container, "--tls-server-name").value_or(decision_host), tls_name)
      << "the gateway checks the server's certificate for another name";
  // sluicectl in the server's container (kubectl exec) checks it too.
  const YAML::Node sluicectl_name = EnvVar(server.container, "SLUICE_TLS_SERVER_NAME");
  if (Has(sluicectl_name)) {
    EXPECT_EQ(Scalar(sluicectl_name, "value"), tls_name);
  }

  // The policy, as YAML: the servers' name holds the replica role.
  const std::string policy_path = Flag(server.container, "--access-policy").value_or("");
  const auto [volume, mount] = VolumeAt(server, fs::path(policy_path).parent_path().string());
  const Doc* config_map = Find("ConfigMap", Scalar(volume, "configMap.name"), ns, kReplicasDir);
  ASSERT_NE(config_map, nullptr) << "--access-policy " << policy_path << " is no ConfigMap key";
  const YAML::Node data = At(config_map->node, "data");
  const YAML::Node text = data[fs::path(policy_path).filename().string()];
  ASSERT_TRUE(Has(text)) << config_map->Where() << " has no " << policy_path;
  bool replica = false;
  for (const auto& identity : At(YAML::Load(text.as<std::string>()), "identities")) {
    if (Scalar(identity, "name") != tls_name) continue;
    for (const auto& role : At(identity, "roles")) replica |= Scalar(role) == "replica";
  }
  EXPECT_TRUE(replica) << "the policy does not give " << tls_name << " the replica role";
}

// The policy loads in sluice's own parser. Until this build knows the replica role, it is
// checked without it.
TEST(ReplicasManifestsTest, ConfigAndPolicyAreConfigMapKeysSluiceAccepts) {
  const Workload server = Running("sluice-server");
  ASSERT_NE(server.deployment, nullptr);
  const std::string ns = KustomizeNamespace(kReplicasDir);
  auto key_text = [&](const std::string& path) -> std::string {
    const auto [volume, mount] = VolumeAt(server, fs::path(path).parent_path().string());
    const Doc* config_map = Find("ConfigMap", Scalar(volume, "configMap.name"), ns, kReplicasDir);
    if (config_map == nullptr) return "";
    const YAML::Node data = At(config_map->node, "data");
    const YAML::Node text = data.IsMap() ? data[fs::path(path).filename().string()] : YAML::Node();
    return Has(text) && text.IsScalar() ? text.as<std::string>() : "";
  };
  const std::vector<std::string> configs = FlagValues(server.container, "--config");
  ASSERT_FALSE(configs.empty()) << "sluice-server runs without --config";
  for (const std::string& path : configs) {
    const std::string text = key_text(path);
    ASSERT_FALSE(text.empty()) << "--config " << path << " is no ConfigMap key";
    const sluice::config::LoadResult loaded = sluice::config::LoadText(text, path);
    EXPECT_TRUE(loaded.ok()) << path << ":\n" << loaded.diagnostics.ToString();
    EXPECT_GT(loaded.config.size(), 0u) << path << " is empty";
  }

  const std::string policy_path = Flag(server.container, "--access-policy").value_or("");
  std::string policy = key_text(policy_path);
  ASSERT_FALSE(policy.empty()) << "--access-policy " << policy_path << " is no ConfigMap key";
  sluice::config::Diagnostics probe;
  sluice::security::AccessPolicy::Parse("identities:\n  - name: x\n    roles: [replica]\n", "probe",
                                        probe);
  if (probe.HasErrors()) {
    std::cout << "note: this build has no replica role; the policy is checked without it\n";
    YAML::Node without = YAML::Load(policy);
    YAML::Node identities(YAML::NodeType::Sequence);
    for (const auto& identity : At(without, "identities")) {
      YAML::Node roles(YAML::NodeType::Sequence);
      for (const auto& role : At(identity, "roles")) {
        if (Scalar(role) != "replica") roles.push_back(Scalar(role));
      }
      if (roles.size() == 0) continue;
      YAML::Node kept = YAML::Clone(identity);
      kept["roles"] = roles;
      identities.push_back(kept);
    }
    without["identities"] = identities;
    policy = YAML::Dump(without);
  }
  sluice::config::Diagnostics diagnostics;
  const sluice::security::AccessPolicy parsed =
      sluice::security::AccessPolicy::Parse(policy, policy_path, diagnostics);
  EXPECT_FALSE(diagnostics.HasErrors()) << diagnostics.ToString();
  bool gateway = false;
  for (const auto& entry : parsed.entries()) {
    for (sluice::security::Role role : entry.roles) {
      gateway |= role == sluice::security::Role::kGateway;
    }
  }
  EXPECT_TRUE(gateway) << "no identity in the policy may open decision streams";

  // Mutual TLS from Secrets on every sluice program, never --plaintext.
  for (const char* program : {"sluice-server", "sluice-gateway"}) {
    const Workload w = Running(program);
    for (const char* flag : {"--tls-cert", "--tls-key", "--tls-ca"}) {
      const std::string path = Flag(w.container, flag).value_or("");
      const auto [volume, mount] = VolumeAt(w, fs::path(path).parent_path().string());
      EXPECT_FALSE(Scalar(volume, "secret.secretName").empty())
          << program << ": " << flag << " " << path << " is not from a Secret";
    }
    for (const std::string& arg : Args(w.container)) {
      EXPECT_FALSE(absl::StartsWith(arg, "--plaintext")) << program;
    }
  }
}

// Each budget selects one workload's pods and lets one pod go at a time; the servers and the
// etcd members keep two of three (an etcd majority).
TEST(ReplicasManifestsTest, DisruptionBudgetsSelectTheirPodsAndKeepTwoOfThree) {
  std::set<std::string> covered;
  for (const Doc* pdb : Objects("PodDisruptionBudget", kReplicasDir)) {
    const std::vector<Workload> selected = Selected(
        LabelsOf(At(pdb->node, "spec.selector.matchLabels")), pdb->Namespace(), kReplicasDir);
    ASSERT_EQ(selected.size(), 1u)
        << pdb->Where() << " selects the pods of " << selected.size() << " workloads";
    const std::string program = Program(selected[0].container);
    EXPECT_TRUE(covered.insert(program).second) << "two budgets select " << program;
    const int replicas = Int(At(selected[0].deployment->node, "spec.replicas"), 1);
    const YAML::Node max_unavailable = At(pdb->node, "spec.maxUnavailable");
    const YAML::Node min_available = At(pdb->node, "spec.minAvailable");
    ASSERT_TRUE(Has(max_unavailable) != Has(min_available)) << pdb->Where();
    const int available = Has(min_available) ? IntOrPercent(min_available, replicas)
                                             : replicas - IntOrPercent(max_unavailable, replicas);
    EXPECT_LT(available, replicas) << pdb->Where() << " allows no eviction: drains would block";
    if (program == "sluice-server" || program == "etcd") {
      EXPECT_EQ(Scalar(min_available), "2") << pdb->Where();
      EXPECT_GT(2 * available, replicas) << pdb->Where() << " lets the majority go";
    }
  }
  for (const Workload& w : Workloads(kReplicasDir)) {
    EXPECT_TRUE(covered.count(Program(w.container)))
        << "no budget selects " << w.deployment->Where();
  }
}

// The gateways dial one name: a headless Service of the servers in this folder, so gRPC's DNS
// resolver gets every replica's address, on the port that reaches --listen.
TEST(ReplicasManifestsTest, GatewayDecisionNamesAHeadlessServiceOfTheServers) {
  const Workload server = Running("sluice-server");
  const Workload gateway = Running("sluice-gateway");
  ASSERT_TRUE(server.deployment && gateway.deployment);
  const std::string ns = KustomizeNamespace(kReplicasDir);
  const std::string decision = Flag(gateway.container, "--decision").value_or("");
  sluice::HostPortList list;
  std::string error;
  ASSERT_TRUE(AbslParseFlag(decision, &list, &error)) << "--decision " << decision << ": " << error;
  EXPECT_TRUE(sluice::GrpcTarget(list).ok())
      << "sluice-gateway would refuse --decision " << decision;
  ASSERT_EQ(list.entries.size(), 1u) << "--decision " << decision << ": want one Service name";
  const std::optional<DnsName> name = ParseDnsName(list.entries[0].host);
  ASSERT_TRUE(name && name->pod.empty()) << "--decision " << decision << " names no Service";
  EXPECT_TRUE(name->ns.empty() || name->ns == ns) << "--decision " << decision;
  const Doc* svc = Find("Service", name->service, ns, kReplicasDir);
  ASSERT_NE(svc, nullptr) << "--decision " << decision << ": no Service " << name->service;
  EXPECT_TRUE(Headless(*svc)) << svc->Where() << " is not headless: one virtual address";
  EXPECT_TRUE(Selects(LabelsOf(At(svc->node, "spec.selector")),
                      LabelsOf(At(server.pod, "metadata.labels"))))
      << svc->Where() << " does not select the server";
  EXPECT_EQ(ServiceTargetPort(*svc, list.entries[0].port, server),
            PortOf(Flag(server.container, "--listen").value_or("")))
      << "--decision " << decision << " does not reach the server's --listen port";
}

// A NetworkPolicy on etcd lets in the servers on the client port and the members on both.
TEST(ReplicasManifestsTest, EtcdNetworkPolicyAdmitsTheServersAndTheMembers) {
  const Workload server = Running("sluice-server");
  const Workload etcd = Running("etcd");
  ASSERT_TRUE(server.deployment && etcd.deployment);
  const int client_port =
      PortOf(HostPortOfUrl(Flag(etcd.container, "--listen-client-urls").value_or("")));
  const int peer_port =
      PortOf(HostPortOfUrl(Flag(etcd.container, "--listen-peer-urls").value_or("")));
  // Whether `policy` admits pods labelled `from` to `port` of the etcd container.
  auto admits = [&](const Doc& policy, const Labels& from, int port) {
    for (const auto& rule : At(policy.node, "spec.ingress")) {
      bool source = false;
      for (const auto& peer : At(rule, "from")) {
        source |= Selects(LabelsOf(At(peer, "podSelector.matchLabels")), from);
      }
      bool to_port = false;
      for (const auto& p : At(rule, "ports"))
        to_port |= ResolvePort(etcd.container, At(p, "port")) == port;
      if (source && to_port) return true;
    }
    return false;
  };
  const Labels server_labels = LabelsOf(At(server.pod, "metadata.labels"));
  const Labels etcd_labels = LabelsOf(At(etcd.pod, "metadata.labels"));
  for (const Doc* policy : Objects("NetworkPolicy", kReplicasDir)) {
    if (!Selects(LabelsOf(At(policy->node, "spec.podSelector.matchLabels")), etcd_labels)) {
      ADD_FAILURE() << policy->Where() << " selects no etcd pods";
      continue;
    }
    EXPECT_TRUE(admits(*policy, server_labels, client_port))
        << policy->Where() << " keeps sluice-server from etcd's client port";
    EXPECT_TRUE(admits(*policy, etcd_labels, peer_port))
        << policy->Where() << " keeps the members from each other's peer port";
  }
}

}  // namespace
