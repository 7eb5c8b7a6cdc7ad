package handlers_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// otherModuleMain is a backend's program in its own module: it imports the
// dispatch package as docs/handlers.md tells another team to.
const otherModuleMain = `package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
)

func main() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{})
	_, err := d.Dispatch(context.Background(), dispatch.Message{Event: "invoice_paid", Args: json.RawMessage("{}"), Users: []string{"bob"}})
	log.Print(event.WireError(err))
}
`

// TestGuideOtherModule follows docs/handlers.md's "From Go" as a team with
// its own module does: the go.mod lines the guide gives (its "gomod"
// block), with the repository checked out beside the module, must build
// a program importing the dispatch package, with no go.work (the
// repository is not published). Without them a team met
// "reading https://proxy.golang.org/...: 403 Forbidden" for the package,
// then for internal and proto, whose replace lines in handlers-svc's own
// go.mod do not reach another module.
func TestGuideOtherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	block := guideGoMod(t)
	if block == "" {
		t.Fatal(`docs/handlers.md has no "gomod" block telling another module how to require the dispatch package`)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The guide's layout: the repository checked out at ../switchboard.
	if err := os.Symlink(root, filepath.Join(dir, "switchboard")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/billing\n\ngo 1.26\n\n" + block
	if err := os.WriteFile(filepath.Join(app, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(otherModuleMain), 0o644); err != nil {
		t.Fatal(err)
	}
	// The replaced modules are never asked of the proxy; the others are
	// in the module cache already, once this module's tests built.
	env := append(os.Environ(), "GOWORK=off", "GOSUMDB=off", "GOFLAGS=-mod=mod")
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = app, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s with the guide's go.mod:\n%s\n%s: %v", strings.Join(args, " "), gomod, out, err)
		}
	}
}

// guideGoMod returns the body of docs/handlers.md's "```gomod" block, or "".
func guideGoMod(t *testing.T) string {
	t.Helper()
	f, err := os.Open("../../docs/handlers.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var body strings.Builder
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == "```gomod":
			in = true
		case in && line == "```":
			return body.String()
		case in:
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}
