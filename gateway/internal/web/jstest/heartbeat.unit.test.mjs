// Unit tests of client.js's heartbeat watch and frame limit (docs/protocol.md
// section 2): no gateway, no network. A scripted fake WebSocket plays the
// gateway's side: connected with heartbeat and max_frame, $ping frames,
// acks.
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/heartbeat.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { client as fakeClient, fakeSockets as allFakeSockets, jwt, within } from "./fake.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// fakeSockets is the shared fake whose greeting carries a position, as the
// gateway's does.
const fakeSockets = () => allFakeSockets({ greeting: { pos: "e1.1-1" } });

// client connects alice with the fake sockets and closes at the test's end.
const client = (t, fake, opts = {}) => fakeClient(t, { token: jwt("alice"), WebSocket: fake.WebSocket, ...opts });

// utf8 returns the length of s in UTF-8 bytes.
const utf8 = (s) => new TextEncoder().encode(s).length;

test("heartbeat: asked for by default, and not with heartbeat: false", async (t) => {
  const fake = fakeSockets();
  client(t, fake);
  assert.equal((await fake.socket(1)).url.searchParams.get("heartbeat"), "1");
  const off = fakeSockets();
  client(t, off, { heartbeat: false });
  assert.equal((await off.socket(1)).url.searchParams.has("heartbeat"), false);
  // With a WebSocket, so that the option's own check is what throws (and
  // a client made all the same is closed).
  for (const [opts, want] of [
    [{ heartbeat: "yes" }, { name: "TypeError", message: /heartbeat/ }],
    [{ heartbeatGrace: 0 }, { name: "RangeError", message: /heartbeatGrace/ }],
  ]) {
    let sb;
    try {
      assert.throws(() => (sb = connect({ url: "ws://gw.test/socket", WebSocket: fake.WebSocket, ...opts })), want);
    } finally {
      sb?.close();
    }
  }
});

test("heartbeat: a socket silent past interval + grace is closed and the client resumes on a new one", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { heartbeatGrace: 40, minReconnectDelay: 1 });
  const pings = [];
  sb.on("$ping", () => pings.push(1));
  const states = [];
  sb.onState((s, info) => states.push([s, info.reason]));
  const s1 = await fake.socket(1);
  const start = Date.now();
  s1.greet({ heartbeat: 40 });
  // Heartbeats keep it open well past interval + grace (80 ms), and never
  // reach the app.
  for (let i = 0; i < 10; i++) {
    await sleep(20);
    s1.frame({ event: "$ping", id: "alice" });
  }
  assert.equal(s1.closed, false, "closed while heartbeats arrived");
  assert.equal(fake.made.length, 1);
  assert.deepEqual(pings, [], "a heartbeat reached an app listener");
  // Any frame counts as a sign of life, not only heartbeats.
  for (let i = 0; i < 3; i++) {
    await sleep(20);
    s1.frame({ event: "message", id: "alice", args: {} });
  }
  assert.equal(s1.closed, false, "closed while events arrived");
  const inFlight = sb.emit("sendMessage", { text: "hi" });
  // Then silence: the socket is taken for dead, what was sent on it
  // rejects as disconnected, and the next socket resumes.
  const quietFrom = Date.now();
  await assert.rejects(within(inFlight, "the emit's end"), { code: "disconnected" });
  const took = Date.now() - quietFrom;
  assert.ok(took >= 70 && took < 1_000, `dead after ${took} ms of silence, want about 80`);
  assert.equal(s1.closed, true);
  assert.ok(states.some(([s, why]) => s === "connecting" && /no frame from the gateway for 80 ms/.test(why ?? "")), JSON.stringify(states));
  const s2 = await fake.socket(2);
  assert.equal(s2.url.searchParams.get("resume"), "e1.1-1");
  assert.ok(Date.now() - start > 200);
});

test("heartbeat: a gateway that announces none, or a client that asked for none, keeps a silent socket", async (t) => {
  for (const [name, opts, args] of [
    ["older gateway", {}, {}],
    ["heartbeat off", { heartbeat: false }, { heartbeat: 40 }],
  ]) {
    const fake = fakeSockets();
    client(t, fake, { heartbeatGrace: 20, ...opts });
    const s1 = await fake.socket(1);
    s1.greet(args);
    await sleep(300);
    assert.equal(s1.closed, false, `${name}: a silent socket was closed`);
    assert.equal(fake.made.length, 1, name);
  }
});

test("max_frame: an emit over the limit rejects alone, at once and unsent; one at the limit goes", async (t) => {
  for (const text of ["plain ascii text", "é".repeat(40), "€".repeat(30), "😀".repeat(20), "a😀é€".repeat(9)]) {
    const fake = fakeSockets();
    const sb = client(t, fake);
    const s1 = await fake.socket(1);
    // The limit is exactly the first envelope, in UTF-8 bytes.
    const limit = utf8(JSON.stringify({ event: "e", ref: "1", args: text }));
    s1.greet({ max_frame: limit });
    const fits = sb.emit("e", text);
    assert.equal(s1.sent.length, 1, `${text}: an envelope at the limit was not sent`);
    assert.equal(s1.bytes[0], limit);
    await assert.rejects(sb.emit("e", text + "a"), (err) => err.code === "too_big" && /limit of \d+ bytes/.test(err.message), text);
    assert.equal(s1.sent.length, 1, `${text}: an envelope over the limit was sent`);
    s1.ack("1", { ok: true });
    assert.deepEqual(await fits, { ok: true });
    assert.equal(s1.closed, false);
  }
});

test("max_frame: an emit waiting for a connection is checked against the gateway it reaches", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  const big = sb.emit("e", "x".repeat(200)); // no limit known yet: it waits
  const small = sb.emit("e", "y");
  s1.greet({ max_frame: 100 });
  await assert.rejects(big, { code: "too_big" });
  assert.deepEqual(s1.sent.map((e) => e.ref), ["2"]);
  s1.ack("2");
  assert.equal(await small, undefined);
  // A gateway that says nothing of a limit (an older one) gets everything.
  s1.onclose({ code: 1001, reason: "gateway shutting down" });
  const s2 = await fake.socket(2);
  s2.greet({});
  const later = sb.emit("e", "x".repeat(200));
  assert.equal(s2.sent.length, 1);
  s2.ack("3", 1);
  assert.equal(await later, 1);
});

test("max_frame: an emit made while reconnecting waits for the next gateway's limit, not the last one's", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet({ max_frame: 100 });
  s1.onclose({ code: 1001, reason: "gateway shutting down" });
  // Connecting again: 100 bytes was that gateway's limit, not the next one's.
  const big = sb.emit("e", "x".repeat(200));
  const s2 = await fake.socket(2);
  s2.greet({ max_frame: 1_000 });
  assert.equal(s2.sent.length, 1, "the emit was not sent to a gateway whose limit it fits");
  s2.ack(s2.sent[0].ref, 1);
  assert.equal(await within(big, "the emit's answer"), 1);
});

test("ackTimeout: an emit sent late, after waiting for the connection, does not condemn the new socket early", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { ackTimeout: 1_000, heartbeat: false, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  const states = [];
  sb.onState((s, info) => states.push([s, info.reason]));
  const late = sb.emit("slow", {}).catch((e) => e);
  // The connection comes 800 ms into the emit's 1,000: it is sent then.
  await sleep(800);
  s1.greet();
  assert.equal(s1.sent.length, 1);
  const sentAt = Date.now();
  // Its promise still ends at the emit's ackTimeout, as documented, not
  // ackTimeout after it was sent...
  const err = await within(late, "the emit's end");
  assert.equal(err.code, "timeout");
  assert.ok(Date.now() - sentAt < 1_000, "the emit's ackTimeout counted from its sending");
  assert.match(err.message, /no answer to slow within 1000 ms/);
  // ...but a few hundred ms of silence on a new socket prove nothing: a
  // handler may take longer than that, and its answer is on the way.
  assert.equal(s1.closed, false, `a socket was condemned ${Date.now() - sentAt} ms after the emit was sent: ${JSON.stringify(states)}`);
  s1.ack(s1.sent[0].ref, { ok: true });
  const other = sb.emit("next", {});
  s1.ack(s1.sent[1].ref, 2);
  assert.equal(await within(other, "the next emit's answer"), 2);
  assert.equal(s1.closed, false);
  assert.equal(fake.made.length, 1);
});

test("ackTimeout: an emit sent late with no answer at all condemns its socket once it has waited ackTimeout on it", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { ackTimeout: 300, heartbeat: false, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  const late = sb.emit("void", {}).catch((e) => e);
  await sleep(200);
  s1.greet();
  const sentAt = Date.now();
  assert.equal((await within(late, "the emit's end")).code, "timeout");
  const s2 = await fake.socket(2);
  const took = Date.now() - sentAt;
  assert.equal(s1.closed, true);
  assert.ok(took >= 280, `condemned ${took} ms after sending, want the full 300`);
  s2.greet();
  // close() leaves no watch behind to keep Node running.
  sb.close();
});

test("ackTimeout: an unanswered emit on a socket that other frames keep arriving on does not condemn it", async (t) => {
  // A socket over GATEWAY_MAX_INFLIGHT is not read until a request ends:
  // with slow handlers, an emit can wait longer than ackTimeout for its
  // answer while the answers to the others, and events, keep coming.
  const fake = fakeSockets();
  const sb = client(t, fake, { ackTimeout: 1_000, heartbeat: false, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet();
  const queued = sb.emit("slow", {}).catch((e) => e);
  const busy = sb.emit("slow", {});
  await sleep(10);
  s1.ack(s1.sent[1].ref, "first"); // the socket is alive
  assert.equal(await busy, "first");
  const err = await within(queued, "the queued emit's end");
  assert.equal(err.code, "timeout");
  assert.equal(s1.closed, false, "a socket that delivered a frame after the emit was sent was taken for dead");
  assert.equal(fake.made.length, 1);
  // Silence, though, still condemns it.
  const lost = sb.emit("void", {}).catch((e) => e);
  assert.equal((await within(lost, "the emit's end")).code, "timeout");
  assert.equal(s1.closed, true);
  await fake.socket(2);
});

// freeze stops the whole process for ms, as a sleeping phone stops an app:
// no timer, no socket event runs meanwhile.
function freeze(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// afterFreeze freezes the process for ms in a check-phase callback and
// has deliver run as the socket's data would if it arrived during the
// freeze but is read after the timers that came due meanwhile: Node runs
// those timers first, and a browser may too.
function afterFreeze(ms, deliver) {
  return new Promise((resolve) => {
    setImmediate(() => {
      freeze(ms);
      setImmediate(() => {
        deliver();
        resolve();
      });
    });
  });
}

test("a process frozen past ackTimeout and the heartbeat watch reads what arrived meanwhile before it judges: no false timeout, no needless reconnect", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { heartbeatGrace: 200, ackTimeout: 500, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet({ heartbeat: 100 });
  const states = [];
  sb.onState((s, info) => states.push([s, info.reason])); // from "open"
  const sending = sb.emit("sendMessage", { text: "hi" });
  assert.equal(s1.sent.length, 1);
  // Asleep 2 s: the answer and a heartbeat arrived while the process was
  // stopped, and wait in the socket.
  await afterFreeze(2_000, () => {
    s1.frame({ event: "$ping", id: "alice" });
    s1.ack(s1.sent[0].ref, { msg_id: "m1" });
  });
  assert.deepEqual(await within(sending, "the emit's answer"), { msg_id: "m1" });
  assert.equal(s1.closed, false, "the socket was taken for dead though its frames waited to be read");
  assert.equal(fake.made.length, 1);
  assert.deepEqual(states, [["open", undefined]], "state changes across the sleep");
  // And a socket that is really dead is still found so after the wake.
  await assert.rejects(within(sb.emit("sendMessage", { text: "again" }), "the second emit"), { code: "disconnected" });
});

test("a process frozen past connectTimeout during the handshake reads the greeting that arrived meanwhile: no needless second attempt", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { connectTimeout: 500, minReconnectDelay: 1 });
  const states = [];
  sb.onState((s, info) => states.push([s, info.reason]));
  const s1 = await fake.socket(1);
  await afterFreeze(2_000, () => s1.greet());
  assert.equal(s1.closed, false, "the attempt was given up though its greeting waited to be read");
  assert.deepEqual(states, [["connecting", undefined], ["open", undefined]]);
  assert.equal(fake.made.length, 1);
});

test("heartbeat positions: the client moves to a heartbeat's pos or bpos only forward in its epoch, stores it, and resumes from it", async (t) => {
  const fake = fakeSockets();
  const items = new Map();
  const storage = {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
  const stored = () => JSON.parse(storage.getItem("switchboard ws://gw.test/socket alice"));
  const sb = client(t, fake, { storage, minReconnectDelay: 1 });
  const pings = [];
  sb.on("$ping", () => pings.push(1));
  const s1 = await fake.socket(1);
  s1.greet({ heartbeat: 60_000, pos: "e1.1-5", bpos: "b1.1-7" });
  const beat = (f) => s1.frame({ event: "$ping", id: "alice", ...f });

  // Ahead in the same epoch (the socket was left out of events): taken,
  // each stream on its own, and stored.
  beat({ pos: "e1.2-6" });
  assert.deepEqual(stored(), { pos: "e1.2-6", bpos: "b1.1-7" });
  beat({ bpos: "b1.3-9" });
  beat({ pos: "e1.4-8", bpos: "b1.4-10" });
  assert.deepEqual(stored(), { pos: "e1.4-8", bpos: "b1.4-10" });
  // Never back, never the same place again, never into another epoch,
  // never a position that does not parse or is not a string.
  for (const f of [
    { pos: "e1.1-7" },
    { pos: "e1.4-8" },
    { pos: "e2.9-99" },
    { bpos: "b2.9-99" },
    { pos: "e1.9-x" },
    { pos: "e1-99" },
    { pos: 99 },
    { pos: "e1.9-" + "9".repeat(30) },
    { pos: null, bpos: {} },
  ]) {
    beat(f);
    assert.deepEqual(stored(), { pos: "e1.4-8", bpos: "b1.4-10" }, `moved by heartbeat ${JSON.stringify(f)}`);
  }
  // An event after it still counts, from there.
  s1.event("e1.5-9");
  assert.deepEqual(stored(), { pos: "e1.5-9", bpos: "b1.4-10" });
  beat({ pos: "e1.6-10" });
  assert.deepEqual(pings, [], "a heartbeat reached an app listener");

  // The next socket resumes from where the heartbeats left the client.
  s1.drop(1006);
  const s2 = await fake.socket(2);
  assert.equal(s2.params.resume, "e1.6-10");
  assert.equal(s2.params.bresume, "b1.4-10");
});

test("heartbeat positions: a heartbeat before the socket's connected moves nothing", async (t) => {
  const fake = fakeSockets();
  client(t, fake, { minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet({ pos: "e1.1-1" });
  s1.drop(1006);
  // Not greeted yet: the positions are still the last socket's, and the
  // frame is no word of the new one's.
  const s2 = await fake.socket(2);
  assert.equal(s2.params.resume, "e1.1-1");
  s2.frame({ event: "$ping", id: "alice", pos: "e1.9-9" });
  s2.greet({ pos: "e1.1-1", recovered: true, missed: 0 });
  s2.drop(1006);
  const s3 = await fake.socket(3);
  assert.equal(s3.params.resume, "e1.1-1");
});
