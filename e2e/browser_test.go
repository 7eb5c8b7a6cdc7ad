package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
)

// browserWait bounds every wait for something a tab shows.
const browserWait = 30 * time.Second

// artifactsDir is where a browser test leaves its screenshots:
// $ARTIFACTS_DIR/browser/TEST when set, else e2e/artifacts/browser/TEST
// (ignored by git); a previous run's are removed.
func artifactsDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("ARTIFACTS_DIR")
	if root == "" {
		root = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(root, "browser", t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is one browser tab showing the demo page.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	dir  string
}

// pageState is what the demo page shows about its connection.
type pageState struct {
	State  string `json:"state"`
	Worker string `json:"worker"`
	Conn   string `json:"conn"`
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.shot("failed")
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// waitFor waits until the JavaScript expression is truthy in the tab.
func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		tb.shot("failed")
		tb.t.Fatalf("%s: %s: %v (page shows %+v)", tb.name, what, err, tb.state())
	}
}

func (tb *tab) state() pageState {
	s, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[pageState](
		`({state: document.body.dataset.state ?? "", worker: document.body.dataset.worker ?? "", conn: document.body.dataset.conn ?? ""})`))
	return s
}

// waitOpen waits until the page is connected on a connection other than
// notConn, and returns what it shows.
func (tb *tab) waitOpen(notConn string) pageState {
	tb.t.Helper()
	tb.waitFor("connected", fmt.Sprintf(`document.body.dataset.state === "open" && document.body.dataset.conn !== %s`, jsString(notConn)))
	return tb.state()
}

// send sends text to user through the page's form.
func (tb *tab) send(to, text string) {
	tb.t.Helper()
	tb.do("send "+text,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("to").value = ""`),
		chromedp.SendKeys(chromedp.ID("to"), to),
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")),
	)
	tb.waitFor("the form cleared after the ack", `document.getElementById("text").value === ""`)
}

// waitMessage waits for a message bubble: kind "in" (received) or "sent".
func (tb *tab) waitMessage(kind, text string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%s message %q", kind, text), fmt.Sprintf(
		`[...document.querySelectorAll("#messages li.msg")].some(li => li.dataset.kind === %s && li.querySelector(".text").textContent === %s)`,
		jsString(kind), jsString(text)))
}

// shot saves a screenshot of the tab's viewport as NAME-TAB.png.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Logf("%s: screenshot %s: %v", tb.name, name, err)
		return
	}
	path := filepath.Join(tb.dir, name+"-"+tb.name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Logf("screenshot: %v", err)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// startBrowser starts headless Chromium for the test and returns its
// context; the browser is killed when the test ends.
func startBrowser(t *testing.T, chrome string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.DisableGPU,
		chromedp.WindowSize(900, 720),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc) // kills Chromium and waits for it
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chrome, err)
	}
	return browser
}

// openTab opens a tab of browser on the demo page at base and logs in as
// user; name names it in messages and screenshots (in dir).
func openTab(t *testing.T, browser context.Context, dir, base, name, user string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{t: t, name: name, ctx: ctx, dir: dir}
	tb.do("log in as "+user,
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.Click(chromedp.CSS("#login-form button")),
	)
	return tb
}

// TestDemoPageInBrowser drives the demo chat page in headless Chromium: two
// tabs as alice on different workers and one as bob. bob sees alice's
// message, alice's other tab sees it as sent; then the worker under one of
// alice's tabs is killed with SIGKILL, the tab reconnects by itself, and the
// next messages reach it. Screenshots go to artifactsDir.
func TestDemoPageInBrowser(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1"}})
	dir := artifactsDir(t)
	t.Logf("screenshots: %s", dir)
	base := "http://" + s.Addr + "/"

	browser := startBrowser(t, chrome)
	open := func(name, user string) *tab { return openTab(t, browser, dir, base, name, user) }

	alice1 := open("alice-1", "alice")
	st1 := alice1.waitOpen("")
	alice2 := open("alice-2", "alice")
	st2 := alice2.waitOpen("")
	// The kernel picks the worker of each new connection; reload (the page
	// logs in again by itself) until alice's tabs are on different workers.
	for i := 0; st2.Worker == st1.Worker; i++ {
		if i == 50 {
			t.Fatalf("alice's second tab stayed on worker %s through 50 reloads", st1.Worker)
		}
		alice2.do("reload", chromedp.Reload())
		st2 = alice2.waitOpen(st2.Conn)
	}
	bob := open("bob", "bob")
	bob.waitOpen("")
	t.Logf("alice-1 on worker %s, alice-2 on worker %s, bob on worker %s", st1.Worker, st2.Worker, bob.state().Worker)
	tabs := []*tab{alice1, alice2, bob}
	shots := func(name string) {
		for _, tb := range tabs {
			tb.shot(name)
		}
	}

	alice1.send("bob", "hi bob, from alice's first tab")
	bob.waitMessage("in", "hi bob, from alice's first tab")
	alice2.waitMessage("sent", "hi bob, from alice's first tab")
	alice1.waitMessage("sent", "hi bob, from alice's first tab")
	bob.send("alice", "hello alice, both your tabs see this")
	alice1.waitMessage("in", "hello alice, both your tabs see this")
	alice2.waitMessage("in", "hello alice, both your tabs see this")
	shots("1-delivered")

	// SIGKILL the worker under alice's second tab.
	worker, err := strconv.Atoi(st2.Worker)
	if err != nil {
		t.Fatalf("alice-2 shows worker %q", st2.Worker)
	}
	pid, ok := s.WorkerPids()[worker]
	if !ok {
		t.Fatalf("no pid for worker %d in %v", worker, s.WorkerPids())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %d (pid %d): %v", worker, pid, err)
	}
	t.Logf("killed worker %d (pid %d)", worker, pid)
	after := alice2.waitOpen(st2.Conn)
	t.Logf("alice-2 reconnected by itself on worker %s (conn %s, was %s)", after.Worker, after.Conn, st2.Conn)
	bob.waitOpen("") // bob may have been on the killed worker too

	bob.send("alice", "still there after the crash?")
	alice2.waitMessage("in", "still there after the crash?")
	alice1.waitMessage("in", "still there after the crash?")
	alice2.send("bob", "yes, reconnected by itself")
	bob.waitMessage("in", "yes, reconnected by itself")
	alice1.waitMessage("sent", "yes, reconnected by itself")
	shots("2-after-kill")

	// In a real browser too, a refused token stops the client for good:
	// the probe reads the 401 that the WebSocket cannot see.
	status, err := chromedp.Run(bob.ctx, chromedp.Evaluate[int](`(async () => {
		const { connect } = await import("/client.js");
		const sb = connect({ url: "/socket", token: "not-a-jwt", minReconnectDelay: 10 });
		return await new Promise((resolve) => sb.onState((s, info) => { if (s === "closed") resolve(info.status); }));
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || status != 401 {
		t.Fatalf("client with a bad token in the browser: closed with status %d, %v; want 401", status, err)
	}

	// And from another origin (localhost is not 127.0.0.1 to a browser):
	// the module imports, as module scripts load in CORS mode, and the
	// probe's 401 is readable across origins.
	_, port, _ := net.SplitHostPort(s.Addr)
	other := "http://localhost:" + port
	status, err = chromedp.Run(bob.ctx, chromedp.Evaluate[int](`(async () => {
		const { connect } = await import(`+jsString(other+"/client.js")+`);
		const sb = connect({ url: `+jsString(other+"/socket")+`, token: "not-a-jwt", minReconnectDelay: 10 });
		return await new Promise((resolve) => sb.onState((s, info) => { if (s === "closed") resolve(info.status); }));
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || status != 401 {
		t.Fatalf("client imported from %s with a bad token: closed with status %d, %v; want 401", other, status, err)
	}
}
