package resume_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// held is the list of sockets a test's resumer sees as held, which the
// test changes.
type held struct {
	mu      sync.Mutex
	sockets []*resume.Socket
}

func (h *held) list() []*resume.Socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*resume.Socket(nil), h.sockets...)
}

func (h *held) set(sockets ...*resume.Socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sockets = sockets
}

// TestKeepHeldMetas: the metas of a user's stream and of the broadcast
// stream, whose TTL is short, outlive it several times over while a socket
// of the user is held, with no event to refresh them; once the last socket
// is gone they expire. Without it, the next event after a quiet spell as
// long as the TTL (a day) would start new epochs, and resync every socket
// with "store lost events" when nothing was lost.
func TestKeepHeldMetas(t *testing.T) { onBoth(t, testKeepHeldMetas) }

func testKeepHeldMetas(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture) {
	const ttl = time.Second
	cfg := resume.DefaultConfig()
	cfg.MetaTTL = ttl
	f := newFixture(t, cfg)
	ctx := context.Background()
	c := &conn{id: "c1", user: "bob"}
	s, connected := f.connect(t, c, "", "") // makes both metas, kept a day
	metas := []string{proto.UserMetaKey("bob"), proto.BroadcastMetaKey}
	for _, k := range metas {
		if err := f.rdb.PExpire(ctx, k, ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	sockets := &held{}
	sockets.set(s)
	f.run(t, sockets.list)
	start := time.Now()
	// Time itself is the condition: three TTLs, every meta there all along.
	testkit.Eventually(t, 10*ttl, "three TTLs passed", func() bool {
		for _, k := range metas {
			if n, err := f.rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Fatalf("%s gone %v after its TTL was set to %v, though a socket of its user is held (%v)",
					k, time.Since(start).Round(time.Millisecond), ttl, err)
			}
		}
		return time.Since(start) > 3*ttl
	})
	// The next event continues the socket's epoch.
	at, _ := proto.ParsePos(connected.Pos)
	if p := f.publish(t, "bob", "e1"); p.Epoch != at.Epoch || p.Off != at.Off+1 {
		t.Fatalf("the event after the quiet spell is at %s, want the offset after %s", p, at)
	}
	if err := f.rdb.PExpire(ctx, metas[0], ttl).Err(); err != nil { // the event kept it a day
		t.Fatal(err)
	}
	sockets.set() // the last socket left
	testkit.Eventually(t, 5*ttl, "the metas expire once no socket is held", func() bool {
		for _, k := range metas { // one at a time: on a cluster they are in two slots
			if n, err := f.rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
				return false
			}
		}
		return true
	})
	if got := f.rec.resyncs(); len(got) != 0 {
		t.Fatalf("resyncs %v, want none", got)
	}
}

// TestKeepMakesNoMeta: a meta that is gone stays gone (making it again
// would make a meta without an epoch), while the others of the same round
// are kept.
func TestKeepMakesNoMeta(t *testing.T) { onBoth(t, testKeepMakesNoMeta) }

func testKeepMakesNoMeta(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture) {
	f := newFixture(t, resume.DefaultConfig())
	ctx := context.Background()
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	if err := f.rdb.Del(ctx, proto.UserMetaKey("bob")).Err(); err != nil {
		t.Fatal(err)
	}
	short := 10 * time.Second
	if err := f.rdb.Expire(ctx, proto.BroadcastMetaKey, short).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.res.Keep(ctx, []*resume.Socket{s}); err != nil {
		t.Fatal(err)
	}
	if n, err := f.rdb.Exists(ctx, proto.UserMetaKey("bob")).Result(); err != nil || n != 0 {
		t.Fatalf("bob's meta after Keep: exists %d, %v; want gone", n, err)
	}
	if ttl, err := f.rdb.TTL(ctx, proto.BroadcastMetaKey).Result(); err != nil || ttl <= short {
		t.Fatalf("broadcast meta TTL %v, %v; want it kept a day again", ttl, err)
	}
}
