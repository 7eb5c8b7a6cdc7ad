package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// refusedWith dials with header and checks the upgrade is refused with
// status and the JSON error body of code.
func refusedWith(t *testing.T, url string, header http.Header, status int, code proto.Code) {
	t.Helper()
	wsc, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err == nil {
		_ = wsc.Close()
		t.Fatalf("upgrade succeeded, want HTTP %d %s", status, code)
	}
	if resp == nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct{ Error proto.Error }
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &e) != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("HTTP %d %q, want %d with code %s", resp.StatusCode, body, status, code)
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// signed returns a token with the given header and claims, signed HS256
// with secret whatever alg the header names: for alg-confusion tokens.
func signed(t *testing.T, header, claims map[string]any, secret string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(header) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// TestHostileTokensRefused: against a gateway with an audience configured,
// every forged, misdirected, premature, never-expiring, oversized or
// badly named token is refused at the upgrade
// with HTTP 401 and the unauthorized JSON body, while a good one connects.
func TestHostileTokensRefused(t *testing.T) {
	const aud = "switchboard-test"
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_JWT_AUDIENCE=" + aud}})
	now := time.Now()
	claims := func(mod func(c jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "aud": aud, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hs256 := func(c jwt.MapClaims, secret string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := hs256(claims(nil), testkit.Secret)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil)).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims(nil)).SignedString([]byte(testkit.Secret))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, token string }{
		{"alg none", none},
		{"alg none without a signature", none[:len(none)-1] + "."},
		{"RS256 signed with a key pair", rs256},
		{"RS256 header over an HMAC of the secret", signed(t, map[string]any{"alg": "RS256", "typ": "JWT"}, claims(nil), testkit.Secret)},
		{"NONE header over an HMAC of the secret", signed(t, map[string]any{"alg": "NONE", "typ": "JWT"}, claims(nil), testkit.Secret)},
		{"HS512 with the right secret", hs512},
		{"wrong secret", hs256(claims(nil), "not-the-secret")},
		{"future nbf", hs256(claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), testkit.Secret)},
		{"expired", hs256(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), testkit.Secret)},
		{"missing sub", hs256(claims(func(c jwt.MapClaims) { delete(c, "sub") }), testkit.Secret)},
		{"empty sub", hs256(claims(func(c jwt.MapClaims) { c["sub"] = "" }), testkit.Secret)},
		{"sub not a string", hs256(claims(func(c jwt.MapClaims) { c["sub"] = 42 }), testkit.Secret)},
		{"another audience", hs256(claims(func(c jwt.MapClaims) { c["aud"] = "another-service" }), testkit.Secret)},
		{"no audience", hs256(claims(func(c jwt.MapClaims) { delete(c, "aud") }), testkit.Secret)},
		{"signature stripped", good[:strings.LastIndexByte(good, '.')+1]},
		// A token that never expires, user ids that are no ids, and a token
		// too long to be parsed.
		{"no exp", hs256(claims(func(c jwt.MapClaims) { delete(c, "exp") }), testkit.Secret)},
		{"sub of 257 bytes", hs256(claims(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("a", 257) }), testkit.Secret)},
		{"sub with a newline", hs256(claims(func(c jwt.MapClaims) { c["sub"] = "alice\nbob" }), testkit.Secret)},
		{"sub with a bidi override", hs256(claims(func(c jwt.MapClaims) { c["sub"] = "alice\u202e" }), testkit.Secret)},
		{"token over 4 KiB", hs256(claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 4096) }), testkit.Secret)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedWith(t, s.URL(), bearer(tc.token), http.StatusUnauthorized, proto.CodeUnauthorized)
			refusedWith(t, s.URL()+"?token="+tc.token, nil, http.StatusUnauthorized, proto.CodeUnauthorized)
		})
	}
	// The good token of the same shape connects, in either place.
	if c := testkit.Dial(t, s.URL(), good); c.User != "alice" {
		t.Fatalf("user %q", c.User)
	}
	if c := testkit.Dial(t, s.URL()+"?token="+good, ""); c.User != "alice" {
		t.Fatalf("user %q", c.User)
	}
	if s.Gateway.Exited() {
		t.Fatal("the gateway exited")
	}
}

// TestForeignOriginRefused: GATEWAY_ALLOWED_ORIGINS is checked at the
// upgrade, before the token; by default only the gateway's own host is
// allowed, and in dev mode any origin is. A request without Origin (not a
// browser) is always allowed.
func TestForeignOriginRefused(t *testing.T) {
	origin := func(o string) http.Header { return http.Header{"Origin": {o}} }
	withToken := func(h http.Header, tok string) http.Header {
		h.Set("Authorization", "Bearer "+tok)
		return h
	}
	t.Run("configured", func(t *testing.T) {
		s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_ALLOWED_ORIGINS=https://app.example, https://admin.example"}})
		tok := s.Token("alice")
		refusedWith(t, s.URL(), withToken(origin("https://evil.example"), tok), http.StatusForbidden, proto.CodeForbiddenOrigin)
		refusedWith(t, s.URL(), withToken(origin("https://app.example.evil.example"), tok), http.StatusForbidden, proto.CodeForbiddenOrigin)
		refusedWith(t, s.URL(), withToken(origin("http://"+s.Addr), tok), http.StatusForbidden, proto.CodeForbiddenOrigin)
		refusedWith(t, s.URL(), origin("https://evil.example"), http.StatusForbidden, proto.CodeForbiddenOrigin)
		for _, o := range []string{"https://app.example", "https://admin.example"} {
			wsc, _, err := websocket.DefaultDialer.Dial(s.URL(), withToken(origin(o), tok))
			if err != nil {
				t.Fatalf("origin %s: %v", o, err)
			}
			_ = wsc.Close()
		}
		s.Dial("alice") // no Origin
	})
	t.Run("default", func(t *testing.T) {
		s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
		tok := s.Token("alice")
		refusedWith(t, s.URL(), withToken(origin("https://evil.example"), tok), http.StatusForbidden, proto.CodeForbiddenOrigin)
		wsc, _, err := websocket.DefaultDialer.Dial(s.URL(), withToken(origin("http://"+s.Addr), tok))
		if err != nil {
			t.Fatalf("the gateway's own origin: %v", err)
		}
		_ = wsc.Close()
	})
	t.Run("dev mode", func(t *testing.T) {
		s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1"}})
		wsc, _, err := websocket.DefaultDialer.Dial(s.URL(), withToken(origin("https://anything.example"), s.Token("alice")))
		if err != nil {
			t.Fatalf("dev mode refused a foreign origin: %v", err)
		}
		_ = wsc.Close()
	})
}

// TestExpiredTokenAttack: a socket whose token expires is closed with 4001
// ("token expired") once the token would no longer be accepted (exp plus
// the 30 s leeway), rather than staying open for as long as the client
// likes; the close is logged and counted, and the same user reconnects
// with a fresh token.
func TestExpiredTokenAttack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	// Expired 28 s ago: still within the leeway, so accepted, and due to
	// close within about 2 s.
	tok := signed(t, map[string]any{"alg": "HS256", "typ": "JWT"},
		map[string]any{"sub": "alice", "exp": time.Now().Add(-28 * time.Second).Unix()}, s.Secret)
	c := testkit.Dial(t, s.URL(), tok)
	fresh := s.Dial("bob") // a token of an hour stays open
	opened := time.Now()
	err := c.WaitClosed(10 * time.Second)
	if code := testkit.CloseCode(err); code != proto.CloseTokenExpired {
		t.Fatalf("close after the token expired: %v (code %d), want %d", err, code, proto.CloseTokenExpired)
	}
	if d := time.Since(opened); d > 5*time.Second {
		t.Errorf("closed %s after opening, want about 2 s", d)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Text != proto.ReasonTokenExpired {
		t.Errorf("close reason %q, want %q", ce.Text, proto.ReasonTokenExpired)
	}
	testkit.Eventually(t, wait, "the close is counted as token_expired", func() bool {
		return s.Metrics().Sum("switchboard_gateway_connections_closed_total", "reason", "token_expired") == 1
	})
	if n := testkit.CountLogs(s.Gateway.Logs(), "socket closed", map[string]any{"conn": c.Conn, "close": "token_expired", "code": 4001}); n != 1 {
		t.Errorf("%d \"socket closed\" lines with close token_expired for %s, want 1", n, c.Conn)
	}
	if closed, _ := fresh.Closed(); closed {
		t.Error("a socket with a valid token was closed too")
	}
	s.Dial("alice") // back with a fresh token
}
