package resume_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// utf8Conn is a conn that also keeps every frame sent that is not UTF-8:
// conn.Send decodes with encoding/json, which takes such bytes (as
// U+FFFD), so it cannot tell.
type utf8Conn struct {
	*conn
	mu  sync.Mutex
	bad [][]byte
}

func (c *utf8Conn) Send(b []byte) bool {
	if !utf8.Valid(b) {
		c.mu.Lock()
		c.bad = append(c.bad, append([]byte(nil), b...))
		c.mu.Unlock()
	}
	return c.conn.Send(b)
}

func (c *utf8Conn) notUTF8() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bad...)
}

// publishNotUTF8 records and publishes, as a publisher that does not check
// (a handlers-svc before 30465b6 during a rolling update, or another
// language's), one event to user whose args are JSON but not UTF-8.
func (f *fixture) publishNotUTF8(t *testing.T, user, event string) proto.Pos {
	t.Helper()
	args := json.RawMessage("{\"text\":\"caf\xe9\"}") // Latin-1 é
	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: event, Args: args, Users: []string{user}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := proto.ParsePos(pos[0])
	return p
}

// TestReplayArgsNotUTF8: b932b2c made a worker drop a live dispatch
// whose args are not UTF-8 (a client must fail a text frame that is not,
// RFC 6455 8.1, close 1007), but the same dispatch is recorded in the
// user's stream, and the resume replay sends the stream entry's args as
// they are (streams.parseEntry checks only the event name; entryFrame
// copies Args into the frame): every resume within HISTORY_WINDOW fails
// the socket again, which is what 30465b6 set out to prevent.
//
// Now such an entry is skipped, as one the socket is left out of
// (streams.Entry.Undeliverable), and not counted in missed.
func TestReplayArgsNotUTF8(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	from := f.publish(t, "bob", "e0")
	f.publishNotUTF8(t, "bob", "latin1")
	f.publish(t, "bob", "e2")
	c := &utf8Conn{conn: &conn{id: "c1", user: "bob"}}
	s := f.res.NewSocket(c)
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, from.String(), ""); err != nil {
		t.Fatal(err)
	}
	for _, b := range c.notUTF8() {
		t.Errorf("the resume replay sent a frame that is not UTF-8 (the client fails the socket, 1007): %q", b)
	}
	if evs := c.events(t); len(evs) != 1 || !strings.HasPrefix(evs[0], "e2@") {
		t.Errorf("replayed %q, want e2 alone", evs)
	}
}

// TestGapFillArgsNotUTF8: the same on a live socket, and made certain by
// b932b2c itself: the worker drops the live dispatch whose args are not
// UTF-8, so the socket's next event comes with a gap of one, and the gap
// is filled from the stream, with the entry whose args are not UTF-8.
// The drop delays the bad frame by one event; it does not stop it.
//
// Expected: no frame the socket is sent is anything but UTF-8.
func TestGapFillArgsNotUTF8(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &utf8Conn{conn: &conn{id: "c1", user: "bob"}}
	s := f.res.NewSocket(c)
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, "", ""); err != nil {
		t.Fatal(err)
	}
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	f.publishNotUTF8(t, "bob", "latin1") // dropped by the worker as malformed (b932b2c): never offered
	next := f.publish(t, "bob", "e2")
	s.Offer(false, &next, eventFrame("bob", "e2", next))
	testkit.Eventually(t, 5*time.Second, "e2 sent", func() bool {
		evs := c.events(t)
		return len(evs) > 0 && strings.HasPrefix(evs[len(evs)-1], "e2@")
	})
	for _, b := range c.notUTF8() {
		t.Errorf("the gap fill sent a frame that is not UTF-8 (the client fails the socket, 1007): %q", b)
	}
}
