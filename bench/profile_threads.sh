#!/bin/bash
# Samples one process of a loaded sluice pair with perf and prints its CPU by thread, then
# by thread and symbol: where the time of a request goes, and on which thread.
#
# usage: bench/profile_threads.sh [MODE] [IO] [WHO] [BUILD]
#   MODE  local or server (the gateway's --decisions; default server)
#   IO    auto, io_uring or epoll (the gateway's --io; default auto)
#   WHO   gateway or server: the process sampled (default gateway)
#   BUILD the build folder (default build)
# Two sluice-stub upstreams, sluice-server and sluice-gateway on loopback, with
# proxy_compare.sh's configuration (bench/shop_config.sh); wrk -t1
# -c32 for a 2 s warm-up, then 5 s under `perf record -F 999 -g`. Needs wrk and linux-perf.
set -euo pipefail
mode=${1:-server} io=${2:-auto} who=${3:-gateway}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${4:-$root/build}
# shellcheck source=bench/shop_config.sh
source "$root/bench/shop_config.sh"
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
field() { # field FILE KEY: KEY=VALUE from a "listening ..." line, waiting for it
  for _ in $(seq 100); do
    grep -q "^listening" "$1" 2>/dev/null && break
    sleep 0.05
  done
  grep -o "$2=[^ ]*" "$1" | head -1 | cut -d= -f2
}
for v in v1 v2; do
  "$build/tools/sluice-stub" --listen 127.0.0.1:0 --name shop --subset $v >"$work/$v.out" 2>/dev/null &
  pids+=($!)
done
p1=$(field "$work/v1.out" http) p2=$(field "$work/v2.out" http)
write_shop_config "$work/shop.yaml" "${p1##*:}" "${p2##*:}"
"$build/server/sluice-server" --plaintext --config "$work/shop.yaml" --listen 127.0.0.1:0 \
  --metrics 127.0.0.1:0 >"$work/server.out" 2>/dev/null &
server_pid=$!
pids+=($server_pid)
grpc=$(field "$work/server.out" grpc)
"$build/gateway/sluice-gateway" --plaintext --listen 127.0.0.1:0 --decision "$grpc" \
  --metrics 127.0.0.1:0 --decisions "$mode" --io "$io" >"$work/gateway.out" 2>/dev/null &
gateway_pid=$!
pids+=($gateway_pid)
http=$(field "$work/gateway.out" http)
echo "gateway: $(head -1 "$work/gateway.out")"
wrk -t1 -c32 -d2s -H 'Host: shop' "http://$http/" >/dev/null
target=$gateway_pid
[[ $who == server ]] && target=$server_pid
perf record -F 999 -g -s -p "$target" -o "$work/perf.data" -- sleep 5 >/dev/null 2>&1 &
perf_pid=$!
wrk -t1 -c32 -d5s -H 'Host: shop' "http://$http/" | grep Requests/sec
wait "$perf_pid" || true
perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
  grep -v '^#' | grep -v '^$' | head -10
perf report -i "$work/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null |
  grep -v '^#' | grep -v '^$' | head -40
