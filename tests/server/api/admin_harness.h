#pragma once

// A server's worth of AdminService in-process: a ConfigStore over a configuration file and a
// state directory in a temporary folder, with the metrics, health tracker, canary manager
// and gateway hub AdminServiceImpl answers from, wired as server/main.cc wires them. Used by
// the admin API's tests and by its fuzzer (so it needs no GoogleTest).

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "server/api/admin_service.h"
#include "server/api/gateway_hub.h"
#include "server/api/server_metrics.h"
#include "server/canary/canary_manager.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_tracker.h"
#include "server/store/config_store.h"

namespace sluice::api::testing {

// The configuration file: one service with three subsets, a route between them and a
// Canary on it, so that every admin method has something to answer about.
inline constexpr char kShopConfig[] = R"yaml(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 18083}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: shop, subset: v3}
  - route:
    - {destination: {host: shop, subset: v1}, weight: 100}
    - {destination: {host: shop, subset: v2}, weight: 0}
---
apiVersion: sluice.dev/v1
kind: Canary
metadata: {name: shop}
spec:
  host: shop
  stableSubset: v1
  canarySubset: v2
  analysis:
    interval: 10s
    threshold: 2
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
)yaml";

// Applied through the store once it is open: a resource that Get finds as "applied" and
// that Delete may remove.
inline constexpr char kAppliedConfig[] = R"yaml(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 127.0.0.2, ports: {http: 19080}, labels: {version: v1}}
)yaml";

class AdminHarness {
 public:
  // `dir` is created (emptied first) and removed again by the destructor.
  explicit AdminHarness(std::filesystem::path dir, uint64_t max_apply_bytes = 16 << 20)
      : dir_(std::move(dir)), max_apply_bytes_(max_apply_bytes) {}
  AdminHarness(const AdminHarness&) = delete;
  AdminHarness& operator=(const AdminHarness&) = delete;
  ~AdminHarness() {
    Stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // A temporary folder of its own for this process and `name`.
  static std::filesystem::path TempDir(const std::string& name) {
    return std::filesystem::temp_directory_path() /
           absl::StrCat("sluice-admin-", name, "-", ::getpid());
  }

  // Starts afresh: a running harness is stopped and its folder emptied first.
  absl::Status Start() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::create_directories(dir_ / "config", ec);
    if (ec) return absl::InternalError(absl::StrCat(dir_.string(), ": ", ec.message()));
    std::ofstream(dir_ / "config" / "shop.yaml") << kShopConfig;

    store::ConfigStore::Options options;
    options.config_paths = {(dir_ / "config").string()};
    options.state_dir = (dir_ / "state").string();
    absl::StatusOr<std::unique_ptr<store::ConfigStore>> store = store::ConfigStore::Open(options);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);

    registry_ = std::make_unique<prometheus::Registry>();
    metrics_ = std::make_unique<ServerMetrics>(*registry_);
    store_->OnSwap([this](const routing::Snapshot& s) { metrics_->OnSnapshot(s); });
    hub_ = std::make_unique<GatewayHub>([] { return absl::Now() - absl::UnixEpoch(); },
                                        [] { return absl::Now(); });
    health_ = std::make_unique<health::HealthTracker>([] { return absl::Now(); }, hub_.get());
    store_->OnSwap([this](const routing::Snapshot& s) { health_->OnSnapshot(s); });
    recorder_ = std::make_unique<canary::TrafficRecorder>([] { return absl::Now(); });
    store_->OnSwap([this](const routing::Snapshot& s) { recorder_->OnSnapshot(s); });
    canary::CanaryManager::Options canary_options;
    canary_options.state_dir = (dir_ / "state").string();
    absl::StatusOr<std::unique_ptr<canary::CanaryManager>> canaries =
        canary::CanaryManager::Create(*store_, *recorder_, *registry_, canary_options);
    if (!canaries.ok()) return canaries.status();
    canaries_ = *std::move(canaries);
    store_->OnSwap([this](const routing::Snapshot& s) { canaries_->OnSnapshot(s); });
    store_->OnSwap([this](const routing::Snapshot& s) { hub_->OnSnapshot(s); });
    canaries_->RunOnce();

    const store::ChangeResult applied = store_->Apply({{"ratings.yaml", kAppliedConfig}}, false);
    if (!applied.applied) {
      return absl::InternalError(
          absl::StrCat("applying ratings.yaml: ", applied.diagnostics.ToString()));
    }
    admin_ = std::make_unique<AdminServiceImpl>(*store_, *metrics_, *health_, *canaries_, *hub_,
                                                max_apply_bytes_);
    return absl::OkStatus();
  }

  AdminServiceImpl& admin() { return *admin_; }
  store::ConfigStore& store() { return *store_; }
  ServerMetrics& metrics() { return *metrics_; }

 private:
  // Users first: the admin service, the canary manager, the store (which holds the other
  // parts' listeners), then the parts themselves.
  void Stop() {
    admin_.reset();
    canaries_.reset();
    store_.reset();
    health_.reset();
    hub_.reset();
    recorder_.reset();
    metrics_.reset();
    registry_.reset();
  }

  std::filesystem::path dir_;
  uint64_t max_apply_bytes_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<store::ConfigStore> store_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<GatewayHub> hub_;
  std::unique_ptr<health::HealthTracker> health_;
  std::unique_ptr<canary::TrafficRecorder> recorder_;
  std::unique_ptr<canary::CanaryManager> canaries_;
  std::unique_ptr<AdminServiceImpl> admin_;
};

}  // namespace sluice::api::testing
