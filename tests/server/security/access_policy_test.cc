#include "server/security/access_policy.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::security {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "s3cret-token";

AccessPolicy Parse(const std::string& text, config::Diagnostics* out = nullptr) {
  config::Diagnostics diagnostics;
  AccessPolicy policy = AccessPolicy::Parse(text, "policy.yaml", diagnostics);
  if (out != nullptr) *out = diagnostics;
  EXPECT_TRUE(out != nullptr || !diagnostics.HasErrors()) << diagnostics.ToString();
  return policy;
}

std::string Policy() {
  return "identities:\n"
         "  - name: spiffe://t/gateway\n"
         "    roles: [gateway]\n"
         "  - name: spiffe://t/ops/*\n"
         "    roles: [read, canary]\n"
         "  - name: spiffe://t/ops/lead\n"
         "    roles: [write]\n"
         "  - name: ci\n"
         "    tokenSha256: " +
         Sha256Hex(kToken) +
         "\n"
         "    roles: [read, write]\n";
}

Caller Cert(std::vector<std::string> sans) {
  return Caller{.identities = std::move(sans), .token = std::nullopt, .tls = true};
}

TEST(Sha256HexTest, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(IdentityMatchesTest, ExactOrTrailingStarPrefix) {
  EXPECT_TRUE(IdentityMatches("spiffe://t/a", "spiffe://t/a"));
  EXPECT_FALSE(IdentityMatches("spiffe://t/a", "spiffe://t/ab"));
  EXPECT_TRUE(IdentityMatches("spiffe://t/*", "spiffe://t/ab"));
  EXPECT_FALSE(IdentityMatches("spiffe://t/*", "spiffe://u/ab"));
}

TEST(AccessPolicyTest, RolesComeFromEveryMatchingEntry) {
  const AccessPolicy policy = Parse(Policy());
  // spiffe://t/ops/lead matches the prefix (read, canary) and its own entry (write).
  for (Role role : {Role::kRead, Role::kWrite, Role::kCanary}) {
    const Verdict v = policy.Authorize(Cert({"spiffe://t/ops/lead"}), role, "Apply");
    EXPECT_TRUE(v.status.ok()) << RoleName(role) << ": " << v.status;
    EXPECT_EQ(v.identity, "spiffe://t/ops/lead");
  }
  const Verdict v = policy.Authorize(Cert({"spiffe://t/ops/lead"}), Role::kGateway, "Stream");
  EXPECT_TRUE(absl::IsPermissionDenied(v.status));
}

TEST(AccessPolicyTest, ARefusalNamesTheIdentityTheRoleTheMethodAndWhatItHolds) {
  const AccessPolicy policy = Parse(Policy());
  const Verdict v = policy.Authorize(Cert({"spiffe://t/ops/amy"}), Role::kWrite, "Apply");
  EXPECT_TRUE(absl::IsPermissionDenied(v.status));
  EXPECT_EQ(v.status.message(),
            "client identity \"spiffe://t/ops/amy\" lacks role 'write', which Apply needs (it "
            "holds: read, canary)");
  const Verdict unknown = policy.Authorize(Cert({"DNS:x", "spiffe://x"}), Role::kRead, "Get");
  EXPECT_TRUE(absl::IsPermissionDenied(unknown.status));
  EXPECT_THAT(std::string(unknown.status.message()),
              HasSubstr("\"DNS:x\" has no role in the access policy; it lacks role 'read'"));
}

TEST(AccessPolicyTest, TheIdentityNamedIsTheSanThePolicyKnows) {
  const AccessPolicy policy = Parse(Policy());
  const Verdict v =
      policy.Authorize(Cert({"other.example.org", "spiffe://t/gateway"}), Role::kGateway, "Stream");
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_EQ(v.identity, "spiffe://t/gateway");
}

TEST(AccessPolicyTest, TokensIdentifyTheirHolderAndAWrongOneIsUnauthenticated) {
  const AccessPolicy policy = Parse(Policy());
  Caller caller{.identities = {}, .token = kToken, .tls = true};
  Verdict v = policy.Authorize(caller, Role::kWrite, "Apply");
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_EQ(v.identity, "ci");
  v = policy.Authorize(caller, Role::kCanary, "CanaryAction");
  EXPECT_TRUE(absl::IsPermissionDenied(v.status));
  EXPECT_THAT(std::string(v.status.message()),
              HasSubstr("token holder \"ci\" lacks role 'canary'"));

  caller.token = "wrong";
  v = policy.Authorize(caller, Role::kRead, "Get");
  EXPECT_TRUE(absl::IsUnauthenticated(v.status));
  EXPECT_EQ(v.status.message(), "the bearer token matches no identity of the access policy");
  EXPECT_THAT(std::string(v.status.message()), Not(HasSubstr("wrong")));
  // A token's hash is never matched as a certificate name, nor a name as a token.
  caller.token = "ci";
  EXPECT_TRUE(absl::IsUnauthenticated(policy.Authorize(caller, Role::kRead, "Get").status));
  EXPECT_TRUE(absl::IsPermissionDenied(policy.Authorize(Cert({"ci"}), Role::kRead, "Get").status));
}

TEST(AccessPolicyTest, NoIdentityIsUnauthenticatedExceptOverPlaintextWithoutAPolicy) {
  const AccessPolicy policy = Parse(Policy());
  EXPECT_TRUE(absl::IsUnauthenticated(policy.Authorize(Cert({}), Role::kRead, "Get").status));
  const AccessPolicy open = AccessPolicy::AllowAll();
  EXPECT_TRUE(absl::IsUnauthenticated(open.Authorize(Cert({}), Role::kRead, "Get").status));
  const Verdict plain = open.Authorize(Caller{}, Role::kWrite, "Apply");
  EXPECT_TRUE(plain.status.ok());
  EXPECT_EQ(plain.identity, "anonymous");
  // Without a policy every verified identity holds every role.
  EXPECT_TRUE(open.Authorize(Cert({"spiffe://any"}), Role::kGateway, "Stream").status.ok());
}

TEST(AccessPolicyTest, TheAllowListComesBeforeRoles) {
  AccessPolicy open = AccessPolicy::AllowAll();
  open.set_allowed_identities({"spiffe://t/*"});
  EXPECT_TRUE(open.Authorize(Cert({"spiffe://t/gw"}), Role::kWrite, "Apply").status.ok());
  const Verdict v = open.Authorize(Cert({"spiffe://evil/gw"}), Role::kRead, "Get");
  EXPECT_TRUE(absl::IsPermissionDenied(v.status));
  EXPECT_EQ(v.status.message(),
            "client identity \"spiffe://evil/gw\" is not in the server's --allow-identity list");
}

TEST(AccessPolicyTest, TheAllowListAdmitsTokenHoldersAndSansByName) {
  AccessPolicy policy = Parse(Policy());
  policy.set_allowed_identities({"spiffe://t/ops/*"});
  // A token holder the list does not name is refused, however many roles it holds.
  const Verdict token =
      policy.Authorize(Caller{.identities = {}, .token = kToken, .tls = true}, Role::kRead, "Get");
  EXPECT_TRUE(absl::IsPermissionDenied(token.status));
  EXPECT_EQ(token.status.message(),
            "token holder \"ci\" is not in the server's --allow-identity list");
  // A SAN outside the list brings no role, even next to one inside it.
  const Verdict mixed = policy.Authorize(Cert({"spiffe://t/gateway", "spiffe://t/ops/amy"}),
                                         Role::kGateway, "Stream");
  EXPECT_TRUE(absl::IsPermissionDenied(mixed.status));
  EXPECT_EQ(mixed.identity, "spiffe://t/ops/amy");
}

TEST(AccessPolicyTest, ErrorsNameFileLineAndFieldPath) {
  config::Diagnostics diagnostics;
  Parse(
      "identities:\n"
      "  - name: spiffe://t/a\n"
      "    roles: [read, admin]\n"
      "  - roles: [read]\n"
      "  - name: ci\n"
      "    tokenSha256: s3cret-token\n"
      "    roles: [write]\n"
      "    colour: blue\n",
      &diagnostics);
  const std::string text = diagnostics.ToString();
  EXPECT_EQ(diagnostics.error_count(), 4) << text;
  EXPECT_THAT(text, HasSubstr("policy.yaml:3"));
  EXPECT_THAT(text, HasSubstr("identities[0].roles[1]: unknown role \"admin\""));
  EXPECT_THAT(text, HasSubstr("identities[1].name: missing"));
  EXPECT_THAT(text, HasSubstr("identities[2].tokenSha256: must be 64 hexadecimal digits"));
  EXPECT_THAT(text, HasSubstr("identities[2].colour"));
  // A token pasted where its hash belongs is not repeated back.
  EXPECT_THAT(text, Not(HasSubstr("s3cret-token")));

  config::Diagnostics yaml;
  Parse("identities: [\n", &yaml);
  EXPECT_TRUE(yaml.HasErrors());
  EXPECT_THAT(yaml.ToString(), HasSubstr("policy.yaml:"));
}

}  // namespace
}  // namespace sluice::security
