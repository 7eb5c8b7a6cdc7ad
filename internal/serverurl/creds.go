package serverurl

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// NATSCreds checks that path names a NATS credentials file a client can
// use: readable, with a user JWT and an NKey seed, as `nsc generate
// creds` writes it. nats.go reads the file at every connect and, with
// its retries on, waits forever for one that cannot work, logging only
// that it waits for NATS; a service refuses to start on it instead,
// naming the setting. Whether NATS accepts the user is for NATS to say.
// The errors never quote the file.
func NATSCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer clear(b)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return fmt.Errorf("%s holds no NKey seed (%v): a credentials file has a user JWT and its seed, as nsc generate creds writes them", path, err)
	}
	kp.Wipe()
	jwt, _ := nkeys.ParseDecoratedJWT(b)
	if parts := strings.Split(jwt, "."); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || strings.ContainsAny(jwt, " \t\r\n") {
		return fmt.Errorf("%s holds no user JWT: a credentials file has a user JWT and its seed, as nsc generate creds writes them", path)
	}
	return nil
}
