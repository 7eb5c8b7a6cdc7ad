// Tests of client.js's recovery (docs/protocol.md section 6) under Node
// against real gateway stacks. Run by e2e/jsclient_test.go (TestClientJS),
// which starts two stacks in dev mode and a control server, and sets
//   SB_URL, SB_HTTP              the main stack (socket URL, http://HOST:PORT)
//   SB_SHORT_URL, SB_SHORT_HTTP  a stack with HISTORY_WINDOW=1s
//   SB_CONTROL                   the control server: POST /flushall empties
//                                the main stack's Redis; POST /broadcast
//                                broadcasts a "news" event there; POST
//                                /expired?user=U answers once U's stream on
//                                the short stack has expired; POST
//                                /disconnect?user=U&reason=R&reconnect=1
//                                publishes a backend's disconnect of U
// The tests of a file run one after another, so /flushall disturbs no
// other test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { within, next, stateWhere } from "./wait.mjs";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set: run through go test ./e2e -run TestClientJS`);
  return v;
}
const MAIN = { url: env("SB_URL"), http: env("SB_HTTP") };
const SHORT = { url: env("SB_SHORT_URL"), http: env("SB_SHORT_HTTP") };
const CONTROL = env("SB_CONTROL");

let seq = 0;
const uniqueUser = (name) => `${name}-${process.pid}-${++seq}`;

async function token(stack, user) {
  const res = await fetch(`${stack.http}/dev/token?user=${encodeURIComponent(user)}`);
  assert.equal(res.status, 200, "GET /dev/token");
  return (await res.json()).token;
}

// control asks the Go test to do what, and resolves once it is done.
async function control(what) {
  const res = await fetch(`${CONTROL}/${what}`, { method: "POST", signal: AbortSignal.timeout(40_000) });
  assert.equal(res.status, 200, `control ${what}: ${await res.text()}`);
}

// parsePos reads a position "<epoch>.<ms>-<off>" as {epoch, off}.
function parsePos(p) {
  const m = /^([0-9a-z]{1,32})\.\d+-(\d+)$/.exec(p ?? "");
  assert.ok(m, `not a position: ${p}`);
  return { epoch: m[1], off: Number(m[2]) };
}

// assertInOrder checks that the events got are consecutive offsets of one
// epoch: each once, none skipped, in stream order.
function assertInOrder(got) {
  const at = got.map((m) => parsePos(m.pos));
  for (let i = 1; i < at.length; i++) {
    assert.equal(at[i].epoch, at[0].epoch, `event ${i} in another epoch: ${got.map((m) => m.pos)}`);
    assert.equal(at[i].off, at[i - 1].off + 1, `event ${i} out of order: ${got.map((m) => m.pos)}`);
  }
}

// device is a client of user on stack whose sockets the test can drop, as
// a network would, and keep away: while away, getToken waits. It records
// the messages that reach the app, as {text, pos}.
function device(t, stack, user, opts = {}) {
  const sockets = [];
  class Tracked extends globalThis.WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  let away = null; // {promise, resolve} while the device is kept away
  const sb = connect({
    url: stack.url,
    WebSocket: Tracked,
    minReconnectDelay: 20,
    maxReconnectDelay: 100,
    getToken: async () => {
      await away?.promise;
      return token(stack, user);
    },
    ...opts,
  });
  t.after(() => sb.close());
  const got = [];
  const waiters = new Set();
  sb.on("message", (args, frame) => {
    got.push({ text: args.text, pos: frame.pos });
    for (const w of [...waiters]) w();
  });
  return {
    sb,
    got,
    sockets,
    texts: () => got.map((m) => m.text),
    // has resolves once n messages have reached the app.
    has(n) {
      return within(new Promise((resolve) => {
        const check = () => {
          if (got.length < n) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      }), `${n} messages at ${user} (got ${got.length})`);
    },
    // open resolves with the info of the next "open" that reports whether
    // it recovered (a resume).
    open: () => within(stateWhere(sb, (s, info) => s === "open" && info.recovered !== undefined), "resumed open").then(([, info]) => info),
    // leave drops the socket and keeps the device away until back().
    async leave() {
      let resolve;
      away = { promise: new Promise((r) => { resolve = r; }) };
      away.resolve = resolve;
      const gone = stateWhere(sb, (s) => s === "connecting");
      sockets.at(-1).close();
      await within(gone, "connecting after the drop");
    },
    back() {
      const opened = this.open();
      away.resolve();
      away = null;
      return opened;
    },
  };
}

// sender is a client of a fresh user on stack that sends messages; each
// send resolves on the ack, once the message is in its recipient's stream.
function sender(t, stack) {
  const user = uniqueUser("alice");
  const sb = connect({ url: stack.url, getToken: () => token(stack, user) });
  t.after(() => sb.close());
  return (to, ...texts) => Promise.all(texts.map((text) => within(sb.emit("sendMessage", { to, text }), `ack of ${text}`)));
}

// memoryStorage is a sessionStorage stand-in over a Map.
function memoryStorage() {
  const items = new Map();
  return {
    items,
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
}

test("resume after a drop: recovered, with the events missed once and in order", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  const b = device(t, MAIN, bob);
  const send = sender(t, MAIN);
  const [, first] = await within(stateWhere(b.sb, (s) => s === "open"), "open");
  assert.equal(first.recovered, undefined, "a first connection resumes nothing");
  for (const text of ["m1", "m2"]) await send(bob, text);
  await b.has(2);

  await b.leave();
  for (const text of ["m3", "m4", "m5"]) await send(bob, text);
  const info = await b.back();
  assert.deepEqual([info.recovered, info.missed], [true, 3]);
  assert.equal(new URL(b.sockets[1].url).searchParams.get("resume"), b.got[1].pos, "resumed after the last event processed");
  await b.has(5);
  await send(bob, "m6");
  await b.has(6);

  // Away with nothing missed: recovered, nothing replayed.
  await b.leave();
  const again = await b.back();
  assert.deepEqual([again.recovered, again.missed], [true, 0]);
  await send(bob, "m7");
  await b.has(7);
  assert.deepEqual(b.texts(), ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
  assertInOrder(b.got);
});

test("a drop in the middle of a burst: every event once, in stream order", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  const b = device(t, MAIN, bob);
  const send = sender(t, MAIN);
  await within(stateWhere(b.sb, (s) => s === "open"), "open");
  // The socket drops when the 5th event reaches the app, while the others
  // are on their way: some reach the old socket, some come while the
  // client is away; the resume must bring each of them once.
  const resumed = b.open();
  b.sb.on("message", () => {
    if (b.got.length === 5) b.sockets.at(-1).close();
  });
  const texts = Array.from({ length: 30 }, (_, i) => `burst ${i}`);
  await send(bob, ...texts);
  const info = await resumed;
  assert.equal(info.recovered, true);
  await b.has(texts.length);
  await send(bob, "after");
  await b.has(texts.length + 1);
  // Emits run concurrently, so stream order need not be the order sent.
  assert.deepEqual([...b.texts()].sort(), [...texts, "after"].sort());
  assert.equal(b.texts().at(-1), "after");
  assertInOrder(b.got);
});

test("recovered false for positions the stream does not have: the client carries on from the gateway's", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  const send = sender(t, MAIN);
  const storage = memoryStorage();
  const b1 = device(t, MAIN, bob, { storage });
  await within(stateWhere(b1.sb, (s) => s === "open"), "open");
  await send(bob, "m1");
  await b1.has(1);
  b1.sb.close();
  const [key] = storage.items.keys();
  const stored = JSON.parse(storage.getItem(key));
  assert.equal(stored.pos, b1.got[0].pos, "the stored position is the last processed");
  const { epoch, off } = parsePos(stored.pos);

  // A position of another epoch (a stream the store no longer has), then
  // one ahead of the stream in its own epoch.
  const cases = [["another epoch", "zz0foreign.1-1"], ["ahead", `${epoch}.1-${off + 50}`]];
  for (const [i, [what, pos]] of cases.entries()) {
    storage.setItem(key, JSON.stringify({ ...stored, pos }));
    const b = device(t, MAIN, bob, { storage });
    const info = await b.open();
    assert.deepEqual([info.recovered, info.missed], [false, 0], what);
    assert.equal(JSON.parse(storage.getItem(key)).pos, stored.pos, `${what}: the client stores the gateway's position`);
    // What comes next reaches the app: the client does not take it for
    // one it had.
    await send(bob, `after ${what}`);
    await b.has(1);
    assert.deepEqual(b.texts(), [`after ${what}`], what);
    assert.equal(parsePos(b.got[0].pos).off, off + 1 + i, what);
    b.sb.close();
    stored.pos = b.got[0].pos;
  }
});

test("recovered false once the history window has passed; nothing is replayed", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  const send = sender(t, SHORT);
  const storage = memoryStorage();
  const b1 = device(t, SHORT, bob, { storage });
  await within(stateWhere(b1.sb, (s) => s === "open"), "open");
  await send(bob, "m1");
  await b1.has(1);
  b1.sb.close(); // the page is gone; its storage stays
  await send(bob, "m2 (missed)");
  await control(`expired?user=${encodeURIComponent(bob)}`); // about 11 s: the window and Redis's expiry

  const b2 = device(t, SHORT, bob, { storage });
  const info = await b2.open();
  assert.deepEqual([info.recovered, info.missed], [false, 0]);
  await send(bob, "m3");
  await b2.has(1);
  assert.deepEqual(b2.texts(), ["m3"], "an expired event replayed");
});

test("resync: a store that lost events is announced, and the client carries on from its position", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  const b = device(t, MAIN, bob);
  const send = sender(t, MAIN);
  const resyncs = [];
  b.sb.on("resync", (args) => resyncs.push(args));
  const news = [];
  b.sb.on("news", (args, frame) => news.push(frame.bpos));
  await within(stateWhere(b.sb, (s) => s === "open"), "open");
  await send(bob, "m1");
  await b.has(1);

  await control("flushall"); // Redis lost everything, as after a restart without persistence
  const resync = within(next(b.sb, "resync"), "resync of bob's stream");
  await send(bob, "m2");
  const { args } = await resync;
  assert.equal(args.reason, "store lost events");
  assert.equal(args.bpos, undefined);
  const at = parsePos(args.pos);
  assert.notEqual(at.epoch, parsePos(b.got[0].pos).epoch, "the resync names the new epoch");
  // The gateway carries on from the stream's top, which m2 is: m2 is what
  // the app reloads, not an event it gets.
  await send(bob, "m3");
  await b.has(2);
  assert.deepEqual(b.texts(), ["m1", "m3"]);
  assert.deepEqual(parsePos(b.got[1].pos), { epoch: at.epoch, off: at.off + 1 });

  // The broadcast stream was lost too: its next event is announced the
  // same way.
  const bresync = within(next(b.sb, "resync"), "resync of the broadcast stream");
  await control("broadcast");
  const { args: bargs } = await bresync;
  assert.equal(bargs.reason, "store lost events");
  // It also names the socket's place in bob's stream, unmoved: m3's.
  assert.equal(bargs.pos, b.got[1].pos);
  const heard = within(next(b.sb, "news"), "the next broadcast");
  await control("broadcast");
  await heard;
  assert.deepEqual(parsePos(news[0]), { ...parsePos(bargs.bpos), off: parsePos(bargs.bpos).off + 1 });

  // The client resumes from where the resyncs put it, and recovers.
  await b.leave();
  await send(bob, "m4");
  const info = await b.back();
  const params = new URL(b.sockets.at(-1).url).searchParams;
  assert.deepEqual([params.get("resume"), params.get("bresume")], [b.got[1].pos, news[0]]);
  assert.deepEqual([info.recovered, info.missed], [true, 1]);
  await b.has(3);
  assert.deepEqual(b.texts(), ["m1", "m3", "m4"]);
  assert.equal(resyncs.length, 2);
  assertInOrder(b.got.slice(1));
});

test("a backend's disconnect: 4002 reconnects at once with a fresh token and resumes; 4003 stops for good", { timeout: 60_000 }, async (t) => {
  const bob = uniqueUser("bob");
  let tokens = 0;
  // A back-off of a minute: only an at-once reconnect makes a second socket.
  const b = device(t, MAIN, bob, { minReconnectDelay: 60_000, getToken: async () => { tokens++; return token(MAIN, bob); } });
  const send = sender(t, MAIN);
  await within(stateWhere(b.sb, (s) => s === "open"), "open");
  await send(bob, "m1");
  await b.has(1);

  const dropped = stateWhere(b.sb, (s, info) => s === "connecting" && info.code === 4002);
  const reopened = b.open();
  await control(`disconnect?user=${encodeURIComponent(bob)}&reconnect=1`);
  const [, retry] = await within(dropped, "connecting after 4002");
  assert.equal(retry.delay, 0);
  const info = await reopened;
  assert.equal(info.recovered, true);
  assert.equal(tokens, 2, "a fresh token for the reconnect");
  await send(bob, "m2");
  await b.has(2);

  const closed = stateWhere(b.sb, (s) => s === "closed");
  await control(`disconnect?user=${encodeURIComponent(bob)}&reason=banned`);
  const [, final] = await within(closed, "closed after 4003");
  assert.deepEqual(final, { reason: "banned", code: 4003 });
  const late = await b.sb.emit("sendMessage", { text: "late" }).catch((e) => e);
  assert.equal(late.code, "closed");
  assert.equal(b.sockets.length, 2, "no socket after 4003");
  assert.deepEqual(b.texts(), ["m1", "m2"]);
});
