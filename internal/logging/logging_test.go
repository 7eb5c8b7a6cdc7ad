package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/switchboard/switchboard/internal/logging"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    zapcore.Level
		wantErr bool
	}{
		{"debug", zapcore.DebugLevel, false},
		{"info", zapcore.InfoLevel, false},
		{"warn", zapcore.WarnLevel, false},
		{"error", zapcore.ErrorLevel, false},
		// zapcore.ParseLevel takes all of these; a configuration may not.
		{"", 0, true},
		{"INFO", 0, true},
		{"Warn", 0, true},
		{"warning", 0, true},
		{"dpanic", 0, true},
		{"panic", 0, true},
		{"fatal", 0, true},
		{"verbose", 0, true},
		{" info", 0, true},
	}
	for _, tt := range tests {
		got, err := logging.ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "debug, info, warn or error") {
			t.Errorf("ParseLevel(%q) error %q does not name the levels", tt.in, err)
		}
	}
}

// The child modes of this test binary: what the tests below run in a
// process of its own to read its stderr.
const childEnv = "LOGGING_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "refuse":
		logging.Refuse("svc", errors.New(`LOG_LEVEL: must be debug, info, warn or error, got "loud"`))
		os.Exit(3)
	case "new":
		log, err := logging.New("warn")
		if err != nil {
			os.Exit(4)
		}
		log.Info("not shown")
		log.Warn("shown", zap.String("k", "v"))
		_ = log.Sync()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child runs this test binary in mode and returns its stderr as lines.
func child(t *testing.T, mode string) (lines []map[string]any, exit int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	var stderr, stdout bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout %q, want nothing: logs go to stderr", stdout.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines, exit
}

func TestRefuseIsOneJSONLine(t *testing.T) {
	lines, exit := child(t, "refuse")
	if exit != 3 {
		t.Errorf("exit %d, want the caller's 3: Refuse does not exit", exit)
	}
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	if l["level"] != "error" || l["msg"] != logging.RefusalMessage || l["logger"] != "svc" ||
		!strings.Contains(l["error"].(string), "LOG_LEVEL") || l["ts"] == nil {
		t.Errorf("line %v, want level error, msg %q, logger svc, the error and a ts", l, logging.RefusalMessage)
	}
	if c, _ := l["caller"].(string); !strings.HasPrefix(c, "logging/logging_test.go:") {
		t.Errorf("caller %q, want the line that called Refuse", l["caller"])
	}
	if _, ok := l["stacktrace"]; ok {
		t.Errorf("line %v has a stack trace: a refusal is no bug", l)
	}
}

func TestNewWritesJSONAtLevel(t *testing.T) {
	lines, exit := child(t, "new")
	if exit != 0 {
		t.Fatalf("exit %d", exit)
	}
	if len(lines) != 1 || lines[0]["msg"] != "shown" || lines[0]["level"] != "warn" || lines[0]["k"] != "v" {
		t.Fatalf("lines %v, want the warn line alone", lines)
	}
	if ts, _ := lines[0]["ts"].(string); !strings.Contains(ts, "T") {
		t.Errorf("ts %v, want an RFC 3339 time", lines[0]["ts"])
	}
}

func TestNewRefusesBadLevel(t *testing.T) {
	if _, err := logging.New("loud"); err == nil {
		t.Fatal("New(loud) succeeded")
	}
}
