// The demo chat page: the switchboard client and a few DOM updates.
import { connect } from "/client.js";

const $ = (id) => document.getElementById(id);
// Per tab, in sessionStorage: the user, the messages shown (so a reload
// shows them again) and, kept by the client, its place in the user's stream
// (so a reload resumes there and gets what arrived while it was away).
const STORE = "switchboard-demo-user";
const shownKey = (user) => `switchboard-demo-messages ${user}`;
const roomKey = (user) => `switchboard-demo-room ${user}`;
const KEEP = 200; // messages kept for a reload

// storage is the tab's sessionStorage, or null where the browser blocks it
// (site data refused: then merely reading window.sessionStorage throws).
// Without it the page works as before, only a reload starts afresh.
const storage = (() => {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
})();

// load returns what is stored under key, or null; keep stores value
// there (removes it when null). Neither throws: a full storage costs the
// next reload what it could not keep.
function load(key) {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function keep(key, value) {
  try {
    if (value === null) storage?.removeItem(key);
    else storage?.setItem(key, value);
  } catch {
    // full: a reload shows less
  }
}

let sb = null;
let shown = []; // [{kind, m}], the messages shown, oldest first
const seen = new Set(); // "kind:msg_id" shown already
const acked = new Set(); // msg_ids that sendMessage's result named: the gateway acked them
let room = null; // the room this tab chats in, or null
let roomMembers = 0; // its member count, from joinRoom's result, then kept by room_joined and room_left

function setStatus(state, info = {}) {
  document.body.dataset.state = state;
  const text = {
    idle: "not connected",
    connecting: info.delay ? `reconnecting in ${(info.delay / 1000).toFixed(1)} s` : "connecting…",
    open: "connected",
    closed: info.reason ? `closed: ${info.reason}` : "closed",
  }[state];
  $("state-text").textContent = text;
  if (state === "open") {
    document.body.dataset.worker = String(info.worker);
    document.body.dataset.conn = info.conn ?? "";
    $("worker").textContent = `worker ${info.worker}`;
    $("worker").classList.remove("muted");
    // Present after a resume only: then the page says how it went.
    document.body.dataset.recovered = String(info.recovered ?? "");
    document.body.dataset.missed = String(info.missed ?? "");
    if (info.recovered === false) {
      notice("warn", "Messages sent while this tab was away could not be recovered: some may be missing.");
    } else if (info.recovered && info.missed > 0) {
      notice("ok", `Recovered ${info.missed} missed message${info.missed === 1 ? "" : "s"}.`);
    }
  } else {
    $("worker").classList.add("muted");
  }
}

function showError(el, msg) {
  el.textContent = msg;
  el.hidden = !msg;
}

// sendFailure words a failed emit: a timeout may still have been sent
// (its handler may have run), any other failure was not.
function sendFailure(err) {
  if (err.code === "timeout") return `Maybe not sent (timeout): ${err.message}`;
  return `Not sent (${err.code}): ${err.message}`;
}

// notice shows what the page knows about messages it may have missed, until
// the next notice or a click; kind "ok" or "warn", or none to hide it.
function notice(kind, text = "") {
  const el = $("notice");
  el.dataset.kind = kind ?? "";
  el.textContent = text;
  el.hidden = !text;
}

function addMessage(kind, m) {
  if (!showMessage(kind, m)) return;
  shown.push({ kind, m });
  shown = shown.slice(-KEEP);
  keep(shownKey(document.body.dataset.user), JSON.stringify(shown));
}

// showMessage adds a message bubble, unless it is shown already; it
// reports whether it added one.
function showMessage(kind, m) {
  const key = `${kind}:${m.msg_id}`;
  if (seen.has(key)) {
    // The client hands each message over once; the page hides a repeat
    // all the same, and counts it, so a test can tell one came.
    document.body.dataset.repeats = String(Number(document.body.dataset.repeats ?? 0) + 1);
    return false;
  }
  seen.add(key);
  const list = $("messages");
  list.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  if (kind === "room" && m.from === document.body.dataset.user) li.classList.add("mine");
  if (kind === "sent" && acked.has(m.msg_id)) li.classList.add("acked");
  li.dataset.kind = kind;
  li.dataset.msgId = m.msg_id;
  const meta = document.createElement("span");
  meta.className = "meta";
  const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  meta.textContent = {
    in: () => `${m.from} → you · ${time}`,
    sent: () => `you → ${m.to ?? "yourself"} · ${time}`,
    room: () => `${m.from} in #${m.room} · ${time}`,
  }[kind]();
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = m.text;
  li.append(meta, body);
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return true;
}

// note adds a line about a room (someone joined or left); not kept.
function note(text) {
  const list = $("messages");
  list.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.className = "sys";
  li.textContent = text;
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

// showRoom shows the room this tab chats in, and its member count.
function showRoom(r, members) {
  room = r;
  roomMembers = members;
  document.body.dataset.room = r ?? "";
  $("room-status").hidden = !r;
  $("room-status").textContent = r ? `In #${r} · ${members} member${members === 1 ? "" : "s"}` : "";
  $("room-send-form").hidden = !r;
  $("leave-room").hidden = !r;
  // Not kept, the room is still joined in Redis; only a reload forgets which.
  keep(roomKey(document.body.dataset.user), r ?? null);
}

async function joinRoom(r) {
  showError($("room-error"), "");
  try {
    // joinRoom answers with the room and its member count: the ack's result.
    const res = await sb.emit("joinRoom", { room: r });
    showRoom(res.room, res.members);
    $("room-text").focus();
  } catch (err) {
    showError($("room-error"), `Cannot join (${err.code}): ${err.message}`);
  }
}

async function fetchToken(user) {
  const res = await fetch(`/dev/token?user=${encodeURIComponent(user)}`, { cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body.token;
}

async function join(user) {
  showError($("login-error"), "");
  try {
    await fetchToken(user); // fail here, on the form, if this gateway mints no tokens
  } catch (err) {
    showError($("login-error"), `Cannot get a token: ${err.message}`);
    return;
  }
  keep(STORE, user);
  document.body.dataset.user = user;
  $("me").textContent = user;
  $("login").hidden = true;
  $("chat").hidden = false;
  try {
    shown = JSON.parse(load(shownKey(user)) ?? "[]");
    for (const { kind, m } of shown) showMessage(kind, m);
  } catch {
    shown = [];
  }
  const url = new URL("/socket", location.href);
  // retry: a message sent as the socket drops goes again on the next one,
  // and handlers-svc sends it once.
  sb = connect({ url: url.href, getToken: () => fetchToken(user), storage, retry: true });
  sb.onState(setStatus);
  sb.on("message", (m) => addMessage("in", m));
  sb.on("message_sent", (m) => addMessage("sent", m));
  sb.on("room_message", (m) => addMessage("room", m));
  sb.on("room_joined", (e) => {
    note(e.user === user ? `you joined #${e.room}` : `${e.user} joined #${e.room}`);
    if (e.room === room && e.user !== user) showRoom(room, roomMembers + 1);
  });
  sb.on("room_left", (e) => {
    note(e.user === user ? `you left #${e.room}` : `${e.user} left #${e.room}`);
    if (e.room === room && e.user !== user) showRoom(room, Math.max(1, roomMembers - 1));
  });
  const saved = load(roomKey(user));
  if (saved) joinRoom(saved); // membership lives in Redis: this only shows it again
  sb.on("resync", (r) => notice("warn", `Some messages were lost on the way (${r.reason}): this list may be incomplete.`));
  $("to").focus();
}

function leave() {
  sb?.close();
  sb = null;
  try {
    storage?.clear(); // the user, the messages and the client's place: the next user starts afresh
  } catch {
    // nothing was kept
  }
  shown = [];
  seen.clear();
  acked.clear();
  showRoom(null, 0);
  notice();
  $("messages").replaceChildren(Object.assign(document.createElement("li"), {
    className: "empty", textContent: "No messages yet. Send one to another user, e.g. bob.",
  }));
  delete document.body.dataset.worker;
  delete document.body.dataset.conn;
  delete document.body.dataset.recovered;
  delete document.body.dataset.missed;
  delete document.body.dataset.repeats;
  setStatus("idle");
  $("worker").textContent = "worker –";
  $("chat").hidden = true;
  $("login").hidden = false;
  $("user").focus();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = $("user").value.trim();
  if (user) join(user);
});

$("logout").addEventListener("click", leave);
$("notice").addEventListener("click", () => notice());

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const to = $("to").value.trim();
  const text = $("text").value;
  if (!sb || !to || !text.trim()) return;
  const button = $("send");
  button.disabled = true;
  showError($("send-error"), "");
  try {
    // sendMessage answers with the message's id and time (the ack's result):
    // the bubble with that id gets its tick, whenever message_sent arrives.
    const { msg_id: id } = await sb.emit("sendMessage", { to, text });
    acked.add(id);
    document.body.dataset.lastSent = id;
    document.querySelector(`#messages li.sent[data-msg-id="${id}"]`)?.classList.add("acked");
    $("text").value = "";
  } catch (err) {
    showError($("send-error"), sendFailure(err));
  } finally {
    button.disabled = false;
    $("text").focus();
  }
});

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const r = $("room").value.trim();
  if (sb && r) joinRoom(r);
});

$("leave-room").addEventListener("click", async () => {
  if (!sb || !room) return;
  showError($("room-error"), "");
  try {
    await sb.emit("leaveRoom", { room });
    showRoom(null, 0);
  } catch (err) {
    showError($("room-error"), `Cannot leave (${err.code}): ${err.message}`);
  }
});

$("room-send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("room-text").value;
  if (!sb || !room || !text.trim()) return;
  const button = $("room-send");
  button.disabled = true;
  showError($("room-error"), "");
  try {
    await sb.emit("sendToRoom", { room, text });
    $("room-text").value = "";
  } catch (err) {
    showError($("room-error"), sendFailure(err));
  } finally {
    button.disabled = false;
    $("room-text").focus();
  }
});

const preset = new URLSearchParams(location.search).get("user") ?? load(STORE);
if (preset) {
  $("user").value = preset;
  join(preset);
}
