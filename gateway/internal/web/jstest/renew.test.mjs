// Token renewal of client.js against a real gateway: short-lived tokens,
// a steady stream of emits across several of their lifetimes, and not one
// emit failed by a socket change, nor an event handed to the app twice or
// not at all. Run by e2e/jsclient_test.go (TestClientJSRenew), which starts
// a stack without rate limits and sets
//   SB_URL     ws://127.0.0.1:PORT/socket
//   SB_SECRET  the gateway's JWT secret, to mint tokens of any lifetime
//   SB_LEEWAY  the gateway's GATEWAY_JWT_LEEWAY in seconds (30 if unset)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { connect } from "../assets/client.js";
import { within, stateWhere } from "./wait.mjs";

const URL_ = process.env.SB_URL;
const SECRET = process.env.SB_SECRET;
if (!URL_ || !SECRET) throw new Error("SB_URL and SB_SECRET must be set: run through go test ./e2e -run TestClientJSRenew");

// LIFE is the tokens' lifetime in seconds. The gateway closes a socket
// LEEWAY s after its token's exp, so a stream of RUN ms outlives the first
// socket's token by more than that: without renewal it sees a 4001.
const LIFE = 2;
const LEEWAY = Number(process.env.SB_LEEWAY ?? 30);
const RUN = (LIFE + LEEWAY) * 1000 + 5_000;

// mint returns an HS256 token of user issued now, expiring in LIFE seconds.
function mint(user) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: user, iat: now, exp: now + LIFE })}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

test("renewal: a steady stream of emits across many token lifetimes; no emit fails, every event once", { timeout: 120_000 }, async (t) => {
  const user = `renew-${process.pid}`;
  let tokens = 0;
  const sb = connect({ url: URL_, getToken: () => (tokens++, mint(user)), minReconnectDelay: 50 });
  t.after(() => sb.close());
  const states = [];
  sb.onState((s, info) => states.push([s, info.code, info.reason]));
  const connections = [];
  sb.on("connected", (args) => connections.push(args.conn));
  // Each message goes to the user itself: "message" and "message_sent"
  // reach this one socket, with positions in the user's stream.
  const seen = { message: new Map(), message_sent: new Map() };
  const arrived = new Map(); // msg_id -> resolve, once both have come
  for (const event of Object.keys(seen)) {
    sb.on(event, (args) => {
      const n = (seen[event].get(args.msg_id) ?? 0) + 1;
      seen[event].set(args.msg_id, n);
      if (seen.message.has(args.msg_id) && seen.message_sent.has(args.msg_id)) arrived.get(args.msg_id)?.();
    });
  }
  await within(stateWhere(sb, (s) => s === "open"), "first open");

  const failures = [];
  const sent = [];
  const until = Date.now() + RUN;
  // Three emitters back to back: some emit is nearly always in flight.
  const emitter = async (id) => {
    for (let i = 0; Date.now() < until; i++) {
      try {
        const { msg_id } = await sb.emit("sendMessage", { to: user, text: `${id}-${i}` });
        sent.push(msg_id);
      } catch (err) {
        failures.push(`${id}-${i}: ${err.code}: ${err.message}`);
      }
    }
  };
  await Promise.all([emitter("a"), emitter("b"), emitter("c")]);

  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} emits failed`);
  assert.deepEqual(states.filter(([s, code]) => s === "connecting" && code === 4001), [], "a socket outlived its token");
  const least = Math.min(5, Math.floor(RUN / (LIFE * 1000)) - 2);
  assert.ok(connections.length >= least, `${connections.length} sockets in ${RUN} ms of ${LIFE} s tokens: renewed too rarely`);
  assert.equal(new Set(connections).size, connections.length);
  assert.ok(sent.length > 100, `only ${sent.length} emits`);
  // Every message acked reaches the app once as each event; nothing else does.
  await within(
    Promise.all(sent.map((id) => (seen.message.has(id) && seen.message_sent.has(id) ? null : new Promise((r) => arrived.set(id, r))))),
    "every event of the acked messages",
  );
  for (const event of Object.keys(seen)) {
    const twice = [...seen[event]].filter(([, n]) => n !== 1);
    assert.deepEqual(twice, [], `${event}: handed to the app more than once`);
    assert.equal(seen[event].size, sent.length, `${event}: events of messages never acked`);
  }
  t.diagnostic(`${sent.length} emits, ${connections.length} sockets, ${tokens} tokens`);
});
