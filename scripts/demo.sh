#!/usr/bin/env bash
# The main job: sluice-server, sluice-gateway and two stub upstreams (shop v1 and v2) on
# loopback, with the example canary configuration (5s timeout, 3 retries, 10% injected
# aborts). Requests go through the gateway as a person would send them with curl, while v2
# is rolled out step by step (10, 25, 50, 75, 100%), then goes bad and is rolled back.
# Everything picks free ports and stops by itself (about a minute).
#   usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build_dir=$(cd "${1:-build}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
ctl="$build_dir/cli/sluicectl"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# start NAME PREFIX COMMAND...: runs a program, waits for its "listening" line, prints it.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^listening ' "$work/$name.out" && break; sleep 0.1; done
  grep '^listening ' "$work/$name.out" || { cat "$work/$name.log"; exit 1; }
}
field() { grep -o "$2=[^ ]*" "$work/$1.out" | cut -d= -f2; }

step "sluicectl validate -f deploy/examples"
"$ctl" validate -f "$root/deploy/examples"

step "start two stub upstreams, sluice-server and sluice-gateway (ports picked by the kernel)"
start stub-v1 "$build_dir/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v1 --subset v1
start stub-v2 "$build_dir/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v2 --subset v2
v1=$(field stub-v1 http)
v2=$(field stub-v2 http)
# The example configuration, pointed at the stubs' ports.
sed -e "s/18081/${v1##*:}/" -e "s/18082/${v2##*:}/" "$root/deploy/examples/canary.yaml" \
  >"$work/shop.yaml"
start server "$build_dir/server/sluice-server" --config "$work/shop.yaml" \
  --state-dir "$work/state" --listen 127.0.0.1:0 --metrics 127.0.0.1:0
export SLUICE_SERVER=$(field server grpc)
start gateway "$build_dir/gateway/sluice-gateway" --listen 127.0.0.1:0 \
  --decision "$SLUICE_SERVER" --metrics 127.0.0.1:0 --workers 2 --access-log "$work/access.log"
gateway=$(field gateway http)
admin=$(field gateway metrics)
for _ in $(seq 50); do curl -sf "http://$admin/healthz" >/dev/null && break; sleep 0.1; done
curl -s "http://$admin/healthz"

step "curl -i -H 'Host: shop' http://$gateway/cart"
curl -si -H 'Host: shop' "http://$gateway/cart" | tr -d '\r'
echo

# traffic N: N requests through the gateway; one summary line by subset and outcome.
traffic() {
  : >"$work/codes"
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -H 'Host: shop' -w '%{http_code} %header{x-stub-subset}\n' \
      "http://$gateway/cart" >>"$work/codes"
  done
  awk '{ if ($1 == 200) ok[$2]++; else err[$1]++ }
       END {
         printf "  answered by v1: %4d   by v2: %4d", ok["v1"], ok["v2"]
         for (c in err) printf "   status %s: %d", c, err[c]
         printf "\n"
       }' "$work/codes"
}

# weights V1 V2: the canary route of deploy/examples/canary.yaml with new weights, applied live.
weights() {
  cat >"$work/vs.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [shop]
  http:
  - name: shop-canary
    route:
    - destination: {host: shop, subset: v1}
      weight: $1
    - destination: {host: shop, subset: v2}
      weight: $2
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure,retriable-4xx"}
    fault:
      abort: {percentage: {value: 10}, httpStatus: 503}
YAML
  "$ctl" apply -f "$work/vs.yaml" 2>/dev/null | tail -1
}

step "200 requests at v1 100% / v2 0% (the 503s are the route's 10% injected aborts, flag FI)"
traffic 200

step "roll v2 out step by step: each weight change is one atomic apply (the 503s are the 10% aborts)"
for w in 10 25 50 75 100; do
  printf 'v2 at %3d%%: ' "$w"
  weights $((100 - w)) "$w"
  traffic 200
done

step "v2 goes bad: 30% of its answers are 503 (POST http://$v2/stub/config?error-rate=0.3)"
curl -s -X POST "http://$v2/stub/config?error-rate=0.3" >/dev/null
echo "the route's retries (5xx, up to 3) hide most of it from clients:"
traffic 200
retries=$(curl -s "http://$admin/metrics" | awk '/^sluice_gateway_retries_total/ {s += $2} END {print s + 0}')
echo "  retries so far (sluice_gateway_retries_total): $retries"

step "roll back: v1 100%, v2 0% (the canary controller will do this by itself, issue 6)"
weights 100 0
traffic 200

step "the gateway's access log (Envoy's format, with response flags), last lines"
tail -n 4 "$work/access.log"
grep -m 2 ' FI ' "$work/access.log" || true

step "Istio's metrics from the gateway (http://$admin/metrics), summed by subset and code"
curl -s "http://$admin/metrics" | grep '^istio_requests_total' |
  sed -E 's/.*destination_version="([^"]*)".*response_code="([^"]*)".*response_flags="([^"]*)".*\} (.*)/\1 \2 \3 \4/' |
  awk '{ n[$1 " code=" $2 " flags=" $3] += $4 } END { for (k in n) print "  version=" k ": " n[k] }' |
  sort

step "sluicectl explain --host shop --path /cart"
"$ctl" explain --host shop --path /cart | head -12
