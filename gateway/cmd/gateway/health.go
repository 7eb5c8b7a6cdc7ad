package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// healthTimeout bounds "gateway health".
const healthTimeout = 3 * time.Second

// healthCheck is "gateway health [URL]", a container health check for
// images without curl: it GETs URL (by default the supervisor's /readyz on
// GATEWAY_METRICS_ADDR, or a worker's on GATEWAY_ADDR when that is off),
// prints the body and fails unless the answer is 200.
func healthCheck(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("usage: gateway health [URL]")
	}
	url := ""
	if len(args) == 1 {
		url = args[0]
	} else {
		cfg, _ := config.Load(nil, os.Getenv) // only the addresses are needed
		addr := cfg.MetricsAddr
		if addr == "" {
			addr = cfg.Addr
		}
		url = "http://" + localAddr(addr) + "/readyz"
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
