package auth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/auth"
)

// TestMalformedClaimsRefusedAlike: a token is refused with the same
// message every time it is presented. A payload with a numeric sub and
// another claim of the wrong type was refused as "sub must be a string"
// or as "malformed" depending on which of the two claims the decoder met
// first, in a Go map's random order; the claims are now read in a fixed
// order, sub first.
func TestMalformedClaimsRefusedAlike(t *testing.T) {
	const header = `{"alg":"HS256","typ":"JWT"}`
	exp := time.Now().Add(time.Hour).Unix()
	v := auth.NewVerifier(secret, "")
	for _, payload := range []string{
		fmt.Sprintf(`{"sub":42,"iss":7,"exp":%d}`, exp),
		fmt.Sprintf(`{"iss":7,"sub":42,"exp":%d}`, exp),
		`{"sub":42,"exp":"soon"}`,
	} {
		tok := rawToken(header, payload, secret)
		_, first := v.Verify(tok)
		for range 200 {
			if _, err := v.Verify(tok); err != first {
				t.Errorf("payload %s: refused with %q, and then with %q", payload, first, err)
				break
			}
		}
	}
}
