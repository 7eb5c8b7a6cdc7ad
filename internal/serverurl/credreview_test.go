package serverurl_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/serverurl"
)

// reviewSeps extend secretShapes' separators with the ones 51d5396's
// exceptions let through: a "?client_name=" (an "@" in client_name's
// value is a Redis URL's own), and an "@" then a "/" (a unix URL's
// authority with an "@" in it is a user info, so its path may have one).
var reviewSeps = []string{"?client_name=", "?a=b&client_name=", "@/", "@x/", "@4821/", "@x?client_name=", "#client_name="}

// TestReviewSecretNeverShown is TestSecretNeverShown over reviewSeps.
func TestReviewSecretNeverShown(t *testing.T) {
	for _, p := range secretPlaces {
		for _, head := range []string{"K1LLhead", "4821", ""} {
			for _, sep := range reviewSeps {
				secret, tail := head+sep+"Z9QQtail", "Z9QQtail"
				s := strings.Replace(p.url, "SECRET", secret, 1)
				err := p.check(s)
				red := redact.URL(s)
				for _, m := range []string{head, tail} {
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
}

// TestReviewUnixPasswordAtSlash: a password with an "@" and later a "/"
// ("p@ss/w0rdTail", as generated passwords have), not percent-encoded, in
// a unix URL. docs/operations.md says such a credential is "refused at
// start otherwise, never logged". redact.MisplacedAt takes the "@" after
// the authority (":p@") for the socket path's, since the authority has an
// "@" (a user info): serverurl.Redis accepts it, the socket dialled is
// "/w0rdTail@/run/redis/redis.sock" (its dial error names that path),
// and redact.URL shows "unix://xxxxx@/w0rdTail@/run/...". The authority
// of "unix://:p@ss/..." is ":p@ss": a host after the "@", which no unix
// URL has, but even with none ("p@/w0rdTail") the URL cannot be told from
// a legitimate "unix://:pw@/run/redis@main/redis.sock": only refusing an
// unencoded "@" in the path when there is a user info (a path can take
// %40) keeps the credential out.
func TestReviewUnixPasswordAtSlash(t *testing.T) {
	for _, s := range []string{
		"unix://:p@ss/w0rdTail@/run/redis/redis.sock",
		"unix://default:p@ss/w0rdTail@/run/redis/redis.sock?db=2",
		"unix://:p@/w0rdTail@/run/redis/redis.sock",
	} {
		err := serverurl.Redis(s)
		red := redact.URL(s)
		if err == nil {
			u, _ := url.Parse(s)
			t.Errorf("Redis(%q) accepted: the socket dialled is %q", s, u.Path)
		}
		for _, m := range []string{"w0rdTail", "ss/"} {
			if strings.Contains(red, m) {
				t.Errorf("redact.URL(%q) = %q: shows the password's %q", s, red, m)
			}
		}
	}
}

// TestReviewClientNameInCredential: a user name or password holding
// "?client_name=" (or "?…&client_name="), not percent-encoded: the "@"
// after it is in client_name's value, so nothing is misplaced, the URL is
// accepted, the head is dialled as the host (or port) and redact.URL
// shows it: "rediss://K1LLhead?xxxxx@prod". Contrived (the credential
// must spell client_name=), so of low weight.
func TestReviewClientNameInCredential(t *testing.T) {
	for _, s := range []string{
		"rediss://K1LLhead?client_name=Z9QQtail:pw@redis.internal:6379/0",
		"redis://default:4821?client_name=Z9QQtail@redis.internal:6379/0",
	} {
		err := serverurl.Redis(s)
		red := redact.URL(s)
		if err == nil {
			t.Errorf("Redis(%q) accepted", s)
		}
		for _, m := range []string{"K1LLhead", "4821"} {
			if strings.Contains(red, m) {
				t.Errorf("redact.URL(%q) = %q: shows %q", s, red, m)
			}
		}
	}
}
