package worker

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/web"
	"github.com/switchboard/switchboard/internal/httpjson"
	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/proto"
)

// AdminHandler serves what the supervisor reads over the worker's private
// socket: GET /metrics (the worker's registry) and GET /readyz.
func (w *Worker) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", w.metrics.Handler())
	// Served before Run has connected: serveReady looks at NATS and
	// Redis only once the worker serves.
	mux.HandleFunc("GET /readyz", w.serveReady)
	return mux
}

// routes serves the client port: /socket, the health checks, /dev/token
// in dev mode, and the browser assets.
func (w *Worker) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /socket", web.AllowProbe(http.HandlerFunc(w.serveSocket)))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		httpjson.Write(rw, http.StatusOK, map[string]any{"status": "ok", "worker": w.index})
	})
	mux.HandleFunc("GET /readyz", w.serveReady)
	if w.cfg.Dev {
		mux.HandleFunc("GET /dev/token", w.serveDevToken)
	}
	web.Register(mux, w.cfg.Dev)
	return mux
}

// devTokenTTL is the lifetime of tokens minted by /dev/token.
const devTokenTTL = 24 * time.Hour

// serveDevToken mints a token for ?user= (dev mode only, docs/protocol.md
// section 1), to clients on this machine only (or on GATEWAY_DEV_TOKEN_NETS):
// a dev gateway that another machine can reach must not hand that machine
// tokens for any user.
func (w *Worker) serveDevToken(rw http.ResponseWriter, r *http.Request) {
	if !devTokenClient(r.RemoteAddr, w.cfg.DevTokenNets) {
		http.NotFound(rw, r) // as outside dev mode: to other machines it does not exist
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		httpjson.Error(rw, http.StatusBadRequest, proto.CodeBadRequest, "user is required: /dev/token?user=<id>")
		return
	}
	tok, err := auth.Mint(w.cfg.JWTSecret, user, devTokenTTL)
	if errors.Is(err, auth.ErrSubject) {
		// A token the gateway would then refuse is no use to anyone.
		httpjson.Error(rw, http.StatusBadRequest, proto.CodeBadRequest, "user: "+err.Error())
		return
	}
	if err != nil {
		httpjson.Error(rw, http.StatusInternalServerError, proto.CodeHandlerError, "cannot mint a token")
		return
	}
	rw.Header().Set("Cache-Control", "no-store")
	httpjson.Write(rw, http.StatusOK, map[string]any{"token": tok, "user": user, "expires_in": int(devTokenTTL.Seconds())})
}

// devTokenClient reports whether the client at remote (host:port) may get
// dev tokens: it is on a loopback address, or in one of nets.
func devTokenClient(remote string, nets []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// serveReady answers /readyz: 200 once the worker has started and while
// NATS is connected and the Redis subscription live, else 503 with why.
// Until the worker serves, the one reason is what it is waiting for; NATS
// and Redis are looked at only after that, as the admin handler serves
// before Run has connected to them. Once its shutdown has begun it is not
// ready, whatever NATS and Redis are: it takes no socket and refuses every
// new envelope while it drains, and the supervisor's admin address (the
// only /readyz still answering then) must say so.
func (w *Worker) serveReady(rw http.ResponseWriter, _ *http.Request) {
	if !w.adm.Opened() {
		readiness.Write(rw, readiness.New(w.startingReason()).OfWorker(w.index))
		return
	}
	var reasons []string
	if w.adm.Closed() {
		reasons = append(reasons, "shutting down")
	}
	if !w.link.Connected() { // never waits for nc's lock, which a stalled write holds
		reasons = append(reasons, "nats not connected")
	}
	// The reply inbox, which NATS refuses after the fact to a user whose
	// subscribe permission leaves it out: every request then times out.
	reasons = append(reasons, w.link.RefusalReasons()...)
	if !w.sub.Live() {
		reasons = append(reasons, "redis subscription not live")
	}
	readiness.Write(rw, readiness.New(reasons...).OfWorker(w.index))
}

// startingReason says what a worker that does not serve yet waits for:
// NATS, the Redis subscription, or, once subscribed, the first load of the
// revoked tokens (sb:revoked), as waitDeps last saw them.
func (w *Worker) startingReason() string {
	down := w.waiting.Load()
	var what []string
	if down&waitNATS != 0 {
		what = append(what, "NATS")
	}
	if down&waitRedis != 0 {
		what = append(what, "the Redis subscription")
	}
	if down&waitRevoked != 0 {
		what = append(what, "the revoked tokens to load from "+proto.RevokedKey)
	}
	if len(what) == 0 {
		return "starting" // all up: it serves within moments
	}
	return "starting: waiting for " + strings.Join(what, " and ")
}
