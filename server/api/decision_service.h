#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "server/api/gateway_hub.h"
#include "server/api/replica_service.h"
#include "server/api/server_metrics.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_tracker.h"
#include "server/security/access_control.h"
#include "server/store/config_store.h"
#include "sluice/v1/decision.grpc.pb.h"

namespace sluice::api {

// Adapts DecisionService over gRPC's callback API to the decider: translation only.
class DecisionServiceImpl final : public v1::DecisionService::CallbackService {
 public:
  // Attempt reports feed `health` (outlier detection) and `traffic` (canary evidence).
  // Gateways subscribe to `hub` for the pushed decision table.
  DecisionServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                      health::HealthTracker& health, canary::TrafficRecorder& traffic,
                      GatewayHub& hub)
      : store_(store), metrics_(metrics), health_(health), traffic_(traffic), hub_(hub) {}

  // With replicas on etcd: while `forwarder` is active (this replica follows), reports are
  // also forwarded to the leading replica's detectors. Null: none.
  void SetForwarder(ReportForwarder* forwarder) { forwarder_.store(forwarder); }
  ReportForwarder* forwarder() const { return forwarder_.load(std::memory_order_relaxed); }

  // Who may call (the gateway role; null: anyone). Set before the server starts.
  void SetAccessControl(const security::AccessControl* access) { access_ = access; }

  // A new snapshot is serving (ConfigStore::OnSwap): remember its match header names.
  void OnSnapshot(const routing::Snapshot& snapshot);
  // Whether a request described with the match header names of version `described_with`
  // carries every header `current`'s rules read.
  bool HeadersCover(uint64_t described_with, const routing::Snapshot& current) const;

  // v1::DecisionService
  grpc::ServerUnaryReactor* Decide(grpc::CallbackServerContext* context,
                                   const v1::DecideRequest* request,
                                   v1::Decision* response) override;
  grpc::ServerBidiReactor<v1::GatewayMessage, v1::ServerMessage>* Stream(
      grpc::CallbackServerContext* context) override;

  store::ConfigStore& store() { return store_; }
  ServerMetrics& metrics() { return metrics_; }
  health::HealthTracker& health() { return health_; }
  canary::TrafficRecorder& traffic() { return traffic_; }
  GatewayHub& hub() { return hub_; }
  const security::AccessControl* access() const { return access_; }

 private:
  const security::AccessControl* access_ = nullptr;
  std::atomic<ReportForwarder*> forwarder_{nullptr};
  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  health::HealthTracker& health_;
  canary::TrafficRecorder& traffic_;
  GatewayHub& hub_;

  static constexpr size_t kHeaderNameVersionsKept = 16;
  mutable absl::Mutex header_names_mu_;
  std::deque<std::pair<uint64_t, std::vector<std::string>>> header_names_
      ABSL_GUARDED_BY(header_names_mu_);
};

}  // namespace sluice::api
