package natsconn

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// detectBound is how long a stall may go unnoticed in these tests: the
// settings aim at 2 to 3 s, with margin for a loaded machine.
const detectBound = 6 * time.Second

// connect connects to url with Options (rawconn's dialer and
// StallOptions), keeping st as the services do, and closes the connection
// when the test ends.
func connect(t *testing.T, url string, st *State, more ...nats.Option) *nats.Conn {
	t.Helper()
	opts := append(Options(),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(st.Up),
		nats.ReconnectHandler(st.Up),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { st.Down() }),
		nats.ClosedHandler(func(*nats.Conn) { st.Down() }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	)
	nc, err := nats.Connect(url, append(opts, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// echo answers every request on subject "echo" with its data, on a
// connection of its own straight to the server.
func echo(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// roundTrip reports whether a request through nc is answered.
func roundTrip(nc *nats.Conn) bool {
	m, err := nc.Request("echo", []byte("ping"), 500*time.Millisecond)
	return err == nil && string(m.Data) == "ping"
}

// TestStallNoticed: a link that freezes (the TCP connection stays open,
// no byte passes either way) is noticed within seconds and the state goes
// down, both when it is idle (caught by the pings) and when the client is
// writing (its writer blocks on a full kernel buffer while holding the
// connection's lock, which keeps the ping timer from running: caught by
// the write deadline). Thawed, the connection is made again and requests
// are answered.
func TestStallNoticed(t *testing.T) {
	for _, writing := range []bool{false, true} {
		t.Run(fmt.Sprintf("writing=%t", writing), func(t *testing.T) {
			n := testkit.StartNATS(t)
			echo(t, n.URL())
			px := testkit.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", n.Port))
			var st State
			nc := connect(t, "nats://"+px.Addr(), &st)
			testkit.Eventually(t, 5*time.Second, "connected", st.Connected)
			if !roundTrip(nc) {
				t.Fatal("no answer before the stall")
			}

			px.Freeze()
			frozen := time.Now()
			var stop atomic.Bool
			filled := make(chan struct{})
			go func() {
				defer close(filled)
				junk := make([]byte, 64<<10)
				for writing && !stop.Load() {
					_ = nc.Publish("junk", junk) // fails at once while reconnecting
				}
			}()
			testkit.Eventually(t, detectBound, "the stall is noticed", func() bool { return !st.Connected() })
			t.Logf("stall noticed after %s", time.Since(frozen))
			stop.Store(true)
			<-filled

			px.Thaw()
			testkit.Eventually(t, detectBound, "connected again", st.Connected)
			testkit.Eventually(t, detectBound, "requests are answered again", func() bool { return roundTrip(nc) })
		})
	}
}

// TestStallMovesToNextServer: with two servers listed, a connection whose
// link to one freezes moves to the other while the first stays frozen.
func TestStallMovesToNextServer(t *testing.T) {
	n := testkit.StartNATS(t)
	echo(t, n.URL())
	target := fmt.Sprintf("127.0.0.1:%d", n.Port)
	pxs := []*testkit.Proxy{testkit.StartProxy(t, target), testkit.StartProxy(t, target)}
	var st State
	nc := connect(t, "nats://"+pxs[0].Addr()+",nats://"+pxs[1].Addr(), &st)
	testkit.Eventually(t, 5*time.Second, "connected", st.Connected)
	// Freeze the link in use: nats.go shuffles the servers it is given.
	on, other := pxs[0], pxs[1]
	if nc.ConnectedAddr() == other.Addr() {
		on, other = other, on
	}
	on.Freeze()
	testkit.Eventually(t, detectBound, "connected to the other server", func() bool {
		return st.Connected() && nc.ConnectedAddr() == other.Addr()
	})
	if !roundTrip(nc) {
		t.Fatal("no answer through the other server while the first is frozen")
	}
}

// TestUpOnlyWhileConnected: a ConnectHandler that runs after the
// connection has already been lost, as nats.Connect can queue it, leaves
// the state down; one that runs while connected puts it up.
func TestUpOnlyWhileConnected(t *testing.T) {
	n := testkit.StartNATS(t)
	var st State
	nc := connect(t, n.URL(), &st)
	testkit.Eventually(t, 5*time.Second, "connected", st.Connected)

	n.Stop()
	testkit.Eventually(t, 5*time.Second, "down with NATS gone", func() bool { return !st.Connected() })
	st.Up(nc) // the late ConnectHandler
	if st.Connected() {
		t.Fatal("state up while nc is reconnecting")
	}

	n.Start()
	testkit.Eventually(t, detectBound, "up again once NATS is back", st.Connected)
	st.Down()
	st.Up(nc)
	if !st.Connected() {
		t.Fatal("state down while nc is connected")
	}
}

// TestRefused: a permissions violation for a subscription is recorded by
// its subject, once, a refusal over the limit as OverLimit, and nothing
// else is.
func TestRefused(t *testing.T) {
	var s State
	for _, err := range []error{
		errors.New(`nats: Permissions Violation for Subscription to "handlers.>"`), // not nats.ErrPermissionViolation
		fmt.Errorf("%w: Permissions Violation for Publish to \"x\"", nats.ErrPermissionViolation),
		nats.ErrSlowConsumer,
	} {
		if subject, ok := s.Refused(err); ok {
			t.Errorf("Refused(%v) = %q, true", err, subject)
		}
	}
	for range 2 {
		err := fmt.Errorf("%w: Permissions Violation for Subscription to \"handlers.>\" using queue \"handlers-svc\"", nats.ErrPermissionViolation)
		if subject, ok := s.Refused(err); !ok || subject != "handlers.>" {
			t.Errorf("Refused(%v) = %q, %v", err, subject, ok)
		}
	}
	if subject, ok := s.Refused(nats.ErrMaxSubscriptionsExceeded); !ok || subject != OverLimit {
		t.Errorf("Refused(%v) = %q, %v", nats.ErrMaxSubscriptionsExceeded, subject, ok)
	}
	if got := s.RefusedSubjects(); !slices.Equal(got, []string{"handlers.>", OverLimit}) {
		t.Errorf("RefusedSubjects() = %q", got)
	}
}

// TestSubscribeRepliesAtStart: SubscribeReplies makes the reply inbox
// that nats.go would make at the first Request, and sends nothing. NATS
// refuses it to a user whose subscribe permission leaves it out, and the
// refusal is recorded before any request; a user who may have it gets
// the requests' answers on it, with no second subscription.
func TestSubscribeRepliesAtStart(t *testing.T) {
	n := testkit.StartNATSWith(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "narrow", Password: "pw", Permissions: &server.Permissions{
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.elsewhere.>"}},
			}},
			{Username: "full", Password: "pw"},
		}
	})
	url := func(user string) string { return fmt.Sprintf("nats://%s:pw@127.0.0.1:%d", user, n.Port) }
	echo(t, url("full"))
	var seen atomic.Int64 // every message anyone publishes
	watch, err := nats.Connect(url("full"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watch.Close)
	if _, err := watch.Subscribe(">", func(*nats.Msg) { seen.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		var st State
		nc := connect(t, url("narrow"), &st, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { st.Refused(err) }))
		testkit.Eventually(t, 5*time.Second, "connected", st.Connected)
		if err := SubscribeReplies(nc); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, "NATS's refusal of the reply inbox is recorded, with no request made", func() bool {
			got := st.RefusedSubjects()
			return len(got) == 1 && strings.HasPrefix(got[0], nats.InboxPrefix) && strings.HasSuffix(got[0], ".*")
		})
	})

	t.Run("allowed", func(t *testing.T) {
		var st State
		nc := connect(t, url("full"), &st)
		testkit.Eventually(t, 5*time.Second, "connected", st.Connected)
		if err := SubscribeReplies(nc); err != nil {
			t.Fatal(err)
		}
		if got := nc.NumSubscriptions(); got != 1 {
			t.Fatalf("%d subscriptions after SubscribeReplies, want the reply inbox", got)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if !roundTrip(nc) {
			t.Fatal("a request after SubscribeReplies is not answered")
		}
		if got := nc.NumSubscriptions(); got != 1 {
			t.Fatalf("%d subscriptions after a request, want 1: the request made an inbox of its own", got)
		}
		if got := st.RefusedSubjects(); len(got) > 0 {
			t.Fatalf("refused %q", got)
		}
	})

	// Only the round trip's request and answer went out.
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); got != 2 {
		t.Fatalf("%d messages published, want the request and its answer: SubscribeReplies published", got)
	}
}

// TestSubscribeRepliesBeforeNATS: a worker starts while NATS is still
// away (RetryOnFailedConnect): SubscribeReplies makes the inbox all the
// same, nats.go sends it once NATS is reached, and requests are answered
// on it.
func TestSubscribeRepliesBeforeNATS(t *testing.T) {
	n := testkit.StartNATS(t)
	n.Stop()
	var st State
	nc := connect(t, n.URL(), &st)
	if err := SubscribeReplies(nc); err != nil {
		t.Fatalf("SubscribeReplies while NATS is away: %v", err)
	}
	n.Start()
	echo(t, n.URL())
	testkit.Eventually(t, detectBound, "connected once NATS is up", st.Connected)
	if !roundTrip(nc) {
		t.Fatal("a request is not answered once NATS is reached")
	}
	if got := nc.NumSubscriptions(); got != 1 {
		t.Fatalf("%d subscriptions, want the one reply inbox", got)
	}
}
