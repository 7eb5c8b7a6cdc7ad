#!/usr/bin/env bash
# Installs from Debian's packages what a fresh machine lacks.
#   deps.sh test   redis-server (the tests embed their NATS server), and
#                  node and chromium for the client's and the browser tests
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
fi
if [ "$mode" = run ]; then
  have nats-server || need+=(nats-server)
  have curl || need+=(curl)
fi
for pkg in "$@"; do
  have "$pkg" || need+=("$pkg")
done

if ((${#need[@]})); then
  echo "deps: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
