// Package testjwt mints the HS256 tokens the tests and the load generator
// present to the gateway: the claims a backend's login service would issue
// (sub, iat, exp), signed with the gateway's shared secret. It stands apart
// from the gateway's own auth package so that the modules outside the
// gateway need none of its internals.
package testjwt

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Mint returns a token for user signed with secret, expiring after ttl
// (ttl 0: no exp claim).
func Mint(secret, user string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.RegisteredClaims{Subject: user, IssuedAt: jwt.NewNumericDate(now)}
	if ttl != 0 {
		claims.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
