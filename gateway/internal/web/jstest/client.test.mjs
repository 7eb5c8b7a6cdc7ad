// Tests of client.js under Node against a real gateway stack. Run by
// e2e/jsclient_test.go, which starts the stack in dev mode and sets
//   SB_URL   ws://127.0.0.1:PORT/socket
//   SB_HTTP  http://127.0.0.1:PORT (for /dev/token)
// and allows the browser origin http://app.test only.
// Run by hand: node --experimental-websocket --test client.test.mjs (Node 20).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import http from "node:http";
import { createHash } from "node:crypto";
import { connect } from "../assets/client.js";
import { within, next, stateWhere } from "./wait.mjs";

const URL_ = process.env.SB_URL;
const HTTP = process.env.SB_HTTP;
if (!URL_ || !HTTP) throw new Error("SB_URL and SB_HTTP must be set: run through go test ./e2e -run TestClientJS");

let seq = 0;
const uniqueUser = (name) => `${name}-${process.pid}-${++seq}`;

async function token(user) {
  const res = await fetch(`${HTTP}/dev/token?user=${encodeURIComponent(user)}`);
  assert.equal(res.status, 200, "GET /dev/token");
  return (await res.json()).token;
}

// counting returns a WebSocket class that counts the sockets made.
function counting() {
  const made = { n: 0 };
  class Counted extends globalThis.WebSocket {
    constructor(...args) {
      super(...args);
      made.n++;
    }
  }
  return { WebSocket: Counted, made };
}

// deadURL is a ws:// URL on 127.0.0.1 where nothing listens.
async function deadURL() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return `ws://127.0.0.1:${port}/socket`;
}

// fakeGateway is a WebSocket server for what the real gateway cannot be
// made to do on demand: go silent, answer late, or greet and drop every
// socket. For each accepted socket it calls onSocket({n, greet, send, drop,
// socket}), n counting from 1, and for each text frame the client sends,
// the returned function, if any, with the parsed JSON. It understands only
// what it must: the handshake and short text frames.
async function fakeGateway(t, onSocket) {
  const sockets = new Set();
  const srv = http.createServer((_, res) => res.writeHead(400).end());
  let n = 0;
  srv.on("upgrade", (req, socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let onFrame = null;
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      // Client frames are masked: opcode, length (< 126 here), key, payload.
      while (buf.length >= 6 && buf.length >= 6 + (buf[1] & 0x7f)) {
        const len = buf[1] & 0x7f;
        assert.ok(len < 126, "fakeGateway reads short frames only");
        const key = buf.subarray(2, 6);
        const body = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ key[i % 4]));
        const opcode = buf[0] & 0x0f;
        buf = buf.subarray(6 + len);
        if (opcode === 1) onFrame?.(JSON.parse(body.toString()));
      }
    });
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const id = ++n;
    const send = (frame) => {
      const body = Buffer.from(JSON.stringify(frame));
      assert.ok(body.length < 126, "fakeGateway sends short frames only");
      socket.write(Buffer.concat([Buffer.from([0x81, body.length]), body]));
    };
    const greet = () => send({ event: "connected", id: "fake", args: { conn: `fake-${id}`, worker: 0 } });
    // drop ends the socket after what was written (destroy could discard it).
    onFrame = onSocket({ n: id, greet, send, drop: () => socket.end(), socket }) ?? null;
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  return { url: `ws://127.0.0.1:${srv.address().port}/socket`, accepted: () => n };
}

// settle lets time pass where the test asserts that something does NOT
// happen (no reconnect): there is no event to await for an absence.
const settle = (ms) => new Promise((r) => setTimeout(r, ms));

test("emit resolves with the handler's result on the ack; events reach the listeners of every device", { timeout: 60_000 }, async (t) => {
  const alice = uniqueUser("alice");
  const bob = uniqueUser("bob");
  // Bob is connected first: a socket that connects fresh (no resume
  // position) starts at the streams' tops, so a message sent before it
  // was registered would not reach it.
  const b = connect({ url: URL_, token: await token(bob) });
  t.after(() => b.close());
  const got = next(b, "message");
  const { args: connected } = await within(next(b, "connected"), "connected for bob");
  assert.equal(typeof connected.conn, "string");
  assert.ok(Number.isInteger(connected.worker), `worker ${connected.worker}`);

  const a = connect({ url: URL_, token: await token(alice) });
  t.after(() => a.close());
  const sent = next(a, "message_sent");
  // emit before alice's socket is open: it waits for the connection.
  // emit resolves with the handler's result: sendMessage's {msg_id, ts}.
  const before = Date.now();
  const result = await within(a.emit("sendMessage", { to: bob, text: "hi bob ✓" }), "ack");
  assert.deepEqual(Object.keys(result).sort(), ["msg_id", "ts"]);
  assert.match(result.msg_id, /^[0-9a-f]{32}$/);
  assert.ok(Number.isInteger(result.ts) && result.ts >= before - 5_000 && result.ts <= Date.now() + 5_000, `ts ${result.ts}`);

  const m = await within(got, "message at bob");
  assert.equal(m.frame.id, bob);
  assert.deepEqual([m.args.from, m.args.to, m.args.text], [alice, bob, "hi bob ✓"]);
  const s = await within(sent, "message_sent at alice");
  assert.equal(s.args.msg_id, m.args.msg_id);
  // The result names the very message both sides got.
  assert.equal(m.args.msg_id, result.msg_id);
  assert.equal(m.args.ts, result.ts);

  // An unsubscribed listener hears nothing more; the other one still does,
  // and listeners run in order, so once it has, the first would have too.
  const heard = { off: 0, on: 0 };
  const off = b.on("message", () => heard.off++);
  let resolveOn;
  const secondHeard = new Promise((r) => { resolveOn = r; });
  b.on("message", () => { heard.on++; resolveOn(); });
  off();
  await within(a.emit("sendMessage", { to: bob, text: "second" }), "second ack");
  await within(secondHeard, "second message");
  assert.deepEqual(heard, { off: 0, on: 1 });
});

test("error frames reject with an Error carrying the wire code", { timeout: 60_000 }, async (t) => {
  const sb = connect({ url: URL_, token: await token(uniqueUser("carol")) });
  t.after(() => sb.close());
  const cases = [
    { event: "sendMessage", args: { to: "bob" }, code: "bad_request", message: /text/ },
    { event: "sendMessage", args: { to: "bob", text: "" }, code: "bad_request", message: /text/ },
    { event: "noSuchEvent", args: {}, code: "unknown_event", message: /./ },
    { event: "not an event!", args: {}, code: "bad_request", message: /event/ },
  ];
  for (const c of cases) {
    const err = await within(
      sb.emit(c.event, c.args).then(() => assert.fail(`${c.event} resolved`), (e) => e),
      `answer to ${c.event}`,
    );
    assert.ok(err instanceof Error, `${c.event}: ${err}`);
    assert.equal(err.code, c.code, `${c.event}: code`);
    assert.match(err.message, c.message, `${c.event}: message`);
    assert.equal(err.frame?.event, "error");
  }
  // The socket stayed open through all of them.
  await within(sb.emit("sendMessage", { text: "still here" }), "ack after errors");
});

test("emit rejects with code timeout when no connection comes within ackTimeout", { timeout: 30_000 }, async (t) => {
  const sb = connect({ url: await deadURL(), token: "x", ackTimeout: 300, minReconnectDelay: 50 });
  t.after(() => sb.close());
  const err = await within(sb.emit("sendMessage", { text: "lost" }).then(() => assert.fail("resolved"), (e) => e), "rejection");
  assert.equal(err.code, "timeout");
  assert.ok(err instanceof Error);
});

test("reconnect: back-off grows with full jitter up to the cap while nothing answers", { timeout: 30_000 }, async (t) => {
  const min = 20;
  const max = 100;
  const { WebSocket, made } = counting();
  const sb = connect({ url: await deadURL(), token: "x", WebSocket, minReconnectDelay: min, maxReconnectDelay: max });
  t.after(() => sb.close());
  const retries = [];
  await within(stateWhere(sb, (state, info) => {
    if (state === "connecting" && info.attempt) retries.push(info);
    return retries.length === 7;
  }), "7 retries");
  retries.forEach((info, i) => {
    assert.equal(info.attempt, i + 1);
    const ceiling = Math.min(max, min * 2 ** i);
    assert.ok(info.delay >= 0 && info.delay <= ceiling, `attempt ${info.attempt}: delay ${info.delay} outside [0, ${ceiling}]`);
    assert.match(info.reason, /closed/);
  });
  // Capped: the last attempts wait at most max.
  assert.ok(retries.slice(4).every((r) => r.delay <= max));
  assert.ok(made.n >= 7, `${made.n} sockets for 7 retries`);
  // The default schedule tries again within a second first.
  const defaults = connect({ url: await deadURL(), token: "x", WebSocket });
  t.after(() => defaults.close());
  const [, first] = await within(stateWhere(defaults, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
  assert.ok(first.delay >= 0 && first.delay <= 1000, `first retry after ${first.delay} ms`);
});

test("reconnect: full jitter spreads clients dropped together over the whole ceiling", { timeout: 30_000 }, async (t) => {
  // 40 clients fail at once against a dead port; their first delays must
  // not bunch in the upper half of [0, 1000] as half jitter would.
  const url = await deadURL();
  const delays = await Promise.all(Array.from({ length: 40 }, async () => {
    const sb = connect({ url, token: "x", fetch: async () => { throw new Error("no probe"); } });
    t.after(() => sb.close());
    const [, info] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
    sb.close();
    return info.delay;
  }));
  assert.ok(delays.every((d) => d >= 0 && d <= 1000), `${delays}`);
  // With uniform delays, all 40 above 500 ms has odds of 2^-40.
  assert.ok(delays.some((d) => d < 500), `no delay under 500 ms: ${delays}`);
});

test("reconnect: a gateway that greets and drops at once keeps the back-off growing", { timeout: 30_000 }, async (t) => {
  // Sockets 1 to 4 are dropped right after the greeting; socket 5 is held
  // past stableAfter and then dropped: only then does the back-off start over.
  const stableAfter = 100;
  const gw = await fakeGateway(t, ({ n, greet, drop }) => {
    greet();
    if (n < 5) drop();
    else if (n === 5) setTimeout(drop, 3 * stableAfter);
  });
  const sb = connect({ url: gw.url, token: "x", minReconnectDelay: 5, maxReconnectDelay: 40, stableAfter });
  t.after(() => sb.close());
  let greetings = 0;
  sb.on("connected", () => greetings++);
  const attempts = [];
  await within(stateWhere(sb, (s, info) => {
    if (s === "connecting" && info.attempt) attempts.push(info.attempt);
    return attempts.length === 5;
  }), "5 retries");
  assert.deepEqual(attempts, [1, 2, 3, 4, 1]);
  assert.equal(greetings, 5, "every socket was greeted before it was dropped");
});

test("reconnect: after the gateway closes the socket, with a fresh token", { timeout: 60_000 }, async (t) => {
  const user = uniqueUser("dave");
  let tokens = 0;
  // As to a gateway that does not announce max_frame (an older one), the
  // client sends whatever it is given; this one announces it, so the
  // WebSocket hides it from the client.
  class Unannounced extends WebSocket {
    get onmessage() {
      return super.onmessage;
    }

    set onmessage(f) {
      super.onmessage = f && ((ev) => f({ data: String(ev.data).replace(/,"max_frame":\d+/, "") }));
    }
  }
  const sb = connect({ url: URL_, WebSocket: Unannounced, getToken: () => { tokens++; return token(user); }, minReconnectDelay: 50 });
  t.after(() => sb.close());
  const connections = [];
  sb.on("connected", (args) => connections.push(args));
  await within(stateWhere(sb, (s) => s === "open"), "first open");
  assert.equal(connections[0].max_frame, undefined);

  // A frame over the gateway's 64 KiB limit: it closes the socket with 1009.
  const dropped = stateWhere(sb, (s, info) => s === "connecting" && info.code === 1009);
  const reconnected = next(sb, "connected");
  const err = await within(sb.emit("sendMessage", { text: "x".repeat(70_000) }).then(() => assert.fail("resolved"), (e) => e), "rejection");
  assert.equal(err.code, "disconnected", err.message);
  const [, info] = await within(dropped, "connecting after 1009");
  assert.equal(info.attempt, 1);
  assert.ok(info.delay <= 50);
  await within(reconnected, "second connection");
  assert.equal(tokens, 2, "getToken is called for every connection");
  assert.notEqual(connections[0].conn, connections[1].conn);
  await within(sb.emit("sendMessage", { text: "after the reconnect" }), "ack after reconnect");
});

test("no reconnect after HTTP 401: state closed with the reason", { timeout: 30_000 }, async (t) => {
  for (const opts of [{ token: "not-a-jwt" }, { getToken: async () => "" }]) {
    const { WebSocket, made } = counting();
    const sb = connect({ url: URL_, WebSocket, minReconnectDelay: 10, maxReconnectDelay: 20, ...opts });
    t.after(() => sb.close());
    const states = [];
    sb.onState((s, info) => states.push([s, info]));
    const pending = sb.emit("sendMessage", { text: "never" }).then(() => assert.fail("resolved"), (e) => e);
    const [, info] = await within(stateWhere(sb, (s) => s === "closed"), "closed");
    assert.equal(info.status, 401);
    assert.match(info.reason, /^unauthorized/);
    assert.equal((await pending).code, "closed");
    await settle(300); // 15 back-off periods: long enough for retries to show
    assert.equal(made.n, 1, "sockets opened");
    assert.deepEqual(states.map(([s]) => s), ["connecting", "closed"]);
    assert.equal((await sb.emit("x").catch((e) => e)).code, "closed");
  }
});

test("no reconnect after HTTP 403: a refused origin can read the probe's answer", { timeout: 30_000 }, async (t) => {
  // What a browser page on http://evil.test does: its WebSocket and its
  // fetch both carry the Origin. Node's fetch ignores CORS, so the test
  // checks the header a browser would need to let the client read the 403.
  const origin = "http://evil.test";
  const made = { n: 0 };
  class FromEvil extends globalThis.WebSocket {
    constructor(url) {
      super(url, { headers: { Origin: origin } });
      made.n++;
    }
  }
  const probes = [];
  const fetchFromEvil = async (url, init) => {
    const res = await fetch(url, { ...init, headers: { Origin: origin } });
    probes.push({ status: res.status, allow: res.headers.get("access-control-allow-origin") });
    return res;
  };
  const sb = connect({ url: URL_, token: await token(uniqueUser("frank")), WebSocket: FromEvil, fetch: fetchFromEvil, minReconnectDelay: 10, maxReconnectDelay: 20 });
  t.after(() => sb.close());
  const [, info] = await within(stateWhere(sb, (s) => s === "closed"), "closed");
  assert.equal(info.status, 403);
  assert.match(info.reason, /^forbidden/);
  assert.deepEqual(probes, [{ status: 403, allow: "*" }]);
  await settle(200); // 10 back-off periods: long enough for retries to show
  assert.equal(made.n, 1, "sockets opened");
});

test("a refused upgrade is probed on the 1st, 2nd, 4th and 8th failure in a row only", { timeout: 30_000 }, async (t) => {
  const probed = [];
  let failures = 0;
  const fetchCounted = (url, init) => {
    probed.push(failures);
    return fetch(url, init);
  };
  const sb = connect({ url: await deadURL(), token: "x", fetch: fetchCounted, minReconnectDelay: 5, maxReconnectDelay: 10 });
  t.after(() => sb.close());
  // Each "connecting" with an attempt follows one failure (and its probe).
  await within(stateWhere(sb, (s, info) => {
    if (s === "connecting" && info.attempt) failures = info.attempt;
    return failures === 9;
  }), "9 failures");
  assert.deepEqual(probed, [0, 1, 3, 7], "failures seen before each probe");
});

test("close() stops reconnecting, when open and while backing off", { timeout: 30_000 }, async (t) => {
  // Open: close for good.
  {
    const { WebSocket, made } = counting();
    const sb = connect({ url: URL_, token: await token(uniqueUser("erin")), WebSocket, minReconnectDelay: 10 });
    await within(stateWhere(sb, (s) => s === "open"), "open");
    const states = [];
    sb.onState((s) => states.push(s));
    sb.close();
    assert.equal((await sb.emit("sendMessage", { text: "late" }).catch((e) => e)).code, "closed");
    await settle(300);
    assert.equal(made.n, 1);
    assert.deepEqual(states, ["open", "closed"]);
  }
  // Backing off against a dead port: the pending retry is cancelled.
  {
    const { WebSocket, made } = counting();
    const sb = connect({ url: await deadURL(), token: "x", WebSocket, minReconnectDelay: 100, maxReconnectDelay: 100 });
    t.after(() => sb.close());
    await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry scheduled");
    const before = made.n;
    sb.close();
    await settle(400);
    assert.equal(made.n, before, "no socket after close()");
  }
});

test("options: absent means the default, nonsense is refused, huge is clamped", { timeout: 30_000 }, async (t) => {
  for (const bad of [0, -1, NaN, "100", {}]) {
    for (const name of ["ackTimeout", "minReconnectDelay", "maxReconnectDelay", "probeTimeout", "stableAfter", "connectTimeout"]) {
      assert.throws(() => connect({ url: URL_, token: "x", [name]: bad }), RangeError, `${name}: ${String(bad)}`);
    }
  }
  // Explicit undefined and null fall back to the defaults: the first retry
  // comes within a second, not at once with a NaN delay.
  {
    const { WebSocket } = counting();
    const opts = { ackTimeout: undefined, minReconnectDelay: undefined, maxReconnectDelay: null, probeTimeout: undefined, connectTimeout: null };
    const sb = connect({ url: await deadURL(), token: "x", WebSocket, ...opts });
    t.after(() => sb.close());
    const pending = sb.emit("sendMessage", { text: "waits" }).catch((e) => e);
    const [, first] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
    assert.ok(Number.isFinite(first.delay) && first.delay >= 0 && first.delay <= 1000, `first retry after ${first.delay} ms`);
    // An absence: with ackTimeout NaN the emit would have timed out at once.
    let settled = false;
    pending.then(() => { settled = true; });
    await settle(100);
    assert.equal(settled, false, "emit timed out with the default ackTimeout of 10 s");
  }
  // Infinity waits as long as a timer can (about 24.8 days), not zero.
  {
    const { WebSocket, made } = counting();
    const sb = connect({ url: await deadURL(), token: "x", WebSocket, minReconnectDelay: Infinity, maxReconnectDelay: Infinity });
    t.after(() => sb.close());
    const [, first] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
    assert.ok(first.delay <= 2 ** 31 - 1, `delay ${first.delay}`);
    await settle(100); // an absence: an Infinity timer would have fired by now
    assert.equal(made.n, 1, "a socket opened before the delay");
  }
});

test("connectTimeout: a handshake that never completes is given up and retried", { timeout: 30_000 }, async (t) => {
  // A TCP server that accepts and never answers the upgrade.
  const held = new Set();
  const srv = net.createServer((c) => {
    held.add(c);
    c.on("error", () => {});
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const c of held) c.destroy();
    srv.close();
  });
  const sb = connect({ url: `ws://127.0.0.1:${srv.address().port}/socket`, token: "x", connectTimeout: 100, minReconnectDelay: 5 });
  t.after(() => sb.close());
  const [, info] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
  assert.match(info.reason, /not connected within 100 ms/);
  await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 2), "second retry");
  assert.equal(info.code, undefined, "no close code: the client gave up");
  assert.ok(held.size >= 2, `${held.size} connections for 2 attempts`);
});

test("connectTimeout: a getToken that never settles is given up and called again", { timeout: 30_000 }, async (t) => {
  const user = uniqueUser("gina");
  let calls = 0;
  const getToken = () => (++calls === 1 ? new Promise(() => {}) : token(user));
  const sb = connect({ url: URL_, getToken, connectTimeout: 100, minReconnectDelay: 5 });
  t.after(() => sb.close());
  const [, info] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry");
  assert.match(info.reason, /not connected within 100 ms/);
  const [, open] = await within(stateWhere(sb, (s) => s === "open"), "open");
  assert.equal(calls, 2);
  assert.equal(typeof open.conn, "string");
});

test("a sent emit with no answer drops the silent socket; the next emit goes on a new one", { timeout: 30_000 }, async (t) => {
  // Socket 1 greets and never answers in time: it acks late, after the
  // client has given up on it. Socket 2 acks at once.
  const gw = await fakeGateway(t, ({ n, greet, send }) => {
    greet();
    return (env) => {
      const ack = () => send({ event: "ack", id: "fake", ref: env.ref, args: { ref: env.ref, socket: n } });
      if (n === 1) setTimeout(ack, 300);
      else ack();
    };
  });
  const sb = connect({ url: gw.url, token: "x", ackTimeout: 100, minReconnectDelay: 5 });
  t.after(() => sb.close());
  await within(stateWhere(sb, (s) => s === "open"), "open");
  const dropped = stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1);
  const err = await within(sb.emit("sendMessage", { text: "into the void" }).then(() => assert.fail("resolved"), (e) => e), "rejection");
  assert.equal(err.code, "timeout");
  assert.match(err.message, /no answer/);
  const [, info] = await within(dropped, "the silent socket dropped");
  assert.match(info.reason, /no answer to sendMessage within 100 ms/);
  const ack = await within(sb.emit("sendMessage", { text: "again" }), "ack on the new socket");
  assert.deepEqual(ack, { ref: "2", socket: 2 }); // resolved with the ack's args
  assert.equal(gw.accepted(), 2);
});

test("online and pageshow end the back-off wait at once; close() stops listening", { timeout: 30_000 }, async (t) => {
  // Node has no window events: stand in for the browser's.
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  const { WebSocket, made } = counting();
  // A back-off so long (up to 2^31 ms) that only a wake-up can start the next attempt.
  const sb = connect({ url: await deadURL(), token: "x", WebSocket, minReconnectDelay: 2 ** 31 - 1 });
  t.after(() => sb.close());
  await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "first retry scheduled");
  assert.equal(made.n, 1);
  target.dispatchEvent(new Event("online"));
  assert.equal(made.n, 2, "a socket at once on online");
  await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 2), "second retry scheduled");
  target.dispatchEvent(new Event("pageshow"));
  assert.equal(made.n, 3, "a socket at once on pageshow");
  // While a socket is connecting, a wake-up adds none.
  target.dispatchEvent(new Event("online"));
  assert.equal(made.n, 3, "a second socket while one was connecting");
  await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 3), "third retry scheduled");
  sb.close();
  target.dispatchEvent(new Event("online"));
  assert.equal(made.n, 3, "a socket after close()");
});

test("emits that waited for the connection are sent before those made on open", { timeout: 30_000 }, async (t) => {
  const sent = [];
  class Recording extends globalThis.WebSocket {
    send(data) {
      sent.push(JSON.parse(data).args.text);
      super.send(data);
    }
  }
  const sb = connect({ url: URL_, token: await token(uniqueUser("hal")), WebSocket: Recording });
  t.after(() => sb.close());
  const early = sb.emit("sendMessage", { text: "waited" });
  let late = null;
  sb.onState((s) => {
    if (s === "open" && !late) late = sb.emit("sendMessage", { text: "made on open" });
  });
  await within(early, "ack of the waiting emit");
  await within(late, "ack of the emit made on open");
  assert.deepEqual(sent, ["waited", "made on open"]);
});

test("an emit made during the back-off resolves once the gateway is back", { timeout: 30_000 }, async (t) => {
  const user = uniqueUser("ivy");
  let calls = 0;
  // The first attempt fails (as if the token service were down); the next succeeds.
  const getToken = async () => {
    if (++calls === 1) throw new Error("token service down");
    return token(user);
  };
  const sb = connect({ url: URL_, getToken, minReconnectDelay: 200 });
  t.after(() => sb.close());
  const [, info] = await within(stateWhere(sb, (s, i) => s === "connecting" && i.attempt === 1), "back-off");
  assert.match(info.reason, /token service down/);
  const ack = await within(sb.emit("sendMessage", { text: "sent during the back-off" }), "ack");
  assert.match(ack.msg_id, /^[0-9a-f]{32}$/);
  assert.equal(calls, 2);
});
