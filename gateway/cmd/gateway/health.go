package main

import (
	"os"

	"github.com/switchboard/switchboard/gateway/internal/config"
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
