package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
)

// healthTimeout bounds "handlers-svc health".
const healthTimeout = 3 * time.Second

// healthCheck is "handlers-svc health [-ready] [URL]", a container health
// check for images without curl: it GETs URL, prints the body and fails
// unless the answer is 200. Without URL it asks HANDLERS_ADDR: /healthz
// (the process is alive) by default, /readyz (NATS and Redis up) with
// -ready. Liveness is what an orchestrator may restart on: an instance that
// lost Redis for a moment must not be killed for it.
func healthCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ready := fs.Bool("ready", false, "check /readyz (NATS and Redis up) instead of /healthz (alive)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		return errors.New("usage: handlers-svc health [-ready] [URL]")
	}
	url := fs.Arg(0)
	if url == "" {
		cfg, err := config.Load(nil, os.Getenv, io.Discard)
		if err != nil {
			return err
		}
		path := "/healthz"
		if *ready {
			path = "/readyz"
		}
		url = "http://" + localAddr(cfg.Addr) + path
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(stdout, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// localAddr turns a listen address into one to dial on this host: an empty
// or wildcard host becomes 127.0.0.1.
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
