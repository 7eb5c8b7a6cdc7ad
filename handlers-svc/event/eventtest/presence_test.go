package eventtest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

var _ event.Presence = eventtest.Presence(nil)

func TestPresence(t *testing.T) {
	p := eventtest.Presence{"alice": {"c2", "c1"}}
	ctx := context.Background()
	got, err := p.Count(ctx, "alice", "bob")
	if err != nil || fmt.Sprint(got) != "map[alice:2 bob:0]" {
		t.Errorf("Count = %v, %v", got, err)
	}
	if conns, err := p.Conns(ctx, "alice"); err != nil || !slices.Equal(conns, []string{"c1", "c2"}) {
		t.Errorf("Conns = %v, %v; want [c1 c2]", conns, err)
	}
	if p["alice"][0] != "c2" {
		t.Error("Conns sorted the map's own slice")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Count(done, "alice"); err == nil {
		t.Error("Count with an ended context succeeded")
	}
}
