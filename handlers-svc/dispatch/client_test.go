package dispatch_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestNewChecked: a client set up as the package asks (no retries, the
// context's deadline on the socket, the OnConnect hook) is taken, and a
// Dispatcher from it dispatches; a client that retries (a lost reply
// then delivers twice), ignores deadlines (a stalled Redis holds a
// dispatch past its caller's deadline) or lacks the hook is refused with
// ErrClientOptions naming the option, where New took any of them
// silently. Bad Options are an error too, not a panic.
func TestNewChecked(t *testing.T) {
	srv := testkit.StartRedis(t)
	good := redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect}
	client := func(o redis.Options) *redis.Client {
		rdb := redis.NewClient(&o)
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}

	d, err := dispatch.NewChecked(client(good), dispatch.Options{})
	if err != nil {
		t.Fatalf("a well set client: %v", err)
	}
	if _, err := d.Dispatch(context.Background(), dispatch.Message{Event: "e", Users: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		edit func(*redis.Options)
		want string
	}{
		{"default retries", func(o *redis.Options) { o.MaxRetries = 0 }, "MaxRetries"},
		{"retries", func(o *redis.Options) { o.MaxRetries = 2 }, "MaxRetries"},
		{"deadline ignored", func(o *redis.Options) { o.ContextTimeoutEnabled = false }, "ContextTimeoutEnabled"},
		{"no hook", func(o *redis.Options) { o.OnConnect = nil }, "OnConnect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			d, err := dispatch.NewChecked(client(o), dispatch.Options{})
			if d != nil || !errors.Is(err, dispatch.ErrClientOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, %v; want no Dispatcher and ErrClientOptions naming %s", d, err, tc.want)
			}
		})
	}

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	t.Cleanup(func() { _ = cc.Close() })
	if err := dispatch.CheckClient(cc); err != nil {
		t.Fatalf("a cluster client without retries (its default): %v", err)
	}
	retrying := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}, MaxRetries: 3})
	t.Cleanup(func() { _ = retrying.Close() })
	if err := dispatch.CheckClient(retrying); !errors.Is(err, dispatch.ErrClientOptions) ||
		!strings.Contains(err.Error(), "MaxRetries") || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Fatalf("a retrying cluster client ignoring deadlines: %v, want both named", err)
	}

	if d, err := dispatch.NewChecked(client(good), dispatch.Options{Window: time.Millisecond}); d != nil || err == nil {
		t.Fatalf("a window under a second: %v, %v; want an error", d, err)
	}
}
