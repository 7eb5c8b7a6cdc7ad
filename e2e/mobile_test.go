package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// mobileWindow is the stack's HISTORY_WINDOW in TestClientJSMobile: short,
// so that a phone asleep past it can be shown, long enough for the outages
// the other cases make.
const mobileWindow = 20 * time.Second

// TestClientJSMobile runs mobile.test.mjs: the JavaScript client with
// retry, storage and getToken, the way a chat app on a phone uses it,
// through a TCP proxy (toxiproxy) that the test makes black-hole, flap and
// crawl, and with its Node process stopped (SIGSTOP) as a phone's app is
// while the phone sleeps. Two gateway workers; heartbeats every second, so
// a dead socket is noticed in seconds; a history window of 20 s.
func TestClientJSMobile(t *testing.T) {
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	args := nodeTestArgs(t, node)
	switch only := os.Getenv("MOBILE_ONLY"); {
	case only != "":
		args = append(args, "--test-name-pattern="+only) // one case, while working on it
	case os.Getenv("MOBILE_FULL") == "":
		// make test's short version: a black hole, a sleep with emits in
		// flight, and flaps; make mobile (MOBILE_FULL=1) runs every case,
		// whose timings (a held black hole, a slow link, sleeps past the
		// window, back-off after flapping) want a box with room to spare.
		args = append(args, "--test-name-pattern=^(black hole that drops|phone asleep 12 s|500 flaps)")
	}
	args = append(args, "../gateway/internal/web/jstest/mobile.test.mjs")
	window := "HISTORY_WINDOW=" + mobileWindow.String()
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2,
		Env:         []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0", "GATEWAY_PING_INTERVAL=1s", window},
		HandlersEnv: []string{window}})
	proxy := startMobileProxy(t, s.Addr)
	// 40 flaps in make test; make mobile runs 500.
	flaps := os.Getenv("SB_FLAPS")
	if flaps == "" {
		flaps = "40"
	}
	env := []string{"SB_FLAPS=" + flaps, "SB_URL=ws://" + proxy.addr + "/socket", "SB_DIRECT_URL=" + s.URL(), "SB_SECRET=" + s.Secret,
		"SB_CONTROL=" + startMobileControl(t, s, proxy), "SB_WINDOW_MS=" + strconv.Itoa(int(mobileWindow.Milliseconds()))}
	runNode(t, node, args, env...)
}

// mobileProxy is the network between the phone and the gateway.
type mobileProxy struct {
	addr string
	p    *toxiproxy.Proxy
}

func startMobileProxy(t *testing.T, upstream string) *mobileProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "gateway", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start the proxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &mobileProxy{addr: p.Listen, p: p}
}

// toxics adds a toxic of typ with attrs, named name_<stream>, on both
// streams.
func (x *mobileProxy) toxics(name, typ, attrs string) error {
	for _, dir := range []string{"downstream", "upstream"} {
		js := fmt.Sprintf(`{"name":"%s_%s","type":%q,"stream":%q,"attributes":%s}`, name, dir, typ, dir, attrs)
		if _, err := x.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return fmt.Errorf("add %s: %w", js, err)
		}
	}
	return nil
}

func (x *mobileProxy) remove(names ...string) error {
	for _, name := range names {
		for _, dir := range []string{"downstream", "upstream"} {
			if err := x.p.Toxics.RemoveToxic(context.Background(), name+"_"+dir); err != nil {
				return fmt.Errorf("remove %s_%s: %w", name, dir, err)
			}
		}
	}
	return nil
}

// startMobileControl serves, on a loopback address it returns (SB_CONTROL),
// what mobile.test.mjs asks of the network, the process and the backend.
// Each request answers once it is done:
//
//	POST /blackhole?mode=drop  every byte on every link, new ones
//	                           included, is dropped (no FIN, no RST);
//	                           /heal closes those links
//	POST /blackhole?mode=hold  every byte is held (a path that drops
//	                           packets, which TCP sends again); /heal
//	                           delivers them, in order, on the same links
//	POST /heal                 ends the black hole
//	POST /slow                 300 ms each way and 20 KB/s; /fast ends it
//	POST /cut                  closes every link and refuses new ones
//	POST /restore              takes new links again
//	POST /flap                 /cut then /restore
//	POST /freeze?pid=P&ms=N[&user=U&text=T]
//	                           answers, then stops process P (SIGSTOP)
//	                           for N ms and continues it (SIGCONT); with
//	                           user, then sends as /send does
//	POST /send?user=U&text=T   dispatches a "message" {text} to U, recorded
//	                           as handlers-svc does
func startMobileControl(t *testing.T, s *testkit.Stack, x *mobileProxy) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	var (
		mu     sync.Mutex
		frozen = map[int]*time.Timer{}
		hole   = ""
	)
	t.Cleanup(func() {
		mu.Lock()
		for pid, tm := range frozen {
			if tm.Stop() {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		mu.Unlock()
	})
	reply := func(w http.ResponseWriter, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /blackhole", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if hole != "" {
			http.Error(w, "black hole already", http.StatusConflict)
			return
		}
		var err error
		switch mode := r.URL.Query().Get("mode"); mode {
		case "drop":
			err = x.toxics("hole", "timeout", `{"timeout":0}`)
		case "hold":
			err = x.toxics("hole", "latency", `{"latency":3600000}`)
		default:
			err = fmt.Errorf("mode %q: drop or hold", mode)
		}
		if err == nil {
			hole = "hole"
		}
		reply(w, err)
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if hole == "" {
			http.Error(w, "no black hole", http.StatusConflict)
			return
		}
		hole = ""
		reply(w, x.remove("hole"))
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		err := x.toxics("lag", "latency", `{"latency":300}`)
		if err == nil {
			err = x.toxics("thin", "bandwidth", `{"rate":20}`)
		}
		reply(w, err)
	})
	mux.HandleFunc("POST /fast", func(w http.ResponseWriter, r *http.Request) {
		reply(w, x.remove("lag", "thin"))
	})
	mux.HandleFunc("POST /cut", func(w http.ResponseWriter, r *http.Request) { x.p.Stop() })
	mux.HandleFunc("POST /restore", func(w http.ResponseWriter, r *http.Request) { reply(w, x.p.Start()) })
	mux.HandleFunc("POST /flap", func(w http.ResponseWriter, r *http.Request) {
		x.p.Stop()
		reply(w, x.p.Start())
	})
	mux.HandleFunc("POST /freeze", func(w http.ResponseWriter, r *http.Request) {
		pid, err1 := strconv.Atoi(r.URL.Query().Get("pid"))
		ms, err2 := strconv.Atoi(r.URL.Query().Get("ms"))
		if err1 != nil || err2 != nil || pid <= 1 {
			http.Error(w, "freeze needs pid and ms", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		// The answer is on its way: node reads it once continued.
		mu.Lock()
		defer mu.Unlock()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Errorf("freeze %d: %v", pid, err)
			return
		}
		frozen[pid] = time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		})
		if u := r.URL.Query().Get("user"); u != "" {
			body, _ := json.Marshal(map[string]string{"text": r.URL.Query().Get("text")})
			d := &proto.Dispatch{Event: "message", Args: body, Users: []string{u}}
			if _, _, err := streams.Publish(r.Context(), rdb, mobileWindow, d); err != nil {
				t.Errorf("send while frozen: %v", err)
			}
		}
	})
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, _ := json.Marshal(map[string]string{"text": q.Get("text")})
		d := &proto.Dispatch{Event: "message", Args: body, Users: []string{q.Get("user")}}
		_, _, err := streams.Publish(r.Context(), rdb, mobileWindow, d)
		reply(w, err)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}
