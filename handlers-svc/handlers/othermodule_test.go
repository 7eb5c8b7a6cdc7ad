package handlers_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// otherModuleMain is a backend's program in its own module: it imports the
// dispatch package as docs/handlers.md tells another team to.
const otherModuleMain = `package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
)

func main() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{})
	_, err := d.Dispatch(context.Background(), dispatch.Message{Event: "invoice_paid", Args: json.RawMessage("{}"), Users: []string{"bob"}})
	log.Print(event.WireError(err))
}
`

// otherModuleFamily is the family of the guide's "Your own module", in a
// package of the team's module: react counts each user's reactions in the
// service's Redis, answers with the count and counts itself on /metrics.
const otherModuleFamily = `package reactions

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
)

func Register(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
	reacted := prometheus.NewCounter(prometheus.CounterOpts{Name: "billing_reactions_total", Help: "Reactions served."})
	if err := deps.Metrics.Register(reacted); err != nil {
		return err
	}
	rdb := deps.Redis
	mux.HandleFunc("react", func(ctx context.Context, r *event.Request) error {
		n, err := rdb.Incr(ctx, "billing:reactions:"+r.User).Result()
		if err != nil {
			return err
		}
		reacted.Inc()
		return r.Respond(map[string]int64{"n": n})
	})
	return nil
}
`

// TestGuideOtherModule follows docs/handlers.md's "From Go" and "Your own
// module" as a team with its own module does: the go.mod lines the guide
// gives (its "gomod" block), with the repository checked out beside the
// module, must build a program importing the dispatch package, and the
// guide's main (its "othermodule" block), with no go.work (the repository
// is not published). Without them a team met
// "reading https://proxy.golang.org/...: 403 Forbidden" for the package,
// then for internal and proto, whose replace lines in handlers-svc's own
// go.mod do not reach another module. The guide's main, built with a
// family of the team's, then runs as handlers-svc does: ready once NATS
// and Redis are, it serves the family's event, replays an emit repeated
// with its idempotency key, serves the family's collector on /metrics and
// exits 0 on SIGTERM.
func TestGuideOtherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	block := guideBlock(t, "```gomod")
	if block == "" {
		t.Fatal(`docs/handlers.md has no "gomod" block telling another module how to require the dispatch package`)
	}
	serviceMain := guideBlock(t, "```go othermodule=main.go")
	if serviceMain == "" {
		t.Fatal(`docs/handlers.md has no "othermodule" block showing a team's main calling service.Main`)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The guide's layout: the repository checked out at ../switchboard.
	if err := os.Symlink(root, filepath.Join(dir, "switchboard")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "app")
	gomod := "module example.com/billing\n\ngo 1.26\n\n" + block
	for name, text := range map[string]string{
		"go.mod":                 gomod,
		"main.go":                otherModuleMain,
		"serve/main.go":          serviceMain,
		"reactions/reactions.go": otherModuleFamily,
	} {
		p := filepath.Join(app, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The replaced modules are never asked of the proxy; the others are
	// in the module cache already, once this module's tests built.
	// -trimpath: without it the compiled packages record the temporary
	// directory they were built in, so every run compiled the repository's
	// modules afresh (about a minute with -race on this box); with it the
	// build cache serves them to every later run and test.
	bin := filepath.Join(dir, "billing-svc")
	env := append(os.Environ(), "GOWORK=off", "GOSUMDB=off", "GOFLAGS=-mod=mod -trimpath")
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}, {"build", "-o", bin, "./serve"}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = app, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s with the guide's go.mod:\n%s\n%s: %v", strings.Join(args, " "), gomod, out, err)
		}
	}

	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	svc := testkit.StartProc(t, "billing-svc", bin, []string{
		"NATS_URL=" + ns.URL(), "REDIS_URL=redis://" + rs.Addr() + "/0", "HANDLERS_ADDR=" + addr})
	testkit.Eventually(t, 30*time.Second, "the team's service is ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	react := func(idem string) string {
		t.Helper()
		m := &nats.Msg{Subject: proto.Subject("react"), Header: nats.Header{},
			Data: proto.AppendRequest(nil, &proto.Request{Event: "react", User: "alice", Conn: "alice-1", Ref: "r"})}
		if idem != "" {
			m.Header.Set(proto.IdemHeader, idem)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reply, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatalf("react: %v", err)
		}
		result, e := proto.DecodeResult(reply.Data)
		if e != nil {
			t.Fatalf("react: %+v", e)
		}
		return string(result)
	}
	for _, step := range []struct{ name, idem, want string }{
		{"first emit with a key", "k1", `{"n":1}`},
		{"its retry, replayed", "k1", `{"n":1}`},
		{"an emit without a key", "", `{"n":2}`},
	} {
		if got := react(step.idem); got != step.want {
			t.Fatalf("%s: react = %s, want %s", step.name, got, step.want)
		}
	}
	if v, ok := testkit.MustReadMetrics(t, "http://"+addr+"/metrics").Get("billing_reactions_total"); !ok || v != 2 {
		t.Errorf("billing_reactions_total = %v (present %v), want 2: the family's collector on /metrics", v, ok)
	}
	svc.Signal(syscall.SIGTERM)
	if err := svc.Wait(30 * time.Second); err != nil {
		t.Fatalf("the team's service on SIGTERM: %v, want exit 0", err)
	}
}

// guideBlock returns the body of docs/handlers.md's block that opens with
// the line fence ("```gomod"), or "".
func guideBlock(t *testing.T, fence string) string {
	t.Helper()
	f, err := os.Open("../../docs/handlers.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var body strings.Builder
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == fence:
			in = true
		case in && line == "```":
			return body.String()
		case in:
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}
