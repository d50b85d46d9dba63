// The client library and the board at `/`, in real headless Chromium
// against real switchboard nodes (node --test test/browser/browser.test.js).
//
// SWITCHBOARD_BIN (default target/debug/switchboard) is the server; CHROMIUM
// (default /usr/bin/chromium) the browser. Without them the suite is
// skipped, except under CI=true, where a missing tool fails it.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Node, Redis, freePort, portClosed, launchChromium, openBoard, missingTool, OUT_DIR } from "./harness.js";

const missing = missingTool();
if (missing && process.env.CI === "true") {
  throw new Error(`browser tests cannot run under CI: ${missing}`);
}
const skip = missing ? `skipped: ${missing}` : false;

let browser;
const figures = {};

before(async () => {
  if (skip) return;
  mkdirSync(OUT_DIR, { recursive: true });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (!skip) writeFileSync(join(OUT_DIR, "figures.json"), JSON.stringify(figures, null, 2) + "\n");
});

// Background pages get no animation frames: poll on a timer instead.
const POLL = 50;
const BOARD = (name) => `board:${name}`;
const dot = (i) => ({ t: "dot", color: "#e0457b", pts: [[((i * 37) % 97) / 100, ((i * 53) % 89) / 100]], seq: i });

/** Draws a wavy stroke with the real mouse. */
async function draw(page, x0, y0) {
  const box = await page.locator("canvas").boundingBox();
  await page.mouse.move(box.x + x0, box.y + y0);
  await page.mouse.down();
  for (let i = 0; i <= 24; i++) await page.mouse.move(box.x + x0 + i * 14, box.y + y0 + Math.sin(i / 3) * 50);
  await page.mouse.up();
}

const avatars = (page) => page.$$eval("#avatars .avatar", (els) => els.map((e) => e.dataset.user).sort());

/**
 * Whether a PNG has real content: decoded by the browser itself, it must
 * have several distinct colours and a fair share of pixels that are not the
 * background.
 */
async function screenshotContent(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = new OffscreenCanvas(img.width, img.height);
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const px = g.getImageData(0, 0, img.width, img.height).data;
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
      const key = ((px[i] >> 4) << 8) | ((px[i + 1] >> 4) << 4) | (px[i + 2] >> 4);
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const total = px.length / 4;
    const dominant = Math.max(...counts.values());
    return { width: img.width, height: img.height, colours: counts.size, nonBackground: 1 - dominant / total };
  }, png.toString("base64"));
}

test("two pages see each other's strokes, cursors and presence; the screenshot is not blank", { skip, timeout: 90000 }, async () => {
  const node = await Node.start(["--history", "board=1000"]);
  try {
    const ada = await openBoard(browser, node, { user: "ada", board: "two" });
    const grace = await openBoard(browser, node, { user: "grace", board: "two" });
    await ada.waitForFunction(() => document.querySelectorAll("#avatars .avatar").length === 2, null, { polling: POLL });
    await grace.waitForFunction(() => document.querySelectorAll("#avatars .avatar").length === 2, null, { polling: POLL });
    assert.deepEqual(await avatars(ada), ["ada", "grace"]);
    assert.deepEqual(await avatars(grace), ["ada", "grace"]);
    assert.equal(await ada.textContent("#badge"), "connected");

    await draw(ada, 80, 120);
    await grace.waitForFunction(() => window.board.actions >= 1, null, { polling: POLL });
    await draw(grace, 300, 380);
    // Once grace's publishes are all acked, a marker published after them
    // is the channel's last offset, and reaches both pages last.
    await grace.waitForFunction(() => window.sb._pending.size === 0, null, { polling: POLL });
    const last = await node.publish(BOARD("two"), { t: "marker" });
    await ada.waitForFunction((n) => window.board.offsets.at(-1) === n, last, { polling: POLL });
    await grace.waitForFunction((n) => window.board.offsets.at(-1) === n, last, { polling: POLL });
    const a = await ada.evaluate(() => window.board.offsets);
    const g = await grace.evaluate(() => window.board.offsets);
    assert.deepEqual(a, g, "both pages applied the same actions in the same order");
    assert.deepEqual(a, a.map((_, i) => i + 1));

    const box = await grace.locator("canvas").boundingBox();
    await grace.mouse.move(box.x + 600, box.y + 200);
    await grace.mouse.move(box.x + 640, box.y + 240, { steps: 4 });
    await ada.waitForSelector('.cursor[data-user="grace"]');
    await ada.mouse.move(box.x + 200, box.y + 300, { steps: 4 });
    await grace.waitForSelector('.cursor[data-user="ada"]');

    const png = await ada.screenshot({ path: join(OUT_DIR, "board.png") });
    const content = await screenshotContent(ada, png);
    figures.screenshot = content;
    assert.ok(content.colours >= 8, `colours ${content.colours}`);
    assert.ok(content.nonBackground > 0.02, `non-background share ${content.nonBackground}`);

    await grace.close();
    await ada.waitForFunction(() => document.querySelectorAll("#avatars .avatar").length === 1, null, { polling: POLL });
    await ada.waitForFunction(() => !document.querySelector('.cursor[data-user="grace"]'), null, { polling: POLL });
    assert.deepEqual(ada.errors, []);
    await ada.close();
  } finally {
    await node.kill();
  }
});

test("failover over Redis: the page's node dies, the client moves to the second URL, every action once and in order", { skip, timeout: 120000 }, async () => {
  const redis = await Redis.start();
  const nodes = [];
  try {
    const args = ["--redis", redis.url, "--history", "board=1000", "--presence-ttl", "5"];
    const a = await Node.start([...args, "--node", "a"]);
    nodes.push(a);
    const b = await Node.start([...args, "--node", "b"]);
    nodes.push(b);
    const page = await openBoard(browser, a, { user: "ada", board: "fo", ws: `${a.ws},${b.ws}` });
    assert.equal(await page.evaluate(() => window.sb.welcome.node), "a");

    // Another process keeps publishing through node b, before, during and
    // after node a's death.
    const TOTAL = 200;
    const KILL_AT = 50;
    const published = [];
    let killedAt;
    for (let i = 0; i < TOTAL; i++) {
      published.push(await b.publish(BOARD("fo"), dot(i)));
      if (i === KILL_AT) {
        killedAt = Date.now();
        await a.kill("SIGKILL");
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await page.waitForFunction((n) => window.board.offsets.length >= n, TOTAL, { polling: POLL, timeout: 30000 });
    // Let anything late (a duplicate, say) arrive before judging.
    await page.waitForTimeout(300);
    const seen = await page.evaluate(() => window.board.offsets);
    const lost = published.filter((o) => !seen.includes(o)).length;
    const duplicated = seen.length - new Set(seen).size;
    const log = await page.evaluate(() => window.board.states);
    const back = log.find((e) => e.s === "connected" && e.t > killedAt);
    const recovered = await page.evaluate(() => window.board.recovered);
    figures.failover = {
      published: TOTAL,
      delivered: seen.length,
      lost,
      duplicated,
      reconnect_ms: back ? back.t - killedAt : null,
      recovered_by_replay: recovered,
    };
    console.log("failover:", JSON.stringify(figures.failover));
    assert.deepEqual(seen, published, "exactly once, in offset order");
    assert.equal(await page.evaluate(() => window.sb.welcome.node), "b");
    assert.ok(back, "reconnected");
    assert.ok(recovered.length === 1, `one recovery: ${JSON.stringify(recovered)}`);
    assert.match(await page.textContent("#note"), /recovered \d+ missed action/);
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    for (const n of nodes) await n.kill();
    await redis.stop();
  }
});

test("a restart of the embedded broker loses history: the board hears reset", { skip, timeout: 90000 }, async () => {
  const port = await freePort();
  let node = await Node.start(["--history", "board=1000"], port);
  try {
    const page = await openBoard(browser, node, { user: "ada", board: "rs" });
    for (let i = 0; i < 3; i++) await node.publish(BOARD("rs"), dot(i));
    await page.waitForFunction(() => window.board.offsets.length === 3, null, { polling: POLL });
    const epoch = await page.evaluate(() => window.board.epoch);

    const stoppedAt = Date.now();
    await node.kill("SIGTERM");
    await portClosed(port);
    node = await Node.start(["--history", "board=1000"], port);
    await page.waitForFunction(() => window.board.resets === 1, null, { polling: POLL, timeout: 30000 });
    const log = await page.evaluate(() => window.board.states);
    const back = log.find((e) => e.s === "connected" && e.t > stoppedAt);
    figures.restart = { reconnect_ms: back.t - stoppedAt, closes: await page.evaluate(() => window.board.disconnects.map((d) => d.code)) };
    assert.notEqual(await page.evaluate(() => window.board.epoch), epoch, "a new epoch");
    assert.match(await page.textContent("#note"), /history was lost/);
    assert.deepEqual(figures.restart.closes, [1001], "drained with 1001");

    const offset = await node.publish(BOARD("rs"), dot(9));
    assert.equal(offset, 1);
    await page.waitForFunction(() => window.board.offsets.length === 4, null, { polling: POLL });
    assert.deepEqual(await page.evaluate(() => window.board.offsets), [1, 2, 3, 1]);
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    await node.kill();
  }
});

test("a slow consumer closed with 4008 reconnects and recovers what it missed", { skip, timeout: 90000 }, async () => {
  const node = await Node.start(["--history", "board=1000", "--outbound-limit", "65536"]);
  try {
    const page = await openBoard(browser, node, { user: "ada", board: "slow" });
    await page.evaluate(() => window.sb.channel("flood:slow").join());
    const published = [];
    for (let i = 0; i < 2; i++) published.push(await node.publish(BOARD("slow"), dot(i)));
    await page.waitForFunction(() => window.board.offsets.length === 2, null, { polling: POLL });

    // Block the page's main thread: Chromium stops reading the socket, the
    // server's queue for it grows past --outbound-limit.
    const busy = page.evaluate(() => {
      const end = Date.now() + 5000;
      while (Date.now() < end);
    });
    const blob = "x".repeat(32 * 1024);
    let flood = 0;
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline && flood < 1500) {
      await Promise.all(Array.from({ length: 8 }, (_, k) => node.publish("flood:slow", { blob, k })));
      flood += 8;
    }
    for (let i = 2; i < 7; i++) published.push(await node.publish(BOARD("slow"), dot(i)));
    await busy;

    await page.waitForFunction(() => window.board.disconnects.some((d) => d.code === 4008), null, { polling: POLL, timeout: 30000 });
    await page.waitForFunction((n) => window.board.offsets.length >= n, published.length, { polling: POLL, timeout: 30000 });
    await page.waitForFunction(() => window.board.recovered.length > 0, null, { polling: POLL, timeout: 30000 });
    const seen = await page.evaluate(() => window.board.offsets);
    const recovered = await page.evaluate(() => window.board.recovered);
    const closes = await page.evaluate(() => window.board.disconnects.map((d) => d.code));
    figures.slow_consumer = { flood_messages: flood, flood_bytes: flood * blob.length, closes, recovered, delivered: seen.length };
    console.log("slow consumer:", JSON.stringify(figures.slow_consumer));
    assert.deepEqual(seen, published, "every board action once, in order");
    assert.ok(recovered.at(-1) >= 1, `the missed actions came by replay: ${recovered}`);
    assert.equal(await page.evaluate(() => window.sb.state), "connected");
    await page.close();
  } finally {
    await node.kill();
  }
});
