# tools/lib.sh: shared by the tools/ scripts (sourced, not run).
# Loads deploy/callcenter.env (the environment wins), and knows where the
# build and the private state live.

CC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CC_BUILD=${CC_BUILD_DIR:-$CC_ROOT/build}
CC_VAR=${CC_VAR_DIR:-$CC_ROOT/var}
export CC_CONFIG_FILE=${CC_CONFIG_FILE:-$CC_ROOT/deploy/callcenter.env}

# Exports every KEY=VALUE of the defaults file that the environment lacks.
cc_load_config() {
  local line key value
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    case "$line" in ''|'#'*) continue ;; esac
    key=${line%%=*}; value=${line#*=}
    key=${key%"${key##*[![:space:]]}"}
    value=${value#\"}; value=${value%\"}
    if [ -z "${!key+x}" ]; then export "$key=$value"; fi
  done < "$CC_CONFIG_FILE"
}

# Port of a URL such as postgresql://u@127.0.0.1:55432/db.
cc_url_port() { sed -E 's#^[a-z]+://([^@/]*@)?[^:/]+:([0-9]+).*#\2#' <<<"$1"; }

# Builds when needed: configures once, then an incremental build.
cc_build() {
  local dir=${1:-$CC_BUILD}; shift || true
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$CC_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  fi
  cmake --build "$dir" -j "$(nproc)" -- --no-print-directory >"$dir/build.log" 2>&1 || {
    tail -n 40 "$dir/build.log" >&2
    echo "build failed: full log in $dir/build.log" >&2
    return 1
  }
}

# The binaries of the services that exist, forwarder first.
cc_service_names() {
  local d
  [ -x "$CC_BUILD/services/forwarder/forwarder" ] && echo forwarder
  for d in "$CC_ROOT"/services/*/; do
    d=$(basename "$d")
    [ "$d" = forwarder ] && continue
    [ -x "$CC_BUILD/services/$d/$d" ] && echo "$d"
  done
}

# ORDER_SYNC_ADMIN_PORT for order-sync.
cc_admin_port() {
  local key
  key=$(tr 'a-z-' 'A-Z_' <<<"$1")_ADMIN_PORT
  echo "${!key}"
}

cc_pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
