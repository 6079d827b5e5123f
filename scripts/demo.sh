#!/usr/bin/env bash
# The main job, as far as the project has grown: load the bundled example configuration
# (bookinfo-like services and a canary set-up), validate it as the server would, and print
# what it contains: hosts, routes in match order, weights, timeouts, retries, faults,
# clusters with endpoints and policies, canaries.
#   usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)

echo "== sluicectl validate -f deploy/examples --describe"
"$build_dir/cli/sluicectl" validate -f "$root/deploy/examples" --describe
