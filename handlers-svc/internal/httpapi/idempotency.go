package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/proto"
)

// IdempotencyHeader names the request header that carries an idempotency
// key (draft-ietf-httpapi-idempotency-key-header): a dispatch retried with
// the same key and body is answered from the first one's record instead of
// being delivered again (docs/protocol.md section 7).
const IdempotencyHeader = "Idempotency-Key"

// ReplayedHeader is set to "true" on an answer replayed from the record of
// an earlier dispatch with the same key.
const ReplayedHeader = "Idempotent-Replayed"

// MaxIdempotencyKey is the longest idempotency key, in bytes: package
// dispatch's, whose Message.IdempotencyKey is the same key.
const MaxIdempotencyKey = dispatch.MaxIdempotencyKey

// IdempotencyTTL is how long a key is remembered from its first use: its
// dispatch's answer, or that its outcome is unknown (dispatch's).
const IdempotencyTTL = dispatch.IdempotencyTTL

// finishTimeout bounds the command that records a dispatch's outcome
// under its key, run once the dispatch is over (its own context may have
// ended).
const finishTimeout = 2 * time.Second

// Idempotent makes a honour the Idempotency-Key header, keeping its
// records in rdb (handlers-svc's client, a Redis Cluster one included)
// for IdempotencyTTL. It returns a; call it before serving. Without it a
// request with the header is refused (400).
func (a *API) Idempotent(rdb redis.UniversalClient) *API {
	a.idem = idem.New(rdb, IdempotencyTTL)
	return a
}

// Replays returns how many dispatches were answered from the record of an
// earlier one with the same idempotency key, delivering nothing.
func (a *API) Replays() uint64 { return a.replays.Load() }

// idempotencyKey returns the key of r's Idempotency-Key header, "" without
// one, or a bad_request error. The draft's form is a structured-field
// string, "\"<key>\""; a bare key is taken too, as most clients send it.
// A key is 1 to MaxIdempotencyKey bytes of visible ASCII, neither '"' nor
// '\\'.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values(IdempotencyHeader)
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", event.BadRequest("%s must be given once", IdempotencyHeader)
	}
	k := strings.TrimSpace(vals[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if !dispatch.ValidIdempotencyKey(k) {
		return "", event.BadRequest("%s must be 1 to %d bytes of visible ASCII", IdempotencyHeader, MaxIdempotencyKey)
	}
	return k, nil
}

// reservation is a request's hold on an idempotency key while its
// dispatch runs.
type reservation = idem.Reservation

// reserve holds key for a dispatch of m, named as a Go caller's
// Message.IdempotencyKey names it (Message.IdempotencyHash), so that
// either may repeat the other's. It returns the reservation; or the
// answer recorded under key, to replay; or idem.ErrPending or
// idem.ErrOther for a key held by another dispatch; or an unavailable
// error (nothing was dispatched).
func (a *API) reserve(ctx context.Context, key string, m *dispatch.Message) (*reservation, []byte, error) {
	res, answer, err := a.idem.Reserve(ctx, proto.IdempotencyKey(key), m.IdempotencyHash())
	if err != nil && !errors.Is(err, idem.ErrPending) && !errors.Is(err, idem.ErrOther) {
		return nil, nil, &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: err}
	}
	return res, answer, err
}

// finish records the outcome of res's dispatch: the answer of a success,
// replayed to retries; nothing after a failure that surely delivered
// nothing (bad_request, unavailable), so that a retry dispatches; and
// after any other (timeout: it may have been delivered, or the caller
// gone mid-dispatch), the reservation is kept, so that a retry gets 409
// rather than a second delivery, until the outcome is known (settle) or
// else until it expires.
func (a *API) finish(ctx context.Context, res *reservation, answer []byte, err error) {
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		if serr := a.idem.Record(ctx, res, answer); serr != nil {
			// Left pending: a retry gets 409, not a second delivery.
			a.log.Warn("idempotency record not stored: retries with its key get 409 until it expires",
				zap.String("key", res.Key), zap.Error(serr))
		}
		return
	}
	if dispatch.NotDelivered(err) {
		a.release(ctx, res)
	}
}

// release deletes res's reservation, if it still holds it.
func (a *API) release(ctx context.Context, res *reservation) {
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	if err := a.idem.Release(ctx, res); err != nil {
		a.log.Warn("idempotency reservation not released: retries with its key get 409 until it expires",
			zap.String("key", res.Key), zap.Error(err))
	}
}
