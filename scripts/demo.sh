#!/usr/bin/env bash
# The main job, as far as the project has grown: start sluice-server on loopback with the
# bundled example configuration, then do what a person would with sluicectl: see the
# configuration, ask for decisions and why, change the weights live, look at endpoints and
# metrics. Everything stops by itself.
#   usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
ctl="$build_dir/cli/sluicectl"
work=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "sluicectl validate -f deploy/examples --describe"
"$ctl" validate -f "$root/deploy/examples" --describe

step "start sluice-server on loopback (ports picked by the kernel)"
"$build_dir/server/sluice-server" --config "$root/deploy/examples" --state-dir "$work/state" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q '^listening ' "$work/server.out" && break; sleep 0.1; done
cat "$work/server.out"
export SLUICE_SERVER=$(grep -o 'grpc=[^ ]*' "$work/server.out" | cut -d= -f2)
metrics=$(grep -o 'metrics=[^ ]*' "$work/server.out" | cut -d= -f2)

step "sluicectl explain --host reviews:9080 --path /reviews/1 -H end-user:jason"
"$ctl" explain --host reviews:9080 --path /reviews/1 -H end-user:jason

step "sluicectl explain --host shop --path /cart   (the canary route: 5s timeout, retries, 10% aborts)"
"$ctl" explain --host shop --path /cart

step "200 decisions for reviews (route reviews-split: v1 80%, v3 20%)"
for i in $(seq 200); do
  "$ctl" explain --host reviews --path "/reviews/$i" -o json | grep -o '"subset": "[^"]*"'
done | sort | uniq -c

step "apply a weight change live: v1 50%, v3 50%"
cat >"$work/reviews-50-50.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: reviews-split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
YAML
"$ctl" apply -f "$work/reviews-50-50.yaml"
for i in $(seq 200); do
  "$ctl" explain --host reviews --path "/reviews/$i" -o json | grep -o '"subset": "[^"]*"'
done | sort | uniq -c

step "a bad change is refused and changes nothing"
sed 's/weight: 50/weight: -5/' "$work/reviews-50-50.yaml" >"$work/bad.yaml"
"$ctl" apply -f "$work/bad.yaml" || true

step "sluicectl get; sluicectl endpoints reviews"
"$ctl" get
"$ctl" endpoints reviews

step "a few of sluice-server's metrics (http://$metrics/metrics)"
curl -s "http://$metrics/metrics" | grep -E '^sluice_(config_version|config_applies_total|config_apply_errors_total|streams_open)[{ ]'

printf '\nThe gateway that executes these decisions, and the canary controller that drives the\n'
printf 'weights, come with the next issues (see README, Status).\n'
