#!/usr/bin/env bash
# One-command, idempotent setup of one environment (PORTAL_ENV, default jazzy-py312; see
# common.sh): its venv with pinned ROS 2 wheels and tools, colcon build of both packages, and a
# pinned livekit-server built from its Go module (shared by the environments). Each step keeps a
# stamp of what it was built from and is skipped when nothing changed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"

# --- 1. virtual environment ------------------------------------------------------------------
PY=$(find_python) || { log "need Python $PY_VERSION for $PORTAL_ENV (python$PY_VERSION on PATH or pyenv's versions/$PY_VERSION.*)"; exit 1; }
venv_hash=$(hash_files "$REQUIREMENTS" "$CONSTRAINTS" <(echo "$PY"))
stamp="$TOOLS/stamps/venv-$PORTAL_ENV"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$venv_hash" ]]; then
  log "creating virtual environment $PORTAL_ENV in ${VENV#"$ROOT"/} ($PY)"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQUIREMENTS" -c "$CONSTRAINTS"
  # The wheels' CMake export files name the wheel factory's Python and numpy include dirs.
  tag=$("$VENV/bin/python" -c 'import sys; v = sys.version_info; print(f"cp{v[0]}{v[1]}-cp{v[0]}{v[1]}")')
  py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rlE "/opt/python/$tag" "$VENV/share" --include='*Export.cmake' 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/$tag/lib/python$PY_VERSION/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/$tag/include/python$PY_VERSION#$py_inc#g" "$f"
  done
  # colcon must never mistake the venv's share/ for source packages.
  touch "$VENV/COLCON_IGNORE"
  echo "$venv_hash" > "$stamp"
else
  log "venv $PORTAL_ENV up to date"
fi
touch "$TOOLS/COLCON_IGNORE"
mkdir -p "$ROOT/.venvs" && touch "$ROOT/.venvs/COLCON_IGNORE"

# --- 2. the browser console's page (TypeScript -> one bundle in web/console/dist) --------------
# Built before colcon, which installs dist/ into share/portal_bridge/web/console. node_modules and
# dist are not committed; npm's cache (~/.npm) makes a fresh clone's `npm ci` quick.
WEB="portal_bridge/web/console"
web_hash=$(hash_files "$WEB/package.json" "$WEB/package-lock.json" "$WEB/tsconfig.json" "$WEB"/src/*.ts "$WEB"/static/*)
if [[ ! -f "$WEB/dist/console.js" || "$(cat "$TOOLS/stamps/web-console" 2>/dev/null)" != "$web_hash" ]]; then
  if command -v npm >/dev/null; then
    log "building the console page ($WEB: npm ci, typecheck, esbuild)"
    (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent build) \
      >"$TOOLS/web-console-build.log" 2>&1 || { cat "$TOOLS/web-console-build.log"; log "console page build failed"; exit 1; }
    echo "$web_hash" > "$TOOLS/stamps/web-console"
  else
    log "npm not found: the console page is not built (install Node.js >= 18 and run make setup again)"
  fi
else
  log "console page up to date"
fi

# --- 3. colcon build of portal_bridge_msgs and portal_bridge ---------------------------------
# Python sources are symlinked (--symlink-install), so only manifests, interfaces and the list
# of installed data files decide a rebuild.
build_inputs=$( { find portal_bridge_msgs -type f; find portal_bridge -maxdepth 1 -type f;
                  find portal_bridge/launch portal_bridge/config portal_bridge/resource "$WEB/dist" -type f 2>/dev/null; } | sort )
# shellcheck disable=SC2086
build_hash=$( { echo "$build_inputs"; cat $build_inputs; cat "$stamp"; } | sha256sum | cut -d' ' -f1)
if [[ ! -f "$WS/install/setup.bash" || "$(cat "$TOOLS/stamps/colcon-$PORTAL_ENV" 2>/dev/null)" != "$build_hash" ]]; then
  log "colcon build of portal_bridge_msgs and portal_bridge ($PORTAL_ENV)"
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
  echo "$build_hash" > "$TOOLS/stamps/colcon-$PORTAL_ENV"
else
  log "colcon build up to date"
fi

# --- 4. livekit-server from its Go module -----------------------------------------------------
# Built once per machine into the user's cache (a fresh clone, as in CI, reuses it); the Go module
# and build caches live there too. PORTAL_BRIDGE_CACHE moves it.
CACHE="${PORTAL_BRIDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal_bridge}"
cached_server="$CACHE/bin/livekit-server-$LIVEKIT_SERVER_VERSION"
if [[ ! -x "$LIVEKIT_SERVER" || "$(cat "$TOOLS/stamps/livekit-server" 2>/dev/null)" != "$LIVEKIT_SERVER_VERSION" ]]; then
  if [[ ! -x "$cached_server" ]]; then
    command -v go >/dev/null || { log "need Go >= 1.26 to build livekit-server $LIVEKIT_SERVER_VERSION"; exit 1; }
    log "building livekit-server $LIVEKIT_SERVER_VERSION from the Go module proxy (once per machine)"
    mkdir -p "$CACHE/bin"
    export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/cache" GOFLAGS=-modcacherw
    GOBIN="$CACHE/go/bin" go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
    install -m 0755 "$CACHE/go/bin/server" "$cached_server"
  fi
  install -m 0755 "$cached_server" "$LIVEKIT_SERVER"
  echo "$LIVEKIT_SERVER_VERSION" > "$TOOLS/stamps/livekit-server"
else
  log "livekit-server $LIVEKIT_SERVER_VERSION present"
fi

# --- 5. tools of the fault tests (network namespaces, loss rules, bandwidth cap) ----------------
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
# --- 6. the browser of the console tests: Debian's chromium and its driver, never a download ----
if ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || ! command -v chromedriver >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing chromium and chromium-driver for the console tests (about a minute)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
  else
    log "console tests need chromium and chromedriver (and root to install them): apt-get install chromium chromium-driver"
  fi
fi
log "setup complete"
