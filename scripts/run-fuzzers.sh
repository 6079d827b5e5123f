#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time over a seed corpus made of the project's
# example configuration and, when present, Istio's sample corpus. Fails on any crash,
# sanitizer report or leak.
#   usage: scripts/run-fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail
build_dir=${1:?build dir}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/corpus"
for f in "$root"/deploy/examples/*.yaml "$root"/tests/fuzz/regressions/* "$root"/../shared/conformance/istio-samples/*/*.yaml \
         "$root"/../shared/conformance/istio-samples/*/*/*.yaml; do
  [[ -f "$f" ]] && cp "$f" "$work/corpus/$(echo "$f" | md5sum | cut -c1-16).yaml"
done

echo "fuzz: config_loader_fuzzer for ${seconds}s over $(ls "$work/corpus" | wc -l) seeds"
# Leaks are checked at exit of each run (LeakSanitizer is on with ASan).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$build_dir/tests/fuzz/config_loader_fuzzer" "$work/corpus" \
  -dict="$root/tests/fuzz/yaml.dict" -max_total_time="$seconds" -max_len=8192 \
  -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/" \
  2>"$work/fuzz.log" || {
    tail -60 "$work/fuzz.log"
    mkdir -p "$root/.fuzz"
    cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$root/.fuzz/" 2>/dev/null || true
    echo "fuzz: FAILED (reproducers, if any, copied to .fuzz/)"
    exit 1
  }
grep -E "^(#[0-9]+.*DONE|Done|stat::number_of_executed_units)" "$work/fuzz.log" || true
echo "fuzz: config_loader_fuzzer passed (no crash, sanitizer report or leak)"
