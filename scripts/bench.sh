#!/usr/bin/env bash
# make bench: run the benchmark suite against a local livekit-server and write docs/benchmarks.md.
# BENCH_QUICK=1 runs the short smoke version (used by the test suite) without touching the docs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
activate_ros
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( 40 + ($$ % 80) * 2 ))}"
if [[ -n "${BENCH_QUICK:-}" ]]; then
  exec python -m bench --quick
fi
exec python -m bench --out docs/benchmarks.md
