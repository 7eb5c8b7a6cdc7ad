package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
)

// userGesture has an evaluation count as the user's doing, as a click
// would: the browser lets it open a window.
func userGesture(p *runtime.EvaluateParams) {
	yes := true
	p.UserGesture = &yes
}

// TestDemoPageCopyIsNotTheOriginal: a browser copies a tab's
// sessionStorage into a window the tab opens (and into a duplicated tab),
// the client's stored connection ids with it. The copy must not resume
// naming the first tab's live connection as its own (prev): it gets what
// is sent to everyone but that connection (except_conns), the first tab
// does not. And a reload of the first tab still names its connection from
// before the reload: the browser's "pagehide" frees the ids before the
// reloaded page reads them.
func TestDemoPageCopyIsNotTheOriginal(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1"}, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	dir := artifactsDir(t)
	browser := startBrowser(t, chrome)

	first := openTab(t, browser, dir, "http://"+s.Addr+"/", "bob-first", "bob")
	st := first.waitOpen("")

	opened := chromedp.WaitNewTarget(first.ctx, func(*target.Info) bool { return true })
	first.do("open a copy", chromedp.Evaluate[chromedp.Void](`void window.open(location.href, "_blank")`, userGesture))
	var id target.ID
	select {
	case id = <-opened:
	case <-time.After(browserWait):
		t.Fatal("window.open made no new tab")
	}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithTargetID(id))
	t.Cleanup(cancel)
	copyTab := &tab{t: t, name: "bob-copy", ctx: ctx, dir: dir}
	// The copy logs in by itself: the demo keeps its user in sessionStorage.
	cst := copyTab.waitOpen(st.Conn)
	t.Logf("first tab conn %s (worker %s), its copy conn %s (worker %s)", st.Conn, st.Worker, cst.Conn, cst.Worker)

	n := 0
	send := func(except string) string {
		t.Helper()
		n++
		text := fmt.Sprintf("news %d", n)
		body := fmt.Sprintf(`{"event":"message","args":{"from":"ops","to":"bob","text":%q,"msg_id":"copy-%d","ts":%d},"users":["bob"]`,
			text, n, time.Now().UnixMilli())
		if except != "" {
			body += fmt.Sprintf(`,"except_conns":[%q]`, except)
		}
		if status, answer := postDispatch(t, s, apiKey, body+"}"); status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", body, status, answer)
		}
		return text
	}
	// absent fails the test if tb shows text as received; call it after a
	// later message reached tb.
	absent := func(tb *tab, text string) {
		t.Helper()
		got, _ := tb.received()
		for _, g := range got {
			if g == text {
				t.Fatalf("%s shows %q, sent to everyone but the first tab's connection (%s)", tb.name, text, st.Conn)
			}
		}
	}

	left := send(st.Conn)
	copyTab.waitMessage("in", left)
	marker := send("")
	first.waitMessage("in", marker)
	copyTab.waitMessage("in", marker)
	absent(first, left)

	// The first tab reloads: it resumes naming the connection it had, so
	// what leaves that connection out leaves the reloaded page out too,
	// live, and the copy still gets it.
	first.do("reload", chromedp.Reload())
	first.waitOpen(st.Conn)
	left = send(st.Conn)
	copyTab.waitMessage("in", left)
	marker = send("")
	first.waitMessage("in", marker)
	absent(first, left)
	copyTab.shot("copy")
	first.shot("first")
}
