// Package natsconn holds what both services need of their NATS connection
// beyond nats.go's defaults: the options that notice a stalled link
// within seconds (StallOptions), and the connection's state as its
// handlers last reported it (State), which can be read without waiting for
// the connection's lock.
//
// Why both are needed. A link to NATS that freezes (packets black-holed,
// no RST: a dead middlebox, a partitioned host) closes nothing, so nats.go
// notices it only by its own pings or a failed write, and by default it
// pings every 2 minutes and gives a blocked write a minute. Meanwhile
// nats.go writes to the socket while holding the connection's lock (the
// flusher, a Publish whose buffer is full, each ping), so once the kernel's
// send buffer is full every call that takes that lock, nc.IsConnected
// included, waits for the write: /readyz and /metrics hung instead of
// turning red.
package natsconn

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/rawconn"
)

// The settings StallOptions applies, with why each.
const (
	// PingInterval is how often the client pings the server. A ping
	// costs a few bytes each way per connection (one per gateway worker
	// and handlers-svc instance), nothing next to the requests.
	PingInterval = time.Second
	// MaxPingsOut is how many pings may go unanswered: the link is
	// declared stale at the timer's tick after that, 2 to 3 s after the
	// last answer. Any reply resets the count, so a server merely slow to
	// answer (its PONG queued behind our own requests) gets 2 s before the
	// connection is given up; one that has answered nothing for 2 s is not
	// serving requests anyway.
	MaxPingsOut = 2
	// FlusherTimeout bounds each write to the socket (nats.go sets it as
	// the write deadline). The pings cannot catch a link whose kernel
	// buffer is full: the ping timer waits for the connection's lock,
	// which the blocked writer holds. 2 s is far above what a healthy
	// link takes to accept one write (nats.go's 32 KB buffer, or one
	// large message), and bounds how long the lock is held.
	FlusherTimeout = 2 * time.Second
)

// StallOptions returns the nats.go options that have a stalled link
// noticed within about 3 s and the connection made anew: to the next
// server of the URL when it lists several, else to the same once it
// answers again (RetryOnFailedConnect and MaxReconnects(-1), which the
// services set, keep it trying). A write that times out reconnects at
// once (ReconnectOnFlusherError) instead of waiting for the pings, which
// the blocked writer would keep from running; what it held is lost, as
// with any lost connection.
func StallOptions() []nats.Option {
	return []nats.Option{
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(MaxPingsOut),
		nats.FlusherTimeout(FlusherTimeout),
		nats.ReconnectOnFlusherError(),
	}
}

// Options returns StallOptions and a dialer whose connections are read
// and written by raw system calls (package rawconn says why), within
// nats.go's default connect timeout. TLS, when the URL asks for it, goes
// on top as before. One difference from nats.go's own dialer, which
// comes from nats.go: it resolves a server's host name itself and dials
// the addresses one by one, in random order, giving its own dialer the
// timeout divided by their number, but a custom dialer each address with
// the whole of the dialer's Timeout (nats.go's createConn). So an attempt
// on a name with n unreachable addresses takes up to n times as long.
// (rawconn.Dialer, given the name, shares the timeout among them as
// net.Dialer does; nats.go gives it the name only when its own lookup
// found nothing, or with SkipHostLookup.) An IP address, or a name with
// one address, is dialed the same either way.
func Options() []nats.Option {
	return append(StallOptions(), nats.SetCustomDialer(rawconn.Dialer{Timeout: nats.GetDefaultOptions().Timeout}))
}

// State is whether a NATS connection is connected, as its handlers last
// reported it: read it wherever a wait would matter (readiness, metrics,
// a request's path) instead of nc.IsConnected, which takes the
// connection's lock and so waits, during a stall, for a blocked write
// (up to FlusherTimeout, again and again). The zero State is not
// connected.
//
// nats.go calls the handlers one at a time, from one goroutine, in the
// order it queued them; so the state follows the connection's, a moment
// behind. The services' own handlers call Up from their ConnectHandler and
// ReconnectHandler, and Down from their DisconnectErrHandler and
// ClosedHandler, every one of them: a handler replaced later
// (nc.SetDisconnectErrHandler) must call it too.
type State struct {
	up atomic.Bool

	mu      sync.Mutex
	refused []string    // subjects NATS refused a subscription to since the last (re)connect
	retry   *time.Timer // RetryRefused's, while armed
}

// RetryRefusedAfter is how long RetryRefused waits before it makes the
// connection anew while a refusal stands.
var RetryRefusedAfter = 5 * time.Second

// RetryRefused makes nc's connection anew RetryRefusedAfter from now if a
// subscription is still refused then (Refused), and again after each
// connect NATS refuses one on. NATS keeps no subscription it refused, and
// a permission mended by a configuration reload keeps the connection, so
// without a new one the subscription would stay dead until a restart;
// nats.go sends every subscription again on a reconnect. Call it after a
// Refused that returned ok.
func (s *State) RetryRefused(nc *nats.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retry != nil {
		return
	}
	s.retry = time.AfterFunc(RetryRefusedAfter, func() {
		s.mu.Lock()
		s.retry = nil
		still := len(s.refused) > 0
		s.mu.Unlock()
		if still {
			_ = nc.ForceReconnect()
		}
	})
}

// Connected reports whether the connection was up at its last change.
// Safe from any goroutine; never blocks.
func (s *State) Connected() bool { return s.up.Load() }

// Up records that nc is connected, unless it no longer is. The check is
// needed for the ConnectHandler of a nats.Connect that connects at once:
// nats.go (v1.55.0, Connect) queues that handler only after releasing
// nc's lock, by when the connection may already have failed and queued
// its DisconnectErrHandler first; trusted blindly, the handler would leave
// the state up for as long as NATS stays away. Whenever nc connects
// again, its handler is queued after the change and calls Up anew. It
// takes nc's lock, as handlers may: they run on nats.go's callback
// goroutine, never on a request's or a probe's path.
func (s *State) Up(nc *nats.Conn) {
	if nc.IsConnected() {
		s.up.Store(true)
	}
	// nats.go subscribes anew on every (re)connect, and queues the
	// handler before it reads the server's answer: a refusal that stands
	// comes again, after.
	s.mu.Lock()
	s.refused = nil
	s.mu.Unlock()
}

// refusedRe finds the subject of a subscription in NATS's permissions
// violation (Permissions Violation for Subscription to "handlers.>"
// using queue ...).
var refusedRe = regexp.MustCompile(`Subscription to "(\S+)"`)

// Refused records the subscription err says NATS refused, an error given
// to the connection's ErrorHandler, and returns its subject; ok is false
// for any other error. NATS takes the connection, and the SUB, and then
// answers a SUB the user's permissions leave out with an error of its
// own, after the fact: Subscribe has returned nil long before. Such a
// subscription receives nothing until the next connect, when nats.go
// sends it again.
//
// A refusal for the server's (or the account's) limit of subscriptions
// names no subject: it is recorded as OverLimit.
func (s *State) Refused(err error) (subject string, ok bool) {
	switch {
	case errors.Is(err, nats.ErrMaxSubscriptionsExceeded):
		subject = OverLimit
	case errors.Is(err, nats.ErrPermissionViolation):
		m := refusedRe.FindStringSubmatch(err.Error())
		if m == nil {
			return "", false
		}
		subject = m[1]
	default:
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.refused, subject) {
		s.refused = append(s.refused, subject)
	}
	return subject, true
}

// RefusalReasons returns, for a readiness check, a reason for each
// subscription NATS refused since the connection was last made.
func (s *State) RefusalReasons() []string {
	var reasons []string
	for _, subject := range s.RefusedSubjects() {
		if subject == OverLimit {
			reasons = append(reasons, "nats refuses a subscription over its max_subscriptions")
			continue
		}
		reasons = append(reasons, "nats refuses the subscription to "+subject)
	}
	return reasons
}

// OverLimit stands for the subject of a subscription NATS refused as over
// its max_subscriptions (Refused).
const OverLimit = "(one over NATS's max_subscriptions)"

// RefusedSubjects returns the subjects of the subscriptions NATS refused
// since the connection was last made (Refused): none when it took them
// all.
func (s *State) RefusedSubjects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused)
}

// Down records that the connection is not connected.
func (s *State) Down() { s.up.Store(false) }

// SubscribeReplies subscribes nc's reply inbox now, "<inbox prefix>.<id>.*"
// on which every Request's answer comes, instead of at its first Request,
// where nats.go makes it (createNewRequestAndSend, v1.55.0). NATS refuses
// such a subscription after the fact to a user whose subscribe permission
// leaves it out (Refused); made at start, the refusal is known, and
// readiness red, before any request has been lost to it. It is kept on
// every reconnect, as nats.go's subscriptions are.
//
// nats.go has no call for it but a Request, which subscribes the inbox
// first and then publishes: given no subject, the publish is refused
// before anything is written (ErrBadSubject) and the inbox stays,
// reused by every Request after. (The answer nats.go waits for is one
// entry of its reply table, never freed.) Any other error is returned:
// the inbox is then subscribed at the first Request, as before.
func SubscribeReplies(nc *nats.Conn) error {
	before := nc.NumSubscriptions()
	_, err := nc.Request("", nil, time.Second)
	if !errors.Is(err, nats.ErrBadSubject) {
		if err == nil {
			err = errors.New("a request without a subject was sent")
		}
		return fmt.Errorf("subscribe the reply inbox: %w", err)
	}
	if nc.NumSubscriptions() == before {
		// A nats.go that checks the subject before it subscribes.
		return errors.New("subscribe the reply inbox: nats.go made no subscription")
	}
	return nil
}
