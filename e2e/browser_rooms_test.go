package e2e

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestResultsAndRoomsInBrowser drives the demo page in headless Chromium:
// emit resolves with sendMessage's result in a real browser (the page
// ticks the bubble whose msg_id the result names), and two users join a
// room from the page and chat in it, alice's second tab, never joined
// itself, seeing it too: membership is the user's, not the tab's.
// Screenshots go to artifactsDir.
func TestResultsAndRoomsInBrowser(t *testing.T) {
	chrome := needTool(t, "chromium (Debian package chromium)", "chromium", "chromium-browser", "google-chrome")
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_DEV=1"}})
	dir := artifactsDir(t)
	base := "http://" + s.Addr + "/"

	browser := startBrowser(t, chrome)
	open := func(name, user string) *tab {
		t.Helper()
		tb := openTab(t, browser, dir, base, name, user)
		tb.waitOpen("")
		return tb
	}
	alice, alice2, bob := open("alice", "alice"), open("alice-2", "alice"), open("bob", "bob")

	// The result of sendMessage, in the browser: the page keeps the msg_id
	// emit resolved with, and ticks the bubble that has it.
	alice.send("bob", "does the ack carry the id?")
	bob.waitMessage("in", "does the ack carry the id?")
	alice.waitFor("the sent bubble named by the result is ticked", `(() => {
		const id = document.body.dataset.lastSent;
		const li = id && document.querySelector('#messages li.sent[data-msg-id="' + id + '"]');
		return /^[0-9a-f]{32}$/.test(id ?? "") && li && li.classList.contains("acked") &&
			li.querySelector(".text").textContent === "does the ack carry the id?";
	})()`)

	join := func(tb *tab, room string, members int) {
		t.Helper()
		tb.do("join "+room,
			chromedp.SendKeys(chromedp.ID("room"), room),
			chromedp.Click(chromedp.ID("join-room")),
		)
		tb.waitFor(fmt.Sprintf("in %s with %d members", room, members), fmt.Sprintf(
			`document.body.dataset.room === %s && document.getElementById("room-status").textContent.includes("%d member")`,
			jsString(room), members))
	}
	sendRoom := func(tb *tab, text string) {
		t.Helper()
		tb.do("send to the room: "+text,
			chromedp.SendKeys(chromedp.ID("room-text"), text),
			chromedp.Click(chromedp.ID("room-send")),
		)
		tb.waitFor("the room form cleared after the ack", `document.getElementById("room-text").value === ""`)
	}
	waitRoomMessage := func(tb *tab, text string) {
		t.Helper()
		tb.waitFor("room message "+text, fmt.Sprintf(
			`[...document.querySelectorAll("#messages li.msg.room")].some(li => li.querySelector(".text").textContent === %s)`, jsString(text)))
	}

	join(alice, "lobby", 1)
	join(bob, "lobby", 2)
	alice.waitFor("bob joined, and the count with him", `[...document.querySelectorAll("#messages li.sys")].some(li => li.textContent === "bob joined #lobby") &&
		document.getElementById("room-status").textContent.includes("2 members")`)
	sendRoom(bob, "hello lobby")
	for _, tb := range []*tab{alice, alice2, bob} {
		waitRoomMessage(tb, "hello lobby")
	}
	sendRoom(alice, "hi bob, from the room")
	waitRoomMessage(bob, "hi bob, from the room")
	waitRoomMessage(alice2, "hi bob, from the room")
	for _, tb := range []*tab{alice, alice2, bob} {
		tb.shot("room")
	}

	// Leaving: bob is told, and the room's next message does not reach him.
	bob.do("leave the room", chromedp.Click(chromedp.ID("leave-room")))
	bob.waitFor("out of the room", `document.body.dataset.room === "" && document.getElementById("room-send-form").hidden`)
	alice.waitFor("bob left", `[...document.querySelectorAll("#messages li.sys")].some(li => li.textContent === "bob left #lobby")`)
	sendRoom(alice, "bob is gone")
	waitRoomMessage(alice2, "bob is gone")
	alice.send("bob", "marker after the room message")
	bob.waitMessage("in", "marker after the room message")
	if n, err := chromedp.Run(bob.ctx, chromedp.Evaluate[int](
		`[...document.querySelectorAll("#messages li.msg.room")].filter(li => li.querySelector(".text").textContent === "bob is gone").length`)); err != nil || n != 0 {
		t.Fatalf("bob, out of the room, shows its message %d times (%v)", n, err)
	}
}
