// Retried emits of client.js (option retry) against a real gateway: a
// sender sends numbered messages to a recipient while the gateway worker
// holding the sender's socket is killed (SIGKILL), again and again. With
// retry every emit resolves and every message reaches the recipient once;
// without it, the kills fail emits, and an app that sends a failed one
// again may deliver it twice. Run by e2e/jsclient_test.go
// (TestClientJSRetry), which starts a stack in dev mode with two workers
// and sets
//   SB_URL      ws://127.0.0.1:PORT/socket
//   SB_HTTP     http://127.0.0.1:PORT, for /dev/token
//   SB_CONTROL  POST /stop?worker=N stops worker N (SIGSTOP); POST
//               /kill?worker=N kills it (SIGKILL) and answers once the
//               supervisor's new worker N is ready
//   SB_RETRY    1: the sender retries (the test asserts nothing is lost
//               or doubled); 0: it does not (the test asserts the kills
//               failed emits, so that they are known to hit some in flight)
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../assets/client.js";
import { within, stateWhere } from "./wait.mjs";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set: run through go test ./e2e -run TestClientJSRetry`);
  return v;
}
const URL_ = env("SB_URL");
const HTTP = env("SB_HTTP");
const CONTROL = env("SB_CONTROL");
const RETRY = env("SB_RETRY") === "1";

// KILLS is how many times the sender's worker is killed; ROUND how many
// emits are acked before each kill and after the last.
const KILLS = 3;
const ROUND = 15;

async function token(user) {
  const res = await fetch(`${HTTP}/dev/token?user=${encodeURIComponent(user)}`);
  assert.equal(res.status, 200, "GET /dev/token");
  return (await res.json()).token;
}

// control asks the Go test to do what, and resolves once it is done.
async function control(what) {
  const res = await fetch(`${CONTROL}/${what}`, { method: "POST", signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 200, `control ${what}: ${await res.text()}`);
}

// counter counts what arrives by key; reached(n) resolves once n keys have.
function counter() {
  const seen = new Map(); // key -> times
  const waiters = [];
  return {
    seen,
    add(key) {
      seen.set(key, (seen.get(key) ?? 0) + 1);
      for (const w of waiters.splice(0)) if (!w()) waiters.push(w);
    },
    reached(n) {
      return new Promise((resolve) => {
        const w = () => seen.size >= n && (resolve(), true);
        if (!w()) waiters.push(w);
      });
    },
  };
}

test(`sendMessage while the sender's worker is killed ${KILLS} times, retry ${RETRY}`, { timeout: 240_000 }, async (t) => {
  const tag = `${process.pid}-${RETRY ? "retry" : "plain"}`;
  const alice = `alice-${tag}`;
  const bob = `bob-${tag}`;
  const opts = { url: URL_, minReconnectDelay: 50, maxReconnectDelay: 500, ackTimeout: 20_000 };
  const sb = connect({ ...opts, getToken: () => token(alice), retry: RETRY });
  t.after(() => sb.close());
  const rb = connect({ ...opts, getToken: () => token(bob) });
  t.after(() => rb.close());

  // What reaches bob ("message") and alice's own socket ("message_sent"),
  // by text; and the msg_id of each.
  const atBob = counter();
  const sentEvents = counter();
  const ids = new Map(); // text -> msg_id bob got
  rb.on("message", (m) => {
    atBob.add(m.text);
    ids.set(m.text, m.msg_id);
  });
  sb.on("message_sent", (m) => sentEvents.add(m.text));
  let worker = null;
  let conn = null;
  sb.onState((s, info) => {
    if (s === "open") [worker, conn] = [info.worker, info.conn];
  });
  await within(Promise.all([stateWhere(sb, (s) => s === "open"), stateWhere(rb, (s) => s === "open")]), "both open");

  const acked = counter(); // text -> msg_id of its ack
  const ackIDs = new Map();
  const failures = [];
  const texts = [];
  let n = 0;
  // send emits one message; without retry, an app sends one that failed
  // on a lost socket again, as it would have to.
  const send = async () => {
    const text = `m${++n}`;
    texts.push(text);
    for (;;) {
      try {
        const { msg_id } = await sb.emit("sendMessage", { to: bob, text });
        ackIDs.set(text, msg_id);
        acked.add(text);
        return;
      } catch (err) {
        failures.push(`${text}: ${err.code}: ${err.message}`);
        if (RETRY || (err.code !== "disconnected" && err.code !== "unavailable")) return;
      }
    }
  };
  let done = false;
  const emitter = async () => {
    while (!done) await send();
  };
  const emitters = [emitter(), emitter(), emitter()];
  const extras = [];
  for (let k = 1; k <= KILLS; k++) {
    await within(acked.reached(k * ROUND), `${k * ROUND} acks`, 60_000);
    const [w, c] = [worker, conn];
    // Stopped first, so that an emit is surely on the socket, unread,
    // when its worker dies; those before it may have run, their answers
    // lost.
    await control(`stop?worker=${w}`);
    extras.push(send());
    await control(`kill?worker=${w}`);
    await within(stateWhere(sb, (s, info) => s === "open" && info.conn !== c), `the sender's socket after kill ${k}`, 60_000);
    t.diagnostic(`kill ${k}: worker ${w} (conn ${c}) -> worker ${worker} (conn ${conn})`);
  }
  await within(acked.reached((KILLS + 1) * ROUND), "the last acks", 60_000);
  done = true;
  await Promise.all([...emitters, ...extras]);

  const twice = (c) => [...c.seen].filter(([, times]) => times > 1).map(([text, times]) => `${text} x${times}`);
  t.diagnostic(`${texts.length} messages, ${acked.seen.size} acked, ${failures.length} emits failed, doubled at bob: ${twice(atBob)}`);
  if (!RETRY) {
    // The kills hit emits in flight: at least the one sent to each
    // stopped worker fails.
    assert.ok(failures.length >= 1, "no emit failed without retry: the kills hit none in flight");
    return;
  }
  assert.deepEqual(failures, [], "emits failed");
  assert.equal(acked.seen.size, texts.length);
  // Each message reaches bob, and alice's own stream, exactly once, with
  // the msg_id its ack carried: one run of the handler per message.
  await within(Promise.all([atBob.reached(texts.length), sentEvents.reached(texts.length)]), "every message at bob and alice", 30_000).catch(
    () => {}, // the asserts below say which are missing
  );
  assert.deepEqual(texts.filter((x) => !atBob.seen.has(x)), [], "messages bob never got");
  assert.deepEqual(texts.filter((x) => !sentEvents.seen.has(x)), [], "message_sent alice never got");
  assert.deepEqual(twice(atBob), [], "messages bob got more than once");
  assert.deepEqual(twice(sentEvents), [], "message_sent alice got more than once");
  assert.deepEqual(texts.filter((x) => ids.get(x) !== ackIDs.get(x)), [], "messages whose msg_id at bob is not their ack's");
});
