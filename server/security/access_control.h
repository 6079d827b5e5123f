#pragma once

// The server's gate in front of every RPC: who the caller is (from the TLS handshake or a
// bearer token) and whether the access policy gives it the role the method needs. The policy
// file is re-read when it changes; a bad edit keeps the previous policy.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "lib/config/diagnostics.h"
#include "server/security/access_policy.h"

namespace sluice::security {

class AccessControl {
 public:
  struct Options {
    // --access-policy; empty (plaintext only): AllowAll.
    std::string policy_path;
    std::vector<std::string> allowed_identities;  // --allow-identity
    // The server runs mutual TLS: a call that arrived without TLS (on the --health port,
    // which serves probes in plaintext) is refused whatever the policy says.
    bool require_tls = false;
  };
  // Reads the policy file; its errors (with file, line and field path) refuse the start.
  static absl::StatusOr<std::unique_ptr<AccessControl>> Create(Options options);

  // Re-reads the policy file when its modification time or size changed. Returns nothing
  // when unchanged; else the outcome: OK (the new policy holds) or the file's errors (the
  // previous policy keeps holding).
  std::optional<absl::Status> ReloadIfChanged();

  // The caller of `context`'s call, and whether it may make a call needing `role`.
  Verdict Check(const grpc::ServerContextBase& context, Role role, absl::string_view method) const;

  // The caller as the transport tells it: SANs of a verified client certificate, the bearer
  // token of the `authorization` metadata.
  static Caller CallerOf(const grpc::ServerContextBase& context);

  // Whether a policy file is in use (rather than every verified caller holding every role).
  bool has_policy() const { return !options_.policy_path.empty(); }

  // Goes up by one with each policy installed: a long-lived call (a decision stream) checks
  // its caller again when it changed.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  explicit AccessControl(Options options) : options_(std::move(options)) {}
  // Reads and parses the file; on success installs the policy.
  absl::Status Load();

  const Options options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const AccessPolicy> policy_ ABSL_GUARDED_BY(mu_);
  // The file as last read: modification time (ns) and size.
  std::atomic<uint64_t> generation_{0};
  int64_t mtime_ns_ = -1;
  int64_t size_ = -1;
};

// A refusal as gRPC returns it.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sluice::security
