#!/usr/bin/env bash
# make demo: the whole loop on this machine. A local livekit-server in dev mode (or the server in
# LIVEKIT_URL with LIVEKIT_API_KEY/LIVEKIT_API_SECRET), the simulated robot and robot_bridge on
# one ROS domain, operator_bridge, a demo policy and the browser console (its URL is printed) on
# another; prints live numbers every second.
# Ctrl-C stops everything. DEMO_DURATION=<seconds> stops by itself (used by the test).
# It starts the same executables with the same parameter files as launch/demo.launch.py, without
# needing `ros2 launch`.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
activate_ros

SHARE="$WS/install/portal_bridge/share/portal_bridge/config"
LOGS="${DEMO_LOGS:-$ROOT/.ws/demo-logs}"  # DEMO_LOGS: elsewhere (the tests use their own)
mkdir -p "$LOGS"
ROOM="${DEMO_ROOM:-portal-demo}"
ROBOT_DOMAIN="${DEMO_ROBOT_DOMAIN:-$(( 30 + ($$ % 80) * 2 ))}"
OPERATOR_DOMAIN=$(( ROBOT_DOMAIN + 1 ))
pids=()

stop() {
  trap - INT TERM EXIT
  echo
  log "stopping"
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [[ -n "${SERVER_PID:-}" ]] && { kill -TERM "$SERVER_PID" 2>/dev/null; sleep 0.3; kill -TERM "$SERVER_PID" 2>/dev/null || true; }
  log "stopped; logs in ${LOGS#"$ROOT"/}/"
}
trap 'stop; exit 0' INT TERM  # Ctrl-C is how the demo is meant to end: exit 0
trap stop EXIT

if [[ -n "${LIVEKIT_URL:-}" ]]; then
  URL="$LIVEKIT_URL"
  : "${LIVEKIT_API_KEY:?set LIVEKIT_API_KEY and LIVEKIT_API_SECRET for $URL}"
  : "${LIVEKIT_API_SECRET:?set LIVEKIT_API_SECRET for $URL}"
  log "using LiveKit at $URL"
else
  PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  UDP=$(python -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$LIVEKIT_SERVER" --dev --bind 127.0.0.1 --config-body "port: $PORT
rtc: {udp_port: $UDP, tcp_port: 0, node_ip: 127.0.0.1, use_external_ip: false}
logging: {level: warn}" > "$LOGS/livekit-server.log" 2>&1 &
  SERVER_PID=$!
  URL="ws://127.0.0.1:$PORT"
  export LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
  log "livekit-server --dev at $URL"
fi

start() {  # start <domain> <log name> <executable> [ros args...]
  local domain=$1 name=$2 exe=$3; shift 3
  ROS_DOMAIN_ID=$domain python -m "portal_bridge.nodes.$exe" --ros-args "$@" > "$LOGS/$name.log" 2>&1 &
  pids+=($!)
}
common=(-p "livekit_url:=$URL" -p "room:=$ROOM")
start "$ROBOT_DOMAIN" sim_robot sim_robot --params-file "$SHARE/sim_robot.yaml"
start "$ROBOT_DOMAIN" robot_bridge robot_bridge --params-file "$SHARE/robot_arm.yaml" "${common[@]}" \
  -p "allowed_operators:=[demo-teleop, console]"
start "$OPERATOR_DOMAIN" operator_bridge operator_bridge --params-file "$SHARE/operator.yaml" "${common[@]}" \
  -p identity:=demo-teleop  # demo_teleop claims control once it streams
CONSOLE_PORT="${DEMO_CONSOLE_PORT:-8080}"  # taken (or 0): any free port
if [[ "$CONSOLE_PORT" == 0 ]] || ! python -c "import socket, sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" \
    "$CONSOLE_PORT" 2>/dev/null; then
  CONSOLE_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
start "$OPERATOR_DOMAIN" console console "${common[@]}" -p "port:=$CONSOLE_PORT" \
  -p "keymap_file:=$SHARE/console_keymap.yaml"
log "robot side on ROS_DOMAIN_ID=$ROBOT_DOMAIN, operator side on ROS_DOMAIN_ID=$OPERATOR_DOMAIN, room '$ROOM'"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CONSOLE_PORT/healthz" >/dev/null && break; sleep 0.1; done
log "browser console: http://127.0.0.1:$CONSOLE_PORT/  (Take control, hold Q/A W/S E/D R/F T/G Y/H to drive)"
log "node logs in ${LOGS#"$ROOT"/}/; Ctrl-C to stop"
ROS_DOMAIN_ID=$OPERATOR_DOMAIN python -m portal_bridge.nodes.demo_teleop &
pids+=($!)
if [[ -n "${DEMO_DURATION:-}" ]]; then
  sleep "$DEMO_DURATION"
else
  wait "${pids[-1]}"
fi
