// client.js on a phone: a chat app's client (retry, storage, getToken)
// behind a network that black-holes, flaps and crawls, in a process that
// is stopped as a sleeping phone stops its apps. Run by e2e/mobile_test.go
// (TestClientJSMobile), which starts a stack with two workers, heartbeats
// every second and a 20 s history window, a TCP proxy in front of it, and
// sets
//   SB_URL         the gateway through the proxy (the phone's network)
//   SB_DIRECT_URL  the gateway itself (a desktop peer's network)
//   SB_SECRET      the gateway's JWT secret, to mint tokens
//   SB_WINDOW_MS   the stack's HISTORY_WINDOW
//   SB_CONTROL     POST /blackhole?mode=drop|hold, /heal, /slow, /fast,
//                  /cut, /restore, /flap, /freeze?pid=P&ms=N,
//                  /send?user=U&text=T (see startMobileControl)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { appendFileSync } from "node:fs";
import { connect } from "../assets/client.js";
import { within, stateWhere } from "./wait.mjs";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set: run through go test ./e2e -run TestClientJSMobile`);
  return v;
}
const URL_ = env("SB_URL");
const DIRECT = env("SB_DIRECT_URL");
const SECRET = env("SB_SECRET");
const WINDOW = Number(env("SB_WINDOW_MS"));
const CONTROL = env("SB_CONTROL");

// The client's heartbeat watch: the stack's gateway beats every second.
const GRACE = 2_000;
const QUIET = 1_000 + GRACE;

function mint(user, life = 3600) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: user, iat: now, exp: now + life })}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

// log writes a line to MOBILE_LOG, when set, at once: node --test's own
// output comes only at the end, which a hung case never reaches.
function log(...what) {
  if (process.env.MOBILE_LOG) appendFileSync(process.env.MOBILE_LOG, `${new Date().toISOString()} ${what.join(" ")}\n`);
}

// control asks the test's control server for what. A freeze stops this
// process before it has read the answer, so its wait must outlast the
// freeze: on waking, Node runs the overdue timers before it reads sockets,
// and a shorter one aborted an answer that had arrived.
async function control(what) {
  log("control", what);
  const frozen = Number(new URLSearchParams(what.split("?")[1] ?? "").get("ms") ?? 0);
  const res = await fetch(`${CONTROL}/${what}`, { method: "POST", signal: AbortSignal.timeout(30_000 + frozen) });
  assert.equal(res.status, 200, `control ${what}: ${await res.text()}`);
}

// memoryStorage is a sessionStorage for Node.
function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), m };
}

let users = 0;
// phone connects a chat app's client for a new user through the proxy, and
// a peer for another user directly; it records what each is handed.
async function pair(t, opts = {}) {
  const tag = `${process.pid}-${++users}`;
  const me = `phone-${tag}`;
  const peer = `peer-${tag}`;
  const life = opts.life ?? 3600;
  const phone = connect({
    url: URL_,
    retry: true,
    storage: memoryStorage(),
    getToken: async () => mint(me, life),
    heartbeatGrace: GRACE,
    ...opts.client,
  });
  t.after(() => phone.close());
  const desk = connect({ url: DIRECT, getToken: async () => mint(peer) });
  t.after(() => desk.close());
  const rec = {
    me,
    peer,
    phone,
    desk,
    inbox: [], // texts of "message" the phone got, in order
    sent: [], // texts of "message_sent" the phone got
    atPeer: [], // texts of "message" the peer got
    states: [], // [state, info, at]
    resyncs: [],
  };
  phone.on("message", (m) => rec.inbox.push(m.text));
  phone.on("message_sent", (m) => rec.sent.push(m.text));
  phone.on("resync", (a) => rec.resyncs.push(a));
  desk.on("message", (m) => rec.atPeer.push(m.text));
  phone.onState((s, info) => {
    rec.states.push([s, info, performance.now()]);
    log(me, s, JSON.stringify(info));
  });
  await within(Promise.all([stateWhere(phone, (s) => s === "open"), stateWhere(desk, (s) => s === "open")]), "both open");
  return rec;
}

// chatter keeps `lanes` emits of sendMessage to the peer in flight until
// stop(); each emit's outcome is recorded once.
function chatter(t, rec, lanes = 2) {
  let n = 0;
  let done = false;
  const outcomes = new Map(); // text -> "ok" or code
  const settled = new Map(); // text -> times settled
  const lane = async () => {
    while (!done) {
      const text = `e${++n}`;
      try {
        await rec.phone.emit("sendMessage", { to: rec.peer, text });
        outcomes.set(text, "ok");
      } catch (err) {
        outcomes.set(text, err.code);
        if (err.code === "closed") done = true; // the test ended: an emit now rejects at once
      }
      settled.set(text, (settled.get(text) ?? 0) + 1);
    }
  };
  const all = Array.from({ length: lanes }, lane);
  t.after(() => {
    done = true;
  });
  return {
    outcomes,
    settled,
    stop: async () => {
      done = true;
      await Promise.all(all);
    },
  };
}

// feed sends numbered messages to the phone from the backend, one every
// `every` ms, until stop().
function feed(t, rec, every = 100) {
  let n = 0;
  let done = false;
  const texts = [];
  const run = (async () => {
    while (!done) {
      const text = `f${++n}`;
      texts.push(text);
      await control(`send?user=${encodeURIComponent(rec.me)}&text=${text}`);
      await new Promise((r) => setTimeout(r, every));
    }
  })();
  t.after(() => {
    done = true;
  });
  return {
    texts,
    stop: async () => {
      done = true;
      await run;
    },
  };
}

// until polls cond every 50 ms (what it awaits has no event of its own)
// and rejects after ms.
async function until(cond, what, ms = 15_000) {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) {
      log("no", what);
      throw new Error(`no ${what} within ${ms} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function counts(list) {
  const c = new Map();
  for (const x of list) c.set(x, (c.get(x) ?? 0) + 1);
  return c;
}

// settle awaits until every emit's message reached the peer and the
// phone's own stream, or 15 s, and then checks: each emit settled once;
// one acked reached the peer and message_sent exactly once; one that failed
// at most once; a code other than timeout is a failure.
async function checkEmits(t, rec, chat) {
  const acked = [...chat.outcomes].filter(([, o]) => o === "ok").map(([x]) => x);
  const failed = [...chat.outcomes].filter(([, o]) => o !== "ok");
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const p = counts(rec.atPeer);
    if (acked.every((x) => p.has(x)) && counts(rec.sent).size >= p.size) break;
    await new Promise((r) => setTimeout(r, 100)); // polls what arrives: no event says "all"
  }
  const atPeer = counts(rec.atPeer);
  const sent = counts(rec.sent);
  t.diagnostic(`${chat.outcomes.size} emits: ${acked.length} acked, failed: ${JSON.stringify(failed)}`);
  assert.deepEqual([...chat.settled].filter(([, n]) => n !== 1), [], "emits settled other than once");
  assert.deepEqual(acked.filter((x) => atPeer.get(x) !== 1), [], "acked emits not at the peer exactly once");
  assert.deepEqual(acked.filter((x) => sent.get(x) !== 1), [], "acked emits not in message_sent exactly once");
  assert.deepEqual([...atPeer].filter(([, n]) => n > 1), [], "messages at the peer twice");
  assert.deepEqual([...sent].filter(([, n]) => n > 1), [], "message_sent twice");
  assert.deepEqual(failed.filter(([, code]) => code !== "timeout"), [], "emits failed other than by timeout");
  return { acked, failed };
}

// checkInbox awaits every fed text at the phone, once, in order.
async function checkInbox(rec, fed) {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline && !fed.texts.every((x) => rec.inbox.includes(x))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(fed.texts.filter((x) => !rec.inbox.includes(x)), [], "messages the phone never got");
  assert.deepEqual([...counts(rec.inbox)].filter(([, n]) => n > 1), [], "messages the phone got twice");
  assert.deepEqual(rec.inbox, fed.texts, "messages out of order");
}

test("black hole that drops everything for 8 s: noticed by the heartbeat, resumed after, nothing lost or doubled", { timeout: 90_000 }, async (t) => {
  const rec = await pair(t);
  const chat = chatter(t, rec);
  const fed = feed(t, rec);
  await until(() => rec.sent.length > 5, "a few messages");
  const start = performance.now();
  await control("blackhole?mode=drop");
  const [, info] = await within(stateWhere(rec.phone, (s) => s === "connecting"), "connecting", 20_000);
  const noticed = performance.now() - start;
  t.diagnostic(`noticed after ${Math.round(noticed)} ms: ${JSON.stringify(info)}`);
  assert.ok(noticed < QUIET + 1_500, `the dead socket took ${Math.round(noticed)} ms to notice, heartbeat ${QUIET}`);
  await new Promise((r) => setTimeout(r, 8_000 - noticed)); // the black hole's length
  const healed = performance.now();
  await control("heal");
  const [, open] = await within(stateWhere(rec.phone, (s) => s === "open"), "open after the heal", 40_000);
  t.diagnostic(`open ${Math.round(performance.now() - healed)} ms after the heal: ${JSON.stringify(open)}`);
  assert.equal(open.recovered, true, "resumed");
  await fed.stop();
  await chat.stop();
  await checkInbox(rec, fed);
  await checkEmits(t, rec, chat);
});

test("black hole that holds packets: 1.5 s survives on the same socket; 6 s is abandoned and resumed", { timeout: 90_000 }, async (t) => {
  const rec = await pair(t);
  const chat = chatter(t, rec);
  const fed = feed(t, rec);
  const from = rec.states.length;
  await control("blackhole?mode=hold");
  await new Promise((r) => setTimeout(r, 1_500));
  await control("heal");
  log("healed", rec.inbox.length, fed.texts.length);
  await until(() => rec.inbox.length >= fed.texts.length - 1, "the held messages");
  assert.deepEqual(rec.states.slice(from), [], "a 1.5 s stall changed the state");

  await control("blackhole?mode=hold");
  await within(stateWhere(rec.phone, (s) => s === "connecting"), "connecting", 20_000);
  await new Promise((r) => setTimeout(r, 3_000));
  await control("heal");
  const [, open] = await within(stateWhere(rec.phone, (s) => s === "open"), "open after the heal", 40_000);
  assert.equal(open.recovered, true, "resumed");
  await fed.stop();
  await chat.stop();
  await checkInbox(rec, fed);
  await checkEmits(t, rec, chat);
});

test("slow network (300 ms, 20 KB/s): every emit once, every message once", { timeout: 120_000 }, async (t) => {
  const rec = await pair(t);
  await control("slow");
  const chat = chatter(t, rec, 3);
  const fed = feed(t, rec, 50);
  await new Promise((r) => setTimeout(r, 10_000));
  await fed.stop();
  await chat.stop();
  t.diagnostic(`states: ${JSON.stringify(rec.states.map(([s, i]) => [s, i.reason]))}`);
  try {
    await checkInbox(rec, fed);
    await checkEmits(t, rec, chat);
  } finally {
    await control("fast");
  }
});

test("phone asleep 12 s (process stopped) with emits in flight: no false timeout, nothing lost or doubled", { timeout: 90_000 }, async (t) => {
  const rec = await pair(t);
  const chat = chatter(t, rec);
  await until(() => rec.sent.length > 5, "a few messages");
  const fed = feed(t, rec);
  await control(`freeze?pid=${process.pid}&ms=12000`);
  // Frozen here: the process goes on 12 s later.
  await until(() => rec.phone && rec.inbox.length > 0 && rec.states.at(-1)[0] === "open", "open with messages", 40_000);
  await fed.stop();
  await chat.stop();
  t.diagnostic(`states: ${JSON.stringify(rec.states.map(([s, i]) => [s, i.reason, i.recovered]))}`);
  await checkInbox(rec, fed);
  const { failed } = await checkEmits(t, rec, chat);
  assert.deepEqual(failed, [], "emits failed across a sleep their answers had arrived in");
});

test("phone asleep past its token and the history window: recovered false, then live again", { timeout: 120_000 }, async (t) => {
  const rec = await pair(t, { life: 10 });
  await control(`send?user=${encodeURIComponent(rec.me)}&text=before`);
  await until(() => rec.inbox.includes("before"), "before");
  const opens = rec.states.filter(([s]) => s === "open").length;
  // Asleep, the backend sends "asleep", out of the window on waking.
  await control(`freeze?pid=${process.pid}&ms=${WINDOW + 12_000}&user=${encodeURIComponent(rec.me)}&text=asleep`);
  const [, info] = await within(
    stateWhere(rec.phone, (s) => s === "open" && rec.states.filter(([x]) => x === "open").length > opens),
    "open after waking",
    40_000,
  );
  t.diagnostic(`states: ${JSON.stringify(rec.states.map(([s, i]) => [s, i.reason, i.recovered]))}`);
  assert.equal(info.recovered, false, "recovered after the window passed");
  assert.equal(rec.states.at(-1)[0], "open");
  await rec.phone.emit("sendMessage", { to: rec.peer, text: "awake" });
  await control(`send?user=${encodeURIComponent(rec.me)}&text=after`);
  await until(() => rec.inbox.includes("after"), "after");
});

// timers counts the process's active timers (Node's own view).
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("500 flaps: each a new socket that resumes; no timer or listener left behind", { timeout: 300_000 }, async (t) => {
  const FLAPS = Number(process.env.SB_FLAPS ?? 500);
  // A browser's window, to count the listeners the client adds to it.
  const win = new EventTarget();
  const listening = new Map();
  const add = win.addEventListener.bind(win);
  const remove = win.removeEventListener.bind(win);
  globalThis.addEventListener = (name, fn) => (listening.set(name, (listening.get(name) ?? 0) + 1), add(name, fn));
  globalThis.removeEventListener = (name, fn) => (listening.set(name, (listening.get(name) ?? 0) - 1), remove(name, fn));
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  const rec = await pair(t, { client: { minReconnectDelay: 20, maxReconnectDelay: 60 } });
  const baseTimers = timers();
  const baseListeners = JSON.stringify([...listening]);
  let conn = rec.states.at(-1)[1].conn;
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 1; i <= FLAPS; i++) {
    const want = `f${i}`;
    await control(`send?user=${encodeURIComponent(rec.me)}&text=${want}`);
    await until(() => rec.inbox.includes(want), `message ${want}`);
    // Flapped only once the emit is on the wire, so that some are in flight.
    const sending = rec.phone.emit("sendMessage", { to: rec.peer, text: `e${i}` });
    await control("flap");
    await within(sending, `emit e${i}`, 30_000);
    await until(() => rec.states.at(-1)[0] === "open" && rec.states.at(-1)[1].conn !== conn, `a new socket after flap ${i}`, 30_000);
    const info = rec.states.at(-1)[1];
    assert.equal(info.recovered, true, `flap ${i}: ${JSON.stringify(info)}`);
    conn = info.conn;
  }
  const used = process.cpuUsage(cpu);
  t.diagnostic(`${FLAPS} flaps in ${Math.round(performance.now() - start)} ms, cpu ${Math.round((used.user + used.system) / 1000)} ms; timers ${baseTimers} -> ${timers()}`);
  await until(() => counts(rec.atPeer).size === FLAPS, "every emit at the peer", 30_000);
  assert.deepEqual([...counts(rec.atPeer)].filter(([, n]) => n > 1), [], "messages at the peer twice");
  assert.deepEqual([...counts(rec.inbox)].filter(([, n]) => n > 1), [], "messages at the phone twice");
  assert.ok(timers() <= baseTimers + 2, `timers grew from ${baseTimers} to ${timers()}`);
  assert.equal(JSON.stringify([...listening]), baseListeners, "window listeners");
  // The peer's client listens on: closed, the phone's takes its own away,
  // half of each count (the two clients listen alike).
  const had = new Map(listening);
  rec.phone.close();
  assert.deepEqual([...listening].filter(([name, n]) => n !== had.get(name) / 2), [], "window listeners after close");
});

test("offline for 20 s: the client backs off and costs little CPU; shown again, it connects at once", { timeout: 120_000 }, async (t) => {
  const win = new EventTarget();
  globalThis.addEventListener = win.addEventListener.bind(win);
  globalThis.removeEventListener = win.removeEventListener.bind(win);
  globalThis.document = { visibilityState: "visible" };
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    delete globalThis.document;
  });
  const rec = await pair(t);
  await control("cut");
  t.after(() => control("restore").catch(() => {}));
  const cpu = process.cpuUsage();
  const from = rec.states.length;
  await new Promise((r) => setTimeout(r, 20_000)); // the time offline
  const used = process.cpuUsage(cpu);
  const attempts = rec.states.slice(from).filter(([s]) => s === "connecting");
  t.diagnostic(`offline 20 s: ${attempts.length} attempts, delays ${attempts.map(([, i]) => i.delay)}, cpu ${Math.round((used.user + used.system) / 1000)} ms`);
  assert.ok(attempts.length <= 8, `${attempts.length} attempts in 20 s`);
  // The app is hidden (the user switched away), the network comes back,
  // and the app is shown: no waiting out the back-off.
  globalThis.document.visibilityState = "hidden";
  win.dispatchEvent(new Event("visibilitychange"));
  await control("restore");
  globalThis.document.visibilityState = "visible";
  const shown = performance.now();
  win.dispatchEvent(new Event("visibilitychange"));
  await within(stateWhere(rec.phone, (s) => s === "open"), "open after shown", 5_000);
  t.diagnostic(`open ${Math.round(performance.now() - shown)} ms after shown`);
});

// The back-off is capped at 4 s, and the flapping lasts 8 s, so that the
// phone is back within the stack's 20 s history window: with the default
// cap (30 s) after 15 s of flapping it once came back 21 s after the calm,
// past the window, and rightly with recovered false (the back-off does not
// reset for sockets that live a moment; docs/protocol.md).
test("a network that flaps every 200-400 ms for 8 s, back-off capped at 4 s: nothing lost or doubled; how long until open after", { timeout: 120_000 }, async (t) => {
  const rec = await pair(t, { client: { maxReconnectDelay: 4_000 } });
  const chat = chatter(t, rec);
  const fed = feed(t, rec);
  const from = rec.states.length;
  const end = performance.now() + 8_000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 200)); // the network's rhythm
    await control("flap");
  }
  const calm = performance.now();
  const [, info] = await within(stateWhere(rec.phone, (s) => s === "open"), "open after the flapping", 40_000);
  const states = rec.states.slice(from);
  t.diagnostic(`open ${Math.round(performance.now() - calm)} ms after the last flap: ${JSON.stringify(info)}; ` +
    `${states.filter(([s]) => s === "open").length} opens, ${states.filter(([s]) => s === "connecting").length} attempts, last delay ${states.filter(([s]) => s === "connecting").at(-1)?.[1].delay}`);
  assert.equal(info.recovered, true, "resumed");
  await fed.stop();
  await chat.stop();
  await checkInbox(rec, fed);
  await checkEmits(t, rec, chat);
});
