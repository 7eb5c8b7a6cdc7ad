// Helpers the unit tests of client.js share (client, heartbeat, renew and
// retry .unit.test.mjs): a scripted fake WebSocket that plays the gateway's
// side, unsigned tokens, and a client wired to both. No gateway, no network.
import { connect } from "../assets/client.js";
import { within as withinMs } from "./wait.mjs";

// GATEWAY_URL is where every unit test's client connects; no socket opens.
export const GATEWAY_URL = "ws://gw.test/socket";

// WAIT bounds every wait of a unit test: the fake answers at once.
export const WAIT = 5_000;

// NEVER is a back-off so long that only an at-once reconnect makes a
// second socket while a test runs.
export const NEVER = 2 ** 31 - 1;

// within rejects when p has not settled after ms, naming what was awaited.
export const within = (p, what, ms = WAIT) => withinMs(p, what, ms);

// fakeSockets returns a WebSocket class whose sockets the test drives, the
// sockets made so far (made), and socket(n): a promise of the nth socket
// (from 1). Each socket records what the client did to it: sent (parsed),
// raw (as sent), bytes (UTF-8 length of each), closed and closedWith
// ([code, reason] of the first close()). Options:
//   user: the id of the greeting and of acks, errors and events ("alice");
//   greeting: args every greeting carries unless greet's own override them;
//   autoGreet: greet each new socket at once, as if the gateway answered
//     immediately, with the position the client resumed from (or e1.1-1).
export function fakeSockets({ user = "alice", greeting = {}, autoGreet = false } = {}) {
  const made = [];
  const waiting = new Map(); // n -> resolve
  class FakeSocket {
    constructor(url) {
      this.url = new URL(url);
      this.raw = []; // the envelopes as sent
      this.sent = []; // the same, parsed
      this.bytes = []; // the UTF-8 length of each
      this.closed = false;
      this.closedWith = null; // [code, reason] of the client's first close()
      this.onmessage = this.onclose = this.onerror = null;
      this.waiters = []; // [n, resolve]: until n envelopes have been sent
      made.push(this);
      waiting.get(made.length)?.(this);
      if (autoGreet) queueMicrotask(() => this.greet({ pos: this.url.searchParams.get("resume") ?? "e1.1-1" }));
    }

    send(data) {
      this.raw.push(data);
      this.sent.push(JSON.parse(data));
      this.bytes.push(new TextEncoder().encode(data).length);
      this.waiters = this.waiters.filter(([n, resolve]) => (this.sent.length >= n ? void resolve() : true));
    }

    close(code, reason) {
      this.closed = true;
      this.closedWith ??= [code, reason];
    }

    // sends resolves once n envelopes have been sent on this socket.
    sends(n) {
      const p = this.sent.length >= n ? Promise.resolve() : new Promise((r) => this.waiters.push([n, r]));
      return within(p, `envelope ${n} on the socket`);
    }

    // The gateway's side.
    frame(f) {
      this.onmessage?.({ data: JSON.stringify(f) });
    }

    // greet([id,] args) sends "connected": to id when given, else to user.
    greet(...a) {
      const id = typeof a[0] === "string" ? a.shift() : user;
      const args = a[0] ?? {};
      this.frame({ event: "connected", id, args: { conn: `conn-${made.indexOf(this) + 1}`, worker: 0, ...greeting, ...args } });
    }

    ack(ref, args) {
      this.frame({ event: "ack", id: user, ref, args });
    }

    error(ref, code, message = code) {
      this.frame({ event: "error", id: user, ref, args: { code, message } });
    }

    // event sends a "message" event at position pos.
    event(pos) {
      this.frame({ event: "message", id: user, args: { n: pos }, pos });
    }

    drop(code, reason = "") {
      this.onclose?.({ code, reason });
    }

    // params returns the query parameters the client connected with, but
    // heartbeat and prev, which the heartbeat and prev tests look at in url.
    get params() {
      const p = Object.fromEntries(this.url.searchParams);
      delete p.heartbeat;
      delete p.prev;
      return p;
    }

    // token is the token the client connected with.
    get token() {
      return this.url.searchParams.get("token");
    }
  }
  const socket = (n) => (made[n - 1] ? Promise.resolve(made[n - 1]) : new Promise((r) => waiting.set(n, r)));
  return { WebSocket: FakeSocket, made, socket: (n) => within(socket(n), `socket ${n}`) };
}

// token returns an unsigned JWT of payload: the client reads the claims only.
export function token(payload) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(payload)}.c2ln`;
}

// jwt returns an unsigned token naming sub, valid until 2033, with extra.
export const jwt = (sub, extra = {}) => token({ sub, exp: 2e9, ...extra });

// client connects to GATEWAY_URL with opts (WebSocket: a fake's) and a
// fetch that always answers 503, and closes at the test's end.
export function client(t, opts) {
  const sb = connect({ url: GATEWAY_URL, fetch: async () => ({ status: 503 }), ...opts });
  t.after(() => sb.close());
  return sb;
}

// timers counts Node's pending timers: a client that settled every emit
// and closed keeps none.
export const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
