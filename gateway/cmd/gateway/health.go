package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/internal/healthcheck"
)

// healthAddr is the address "gateway health [-ready]" checks when given no
// URL: the supervisor's admin address (GATEWAY_METRICS_ADDR), whose
// /readyz covers every worker, or a worker on GATEWAY_ADDR when that is
// off. Only the addresses are needed: Parse, not Load, so the check works
// where the secret is not in the environment (given as a flag).
func healthAddr() (string, error) {
	cfg, err := config.Parse(nil, os.Getenv)
	if err != nil {
		return "", err
	}
	if cfg.MetricsAddr != "" {
		return cfg.MetricsAddr, nil
	}
	return cfg.Addr, nil
}

// health is "gateway health [-ready] [URL]" (healthcheck.Run). Plain
// "gateway health" asks the supervisor's /healthz, which is 503 while a
// worker is hung; with GATEWAY_METRICS_ADDR=off there is no supervisor to
// ask, so it asks every worker instead (workersHealth).
func health(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		cfg, err := config.Parse(nil, os.Getenv)
		if err != nil {
			return err
		}
		if cfg.MetricsAddr == "" {
			return workersHealth(ctx, healthcheck.LocalAddr(cfg.Addr), cfg.Workers, stdout)
		}
	}
	return healthcheck.Run(ctx, "gateway", args, stdout, healthAddr)
}

// healthRounds bounds the rounds of workersHealth: each sends one probe per
// worker, so a worker the kernel's spread misses in all of them is
// unlikely (with n workers, about e^-healthRounds).
const healthRounds = 8

// workersHealth checks the liveness of each of the workers that share addr
// (SO_REUSEPORT), the way the supervisor's watchdog sees them without it:
// it GETs /healthz over new connections, whose source ports the kernel
// spreads over the workers' listeners, in rounds of one probe per worker
// at once, until every worker has answered by its index. A probe that gets
// no answer within healthcheck.Timeout fails the check: the kernel gave
// its connection to a worker that accepts nothing (stopped, wedged, or
// stuck in the kernel), which is what the supervisor's /healthz calls
// hung. A worker never reached (one restarting has no listener) does not:
// it is named in the output.
func workersHealth(ctx context.Context, addr string, workers int, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, healthcheck.Timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	url := "http://" + addr + "/healthz"
	seen := map[int]bool{}
	for round := 0; round < healthRounds && len(seen) < workers; round++ {
		answered := make([]int, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answered[i], errs[i] = probeWorker(ctx, client, url)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: a worker did not answer within %s: hung (stopped, wedged or stuck in the kernel); "+
					"answered: %s", url, healthcheck.Timeout, indexes(seen))
			}
			return err
		}
		for _, w := range answered {
			seen[w] = true
		}
	}
	var missed []int
	for i := range workers {
		if !seen[i] {
			missed = append(missed, i)
		}
	}
	fmt.Fprintf(stdout, `{"status":"ok","answered":%s,"not_reached":%s}`+"\n", indexes(seen), ints(missed))
	return nil
}

// probeWorker GETs url and returns the index of the worker that answered.
func probeWorker(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Worker *int `json:"worker"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.Worker == nil {
		return 0, fmt.Errorf("%s: HTTP %d, not a worker's /healthz", url, resp.StatusCode)
	}
	return *body.Worker, nil
}

// indexes returns the keys of seen in order, as a JSON array.
func indexes(seen map[int]bool) string {
	var out []int
	for i := range seen {
		out = append(out, i)
	}
	slices.Sort(out)
	return ints(out)
}

// ints writes is as a JSON array.
func ints(is []int) string {
	s := make([]string, len(is))
	for i, v := range is {
		s[i] = fmt.Sprint(v)
	}
	return "[" + strings.Join(s, ",") + "]"
}
