#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time and fails on any crash, sanitizer report or
# leak:
#   - config_loader_fuzzer, over a seed corpus made of the project's example configuration,
#     the YAML regressions and, when present, Istio's sample corpus, with yaml.dict;
#   - every target T with a seed corpus in tests/fuzz/corpus/T/, with the first of
#     tests/fuzz/T.dict, tests/fuzz/T-without-_fuzzer.dict or tests/fuzz/T-up-to-the-first-_.dict
#     that exists (http1_codec_fuzzer uses http1.dict), and the flags in tests/fuzz/T.flags.
#     Such a target that is not built in BUILD_DIR is skipped, with a note saying how.
# All targets run even when one fails; reproducers of the failures are copied to .fuzz/ as
# TARGET-crash-*, TARGET-leak-*, ...
#   usage: scripts/run-fuzzers.sh BUILD_DIR [SECONDS [RUNS]]
# SECONDS per target (default 60); with RUNS, each target runs RUNS executions, SECONDS
# being then only a cap, and the run fails if a target reaches the cap first.
set -euo pipefail
build_dir=${1:?build dir}
seconds=${2:-60}
runs=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/artifacts"
failed=()

# run_target TARGET CORPUS_DIR [libFuzzer flags...]
# FUZZ_ONLY="T1 T2" in the environment runs those targets only. FUZZ_UNIT_TIMEOUT (seconds,
# default 10) is libFuzzer's -timeout for one input: wall-clock time, so a long run beside
# other work (a loaded machine can stall a process for seconds) wants more. ASAN_OPTIONS from
# the environment are appended to the script's (malloc_context_size=0 makes long runs of the
# YAML loader about 40% faster, at the cost of allocation stacks in reports).
run_target() {
  local target=$1 corpus=$2
  shift 2
  if [[ -n "${FUZZ_ONLY:-}" && " $FUZZ_ONLY " != *" $target "* ]]; then
    return
  fi
  local log="$work/$target.log"
  local runs_flags=()
  if [[ -n "$runs" ]]; then
    runs_flags=(-runs="$runs")
    echo "fuzz: $target for $runs executions (at most ${seconds}s) over $(ls "$corpus" | wc -l) seeds"
  else
    echo "fuzz: $target for ${seconds}s over $(ls "$corpus" | wc -l) seeds"
  fi
  local started=$SECONDS
  # Leaks are checked at exit of each run (LeakSanitizer is on with ASan).
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS} UBSAN_OPTIONS=print_stacktrace=1 \
    "$build_dir/tests/fuzz/$target" "$corpus" "$@" -max_total_time="$seconds" "${runs_flags[@]}" \
    -timeout="${FUZZ_UNIT_TIMEOUT:-10}" -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target-" 2>"$log"; then
    grep -E "^(#[0-9]+.*DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
    local executed
    executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $target: ${executed:-?} executions in $((SECONDS - started))s"
    if [[ -n "$runs" && "${executed:-0}" -lt "$runs" ]]; then
      echo "fuzz: $target FAILED: stopped at the ${seconds}s cap before $runs executions"
      failed+=("$target")
      return
    fi
    echo "fuzz: $target passed (no crash, sanitizer report or leak)"
  else
    tail -60 "$log"
    echo "fuzz: $target FAILED"
    failed+=("$target")
  fi
}

# The YAML configuration path, over the configuration the project ships.
mkdir -p "$work/corpus/config_loader_fuzzer"
for f in "$root"/deploy/examples/*.yaml "$root"/tests/fuzz/regressions/* "$root"/../shared/conformance/istio-samples/*/*.yaml \
         "$root"/../shared/conformance/istio-samples/*/*/*.yaml; do
  [[ -f "$f" ]] && cp "$f" "$work/corpus/config_loader_fuzzer/$(echo "$f" | md5sum | cut -c1-16).yaml"
done
run_target config_loader_fuzzer "$work/corpus/config_loader_fuzzer" \
  -dict="$root/tests/fuzz/yaml.dict" -max_len=8192

# Every target with its own seed corpus. The seeds are copied: libFuzzer adds what it finds
# to the corpus directory, which must not be the repository's.
for seeds in "$root"/tests/fuzz/corpus/*/; do
  [[ -d "$seeds" ]] || continue
  target=$(basename "$seeds")
  if [[ ! -x "$build_dir/tests/fuzz/$target" ]]; then
    echo "fuzz: $target skipped: not built (cmake --build $build_dir --target $target)"
    continue
  fi
  mkdir -p "$work/corpus/$target"
  cp "$seeds"* "$work/corpus/$target/"
  dict_flags=()
  for dict in "$root/tests/fuzz/$target.dict" "$root/tests/fuzz/${target%_fuzzer}.dict" \
              "$root/tests/fuzz/${target%%_*}.dict"; do
    if [[ -f "$dict" ]]; then
      dict_flags=(-dict="$dict")
      break
    fi
  done
  # More libFuzzer flags for the target, one per line, in tests/fuzz/TARGET.flags.
  extra_flags=()
  if [[ -f "$root/tests/fuzz/$target.flags" ]]; then
    mapfile -t extra_flags < <(grep -v '^#' "$root/tests/fuzz/$target.flags" | grep .)
  fi
  run_target "$target" "$work/corpus/$target" "${dict_flags[@]}" "${extra_flags[@]}"
done

if (( ${#failed[@]} > 0 )); then
  mkdir -p "$root/.fuzz"
  cp "$work"/artifacts/* "$root/.fuzz/" 2>/dev/null || true
  echo "fuzz: FAILED: ${failed[*]} (reproducers, if any, copied to .fuzz/)"
  exit 1
fi
echo "fuzz: all targets passed"
