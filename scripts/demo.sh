#!/usr/bin/env bash
# The main job: sluice-server, two sluice-gateways (one asking the server per request, one
# deciding locally from the table the server pushes) and two stub upstreams (shop v1 and v2) on
# loopback, with the example canary configuration (5s timeout, 3 retries, 10% injected
# aborts, and a Canary) with its intervals shortened to seconds. curl loops send traffic
# through the gateway while the canary controller promotes v2 step by step (10, 25, 50, 75,
# 100%) on its metrics, shown live by `sluicectl canary status --watch`; then a bad v2 is
# rolled out again and rolled back by the controller. At the end the server is stopped and both
# gateways go on serving from their last table. Everything picks free ports and stops by
# itself (about a minute). Every channel is mutual TLS, with certificates made for the demo by
# scripts/make-certs.sh; sluicectl acts as the admin identity, and a read-only identity's
# refused change shows in the audit log (sluicectl history).
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

step "scripts/make-certs.sh: a CA, certificates for the server, the gateways and two operators, an access policy"
"$root/scripts/make-certs.sh" "$work/certs"
certs=$work/certs
# sluicectl reads its TLS files from the environment, as it reads $SLUICE_SERVER.
export SLUICE_TLS_CA=$certs/ca.crt SLUICE_TLS_CERT=$certs/admin.crt SLUICE_TLS_KEY=$certs/admin.key

step "start two stub upstreams, sluice-server and two sluice-gateways (ports picked by the kernel)"
start stub-v1 "$build_dir/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v1 --subset v1
start stub-v2 "$build_dir/tools/sluice-stub" --listen 127.0.0.1:0 --name shop-v2 --subset v2
v1=$(field stub-v1 http)
v2=$(field stub-v2 http)
# The example configuration, pointed at the stubs' ports, with the Canary's analysis
# interval (30s) and metric windows (1m) shortened for a demo.
sed -e "s/18081/${v1##*:}/" -e "s/18082/${v2##*:}/" -e 's/interval: 30s/interval: 2s/' \
  -e 's/interval: 1m/interval: 10s/' -e 's/minRequests: 50/minRequests: 20/' \
  "$root/deploy/examples/canary.yaml" >"$work/shop.yaml"
start server "$build_dir/server/sluice-server" --config "$work/shop.yaml" \
  --state-dir "$work/state" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 \
  --tls-cert "$certs/server.crt" --tls-key "$certs/server.key" --tls-ca "$certs/ca.crt" \
  --access-policy "$certs/policy.yaml" --audit-log "$work/state/audit.log"
server_pid=${pids[-1]}
export SLUICE_SERVER=$(field server grpc)
gateway_tls=(--tls-cert "$certs/gateway.crt" --tls-key "$certs/gateway.key" --tls-ca "$certs/ca.crt")
start gateway "$build_dir/gateway/sluice-gateway" --listen 127.0.0.1:0 \
  --decision "$SLUICE_SERVER" --metrics 127.0.0.1:0 --workers 2 --access-log "$work/access.log" \
  "${gateway_tls[@]}"
gateway=$(field gateway http)
admin=$(field gateway metrics)
# The second gateway decides locally, on the table the server pushes (no round trip).
start gateway-local "$build_dir/gateway/sluice-gateway" --listen 127.0.0.1:0 \
  --decision "$SLUICE_SERVER" --metrics 127.0.0.1:0 --workers 2 --decisions local \
  --name gateway-local --access-log "$work/access-local.log" "${gateway_tls[@]}"
gateway_local=$(field gateway-local http)
admin_local=$(field gateway-local metrics)
for a in "$admin" "$admin_local"; do
  for _ in $(seq 50); do curl -sf "http://$a/healthz" >/dev/null && break; sleep 0.1; done
  curl -s "http://$a/healthz"
done

step "sluicectl gateways: who is connected, in which mode, with which configuration version"
"$ctl" gateways

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

# Two curl loops, as clients would send requests, one through each gateway, until stopped;
# each answer's code and subset go to a file.
loops=()
start_traffic() {
  : >"$work/codes"
  for target in "$gateway" "$gateway_local"; do
    (while :; do
      curl -s -o /dev/null -H 'Host: shop' -w '%{http_code} %header{x-stub-subset}\n' \
        "http://$target/cart" >>"$work/codes" || true
    done) &
    loops+=($!)
    pids+=($!)
  done
}
stop_traffic() {
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${loops[@]}" 2>/dev/null || true
  loops=()
  awk '{ if ($1 == 200) ok[$2]++; else err[$1]++ }
       END {
         printf "  answered by v1: %4d   by v2: %4d", ok["v1"], ok["v2"]
         for (c in err) printf "   status %s: %d", c, err[c]
         printf "   (the 503s are the route'"'"'s 10%% injected aborts, flag FI)\n"
       }' "$work/codes"
}

step "the Canary (deploy/examples/canary.yaml): v1 stable, v2 canary, steps 10,25,50,75,100"
"$ctl" canary status shop

step "curl loops send traffic; the controller promotes v2 as its checks pass (live)"
start_traffic
timeout 90 "$ctl" canary status shop --watch
stop_traffic
"$ctl" canary status shop | grep -E 'phase|weight|checks|metric'

step "a bad v2: 30% of its answers are 503 (POST http://$v2/stub/config?error-rate=0.3)"
curl -s -X POST "http://$v2/stub/config?error-rate=0.3" >/dev/null
echo "sluicectl canary restart shop: the analysis begins again from 0%"
"$ctl" canary restart shop
start_traffic
timeout 90 "$ctl" canary status shop --watch
stop_traffic
"$ctl" canary status shop | grep -E 'phase|weight|metric|last'
retries=$(curl -s "http://$admin/metrics" | awk '/^sluice_gateway_retries_total/ {s += $2} END {print s + 0}')
echo "the route's retries (5xx, up to 3) hid most of v2's errors from clients meanwhile:"
echo "  retries (sluice_gateway_retries_total): $retries"

step "while a canary runs it owns the split's weights: an edit to them is refused"
"$ctl" canary restart shop >/dev/null
cat >"$work/vs.yaml" <<'YAML'
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
      weight: 50
    - destination: {host: shop, subset: v2}
      weight: 50
YAML
"$ctl" apply -f "$work/vs.yaml" || true
"$ctl" canary rollback shop

step "the canary's metrics (server): Flagger-compatible and sluice's own"
curl -s "http://$(field server metrics)/metrics" |
  grep -E '^(flagger_canary_status|flagger_canary_weight|sluice_canary_weight|sluice_canary_checks_total)' |
  sed 's/^/  /'

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

step "sluicectl gateways: both gateways acknowledged every version (the rollback included)"
"$ctl" gateways

step "a read-only identity tries a change: refused, and audited"
"$ctl" --tls-cert "$certs/reader.crt" --tls-key "$certs/reader.key" canary promote shop || true
step "sluicectl history: the audit log's latest changes (who, what, versions, outcome)"
"$ctl" history --limit 6

step "the server stops (kill); both gateways keep deciding from their last table"
kill "$server_pid"
sleep 4  # a stream silent for 3s is taken for gone
for target in "$gateway" "$gateway_local"; do
  ok=0
  for _ in $(seq 20); do
    answer=$(curl -s -H 'Host: shop' -w ' %{http_code}' "http://$target/cart")
    [[ $answer == *" 200" || $answer == "fault filter abort 503" ]] && ok=$((ok + 1))
  done
  echo "  $target: $ok of 20 answered (200, or the route's injected 503 aborts)"
done
for a in "$admin" "$admin_local"; do curl -s "http://$a/healthz"; done
curl -s "http://$admin_local/metrics" | grep -E '^sluice_gateway_decisions_total' | sed 's/^/  /'
