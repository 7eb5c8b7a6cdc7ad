package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testjwt"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestSecretRotation follows the rotation procedure of docs/operations.md
// on real binaries. The JWT secret: a gateway of 2 workers given the new
// secret and the old one as GATEWAY_JWT_PREVIOUS_SECRET_FILE (each worker
// reads the file) lets in tokens of both on every worker, counts those of
// the old one, logs that a previous secret is set and neither secret; a
// gateway restarted without the previous secret refuses the old tokens
// and takes the new. The dispatch API key likewise: handlers-svc with
// HANDLERS_API_KEY_PREVIOUS takes both keys and counts the old one's
// uses; restarted without it, refuses the old key.
func TestSecretRotation(t *testing.T) {
	const (
		oldSecret = testkit.Secret
		newSecret = "e2e-rotated-secret-of-at-least-32-bytes"
		oldKey    = apiKey
		newKey    = "e2e-rotated-dispatch-key-0123456789"
	)
	file := filepath.Join(t.TempDir(), "previous-secret")
	if err := os.WriteFile(file, []byte(oldSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2,
		Env:         []string{"GATEWAY_JWT_SECRET=" + newSecret, "GATEWAY_JWT_PREVIOUS_SECRET_FILE=" + file},
		HandlersEnv: []string{"HANDLERS_API_KEY=" + newKey, "HANDLERS_API_KEY_PREVIOUS=" + oldKey}})
	s.Secret = newSecret
	token := func(secret, user string) string {
		tok, err := testjwt.Mint(secret, user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("gateway accepts both", func(t *testing.T) {
		// A token of each secret on each worker: both workers read the
		// file.
		dialed := map[string]int{}
		for _, secret := range []string{oldSecret, newSecret} {
			seen := map[int]bool{}
			for i := 0; len(seen) < s.Workers; i++ {
				if i == 200 {
					t.Fatalf("tokens of one secret reached workers %v only in 200 tries", seen)
				}
				c := testkit.Dial(t, s.URL(), token(secret, "alice"))
				seen[c.Worker] = true
				dialed[secret]++
				c.Close()
			}
		}
		// A socket let in by the old secret works as any: a message from
		// it reaches a socket let in by the new one, and back.
		a := testkit.Dial(t, s.URL(), token(oldSecret, "alice"))
		dialed[oldSecret]++
		b := testkit.Dial(t, s.URL(), token(newSecret, "bob"))
		a.Send("sendMessage", map[string]any{"to": "bob", "text": "from the old secret"}, "r1")
		if f := a.ExpectRef(wait, "r1"); f.Event != proto.EventAck {
			t.Fatalf("alice (old secret): %+v, want an ack", f)
		}
		b.ExpectEvent(wait, "message")
		b.Send("sendMessage", map[string]any{"to": "alice", "text": "from the new secret"}, "r2")
		if f := b.ExpectRef(wait, "r2"); f.Event != proto.EventAck {
			t.Fatalf("bob (new secret): %+v, want an ack", f)
		}
		a.ExpectEvent(wait, "message")

		refusedWith(t, s.URL(), bearer(token("a-third-secret-of-at-least-32-bytes", "eve")), http.StatusUnauthorized, proto.CodeUnauthorized)
		// Counted at the upgrade, before the answer: no wait needed.
		if got := s.Metrics().Sum("switchboard_gateway_auth_previous_secret_total"); got != float64(dialed[oldSecret]) {
			t.Errorf("switchboard_gateway_auth_previous_secret_total = %g, want %d (the old secret's sockets only)", got, dialed[oldSecret])
		}
		if n := testkit.CountLogs(s.Gateway.Logs(), "previous JWT secret set", map[string]any{"previous_secret_from_file": true}); n != 1 {
			t.Errorf("the supervisor logged the previous secret's presence %d times, want 1", n)
		}
		noSecretsLogged(t, []string{oldSecret, newSecret}, s.Gateway)
	})

	t.Run("gateway without the previous secret", func(t *testing.T) {
		g := s.AddGatewayWith("GATEWAY_JWT_PREVIOUS_SECRET_FILE=")
		for range 2 * g.Workers {
			refusedWith(t, g.URL(), bearer(token(oldSecret, "alice")), http.StatusUnauthorized, proto.CodeUnauthorized)
		}
		if c := testkit.Dial(t, g.URL(), token(newSecret, "alice")); c.User != "alice" {
			t.Fatalf("new secret: user %q", c.User)
		}
		if n := testkit.CountLogs(g.Gateway.Logs(), "previous JWT secret set", nil); n != 0 {
			t.Errorf("a gateway without a previous secret logged one %d times", n)
		}
	})

	ok := `{"event":"rotated","users":["carol"]}`
	t.Run("dispatch API accepts both keys", func(t *testing.T) {
		carol := s.Dial("carol")
		for _, key := range []string{oldKey, newKey} {
			if status, body := postDispatch(t, s, key, ok); status != http.StatusOK {
				t.Fatalf("key %q: %d %s, want 200", key, status, body)
			}
			carol.ExpectEvent(wait, "rotated")
		}
		if status, body := postDispatch(t, s, "a-third-dispatch-key-0123456789", ok); status != http.StatusUnauthorized ||
			!strings.Contains(body, `"code":"unauthorized"`) {
			t.Fatalf("a third key: %d %s, want 401 unauthorized", status, body)
		}
		if got, _ := s.HandlersMetrics().Get("switchboard_handlers_dispatch_api_previous_key_total"); got != 1 {
			t.Errorf("switchboard_handlers_dispatch_api_previous_key_total = %g, want 1", got)
		}
		if n := testkit.CountLogs(s.Handlers.Logs(), "starting", map[string]any{"dispatch_api_previous_key": true}); n != 1 {
			t.Errorf("handlers-svc logged the previous key's presence %d times, want 1", n)
		}
		noSecretsLogged(t, []string{oldKey, newKey}, s.Handlers)
	})

	t.Run("dispatch API without the previous key", func(t *testing.T) {
		h := s.AddHandlersWith("HANDLERS_API_KEY_PREVIOUS=")
		if status, body := postDispatch(t, h, oldKey, ok); status != http.StatusUnauthorized {
			t.Fatalf("old key: %d %s, want 401", status, body)
		}
		if status, body := postDispatch(t, h, newKey, ok); status != http.StatusOK {
			t.Fatalf("new key: %d %s, want 200", status, body)
		}
	})
}
