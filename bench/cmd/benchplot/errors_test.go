package main

import (
	"strings"
	"testing"
)

// TestLoadRowErrorsCountFailedSends: a load run whose sends failed on the
// client side (send_errors: the socket was dead or the write failed;
// client_overflow: the socket's send queue was full) did not pass, and the
// report's table counts those in its errors column (error frames + send
// errors + overflow + conns lost). runs.csv's errors cell takes the error
// frames alone, so the row says 0 missing, 0 duplicates, 0 errors, 0
// conns lost and pass "no", with nothing to tell why.
func TestLoadRowErrorsCountFailedSends(t *testing.T) {
	line := `{"mode":"load","users":1000,"devices":2,"rate":4000,"sends_per_s":4000,"deliveries_per_s":16000,` +
		`"latency":{"p99_ms":3},"missing":0,"duplicates":0,"error_frames":0,"send_errors":3,"client_overflow":4,` +
		`"conns_lost":0,"pass":false}`
	rows, err := ParseResults(strings.NewReader(line), Meta{Run: "r", Date: "2026-01-01 00:00"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	if got := rows[0]["errors"]; got != "7" {
		t.Errorf("errors cell %q; want 7 (3 send errors + 4 client overflows), as the report's table counts them", got)
	}
}
