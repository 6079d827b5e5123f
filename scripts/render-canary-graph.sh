#!/usr/bin/env bash
# Renders a canary rollout as a PNG from a Prometheus server: the canary's weight, and the
# success rate of the stable and canary subsets as the gateways saw them, over a time range.
# Uses only Prometheus's HTTP API (query_range), curl and gnuplot.
#   usage: scripts/render-canary-graph.sh PROMETHEUS_URL OUT.png [START END]
#     START, END: unix seconds (default: the last 15 minutes)
#   env:   CANARY (shop), STABLE (v1), CANARY_SUBSET (v2), WINDOW (rate window, 1m),
#          STEP (resolution, 5s)
set -euo pipefail
prom=${1:?usage: render-canary-graph.sh PROMETHEUS_URL OUT.png [START END]}
out=${2:?usage: render-canary-graph.sh PROMETHEUS_URL OUT.png [START END]}
end=${4:-$(date +%s)}
start=${3:-$((end - 900))}
canary=${CANARY:-shop}
stable_subset=${STABLE:-v1}
canary_subset=${CANARY_SUBSET:-v2}
window=${WINDOW:-1m}
step=${STEP:-5s}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# series FILE PROMQL: "unix-seconds value" lines of the query's first series.
series() {
  curl -sfG "$prom/api/v1/query_range" --data-urlencode "query=$2" \
    --data-urlencode "start=$start" --data-urlencode "end=$end" --data-urlencode "step=$step" |
    grep -o '\[[0-9.]*,"[^"]*"\]' | tr -d '[]"' | tr ',' ' ' |
    awk '$2 != "NaN"' >"$1" || true
}
success() {
  echo "100 * sum(rate(istio_requests_total{destination_version=\"$1\",response_code!~\"5..\"}[$window]))" \
    "/ sum(rate(istio_requests_total{destination_version=\"$1\"}[$window]))"
}
series "$work/weight" "max(sluice_canary_weight{name=\"$canary\"})"
series "$work/stable" "$(success "$stable_subset")"
series "$work/canary" "$(success "$canary_subset")"
if [[ ! -s "$work/weight" ]]; then
  echo "render-canary-graph: no sluice_canary_weight{name=\"$canary\"} in $prom between $start and $end" >&2
  exit 1
fi
# gnuplot cannot plot an empty file; a subset without traffic gets no line.
plots="'$work/weight' using (\$1-$start):2 axes x1y2 with steps lw 3 lc rgb '#1f77b4' title 'canary weight (%)'"
[[ -s "$work/stable" ]] && plots+=", '$work/stable' using (\$1-$start):2 with lines lw 2 lc rgb '#2ca02c' title '$stable_subset success rate (%)'"
[[ -s "$work/canary" ]] && plots+=", '$work/canary' using (\$1-$start):2 with lines lw 2 lc rgb '#d62728' title '$canary_subset success rate (%)'"
gnuplot <<GNUPLOT
set terminal pngcairo size 1000,500 font ",11"
set output "$out"
set title "Canary $canary: $stable_subset -> $canary_subset (from Prometheus, $(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ))"
set xlabel "seconds"
set ylabel "success rate (%)"
set y2label "canary weight (%)"
set yrange [0:105]
set y2range [0:105]
set ytics nomirror
set y2tics
set key bottom left
set grid
plot $plots
GNUPLOT
echo "wrote $out"
