package loadgen

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRunShTellsLoadgenTheWorkers: bench/run.sh starts the gateway with
// GATEWAY_WORKERS=$WORKERS (BENCH_WORKERS, 2 by default) but never passes
// -workers to the load generator, whose default is 2. In load mode loadgen
// redials device d of user u until it lands on worker (u+d) mod -workers,
// so with BENCH_WORKERS=4 every socket ends up on workers 0 and 1 and
// workers 2 and 3 hold none; with BENCH_WORKERS=1 half the sockets are
// redialled 31 times in vain. The load run's command line is lg_for's LG
// followed by load_args: it must say -workers $WORKERS.
func TestRunShTellsLoadgenTheWorkers(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := `set -euo pipefail
source bench/stacks.sh
WORKERS=4 GW_PORT=27999 METRICS_PORT=27998 REDIS_PORT=26379 jsonl=/dev/null
USERS=10 DEVICES=2 DURATION=1s WARMUP=1s
S_GW=(11) S_HS=(12) S_NATS=(13) S_REDIS=(14)
add_stack candidate x bin "" "this tree"
lg_for 0
line="$(grep -m1 '^ *load_args=(' bench/run.sh)"
eval "$line"
printf '%s\n' "${LG[@]}" "${load_args[@]}"
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	args := strings.Split(strings.TrimSpace(string(out)), "\n")
	i := slices.Index(args, "-workers")
	if i < 0 || i+1 >= len(args) || args[i+1] != "4" {
		t.Errorf("the load run's loadgen arguments with WORKERS=4 do not say -workers 4, so loadgen spreads the sockets over its default of 2:\n%s", strings.Join(args, " "))
	}
}
