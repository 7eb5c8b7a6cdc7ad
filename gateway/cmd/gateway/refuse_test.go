package main

import (
	"testing"

	"github.com/switchboard/switchboard/internal/cmdtest"
)

// TestRefusalIsAJSONLine runs the real binary with what it must refuse: a
// missing secret, a bad setting, a bad flag. Each time it exits 1 and
// every line it wrote to stderr is JSON, one of them the refusal naming
// what is wrong.
func TestRefusalIsAJSONLine(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in the refusal's error
	}{
		{"missing secret", nil, nil, "GATEWAY_JWT_SECRET"},
		{"bad setting", []string{"GATEWAY_JWT_SECRET=s", "GATEWAY_WORKERS=0"}, nil, "GATEWAY_WORKERS"},
		{"setting that does not parse", []string{"GATEWAY_JWT_SECRET=s", "GATEWAY_HANDLER_TIMEOUT=soon"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"bad NATS URL", []string{"GATEWAY_JWT_SECRET=s", "NATS_URL=http://u:s3cr3t@h:4222"}, nil, "NATS_URL"},
		{"bad log level", []string{"GATEWAY_JWT_SECRET=s", "LOG_LEVEL=loud"}, nil, "LOG_LEVEL"},
		{"bad flag", []string{"GATEWAY_JWT_SECRET=s"}, []string{"-no-such-flag"}, "no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Only the case's settings, and no admin port to bind were it
			// to start after all.
			r := cmdtest.Run(t, bin, append([]string{"GATEWAY_METRICS_ADDR=off"}, tt.env...), tt.args...)
			cmdtest.Refusal{Code: 1, Logger: "gateway", Names: tt.want, Hides: "s3cr3t"}.Check(t, r)
		})
	}
}
