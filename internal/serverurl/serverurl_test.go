package serverurl_test

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/serverurl"
)

func TestNATS(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = accepted, else in the error
	}{
		{"nats://127.0.0.1:4222", ""},
		{"nats://a:4222, nats://b:4222", ""},
		{"nats://[::1]:4222,nats://[::1]:4223", ""},
		{"tls://h:4222,nats://h:4223", ""},
		{"ws://h:8080,wss://h/nats", ""},
		{"tls://h:4222,ws://h:8080,wss://h/nats", "mixes ws"},
		{"nats://u:p@a:4222", ""},
		{"nats://tok3n@a:4222", ""},
		{"", "must not be empty"},
		{"  ", "must not be empty"},
		{"http://x:4222", "scheme"},
		{"redis://x:6379", "scheme"},
		{"127.0.0.1:4222", "not a URL"},
		{"localhost:4222", "scheme"},
		{"nats://", "no host"},
		{"nats:///path", "no host"},
		{"nats://a:4222, ::bad", "not a URL"},
		{"nats://a:4222,", "scheme"},
		{"nats://a:4222,http://s3cr3t@b:4222", "scheme"},
		{"nats://u:s3cr3t%zz@a:4222", "not a URL"},
		// A port out of range parses as a URL, and the service would
		// retry "invalid port" for ever instead of refusing to start.
		{"nats://u:s3cr3t@127.0.0.1:99999", "port 99999"},
		{"nats://a:0", "port 0"},
		{"nats://a:4222,tls://b:65536", "port 65536"},
		{"nats://a:65535", ""},
	}
	for _, tt := range tests {
		err := serverurl.NATS(tt.in)
		check(t, "NATS", tt.in, err, tt.want)
	}
}

func TestRedis(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"redis://127.0.0.1:6379/0", ""},
		{"redis://:s3cr3t@h:6379/1", ""},
		{"rediss://u:p@h:6380", ""},
		{"unix:///run/redis.sock", ""},
		{"", "must not be empty"},
		{"mysql://x", "scheme"},
		{"redis://h:6379/notanumber", "database"},
		{"redis://u:s3cr3t@h:6379/x", "database"},
		{"redis://u:s3cr3t%zz@h:6379/0", "not a URL"},
		{"redis://h:6379/0?nope=1", "nope"},
		// A Redis Cluster: a URL with addr parameters.
		{"redis://a:6379?addr=b:6379&addr=c:6379", ""},
		{"rediss://u:s3cr3t@a:6379/0?addr=b:6379", ""},
		{"redis://a:6379?addr=b:6379&read_timeout=200ms", ""},
		{"redis://a:6379/2?addr=b:6379", "database 0 only"},
		{"unix:///run/redis.sock?addr=b:6379", "scheme must be redis or rediss"},
		{"redis://?addr=b:6379", "no host"},
		{"redis://u:s3cr3t@a:6379?addr=b", "addr"},
		{"redis://a:6379?addr=b:6379&db=1", "db"},
		// Ports out of range, on one server or any node of a cluster.
		{"redis://u:s3cr3t@127.0.0.1:99999/0", "port 99999"},
		{"rediss://h:0", "port 0"},
		{"redis://a:6379?addr=b:70000", "port 70000"},
		{"redis://a:65536?addr=b:6379", "port 65536"},
		{"redis://h:65535/0", ""},
	}
	for _, tt := range tests {
		err := serverurl.Redis(tt.in)
		check(t, "Redis", tt.in, err, tt.want)
	}
}

// check fails unless err is nil when want is "", or names want; an error
// must never show the secret of the URL.
func check(t *testing.T, fn, in string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s(%q) = %v, want it accepted", fn, in, err)
	case want != "" && err == nil:
		t.Errorf("%s(%q) accepted, want an error naming %q", fn, in, want)
	case err != nil && !strings.Contains(err.Error(), want):
		t.Errorf("%s(%q) = %v, want it to name %q", fn, in, err, want)
	case err != nil && strings.Contains(err.Error(), "s3cr3t"):
		t.Errorf("%s(%q) = %v: the error shows the secret", fn, in, err)
	}
}
