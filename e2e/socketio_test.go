package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
)

// socketIOExample is the port of a Socket.IO chat app that
// docs/socketio.md is cut from, a module of its own.
const socketIOExample = "docs/examples/socketio"

// TestSocketIOGuide runs docs/examples/socketio as a team that migrates
// from Socket.IO would: its handler service (chatsvc, a module outside
// handlers-svc that imports it through replace lines and runs it with its
// own family, package service, in handlers-svc's place), its notification job and its Node client,
// against a real 2-worker gateway, NATS and Redis. The client checks every
// feature of the app (acks, rooms without the sender's socket, live or
// resumed, member lists, typing, read receipts, presence announced by
// connect and disconnect hooks, a push from another backend, a reconnect
// that loses nothing) and exits non-zero on the first that fails. Every code block of docs/socketio.md that is not Socket.IO's must
// be cut from the example's files, so the guide shows only what runs here.
func TestSocketIOGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module and runs node: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	node := needTool(t, "node (Debian package nodejs)", "node", "nodejs")
	flags := slices.DeleteFunc(nodeTestArgs(t, node), func(a string) bool { return strings.HasPrefix(a, "--test") })
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	checkGuideCut(t, root, "docs/socketio.md")

	// The example's go.mod reaches the repository's modules as
	// ../../../<module>: the same layout in a temporary directory, so
	// that building writes nothing into the checkout.
	dir := t.TempDir()
	for _, m := range []string{"handlers-svc", "internal", "proto"} {
		if err := os.Symlink(filepath.Join(root, m), filepath.Join(dir, m)); err != nil {
			t.Fatal(err)
		}
	}
	app := filepath.Join(dir, socketIOExample)
	if err := os.CopyFS(app, os.DirFS(filepath.Join(root, socketIOExample))); err != nil {
		t.Fatal(err)
	}
	client, err := os.ReadFile(filepath.Join(root, "gateway/internal/web/assets/client.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "client/client.js"), client, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	// -trimpath: without it the compiled packages record the temporary
	// directory they were built in, so every run compiled the repository's
	// modules afresh (about a minute with -race on this box); with it the
	// build cache serves them to every later run and test.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -trimpath")
	for _, args := range [][]string{{"vet", "./..."}, {"test", "-race", "-count=1", "./..."}, {"build", "-o", bin + "/", "./chatsvc", "./notify"}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = app, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), socketIOExample, err, out)
		}
	}

	// chatsvc takes handlers-svc's place (both in one queue group would
	// answer each other's events unknown_event), with its settings.
	s := testkit.StartStack(t, testkit.StackOptions{HandlersBin: filepath.Join(bin, "chatsvc")})
	runNode(t, node, append(flags, filepath.Join(app, "client/chat.mjs")),
		"GW="+s.Addr, "GATEWAY_JWT_SECRET="+s.Secret, "REDIS_URL="+s.RedisURL(),
		"NOTIFY="+filepath.Join(bin, "notify"))
}

// checkGuideCut fails t unless every fenced code block of the guide at
// path is either marked as the other product's ("```js socket.io") or
// names the file of the repository it is cut from ("```go
// file=docs/examples/socketio/chatsvc/chat.go"), whose text holds the
// block's lines in order; a line "// ..." in a block stands for lines
// left out.
func checkGuideCut(t *testing.T, root, path string) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		in, checked bool
		file, info  string
		body        []string
		blocks      int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !in && strings.HasPrefix(line, "```"):
			in, info, body = true, strings.TrimPrefix(line, "```"), nil
			file, checked = "", strings.Contains(info, "socket.io")
			for _, w := range strings.Fields(info) {
				if v, ok := strings.CutPrefix(w, "file="); ok {
					file = v
				}
			}
			if !checked && file == "" {
				t.Errorf("%s:%d: block %q names no file it is cut from, and is not marked socket.io", path, n, info)
			}
		case in && line == "```":
			in = false
			blocks++
			if file != "" {
				checkCut(t, root, path, n, file, body)
			}
		case in:
			body = append(body, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if blocks == 0 {
		t.Fatalf("%s has no code blocks", path)
	}
}

// checkCut fails t unless file holds body's lines in order, each run of
// lines between "// ..." lines contiguous, white space at the ends of
// lines aside.
func checkCut(t *testing.T, root, guide string, line int, file string, body []string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Errorf("%s:%d: %v", guide, line, err)
		return
	}
	have := strings.Split(string(src), "\n")
	for i := range have {
		have[i] = strings.TrimSpace(have[i])
	}
	from := 0
	var run []string
	check := func() bool {
		if len(run) == 0 {
			return true
		}
		for i := from; i+len(run) <= len(have); i++ {
			if slices.Equal(have[i:i+len(run)], run) {
				from, run = i+len(run), nil
				return true
			}
		}
		t.Errorf("%s: the block ending at line %d is not cut from %s; these lines are not in it, in order:\n%s", guide, line, file, strings.Join(run, "\n"))
		return false
	}
	for _, l := range body {
		l = strings.TrimSpace(l)
		if l == "// ..." {
			if !check() {
				return
			}
			continue
		}
		run = append(run, l)
	}
	check()
}
