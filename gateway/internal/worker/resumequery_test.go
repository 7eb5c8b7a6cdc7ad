package worker

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestUnreadableResumeIsNotRecovered: a resume or bresume parameter that
// net/url cannot decode (a bad percent escape, a ';' it refuses as a
// separator) is still a resume the client asked for, of a malformed
// position: connected says recovered false (docs/protocol.md section 6),
// as for any other malformed position, rather than leaving recovered out
// as if the client had not asked.
func TestUnreadableResumeIsNotRecovered(t *testing.T) {
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), testkit.StartRedis(t).URL()
	r := startWorker(t, cfg, 0)
	url := "ws://" + r.addr + "/socket"
	tok := token(t, "alice", time.Hour)

	for _, tt := range []struct {
		name, query string
		asked       bool // connected must carry recovered (false)
	}{
		{"no resume", "", false},
		{"empty resume", "?resume=", true},
		{"empty bresume", "?bresume=", true},
		{"bare resume", "?resume", true},
		{"other parameter unreadable", "?x=%ZZ", false},
		{"malformed position", "?resume=garbage", true},
		{"bad escape in resume", "?resume=%ZZ", true},
		{"bad escape in bresume", "?bresume=a.1-%Z1", true},
		{"semicolon in resume", "?resume=a.1-1;bresume=x", true},
		{"semicolon after bresume", "?x=1&bresume=a.1-1;", true},
		{"escaped name", "?%72esume=%ZZ", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testkit.Dial(t, url+tt.query, tok)
			defer c.Close()
			got := c.Connected.Recovered
			switch {
			case tt.asked && got == nil:
				t.Fatalf("connected %+v has no recovered, after a resume of %q", c.Connected, tt.query)
			case tt.asked && *got:
				t.Fatalf("connected says recovered true, after a resume of %q", tt.query)
			case !tt.asked && got != nil:
				t.Fatalf("connected says recovered %v, after no resume (%q)", *got, tt.query)
			}
		})
	}
}

// TestFirstUnreadableResumeIsNotRecovered: a client whose first resume
// parameter does not decode asked for a resume, whatever later pairs of
// the same name say: connected carries recovered false, as for the single
// unreadable resume above (socketParams reads the first of each).
func TestFirstUnreadableResumeIsNotRecovered(t *testing.T) {
	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = testkit.StartNATS(t).URL(), testkit.StartRedis(t).URL()
	r := startWorker(t, cfg, 0)
	tok := token(t, "alice", time.Hour)
	for _, query := range []string{"?resume=%ZZ&resume=", "?bresume=%&bresume"} {
		t.Run(query, func(t *testing.T) {
			c := testkit.Dial(t, "ws://"+r.addr+"/socket"+query, tok)
			defer c.Close()
			if got := c.Connected.Recovered; got == nil || *got {
				t.Fatalf("connected %+v after a first resume that does not decode (%q); want recovered false", c.Connected, query)
			}
		})
	}
}
