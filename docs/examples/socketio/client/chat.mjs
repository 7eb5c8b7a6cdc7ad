// The chat app's Socket.IO client, ported to switchboard's client.js and
// run against a real stack (docs/socketio.md): every feature is checked,
// and the script exits non-zero on the first one that fails.
//
//   curl -so client.js http://$GW/client.js
//   GW=127.0.0.1:7999 GATEWAY_JWT_SECRET=... REDIS_URL=redis://... NOTIFY=../notify/notify node chat.mjs
//
// (Node 20 needs --experimental-websocket.)
import { connect } from "./client.js";
import { createHmac } from "node:crypto";
import { createServer, connect as tcpConnect } from "node:net";
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";

const GW = process.env.GW ?? "127.0.0.1:7999";
const SECRET = process.env.GATEWAY_JWT_SECRET;

// login: what the app's auth middleware did for io.use(); here the app's
// backend signs an HS256 JWT whose sub is the user id.
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
function token(user) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

// A TCP proxy in front of the gateway for bob, so the test can cut his
// network and bring it back.
let up = true;
const pipes = new Set();
const proxy = createServer((c) => {
  if (!up) return c.destroy();
  const g = tcpConnect(Number(GW.split(":")[1]), GW.split(":")[0]);
  c.pipe(g).pipe(c);
  const pair = [c, g];
  pipes.add(pair);
  const end = () => { c.destroy(); g.destroy(); pipes.delete(pair); };
  c.on("error", end).on("close", end);
  g.on("error", end).on("close", end);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const viaProxy = `ws://127.0.0.1:${proxy.address().port}/socket`;

// A device: a client plus everything it received, and a way to await an event.
function device(user, url = `ws://${GW}/socket`) {
  const d = { user, got: [], conn: null, states: [], waiters: [], online: {} };
  d.check = () => {
    d.waiters = d.waiters.filter((w) => !(w.pred() && (w.resolve(), true)));
  };
  d.sb = connect({ url, getToken: () => token(user), minReconnectDelay: 100, maxReconnectDelay: 500 });
  // The app reloads its state from its backend (here it counts reloads).
  d.reload = () => { d.reloads = (d.reloads ?? 0) + 1; d.check(); };
  d.sb.onState((s, info) => {
    d.states.push({ s, ...info });
    if (s === "open") d.conn = info.conn;
    // socket.recovered === false: events may be missing; the app reloads its state.
    if (s === "open" && info.recovered === false) d.reload();
    d.check();
  });
  // So on resync: the open socket's missed events could not be replayed.
  d.sb.on("resync", d.reload);
  d.listen = (event) =>
    d.sb.on(event, (args, frame) => {
      // typing is sent transient (socket.volatile), never replayed on a
      // resume; one that comes late is dropped all the same.
      if (event === "typing" && Date.now() - args.ts > 5000) return;
      d.got.push({ event, args, pos: frame.pos });
      // Who is online: the latest state of each user by its time, since
      // the hooks that announce them may run out of order.
      if (event === "presence" && !(d.online[args.user]?.at > args.at)) d.online[args.user] = args;
      d.check();
    });
  d.until = (pred, what, ms = 8000) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${user}: timed out waiting for ${what}`)), ms);
      d.waiters.push({ pred, resolve: () => (clearTimeout(t), resolve()) });
      d.check();
    });
  // say is socket.to(room).emit("room_say", text): all but this socket get it.
  d.say = (room, text) => d.sb.emit("roomSay", { room, text });
  d.has = (event, pred = () => true) => d.got.filter((g) => g.event === event && pred(g.args));
  d.open = () => d.until(() => d.states.at(-1)?.s === "open", "open");
  for (const e of ["message", "message_sent", "read_receipt", "room_joined", "room_left", "room_say", "typing", "presence", "notification"]) d.listen(e);
  return d;
}

const step = (s) => console.log(`ok  ${s}`);
// bob first, so that he is open to hear carol and alice come online.
// (The gateway counts a user's sockets as it writes each one's lease: of
// two that open at once, exactly one counts 1 and announces the user, so
// alice's devices could open together too.)
const bob = device("bob", viaProxy);
await bob.open();
const carol = device("carol");
await carol.open();
const alice1 = device("alice");
await alice1.open();
await bob.until(() => bob.online.carol?.online === true && bob.online.alice?.online === true, "carol and alice online");
const alice2 = device("alice");
await alice2.open();
const all = [alice1, alice2, bob, carol];
step(`connected: ${all.map((d) => `${d.user}@w${d.states.at(-1).worker}`).join(" ")}; bob heard carol and alice come online`);

// 1:1 with an ack: socket.emit("sendMessage", {...}, (res) => ...)
const sent = await alice1.sb.emit("sendMessage", { to: "bob", text: "hi bob" });
assert.match(sent.msg_id, /^[0-9a-f]{32}$/);
await bob.until(() => bob.has("message", (a) => a.msg_id === sent.msg_id).length === 1, "message");
await alice2.until(() => alice2.has("message_sent", (a) => a.msg_id === sent.msg_id).length === 1, "message_sent on alice's other device");
// An error instead of an ack: callback({ error }) in Socket.IO.
await assert.rejects(alice1.sb.emit("sendMessage", { to: "bob" }), { code: "bad_request" });
// No ack callback: emit returns a promise, and a callback throws, unsent.
assert.throws(() => alice1.sb.emit("sendMessage", { to: "bob", text: "hi" }, () => {}), TypeError);
// Event names match ^[A-Za-z][A-Za-z0-9_-]{0,63}$: Socket.IO's "chat message" does not.
await assert.rejects(alice1.sb.emit("chat message", "hi"), { code: "bad_request" });
// retry: true: chatsvc keeps handlers-svc's idempotency records (package
// service), so an emit sent again after a lost socket runs once.
const retrying = connect({ url: `ws://${GW}/socket`, token: token("dave"), retry: true });
const once = await retrying.emit("sendMessage", { text: "once" });
assert.match(once.msg_id, /^[0-9a-f]{32}$/);
retrying.close();
step("sendMessage: ack carries msg_id; bob got message, alice's other device message_sent");

// Read receipts.
await bob.sb.emit("read", { to: "alice", msg_id: sent.msg_id });
await Promise.all([alice1, alice2].map((d) => d.until(() => d.has("read_receipt", (a) => a.msg_id === sent.msg_id && a.by === "bob").length === 1, "read_receipt")));
step("read: both of alice's devices got read_receipt");

// Rooms: join, message to the room except the sender's socket, member list, leave.
for (const d of [alice1, bob, carol]) await d.sb.emit("joinRoom", { room: "general" });
const said = await alice1.say("general", "hello room");
assert.equal(said.members, 3);
for (const d of [alice2, bob, carol]) await d.until(() => d.has("room_say", (a) => a.text === "hello room").length === 1, "room_say");
// Events to a user reach each of its sockets in order: once alice1 has
// bob's later room_say, it would have had hers before it.
await bob.say("general", "hi alice");
await alice1.until(() => alice1.has("room_say", (a) => a.text === "hi alice").length === 1, "bob's room_say");
assert.equal(alice1.has("room_say", (a) => a.text === "hello room").length, 0, "the sending socket must not get its own room_say");
step("roomSay: alice's other device, bob and carol got it; the sending socket did not");
assert.deepEqual(await carol.sb.emit("members", { room: "general" }), ["alice", "bob", "carol"]);
step("members: [alice bob carol]");
const left = await carol.sb.emit("leaveRoom", { room: "general" });
assert.equal(left.members, 2);
await bob.until(() => bob.has("room_left", (a) => a.user === "carol").length === 1, "room_left");
await assert.rejects(carol.say("general", "x"), { code: "forbidden" });
step("leaveRoom: bob saw room_left; carol's roomSay now forbidden");

// Typing: fire and forget (socket.volatile.emit); the client ignores stale ones.
alice1.sb.emit("typing", { to: "bob" }).catch(() => {});
await bob.until(() => bob.has("typing", (a) => a.from === "alice").length >= 1, "typing");
step("typing: bob saw alice typing");

// Presence: who is online now, from the gateway's leases. dave's socket
// (retry, above) is closed: once bob heard it, he is not counted.
await bob.until(() => bob.online.dave?.online === false, "dave offline");
assert.deepEqual(await bob.sb.emit("whoIsOnline", { users: ["alice", "carol", "dave"] }), { alice: true, carol: true, dave: false });
// alice's second device found her online already: it announced nothing.
assert.equal(bob.has("presence", (a) => a.user === "alice" && a.online).length, 1, "alice announced online once");
step("presence: whoIsOnline; alice's second device announced nothing");

// A notification pushed by another backend (io.to(userId).emit from a job).
const notify = (u, id) => execFileSync(process.env.NOTIFY, [u, id]).toString().trim();
notify("bob", "inv-42");
notify("bob", "inv-42"); // the job run again: bob is told once
await bob.until(() => bob.has("notification").length === 1, "notification");
step("notification from another backend reached bob");

// Reconnection must not lose messages: cut bob's network, send while he is away, bring it back.
// Just before, bob says something to the room: his socket does not get it,
// live or when it resumes (client.js names its earlier connection, prev).
await bob.say("general", "bob before the cut");
await Promise.all([alice1, alice2].map((d) => d.until(() => d.has("room_say", (a) => a.text === "bob before the cut").length === 1, "bob's room_say")));
const before = bob.has("message").length;
up = false;
for (const [c, g] of pipes) { c.destroy(); g.destroy(); }
await bob.until(() => bob.states.at(-1).s === "connecting", "bob connecting");
// His disconnect was his last socket: the others hear he went offline.
await alice1.until(() => alice1.online.bob?.online === false, "bob offline");
const away = [];
for (let i = 0; i < 5; i++) away.push((await alice1.sb.emit("sendMessage", { to: "bob", text: `while away ${i}` })).msg_id);
notify("bob", "inv-43");
up = true;
await bob.open();
const resumed = bob.states.at(-1);
assert.equal(resumed.recovered, true, "bob must resume with recovered:true");
await bob.until(() => bob.has("message").length === before + 5 && bob.has("notification").length === 2, "the missed events");
assert.deepEqual(bob.has("message").slice(before).map((g) => g.args.msg_id), away, "in order, once each");
assert.equal(bob.reloads, undefined, "nothing to reload");
// The replay is in order: his room_say, before the messages, was skipped.
assert.equal(bob.has("room_say", (a) => a.text === "bob before the cut").length, 0, "bob's resumed socket must not be replayed his own room_say");
await alice1.until(() => alice1.online.bob?.online === true, "bob online again");
step(`reconnect: recovered:${resumed.recovered} missed:${resumed.missed}; 5 messages and a notification, in order, once; not his own room_say; offline, then online`);

// Presence offline: carol closes her only socket; the others hear it at once.
carol.sb.close();
await bob.until(() => bob.online.carol?.online === false, "carol offline");
assert.deepEqual(await bob.sb.emit("whoIsOnline", { users: ["carol"] }), { carol: false });
step("presence: carol went offline when she closed");

for (const d of all) d.sb.close();
proxy.close();
console.log("all features work");
