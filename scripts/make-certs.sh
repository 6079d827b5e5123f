#!/usr/bin/env bash
# Makes a private CA and the certificates of a sluice installation with OpenSSL's command line:
#   ca.crt                  the CA every side trusts (--tls-ca)
#   server.crt, server.key  sluice-server's; SANs: localhost, 127.0.0.1 and each extra NAME, and
#                           URI spiffe://sluice.local/server, its identity as a client of
#                           another replica (--store etcd://: followers forward reports)
#   gateway.crt/.key        a gateway's; SAN URI spiffe://sluice.local/gateway
#   admin.crt/.key          an operator's, for sluicectl; SAN URI spiffe://sluice.local/admin
#   reader.crt/.key         a read-only operator's; SAN URI spiffe://sluice.local/reader
# and policy.yaml, an --access-policy giving each of them its roles.
#   usage: scripts/make-certs.sh DIR [NAME...]   (NAME: another DNS name of the server)
# Keys are ECDSA P-256, written 0600; certificates are valid for 825 days. Existing files are
# left alone, so running it again keeps the CA.
set -euo pipefail

dir=${1:?usage: scripts/make-certs.sh DIR [SERVER_NAME...]}
shift
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077

days=825
if [[ ! -f ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.crt -days "$days" -subj "/O=sluice/CN=sluice CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

# issue NAME SAN USAGE: NAME.key and NAME.crt, signed by the CA, for USAGE (serverAuth for the
# server, clientAuth for the others: a client certificate cannot pose as the server; the
# server's is both, since replicas call each other).
issue() {
  local name=$1 san=$2 usage=$3
  [[ -f $name.crt ]] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
    -out "$name.csr" -subj "/O=sluice/CN=$name" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' \
    "$san" "$usage" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_san="DNS:localhost,IP:127.0.0.1,IP:::1,URI:spiffe://sluice.local/server"
for extra in "$@"; do server_san+=",DNS:$extra"; done
issue server "$server_san" serverAuth,clientAuth
issue gateway "URI:spiffe://sluice.local/gateway" clientAuth
issue admin "URI:spiffe://sluice.local/admin" clientAuth
issue reader "URI:spiffe://sluice.local/reader" clientAuth
chmod 644 ./*.crt

if [[ ! -f policy.yaml ]]; then
  cat >policy.yaml <<'POLICY'
# sluice-server --access-policy: who holds which role. Roles: read (get, explain, endpoints,
# canary status, gateways, history), write (apply, delete), canary (promote, rollback, pause,
# resume, restart, set-weight), gateway (the decision stream), replica (another sluice-server
# of the same --store forwarding its gateways' reports to the leader). A name is a client
# certificate's SAN (URI or DNS), a trailing * matching a prefix; an entry with tokenSha256
# is a bearer token's holder (sluicectl --token-file; the value is `sha256sum TOKEN_FILE`'s).
identities:
  - name: spiffe://sluice.local/gateway
    roles: [gateway]
  - name: spiffe://sluice.local/admin
    roles: [read, write, canary]
  - name: spiffe://sluice.local/reader
    roles: [read]
  - name: spiffe://sluice.local/server
    roles: [replica]
POLICY
fi
echo "certificates in $dir: ca.crt server.* gateway.* admin.* reader.*, policy in $dir/policy.yaml"
