// Processes for the browser tests: switchboard nodes, a redis-server, and
// headless Chromium (Debian's, through playwright-core; never a download).
// Every process is stopped by its pid; every wait has a deadline.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../../../..");
export const SWITCHBOARD = process.env.SWITCHBOARD_BIN || join(ROOT, "target/debug/switchboard");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const OUT_DIR = process.env.BROWSER_TEST_OUT || join(ROOT, "target/browser-test");

/** Why the suite cannot run here, or undefined. Under CI=true the caller fails instead of skipping. */
export function missingTool() {
  if (!existsSync(SWITCHBOARD)) return `no server binary at ${SWITCHBOARD} (cargo build first)`;
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (!which("redis-server")) return "no redis-server in PATH";
  return undefined;
}

function which(cmd) {
  return (process.env.PATH || "").split(":").some((d) => d && existsSync(join(d, cmd)));
}

export async function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

/** Resolves with the first line of `stream` matching `re`; rejects after `ms`. */
function waitLine(child, re, ms, what) {
  return new Promise((resolveLine, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no line matching ${re} within ${ms} ms; output: ${buf.slice(-2000)}`));
    }, ms);
    const onData = (chunk) => {
      buf += chunk;
      const m = buf.match(re);
      if (m) {
        cleanup();
        resolveLine(m);
      }
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`${what} exited (${code}) before ${re}; output: ${buf.slice(-2000)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout.off("data", onData);
      child.off("exit", onExit);
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.on("exit", onExit);
  });
}

/** A switchboard node on 127.0.0.1:`port` (0 = any). */
export class Node {
  static async start(args, port = 0) {
    const child = spawn(SWITCHBOARD, ["--listen", `127.0.0.1:${port}`, "--threads", "1", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
    });
    child.stderr.resume();
    const m = await waitLine(child, /listening on (\S+)/, 15000, "switchboard");
    const node = new Node();
    node.child = child;
    node.addr = m[1];
    node.http = `http://${node.addr}`;
    node.ws = `ws://${node.addr}/ws`;
    node.exited = new Promise((r) => child.once("exit", r));
    return node;
  }

  /** Kills the process (SIGKILL by default: the node dies, nothing is drained). */
  async kill(signal = "SIGKILL") {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await withTimeout(this.exited, 10000, "switchboard exit");
  }

  /** POST /api/publish; resolves with the offset (or undefined without history). */
  async publish(channel, action) {
    const resp = await fetch(`${this.http}/api/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel, action }),
      signal: AbortSignal.timeout(5000),
    });
    if (resp.status !== 200) throw new Error(`publish: ${resp.status} ${await resp.text()}`);
    return (await resp.json()).offset;
  }
}

/** A redis-server of our own on a free port (never the machine's 6379). */
export class Redis {
  static async start() {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "sb-browser-redis-"));
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stderr.resume();
    await waitLine(child, /Ready to accept connections/, 10000, "redis-server");
    const r = new Redis();
    r.child = child;
    r.dir = dir;
    r.url = `redis://127.0.0.1:${port}`;
    r.exited = new Promise((res) => child.once("exit", res));
    return r;
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await withTimeout(this.exited, 10000, "redis-server exit");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resolves once 127.0.0.1:`port` refuses connections (the old process is gone). */
export async function portClosed(port, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const open = await new Promise((r) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (!open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} still open after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/** Headless Chromium: no sandbox (CI runs as root), no background traffic. */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--no-first-run",
      "--disable-dev-shm-usage",
      // Several pages share one headless browser; none of them is to be
      // treated as a background tab (throttled timers, no frames).
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
    ],
  });
}

/** Opens the board at `node` with the given query and waits for the board channel to be joined. */
export async function openBoard(browser, node, query, ms = 15000) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  page.setDefaultTimeout(ms);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(`${node.http}/?${new URLSearchParams(query)}`, { timeout: ms });
  await page.waitForFunction(() => window.board && window.board.joined > 0, null, { polling: 50, timeout: ms });
  return page;
}
