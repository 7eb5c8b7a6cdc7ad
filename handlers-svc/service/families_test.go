package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// greetFamily is a team's family: it takes every dependency handlers.Deps
// offers, and fails its registration naming any that is missing. Its
// event "greet" counts itself in a collector of its own, keeps a count
// per user in Redis, joins the user to a room, dispatches to the room and
// answers with its GREET_WORD setting. Its stop records whether Redis
// still answered then, once.
func greetFamily(stopped chan<- error) handlers.Family {
	return func(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
		var missing []string
		for name, ok := range map[string]bool{
			"Dispatcher": deps.Dispatcher != nil, "Rooms": deps.Rooms != nil, "Presence": deps.Presence != nil, "Redis": deps.Redis != nil,
			"Log": deps.Log != nil, "Metrics": deps.Metrics != nil, "Getenv": deps.Getenv != nil,
			"OnStop": deps.OnStop != nil, "Senders": deps.Senders != nil,
		} {
			if !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("greet: no %v", missing)
		}
		word := deps.Getenv("GREET_WORD")
		served := prometheus.NewCounter(prometheus.CounterOpts{Name: "greet_served_total", Help: "Greetings served."})
		if err := deps.Metrics.Register(served); err != nil {
			return err
		}
		log := deps.Log.Named("greet")
		rdb, rooms := deps.Redis, deps.Rooms
		deps.OnStop(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stopped <- rdb.Ping(ctx).Err()
		})
		mux.HandleFunc("greet", func(ctx context.Context, r *event.Request) error {
			served.Inc()
			n, err := rdb.Incr(ctx, "greet:"+r.User).Result()
			if err != nil {
				return err
			}
			if _, _, err := rooms.Join(ctx, "lobby", r.User); err != nil {
				return err
			}
			if err := rooms.ToRooms(ctx, []string{"lobby"}, "greeted", map[string]string{"user": r.User}); err != nil {
				return err
			}
			log.Info("greeted")
			return r.Respond(map[string]any{"word": word, "n": n})
		})
		return nil
	}
}

// TestCustomFamilyGetsEveryDep: a family given to the service, beside the
// built-in ones, gets every dependency of handlers.Deps from the service
// (its Getenv reads the environment, its Redis is the service's), serves
// its event through NATS, with idempotent retries, is counted on /metrics
// with its own collector and is stopped after the last request, before
// Redis is closed.
func TestCustomFamilyGetsEveryDep(t *testing.T) {
	t.Setenv("GREET_WORD", "hello")
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	stopped := make(chan error, 1)
	a := startFamilies(t, append(handlers.Families(), greetFamily(stopped)), ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	greet := func(idem string) string {
		t.Helper()
		m := &nats.Msg{Subject: proto.Subject("greet"), Header: nats.Header{},
			Data: proto.AppendRequest(nil, &proto.Request{Event: "greet", User: "alice", Conn: "alice-1", Ref: "r"})}
		if idem != "" {
			m.Header.Set(proto.IdemHeader, idem)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reply, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatalf("greet: %v", err)
		}
		result, e := proto.DecodeResult(reply.Data)
		if e != nil {
			t.Fatalf("greet: %+v", e)
		}
		return string(result)
	}
	if got, want := greet("k1"), `{"n":1,"word":"hello"}`; got != want {
		t.Fatalf("greet = %s, want %s", got, want)
	}
	// The retry of an emit with its key is replayed, not run again.
	if got, want := greet("k1"), `{"n":1,"word":"hello"}`; got != want {
		t.Fatalf("greet repeated with its key = %s, want the first answer replayed, %s", got, want)
	}
	if got, want := greet(""), `{"n":2,"word":"hello"}`; got != want {
		t.Fatalf("greet without a key = %s, want %s", got, want)
	}
	// Built-in families are served beside it.
	if e := request(t, nc, proto.Request{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi"}`), User: "alice", Conn: "c1"}); e != nil {
		t.Fatalf("sendMessage: %+v", e)
	}

	fams := a.scrape(t)
	if v, ok := value(fams, "greet_served_total", nil); !ok || v != 2 {
		t.Errorf("greet_served_total = %v (present %v), want 2: the family's own collector on /metrics", v, ok)
	}
	if v, ok := value(fams, "switchboard_handlers_requests_total", map[string]string{"event": "greet", "result": "ok"}); !ok || v < 2 {
		t.Errorf("the service's count of greet requests = %v (present %v), want 2 or more", v, ok)
	}
	if a.logs.FilterLoggerName("handlers.greet").FilterMessage("greeted").Len() != 2 {
		t.Error("the family's log lines are not under the service's logger")
	}

	if err := a.stop(t); err != nil {
		t.Fatalf("realMain: %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("the family's stop ran after Redis was closed: %v", err)
		}
	default:
		t.Error("the family's stop did not run")
	}
}

// TestCustomFamilyRefusedStopsTheStart: a family whose registration fails
// stops the service before it serves, with its error.
func TestCustomFamilyRefusedStopsTheStart(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	refuse := errors.New("no REACTIONS_DATABASE_URL")
	a := startFamilies(t, []handlers.Family{func(context.Context, *event.Mux, handlers.Deps) error { return refuse }}, ns.Port, rs.Port)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("realMain still running with a family that refused")
	}
	if !errors.Is(a.err, refuse) {
		t.Fatalf("realMain = %v, want the family's error", a.err)
	}
}
