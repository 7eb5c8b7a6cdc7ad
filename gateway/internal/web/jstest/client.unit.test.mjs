// Unit tests of client.js's recovery (docs/protocol.md section 6): no
// gateway, no network. Each test passes a scripted fake WebSocket class as
// opts.WebSocket and plays the gateway's side itself: the "connected"
// frame, events with positions, resync frames and close codes.
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/client.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { GATEWAY_URL as URL_, NEVER, client, fakeSockets, jwt, within } from "./fake.mjs";

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

// states records every state onState reports, as [state, info].
function states(sb) {
  const seen = [];
  sb.onState((s, info) => seen.push([s, info]));
  return seen;
}

// received records the events of the given names that reach the app, as
// "event pos-or-bpos".
function received(sb, ...events) {
  const got = [];
  for (const e of events) sb.on(e, (_, f) => got.push(`${e} ${f.pos ?? f.bpos ?? "-"}`));
  return got;
}

const key = (user, url = URL_) => `switchboard ${url} ${user}`;

test("positions: the client starts at connected's and moves after the app has each event", async (t) => {
  const fake = fakeSockets();
  const storage = memoryStorage();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.100-5", bpos: "b1.100-7" });
  assert.deepEqual(JSON.parse(storage.getItem(key("alice"))), { pos: "e1.100-5", bpos: "b1.100-7" });

  // While the app's listener runs, the event is not yet counted processed.
  const during = [];
  sb.on("message", () => during.push(JSON.parse(storage.getItem(key("alice"))).pos));
  s1.frame({ event: "message", id: "alice", args: { text: "a" }, pos: "e1.101-6" });
  assert.deepEqual(during, ["e1.100-5"]);
  assert.equal(JSON.parse(storage.getItem(key("alice"))).pos, "e1.101-6");

  // A broadcast moves bpos only; an event nobody listens to moves it too; a
  // transient event (no position) moves nothing.
  s1.frame({ event: "news", id: "alice", args: {}, bpos: "b1.102-8" });
  s1.frame({ event: "unheard", id: "alice", args: {}, pos: "e1.103-7" });
  s1.frame({ event: "message", id: "alice", args: { text: "to this conn" } });
  assert.deepEqual(JSON.parse(storage.getItem(key("alice"))), { pos: "e1.103-7", bpos: "b1.102-8" });
  assert.equal(during.length, 2, "the transient message reached the app");
});

test("resume: every reconnect carries the last positions processed and a fresh token", async (t) => {
  const fake = fakeSockets();
  const tokens = [jwt("alice", { n: 1 }), jwt("alice", { n: 2 }), jwt("alice", { n: 3 })];
  let calls = 0;
  client(t, { getToken: async () => tokens[calls++], WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const s1 = await fake.socket(1);
  assert.deepEqual(s1.params, { token: tokens[0] }, "nothing to resume on the first connection");
  s1.greet("alice", { pos: "e1.100-5", bpos: "b1.100-7" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.101-6" });
  s1.drop(1006);

  const s2 = await fake.socket(2);
  assert.deepEqual(s2.params, { token: tokens[1], resume: "e1.101-6", bresume: "b1.100-7" });
  // A gateway with recovery off sends no positions: nothing to resume after it.
  s2.greet("alice", { recovered: false, missed: 0 });
  s2.frame({ event: "message", id: "alice", args: {} });
  s2.drop(1006);
  const s3 = await fake.socket(3);
  assert.deepEqual(s3.params, { token: tokens[2] });
});

test("resume: positions go only with a token of their own user", async (t) => {
  const fake = fakeSockets();
  const tokens = [jwt("alice"), jwt("bob"), "not-a-jwt", jwt("alice"), "a.%%%.b"];
  let calls = 0;
  client(t, { getToken: () => tokens[calls++], WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-5" });
  s1.drop(1006);
  // bob's token: alice's positions stay at home.
  const s2 = await fake.socket(2);
  assert.deepEqual(s2.params, { token: tokens[1] });
  s2.greet("bob", { pos: "e7.1-70" });
  s2.drop(1006);
  // A token the client cannot read names nobody: no positions at all.
  const s3 = await fake.socket(3);
  assert.deepEqual(s3.params, { token: "not-a-jwt" });
  s3.greet("alice", { pos: "e1.1-9" });
  s3.drop(1006);
  // alice again: her positions, from the socket that said it was hers.
  const s4 = await fake.socket(4);
  assert.deepEqual(s4.params, { token: tokens[3], resume: "e1.1-9" });
  s4.greet("alice", { pos: "e1.1-9" });
  s4.drop(1006);
  const s5 = await fake.socket(5);
  assert.deepEqual(s5.params, { token: "a.%%%.b" }, "a payload that is not base64");
});

test("duplicates: an event at or before the last offset of its epoch is dropped", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket });
  const got = received(sb, "message", "news");
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.10-3", bpos: "b1.10-50" });
  const at = (pos) => s1.frame({ event: "message", id: "alice", args: {}, pos });
  at("e1.11-4");
  at("e1.11-4"); // twice
  at("e1.9-2"); // before connected's position
  at("e1.12-5");
  // The broadcast stream has offsets of its own.
  s1.frame({ event: "news", id: "alice", args: {}, bpos: "b1.12-51" });
  s1.frame({ event: "news", id: "alice", args: {}, bpos: "b1.12-51" });
  // A new epoch (the store was lost) starts over.
  at("e2.20-1");
  at("e2.20-1");
  // Positions the client cannot read are opaque: passed on, never dropped,
  // never an exception.
  at("E3.1-1");
  at("E3.1-1");
  at("e2.20-1x");
  at(`e2.20-${"9".repeat(20)}`);
  at("");
  at(42);
  at("e".repeat(129));
  assert.deepEqual(got, [
    "message e1.11-4",
    "message e1.12-5",
    "news b1.12-51",
    "message e2.20-1",
    "message E3.1-1",
    "message E3.1-1",
    "message e2.20-1x",
    `message e2.20-${"9".repeat(20)}`,
    "message ",
    "message 42",
    `message ${"e".repeat(129)}`,
  ]);
});

test("duplicates: a replayed event the app had before the drop is dropped", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const got = received(sb, "message");
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-1" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-2" });
  s1.drop(1006);
  const s2 = await fake.socket(2);
  assert.equal(s2.params.resume, "e1.1-2");
  // A gateway that replays from too far back: what the app had is dropped.
  s2.greet("alice", { pos: "e1.1-1", recovered: true, missed: 2 });
  s2.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-2" });
  s2.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-3" });
  assert.deepEqual(got, ["message e1.1-2", "message e1.1-3"]);
});

test("recovered and missed reach onState's info when the client resumed", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const seen = states(sb);
  const got = received(sb, "message");
  const opened = () => seen.filter(([s]) => s === "open").map(([, info]) => info);

  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-4" });
  assert.deepEqual(opened(), [{ worker: 0, conn: "conn-1" }], "no recovered without a resume");
  s1.drop(1006);

  // Recovered: the missed events follow connected.
  const s2 = await fake.socket(2);
  s2.greet("alice", { pos: "e1.1-4", recovered: true, missed: 2 });
  s2.frame({ event: "message", id: "alice", args: {}, pos: "e1.2-5" });
  s2.frame({ event: "message", id: "alice", args: {}, pos: "e1.2-6" });
  assert.deepEqual(opened()[1], { worker: 0, conn: "conn-2", recovered: true, missed: 2 });
  s2.drop(1006);

  // Not recovered: the client carries on from where the gateway says.
  const s3 = await fake.socket(3);
  assert.equal(s3.params.resume, "e1.2-6");
  s3.greet("alice", { pos: "e2.9-1", recovered: false, missed: 0 });
  s3.frame({ event: "message", id: "alice", args: {}, pos: "e2.9-2" });
  assert.deepEqual(opened()[2], { worker: 0, conn: "conn-3", recovered: false, missed: 0 });
  s3.drop(1006);

  // A gateway that ignores the resume replayed nothing: not recovered.
  const s4 = await fake.socket(4);
  assert.equal(s4.params.resume, "e2.9-2");
  s4.greet("alice");
  assert.deepEqual(opened()[3], { worker: 0, conn: "conn-4", recovered: false });
  assert.deepEqual(got, ["message e1.2-5", "message e1.2-6", "message e2.9-2"]);
});

test("not recovered from a position ahead of the stream: the gateway's position wins", async (t) => {
  // The stream of e1 is at offset 4 while the client resumes from 9 (a
  // position the stream never had): the events 5 to 9 that follow are new.
  const fake = fakeSockets();
  const storage = memoryStorage();
  storage.setItem(key("alice"), JSON.stringify({ pos: "e1.1-9" }));
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage, minReconnectDelay: 5 });
  const got = received(sb, "message");
  const s1 = await fake.socket(1);
  assert.equal(s1.params.resume, "e1.1-9");
  s1.greet("alice", { pos: "e1.1-4", recovered: false, missed: 0 });
  assert.equal(JSON.parse(storage.getItem(key("alice"))).pos, "e1.1-4");
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.2-5" });
  assert.deepEqual(got, ["message e1.2-5"]);
  s1.drop(1006);
  assert.equal((await fake.socket(2)).params.resume, "e1.2-5");
});

test("resync reaches on('resync'); the client carries on from its position", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const got = received(sb, "message");
  const resyncs = [];
  sb.on("resync", (args, frame) => resyncs.push([args, frame.event]));
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-5", bpos: "b1.1-1" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-6" });
  s1.frame({ event: "resync", id: "alice", args: { pos: "e1.5-20", reason: "gap not in history" } });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-7" }); // before the resync's position
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.6-21" });
  // A resync of the broadcast stream leaves the user's alone.
  s1.frame({ event: "resync", id: "alice", args: { bpos: "b2.9-1", reason: "store lost" } });
  assert.deepEqual(resyncs, [
    [{ pos: "e1.5-20", reason: "gap not in history" }, "resync"],
    [{ bpos: "b2.9-1", reason: "store lost" }, "resync"],
  ]);
  assert.deepEqual(got, ["message e1.1-6", "message e1.6-21"]);
  s1.drop(1006);
  const s2 = await fake.socket(2);
  assert.equal(s2.params.resume, "e1.6-21");
  assert.equal(s2.params.bresume, "b2.9-1");
});

test("4001 token expired: reconnects at once with a fresh token, and resumes", async (t) => {
  const fake = fakeSockets();
  let calls = 0;
  const sb = client(t, { getToken: async () => jwt("alice", { n: ++calls }), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
  const seen = states(sb);
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-4" });
  s1.drop(4001, "token expired");
  const s2 = await fake.socket(2);
  const [, retry] = seen.find(([s, i]) => s === "connecting" && i.code === 4001);
  assert.equal(retry.delay, 0);
  assert.equal(calls, 2, "getToken called again");
  assert.deepEqual(s2.params, { token: jwt("alice", { n: 2 }), resume: "e1.1-4" });

  // Closed again before the connection lasted stableAfter: no tight loop,
  // the back-off applies.
  s2.greet("alice", { pos: "e1.1-4", recovered: true, missed: 0 });
  s2.drop(4001, "token expired");
  const [, again] = seen.findLast(([s]) => s === "connecting");
  assert.equal(again.attempt, 2);
  assert.ok(again.delay > 0, `delay ${again.delay}`);
});

test("4002 reconnect: a backend's request, reconnects at once with a fresh token, and resumes", async (t) => {
  const fake = fakeSockets();
  let calls = 0;
  const sb = client(t, { getToken: async () => jwt("alice", { n: ++calls }), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
  const seen = states(sb);
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-4" });
  s1.drop(4002, "reconnect");
  const s2 = await fake.socket(2);
  const [, retry] = seen.find(([s, i]) => s === "connecting" && i.code === 4002);
  assert.equal(retry.delay, 0);
  assert.equal(calls, 2, "getToken called again");
  assert.deepEqual(s2.params, { token: jwt("alice", { n: 2 }), resume: "e1.1-4" });
});

// The gateway registers a socket for disconnects before it has read its
// streams and queued "connected", so a backend's 4002 can come first.
test("4002 before connected: reconnects at once too, without probing the upgrade", async (t) => {
  const fake = fakeSockets();
  let probes = 0;
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: NEVER, fetch: async () => (probes++, { status: 503 }) });
  const seen = states(sb);
  (await fake.socket(1)).drop(4002, "reconnect");
  const [, retry] = seen.find(([s, i]) => s === "connecting" && i.code === 4002);
  assert.equal(retry.delay, 0);
  await fake.socket(2);
  assert.equal(probes, 0);
});

test("4003 disconnected: a backend's, stops for good with the code and reason", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1 });
  const seen = states(sb);
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3" });
  const sent = sb.emit("sendMessage", { text: "hi" });
  const waiting = sent.catch((err) => err);
  s1.drop(4003, "banned");
  const err = await within(waiting, "the emit's rejection");
  assert.equal(err.code, "disconnected", "the envelope was sent on the socket");
  const [state, info] = seen.at(-1);
  assert.equal(state, "closed");
  assert.deepEqual(info, { reason: "banned", code: 4003 });
  assert.ok(!seen.some(([s], i) => s === "connecting" && i > 1), "no attempt after the close");
  const late = await sb.emit("sendMessage", { text: "late" }).catch((e) => e);
  assert.equal(late.code, "closed");
  // Well past the 1 ms back-off: no second socket.
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fake.made.length, 1);
});

test("4003 before connected: stops too, without probing the upgrade", async (t) => {
  const fake = fakeSockets();
  let probes = 0;
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1, fetch: async () => (probes++, { status: 503 }) });
  const seen = states(sb);
  (await fake.socket(1)).drop(4003, "");
  assert.deepEqual(seen.at(-1), ["closed", { reason: "disconnected", code: 4003 }]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fake.made.length, 1);
  assert.equal(probes, 0);
});

test("1008 slow consumer: reconnects at once and resumes; 1008 for rate abuse backs off", async (t) => {
  t.mock.method(Math, "random", () => 0.5);
  {
    const fake = fakeSockets();
    const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
    const seen = states(sb);
    const s1 = await fake.socket(1);
    s1.greet("alice", { pos: "e1.1-3", bpos: "b1.1-9" });
    s1.drop(1008, "slow consumer: outgoing queue full");
    const s2 = await fake.socket(2);
    assert.equal(seen.findLast(([s]) => s === "connecting")[1].delay, 0);
    assert.deepEqual(s2.params, { token: jwt("alice"), resume: "e1.1-3", bresume: "b1.1-9" });
  }
  {
    const fake = fakeSockets();
    const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1000 });
    const seen = states(sb);
    (await fake.socket(1)).greet("alice", { pos: "e1.1-3" });
    fake.made[0].drop(1008, "rate limit exceeded");
    assert.equal(seen.findLast(([s]) => s === "connecting")[1].delay, 500);
  }
});

test("1013, 1001 and other closes back off, then resume", async (t) => {
  t.mock.method(Math, "random", () => 1); // the whole ceiling
  for (const [code, reason] of [[1013, "try again later"], [1001, "gateway shutting down"], [1006, ""]]) {
    const fake = fakeSockets();
    const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 30 });
    const seen = states(sb);
    const s1 = await fake.socket(1);
    s1.greet("alice", { pos: "e1.1-3" });
    s1.drop(code, reason);
    const [, retry] = seen.findLast(([s]) => s === "connecting");
    assert.deepEqual([retry.code, retry.attempt, retry.delay], [code, 1, 30], `close ${code}`);
    const s2 = await fake.socket(2);
    assert.equal(s2.params.resume, "e1.1-3", `close ${code}`);
    sb.close();
  }
});

test("storage: a reloaded page resumes from the stored positions of its user and url", async (t) => {
  const storage = memoryStorage();
  {
    const fake = fakeSockets();
    const before = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
    const s1 = await fake.socket(1);
    s1.greet("alice", { pos: "e1.1-3", bpos: "b1.1-9" });
    s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.2-4" });
    before.close(); // what the page held is gone; its storage is not
  }
  const firstParams = async (opts) => {
    const fake = fakeSockets();
    client(t, { WebSocket: fake.WebSocket, storage, ...opts });
    return (await fake.socket(1)).params;
  };
  // The reloaded page.
  assert.deepEqual(await firstParams({ token: jwt("alice") }), { token: jwt("alice"), resume: "e1.2-4", bresume: "b1.1-9" });
  // Another user, or another gateway, in the same tab: nothing to resume.
  assert.deepEqual(await firstParams({ token: jwt("bob") }), { token: jwt("bob") });
  assert.deepEqual(await firstParams({ token: jwt("alice"), url: "ws://other.test/socket" }), { token: jwt("alice") });
  // A relative or http URL names the same stored positions as its ws form.
  assert.deepEqual(await firstParams({ token: jwt("alice"), url: "http://gw.test/socket" }), { token: jwt("alice"), resume: "e1.2-4", bresume: "b1.1-9" });
  // What the client cannot read there is ignored.
  for (const junk of ["{", "null", "[]", `{"pos":7,"bpos":"b1.1-9"}`]) {
    storage.setItem(key("carol"), junk);
    const want = junk.includes("bpos") ? { token: jwt("carol"), bresume: "b1.1-9" } : { token: jwt("carol") };
    assert.deepEqual(await firstParams({ token: jwt("carol") }), want, junk);
  }
  // A gateway with recovery off: the stored positions are removed.
  {
    const fake = fakeSockets();
    client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage });
    (await fake.socket(1)).greet("alice");
    assert.equal(storage.getItem(key("alice")), null);
  }
});

test("storage: one that fails or is not a storage", async (t) => {
  // A storage that throws (full, or forbidden) costs the reload its resume,
  // nothing more: the client still resumes from memory.
  const broken = { getItem() { throw new Error("denied"); }, setItem() { throw new Error("full"); }, removeItem() { throw new Error("denied"); } };
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, storage: broken, minReconnectDelay: 5 });
  const got = received(sb, "message");
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3" });
  s1.frame({ event: "message", id: "alice", args: {}, pos: "e1.1-4" });
  s1.drop(1006);
  assert.equal((await fake.socket(2)).params.resume, "e1.1-4");
  assert.deepEqual(got, ["message e1.1-4"]);
  for (const bad of [{}, "session", { getItem() {}, setItem() {} }]) {
    assert.throws(() => connect({ url: URL_, token: "x", WebSocket: fake.WebSocket, storage: bad }), TypeError, String(bad));
  }
});

test("close() from a state listener stops the client: no socket after it", async (t) => {
  // An app that gives up after some attempts closes the client from its
  // "connecting" listener, which runs while the client schedules the retry.
  t.mock.method(Math, "random", () => 0); // every retry at once: a timer of 0 ms
  for (const where of ["connecting", "open"]) {
    const fake = fakeSockets();
    const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1 });
    const seen = states(sb);
    sb.onState((s) => {
      if (s === where && fake.made.length === (where === "open" ? 1 : 2)) sb.close();
    });
    (await fake.socket(1)).greet("alice", { pos: "e1.1-3" });
    if (where === "connecting") {
      fake.made[0].drop(1001, "gateway shutting down");
      const s2 = await fake.socket(2);
      s2.greet("alice", { pos: "e1.1-3", recovered: true, missed: 0 });
      s2.drop(1006);
    }
    const n = fake.made.length;
    // A retry scheduled at close() would be a 0 ms timer set before this
    // one: Node runs timers of one delay in the order they were set.
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(fake.made.length, n, `a socket made after close() in the "${where}" listener`);
    assert.equal(seen.at(-1)[0], "closed", `the last state after close() in the "${where}" listener`);
  }
});

// browserEvents stands in for the window's events, which Node lacks, for
// the rest of test t; it returns fire(name).
function browserEvents(t) {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  return (name) => target.dispatchEvent(new Event(name));
}

test("offline drops the socket at once; online then reconnects and resumes", async (t) => {
  const fire = browserEvents(t);
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
  const seen = states(sb);
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-3" });
  const pending = sb.emit("sendMessage", { text: "hi" });
  // The network is gone: the socket is dead whether or not the browser has
  // noticed, and waiting for TCP to say so can take minutes.
  fire("offline");
  assert.equal(seen.at(-1)[0], "connecting", "still open after offline");
  await assert.rejects(pending, { code: "disconnected" });
  assert.equal(fake.made.length, 1, "a socket while offline");
  fire("online");
  const s2 = await fake.socket(2);
  assert.equal(s2.params.resume, "e1.1-3");
});

test("a page shown again ends the back-off wait at once", async (t) => {
  const fire = browserEvents(t);
  const doc = { visibilityState: "hidden" };
  globalThis.document = doc;
  t.after(() => delete globalThis.document);
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
  (await fake.socket(1)).greet("alice", { pos: "e1.1-3" });
  fake.made[0].drop(1001, "gateway shutting down");
  // A hidden page's timers may be held back for minutes; hidden, it waits.
  fire("visibilitychange");
  assert.equal(fake.made.length, 1, "a socket while hidden");
  doc.visibilityState = "visible";
  fire("visibilitychange");
  assert.equal(fake.made.length, 2, "no socket once visible");
  // A hidden page that comes back online does not wait to be shown.
  doc.visibilityState = "hidden";
  fake.made[1].greet("alice", { pos: "e1.1-3", recovered: true, missed: 0 });
  fake.made[1].drop(1006);
  fire("online");
  assert.equal(fake.made.length, 3, "no socket on online while hidden");
  doc.visibilityState = "visible";
  fake.made[2].greet("alice", { pos: "e1.1-3", recovered: true, missed: 0 });
  fake.made[2].drop(1006);
  sb.close();
  fire("visibilitychange");
  fire("online");
  assert.equal(fake.made.length, 3, "a socket after close()");
});

test("a close with the gateway's code before connected is not probed: the upgrade was accepted", async (t) => {
  // A gateway that sheds load closes new sockets with 1013 before
  // connected; asking it again with a GET would add to its load for
  // nothing. Only a close without a code (1006) may be a refused upgrade.
  let probes = 0;
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 1, fetch: async () => (probes++, { status: 503 }) });
  const seen = states(sb);
  for (let n = 1; n <= 7; n++) {
    (await fake.socket(n)).drop(1013, "gateway overloaded, reconnect later");
    assert.deepEqual([seen.at(-1)[0], seen.at(-1)[1].attempt], ["connecting", n], `retry ${n} scheduled without a probe`);
  }
  assert.equal(probes, 0);
  // The 8th failure in a row, without a code, is probed as before.
  (await fake.socket(8)).drop(1006);
  assert.equal(probes, 1);
});

test("a WebSocket the browser refuses to make (mixed content, a bad URL) closes the client for good", async (t) => {
  // new WebSocket throws SecurityError for ws: from an https page and
  // SyntaxError for a URL it cannot use: no later attempt can do better.
  for (const name of ["SecurityError", "SyntaxError"]) {
    let made = 0;
    class Refusing {
      constructor() {
        made++;
        throw new DOMException(`refused (${name})`, name);
      }
    }
    const sb = client(t, { token: jwt("alice"), WebSocket: Refusing, minReconnectDelay: 1 });
    const seen = states(sb);
    const pending = sb.emit("sendMessage", { text: "hi" });
    await assert.rejects(pending, { code: "closed" }, name);
    assert.equal(seen.at(-1)[0], "closed", name);
    assert.match(seen.at(-1)[1].reason, /refused/, name);
    assert.equal(made, 1, name);
  }
});

test("a state listener that moves the client on: the later listeners end on the newest state", async (t) => {
  // The first listener closes the client while the client tells every
  // listener about "connecting"; one added after it must not hear
  // "connecting" after "closed" and show a client that tries forever.
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: NEVER });
  sb.onState((s, info) => {
    if (s === "connecting" && info.code === 1001) sb.close();
  });
  const later = states(sb);
  (await fake.socket(1)).greet("alice", { pos: "e1.1-3" });
  fake.made[0].drop(1001, "gateway shutting down");
  assert.deepEqual(later.map(([s]) => s), ["connecting", "open", "closed"]);
});

// A URL the client cannot use stops it for good, state "closed" with the
// reason only: no status (client.d.ts: 401 or 403, after a refusal) and
// no code, since no gateway answered.
test("a bad url closes with its reason, no status or code", async () => {
  const { WebSocket, made } = fakeSockets();
  const client = connect({ url: "not a url", token: jwt("alice"), WebSocket });
  const closed = await within(
    new Promise((resolve) => client.onState((s, info) => s === "closed" && resolve(info))),
    "closed state",
  );
  assert.match(closed.reason, /^bad url/);
  assert.ok(!("status" in closed), `status ${closed.status} in ${JSON.stringify(closed)}`);
  assert.ok(!("code" in closed), `code in ${JSON.stringify(closed)}`);
  assert.equal(made.length, 0);
  client.close();
});

// reports collects what the client reports through globalThis.reportError
// (a browser's; Node has none, where the client logs with console.error)
// and every unhandled rejection, until the test ends.
function reports(t) {
  const got = { reported: [], unhandled: [] };
  const had = Object.getOwnPropertyDescriptor(globalThis, "reportError");
  globalThis.reportError = (err) => got.reported.push(err?.message ?? String(err));
  const onUnhandled = (err) => got.unhandled.push(err?.message ?? String(err));
  process.on("unhandledRejection", onUnhandled);
  t.after(() => {
    process.off("unhandledRejection", onUnhandled);
    if (had) Object.defineProperty(globalThis, "reportError", had);
    else delete globalThis.reportError;
  });
  return got;
}

test("a listener that throws, or an async one that rejects, is reported; neither breaks the client or the others", async (t) => {
  const got = reports(t);
  const fake = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket: fake.WebSocket, minReconnectDelay: 5 });
  const seen = [];
  sb.on("message", () => {
    throw new Error("sync listener bug");
  });
  sb.on("message", async () => {
    throw new Error("async listener bug");
  });
  sb.on("message", (args) => seen.push(args.n));
  sb.onState(async (s) => {
    if (s === "open") throw new Error("async state listener bug");
  });
  const s1 = await fake.socket(1);
  s1.greet("alice", { pos: "e1.1-1" });
  s1.frame({ event: "message", id: "alice", args: { n: 1 }, pos: "e1.1-2" });
  s1.frame({ event: "message", id: "alice", args: { n: 2 }, pos: "e1.1-3" });
  // Rejections surface after a turn of the event loop.
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(got.unhandled, [], "an async listener's rejection went unhandled: Node exits on one");
  assert.deepEqual(got.reported.toSorted(), ["async listener bug", "async listener bug", "async state listener bug", "sync listener bug", "sync listener bug"]);
});

test("a token that is not a string: connect throws for token, getToken's closes the client saying what it got", async (t) => {
  const { WebSocket, made } = fakeSockets();
  // /dev/token answers {"token","user","expires_in"}: the whole answer is
  // the commonest mistake, and was sent as "[object Object]" (401 token is
  // malformed).
  let made1 = null;
  t.after(() => made1?.close());
  assert.throws(() => (made1 = connect({ url: URL_, token: { token: jwt("alice") }, WebSocket })), (err) => err instanceof TypeError && /token must be a string/.test(err.message));
  for (const [what, getToken] of [
    ["an object", async () => ({ token: jwt("alice"), user: "alice", expires_in: 86400 })],
    ["a number", () => 42],
  ]) {
    const sb = client(t, { getToken, WebSocket });
    const closed = await within(new Promise((resolve) => sb.onState((s, info) => s === "closed" && resolve(info))), `closed state for ${what}`);
    assert.match(closed.reason, new RegExp(`getToken must return the token as a string, not ${what.split(" ")[1]}`), what);
    assert.ok(!("status" in closed), what);
    assert.equal((await sb.emit("sendMessage", {}).catch((e) => e)).code, "closed");
  }
  assert.equal(made.length, 0, "a socket was opened with a token that is not a string");
});

test("listeners: unsubscribing leaves nothing behind, also for event names used once", async (t) => {
  // An app that subscribes per room or per conversation ("typing-<room>")
  // and unsubscribes as the user moves on must not grow the client.
  const v8 = await import("node:v8");
  const vm = await import("node:vm");
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc");
  const { WebSocket, socket } = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket });
  const churn = (n, from) => {
    for (let i = from; i < from + n; i++) {
      const off = sb.on(`typing-${i}`, () => {});
      const off2 = sb.on(`typing-${i}`, () => {});
      off();
      off2();
      off2(); // twice does nothing
    }
  };
  churn(1_000, 0); // warm up
  gc();
  const before = process.memoryUsage().heapUsed;
  churn(100_000, 1_000);
  gc();
  const grew = process.memoryUsage().heapUsed - before;
  assert.ok(grew < 2_000_000, `the heap grew ${grew} bytes after 100,000 event names were subscribed to and left`);
  // A name whose listeners all left works as before when subscribed to
  // again, and an old unsubscribe function touches only its own listener.
  const got = [];
  const stale = sb.on("typing-5", () => got.push("stale"));
  stale();
  sb.on("typing-5", (a) => got.push(a.n));
  stale();
  const s1 = await socket(1);
  s1.greet("alice");
  s1.frame({ event: "typing-5", id: "alice", args: { n: 1 } });
  assert.deepEqual(got, [1]);
});

test("emit takes no callback: a Socket.IO-style ack callback throws, unsent, instead of never being called", async (t) => {
  // socket.emit("sendMessage", args, (res) => ...) is how a Socket.IO app
  // asks for an ack; ported as is, the callback was dropped without a word
  // and the emit sent, so the app waited for an answer that never came.
  const { WebSocket, socket } = fakeSockets();
  const sb = client(t, { token: jwt("alice"), WebSocket });
  const s1 = await socket(1);
  s1.greet("alice");
  const ack = () => {};
  for (const [what, call] of [
    ["a callback after args", () => sb.emit("sendMessage", { to: "bob", text: "hi" }, ack)],
    ["a callback as args", () => sb.emit("sendMessage", ack)],
    ["args spread over several arguments", () => sb.emit("sendMessage", "bob", "hi")],
  ]) {
    assert.throws(call, (err) => err instanceof TypeError && /emit\(event, args\) returns a promise/.test(err.message), what);
  }
  assert.deepEqual(s1.sent, [], "an emit that threw was sent");
  // The promise form is untouched.
  const sent = sb.emit("sendMessage", { to: "bob", text: "hi" });
  await within(s1.sends(1), "the envelope");
  s1.frame({ event: "ack", id: "alice", ref: s1.sent[0].ref, args: { msg_id: "m1" } });
  assert.deepEqual(await within(sent, "the ack"), { msg_id: "m1" });
});
