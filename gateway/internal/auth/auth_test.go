package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/gateway/internal/auth"
)

const secret = "test-secret-of-at-least-32-bytes!"

// sign returns an HS256 token over claims, signed with key.
func sign(t *testing.T, key string, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// craft builds a token by hand from a header and claims, with an HS256
// signature computed with key whatever the header says; withSig false leaves
// the signature segment empty.
func craft(t *testing.T, header, claims map[string]any, key string, withSig bool) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	if !withSig {
		return signing + "."
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func at(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }

func TestVerify(t *testing.T) {
	good := map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	tests := []struct {
		name     string
		audience string // configured on the Verifier
		token    func(t *testing.T) string
		wantUser string
		wantErr  *auth.Error
	}{
		{name: "good", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},
		{name: "expired within leeway", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(-10 * time.Second)})
		}, wantUser: "alice"},
		{name: "nbf in the future within leeway", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", NotBefore: at(10 * time.Second), ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},
		{name: "nbf in the past", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", NotBefore: at(-time.Minute), ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},
		{name: "right audience", audience: "switchboard", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"switchboard"}, ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},
		{name: "one of several audiences", audience: "switchboard", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"other", "switchboard"}, ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},
		{name: "audience ignored when none configured", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"anything"}, ExpiresAt: at(time.Hour)})
		}, wantUser: "alice"},

		{name: "no token", token: func(*testing.T) string { return "" }, wantErr: auth.ErrNoToken},
		{name: "alg none", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "none", "typ": "JWT"}, good, "", false)
		}, wantErr: auth.ErrAlgorithm},
		{name: "alg none with a signature", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "none", "typ": "JWT"}, good, secret, true)
		}, wantErr: auth.ErrAlgorithm},
		{name: "RS256 header with an HS256 signature", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "RS256", "typ": "JWT"}, good, secret, true)
		}, wantErr: auth.ErrAlgorithm},
		{name: "HS512", token: func(t *testing.T) string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{Subject: "alice"}).SignedString([]byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, wantErr: auth.ErrAlgorithm},
		{name: "unknown alg", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "XX999", "typ": "JWT"}, good, secret, true)
		}, wantErr: auth.ErrAlgorithm},
		{name: "no alg", token: func(t *testing.T) string {
			return craft(t, map[string]any{"typ": "JWT"}, good, secret, true)
		}, wantErr: auth.ErrAlgorithm},
		{name: "wrong secret", token: func(t *testing.T) string {
			return sign(t, "another-secret", jwt.RegisteredClaims{Subject: "alice"})
		}, wantErr: auth.ErrBadSignature},
		{name: "tampered claims", token: func(t *testing.T) string {
			tok := sign(t, secret, jwt.RegisteredClaims{Subject: "alice"})
			parts := strings.Split(tok, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory"}`))
			return strings.Join(parts, ".")
		}, wantErr: auth.ErrBadSignature},
		{name: "expired beyond leeway", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(-auth.Leeway - 30*time.Second)})
		}, wantErr: auth.ErrExpired},
		{name: "nbf beyond leeway", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", NotBefore: at(auth.Leeway + 30*time.Second)})
		}, wantErr: auth.ErrNotYetValid},
		{name: "missing sub", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrNoSubject},
		{name: "empty sub", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": ""}, secret, true)
		}, wantErr: auth.ErrNoSubject},
		{name: "wrong audience", audience: "switchboard", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"other"}})
		}, wantErr: auth.ErrAudience},
		{name: "no audience when one is configured", audience: "switchboard", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice"})
		}, wantErr: auth.ErrAudience},
		{name: "one segment", token: func(*testing.T) string { return "abc" }, wantErr: auth.ErrMalformed},
		{name: "two segments", token: func(*testing.T) string { return "abc.def" }, wantErr: auth.ErrMalformed},
		{name: "four segments", token: func(*testing.T) string { return "a.b.c.d" }, wantErr: auth.ErrMalformed},
		{name: "dots only", token: func(*testing.T) string { return ".." }, wantErr: auth.ErrMalformed},
		{name: "header not base64", token: func(*testing.T) string { return "!!!.e30.sig" }, wantErr: auth.ErrMalformed},
		{name: "header not JSON", token: func(*testing.T) string {
			return base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".e30.c2ln"
		}, wantErr: auth.ErrMalformed},
		{name: "claims not JSON", token: func(*testing.T) string {
			return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." +
				base64.RawURLEncoding.EncodeToString([]byte("[")) + ".c2ln"
		}, wantErr: auth.ErrMalformed},
		{name: "sub not a string", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": 42}, secret, true)
		}, wantErr: auth.ErrSubjectType},

		// Tokens that never expire, and user ids that are no ids.
		{name: "no exp", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "bob"})
		}, wantErr: auth.ErrNoExpiry},
		{name: "exp null", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": "bob", "exp": nil}, secret, true)
		}, wantErr: auth.ErrNoExpiry},
		{name: "sub of 256 bytes", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: strings.Repeat("é", 128), ExpiresAt: at(time.Hour)})
		}, wantUser: strings.Repeat("é", 128)},
		{name: "sub of 257 bytes", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: strings.Repeat("a", 257), ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrSubject},
		{name: "sub with a newline", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice\n{\"level\":\"error\"}", ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrSubject},
		{name: "sub with NUL", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "ali\x00ce", ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrSubject},
		{name: "sub with a C1 control", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "ali\u0085ce", ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrSubject},
		{name: "sub with a bidi override", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice\u202egnp.exe", ExpiresAt: at(time.Hour)})
		}, wantErr: auth.ErrSubject},
		{name: "sub with spaces and symbols", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "user 42 / é ✓", ExpiresAt: at(time.Hour)})
		}, wantUser: "user 42 / é ✓"},
		{name: "token over 4 KiB", token: func(t *testing.T) string {
			return sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(time.Hour), ID: strings.Repeat("x", auth.MaxTokenLen)})
		}, wantErr: auth.ErrTooLong},
		{name: "4 KiB of garbage", token: func(*testing.T) string { return strings.Repeat("a.", auth.MaxTokenLen) }, wantErr: auth.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewVerifier(secret, tt.audience)
			tok := tt.token(t)
			claims, err := v.Verify(tok)
			if tt.wantErr == nil {
				if err != nil || claims.User != tt.wantUser || claims.Expires.IsZero() {
					t.Fatalf("Verify = %+v, %v; want user %q with an expiry, nil", claims, err, tt.wantUser)
				}
				return
			}
			if claims != (auth.Claims{}) {
				t.Errorf("Verify returned claims %+v with an error", claims)
			}
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Verify error = %v (%T), want *auth.Error %q", err, err, tt.wantErr.Message)
			}
			if ae != tt.wantErr {
				t.Errorf("Verify error = %q, want %q", ae.Message, tt.wantErr.Message)
			}
			if tok != "" && strings.Contains(ae.Message, tok) {
				t.Errorf("error message %q holds the token", ae.Message)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name    string
		header  string // Authorization, "" for none
		query   string // raw query, "" for none
		want    string
		wantErr error
	}{
		{name: "bearer header", header: "Bearer abc.def.ghi", want: "abc.def.ghi"},
		{name: "lower-case bearer", header: "bearer abc", want: "abc"},
		{name: "upper-case bearer", header: "BEARER abc", want: "abc"},
		{name: "mixed-case bearer", header: "BeArEr abc", want: "abc"},
		{name: "spaces around the token", header: "Bearer   abc  ", want: "abc"},
		{name: "query parameter", query: "token=q.r.s", want: "q.r.s"},
		{name: "escaped query parameter", query: "token=a%2Bb+c", want: "a+b c"},
		{name: "first of two", query: "token=one&token=two", want: "one"},
		{name: "among others", query: "v=2&token=q.r.s&x", want: "q.r.s"},
		{name: "escaped key", query: "t%6Fken=q.r.s", want: "q.r.s"},
		{name: "header wins over query", header: "Bearer fromheader", query: "token=fromquery", want: "fromheader"},
		{name: "header wins over a bad query", header: "Bearer fromheader", query: "token=%ZZ", want: "fromheader"},
		{name: "other scheme falls back to query", header: "Basic dXNlcjpwYXNz", query: "token=fromquery", want: "fromquery"},
		{name: "other scheme, no query", header: "Basic dXNlcjpwYXNz"},
		{name: "bearer without a token", header: "Bearer"},
		{name: "nothing"},
		{name: "empty token parameter", query: "token="},
		// A token parameter that does not decode is said to be unreadable,
		// not taken for no token at all.
		{name: "bad escape", query: "token=%ZZ", wantErr: auth.ErrTokenParam},
		{name: "truncated escape", query: "token=abc%4", wantErr: auth.ErrTokenParam},
		{name: "semicolon", query: "token=abc;x=1", wantErr: auth.ErrTokenParam},
		{name: "bad escape after a good one", query: "token=good&token=%ZZ", want: "good"},
		// Another parameter that does not decode is none of its business.
		{name: "bad escape elsewhere", query: "x=%ZZ&token=q.r.s", want: "q.r.s"},
		{name: "bad escape in another key", query: "%ZZ=1&token=q.r.s", want: "q.r.s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/socket", nil)
			r.URL.RawQuery = tt.query
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got, err := auth.FromRequest(r)
			if got != tt.want || err != tt.wantErr {
				t.Errorf("FromRequest = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// FuzzFromRequest reads arbitrary queries: where url.ParseQuery reads the
// whole query without error, FromRequest reads the same token parameter;
// where ParseQuery drops a token pair, FromRequest says it is unreadable
// rather than absent, unless an earlier token pair was read.
func FuzzFromRequest(f *testing.F) {
	for _, q := range []string{"", "token=a.b.c", "token=%ZZ", "x=%ZZ&token=a", "token=a;b", "t%6Fken=a&token=b", "token", "&&token=&"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest("GET", "/socket", nil)
		r.URL.RawQuery = query
		got, err := auth.FromRequest(r)
		if err != nil && err != auth.ErrTokenParam {
			t.Fatalf("FromRequest(%q) error %v, want nil or ErrTokenParam", query, err)
		}
		vals, perr := url.ParseQuery(query)
		if perr == nil && (got != vals.Get("token") || err != nil) {
			t.Fatalf("FromRequest(%q) = %q, %v; url.ParseQuery reads %q", query, got, err, vals.Get("token"))
		}
		if err == nil && got != vals.Get("token") {
			t.Fatalf("FromRequest(%q) = %q; url.ParseQuery reads %q", query, got, vals.Get("token"))
		}
	})
}

// TestVerifyFromRequest runs a real token through both ways of presenting it.
func TestVerifyFromRequest(t *testing.T) {
	tok, err := auth.Mint(secret, "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(secret, "")
	for _, r := range []struct{ header, query string }{
		{header: "bearer " + tok},
		{header: "Bearer " + tok},
		{query: tok},
	} {
		req := httptest.NewRequest("GET", "/socket", nil)
		if r.header != "" {
			req.Header.Set("Authorization", r.header)
		}
		if r.query != "" {
			req.URL.RawQuery = url.Values{"token": {r.query}}.Encode()
		}
		tok, err := auth.FromRequest(req)
		if err != nil {
			t.Fatalf("header %q query %q: FromRequest: %v", r.header, r.query, err)
		}
		claims, err := v.Verify(tok)
		if err != nil || claims.User != "alice" {
			t.Errorf("header %q query %q: Verify = %+v, %v; want alice", r.header, r.query, claims, err)
		}
	}
	if _, err := v.Verify(""); err != auth.ErrNoToken {
		t.Errorf("no token: Verify error = %v, want ErrNoToken", err)
	}
}

func TestMintRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		ttl     time.Duration
		wantExp bool
	}{
		{"with ttl", "alice", time.Hour, true},
		{"odd user id", "user/é 1", time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := auth.Mint(secret, tt.user, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := auth.NewVerifier(secret, "").Verify(tok)
			if err != nil || got.User != tt.user {
				t.Fatalf("Verify(Mint) = %+v, %v; want %q", got, err, tt.user)
			}
			if _, err := auth.NewVerifier("other", "").Verify(tok); err != auth.ErrBadSignature {
				t.Errorf("Verify with another secret = %v, want ErrBadSignature", err)
			}
			var claims jwt.RegisteredClaims
			parsed, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil })
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Method.Alg() != "HS256" {
				t.Errorf("alg = %s, want HS256", parsed.Method.Alg())
			}
			if (claims.ExpiresAt != nil) != tt.wantExp {
				t.Errorf("exp = %v, want present: %v", claims.ExpiresAt, tt.wantExp)
			}
			if tt.wantExp {
				if d := time.Until(claims.ExpiresAt.Time); d > tt.ttl || d < tt.ttl-time.Minute {
					t.Errorf("exp in %s, want about %s", d, tt.ttl)
				}
			}
		})
	}
}

// TestMintNeverExpiringAttack: Mint will not make a token that never
// expires, which could never be revoked.
func TestMintNeverExpiringAttack(t *testing.T) {
	if tok, err := auth.Mint(secret, "alice", 0); err == nil {
		t.Fatalf("Mint with ttl 0 = %q, want an error", tok)
	}
}

// TestMintRefusesWhatVerifyRefuses: a user id Verify would refuse (too
// long, a control or a bidi character) gets no token, rather than one that
// every upgrade then refuses.
func TestMintRefusesWhatVerifyRefuses(t *testing.T) {
	for _, user := range []string{"", strings.Repeat("x", 257), "a\nb", "a\u202eb"} {
		if tok, err := auth.Mint(secret, user, time.Hour); !errors.Is(err, auth.ErrSubject) {
			t.Errorf("Mint(%q) = %q, %v; want ErrSubject", user, tok, err)
		}
	}
	if _, err := auth.Mint(secret, strings.Repeat("x", 256), time.Hour); err != nil {
		t.Errorf("Mint of a 256-byte user: %v", err)
	}
}

func TestMintExpires(t *testing.T) {
	tok, err := auth.Mint(secret, "alice", time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	// exp is rounded to the second and has Leeway, so a 1ns token is still
	// accepted now; the check is that exp is set at all and near now.
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.ExpiresAt == nil || time.Until(claims.ExpiresAt.Time) > time.Second {
		t.Errorf("exp = %v, want about now", claims.ExpiresAt)
	}
}

// FuzzVerify feeds Verify arbitrary tokens: it never panics, refuses with an
// *auth.Error, and accepts only what the secret signed.
func FuzzVerify(f *testing.F) {
	good, err := auth.Mint(secret, "alice", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Add(good + "x")
	f.Add(strings.Replace(good, ".", "..", 1))
	// Signed with the secret, so the fuzzer starts past the signature:
	// no exp, a sub with a control character, a sub too long, and a token
	// just over the length limit.
	for _, c := range []jwt.RegisteredClaims{
		{Subject: "alice"},
		{Subject: "al\nice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		{Subject: strings.Repeat("a", auth.MaxUserLen+1), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		{Subject: "alice", ID: strings.Repeat("x", auth.MaxTokenLen), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
	} {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	// A token of the other secret, for the rotating Verifier's second try.
	if old, err := auth.Mint("not-"+secret, "bob", time.Hour); err == nil {
		f.Add(old)
	}
	v := auth.NewVerifier(secret, "")
	other := auth.NewVerifier("not-"+secret, "")
	// rotating accepts what either accepts, the same claims, and says
	// when the previous secret was the one.
	rotating := auth.NewVerifier(secret, "", auth.WithPreviousSecret("not-"+secret))
	f.Fuzz(func(t *testing.T, tok string) {
		claims, err := v.Verify(tok)
		rc, rerr := rotating.Verify(tok)
		oc, oerr := other.Verify(tok)
		switch {
		case err == nil && (rerr != nil || rc != claims):
			t.Fatalf("Verify(%q): the current secret's %+v, the rotating Verifier's %+v, %v", tok, claims, rc, rerr)
		case err != nil && oerr == nil && (rerr != nil || !rc.Previous || rc.User != oc.User || rc.Expires != oc.Expires):
			t.Fatalf("Verify(%q): the previous secret's %+v, the rotating Verifier's %+v, %v", tok, oc, rc, rerr)
		case err != nil && oerr != nil && rerr == nil:
			t.Fatalf("Verify(%q): neither secret accepts it, the rotating Verifier does: %+v", tok, rc)
		}
		if err != nil {
			var ae *auth.Error
			if !errors.As(err, &ae) || claims != (auth.Claims{}) {
				t.Fatalf("Verify(%q) = %+v, %v (%T); want no claims and an *auth.Error", tok, claims, err, err)
			}
			return
		}
		if len(tok) > auth.MaxTokenLen || !auth.ValidUser(claims.User) || claims.Expires.IsZero() {
			t.Fatalf("Verify(%q) accepted %+v: too long, a bad user or no expiry", tok, claims)
		}
		if oerr == nil {
			t.Fatalf("Verify(%q) accepted it under two secrets", tok)
		}
	})
}

// TestVerifyPreviousSecret: during a rotation a Verifier given the previous
// secret accepts the tokens of both, tells which verified a token (the
// current first), refuses a third secret's, and applies every other check
// to a previous secret's token as to a current one's; without the option
// the previous secret's tokens are refused.
func TestVerifyPreviousSecret(t *testing.T) {
	const previous = "previous-secret-of-at-least-32-bytes"
	claims := func(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"sb"}, ExpiresAt: at(time.Hour)}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	rotating := auth.NewVerifier(secret, "sb", auth.WithPreviousSecret(previous))
	tests := []struct {
		name         string
		v            *auth.Verifier
		token        string
		wantPrevious bool
		wantErr      *auth.Error
	}{
		{name: "current", v: rotating, token: sign(t, secret, claims(nil))},
		{name: "previous", v: rotating, token: sign(t, previous, claims(nil)), wantPrevious: true},
		{name: "a third secret", v: rotating, token: sign(t, "a-third-secret-of-at-least-32-bytes", claims(nil)), wantErr: auth.ErrBadSignature},
		{name: "previous, expired", v: rotating,
			token: sign(t, previous, claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = at(-time.Hour) })), wantErr: auth.ErrExpired},
		{name: "previous, another audience", v: rotating,
			token: sign(t, previous, claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"other"} })), wantErr: auth.ErrAudience},
		{name: "previous, no exp", v: rotating,
			token: sign(t, previous, claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), wantErr: auth.ErrNoExpiry},
		{name: "previous, alg none", v: rotating,
			token:   craft(t, map[string]any{"alg": "none", "typ": "JWT"}, map[string]any{"sub": "alice", "aud": "sb", "exp": time.Now().Add(time.Hour).Unix()}, previous, true),
			wantErr: auth.ErrAlgorithm},
		{name: "previous, without the option", v: auth.NewVerifier(secret, "sb"), token: sign(t, previous, claims(nil)), wantErr: auth.ErrBadSignature},
		// The previous secret equal to the current one, or empty, adds nothing.
		{name: "previous equal to current", v: auth.NewVerifier(secret, "sb", auth.WithPreviousSecret(secret)), token: sign(t, secret, claims(nil))},
		{name: "empty previous", v: auth.NewVerifier(secret, "sb", auth.WithPreviousSecret("")), token: sign(t, "", claims(nil)), wantErr: auth.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.v.Verify(tt.token)
			if tt.wantErr != nil {
				if err != tt.wantErr {
					t.Fatalf("Verify = %+v, %v; want %q", c, err, tt.wantErr.Message)
				}
				return
			}
			if err != nil || c.User != "alice" || c.Previous != tt.wantPrevious {
				t.Fatalf("Verify = %+v, %v; want alice with Previous %v", c, err, tt.wantPrevious)
			}
		})
	}
}

// TestWrongClaimTypesNamed: a token whose registered claim has the wrong
// JSON type is refused with a message naming the claim, not only
// "malformed": a numeric user id as sub is the commonest mistake of an
// auth service (the Socket.IO migration trial met it).
func TestWrongClaimTypesNamed(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name   string
		claims map[string]any
		want   string
	}{
		{"numeric sub", map[string]any{"sub": 42, "exp": exp}, "token sub must be a string"},
		{"list as sub", map[string]any{"sub": []string{"alice"}, "exp": exp}, "token sub must be a string"},
		{"other claims as they were", map[string]any{"sub": "alice", "exp": exp, "jti": 7}, auth.ErrMalformed.Message},
	}
	v := auth.NewVerifier(secret, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := craft(t, map[string]any{"alg": "HS256", "typ": "JWT"}, tt.claims, secret, true)
			_, err := v.Verify(tok)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVerifyLeeway: GATEWAY_JWT_LEEWAY sets the skew allowed on exp and
// nbf both ways, and the default is the contract's 30 s.
func TestVerifyLeeway(t *testing.T) {
	expired := sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(-10 * time.Second)})
	early := sign(t, secret, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(time.Hour), NotBefore: at(10 * time.Second)})
	tests := []struct {
		name    string
		v       *auth.Verifier
		token   string
		wantErr *auth.Error
	}{
		{"exp 10 s ago, default leeway", auth.NewVerifier(secret, ""), expired, nil},
		{"exp 10 s ago, 2 s leeway", auth.NewVerifier(secret, "", auth.WithLeeway(2*time.Second)), expired, auth.ErrExpired},
		{"exp 10 s ago, 0 leeway", auth.NewVerifier(secret, "", auth.WithLeeway(0)), expired, auth.ErrExpired},
		{"exp 10 s ago, 1 min leeway", auth.NewVerifier(secret, "", auth.WithLeeway(time.Minute)), expired, nil},
		{"nbf in 10 s, default leeway", auth.NewVerifier(secret, ""), early, nil},
		{"nbf in 10 s, 2 s leeway", auth.NewVerifier(secret, "", auth.WithLeeway(2*time.Second)), early, auth.ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(tt.token)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && err != tt.wantErr {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
	if d := auth.NewVerifier(secret, "").Leeway(); d != 30*time.Second {
		t.Errorf("default Leeway() = %s, want the contract's 30s", d)
	}
	if d := auth.NewVerifier(secret, "", auth.WithLeeway(-time.Second)).Leeway(); d != 0 {
		t.Errorf("Leeway() after WithLeeway(-1s) = %s, want 0", d)
	}
}
