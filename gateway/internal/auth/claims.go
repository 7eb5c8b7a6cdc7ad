package auth

import (
	"encoding/json"
	"errors"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/proto"
)

// registered is the registered claims of a token, each read under its
// exact name. RFC 7519's claim names are case-sensitive, as JSON's member
// names are; encoding/json's any-case matching would take a custom "SUB",
// "Exp" or "AUD" claim for "sub", "exp" or "aud" (and a later one over
// the real claim), so that the gateway read another user, expiry or
// audience than the issuer and every other verifier of the token.
type registered struct {
	jwt.RegisteredClaims
	// subReplaced is set when sub held bytes that are not UTF-8 or an
	// escaped lone surrogate: encoding/json decodes each as U+FFFD, so
	// distinct subs of the issuer ("Zo\xe9", "Zo\xeb") would be one user.
	subReplaced bool
}

// UnmarshalJSON reads the payload's registered claims by their exact
// names; other members are ignored. Of a name given twice, the last
// counts, as with encoding/json. The claims are read in one fixed order,
// sub first, so that a token with several bad claims is always refused
// for the same one.
func (c *registered) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	r := &c.RegisteredClaims
	for _, claim := range [...]struct {
		name string
		dst  any
	}{
		{"sub", &r.Subject}, {"exp", &r.ExpiresAt}, {"nbf", &r.NotBefore}, {"iat", &r.IssuedAt},
		{"aud", &r.Audience}, {"iss", &r.Issuer}, {"jti", &r.ID},
	} {
		raw, ok := m[claim.name]
		if !ok {
			continue
		}
		if claim.name == "sub" {
			c.subReplaced = proto.JSONStringReplaced(raw)
		}
		if err := json.Unmarshal(raw, claim.dst); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				typ.Field = claim.name // which claim, for the refusal's message (malformed)
			}
			return err
		}
	}
	return nil
}
