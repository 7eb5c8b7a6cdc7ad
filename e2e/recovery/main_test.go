package recovery

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// loadTests is how many tests of the matrix share SOAK_EVENTS: those that
// run a load through their faults.
const loadTests = 9

// results collects what each test of the matrix did, for the soak report.
var results struct {
	sync.Mutex
	list []Result
}

// record keeps r for the soak report.
func record(r Result) {
	results.Lock()
	defer results.Unlock()
	results.list = append(results.list, r)
}

// TestMain runs the matrix and, when SOAK_REPORT names a file, writes the
// soak report there (and a row to SOAK_CSV, when set), with every test's
// results; a run with a failed test writes it too, marked as failed.
func TestMain(m *testing.M) {
	start := time.Now()
	code := m.Run()
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		results.Lock()
		list := results.list
		results.Unlock()
		rep := newReport(list, start, time.Now(), code == 0)
		if err := rep.write(path, os.Getenv("SOAK_CSV")); err != nil {
			fmt.Fprintln(os.Stderr, "soak report:", err)
			if code == 0 {
				code = 1
			}
		} else {
			fmt.Fprintf(os.Stderr, "soak report: %s\n%s\n", path, rep.summary())
		}
	}
	os.Exit(code)
}
