// Type declarations for client.js, the switchboard browser and Node client.

/** A frame the gateway sends (docs/protocol.md section 2). */
export interface Frame<A = unknown> {
  event: string;
  /** The user id of the socket that received the frame. */
  id: string;
  args?: A;
  ref?: string;
}

/** Args of the "connected" frame, sent on every (re)connection. */
export interface Connected {
  conn: string;
  worker: number;
}

export type State = "connecting" | "open" | "closed";

/** What onState reports with each state. */
export interface StateInfo {
  /** Why the socket closed or the client stopped, for a person. */
  reason?: string;
  /** The WebSocket close code of the socket that closed ("connecting"); absent when the client gave up on it (connectTimeout, an unanswered emit). */
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
}

/**
 * The Error an emit rejects with. code is a wire error code (bad_request,
 * unknown_event, unavailable, timeout, handler_error, rate_limited, ...) or
 * one of the client's own: "timeout" (no answer or no connection within
 * ackTimeout), "disconnected" (the socket closed after the envelope was sent
 * and before its answer), "closed" (the client is closed for good).
 */
export interface SwitchboardError extends Error {
  name: "SwitchboardError";
  code: string;
  /** The error frame, when the gateway sent one. */
  frame?: Frame<{ code: string; message: string }>;
}

/**
 * Options of connect. The millisecond options take numbers above 0 (connect
 * throws a RangeError otherwise); undefined or null means the default, and
 * more than 2^31-1 ms (about 24.8 days, Infinity included) is clamped to it.
 */
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

export interface ConnectOptions {
  /** ws:// or wss:// URL of the gateway's /socket; http(s) and, in a browser, relative URLs work too. */
  url: string;
  /** A JWT; sent as ?token=. */
  token?: string;
  /** Called before every connection attempt for a fresh token; wins over token. */
  getToken?: () => string | Promise<string>;
  /** Milliseconds an emit waits for its ack, the wait for a connection included. Default 10000. */
  ackTimeout?: number;
  /** A WebSocket constructor, where globalThis.WebSocket is missing: Node's, or the ws package's. */
  WebSocket?: new (url: string) => SocketLike;
  /** Extension: the back-off's first ceiling in ms; attempt n waits a random time up to min(max, min * 2^(n-1)). Default 1000. */
  minReconnectDelay?: number;
  /** Extension: the back-off's cap in ms. Default 30000. */
  maxReconnectDelay?: number;
  /** Extension: ms a connection must stay open before the back-off starts over from the first delay. Default 10000. */
  stableAfter?: number;
  /** Extension: the fetch used to probe a refused upgrade for 401 or 403. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Extension: milliseconds the probe may take. Default 5000. */
  probeTimeout?: number;
  /** Extension: milliseconds getToken and the handshake up to the "connected" frame may take before the attempt is given up and retried. Default 10000. */
  connectTimeout?: number;
}

export interface Client {
  /** Subscribes to a server event by name ("connected" on every (re)connection); returns the unsubscribe function. */
  on(event: "connected", handler: (args: Connected, frame: Frame<Connected>) => void): () => void;
  on<A = any>(event: string, handler: (args: A, frame: Frame<A>) => void): () => void;
  /** Calls handler with the current state at once, then on every change ("connecting" once per attempt); returns the unsubscribe function. */
  onState(handler: (state: State, info: StateInfo) => void): () => void;
  /**
   * Sends an event; resolves with the ack frame, rejects with a SwitchboardError. Waits for the connection when not open.
   * When it was sent and no answer came within ackTimeout, the socket is taken for dead: closed, and the client reconnects.
   */
  emit(event: string, args?: unknown): Promise<Frame>;
  /** Closes for good: no reconnect; pending emits reject with code "closed". */
  close(): void;
}

/** Starts connecting at once and reconnects by itself until close() or a refused token. */
export function connect(opts: ConnectOptions): Client;
