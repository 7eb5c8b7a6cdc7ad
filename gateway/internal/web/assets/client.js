// switchboard client: one dependency-free ES module for browsers and Node 20+.
//
//   import { connect } from "/client.js";
//   const sb = connect({ url: "ws://localhost:7999/socket", token });
//   sb.on("message", (args, frame) => {});
//   sb.onState((state, info) => {});
//   sb.on("resync", (args) => {}); // events were lost: reload the app's state
//   const { msg_id } = await sb.emit("sendMessage", { to: "bob", text: "hi" }); // the handler's result
//   sb.close();
//
// It keeps its place in the user's streams and resumes there on every
// reconnect (docs/protocol.md section 6); with storage: sessionStorage, a
// reloaded page resumes too. With getToken, it renews the token shortly
// before it expires and moves to a new socket itself, without failing an
// emit or handing an event twice. With retry: true, an emit whose socket is
// lost, or that the gateway answers "unavailable", is sent again with the
// same idempotency key until it has an answer or its ackTimeout passes, and
// handlers-svc runs its handler once.
//
// The wire contract is docs/protocol.md (v2); client.d.ts beside this file types it.

const DEFAULTS = {
  ackTimeout: 10_000,
  minReconnectDelay: 1_000,
  maxReconnectDelay: 30_000,
  probeTimeout: 5_000,
  stableAfter: 10_000,
  connectTimeout: 10_000,
  heartbeatGrace: 10_000,
  renewMargin: 60_000,
};

// HEARTBEAT is the event of the gateway's heartbeat frame (docs/protocol.md
// section 2): outside the app's event names, and never handed to the app.
const HEARTBEAT = "$ping";

// RESEND_MIN and RESEND_MAX (ms) bound the back-off of an emit sent again
// after an "unavailable" answer: the nth waits between half and all of
// min(RESEND_MAX, RESEND_MIN * 2^(n-1)). Its ackTimeout bounds the whole.
const RESEND_MIN = 100;
const RESEND_MAX = 2_000;

// SLEPT and WAKE_READ (ms): a timer that fires SLEPT ms or more after it
// was due found the process stopped meanwhile (a phone asleep, a frozen
// tab), and the frames that reached the socket then may still be unread
// (Node runs the timers that came due before it reads its sockets). Such a
// timer looks again WAKE_READ ms later, once they have been read, before
// it rejects an emit as unanswered, takes a socket for dead or gives up an
// attempt whose greeting may be among them.
const SLEPT = 1_000;
const WAKE_READ = 100;

// monotonic is a clock that only moves forward (milliseconds): the
// heartbeat watch must not be fooled by a wall clock set back.
const monotonic = () => globalThis.performance?.now?.() ?? Date.now();

/**
 * connect starts connecting at once and returns the client. It reconnects by
 * itself after every close except sb.close(), a refused token (or a getToken
 * that returns no string), a backend's disconnect (4003) or a URL the
 * WebSocket constructor refuses.
 */
export function connect(opts) {
  return new Client(opts);
}

class Client {
  #opts;
  #WS;
  #ws = null; // the current socket, or null between attempts
  #abandon = null; // (why, quietSince?) => ends #ws as lost and closes it; null with #ws
  #gen = 0; // counts attempts: a callback of an older attempt finds it moved on
  #connectTimer = null; // ends the current attempt after connectTimeout
  #state = "connecting";
  #closed = false; // sb.close() called or the token refused: for good
  #attempt = 0; // failed attempts since the last connection that stayed open stableAfter ms
  #timer = null; // pending reconnect
  #wake = null; // listener for the browser's "online", "pageshow" and "visibilitychange"
  #offline = null; // listener for the browser's "offline"
  #shown = null; // listener for the browser's "pagehide" and "pageshow", for the cursor
  #nextRef = 0;
  #pending = new Map(); // ref -> {ref, resolve, reject, timer, data, idem, sent, ws (sent on), sentAt, sends, unavailable, again (timer)}
  #unanswered = new Map(); // ref -> the same, rejected (timeout) before it had been on its socket ackTimeout ms
  #events = new Map(); // event name -> Set of handlers
  #stateHandlers = new Set();
  #stateInfo = {};
  #changes = 0; // counts state changes, so that announcing one can tell it is outdated
  #cursor; // where the app is in its streams
  #maxFrame = null; // the largest envelope, in UTF-8 bytes, the gateway said it reads; null: not said
  #watch = null; // the timer of the heartbeat watch of the current socket
  #renewTimer = null; // when to renew the token of the current socket
  #renewFailures = 0; // renewals of the current socket's token that failed in a row
  #renewing = null; // {timer, abort} while a renewal waits for getToken
  #switching = null; // {ws, token, got, timer} while the client leaves ws for a renewed token
  #retire = null; // () => ends #ws quietly, for a renewal; null with #ws

  constructor(opts) {
    if (!opts || typeof opts.url !== "string" || opts.url === "") {
      throw new TypeError("switchboard: connect({url}) needs a url");
    }
    this.#opts = { ...opts };
    for (const [name, def] of Object.entries(DEFAULTS)) this.#opts[name] = duration(name, opts[name], def);
    this.#opts.heartbeat = opts.heartbeat ?? true;
    if (typeof this.#opts.heartbeat !== "boolean") throw new TypeError("switchboard: heartbeat must be true or false");
    this.#opts.renew = opts.renew ?? true;
    if (typeof this.#opts.renew !== "boolean") throw new TypeError("switchboard: renew must be true or false");
    this.#opts.retry = opts.retry ?? false;
    if (typeof this.#opts.retry !== "boolean") throw new TypeError("switchboard: retry must be true or false");
    if (this.#opts.retry && typeof globalThis.crypto?.getRandomValues !== "function") {
      throw new TypeError("switchboard: retry needs crypto.getRandomValues for its idempotency keys");
    }
    if (opts.token !== undefined && opts.token !== null && typeof opts.token !== "string") {
      throw new TypeError(`switchboard: token must be a string (the JWT), not ${typeof opts.token}`);
    }
    this.#WS = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WS !== "function") {
      throw new TypeError("switchboard: no WebSocket: pass opts.WebSocket (Node 20 without --experimental-websocket)");
    }
    const storage = opts.storage ?? null;
    if (storage !== null && !["getItem", "setItem", "removeItem"].every((m) => typeof storage[m] === "function")) {
      throw new TypeError("switchboard: storage must have getItem, setItem and removeItem, like sessionStorage");
    }
    this.#cursor = new Cursor(storage);
    if (typeof globalThis.addEventListener === "function") {
      // A browser that comes back online, restores the page from its
      // back/forward cache or shows a hidden page again (whose timers it
      // may have held back for minutes) need not wait out the back-off.
      this.#wake = (ev) => {
        if (this.#closed || this.#timer === null) return;
        if (ev?.type === "visibilitychange" && globalThis.document?.visibilityState === "hidden") return;
        clearTimeout(this.#timer);
        this.#open();
      };
      // A browser that goes offline has lost the socket, though it may not
      // say so until TCP gives up, minutes later: end it now, so the app
      // sees "connecting" and its emits fail or wait, and "online" brings
      // the next attempt at once.
      this.#offline = () => this.#abandon?.("the browser went offline");
      for (const name of WAKE_EVENTS) globalThis.addEventListener(name, this.#wake);
      globalThis.addEventListener("offline", this.#offline);
      // The page's conn ids are held while it is shown (Cursor.hold).
      this.#shown = (ev) => (ev?.type === "pagehide" ? this.#cursor.release() : this.#cursor.hold());
      for (const name of PAGE_EVENTS) globalThis.addEventListener(name, this.#shown);
    }
    this.#open();
  }

  /** on subscribes to a server event by name and returns the unsubscribe function. */
  on(event, handler) {
    if (typeof handler !== "function") throw new TypeError("switchboard: on(event, handler) needs a function");
    let set = this.#events.get(event);
    if (!set) this.#events.set(event, (set = new Set()));
    const entry = { handler }; // an entry per call, so the same function may be added twice
    set.add(entry);
    return () => {
      // The last listener of a name takes its set along: an app that
      // subscribes per room or conversation leaves nothing behind.
      if (set.delete(entry) && set.size === 0 && this.#events.get(event) === set) this.#events.delete(event);
    };
  }

  /**
   * onState calls handler with the current state at once and then on every
   * change: "connecting" (once per attempt), "open", "closed".
   */
  onState(handler) {
    if (typeof handler !== "function") throw new TypeError("switchboard: onState(handler) needs a function");
    const entry = { handler };
    this.#stateHandlers.add(entry);
    safeCall(handler, this.#state, { ...this.#stateInfo });
    return () => this.#stateHandlers.delete(entry);
  }

  /**
   * emit sends an event and resolves when the gateway acks it, with the
   * handler's result (the ack's args; undefined when it returned none). It
   * rejects with an Error carrying .code and .message on an error frame, "timeout" after
   * ackTimeout (waiting for the connection included), "disconnected" when the
   * socket closed after sending and before the answer, "closed" once closed
   * for good. With retry, it carries an idempotency key (idem), and neither
   * a lost socket nor an "unavailable" answer ends it: it is sent again,
   * the same envelope, until an answer or ackTimeout. It takes no callback:
   * a function as args, or any argument after args (Socket.IO's ack
   * callback, its several args), throws a TypeError, and nothing is sent.
   */
  emit(event, args, ...extra) {
    if (extra.length > 0 || typeof args === "function") {
      throw new TypeError("switchboard: emit(event, args) returns a promise of the handler's result: await it (or .then) instead of passing a callback, and send one args value");
    }
    if (this.#closed) return Promise.reject(clientError("closed", "the client is closed"));
    const ref = String(++this.#nextRef);
    const env = { event, ref };
    if (args !== undefined) env.args = args;
    // The key is the emit's for its life: every sending of it carries the
    // same envelope, ref included (a ref names the emit on each socket).
    if (this.#opts.retry) env.idem = idemKey();
    let data;
    try {
      data = JSON.stringify(env);
    } catch (err) {
      return Promise.reject(clientError("bad_request", `args cannot be sent as JSON: ${err.message}`));
    }
    // Over the gateway's limit the envelope would close the socket (1009),
    // failing every emit on it: refuse this one alone, unsent. Only the
    // open socket's limit is known: while connecting, #maxFrame is the last
    // gateway's, and #send checks the emit against the next one's.
    const big = this.#state === "open" ? tooBig(data, this.#maxFrame) : "";
    if (big) return Promise.reject(clientError("too_big", big));
    return new Promise((resolve, reject) => {
      const p = { ref, resolve, reject, data, idem: env.idem, sent: false, ws: null, timer: null, sentAt: 0, sends: 0, unavailable: 0, again: null };
      const limit = this.#opts.ackTimeout;
      let due = monotonic() + limit;
      const expire = () => {
        if (monotonic() - due >= SLEPT) {
          due = Infinity; // once: the second look judges
          p.timer = setTimeout(expire, WAKE_READ);
          return;
        }
        this.#pending.delete(ref);
        clearTimeout(p.again);
        let msg = `not connected within ${limit} ms`;
        if (p.sent) msg = `no answer to ${event} within ${limit} ms`;
        else if (p.sends > 0) {
          const unavailable = p.unavailable > 0 ? `, answered unavailable ${p.unavailable} times` : "";
          msg = `no answer to ${event} within ${limit} ms (sent ${p.sends} times${unavailable})`;
        }
        reject(clientError("timeout", msg));
        this.#switchOver(); // a renewal waiting for this answer waits no more
        if (!p.sent || p.ws !== this.#ws) return;
        // The gateway answers every envelope, with a timeout error of its
        // own when a handler is slow, so no answer at all means the socket
        // is dead but not yet closed (a browser cannot see the gateway's
        // pings): drop it and reconnect. Only silence for ackTimeout on
        // the socket says so: an emit that waited for the connection
        // was sent later, and its answer may still be on the way; and a
        // socket that delivered any frame since the emit was sent is
        // alive (a gateway that stops reading a socket over
        // GATEWAY_MAX_INFLIGHT answers its last envelopes late).
        const left = p.sentAt + limit - monotonic();
        if (left <= 0) {
          this.#abandon?.(msg, p.sentAt);
          return;
        }
        this.#unanswered.set(ref, p);
        p.timer = setTimeout(() => {
          if (this.#unanswered.delete(ref) && p.ws === this.#ws) this.#abandon?.(`no answer to ${event} within ${limit} ms of sending it`, p.sentAt);
        }, left);
      };
      p.timer = setTimeout(expire, limit);
      this.#pending.set(ref, p);
      if (this.#state === "open") this.#send(p);
    });
  }

  /** close closes the socket for good: no reconnect, pending emits reject with "closed". */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop();
    const ws = this.#ws;
    this.#ws = null;
    this.#abandon = this.#retire = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    this.#failPending(() => true, "closed", "the client is closed");
    this.#forgetUnanswered();
    this.#setState("closed", { reason: "closed by the client" });
  }

  #setState(state, info = {}) {
    this.#state = state;
    this.#stateInfo = info;
    const change = ++this.#changes;
    for (const { handler } of [...this.#stateHandlers]) {
      // A listener that moved the client on (closed it, say) had every
      // listener told of the newer state: the rest must not hear this one
      // after it.
      if (change !== this.#changes) return;
      safeCall(handler, state, { ...info });
    }
  }

  // #stop cancels the timers of the client and of the current attempt, and
  // stops listening to the browser; for good, once closed.
  #stop() {
    clearTimeout(this.#timer);
    this.#timer = null;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    clearTimeout(this.#watch);
    this.#watch = null;
    clearTimeout(this.#renewTimer);
    this.#renewTimer = null;
    if (this.#renewing) {
      // A renewal waiting for getToken ends now: its time limit would
      // hold a closed client's process for up to connectTimeout.
      clearTimeout(this.#renewing.timer);
      this.#renewing.abort();
      this.#renewing = null;
    }
    clearTimeout(this.#switching?.timer);
    this.#switching = null;
    // Closed for good (close(), or by the gateway): the page's ids are
    // free for a client made next on it, and for the page after a reload,
    // which this client no longer hears go.
    if (this.#closed) this.#cursor.release();
    if (this.#closed && this.#wake) {
      for (const name of WAKE_EVENTS) globalThis.removeEventListener?.(name, this.#wake);
      globalThis.removeEventListener?.("offline", this.#offline);
      for (const name of PAGE_EVENTS) globalThis.removeEventListener?.(name, this.#shown);
      this.#wake = this.#offline = this.#shown = null;
    }
  }

  // #open makes the next attempt, with a token from getToken, or the one a
  // renewal got (given: {token, got}).
  async #open(given = null) {
    this.#timer = null;
    if (this.#closed) return;
    const gen = ++this.#gen;
    const stale = () => this.#closed || gen !== this.#gen;
    // getToken and the handshake up to the greeting get connectTimeout in
    // all: a token that never comes or a gateway that never answers must
    // not stall the client.
    const limit = this.#opts.connectTimeout;
    clearTimeout(this.#connectTimer);
    let due = monotonic() + limit;
    const expire = () => {
      this.#connectTimer = null;
      if (stale()) return;
      if (monotonic() - due >= SLEPT) {
        due = Infinity; // once: the second look judges
        this.#connectTimer = setTimeout(expire, WAKE_READ);
        return;
      }
      const why = `not connected within ${limit} ms`;
      if (this.#abandon) {
        this.#abandon(why);
      } else {
        this.#gen++; // getToken may still settle: ignore it
        this.#retry(why);
      }
    };
    this.#connectTimer = setTimeout(expire, limit);
    let token = given ? given.token : this.#opts.token;
    let got = given?.got ?? null; // when the token came from getToken: {wall, mono}
    if (!given && typeof this.#opts.getToken === "function") {
      try {
        token = await this.#opts.getToken();
      } catch (err) {
        if (!stale()) this.#retry(`getToken failed: ${err?.message ?? err}`);
        return;
      }
      if (stale()) return;
      // An object (the whole JSON of a token endpoint, say) would go as
      // "[object Object]" and come back as a malformed token: no attempt
      // can do better, and the app's mistake is named.
      if (token !== undefined && token !== null && typeof token !== "string") {
        this.#fail(`getToken must return the token as a string, not ${typeof token}`);
        return;
      }
      got = { wall: Date.now(), mono: monotonic() };
    }
    let url;
    let base; // the URL without parameters: with the user, it names the stored positions
    let resume;
    try {
      base = socketURL(this.#opts.url, {});
      resume = this.#cursor.resume(tokenUser(token), base);
      url = socketURL(this.#opts.url, { token, ...resume, heartbeat: this.#opts.heartbeat ? "1" : undefined });
    } catch (err) {
      this.#fail(`bad url: ${err.message}`);
      return;
    }
    let ws;
    try {
      ws = new this.#WS(url);
    } catch (err) {
      // A browser refuses for good a URL it cannot use (SyntaxError) or may
      // not (SecurityError: ws: from an https page, a blocked port).
      const why = `cannot open: ${err?.message ?? err}`;
      if (err?.name === "SyntaxError" || err?.name === "SecurityError") this.#fail(why);
      else this.#retry(why);
      return;
    }
    this.#ws = ws;
    let stopped = null; // the reason of a close that stops the client for good (4003)
    let greeted = false;
    let greetedAt = 0;
    let heardAt = 0; // when the last frame arrived
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      heardAt = monotonic();
      const frame = parseFrame(ev.data);
      if (!frame) return;
      if (frame.event === HEARTBEAT) {
        // Never handed to the app. It may carry the socket's positions,
        // when events this socket was left out of (except_conns) moved
        // them past the last frame that did: the client moves on with
        // them, so a resume after those events expired recovers.
        if (greeted) this.#cursor.skipTo(frame);
        return;
      }
      if (frame.event === "connected" && !greeted) {
        greeted = true;
        greetedAt = Date.now();
        clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
        const args = frame.args ?? {};
        this.#maxFrame = Number.isSafeInteger(args.max_frame) && args.max_frame > 0 ? args.max_frame : null;
        if (this.#opts.heartbeat && Number.isSafeInteger(args.heartbeat) && args.heartbeat > 0) {
          // The gateway sends a frame every heartbeat ms: a socket silent
          // for longer, and the grace, is dead though the browser may not
          // see it for minutes (a NAT that forgot it, a network switched).
          const quiet = Math.min(args.heartbeat + this.#opts.heartbeatGrace, MAX_TIMER);
          let due = monotonic() + quiet;
          const watch = () => {
            if (this.#ws !== ws) return;
            const now = monotonic();
            if (now - due >= SLEPT) {
              due = Infinity; // once: the second look judges
              this.#watch = setTimeout(watch, WAKE_READ);
              return;
            }
            const left = heardAt + quiet - now;
            if (left > 0) {
              due = now + left;
              this.#watch = setTimeout(watch, left);
            } else this.#abandon?.(`no frame from the gateway for ${quiet} ms`);
          };
          this.#watch = setTimeout(watch, quiet);
        }
        this.#cursor.start(typeof frame.id === "string" ? frame.id : null, base, args);
        // The emits that waited go first, before any a state listener makes,
        // and those to send again (retry) with them, in the order they were
        // made; one backing off after "unavailable" goes when its wait ends.
        for (const p of this.#pending.values()) if (!p.sent && p.again === null) this.#send(p);
        const info = { worker: args.worker, conn: args.conn };
        if (typeof args.recovered === "boolean") info.recovered = args.recovered;
        else if (resume.resume || resume.bresume) info.recovered = false; // a gateway that ignored the resume replayed nothing
        if (Number.isInteger(args.missed)) info.missed = args.missed;
        this.#setState("open", info);
        if (this.#ws !== ws) return; // a state listener closed the client
        this.#renewFailures = 0;
        if (got && this.#opts.renew) {
          const delay = renewIn(tokenClaims(token), got.wall, this.#opts.renewMargin, given !== null);
          if (delay !== null) this.#renewLater(ws, token, delay - (monotonic() - got.mono));
        }
      }
      this.#dispatch(frame);
    };
    // lost ends this socket once, however it ended; probe says whether a
    // refused upgrade is possible (not when the client gave up on it), now
    // whether the close asks the client to come back at once.
    const lost = (why, code, probe = true, now = false) => {
      if (this.#ws !== ws) return; // handled already
      this.#ws = null;
      this.#abandon = this.#retire = null;
      detach(ws);
      clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
      // What was sent on this socket will never be answered: it fails, or,
      // with an idempotency key, goes again on the next socket, if there
      // is one (not after a 4003).
      this.#takeBack(!this.#closed && stopped === null, `connection lost before the answer (${why})`);
      this.#forgetUnanswered();
      if (this.#closed) return;
      if (stopped !== null) {
        // A backend disconnected the user or this connection (logged out,
        // banned): no attempt could do better.
        this.#fail(stopped, undefined, code);
        return;
      }
      if (greeted) {
        // Only a connection that lasted starts the back-off over: one that
        // is greeted and dropped at once (a gateway in trouble) must not
        // bring every client back twice a second.
        if (Date.now() - greetedAt >= this.#opts.stableAfter) this.#attempt = 0;
        this.#retry(why, code, now);
        return;
      }
      // Closed before the gateway greeted us: the upgrade may have been
      // refused. A browser WebSocket cannot see the HTTP status, so ask,
      // on the 1st, 2nd, 4th, 8th... failure in a row only: a gateway that
      // is down gets no second request per attempt. A close with a code of
      // the gateway's (1013 when it sheds load, say) followed an accepted
      // upgrade: a refused one shows as 1006, or an error. A close that
      // asks for a reconnect at once (a backend's 4002, which can come
      // before "connected") is granted it here too.
      const failures = this.#attempt + 1;
      const refusable = code === undefined || code === 1006;
      if (!probe || !refusable || (failures & (failures - 1)) !== 0) {
        this.#retry(why, code, now);
        return;
      }
      this.#probe(url).then((refusal) => {
        if (stale()) return;
        if (refusal) this.#fail(refusal.reason, refusal.status);
        else this.#retry(why, code);
      });
    };
    ws.onclose = (ev) => {
      if (ev.code === 4003) stopped = ev.reason || "disconnected";
      lost(ev.reason ? `closed ${ev.code}: ${ev.reason}` : `closed ${ev.code}`, ev.code, true, atOnce(ev.code, ev.reason));
    };
    // quietSince, when given: only a socket that has delivered no frame
    // since then is abandoned.
    this.#abandon = (why, quietSince) => {
      if (quietSince !== undefined && heardAt > quietSince) return;
      lost(why, undefined, false);
      try {
        ws.close();
      } catch {
        // not open yet, or closing
      }
    };
    // retire ends this socket for a renewal: closed normally, its
    // positions kept, nothing retried; the caller opens the next one.
    this.#retire = () => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#abandon = this.#retire = null;
      detach(ws);
      clearTimeout(this.#watch);
      this.#watch = null;
      if (Date.now() - greetedAt >= this.#opts.stableAfter) this.#attempt = 0;
      try {
        ws.close(1000, "token renewed");
      } catch {
        // closing already
      }
    };
    // Browsers follow an error with a close; some runtimes (Node 20's
    // WebSocket when the connection is refused) never close, so an error
    // counts as the end of the socket.
    ws.onerror = () => {
      if (this.#ws !== ws) return;
      lost("closed 1006: connection failed", 1006); // detaches first: close() may report again
      try {
        ws.close();
      } catch {
        // not open yet, or closing
      }
    };
  }

  #send(p) {
    if (!this.#ws || this.#switching) return; // held during a renewal's switch: sent on the next socket

    const big = tooBig(p.data, this.#maxFrame); // the limit of this socket's gateway
    if (big) {
      this.#pending.delete(p.ref);
      clearTimeout(p.timer);
      clearTimeout(p.again);
      p.reject(clientError("too_big", big));
      return;
    }
    try {
      this.#ws.send(p.data);
      p.sent = true;
      p.ws = this.#ws;
      p.sentAt = monotonic();
      p.sends++;
    } catch {
      // The socket is closing; onclose retries and the emit waits on.
    }
  }

  #dispatch(frame) {
    if (frame.event === "ack" || (frame.event === "error" && typeof frame.ref === "string")) {
      // A late answer to an emit that timed out: the socket is alive. The
      // frame goes on to the listeners of its event.
      const late = this.#unanswered.get(frame.ref);
      if (late) {
        this.#unanswered.delete(frame.ref);
        clearTimeout(late.timer);
      }
      const p = this.#pending.get(frame.ref);
      if (p && p.sent && frame.event === "error" && frame.args?.code === "unavailable" && p.idem !== undefined) {
        // The handler did not run, or, if it may have, handlers-svc
        // keeps its answer under the key: the same envelope again is safe.
        this.#resendLater(p);
        this.#switchOver();
        return;
      }
      if (p) {
        this.#pending.delete(frame.ref);
        clearTimeout(p.timer);
        clearTimeout(p.again);
        if (frame.event === "ack") p.resolve(frame.args);
        else p.reject(clientError(frame.args?.code ?? "error", frame.args?.message ?? "error", frame));
        this.#switchOver();
        return;
      }
    }
    if (this.#cursor.seen(frame)) return; // handed to the app already
    const set = this.#events.get(frame.event);
    if (set) for (const { handler } of [...set]) safeCall(handler, frame.args, frame);
    // Only once the app has it does the client count an event processed; a
    // resync moves the client to where the gateway carries on.
    this.#cursor.advance(frame.event === "resync" ? frame.args : frame);
  }

  // #renewLater renews the token of socket ws in delay ms (renewIn's floor
  // and the back-off of a failed renewal keep renewals apart).
  #renewLater(ws, token, delay) {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => this.#renew(ws, token), Math.min(Math.max(delay, 0), MAX_TIMER));
  }

  // #renew gets a fresh token for socket ws, whose token is token, and
  // moves to a new socket with it. A getToken that fails, or gives a token
  // that expires no later, is tried again after the back-off; meanwhile ws
  // serves on, and should its token expire first, the gateway's 4001 makes
  // the client reconnect as after any close.
  async #renew(ws, token) {
    this.#renewTimer = null;
    if (this.#ws !== ws || this.#switching || this.#closed) return;
    let fresh;
    let waiting = null;
    try {
      fresh = await Promise.race([
        this.#opts.getToken(),
        new Promise((_, reject) => {
          const timer = setTimeout(() => reject(new Error("getToken took too long")), this.#opts.connectTimeout);
          waiting = this.#renewing = { timer, abort: () => reject(new Error("stopped")) };
        }),
      ]);
    } catch {
      fresh = null;
    } finally {
      clearTimeout(waiting?.timer);
      if (this.#renewing === waiting) this.#renewing = null;
    }
    if (this.#ws !== ws || this.#switching || this.#closed) return;
    const exp = tokenClaims(fresh)?.exp;
    if (typeof fresh !== "string" || typeof exp !== "number" || !(exp > tokenClaims(token).exp)) {
      const { minReconnectDelay: lo, maxReconnectDelay: hi } = this.#opts;
      const ceiling = Math.min(hi, lo * 2 ** Math.min(this.#renewFailures++, 30));
      this.#renewLater(ws, token, Math.round(Math.random() * ceiling));
      return;
    }
    // New emits wait from here; those in flight on ws are answered first,
    // for ackTimeout at most (by then each has its answer or its timeout).
    const got = { wall: Date.now(), mono: monotonic() };
    this.#switching = { ws, token: fresh, got, timer: setTimeout(() => this.#switchOver(true), this.#opts.ackTimeout) };
    this.#switchOver();
  }

  // #switchOver ends a renewal's switch once nothing sent on the old socket
  // awaits its answer, or when forced: it closes that socket normally and
  // opens the next with the fresh token, resuming where the app is (events
  // that arrive on both are handed over once, by position). What is still
  // unanswered then fails as on any lost socket.
  #switchOver(force = false) {
    const sw = this.#switching;
    if (!sw || (!force && [...this.#pending.values()].some((p) => p.sent && p.ws === sw.ws))) return;
    clearTimeout(sw.timer);
    this.#switching = null;
    if (this.#ws !== sw.ws) return;
    this.#retire?.();
    this.#takeBack(true, "connection renewed before the answer");
    this.#forgetUnanswered();
    // Not an attempt after a failure: the back-off does not grow for it.
    this.#setState("connecting", { reason: "renewing the token", delay: 0 });
    if (this.#closed) return; // a state listener closed the client
    this.#open({ token: sw.token, got: sw.got });
  }

  // #takeBack ends the sending of every emit sent on the socket that is
  // going: again says another socket follows, on which those with an
  // idempotency key (retry) are sent once more; the others reject with
  // "disconnected", since their handler may or may not have run.
  #takeBack(again, message) {
    if (again) {
      for (const p of this.#pending.values()) {
        if (!p.sent || p.idem === undefined) continue;
        p.sent = false;
        p.ws = null;
      }
    }
    this.#failPending((p) => p.sent, "disconnected", message);
  }

  // #resendLater sends emit p again after the back-off of its nth
  // "unavailable", on the socket open then, or else on the next one.
  #resendLater(p) {
    p.sent = false;
    p.ws = null;
    clearTimeout(p.again); // one wait at a time: never two sendings in flight
    const ceiling = Math.min(RESEND_MAX, RESEND_MIN * 2 ** Math.min(p.unavailable++, 30));
    p.again = setTimeout(() => {
      p.again = null;
      if (this.#pending.get(p.ref) === p && !p.sent && this.#state === "open") this.#send(p);
    }, Math.round(ceiling / 2 + Math.random() * (ceiling / 2)));
  }

  // #forgetUnanswered stops watching for the answers of emits that timed
  // out: their socket is gone.
  #forgetUnanswered() {
    for (const p of this.#unanswered.values()) clearTimeout(p.timer);
    this.#unanswered.clear();
  }

  #failPending(which, code, message) {
    for (const [ref, p] of this.#pending) {
      if (!which(p)) continue;
      this.#pending.delete(ref);
      clearTimeout(p.timer);
      clearTimeout(p.again);
      p.reject(clientError(code, message));
    }
  }

  // #retry schedules the next attempt with exponential back-off and full
  // jitter: attempt n (from 1) waits a random time up to
  // min(max, min * 2^(n-1)), so the first within minReconnectDelay, and
  // clients dropped together do not come back together. now asks for no
  // wait (a close that lost nothing but the socket); granted to the first
  // attempt only, so a socket closed again and again still backs off.
  #retry(reason, code, now = false) {
    this.#stop();
    const { minReconnectDelay: lo, maxReconnectDelay: hi } = this.#opts;
    const ceiling = Math.min(hi, lo * 2 ** Math.min(this.#attempt, 30));
    const delay = now && this.#attempt === 0 ? 0 : Math.round(Math.random() * ceiling);
    this.#attempt++;
    this.#setState("connecting", { reason, code, attempt: this.#attempt, delay });
    // A listener may have closed the client (an app giving up after so
    // many attempts): then there is nothing to schedule.
    if (this.#closed) return;
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  #fail(reason, status, code) {
    this.#closed = true;
    this.#stop();
    this.#failPending(() => true, "closed", reason);
    // status only after the gateway refused (401, 403), code only after it
    // closed for good (4003): client.d.ts promises no other values.
    const info = { reason };
    if (status !== undefined) info.status = status;
    if (code !== undefined) info.code = code;
    this.#setState("closed", info);
  }

  // #probe repeats the refused upgrade as a plain GET of the same URL and
  // reports {status, reason} when the gateway refuses the token (401) or the
  // origin (403) for good; anything else, a network error included, is
  // worth retrying and reports null.
  async #probe(wsURL) {
    const fetchFn = this.#opts.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== "function") return null;
    try {
      const u = new URL(wsURL);
      u.protocol = u.protocol === "wss:" ? "https:" : "http:";
      const signal = typeof AbortSignal?.timeout === "function" ? AbortSignal.timeout(this.#opts.probeTimeout) : undefined;
      const res = await fetchFn(u.href, { method: "GET", cache: "no-store", credentials: "omit", signal });
      if (res.status !== 401 && res.status !== 403) return null;
      let message = "";
      try {
        const body = await res.json();
        message = body?.error?.message ?? "";
      } catch {
        // not the gateway's JSON: the status says enough
      }
      const what = res.status === 401 ? "unauthorized" : "forbidden";
      return { status: res.status, reason: message ? `${what}: ${message}` : what };
    } catch {
      return null;
    }
  }
}

// Cursor is where the app is in its streams (docs/protocol.md section 6):
// the position of the last recoverable event handed to it, in the user's
// stream ("pos") and the broadcast stream ("bpos"), and whose streams they
// are. With a storage it keeps them there as well, per user and URL, so a
// reloaded page resumes where it left off.
class Cursor {
  #storage;
  #user = null; // the user of the last "connected": the positions are this user's
  #key = null; // where #user's positions are stored
  #at = {}; // "pos" and "bpos" -> the last position processed
  #sent = null; // {user, at, conns}: the positions the current socket resumed from, and the prev it named
  #conns = []; // the conn ids of #user's sockets of this session, oldest first, at most MAX_PREV
  #holds; // whether the runtime says when the page goes away ("pagehide"): a browser's window
  #live = true; // the page is shown, and this cursor in use: its stored conn ids are held

  constructor(storage) {
    this.#storage = storage;
    this.#holds = storage !== null && typeof globalThis.addEventListener === "function" && "onpagehide" in globalThis;
  }

  // A browser copies a tab's sessionStorage into a tab duplicated from it
  // and into a window it opens: the copy would resume naming the first
  // tab's connections, live ones, as its own (prev), and so be left out of
  // what is sent to everyone but them. So, in a browser, the stored ids
  // carry a mark while the page that stored them is shown, taken off when
  // it goes away ("pagehide": a reload, a navigation, a close) and put back
  // if it comes back from the back/forward cache ("pageshow"), and also
  // when the client closes for good; a page finds the ids it loads free,
  // or held by a page still open and not its own. A page the browser
  // discarded (document.wasDiscarded in the page that replaces it) went
  // without "pagehide": its mark is taken as freed. A page that crashed
  // leaves the mark: the next one resumes without prev, which costs at
  // most a replay of events sent to everyone but the lost page's sockets.

  /** hold marks the stored conn ids as in use by this page again. */
  hold() {
    this.#live = true;
    this.#save();
  }

  /** release frees the stored conn ids for whatever page loads them next. */
  release() {
    this.#live = false;
    this.#unmark(this.#key);
  }

  /**
   * resume returns the query parameters that resume user's streams at url
   * ({resume, bresume}, those known), none when the user is unknown: a
   * token never carries another user's positions.
   */
  resume(user, url) {
    this.#sent = null;
    if (user === null) return {};
    const mine = user === this.#user;
    const at = mine ? this.#at : this.#load(storageKey(url, user));
    const conns = mine ? this.#conns : this.#loadConns(storageKey(url, user));
    this.#sent = { user, at, conns };
    // prev (an extension, docs/protocol.md section 6): an event sent to
    // "everyone but" one of these connections is not replayed. The
    // position stays before such an event when it was the last one until
    // a heartbeat carries it past (skipTo), which a socket that dropped
    // first never got, so the ids go with every resume, not only the next.
    return { resume: at.pos, bresume: at.bpos, prev: conns.length ? conns.join(",") : undefined };
  }

  /**
   * start sets where a socket of user starts: the positions of its
   * "connected", or, after a recovered resume, those it resumed from where
   * they are later in the same epoch (what the app has, it keeps). After a
   * resume that did not recover, the gateway's positions win: the stream
   * does not have the client's (ahead of it, say), so what comes next is
   * new to the app whatever its offset.
   */
  start(user, url, args) {
    const had = args.recovered === true && this.#sent?.user === user ? this.#sent.at : {};
    // The connections of this user's session, the last MAX_PREV, this one
    // last; another user's start none.
    const conns = this.#sent?.user === user ? this.#sent.conns : user === this.#user ? this.#conns : [];
    this.#conns = isConn(args.conn) ? [...conns.filter((c) => c !== args.conn), args.conn].slice(-MAX_PREV) : conns;
    this.#user = user;
    const key = user === null ? null : storageKey(url, user);
    if (key !== this.#key) this.#unmark(this.#key); // another user's, or another URL's: not in use
    this.#key = key;
    this.#at = {};
    for (const k of STREAMS) {
      if (isPos(args[k])) this.#at[k] = notAfter(args[k], had[k]) ? had[k] : args[k];
    }
    this.#save();
  }

  /**
   * seen reports whether the frame's event was handed to the app already:
   * its position is in the same epoch as the last one processed, at or
   * before it. A position the client cannot parse is opaque: never seen.
   */
  seen(frame) {
    return STREAMS.some((k) => notAfter(frame[k], this.#at[k]));
  }

  /** advance moves to the positions src carries: a processed event's, or a resync's args. */
  advance(src) {
    let moved = false;
    for (const k of STREAMS) {
      if (!isPos(src?.[k])) continue;
      this.#at[k] = src[k];
      moved = true;
    }
    if (moved) this.#save();
  }

  /**
   * skipTo moves to the positions a heartbeat carries (docs/protocol.md
   * section 2): where the gateway has the socket after events it was left
   * out of, every frame before which has arrived. Only forward in the
   * epoch of the position processed: never back, never into another epoch,
   * never to one that does not parse.
   */
  skipTo(frame) {
    let moved = false;
    for (const k of STREAMS) {
      if (!isPos(frame[k]) || !after(frame[k], this.#at[k])) continue;
      this.#at[k] = frame[k];
      moved = true;
    }
    if (moved) this.#save();
  }

  #load(key) {
    if (!this.#storage) return {};
    try {
      const saved = JSON.parse(this.#storage.getItem(key) ?? "{}");
      return Object.fromEntries(STREAMS.filter((k) => isPos(saved?.[k])).map((k) => [k, saved[k]]));
    } catch {
      return {}; // unreadable: start afresh
    }
  }

  #save() {
    if (!this.#storage || this.#key === null) return;
    try {
      if (Object.keys(this.#at).length) this.#storage.setItem(this.#key, JSON.stringify(this.#at));
      else this.#storage.removeItem(this.#key);
      // Under a key of their own, so the positions' stay as they were.
      if (this.#conns.length) this.#storage.setItem(this.#key + PREV_SUFFIX, this.#conns.join(","));
      else this.#storage.removeItem(this.#key + PREV_SUFFIX);
      if (this.#holds && this.#live && this.#conns.length) this.#storage.setItem(this.#key + HELD_SUFFIX, "1");
      else this.#storage.removeItem(this.#key + HELD_SUFFIX);
    } catch {
      // Full or forbidden: the client still resumes, only not after a reload.
    }
  }

  // #unmark takes the mark of a page in use off the conn ids stored at key.
  #unmark(key) {
    if (!this.#holds || key === null) return;
    try {
      this.#storage.removeItem(key + HELD_SUFFIX);
    } catch {
      // Forbidden: the next page resumes without prev.
    }
  }

  // #loadConns reads the stored conn ids of a session; none when unreadable.
  #loadConns(key) {
    if (!this.#storage) return [];
    try {
      // Held: another page, still open, stored them (see hold); unless
      // this page replaces one the browser discarded to save memory
      // (Chrome), which went without "pagehide" and whose ids they are.
      const held = this.#holds && this.#storage.getItem(key + HELD_SUFFIX) !== null;
      if (held && globalThis.document?.wasDiscarded !== true) return [];
      const ids = (this.#storage.getItem(key + PREV_SUFFIX) ?? "").split(",").filter(isConn);
      return ids.slice(-MAX_PREV);
    } catch {
      return [];
    }
  }
}

// WAKE_EVENTS are the browser's events that end a back-off wait.
const WAKE_EVENTS = ["online", "pageshow", "visibilitychange"];

// MAX_PREV is the most conn ids a resume names in prev (the gateway's bound).
const MAX_PREV = 8;

// PREV_SUFFIX ends the storage key of a session's conn ids, after its positions' key.
const PREV_SUFFIX = " prev";

// HELD_SUFFIX ends the storage key present while the page that stored a
// session's conn ids is shown (Cursor.hold).
const HELD_SUFFIX = " prev held";

// PAGE_EVENTS are the browser's events that say a page went away or came back.
const PAGE_EVENTS = ["pagehide", "pageshow"];

// isConn reports whether c can be a conn id the gateway takes in prev: 1 to
// 64 characters of printable ASCII, no comma.
function isConn(c) {
  return typeof c === "string" && /^[!-+\--~]{1,64}$/.test(c);
}

// STREAMS names the position of each stream, in frames and connected's args.
const STREAMS = ["pos", "bpos"];

// isPos reports whether p can be a position: a string of 1 to 128 characters.
function isPos(p) {
  return typeof p === "string" && p.length > 0 && p.length <= 128;
}

// parsePos reads a position "<epoch>.<ms>-<off>" as {epoch, off}, or null:
// positions are opaque on the wire, and one that does not parse is passed
// on as it is.
function parsePos(p) {
  const m = typeof p === "string" ? /^([0-9a-z]{1,32})\.\d{1,20}-(\d{1,20})$/.exec(p) : null;
  const off = m ? Number(m[2]) : NaN;
  return Number.isSafeInteger(off) ? { epoch: m[1], off } : null;
}

// notAfter reports whether position p is in the same epoch as last, at or
// before it; false when either does not parse.
function notAfter(p, last) {
  const a = parsePos(p);
  const b = parsePos(last);
  return a !== null && b !== null && a.epoch === b.epoch && a.off <= b.off;
}

// after reports whether position p is in the same epoch as last, after
// it; false when either does not parse.
function after(p, last) {
  const a = parsePos(p);
  const b = parsePos(last);
  return a !== null && b !== null && a.epoch === b.epoch && a.off > b.off;
}

// storageKey names the stored positions of user at url (a URL has no spaces).
function storageKey(url, user) {
  return `switchboard ${url} ${user}`;
}

// MAX_TIMER is the longest delay setTimeout honours: a longer one, Infinity
// included, fires at once.
const MAX_TIMER = 2 ** 31 - 1;

// duration checks a millisecond option: absent (undefined or null) means the
// default; otherwise a number above 0, clamped to what a timer can wait.
function duration(name, value, def) {
  if (value === undefined || value === null) return def;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
    throw new RangeError(`switchboard: ${name} must be a number of milliseconds above 0, not ${String(value)}`);
  }
  return Math.min(value, MAX_TIMER);
}

// socketURL resolves url (against the page, in a browser) to a ws: or wss:
// URL with those query parameters of params that are set.
function socketURL(url, params) {
  const base = globalThis.location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  for (const [name, value] of Object.entries(params)) if (value) u.searchParams.set(name, value);
  return u.href;
}

// tooBig returns why an envelope data longer in UTF-8 bytes than max (null:
// no limit known) cannot be sent, or "" when it can.
function tooBig(data, max) {
  if (max === null || data.length * 3 <= max) return ""; // a UTF-16 unit is at most 3 bytes
  let n = data.length;
  for (let i = 0; i < data.length && n <= max; i++) {
    const c = data.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) n += 1; // a pair is 4 bytes (JSON.stringify leaves none alone)
    else if (c >= 0x800) n += 2;
    else if (c >= 0x80) n += 1;
  }
  return n > max ? `the envelope is longer than the gateway's limit of ${max} bytes` : "";
}

// atOnce reports whether a close asks the client to come back at once: its
// token expired (4001), a backend asked it to reconnect (4002), or it read
// too slowly (1008 slow consumer). Either way only the socket is lost, not
// the events: the client resumes, with a fresh token from getToken.
function atOnce(code, reason) {
  return code === 4001 || code === 4002 || (code === 1008 && typeof reason === "string" && reason.startsWith("slow consumer"));
}

// RENEW_FLOOR is the least time, in ms, between getting a token and
// renewing it; a token got by a renewal waits at least a quarter of its
// lifetime (10 s when it has no iat), so a clock that makes every token
// look nearly expired cannot make the client renew in a loop.
const RENEW_FLOOR = 1_000;
const RENEW_FLOOR_NO_IAT = 10_000;

// renewIn returns in how many ms a token with claims (exp, iat: seconds),
// got at got (the local wall clock, ms), is renewed: margin ms or a tenth
// of what is left, whichever is less, before it expires; or null for
// never (no exp). The local clock may be minutes off the gateway's, which
// no frame tells: what is left is read by the local clock, but never as
// more than the token's lifetime (exp - iat), so a clock behind cannot
// make the client late with a fresh token; and a token that looks expired
// already, though the gateway took it, means a clock ahead by more than
// its lifetime: then its lifetime counts. A clock ahead by less makes the
// client renew early, never late. The gateway's 30 s leeway covers the
// rest (a token got from a cache, late, on a clock behind).
function renewIn(claims, got, margin, renewed) {
  const exp = claims?.exp;
  const iat = claims?.iat;
  if (typeof exp !== "number" || !Number.isFinite(exp)) return null;
  const life = typeof iat === "number" && Number.isFinite(iat) && iat < exp ? (exp - iat) * 1000 : null;
  let left = exp * 1000 - got;
  if (life !== null && (left <= 0 || left > life)) left = life;
  if (left <= 0) return null; // looks expired, with no lifetime to go by: the gateway's 4001 will tell
  let floor = RENEW_FLOOR;
  if (renewed) floor = life === null ? RENEW_FLOOR_NO_IAT : Math.max(life / 4, RENEW_FLOOR);
  return Math.max(left - Math.min(margin, left / 10), floor);
}

// tokenClaims returns the payload of a JWT, read without checking the
// token (the gateway does that), or null when the client cannot read one.
function tokenClaims(token) {
  const payload = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!payload) return null;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

// tokenUser returns the user id (sub) a JWT names, or null when the client
// cannot read one: it only decides whose positions the client may send
// with it.
function tokenUser(token) {
  const sub = tokenClaims(token)?.sub;
  return typeof sub === "string" && sub !== "" ? sub : null;
}

// idemKey returns a fresh idempotency key: 16 random bytes in base64url,
// 22 characters, all of them ones the wire allows in idem (docs/protocol.md
// section 2).
function idemKey() {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function parseFrame(data) {
  if (typeof data !== "string") return null;
  try {
    const f = JSON.parse(data);
    return f && typeof f === "object" && typeof f.event === "string" ? f : null;
  } catch {
    return null;
  }
}

function detach(ws) {
  ws.onmessage = ws.onclose = ws.onerror = null;
}

function clientError(code, message, frame) {
  const err = new Error(message);
  err.name = "SwitchboardError";
  err.code = code;
  if (frame) err.frame = frame;
  return err;
}

// safeCall runs a listener so that one that throws cannot break the client
// or the other listeners; the error is still reported. So is the rejection
// of an async listener's promise, which would otherwise go unhandled (and
// end a Node process). The client does not wait for that promise.
function safeCall(fn, ...args) {
  try {
    const r = fn(...args);
    if (typeof r?.then === "function") r.then(undefined, report);
  } catch (err) {
    report(err);
  }
}

function report(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else console.error(err);
}
