#!/usr/bin/env bash
# `make profile-fanout` (bench/profile.sh fanout) and `make profile-load`
# (bench/profile.sh load): where the CPU of one delivery goes on this
# machine, process by process, the kernel's share apart from the process's
# own code.
#
#   fanout  bench/fanout.sh's 1→N scenario alone (FANOUT_MODE=shared, 8
#           workers, 10,000 sockets): a room of 1,000 members at
#           PROFILE_ROOM_RATE (20) dispatches/s, then broadcasts at
#           PROFILE_BROADCAST_RATE (12)/s
#   load    bench/run.sh's sendMessage load on this tree's stack alone
#           (1,000 users x 2 devices, recovery on) at each of
#           PROFILE_RATES (1000,4000) sends/s
#
# Each phase is recorded by `perf record -a` for PROFILE_SECONDS (10)
# inside its measured window, and then, for PROFILE_CALL_SECONDS (3), the
# reads and writes of the bench's gateway and load generator processes are
# counted by `perf stat` (system calls per delivery: frames that share a
# call cost less). The machine should be quiet: the samples are grouped by
# process name, so another stack's processes would count as this one's
# (the report says when any ran). For each phase it prints CPU µs per
# delivery (the same number as ms per 1,000 deliveries) for every process,
# split into kernel and user time, the ceiling that the kernel's part
# alone puts on deliveries/s (the machine's cores ÷ the kernel µs per
# delivery) and, for 1→N, how long one dispatch's deliveries keep every
# core busy at those costs. Nothing goes to bench/results/runs.csv; the
# report replaces bench/results/profile-<scenario>.md (PROFILE_OUT) unless
# BENCH_RECORD=0.
#
# Needs perf (Debian: apt-get install linux-perf) and root or
# kernel.perf_event_paranoid ≤ 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/sbin:/usr/local/go/bin"

scenario="${1:-}"
case "$scenario" in
fanout | load) ;;
*)
  echo "usage: bench/profile.sh fanout|load" >&2
  exit 2
  ;;
esac
me="profile-$scenario"
if ! command -v perf >/dev/null || ! perf stat -a -e cpu-clock -- true >/dev/null 2>&1; then
  echo "$me: needs perf that may sample the whole machine (apt-get install linux-perf; run as root)" >&2
  exit 1
fi
secs="${PROFILE_SECONDS:-10}"
callsecs="${PROFILE_CALL_SECONDS:-3}"
room_rate="${PROFILE_ROOM_RATE:-20}"
bcast_rate="${PROFILE_BROADCAST_RATE:-12}"
rates="${PROFILE_RATES:-1000,4000}"
if [[ $room_rate == *,* || $bcast_rate == *,* ]]; then
  echo "$me: PROFILE_ROOM_RATE and PROFILE_BROADCAST_RATE take one rate each" >&2
  exit 2
fi
# The measured window must outlast the recordings: 2 s of warm-up, then
# the samples from 1 s into the measured window, then the system calls.
dur="$((secs + callsecs + 3))s"
out="${PROFILE_OUT:-bench/results/$me.md}"
[[ ${BENCH_RECORD:-1} == 0 ]] && out=""
work="$(mktemp -d "/tmp/$me.XXXXXX")"
log="$work/bench.log"
bench_report="$work/bench.md"
: >"$log"
echo "$me: working in $work" >&2

# The bench runs in a process group of its own, so that a failure here
# stops its whole stack at once.
if [[ $scenario == fanout ]]; then
  BENCH_RECORD=0 BENCH_OUT="$bench_report" BENCH_FANOUT_MODES=shared BENCH_RATES=500 BENCH_DURATION=3s \
    BENCH_SEARCH=0 BENCH_ROOM_RATES="$room_rate" BENCH_BROADCAST_RATES="$bcast_rate" BENCH_1N_DURATION="$dur" \
    setsid bash bench/fanout.sh >"$log" 2>&1 &
else
  BENCH_RECORD=0 BENCH_OUT="$bench_report" BENCH_RATES="$rates" BENCH_DURATION="$dur" BENCH_WARMUP=2s \
    BENCH_SEARCH=0 BENCH_IDLE_USERS=0 BENCH_GO=0 BENCH_RESUME=0 \
    setsid bash bench/run.sh >"$log" 2>&1 &
fi
bench=$!
trap 'kill -TERM -- -"$bench" 2>/dev/null || true' EXIT

# descendants PID: the processes below PID, at any depth.
descendants() {
  local p
  for p in $(pgrep -P "$1" || true); do
    echo "$p"
    descendants "$p"
  done
}

# ours NAME: the pids, comma-separated, of the bench's processes named NAME.
ours() {
  local p
  for p in $(descendants "$bench"); do
    if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == "$1" ]]; then echo "$p"; fi
  done | paste -sd,
}

# record PATTERN FILE: waits for the phase's start line, records the
# whole machine's samples into FILE, then counts the system calls of the
# bench's gateway and load generator processes (into FILE.<name>.calls),
# in a window of their own: the tracepoints slow every system call while
# they count.
record() {
  local deadline=$((SECONDS + 900))
  until grep -q "$1" "$log"; do
    if ! kill -0 "$bench" 2>/dev/null || ((SECONDS > deadline)); then
      echo "$me: no phase \"$1\" in the bench's output; its end:" >&2
      tail -20 "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
  sleep 3
  if ! perf record -a -o "$2" -- sleep "$secs" >/dev/null 2>"$2.err"; then
    echo "$me: perf record failed:" >&2
    cat "$2.err" >&2
    exit 1
  fi
  local who pids stats=()
  for who in gateway loadgen; do
    pids="$(ours "$who")"
    [[ -n $pids ]] || continue
    perf stat -x, -o "$2.$who.calls" -p "$pids" \
      -e syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom \
      -- sleep "$callsecs" >/dev/null 2>"$2.$who.err" &
    stats+=($!)
  done
  ((${#stats[@]} == 0)) || wait "${stats[@]}" || echo "$me: perf stat failed: $(cat "$2".*.err)" >&2
  # Another stack's processes would be in the samples under the same names.
  local foreign
  foreign="$(pgrep -x 'gateway|loadgen|handlers-svc|nats-server|redis-server' | grep -vxF -f <(descendants "$bench") | paste -sd' ' || true)"
  [[ -z $foreign ]] || echo "- note: processes of another stack ran beside this one (pids $foreign): their samples count as this one's" >>"$work/notes.md"
}
if [[ $scenario == fanout ]]; then
  record 'loadgen: 1→N: .* broadcast false' "$work/room.data"
  record 'loadgen: 1→N: .* broadcast true' "$work/broadcast.data"
else
  for r in ${rates//,/ }; do
    record "loadgen: R=$r: " "$work/R$r.data"
  done
fi
wait "$bench" || echo "$me: the bench exited with $?; see $log" >&2
trap - EXIT

# syscalls FILE: the counts perf stat wrote beside FILE, as
# "process,call,count;..." (calls counted zero times left out).
syscalls() {
  local who
  for who in gateway loadgen; do
    [[ -f $1.$who.calls ]] || continue
    awk -F, -v who="$who" '$1 ~ /^[0-9]+$/ && $1 > 0 {
      sub(/^syscalls:sys_enter_/, "", $3); printf "%s,%s,%s;", who, $3, $1 }' "$1.$who.calls"
  done | sed 's/;$//'
}

# phase LABEL FILE PATTERN: the table of one phase, whose bench result is
# the last JSON line of the bench's report that PATTERN (grep -E) matches.
# Deliveries in the recording are the phase's measured deliveries/s times
# the recording's length.
phase() {
  local line rate recipients ms cpus
  line="$(grep -E "$3" "$bench_report" | tail -1)"
  if [[ -z $line ]]; then
    echo "**$1**: no result in the bench's report"
    echo
    return
  fi
  rate="$(sed -n 's/.*"deliveries_per_s":\([0-9.e+]*\).*/\1/p' <<<"$line")"
  recipients="$(sed -n 's/.*"recipients":\([0-9]*\).*/\1/p' <<<"$line")"
  ms="$(perf report -i "$2" --stdio --header-only 2>/dev/null | sed -n 's/^# sample duration : *\([0-9.]*\) ms/\1/p')"
  cpus="$(perf report -i "$2" --stdio --header-only 2>/dev/null | sed -n 's/^# nrcpus online : *//p')"
  perf report -i "$2" --no-children --sort comm,dso -g none --stdio -q 2>/dev/null |
    awk -v rate="$rate" -v ms="$ms" -v cpus="$cpus" -v label="$1" -v recipients="${recipients:-0}" -v callstr="$(syscalls "$2")" -v callsecs="$callsecs" '
      BEGIN { ncalls = split(callstr, calls, ";") }
      NF >= 3 && $1 ~ /%$/ {
        share = substr($1, 1, length($1) - 1) / 100
        comm = $2
        if (comm == "swapper") comm = "(idle)"
        else if (comm ~ /^ksoftirqd/) comm = "ksoftirqd"
        else if (comm !~ /^(gateway|handlers-svc|nats-server|redis-server|loadgen)$/) comm = "(other)"
        side = ($3 == "[kernel.kallsyms]") ? "k" : "u"
        cpu[comm, side] += share * cpus * ms / 1000
        seen[comm] = 1
      }
      END {
        n = rate * ms / 1000
        if (n <= 0) {
          printf "**%s**: no deliveries measured\n\n", label
          exit
        }
        printf "**%s**, %.0f deliveries/s, %.1f s recorded on %d cores (%.0f deliveries):\n\n", label, rate, ms / 1000, cpus, n
        print "| process | kernel µs / delivery | user µs / delivery | all |"
        print "| --- | ---: | ---: | ---: |"
        split("gateway loadgen redis-server handlers-svc nats-server ksoftirqd (other)", order, " ")
        for (i = 1; i <= 7; i++) {
          c = order[i]
          if (!(c in seen)) continue
          k = cpu[c, "k"] * 1e6 / n; u = cpu[c, "u"] * 1e6 / n
          printf "| %s | %.1f | %.1f | %.1f |\n", c, k, u, k + u
          kt += k; ut += u
        }
        printf "| all | %.1f | %.1f | %.1f |\n\n", kt, ut, kt + ut
        shown = 0
        for (i = 1; i <= ncalls; i++) {
          split(calls[i], f, ",")
          nc = rate * callsecs
          if (f[3] / nc < 0.005) continue
          printf "%s%s: %.2f %s calls per delivery", (shown++ ? "; " : "System calls (counted over " callsecs " s after the samples): "), f[1], f[3] / nc, f[2]
        }
        if (shown) print ".\n"
        printf "The cores were idle %.0f%% of the recording. ", 100 * cpu["(idle)", "k"] / (cpus * ms / 1000)
        printf "The kernel alone, at %.1f µs per delivery, lets %d cores carry at most %.0f deliveries/s; all the CPU, at %.1f µs, %.0f. ", kt, cpus, cpus * 1e6 / kt, kt + ut, cpus * 1e6 / (kt + ut)
        if (recipients > 0)
          printf "At these costs one dispatch to %d sockets keeps all %d cores busy for %.1f ms in the kernel alone, %.1f ms in all.", recipients, cpus, recipients * kt / cpus / 1000, recipients * (kt + ut) / cpus / 1000
        print "\n"
      }'
}

report="$work/report.md"
{
  if [[ $scenario == fanout ]]; then
    echo "# switchboard 1→N profile, $(date -u '+%Y-%m-%d %H:%M UTC')"
  else
    echo "# switchboard load profile, $(date -u '+%Y-%m-%d %H:%M UTC')"
  fi
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [[ $scenario == fanout ]]; then
    echo "- \`make profile-fanout\`: bench/fanout.sh's 1→N scenario, FANOUT_MODE=shared, 8 workers, 10,000 sockets; a room of 1,000 members at $room_rate dispatches/s, then broadcasts at $bcast_rate/s; \`perf record -a\` for ${secs} s inside each phase's measured window, then the gateway's and the load generator's system calls counted for ${callsecs} s (the tracepoints slow every call, so never during the samples)"
  else
    echo "- \`make profile-load\`: bench/run.sh's load scenario on this tree's stack alone (2 workers, 1,000 users x 2 devices, sendMessage, 4 deliveries per send, recovery on) at $rates sends/s; \`perf record -a\` for ${secs} s inside each rate's measured window, then the gateway's and the load generator's system calls counted for ${callsecs} s"
  fi
  echo "- CPU per delivery = a process's share of the samples × cores × seconds recorded ÷ deliveries in the recording (µs per delivery is ms per 1,000 deliveries); the kernel column is the time in the kernel on the process's behalf (for the gateway mostly sendto(2) to the client sockets; loopback charges the receiving side's TCP work to the sender, or to ksoftirqd when it runs late)"
  grep -m1 '^- host calibration' "$bench_report" 2>/dev/null || true
  cat "$work/notes.md" 2>/dev/null || true
  echo
  if [[ $scenario == fanout ]]; then
    phase room "$work/room.data" '^\{"mode":"fan1n".*"target":"room"'
    phase broadcast "$work/broadcast.data" '^\{"mode":"fan1n".*"target":"broadcast"'
    echo "The run's own 1→N rows (latency is from each dispatch's scheduled time to each socket's arrival):"
    echo
    sed -n '/^| FANOUT_MODE | target/,/^$/p' "$bench_report"
  else
    for r in ${rates//,/ }; do
      phase "R = $r sends/s" "$work/R$r.data" "^\\{\"mode\":\"load\".*\"rate\":$r,"
    done
    echo "The run's own rows:"
    echo
    sed -n '/^| /,/^$/p' "$bench_report" | head -40
  fi
} >"$report"
cat "$report"
if [[ -n $out ]]; then
  cp "$report" "$out"
  echo "$me: wrote $out" >&2
fi
