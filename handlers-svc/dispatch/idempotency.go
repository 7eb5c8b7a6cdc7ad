package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/proto"
)

// Idempotency keys of Dispatch (Message.IdempotencyKey) are those of the
// dispatch API's Idempotency-Key header (docs/protocol.md section 7): the
// same Redis records (proto.IdempotencyKey), kept as long, naming the
// message the same way (IdempotencyHash) and holding the same answer
// (Positions.JSON), so that a Go call and a POST /v1/dispatch with the
// same key are one dispatch, whichever comes first.

// MaxIdempotencyKey is the longest idempotency key, in bytes.
const MaxIdempotencyKey = 64

// IdempotencyTTL is how long an idempotency key is remembered from its
// first use: its dispatch's positions, or that its outcome is unknown.
const IdempotencyTTL = 5 * time.Minute

// Errors wrapped by the error of a Dispatch whose idempotency key is
// held for another call; nothing was dispatched by it.
var (
	// ErrKeyPending: the dispatch that took the key is still running
	// (Dispatch waited for it until its own context ended), or its
	// outcome is unknown (ErrKeyUnknown, which wraps it). The error is
	// an *event.Error with code timeout, as the dispatch API's 409.
	ErrKeyPending = idem.ErrPending
	// ErrKeyUnknown: the dispatch that took the key gave up with its
	// outcome unknown (it may or may not have been delivered: a timeout,
	// a cluster partly reached, its context ended in flight), and the
	// key stays taken until it expires: look at the users' streams, or
	// accept the risk with a new key. A partly delivered dispatch
	// (ErrPartlyDelivered) returned the positions of who got it: send
	// the message to the others with a new key (see Dispatch). It wraps
	// ErrKeyPending.
	ErrKeyUnknown = idem.ErrUnknown
	// ErrKeyReused: the key was used for another message. The error is a
	// bad_request *event.Error, as the dispatch API's 422.
	ErrKeyReused = idem.ErrOther
)

// settleTimeout bounds the command that records a dispatch's outcome
// under its key, run once the dispatch is over (its context may have
// ended).
const settleTimeout = 2 * time.Second

// ValidIdempotencyKey reports whether key may be an idempotency key: 1
// to MaxIdempotencyKey bytes of visible ASCII ('!' to '~'), neither '"'
// nor '\\', as the dispatch API's header takes it.
func ValidIdempotencyKey(key string) bool {
	if key == "" || len(key) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// IdempotencyHash names m in the record of its idempotency key: the
// SHA-256, in hex, of m's JSON without its IdempotencyKey (args
// compacted, "null" args as none), so that a key given again for another
// message is told apart (ErrKeyReused), and a Go call and a dispatch
// API body that say the same are the same message, however the body is
// spaced. m should pass Check.
func (m *Message) IdempotencyHash() string {
	c := *m
	c.IdempotencyKey = ""
	if string(c.Args) == "null" {
		c.Args = nil
	}
	b, err := json.Marshal(c)
	if err != nil { // args that are not JSON: Check refuses them
		b = fmt.Appendf(nil, "%#v", c)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// JSON returns p as the dispatch API answers a dispatch and an
// idempotency record keeps it: {"pos":{...}} ({} when none), "bpos" for
// a broadcast, and a newline.
func (p Positions) JSON() []byte {
	if p.Users == nil {
		p.Users = map[string]string{}
	}
	body, err := json.Marshal(p)
	if err != nil { // positions and user ids are strings: it cannot fail
		panic(err)
	}
	return append(body, '\n')
}

// dispatchOnce is Dispatch for a message with an IdempotencyKey: it
// takes the key (waiting, while the dispatch that holds it runs, until
// its answer is recorded or ctx ends), dispatches, and records the
// outcome under the key; or it returns the positions recorded under the
// key, Replayed, dispatching nothing.
func (d *Dispatcher) dispatchOnce(ctx context.Context, m Message) (Positions, error) {
	none := Positions{Users: map[string]string{}}
	if !ValidIdempotencyKey(m.IdempotencyKey) {
		return none, event.BadRequest("idempotency key must be 1 to %d bytes of visible ASCII, neither '\"' nor '\\'", MaxIdempotencyKey)
	}
	if err := m.Check(); err != nil {
		return none, err
	}
	res, answer, err := d.idem.Wait(ctx, proto.IdempotencyKey(m.IdempotencyKey), m.IdempotencyHash())
	switch {
	case res != nil:
	case err == nil:
		var pos Positions
		if err := json.Unmarshal(answer, &pos); err != nil {
			return none, fmt.Errorf("dispatch %s: idempotency record of %q: %w", m.Event, m.IdempotencyKey, err)
		}
		if pos.Users == nil {
			pos.Users = map[string]string{}
		}
		pos.Replayed = true
		return pos, nil
	case errors.Is(err, ErrKeyReused):
		return none, &event.Error{Code: proto.CodeBadRequest,
			Message: "this idempotency key was used for another message: nothing was done", Err: err}
	case errors.Is(err, ErrKeyUnknown):
		return none, &event.Error{Code: proto.CodeTimeout,
			Message: "the dispatch with this idempotency key has an unknown outcome (it may or may not have been delivered): nothing was done",
			Err:     err}
	case errors.Is(err, ErrKeyPending):
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return none, &event.Error{Code: proto.CodeTimeout,
			Message: "a dispatch with this idempotency key is in progress: nothing was done", Err: err}
	case ctx.Err() != nil:
		return none, notSent(ctx.Err())
	default:
		return none, &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable",
			Err: fmt.Errorf("idempotency key: %w", err)}
	}
	// A call whose ctx ends while it is in flight learns its outcome when
	// the round trip that carries it is over (package late): it waits for
	// that, up to settleTimeout, so that the key records it rather than
	// stay unknown.
	outcome := make(chan late.Report, 1) // the func is called once at most: it never blocks
	pos, err := d.dispatch(late.With(ctx, func(r late.Report) { outcome <- r }), m)
	if err != nil && contextError(err) {
		pos, err = awaitOutcome(ctx, outcome, pos, err)
	}
	d.settle(ctx, res, pos, err)
	return pos, err
}

// awaitOutcome returns the result of a dispatch whose context, ctx,
// ended first, returning pos and err, from its outcome once told on
// outcome, within settleTimeout: its positions if it was delivered,
// notSent's error if it surely did not run, else err.
func awaitOutcome(ctx context.Context, outcome <-chan late.Report, pos Positions, err error) (Positions, error) {
	t := time.NewTimer(settleTimeout)
	defer t.Stop()
	select {
	case r := <-outcome:
		switch r.Outcome {
		case late.Done:
			users := r.Users
			if users == nil {
				users = map[string]string{}
			}
			return Positions{Users: users, Broadcast: r.Broadcast}, nil
		case late.NotRun:
			if !errors.Is(err, ErrNotSent) {
				err = notSent(ctx.Err())
			}
		}
	case <-t.C:
	}
	return pos, err
}

// settle records the outcome of res's dispatch, which returned pos and
// err: the positions of a success, replayed to repeats; nothing after a
// failure that surely delivered nothing (bad_request, unavailable,
// ErrNotSent), whose key is freed, so that a repeat dispatches; and after
// any other (timeout, handler_error, a context ended in flight: it may
// have been delivered), the key is marked unknown (ErrKeyUnknown) until
// it expires, so that a repeat is refused at once rather than delivered a
// second time.
func (d *Dispatcher) settle(ctx context.Context, res *idem.Reservation, pos Positions, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var serr error
	what := "recorded"
	switch {
	case err == nil:
		serr = d.idem.Record(ctx, res, pos.JSON())
	case NotDelivered(err):
		what = "freed"
		serr = d.idem.Release(ctx, res)
	default:
		what = "marked unknown"
		serr = d.idem.Abandon(ctx, res)
	}
	if serr != nil && d.log != nil {
		d.log.Warn("idempotency key not "+what+": repeats with it wait for its holder's deadline, then are refused, until it expires",
			zap.String("key", res.Key), zap.Error(serr))
	}
}
