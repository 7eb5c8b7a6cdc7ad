package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testjwt"
	"github.com/switchboard/switchboard/internal/testkit"
)

// logLines parses a process's logs as zap JSON lines, failing on any line
// that is not one.
func logLines(t *testing.T, p *testkit.Proc) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("%s wrote a line that is not JSON: %q", p.Name, sc.Text())
			continue
		}
		out = append(out, m)
	}
	return out
}

// TestConnectionLogsAndNoSecrets: each socket gets one "socket opened" and
// one "socket closed" line with user, conn and worker (and duration and
// close reason on close), and no token, signature or secret appears in any
// log line of either service, at debug level, with tokens sent both ways
// and refused ones too.
func TestConnectionLogsAndNoSecrets(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	header := s.Token("alice")
	query := s.Token("bob")
	forged, err := testjwt.Mint("not-the-secret", "mallory", 0)
	if err != nil {
		t.Fatal(err)
	}

	a := s.Dial("alice")                              // Authorization header
	b := testkit.Dial(t, s.URL()+"?token="+query, "") // query parameter
	for _, u := range []string{s.URL() + "?token=" + forged, s.URL()} {
		h := http.Header{}
		if !strings.Contains(u, "token=") {
			h.Set("Authorization", "Bearer "+forged)
		}
		if _, resp, err := websocket.DefaultDialer.Dial(u, h); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a forged token was not refused with 401 (%v)", err)
		}
	}
	// Counted before the 401 is written, so already visible.
	if got := s.Metrics().Sum("switchboard_gateway_upgrades_refused_total", "reason", "unauthorized"); got != 2 {
		t.Errorf("upgrades_refused_total{reason=unauthorized} = %g, want the 2 forged tokens", got)
	}
	a.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	a.ExpectRef(wait, "r1")
	b.ExpectEvent(wait, "message")
	a.CloseNormally()
	b.Close()

	conns := map[string]string{a.Conn: "alice", b.Conn: "bob"}
	testkit.Eventually(t, wait, "both sockets' close lines are logged", func() bool {
		n := 0
		for _, l := range logLines(t, s.Gateway) {
			if l["msg"] == "socket closed" && conns[str(l["conn"])] != "" {
				n++
			}
		}
		return n == 2
	})
	opened, closed := map[string]int{}, map[string]int{}
	for _, l := range logLines(t, s.Gateway) {
		conn := str(l["conn"])
		user, mine := conns[conn]
		if !mine || (l["msg"] != "socket opened" && l["msg"] != "socket closed") {
			continue
		}
		if l["user"] != user || l["worker"] == nil {
			t.Errorf("%s line without its user or worker: %v", l["msg"], l)
		}
		if l["msg"] == "socket opened" {
			opened[conn]++
			continue
		}
		closed[conn]++
		if _, ok := l["duration"].(float64); !ok || l["close"] == nil || l["code"] == nil {
			t.Errorf("socket closed line without duration, code or close reason: %v", l)
		}
	}
	for conn := range conns {
		if opened[conn] != 1 || closed[conn] != 1 {
			t.Errorf("conn %s: %d opened and %d closed lines, want 1 and 1", conn, opened[conn], closed[conn])
		}
	}

	// Each worker names the NATS server it connected to (with several in
	// NATS_URL, which one), as handlers-svc does.
	servers := map[string]bool{s.NATS.URL(): true}
	for _, n := range s.NATSCluster {
		servers[n.URL()] = true
	}
	for w := range s.Workers {
		n := 0
		for _, l := range logLines(t, s.Gateway) {
			if l["msg"] == "nats connected" && l["worker"] == float64(w) {
				n++
				if !servers[str(l["server"])] {
					t.Errorf("worker %d: \"nats connected\" names server %q, want one of %v", w, l["server"], servers)
				}
			}
		}
		if n != 1 {
			t.Errorf("worker %d logged \"nats connected\" %d times, want once", w, n)
		}
	}

	// Every line names its service and component, so that a log pipeline
	// can filter on it.
	for _, p := range []*testkit.Proc{s.Gateway, s.Handlers} {
		want := map[*testkit.Proc]string{s.Gateway: "gateway", s.Handlers: "handlers-svc"}[p]
		for _, l := range logLines(t, p) {
			if lg := str(l["logger"]); lg != want && !strings.HasPrefix(lg, want+".") {
				t.Errorf("%s line with logger %q, want %s or %s.<component>: %v", p.Name, lg, want, want, l)
			}
		}
	}

	secrets := map[string]string{"the JWT secret": testkit.Secret}
	for name, tok := range map[string]string{"header token": header, "query token": query, "forged token": forged} {
		secrets[name] = tok
		secrets[name+" signature"] = tok[strings.LastIndex(tok, ".")+1:]
	}
	for _, p := range []*testkit.Proc{s.Gateway, s.Handlers} {
		logs := p.Logs()
		for name, secret := range secrets {
			if strings.Contains(logs, secret) {
				t.Errorf("%s logged the %s", p.Name, name)
			}
		}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
