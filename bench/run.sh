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
#
# Before anything else, loadgen -mode calibrate times the host (a CPU
# workload, loopback TCP): the report's header and every row of the run in
# runs.csv carry its figures, so that runs of different days, on different
# hosts, can be told apart.
#
# After the load runs comes the resume scenario (loadgen -mode resume: devices
# drop, miss events, resume; its rows go to runs.csv as scenario "resume").
#
# A/B runs measure other stacks in the same run, each with its own servers
# (bench/stacks.sh), the load runs alternating between them at each rate:
#   BENCH_BASELINE=<git ref>    that ref's gateway and handlers-svc, built from
#                               git archive, driven by this tree's loadgen
#   BENCH_COMPARE_RECOVERY=1    this tree with HISTORY_WINDOW=0 against
#                               HISTORY_WINDOW=120s: what recovery costs
# The report then puts the stacks side by side, with ratios.
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
  RESUME_USERS=100 RESUME_ROUNDS=1 # 100 resumes
else
  IDLE_USERS=5000  # 10,000 sockets
  USERS=1000 RATES="1000,4000,8000" DURATION=20s WARMUP=5s SETTLE=30s
  SEARCH=(-search -search-duration 10s -search-warmup 3s)
  GOBENCH=()
  RESUME_USERS=1000 RESUME_ROUNDS=2 # 2,000 resumes
fi
# Overrides, for exploring how the numbers scale: BENCH_IDLE_USERS (0 = no
# idle test), BENCH_USERS, BENCH_DEVICES, BENCH_RATES, BENCH_DURATION,
# BENCH_WARMUP, BENCH_SEARCH=0|1 (BENCH_SEARCH_DURATION, BENCH_SEARCH_WARMUP:
# each search run's, 10s and 3s), BENCH_GO=0 (no Go benchmarks), BENCH_SETTLE
# (wait before reading idle RSS: 30s, past one ping round; 5s when quick), BENCH_GATEWAY_ENV
# (extra gateway environment, e.g. GOGC=100), BENCH_HANDLERS_ENV (the same for
# handlers-svc, e.g. GOMAXPROCS=1), BENCH_NATS_ENV (the same for nats-server),
# BENCH_DRAIN (wait for the last frames of a
# run, 5s), BENCH_LOGS=DIR (keep the servers' logs there), BENCH_LOADGEN_ARGS
# (extra loadgen flags for the load runs, e.g. "-cpuprofile /tmp/loadgen.pprof").
# The resume scenario: BENCH_RESUME=0 (none), BENCH_RESUME_USERS (half of
# them away each round, all their devices), BENCH_RESUME_MISSED (events each
# misses, 100), BENCH_RESUME_ROUNDS, BENCH_RESUME_RATE (reconnects/s, 100).
# A/B runs: BENCH_AB_RUNS (runs of each stack at each rate, in turn, 2).
IDLE_USERS="${BENCH_IDLE_USERS:-$IDLE_USERS}"
USERS="${BENCH_USERS:-$USERS}"
DEVICES="${BENCH_DEVICES:-2}"
RATES="${BENCH_RATES:-$RATES}"
DURATION="${BENCH_DURATION:-$DURATION}"
WARMUP="${BENCH_WARMUP:-$WARMUP}"
SEARCH_DURATION="${BENCH_SEARCH_DURATION:-10s}" SEARCH_WARMUP="${BENCH_SEARCH_WARMUP:-3s}"
case "${BENCH_SEARCH:-}" in
  0) SEARCH=() ;;
  1) SEARCH=(-search) ;;
esac
if ((${#SEARCH[@]})); then
  SEARCH=(-search -search-duration "$SEARCH_DURATION" -search-warmup "$SEARCH_WARMUP")
fi
RESUME="${BENCH_RESUME:-1}"
[[ $scale == 1 ]] && RESUME=0
RESUME_USERS="${BENCH_RESUME_USERS:-${RESUME_USERS:-0}}"
RESUME_MISSED="${BENCH_RESUME_MISSED:-100}"
RESUME_ROUNDS="${BENCH_RESUME_ROUNDS:-${RESUME_ROUNDS:-1}}"
RESUME_RATE="${BENCH_RESUME_RATE:-100}"
AB_RUNS="${BENCH_AB_RUNS:-2}"

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

source bench/stacks.sh
commit="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [[ -n $commit ]] && ! git diff --quiet HEAD -- . ':(exclude)bench/results' ':(exclude)docs' 2>/dev/null; then
  commit+="-dirty"
fi
add_stack candidate "${commit:-unknown}" bin "" "this tree"
if [[ -n ${BENCH_BASELINE:-} ]]; then
  [[ $scale == 1 ]] && { echo "bench: BENCH_BASELINE is for the load runs, not the scale test" >&2; exit 1; }
  base="$(git rev-parse --verify --quiet "${BENCH_BASELINE}^{commit}")" ||
    { echo "bench: BENCH_BASELINE=$BENCH_BASELINE is no commit of this repository" >&2; exit 1; }
  build_baseline "$base"
  add_stack baseline "$(git rev-parse --short "$base")" "bin/baseline/$base" "" "BENCH_BASELINE=$BENCH_BASELINE, built from git archive"
fi
if [[ ${BENCH_COMPARE_RECOVERY:-0} == 1 ]]; then
  [[ $scale == 1 ]] && { echo "bench: BENCH_COMPARE_RECOVERY is for the load runs, not the scale test" >&2; exit 1; }
  ST_ENV[0]="HISTORY_WINDOW=120s" ST_WHAT[0]="this tree, HISTORY_WINDOW=120s (recovery on)"
  add_stack recovery-off "${commit:-unknown}" bin "HISTORY_WINDOW=0" "this tree, HISTORY_WINDOW=0 (recovery off)"
fi
nstacks=${#ST_NAME[@]}

open_work bench
jsonl="$work/results.jsonl"
resume_jsonl="$work/resume.jsonl"
search_jsonl="$work/search.jsonl"
: >"$jsonl" >"$resume_jsonl" # the report reads both, whichever phases ran
calibrate # before the Go benchmarks and the stacks load the machine


echo "bench: Go micro benchmarks" >&2
gobench="$work/gobench.txt"
: >"$gobench"
for m in proto gateway handlers-svc bench; do
  [[ ${BENCH_GO:-1} == 0 ]] && break
  (cd "$m" && go test -run='^$' -bench=. -benchmem "${GOBENCH[@]}" ./...) >"$work/gobench-$m.txt"
  grep -E '^(Benchmark|pkg:)' "$work/gobench-$m.txt" >>"$gobench" || true
done
if [[ ${BENCH_GO:-1} != 0 && ${BENCH_COMPARE_RECOVERY:-0} == 1 ]]; then
  # What the streams cost: the publish script's round trip, and Redis
  # memory per user with 0, 10 and 100 events in the window.
  (cd internal && go test -run='^$' -bench='^Benchmark(Publish|StreamMemory)$' -benchmem ./streams/) >"$work/gobench-streams.txt"
  grep -E '^(Benchmark|pkg:)' "$work/gobench-streams.txt" >>"$gobench" || true
fi

LOG_LEVEL="${BENCH_LOG_LEVEL:-warn}"
for ((i = 0; i < nstacks; i++)); do
  echo "bench: starting stack ${ST_NAME[i]} (${ST_REF[i]}: ${ST_WHAT[i]})" >&2
  start_stack "$i"
done

if ((IDLE_USERS > 0)); then
  for ((i = 0; i < nstacks; i++)); do
    echo "bench: idle test, $idle_conns sockets, stack ${ST_NAME[i]}" >&2
    hold=()
    if [[ -n $PPROF_DIR ]] && ((i == 0)); then
      hold=(-hold 6s)
      (sleep "$((IDLE_USERS / 2000 + 8))"
        for ((w = 0; w < WORKERS; w++)); do
          curl -fs -o "$PPROF_DIR/heap-idle-w$w.pprof" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/heap?gc=1" || true
          curl -fs -o "$PPROF_DIR/goroutine-idle-w$w.txt" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/goroutine?debug=1" || true
          curl -fs -o "$PPROF_DIR/memstats-idle-w$w.txt" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/heap?debug=1" || true
        done) &
    fi
    lg_for "$i"
    "${LG[@]}" -mode idle -users "$IDLE_USERS" -devices 2 -settle "${BENCH_SETTLE:-$SETTLE}" -procs "$LOADGEN_PROCS" "${hold[@]}"
    sleep 3 # the gateway closes those sockets
  done
fi
if [[ $RATES != 0 ]]; then
  echo "bench: load runs, U=$USERS D=$DEVICES R=$RATES" >&2
  if [[ -n $PPROF_DIR ]]; then # the candidate's first load run
    (sleep "$(( ${WARMUP%s} + 3 ))"
      for ((w = 0; w < WORKERS; w++)); do
        curl -fs -o "$PPROF_DIR/cpu-load-w$w.pprof" "http://127.0.0.1:$((PPROF_PORT + w))/debug/pprof/profile?seconds=8" &
      done
      (curl -fs -o "$PPROF_DIR/cpu-load-handlers.pprof" "http://127.0.0.1:$HS_PPROF_PORT/debug/pprof/profile?seconds=8" || true
        curl -fs -o "$PPROF_DIR/allocs-load-handlers.pprof" "http://127.0.0.1:$HS_PPROF_PORT/debug/pprof/allocs" || true) &
      wait) &
  fi
  load_args=(-mode load -users "$USERS" -devices "$DEVICES" -workers "$WORKERS" -duration "$DURATION" -warmup "$WARMUP" -drain "${BENCH_DRAIN:-5s}")
  if ((nstacks == 1)); then
    lg_for 0
    "${LG[@]}" "${load_args[@]}" -rates "$RATES" "${SEARCH[@]}" ${BENCH_LOADGEN_ARGS:-}
  else
    # A/B: at each rate every stack in turn, AB_RUNS times over, the order
    # reversed every other round (A/B, B/A, ...), so a steady drift of the
    # shared machine falls on all of them alike rather than always one slot
    # later on the same stack.
    for r in ${RATES//,/ }; do
      for ((n = 0; n < AB_RUNS; n++)); do
        for ((k = 0; k < nstacks; k++)); do
          i=$k
          if ((n % 2 == 1)); then i=$((nstacks - 1 - k)); fi
          echo "bench: R=$r, stack ${ST_NAME[i]}, run $((n + 1)) of $AB_RUNS" >&2
          lg_for "$i"
          "${LG[@]}" "${load_args[@]}" -rates "$r" ${BENCH_LOADGEN_ARGS:-}
        done
      done
    done
    if ((${#SEARCH[@]})); then
      # Each stack's own search, starting from the highest rate above; its
      # runs go to the raw lines only, its verdict to the report.
      top="${RATES##*,}"
      for ((i = 0; i < nstacks; i++)); do
        echo "bench: saturation search, stack ${ST_NAME[i]}" >&2
        lg_for "$i" "$search_jsonl.$i"
        "${LG[@]}" "${load_args[@]}" -duration "$SEARCH_DURATION" -warmup "$SEARCH_WARMUP" -rates "$top" "${SEARCH[@]}" ${BENCH_LOADGEN_ARGS:-}
        grep '"mode":"saturation"' "$search_jsonl.$i" >>"$jsonl" || true
        cat "$search_jsonl.$i" >>"$search_jsonl"
      done
    fi
  fi
fi
if [[ $RESUME == 1 ]] && ((RESUME_USERS > 0)); then
  for ((i = 0; i < nstacks; i++)); do
    echo "bench: resume, U=$RESUME_USERS D=$DEVICES, $RESUME_MISSED missed each, $RESUME_ROUNDS rounds, stack ${ST_NAME[i]}" >&2
    lg_for "$i" "$resume_jsonl"
    "${LG[@]}" -mode resume -users "$RESUME_USERS" -devices "$DEVICES" -workers "$WORKERS" -missed "$RESUME_MISSED" \
      -rounds "$RESUME_ROUNDS" -resume-rate "$RESUME_RATE"
  done
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
  echo "- $calib_note"
  if [[ $scale == 1 ]]; then
    budget=$((nofile - 3000))
    echo "- file limit: RLIMIT_NOFILE is $nofile per process (hard $(ulimit -Hn), not raisable here; fs.nr_open $(cat /proc/sys/fs/nr_open)), so one process holds at most ~$((nofile - 1000)) sockets: for $idle_conns the gateway ran $WORKERS workers (ceil($idle_conns / ($nofile - 3,000 headroom for NATS, Redis, metrics and the SO_REUSEPORT imbalance))), each capped at ${SCALE_ENV[*]#GATEWAY_MAX_CONNS=} sockets (GATEWAY_MAX_CONNS, a no-op where that setting does not exist), and loadgen held the sockets in several processes (see below) and summed their reports"
    echo "- source addresses: loadgen dials from $(( idle_conns / 10000 + 1 > 8 ? idle_conns / 10000 + 1 : 8 )) loopback addresses 127.0.0.1.. x ports $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range) ($(awk '{print $2 - $1 + 1}' /proc/sys/net/ipv4/ip_local_port_range) each) to one server address; conntrack table max $(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo n/a)"
  fi
  echo "- scenario: U users in pairs, D sockets each spread over the workers, open-loop sendMessage at R/s, latency from the scheduled send time to each of the 2*D deliveries"
  if ((nstacks > 1)); then
    echo "- stacks (A/B), each with its own Redis, NATS, handlers-svc and gateway, all driven by this tree's load generator; at each rate every stack ran $AB_RUNS times, in turn:"
    for ((i = 0; i < nstacks; i++)); do
      echo "  - ${ST_NAME[i]}: commit ${ST_REF[i]} (${ST_WHAT[i]})"
    done
  fi
  if [[ -s $resume_jsonl ]]; then
    echo "- resume: U=$RESUME_USERS, D=$DEVICES; each round half the users' devices drop, $RESUME_MISSED events are sent to each, and they reconnect at $RESUME_RATE/s with resume=<last position>; rounds: $RESUME_ROUNDS"
  fi
  echo
  ./bin/loadgen table "$jsonl" "$resume_jsonl"
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
  [[ -s $work/calib.jsonl ]] && cat "$work/calib.jsonl"
  cat "$jsonl"
  [[ -s $resume_jsonl ]] && cat "$resume_jsonl"
  [[ -s $search_jsonl ]] && cat "$search_jsonl"
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
    -scenario "$scenario" -label "${BENCH_LABEL:-}" -workers "$WORKERS" "${CALIB[@]}" "$jsonl"
  if grep -q '"mode":"resume"' "$resume_jsonl" 2>/dev/null && grep -qv '"unsupported":true' "$resume_jsonl"; then
    ./bin/benchplot record -csv "$runs_csv" -run "$stamp-resume" -date "$started" -commit "$commit" \
      -scenario resume -label "${BENCH_LABEL:-}" -workers "$WORKERS" "${CALIB[@]}" "$resume_jsonl"
  fi
  echo "bench: added this run to $runs_csv" >&2
  # The chart shows the latest make bench (scenario load), earlier ones faint.
  ./bin/benchplot draw -csv "$runs_csv" -scenario load -out docs/p99.svg && echo "bench: drew docs/p99.svg" >&2
fi
cat "$report"
