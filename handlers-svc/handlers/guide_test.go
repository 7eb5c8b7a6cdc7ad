package handlers_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// guideBlocks returns the code blocks of docs/handlers.md whose info
// string names a file ("```go file=handlers-svc/handlers/x.go"), by that
// file's path from the repository root.
func guideBlocks(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../docs/handlers.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blocks := map[string]string{}
	var file string
	var body strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case file == "" && strings.HasPrefix(line, "```go file="):
			file = strings.TrimPrefix(line, "```go file=")
			body.Reset()
		case file != "" && line == "```":
			blocks[file] = body.String()
			file = ""
		case file != "":
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// TestGuide follows docs/handlers.md word by word: it adds the guide's
// handler and test to this package and its line to Families (with a Go
// build overlay, so nothing is written here), then vets the package and
// runs the guide's test. A guide that drifts from the API fails here.
func TestGuide(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	blocks := guideBlocks(t)
	for _, want := range []string{"handlers-svc/handlers/reactions.go", "handlers-svc/handlers/reactions_test.go", "handlers-svc/handlers/handlers.go"} {
		if _, ok := blocks[want]; !ok {
			t.Fatalf("docs/handlers.md has no block for %s (it has %v)", want, keys(blocks))
		}
	}
	// The Go dispatch snippet is ExampleDispatcher_Dispatch's body, which
	// the dispatch package compiles.
	example, err := os.ReadFile("../dispatch/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if snippet := blocks["handlers-svc/dispatch/example_test.go"]; snippet == "" || !strings.Contains(trimLines(string(example)), trimLines(snippet)) {
		t.Fatalf("docs/handlers.md's Go dispatch snippet is not in dispatch/example_test.go:\n%s", snippet)
	}
	// The registration is one line, replacing Families' list.
	const before = "\treturn []Family{RegisterChat, RegisterPosts, RegisterRooms}\n"
	src, err := os.ReadFile("handlers.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), before) {
		t.Fatalf("handlers.go no longer holds %q: update the guide's step 2", before)
	}
	dir := t.TempDir()
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	replace := map[string]string{}
	for name, text := range map[string]string{
		"reactions.go":      blocks["handlers-svc/handlers/reactions.go"],
		"reactions_test.go": blocks["handlers-svc/handlers/reactions_test.go"],
		"handlers.go":       strings.Replace(string(src), before, blocks["handlers-svc/handlers/handlers.go"], 1),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		replace[filepath.Join(here, name)] = p
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": replace})
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"vet", "-overlay", overlayFile, "."},
		{"test", "-overlay", overlayFile, "-count=1", "-run", "^(TestReact|TestGuideFamilies)$", "-v", "."},
	} {
		cmd := exec.Command(goBin, args...)
		cmd.Env = append(os.Environ(), "SWITCHBOARD_GUIDE=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s with the guide's code: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "test" && (!strings.Contains(string(out), "--- PASS: TestReact") || !strings.Contains(string(out), "--- PASS: TestGuideFamilies")) {
			t.Fatalf("the guide's test did not run:\n%s", out)
		}
	}
}

// trimLines returns text with every line's indentation removed.
func trimLines(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
