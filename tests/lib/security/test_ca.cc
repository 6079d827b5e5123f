#include "tests/lib/security/test_ca.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "absl/strings/str_join.h"

namespace sluice::testing {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "TestCa: %s failed\n", what);
    std::abort();
  }
}

// What `write` put into a memory BIO, as a string.
template <typename Write>
std::string WrittenPem(Write write, const char* what) {
  BIO* bio = BIO_new(BIO_s_mem());
  Check(write(bio) == 1, what);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

std::string ToPem(X509* cert) {
  return WrittenPem([cert](BIO* bio) { return PEM_write_bio_X509(bio, cert); },
                    "PEM_write_bio_X509");
}

std::string ToPem(EVP_PKEY* key) {
  return WrittenPem(
      [key](BIO* bio) {
        return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
      },
      "PEM_write_bio_PrivateKey");
}

X509* CertFromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  Check(cert != nullptr, "PEM_read_bio_X509");
  return cert;
}

EVP_PKEY* KeyFromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  Check(key != nullptr, "PEM_read_bio_PrivateKey");
  return key;
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key`, named `common_name`, signed by `issuer_key` (as `issuer`, or
// itself when null).
KeyPair Make(const std::string& common_name, const std::vector<std::string>& sans, bool ca,
             absl::Duration not_before, absl::Duration not_after, X509* issuer,
             EVP_PKEY* issuer_key) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  Check(key != nullptr, "EVP_EC_gen");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  BIGNUM* serial = BN_new();
  BN_rand(serial, 64, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert));
  BN_free(serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), absl::ToInt64Seconds(not_before));
  X509_gmtime_adj(X509_getm_notAfter(cert), absl::ToInt64Seconds(not_after));
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("sluice tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509* signer = issuer != nullptr ? issuer : cert;
  X509_set_issuer_name(cert, X509_get_subject_name(signer));
  if (ca) {
    AddExtension(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert, signer, NID_basic_constraints, "CA:FALSE");
    AddExtension(cert, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    if (!sans.empty()) AddExtension(cert, signer, NID_subject_alt_name, absl::StrJoin(sans, ","));
  }
  Check(X509_sign(cert, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  KeyPair pair{ToPem(cert), ToPem(key)};
  X509_free(cert);
  EVP_PKEY_free(key);
  return pair;
}

}  // namespace

TestCa::TestCa(const std::string& name)
    : self_(Make(name, {}, /*ca=*/true, absl::Hours(-1), absl::Hours(24 * 30), nullptr, nullptr)) {}

KeyPair TestCa::Issue(const std::string& common_name, const std::vector<std::string>& sans,
                      absl::Duration not_before, absl::Duration not_after) const {
  X509* ca_cert = CertFromPem(self_.cert_pem);
  EVP_PKEY* ca_key = KeyFromPem(self_.key_pem);
  KeyPair pair = Make(common_name, sans, /*ca=*/false, not_before, not_after, ca_cert, ca_key);
  X509_free(ca_cert);
  EVP_PKEY_free(ca_key);
  return pair;
}

void WriteKeyPair(const KeyPair& pair, const std::string& dir, const std::string& name,
                  std::string* cert_path, std::string* key_path) {
  const std::string cert = dir + "/" + name + ".crt";
  const std::string key = dir + "/" + name + ".key";
  for (const auto& [path, text] : {std::pair{cert, pair.cert_pem}, std::pair{key, pair.key_pem}}) {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << text;
    }
    chmod(tmp.c_str(), 0600);
    Check(std::rename(tmp.c_str(), path.c_str()) == 0, "rename");
  }
  if (cert_path != nullptr) *cert_path = cert;
  if (key_path != nullptr) *key_path = key;
}

}  // namespace sluice::testing
