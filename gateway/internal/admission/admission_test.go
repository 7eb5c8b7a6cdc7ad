package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/auth"
	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	secret = "admission-test-secret"
	wait   = 5 * time.Second
)

type nopRecorder struct{}

func (nopRecorder) UpgradeRefused(string) {}
func (nopRecorder) PreviousSecret()       {}

// refusedCounts is a Recorder that counts refusals by reason.
type refusedCounts struct {
	mu       sync.Mutex
	n        map[string]int
	previous int // PreviousSecret calls
}

func (r *refusedCounts) PreviousSecret() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.previous++
}

func (r *refusedCounts) UpgradeRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[reason]++
}

func (r *refusedCounts) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		dev     bool
		origin  string // "" = no Origin header
		want    bool
	}{
		{name: "no Origin header", origin: "", want: true},
		{name: "no Origin header with a list", allowed: []string{"https://app.example"}, origin: "", want: true},
		{name: "same host", origin: "http://gw.example:7999", want: true},
		{name: "same host over https", origin: "https://gw.example:7999", want: true},
		{name: "same host other case", origin: "http://GW.example:7999", want: true},
		{name: "same name other port", origin: "http://gw.example:8000", want: false},
		{name: "other origin", origin: "https://evil.example", want: false},
		{name: "subdomain of the host", origin: "http://x.gw.example:7999", want: false},
		{name: "null origin", origin: "null", want: false},
		{name: "unparsable origin", origin: "http://%zz", want: false},
		{name: "dev mode allows any", dev: true, origin: "https://evil.example", want: true},
		{name: "list match", allowed: []string{"https://app.example", "https://admin.example"}, origin: "https://admin.example", want: true},
		{name: "list match other case", allowed: []string{"https://app.example"}, origin: "https://APP.example", want: true},
		{name: "list miss", allowed: []string{"https://app.example"}, origin: "https://evil.example", want: false},
		{name: "list miss on scheme", allowed: []string{"https://app.example"}, origin: "http://app.example", want: false},
		{name: "list miss on port", allowed: []string{"https://app.example"}, origin: "https://app.example:8443", want: false},
		{name: "list replaces own host", allowed: []string{"https://app.example"}, origin: "http://gw.example:7999", want: false},
		{name: "list applies in dev mode too", allowed: []string{"https://app.example"}, dev: true, origin: "https://evil.example", want: false},
		{name: "star", allowed: []string{"*"}, origin: "https://anything.example", want: true},
		{name: "star among others", allowed: []string{"https://app.example", "*"}, origin: "https://anything.example", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(Config{AllowedOrigins: tt.allowed, Dev: tt.dev}, hub.New[*sock](), nopRecorder{}, zap.NewNop())
			r := httptest.NewRequest("GET", "http://gw.example:7999/socket", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if got := a.checkOrigin(r); got != tt.want {
				t.Errorf("checkOrigin(Origin %q, Host %s) = %v, want %v", tt.origin, r.Host, got, tt.want)
			}
		})
	}
}

// sock stands for an admitted socket in the hub.
type sock struct{ id, user string }

func (s *sock) ID() string                          { return s.id }
func (s *sock) User() string                        { return s.user }
func (s *sock) Offer(bool, *proto.Pos, []byte) bool { return true }
func (s *sock) Skip(bool, *proto.Pos)               {}

// door is a real HTTP server whose every request goes through Admit, with
// a hub for the places; an admitted socket's connection is closed at once,
// and the socket is registered in the hub until the test has it leave.
type door struct {
	a        *Admission
	places   *hub.Hub[*sock]
	rec      *refusedCounts
	srv      *httptest.Server
	admitted chan *sock // admitted, not yet left
}

func startDoor(t *testing.T, cfg Config) *door {
	t.Helper()
	cfg.JWTSecret = secret
	d := &door{places: hub.New[*sock](), rec: &refusedCounts{n: map[string]int{}}, admitted: make(chan *sock, 16)}
	d.a = New(cfg, d.places, d.rec, zap.NewNop())
	var n atomic.Int64
	d.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		up, user, ok := d.a.Admit(rw, r)
		if !ok {
			return
		}
		_ = up.WS.Close()
		s := &sock{id: fmt.Sprint(n.Add(1)), user: user}
		d.places.AddReserved(s)
		d.admitted <- s
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// dial upgrades a socket of user and returns the HTTP status of the answer
// (101 when admitted) and the error code of a refusal's body.
func (d *door) dial(t *testing.T, user string) (int, proto.Code) {
	t.Helper()
	return d.dialSigned(t, secret, user)
}

// dialSigned is dial with a token signed with key.
func (d *door) dialSigned(t *testing.T, key, user string) (int, proto.Code) {
	t.Helper()
	tok, err := auth.Mint(key, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cl, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.srv.URL, "http")+"/?token="+tok, nil)
	if err == nil {
		_ = cl.Close()
		return resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Error proto.Error }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code
}

// leave has the socket admitted longest ago leave.
func (d *door) leave(t *testing.T) {
	t.Helper()
	select {
	case s := <-d.admitted:
		d.places.Remove(s)
		d.a.Leave()
	case <-time.After(wait):
		t.Fatal("no admitted socket to leave")
	}
}

// TestDoor follows an Admission through its life: closed until Open, then
// admitting up to the caps, a place freed when a socket leaves, closed by
// Close, and Wait returning once every socket admitted has left.
func TestDoor(t *testing.T) {
	d := startDoor(t, Config{MaxConnsPerUser: 2})
	if status, code := d.dial(t, "alice"); status != http.StatusServiceUnavailable || code != proto.CodeUnavailable {
		t.Fatalf("before Open: %d %s, want 503 unavailable", status, code)
	}
	d.a.Open()
	for i := range 2 {
		if status, code := d.dial(t, "alice"); status != http.StatusSwitchingProtocols {
			t.Fatalf("alice's socket %d: %d %s, want admitted", i, status, code)
		}
	}
	if status, code := d.dial(t, "alice"); status != http.StatusTooManyRequests || code != proto.CodeTooManyConnections {
		t.Fatalf("alice's third socket: %d %s, want 429 %s", status, code, proto.CodeTooManyConnections)
	}
	d.leave(t)
	if status, code := d.dial(t, "alice"); status != http.StatusSwitchingProtocols {
		t.Fatalf("alice's socket after one left: %d %s, want admitted", status, code)
	}

	d.a.Close()
	if !d.a.Closed() {
		t.Error("Closed() = false after Close")
	}
	if status, code := d.dial(t, "bob"); status != http.StatusServiceUnavailable || code != proto.CodeUnavailable {
		t.Fatalf("after Close: %d %s, want 503 unavailable", status, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.a.Wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait with two sockets inside = %v, want DeadlineExceeded", err)
	}
	d.leave(t)
	d.leave(t)
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.a.Wait(ctx); err != nil {
		t.Fatalf("Wait after every socket left = %v", err)
	}
	for reason, want := range map[string]int{metrics.RefusedUnavailable: 2, metrics.RefusedUserCap: 1} {
		if got := d.rec.get(reason); got != want {
			t.Errorf("refusals for %s = %d, want %d", reason, got, want)
		}
	}
}

// TestWorkerCap: past GATEWAY_MAX_CONNS sockets of anyone, an upgrade is
// refused with 503 unavailable, counted as worker_full.
func TestWorkerCap(t *testing.T) {
	d := startDoor(t, Config{MaxConns: 2, MaxConnsPerUser: 5})
	d.a.Open()
	for _, u := range []string{"alice", "bob"} {
		if status, code := d.dial(t, u); status != http.StatusSwitchingProtocols {
			t.Fatalf("%s: %d %s, want admitted", u, status, code)
		}
	}
	if status, code := d.dial(t, "carol"); status != http.StatusServiceUnavailable || code != proto.CodeUnavailable {
		t.Fatalf("a third socket: %d %s, want 503 unavailable", status, code)
	}
	if got := d.rec.get(metrics.RefusedWorkerFull); got != 1 {
		t.Errorf("worker_full refusals = %d, want 1", got)
	}
	d.leave(t)
	if status, code := d.dial(t, "carol"); status != http.StatusSwitchingProtocols {
		t.Fatalf("carol after a socket left: %d %s, want admitted", status, code)
	}
	d.leave(t)
	d.leave(t)
}

// TestFailedUpgradeFreesItsPlace: an upgrade gorilla refuses after the
// caps let it through (here, data sent before the handshake ended) gets no
// answer but the closed connection, is counted once as bad_upgrade, and
// gives its place back.
func TestFailedUpgradeFreesItsPlace(t *testing.T) {
	d := startDoor(t, Config{MaxConnsPerUser: 1})
	d.a.Open()
	tok, err := auth.Mint(secret, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", strings.TrimPrefix(d.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte("GET /?token=" + tok + " HTTP/1.1\r\nHost: gw\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\ntoo early"))
	_ = raw.SetReadDeadline(time.Now().Add(wait))
	var buf [64]byte
	if n, err := raw.Read(buf[:]); n != 0 || err == nil {
		t.Fatalf("upgrade with data before the handshake ended: read %q, %v; want the connection closed unanswered", buf[:n], err)
	}
	// Counted after its place was given back.
	testkit.Eventually(t, wait, "the failed upgrade is counted", func() bool { return d.rec.get(metrics.RefusedUpgrade) > 0 })
	if status, code := d.dial(t, "alice"); status != http.StatusSwitchingProtocols {
		t.Fatalf("alice after her failed upgrade: %d %s, want admitted: the place was not given back", status, code)
	}
	d.leave(t)
	if got := d.rec.get(metrics.RefusedUpgrade); got != 1 {
		t.Errorf("bad_upgrade refusals = %d, want 1", got)
	}
}

// TestRevokedToken: a token Config.Revoked says is revoked is refused with
// 401 unauthorized, counted as token_revoked and not as unauthorized, and
// Revoked is asked with the token's user and iat; another user is let in.
func TestRevokedToken(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	var iats []time.Time
	d := startDoor(t, Config{Revoked: func(user string, iat time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		asked, iats = append(asked, user), append(iats, iat)
		return user == "alice"
	}})
	d.a.Open()
	before := time.Now().Truncate(time.Second)
	if status, code := d.dial(t, "alice"); status != http.StatusUnauthorized || code != proto.CodeUnauthorized {
		t.Fatalf("alice's revoked token: %d %s, want 401 unauthorized", status, code)
	}
	if d.rec.get(metrics.RefusedRevoked) != 1 || d.rec.get(metrics.RefusedUnauthorized) != 0 {
		t.Errorf("counted token_revoked %d, unauthorized %d; want 1, 0", d.rec.get(metrics.RefusedRevoked), d.rec.get(metrics.RefusedUnauthorized))
	}
	if status, _ := d.dial(t, "bob"); status != http.StatusSwitchingProtocols {
		t.Fatalf("bob: %d, want 101", status)
	}
	mu.Lock()
	gotUsers, gotIATs := slices.Clone(asked), slices.Clone(iats)
	mu.Unlock()
	if len(gotUsers) != 2 || gotUsers[0] != "alice" || gotUsers[1] != "bob" {
		t.Fatalf("Revoked asked for %q, want alice, bob", gotUsers)
	}
	if gotIATs[0].Before(before) || gotIATs[0].After(time.Now()) {
		t.Errorf("Revoked got iat %v, want the token's (Mint's now, %v or after)", gotIATs[0], before)
	}
	// The message of the 401 says why.
	tok, _ := auth.Mint(secret, "alice", time.Hour)
	rec := httptest.NewRecorder()
	d.a.Admit(rec, httptest.NewRequest(http.MethodGet, "/socket?token="+tok, nil))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "token revoked") {
		t.Errorf("plain GET: %d %s, want 401 with token revoked", rec.Code, rec.Body)
	}
}

// TestRevokedRefusalLogsTheUser: the refusal of a revoked token, whose
// user the verified token names, is logged with that user, so an operator
// can tell why that user cannot connect; it was logged with the reason
// and the address only. A token that does not verify names no user.
func TestRevokedRefusalLogsTheUser(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	a := New(Config{JWTSecret: secret, Revoked: func(user string, _ time.Time) bool { return user == "alice" }},
		hub.New[*sock](), nopRecorder{}, zap.New(core))
	a.Open()
	tok, err := auth.Mint(secret, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{tok, "not-a-token"} {
		a.Admit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/socket?token="+tok, nil))
	}
	entries := logs.FilterMessage("upgrade refused").All()
	if len(entries) != 2 {
		t.Fatalf("%d \"upgrade refused\" lines, want 2", len(entries))
	}
	if got := entries[0].ContextMap(); got["user"] != "alice" || !strings.Contains(fmt.Sprint(got["reason"]), "token revoked") {
		t.Errorf("the revoked token's refusal is logged with %v, want user alice and reason token revoked", got)
	}
	if got := entries[1].ContextMap(); got["user"] != nil {
		t.Errorf("a token that does not verify is logged with user %v, want none", got["user"])
	}
}

// TestPreviousSecret: with a previous secret configured, a token of either
// secret is admitted, and only the previous secret's are counted for the
// operator (PreviousSecret); they are revoked as any other, and counted
// still, as a token of the previous secret in use. A third secret's token
// is refused.
func TestPreviousSecret(t *testing.T) {
	const previous = "admission-test-previous-secret"
	d := startDoor(t, Config{JWTPreviousSecret: previous, Revoked: func(user string, _ time.Time) bool { return user == "mallory" }})
	d.a.Open()
	previousCount := func() int {
		d.rec.mu.Lock()
		defer d.rec.mu.Unlock()
		return d.rec.previous
	}
	if status, code := d.dialSigned(t, secret, "alice"); status != http.StatusSwitchingProtocols || previousCount() != 0 {
		t.Fatalf("current secret: %d %s, counted %d; want admitted, 0", status, code, previousCount())
	}
	if status, code := d.dialSigned(t, previous, "bob"); status != http.StatusSwitchingProtocols || previousCount() != 1 {
		t.Fatalf("previous secret: %d %s, counted %d; want admitted, 1", status, code, previousCount())
	}
	if status, code := d.dialSigned(t, previous, "mallory"); status != http.StatusUnauthorized || code != proto.CodeUnauthorized ||
		d.rec.get(metrics.RefusedRevoked) != 1 || previousCount() != 2 {
		t.Fatalf("previous secret, revoked: %d %s, revoked %d, counted %d; want 401, 1, 2", status, code, d.rec.get(metrics.RefusedRevoked), previousCount())
	}
	if status, code := d.dialSigned(t, "another-secret", "eve"); status != http.StatusUnauthorized || code != proto.CodeUnauthorized ||
		d.rec.get(metrics.RefusedUnauthorized) != 1 || previousCount() != 2 {
		t.Fatalf("a third secret: %d %s, counted %d; want 401 unauthorized, 2", status, code, previousCount())
	}
	// A plain GET (the client's probe) is not counted, as it is not
	// counted among the refusals.
	tok, _ := auth.Mint(previous, "bob", time.Hour)
	d.a.Admit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/socket?token="+tok, nil))
	if previousCount() != 2 {
		t.Errorf("a plain GET was counted: %d, want 2", previousCount())
	}
	d.leave(t)
	d.leave(t)
}
