package natserve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/proto"
)

// IdemTTL is how long the record of a request with an idempotency key is
// kept from its first use: as long as the default HISTORY_WINDOW, beyond
// which a client that was away cannot resume its streams either.
const IdemTTL = 2 * time.Minute

// settleTimeout bounds the command that records a request's answer under
// its key, run once the handler is done (its context may have ended). It
// is below idem.SettleGrace, past which (after the request's deadline) a
// repeat no longer waits for that answer.
const settleTimeout = 2 * time.Second

// Answers to a request whose key is held by another.
var (
	errIdemPending = &proto.Error{Code: proto.CodeTimeout,
		Message: "the first request with this idem has not finished, or its outcome is unknown (it may have run)"}
	errIdemOther = &proto.Error{Code: proto.CodeBadRequest,
		Message: "idem was used for another request (another event or args): the handler did not run"}
	errIdemStore = &proto.Error{Code: proto.CodeUnavailable,
		Message: "idempotency records unavailable: the handler did not run"}
	errIdemOff = &proto.Error{Code: proto.CodeBadRequest,
		Message: "idem is not served by this handlers-svc"}
	errIdemBad = &proto.Error{Code: proto.CodeBadRequest,
		Message: "idem must be 1 to 64 of A-Z a-z 0-9 _ . -"}
)

// idemKey returns the idempotency key m carries, "" without one, or the
// error to answer: a key the gateway should not have sent, or one this
// Server keeps no records for.
func (s *Server) idemKey(m *nats.Msg) (string, *proto.Error) {
	vals := m.Header.Values(proto.IdemHeader)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1 || !proto.ValidIdem(vals[0]):
		return "", errIdemBad
	case s.cfg.Idem == nil:
		return "", errIdemOff
	}
	return vals[0], nil
}

// requestHash names r's request in its record: its event and args, so
// that a key sent again with others is told apart.
func requestHash(r *event.Request) string {
	h := sha256.New()
	h.Write([]byte(r.Event))
	h.Write([]byte{0})
	h.Write(r.Args)
	return hex.EncodeToString(h.Sum(nil))
}

// answerRepeat answers j, whose key was not reserved for it: with the
// recorded answer, or the error found.
func (s *Server) answerRepeat(j job, replay []byte, err error) {
	var werr *proto.Error
	switch {
	case err == nil:
		if s.cfg.Replayed != nil {
			s.cfg.Replayed(j.r.Event)
		}
		s.log.Debug("request answered from its idempotency record",
			zap.String("event", j.r.Event), zap.String("user", j.r.User), zap.String("conn", j.r.Conn))
		s.send(j.m, j.r, replay)
		return
	case errors.Is(err, idem.ErrPending):
		werr = errIdemPending
	case errors.Is(err, idem.ErrOther):
		werr = errIdemOther
	default:
		s.log.Warn("idempotency record not read: request refused",
			zap.String("event", j.r.Event), zap.String("user", j.r.User), zap.String("conn", j.r.Conn), zap.Error(err))
		werr = errIdemStore
	}
	s.respondUnrun(j.m, j.r, werr) // the key's other request, or none, ran
}

// outcomeUnknown reports whether j's handler, which returned err, may or
// may not have had its effects: it answered timeout, or failed once the
// request's time ran out, but for a dispatch that says it was never sent
// (dispatch.ErrNotSent, unavailable: its key is freed).
func outcomeUnknown(j job, err error) bool {
	if err == nil || errors.Is(err, dispatch.ErrNotSent) {
		return false
	}
	return event.WireError(err).Code == proto.CodeTimeout || j.ctx.Err() != nil
}

// settle records under res the answer body of j's handler, which
// returned err, for repeats to get: any answer, but one that says the
// handler did nothing and may be sent again (unavailable, rate_limited),
// which frees the key so that a repeat runs it (a recorded rate_limited
// would refuse the repeat of a client that waited as told, for as long as
// the record lasts), and one whose outcome is unknown (outcomeUnknown,
// which the caller found once, as the answer was chosen: the request's
// time may run out since), which keeps the key taken until it expires,
// so that a repeat cannot run the handler a second time, marked so that a
// repeat is refused at once instead of holding a handler slot until its
// deadline.
func (s *Server) settle(j job, res *idem.Reservation, body []byte, err error, unknown bool) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	fields := func(e error) []zap.Field {
		return []zap.Field{zap.String("event", j.r.Event), zap.String("user", j.r.User), zap.String("conn", j.r.Conn), zap.Error(e)}
	}
	if unknown {
		if aerr := s.cfg.Idem.Abandon(ctx, res); aerr != nil {
			s.log.Warn("idempotency key not marked unknown: repeats wait for their deadline until it expires", fields(aerr)...)
			return
		}
		s.log.Debug("outcome unknown: idempotency key kept until it expires", fields(err)...)
		return
	}
	if err != nil {
		switch code := event.WireError(err).Code; code {
		case proto.CodeUnavailable, proto.CodeRateLimited:
			if rerr := s.cfg.Idem.Release(ctx, res); rerr != nil {
				s.log.Warn("idempotency key not freed: repeats get timeout until it expires", fields(rerr)...)
			}
			return
		}
	}
	if rerr := s.cfg.Idem.Record(ctx, res, body); rerr != nil {
		s.log.Warn("idempotency record not stored: repeats get timeout until it expires", fields(rerr)...)
	}
}
