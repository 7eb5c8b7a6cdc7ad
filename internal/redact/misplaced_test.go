package redact_test

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/redact"
)

// TestURLHidesCredentialOutsideUserInfo shows that redact.URL, which both
// services log every NATS and Redis URL through (handlers-svc's "starting"
// line, the gateway worker's "nats not reachable yet" with its url field),
// masks a credential only where url.Parse puts it in the user info. One
// that was not percent-encoded and holds a "/" or "?" parses as the path
// or the query instead, and is logged as it is: a NATS token such as
// "AbC/s3cr3t" (base64 tokens hold "/" often), a password that starts with
// "/" after a user name, a cluster node's user and password in an addr
// parameter. serverurl.NATS accepts the first two (TestCredentialOutOfPlace
// in package serverurl), so the token is in the log at every start and
// every 30 s while the service dials the wrong host.
func TestURLHidesCredentialOutsideUserInfo(t *testing.T) {
	for _, s := range []string{
		"nats://AbC/s3cr3t@nats.internal:4222",
		"nats://AbC?s3cr3t@nats.internal:4222",
		"nats://gateway:/s3cr3t@nats.internal:4222",
		"nats://h1:4222, nats://AbC/s3cr3t@h2:4222",
		"redis://default:/s3cr3t@redis.internal:6379/0",
		"redis://u:pw@a:6379?addr=u:s3cr3t@b:6379",
	} {
		if got := redact.URL(s); strings.Contains(got, "s3cr3t") {
			t.Errorf("URL(%q) = %q: still shows the credential", s, got)
		}
	}
}
