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

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
)

// healthTimeout bounds "handlers-svc health".
const healthTimeout = 3 * time.Second

// healthCheck is "handlers-svc health [URL]", a container health check for
// images without curl: it GETs URL (by default /readyz on HANDLERS_ADDR),
// prints the body and fails unless the answer is 200.
func healthCheck(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("usage: handlers-svc health [URL]")
	}
	var url string
	if len(args) == 1 {
		url = args[0]
	} else {
		cfg, err := config.Load(nil, os.Getenv, io.Discard)
		if err != nil {
			return err
		}
		url = "http://" + localAddr(cfg.Addr) + "/readyz"
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
