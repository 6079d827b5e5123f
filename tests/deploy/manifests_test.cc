// Checks the Kubernetes manifests in deploy/kubernetes/ against each other and against
// sluice itself: what `kubectl apply` would accept but leave broken (a Service selecting no
// pods, a probe on the wrong port, a ConfigMap sluice rejects, a grace period shorter than
// the drain) fails here.

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/config/loader.h"
#include "server/security/access_policy.h"
#include "yaml-cpp/yaml.h"

namespace {

namespace fs = std::filesystem;

const fs::path kKubernetesDir = fs::path(SLUICE_SOURCE_DIR) / "deploy" / "kubernetes";

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
  std::string file;  // relative to deploy/kubernetes
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

std::vector<std::string> YamlFiles() {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(kKubernetesDir)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      files.push_back(fs::relative(entry.path(), kKubernetesDir).string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Every non-empty document of every file, the kustomization included.
const std::vector<Doc>& AllDocs() {
  static const std::vector<Doc>* docs = [] {
    auto* out = new std::vector<Doc>();
    for (const std::string& file : YamlFiles()) {
      for (const YAML::Node& node : YAML::LoadAllFromFile((kKubernetesDir / file).string())) {
        if (node.IsNull()) continue;  // comments before a leading `---`
        out->push_back({file, node});
      }
    }
    return out;
  }();
  return *docs;
}

// The Kubernetes objects: every document but the kustomization.
std::vector<const Doc*> Objects(const std::string& kind = "") {
  std::vector<const Doc*> out;
  for (const Doc& d : AllDocs()) {
    if (d.Kind() == "Kustomization") continue;
    if (kind.empty() || d.Kind() == kind) out.push_back(&d);
  }
  return out;
}

const Doc* Find(const std::string& kind, const std::string& name, const std::string& ns) {
  for (const Doc* d : Objects(kind)) {
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
  const Doc* deployment;
  YAML::Node pod;        // spec.template
  YAML::Node container;  // one of its containers
};

std::vector<Workload> Workloads() {
  std::vector<Workload> out;
  for (const Doc* d : Objects("Deployment")) {
    const YAML::Node pod = At(d->node, "spec.template");
    for (const auto& c : At(pod, "spec.containers")) out.push_back({d, pod, c});
  }
  return out;
}

std::optional<Workload> WorkloadRunning(const std::string& program) {
  for (const Workload& w : Workloads()) {
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

// The Deployments (one container each here) whose pods `selector` selects in namespace `ns`.
std::vector<Workload> Selected(const Labels& selector, const std::string& ns) {
  std::vector<Workload> out;
  for (const Workload& w : Workloads()) {
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

}  // namespace
