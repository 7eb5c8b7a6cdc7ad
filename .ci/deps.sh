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

if ((${#need[@]})); then
  echo "deps: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$mode" = test ]; then
  node_ok
fi
