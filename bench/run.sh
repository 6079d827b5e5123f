#!/usr/bin/env bash
# Runs the decision benchmarks and prints markdown tables (also saved to
# bench/results/latest.md):
#  1. in-process decision time (Google Benchmark, median of 5 repetitions);
#  2. gRPC: Decide vs a unary echo, Stream vs an echo stream, on servers started here on
#     loopback ports the kernel picks, in interleaved rounds; medians of the rounds, and
#     ratios against the echo measured in the same run.
#   usage: bench/run.sh [BUILD_DIR]        (make bench)
#   env:   ROUNDS (3), SECONDS_PER_RUN (3), STREAM_INFLIGHT (64), UNARY_INFLIGHT (8)
#
#   bench/run.sh proxy [BUILD_DIR] runs only bench/proxy_compare.sh instead: sluice-gateway
#   against nginx and HAProxy under wrk (it installs wrk, nginx and haproxy if absent, so it
#   is not part of `make bench`; its environment variables are in its header).
set -euo pipefail
if [[ ${1:-} == proxy ]]; then
  shift
  exec "$(dirname "$0")/proxy_compare.sh" "$@"
fi
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-3}
stream_inflight=${STREAM_INFLIGHT:-64}
unary_inflight=${UNARY_INFLIGHT:-8}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() {  # start NAME CMD... ; sets ${NAME}_addr and ${NAME}_pid
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q '^listening ' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  local addr
  addr=$(grep -o 'grpc=[^ ]*' "$work/$name.out" | cut -d= -f2)
  [[ -n "$addr" ]] || { echo "$name did not start:"; cat "$work/$name.err"; exit 1; }
  printf -v "${name}_addr" '%s' "$addr"
  printf -v "${name}_pid" '%s' "$pid"
}

out="$root/bench/results/latest.md"
mkdir -p "$root/bench/results"
{
  echo "# Decision benchmarks"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "## In-process decision (bench/decision_bench, median of 5)"
  echo
  echo "| benchmark | time per decision |"
  echo "| --- | --- |"
  "$build/bench/decision_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_format=csv 2>/dev/null | awk -F, '/_median"/ {
      name=$1; gsub(/"/,"",name); sub(/_median$/,"",name); printf "| %s | %.0f ns |\n", name, $3 }'
} | tee "$out"

start server "$build/server/sluice-server" --plaintext --config "$root/deploy/examples" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0
start echo "$build/bench/echo_server" --listen 127.0.0.1:0

modes=(decide-stream decide-stream-reports echo-stream decide-unary echo-unary)
for ((r = 1; r <= rounds; r++)); do
  for mode in "${modes[@]}"; do
    case $mode in
      decide-*) target=$server_addr; pid=$server_pid ;;
      *) target=$echo_addr; pid=$echo_pid ;;
    esac
    case $mode in
      *-stream|*-stream-reports) inflight=$stream_inflight ;;
      *) inflight=$unary_inflight ;;
    esac
    "$build/bench/grpc_load" --target "$target" --mode "$mode" --inflight "$inflight" \
      --seconds "$seconds" --server-pid "$pid" >>"$work/runs.txt"
  done
done

{
  echo
  echo "## gRPC: decisions against a bare echo of the same RPC kind"
  echo
  echo "Loopback, load client on the same machine; $rounds interleaved rounds of ${seconds}s; medians."
  echo "Stream modes keep $stream_inflight requests in flight on one stream; unary modes run $unary_inflight threads."
  echo
  echo "| mode | requests/s | p50 | p99 | server CPU per request | CPU vs echo | p99 vs echo |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  awk '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      m = f["mode"]; n[m]++
      rate[m, n[m]] = f["rate"]; p50[m, n[m]] = f["p50_us"]; p99[m, n[m]] = f["p99_us"]
      cpu[m, n[m]] = f["server_cpu_us_per_request"] }
    function median(a, m,   k, i, j, t, v) {
      k = n[m]; for (i = 1; i <= k; i++) v[i] = a[m, i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      return v[int((k + 1) / 2)] }
    END {
      split("decide-stream decide-stream-reports echo-stream decide-unary echo-unary", order, " ")
      for (o = 1; o <= 5; o++) {
        m = order[o]; base = m; sub(/^decide/, "echo", base); sub(/-reports$/, "", base)
        c = median(cpu, m); q = median(p99, m)
        ratio_c = (m ~ /^decide/) ? sprintf("%.2fx", c / median(cpu, base)) : "1 (baseline)"
        ratio_q = (m ~ /^decide/) ? sprintf("%.2fx", q / median(p99, base)) : "1 (baseline)"
        printf "| %s | %.0f | %.0f µs | %.0f µs | %.1f µs | %s | %s |\n", m, median(rate, m), median(p50, m), q, c, ratio_c, ratio_q
      }
    }' "$work/runs.txt"
  echo
  echo "Raw runs:"
  echo
  echo '```'
  cat "$work/runs.txt"
  echo '```'
} | tee -a "$out"
