package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/auth"
)

// rawToken returns an HS256 token whose header and payload are exactly
// the JSON texts given (so that key order, case and repeats are kept),
// signed with key.
func rawToken(header, payload, key string) string {
	signing := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// TestClaimNamesMatchExactly: Verify reads the registered claims under
// their exact names. RFC 7519 claim names are case-sensitive, as JSON
// member names are, and the issuer and other verifiers of a token (jose,
// PyJWT, jjwt) read them so; encoding/json's any-case matching, used
// before, took a custom "SUB" for "sub" (a token issued to alice was
// bob's), a custom "Exp" for an expired "exp", a custom "AUD" for the
// audience. It matters when an issuer copies names it does not control
// into its claims (profile attributes, a client's metadata). Each case
// wants the claims the exact names say, or a refusal.
func TestClaimNamesMatchExactly(t *testing.T) {
	const header = `{"alg":"HS256","typ":"JWT"}`
	now := time.Now()
	exp, past := now.Add(time.Hour).Unix(), now.Add(-time.Hour).Unix()
	cases := []struct {
		name, payload string
		want          string // the user, or "" for a refusal
		audience      string
	}{
		{"SUB after sub", fmt.Sprintf(`{"sub":"alice","exp":%d,"SUB":"bob"}`, exp), "alice", ""},
		{"Sub and no sub", fmt.Sprintf(`{"Sub":"bob","exp":%d}`, exp), "", ""},
		{"Exp after an expired exp", fmt.Sprintf(`{"sub":"alice","exp":%d,"Exp":%d}`, past, exp), "", ""},
		{"EXP and no exp", fmt.Sprintf(`{"sub":"alice","EXP":%d}`, exp), "", ""},
		{"NBF after a future nbf", fmt.Sprintf(`{"sub":"alice","exp":%d,"nbf":%d,"NBF":%d}`, exp, exp, past), "", ""},
		{"AUD after another aud", fmt.Sprintf(`{"sub":"alice","exp":%d,"aud":"billing","AUD":"switchboard"}`, exp), "", "switchboard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := auth.NewVerifier(secret, c.audience)
			claims, err := v.Verify(rawToken(header, c.payload, secret))
			switch {
			case c.want == "" && err == nil:
				t.Errorf("payload %s: accepted as user %q (expires %s); the exact claim names say refuse it", c.payload, claims.User, claims.Expires.Format(time.RFC3339))
			case c.want != "" && err != nil:
				t.Errorf("payload %s: refused (%v), want user %q", c.payload, err, c.want)
			case c.want != "" && claims.User != c.want:
				t.Errorf("payload %s: user %q, want %q (the \"sub\" claim)", c.payload, claims.User, c.want)
			}
		})
	}
}

// FuzzVerifyClaims signs arbitrary payloads with the secret, so that the
// fuzzer works past the signature on the claims: a payload Verify
// accepts is a JSON object whose exact "sub" is the user and whose exact
// "exp" (a number, in seconds) is the expiry, whatever other members,
// in whatever case, it holds.
func FuzzVerifyClaims(f *testing.F) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, p := range []string{
		fmt.Sprintf(`{"sub":"alice","exp":%d}`, exp),
		fmt.Sprintf(`{"sub":"alice","exp":%d,"SUB":"bob"}`, exp),
		fmt.Sprintf(`{"Sub":"bob","sub":"alice","exp":%d,"Exp":1}`, exp),
		fmt.Sprintf(`{"sub":"alice","exp":%d,"aud":["x"],"iat":1,"nbf":1,"jti":"j","iss":"i"}`, exp),
		fmt.Sprintf(`{"sub":1,"exp":%d}`, exp),
		`{"sub":"alice","exp":null}`,
		`[]`, `null`, `{"sub":"alice","exp":1e99}`,
	} {
		f.Add(p)
	}
	const header = `{"alg":"HS256","typ":"JWT"}`
	v := auth.NewVerifier(secret, "")
	f.Fuzz(func(t *testing.T, payload string) {
		claims, err := v.Verify(rawToken(header, payload, secret))
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(payload), &m) != nil {
			t.Fatalf("payload %q: not a JSON object, accepted as %+v", payload, claims)
		}
		var sub string
		var expSec float64
		if json.Unmarshal(m["sub"], &sub) != nil || json.Unmarshal(m["exp"], &expSec) != nil {
			t.Fatalf("payload %q: its exact sub or exp does not decode, accepted as %+v", payload, claims)
		}
		if claims.User != sub || claims.Expires.Unix() != int64(expSec) {
			t.Fatalf("payload %q: accepted as user %q expiring %d; its exact sub and exp say %q, %v", payload, claims.User, claims.Expires.Unix(), sub, expSec)
		}
	})
}

// BenchmarkVerify is the cost of checking one token at the upgrade.
func BenchmarkVerify(b *testing.B) {
	tok, err := auth.Mint(secret, "alice", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	v := auth.NewVerifier(secret, "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
