#!/usr/bin/env bash
# `make bench-fanout`: issue 15's fan-out scenario. A gateway of
# BENCH_WORKERS (8) workers, BENCH_USERS (10,000) users with BENCH_DEVICES
# (1) sockets each, spread over the workers as SO_REUSEPORT hashes them, and
# the sendMessage pairs of the load scenario at BENCH_RATES, then a short
# saturation search (BENCH_SEARCH=0: none); once with FANOUT_MODE=shared and
# once with FANOUT_MODE=per_user on both services, each mode on a stack of
# its own (Redis, NATS, handlers-svc, gateway) started for it and stopped
# after it, so the two never share the machine. loadgen -fanout reads,
# around each run's measured window, Redis's INFO stats and commandstats
# (output bytes, publishes) and the gateway's dispatches_total and
# dispatches_unrouted_total, summed over the workers from the supervisor's
# /metrics (GATEWAY_METRICS_CACHE=0, so each read is fresh). Then, on the
# same stack, the 1→N scenario (loadgen -mode fan1n): dispatches through
# handlers-svc's dispatch API to a room of 1,000 members and broadcasts to
# every socket, latency from the scheduled send to every socket's arrival.
#
# Before the first stack, loadgen -mode calibrate times the host; the
# report's header and every row carry its figures.
#
# Writes bench/results/fanout.md and adds its rows (scenario fanout, stack =
# the mode) to bench/results/runs.csv; BENCH_RECORD=0 leaves both alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/sbin:/usr/local/go/bin"

started="$(date -u '+%Y-%m-%d %H:%M')"
stamp="$(date -u +%Y-%m-%d-%H%M)"
record="${BENCH_RECORD:-1}"
out="${BENCH_OUT:-}"
[[ -z $out && $record != 0 ]] && out="bench/results/fanout.md"
runs_csv="${BENCH_CSV:-bench/results/runs.csv}"
GW_PORT="${BENCH_GATEWAY_PORT:-27999}"
METRICS_PORT="${BENCH_METRICS_PORT:-27998}"
NATS_PORT="${BENCH_NATS_PORT:-24222}"
REDIS_PORT="${BENCH_REDIS_PORT:-26379}"
HS_PORT="${BENCH_HANDLERS_PORT:-28081}"
PPROF_PORT="${BENCH_PPROF_PORT:-27990}"
HS_PPROF_PORT="${BENCH_HANDLERS_PPROF_PORT:-27989}"
WORKERS="${BENCH_WORKERS:-8}"
USERS="${BENCH_USERS:-10000}"
DEVICES="${BENCH_DEVICES:-1}"
RATES="${BENCH_RATES:-2000,4000}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-3s}"
MODES="${BENCH_FANOUT_MODES:-shared per_user}"
SEARCH=()
if [[ ${BENCH_SEARCH:-1} == 1 ]]; then
  SEARCH=(-search -search-duration "${BENCH_SEARCH_DURATION:-8s}" -search-warmup "${BENCH_SEARCH_WARMUP:-2s}")
fi
# The 1→N scenario, on the same stack after the load runs (BENCH_1N=0:
# none): dispatches to a room of BENCH_ROOM_MEMBERS users at
# BENCH_ROOM_RATES a second, then broadcasts to every socket at
# BENCH_BROADCAST_RATES a second.
ROOM_MEMBERS="${BENCH_ROOM_MEMBERS:-1000}"
ROOM_RATES="${BENCH_ROOM_RATES:-10,25,50,150}"
BCAST_RATES="${BENCH_BROADCAST_RATES:-1,5,15}"
ONEN_DURATION="${BENCH_1N_DURATION:-5s}"
ONEN_WARMUP="${BENCH_1N_WARMUP:-2s}"
LOG_LEVEL="${BENCH_LOG_LEVEL:-warn}"
SCALE_ENV=()
# Each read of /metrics reads every worker afresh.
BENCH_GATEWAY_ENV="GATEWAY_METRICS_CACHE=0 ${BENCH_GATEWAY_ENV:-}"

ulimit -n "$(ulimit -Hn)" || true
go build -o bin/gateway ./gateway/cmd/gateway
go build -o bin/handlers-svc ./handlers-svc/cmd/handlers-svc
go build -o bin/loadgen ./bench/cmd/loadgen

source bench/stacks.sh
commit="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [[ -n $commit ]] && ! git diff --quiet HEAD -- . ':(exclude)bench/results' ':(exclude)docs' 2>/dev/null; then
  commit+="-dirty"
fi
# The 1→N scenario dispatches through handlers-svc's dispatch API.
API_KEY="bench-fanout-api-key-0123456789"
for m in $MODES; do
  add_stack "$m" "${commit:-unknown}" bin "FANOUT_MODE=$m HANDLERS_API_KEY=$API_KEY" "this tree, FANOUT_MODE=$m"
done

open_work bench-fanout
jsonl="$work/results.jsonl"
raw="$work/raw.jsonl"
: >"$jsonl" >"$raw" >"$work/failures.txt"
calibrate # before any stack loads the machine

# stop_stack I: stops stack I's servers, the gateway first, so that the
# next mode has the machine to itself.
stop_stack() {
  local p
  for p in "${S_GW[$1]}" "${S_HS[$1]}" "${S_NATS[$1]}" "${S_REDIS[$1]}"; do stop_pid "$p"; done
}

for ((i = 0; i < ${#ST_NAME[@]}; i++)); do
  echo "bench-fanout: FANOUT_MODE=${ST_NAME[i]}: $WORKERS workers, U=$USERS D=$DEVICES R=$RATES" >&2
  start_stack "$i"
  lg_for "$i" "$raw"
  # Every line names its mode, even when only one mode runs.
  ((${#ST_NAME[@]} > 1)) || LG+=(-stack "${ST_NAME[i]}" -ref "${ST_REF[i]}")
  "${LG[@]}" -mode load -fanout -users "$USERS" -devices "$DEVICES" -workers 0 -dial-concurrency 32 \
    -duration "$DURATION" -warmup "$WARMUP" -drain "${BENCH_DRAIN:-5s}" -rates "$RATES" "${SEARCH[@]}" \
    -search-max "${BENCH_SEARCH_MAX:-20000}" ${BENCH_LOADGEN_ARGS:-}
  if [[ ${BENCH_1N:-1} == 1 ]]; then
    echo "bench-fanout: 1→N, FANOUT_MODE=${ST_NAME[i]}: room of $ROOM_MEMBERS at $ROOM_RATES/s, broadcasts to $USERS x $DEVICES at $BCAST_RATES/s" >&2
    "${LG[@]}" -mode fan1n -users "$USERS" -devices "$DEVICES" -workers 0 -dial-concurrency 32 \
      -room-members "$ROOM_MEMBERS" -room-rates "$ROOM_RATES" -broadcast-rates "$BCAST_RATES" \
      -dispatch-url "http://127.0.0.1:$(port "$HS_PORT" "$i")/v1/dispatch" -api-key "$API_KEY" \
      -duration "$ONEN_DURATION" -warmup "$ONEN_WARMUP" -drain "${BENCH_DRAIN:-5s}" ||
      echo "FANOUT_MODE=${ST_NAME[i]}: the 1→N scenario failed (exit $?); see the load generator's output" >>"$work/failures.txt"
  fi
  stop_stack "$i"
done
# The report's table has the runs at the rates asked for and each search's
# verdict; the search's own runs are in the raw lines.
nr="$(tr ',' '\n' <<<"$RATES" | grep -c .)"
for m in $MODES; do
  grep "\"stack\":\"$m\"" "$raw" | grep '"mode":"load"' | head -n "$nr" >>"$jsonl" || true
  grep "\"stack\":\"$m\"" "$raw" | grep '"mode":"saturation"' >>"$jsonl" || true
  grep "\"stack\":\"$m\"" "$raw" | grep '"mode":"fan1n"' >>"$jsonl" || true
done

report="$work/report.md"
{
  echo "# switchboard fan-out benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr)"
  echo "- $(go version | cut -d' ' -f3-), redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), $(nats-server --version 2>&1 | head -1)"
  echo "- scenario fanout, commit ${commit:-unknown}${BENCH_LABEL:+; $BENCH_LABEL}; \`make bench-fanout\`"
  echo "- stack: gateway with $WORKERS workers, handlers-svc, NATS and Redis, and the load generator, all on this machine; LOG_LEVEL=$LOG_LEVEL; each FANOUT_MODE on a stack of its own, one after the other"
  echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- $calib_note"
  echo "- scenario: U=$USERS users in pairs, D=$DEVICES socket(s) each, spread over the workers by SO_REUSEPORT; open-loop sendMessage at R/s, each 2 dispatches (message to the partner, message_sent to the sender) and 2*D deliveries; latency from the scheduled send time to each delivery; $DURATION measured after $WARMUP warm-up"
  echo "- 1→N: the first $ROOM_MEMBERS users join room $(printf %s bench-1n) (joinRoom, set-up), then POST /v1/dispatch on handlers-svc with \"rooms\":[room] at $ROOM_RATES dispatches/s, then with \"broadcast\":true at $BCAST_RATES/s, each phase $ONEN_DURATION after $ONEN_WARMUP warm-up, 8 requests in flight at most; latency from each dispatch's scheduled time to its arrival at every socket"
  echo "- a dispatch is one publish, as Redis counts them (INFO commandstats publish + spublish; the gateway's subscription probes, a few a second, are among them); Redis out bytes per dispatch is INFO stats total_net_output_bytes over the window ÷ dispatches (everything Redis wrote: pub/sub messages to the workers, and the replies to handlers-svc's publish scripts); workers reading each dispatch is the workers' switchboard_gateway_dispatches_total ÷ dispatches; the unrouted share is switchboard_gateway_dispatches_unrouted_total ÷ dispatches_total, summed over the workers; (W-D)/W is what shared mode should show when a user's D sockets are on D different workers"
  echo
  ./bin/loadgen table "$jsonl"
  if [[ -s $work/failures.txt ]]; then
    echo
    sed 's/^/**Failed:** /' "$work/failures.txt"
  fi
  echo
  echo "<details><summary>raw JSON lines</summary>"
  echo
  echo '```'
  [[ -s $work/calib.jsonl ]] && cat "$work/calib.jsonl"
  cat "$raw"
  echo '```'
  echo "</details>"
} >"$report"
if [[ -n $out ]]; then
  mkdir -p "$(dirname "$out")"
  cp "$report" "$out"
  echo "bench-fanout: wrote $out" >&2
fi
if [[ $record != 0 ]]; then
  go build -o bin/benchplot ./bench/cmd/benchplot
  ./bin/benchplot record -csv "$runs_csv" -run "$stamp-fanout" -date "$started" -commit "$commit" \
    -scenario fanout -label "${BENCH_LABEL:-}" -workers "$WORKERS" "${CALIB[@]}" "$jsonl"
  echo "bench-fanout: added this run to $runs_csv" >&2
fi
cat "$report"
