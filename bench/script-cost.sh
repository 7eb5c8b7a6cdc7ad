#!/usr/bin/env bash
# Instructions Redis runs per recorded event in the publish script
# (internal/streams/publish.lua), counted by valgrind's callgrind, which a
# noisy shared box does not disturb: this tree's script, and with
# SCRIPT_BASELINE=<git ref> that ref's beside it and their ratio. The load
# is internal/streams's TestDrivePublish: sendMessage-shaped pairs of
# recorded dispatches, PAIRS per call (as handlers-svc merges them), after
# a warm-up that gives each of 1,000 users its meta. A baseline script must
# take the same keys and arguments as this tree's.
#   make bench-script [SCRIPT_BASELINE=<ref>] [SCRIPT_CALLS=250] [SCRIPT_PAIRS="1 4"]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
calls="${SCRIPT_CALLS:-250}"
pairs="${SCRIPT_PAIRS:-1 4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd internal && go test -c -o "$work/drive.test" ./streams)
scripts=("this tree=internal/streams/publish.lua")
if [ -n "${SCRIPT_BASELINE:-}" ]; then
  git show "${SCRIPT_BASELINE}:internal/streams/publish.lua" >"$work/baseline.lua"
  scripts+=("${SCRIPT_BASELINE}=$work/baseline.lua")
fi

# cost FILE PAIRS prints Redis's instructions per recorded event.
cost() {
  local file="$1" n="$2" port out pid
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  out="$work/cg.$RANDOM"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$out.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  drive() { DRIVE_ADDR="127.0.0.1:$port" DRIVE_SCRIPT="$file" DRIVE_CALLS="$1" DRIVE_PAIRS="$2" "$work/drive.test" -test.run '^TestDrivePublish$' >/dev/null; }
  drive 500 1 # every user gets its meta, uncounted
  callgrind_control -i on "$pid" >/dev/null 2>&1
  drive "$calls" "$n"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  local ir
  ir="$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
  echo $((ir / (calls * n * 2)))
}

printf '| script | pairs per call | instructions per recorded event |\n| --- | ---: | ---: |\n'
declare -A got
for n in $pairs; do
  for s in "${scripts[@]}"; do
    name="${s%%=*}" file="${s#*=}"
    got["$name/$n"]="$(cost "$file" "$n")"
    printf '| %s | %s | %s |\n' "$name" "$n" "${got[$name/$n]}"
  done
done
if [ -n "${SCRIPT_BASELINE:-}" ]; then
  for n in $pairs; do
    awk -v a="${got[this tree/$n]}" -v b="${got[$SCRIPT_BASELINE/$n]}" -v n="$n" \
      'BEGIN { printf "this tree ÷ %s at %s pairs per call: %.3f\n", "'"$SCRIPT_BASELINE"'", n, a / b }'
  done
fi
