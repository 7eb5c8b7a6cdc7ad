package testjwt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/internal/testjwt"
)

// parse verifies tok as the gateway does: HS256 only, with secret.
func parse(tok, secret string) (*jwt.RegisteredClaims, error) {
	var c jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuedAt())
	return &c, err
}

func TestMint(t *testing.T) {
	tok, err := testjwt.Mint("s3cret", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(tok, "s3cret")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.Subject != "alice" || c.IssuedAt == nil || c.ExpiresAt == nil {
		t.Fatalf("claims %+v, want sub alice with iat and exp", c)
	}
	if d := c.ExpiresAt.Sub(c.IssuedAt.Time); d != time.Hour {
		t.Fatalf("exp - iat = %v, want 1h", d)
	}
	if _, err := parse(tok, "other"); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("parse with another secret: %v, want an invalid signature", err)
	}
}

func TestMintNoExpiry(t *testing.T) {
	tok, err := testjwt.Mint("s", "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(tok, "s")
	if err != nil || c.Subject != "bob" || c.ExpiresAt != nil {
		t.Fatalf("claims %+v, %v: want sub bob without exp", c, err)
	}
}

func TestMintExpired(t *testing.T) {
	tok, err := testjwt.Mint("s", "carol", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(tok, "s"); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("parse: %v, want expired", err)
	}
}
