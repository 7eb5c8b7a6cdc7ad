package service

import "testing"

// TestHealthAddr: "handlers-svc health" asks HANDLERS_ADDR.
func TestHealthAddr(t *testing.T) {
	for _, tt := range []struct{ env, want string }{{"", ":8081"}, {"127.0.0.1:9000", "127.0.0.1:9000"}} {
		t.Setenv("HANDLERS_ADDR", tt.env)
		if got, err := healthAddr(); err != nil || got != tt.want {
			t.Errorf("HANDLERS_ADDR=%q: healthAddr = %q, %v; want %q", tt.env, got, err, tt.want)
		}
	}
}
