#pragma once

// Who may do what on sluice-server: identities (a client certificate's SAN, or a bearer token)
// and their roles, read from the file --access-policy names. Pure: no file or gRPC access.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/config/diagnostics.h"

namespace sluice::security {

// What a call needs. Each AdminService method needs one of the first three; DecisionService
// (decisions and attempt reports) needs kGateway, and only gateways should hold it.
// kReplica: another sluice-server of the same etcd prefix, forwarding its gateways' reports.
enum class Role { kRead, kWrite, kCanary, kGateway, kReplica };
absl::string_view RoleName(Role role);

// Who is calling, as the transport tells it.
struct Caller {
  // The verified client certificate's SANs (URIs such as SPIFFE IDs, and DNS names); empty
  // without a certificate.
  std::vector<std::string> identities;
  // The bearer token of the call's `authorization` metadata, if any.
  std::optional<std::string> token;
  // Whether the call came over TLS (without, a caller can only be identified by a token).
  bool tls = false;
};

// The outcome of a check: who the caller was found to be (for the audit log and messages;
// "anonymous" over plaintext without a token) and whether the call may go on. A refusal is
// UNAUTHENTICATED (nobody could be identified) or PERMISSION_DENIED (someone was, without the
// role), its message naming the identity and the role.
struct Verdict {
  std::string identity;
  absl::Status status;
};

class AccessPolicy {
 public:
  struct Entry {
    // A SAN to match (exact, or a prefix when it ends in '*'), or, with token_sha256, the
    // name a token's holder goes by.
    std::string name;
    std::string token_sha256;  // lowercase hex; empty for certificate identities
    std::vector<Role> roles;
  };

  // No policy file: every caller the transport let in holds every role (mutual TLS: whoever
  // the CA vouches for; plaintext: anyone).
  static AccessPolicy AllowAll();
  // Parses a policy file's text; errors and warnings go to `diagnostics` with file, line and
  // field path. On errors the result is not to be used.
  static AccessPolicy Parse(absl::string_view text, absl::string_view file,
                            config::Diagnostics& diagnostics);

  // Restricts every call to callers one of whose identities matches one of `patterns`
  // (exact, or prefix with a trailing '*'), whatever their roles: --allow-identity.
  void set_allowed_identities(std::vector<std::string> patterns) { allowed_ = std::move(patterns); }

  // Whether `caller` may make a call that needs `role`. `method` ("Apply") goes into the
  // message of a refusal.
  Verdict Authorize(const Caller& caller, Role role, absl::string_view method) const;

  const std::vector<Entry>& entries() const { return entries_; }
  bool allow_all() const { return allow_all_; }

 private:
  // Whether --allow-identity admits `identity` (a SAN or a token holder's name).
  bool Allowed(absl::string_view identity) const;

  bool allow_all_ = false;
  std::vector<Entry> entries_;
  std::vector<std::string> allowed_;
};

// Lowercase hex SHA-256 of `text` (how a policy file stores tokens).
std::string Sha256Hex(absl::string_view text);

// Whether `identity` matches `pattern`: equal, or `pattern` ends in '*' and the rest is a
// prefix of `identity`.
bool IdentityMatches(absl::string_view pattern, absl::string_view identity);

}  // namespace sluice::security
