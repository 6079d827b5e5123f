#pragma once

#include <cstdint>

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
  // An Apply request larger than `max_apply_bytes` is refused (RESOURCE_EXHAUSTED) unread.
  AdminServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                   const health::HealthTracker& health, canary::CanaryManager& canaries,
                   const GatewayHub& hub, uint64_t max_apply_bytes = 16 << 20);

  // v1::AdminService. gRPC calls Apply through ApplyBytes.
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
  // Apply as it arrives: a request over max_apply_bytes_ is refused before it is parsed, and
  // one protobuf would refuse (strings that are not UTF-8, or no protobuf message at all) is
  // answered INVALID_ARGUMENT naming the problem, the file and the place, where gRPC's
  // generated handler answers INTERNAL with no message.
  grpc::Status ApplyBytes(grpc::ServerContext* context,
                          grpc::ServerUnaryStreamer<grpc::ByteBuffer, v1::ApplyResponse>* stream);

  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  const health::HealthTracker& health_;
  canary::CanaryManager& canaries_;
  const GatewayHub& hub_;
  const uint64_t max_apply_bytes_;
};

// Diagnostics as the API returns them.
void FillDiagnostics(const config::Diagnostics& diagnostics,
                     google::protobuf::RepeatedPtrField<v1::Diagnostic>& out);

}  // namespace sluice::api
