#pragma once

// A certificate authority for tests, made with OpenSSL's library: certificates with chosen
// SANs and validity (an expired one too, which OpenSSL's 3.0 command line cannot make
// without a CA database).

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sluice::testing {

struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

class TestCa {
 public:
  explicit TestCa(const std::string& name = "sluice test CA");

  // A certificate signed by this CA for `sans` (OpenSSL's syntax: "URI:spiffe://t/gw",
  // "DNS:localhost", "IP:127.0.0.1"), valid from now + `not_before` to now + `not_after`.
  KeyPair Issue(const std::string& common_name, const std::vector<std::string>& sans,
                absl::Duration not_before = absl::Hours(-1),
                absl::Duration not_after = absl::Hours(24)) const;

  const std::string& cert_pem() const { return self_.cert_pem; }

 private:
  KeyPair self_;
};

// Writes `pair` as DIR/NAME.crt and DIR/NAME.key (0600) and returns the two paths through
// `cert_path` and `key_path`. Replaces existing files atomically (rename), as a rotation would.
void WriteKeyPair(const KeyPair& pair, const std::string& dir, const std::string& name,
                  std::string* cert_path = nullptr, std::string* key_path = nullptr);

}  // namespace sluice::testing
