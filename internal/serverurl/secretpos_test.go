package serverurl_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/serverurl"
)

// secretShapes are credentials with the characters that end an authority
// or split a list, not percent-encoded, between two markers that must
// never show: head is what url.Parse takes for the host (or a port, when
// digits) and tail what it puts in the path, query or fragment.
func secretShapes() (shapes []struct{ secret, head, tail string }) {
	for _, head := range []string{"K1LLhead", "4821", ""} {
		for _, sep := range []string{"/", "?", "#", "@", ",", "&", "=", ":", "?a=", "?a=b&", "/a=", "#a=", "?=", "?a&b="} {
			tail := "Z9QQtail"
			shapes = append(shapes, struct{ secret, head, tail string }{head + sep + tail, head, tail})
		}
	}
	return shapes
}

// secretPlaces are URLs with SECRET where a credential goes, and which
// check takes them.
var secretPlaces = []struct {
	url   string
	check func(string) error
}{
	{"nats://SECRET@nats.internal:4222", serverurl.NATS},
	{"nats://gateway:SECRET@nats.internal:4222", serverurl.NATS},
	{"nats://SECRET:pw@nats.internal:4222", serverurl.NATS},
	{"tls://SECRET@nats.internal:4222", serverurl.NATS},
	{"wss://gateway:SECRET@nats.internal/nats", serverurl.NATS},
	{"nats://n1:4222, nats://SECRET@n2:4222", serverurl.NATS},
	{"redis://default:SECRET@redis.internal:6379/0", serverurl.Redis},
	{"redis://:SECRET@redis.internal:6379/0", serverurl.Redis},
	{"rediss://SECRET:pw@redis.internal:6379/0?client_name=app%40prod", serverurl.Redis},
	{"unix://:SECRET@/run/redis/redis.sock?db=2", serverurl.Redis},
	{"unix://default:SECRET@/run/redis%40main/redis.sock", serverurl.Redis},
	{"redis://default:SECRET@r1:6379?addr=r2:6379&addr=r3:6379", serverurl.Redis},
}

// TestSecretNeverShown: FuzzURL-style, a credential that was not
// percent-encoded, of every shape (secretShapes) in every place
// (secretPlaces): serverurl's error (what a service prints at start) and
// redact.URL (what both log, handlers-svc on every start) show no part of
// it. a330fe6 made an "@" in any query parameter's value not misplaced
// (client_name=app@prod), so a credential with a "?" and then a "=" before
// its end is no longer refused (before a330fe6 every "@" after the
// authority's end was), and url.Parse takes its head for the host: the
// NATS token "K1LLhead?a=Z9QQtail" is accepted, dials host K1LLhead, and
// redact.URL logs "nats://K1LLhead?xxxxx@nats.internal:4222". Likewise a
// unix:// URL, whose path a330fe6 no longer checks for an "@", shows a
// password whose head is a port ("4821/...") or empty ("/...") whole.
//
// Now an "@" after the authority is taken for a credential's in a NATS
// URL anywhere, and in a Redis URL but in client_name's value and a unix
// socket's path (redact.MisplacedAt).
//
// Expected: for every one, no marker in the error nor in redact.URL.
func TestSecretNeverShown(t *testing.T) {
	for _, p := range secretPlaces {
		for _, sh := range secretShapes() {
			s := strings.Replace(p.url, "SECRET", sh.secret, 1)
			err := p.check(s)
			red := redact.URL(s)
			for _, m := range []string{sh.head, sh.tail} {
				if len(m) < 4 {
					continue
				}
				if err != nil && strings.Contains(err.Error(), m) {
					t.Errorf("check(%q) = %q: shows %q", s, err, m)
				}
				if strings.Contains(red, m) {
					t.Errorf("redact.URL(%q) = %q: shows %q (check: %v)", s, red, m, err)
				}
			}
		}
	}
}

// pctEncode percent-encodes every byte of s but letters and digits.
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestEncodedSecretTakenAndMasked: the same credentials percent-encoded,
// as docs/operations.md asks, are accepted and never shown.
func TestEncodedSecretTakenAndMasked(t *testing.T) {
	for _, p := range secretPlaces {
		for _, sh := range secretShapes() {
			s := strings.Replace(p.url, "SECRET", pctEncode(sh.secret), 1)
			if err := p.check(s); err != nil {
				t.Errorf("check(%q) = %v: a percent-encoded credential refused", s, err)
			}
			red := redact.URL(s)
			for _, m := range []string{sh.head, sh.tail} {
				if len(m) >= 4 && strings.Contains(red, m) {
					t.Errorf("redact.URL(%q) = %q: shows %q", s, red, m)
				}
			}
		}
	}
}
