#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
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
  // A request larger than `max_apply_bytes` (in practice, an Apply) is refused
  // (RESOURCE_EXHAUSTED) unparsed.
  AdminServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                   const health::HealthTracker& health, canary::CanaryManager& canaries,
                   const GatewayHub& hub, uint64_t max_apply_bytes = 16 << 20);

  // What gRPC does with `request` sent to `method` (its name in admin.proto: "Get"), the
  // same steps on the same bytes without the network: for tests and fuzzers. On success
  // `response` holds the serialized response. UNIMPLEMENTED for a method it does not know.
  grpc::Status CallRaw(absl::string_view method, const std::string& request, std::string* response);

  // v1::AdminService. gRPC calls each of them through the raw handler ServeRaw installs.
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
  template <typename Request, typename Response>
  using TypedMethod = grpc::Status (AdminServiceImpl::*)(grpc::ServerContext*, const Request*,
                                                         Response*);
  // One request's bytes through a method: parsed, then handed to the typed method.
  using RawCall =
      std::function<grpc::Status(grpc::ServerContext*, const std::string&, std::string*)>;

  // Serves method `name` of admin.proto on the request as it arrives (grpc::ByteBuffer)
  // rather than through gRPC's generated handler, which answers a request protobuf refuses
  // (a string that is not UTF-8, bytes that are no protobuf message) INTERNAL with no
  // message. This one answers INVALID_ARGUMENT saying what is wrong and in which field
  // (DescribeUnparsable), then calls `typed` as the generated handler would. The method's
  // index comes from admin.proto's descriptor by name, and its request and response types
  // are checked against Request and Response, so a reordered or changed .proto cannot
  // route requests to the wrong method.
  template <typename Request, typename Response>
  void ServeRaw(absl::string_view name, TypedMethod<Request, Response> typed);
  // Parses `bytes` as a Request and calls `typed`, or says why they are refused.
  template <typename Request, typename Response>
  grpc::Status ParseAndCall(absl::string_view name, TypedMethod<Request, Response> typed,
                            grpc::ServerContext* context, std::string bytes, Response* response);
  // RESOURCE_EXHAUSTED when a request of `bytes` bytes is over max_apply_bytes_.
  grpc::Status CheckSize(absl::string_view name, size_t bytes);

  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  const health::HealthTracker& health_;
  canary::CanaryManager& canaries_;
  const GatewayHub& hub_;
  const uint64_t max_apply_bytes_;
  // By method name; filled by the constructor, read-only after.
  absl::flat_hash_map<std::string, RawCall> raw_calls_;
};

// Diagnostics as the API returns them.
void FillDiagnostics(const config::Diagnostics& diagnostics,
                     google::protobuf::RepeatedPtrField<v1::Diagnostic>& out);

}  // namespace sluice::api
