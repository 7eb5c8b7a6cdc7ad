package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/proto"
)

// DisconnectPath is where the disconnect API is served, for POST
// (docs/protocol.md section 7, an extension).
const DisconnectPath = "/v1/disconnect"

// disconnectHandler serves POST /v1/disconnect with its API's key, slots
// and error shapes.
type disconnectHandler struct{ a *API }

// ServeHTTP answers one disconnect: 200 {"workers":n}, the gateway workers
// that received it, or the failures of a dispatch (400, 401, 405, 503,
// 504). An Idempotency-Key is not needed and is ignored: a disconnect
// repeated closes nothing more, but sockets opened since.
func (h disconnectHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.a
	if !a.allowed(w, r) {
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
	m, err := decodeDisconnect(body)
	if err != nil {
		a.disconnectFailed(w, r, m, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	n, err := a.d.Disconnect(ctx, m)
	if err != nil {
		a.disconnectFailed(w, r, m, err)
		return
	}
	// Info, not debug as a dispatch: a disconnect is rare, and who was
	// cut off when is what an operator looks for.
	a.log.Info("disconnect published", zap.Strings("users", m.Users), zap.Strings("conns", m.Conns),
		zap.String("reason", proto.TruncateReason(m.Reason)), zap.Bool("reconnect", m.Reconnect), zap.Bool("revoke", m.Revoke), zap.Int("workers", n)) // as sent: a body may hold a reason of up to its whole size
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"workers":` + strconv.Itoa(n) + "}\n"))
}

// decodeDisconnect reads a Disconnect from body (decodeBody).
func decodeDisconnect(body []byte) (dispatch.Disconnect, error) {
	return decodeBody[dispatch.Disconnect](body)
}

// disconnectFailed answers and logs a disconnect that failed.
func (a *API) disconnectFailed(w http.ResponseWriter, r *http.Request, m dispatch.Disconnect, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		writeError(w, http.StatusServiceUnavailable, proto.CodeUnavailable, "the caller hung up")
		return
	}
	status, werr, lvl := failure(err)
	if werr.Code == proto.CodeTimeout {
		werr.Message = "disconnect timed out or got no answer from Redis: it may or may not have been published; it is safe to repeat"
	}
	if ce := a.log.Check(lvl, "disconnect refused"); ce != nil {
		ce.Write(zap.Int("users", len(m.Users)), zap.Int("conns", len(m.Conns)), zap.Int("status", status),
			zap.String("code", string(werr.Code)), zap.String("remote", r.RemoteAddr), zap.Error(err))
	}
	writeError(w, status, werr.Code, werr.Message)
}
