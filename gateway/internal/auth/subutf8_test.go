package auth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/auth"
)

// TestSubNotUTF8IsRefused: a token whose sub is not UTF-8 (raw
// bytes of another encoding, or a JSON escape of a lone surrogate) must
// be refused: docs/security.md says sub is 1..256 bytes of printable
// UTF-8. encoding/json turns each bad byte and each lone surrogate into
// U+FFFD, so distinct subs an issuer signed for distinct users ("Zo\xe9",
// "Zo\xeb": Latin-1 Zoé and Zoë; "\ud800" and "\udbff") become one
// user id on the gateway: whoever holds either token acts as the other
// and reads the other's stream and live events.
func TestSubNotUTF8IsRefused(t *testing.T) {
	const header = `{"alg":"HS256","typ":"JWT"}`
	exp := time.Now().Add(time.Hour).Unix()
	v := auth.NewVerifier(secret, "")
	for _, pair := range [][2]string{
		{"Zo\xe9", "Zo\xeb"}, // raw bytes, not UTF-8
		{`\ud800`, `\udbff`}, // lone surrogates, as JSON escapes
		{"u\xff", `u\udfff`}, // one of each
	} {
		users := make([]string, 0, 2)
		for _, sub := range pair {
			payload := fmt.Sprintf(`{"sub":"%s","exp":%d}`, sub, exp)
			claims, err := v.Verify(rawToken(header, payload, secret))
			if err == nil {
				t.Errorf("payload %q: accepted as user %q; a sub that is not UTF-8 must be refused", payload, claims.User)
				users = append(users, claims.User)
			}
		}
		if len(users) == 2 && users[0] == users[1] {
			t.Errorf("subs %q and %q, distinct in their tokens, are both user %q: each token acts as the other's user", pair[0], pair[1], users[0])
		}
	}
}

// TestSubEscapesDecoded: what JSON allows in a string stays a user: an
// escaped surrogate pair, other escapes, and U+FFFD written by the issuer.
func TestSubEscapesDecoded(t *testing.T) {
	const header = `{"alg":"HS256","typ":"JWT"}`
	exp := time.Now().Add(time.Hour).Unix()
	v := auth.NewVerifier(secret, "")
	for sub, want := range map[string]string{
		`\ud83d\ude00`:   "\U0001F600",
		`a\\ud800`:       `a\ud800`,
		`\u00e9\"x\/`:    `é"x/`,
		"\uFFFD":         "\uFFFD",
		`\ufffd`:         "\uFFFD",
		`Zo\u00eb\u00e9`: "Zoëé",
	} {
		payload := fmt.Sprintf(`{"sub":"%s","exp":%d}`, sub, exp)
		claims, err := v.Verify(rawToken(header, payload, secret))
		if err != nil || claims.User != want {
			t.Errorf("payload %q: user %q, %v; want %q", payload, claims.User, err, want)
		}
	}
}
