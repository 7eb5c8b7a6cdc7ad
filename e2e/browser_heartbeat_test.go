package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
)

// hbState is what the heartbeat page script records (window.hb).
type hbState struct {
	States []struct {
		S         string `json:"s"`
		Reason    string `json:"reason"`
		Conn      string `json:"conn"`
		Recovered *bool  `json:"recovered"`
	} `json:"states"`
	Got       []string `json:"got"`
	Heartbeat int      `json:"heartbeat"`
	MaxFrame  int      `json:"max_frame"`
}

// TestClientBrowserHeartbeat runs client.js in Chromium against a gateway
// with a short ping interval (GATEWAY_PING_INTERVAL=500ms) and a small
// frame limit (GATEWAY_MAX_FRAME=4096), its socket through a TCP proxy:
//   - connected announces both; an emit over the limit rejects alone with
//     too_big while another emit in flight resolves, on the same socket;
//   - when the proxy silently stops forwarding (no close, no error: a NAT
//     that forgot the connection), the page, which cannot see pings, takes
//     the socket for dead within interval + grace and, the path back,
//     resumes and gets what was sent to it meanwhile.
func TestClientBrowserHeartbeat(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, Env: []string{
		"GATEWAY_DEV=1", "GATEWAY_PING_INTERVAL=500ms", "GATEWAY_MAX_FRAME=4096",
	}})
	proxy := testkit.StartProxy(t, s.Addr)
	dir := artifactsDir(t)
	browser := startBrowser(t, chrome)
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	alice := &tab{t: t, name: "alice-heartbeat", ctx: ctx, dir: dir}
	const grace = 1000 // ms
	alice.do("start a client through the proxy",
		chromedp.Navigate("http://"+s.Addr+"/"),
		chromedp.Evaluate[chromedp.Void](`window.hb = { states: [], got: [] };
			(async () => {
				const { connect } = await import("/client.js");
				const { token } = await (await fetch("/dev/token?user=alice")).json();
				const sb = connect({ url: "ws://`+proxy.Addr()+`/socket", token, heartbeatGrace: `+strconv.Itoa(grace)+`,
					minReconnectDelay: 50, maxReconnectDelay: 200 });
				window.sb = sb;
				sb.onState((s, info) => hb.states.push({ s, reason: info.reason ?? "", conn: info.conn ?? "", recovered: info.recovered ?? null }));
				sb.on("message", (args) => hb.got.push(args.text));
				sb.on("connected", (args) => { hb.heartbeat = args.heartbeat; hb.max_frame = args.max_frame; });
			})()`))
	alice.waitFor("open", `window.hb?.states.some((s) => s.s === "open")`)
	st := evalIn[hbState](alice, "read the page", `window.hb`)
	if st.Heartbeat != 500 || st.MaxFrame != 4096 {
		t.Fatalf("connected announced heartbeat %d and max_frame %d, want 500 and 4096", st.Heartbeat, st.MaxFrame)
	}
	conn := st.States[len(st.States)-1].Conn

	// An emit over the limit, made while another is in flight, rejects
	// alone; the other resolves, and the socket stays.
	type emits struct {
		Small bool   `json:"small"`
		Big   string `json:"big"`
	}
	got, err := chromedp.Run(alice.ctx, chromedp.Evaluate[emits](`(async () => {
		const small = sb.emit("sendMessage", { to: "alice", text: "small" });
		const big = sb.emit("sendMessage", { to: "alice", text: "x".repeat(5000) }).then(() => "sent", (e) => e.code);
		const r = await small;
		return { small: typeof r?.msg_id === "string", big: await big };
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("emit at and over the limit: %v", err)
	}
	if got.Big != "too_big" || !got.Small {
		t.Fatalf("over the limit: %q, want too_big; the emit in flight resolved with a msg_id: %v", got.Big, got.Small)
	}
	alice.waitFor("the small message", `hb.got.includes("small")`)
	if st := evalIn[hbState](alice, "read the page", `window.hb`); len(st.States) != 2 || st.States[1].Conn != conn {
		t.Fatalf("states %+v after the emits, want only connecting and open on %s", st.States, conn)
	}

	// The path goes silent. Nothing closes: only the heartbeat's absence
	// tells the page.
	bob := s.Dial("bob")
	frozen := time.Now()
	proxy.Freeze()
	bob.Send("sendMessage", map[string]string{"to": "alice", "text": "while away"}, "1")
	if f := bob.ExpectRef(wait, "1"); f.Event != "ack" {
		t.Fatalf("bob's message: %+v", f)
	}
	alice.waitFor("the socket taken for dead", `hb.states.some((s) => s.s === "connecting" && s.reason.startsWith("no frame from the gateway"))`)
	took := time.Since(frozen)
	// The last frame came at most an interval before the freeze; the page
	// waits interval + grace (1.5 s) after it. Without the heartbeat it
	// would wait for TCP to give up, minutes.
	if took < time.Second || took > 1500*time.Millisecond+5*time.Second {
		t.Errorf("dead socket seen %s after the path went silent, want within interval + grace (1.5 s) and a loaded host's slack", took)
	}
	t.Logf("the silent socket was dropped %s after the path froze", took)
	proxy.Thaw()
	alice.waitFor("open again, recovered", `hb.states.at(-1).s === "open" && hb.states.at(-1).recovered === true`)
	alice.waitFor("the message sent while away", `hb.got.includes("while away")`)
	if st := evalIn[hbState](alice, "read the page", `window.hb`); strings.Join(st.Got, "|") != "small|while away" {
		t.Errorf("the page got %q, want small and while away, once each", st.Got)
	}
}
