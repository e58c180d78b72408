# Shared paths and pins for the project's scripts. Sourced, never run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
WS="$ROOT/.ws"                       # colcon build/install/log live here
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
LIVEKIT_SERVER_VERSION="v1.13.5"
LIVEKIT_SERVER="$TOOLS/bin/livekit-server"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Files whose content decides whether a step must run again.
hash_files() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

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
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  # Camera-sized images between processes need a larger shared-memory segment than Fast DDS's default.
  export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/portal_bridge/config/fastdds_large_messages.xml}"
  export PORTAL_BRIDGE_LIVEKIT_SERVER="$LIVEKIT_SERVER"
  export PATH="$TOOLS/bin:$PATH"
}
