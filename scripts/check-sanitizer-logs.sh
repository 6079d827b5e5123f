#!/usr/bin/env bash
# Fails when a sanitizer wrote a report into DIR: the programs the integration tests start
# (server, gateway, stub) log there, and a report in one of them fails no test by itself.
#   usage: scripts/check-sanitizer-logs.sh DIR
set -euo pipefail
dir=${1:?log dir}
shopt -s nullglob
reports=("$dir"/*)
if ((${#reports[@]} == 0)); then
  echo "sanitizers: no report in $dir"
  exit 0
fi
for r in "${reports[@]}"; do
  echo "=== $r"
  head -80 "$r"
done
echo "sanitizers: ${#reports[@]} report(s) in $dir"
exit 1
