#pragma once

#include "grpcpp/grpcpp.h"
#include "server/api/server_metrics.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_tracker.h"
#include "server/store/config_store.h"
#include "sluice/v1/decision.grpc.pb.h"

namespace sluice::api {

// Adapts DecisionService over gRPC's callback API to the decider: translation only.
class DecisionServiceImpl final : public v1::DecisionService::CallbackService {
 public:
  // Attempt reports feed `health` (outlier detection) and `traffic` (canary evidence).
  DecisionServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                      health::HealthTracker& health, canary::TrafficRecorder& traffic)
      : store_(store), metrics_(metrics), health_(health), traffic_(traffic) {}

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

 private:
  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  health::HealthTracker& health_;
  canary::TrafficRecorder& traffic_;
};

}  // namespace sluice::api
