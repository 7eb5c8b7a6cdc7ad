// Unit tests of client.js's retry option (docs/protocol.md section 2, the
// client): emits carry an idempotency key and are sent again after a lost
// socket or an "unavailable" answer. No gateway, no network: a scripted
// fake WebSocket plays the gateway's side.
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/retry.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { NEVER, client as fakeClient, fakeSockets, jwt, timers } from "./fake.mjs";

// IDEM is what the client's keys look like: 16 bytes in base64url.
const IDEM = /^[A-Za-z0-9_-]{22}$/;

// client connects alice with the fake sockets, retrying emits, and closes
// at the test's end.
const client = (t, fake, opts = {}) =>
  fakeClient(t, { token: jwt("alice"), WebSocket: fake.WebSocket, heartbeat: false, retry: true, ...opts });

// track returns a view of emit promise p: settled says whether it has
// resolved or rejected yet; result awaits {value} or {error}.
function track(p) {
  const view = { settled: false };
  view.result = p.then(
    (value) => ((view.settled = true), { value }),
    (error) => ((view.settled = true), { error }),
  );
  return view;
}

// answers records the frames of the given events that reach on() listeners.
function answers(sb, ...events) {
  const got = [];
  for (const e of events) sb.on(e, (args, f) => got.push(`${e} ${f.ref}`));
  return got;
}

test("retry: every emit carries an idem of its own, a frame otherwise the same; without retry none", async (t) => {
  const plain = fakeSockets();
  const sb0 = client(t, plain, { retry: false });
  const p1 = await plain.socket(1);
  p1.greet();
  const a = sb0.emit("sendMessage", { to: "bob", text: "hi" });
  const b = sb0.emit("typing");
  assert.deepEqual(p1.sent, [{ event: "sendMessage", ref: "1", args: { to: "bob", text: "hi" } }, { event: "typing", ref: "2" }]);
  assert.ok(p1.raw.every((raw) => !raw.includes("idem")), `${p1.raw}`);
  p1.ack("1");
  p1.ack("2");
  await Promise.all([a, b]);

  const fake = fakeSockets();
  const sb = client(t, fake);
  const s1 = await fake.socket(1);
  s1.greet();
  const emits = [sb.emit("sendMessage", { to: "bob", text: "hi" }), sb.emit("typing")];
  for (let i = 0; i < 50; i++) emits.push(sb.emit("n", i));
  assert.equal(s1.sent.length, 52);
  const [first, second] = s1.sent;
  assert.deepEqual(Object.keys(first).sort(), ["args", "event", "idem", "ref"]);
  assert.deepEqual({ ...first, idem: "" }, { event: "sendMessage", ref: "1", args: { to: "bob", text: "hi" }, idem: "" });
  assert.deepEqual(Object.keys(second).sort(), ["event", "idem", "ref"]);
  const keys = s1.sent.map((e) => e.idem);
  // The wire takes 1 to 64 of A-Z a-z 0-9 _ . - (proto.ValidIdem).
  for (const k of keys) assert.match(k, IDEM);
  assert.equal(new Set(keys).size, keys.length, "two emits shared a key");
  s1.sent.forEach((e, i) => s1.ack(e.ref, i));
  assert.deepEqual(await Promise.all(emits), keys.map((_, i) => i));
});

test("retry: must be a boolean", (t) => {
  for (const bad of [1, "yes", {}]) {
    assert.throws(() => connect({ url: "ws://gw.test/socket", token: "x", WebSocket: class {}, retry: bad }), {
      name: "TypeError",
      message: /retry must be true or false/,
    });
  }
});

test("retry: an emit whose socket is lost goes again, same envelope, on the next socket once connected", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1 });
  const heard = answers(sb, "ack", "error");
  const s1 = await fake.socket(1);
  s1.greet();
  const sent = track(sb.emit("sendMessage", { to: "bob", text: "once" }));
  const other = track(sb.emit("sendMessage", { to: "bob", text: "twice?" }));
  s1.ack("2", { msg_id: "m2" }); // answered: not sent again
  assert.deepEqual((await other.result).value, { msg_id: "m2" });
  s1.drop(1006);
  // Made while connecting, after the lost one: it goes after it.
  const later = track(sb.emit("sendMessage", { to: "bob", text: "later" }));

  const s2 = await fake.socket(2);
  assert.equal(sent.settled, false, "the emit was settled by the lost socket");
  assert.deepEqual(s2.sent, [], "sent before connected");
  s2.greet();
  assert.deepEqual(
    s2.sent.map((e) => e.args.text),
    ["once", "later"],
  );
  assert.equal(s2.raw[0], s1.raw[0], "sent again as another envelope");
  s2.ack("1", { msg_id: "m1" });
  assert.deepEqual((await sent.result).value, { msg_id: "m1" });
  // A second answer to it (there is none on the wire) resolves nothing:
  // it reaches the listeners, once.
  s2.ack("1", { msg_id: "m1" });
  s2.ack("3", { msg_id: "m3" });
  assert.deepEqual((await later.result).value, { msg_id: "m3" });
  assert.deepEqual(heard, ["ack 1"]);
  assert.equal(fake.made.length, 2);
});

test("retry: lost again and again, the emit follows the sockets and keeps its key", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1, maxReconnectDelay: 5 });
  const s1 = await fake.socket(1);
  s1.greet();
  const e = track(sb.emit("sendMessage", { to: "bob", text: "x" }));
  const key = s1.sent[0].idem;
  // Lost in every way the client knows: a close, an error, the socket
  // taken for dead (here: the browser offline), a close before connected.
  s1.drop(1001, "going away");
  const s2 = await fake.socket(2);
  s2.greet();
  s2.onerror?.({});
  const s3 = await fake.socket(3);
  s3.drop(1006); // before connected: nothing sent on it
  const s4 = await fake.socket(4);
  s4.greet();
  s4.drop(4002, "reconnect");
  const s5 = await fake.socket(5);
  s5.greet();
  assert.deepEqual(
    fake.made.map((s) => s.sent.map((x) => x.idem)),
    [[key], [key], [], [key], [key]],
  );
  assert.equal(e.settled, false);
  s5.ack("1", "done");
  assert.equal((await e.result).value, "done");
});

test("retry: an unavailable answer sends the emit again after a back-off, on the same socket", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake);
  const heard = answers(sb, "error");
  const s1 = await fake.socket(1);
  s1.greet();
  const e = track(sb.emit("sendMessage", { to: "bob", text: "x" }));
  let at = Date.now();
  s1.error("1", "unavailable", "handlers are unavailable, try again later");
  assert.equal(s1.sent.length, 1, "sent again at once, without a back-off");
  await s1.sends(2);
  const first = Date.now() - at;
  at = Date.now();
  s1.error("1", "unavailable", "gateway overloaded, retry later");
  await s1.sends(3);
  const second = Date.now() - at;
  assert.ok(first >= 45, `first back-off ${first} ms, want 50 to 100`);
  assert.ok(second >= 95, `second back-off ${second} ms, want 100 to 200`);
  assert.deepEqual(new Set(s1.raw).size, 1, "not the same envelope");
  assert.equal(e.settled, false);
  s1.ack("1", { msg_id: "m1" });
  assert.deepEqual((await e.result).value, { msg_id: "m1" });
  assert.deepEqual(heard, [], "an unavailable that was retried reached the listeners");
});

test("retry: an unavailable answer, then the socket lost during the back-off: sent once on the next socket", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet();
  const e = track(sb.emit("sendMessage", { to: "bob", text: "x" }));
  s1.error("1", "unavailable");
  s1.drop(1006);
  const s2 = await fake.socket(2);
  s2.greet();
  await s2.sends(1); // when its back-off ends
  assert.equal(s1.sent.length, 1);
  assert.equal(s2.sent.length, 1);
  s2.ack("1", 7);
  assert.equal((await e.result).value, 7);
  assert.equal(s2.sent.length, 1, "sent twice on the new socket");
});

test("retry: every other answer settles the emit at once, and it is not sent again", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake);
  const s1 = await fake.socket(1);
  s1.greet();
  const before = timers();
  const codes = ["bad_request", "unknown_event", "timeout", "handler_error", "rate_limited", "forbidden", "not_friends"];
  const emits = codes.map((code) => track(sb.emit("sendMessage", { to: "bob", text: code })));
  s1.sent.forEach((env, i) => s1.error(env.ref, codes[i]));
  const errs = (await Promise.all(emits.map((e) => e.result))).map((r) => r.error?.code);
  assert.deepEqual(errs, codes);
  // Nothing is waiting to send any of them again.
  assert.equal(timers(), before, "a timer outlived the settled emits");
  assert.equal(s1.sent.length, codes.length);
});

test("retry: with no answer by ackTimeout the emit rejects with timeout, however often it was sent", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { ackTimeout: 400, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet();
  const start = Date.now();
  const unavailable = track(sb.emit("sendMessage", { to: "bob", text: "a" }));
  const lost = track(sb.emit("sendMessage", { to: "bob", text: "b" }));
  // "a" hears unavailable every time it is sent; "b" loses its socket and
  // the next one never connects.
  const answer = () => s1.error(s1.sent.filter((env) => env.args.text === "a").at(-1).ref, "unavailable");
  answer();
  for (const n of [3, 4]) {
    await s1.sends(n);
    answer();
  }
  s1.drop(1006);
  await fake.socket(2); // never greeted
  const [ra, rb] = await Promise.all([unavailable.result, lost.result]);
  const took = Date.now() - start;
  assert.equal(ra.error?.code, "timeout");
  assert.equal(rb.error?.code, "timeout");
  assert.match(ra.error.message, /no answer to sendMessage within 400 ms \(sent 3 times, answered unavailable 3 times\)/);
  assert.match(rb.error.message, /no answer to sendMessage within 400 ms \(sent 1 times\)/);
  assert.ok(took >= 380, `rejected after ${took} ms, before ackTimeout`);
});

test("retry: close() rejects waiting emits at once with closed", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: NEVER });
  const s1 = await fake.socket(1);
  s1.greet();
  const held = track(sb.emit("a"));
  const backingOff = track(sb.emit("b"));
  const inFlight = track(sb.emit("c"));
  s1.error("2", "unavailable");
  s1.drop(1006); // "a" and "c" wait for a socket, "b" for its back-off too
  sb.close();
  const codes = (await Promise.all([held, backingOff, inFlight].map((e) => e.result))).map((r) => r.error?.code);
  assert.deepEqual(codes, ["closed", "closed", "closed"]);
  assert.equal(timers(), 0, "a timer outlived close()");
  assert.equal(fake.made.length, 1);
});

test("retry: a 4003 rejects at once: what was sent on the socket as disconnected, what waits as closed", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet();
  const sentBefore = track(sb.emit("a"));
  s1.drop(1006);
  const s2 = await fake.socket(2);
  const waiting = track(sb.emit("b")); // made while connecting: not sent yet
  s2.greet();
  const sentOn = track(sb.emit("c"));
  assert.deepEqual(
    s2.sent.map((e) => e.event),
    ["a", "b", "c"],
  );
  const notYet = track(sb.emit("d"));
  s2.drop(1006); // all four wait for socket 3
  const s3 = await fake.socket(3);
  s3.drop(4003, "banned"); // before connected: the emits were on no socket
  const codes = (await Promise.all([sentBefore, waiting, sentOn, notYet].map((e) => e.result))).map((r) => r.error?.code);
  assert.deepEqual(codes, ["closed", "closed", "closed", "closed"]);

  // Sent on the socket that a 4003 closes: disconnected, as without retry.
  const fake2 = fakeSockets();
  const sb2 = client(t, fake2, { minReconnectDelay: 1 });
  const r1 = await fake2.socket(1);
  r1.greet();
  const onIt = track(sb2.emit("e"));
  r1.drop(4003, "banned");
  const { error } = await onIt.result;
  assert.equal(error?.code, "disconnected");
  assert.equal(fake2.made.length, 1);
});

test("without retry: a lost socket rejects with disconnected, an unavailable answer at once", async (t) => {
  const fake = fakeSockets();
  const sb = client(t, fake, { retry: false, minReconnectDelay: 1 });
  const s1 = await fake.socket(1);
  s1.greet();
  const a = track(sb.emit("a"));
  const b = track(sb.emit("b"));
  s1.error("1", "unavailable");
  assert.equal((await a.result).error?.code, "unavailable");
  s1.drop(1006);
  assert.equal((await b.result).error?.code, "disconnected");
  const s2 = await fake.socket(2);
  s2.greet();
  assert.deepEqual(s2.sent, []);
});

test("retry: an unavailable answer during a renewal's switch lets it go on, and the emit goes on the new socket once", async (t) => {
  const MIN = 60_000;
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_800_000_000_000 });
  t.mock.method(performance, "now", () => Date.now());
  // flush lets getToken's promise settle: setImmediate is not faked.
  const flush = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  let tokens = 0;
  const getToken = async () => {
    const now = Math.floor(Date.now() / 1000);
    const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    return `${part({ alg: "HS256" })}.${part({ sub: "alice", iat: now, exp: now + 600, n: ++tokens })}.c2ln`;
  };
  const fake = fakeSockets();
  const sb = client(t, fake, { getToken });
  await flush();
  const [s1] = fake.made;
  s1.greet();
  // A 10-minute token is renewed 60 s before its exp; the emit is in
  // flight then, so the switch waits for its answer.
  t.mock.timers.tick(9 * MIN - 1_000);
  const e = track(sb.emit("sendMessage", { to: "bob", text: "x" }));
  t.mock.timers.tick(1_000);
  await flush();
  assert.equal(tokens, 2, "no renewal");
  assert.equal(s1.closed, false, "the switch did not wait for the emit in flight");
  s1.error("1", "unavailable");
  await flush();
  assert.equal(s1.closed, true, "the switch still waited for an emit that goes again later");
  const s2 = fake.made[1];
  s2.greet();
  assert.equal(s2.sent.length, 0, "sent before its back-off ended");
  t.mock.timers.tick(100); // the first back-off is 50 to 100 ms
  assert.deepEqual(s2.raw, s1.raw);
  s2.ack("1", "ok");
  assert.equal((await e.result).value, "ok");
  assert.equal(s2.sent.length, 1);
});
