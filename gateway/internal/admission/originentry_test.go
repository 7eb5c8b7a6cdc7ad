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
	"github.com/switchboard/switchboard/proto"
)

type nopRec struct{}

func (nopRec) UpgradeRefused(string) {}
func (nopRec) PreviousSecret()       {}

type conn struct{ id, user string }

func (c *conn) ID() string                          { return c.id }
func (c *conn) User() string                        { return c.user }
func (c *conn) Offer(bool, *proto.Pos, []byte) bool { return true }
func (c *conn) Skip(bool, *proto.Pos)               {}

// TestAllowedOriginEntryMatchesItsBrowsers: every GATEWAY_ALLOWED_ORIGINS
// entry the configuration accepts lets in the browsers of that origin, or
// is refused at start naming the setting. config refuses the entries
// "which no browser's Origin equals" (a final /, a path, no scheme...),
// and operations.md asks for each entry "as browsers send it"; checkOrigin
// compares them with the browser's Origin letter for letter (ignoring
// case), so an entry in another spelling must be written anew or refused.
// Browsers serialize an origin without its default port and with its
// port as a number (RFC 6454 section 6.1), and its host in ASCII
// (punycode). Each of these spellings was accepted and then refused every
// browser, until efa2a6c, f7068a9 and 8db4047 (found by three reviews).
func TestAllowedOriginEntryMatchesItsBrowsers(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ entry, browserOrigin string }{
		{"https://app.example:443", "https://app.example"},
		{"http://app.example:80", "http://app.example"},
		{"https://bücher.example", "https://xn--bcher-kva.example"},
		{"https://b%C3%BCcher.example", "https://xn--bcher-kva.example"},
		{"https://app.example:0443", "https://app.example"},
		{"https://app.example:08443", "https://app.example:8443"},
		{"https://app.example:", "https://app.example"},
		{"https://app.example:8443", "https://app.example:8443"},
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
				t.Fatalf("GATEWAY_ALLOWED_ORIGINS=%s was accepted at start, but a browser of that origin (Origin: %s) is refused: HTTP %d, %v",
					cfg.AllowedOrigins[0], tc.browserOrigin, status, err)
			}
			_ = c.Close()
		})
	}
}
