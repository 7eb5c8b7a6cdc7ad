// Type declarations for client.js, the switchboard browser and Node client.

/** A frame the gateway sends (docs/protocol.md section 2). */
export interface Frame<A = unknown> {
  event: string;
  /** The user id of the socket that received the frame. */
  id: string;
  args?: A;
  ref?: string;
  /** The position of a recoverable event in the user's stream (docs/protocol.md section 6). */
  pos?: string;
  /** The position of a recoverable event in the broadcast stream. */
  bpos?: string;
}

/** The result of the built-ins sendMessage and sendToRoom (docs/protocol.md section 5). */
export interface SendMessageResult {
  msg_id: string;
  /** Unix milliseconds. */
  ts: number;
}

/** The result of the built-ins joinRoom and leaveRoom. */
export interface RoomResult {
  room: string;
  /** The number of members after the join or leave. */
  members: number;
}

/** Args of the "connected" frame, sent on every (re)connection. */
export interface Connected {
  conn: string;
  worker: number;
  /** Where this socket starts in the user's stream; absent when the gateway keeps no history (HISTORY_WINDOW=0). */
  pos?: string;
  /** Where this socket starts in the broadcast stream. */
  bpos?: string;
  /** Only on a resume: whether every event after the client's positions follows. */
  recovered?: boolean;
  /** Only on a resume: how many events are replayed. */
  missed?: number;
  /** Extension: the interval in ms of the gateway's heartbeat frames ("$ping", never handed to the app); only when the client asked for them. */
  heartbeat?: number;
  /** Extension: GATEWAY_MAX_FRAME, the longest envelope in UTF-8 bytes the gateway reads; a longer one would close the socket (1009). */
  max_frame?: number;
}

/**
 * Args of the "resync" frame: the gateway could not fill a gap in a stream
 * and carries on after pos (the user's stream) or bpos (the broadcast
 * stream). Events were lost: reload the app's state.
 */
export interface Resync {
  pos?: string;
  bpos?: string;
  /** Why, for a person. */
  reason: string;
}

export type State = "connecting" | "open" | "closed";

/** What onState reports with each state. */
export interface StateInfo {
  /** Why the socket closed or the client stopped, for a person. */
  reason?: string;
  /** The WebSocket close code of the socket that closed ("connecting"; absent for a renewal, whose socket the client closed), or 4003 when a backend disconnected the user or connection for good ("closed", with the backend's reason); absent when the client gave up on it (connectTimeout, an unanswered emit, no frame for the heartbeat interval plus heartbeatGrace, the browser going offline). */
  code?: number;
  /** The HTTP status that stopped the client: 401 (token refused) or 403 (origin refused) ("closed"). */
  status?: number;
  /** 1 for the first retry after a close, counting up until a connection has stayed open stableAfter ms ("connecting"). */
  attempt?: number;
  /** Milliseconds until this attempt starts ("connecting"). */
  delay?: number;
  /** The worker index and connection id ("open"). */
  worker?: number;
  conn?: string;
  /**
   * Only when this connection resumed ("open"): true when every event after
   * the client's positions follows, in order, before any newer one; false
   * when none does (the window passed, too many were missed, the gateway
   * lost its store or keeps none): reload the app's state.
   */
  recovered?: boolean;
  /** With recovered, when the gateway says: how many events it replays. */
  missed?: number;
}

/** Args of an "error" frame (docs/protocol.md section 2). */
export interface WireError {
  /** bad_request, unknown_event, unavailable, timeout, handler_error, rate_limited, forbidden, or a handler's own. */
  code: string;
  /** For a person. */
  message: string;
}

/**
 * The Error an emit rejects with. code is a wire error code (bad_request,
 * unknown_event, unavailable, timeout, handler_error, rate_limited, ...) or
 * one of the client's own: "timeout" (no answer or no connection within
 * ackTimeout), "disconnected" (the socket closed after the envelope was sent
 * and before its answer; with retry only on a 4003), "closed" (the client is closed for good),
 * "too_big" (the envelope is longer than the gateway's max_frame: not sent).
 */
export interface SwitchboardError extends Error {
  name: "SwitchboardError";
  code: string;
  /** The error frame, when the gateway sent one. */
  frame?: Frame<WireError>;
}

/**
 * What the client uses of a WebSocket: the browser's, Node's and the ws
 * package's all fit. Event handlers get an object with data (message) or
 * code and reason (close).
 */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** What the client uses of a Storage: sessionStorage fits. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Options of connect. The millisecond options take numbers above 0 (connect
 * throws a RangeError otherwise); undefined or null means the default, and
 * more than 2^31-1 ms (about 24.8 days, Infinity included) is clamped to it.
 */
export interface ConnectOptions {
  /** ws:// or wss:// URL of the gateway's /socket; http(s) and, in a browser, relative URLs work too. */
  url: string;
  /** A JWT; sent as ?token=. The client reads its sub (unchecked) only to resume that user's streams alone. */
  token?: string | null;
  /**
   * Called before every connection attempt for a fresh token; wins over token. Needed for tokens that expire (close 4001).
   * It returns the JWT itself (not /dev/token's JSON: a value that is no string closes the client); one that throws is retried.
   * With renew (the default), it is also called shortly before the token of the open socket expires, and should then
   * return a token that expires later (not one cached until its exp).
   */
  getToken?: () => string | Promise<string>;
  /**
   * Extension: where to keep the client's positions, per user and url, so
   * that a reloaded page resumes where it left off: sessionStorage (one per
   * tab). Without it they live as long as the client. Give each storage one
   * client per user and url.
   */
  storage?: StorageLike | null;
  /** Milliseconds an emit waits for its ack, the wait for a connection included. Default 10000. */
  ackTimeout?: number | null;
  /** A WebSocket constructor, where globalThis.WebSocket is missing: Node's, or the ws package's. */
  WebSocket?: new (url: string) => SocketLike;
  /** Extension: the back-off's first ceiling in ms; attempt n waits a random time up to min(max, min * 2^(n-1)). Default 1000. */
  minReconnectDelay?: number | null;
  /** Extension: the back-off's cap in ms. Default 30000. */
  maxReconnectDelay?: number | null;
  /** Extension: ms a connection must stay open before the back-off starts over from the first delay. Default 10000. */
  stableAfter?: number | null;
  /** Extension: the fetch used to probe a refused upgrade for 401 or 403. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Extension: milliseconds the probe may take. Default 5000. */
  probeTimeout?: number | null;
  /** Extension: milliseconds getToken and the handshake up to the "connected" frame may take before the attempt is given up and retried. Default 10000. */
  connectTimeout?: number | null;
  /**
   * Extension: ask the gateway for heartbeat frames (?heartbeat=1). When it announces an interval in "connected",
   * a socket that receives no frame for that interval plus heartbeatGrace is taken for dead: closed, and the
   * client reconnects and resumes (emits sent on it reject with "disconnected"). A heartbeat that carries the
   * socket's position past events it was left out of (except_conns) moves the client's on, so a resume after
   * those expired recovers. Default true.
   */
  heartbeat?: boolean;
  /** Extension: milliseconds of silence past the gateway's heartbeat interval before the socket is taken for dead. Default 10000. */
  heartbeatGrace?: number | null;
  /**
   * Extension: with getToken, renew the token before it expires, read from its exp (and iat), unchecked: getToken is
   * called renewMargin ms (or a tenth of what is left, whichever is less) before exp; new emits wait while those in
   * flight are answered (ackTimeout at most), then the client closes the socket normally and opens one with the new
   * token, resuming its streams, so no emit fails with "disconnected" when the token expires. A token without a
   * readable exp is not renewed; a getToken that fails or returns a token expiring no later is tried again with the
   * back-off while the socket serves on. Reported as "connecting" (reason "renewing the token", delay 0, no code or attempt), then "open".
   * false: only the gateway's close 4001 (token expired) brings a new token. Default true.
   */
  renew?: boolean;
  /** Extension: milliseconds before the token's exp that renew fetches a new one, at most; it covers clock skew and a slow getToken. Default 60000. */
  renewMargin?: number | null;
  /**
   * Extension: retry emits safely. Every emit carries a fresh idempotency key ("idem": 16 random bytes, base64url),
   * the same for its whole life, and handlers-svc runs its handler at most once per key (for 2 minutes: docs/protocol.md section 2, "Idempotent emits"). An emit whose
   * socket is lost before its answer does not reject with "disconnected": it is sent again on the next socket once
   * that is open (after its "connected"); nor does an "unavailable" answer end it: it is sent again after a short
   * back-off (100 ms, doubling up to 2 s). Either way until an answer, or ackTimeout from the emit ("timeout"). Every
   * other answer settles it as without retry; close() and a 4003 reject it at once. Needs crypto.getRandomValues.
   * false: no idem on the wire, and nothing is sent twice. Default false. A v1 gateway ignores idem and runs a repeat again.
   */
  retry?: boolean;
}

export interface Client {
  /**
   * Subscribes to a server event by name ("connected" on every (re)connection); returns the unsubscribe function.
   * A handler that throws, or an async one that rejects, is reported (reportError, or console.error in Node) and
   * breaks nothing; its promise is not awaited.
   */
  on(event: "connected", handler: (args: Connected, frame: Frame<Connected>) => void): () => void;
  /** "resync": events of a stream were lost on this socket; the client carries on after the new position. Reload the app's state. */
  on(event: "resync", handler: (args: Resync, frame: Frame<Resync>) => void): () => void;
  /** "error": an error frame that answers no pending emit (one without a ref, or the late answer to an emit that timed out). */
  on(event: "error", handler: (args: WireError, frame: Frame<WireError>) => void): () => void;
  on<A = any>(event: string, handler: (args: A, frame: Frame<A>) => void): () => void;
  /** Calls handler with the current state at once, then on every change ("connecting" once per attempt); returns the unsubscribe function. */
  onState(handler: (state: State, info: StateInfo) => void): () => void;
  /**
   * Sends an event; resolves with the handler's result, the ack's args (undefined when the handler returned none),
   * rejects with a SwitchboardError. Waits for the connection when not open. With retry, a lost socket or an
   * "unavailable" answer sends it again instead of rejecting it (see ConnectOptions.retry).
   * When it was sent and neither its answer nor any other frame came within ackTimeout of sending it, the socket is
   * taken for dead: closed, and the client reconnects (an emit that waited for the connection still rejects ackTimeout
   * after it was made). It takes no callback: called with a function as args, or with more arguments (Socket.IO's ack
   * callback), it throws a TypeError and sends nothing.
   *
   *   const { msg_id, ts } = await sb.emit<SendMessageResult>("sendMessage", { to: "bob", text: "hi" });
   */
  emit<R = any>(event: string, args?: unknown): Promise<R>;
  /** Closes for good: no reconnect; pending emits reject with code "closed". */
  close(): void;
}

/**
 * Starts connecting at once and reconnects by itself until close(), a
 * refused token (or a getToken that returns no string), a backend's disconnect (close 4003) or a URL the
 * WebSocket constructor refuses, resuming its streams every time: an event already handed
 * to the app (same epoch, offset not after the last one) is dropped.
 * With getToken, the token is renewed before it expires (see renew).
 * A close 4001 (token expired), 4002 (a backend asked it to reconnect) or
 * 1008 slow consumer is retried at once, every other close after the back-off.
 */
export function connect(opts: ConnectOptions): Client;
