// Unit tests of client.js's prev parameter (docs/protocol.md section 6, an
// extension): a resume names the conn ids of the session's earlier
// sockets, the last 8, so that an event sent to "everyone but" one of
// them is not replayed to it. No gateway, no network.
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/prev.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { GATEWAY_URL as URL_, client, fakeSockets, jwt } from "./fake.mjs";

const prevKey = (user, url = URL_) => `switchboard ${url} ${user} prev`;

function memoryStorage() {
  const items = new Map();
  return {
    items,
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
}

test("prev: each resume names the session's earlier connections, the last 8, oldest first", async (t) => {
  const fake = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  assert.equal(s1.url.searchParams.has("prev"), false, "nothing before the first connection");
  s1.greet("alice", { pos: "e1.1-1", conn: "w0-1" });
  s1.drop(1006);
  const s2 = await fake.socket(2);
  assert.equal(s2.url.searchParams.get("prev"), "w0-1");
  // A socket lost before its greeting adds nothing.
  s2.drop(1006);
  let s = await fake.socket(3);
  assert.equal(s.url.searchParams.get("prev"), "w0-1");
  for (let i = 2; i <= 10; i++) {
    s.greet("alice", { pos: "e1.1-1", conn: `w1-${i}`, recovered: true, missed: 0 });
    s.drop(1006);
    s = await fake.socket(fake.made.length + 1);
  }
  const want = Array.from({ length: 8 }, (_, i) => `w1-${i + 3}`).join(",");
  assert.equal(s.url.searchParams.get("prev"), want, "the last 8");
  // A conn id the gateway would not take is not kept.
  s.greet("alice", { pos: "e1.1-1", conn: "bad id", recovered: true, missed: 0 });
  s.drop(1006);
  assert.equal((await fake.socket(fake.made.length + 1)).url.searchParams.get("prev"), want);
});

test("prev: another user's session starts none", async (t) => {
  const fake = fakeSockets();
  const tokens = [jwt("alice"), jwt("bob")];
  let n = 0;
  client(t, { getToken: async () => tokens[Math.min(n++, 1)], WebSocket: fake.WebSocket, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-1", conn: "w0-1" });
  s1.drop(1006);
  const s2 = await fake.socket(2);
  assert.equal(s2.url.searchParams.has("prev"), false, "bob's resume names none of alice's connections");
  s2.greet("bob", { pos: "e2.1-1", conn: "w0-2" });
  s2.drop(1006);
  assert.equal((await fake.socket(3)).url.searchParams.get("prev"), "w0-2");
});

test("prev: with storage, a reloaded page names the connections before the reload", async (t) => {
  const storage = memoryStorage();
  {
    const fake = fakeSockets();
    const before = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
    (await fake.socket(1)).greet("alice", { pos: "e1.1-3", conn: "w0-7" });
    before.close();
  }
  assert.equal(storage.getItem(prevKey("alice")), "w0-7");
  const fake = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  const s1 = await fake.socket(1);
  assert.equal(s1.url.searchParams.get("prev"), "w0-7");
  assert.equal(s1.url.searchParams.get("resume"), "e1.1-3");
  // Unreadable ids in storage are dropped.
  storage.setItem(prevKey("carol"), "ok-1,bad id,,ok-2");
  const fc = fakeSockets();
  client(t, { token: jwt("carol"), WebSocket: fc.WebSocket, storage });
  assert.equal((await fc.socket(1)).url.searchParams.get("prev"), "ok-1,ok-2");
});

// inBrowser makes the rest of test t look like a browser's window to the
// client: "onpagehide" in globalThis and the window's events; it returns
// fire(name).
function inBrowser(t) {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  globalThis.onpagehide = null;
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    delete globalThis.onpagehide;
  });
  return (name) => target.dispatchEvent(new Event(name));
}

// copyOf returns a storage holding what storage holds, as a browser's
// "Duplicate tab" or window.open gives the new tab.
function copyOf(storage) {
  const copy = memoryStorage();
  for (const [k, v] of storage.items) copy.items.set(k, v);
  return copy;
}

test("prev: in a browser, a copy of a shown page's storage resumes without that page's connections", async (t) => {
  const fire = inBrowser(t);
  const storage = memoryStorage();
  const fake = fakeSockets();
  const first = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  (await fake.socket(1)).greet("alice", { pos: "e1.1-3", conn: "w0-7" });
  assert.equal(storage.getItem(prevKey("alice")), "w0-7");

  // A tab duplicated from it while it is shown.
  const dup = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: dup.WebSocket, storage: copyOf(storage) });
  const d1 = await dup.socket(1);
  assert.equal(d1.url.searchParams.has("prev"), false, "the copy names the first tab's live connection");
  assert.equal(d1.url.searchParams.get("resume"), "e1.1-3", "the copy still resumes from the positions");
  // Its own connections it names, as any page.
  d1.greet("alice", { pos: "e1.1-3", conn: "w1-8", recovered: true, missed: 0 });
  d1.drop(1006);
  assert.equal((await dup.socket(2)).url.searchParams.get("prev"), "w1-8");

  // The first page is reloaded: it goes away ("pagehide"); an event that
  // reaches it after that does not mark its ids held again.
  fire("pagehide");
  (await fake.socket(1)).event("e1.1-4");
  assert.equal(storage.getItem(prevKey("alice")), "w0-7");
  first.close();
  const again = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: again.WebSocket, storage });
  const a1 = await again.socket(1);
  assert.equal(a1.url.searchParams.get("prev"), "w0-7", "the reloaded page names the connection before the reload");
  assert.equal(a1.url.searchParams.get("resume"), "e1.1-4");
});

test("prev: in a browser, a page back from the back/forward cache holds its ids again; a closed client frees them", async (t) => {
  const fire = inBrowser(t);
  const storage = memoryStorage();
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  (await fake.socket(1)).greet("alice", { pos: "e1.1-3", conn: "w0-7" });
  fire("pagehide");
  fire("pageshow");
  {
    const dup = fakeSockets();
    client(t, { token: jwt("alice"), WebSocket: dup.WebSocket, storage: copyOf(storage) }).close();
    assert.equal((await dup.socket(1)).url.searchParams.has("prev"), false, "a copy made after the page came back");
  }
  // A client the app closes lets the next one on the page go on.
  sb.close();
  const next = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: next.WebSocket, storage });
  assert.equal((await next.socket(1)).url.searchParams.get("prev"), "w0-7");
});

// A client closed for good by the gateway (a backend's disconnect, 4003;
// a refused token) ends as close() does, but without close()'s release:
// its page's ids stay held, and with the page's listeners gone, a
// "pagehide" no longer frees them. Before the held mark, the next client
// on the page and the page after a reload named them, as they should: the
// page is the same device, its old connections are its own.
test("prev: in a browser, a client closed for good by the gateway (4003) frees its ids for the next client on the page", async (t) => {
  inBrowser(t);
  const storage = memoryStorage();
  const fake = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3", conn: "w0-7" });
  s1.drop(4003, "signed out by the app");
  // The app signs the user in again: a new client on the same page.
  const next = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: next.WebSocket, storage });
  const n1 = await next.socket(1);
  assert.equal(n1.url.searchParams.get("resume"), "e1.1-3");
  assert.equal(n1.url.searchParams.get("prev"), "w0-7", "the page's own connection, held by its closed client");
});

test("prev: in a browser, a page whose client the gateway closed for good (4003) names its ids after a reload", async (t) => {
  const fire = inBrowser(t);
  const storage = memoryStorage();
  const fake = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3", conn: "w0-7" });
  s1.drop(4003, "signed out by the app");
  // The user reloads the page.
  fire("pagehide");
  const again = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: again.WebSocket, storage });
  const a1 = await again.socket(1);
  assert.equal(a1.url.searchParams.get("resume"), "e1.1-3");
  assert.equal(a1.url.searchParams.get("prev"), "w0-7", "the reloaded page's own connection, held since before the reload");
});

// A browser that discards a tab to save memory (Chrome's Memory Saver,
// Chrome on Android with the tab in the background) ends its page
// without "pagehide", keeping its sessionStorage, and reloads it when the
// user comes back, with document.wasDiscarded true. The held mark is then
// the discarded page's: the page that replaces it is the same tab, whose
// connections they were, and named them before the held mark.
test("prev: in a browser, a discarded tab, reloaded, names the connections of the page it replaced", async (t) => {
  inBrowser(t);
  const storage = memoryStorage();
  const fake = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  (await fake.socket(1)).greet("alice", { pos: "e1.1-3", conn: "w0-7" });
  // Discarded: no "pagehide", no close(); the page is gone. Reloaded:
  globalThis.document = { wasDiscarded: true, visibilityState: "visible" };
  t.after(() => delete globalThis.document);
  const again = fakeSockets();
  client(t, { token: jwt("alice"), WebSocket: again.WebSocket, storage });
  const a1 = await again.socket(1);
  assert.equal(a1.url.searchParams.get("resume"), "e1.1-3");
  assert.equal(a1.url.searchParams.get("prev"), "w0-7", "the discarded page's connection, this tab's own");
});
