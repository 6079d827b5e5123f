#pragma once

#include "grpcpp/grpcpp.h"
#include "server/api/gateway_hub.h"
#include "server/api/server_metrics.h"
#include "server/canary/canary_manager.h"
#include "server/health/health_tracker.h"
#include "server/store/config_store.h"
#include "sluice/v1/admin.grpc.pb.h"

namespace sluice::api {

// Adapts AdminService to the config store and the decider. Administration is rare, so the
// synchronous API is enough.
class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                   const health::HealthTracker& health, canary::CanaryManager& canaries,
                   const GatewayHub& hub)
      : store_(store), metrics_(metrics), health_(health), canaries_(canaries), hub_(hub) {}

  // v1::AdminService
  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest* request,
                     v1::ApplyResponse* response) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status Explain(grpc::ServerContext*, const v1::DecideRequest* request,
                       v1::ExplainResponse* response) override;
  grpc::Status ListEndpoints(grpc::ServerContext*, const v1::ListEndpointsRequest* request,
                             v1::ListEndpointsResponse* response) override;
  grpc::Status CanaryStatus(grpc::ServerContext*, const v1::CanaryStatusRequest* request,
                            v1::CanaryStatusResponse* response) override;
  grpc::Status CanaryAction(grpc::ServerContext*, const v1::CanaryActionRequest* request,
                            v1::CanaryStatusResponse* response) override;
  grpc::Status ListGateways(grpc::ServerContext*, const v1::ListGatewaysRequest*,
                            v1::ListGatewaysResponse* response) override;

 private:
  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  const health::HealthTracker& health_;
  canary::CanaryManager& canaries_;
  const GatewayHub& hub_;
};

// Diagnostics as the API returns them.
void FillDiagnostics(const config::Diagnostics& diagnostics,
                     google::protobuf::RepeatedPtrField<v1::Diagnostic>& out);

}  // namespace sluice::api
