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

// TestAllowedOriginEntryInOtherSpellings: as
// TestAllowedOriginEntryMatchesItsBrowsers, for spellings of the entries
// efa2a6c meant to mend or refuse that its checks miss. Each entry is
// either refused at start, naming GATEWAY_ALLOWED_ORIGINS, or lets in the
// browsers of its origin.
//
// It fails on main for:
//   - a host not in ASCII, percent-encoded (https://b%C3%BCcher.example,
//     as a URL copied from some tools reads): isASCII looks at the entry's
//     bytes, all ASCII, while url.Parse decodes the host to bücher.example;
//     accepted, and no browser (Origin: https://xn--bcher-kva.example)
//     matches it;
//   - a default port with a leading zero (https://app.example:0443):
//     withoutDefaultPort compares the port's text with "443"; browsers
//     parse the port as a number and drop it (Origin: https://app.example).
//
// Fix: decide on the parsed URL, not on the entry's text: refuse a host
// whose url.Parse'd form is not ASCII (or has a % escape), and compare the
// port as a number (strconv.Atoi) before dropping it, or refuse a port
// with a leading zero.
func TestAllowedOriginEntryInOtherSpellings(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ entry, browserOrigin string }{
		{"https://b%C3%BCcher.example", "https://xn--bcher-kva.example"},
		{"https://app.example:0443", "https://app.example"},
		// These hold on main: an IPv6 literal with its default port, an
		// upper-case scheme.
		{"https://[::1]:443", "https://[::1]"},
		{"HTTPS://App.Example:443", "https://app.example"},
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
			h := http.Header{"Origin": {tc.browserOrigin}}
			c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/?token="+tok, h)
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
