# Shared paths and pins for the project's scripts. Sourced, never run.
# shellcheck shell=bash
#
# Environments (PORTAL_ENV), each with its own venv and colcon build:
#   jazzy-py312   primary: Python 3.12 with the Jazzy-era ROS 2 wheels (rclpy 7.1, Fast DDS 2.14),
#                 livekit-portal (the reference Portal peer) for the interop tests
#   kilted-py310  matrix: Python 3.10 (Humble's Python) with the Kilted-era wheels (Fast DDS 3.2)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
PORTAL_ENV="${PORTAL_ENV:-jazzy-py312}"
case "$PORTAL_ENV" in
  jazzy-py312) PY_VERSION=3.12 ;;
  kilted-py310) PY_VERSION=3.10 ;;
  *) printf 'unknown PORTAL_ENV %s (jazzy-py312 or kilted-py310)\n' "$PORTAL_ENV" >&2; return 1 ;;
esac
VENV="$ROOT/.venvs/$PORTAL_ENV"
WS="$ROOT/.ws/$PORTAL_ENV"           # colcon build/install/log live here
REQUIREMENTS="$ROOT/requirements/$PORTAL_ENV.txt"
CONSTRAINTS="$ROOT/requirements/constraints-$PORTAL_ENV.txt"
LIVEKIT_SERVER_VERSION="v1.13.5"
LIVEKIT_SERVER="$TOOLS/bin/livekit-server"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Files whose content decides whether a step must run again.
hash_files() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# The interpreter of this environment: PYTHON_BIN, else pyenv's newest X.Y, else pythonX.Y on PATH
# (a pyenv shim on PATH may name a version that is not selected, so each candidate must run).
find_python() {
  local p
  for p in "${PYTHON_BIN:-}" \
           $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PY_VERSION".*/bin/python"$PY_VERSION" 2>/dev/null | sort -rV) \
           "$(command -v "python$PY_VERSION" 2>/dev/null)"; do
    [[ -n "$p" ]] && "$p" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$PY_VERSION'.split('.')))" \
      2>/dev/null && { echo "$p"; return 0; }
  done
  return 1
}

# Fast DDS 2.x (Humble, Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE only; 3.x (Kilted) reads
# FASTDDS_DEFAULT_PROFILES_FILE and warns about the old name. Decide by the library present.
fastdds_profile_var() {
  if compgen -G "$VENV/lib/libfastrtps.so*" >/dev/null; then echo FASTRTPS_DEFAULT_PROFILES_FILE
  else echo FASTDDS_DEFAULT_PROFILES_FILE; fi
}

# Environment for anything that imports rclpy or runs the nodes: the colcon overlay on top of
# the venv, which is laid out like a ROS install.
activate_ros() {
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  # setup.bash scripts read unset variables; keep nounset off while sourcing them.
  set +u
  # shellcheck disable=SC1091
  source "$WS/install/setup.bash"
  set -u
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # Discovery kept on this host (Iron and later read the first, Humble the second).
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  # Camera-sized images between processes need a larger shared-memory segment than Fast DDS's
  # default; the localhost profile also keeps test traffic on loopback.
  local var
  var=$(fastdds_profile_var)
  export "$var=${!var:-$ROOT/portal_bridge/config/fastdds_localhost.xml}"
  export PORTAL_BRIDGE_LIVEKIT_SERVER="$LIVEKIT_SERVER"
  export PATH="$TOOLS/bin:$PATH"
}
