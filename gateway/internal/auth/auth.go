// Package auth verifies the JWTs clients present at the WebSocket upgrade and
// turns them into a user id (docs/protocol.md section 2). The user id comes from the
// verified token only.
package auth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew allowed on exp and nbf.
const Leeway = 30 * time.Second

// Error is a refusal with a message for a person; it never holds the token.
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

var (
	ErrNoToken      = &Error{"no token: send Authorization: Bearer <token> or ?token=<token>"}
	ErrExpired      = &Error{"token expired"}
	ErrNotYetValid  = &Error{"token not valid yet (nbf)"}
	ErrBadSignature = &Error{"token signature is invalid"}
	ErrAlgorithm    = &Error{"token must be signed with HS256"}
	ErrNoSubject    = &Error{"token has no sub claim"}
	ErrAudience     = &Error{"token audience is not accepted"}
	ErrMalformed    = &Error{"token is malformed"}
)

// Verifier checks HS256 tokens against one secret. It is safe for
// concurrent use.
type Verifier struct {
	secret   []byte
	audience string
	parser   *jwt.Parser
}

// NewVerifier returns a Verifier for secret; when audience is not empty,
// tokens must carry it in "aud".
func NewVerifier(secret, audience string) *Verifier {
	// The algorithm is pinned in the key function rather than with
	// jwt.WithValidMethods, which reports a wrong alg as a bad signature.
	opts := []jwt.ParserOption{jwt.WithLeeway(Leeway)}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	return &Verifier{secret: []byte(secret), audience: audience, parser: jwt.NewParser(opts...)}
}

// Verify checks token and returns its subject, the user id.
func (v *Verifier) Verify(token string) (string, error) {
	if token == "" {
		return "", ErrNoToken
	}
	var claims jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &claims, v.key)
	switch {
	case err == nil:
	case errors.Is(err, ErrAlgorithm):
		return "", ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "", ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "", ErrBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "", ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenInvalidAudience),
		v.audience != "" && errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "", ErrAudience
	default:
		return "", ErrMalformed
	}
	if claims.Subject == "" {
		return "", ErrNoSubject
	}
	return claims.Subject, nil
}

// key returns the secret for HS256 tokens and refuses every other alg,
// "none" included.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, ErrAlgorithm
	}
	return v.secret, nil
}

// FromRequest returns the token of an upgrade request: the Authorization
// bearer token, or else the "token" query parameter.
func FromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
	}
	return r.URL.Query().Get("token")
}

// Mint returns an HS256 token for user that expires after ttl: never when
// ttl is 0, already when it is negative. It is for development and tests.
func Mint(secret, user string, ttl time.Duration) (string, error) {
	claims := jwt.RegisteredClaims{Subject: user, IssuedAt: jwt.NewNumericDate(time.Now())}
	if ttl != 0 {
		claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
