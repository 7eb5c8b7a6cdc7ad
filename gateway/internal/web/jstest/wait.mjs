// Waits the integration tests of client.js share (client.test.mjs,
// recovery.test.mjs): each resolves on what the client reports, never
// after a fixed time.

// WAIT bounds every wait for something the client or the gateway does.
export const WAIT = 15_000;

// within rejects when p has not settled after ms, naming what was awaited.
export function within(p, what, ms = WAIT) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

// next resolves with the args and frame of the next `event` frame sb hands
// to the app.
export function next(sb, event) {
  return new Promise((resolve) => {
    const off = sb.on(event, (args, frame) => {
      off();
      resolve({ args, frame });
    });
  });
}

// stateWhere resolves with [state, info] once onState reports one that
// match accepts (the current state included).
export function stateWhere(sb, match) {
  return new Promise((resolve) => {
    let off = null;
    let done = false;
    off = sb.onState((state, info) => {
      if (done || !match(state, info)) return;
      done = true;
      resolve([state, info]);
      off?.();
    });
    if (done) off();
  });
}
