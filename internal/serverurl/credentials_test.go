package serverurl_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/serverurl"
)

// TestNATSListNatsGoTakes shows that serverurl.NATS accepts lists that
// nats.go refuses: nats.Connect returns "mixing of websocket and non
// websocket URLs is not allowed" at once, RetryOnFailedConnect or not, for
// a list with both ws(s):// and nats:// or tls:// servers. The services
// check the URL so that one that cannot work is refused at start; with
// this one handlers-svc binds HANDLERS_ADDR and then fails with exit 1
// ("handlers-svc failed"), and each gateway worker exits as it starts, so
// the supervisor restarts it for ever (crash loop, never ready). The
// existing TestNATS even lists "tls://h:4222,ws://h:8080,wss://h/nats" as
// accepted. Each URL here is checked against nats.go itself: whatever
// serverurl.NATS accepts, nats.Connect must take.
func TestNATSListNatsGoTakes(t *testing.T) {
	for _, s := range []string{
		"nats://127.0.0.1:1,ws://127.0.0.1:2",
		"tls://127.0.0.1:1,wss://127.0.0.1:2/nats",
		"ws://127.0.0.1:1, nats://127.0.0.1:2",
	} {
		if serverurl.NATS(s) != nil {
			continue // refused at start: fine
		}
		nc, err := nats.Connect(s, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
		if err != nil {
			t.Errorf("NATS(%q) accepted it, but nats.Connect refuses it: %v", s, err)
			continue
		}
		nc.Close()
	}
}

// TestCredentialOutOfPlace shows what a credential that was not
// percent-encoded does when its first "/" or "?" ends the URL's authority
// early: the rest, credential included, parses as the path or the query.
// A NATS token with a "/" (about 40% of 32-character base64 tokens) then
// passes serverurl.NATS with the token's first part as the host: the
// service dials that name for ever (nats.go ignores the path), and logs
// the URL with the token in it (handlers-svc's "starting" line, the
// gateway's "nats not reachable yet" every 30 s: redact.URL masks user
// info only). A Redis password that starts with "/" is refused, but the
// refusal quotes go-redis's "invalid URL path" with the password in it; so
// does a cluster URL whose addr names a user and password. The docs ask
// for percent-encoding, and promise that neither service logs a
// credential.
func TestCredentialOutOfPlace(t *testing.T) {
	for _, s := range []string{
		"nats://AbC/s3cr3t@nats.internal:4222",
		"nats://AbC?s3cr3t@nats.internal:4222",
		"nats://gateway:/s3cr3t@nats.internal:4222",
	} {
		err := serverurl.NATS(s)
		if err == nil {
			u, _ := url.Parse(s)
			t.Errorf("NATS(%q) accepted: the service would dial host %q and log the URL, token and all", s, u.Hostname())
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("NATS(%q) = %v: the refusal shows the secret", s, err)
		}
	}
	for _, s := range []string{
		"redis://default:/s3cr3t@redis.internal:6379/0",
		"redis://:/s3cr3t@redis.internal:6379/0",
		"redis://u:pw@a:6379?addr=u:s3cr3t@b:6379",
	} {
		err := serverurl.Redis(s)
		if err == nil {
			t.Errorf("Redis(%q) accepted", s)
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Redis(%q) = %v: the refusal shows the secret", s, err)
		}
	}
}

// TestRedisDatabaseUnambiguous shows two REDIS_URLs that name a database
// and get another without a word: go-redis sends SELECT only for a
// database above 0, so "/-1" runs on database 0; and a db parameter beside
// the path wins over it ("/0?db=3" is database 3). Each service takes the
// URL the same way, but the operator's typo becomes a different setting
// (and a gateway and a handlers-svc that read different databases share
// pub/sub, which is global, but not the recovery streams, presence or
// revocations).
func TestRedisDatabaseUnambiguous(t *testing.T) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/-1",
		"redis://127.0.0.1:6379/0?db=3",
		"redis://127.0.0.1:6379/1?db=-5",
	} {
		if err := serverurl.Redis(s); err == nil {
			t.Errorf("Redis(%q) accepted; want a refusal naming the database", s)
		}
	}
}
