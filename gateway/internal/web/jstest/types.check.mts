// A type check of client.d.ts, as a TypeScript app uses the client: every
// option, event, state and result it documents, and misuses the
// declarations must refuse, each marked with a ts-expect-error directive
// (tsc fails when such a line compiles). Compiled, never run, by e2e/jsclient_test.go
// (TestClientTypes), or by hand:
//   tsc --noEmit --strict --target es2022 --lib es2022,dom --module nodenext --moduleResolution nodenext gateway/internal/web/jstest/types.check.mts
import {
  connect,
  type Client,
  type Connected,
  type Frame,
  type Resync,
  type RoomResult,
  type SendMessageResult,
  type State,
  type StateInfo,
  type SwitchboardError,
} from "../assets/client.js";

interface Message {
  from: string;
  to: string;
  text: string;
  ts: number;
  msg_id: string;
}

export async function app(): Promise<void> {
  const sb: Client = connect({
    url: "wss://chat.example.com/socket",
    getToken: () => fetch("/token").then((r) => r.text()),
    storage: sessionStorage,
    ackTimeout: 10_000,
    WebSocket,
    minReconnectDelay: 1_000,
    maxReconnectDelay: 30_000,
    stableAfter: 10_000,
    fetch,
    probeTimeout: 5_000,
    connectTimeout: 10_000,
    heartbeat: true,
    heartbeatGrace: 10_000,
    renew: true,
    renewMargin: 60_000,
    retry: true,
  });
  connect({ url: "/socket", token: "jwt" });
  connect({ url: "/socket", getToken: () => "jwt" });

  const off: () => void = sb.on<Message>("message", (m, frame: Frame<Message>) => {
    const text: string = m.text;
    const where: string | undefined = frame.pos ?? frame.bpos;
    void [text, where, frame.id, frame.event];
  });
  off();
  sb.on("connected", (args: Connected) => {
    const n: number | undefined = args.max_frame;
    const recovered: boolean | undefined = args.recovered;
    void [n, recovered, args.conn, args.worker, args.heartbeat, args.missed];
  });
  sb.on("resync", (args: Resync) => void [args.reason, args.pos, args.bpos]);
  // An error frame that answers no emit (no ref, or a late one).
  sb.on("error", (args, frame) => {
    const code: string = args.code;
    const ref: string | undefined = frame.ref;
    void [code, args.message, ref];
  });
  // An async listener is allowed: its rejection is reported.
  sb.on("message", async () => {});

  sb.onState((state: State, info: StateInfo) => {
    switch (state) {
      case "connecting":
        void [info.reason, info.code, info.attempt, info.delay];
        break;
      case "open":
        void [info.worker, info.conn, info.recovered, info.missed];
        break;
      case "closed":
        void [info.reason, info.status, info.code];
        break;
      default: {
        const never: never = state; // the three states are all there are
        void never;
      }
    }
  });

  const sent: SendMessageResult = await sb.emit<SendMessageResult>("sendMessage", { to: "bob", text: "hi" });
  const room: RoomResult = await sb.emit<RoomResult>("joinRoom", { room: "general" });
  void [sent.msg_id, sent.ts, room.room, room.members];
  try {
    await sb.emit("react", { emoji: "🎉" });
  } catch (e) {
    const err = e as SwitchboardError;
    const code: string = err.code;
    const name: "SwitchboardError" = err.name;
    void [code, name, err.message, err.frame?.args?.code, err.frame?.ref];
  }
  sb.close();

  // Misuses the declarations refuse.
  // @ts-expect-error: url is required
  connect({ token: "jwt" });
  // @ts-expect-error: a duration is a number of milliseconds
  connect({ url: "/socket", ackTimeout: "10s" });
  // @ts-expect-error: heartbeat is a boolean
  connect({ url: "/socket", heartbeat: 1 });
  // @ts-expect-error: renew is a boolean
  connect({ url: "/socket", getToken: () => "jwt", renew: "off" });
  // @ts-expect-error: retry is a boolean, not a number of attempts
  connect({ url: "/socket", retry: 3 });
  // @ts-expect-error: a storage needs getItem, setItem and removeItem
  connect({ url: "/socket", storage: { getItem: () => null } });
  // null means the default, as the docs say: a page reads sessionStorage
  // in a try and passes null where it throws.
  let storage: Storage | null;
  try {
    storage = window.sessionStorage;
  } catch {
    storage = null;
  }
  connect({ url: "/socket", getToken: async () => "jwt", storage });
  connect({ url: "/socket", token: null, storage: null, ackTimeout: null, minReconnectDelay: null, maxReconnectDelay: null });
  connect({ url: "/socket", stableAfter: null, probeTimeout: null, connectTimeout: null, heartbeatGrace: null, renewMargin: null });
  // @ts-expect-error: getToken returns the token, not the object /dev/token answers
  connect({ url: "/socket", getToken: async () => ({ token: "jwt" }) });
  // @ts-expect-error: no such option
  connect({ url: "/socket", reconnect: false });
  sb.onState((state) => {
    // @ts-expect-error: no such state
    if (state === "reconnecting") return;
  });
  // @ts-expect-error: on needs a handler
  sb.on("message");
  sb.on("connected", (args) => {
    // @ts-expect-error: connected's args have no such field
    void args.user;
  });
  sb.on("error", (args) => {
    // @ts-expect-error: an error frame's args are code and message
    void args.reason;
  });
  // @ts-expect-error: the event name is a string
  void sb.emit(42);
}
