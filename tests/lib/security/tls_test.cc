#include "lib/security/tls.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/lib/security/test_ca.h"

namespace sluice::security {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class TlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs the tests of this file in parallel processes.
    dir_ = ::testing::TempDir() + "/tls_files_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
    testing::WriteKeyPair(ca_.Issue("server", {"DNS:localhost"}), dir_, "server", &cert_, &key_);
    ca_path_ = Write("ca.crt", ca_.cert_pem());
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  testing::TestCa ca_;
  std::string dir_, cert_, key_, ca_path_;
};

TEST_F(TlsFilesTest, MatchingFilesPass) {
  EXPECT_TRUE(CheckTlsFiles({.cert = cert_, .key = key_, .ca = ca_path_}).ok());
  // A client without its own certificate needs only the CA.
  EXPECT_TRUE(CheckTlsFiles({.ca = ca_path_}).ok());
}

TEST_F(TlsFilesTest, EachBadFileIsNamedWithItsFlagAndNeverQuoted) {
  const testing::KeyPair other = ca_.Issue("other", {"DNS:other"});
  const std::string other_key = Write("other.key", other.key_pem);
  const std::string garbage = Write("garbage.pem", "not a certificate\n");
  struct Case {
    TlsFiles files;
    std::string message;
  };
  const Case cases[] = {
      {{.cert = dir_ + "/missing.crt", .key = key_, .ca = ca_path_},
       "--tls-cert " + dir_ + "/missing.crt: cannot read it"},
      {{.cert = garbage, .key = key_, .ca = ca_path_},
       "--tls-cert " + garbage + ": no PEM certificate in it"},
      {{.cert = cert_, .key = garbage, .ca = ca_path_},
       "--tls-key " + garbage + ": no unencrypted PEM private key in it"},
      {{.cert = cert_, .key = other_key, .ca = ca_path_},
       "--tls-key " + other_key + " is not the key of the certificate in " + cert_},
      {{.cert = cert_, .key = key_, .ca = garbage},
       "--tls-ca " + garbage + ": no PEM certificate in it"},
      // A key where the CA belongs: its bytes must not reach the message.
      {{.cert = cert_, .key = key_, .ca = other_key},
       "--tls-ca " + other_key + ": no PEM certificate in it"},
  };
  for (const Case& c : cases) {
    const absl::Status status = CheckTlsFiles(c.files);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.message;
    EXPECT_THAT(std::string(status.message()),
                AllOf(HasSubstr(c.message), Not(HasSubstr("PRIVATE KEY")),
                      Not(HasSubstr("not a certificate"))));
  }
}

TEST(ChooseTransportTest, PlaintextOnlyByNameAndNeverWithFiles) {
  absl::StatusOr<Transport> plain = ChooseTransport(Side::kServer, true, {});
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->plaintext);

  EXPECT_THAT(std::string(ChooseTransport(Side::kServer, false, {}).status().message()),
              HasSubstr("no transport security chosen"));
  EXPECT_THAT(
      std::string(ChooseTransport(Side::kClient, true, {.ca = "ca.crt"}).status().message()),
      HasSubstr("exclude each other"));
}

TEST(ChooseTransportTest, AServerNeedsAllThreeFilesAClientAtLeastTheCa) {
  EXPECT_THAT(std::string(ChooseTransport(Side::kServer, false, {.ca = "ca"}).status().message()),
              HasSubstr("TLS is missing --tls-cert, --tls-key"));
  EXPECT_TRUE(ChooseTransport(Side::kClient, false, {.ca = "ca"}).ok());
  EXPECT_THAT(
      std::string(
          ChooseTransport(Side::kClient, false, {.cert = "c", .ca = "ca"}).status().message()),
      HasSubstr("TLS is missing --tls-key"));
  EXPECT_THAT(
      std::string(
          ChooseTransport(Side::kClient, false, {.cert = "c", .key = "k"}).status().message()),
      HasSubstr("TLS is missing --tls-ca"));
  absl::StatusOr<Transport> full = ChooseTransport(
      Side::kServer, false, {.cert = "c", .key = "k", .ca = "ca", .refresh = absl::Seconds(2)});
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->plaintext);
  EXPECT_EQ(full->files.refresh, absl::Seconds(2));
  EXPECT_THAT(
      std::string(
          ChooseTransport(Side::kServer, false,
                          {.cert = "c", .key = "k", .ca = "ca", .refresh = absl::Milliseconds(100)})
              .status()
              .message()),
      HasSubstr("--tls-refresh-interval: at least 1s"));
}

TEST_F(TlsFilesTest, CredentialsAreMadeOnlyFromGoodFiles) {
  Transport good{.plaintext = false, .files = {.cert = cert_, .key = key_, .ca = ca_path_}};
  EXPECT_TRUE(ServerCredentials(good).ok());
  EXPECT_TRUE(ChannelCredentials(good).ok());
  Transport bad = good;
  bad.files.key = dir_ + "/missing.key";
  EXPECT_FALSE(ServerCredentials(bad).ok());
  EXPECT_FALSE(ChannelCredentials(bad).ok());
}

}  // namespace
}  // namespace sluice::security
