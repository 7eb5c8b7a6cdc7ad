// Checks that client.d.ts declares what client.js does: every option it
// reads, in ConnectOptions. (types.check.mts checks that the declarations
// serve an app; this, that they have not drifted from the code.)
// Run by e2e/jsclient_test.go (TestClientJSUnit), or by hand:
//   node --test gateway/internal/web/jstest/types.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect } from "../assets/client.js";

const js = readFileSync(new URL("../assets/client.js", import.meta.url), "utf8");
const dts = readFileSync(new URL("../assets/client.d.ts", import.meta.url), "utf8");

// members returns the names of the members of interface name in dts.
function members(name) {
  const body = new RegExp(`export interface ${name}\\b[^{]*\\{([\\s\\S]*?)\\n\\}`).exec(dts)?.[1];
  assert.ok(body, `client.d.ts has no interface ${name}`);
  return new Set([...body.matchAll(/^ {2}([A-Za-z]+)\??[:(<]/gm)].map((m) => m[1]));
}

test("client.d.ts declares every option client.js reads", () => {
  const read = new Set();
  // opts.x, opts?.x and this.#opts.x
  for (const m of js.matchAll(/\bopts\??\.([A-Za-z]+)/g)) read.add(m[1]);
  // the millisecond options with defaults, and what is destructured from #opts
  for (const m of /const DEFAULTS = \{([\s\S]*?)\};/.exec(js)[1].matchAll(/^\s*([A-Za-z]+):/gm)) read.add(m[1]);
  for (const m of js.matchAll(/const \{([^}]*)\} = this\.#opts/g)) for (const k of m[1].matchAll(/([A-Za-z]+)\s*:/g)) read.add(k[1]);
  assert.ok(read.size >= 14, `found only ${[...read]} in client.js: has the way it reads options changed?`);
  const declared = members("ConnectOptions");
  assert.deepEqual([...read].filter((k) => !declared.has(k)).sort(), [], "options client.js reads that client.d.ts does not declare");
  assert.deepEqual([...declared].filter((k) => !read.has(k)).sort(), [], "options client.d.ts declares that client.js never reads");
});

test("client.d.ts declares every method of the client", () => {
  class Silent {
    send() {}
    close() {}
  }
  const sb = connect({ url: "ws://gw.test/socket", token: "x", WebSocket: Silent });
  try {
    const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(sb)).filter((m) => m !== "constructor");
    assert.deepEqual([...members("Client")].sort(), methods.sort());
  } finally {
    sb.close();
  }
});
