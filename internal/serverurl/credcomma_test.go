package serverurl_test

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/serverurl"
)

// TestNATSCredentialWithCommaNotQuoted: c77c506 refuses a credential
// that was not percent-encoded and ends the authority early ("/", "?"),
// without quoting it. A "," does the same in NATS_URL, which both
// serverurl.NATS and redact.URL split into servers first: the tail of
// the credential becomes a "server" of its own, "3tpart@nats", which
// parses as a relative path (no scheme, no user info), so the error at
// start quotes it ("the scheme must be ...") and redact.URL returns it
// unmasked. A user:password whose password holds the comma leaks the
// password's tail the same way through redact.URL.
//
// Expected: no part of a credential in the error or in redact.URL.
func TestNATSCredentialWithCommaNotQuoted(t *testing.T) {
	for _, c := range []struct{ url, secret string }{
		{"nats://s3cr,3tpart@nats", "3tpart"},
		{"nats://user:pa,sswordtail@nats", "sswordtail"},
	} {
		if err := serverurl.NATS(c.url); err == nil {
			t.Errorf("NATS(%q) accepted", c.url)
		} else if strings.Contains(err.Error(), c.secret) {
			t.Errorf("NATS(%q) = %q: quotes the credential's tail %q", c.url, err, c.secret)
		}
		if r := redact.URL(c.url); strings.Contains(r, c.secret) {
			t.Errorf("redact.URL(%q) = %q: shows the credential's tail %q", c.url, r, c.secret)
		}
	}
}

// TestUnixSocketPathWithAt: c77c506's misplaced-credential check takes
// any "@" after the authority's end for user info that was not
// percent-encoded, "server URLs have no other use for an @ there"
// (redact.MisplacedAt). A unix:// REDIS_URL has an empty authority and
// its whole socket path after it, and a path may hold an "@" (a
// per-instance directory such as /run/redis@main/); go-redis dials it and
// selects the database the db parameter names, but serverurl.Redis
// refuses it at start, asking to percent-encode a credential it does not
// have, and redact.URL turns it into "unix://xxxxx@main/redis.sock?db=2".
//
// Expected: accepted, as go-redis reads it.
func TestUnixSocketPathWithAt(t *testing.T) {
	s := "unix:///run/redis@main/redis.sock?db=2"
	opt, err := redis.ParseURL(s)
	if err != nil || opt.Addr != "/run/redis@main/redis.sock" || opt.DB != 2 {
		t.Fatalf("go-redis reads %q as %v, %v", s, opt, err)
	}
	if err := serverurl.Redis(s); err != nil {
		t.Errorf("Redis(%q) = %v; go-redis dials socket %s, database %d", s, err, opt.Addr, opt.DB)
	}
}
