package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/e2e/seqcheck"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// maxInFlight is how many postUpdated requests one author has unanswered
// at most.
const maxInFlight = 64

// postBuffer is how many posts may wait for a free author before the
// scheduler skips them.
const postBuffer = 256

// tick is how often the load's scheduler hands out the posts due.
const tick = 5 * time.Millisecond

// post is one postUpdated an author sends: its id (the post, and the
// request's ref) and the users it mentions.
type post struct {
	id       string
	mentions []string
}

// Load dispatches numbered events at a steady rate while it runs: posts
// (postUpdated through the gateway, which handlers-svc dispatches to every
// mentioned user) from authors on sockets of their own, and broadcasts
// from a backend that records and publishes them as handlers-svc does.
// Each is declared to the checker before it is sent and confirmed or
// failed by its answer.
type Load struct {
	check   *seqcheck.Checker
	users   []string
	mention int // users mentioned per post
	rate    float64
	brate   float64

	posts   chan post
	n       atomic.Int64 // posts scheduled
	skipped atomic.Int64 // posts not sent: every author was busy
	stop    chan struct{}
	wg      sync.WaitGroup
	authors []*author
	bcast   *broadcaster
	closeMu sync.Once
}

// LoadOptions tune a Load.
type LoadOptions struct {
	Rate       float64  // posts per second
	Mentions   int      // users each post mentions (default 2)
	Authors    int      // author sockets (default: one per 100 posts a second, at least 2)
	Broadcasts float64  // broadcasts per second (0: none)
	Users      []string // the users posts mention, in turn
}

// startLoad starts a Load through the gateway at wsURL, with tokens from
// token and broadcasts written to rdb.
func startLoad(check *seqcheck.Checker, wsURL string, token func(string) string, rdb redis.UniversalClient,
	window time.Duration, o LoadOptions) *Load {
	if o.Mentions < 1 {
		o.Mentions = 2
	}
	o.Mentions = min(o.Mentions, len(o.Users))
	if o.Authors < 1 {
		o.Authors = max(2, int(o.Rate/100))
	}
	l := &Load{check: check, users: o.Users, mention: o.Mentions, rate: o.Rate, brate: o.Broadcasts,
		posts: make(chan post, postBuffer), stop: make(chan struct{})}
	for i := range o.Authors {
		user := fmt.Sprintf("author%d", i)
		a := &author{user: user, url: wsURL, token: token(user), check: check, posts: l.posts,
			stop: l.stop, slots: make(chan struct{}, maxInFlight), inflight: map[string]struct{}{}}
		l.authors = append(l.authors, a)
		l.wg.Add(1)
		go func() { defer l.wg.Done(); a.run() }()
	}
	if o.Broadcasts > 0 {
		l.bcast = &broadcaster{rdb: rdb, window: window, check: check}
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.bcast.run(l.stop, o.Broadcasts) }()
	}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.schedule() }()
	return l
}

// schedule hands the authors the posts due at the rate; a post that finds
// postBuffer posts waiting already is skipped, so the rate never builds a
// backlog.
func (l *Load) schedule() {
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * l.rate)
			for l.n.Load() < due {
				i := l.n.Add(1)
				p := post{id: fmt.Sprintf("p%d", i), mentions: make([]string, l.mention)}
				for j := range p.mentions {
					p.mentions[j] = l.users[(int(i)+j)%len(l.users)]
				}
				select {
				case l.posts <- p:
				default:
					l.skipped.Add(1)
				}
			}
		}
	}
}

// Stop stops dispatching and waits until every request sent is answered
// (or its socket ended); it is idempotent.
func (l *Load) Stop() {
	l.closeMu.Do(func() {
		close(l.stop)
		l.wg.Wait()
	})
}

// Skipped returns how many posts were not sent because every author was
// busy.
func (l *Load) Skipped() int64 { return l.skipped.Load() }

// author is one socket that sends posts, and connects again when it ends.
type author struct {
	user  string
	url   string
	token string
	check *seqcheck.Checker
	posts <-chan post
	stop  <-chan struct{}
	slots chan struct{} // one per request in flight

	mu       sync.Mutex
	inflight map[string]struct{}
}

func (a *author) run() {
	for {
		c := a.connect()
		if c == nil {
			return
		}
		done := make(chan struct{})
		go func() { defer close(done); a.read(c) }()
		stopped := a.send(c, done)
		if stopped {
			a.drain(done)
		}
		_ = c.Close()
		<-done
		a.failAll()
		if stopped {
			return
		}
	}
}

// connect dials until it has a socket; nil once stopped.
func (a *author) connect() *websocket.Conn {
	d := websocket.Dialer{HandshakeTimeout: dialTimeout}
	for {
		select {
		case <-a.stop:
			return nil
		default:
		}
		c, _, err := d.Dial(a.url, http.Header{"Authorization": {"Bearer " + a.token}})
		if err == nil {
			return c
		}
		select {
		case <-a.stop:
			return nil
		case <-time.After(redialBackoff):
		}
	}
}

// send writes posts until the socket ends (false) or the load stops
// (true).
func (a *author) send(c *websocket.Conn, done <-chan struct{}) bool {
	for {
		select {
		case <-a.stop:
			return true
		case <-done:
			return false
		case a.slots <- struct{}{}:
		}
		var p post
		select {
		case <-a.stop:
			<-a.slots
			return true
		case <-done:
			<-a.slots
			return false
		case p = <-a.posts:
		}
		sts := make([]seqcheck.Stream, len(p.mentions))
		for i, u := range p.mentions {
			sts[i] = seqcheck.UserStream(u)
		}
		a.check.Dispatching(p.id, sts...)
		a.mu.Lock()
		a.inflight[p.id] = struct{}{}
		a.mu.Unlock()
		env, _ := json.Marshal(map[string]any{"event": "postUpdated", "ref": p.id,
			"args": map[string]any{"post": p.id, "mentions": p.mentions}})
		_ = c.SetWriteDeadline(time.Now().Add(dialTimeout))
		if c.WriteMessage(websocket.TextMessage, env) != nil {
			return false // failed with the rest when the reader ends
		}
	}
}

// drain waits, once the load stops, until every request in flight is
// answered, or the socket ends, or a reply is overdue.
func (a *author) drain(done <-chan struct{}) {
	deadline := time.After(2 * dialTimeout)
	for {
		a.mu.Lock()
		n := len(a.inflight)
		a.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-done:
			return
		case <-deadline:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// read takes the answers: an ack confirms a post, an error fails it.
func (a *author) read(c *websocket.Conn) {
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var f proto.Frame
		if json.Unmarshal(data, &f) != nil || f.Ref == "" {
			continue
		}
		a.mu.Lock()
		_, ok := a.inflight[f.Ref]
		delete(a.inflight, f.Ref)
		a.mu.Unlock()
		if !ok {
			continue
		}
		if f.Event == proto.EventAck {
			a.check.Acked(f.Ref)
		} else {
			a.check.Failed(f.Ref)
		}
		<-a.slots
	}
}

// failAll fails every request still unanswered when a socket ended: its
// post may or may not have been dispatched.
func (a *author) failAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.inflight {
		a.check.Failed(id)
		delete(a.inflight, id)
		<-a.slots
	}
}

// broadcaster is a backend that dispatches broadcasts: it records and
// publishes each with the same script handlers-svc runs, and takes the
// positions it returns as confirmation.
type broadcaster struct {
	rdb    redis.UniversalClient
	window time.Duration
	check  *seqcheck.Checker
	n      int
}

func (b *broadcaster) run(stop <-chan struct{}, rate float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		b.n++
		id := fmt.Sprintf("b%d", b.n)
		b.check.Dispatching(id, seqcheck.Broadcast)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, err := streams.Publish(ctx, b.rdb, b.window, &proto.Dispatch{Event: "flash",
			Args: json.RawMessage(`{"id":"` + id + `"}`), Broadcast: true})
		cancel()
		if err != nil {
			b.check.Failed(id)
		} else {
			b.check.Acked(id)
		}
	}
}
