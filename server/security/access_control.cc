#include "server/security/access_control.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/auth_context.h"

namespace sluice::security {

absl::StatusOr<std::unique_ptr<AccessControl>> AccessControl::Create(Options options) {
  std::unique_ptr<AccessControl> control(new AccessControl(std::move(options)));
  if (!control->has_policy() && control->options_.require_tls) {
    // Without roles every certificate the CA signed could open decision streams and send
    // attempt reports (and eject endpoints with forged ones): refuse rather than guess.
    return absl::InvalidArgumentError(
        "mutual TLS needs --access-policy (which identity holds which role: read, write, "
        "canary, gateway, replica); scripts/make-certs.sh writes one");
  }
  if (!control->has_policy()) {
    AccessPolicy policy = AccessPolicy::AllowAll();
    policy.set_allowed_identities(control->options_.allowed_identities);
    absl::MutexLock lock(&control->mu_);
    control->policy_ = std::make_shared<const AccessPolicy>(std::move(policy));
    return control;
  }
  if (absl::Status s = control->Load(); !s.ok()) return s;
  return control;
}

absl::Status AccessControl::Load() {
  const std::string& path = options_.policy_path;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--access-policy ", path, ": ", strerror(errno)));
  }
  mtime_ns_ = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  size_ = st.st_size;
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat("--access-policy ", path, ": cannot read it"));
  }
  config::Diagnostics diagnostics;
  AccessPolicy policy = AccessPolicy::Parse(text, path, diagnostics);
  if (diagnostics.HasErrors()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--access-policy ", path, " is not valid:\n", diagnostics.ToString()));
  }
  policy.set_allowed_identities(options_.allowed_identities);
  absl::MutexLock lock(&mu_);
  policy_ = std::make_shared<const AccessPolicy>(std::move(policy));
  generation_.fetch_add(1, std::memory_order_release);
  return absl::OkStatus();
}

std::optional<absl::Status> AccessControl::ReloadIfChanged() {
  if (!has_policy()) return std::nullopt;
  struct stat st {};
  if (stat(options_.policy_path.c_str(), &st) != 0) {
    // A missing file is an edit in progress (or a mistake): the policy in force stays.
    if (size_ == -2) return std::nullopt;
    size_ = -2;
    return absl::NotFoundError(absl::StrCat("--access-policy ", options_.policy_path, ": ",
                                            strerror(errno), "; the previous policy holds"));
  }
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (mtime == mtime_ns_ && st.st_size == size_) return std::nullopt;
  absl::Status status = Load();
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat(status.message(), "\nthe previous policy holds"));
  }
  return status;
}

Caller AccessControl::CallerOf(const grpc::ServerContextBase& context) {
  Caller caller;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr) {
    for (const grpc::string_ref& type :
         auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
      // gRPC's TLS credentials say "tls", its older SSL credentials "ssl".
      if (type == "tls" || type == GRPC_SSL_TRANSPORT_SECURITY_TYPE) caller.tls = true;
    }
    if (caller.tls && auth->IsPeerAuthenticated()) {
      for (const char* property : {GRPC_PEER_URI_PROPERTY_NAME, GRPC_PEER_DNS_PROPERTY_NAME}) {
        for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
          caller.identities.emplace_back(value.data(), value.size());
        }
      }
    }
  }
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    absl::string_view value(it->second.data(), it->second.size());
    // RFC 6750's scheme, compared without case; anything else is not a token of ours.
    if (value.size() > 7 && absl::EqualsIgnoreCase(value.substr(0, 7), "Bearer ")) {
      caller.token = std::string(absl::StripAsciiWhitespace(value.substr(7)));
    } else {
      caller.token = std::string();  // present but malformed: matches no identity
    }
  }
  return caller;
}

Verdict AccessControl::Check(const grpc::ServerContextBase& context, Role role,
                             absl::string_view method) const {
  std::shared_ptr<const AccessPolicy> policy;
  {
    absl::MutexLock lock(&mu_);
    policy = policy_;
  }
  Caller caller = CallerOf(context);
  if (options_.require_tls && !caller.tls) {
    return {"anonymous", absl::UnauthenticatedError(
                             "this port serves health checks only (--health); decisions and "
                             "administration need mutual TLS on --listen")};
  }
  return policy->Authorize(caller, role, method);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace sluice::security
