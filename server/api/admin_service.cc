#include "server/api/admin_service.h"

#include <cstdlib>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "lib/common/log.h"
#include "lib/common/sizes.h"
#include "lib/common/utf8.h"
#include "lib/config/host_names.h"
#include "lib/routing/decider.h"
#include "lib/routing/decision_proto.h"
#include "server/api/request_check.h"

namespace sluice::api {

using routing::CheckRequest;
using routing::FillDecision;
using routing::FillRouteTable;
using routing::ToAttributes;
namespace {

store::ResourceKey ToKey(const v1::ResourceRef& ref) {
  return store::ResourceKey{ref.kind(), ref.namespace_().empty() ? "default" : ref.namespace_(),
                            ref.name()};
}

void FillResource(const store::StoredResource& r, bool with_yaml, v1::Resource& out) {
  out.mutable_ref()->set_kind(r.key.kind);
  out.mutable_ref()->set_namespace_(r.key.namespace_name);
  out.mutable_ref()->set_name(r.key.name);
  out.set_source(r.source);
  if (with_yaml) out.set_yaml(r.yaml);
}

bool ValidKind(absl::string_view kind) {
  return kind == "VirtualService" || kind == "DestinationRule" || kind == "ServiceEntry" ||
         kind == "WorkloadEntry" || kind == "Canary";
}

// Apply's refusal of YAML that is not UTF-8 says more than DescribeUnparsable can: the file
// it came from and the line of its first bad byte, which is what its author goes to fix.
// Empty when no file's name or YAML is the problem (DescribeUnparsable says what is).
std::string ApplyFileProblem(const std::string& bytes) {
  using google::protobuf::UnknownField;
  using google::protobuf::UnknownFieldSet;
  UnknownFieldSet request;
  if (!ParseFields(bytes, request)) return "";
  int index = 0;
  for (int i = 0; i < request.field_count(); ++i) {
    const UnknownField& field = request.field(i);
    // ApplyRequest.files; with another wire type protobuf keeps it as an unknown field.
    if (field.number() != 1 || field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const int at = index++;
    UnknownFieldSet file;
    if (!ParseFields(field.length_delimited(), file)) return "";
    std::string name = "<apply>";
    const std::string* yaml = nullptr;
    for (int j = 0; j < file.field_count(); ++j) {
      const UnknownField& f = file.field(j);
      if (f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
      if (f.number() == 1) {  // ApplyFile.name
        if (const std::optional<InvalidUtf8> bad = FindInvalidUtf8(f.length_delimited())) {
          return absl::StrCat("ApplyRequest.files[", at, "].name: file ", at + 1, ": its name is ",
                              bad->ToString());
        }
        if (!f.length_delimited().empty()) name = f.length_delimited();
      } else if (f.number() == 2) {  // ApplyFile.yaml
        yaml = &f.length_delimited();
      }
    }
    if (yaml == nullptr) continue;
    if (const std::optional<InvalidUtf8> bad = FindInvalidUtf8(*yaml)) {
      return absl::StrCat(name, ":", bad->line, ": ", bad->ToString(),
                          "; YAML must be UTF-8 (ApplyRequest.files[", at, "].yaml)");
    }
  }
  return "";
}

// The request as one string: gRPC hands it over in slices.
std::optional<std::string> Flatten(grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return std::nullopt;
  buffer.Clear();
  std::string bytes;
  bytes.reserve(std::accumulate(slices.begin(), slices.end(), size_t{0},
                                [](size_t n, const grpc::Slice& s) { return n + s.size(); }));
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

// Method `name` of AdminService as admin.proto declares it, or null when it does not or
// when its request or response type is not the one given.
const google::protobuf::MethodDescriptor* FindAdminMethod(
    absl::string_view name, const google::protobuf::Descriptor* request,
    const google::protobuf::Descriptor* response) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::AdminService::service_full_name());
  if (service == nullptr) return nullptr;
  const google::protobuf::MethodDescriptor* method = service->FindMethodByName(std::string(name));
  if (method == nullptr || method->input_type() != request || method->output_type() != response) {
    return nullptr;
  }
  return method;
}

// How the log introduces a refused request: "apply refused: " as it always has, then
// "Get request refused: ".
std::string RefusalPrefix(absl::string_view method) {
  return method == "Apply" ? "apply refused: " : absl::StrCat(method, " request refused: ");
}

}  // namespace

grpc::Status AdminServiceImpl::CheckSize(absl::string_view name, size_t bytes) {
  if (bytes <= max_apply_bytes_) return grpc::Status::OK;
  // Apply carries YAML; the other requests are small, and one this big is no client's.
  const bool apply = name == "Apply";
  if (apply) metrics_.apply_errors_api.Increment();
  const std::string message = absl::StrCat(
      FormatBytes(bytes), apply ? " of YAML" : absl::StrCat(" of ", name, " request"),
      " exceeds the server's limit of ", FormatBytes(max_apply_bytes_), " (--max-apply-bytes)");
  LogWarning(RefusalPrefix(name), message);
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, message);
}

template <typename Request, typename Response>
grpc::Status AdminServiceImpl::ParseAndCall(absl::string_view name,
                                            TypedMethod<Request, Response> typed,
                                            grpc::ServerContext* context, std::string bytes,
                                            Response* response, const std::string& identity) {
  Request request;
  if (!request.ParseFromString(bytes)) {
    std::string problem;
    if constexpr (std::is_same_v<Request, v1::ApplyRequest>) {
      metrics_.apply_errors_api.Increment();
      problem = ApplyFileProblem(bytes);
    }
    if (problem.empty()) problem = DescribeUnparsable(bytes, Request::descriptor());
    LogWarning(RefusalPrefix(name), problem);
    AuditRefusal(name, "", identity, "failed", problem);
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, problem);
  }
  bytes = std::string();  // an Apply's YAML is not kept twice while it is applied
  const uint64_t version_before = store_.Current()->version();
  grpc::Status status = (this->*typed)(context, &request, response);
  AuditChange(request, *response, status, identity, version_before);
  return status;
}

namespace {

// The role each AdminService method needs. A method missing here stops the server at start
// (see the constructor): a new method gets a role by decision, never by default.
constexpr std::pair<absl::string_view, security::Role> kMethodRoles[] = {
    {"Apply", security::Role::kWrite},         {"Delete", security::Role::kWrite},
    {"CanaryAction", security::Role::kCanary}, {"Get", security::Role::kRead},
    {"List", security::Role::kRead},           {"Explain", security::Role::kRead},
    {"ListEndpoints", security::Role::kRead},  {"CanaryStatus", security::Role::kRead},
    {"ListGateways", security::Role::kRead},   {"History", security::Role::kRead},
};

const security::Role* FindRole(absl::string_view method) {
  for (const auto& [name, role] : kMethodRoles) {
    if (name == method) return &role;
  }
  return nullptr;
}

}  // namespace

security::Role AdminServiceImpl::RoleOf(absl::string_view method) {
  const security::Role* role = FindRole(method);
  if (role == nullptr) {
    LogError("AdminService.", method, " has no role (kMethodRoles)");
    std::abort();
  }
  return *role;
}

namespace {

std::string CanaryName(const v1::CanaryActionRequest& r) {
  return absl::StrCat("Canary/", r.namespace_().empty() ? "default" : r.namespace_(), "/",
                      r.name());
}

}  // namespace

template <typename Request, typename Response>
void AdminServiceImpl::AuditChange(const Request& request, const Response& response,
                                   const grpc::Status& status, const std::string& identity,
                                   uint64_t version_before) {
  constexpr bool kApply = std::is_same_v<Request, v1::ApplyRequest>;
  constexpr bool kDelete = std::is_same_v<Request, v1::DeleteRequest>;
  constexpr bool kCanary = std::is_same_v<Request, v1::CanaryActionRequest>;
  if constexpr (kApply || kDelete || kCanary) {
    if (audit_ == nullptr) return;
    v1::AuditEntry entry;
    entry.set_identity(identity.empty() ? "anonymous" : identity);
    entry.set_version_before(version_before);
    entry.set_version_after(store_.Current()->version());
    std::string outcome = status.ok() ? "applied" : "failed";
    if (!status.ok()) entry.set_detail(status.error_message());
    if constexpr (kApply) {
      if (request.dry_run()) return;  // changes nothing
      entry.set_action("apply");
      for (const std::string& key : response.changed()) entry.add_resources(key);
      if (response.changed_size() == 0) {
        for (const v1::ApplyFile& f : request.files()) {
          entry.add_resources(absl::StrCat("file:", f.name()));
        }
      }
      if (status.ok() && !response.applied()) {
        const auto errors = std::count_if(
            response.diagnostics().begin(), response.diagnostics().end(),
            [](const v1::Diagnostic& d) { return d.severity() == v1::Diagnostic::ERROR; });
        outcome = errors > 0 ? "invalid" : "unchanged";
        if (errors > 0) entry.set_detail(absl::StrCat(errors, " error(s); nothing changed"));
      }
      if (status.ok()) entry.set_version_after(response.version());
    } else if constexpr (kDelete) {
      entry.set_action("delete");
      entry.add_resources(ToKey(request.ref()).ToString());
      if (status.ok()) entry.set_version_after(response.version());
    } else {
      entry.set_action(absl::StrCat("canary-", request.action()));
      entry.add_resources(CanaryName(request));
      if (request.action() == "set-weight") {
        entry.set_detail(absl::StrCat("weight ", request.weight(),
                                      status.ok() ? "" : absl::StrCat(": ", entry.detail())));
      }
    }
    entry.set_outcome(outcome);
    audit_->Record(std::move(entry));
  }
}

void AdminServiceImpl::AuditRefusal(absl::string_view method, const std::string& bytes,
                                    const std::string& identity, absl::string_view outcome,
                                    absl::string_view detail) {
  if (audit_ == nullptr || RoleOf(method) == security::Role::kRead) return;
  v1::AuditEntry entry;
  entry.set_identity(identity.empty() ? "anonymous" : identity);
  entry.set_version_before(store_.Current()->version());
  entry.set_version_after(entry.version_before());
  entry.set_outcome(std::string(outcome));
  entry.set_detail(std::string(detail));
  if (entry.identity() == "anonymous") {
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&anonymous_mu_);
    if (now - last_anonymous_audit_ < absl::Seconds(1)) {
      audit_->CountOnly(entry.identity(),
                        method == "Apply"    ? "apply"
                        : method == "Delete" ? "delete"
                                             : "canary",
                        outcome);
      return;
    }
    last_anonymous_audit_ = now;
  }
  // What was asked, read only as far as the protobuf goes: an apply's YAML stays unparsed.
  if (method == "Apply") {
    v1::ApplyRequest request;
    const bool parsed = bytes.size() <= max_apply_bytes_ && request.ParseFromString(bytes);
    entry.set_action(parsed && request.dry_run() ? "dry-run" : "apply");
    if (parsed) {
      for (const v1::ApplyFile& f : request.files()) {
        entry.add_resources(absl::StrCat("file:", f.name()));
      }
    }
  } else if (method == "Delete") {
    entry.set_action("delete");
    v1::DeleteRequest request;
    if (request.ParseFromString(bytes)) entry.add_resources(ToKey(request.ref()).ToString());
  } else {
    v1::CanaryActionRequest request;
    const bool parsed = request.ParseFromString(bytes);
    entry.set_action(parsed ? absl::StrCat("canary-", request.action()) : "canary");
    if (parsed) entry.add_resources(CanaryName(request));
  }
  audit_->Record(std::move(entry));
}

template <typename Request, typename Response>
void AdminServiceImpl::ServeRaw(absl::string_view name, TypedMethod<Request, Response> typed) {
  const google::protobuf::MethodDescriptor* method =
      FindAdminMethod(name, Request::descriptor(), Response::descriptor());
  if (method == nullptr) {
    // Only a change to admin.proto that this file did not follow gets here.
    LogError("AdminService has no method ", name, "(", Request::descriptor()->full_name(),
             ") returns (", Response::descriptor()->full_name(), ")");
    std::abort();
  }
  const std::string method_name(name);
  // The handler is the kind gRPC's generated WithStreamedUnaryMethod_<name> installs: it
  // hands the request over unparsed, and writes the one response.
  MarkMethodStreamed(
      method->index(),
      new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, Response>(
          [this, typed, method_name](
              grpc::ServerContext* context,
              grpc::ServerUnaryStreamer<grpc::ByteBuffer, Response>* stream) -> grpc::Status {
            grpc::ByteBuffer buffer;
            if (!stream->Read(&buffer)) {
              return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  absl::StrCat("no ", Request::descriptor()->name(), " arrived"));
            }
            security::Verdict verdict{"anonymous", absl::OkStatus()};
            if (access_ != nullptr) {
              verdict = access_->Check(*context, RoleOf(method_name), method_name);
              if (!verdict.status.ok()) {
                LogWarning(RefusalPrefix(method_name), verdict.status.message());
                if (RoleOf(method_name) != security::Role::kRead && audit_ != nullptr) {
                  // What was asked, when small enough to read (never past the size limit).
                  std::string bytes;
                  if (buffer.Length() <= max_apply_bytes_) bytes = Flatten(buffer).value_or("");
                  AuditRefusal(method_name, bytes, verdict.identity, "denied",
                               verdict.status.message());
                }
                return security::ToGrpcStatus(verdict.status);
              }
            }
            // gRPC has received it whole (its own size limit is not in force, see
            // server/main.cc); nothing has parsed or copied it yet.
            if (grpc::Status status = CheckSize(method_name, buffer.Length()); !status.ok()) {
              AuditRefusal(method_name, "", verdict.identity, "failed", status.error_message());
              return status;
            }
            std::optional<std::string> bytes = Flatten(buffer);
            if (!bytes) {
              return grpc::Status(
                  grpc::StatusCode::INTERNAL,
                  absl::StrCat("the ", Request::descriptor()->name(), " could not be read"));
            }
            Response response;
            grpc::Status status = ParseAndCall(method_name, typed, context, *std::move(bytes),
                                               &response, verdict.identity);
            if (status.ok() && !stream->Write(response)) {
              return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
            }
            return status;
          }));
  raw_calls_[method_name] = [this, typed, method_name](grpc::ServerContext* context,
                                                       const std::string& bytes,
                                                       std::string* out) -> grpc::Status {
    if (grpc::Status status = CheckSize(method_name, bytes.size()); !status.ok()) return status;
    Response response;
    grpc::Status status = ParseAndCall(method_name, typed, context, bytes, &response, "");
    if (status.ok()) response.SerializeToString(out);
    return status;
  };
}

AdminServiceImpl::AdminServiceImpl(store::ConfigStore& store, ServerMetrics& metrics,
                                   const health::HealthTracker& health,
                                   canary::CanaryManager& canaries, const GatewayHub& hub,
                                   uint64_t max_apply_bytes)
    : store_(store),
      metrics_(metrics),
      health_(health),
      canaries_(canaries),
      hub_(hub),
      max_apply_bytes_(max_apply_bytes) {
  ServeRaw("Apply", &AdminServiceImpl::Apply);
  ServeRaw("Get", &AdminServiceImpl::Get);
  ServeRaw("List", &AdminServiceImpl::List);
  ServeRaw("Delete", &AdminServiceImpl::Delete);
  ServeRaw("Explain", &AdminServiceImpl::Explain);
  ServeRaw("ListEndpoints", &AdminServiceImpl::ListEndpoints);
  ServeRaw("CanaryStatus", &AdminServiceImpl::CanaryStatus);
  ServeRaw("CanaryAction", &AdminServiceImpl::CanaryAction);
  ServeRaw("ListGateways", &AdminServiceImpl::ListGateways);
  ServeRaw("History", &AdminServiceImpl::History);
  // A method added to admin.proto and not served here would answer INTERNAL with no
  // message again: refuse to start instead.
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::AdminService::service_full_name());
  for (int i = 0; i < service->method_count(); ++i) {
    if (FindRole(service->method(i)->name()) == nullptr) {
      LogError("AdminService.", service->method(i)->name(), " has no role (kMethodRoles)");
      std::abort();
    }
    if (!raw_calls_.contains(service->method(i)->name())) {
      LogError("AdminService.", service->method(i)->name(), " is not served raw (ServeRaw)");
      std::abort();
    }
  }
}

grpc::Status AdminServiceImpl::CallRaw(absl::string_view method, const std::string& request,
                                       std::string* response) {
  const auto it = raw_calls_.find(method);
  if (it == raw_calls_.end()) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        absl::StrCat("AdminService has no method ", method));
  }
  grpc::ServerContext context;
  return it->second(&context, request, response);
}

void FillDiagnostics(const config::Diagnostics& diagnostics,
                     google::protobuf::RepeatedPtrField<v1::Diagnostic>& out) {
  for (const config::Diagnostic& d : diagnostics.all()) {
    v1::Diagnostic* p = out.Add();
    p->set_severity(d.severity == config::Severity::kError     ? v1::Diagnostic::ERROR
                    : d.severity == config::Severity::kWarning ? v1::Diagnostic::WARNING
                                                               : v1::Diagnostic::NOTICE);
    p->set_file(d.where.file);
    p->set_line(d.where.line);
    p->set_field_path(d.field_path);
    p->set_message(d.message);
    p->set_text(d.ToString());
  }
}

grpc::Status AdminServiceImpl::Apply(grpc::ServerContext*, const v1::ApplyRequest* request,
                                     v1::ApplyResponse* response) {
  std::vector<store::ConfigStore::File> files;
  for (const v1::ApplyFile& f : request->files()) files.push_back({f.name(), f.yaml()});
  store::ChangeResult result = store_.Apply(files, request->dry_run());
  if (!result.refused.ok()) {
    metrics_.apply_errors_api.Increment();
    LogWarning("apply refused: ", result.refused.message());
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(result.refused.message(), " (--max-apply-resources)"));
  }
  response->set_applied(result.applied);
  response->set_version(result.version);
  FillDiagnostics(result.diagnostics, *response->mutable_diagnostics());
  for (const std::string& key : result.changed) response->add_changed(key);
  if (result.diagnostics.HasErrors()) {
    metrics_.apply_errors_api.Increment();
    LogWarning("apply rejected (", result.diagnostics.error_count(),
               " error(s)); configuration version ", result.version, " keeps serving");
  } else if (result.applied) {
    metrics_.applies_ok.Increment();
    LogInfo("applied ", absl::StrJoin(result.changed, ", "), "; configuration version ",
            result.version);
  }
  // A rejected change is a normal answer carrying its diagnostics, not an RPC failure.
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::Get(grpc::ServerContext*, const v1::GetRequest* request,
                                   v1::GetResponse* response) {
  const store::ResourceKey key = ToKey(request->ref());
  if (!ValidKind(key.kind)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("unknown kind \"", key.kind,
                                     "\" (VirtualService, DestinationRule, ServiceEntry, "
                                     "WorkloadEntry or Canary)"));
  }
  std::optional<store::StoredResource> r = store_.Get(key);
  if (!r)
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat(key.ToString(), " not found"));
  FillResource(*r, true, *response->mutable_resource());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::List(grpc::ServerContext*, const v1::ListRequest* request,
                                    v1::ListResponse* response) {
  if (!request->kind().empty() && !ValidKind(request->kind())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("unknown kind \"", request->kind(), "\""));
  }
  response->set_version(store_.version());
  for (const store::StoredResource& r : store_.List(request->kind())) {
    FillResource(r, false, *response->add_resources());
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::Delete(grpc::ServerContext*, const v1::DeleteRequest* request,
                                      v1::DeleteResponse* response) {
  const store::ResourceKey key = ToKey(request->ref());
  store::ChangeResult result = store_.Delete(key);
  response->set_version(result.version);
  if (!result.applied) {
    const std::string message = result.diagnostics.ToString();
    const bool not_found = absl::StrContains(message, " not found");
    return grpc::Status(
        not_found ? grpc::StatusCode::NOT_FOUND : grpc::StatusCode::FAILED_PRECONDITION, message);
  }
  LogInfo("deleted ", key.ToString(), "; configuration version ", result.version);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::Explain(grpc::ServerContext*, const v1::DecideRequest* request,
                                       v1::ExplainResponse* response) {
  if (absl::Status status = CheckRequest(*request); !status.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(status.message()));
  }
  const std::shared_ptr<const routing::Snapshot> snapshot = store_.Current();
  routing::RequestAttributes attributes;
  ToAttributes(*request, attributes);
  absl::BitGen gen;
  routing::DecisionTrace trace;
  const routing::Decision d = routing::Decide(*snapshot, attributes, gen, &trace);
  FillDecision(d, *snapshot, /*details=*/true, *response->mutable_decision());
  response->mutable_decision()->set_id(request->id());
  response->set_virtual_host(trace.virtual_host);
  for (const routing::DecisionTrace::Step& step : trace.steps) {
    v1::ExplainStep* s = response->add_steps();
    s->set_route(step.route);
    s->set_match(step.match);
    s->set_matched(step.matched);
    s->set_reason(step.reason);
  }
  response->set_weight_draw(trace.weight_draw);
  response->set_fault_draw(trace.fault_draw);
  response->set_endpoint_choice(trace.endpoint_choice);
  std::string summary;
  switch (d.kind) {
    case routing::Decision::Kind::kForward:
      if (d.abort_http_status != 0 || !d.abort_grpc_status.empty()) {
        summary = absl::StrCat(
            "abort with ",
            d.abort_http_status != 0 ? absl::StrCat(d.abort_http_status) : d.abort_grpc_status,
            " (fault injection, flag FI); nothing is sent upstream");
      } else {
        summary = absl::StrCat("forward to ", d.cluster->endpoints[d.endpoint_index].id, " (",
                               d.cluster->name, ") by route ", d.route->display_name);
        if (d.delay > absl::ZeroDuration()) {
          absl::StrAppend(&summary, " after an injected delay of ", absl::FormatDuration(d.delay),
                          " (flag DI)");
        }
      }
      break;
    case routing::Decision::Kind::kRedirect:
      summary = absl::StrCat("redirect ", d.status, " to ", d.location);
      break;
    case routing::Decision::Kind::kDirectResponse:
      summary = absl::StrCat(
          "answer ", d.status,
          d.response_flags[0] ? absl::StrCat(" with flag ", d.response_flags) : std::string());
      break;
  }
  response->set_summary(summary);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListEndpoints(grpc::ServerContext*,
                                             const v1::ListEndpointsRequest* request,
                                             v1::ListEndpointsResponse* response) {
  const std::shared_ptr<const routing::Snapshot> snapshot = store_.Current();
  response->set_version(snapshot->version());
  // Accept any name a client could use for the host: short, namespaced or full.
  std::string host;
  if (!request->host().empty()) {
    const routing::VirtualHost* vhost = snapshot->FindVirtualHost(request->host());
    host = vhost != nullptr ? vhost->name : config::ResolveHost(request->host(), "default");
  }
  for (const auto& cluster : snapshot->clusters()) {
    if (!host.empty() && cluster->host != host) continue;
    v1::ClusterEndpoints* c = response->add_clusters();
    c->set_cluster(cluster->name);
    c->set_host(cluster->host);
    c->set_subset(cluster->subset);
    c->set_load_balancer(routing::LoadBalancerName(cluster->policy.load_balancer));
    c->set_min_health_percent(cluster->policy.outlier.healthy_panic_threshold);
    const std::optional<health::ClusterHealth> state = health_.Describe(cluster->name);
    if (state) {
      c->set_outlier_detection(state->outlier_detection);
      c->set_ejected(static_cast<uint32_t>(state->ejected));
      c->set_ejection_overflows(state->overflows);
    }
    for (size_t i = 0; i < cluster->endpoints.size(); ++i) {
      const routing::Endpoint& e = cluster->endpoints[i];
      v1::EndpointState* s = c->add_endpoints();
      s->set_address(e.address);
      s->set_port(e.port);
      for (const auto& [k, v] : e.labels) (*s->mutable_labels())[k] = v;
      s->set_in_flight(e.runtime->in_flight.load(std::memory_order_relaxed));
      s->set_health(e.runtime->ejected.load(std::memory_order_relaxed) ? "ejected" : "healthy");
      // The tracker follows the same snapshot order; a change racing this call shows
      // up as a missing or mismatched id, and that endpoint's details are left out.
      if (!state || i >= state->endpoints.size() || state->endpoints[i].id != e.id) continue;
      const health::EndpointHealth& h = state->endpoints[i];
      if (h.ejected) {
        s->set_ejection_reason(health::EjectionReasonName(h.reason));
        s->set_ejected_since_unix_ms(absl::ToUnixMillis(h.ejected_since));
        s->set_ejected_until_unix_ms(absl::ToUnixMillis(h.ejected_until));
      }
      s->set_ejections(h.ejections);
      s->set_ejection_multiplier(h.multiplier);
      s->set_consecutive_5xx(h.consecutive_5xx);
      s->set_consecutive_gateway_errors(h.consecutive_gateway_errors);
      s->set_consecutive_local_origin_failures(h.consecutive_local_origin_failures);
      s->set_recent_attempts(h.recent.attempts);
      s->set_recent_failures(h.recent.failures);
    }
  }
  if (!host.empty() && response->clusters_size() == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no service ", request->host(), " (", host, ")"));
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CanaryStatus(grpc::ServerContext*,
                                            const v1::CanaryStatusRequest* request,
                                            v1::CanaryStatusResponse* response) {
  const std::string ns = request->namespace_().empty() ? "default" : request->namespace_();
  *response = canaries_.Status(request->name(), ns);
  if (!request->name().empty() && response->canaries_size() == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no Canary ", ns, "/", request->name()));
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CanaryAction(grpc::ServerContext*,
                                            const v1::CanaryActionRequest* request,
                                            v1::CanaryStatusResponse* response) {
  absl::StatusOr<v1::CanaryStatusResponse> result = canaries_.Act(*request);
  if (!result.ok()) {
    const grpc::StatusCode code = absl::IsNotFound(result.status()) ? grpc::StatusCode::NOT_FOUND
                                  : absl::IsInvalidArgument(result.status())
                                      ? grpc::StatusCode::INVALID_ARGUMENT
                                      : grpc::StatusCode::FAILED_PRECONDITION;
    return grpc::Status(code, std::string(result.status().message()));
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListGateways(grpc::ServerContext*, const v1::ListGatewaysRequest*,
                                            v1::ListGatewaysResponse* response) {
  *response = hub_.List();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::History(grpc::ServerContext*, const v1::HistoryRequest* request,
                                       v1::HistoryResponse* response) {
  if (audit_ == nullptr) return grpc::Status::OK;
  const size_t limit = request->limit() == 0 ? 50 : request->limit();
  for (v1::AuditEntry& entry : audit_->Recent(limit)) *response->add_entries() = std::move(entry);
  return grpc::Status::OK;
}

}  // namespace sluice::api
