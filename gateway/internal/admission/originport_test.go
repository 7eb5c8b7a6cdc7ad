package admission_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/admission"
	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/hub"
)

// TestAllowedOriginEntryPortSpellings: as
// TestAllowedOriginEntryInOtherSpellings, for the spellings of a port
// f7068a9 left out. It compares the port as a number only to drop a
// default one; any other port is kept as written, and compared letter for
// letter with the Origin browsers send, in which the port is the number
// (WHATWG URL serializes it without leading zeros) and an empty one is no
// port at all. Each entry is either refused at start, naming
// GATEWAY_ALLOWED_ORIGINS, or lets in the browsers of its origin.
//
// It fails on main for:
//   - https://app.example:08443: accepted as written; a browser of
//     https://app.example:8443 is refused;
//   - https://app.example: (an empty port): url.Parse gives Port() "",
//     so nothing is dropped, and isOrigin takes it; a browser of
//     https://app.example is refused.
//
// Fix: have withoutDefaultPort write the entry anew from the parsed URL
// (scheme://host, then ":"+strconv.Itoa(port) unless the port is empty or
// the scheme's default), or refuse a port that is not written as browsers
// write it (leading zero, empty, over 65535).
func TestAllowedOriginEntryPortSpellings(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ entry, browserOrigin string }{
		{"https://app.example:08443", "https://app.example:8443"},
		{"https://app.example:", "https://app.example"},
		// These hold on main.
		{"https://app.example:0443", "https://app.example"},
		{"https://app.example:8443", "https://app.example:8443"},
	} {
		t.Run(tc.entry, func(t *testing.T) {
			cfg, err := config.Load(nil, func(k string) string {
				return map[string]string{"GATEWAY_JWT_SECRET": secret, "GATEWAY_ALLOWED_ORIGINS": tc.entry}[k]
			})
			if err != nil {
				if !strings.Contains(err.Error(), "GATEWAY_ALLOWED_ORIGINS") {
					t.Fatalf("GATEWAY_ALLOWED_ORIGINS=%s refused, but the error does not name the setting: %v", tc.entry, err)
				}
				return // refused at start: the operator is told
			}
			places := hub.New[*conn]()
			a := admission.New(admission.Config{JWTSecret: cfg.JWTSecret, AllowedOrigins: cfg.AllowedOrigins}, places, nopRec{}, zap.NewNop())
			a.Open()
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				up, user, ok := a.Admit(rw, r)
				if !ok {
					return
				}
				_ = up.WS.Close()
				places.AddReserved(&conn{id: "c", user: user})
				places.Remove(&conn{id: "c", user: user})
				a.Leave()
			}))
			defer srv.Close()
			tok, err := auth.Mint(secret, "alice", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/?token="+tok,
				http.Header{"Origin": {tc.browserOrigin}})
			if err != nil {
				status := 0
				if resp != nil {
					status = resp.StatusCode
					_ = resp.Body.Close()
				}
				t.Fatalf("GATEWAY_ALLOWED_ORIGINS=%s was accepted at start (as %q), but a browser of that origin (Origin: %s) is refused: HTTP %d, %v",
					tc.entry, cfg.AllowedOrigins, tc.browserOrigin, status, err)
			}
			_ = c.Close()
		})
	}
}
