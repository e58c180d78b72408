#!/usr/bin/env bash
# make test: lint, then the whole suite in the primary environment (jazzy-py312: Python 3.12, the
# Jazzy-era ROS 2 wheels, livekit-portal as the reference peer). Under CI (CI=true) or with
# TEST_MATRIX=1 the matrix environment follows: kilted-py310 (Python 3.10, Humble's Python) runs
# the core, session and node tests (everything but the slow fault/benchmark tests and the interop
# tests, whose reference peer has no Python 3.10 wheels). Each environment sets itself up first.
# Extra arguments go to pytest and run in the primary environment only
# (e.g. scripts/test.sh -k sync_buffer); PORTAL_ENV picks another environment.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

MATRIX_ENV=kilted-py310
MATRIX_SELECTION=(-m 'not slow and not interop')

run_env() {  # run_env <environment> [pytest args...]: lint and pytest in that environment
  local env=$1; shift
  (
    export PORTAL_ENV=$env
    # shellcheck disable=SC1091
    source "$ROOT/scripts/common.sh"
    activate_ros
    log "[$env] ruff check, ruff format --check"
    ruff check portal_bridge bench
    ruff format --check portal_bridge bench
    # A domain of our own for this run (bridges in end-to-end tests take this and the next few),
    # and discovery kept on this host, so parallel runs and other ROS graphs never mix in.
    if [[ -z "${ROS_DOMAIN_ID:-}" ]]; then
      ROS_DOMAIN_ID=$(( 20 + ($$ % 90) * 2 ))
    fi
    export ROS_DOMAIN_ID
    export PORTAL_BRIDGE_FORBID_SKIPS=1
    log "[$env] pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, $(python --version), $(fastdds_profile_var) set)"
    set +e
    python -m pytest portal_bridge/test "$@"
    local rc=$?
    set -e
    if [[ $rc -eq 5 ]]; then
      log "[$env] no test ran"
      exit 1
    fi
    exit $rc
  )
}

if [[ $# -gt 0 || "$PORTAL_ENV" != jazzy-py312 ]]; then
  run_env "$PORTAL_ENV" "$@"
  exit
fi
run_env jazzy-py312
if [[ "${CI:-}" == true || -n "${TEST_MATRIX:-}" ]]; then
  PORTAL_ENV=$MATRIX_ENV "$ROOT/scripts/setup.sh"
  run_env "$MATRIX_ENV" "${MATRIX_SELECTION[@]}"
fi
