// A fake WebSocket for the unit tests: every socket the client opens is
// recorded, and the test plays the server (welcome, replies, events,
// closes) by hand.

export class FakeServer {
  constructor() {
    this.sockets = [];
    this._waiters = [];
    const server = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.readyState = 0;
        this.sent = [];
        this.closedWith = undefined;
        this._waiters = [];
        server.sockets.push(this);
        const waiters = server._waiters;
        server._waiters = [];
        for (const w of waiters) w(this);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error("not open");
        this.sent.push(JSON.parse(text));
        const waiters = this._waiters;
        this._waiters = [];
        for (const w of waiters) w();
      }
      close(code) {
        this.closedWith = code;
        this.readyState = 3;
      }
      // ---- the test's side ----
      open(welcome = {}) {
        this.readyState = 1;
        this.onopen?.({});
        this.push({ type: "welcome", conn: "n1-1", user: "u", node: "n1", heartbeat_s: 25, max_message_bytes: 65536, ...welcome });
      }
      push(msg) {
        this.onmessage?.({ data: JSON.stringify(msg) });
      }
      serverClose(code, reason = "") {
        this.readyState = 3;
        this.onclose?.({ code, reason });
      }
      /** Resolves with the first sent message (from `from` on) matching `pred`. */
      async waitSent(pred, { from = 0, timeoutMs = 2000 } = {}) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const found = this.sent.slice(from).find(pred);
          if (found) return found;
          const left = deadline - Date.now();
          if (left <= 0) throw new Error("timed out waiting for a sent message; sent: " + JSON.stringify(this.sent));
          await new Promise((resolve) => {
            const t = setTimeout(resolve, left);
            this._waiters.push(() => {
              clearTimeout(t);
              resolve();
            });
          });
        }
      }
    };
  }

  /** Resolves with socket number `n` (0-based) once the client opened it. */
  async socket(n, timeoutMs = 2000) {
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.length <= n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for socket ${n}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this._waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.sockets[n];
  }
}

/** Resolves when `emitter` emits `event` (with its first argument); rejects after `timeoutMs`. */
export function once(emitter, event, timeoutMs = 2000, pred = () => true) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const off = emitter.on(event, (arg) => {
      if (!pred(arg)) return;
      clearTimeout(t);
      off();
      resolve(arg);
    });
  });
}

/** Polls `pred` until true; rejects after `timeoutMs`. */
export async function until(pred, timeoutMs = 2000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** An unsigned JWT-shaped token with the given claims (the fake server does not check it). */
export function fakeToken(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}
