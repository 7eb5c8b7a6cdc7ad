package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/proto"
)

// TestSocketRefusals runs the worker's routes on a real server and checks
// every refused upgrade: status, content type and the JSON body shape.
func TestSocketRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	w := New(cfg, 0, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	good := token(t, "alice", time.Hour)
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	// Mint refuses a user Verify would refuse; this token is made by hand.
	noSub, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		query   string
		header  http.Header
		status  int
		code    proto.Code
		message string // "" = any
	}{
		{name: "no token", status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrNoToken.Message},
		{name: "garbage token", header: http.Header{"Authorization": {"Bearer nope"}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrMalformed.Message},
		{name: "wrong secret", header: http.Header{"Authorization": {"Bearer " + mustMint(t, "other", "alice")}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrBadSignature.Message},
		{name: "expired", query: "token=" + expired,
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrExpired.Message},
		// A token parameter that does not decode is not "no token".
		{name: "token parameter with a bad escape", query: "token=%ZZ",
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrTokenParam.Message},
		{name: "bad escape in another parameter", query: "x=%ZZ&token=" + expired,
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrExpired.Message},
		{name: "no sub", header: http.Header{"Authorization": {"Bearer " + noSub}},
			status: http.StatusUnauthorized, code: proto.CodeUnauthorized, message: auth.ErrNoSubject.Message},
		{name: "forbidden origin with a good token",
			header: http.Header{"Authorization": {"Bearer " + good}, "Origin": {"https://evil.example"}},
			status: http.StatusForbidden, code: proto.CodeForbiddenOrigin},
		{name: "forbidden origin without a token", header: http.Header{"Origin": {"https://evil.example"}},
			status: http.StatusForbidden, code: proto.CodeForbiddenOrigin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket"
			if tt.query != "" {
				url += "?" + tt.query
			}
			wsc, resp, err := websocket.DefaultDialer.Dial(url, tt.header)
			if err == nil {
				_ = wsc.Close()
				t.Fatal("upgrade succeeded, want it refused")
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			body, _ := io.ReadAll(resp.Body)
			var got map[string]map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			e := got["error"]
			if len(got) != 1 || len(e) != 2 || e["code"] != string(tt.code) {
				t.Fatalf("body = %s, want {\"error\":{\"code\":%q,\"message\":...}}", body, tt.code)
			}
			msg, _ := e["message"].(string)
			if msg == "" || (tt.message != "" && msg != tt.message) {
				t.Errorf("message = %q, want %q", msg, tt.message)
			}
			if strings.Contains(msg, good) || strings.Contains(msg, expired) {
				t.Errorf("message %q holds the token", msg)
			}
		})
	}
}

func mustMint(t *testing.T, key, user string) string {
	t.Helper()
	tok, err := auth.Mint(key, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHealthz(t *testing.T) {
	w := New(testConfig(), 3, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Worker int    `json:"worker"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body.Status != "ok" || body.Worker != 3 {
		t.Errorf("/healthz = %d %+v, want 200 ok for worker 3", resp.StatusCode, body)
	}
}

// TestDevToken: /dev/token mints a working token in dev mode only.
func TestDevToken(t *testing.T) {
	for _, dev := range []bool{false, true} {
		cfg := testConfig()
		cfg.Dev = dev
		srv := httptest.NewServer(New(cfg, 0, zap.NewNop()).routes())
		resp, err := http.Get(srv.URL + "/dev/token?user=carol")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Token, User string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		srv.Close()
		if !dev {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("/dev/token outside dev mode: %d, want 404", resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK || body.User != "carol" {
			t.Fatalf("/dev/token: %d %+v", resp.StatusCode, body)
		}
		claims, err := auth.NewVerifier(cfg.JWTSecret, "").Verify(body.Token)
		if err != nil || claims.User != "carol" {
			t.Fatalf("minted token verifies as %+v, %v", claims, err)
		}
	}
}

// TestDevTokenRefusesBadUsers: a user id every upgrade would refuse gets a
// 400 that says why, not a token that cannot be used.
func TestDevTokenRefusesBadUsers(t *testing.T) {
	cfg := testConfig()
	cfg.Dev = true
	h := New(cfg, 0, zap.NewNop()).routes()
	for _, user := range []string{strings.Repeat("x", 257), "a\nb", "a\u202eb"} {
		r := httptest.NewRequest(http.MethodGet, "/dev/token?user="+url.QueryEscape(user), nil)
		r.RemoteAddr = "127.0.0.1:5000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "printable UTF-8") ||
			strings.Contains(rec.Body.String(), "token\":") {
			t.Errorf("/dev/token?user=%q: %d %s, want 400 naming the rule", user, rec.Code, rec.Body)
		}
	}
}

// TestDevTokenFromAnotherMachine: /dev/token answers clients on loopback
// and on GATEWAY_DEV_TOKEN_NETS only; to any other client it does not
// exist (404, as outside dev mode), so a dev gateway another machine can
// reach does not hand that machine tokens for any user.
func TestDevTokenFromAnotherMachine(t *testing.T) {
	cfg := testConfig()
	cfg.Dev = true
	cfg.DevTokenNets = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
	h := New(cfg, 0, zap.NewNop()).routes()
	for remote, want := range map[string]int{
		"127.0.0.1:5000":        http.StatusOK,
		"127.9.9.9:5000":        http.StatusOK,
		"[::1]:5000":            http.StatusOK,
		"[::ffff:127.0.0.1]:80": http.StatusOK,
		"172.17.0.1:5000":       http.StatusOK, // in GATEWAY_DEV_TOKEN_NETS
		"192.168.1.20:5000":     http.StatusNotFound,
		"10.0.0.1:5000":         http.StatusNotFound,
		"[2001:db8::1]:5000":    http.StatusNotFound,
		"not an address":        http.StatusNotFound,
	} {
		r := httptest.NewRequest(http.MethodGet, "/dev/token?user=mallory", nil)
		r.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != want {
			t.Errorf("/dev/token from %s: %d, want %d", remote, rec.Code, want)
		}
		if want != http.StatusOK && strings.Contains(rec.Body.String(), "token") {
			t.Errorf("/dev/token from %s answered %q", remote, rec.Body)
		}
	}
}

// TestProbesAreNotCounted: a refused upgrade counts once by its reason; the
// plain GET the JavaScript client sends after it (its probe) gets the same
// answer and counts nothing, whatever the answer.
func TestProbesAreNotCounted(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	w := New(cfg, 0, zap.NewNop())
	srv := httptest.NewServer(w.routes())
	defer srv.Close()
	refusedTotal := func(reason string) string {
		rec := httptest.NewRecorder()
		w.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		prefix := `switchboard_gateway_upgrades_refused_total{reason="` + reason + `"} `
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("no %s... line in /metrics", prefix)
		return ""
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket"
	get := func(query string, header http.Header) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/socket?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Refused upgrades count.
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL+"?token=nope", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade with a bad token: %v, want 401", err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a refused origin: %v, want 403", err)
	}
	// Probes answer alike and count nothing.
	good := token(t, "alice", time.Hour)
	probes := []struct {
		name   string
		query  string
		header http.Header
		status int
	}{
		{"bad token", "token=nope", http.Header{}, http.StatusUnauthorized},
		{"refused origin", "token=" + good, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		// Not started (no NATS, no Redis): the upgrade would get 503 too.
		{"good token", "token=" + good, http.Header{}, http.StatusServiceUnavailable},
	}
	for _, p := range probes {
		if got := get(p.query, p.header); got != p.status {
			t.Errorf("probe with a %s: %d, want %d", p.name, got, p.status)
		}
	}
	want := map[string]string{"unauthorized": "1", "forbidden_origin": "1", "bad_upgrade": "0", "unavailable": "0"}
	for reason, n := range want {
		if got := refusedTotal(reason); got != n {
			t.Errorf("upgrades_refused_total{reason=%q} = %s, want %s", reason, got, n)
		}
	}
}
