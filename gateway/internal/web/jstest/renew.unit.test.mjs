// Unit tests of client.js's token renewal (docs/protocol.md, the
// JavaScript client): with getToken, the client fetches a fresh token
// shortly before the one of its socket expires and moves to a new socket
// itself, so the gateway's 4001 never fails an emit in flight. No gateway,
// no network, and a fake clock (node:test's mock timers, Date included):
// tokens live for minutes and the local clock may be off by as much.
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/renew.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { client as fakeClient, fakeSockets, timers, token } from "./fake.mjs";

// SERVER is the gateway's (and the token issuer's) clock at the start of
// each test, in ms; the client's clock is SERVER + skew.
const SERVER = 1_800_000_000_000;
const MIN = 60_000;

// flush lets the client's promises (getToken's) settle: setImmediate is not
// faked, and runs after the microtasks queued before it.
const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

// jwt returns an unsigned token of alice with these claims (seconds): the
// client reads them only.
const jwt = (claims) => token({ sub: "alice", ...claims });

// claims reads a token's payload.
const claims = (tok) => JSON.parse(Buffer.from(tok.split(".")[1], "base64url").toString());

// issuer mints tokens of life ms on the server's clock (the client's clock
// minus skew), numbered, with iat unless noIat; calls counts them.
function issuer(skew, life, { noIat = false } = {}) {
  const iss = {
    calls: 0,
    getToken: async () => {
      const now = Math.floor((Date.now() - skew) / 1000);
      const claims = { exp: now + life / 1000, n: ++iss.calls };
      if (!noIat) claims.iat = now;
      return jwt(claims);
    },
  };
  return iss;
}

// fakeClock makes the client's clock (Date, timers, performance.now) the
// test's, skew ms ahead of the server's.
function fakeClock(t, skew = 0) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: SERVER + skew });
  t.mock.method(performance, "now", () => Date.now());
}

// client connects with the fake sockets, without a heartbeat watch, and
// closes at the test's end.
const client = (t, opts) => fakeClient(t, { heartbeat: false, ...opts });

// received records the events that reach the app, by position.
function received(sb) {
  const got = [];
  sb.on("message", (_, f) => got.push(f.pos));
  return got;
}

// settled records how each promise ends: ["ok", value] or [code].
function settled(...ps) {
  const out = ps.map(() => null);
  ps.forEach((p, i) => p.then((v) => (out[i] = ["ok", v]), (e) => (out[i] = [e.code])));
  return out;
}

test("renewal: before exp, a fresh token and a new socket that resumes; no emit fails, no event is handed twice", async (t) => {
  fakeClock(t);
  const fake = fakeSockets();
  const iss = issuer(0, 10 * MIN);
  const sb = client(t, { getToken: iss.getToken, WebSocket: fake.WebSocket });
  const got = received(sb);
  const states = [];
  sb.onState((s, info) => states.push([s, info.code]));
  await flush();
  const [s1] = fake.made;
  s1.greet({ pos: "e1.1-3" });
  s1.event("e1.1-4");

  // A lifetime of 10 minutes: renewed a tenth of it, 60 s, before exp.
  t.mock.timers.tick(9 * MIN - 1);
  await flush();
  assert.equal(iss.calls, 1, "renewed before the margin");
  const inFlight = sb.emit("sendMessage", { text: "in flight" });
  assert.equal(s1.sent.length, 1);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(iss.calls, 2, "no fresh token 60 s before exp");

  // The switch waits for the answer of the emit in flight, holding new
  // ones; events on the old socket still reach the app.
  const held = sb.emit("sendMessage", { text: "held" });
  const out = settled(inFlight, held);
  assert.equal(s1.sent.length, 1, "an emit made during the switch went on the old socket");
  assert.equal(s1.closedWith, null, "the old socket closed with an emit in flight");
  s1.event("e1.1-5");
  s1.ack(s1.sent[0].ref, { msg_id: "m1" });
  await flush();
  assert.deepEqual(s1.closedWith?.[0], 1000, "the old socket is closed normally once answered");
  assert.equal(fake.made.length, 2);
  const [, s2] = fake.made;
  assert.equal(claims(s2.token).n, 2, "the new socket has not the fresh token");
  assert.equal(s2.url.searchParams.get("resume"), "e1.1-5");
  assert.equal(s2.sent.length, 0, "an emit went before connected");

  // The new socket replays what came after its resume position; what the
  // app had is dropped, and the held emit goes on it.
  s2.greet({ pos: "e1.1-5", recovered: true, missed: 1 });
  s2.event("e1.1-5");
  s2.event("e1.1-6");
  assert.deepEqual(s2.sent.map((e) => e.args.text), ["held"]);
  s2.ack(s2.sent[0].ref, { msg_id: "m2" });
  // A late frame of the old socket is not read.
  s1.event("e1.1-6");
  await flush();
  assert.deepEqual(out, [["ok", { msg_id: "m1" }], ["ok", { msg_id: "m2" }]]);
  assert.deepEqual(got, ["e1.1-4", "e1.1-5", "e1.1-6"]);
  assert.ok(!states.some(([s, code]) => s === "connecting" && code === 4001), JSON.stringify(states));
  assert.deepEqual(states.at(-1), ["open", undefined]);
});

test("renewal: an emit that is never answered is waited for no longer than ackTimeout", async (t) => {
  fakeClock(t);
  const fake = fakeSockets();
  const iss = issuer(0, 10 * MIN);
  const sb = client(t, { getToken: iss.getToken, WebSocket: fake.WebSocket, ackTimeout: 5_000 });
  await flush();
  const [s1] = fake.made;
  s1.greet({ pos: "e1.1-1" });
  t.mock.timers.tick(9 * MIN - 2_000);
  const lost = sb.emit("slow", {});
  const outcome = settled(lost);
  t.mock.timers.tick(2_000);
  await flush();
  assert.equal(iss.calls, 2);
  const held = sb.emit("next", {});
  s1.event("e1.1-2"); // alive: the unanswered emit does not condemn it
  t.mock.timers.tick(3_000); // the slow emit's own ackTimeout ends
  await flush();
  assert.deepEqual(outcome, [["timeout"]]);
  assert.equal(s1.closedWith?.[0], 1000);
  const s2 = fake.made[1];
  assert.ok(s2, "no new socket once the wait was over");
  s2.greet({ pos: "e1.1-2", recovered: true, missed: 0 });
  assert.deepEqual(s2.sent.map((e) => e.event), ["next"]);
  s2.ack(s2.sent[0].ref, 1);
  assert.equal(await held, 1);
});

test("renewal: a getToken that fails keeps the old socket and is tried again", async (t) => {
  fakeClock(t);
  t.mock.method(Math, "random", () => 1); // the whole back-off ceiling
  const fake = fakeSockets();
  const iss = issuer(0, 10 * MIN);
  let failing = false;
  const sb = client(t, {
    getToken: () => (failing ? Promise.reject(new Error("token endpoint down")) : iss.getToken()),
    WebSocket: fake.WebSocket,
    minReconnectDelay: 1_000,
  });
  await flush();
  const [s1] = fake.made;
  s1.greet({ pos: "e1.1-1" });
  failing = true;
  t.mock.timers.tick(9 * MIN);
  await flush();
  assert.equal(s1.closedWith, null, "the old socket was closed without a new token");
  assert.equal(fake.made.length, 1);
  // Emits go on as before.
  const p = sb.emit("e", {});
  assert.equal(s1.sent.length, 1);
  s1.ack(s1.sent[0].ref, "ok");
  assert.equal(await p, "ok");
  // With the back-off: 1 s, then 2 s.
  failing = false;
  t.mock.timers.tick(999);
  await flush();
  assert.equal(iss.calls, 1);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(iss.calls, 2);
  assert.equal(s1.closedWith?.[0], 1000);
  assert.equal(fake.made.length, 2);
});

test("renewal: a new socket that fails before connected falls back to the reconnect, and the held emit waits on", async (t) => {
  fakeClock(t);
  t.mock.method(Math, "random", () => 1);
  const fake = fakeSockets();
  const iss = issuer(0, 10 * MIN);
  const sb = client(t, { getToken: iss.getToken, WebSocket: fake.WebSocket, minReconnectDelay: 1_000, ackTimeout: 30_000 });
  await flush();
  const [s1] = fake.made;
  s1.greet({ pos: "e1.1-1" });
  const states = [];
  sb.onState((s, info) => states.push([s, info.reason, info.delay]));
  t.mock.timers.tick(9 * MIN);
  await flush();
  assert.equal(s1.closedWith?.[0], 1000);
  assert.deepEqual(states.slice(1), [["connecting", "renewing the token", 0]]);
  const held = sb.emit("e", {});
  const [, s2] = fake.made;
  s2.drop(1013, "recovery store unavailable, reconnect");
  await flush();
  assert.equal(states.at(-1)[0], "connecting");
  assert.equal(states.at(-1)[2], 1_000, "the first failure after a renewal backs off from the start");
  t.mock.timers.tick(1_000);
  await flush();
  assert.equal(iss.calls, 3, "getToken not called for the attempt after the failed one");
  const s3 = fake.made[2];
  s3.greet({ pos: "e1.1-1", recovered: true, missed: 0 });
  assert.deepEqual(s3.sent.map((e) => e.event), ["e"]);
  s3.ack(s3.sent[0].ref, "late but fine");
  assert.equal(await held, "late but fine");
});

test("renewal: none without getToken, with renew: false, or for a token without a readable exp", async (t) => {
  fakeClock(t);
  const now = Math.floor(SERVER / 1000);
  for (const [name, opts] of [
    ["a fixed token", { token: jwt({ iat: now, exp: now + 600 }) }],
    ["renew: false", { getToken: async () => jwt({ iat: now, exp: now + 600 }), renew: false }],
    ["no exp", { getToken: async () => jwt({ iat: now }) }],
    ["not a JWT", { getToken: async () => "opaque-token" }],
  ]) {
    const fake = fakeSockets();
    const sb = client(t, { WebSocket: fake.WebSocket, ...opts });
    await flush();
    fake.made[0].greet({});
    t.mock.timers.tick(20 * MIN);
    await flush();
    assert.equal(fake.made.length, 1, `${name}: renewed`);
    assert.equal(fake.made[0].closedWith, null, name);
    sb.close();
  }
});

test("renewal: a local clock minutes off renews before the gateway's close, and never in a loop", async (t) => {
  // The gateway closes at exp plus 30 s on its own clock (SERVER + 10 min
  // for the first token). Ahead by more than a lifetime, a token looks
  // expired already: its lifetime (exp - iat) counts instead.
  for (const [skew, life, first, most] of [
    [0, 10 * MIN, 9 * MIN, 4], // correct: 60 s before exp
    [-5 * MIN, 10 * MIN, 9 * MIN, 4], // behind: exp looks 15 min away; iat says 10
    [5 * MIN, 10 * MIN, 4.5 * MIN, 8], // ahead: early, never late
    [25 * MIN, 10 * MIN, 9 * MIN, 4], // ahead by more than the lifetime
    [10 * MIN - 1_000, 10 * MIN, 1_000, 13], // 1 s left on the local clock: then at most every quarter lifetime
  ]) {
    await t.test(`skew ${skew / 1000} s`, async (t) => {
      fakeClock(t, skew);
      const fake = fakeSockets({ autoGreet: true });
      const iss = issuer(skew, life);
      const sb = client(t, { getToken: iss.getToken, WebSocket: fake.WebSocket });
      await flush();
      t.mock.timers.tick(first - 1);
      await flush();
      assert.equal(iss.calls, 1, "renewed too early");
      t.mock.timers.tick(1);
      await flush();
      assert.equal(iss.calls, 2, `not renewed ${first} ms after connecting`);
      // 30 minutes more: each socket renewed before its close, none in a loop.
      for (let i = 0; i < 30 * 6; i++) {
        t.mock.timers.tick(10_000);
        await flush();
      }
      assert.ok(iss.calls >= 4 && iss.calls <= 1 + most + 1, `${iss.calls} tokens in 30 minutes`);
      assert.equal(fake.made.length, iss.calls);
      assert.ok(fake.made.slice(0, -1).every((s) => s.closedWith?.[0] === 1000));
      sb.close();
    });
  }
});

test("renewal: a token no later than the one in use is not switched to", async (t) => {
  fakeClock(t);
  const fake = fakeSockets();
  const now = Math.floor(SERVER / 1000);
  const same = jwt({ iat: now, exp: now + 600 });
  let calls = 0;
  client(t, { getToken: async () => (++calls, same), WebSocket: fake.WebSocket, minReconnectDelay: 1_000 });
  await flush();
  fake.made[0].greet({});
  t.mock.timers.tick(9 * MIN + 60_000); // a cache that hands out the same token until it expires
  await flush();
  assert.ok(calls >= 2 && calls < 20, `${calls} calls`);
  assert.equal(fake.made.length, 1);
  assert.equal(fake.made[0].closedWith, null);
});

test("renewal: close() during the switch rejects the held emits as closed and opens nothing", async (t) => {
  fakeClock(t);
  const fake = fakeSockets();
  const iss = issuer(0, 10 * MIN);
  const sb = client(t, { getToken: iss.getToken, WebSocket: fake.WebSocket });
  await flush();
  const [s1] = fake.made;
  s1.greet({});
  t.mock.timers.tick(9 * MIN - 1_000);
  const inFlight = sb.emit("e", {});
  t.mock.timers.tick(1_000);
  await flush();
  const held = sb.emit("e", {});
  const out = settled(inFlight, held);
  sb.close();
  await flush();
  assert.deepEqual(out, [["closed"], ["closed"]]);
  t.mock.timers.tick(MIN);
  await flush();
  assert.equal(fake.made.length, 1);
});

test("renewal: the options are checked", (t) => {
  const fake = fakeSockets();
  for (const [opts, want] of [
    [{ renew: "yes" }, { name: "TypeError", message: /renew/ }],
    [{ renewMargin: 0 }, { name: "RangeError", message: /renewMargin/ }],
  ]) {
    let sb;
    try {
      assert.throws(() => (sb = connect({ url: "ws://gw.test/socket", WebSocket: fake.WebSocket, ...opts })), want);
    } finally {
      sb?.close();
    }
  }
});

test("renewal: close() while a renewal's getToken is pending leaves no timer behind", async () => {
  // Real timers: the test looks at the process's own.
  const before = timers();
  const { WebSocket } = fakeSockets({ autoGreet: true });
  const now = Math.floor(Date.now() / 1000);
  let renewing;
  const asked = new Promise((resolve) => (renewing = resolve));
  let calls = 0;
  const sb = connect({
    url: "ws://gw.test/socket",
    fetch: async () => ({ status: 503 }),
    heartbeat: false,
    WebSocket,
    getToken: () => {
      if (++calls === 1) return jwt({ iat: now, exp: now + 2 }); // renewed after its floor, a second or so
      renewing();
      return new Promise(() => {}); // an endpoint that never answers
    },
  });
  await asked;
  sb.close();
  // getToken's own time limit (connectTimeout, 10 s) kept a Node
  // process that had closed its client alive that long.
  assert.equal(timers(), before, "timers left after close()");
});
