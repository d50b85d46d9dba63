// The client's token handling against a real server with authentication on
// (PROTOCOL.md section 6), in headless Chromium: a refused handshake asks
// getToken again, `refresh` keeps a short-lived connection alive, and a
// 4010 close after a refused refresh reconnects with a new token.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Node, launchChromium, missingTool } from "./harness.js";

const missing = missingTool();
if (missing && process.env.CI === "true") {
  throw new Error(`browser tests cannot run under CI: ${missing}`);
}
const skip = missing ? `skipped: ${missing}` : false;
const SECRET = "browser-test-secret";
const POLL = 50;

let browser;
before(async () => {
  if (!skip) browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

function sign(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

/**
 * A page on the server's origin running a Switchboard whose getToken hands
 * out the tokens of `plan` in turn (the last one again once it runs out).
 */
async function clientPage(node, plan, options) {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  let calls = 0;
  await page.exposeFunction("nextToken", () => {
    const { sub, ttl } = plan[Math.min(calls++, plan.length - 1)];
    return sign({ sub, exp: Math.floor(Date.now() / 1000) + ttl });
  });
  page.calls = () => calls;
  await page.goto(`${node.http}/console`);
  await page.evaluate(async (opts) => {
    const { Switchboard } = await import("/switchboard.js");
    const log = (window.log = { refreshed: 0, closes: [], errors: [], states: [] });
    const sb = (window.sb = new Switchboard("/ws", { getToken: () => window.nextToken(), minDelayMs: 100, maxDelayMs: 1000, ...opts }));
    sb.on("refreshed", () => log.refreshed++);
    sb.on("disconnect", (d) => log.closes.push(d.code));
    sb.on("error", (e) => log.errors.push(e.code || e.message));
    sb.on("state", (s) => log.states.push(s));
  }, options);
  return page;
}

test("refresh keeps a short-lived token's connection open; a 401 and a 4010 ask getToken again", { skip, timeout: 90000 }, async () => {
  const node = await Node.start(["--hmac-secret", SECRET, "--jwt-leeway-s", "0"]);
  try {
    // An expired token first: the handshake is refused (401), the client
    // asks for another one and connects with it; then each token lives 4 s
    // and is refreshed before it ends.
    const live = await clientPage(node, [{ sub: "ada", ttl: -120 }, { sub: "ada", ttl: 4 }], { refreshBeforeMs: 2000 });
    await live.waitForFunction(() => window.sb.state === "connected", null, { polling: POLL });
    assert.equal(await live.evaluate(() => window.sb.welcome.user), "ada");
    assert.equal(live.calls(), 2, "the refused handshake asked for a new token");
    const conn = await live.evaluate(() => window.sb.welcome.conn);
    await live.waitForFunction(() => window.log.refreshed >= 3, null, { polling: POLL, timeout: 20000 });
    // 1006: the refused handshake (browsers do not show the 401); then
    // never closed over three token lifetimes.
    assert.deepEqual(await live.evaluate(() => window.log.closes), [1006]);
    assert.equal(await live.evaluate(() => window.sb.welcome.conn), conn, "the same connection");
    assert.equal(await live.evaluate(() => window.sb.ping().then((p) => p.type)), "pong");

    // A refresh with another user's token is refused (forbidden); the old
    // deadline stands, the server closes with 4010, and the client connects
    // again with a fresh token.
    const refused = await clientPage(node, [{ sub: "bob", ttl: 3 }, { sub: "mallory", ttl: 60 }, { sub: "bob", ttl: 60 }], { refreshBeforeMs: 2000 });
    await refused.waitForFunction(() => window.log.closes.includes(4010), null, { polling: POLL, timeout: 20000 });
    await refused.waitForFunction(() => window.sb.state === "connected" && window.log.closes.length === 1, null, { polling: POLL });
    assert.ok((await refused.evaluate(() => window.log.errors)).includes("forbidden"));
    assert.equal(refused.calls(), 3);
    assert.equal(await refused.evaluate(() => window.sb.welcome.user), "bob");
    await live.close();
    await refused.close();
  } finally {
    await node.kill();
  }
});
