// Package httpapi serves the dispatch API of handlers-svc, POST
// /v1/dispatch, and POST /v1/disconnect, which closes sockets
// (docs/protocol.md section 7): other backends dispatch over
// HTTP exactly as handlers do, through package dispatch, so their events
// are recorded and recovered too. It is safe for concurrent use. The only
// goroutines it starts record, under its idempotency key, the outcome of a
// dispatch answered 504 once that is known (at most MaxInFlight at once,
// each one Redis command); Close stops them.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/proto"
)

// Path is where the API is served, for POST.
const Path = "/v1/dispatch"

// MaxBody is the largest request body the API reads.
const MaxBody = 1 << 20

// DefaultTimeout bounds one dispatch, reading the rooms' members included.
const DefaultTimeout = 5 * time.Second

// MaxInFlight is the most dispatches the API runs at once. With Redis
// slow or hung each waits up to DefaultTimeout, holding a goroutine, its
// body (up to MaxBody) and a place in the publish queue that handlers'
// dispatches share: callers that keep sending would pile them up without
// end. Beyond it a dispatch is refused at once with 503 unavailable and
// Retry-After, unread; at ~1 ms a dispatch, 256 carry some 250,000 a
// second.
const MaxInFlight = 256

// Dispatcher is what the API needs of the dispatch path: a
// *dispatch.Dispatcher, which also reports the late outcome of a dispatch
// whose context ended first (package late), so that a 504's is recorded
// under its idempotency key; another Dispatcher's 504s keep their keys
// reserved until they expire.
type Dispatcher interface {
	Dispatch(ctx context.Context, m dispatch.Message) (dispatch.Positions, error)
	Disconnect(ctx context.Context, m dispatch.Disconnect) (workers int, err error)
}

// API serves POST /v1/dispatch for callers that present the key.
type API struct {
	d   Dispatcher
	key [sha256.Size]byte // compared in constant time, whatever the lengths
	// previous is the key being rotated out (AcceptPrevious), compared
	// likewise; hasPrevious is 1 when there is one, else 0.
	previous     [sha256.Size]byte
	hasPrevious  int
	previousUses atomic.Uint64 // requests let in by the previous key
	log          *zap.Logger
	timeout      time.Duration
	// inFlight holds a token per dispatch running, MaxInFlight at most.
	inFlight chan struct{}
	busy     *logevery.Log // refusals for MaxInFlight, logged once a minute at most
	// idem keeps the records of idempotency keys (Idempotent); nil: the
	// Idempotency-Key header is refused.
	idem    *idem.Store
	replays atomic.Uint64 // answers replayed from an idempotency record
	lates   lateRecords   // outcomes of dispatches answered 504, recorded once known
	// presence counts the users' sockets (WithPresence); nil: GET
	// /v1/presence is not served.
	presence Counter
}

// New returns the API, dispatching through d for callers whose
// Authorization header is "Bearer <key>". key must not be empty: without
// one the API is not served at all (404).
func New(d Dispatcher, key string, log *zap.Logger) *API {
	if key == "" {
		panic("httpapi: empty key")
	}
	log = log.Named("httpapi")
	a := &API{d: d, key: sha256.Sum256([]byte(key)), log: log, timeout: DefaultTimeout,
		inFlight: make(chan struct{}, MaxInFlight), busy: logevery.New(log, "dispatch API busy: dispatches refused", time.Minute)}
	a.lates.init()
	return a
}

// AcceptPrevious has the API also let in callers presenting previous, the
// key being rotated out (docs/operations.md, "Rotating the dispatch API
// key"), and returns a; an empty previous adds nothing. Call it before
// the API serves.
func (a *API) AcceptPrevious(previous string) *API {
	if previous != "" {
		a.previous, a.hasPrevious = sha256.Sum256([]byte(previous)), 1
	}
	return a
}

// PreviousKeyUses returns how many requests the previous key let in: once
// it stops growing, no caller uses that key any more.
func (a *API) PreviousKeyUses() uint64 { return a.previousUses.Load() }

// Register serves the API on mux at Path and DisconnectPath: POST, and
// 405 with the error body for any other method; and at PresencePath, GET,
// when WithPresence gave it a Counter.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle(Path, a)
	mux.Handle(DisconnectPath, disconnectHandler{a})
	if a.presence != nil {
		mux.Handle(PresencePath, presenceHandler{a})
	}
}

// ServeHTTP answers one dispatch: 200 {"pos":{...}} (and "bpos" for a
// broadcast), 400 bad_request, 401 unauthorized, 405 (bad_request) for a
// method but POST, 503 unavailable, 504 timeout, each failure with the
// JSON error body of docs/protocol.md.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.allowed(w, r) {
		return
	}
	idemKey, err := idempotencyKey(r)
	if err == nil && idemKey != "" && a.idem == nil {
		err = event.BadRequest("%s is not served here", IdempotencyHeader)
	}
	if err != nil {
		w.Header().Set("Connection", "close") // the body is not read
		a.answer(w, r, dispatch.Message{}, nil, dispatch.Positions{}, err)
		return
	}
	release, ok := a.slot(w, r)
	if !ok {
		return
	}
	defer release()
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	m, err := decode(body)
	if err != nil {
		a.answer(w, r, m, nil, dispatch.Positions{}, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	var res *reservation
	var outcome *lateOutcome
	if idemKey != "" {
		var replay []byte
		if res, replay, err = a.reserve(ctx, idemKey, &m); res == nil {
			a.refuseReserved(w, r, m, replay, err)
			return
		}
		outcome = &lateOutcome{a: a, res: res}
		ctx = late.With(ctx, outcome.take)
	}
	pos, err := a.d.Dispatch(ctx, m)
	if outcome != nil {
		if known, ok := outcome.dispatchReturned(); ok {
			// Out of time, but the outcome is known already: a dispatch
			// that was delivered is answered 200, as it would have been
			// in time; one that surely did not run has its key freed
			// and is answered 503, which says a retry is safe.
			switch known.Outcome {
			case late.Done:
				pos, err = dispatch.Positions{Users: known.Users, Broadcast: known.Broadcast}, nil
			case late.NotRun:
				a.settle(context.Background(), res, known)
				a.log.Warn("dispatch refused: out of time before it reached Redis", zap.String("event", m.Event),
					zap.Int("status", http.StatusServiceUnavailable), zap.String("remote", r.RemoteAddr), zap.Error(err))
				writeError(w, http.StatusServiceUnavailable, proto.CodeUnavailable,
					"dispatch not sent: its time ran out before it reached Redis; nothing was delivered, so a retry is safe")
				return
			default:
				a.settle(context.Background(), res, known)
			}
		}
	}
	a.answer(w, r, m, res, pos, err)
}

// refuseReserved answers a dispatch whose idempotency key was not
// reserved: the answer replayed, or the error found.
func (a *API) refuseReserved(w http.ResponseWriter, r *http.Request, m dispatch.Message, replay []byte, err error) {
	switch {
	case err == nil:
		a.replays.Add(1)
		a.log.Debug("dispatch replayed from its idempotency record", zap.String("event", m.Event))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set(ReplayedHeader, "true")
		_, _ = w.Write(replay)
	case errors.Is(err, idem.ErrPending):
		a.log.Debug("dispatch refused: its idempotency key is pending", zap.String("event", m.Event),
			zap.String("remote", r.RemoteAddr))
		writeError(w, http.StatusConflict, proto.CodeTimeout,
			"a dispatch with this Idempotency-Key is in progress, or its outcome is unknown (it may or may not have been delivered): nothing was done")
	case errors.Is(err, idem.ErrOther):
		writeError(w, http.StatusUnprocessableEntity, proto.CodeBadRequest,
			"this Idempotency-Key was used with another body: nothing was done")
	default:
		a.answer(w, r, m, nil, dispatch.Positions{}, err)
	}
}

// allowed answers a request that is not a POST carrying the key, 405 or
// 401, and reports whether r may go on.
func (a *API) allowed(w http.ResponseWriter, r *http.Request) bool {
	return a.allowedMethod(w, r, http.MethodPost)
}

// allowedMethod is allowed for a request that must use method.
func (a *API) allowedMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method != method {
		w.Header().Set("Allow", method)
		w.Header().Set("Connection", "close") // the body is not read (see below)
		writeError(w, http.StatusMethodNotAllowed, proto.CodeBadRequest, "use "+method)
		return false
	}
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		// The body is not read: closing the connection lets net/http
		// answer at once, where it would otherwise first read what the
		// caller still sends of it (at most the server's ReadTimeout).
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusUnauthorized, proto.CodeUnauthorized, "a valid Authorization: Bearer <HANDLERS_API_KEY> header is required")
		return false
	}
	return true
}

// InFlight returns how many calls hold one of the MaxInFlight places now:
// those past their checks of the key and the Idempotency-Key header,
// reading their body or dispatching.
func (a *API) InFlight() int { return len(a.inFlight) }

// slot takes one of the MaxInFlight places, which the caller gives back
// with release, or answers 503 at once and reports false.
func (a *API) slot(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	select {
	case a.inFlight <- struct{}{}:
		return func() { <-a.inFlight }, true
	default:
		a.busy.Failed(errBusy, zap.String("remote", r.RemoteAddr))
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close") // the body is not read
		writeError(w, http.StatusServiceUnavailable, proto.CodeUnavailable,
			fmt.Sprintf("dispatch API busy: %d dispatches in flight; nothing was done, retry", MaxInFlight))
		return nil, false
	}
}

// readBody reads r's body, at most MaxBody bytes, or answers 400 and
// reports false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusBadRequest, proto.CodeBadRequest, "body is larger than 1 MiB")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, proto.CodeBadRequest, "body could not be read")
		return nil, false
	}
	return body, true
}

// errBusy is logged for a dispatch refused beyond MaxInFlight.
var errBusy = errors.New("MaxInFlight dispatches in flight")

// authorized reports whether r carries the key, or the previous key, as a
// bearer token. The scheme's name is case-insensitive (RFC 9110 section
// 11.1). Both keys are compared, in constant time, whichever matches, so
// the time taken tells neither which one nor whether there is a previous
// key.
func (a *API) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	current := subtle.ConstantTimeCompare(sum[:], a.key[:])
	previous := subtle.ConstantTimeCompare(sum[:], a.previous[:]) & a.hasPrevious
	if current == 0 && previous == 1 {
		a.previousUses.Add(1)
	}
	return current|previous == 1
}

// decode reads a Message from body (decodeBody).
func decode(body []byte) (dispatch.Message, error) {
	m, err := decodeBody[dispatch.Message](body)
	if err == nil && string(m.Args) == "null" {
		m.Args = nil
	}
	return m, err
}

// answer writes the response for a dispatch's outcome and logs it; with
// res, it first records the outcome under its idempotency key.
func (a *API) answer(w http.ResponseWriter, r *http.Request, m dispatch.Message, res *reservation, pos dispatch.Positions, err error) {
	if err == nil {
		a.log.Debug("dispatched", zap.String("event", m.Event), zap.Int("users", len(m.Users)),
			zap.Int("conns", len(m.Conns)), zap.Int("rooms", len(m.Rooms)), zap.Bool("broadcast", m.Broadcast),
			zap.Bool("transient", m.Transient), zap.Int("recorded", len(pos.Users)))
		body := pos.JSON()
		if res != nil {
			// Before the answer, so that a retry once it is read finds it.
			a.finish(context.Background(), res, body, nil)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
		return
	}
	if res != nil {
		a.finish(context.Background(), res, nil, err)
	}
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		// The caller hung up: its own doing, not Redis failing. Nothing
		// reads the answer; the dispatch may or may not have gone out
		// (it was written if its round trip had begun).
		a.log.Debug("dispatch abandoned: the caller hung up", zap.String("event", m.Event),
			zap.String("remote", r.RemoteAddr), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, proto.CodeUnavailable, "the caller hung up")
		return
	}
	status, werr, lvl := failure(err)
	// Delivered to some of its targets for sure: the body names them
	// ("pos", "bpos"), and the key stays reserved until it expires.
	partly := errors.Is(err, dispatch.ErrPartlyDelivered)
	switch {
	case partly:
		if !strings.HasPrefix(werr.Message, "dispatch partly delivered") {
			werr.Message = "dispatch partly delivered (" + werr.Message + ")"
		}
		if len(pos.Users) == 0 && pos.Broadcast == "" {
			// Transient, or sent by a service that records nothing
			// (HISTORY_WINDOW=0): no positions, so "pos" cannot name who
			// got it. A recorded dispatch partly delivered names someone:
			// the part that ran recorded its users (or the broadcast).
			werr.Message += `: it was not recorded, so it has no positions, and "pos" cannot say which of its targets got it; ` +
				"sending it again may deliver it twice to those that did"
			if res != nil {
				werr.Message += "; its outcome stays unknown, so a retry with its Idempotency-Key is answered 409, " +
					"not dispatched again, until the key expires"
			}
			break
		}
		werr.Message += `: the users in "pos" (the broadcast, with "bpos") have it; the others did not get it, ` +
			"or, where Redis did not answer, may have"
		if res != nil {
			werr.Message += "; its outcome stays unknown, so a retry with its Idempotency-Key is answered 409, " +
				"not dispatched again, until the key expires: send it to the others with a new key"
		}
	case werr.Code == proto.CodeTimeout && strings.HasPrefix(werr.Message, "dispatch partly delivered"):
		// On a Redis Cluster, refused by some masters while others may
		// have run it: kept, as it says what happened.
		if res != nil {
			werr.Message += "; its outcome stays unknown, so a retry with its Idempotency-Key is answered 409, " +
				"not dispatched again, until the key expires"
		}
	case werr.Code == proto.CodeTimeout:
		// Out of time, or Redis took it and did not answer.
		werr.Message = "dispatch timed out or got no answer from Redis: it may or may not have been delivered"
		if res != nil {
			werr.Message += "; a retry with its Idempotency-Key is answered 409, not dispatched again, until the outcome is known " +
				"(or, if it never is, until the key expires): then the 200 of a dispatch that was delivered is replayed, " +
				"and one that surely was not is dispatched"
		}
	}
	if ce := a.log.Check(lvl, "dispatch refused"); ce != nil {
		ce.Write(zap.String("event", m.Event), zap.Int("status", status), zap.String("code", string(werr.Code)),
			zap.String("remote", r.RemoteAddr), zap.Int("recorded", len(pos.Users)), zap.Error(err))
	}
	if partly {
		writeErrorPos(w, status, werr.Code, werr.Message, pos)
		return
	}
	writeError(w, status, werr.Code, werr.Message)
}

// failure returns the status, the wire error and the log level of a
// failed call: 400 bad_request (debug), 503 unavailable and 504 timeout
// (warn), else 500 (error).
func failure(err error) (int, *proto.Error, zapcore.Level) {
	werr := event.WireError(err)
	switch werr.Code {
	case proto.CodeBadRequest:
		return http.StatusBadRequest, werr, zap.DebugLevel
	case proto.CodeUnavailable:
		return http.StatusServiceUnavailable, werr, zap.WarnLevel
	case proto.CodeTimeout:
		return http.StatusGatewayTimeout, werr, zap.WarnLevel
	}
	return http.StatusInternalServerError, werr, zap.ErrorLevel
}

// writeError writes the JSON error body of docs/protocol.md.
func writeError(w http.ResponseWriter, status int, code proto.Code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	body := proto.AppendReply(nil, &proto.Error{Code: code, Message: message})
	_, _ = w.Write(append(body, '\n'))
}

// writeErrorPos writes the error body of a partly delivered dispatch:
// writeError's, and the positions of the targets that have it as a 200
// carries them, {"error":{...},"pos":{...},"bpos":"..."}.
func writeErrorPos(w http.ResponseWriter, status int, code proto.Code, message string, pos dispatch.Positions) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	body := proto.AppendReply(nil, &proto.Error{Code: code, Message: message})
	body = append(body[:len(body)-1], ',')
	_, _ = w.Write(append(body, pos.JSON()[1:]...)) // {"pos":...}\n without its brace
}
