#!/usr/bin/env bash
# Installs what switchboard's tests and `make run` need and a fresh machine
# lacks: redis-server and nats-server from Debian's packages. Go itself is
# expected at /usr/local/go or on PATH.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
for pkg in "$@"; do
  case "$pkg" in
    chromium) command -v chromium >/dev/null 2>&1 || need+=(chromium) ;;
    *) need+=("$pkg") ;;
  esac
done

if ((${#need[@]})); then
  echo "deps: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
