package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/cmdtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// gatewayEnv is the environment of a gateway with workers workers on
// addr, its admin address admin, and servers that do not run (the workers
// wait for them, which these tests do not need).
func gatewayEnv(t *testing.T, addr, admin string, workers int) []string {
	return []string{
		"GATEWAY_JWT_SECRET=handover-test-secret-of-32-bytes-or-more",
		"GATEWAY_ADDR=" + addr, "GATEWAY_WORKERS=" + strconv.Itoa(workers),
		"GATEWAY_METRICS_ADDR=" + admin,
		"NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
	}
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) }

// TestHandOverOnOneHost: docs/operations.md ("Workers") offers a
// hand-over on one host: a second gateway on the same GATEWAY_ADDR joins
// the first through SO_REUSEPORT; it needs an admin address of its own
// (GATEWAY_METRICS_ADDR), which is not shared (see
// TestUnrelatedGatewaysDoNotShareTheAdminAddress).
func TestHandOverOnOneHost(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	addr := freeAddr(t)
	old := testkit.StartProc(t, "old gateway", bin, gatewayEnv(t, addr, freeAddr(t), 1))
	testkit.Eventually(t, 30*time.Second, "the old gateway's worker runs", func() bool {
		return strings.Contains(old.Logs(), "worker serving")
	})
	next := testkit.StartProc(t, "new gateway", bin, gatewayEnv(t, addr, freeAddr(t), 1))
	testkit.Eventually(t, 30*time.Second, "the new gateway's worker runs, or the gateway exits", func() bool {
		return strings.Contains(next.Logs(), "worker serving") || next.Exited()
	})
	if next.Exited() {
		t.Errorf("the new gateway exited instead of joining the old one:\n%s", next.Logs())
	}
}

// TestUnrelatedGatewaysDoNotShareTheAdminAddress: two gateways of a host
// with their own GATEWAY_ADDR each and one GATEWAY_METRICS_ADDR (both left
// to the default, 127.0.0.1:7998) are a mistake: shared, each scrape,
// /readyz and "gateway health" would reach either supervisor at random.
// The second refuses to start, naming the setting. (A second review found
// that binding the admin address with SO_REUSEPORT, for the hand-over
// above, let it start: 16 of 20 scrapes saw one gateway, 4 the other.)
func TestUnrelatedGatewaysDoNotShareTheAdminAddress(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	admin := freeAddr(t)
	one := testkit.StartProc(t, "gateway one", bin, gatewayEnv(t, freeAddr(t), admin, 1))
	testkit.Eventually(t, 30*time.Second, "gateway one's worker runs", func() bool {
		return strings.Contains(one.Logs(), "worker serving")
	})
	two := testkit.StartProc(t, "gateway two", bin, gatewayEnv(t, freeAddr(t), admin, 1))
	testkit.Eventually(t, 30*time.Second, "gateway two refuses to start, or runs", func() bool {
		return strings.Contains(two.Logs(), "worker serving") || two.Exited()
	})
	if !two.Exited() || !strings.Contains(two.Logs(), "GATEWAY_METRICS_ADDR") {
		t.Errorf("a second gateway on another's admin address: want it refused naming GATEWAY_METRICS_ADDR, got:\n%s", two.Logs())
	}
}
