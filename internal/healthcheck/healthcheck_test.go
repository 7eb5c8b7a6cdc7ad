package healthcheck_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/healthcheck"
)

// server answers /healthz with 200 and /readyz with ready's status.
func server(t *testing.T, ready int) (addr string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(ready)
		_, _ = w.Write([]byte(`{"status":"` + http.StatusText(ready) + `"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestRun(t *testing.T) {
	up := server(t, http.StatusOK)
	down := server(t, http.StatusServiceUnavailable)
	_, upPort, _ := net.SplitHostPort(up)
	addr := func(a string) func() (string, error) { return func() (string, error) { return a, nil } }
	noAddr := func() (string, error) {
		t.Error("addr called although a URL was given")
		return "", errors.New("no address")
	}
	tests := []struct {
		name    string
		args    []string
		addr    func() (string, error)
		wantErr string // "" = healthy
		wantOut string // in stdout
	}{
		{"alive by configured address", nil, addr(up), "", `"ok"`},
		{"wildcard host is dialled on this host", nil, addr(":" + upPort), "", `"ok"`},
		{"ready", []string{"-ready"}, addr(up), "", "OK"},
		{"not ready", []string{"-ready"}, addr(down), "HTTP 503", "Service Unavailable"},
		{"alive while not ready", nil, addr(down), "", `"ok"`},
		{"explicit URL", []string{"http://" + down + "/readyz"}, noAddr, "HTTP 503", "Service Unavailable"},
		{"explicit URL with -ready", []string{"-ready", "http://" + up + "/healthz"}, noAddr, "", `"ok"`},
		{"address error", nil, func() (string, error) { return "", errors.New("REDIS_URL: bad") }, "REDIS_URL", ""},
		{"unknown flag", []string{"-x"}, noAddr, "usage: svc health [-ready] [URL]", ""},
		{"help", []string{"-h"}, noAddr, "usage: svc health", ""},
		{"two URLs", []string{"http://a", "http://b"}, noAddr, "usage: svc health", ""},
		{"nothing listening", []string{"http://127.0.0.1:1/healthz"}, noAddr, "127.0.0.1:1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := healthcheck.Run(context.Background(), "svc", tt.args, &out, tt.addr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Run = %v, want healthy", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Run = %v, want an error naming %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout %q, want it to hold %q", out.String(), tt.wantOut)
			}
		})
	}
}

// TestRunHelp: -h is a person asking, so Run checks nothing and answers with
// the usage as an error matching flag.ErrHelp, on which the caller exits 0;
// a bad flag or argument is still an error of its own.
func TestRunHelp(t *testing.T) {
	noAddr := func() (string, error) {
		t.Error("addr called when asked for help")
		return "", errors.New("no address")
	}
	for _, args := range [][]string{{"-h"}, {"-help"}, {"-ready", "-h"}} {
		err := healthcheck.Run(context.Background(), "svc", args, io.Discard, noAddr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Run(%q) = %v, want flag.ErrHelp", args, err)
			continue
		}
		for _, want := range []string{"usage: svc health [-ready] [URL]", "-ready", "/readyz"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Run(%q) says %q, want %q in it", args, err, want)
			}
		}
	}
	for _, args := range [][]string{{"-x"}, {"http://a", "http://b"}} {
		if err := healthcheck.Run(context.Background(), "svc", args, io.Discard, noAddr); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("Run(%q) = %v, want an error that is not help", args, err)
		}
	}
}

func TestLocalAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{":8081", "127.0.0.1:8081"},
		{"0.0.0.0:7998", "127.0.0.1:7998"},
		{"[::]:7998", "127.0.0.1:7998"},
		{"10.0.0.5:7998", "10.0.0.5:7998"},
		{"[::1]:7998", "[::1]:7998"},
		{"gateway:7999", "gateway:7999"},
		{"7999", "7999"},
	}
	for _, tt := range tests {
		if got := healthcheck.LocalAddr(tt.in); got != tt.want {
			t.Errorf("LocalAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
