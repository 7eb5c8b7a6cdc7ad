package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testjwt"
	"github.com/switchboard/switchboard/internal/testkit"
)

// renewSummary is what the renewal page script reports once its stream of
// emits is over and every acked message has arrived (or the wait is over).
type renewSummary struct {
	Sent     int      `json:"sent"`
	Failures []string `json:"failures"`
	Renewals int      `json:"renewals"`
	Expired  int      `json:"expired"`
	Twice    []string `json:"twice"`
	Missing  int      `json:"missing"`
	Extra    int      `json:"extra"`
}

// TestClientBrowserRenew runs client.js in Chromium with tokens that live
// 2 s, from a token endpoint of the test's (as an app's backend would
// serve them), under a steady stream of emits for 8 s: the client renews
// the token several times, moving to a new socket each time, and no emit
// fails, no 4001 comes, and every message reaches the page once. (The
// gateway would close a socket 30 s after its token's exp; TestClientJSRenew
// runs past that.)
func TestClientBrowserRenew(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{
		"GATEWAY_DEV=1", "GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0",
	}})
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		tok, err := testjwt.Mint(s.Secret, r.URL.Query().Get("user"), 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, tok)
	}))
	t.Cleanup(tokens.Close)
	dir := artifactsDir(t)
	browser := startBrowser(t, chrome)
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	page := &tab{t: t, name: "renew", ctx: ctx, dir: dir}
	page.do("run a stream of emits across token renewals",
		chromedp.Navigate("http://"+s.Addr+"/"),
		chromedp.Evaluate[chromedp.Void](`(async () => {
			const { connect } = await import("/client.js");
			const user = "renew-browser";
			const sb = connect({ url: "ws://`+s.Addr+`/socket", minReconnectDelay: 50,
				getToken: () => fetch("`+tokens.URL+`/?user=" + user).then((r) => r.text()) });
			window.sb = sb;
			const states = [];
			sb.onState((s, info) => states.push({ s, reason: info.reason ?? "", code: info.code ?? 0 }));
			const seen = { message: new Map(), message_sent: new Map() };
			for (const ev of Object.keys(seen)) sb.on(ev, (args) => seen[ev].set(args.msg_id, (seen[ev].get(args.msg_id) ?? 0) + 1));
			const failures = [];
			const sent = [];
			const until = Date.now() + 8000;
			const emitter = async (id) => {
				for (let i = 0; Date.now() < until; i++) {
					try {
						sent.push((await sb.emit("sendMessage", { to: user, text: id + "-" + i })).msg_id);
					} catch (err) {
						failures.push(id + "-" + i + ": " + err.code + ": " + err.message);
					}
				}
			};
			await Promise.all([emitter("a"), emitter("b"), emitter("c")]);
			const all = () => sent.every((m) => seen.message.has(m) && seen.message_sent.has(m));
			for (const end = Date.now() + 10000; !all() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
			const twice = [];
			for (const ev of Object.keys(seen)) for (const [m, n] of seen[ev]) if (n !== 1) twice.push(ev + " " + m + " x" + n);
			const acked = new Set(sent);
			window.renewDone = {
				sent: sent.length, failures: failures.slice(0, 10), twice: twice.slice(0, 10),
				renewals: states.filter((x) => x.s === "connecting" && x.reason === "renewing the token").length,
				expired: states.filter((x) => x.code === 4001).length,
				missing: sent.filter((m) => !seen.message.has(m) || !seen.message_sent.has(m)).length,
				extra: [...seen.message.keys(), ...seen.message_sent.keys()].filter((m) => !acked.has(m)).length,
			};
		})()`))
	page.waitFor("the stream's end", `window.renewDone !== undefined`)
	got := evalIn[renewSummary](page, "read the summary", `window.renewDone`)
	t.Logf("%+v", got)
	if len(got.Failures) != 0 || got.Expired != 0 {
		t.Errorf("emits failed: %q; 4001 closes: %d; want none", got.Failures, got.Expired)
	}
	if got.Renewals < 3 {
		t.Errorf("%d renewals in 8 s of 2 s tokens, want 3 or more", got.Renewals)
	}
	if got.Sent < 100 || len(got.Twice) != 0 || got.Missing != 0 || got.Extra != 0 {
		t.Errorf("%d messages acked: handed twice %q, missing %d, never acked %d; want every one once", got.Sent, got.Twice, got.Missing, got.Extra)
	}
}
