package service

import (
	"io"
	"os"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
)

// healthAddr is the address "handlers-svc health [-ready]" checks when
// given no URL: HANDLERS_ADDR. It reads no key file: a probe that cannot
// read one is still a probe.
func healthAddr() (string, error) {
	cfg, err := config.Parse(nil, os.Getenv, io.Discard)
	if err != nil {
		return "", err
	}
	return cfg.Addr, nil
}
