// Package admission decides which requests for /socket become sockets. In
// order: the client address's rate of requests (GATEWAY_IP_UPGRADE_RATE),
// the Origin (GATEWAY_ALLOWED_ORIGINS, docs/protocol.md section 1), the
// token (and whether it was revoked), whether the worker is open (started, and not shutting down), the
// socket caps (GATEWAY_MAX_CONNS, GATEWAY_MAX_CONNS_PER_USER), then the
// WebSocket upgrade. A refused request is answered with the contract's JSON
// error, counted by reason and logged at debug level.
//
// The caps are checked against the worker's one count of sockets, the hub
// (Places). Admission also knows which sockets it let in until each
// leaves, so that shutdown can close the door (Close) and then wait for
// them (Wait). An Admission is safe for concurrent use.
package admission

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/web"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/httpjson"
	"github.com/switchboard/switchboard/proto"
)

// Config is what admission checks a request against.
type Config struct {
	JWTSecret string // HS256 secret of the tokens
	// JWTPreviousSecret is, during a rotation, the secret being replaced,
	// whose tokens are still accepted (counted by
	// Recorder.PreviousSecret); "" = none.
	JWTPreviousSecret string
	JWTAudience       string        // required "aud" when set
	JWTLeeway         time.Duration // the clock skew allowed on exp and nbf
	// AllowedOrigins lists the origins allowed to open a socket; nil means
	// the gateway's own host only (any in dev mode), and "*" any.
	AllowedOrigins  []string
	Dev             bool
	MaxConns        int // sockets of the worker; 0 = no cap
	MaxConnsPerUser int // sockets of one user on the worker; 0 = no cap

	// IPUpgradeRate is how many requests for /socket one client address
	// may make per second on the worker, with bursts of IPUpgradeBurst;
	// 0 = no limit.
	IPUpgradeRate  float64
	IPUpgradeBurst int

	// Revoked, when set, reports whether a verified token of user issued
	// at iat (zero: no iat) was revoked (package revoke); such a token is
	// refused with 401 "token revoked". It must not block: it is checked
	// on every upgrade.
	Revoked func(user string, iat time.Time) bool

	// Starting, when set, says what the worker waits for until Open
	// ("starting: waiting for NATS"), for the 503 that answers an upgrade
	// meanwhile; nil: "starting".
	Starting func() string
}

// Recorder counts refused upgrades, by reason (one of the metrics.Refused
// constants), and upgrades whose token the previous secret verified.
type Recorder interface {
	UpgradeRefused(reason string)
	PreviousSecret()
}

// Admission is the door of one worker's /socket.
type Admission struct {
	cfg      Config
	verifier *auth.Verifier
	upgrader websocket.Upgrader
	places   Places
	rec      Recorder
	log      *zap.Logger
	ipRate   *ipRate

	opened atomic.Bool // Open was called
	mu     sync.Mutex
	closed bool           // Close was called
	inside sync.WaitGroup // admitted sockets that have not left
}

// Probe takes and releases the locks every upgrade takes (Worker.Probe).
func (a *Admission) Probe() {
	a.mu.Lock()
	a.mu.Unlock()
	a.ipRate.mu.Lock()
	a.ipRate.mu.Unlock()
}

// New returns an Admission that refuses every socket until Open; the caps
// of cfg are checked against places.
func New(cfg Config, places Places, rec Recorder, log *zap.Logger) *Admission {
	verifier := auth.NewVerifier(cfg.JWTSecret, cfg.JWTAudience, auth.WithPreviousSecret(cfg.JWTPreviousSecret), auth.WithLeeway(cfg.JWTLeeway))
	a := &Admission{cfg: cfg, verifier: verifier, places: places, rec: rec, log: log,
		ipRate: newIPRate(cfg.IPUpgradeRate, cfg.IPUpgradeBurst)}
	a.upgrader = websocket.Upgrader{
		// ReadBufferSize 0: ws.Upgrade gives every socket a small read
		// buffer of its own (ws.ReadBufferSize). ws.Conn writes frames
		// itself from a shared pool; the pool here only serves gorilla's
		// handshake.
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     a.checkOrigin,
		Error:           upgradeError,
	}
	return a
}

// Open lets sockets in, once the worker can serve them; until then an
// upgrade is refused with 503, so the client retries and, through
// SO_REUSEPORT, likely reaches another worker.
func (a *Admission) Open() { a.opened.Store(true) }

// Opened reports whether Open was called.
func (a *Admission) Opened() bool { return a.opened.Load() }

// Close refuses every later upgrade with 503 (shutting down); the sockets
// let in before stay until they leave.
func (a *Admission) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

// Closed reports whether Close was called: a socket admitted while Close
// ran may be unknown to the shutdown, and must close itself.
func (a *Admission) Closed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// Admit answers r. Refused, it has answered r and returns false; admitted,
// it returns the upgraded socket, with the time its token stops being
// accepted as its Expires, and its verified user, for which it
// reserved a place in Places, and which counts for Wait until Leave. A
// plain GET (the JavaScript client's probe after a refused upgrade) gets
// the same answer as an upgrade but is not counted: counting it would
// count a refusal twice, or a good token's probe as a bad upgrade.
func (a *Admission) Admit(rw http.ResponseWriter, r *http.Request) (up ws.Upgraded, user string, ok bool) {
	upgrade := web.IsUpgrade(r)
	refused := func(reason string) {
		if upgrade {
			a.rec.UpgradeRefused(reason)
		}
	}
	// First, as the cheapest: everything after it costs an HMAC.
	if !a.ipRate.allow(remoteIP(r), time.Now()) {
		refused(metrics.RefusedIPRate)
		httpjson.Error(rw, http.StatusTooManyRequests, proto.CodeRateLimited, "too many connection attempts from this address: retry in a few seconds")
		return ws.Upgraded{}, "", false
	}
	if !a.checkOrigin(r) {
		refused(metrics.RefusedOrigin)
		httpjson.Error(rw, http.StatusForbidden, proto.CodeForbiddenOrigin, "origin not allowed")
		return ws.Upgraded{}, "", false
	}
	var claims auth.Claims
	tok, err := auth.FromRequest(r)
	if err == nil {
		claims, err = a.verifier.Verify(tok)
	}
	if err == nil && claims.Previous && upgrade {
		// Counted whatever follows: the operator asks whether tokens of
		// the previous secret are still in use, not whether they got in.
		a.rec.PreviousSecret()
	}
	user = claims.User
	revoked := err == nil && a.cfg.Revoked != nil && a.cfg.Revoked(user, claims.IssuedAt)
	if revoked {
		err = auth.ErrRevoked
	}
	if err != nil {
		var ae *auth.Error
		msg := "unauthorized"
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		fields := []zap.Field{zap.String("reason", msg), zap.String("remote", r.RemoteAddr)}
		if revoked { // a verified token: whose it is, for the operator who revoked it
			fields = append(fields, zap.String("user", user))
		}
		a.log.Debug("upgrade refused", fields...)
		if revoked {
			refused(metrics.RefusedRevoked)
		} else {
			refused(metrics.RefusedUnauthorized)
		}
		httpjson.Error(rw, http.StatusUnauthorized, proto.CodeUnauthorized, msg)
		return ws.Upgraded{}, "", false
	}
	if !a.opened.Load() {
		refused(metrics.RefusedUnavailable)
		starting := "starting"
		if a.cfg.Starting != nil {
			starting = a.cfg.Starting()
		}
		httpjson.Error(rw, http.StatusServiceUnavailable, proto.CodeUnavailable, "gateway is "+starting+", retry shortly")
		return ws.Upgraded{}, "", false
	}
	a.mu.Lock()
	closed := a.closed
	var capped *refusal
	if !closed {
		if capped = a.reserveSocket(user); capped == nil {
			a.inside.Add(1)
		}
	}
	a.mu.Unlock()
	if closed {
		refused(metrics.RefusedUnavailable)
		httpjson.Error(rw, http.StatusServiceUnavailable, proto.CodeUnavailable, "gateway is shutting down")
		return ws.Upgraded{}, "", false
	}
	if capped != nil {
		a.log.Debug("upgrade refused: socket limit", zap.String("user", user), zap.String("code", string(capped.err.Code)),
			zap.Int("status", capped.status))
		refused(capped.metric)
		httpjson.Error(rw, capped.status, capped.err.Code, capped.err.Message)
		return ws.Upgraded{}, "", false
	}
	up, err = ws.Upgrade(&a.upgrader, rw, r)
	if err != nil {
		a.places.Cancel(user)
		a.Leave()
		refused(metrics.RefusedUpgrade)
		// Answered already: by upgradeError before the hijack, or not at
		// all after it (gorilla closed the connection), so another answer
		// here would only log a superfluous WriteHeader or a write on a
		// hijacked connection.
		return ws.Upgraded{}, "", false
	}
	// The socket lasts as long as its token would still be accepted: a
	// token within the leeway of its exp was let in, and closing it at
	// exp would only have the client come back with the same token.
	up.Expires = claims.Expires.Add(a.verifier.Leeway())
	up.IssuedAt = claims.IssuedAt // for the revoked check once the socket is registered
	return up, user, true
}

// Leave tells that a socket Admit let in has ended: Wait no longer waits
// for it. (Its place in Places is freed by whoever registered it there.)
func (a *Admission) Leave() { a.inside.Done() }

// Wait waits until every socket let in has left, or until ctx is done.
func (a *Admission) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { a.inside.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// upgradeError is the Upgrader's answer to a request it cannot upgrade: the
// contract's JSON error, like the refusals checked before it. The
// JavaScript client's probe, a plain GET with a good token, ends here with
// 400 bad_request.
func upgradeError(rw http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := proto.CodeBadRequest
	switch {
	case status == http.StatusForbidden:
		code = proto.CodeForbiddenOrigin
	case status >= http.StatusInternalServerError:
		code = proto.CodeUnavailable
	}
	rw.Header().Set("Sec-WebSocket-Version", "13") // as gorilla's own answer, for a client of another version
	httpjson.Error(rw, status, code, reason.Error())
}
