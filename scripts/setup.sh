#!/usr/bin/env bash
# One-command, idempotent setup: project venv with pinned ROS 2 wheels and tools, colcon build
# of both packages, and a pinned livekit-server built from its Go module. Each step keeps a
# stamp of what it was built from and is skipped when nothing changed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"

# --- 1. virtual environment ------------------------------------------------------------------
venv_hash=$(hash_files requirements/dev.txt requirements/constraints.txt <(echo "$PYTHON_BIN"))
if [[ ! -x "$VENV/bin/python" || "$(cat "$TOOLS/stamps/venv" 2>/dev/null)" != "$venv_hash" ]]; then
  command -v "$PYTHON_BIN" >/dev/null || { log "need $PYTHON_BIN (the ROS wheels are cp311)"; exit 1; }
  log "creating virtual environment in .venv"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON_BIN" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r requirements/dev.txt -c requirements/constraints.txt
  # The wheels' CMake export files name the wheel factory's Python and numpy include dirs.
  py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rlE '/opt/python/cp311-cp311' "$VENV/share" --include='*Export.cmake' 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
  done
  # colcon must never mistake the venv's share/ for source packages.
  touch "$VENV/COLCON_IGNORE"
  echo "$venv_hash" > "$TOOLS/stamps/venv"
else
  log "venv up to date"
fi
touch "$TOOLS/COLCON_IGNORE"

# --- 2. colcon build of portal_bridge_msgs and portal_bridge ---------------------------------
# Python sources are symlinked (--symlink-install), so only manifests, interfaces and the list
# of installed data files decide a rebuild.
build_inputs=$( { find portal_bridge_msgs -type f; find portal_bridge -maxdepth 1 -type f;
                  find portal_bridge/launch portal_bridge/config portal_bridge/resource -type f 2>/dev/null; } | sort )
# shellcheck disable=SC2086
build_hash=$( { echo "$build_inputs"; cat $build_inputs; cat "$TOOLS/stamps/venv"; } | sha256sum | cut -d' ' -f1)
if [[ ! -f "$WS/install/setup.bash" || "$(cat "$TOOLS/stamps/colcon" 2>/dev/null)" != "$build_hash" ]]; then
  log "colcon build (portal_bridge_msgs, portal_bridge)"
  (
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
    cd "$ROOT"
    colcon --log-base "$WS/log" build --base-paths portal_bridge_msgs portal_bridge \
      --build-base "$WS/build" --install-base "$WS/install" --symlink-install \
      --event-handlers console_direct- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
  )
  echo "$build_hash" > "$TOOLS/stamps/colcon"
else
  log "colcon build up to date"
fi

# --- 3. livekit-server from its Go module -----------------------------------------------------
if [[ ! -x "$LIVEKIT_SERVER" || "$(cat "$TOOLS/stamps/livekit-server" 2>/dev/null)" != "$LIVEKIT_SERVER_VERSION" ]]; then
  command -v go >/dev/null || { log "need Go >= 1.26 to build livekit-server $LIVEKIT_SERVER_VERSION"; exit 1; }
  log "building livekit-server $LIVEKIT_SERVER_VERSION from the Go module proxy (first time only)"
  export GOPATH="$TOOLS/go" GOMODCACHE="$TOOLS/go/mod" GOCACHE="$TOOLS/go/cache" GOFLAGS=-modcacherw
  GOBIN="$TOOLS/go/bin" go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
  install -m 0755 "$TOOLS/go/bin/server" "$LIVEKIT_SERVER"
  echo "$LIVEKIT_SERVER_VERSION" > "$TOOLS/stamps/livekit-server"
else
  log "livekit-server $LIVEKIT_SERVER_VERSION present"
fi

# --- 4. tools of the fault tests (network namespaces, loss rules, bandwidth cap) ----------------
# The impaired-link tests need root, ip, tc and nft. As root on Debian/Ubuntu, missing ones are
# installed from the distribution; otherwise the tests fail saying what is missing.
missing_net=()
for t in ip tc nft; do command -v "$t" >/dev/null || missing_net+=("$t"); done
if (( ${#missing_net[@]} )); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing iproute2 and nftables for the fault tests (missing: ${missing_net[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 nftables >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 nftables >/dev/null; }
  else
    log "fault tests need ${missing_net[*]} (and root); install iproute2 and nftables"
  fi
fi
log "setup complete"
