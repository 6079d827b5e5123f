#include "server/security/access_policy.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/config/yaml_reader.h"

namespace sluice::security {
namespace {

constexpr Role kAllRoles[] = {Role::kRead, Role::kWrite, Role::kCanary, Role::kGateway,
                              Role::kReplica};

std::optional<Role> RoleFromName(absl::string_view name) {
  for (Role role : kAllRoles) {
    if (RoleName(role) == name) return role;
  }
  return std::nullopt;
}

std::string RoleList(const std::vector<Role>& roles) {
  if (roles.empty()) return "none";
  return absl::StrJoin(roles, ", ",
                       [](std::string* out, Role r) { absl::StrAppend(out, RoleName(r)); });
}

bool Holds(const std::vector<Role>& roles, Role role) {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool EqualInConstantTime(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kWrite:
      return "write";
    case Role::kCanary:
      return "canary";
    case Role::kGateway:
      return "gateway";
    case Role::kReplica:
      return "replica";
  }
  return "?";
}

std::string Sha256Hex(absl::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

bool IdentityMatches(absl::string_view pattern, absl::string_view identity) {
  if (absl::EndsWith(pattern, "*")) {
    return absl::StartsWith(identity, pattern.substr(0, pattern.size() - 1));
  }
  return pattern == identity;
}

AccessPolicy AccessPolicy::AllowAll() {
  AccessPolicy policy;
  policy.allow_all_ = true;
  return policy;
}

AccessPolicy AccessPolicy::Parse(absl::string_view text, absl::string_view file,
                                 config::Diagnostics& diagnostics) {
  AccessPolicy policy;
  config::ParseContext ctx{std::string(file), &diagnostics, 0};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    diagnostics.Error({std::string(file), e.mark.line + 1}, "",
                      absl::StrCat("not valid YAML: ", e.msg));
    return policy;
  }
  config::MapReader top({root, ""}, ctx);
  if (!top.ok()) return policy;
  std::optional<config::Field> identities = top.Get("identities");
  if (!identities) {
    ctx.Error(root, "identities", "missing: list who holds which roles");
    return policy;
  }
  config::ForEachItem(*identities, ctx, [&](const config::Field& item, size_t) {
    config::MapReader reader(item, ctx);
    if (!reader.ok()) return;
    Entry entry;
    if (auto name = reader.Get("name")) {
      if (auto s = config::ReadString(*name, ctx)) entry.name = *s;
      if (entry.name.empty()) ctx.Error(name->node, name->path, "must not be empty");
    } else {
      ctx.Error(item.node, config::JoinPath(item.path, "name"),
                "missing: a client certificate's SAN (URI or DNS name, '*' at the end for a "
                "prefix) or, with tokenSha256, the token holder's name");
    }
    if (auto token = reader.Get("tokenSha256")) {
      if (auto s = config::ReadString(*token, ctx)) {
        entry.token_sha256 = absl::AsciiStrToLower(*s);
        const bool hex = entry.token_sha256.size() == 64 &&
                         std::all_of(entry.token_sha256.begin(), entry.token_sha256.end(),
                                     [](char c) { return absl::ascii_isxdigit(c); });
        // The value itself stays out of the message: it may be a token pasted by mistake.
        if (!hex) {
          ctx.Error(token->node, token->path,
                    "must be 64 hexadecimal digits, the SHA-256 of the token (sha256sum "
                    "TOKEN_FILE), not the token itself");
        }
      }
    }
    if (auto roles = reader.Get("roles")) {
      config::ForEachItem(*roles, ctx, [&](const config::Field& role_field, size_t) {
        std::optional<std::string> name = config::ReadString(role_field, ctx);
        if (!name) return;
        if (std::optional<Role> role = RoleFromName(*name)) {
          if (!Holds(entry.roles, *role)) entry.roles.push_back(*role);
        } else {
          ctx.Error(role_field.node, role_field.path,
                    absl::StrCat("unknown role \"", *name,
                                 "\" (roles: read, write, canary, gateway, replica)"));
        }
      });
    } else {
      ctx.Error(item.node, config::JoinPath(item.path, "roles"),
                "missing: the roles this identity holds (read, write, canary, gateway, replica)");
    }
    policy.entries_.push_back(std::move(entry));
  });
  return policy;
}

bool AccessPolicy::Allowed(absl::string_view identity) const {
  return allowed_.empty() ||
         std::any_of(allowed_.begin(), allowed_.end(),
                     [&](const std::string& p) { return IdentityMatches(p, identity); });
}

Verdict AccessPolicy::Authorize(const Caller& caller, Role role, absl::string_view method) const {
  const std::string needs = absl::StrCat("role '", RoleName(role), "', which ", method, " needs");
  if (caller.token.has_value()) {
    if (allow_all_) {
      return {"anonymous",
              absl::UnauthenticatedError(
                  "a bearer token was sent, but this server has no --access-policy to check "
                  "tokens against")};
    }
    const std::string hash = Sha256Hex(*caller.token);
    for (const Entry& entry : entries_) {
      if (entry.token_sha256.empty() || !EqualInConstantTime(entry.token_sha256, hash)) continue;
      if (!Allowed(entry.name)) {
        return {entry.name, absl::PermissionDeniedError(
                                absl::StrCat("token holder \"", entry.name,
                                             "\" is not in the server's --allow-identity list"))};
      }
      if (Holds(entry.roles, role)) return {entry.name, absl::OkStatus()};
      return {entry.name, absl::PermissionDeniedError(
                              absl::StrCat("token holder \"", entry.name, "\" lacks ", needs,
                                           " (it holds: ", RoleList(entry.roles), ")"))};
    }
    return {"anonymous", absl::UnauthenticatedError(
                             "the bearer token matches no identity of the access policy")};
  }
  if (caller.identities.empty()) {
    if (!caller.tls && allow_all_) return {"anonymous", absl::OkStatus()};
    return {"anonymous",
            absl::UnauthenticatedError(
                caller.tls ? "no client certificate and no bearer token: the call has no "
                             "identity (sluicectl: --tls-cert and --tls-key, or --token-file)"
                           : "no identity: a call over plaintext cannot be identified")};
  }
  // Only the SANs the allow-list admits count, for roles and for the name in answers and
  // the audit log (the first of them the policy knows).
  std::vector<std::string> admitted;
  for (const std::string& id : caller.identities) {
    if (Allowed(id)) admitted.push_back(id);
  }
  if (admitted.empty()) {
    return {caller.identities.front(), absl::PermissionDeniedError(absl::StrCat(
                                           "client identity \"", caller.identities.front(),
                                           "\" is not in the server's --allow-identity list"))};
  }
  std::string identity = admitted.front();
  if (allow_all_) return {identity, absl::OkStatus()};
  std::vector<Role> held;
  bool known = false;
  for (const std::string& id : admitted) {
    for (const Entry& entry : entries_) {
      if (!entry.token_sha256.empty() || !IdentityMatches(entry.name, id)) continue;
      if (!known) identity = id;
      known = true;
      for (Role r : entry.roles) {
        if (!Holds(held, r)) held.push_back(r);
      }
    }
  }
  if (Holds(held, role)) return {identity, absl::OkStatus()};
  if (!known) {
    return {identity, absl::PermissionDeniedError(
                          absl::StrCat("client identity \"", identity,
                                       "\" has no role in the access policy; it lacks ", needs))};
  }
  return {identity,
          absl::PermissionDeniedError(absl::StrCat("client identity \"", identity, "\" lacks ",
                                                   needs, " (it holds: ", RoleList(held), ")"))};
}

}  // namespace sluice::security
