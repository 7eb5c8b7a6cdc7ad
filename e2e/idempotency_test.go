package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestDispatchAPIIdempotencyKey: handlers-svc serves the dispatch API's
// Idempotency-Key (docs/protocol.md section 7): a call retried with the
// same key is answered the first one's positions and reaches the user's
// devices once, and the replay is counted.
func TestDispatchAPIIdempotencyKey(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	bob := s.Dial("bob")
	post := func(body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+s.HandlersAddr+"/v1/dispatch", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Idempotency-Key", `"order-7"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed")
	}
	body := `{"event":"paid","args":{"order":7},"users":["bob"]}`
	s1, b1, r1 := post(body)
	s2, b2, r2 := post(body)
	if s1 != http.StatusOK || s2 != http.StatusOK || b1 != b2 || r1 != "" || r2 != "true" {
		t.Fatalf("first %d %s (replayed %q), retry %d %s (replayed %q): want the same 200, the retry replayed", s1, b1, r1, s2, b2, r2)
	}
	// The channel is ordered: once a later dispatch has arrived, a second
	// "paid" would have arrived before it.
	if status, b := postDispatch(t, s, apiKey, `{"event":"marker","users":["bob"]}`); status != http.StatusOK {
		t.Fatalf("marker: %d %s", status, b)
	}
	bob.ExpectEvent(wait, "marker")
	n := 0
	for _, f := range bob.Frames() {
		if f.Event == "paid" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob got paid %d times, want once", n)
	}
	if got := testkit.MustReadMetrics(t, "http://"+s.HandlersAddr+"/metrics").Sum("switchboard_handlers_dispatch_api_replays_total"); got != 1 {
		t.Fatalf("switchboard_handlers_dispatch_api_replays_total = %v, want 1", got)
	}
}
