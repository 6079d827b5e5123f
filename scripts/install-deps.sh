#!/usr/bin/env bash
# Installs every Debian 12 package that building, the demo and the tests need.
# Runs apt-get only when something is missing, so repeated `make` calls stay fast.
set -euo pipefail

packages=(
  # build
  make cmake g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libre2-dev libyaml-cpp-dev libboost1.74-dev
  # mutual TLS: OpenSSL checks the certificate files; its command line makes certificates
  # (scripts/make-certs.sh, the demo) and the TLS tests read a served certificate with it
  libssl-dev openssl
  # the HTTP/1 parser (Node's llhttp, shipped as C sources) and io_uring for the proxy core
  node-llhttp liburing-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # libFuzzer and sanitizers for the fuzz targets
  clang libclang-rt-14-dev
  # used by the demo and integration tests
  curl
  # etcd's v3 API .proto files (compiled for sluice-server's --store etcd://) and etcd itself,
  # which the store tests start as one- and three-member clusters on loopback
  golang-etcd-server-dev etcd-server
  # the real Prometheus server the canary and observability tests query, and promtool
  prometheus
  # renders the canary graph (scripts/render-canary-graph.sh)
  gnuplot-nox
  # systemd-analyze, which checks deploy/systemd's units
  systemd
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
