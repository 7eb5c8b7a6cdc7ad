package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// evalIn returns the value of the JavaScript expression in tb, failing the
// test if it cannot be read.
func evalIn[T any](tb *tab, what, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.shot("failed")
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
	return v
}

// received returns the texts of the messages the tab shows as received,
// top to bottom, and how many repeats the page hid (the client should let
// none through).
func (tb *tab) received() (texts []string, repeats string) {
	tb.t.Helper()
	got := evalIn[struct {
		Texts   []string `json:"texts"`
		Repeats string   `json:"repeats"`
	}](tb, "read the messages", `({
		texts: [...document.querySelectorAll("#messages li.msg")].filter(li => li.dataset.kind === "in").map(li => li.querySelector(".text").textContent),
		repeats: document.body.dataset.repeats ?? "",
	})`)
	return got.Texts, got.Repeats
}

// expectReceived fails the test unless the tab shows exactly want as
// received, in that order, and hid no repeat.
func (tb *tab) expectReceived(want []string) {
	tb.t.Helper()
	got, repeats := tb.received()
	if !slices.Equal(got, want) || repeats != "" {
		tb.shot("failed")
		tb.t.Fatalf("%s shows %q (repeats hidden: %q); want %q, each once", tb.name, got, repeats, want)
	}
}

// TestDemoPageRecovers is issue 11's browser test: a demo tab of bob whose
// worker is killed with SIGKILL while alice (a Go client on the other
// worker) sends to him shows every message exactly once, in order, after
// it reconnects by itself; a tab that was away (navigated elsewhere) while
// she sent shows, once back, what it missed and says how many it
// recovered; so does a tab reloaded while she sends. Every wait is for
// something the page shows.
func TestDemoPageRecovers(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1"}})
	dir := artifactsDir(t)
	base := "http://" + s.Addr + "/"
	browser := startBrowser(t, chrome)

	bob := openTab(t, browser, dir, base, "bob-recovers", "bob")
	st := bob.waitOpen("")
	worker, err := strconv.Atoi(st.Worker)
	if err != nil {
		t.Fatalf("the page shows worker %q", st.Worker)
	}
	alice := s.DialOn("alice", (worker+1)%s.Workers)
	t.Logf("bob's tab on worker %d, alice on worker %d", worker, alice.Worker)

	var sent []string
	refs := 0
	send := func(texts ...string) {
		t.Helper()
		for _, text := range texts {
			refs++
			ref := "r" + strconv.Itoa(refs)
			alice.Send("sendMessage", map[string]string{"to": "bob", "text": text}, ref)
			if f := alice.ExpectRef(10*time.Second, ref); f.Event != proto.EventAck {
				t.Fatalf("send %q: %s %s", text, f.Event, f.Args)
			}
			sent = append(sent, text)
		}
	}
	numbered := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprintf("message %d", i))
		}
		return out
	}

	send(numbered(1, 3)...)
	bob.waitMessage("in", "message 3")
	bob.expectReceived(sent)

	// Kill bob's worker between alice's messages: those before it may be
	// on their way to the tab, those after come while it is away.
	send(numbered(4, 6)...)
	pid, ok := s.WorkerPids()[worker]
	if !ok {
		t.Fatalf("no pid for worker %d in %v", worker, s.WorkerPids())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %d (pid %d): %v", worker, pid, err)
	}
	send(numbered(7, 9)...)
	after := bob.waitOpen(st.Conn)
	bob.waitFor("a resume that recovered", `document.body.dataset.recovered === "true"`)
	missed := evalIn[string](bob, "missed", `document.body.dataset.missed`)
	t.Logf("bob's tab resumed on worker %s (conn %s, was %s): recovered, %s missed", after.Worker, after.Conn, st.Conn, missed)
	send("after the crash")
	bob.waitMessage("in", "after the crash")
	bob.expectReceived(sent)
	bob.shot("1-after-kill")

	// The tab goes away (to another page) and alice sends meanwhile; back
	// on the demo page, which logs in by itself, it shows what it had and
	// what it missed, and says so.
	bob.do("navigate away", chromedp.Navigate("about:blank"))
	send(numbered(10, 12)...)
	bob.do("come back", chromedp.Navigate(base))
	bob.waitFor("a resume that recovered 3", `document.body.dataset.state === "open" && document.body.dataset.recovered === "true" && document.body.dataset.missed === "3"`)
	bob.waitMessage("in", "message 12")
	bob.waitFor("the notice", `!document.getElementById("notice").hidden`)
	notice := evalIn[struct{ Kind, Text string }](bob, "the notice",
		`({Kind: document.getElementById("notice").dataset.kind, Text: document.getElementById("notice").textContent})`)
	if kind, text := notice.Kind, notice.Text; kind != "ok" || text != "Recovered 3 missed messages." {
		t.Fatalf("notice %q (kind %q); want %q (kind ok)", text, kind, "Recovered 3 missed messages.")
	}
	bob.expectReceived(sent)
	bob.shot("2-after-reload")

	// The page reloaded while alice sends one message after another: what
	// reached the page before the reload, and what came during it, each
	// shows once, in order.
	burst := numbered(13, 40)
	done := make(chan error, 1)
	go func() { done <- sendAll(alice, "bob", burst) }()
	bob.waitMessage("in", "message 16")
	bob.do("reload", chromedp.Reload())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sent = append(sent, burst...)
	bob.waitFor("a resume that recovered", `document.body.dataset.state === "open" && document.body.dataset.recovered === "true"`)
	t.Logf("reloaded during the burst: %s missed", evalIn[string](bob, "missed", `document.body.dataset.missed`))
	bob.waitMessage("in", "message 40")
	bob.expectReceived(sent)
	bob.shot("3-after-reload-in-a-burst")
}

// sendAll sends each text to user from c, one after another, each once the
// previous one was acked; it returns what failed, for a goroutine to
// report.
func sendAll(c *testkit.Client, to string, texts []string) error {
	for i, text := range texts {
		ref := "burst-" + strconv.Itoa(i)
		if err := c.TrySend("sendMessage", map[string]string{"to": to, "text": text}, ref); err != nil {
			return fmt.Errorf("send %q: %w", text, err)
		}
		f, ok := c.TryExpect(10*time.Second, func(f proto.Frame) bool {
			return (f.Event == proto.EventAck || f.Event == proto.EventError) && f.Ref == ref
		})
		if !ok || f.Event != proto.EventAck {
			return fmt.Errorf("send %q: no ack (%s %s)", text, f.Event, f.Args)
		}
	}
	return nil
}
