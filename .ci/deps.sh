#!/usr/bin/env bash
# Installs from Debian's packages what a fresh machine lacks.
#   deps.sh test   redis-server (the tests embed their NATS server), and
#                  node, chromium and tsc for the client's, the browser and
#                  the type tests
#                  (node must be 20.10 or later: checked, never upgraded)
#   deps.sh run    redis-server, nats-server and curl, for `make run`
# Extra package names may follow the mode. Go itself must be present.
set -euo pipefail

mode="${1:-test}"
shift || true
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

need=()
have redis-server || need+=(redis-server)
if [ "$mode" = test ]; then
  have node || need+=(nodejs)
  have chromium || need+=(chromium)
  have tsc || need+=(node-typescript) # type-checks client.d.ts (TestClientTypes)
fi
if [ "$mode" = run ]; then
  have nats-server || need+=(nats-server)
  have curl || need+=(curl)
fi
for pkg in "$@"; do
  have "$pkg" || need+=("$pkg")
done

# node_ok fails, saying why, unless node is 20.10 or later: the client's
# tests need its WebSocket. Debian bookworm's nodejs is 18, which has none,
# and Node cannot be fetched from anywhere else here, so an older node is an
# error to fix on the machine image, not something to install over.
node_ok() {
  local v
  v="$(node -p 'process.versions.node' 2>/dev/null)" || { echo "deps: node does not run" >&2; return 1; }
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  if ((major > 20 || (major == 20 && minor >= 10))); then
    return 0
  fi
  echo "deps: node $v is too old: the JavaScript client's tests need Node 20.10 or later" >&2
  echo "deps: (Debian's nodejs package is 18 on bookworm; use an image that ships Node 20+)" >&2
  return 1
}

# apt_install PKG...: up to three tries, each with a fresh package index,
# so that one failed fetch of the index or of a package does not fail CI;
# a package that does not exist fails all three. apt waits up to 5 minutes
# for another apt or dpkg to let go of its lock rather than fail at once.
apt_install() {
  local sudo="" try
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  for try in 1 2 3; do
    if "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null; then
      return 0
    fi
    echo "deps: apt-get failed (try $try of 3)" >&2
    ((try == 3)) || sleep $((try * 5))
  done
  return 1
}

if ((${#need[@]})); then
  echo "deps: installing ${need[*]}" >&2
  apt_install "${need[@]}"
fi
if [ "$mode" = test ]; then
  node_ok
fi
