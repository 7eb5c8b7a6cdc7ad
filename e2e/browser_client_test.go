package e2e

import (
	"context"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
)

// setOnline makes the tab's browser report the network up or down
// (navigator.onLine and the window's online and offline events); the
// network itself keeps working.
func (tb *tab) setOnline(online bool) {
	tb.t.Helper()
	tb.do("set online "+map[bool]string{true: "true", false: "false"}[online], chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: !online, DownloadThroughput: -1, UploadThroughput: -1,
		})
		return err
	}))
}

// TestClientBrowserEvents checks the client against what a real browser
// does: a tab whose browser goes offline drops its socket at once (it
// would otherwise look open until TCP gave up) and, the network being
// back, resumes where it was; and a WebSocket the browser refuses to make
// stops the client for good instead of retrying forever.
func TestClientBrowserEvents(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, Env: []string{"GATEWAY_DEV=1"}})
	dir := artifactsDir(t)
	browser := startBrowser(t, chrome)

	alice := openTab(t, browser, dir, "http://"+s.Addr+"/", "alice-offline", "alice")
	st := alice.waitOpen("")
	alice.setOnline(false)
	// Only the client's offline listener ends the socket: the emulated
	// outage leaves the network, and so the socket, working.
	after := alice.waitOpen(st.Conn)
	alice.waitFor("a resume that recovered", `document.body.dataset.recovered === "true"`)
	t.Logf("offline: conn %s replaced by %s", st.Conn, after.Conn)
	alice.setOnline(true)

	// ftp: is no WebSocket URL: Chromium's constructor throws SyntaxError.
	reason, err := chromedp.Run(alice.ctx, chromedp.Evaluate[string](`(async () => {
		const { connect } = await import("/client.js");
		const sb = connect({ url: "ftp://`+s.Addr+`/socket", token: "x", minReconnectDelay: 10 });
		const closed = new Promise((resolve) => sb.onState((s, info) => { if (s === "closed") resolve(info.reason); }));
		const late = new Promise((resolve) => setTimeout(() => { sb.close(); resolve(""); }, 10000));
		return await Promise.race([closed, late]);
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || reason == "" {
		t.Fatalf("a client of an ftp: URL: closed with reason %q, %v; want closed within 10 s, with a reason", reason, err)
	}
	t.Logf("ftp: URL: closed: %s", reason)
}

// TestDemoPageWithoutStorage opens the demo in a tab whose sessionStorage
// throws on access, as it does in a browser that blocks site data: the
// page still logs in and chats, only a reload cannot resume.
func TestDemoPageWithoutStorage(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, Env: []string{"GATEWAY_DEV=1"}})
	dir := artifactsDir(t)
	browser := startBrowser(t, chrome)

	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	alice := &tab{t: t, name: "alice-nostorage", ctx: ctx, dir: dir}
	alice.do("block sessionStorage", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `Object.defineProperty(window, "sessionStorage", { get() { throw new DOMException("The operation is insecure.", "SecurityError"); } });`,
		})
		return err
	}))
	alice.do("log in as alice",
		chromedp.Navigate("http://"+s.Addr+"/"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), "alice"),
		chromedp.Click(chromedp.CSS("#login-form button")),
	)
	alice.waitOpen("")
	alice.send("alice", "a note to myself")
	alice.waitMessage("in", "a note to myself")
	alice.waitMessage("sent", "a note to myself")
}
