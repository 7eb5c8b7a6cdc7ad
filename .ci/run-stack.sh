#!/usr/bin/env bash
# `make run`: NATS, Redis, handlers-svc and a gateway with 2+ workers, in the
# foreground, in dev mode. Ctrl-C stops everything. Reuses a NATS or Redis
# that already answers on its port.
set -euo pipefail
cd "$(dirname "$0")/.."

export GATEWAY_DEV=1
export LOG_LEVEL="${LOG_LEVEL:-info}"
export GATEWAY_WORKERS="${GATEWAY_WORKERS:-2}"
# Loopback unless told otherwise: dev mode hands out tokens for any user
# (/dev/token) and accepts tokens signed with the public dev secret.
export GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:7999}"
NATS_PORT="${NATS_PORT:-4222}"
REDIS_PORT="${REDIS_PORT:-6379}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
export HANDLERS_ADDR="${HANDLERS_ADDR:-127.0.0.1:8081}"
export GATEWAY_METRICS_ADDR="${GATEWAY_METRICS_ADDR:-127.0.0.1:7998}"
data="$(mktemp -d)"
PATH="$PATH:/usr/sbin"
status=0
pids=()
# Every process runs in its own session, so a terminal Ctrl-C reaches only
# this script, whose stop trap then stops them in order.

stop() { # stop EXIT-STATUS
  local rc="$1"
  ((status)) && rc=$status
  # A second Ctrl-C kills everything at once rather than leave orphans.
  trap 'kill -KILL "${pids[@]}" 2>/dev/null; rm -rf "$data"; exit 130' INT TERM
  trap - EXIT
  echo >&2
  echo "stopping switchboard... (Ctrl-C again to kill)" >&2
  # In reverse start order, each one gone before the next is asked: the
  # gateway finishes its requests while handlers-svc still answers, and
  # handlers-svc drains while NATS and Redis are still there.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$data"
  echo "stopped." >&2
  exit "$rc"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# local_url ADDR: the http:// URL this machine reaches a service listening
# on ADDR at; an address without a host (":8081"), or every interface's,
# is reached on loopback.
local_url() {
  local host="${1%:*}"
  case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
  echo "http://$host:${1##*:}"
}
# names[pid] is what each started process is, for the message when one ends.
declare -A names=()
start() { # start NAME CMD...: in a session of its own
  local name="$1"; shift
  setsid "$@" &
  pids+=($!)
  names[$!]="$name"
}
wait_for() { # wait_for WHAT CMD...: until CMD succeeds, while the last started process lives
  local what="$1"; shift
  for _ in $(seq 1 100); do
    "$@" && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "run: $what exited while starting (its log is above)" >&2; status=1; exit 1
    fi
    sleep 0.1
  done
  echo "run: $what did not come up" >&2; status=1; exit 1
}
# A port our own service needs must be free: another program answering on
# it would answer the readiness checks below for a service that failed.
need_free() { # need_free VAR ADDR
  local p="${2##*:}"
  if port_open "$p"; then
    echo "run: port $p ($1=$2) is taken by another program: stop it, or set $1 to another address" >&2
    status=1; exit 1
  fi
}
need_free HANDLERS_ADDR "$HANDLERS_ADDR"
need_free GATEWAY_ADDR "$GATEWAY_ADDR"
need_free GATEWAY_METRICS_ADDR "$GATEWAY_METRICS_ADDR"

if port_open "$REDIS_PORT"; then
  echo "run: using the Redis already on port $REDIS_PORT" >&2
else
  # The pub/sub output-buffer limit of compose.yaml, for the same reason
  # (docs/operations.md, "Overload, and Redis output buffers").
  start redis-server redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$data" --loglevel warning \
    --client-output-buffer-limit "pubsub 256mb 64mb 60"
  wait_for "redis" port_open "$REDIS_PORT"
fi
if port_open "$NATS_PORT"; then
  echo "run: using the NATS already on port $NATS_PORT" >&2
else
  # docs/deploy/nats.conf's pings (a frozen handlers-svc is dropped in
  # about 15 s), without its users.
  printf 'ping_interval: "5s"\nping_max: 2\n' >"$data/nats.conf"
  start nats-server nats-server -c "$data/nats.conf" -a 127.0.0.1 -p "$NATS_PORT"
  wait_for "nats" port_open "$NATS_PORT"
fi

start handlers-svc ./bin/handlers-svc
handlers_url="$(local_url "$HANDLERS_ADDR")"
wait_for "handlers-svc" curl -fs -m 1 -o /dev/null "$handlers_url/readyz"
start gateway ./bin/gateway
port="${GATEWAY_ADDR##*:}"
wait_for "gateway" curl -fs -m 1 -o /dev/null "http://127.0.0.1:$port/readyz"

token="$(./bin/gateway token alice)"
all_ready="no admin address (GATEWAY_METRICS_ADDR=off)" all_metrics="none"
if [ "$GATEWAY_METRICS_ADDR" != off ]; then
  admin="$(local_url "$GATEWAY_METRICS_ADDR")"
  all_ready="$admin/readyz (all)" all_metrics="$admin/metrics"
fi
cat >&2 <<MSG

  switchboard is up: NATS $NATS_URL, Redis $REDIS_URL, handlers-svc, gateway with $GATEWAY_WORKERS workers.

  Demo chat:   http://localhost:$port/   (open it in a few tabs)
  WebSocket:   ws://localhost:$port/socket?token=$token
  (user alice; a token for any user: make token ID=bob,
   or http://localhost:$port/dev/token?user=bob)
  Health:      http://localhost:$port/readyz (one worker), $all_ready
  Metrics:     $all_metrics (gateway), $handlers_url/metrics (handlers-svc)
  JS client:   http://localhost:$port/client.js

  Try it:      any WebSocket client (websocat, wscat, a browser console) on the URL above,
               then send {"event":"sendMessage","args":{"to":"bob","text":"hi"},"ref":"1"}

  Ctrl-C stops everything.

MSG
ended=""
wait -n -p ended "${pids[@]}" || true
echo "run: ${names[$ended]:-a process} exited on its own; stopping the rest" >&2
status=1
