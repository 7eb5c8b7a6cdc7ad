package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

var plain = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get is curl: the status and JSON body of GET url (status 0 when nothing
// answered).
func get(url string) (int, map[string]any) {
	resp, err := plain.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// readyWorkers polls the public /readyz, which one worker answers each
// time, until every worker has answered with status; SO_REUSEPORT spreads
// the requests.
func readyWorkers(t *testing.T, s *testkit.Stack, status int) {
	t.Helper()
	seen := map[float64]bool{}
	testkit.Eventually(t, 20*time.Second, "every worker's /readyz answers "+http.StatusText(status), func() bool {
		code, body := get("http://" + s.Addr + "/readyz")
		if w, ok := body["worker"].(float64); ok && code == status {
			seen[w] = true
		}
		return len(seen) == s.Workers
	})
}

// healthCommands runs the container health checks, "gateway health" and
// "handlers-svc health" with args (such as -ready), against s and returns
// their errors.
func healthCommands(t *testing.T, s *testkit.Stack, args ...string) (gateway, handlers error) {
	t.Helper()
	gw, hs := testkit.Binaries(t)
	run := func(bin string, env ...string) error {
		cmd := exec.Command(bin, append([]string{"health"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	return run(gw, "GATEWAY_METRICS_ADDR="+s.MetricsAddr), run(hs, "HANDLERS_ADDR="+s.HandlersAddr)
}

// TestReadyzFollowsRedis stops Redis under a running stack: /readyz of
// every gateway worker, of the supervisor and of handlers-svc turns 503
// with the reason, /healthz stays 200, the readiness health commands fail
// while the liveness ones (what the images' HEALTHCHECK runs) still pass,
// and all turn healthy again once Redis is back.
func TestReadyzFollowsRedis(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	gwReady := "http://" + s.MetricsAddr + "/readyz"
	hsReady := "http://" + s.HandlersAddr + "/readyz"
	for _, u := range []string{gwReady, hsReady} {
		if code, body := get(u); code != http.StatusOK {
			t.Fatalf("GET %s = %d %v before the outage, want 200", u, code, body)
		}
	}
	for _, mode := range [][]string{nil, {"-ready"}} {
		if gw, hs := healthCommands(t, s, mode...); gw != nil || hs != nil {
			t.Fatalf("health %v commands before the outage: gateway %v, handlers-svc %v", mode, gw, hs)
		}
	}

	s.Redis.Stop()
	readyWorkers(t, s, http.StatusServiceUnavailable)
	code, body := get("http://" + s.Addr + "/readyz")
	if code != http.StatusServiceUnavailable || !containsReason(body, "redis subscription not live") {
		t.Errorf("gateway worker /readyz = %d %v, want 503 naming the Redis subscription", code, body)
	}
	testkit.Eventually(t, wait, "the supervisor's /readyz is 503", func() bool {
		code, _ := get(gwReady)
		return code == http.StatusServiceUnavailable
	})
	testkit.Eventually(t, wait, "handlers-svc /readyz is 503 naming Redis", func() bool {
		code, body := get(hsReady)
		return code == http.StatusServiceUnavailable && containsReason(body, "redis not answering")
	})
	for _, u := range []string{"http://" + s.Addr + "/healthz", "http://" + s.MetricsAddr + "/healthz", "http://" + s.HandlersAddr + "/healthz"} {
		if code, body := get(u); code != http.StatusOK {
			t.Errorf("GET %s = %d %v while Redis is down, want 200: the process is alive", u, code, body)
		}
	}
	if gw, hs := healthCommands(t, s, "-ready"); gw == nil || hs == nil {
		t.Errorf("health -ready commands while Redis is down: gateway %v, handlers-svc %v; want both to fail", gw, hs)
	}
	if gw, hs := healthCommands(t, s); gw != nil || hs != nil {
		t.Errorf("health (liveness) commands while Redis is down: gateway %v, handlers-svc %v; want both to pass, or an orchestrator would kill them", gw, hs)
	}
	m := s.Metrics()
	if got := m.Sum("switchboard_gateway_redis_subscribed"); got != 0 {
		t.Errorf("redis_subscribed summed over workers = %g while Redis is down, want 0", got)
	}
	if got, ok := s.HandlersMetrics().Get("switchboard_handlers_redis_connected"); !ok || got != 0 {
		t.Errorf("handlers-svc redis_connected = %g (present %v) while Redis is down, want 0", got, ok)
	}

	s.Redis.Start()
	readyWorkers(t, s, http.StatusOK)
	testkit.Eventually(t, 20*time.Second, "the supervisor's and handlers-svc's /readyz are 200", func() bool {
		c1, _ := get(gwReady)
		c2, _ := get(hsReady)
		return c1 == http.StatusOK && c2 == http.StatusOK
	})
	if got := s.Metrics().Sum("switchboard_gateway_redis_subscribed"); got != float64(s.Workers) {
		t.Errorf("redis_subscribed summed over workers = %g after Redis is back, want %d", got, s.Workers)
	}
	if got := s.HandlersMetrics().Sum("switchboard_handlers_redis_connected"); got != 1 {
		t.Errorf("handlers-svc redis_connected = %g after Redis is back, want 1", got)
	}
	if gw, hs := healthCommands(t, s, "-ready"); gw != nil || hs != nil {
		t.Errorf("health -ready commands after Redis is back: gateway %v, handlers-svc %v", gw, hs)
	}
}

func containsReason(body map[string]any, want string) bool {
	reasons, _ := body["reasons"].([]any)
	for _, r := range reasons {
		if r == want {
			return true
		}
	}
	return false
}

// TestSupervisorReadyzNamesEachWorker: the supervisor's /readyz lists
// every worker, and a killed worker makes it 503 until its restart is
// ready; the restart is counted in /metrics.
func TestSupervisorReadyzNamesEachWorker(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	u := "http://" + s.MetricsAddr + "/readyz"
	code, body := get(u)
	workers, _ := body["workers"].([]any)
	if code != http.StatusOK || len(workers) != 2 {
		t.Fatalf("GET /readyz = %d %v, want 200 listing 2 workers", code, body)
	}
	pid := s.WorkerPids()[1]
	if pid == 0 {
		t.Fatal("no pid for worker 1")
	}
	killPid(t, pid)
	testkit.Eventually(t, 20*time.Second, "the restart is counted and every worker is ready again", func() bool {
		code, _ := get(u)
		m := s.Metrics()
		restarts, _ := m.Get("switchboard_gateway_worker_restarts_total")
		up := m.Sum("switchboard_gateway_worker_up")
		return code == http.StatusOK && restarts == 1 && up == 2 && s.WorkerPids()[1] != pid
	})
}

func killPid(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

// TestReadyzFollowsNATS: with NATS stopped every gateway worker's and
// handlers-svc's /readyz is 503 naming NATS, and 200 again once it is back.
func TestReadyzFollowsNATS(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	hsReady := "http://" + s.HandlersAddr + "/readyz"

	s.NATS.Stop()
	readyWorkers(t, s, http.StatusServiceUnavailable)
	if code, body := get("http://" + s.Addr + "/readyz"); code != http.StatusServiceUnavailable || !containsReason(body, "nats not connected") {
		t.Errorf("gateway worker /readyz = %d %v, want 503 naming NATS", code, body)
	}
	testkit.Eventually(t, wait, "handlers-svc /readyz is 503 naming NATS", func() bool {
		code, body := get(hsReady)
		return code == http.StatusServiceUnavailable && containsReason(body, "nats not connected")
	})
	if got := s.Metrics().Sum("switchboard_gateway_nats_connected"); got != 0 {
		t.Errorf("nats_connected summed over workers = %g while NATS is down, want 0", got)
	}

	s.NATS.Start()
	readyWorkers(t, s, http.StatusOK)
	testkit.Eventually(t, 20*time.Second, "handlers-svc /readyz is 200 again", func() bool {
		code, _ := get(hsReady)
		return code == http.StatusOK
	})
	if got := s.Metrics().Sum("switchboard_gateway_nats_connected"); got != float64(s.Workers) {
		t.Errorf("nats_connected summed over workers = %g after NATS is back, want %d", got, s.Workers)
	}
}

// TestHealthWithoutAdminAddressSeesStoppedWorker: "gateway health" run
// with GATEWAY_METRICS_ADDR=off, so with no supervisor /healthz to ask,
// fails while one of the gateway's two workers is stopped (SIGSTOP, the
// watchdog off so nothing kills it: a worker SIGKILL could not end looks
// the same from outside), and passes again once it runs.
func TestHealthWithoutAdminAddressSeesStoppedWorker(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_WORKER_HANG_TIMEOUT=0"}})
	gw, _ := testkit.Binaries(t)
	health := func() (string, error) {
		cmd := exec.Command(gw, "health")
		cmd.Env = append(os.Environ(), "GATEWAY_METRICS_ADDR=off", "GATEWAY_ADDR="+s.Addr, "GATEWAY_WORKERS=2")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := health(); err != nil {
		t.Fatalf("gateway health with both workers running: %v: %s", err, out)
	}
	victim := s.WorkerPids()[1]
	if victim == 0 {
		t.Fatalf("worker pids %v", s.WorkerPids())
	}
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(victim, syscall.SIGCONT)
		}
	})
	for range 2 { // not by chance: a single probe reaches worker 1 half the time
		out, err := health()
		if err == nil || !strings.Contains(out, "hung") {
			t.Fatalf("gateway health with worker 1 stopped: %v: %s; want a failure saying hung", err, out)
		}
	}
	if err := syscall.Kill(victim, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	testkit.Eventually(t, wait, "gateway health passes once worker 1 runs", func() bool {
		_, err := health()
		return err == nil
	})
}
