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
#include "server/security/access_control.h"
#include "server/security/audit_log.h"
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
  grpc::Status History(grpc::ServerContext*, const v1::HistoryRequest* request,
                       v1::HistoryResponse* response) override;

  // Who may call which method (each call over gRPC is checked before its request is parsed),
  // and where changes are recorded. Either may be null: no checks, no record. Set before the
  // server starts.
  void SetSecurity(const security::AccessControl* access, security::AuditLog* audit) {
    access_ = access;
    audit_ = audit;
  }

  // The role each method needs: kWrite for Apply and Delete, kCanary for CanaryAction, kRead
  // for the rest.
  static security::Role RoleOf(absl::string_view method);

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
                            grpc::ServerContext* context, std::string bytes, Response* response,
                            const std::string& identity);
  // Records a change (Apply, Delete, CanaryAction) that ran, with its outcome; other requests
  // record nothing.
  template <typename Request, typename Response>
  void AuditChange(const Request& request, const Response& response, const grpc::Status& status,
                   const std::string& identity, uint64_t version_before);
  // Records a change refused before it ran, with what it asked for as far as `bytes` tell
  // ("" when they were not read): `outcome` "denied" (the caller lacked the role or was not
  // identified) or "failed" (too large, unparsable). Refusals of unidentified callers are
  // recorded at most once a second (they are counted in the log's metric each time), so that
  // anyone who can connect cannot flood the audit log.
  void AuditRefusal(absl::string_view method, const std::string& bytes, const std::string& identity,
                    absl::string_view outcome, absl::string_view detail);
  // RESOURCE_EXHAUSTED when a request of `bytes` bytes is over max_apply_bytes_.
  grpc::Status CheckSize(absl::string_view name, size_t bytes);

  store::ConfigStore& store_;
  ServerMetrics& metrics_;
  const health::HealthTracker& health_;
  canary::CanaryManager& canaries_;
  const GatewayHub& hub_;
  const uint64_t max_apply_bytes_;
  const security::AccessControl* access_ = nullptr;
  security::AuditLog* audit_ = nullptr;
  absl::Mutex anonymous_mu_;
  absl::Time last_anonymous_audit_ ABSL_GUARDED_BY(anonymous_mu_) = absl::InfinitePast();
  // By method name; filled by the constructor, read-only after.
  absl::flat_hash_map<std::string, RawCall> raw_calls_;
};

// Diagnostics as the API returns them.
void FillDiagnostics(const config::Diagnostics& diagnostics,
                     google::protobuf::RepeatedPtrField<v1::Diagnostic>& out);

}  // namespace sluice::api
