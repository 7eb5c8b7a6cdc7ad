// Package auth verifies the JWTs clients present at the WebSocket upgrade and
// turns them into a user id (docs/protocol.md section 2). The user id comes from the
// verified token only.
package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/gateway/internal/query"
	"github.com/switchboard/switchboard/proto"
)

// Leeway is the clock skew allowed on exp and nbf by default (the
// contract's 30 s); WithLeeway sets another.
const Leeway = 30 * time.Second

// MaxTokenLen is the longest token Verify parses: a longer one is refused
// before any of it is decoded. Tokens of a login service are a few hundred
// bytes; 4 KiB leaves room for custom claims.
const MaxTokenLen = 4096

// MaxUserLen is the longest user id (sub) accepted, in bytes
// (proto.MaxUserLen).
const MaxUserLen = proto.MaxUserLen

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
	ErrSubject      = &Error{"token sub must be 1 to 256 bytes of printable UTF-8"}
	ErrNoExpiry     = &Error{"token has no exp claim: tokens must expire"}
	ErrAudience     = &Error{"token audience is not accepted"}
	ErrMalformed    = &Error{"token is malformed"}
	ErrSubjectType  = &Error{"token sub must be a string: a numeric user id must be sent as a JSON string"}
	ErrTooLong      = &Error{"token is longer than 4096 bytes"}
	ErrRevoked      = &Error{"token revoked: get a new token"}
	ErrTokenParam   = &Error{"the token query parameter could not be read: it holds a bad %-escape or a ';'"}
)

// malformed is the refusal of a token that could not be read: ErrMalformed,
// or ErrSubjectType when sub is not a JSON string, the commonest mistake of
// a token issuer (a numeric user id), which "malformed" does not explain.
// Nothing of the token is shown.
func malformed(err error) error {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field == "sub" {
		return ErrSubjectType
	}
	return ErrMalformed
}

// Claims is what a verified token tells the gateway.
type Claims struct {
	User    string    // sub
	Expires time.Time // exp; a socket may stay open until Expires plus the Verifier's Leeway
	// IssuedAt is iat, zero when the token has none: a revocation refuses
	// a token without one.
	IssuedAt time.Time
	// Previous is true when the token was signed with the previous secret
	// (WithPreviousSecret), not the current one: a client the auth service
	// has not yet given a token of the new secret.
	Previous bool
}

// Verifier checks HS256 tokens against the current secret and, during a
// rotation, the previous one. It is safe for concurrent use.
type Verifier struct {
	secret   []byte
	previous []byte // nil: none
	audience string
	leeway   time.Duration
	parser   *jwt.Parser
}

// Option tunes a Verifier.
type Option func(*Verifier)

// WithPreviousSecret has the Verifier also accept tokens signed with
// previous, the secret being rotated out (docs/operations.md, "Rotating
// the JWT secret"). It is tried only for a token whose signature the
// current secret does not verify, so a token of the current secret costs
// one HMAC, as without it. An empty previous, or one equal to the current
// secret, adds nothing.
func WithPreviousSecret(previous string) Option {
	return func(v *Verifier) {
		if previous != "" && previous != string(v.secret) {
			v.previous = []byte(previous)
		}
	}
}

// WithLeeway sets the clock skew allowed on exp and nbf (Leeway by
// default); a negative leeway counts as 0.
func WithLeeway(d time.Duration) Option {
	return func(v *Verifier) { v.leeway = max(d, 0) }
}

// NewVerifier returns a Verifier for secret; when audience is not empty,
// tokens must carry it in "aud".
func NewVerifier(secret, audience string, opts ...Option) *Verifier {
	// The algorithm is pinned in the key function rather than with
	// jwt.WithValidMethods, which reports a wrong alg as a bad signature.
	v := &Verifier{secret: []byte(secret), audience: audience, leeway: Leeway}
	for _, o := range opts {
		o(v)
	}
	popts := []jwt.ParserOption{jwt.WithLeeway(v.leeway)}
	if audience != "" {
		popts = append(popts, jwt.WithAudience(audience))
	}
	v.parser = jwt.NewParser(popts...)
	return v
}

// Leeway returns the clock skew allowed on exp and nbf: a socket lasts
// until its token's exp plus this.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// Verify checks token and returns its claims: the user id (sub), which is
// 1..MaxUserLen bytes of printable UTF-8, and the expiry (exp), which every
// token must have. A token longer than MaxTokenLen is refused unparsed.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrNoToken
	}
	if len(token) > MaxTokenLen {
		return Claims{}, ErrTooLong
	}
	var claims registered
	_, err := v.parser.ParseWithClaims(token, &claims, v.key)
	previous := false
	if v.previous != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		// Not the current secret's signature: perhaps the previous
		// secret's. The claims are checked only once a signature
		// verified, so they are read again, from a token that passed.
		claims, previous = registered{}, true
		_, err = v.parser.ParseWithClaims(token, &claims, v.previousKey)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrAlgorithm):
		return Claims{}, ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return Claims{}, ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return Claims{}, ErrBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return Claims{}, ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenInvalidAudience),
		v.audience != "" && errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return Claims{}, ErrAudience
	default:
		return Claims{}, malformed(err)
	}
	if claims.Subject == "" {
		return Claims{}, ErrNoSubject
	}
	if claims.subReplaced || !ValidUser(claims.Subject) {
		return Claims{}, ErrSubject
	}
	// A token that never expires can never be revoked: a leaked one would
	// be good forever.
	if claims.ExpiresAt == nil {
		return Claims{}, ErrNoExpiry
	}
	c := Claims{User: claims.Subject, Expires: claims.ExpiresAt.Time, Previous: previous}
	if claims.IssuedAt != nil {
		c.IssuedAt = claims.IssuedAt.Time
	}
	return c, nil
}

// ValidUser reports whether user is a user id the gateway accepts
// (proto.ValidUser).
func ValidUser(user string) bool { return proto.ValidUser(user) }

// key returns the secret for HS256 tokens and refuses every other alg,
// "none" included.
func (v *Verifier) key(t *jwt.Token) (any, error) { return hs256(t, v.secret) }

// previousKey is key with the previous secret.
func (v *Verifier) previousKey(t *jwt.Token) (any, error) { return hs256(t, v.previous) }

// hs256 returns secret for an HS256 token and refuses every other alg.
// The token's "kid", if any, is not read: a Verifier has at most two
// secrets, tried in order.
func hs256(t *jwt.Token, secret []byte) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, ErrAlgorithm
	}
	return secret, nil
}

// FromRequest returns the token of an upgrade request: the Authorization
// bearer token, or else the first "token" query parameter ("" when there is
// neither). A token parameter whose value does not decode (a bad
// %-escape, a ';') is ErrTokenParam: url.Values would drop it and the
// client would be told it sent no token.
func FromRequest(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:]), nil
		}
	}
	return tokenParam(r.URL.RawQuery)
}

// tokenParam returns the value of the first "token" parameter of the raw
// query, read as every parameter of the upgrade is (query.First).
func tokenParam(rawQuery string) (string, error) {
	tok, _, ok := query.First(rawQuery, "token")
	if !ok {
		return "", ErrTokenParam
	}
	return tok, nil
}

// ErrNoTTL is Mint's refusal of a token that would never expire.
var ErrNoTTL = errors.New("a token must expire: give it a positive lifetime")

// Mint returns an HS256 token for user that expires after ttl (already,
// when ttl is negative). A ttl of 0, a token that never expires, is
// refused: Verify would refuse it; so is a user Verify would refuse
// (ErrSubject). It is for development and tests.
func Mint(secret, user string, ttl time.Duration) (string, error) {
	if ttl == 0 {
		return "", ErrNoTTL
	}
	if !ValidUser(user) {
		return "", ErrSubject
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
