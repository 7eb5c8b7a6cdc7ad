package cmdtest_test

import (
	"os"
	"testing"

	"github.com/switchboard/switchboard/internal/cmdtest"
)

func TestBuildAndRun(t *testing.T) {
	t.Setenv("ECHO_EXIT", "9") // the test's environment does not reach the process
	bin := cmdtest.Build(t, "./testdata/echo")
	tests := []struct {
		name string
		env  []string
		args []string
		want cmdtest.Result
	}{
		{"exit 0", nil, []string{"a", "b"}, cmdtest.Result{Stdout: "a b\n"}},
		{"exit status and stderr", []string{"ECHO_EXIT=3", "ECHO_STDERR=oops"}, nil, cmdtest.Result{Stdout: "\n", Stderr: "oops", Code: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cmdtest.Run(t, bin, tt.env, tt.args...); got != tt.want {
				t.Fatalf("Run = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
}

func TestJSONLines(t *testing.T) {
	lines := cmdtest.JSONLines(t, `{"msg":"a","n":1}`+"\n"+`{"msg":"b"}`+"\n")
	if len(lines) != 2 || cmdtest.Line(lines, "b") == nil || cmdtest.Line(lines, "a")["n"] != 1.0 {
		t.Fatalf("JSONLines = %v", lines)
	}
	if cmdtest.Line(lines, "c") != nil {
		t.Fatal(`Line("c") found a line`)
	}
}

// TestRefusalCheck: Check passes a refusal, and fails each way a process
// can fall short of one.
func TestRefusalCheck(t *testing.T) {
	const line = `{"level":"error","logger":"svc","msg":"refusing to start","error":"NATS_URL: bad"}`
	want := cmdtest.Refusal{Code: 2, Logger: "svc", Names: "NATS_URL", Hides: "s3cr3t"}
	tests := []struct {
		name string
		r    cmdtest.Result
		pass bool
	}{
		{"refusal", cmdtest.Result{Stderr: `{"level":"info","msg":"x"}` + "\n" + line + "\n", Code: 2}, true},
		{"other status", cmdtest.Result{Stderr: line, Code: 1}, false},
		{"plain text", cmdtest.Result{Stderr: "svc: NATS_URL: bad\n", Code: 2}, false},
		{"plain text after the line", cmdtest.Result{Stderr: line + "\nusage: svc\n", Code: 2}, false},
		{"other setting", cmdtest.Result{Stderr: `{"level":"error","logger":"svc","msg":"refusing to start","error":"REDIS_URL: bad"}`, Code: 2}, false},
		{"other logger", cmdtest.Result{Stderr: `{"level":"error","logger":"x","msg":"refusing to start","error":"NATS_URL: bad"}`, Code: 2}, false},
		{"secret shown", cmdtest.Result{Stderr: `{"level":"error","logger":"svc","msg":"refusing to start","error":"NATS_URL: s3cr3t"}`, Code: 2}, false},
		{"stdout", cmdtest.Result{Stdout: "hi", Stderr: line, Code: 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			func() {
				defer func() { _ = recover() }() // Fatalf ends the check
				want.Check(rec, tt.r)
			}()
			if rec.failed == tt.pass {
				t.Fatalf("Check failed = %v, want %v", rec.failed, !tt.pass)
			}
		})
	}
}

// recorder is a testing.TB whose failures are only noted.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic("fatal") }
