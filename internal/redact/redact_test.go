package redact_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/redact"
)

func TestURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no credentials", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"redis with a database", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"empty", "", ""},
		{"bare token", "nats://s3cr3t@host:4222", "nats://xxxxx@host:4222"},
		{"user and password", "nats://us3r:pa55@host", "nats://xxxxx@host"},
		{"password only", "redis://:s3cr3t@host:6379/0", "redis://xxxxx@host:6379/0"},
		{"escaped password", "rediss://u:p%40ss%3Aw0rd@host:6380/1", "rediss://xxxxx@host:6380/1"},
		{"list", "nats://a:s3cr3t@h1:4222, nats://tok3n@h2:4222", "nats://xxxxx@h1:4222,nats://xxxxx@h2:4222"},
		{"list without credentials", "nats://h1:4222,tls://h2:4222", "nats://h1:4222,tls://h2:4222"},
		{"query secret", "redis://h:6379/0?password=s3cr3t&db=1", "redis://h:6379/0?password=xxxxx&db=1"},
		{"query token, any case", "wss://h/nats?Auth_Token=s3cr3t&x=1", "wss://h/nats?Auth_Token=xxxxx&x=1"},
		{"query key without a value", "nats://h:4222?apikey", "nats://h:4222?apikey"},
		{"query name that does not unescape", "nats://h:4222?%zz=s3cr3t", "nats://h:4222?xxxxx"},
		{"fragment", "nats://h:4222#s3cr3t", "nats://h:4222#xxxxx"},
		{"unparsable", "nats://u:s3cr3t%zz@h:4222", redact.Invalid},
		{"no scheme", "user:s3cr3t@h:4222", redact.Invalid},
		{"one bad part of a list", "nats://h1:4222,::s3cr3t", redact.Invalid}, // where a credential with a comma began cannot be told
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redact.URL(tt.in)
			if got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, secret := range []string{"s3cr3t", "us3r", "pa55", "tok3n", "p%40ss", "a:"} {
				if strings.Contains(got, secret) {
					t.Errorf("URL(%q) = %q still shows %q", tt.in, got, secret)
				}
			}
		})
	}
}

func FuzzURL(f *testing.F) {
	for _, s := range []string{"nats://u:p@h:4222", "nats://t@h,tls://h2", "redis://:p@h/0?password=x", "%", "a:b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := redact.URL(s)
		// The list keeps its length, but is Invalid whole when a part has
		// no scheme (the rest of a credential with a comma, maybe).
		if got != redact.Invalid && strings.Count(got, ",") != strings.Count(s, ",") {
			t.Fatalf("URL(%q) = %q: the list has another length", s, got)
		}
		// What is left carries no credential: every part is Invalid or a
		// URL whose user info, if any, is the mask alone.
		for _, p := range strings.Split(got, ",") {
			if p == redact.Invalid {
				continue
			}
			u, err := url.Parse(p)
			if err != nil {
				t.Fatalf("URL(%q) = %q: part %q does not parse: %v", s, got, p, err)
			}
			if _, hasPass := u.User.Password(); u.User != nil && (u.User.Username() != redact.Mask || hasPass) {
				t.Fatalf("URL(%q) = %q: part %q keeps user info", s, got, p)
			}
		}
	})
}
