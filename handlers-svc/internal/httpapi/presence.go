package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/proto"
)

// PresencePath is where the presence API is served, for GET
// (docs/protocol.md section 7, an extension).
const PresencePath = "/v1/presence"

// MaxPresenceUsers is the most users one presence request names: each is
// one Redis command, and a longer list belongs in several requests.
const MaxPresenceUsers = 100

// Counter counts the open sockets of users: a *presence.Reader.
type Counter interface {
	Count(ctx context.Context, users ...string) (map[string]int, error)
}

// WithPresence serves GET /v1/presence, counting through c, and returns
// a. Call it before Register.
func (a *API) WithPresence(c Counter) *API {
	a.presence = c
	return a
}

// presenceHandler serves GET /v1/presence with its API's key, slots and
// error shapes.
type presenceHandler struct{ a *API }

// presenceBody is the answer of GET /v1/presence.
type presenceBody struct {
	Users map[string]int `json:"users"`
}

// ServeHTTP answers GET /v1/presence?user=a&user=b: 200
// {"users":{"a":2,"b":0}}, each user's open sockets; 400 bad_request for
// no user, one that is no user id a token may carry (dispatch.ValidUser)
// or more than MaxPresenceUsers; and the failures of
// a dispatch (401, 405, 503, 504).
func (h presenceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.a
	if !a.allowedMethod(w, r, http.MethodGet) {
		return
	}
	users := r.URL.Query()["user"]
	switch {
	case len(users) == 0:
		writeError(w, http.StatusBadRequest, proto.CodeBadRequest, "name at least one user: ?user=a&user=b")
		return
	case len(users) > MaxPresenceUsers:
		writeError(w, http.StatusBadRequest, proto.CodeBadRequest,
			fmt.Sprintf("at most %d users per request, got %d", MaxPresenceUsers, len(users)))
		return
	}
	for i, u := range users {
		// As a dispatch's users (dispatch.Message.Check): no socket is of
		// another id, and one that is not UTF-8 would come back in the
		// answer as another key.
		if !dispatch.ValidUser(u) {
			writeError(w, http.StatusBadRequest, proto.CodeBadRequest,
				fmt.Sprintf("user[%d] must be a user id of 1 to %d bytes of printable UTF-8", i, dispatch.MaxUserLen))
			return
		}
	}
	release, ok := a.slot(w, r)
	if !ok {
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	counts, err := a.presence.Count(ctx, users...)
	if err != nil {
		status, werr, lvl := failure(err)
		if werr.Code == proto.CodeTimeout {
			werr.Message = "presence read timed out"
		}
		if ce := a.log.Check(lvl, "presence read failed"); ce != nil {
			ce.Write(zap.Int("users", len(users)), zap.Int("status", status), zap.String("code", string(werr.Code)),
				zap.String("remote", r.RemoteAddr), zap.Error(err))
		}
		writeError(w, status, werr.Code, werr.Message)
		return
	}
	body, err := json.Marshal(presenceBody{Users: counts})
	if err != nil { // a map of strings to ints always marshals
		writeError(w, http.StatusInternalServerError, proto.CodeHandlerError, "presence could not be encoded")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}
