package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestSocketIOClientReloadsOnResync checks the example's client against
// docs/protocol.md ("The JavaScript client"): recovered:false "means
// events may be missing: the app reloads its state. So does a resync
// frame, which reaches on(\"resync\") listeners". chat.mjs, the client a
// team copies, reloads on recovered:false only: on an open socket whose
// gap the gateway cannot fill (store lost events, missed events expired,
// too many missed events) the events are gone and the app never knows.
// The check is of the source, since chat.mjs is a script, not a module a
// test could drive: it must listen for resync.
func TestSocketIOClientReloadsOnResync(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", socketIOExample, "client/chat.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	// A listener: sb.on("resync", ...), or "resync" in the list of
	// events a device listens to.
	listens := regexp.MustCompile(`(?m)^[^/\n]*(\.on\(\s*"resync"|\[[^\]\n]*"resync"[^\]\n]*\][^\n]*d\.listen)`)
	if !listens.Match(src) {
		t.Fatalf("%s/client/chat.mjs listens for no resync: a live socket that lost events is never reloaded", socketIOExample)
	}
}
