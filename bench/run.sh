#!/usr/bin/env bash
# `make bench` / `make bench-quick`: Go micro benchmarks, then the whole stack
# (Redis, NATS, handlers-svc, a 2-worker gateway) on private ports, the idle
# test and the load runs of the performance scenario with cmd/loadgen. Each
# run appends its rows to bench/results/runs.csv, replaces the latest report
# of its scenario (bench/results/<scenario>.md) and redraws docs/p99.svg.
# Every process it starts is stopped on exit. BENCH_QUICK=1 is a ~30 s smoke
# version. BENCH_SCALE=1 (`make bench-scale`) is the 100,000-socket idle test
# alone, with as many workers and load generator processes as the file limit
# per process requires.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/sbin:/usr/local/go/bin"

quick="${BENCH_QUICK:-0}"
scale="${BENCH_SCALE:-0}"
stamp="$(date -u +%Y-%m-%d-%H%M)"
suffix=""
[[ $quick == 1 ]] && suffix="-quick"
[[ $scale == 1 ]] && suffix="-scale"
started="$(date -u '+%Y-%m-%d %H:%M')"
# BENCH_SCENARIO names the run's kind in runs.csv and its report's file
# (e.g. overload); BENCH_LABEL notes what it changed (e.g. "GOGC=200");
# BENCH_RECORD=0 leaves runs.csv, the report and the chart alone (the report
# goes to BENCH_OUT, if set).
scenario="${BENCH_SCENARIO:-load}"
[[ $quick == 1 ]] && scenario="${BENCH_SCENARIO:-quick}"
[[ $scale == 1 ]] && scenario="${BENCH_SCENARIO:-scale}"
record="${BENCH_RECORD:-1}"
out="${BENCH_OUT:-}"
[[ -z $out && $record != 0 ]] && out="bench/results/$scenario.md"
runs_csv="${BENCH_CSV:-bench/results/runs.csv}"
GW_PORT="${BENCH_GATEWAY_PORT:-27999}"
METRICS_PORT="${BENCH_METRICS_PORT:-27998}"
NATS_PORT="${BENCH_NATS_PORT:-24222}"
REDIS_PORT="${BENCH_REDIS_PORT:-26379}"
HS_PORT="${BENCH_HANDLERS_PORT:-28081}"
WORKERS="${BENCH_WORKERS:-2}"

if [[ $scale == 1 ]]; then
  IDLE_USERS=50000  # 100,000 sockets
  RATES=0 SEARCH=() SETTLE=30s GOBENCH=() USERS=0 DURATION=0 WARMUP=0
  : "${BENCH_GO:=0}"
elif [[ $quick == 1 ]]; then
  IDLE_USERS=1000  # 2,000 sockets
  USERS=200 RATES="500,2000" DURATION=5s WARMUP=2s SEARCH=() SETTLE=5s
  GOBENCH=(-benchtime=2000x)
else
  IDLE_USERS=5000  # 10,000 sockets
  USERS=1000 RATES="1000,4000,8000" DURATION=20s WARMUP=5s SETTLE=30s
  SEARCH=(-search -search-duration 10s -search-warmup 3s)
  GOBENCH=()
fi
# Overrides, for exploring how the numbers scale: BENCH_IDLE_USERS (0 = no
# idle test), BENCH_USERS, BENCH_DEVICES, BENCH_RATES, BENCH_DURATION,
# BENCH_WARMUP, BENCH_SEARCH=0|1, BENCH_GO=0 (no Go benchmarks), BENCH_SETTLE
# (wait before reading idle RSS: 30s, past one ping round; 5s when quick), BENCH_GATEWAY_ENV
# (extra gateway environment, e.g. GOGC=100), BENCH_HANDLERS_ENV (the same for
# handlers-svc, e.g. GOMAXPROCS=1), BENCH_NATS_ENV (the same for nats-server),
# BENCH_DRAIN (wait for the last frames of a
# run, 5s), BENCH_LOGS=DIR (keep the servers' logs there), BENCH_LOADGEN_ARGS
# (extra loadgen flags for the load runs, e.g. "-cpuprofile /tmp/loadgen.pprof").
IDLE_USERS="${BENCH_IDLE_USERS:-$IDLE_USERS}"
USERS="${BENCH_USERS:-$USERS}"
DEVICES="${BENCH_DEVICES:-2}"
RATES="${BENCH_RATES:-$RATES}"
DURATION="${BENCH_DURATION:-$DURATION}"
WARMUP="${BENCH_WARMUP:-$WARMUP}"
case "${BENCH_SEARCH:-}" in
  0) SEARCH=() ;;
  1) SEARCH=(-search -search-duration 10s -search-warmup 3s) ;;
esac

# Sockets need file descriptors: as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)" || true
echo "bench: RLIMIT_NOFILE $(ulimit -n) (hard $(ulimit -Hn))" >&2
nofile="$(ulimit -n)"
[[ $nofile == unlimited ]] && nofile=1048576
idle_conns=$((IDLE_USERS * 2))
LOADGEN_PROCS="${BENCH_LOADGEN_PROCS:-0}" # 0: loadgen splits itself as the file limit needs
SCALE_ENV=()
if [[ $scale == 1 ]]; then
  # RLIMIT_NOFILE is per process: a worker holds at most nofile sockets, less
  # its listener, NATS, Redis and metrics descriptors. SO_REUSEPORT hashes
  # each connection to a worker, so the busiest gets a few hundred over the
  # mean at 100,000: give each worker a budget 3,000 under the limit, cap it
  # 1,000 under (GATEWAY_MAX_CONNS answers 503 beyond, which loadgen retries,
  # instead of the worker failing accept with EMFILE), and add workers.
  budget=$((nofile - 3000))
  ((budget > 1000)) || { echo "bench: RLIMIT_NOFILE $nofile is too low for the scale test" >&2; exit 1; }
  WORKERS="${BENCH_WORKERS:-$(( (idle_conns + budget - 1) / budget > 2 ? (idle_conns + budget - 1) / budget : 2 ))}"
  SCALE_ENV=(GATEWAY_MAX_CONNS="${BENCH_MAX_CONNS:-$((nofile - 1000))}")
  echo "bench: scale test, $idle_conns sockets: $WORKERS workers, ${SCALE_ENV[*]}" >&2
fi

# BENCH_PPROF=DIR: a gateway and a handlers-svc built with -tags pprof; heap
# profiles of the workers while the idle sockets are held, CPU profiles of the
# workers and of handlers-svc during the first load run
# (BENCH_GATEWAY_ENV=GATEWAY_PPROF_MEMRATE=1: every allocation in the heap
# profiles).
PPROF_DIR="${BENCH_PPROF:-}"
PPROF_PORT="${BENCH_PPROF_PORT:-27990}"
HS_PPROF_PORT="${BENCH_HANDLERS_PPROF_PORT:-27989}"
if [[ -n $PPROF_DIR ]]; then
  mkdir -p "$PPROF_DIR"
  go build -tags pprof -o bin/gateway ./gateway/cmd/gateway
  go build -tags pprof -o bin/handlers-svc ./handlers-svc/cmd/handlers-svc
else
  go build -o bin/gateway ./gateway/cmd/gateway
  go build -o bin/handlers-svc ./handlers-svc/cmd/handlers-svc
fi
go build -o bin/loadgen ./bench/cmd/loadgen

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d)"
jsonl="$work/results.jsonl"
pids=()
stop() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if ((rc)); then
    echo "bench: failed; last gateway log lines:" >&2
    tail -n 5 "$work/gateway.log" >&2 2>/dev/null || true
  fi
  if [[ -n ${BENCH_LOGS:-} ]]; then
    mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # wait_for WHAT CMD...
  local what="$1"; shift
  for _ in $(seq 1 150); do "$@" && return 0; sleep 0.1; done
  echo "bench: $what did not come up" >&2; exit 1
}
for p in "$GW_PORT" "$NATS_PORT" "$REDIS_PORT" "$HS_PORT" "$METRICS_PORT"; do
  if port_open "$p"; then echo "bench: port $p is taken (set BENCH_*_PORT)" >&2; exit 1; fi
done

echo "bench: Go micro benchmarks" >&2
gobench="$work/gobench.txt"
: >"$gobench"
for m in proto gateway handlers-svc bench; do
  [[ ${BENCH_GO:-1} == 0 ]] && break
  (cd "$m" && go test -run='^$' -bench=. -benchmem "${GOBENCH[@]}" ./...) >"$work/gobench-$m.txt"
  grep -E '^(Benchmark|pkg:)' "$work/gobench-$m.txt" >>"$gobench" || true
done

# The pub/sub output-buffer limit of compose.yaml (docs/operations.md,
# "Overload"); BENCH_REDIS_PUBSUB_LIMIT overrides it, e.g. with Redis's
# default "32mb 8mb 60" to compare.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --loglevel warning \
  --client-output-buffer-limit "pubsub ${BENCH_REDIS_PUBSUB_LIMIT:-256mb 64mb 60}" >"$work/redis.log" 2>&1 &
pids+=($!); redis_pid=$!
wait_for redis port_open "$REDIS_PORT"
env ${BENCH_NATS_ENV:-} nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$work/nats.log" 2>&1 &
pids+=($!); nats_pid=$!
wait_for nats port_open "$NATS_PORT"

export NATS_URL="nats://127.0.0.1:$NATS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export LOG_LEVEL="${BENCH_LOG_LEVEL:-warn}"
HANDLERS_PPROF_ADDR="127.0.0.1:$HS_PPROF_PORT" HANDLERS_ADDR="127.0.0.1:$HS_PORT" env ${BENCH_HANDLERS_ENV:-} ./bin/handlers-svc 2>"$work/handlers.log" &
pids+=($!); hs_pid=$!
wait_for handlers-svc curl -fs -m 1 -o /dev/null "http://127.0.0.1:$HS_PORT/readyz"
# The load generator is one address: the per-address limits, which
# defend against one client, are off for it.
GATEWAY_PPROF_PORT="$PPROF_PORT" GATEWAY_DEV=1 GATEWAY_ADDR="127.0.0.1:$GW_PORT" GATEWAY_WORKERS="$WORKERS" \
  GATEWAY_IP_PENDING=0 GATEWAY_IP_UPGRADE_RATE=0 \
  GATEWAY_METRICS_ADDR="127.0.0.1:$METRICS_PORT" env "${SCALE_ENV[@]}" ${BENCH_GATEWAY_ENV:-} ./bin/gateway 2>"$work/gateway.log" &
pids+=($!); gw_pid=$!
# Both workers ready: /readyz names the worker that answered.
declare -A ready=()
for _ in $(seq 1 300); do
  w="$(curl -fs -m 1 "http://127.0.0.1:$GW_PORT/readyz" 2>/dev/null | sed -n 's/.*"worker":\([0-9]*\).*/\1/p')" || true
  [[ -n $w ]] && ready[$w]=1
  ((${#ready[@]} >= WORKERS)) && break
  sleep 0.05
done
((${#ready[@]} >= WORKERS)) || { echo "bench: gateway workers not ready" >&2; exit 1; }

lg=(./bin/loadgen -url "ws://127.0.0.1:$GW_PORT/socket" -json "$jsonl"
  -gateway-pid "$gw_pid" -handlers-pid "$hs_pid" -nats-pid "$nats_pid" -redis-pid "$redis_pid"
  -metrics "http://127.0.0.1:$METRICS_PORT/metrics")

if ((IDLE_USERS > 0)); then
  echo "bench: idle test, $idle_conns sockets" >&2
  hold=()
  if [[ -n $PPROF_DIR ]]; then
    hold=(-hold 6s)
    (sleep "$((IDLE_USERS / 2000 + 8))"
      for ((w = 0; w < WORKERS; w++)); do
        curl -fs -o "$PPROF_DIR/heap-idle-w$w.pprof" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/heap?gc=1" || true
        curl -fs -o "$PPROF_DIR/goroutine-idle-w$w.txt" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/goroutine?debug=1" || true
        curl -fs -o "$PPROF_DIR/memstats-idle-w$w.txt" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/heap?debug=1" || true
      done) &
  fi
  "${lg[@]}" -mode idle -users "$IDLE_USERS" -devices 2 -settle "${BENCH_SETTLE:-$SETTLE}" -procs "$LOADGEN_PROCS" "${hold[@]}"
  sleep 3 # the gateway closes those sockets
fi
if [[ $RATES != 0 ]]; then
  echo "bench: load runs, U=$USERS D=$DEVICES R=$RATES" >&2
  if [[ -n $PPROF_DIR ]]; then
    (sleep "$(( ${WARMUP%s} + 3 ))"
      for ((w = 0; w < WORKERS; w++)); do
        curl -fs -o "$PPROF_DIR/cpu-load-w$w.pprof" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/profile?seconds=8" &
      done
      (curl -fs -o "$PPROF_DIR/cpu-load-handlers.pprof" "http://127.0.0.1:$HS_PPROF_PORT/debug/pprof/profile?seconds=8" || true
        curl -fs -o "$PPROF_DIR/allocs-load-handlers.pprof" "http://127.0.0.1:$HS_PPROF_PORT/debug/pprof/allocs" || true) &
      wait) &
  fi
  "${lg[@]}" -mode load -users "$USERS" -devices "$DEVICES" -rates "$RATES" -duration "$DURATION" -warmup "$WARMUP" -drain "${BENCH_DRAIN:-5s}" "${SEARCH[@]}" ${BENCH_LOADGEN_ARGS:-}
fi

commit="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [[ -n $commit ]] && ! git diff --quiet HEAD -- . ':(exclude)bench/results' ':(exclude)docs' 2>/dev/null; then
  commit+="-dirty"
fi
report="$work/report.md"
{
  case $suffix in
    -quick) what=" (quick smoke run)" ;;
    -scale) what=": $idle_conns idle connections" ;;
    *) what="" ;;
  esac
  echo "# switchboard benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')$what"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)"
  echo "- $(go version | cut -d' ' -f3-), redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), $(nats-server --version 2>&1 | head -1)"
  echo "- scenario $scenario, commit ${commit:-unknown}${BENCH_LABEL:+; $BENCH_LABEL}"
  echo "- stack: gateway with $WORKERS workers, handlers-svc, NATS and Redis, and the load generator, all on this machine; LOG_LEVEL=$LOG_LEVEL"
  echo "- load average (1, 5, 15 min) at the start: $load_start; at the end, the runs' own load included: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ $scale == 1 ]]; then
    budget=$((nofile - 3000))
    echo "- file limit: RLIMIT_NOFILE is $nofile per process (hard $(ulimit -Hn), not raisable here; fs.nr_open $(cat /proc/sys/fs/nr_open)), so one process holds at most ~$((nofile - 1000)) sockets: for $idle_conns the gateway ran $WORKERS workers (ceil($idle_conns / ($nofile - 3,000 headroom for NATS, Redis, metrics and the SO_REUSEPORT imbalance))), each capped at ${SCALE_ENV[*]#GATEWAY_MAX_CONNS=} sockets (GATEWAY_MAX_CONNS, a no-op where that setting does not exist), and loadgen held the sockets in several processes (see below) and summed their reports"
    echo "- source addresses: loadgen dials from $(( idle_conns / 10000 + 1 > 8 ? idle_conns / 10000 + 1 : 8 )) loopback addresses 127.0.0.1.. x ports $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range) ($(awk '{print $2 - $1 + 1}' /proc/sys/net/ipv4/ip_local_port_range) each) to one server address; conntrack table max $(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo n/a)"
  fi
  echo "- scenario: U users in pairs, D sockets each spread over the workers, open-loop sendMessage at R/s, latency from the scheduled send time to each of the 2*D deliveries"
  echo
  ./bin/loadgen table "$jsonl"
  if [[ -s $gobench ]]; then
    echo
    echo "<details><summary>Go micro benchmarks</summary>"
    echo
    echo '```'
    cat "$gobench"
    echo '```'
    echo "</details>"
  fi
  echo
  echo "<details><summary>raw JSON lines</summary>"
  echo
  echo '```'
  cat "$jsonl"
  echo '```'
  echo "</details>"
} >"$report"
if [[ -n $out ]]; then
  mkdir -p "$(dirname "$out")"
  cp "$report" "$out"
  echo "bench: wrote $out" >&2
fi
if [[ $record != 0 ]]; then
  go build -o bin/benchplot ./bench/cmd/benchplot
  ./bin/benchplot record -csv "$runs_csv" -run "$stamp-$scenario" -date "$started" -commit "$commit" \
    -scenario "$scenario" -label "${BENCH_LABEL:-}" -workers "$WORKERS" "$jsonl"
  echo "bench: added this run to $runs_csv" >&2
  # The chart shows the latest make bench (scenario load), earlier ones faint.
  ./bin/benchplot draw -csv "$runs_csv" -scenario load -out docs/p99.svg && echo "bench: drew docs/p99.svg" >&2
fi
cat "$report"
