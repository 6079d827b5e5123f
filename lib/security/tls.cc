#include "lib/security/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/channel_arguments.h"

namespace sluice::security {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;

absl::StatusOr<std::string> ReadNamed(const std::string& flag, const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it (",
                                                   errno != 0 ? strerror(errno) : "error", ")"));
  }
  return text;
}

// Every certificate in `pem`, in order. OpenSSL's messages are left out on purpose: they can
// quote bytes of the file, and a key file's bytes must never reach a log.
std::vector<Cert> Certificates(const std::string& pem) {
  std::vector<Cert> certs;
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (bio != nullptr) {
    Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    certs.push_back(std::move(cert));
  }
  ERR_clear_error();
  return certs;
}

}  // namespace

absl::StatusOr<Transport> ChooseTransport(Side side, bool plaintext, TlsFiles files) {
  const bool any_file = !files.cert.empty() || !files.key.empty() || !files.ca.empty();
  if (plaintext) {
    if (any_file) {
      return absl::InvalidArgumentError(
          "--plaintext and --tls-cert/--tls-key/--tls-ca exclude each other: give the files "
          "for mutual TLS, or --plaintext alone");
    }
    return Transport{.plaintext = true, .files = {}};
  }
  if (!any_file) {
    return absl::InvalidArgumentError(
        absl::StrCat("no transport security chosen: give ",
                     side == Side::kServer ? "--tls-cert, --tls-key and --tls-ca"
                                           : "--tls-ca, --tls-cert and --tls-key",
                     " for mutual TLS, or --plaintext to run without encryption on purpose"));
  }
  std::vector<std::string> missing;
  const bool needs_identity = side == Side::kServer || !files.cert.empty() || !files.key.empty();
  if (needs_identity && files.cert.empty()) missing.push_back("--tls-cert");
  if (needs_identity && files.key.empty()) missing.push_back("--tls-key");
  if (files.ca.empty()) missing.push_back("--tls-ca");
  if (!missing.empty()) {
    std::string names;
    for (const std::string& m : missing) absl::StrAppend(&names, names.empty() ? "" : ", ", m);
    return absl::InvalidArgumentError(absl::StrCat("TLS is missing ", names));
  }
  if (files.refresh < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--tls-refresh-interval: at least 1s");
  }
  return Transport{.plaintext = false, .files = std::move(files)};
}

absl::Status CheckTlsFiles(const TlsFiles& files) {
  if (!files.cert.empty()) {
    absl::StatusOr<std::string> cert_pem = ReadNamed("--tls-cert", files.cert);
    if (!cert_pem.ok()) return cert_pem.status();
    std::vector<Cert> chain = Certificates(*cert_pem);
    if (chain.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert ", files.cert, ": no PEM certificate in it"));
    }
    absl::StatusOr<std::string> key_pem = ReadNamed("--tls-key", files.key);
    if (!key_pem.ok()) return key_pem.status();
    Bio key_bio(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
    Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (key == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-key ", files.key, ": no unencrypted PEM private key in it"));
    }
    if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls-key ", files.key, " is not the key of the certificate in ", files.cert));
    }
  }
  absl::StatusOr<std::string> ca_pem = ReadNamed("--tls-ca", files.ca);
  if (!ca_pem.ok()) return ca_pem.status();
  if (Certificates(*ca_pem).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-ca ", files.ca, ": no PEM certificate in it"));
  }
  return absl::OkStatus();
}

namespace {

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(const TlsFiles& f) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      f.key, f.cert, f.ca, static_cast<unsigned int>(absl::ToInt64Seconds(f.refresh)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const Transport& transport) {
  if (transport.plaintext) return grpc::InsecureServerCredentials();
  if (absl::Status s = CheckTlsFiles(transport.files); !s.ok()) return s;
  grpc::experimental::TlsServerCredentialsOptions options(Provider(transport.files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const Transport& transport) {
  if (transport.plaintext) return grpc::InsecureChannelCredentials();
  if (absl::Status s = CheckTlsFiles(transport.files); !s.ok()) return s;
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(transport.files));
  options.watch_root_certs();
  if (!transport.files.cert.empty()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  return grpc::experimental::TlsCredentials(options);
}

void AddServerNameOverride(const Transport& transport, grpc::ChannelArguments& args) {
  if (transport.plaintext || transport.files.server_name.empty()) return;
  args.SetSslTargetNameOverride(transport.files.server_name);
}

}  // namespace sluice::security
