#pragma once

// Transport security for sluice's gRPC channels (decisions and administration): mutual TLS
// with certificates read from files and re-read while the process runs, or plaintext only
// when asked for by name.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace sluice::security {

// The PEM files of one side of a mutual TLS connection, as the flags name them.
struct TlsFiles {
  std::string cert;  // this side's certificate chain (--tls-cert)
  std::string key;   // its private key (--tls-key)
  std::string ca;    // the CA bundle that verifies the other side (--tls-ca)
  // How often gRPC re-reads the three files; a rotated certificate is served from the next
  // read on, to new handshakes (connections already up keep theirs).
  absl::Duration refresh = absl::Seconds(10);
  // Clients only: the name the server's certificate must carry when it differs from the host
  // dialled (a certificate for sluice.example.org reached at 10.0.0.5:7070).
  std::string server_name;
};

// How a program's flags chose to protect its channel.
struct Transport {
  bool plaintext = false;  // --plaintext: no TLS, said on purpose
  TlsFiles files;          // when not plaintext
};

// Whose flags are read: a server must present a certificate; a client may go without one
// (sluicectl with a bearer token) and then needs only the CA.
enum class Side { kServer, kClient };

// Reads the choice from the flags' values: the files (--tls-cert with --tls-key, and --tls-ca),
// or --plaintext alone. The error says which flag is missing or which two exclude each other,
// in the flags' own names.
absl::StatusOr<Transport> ChooseTransport(Side side, bool plaintext, TlsFiles files);

// Reads each file now and checks that it holds what its flag promises: PEM certificates for
// --tls-cert and --tls-ca, a private key matching the certificate for --tls-key (the first two
// only when given). gRPC's file
// watcher would only log such problems and then fail every handshake; a program should refuse
// to start instead. Errors name the flag and the file, never the file's contents.
absl::Status CheckTlsFiles(const TlsFiles& files);

// Server credentials that ask every client for a certificate and verify it against the CA
// when one is given. A client without one still connects: the services then want a bearer
// token (sluicectl in scripts) or refuse the call UNAUTHENTICATED with a message, which a
// failed handshake could not carry.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const Transport& transport);

// Channel credentials that verify the server against the CA (and its name against the host
// dialled, or files.server_name) and present this side's certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const Transport& transport);

// The channel argument that TlsFiles::server_name needs, to add to a channel's arguments.
void AddServerNameOverride(const Transport& transport, grpc::ChannelArguments& args);

}  // namespace sluice::security
