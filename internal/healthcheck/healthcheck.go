// Package healthcheck is the "health [-ready] [URL]" subcommand of both
// services: a container health check for images without curl or a shell.
package healthcheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Timeout bounds one check.
const Timeout = 3 * time.Second

// maxBody is how much of the answer is printed.
const maxBody = 1 << 16

// Run is "PROGRAM health [-ready] [URL]": it GETs URL, copies the body to
// stdout and fails unless the answer is 200. Without URL it asks the
// address addr returns (a listen address such as ":8081", as configured),
// on this host: /healthz (the process is alive) by default, /readyz (its
// dependencies are up) with -ready. Liveness is what an orchestrator may
// restart on: a service that lost Redis for a moment must not be killed
// for it. addr is called only when no URL is given, so a check with a URL
// works where the configuration is incomplete.
//
// Asked for help (-h, -help), Run checks nothing and returns an error that
// matches flag.ErrHelp and whose text is the usage: the caller prints it
// and exits 0, as for its own -h.
func Run(ctx context.Context, program string, args []string, stdout io.Writer, addr func() (string, error)) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ready := fs.Bool("ready", false, "check /readyz (dependencies up) instead of /healthz (alive)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		usage := "usage: " + program + " health [-ready] [URL]"
		switch {
		case errors.Is(err, flag.ErrHelp):
			var b strings.Builder
			b.WriteString(usage + "\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			b.WriteString("  URL\n    \tthe URL to GET instead (default: /healthz, or /readyz with -ready, at the configured address)")
			return helpError(b.String())
		case err != nil:
			return fmt.Errorf("%w; %s", err, usage)
		}
		return errors.New(usage)
	}
	url := fs.Arg(0)
	if url == "" {
		a, err := addr()
		if err != nil {
			return err
		}
		path := "/healthz"
		if *ready {
			path = "/readyz"
		}
		url = "http://" + LocalAddr(a) + path
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(stdout, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// helpError is Run's answer to -h: the usage, matching flag.ErrHelp.
type helpError string

func (e helpError) Error() string { return string(e) }

// Is makes errors.Is(err, flag.ErrHelp) true.
func (e helpError) Is(target error) bool { return target == flag.ErrHelp }

// LocalAddr turns a listen address into one to dial on this host: an
// empty or wildcard host becomes 127.0.0.1. An address that does not split
// into host and port is returned as it is.
func LocalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
