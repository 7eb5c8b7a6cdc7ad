# shellcheck shell=bash
# Sourced by bench/run.sh and bench/fanout.sh: the stacks a run measures, and how each is built
# and started. Stack 0 is the candidate, this tree; an A/B run adds others
# (BENCH_BASELINE: another git ref's binaries; BENCH_COMPARE_RECOVERY=1: this
# tree with recovery off). Every stack has its own Redis, NATS, handlers-svc
# and gateway, on the base ports plus 100 times its index, so the stacks
# never share a server and the idle ones cost next to nothing while another
# is measured.

# port_open PORT: something listens on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_for WHAT CMD...: runs CMD every 0.1 s until it succeeds, for 15 s at
# most, then gives up naming WHAT.
wait_for() {
  local what="$1"; shift
  for _ in $(seq 1 150); do "$@" && return 0; sleep 0.1; done
  echo "${0##*/}: $what did not come up" >&2; exit 1
}

# stop_pid PID: asks PID to stop, waits 10 s at most, then kills it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# open_work NAME: makes the run's scratch directory ($work) and arms an exit
# trap that stops every process in pids (the last started first), shows
# the gateway's last log lines when the run failed (NAME: in front), keeps
# the servers' logs in BENCH_LOGS when set, and removes $work.
open_work() {
  BENCH_NAME="$1"
  load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
  work="$(mktemp -d)"
  pids=()
  trap close_work EXIT
  trap 'exit 130' INT TERM
}
close_work() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  if ((rc)); then
    echo "$BENCH_NAME: failed; last gateway log lines:" >&2
    tail -n 5 "$work"/gateway*.log >&2 2>/dev/null || true
  fi
  if [[ -n ${BENCH_LOGS:-} ]]; then
    mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}

# calibrate: times this host before any stack starts (loadgen -mode
# calibrate: a CPU workload, a loopback round trip and a loopback write,
# ~3 s) into $work/calib.jsonl; sets calib_note, the report header's line,
# and CALIB, benchplot record's flag that puts the figures on every row.
# A failed calibration is said in the report, not fatal.
calibrate() {
  local f="$work/calib.jsonl" line cpu what rtt wr
  CALIB=()
  calib_note="host calibration: failed (see the run's output)"
  echo "$BENCH_NAME: host calibration" >&2
  ./bin/loadgen -mode calibrate -json "$f" || return 0
  line="$(grep -m1 '"mode":"calibrate"' "$f")" || return 0
  what="$(sed -n 's/.*"cpu_workload":"\([^"]*\)".*/\1/p' <<<"$line")"
  cpu="$(sed -n 's/.*"cpu_ns":\([0-9.]*\).*/\1/p' <<<"$line")"
  rtt="$(sed -n 's/.*"rtt_us":\([0-9.]*\).*/\1/p' <<<"$line")"
  wr="$(sed -n 's/.*"write_ns":\([0-9.]*\).*/\1/p' <<<"$line")"
  [[ -n $cpu && -n $rtt && -n $wr ]] || return 0
  calib_note="host calibration (loadgen -mode calibrate, at the start, before any stack): $cpu ns per $what on one thread, $rtt µs per 64 B round trip over loopback TCP between two threads, $wr ns per 64 B loopback write"
  CALIB=(-calib "$f")
}

ST_NAME=() # candidate, baseline, recovery-off
ST_REF=()  # the commit each was built from (short hash, -dirty for a changed tree)
ST_BIN=()  # the directory of its gateway and handlers-svc
ST_ENV=()  # extra environment of its handlers-svc and gateway
ST_WHAT=() # for the report: what the stack is
S_REDIS=() S_NATS=() S_HS=() S_GW=()

# add_stack NAME REF BINDIR ENV WHAT
add_stack() {
  ST_NAME+=("$1") ST_REF+=("$2") ST_BIN+=("$3") ST_ENV+=("$4") ST_WHAT+=("$5")
}

# build_baseline REF: builds REF's gateway and handlers-svc into
# bin/baseline/<full hash>/ from `git archive`, so no worktree is touched,
# and keeps them there for the next run. Only the two servers are built:
# the load generator is always this tree's, so both stacks get the same
# load. The servers' main packages have been at gateway/cmd/gateway and
# handlers-svc/cmd/handlers-svc in every release, with go.work at the root
# (the load generator moved, from gateway/cmd/loadgen to bench/).
build_baseline() {
  local hash="$1" dir="bin/baseline/$1" src
  if [[ -x $dir/gateway && -x $dir/handlers-svc ]]; then
    echo "bench: baseline $hash already built in $dir" >&2
    return
  fi
  echo "bench: building the baseline $hash" >&2
  src="$(mktemp -d)"
  git archive "$hash" | tar -x -C "$src"
  mkdir -p "$dir.tmp"
  local out="$PWD/$dir.tmp"
  if ! (cd "$src" && go build -o "$out/gateway" ./gateway/cmd/gateway && go build -o "$out/handlers-svc" ./handlers-svc/cmd/handlers-svc); then
    rm -rf "$src" "$dir.tmp"
    echo "bench: cannot build the gateway and handlers-svc of $hash" >&2
    return 1
  fi
  rm -rf "$src" "$dir"
  mv "$dir.tmp" "$dir"
}

# port BASE I: stack I's port for a base port.
port() { echo $(($1 + 100 * $2)); }

# log_of KIND I: the log file of a server of stack I (the candidate's keep
# their names of a one-stack run).
log_of() {
  if (($2 == 0)); then echo "$work/$1.log"; else echo "$work/$1-${ST_NAME[$2]}.log"; fi
}

# start_stack I: starts stack I's Redis, NATS, handlers-svc and gateway and
# waits until every worker is ready.
start_stack() {
  local i="$1" bin="${ST_BIN[$1]}" extra="${ST_ENV[$1]}"
  local rp np hp gp mp pp hpp
  rp="$(port "$REDIS_PORT" "$i")" np="$(port "$NATS_PORT" "$i")" hp="$(port "$HS_PORT" "$i")"
  gp="$(port "$GW_PORT" "$i")" mp="$(port "$METRICS_PORT" "$i")"
  pp="$(port "$PPROF_PORT" "$i")" hpp="$(port "$HS_PPROF_PORT" "$i")"
  for p in "$rp" "$np" "$hp" "$gp" "$mp"; do
    if port_open "$p"; then echo "bench: port $p is taken (set BENCH_*_PORT)" >&2; exit 1; fi
  done
  mkdir -p "$work/redis-$i"
  # The pub/sub output-buffer limit of compose.yaml (docs/operations.md,
  # "Overload"); BENCH_REDIS_PUBSUB_LIMIT overrides it, e.g. with Redis's
  # default "32mb 8mb 60" to compare.
  redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis-$i" --loglevel warning \
    --client-output-buffer-limit "pubsub ${BENCH_REDIS_PUBSUB_LIMIT:-256mb 64mb 60}" >"$(log_of redis "$i")" 2>&1 &
  pids+=($!); S_REDIS[i]=$!
  wait_for redis port_open "$rp"
  env ${BENCH_NATS_ENV:-} nats-server -a 127.0.0.1 -p "$np" >"$(log_of nats "$i")" 2>&1 &
  pids+=($!); S_NATS[i]=$!
  wait_for nats port_open "$np"

  local urls=(NATS_URL="nats://127.0.0.1:$np" REDIS_URL="redis://127.0.0.1:$rp/0" LOG_LEVEL="$LOG_LEVEL")
  env "${urls[@]}" HANDLERS_PPROF_ADDR="127.0.0.1:$hpp" HANDLERS_ADDR="127.0.0.1:$hp" $extra ${BENCH_HANDLERS_ENV:-} \
    "$bin/handlers-svc" 2>"$(log_of handlers "$i")" &
  pids+=($!); S_HS[i]=$!
  wait_for handlers-svc curl -fs -m 1 -o /dev/null "http://127.0.0.1:$hp/readyz"
  # The load generator is one address: the per-address limits, which
  # defend against one client, are off for it.
  env "${urls[@]}" GATEWAY_PPROF_PORT="$pp" GATEWAY_DEV=1 GATEWAY_ADDR="127.0.0.1:$gp" GATEWAY_WORKERS="$WORKERS" \
    GATEWAY_METRICS_ADDR="127.0.0.1:$mp" GATEWAY_IP_PENDING=0 GATEWAY_IP_UPGRADE_RATE=0 \
    "${SCALE_ENV[@]}" $extra ${BENCH_GATEWAY_ENV:-} \
    "$bin/gateway" 2>"$(log_of gateway "$i")" &
  pids+=($!); S_GW[i]=$!
  # Every worker ready: /readyz names the worker that answered.
  local -A ready=()
  local w
  for _ in $(seq 1 300); do
    w="$(curl -fs -m 1 "http://127.0.0.1:$gp/readyz" 2>/dev/null | sed -n 's/.*"worker":\([0-9]*\).*/\1/p')" || true
    [[ -n $w ]] && ready[$w]=1
    ((${#ready[@]} >= WORKERS)) && break
    sleep 0.05
  done
  ((${#ready[@]} >= WORKERS)) || { echo "bench: stack ${ST_NAME[i]}: gateway workers not ready" >&2; exit 1; }
}

# lg_for I [JSONL]: sets LG to the load generator's command line against
# stack I, writing its JSON lines to JSONL (default: the run's results).
lg_for() {
  local i="$1" out="${2:-$jsonl}"
  LG=(./bin/loadgen -url "ws://127.0.0.1:$(port "$GW_PORT" "$i")/socket" -json "$out"
    -gateway-pid "${S_GW[i]}" -handlers-pid "${S_HS[i]}" -nats-pid "${S_NATS[i]}" -redis-pid "${S_REDIS[i]}"
    -metrics "http://127.0.0.1:$(port "$METRICS_PORT" "$i")/metrics"
    -redis-addr "127.0.0.1:$(port "$REDIS_PORT" "$i")")
  if ((${#ST_NAME[@]} > 1)); then
    LG+=(-stack "${ST_NAME[i]}" -ref "${ST_REF[i]}")
  fi
}
