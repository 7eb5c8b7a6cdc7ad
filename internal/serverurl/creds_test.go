package serverurl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/switchboard/switchboard/internal/serverurl"
)

// TestNATSCreds: a credentials file as nsc writes it (a user JWT signed
// by an account, and the user's seed) passes; a file without the seed or
// without the JWT, a missing file and a directory are refused, and no
// error quotes the file's secrets.
func TestNATSCreds(t *testing.T) {
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userPub, _ := user.PublicKey()
	claims := jwt.NewUserClaims(userPub)
	token, err := claims.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	good, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := serverurl.NATSCreds(write("good.creds", string(good))); err != nil {
		t.Fatalf("a file as nsc writes it: %v", err)
	}
	seedOnly := string(seed) + "\n"
	jwtOnly := strings.Split(string(good), "************************* IMPORTANT *************************")[0]
	for name, path := range map[string]string{
		"not credentials": write("other.creds", "password=hunter2\n"),
		"no seed":         write("jwt.creds", jwtOnly),
		"no JWT":          write("seed.creds", seedOnly),
		"empty":           write("empty.creds", ""),
		"missing":         filepath.Join(dir, "none.creds"),
		"a directory":     dir,
	} {
		err := serverurl.NATSCreds(path)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), string(seed)) || strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
}
