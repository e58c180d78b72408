#!/usr/bin/env bash
# Run lint, format checks and the whole test suite in the project environment.
# Extra arguments go to pytest (e.g. scripts/test.sh -k sync_buffer).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
activate_ros

log "ruff check"
ruff check portal_bridge
log "ruff format --check"
ruff format --check portal_bridge

# A domain of our own for this run (bridges in end-to-end tests take this and the next one),
# and discovery kept on this host, so parallel runs and other ROS graphs never mix in.
if [[ -z "${ROS_DOMAIN_ID:-}" ]]; then
  ROS_DOMAIN_ID=$(( 20 + ($$ % 90) * 2 ))
fi
export ROS_DOMAIN_ID
export PORTAL_BRIDGE_FORBID_SKIPS=1
log "pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, discovery $ROS_AUTOMATIC_DISCOVERY_RANGE)"
set +e
python -m pytest portal_bridge/test "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  log "no test ran"
  exit 1
fi
exit $rc
