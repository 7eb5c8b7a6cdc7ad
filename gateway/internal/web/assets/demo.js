// The demo chat page: the switchboard client and a few DOM updates.
import { connect } from "/client.js";

const $ = (id) => document.getElementById(id);
const STORE = "switchboard-demo-user"; // per tab: sessionStorage

let sb = null;
const seen = new Set(); // "kind:msg_id" shown already

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
  } else {
    $("worker").classList.add("muted");
  }
}

function showError(el, msg) {
  el.textContent = msg;
  el.hidden = !msg;
}

function addMessage(kind, m) {
  const key = `${kind}:${m.msg_id}`;
  if (seen.has(key)) return;
  seen.add(key);
  const list = $("messages");
  list.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  li.dataset.kind = kind;
  li.dataset.msgId = m.msg_id;
  const meta = document.createElement("span");
  meta.className = "meta";
  const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  meta.textContent = kind === "in" ? `${m.from} → you · ${time}` : `you → ${m.to ?? "yourself"} · ${time}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = m.text;
  li.append(meta, body);
  list.append(li);
  list.scrollTop = list.scrollHeight;
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
  sessionStorage.setItem(STORE, user);
  document.body.dataset.user = user;
  $("me").textContent = user;
  $("login").hidden = true;
  $("chat").hidden = false;
  const url = new URL("/socket", location.href);
  sb = connect({ url: url.href, getToken: () => fetchToken(user) });
  sb.onState(setStatus);
  sb.on("message", (m) => addMessage("in", m));
  sb.on("message_sent", (m) => addMessage("sent", m));
  $("to").focus();
}

function leave() {
  sb?.close();
  sb = null;
  sessionStorage.removeItem(STORE);
  seen.clear();
  $("messages").replaceChildren(Object.assign(document.createElement("li"), {
    className: "empty", textContent: "No messages yet. Send one to another user, e.g. bob.",
  }));
  delete document.body.dataset.worker;
  delete document.body.dataset.conn;
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

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const to = $("to").value.trim();
  const text = $("text").value;
  if (!sb || !to || !text.trim()) return;
  const button = $("send");
  button.disabled = true;
  showError($("send-error"), "");
  try {
    await sb.emit("sendMessage", { to, text });
    $("text").value = "";
  } catch (err) {
    showError($("send-error"), `Not sent (${err.code}): ${err.message}`);
  } finally {
    button.disabled = false;
    $("text").focus();
  }
});

const preset = new URLSearchParams(location.search).get("user") ?? sessionStorage.getItem(STORE);
if (preset) {
  $("user").value = preset;
  join(preset);
}
