// switchboard client: one WebSocket to a switchboard server (or a list of
// them), kept alive across drops, with every joined channel re-joined and
// its missed history replayed in order. No dependencies; runs in browsers
// and in Node 20+ (pass `WebSocket` where there is no global one).
//
// The wire contract is switchboard's PROTOCOL.md (version 1.1). What this
// file adds on top of it, and why:
// - Reconnection with exponential backoff and full jitter between a floor
//   and a ceiling, so a node's death does not turn into a reconnect storm
//   and a server that drops every connection is never retried in a loop.
//   A connection that dies within `stableMs` of its welcome still counts as
//   a failure, so such a server is backed off from too.
// - Re-join with `since` (section 5): the app sees every action of a
//   history channel once, in offset order, across drops, `resync`s and node
//   failovers; when the server cannot replay, the channel emits `reset`.
// - Requests in flight when the connection drops are rejected; a publish is
//   never sent twice behind the app's back.

/** Close codes and what the client does about them (PROTOCOL.md section 8). */
export const CloseCode = Object.freeze({
  GOING_AWAY: 1001,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4009,
  TOKEN_EXPIRED: 4010,
});

/** The code sent when the client closes a connection it gave up on. */
const CLIENT_GAVE_UP = 4000;

const DEFAULTS = {
  timeoutMs: 10000,
  minDelayMs: 500,
  maxDelayMs: 20000,
  stableMs: 1000,
  refreshBeforeMs: 30000,
};

/**
 * The wait before reconnect attempt `attempt` (0 for the first after a
 * stable connection): "full jitter" (uniform between the floor and an
 * exponentially growing cap, itself bounded by the ceiling). Never below
 * `minMs`, so a failing server is never hammered in a zero-delay loop.
 */
export function backoffDelay(attempt, minMs, maxMs, random = Math.random) {
  const floor = Math.max(1, minMs);
  const cap = Math.max(floor, Math.min(maxMs, floor * 2 ** Math.min(attempt + 1, 30)));
  return floor + Math.floor(random() * (cap - floor));
}

/** The `exp` claim (seconds) of a JWT, or undefined when it has none. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    if (!part) return undefined;
    let b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const json = typeof atob === "function" ? atob(b64) : Buffer.from(b64, "base64").toString("latin1");
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** An error reply of the server, or a local failure, as an `Error`. */
export class SwitchboardError extends Error {
  constructor(code, message, reply) {
    super(message);
    this.name = "SwitchboardError";
    /** The server's error code (`not_joined`, ...) or a local one: `disconnected`, `timeout`, `closed`. */
    this.code = code;
    /** The server's error reply, when there was one. */
    this.reply = reply;
  }
}

class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  /** Adds a handler; returns a function that removes it. */
  on(event, fn) {
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
  }
  _emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A throwing handler must not break delivery to the others (or the
        // client's own bookkeeping); report it where it can be seen.
        if (event !== "error" && this._reportHandlerError) this._reportHandlerError(err);
        else setTimeout(() => { throw err; });
      }
    }
  }
}

/**
 * A channel of a {@link Switchboard}: one object per name. Events:
 * `action` (a `user_action` as the server sent it), `presence` (join and
 * leave events), `members` (the member list changed), `reset` (history
 * could not be recovered: reload your state), `joined` (every `joined`
 * reply, re-joins included), `recovered` (a re-join's replay has been
 * delivered: `{missed}`), `left` (the server left the channel for us).
 */
export class Channel extends Emitter {
  constructor(client, name) {
    super();
    this._client = client;
    this.name = name;
    /** Current presence: `[{user, conn, info?}]`, kept up to date from events. */
    this.members = [];
    /** Whether the server has this connection in the channel right now. */
    this.joined = false;
    /** Last offset applied (history channels), and its epoch. */
    this.offset = undefined;
    this.epoch = undefined;
    this._wanted = false; // the app asked to be in the channel
    this._joinWaiters = []; // {resolve, reject, timer} of join() calls
    this._joinInFlight = false; // a join_channel of ours awaits its reply
    this._distrust = false; // between a resync (or gap) and its joined: drop actions
    this._resyncAgain = false; // a resync came while a join was in flight
    this._replayLeft = 0; // replayed events still to come after a joined
    this._replayDelivered = 0;
    this._recovering = false;
    this._retryTimer = undefined;
    this._reportHandlerError = (err) => client._emit("error", err);
  }

  /**
   * Joins the channel (and keeps it joined across reconnects). Resolves
   * with the `joined` reply; rejects with the error reply, or when no
   * reply comes within `timeoutMs` (the client keeps trying to join).
   */
  join() {
    this._wanted = true;
    if (this.joined && !this._joinInFlight && this._lastJoined) {
      // Already in: nothing to ask the server (a second join with `since`
      // would replay for nothing).
      return Promise.resolve(this._lastJoined);
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        this._joinWaiters = this._joinWaiters.filter((w) => w !== waiter);
        reject(new SwitchboardError("timeout", `join ${this.name}: no reply within ${this._client._opts.timeoutMs} ms`));
      }, this._client._opts.timeoutMs);
      this._joinWaiters.push(waiter);
      if (this._client.state === "connected" && !this._joinInFlight) this._sendJoin(false);
    });
  }

  /**
   * Publishes `action` (any JSON value). Resolves with the `ack` (with the
   * `offset` on history channels). Rejects with the error reply, with code
   * `disconnected` when not connected or when the connection drops before
   * the ack (the action may or may not have been published: it is never
   * re-sent), or `timeout`.
   */
  publish(action) {
    return this._client._request({ type: "user_action", channel: this.name, action });
  }

  /** Asks the server for the member list (and updates `members`). */
  async presence() {
    const reply = await this._client._request({ type: "presence", channel: this.name });
    this._setMembers(reply.members || []);
    return reply;
  }

  /** Leaves the channel; resolves with the `left` reply. */
  async leave() {
    this._wanted = false;
    this._clearRetry();
    this._rejectJoinWaiters(new SwitchboardError("left", `left ${this.name} before it was joined`));
    const wasJoined = this.joined;
    this._forget();
    if (!wasJoined || this._client.state !== "connected") return { type: "left", channel: this.name };
    return this._client._request({ type: "leave_channel", channel: this.name });
  }

  // ---- internals, driven by Switchboard ----

  /** Sends join_channel, with `since` when there is history to recover. */
  _sendJoin(resync) {
    this._joinInFlight = true;
    const msg = { type: "join_channel", channel: this.name };
    if (this.epoch !== undefined && this.offset !== undefined) {
      msg.since = { offset: this.offset, epoch: this.epoch };
    }
    if (resync) this._distrust = true;
    // The reply is handled synchronously, not on a promise's later turn:
    // the replayed events may arrive in the same turn right behind it.
    this._client._send(msg, (reply) => this._onJoined(reply), (err) => this._onJoinFailed(err));
  }

  _onJoined(reply) {
    this._joinInFlight = false;
    this._distrust = false;
    if (!this._wanted) {
      // left() while the join was in flight: the server has us, undo it.
      this._client._request({ type: "leave_channel", channel: this.name }).catch(() => {});
      return;
    }
    this.joined = true;
    this._lastJoined = reply;
    this._setMembers(reply.members || []);
    const history = typeof reply.offset === "number" && typeof reply.epoch === "string";
    this._replayLeft = 0;
    this._replayDelivered = 0;
    this._recovering = false;
    if (reply.recovered === false) {
      // History could not be replayed: start over from the server's state.
      this.epoch = history ? reply.epoch : undefined;
      this.offset = history ? reply.offset : undefined;
      this._emit("joined", reply);
      this._emit("reset", reply);
    } else {
      if (history && (this.epoch === undefined || reply.recovered !== true)) {
        this.epoch = reply.epoch;
        this.offset = reply.offset;
      } else if (!history) {
        this.epoch = this.offset = undefined;
      }
      this._emit("joined", reply);
      if (reply.recovered === true) {
        this._replayLeft = reply.replayed || 0;
        this._recovering = true;
        if (this._replayLeft === 0) this._finishRecovery();
      }
    }
    const waiters = this._joinWaiters;
    this._joinWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(reply);
    }
    if (this._resyncAgain) {
      // That join may have been served from before the gap: fill again
      // from what has been applied by now.
      this._resyncAgain = false;
      this._sendJoin(true);
    }
  }

  _onJoinFailed(err) {
    this._joinInFlight = false;
    this._distrust = false;
    this._resyncAgain = false;
    if (err.code === "disconnected" || err.code === "closed") return; // re-joined on reconnect
    if (err.code === "unavailable" || err.code === "rate_limited" || err.code === "timeout") {
      // Passing trouble (Redis down, a burst): try again later unless the
      // app gave up; the app's join() hears the error either way.
      this._rejectJoinWaiters(err);
      if (this._wanted) {
        this._clearRetry();
        const delay = backoffDelay(1, this._client._opts.minDelayMs, this._client._opts.maxDelayMs);
        this._retryTimer = setTimeout(() => {
          this._retryTimer = undefined;
          if (this._wanted && this._client.state === "connected" && !this._joinInFlight) this._sendJoin(false);
        }, delay);
      }
      return;
    }
    // forbidden, invalid_channel, too_many_channels: trying again will not help.
    this._wanted = false;
    this._forget();
    this._rejectJoinWaiters(err);
    if (!this._hadWaiters) this._client._emit("error", err);
  }

  _rejectJoinWaiters(err) {
    const waiters = this._joinWaiters;
    this._joinWaiters = [];
    this._hadWaiters = waiters.length > 0;
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  _clearRetry() {
    if (this._retryTimer !== undefined) clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
  }

  _forget() {
    this.joined = false;
    this.offset = this.epoch = undefined;
    this._distrust = false;
    this._replayLeft = 0;
    this._recovering = false;
    this._setMembers([]);
  }

  /** The connection dropped: the server no longer has us in the channel. */
  _onDisconnected() {
    this.joined = false;
    this._joinInFlight = false;
    this._distrust = false;
    this._resyncAgain = false;
    this._replayLeft = 0;
    this._recovering = false;
    this._clearRetry();
  }

  _onResync() {
    if (!this._wanted || !this.joined) return;
    if (this._joinInFlight) {
      // The join in flight may have been answered from before the gap;
      // distrust until it answers, then fill again from there.
      this._distrust = true;
      this._resyncAgain = true;
      return;
    }
    this._sendJoin(true);
  }

  _onAction(ev) {
    if (!this.joined || this._distrust) return; // the coming replay has it
    if (typeof ev.offset === "number" && this.epoch !== undefined) {
      const isReplay = this._replayLeft > 0;
      if (isReplay) this._replayLeft--;
      if (ev.offset <= this.offset) {
        if (isReplay && this._replayLeft === 0) this._finishRecovery();
        return; // already applied: never deliver an offset twice
      }
      if (ev.offset !== this.offset + 1 && !isReplay) {
        // A hole in the live stream: do what a `resync` asks for.
        this._onResync();
        return;
      }
      this.offset = ev.offset;
      if (isReplay) this._replayDelivered++;
      this._emit("action", ev);
      if (isReplay && this._replayLeft === 0) this._finishRecovery();
      return;
    }
    this._emit("action", ev);
  }

  _finishRecovery() {
    if (!this._recovering) return;
    this._recovering = false;
    this._emit("recovered", { missed: this._replayDelivered });
  }

  _onPresence(ev) {
    if (!this.joined) return;
    if (ev.event === "join") {
      if (!this.members.some((m) => m.conn === ev.conn)) {
        const m = { user: ev.user, conn: ev.conn };
        if (ev.info !== undefined) m.info = ev.info;
        this.members = [...this.members, m];
      }
    } else if (ev.event === "leave") {
      this.members = this.members.filter((m) => m.conn !== ev.conn);
    }
    this._emit("presence", ev);
    this._emit("members", this.members);
  }

  _onServerLeft(ev) {
    // The server took us out (a refreshed token no longer allows the channel).
    this._wanted = false;
    this._forget();
    this._emit("left", ev);
  }

  _setMembers(members) {
    this.members = members.slice();
    this._emit("members", this.members);
  }
}

/**
 * A connection to switchboard that stays up. Events: `state` (one of
 * "connecting", "connected", "disconnected", "closed"), `error`,
 * `welcome`, `message` (every server message, for debugging).
 */
export class Switchboard extends Emitter {
  /**
   * @param url a `ws://`/`wss://` URL, a path such as `/ws` (resolved
   *   against the page's location), or a list of them to rotate over.
   */
  constructor(url, options = {}) {
    super();
    const urls = (Array.isArray(url) ? url : [url]).filter(Boolean);
    if (urls.length === 0) throw new TypeError("Switchboard: at least one URL is needed");
    this.urls = urls;
    this._opts = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("Switchboard: no WebSocket in this runtime; pass options.WebSocket");
    }
    this.state = "connecting";
    /** The last `welcome` message (conn, user, node, ...). */
    this.welcome = undefined;
    /** The URL of the current (or last) connection attempt. */
    this.url = undefined;
    this._channels = new Map();
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._nextId = 1;
    this._ws = undefined;
    this._urlIndex = -1;
    this._attempt = 0;
    this._token = undefined;
    this._tokenStale = true;
    this._timers = new Set();
    this._welcomeAt = 0;
    this._lastSeen = 0;
    this._reportHandlerError = (err) => this._emit("error", err);
    // Start on a later turn so that handlers added right after `new` see
    // every event.
    this._later(0, () => this._connect());
  }

  /** The channel object for `name` (one per name; joining is separate). */
  channel(name) {
    let ch = this._channels.get(name);
    if (!ch) this._channels.set(name, (ch = new Channel(this, name)));
    return ch;
  }

  /** Closes for good: no reconnection; pending requests reject with `closed`. */
  close() {
    if (this.state === "closed") return;
    this._setState("closed");
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    const ws = this._ws;
    this._ws = undefined;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    this._failPending(new SwitchboardError("closed", "the client was closed"));
    for (const ch of this._channels.values()) {
      ch._onDisconnected();
      ch._rejectJoinWaiters(new SwitchboardError("closed", "the client was closed"));
    }
  }

  /** Sends `ping` and resolves with the `pong`. */
  ping() {
    return this._request({ type: "ping" });
  }

  // ---- connection lifecycle ----

  _later(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _cancel(t) {
    if (t === undefined) return;
    clearTimeout(t);
    this._timers.delete(t);
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit("state", s);
  }

  async _connect() {
    if (this.state === "closed") return;
    this._setState("connecting");
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    let token;
    if (this._opts.getToken) {
      try {
        if (this._tokenStale || this._token === undefined || this._expiresSoon(this._token)) {
          this._token = await this._opts.getToken();
          this._tokenStale = false;
        }
        token = this._token;
      } catch (err) {
        this._emit("error", err);
        this._retry();
        return;
      }
      if (this.state === "closed") return;
    }
    const url = this._buildUrl(this.urls[this._urlIndex], token);
    this.url = url;
    let ws;
    try {
      ws = new this._WebSocket(url, "switchboard.v1");
    } catch (err) {
      this._emit("error", err);
      this._retry();
      return;
    }
    this._ws = ws;
    this._welcomeAt = 0;
    const openTimer = this._later(this._opts.timeoutMs, () => {
      if (this._ws === ws && !this._welcomeAt) this._drop(ws, 0, "no welcome within timeoutMs");
    });
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._lastSeen = Date.now();
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
      } catch {
        this._emit("error", new SwitchboardError("bad_message", "the server sent a message that is not JSON"));
        return;
      }
      if (msg && msg.type === "welcome") this._cancel(openTimer);
      this._onMessage(msg);
    };
    ws.onclose = (ev) => {
      this._cancel(openTimer);
      if (this._ws === ws) this._drop(ws, ev.code, ev.reason);
    };
    ws.onerror = () => {
      // A close event follows; it is the one acted on.
    };
  }

  _buildUrl(base, token) {
    let url = base;
    if (/^\//.test(url) && globalThis.location) {
      const scheme = globalThis.location.protocol === "https:" ? "wss://" : "ws://";
      url = scheme + globalThis.location.host + url;
    } else if (/^https?:/.test(url)) {
      url = url.replace(/^http/, "ws");
    }
    const params = [];
    if (token !== undefined) params.push("token=" + encodeURIComponent(token));
    else if (this._opts.user) params.push("user=" + encodeURIComponent(this._opts.user));
    if (params.length) url += (url.includes("?") ? "&" : "?") + params.join("&");
    return url;
  }

  _expiresSoon(token) {
    const exp = tokenExpiry(token);
    return exp !== undefined && exp * 1000 - Date.now() < 1000;
  }

  /** The connection `ws` is gone (closed by either side, or given up on). */
  _drop(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = undefined;
    detach(ws);
    try {
      if (ws.readyState === 0 || ws.readyState === 1) ws.close(CLIENT_GAVE_UP);
    } catch {
      // closing anyway
    }
    this._cancel(this._pingTimer);
    this._cancel(this._refreshTimer);
    const lived = this._welcomeAt ? Date.now() - this._welcomeAt : 0;
    const neverWelcomed = !this._welcomeAt;
    this._welcomeAt = 0;
    this._failPending(new SwitchboardError("disconnected", `connection lost (close ${code}${reason ? ": " + reason : ""}) before the reply`));
    for (const ch of this._channels.values()) ch._onDisconnected();
    if (this.state === "closed") return;
    // 4010: the token expired. A connection refused before its welcome may
    // have been a 401 (browsers do not say): ask for a new token either way.
    if (code === CloseCode.TOKEN_EXPIRED || neverWelcomed) this._tokenStale = true;
    if (lived >= this._opts.stableMs) this._attempt = 0;
    this._setState("disconnected");
    this._emit("disconnect", { code, reason, lived });
    this._retry();
  }

  _retry() {
    if (this.state === "closed") return;
    if (this.state !== "disconnected") this._setState("disconnected");
    const delay = backoffDelay(this._attempt, this._opts.minDelayMs, this._opts.maxDelayMs, this._opts.random);
    this._emit("retry", { attempt: this._attempt, delayMs: delay });
    this._attempt++;
    this._later(delay, () => this._connect());
  }

  _failPending(err) {
    const pending = this._pending;
    this._pending = new Map();
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** Sends `msg` with a fresh id; resolves with the reply, rejects with an error reply. */
  _request(msg) {
    return new Promise((resolve, reject) => this._send(msg, resolve, reject));
  }

  /**
   * Sends `msg` with a fresh id; `resolve(reply)` or `reject(error)` is
   * called exactly once, synchronously when the reply is handled.
   */
  _send(msg, resolve, reject) {
    const ws = this._ws;
    if (this.state !== "connected" || !ws) {
      reject(new SwitchboardError("disconnected", `not connected: ${msg.type} not sent`));
      return;
    }
    const id = this._nextId++;
    const timer = setTimeout(() => {
      if (this._pending.delete(id)) {
        reject(new SwitchboardError("timeout", `${msg.type}: no reply within ${this._opts.timeoutMs} ms`));
      }
    }, this._opts.timeoutMs);
    this._pending.set(id, { resolve, reject, timer });
    try {
      ws.send(JSON.stringify({ ...msg, id }));
    } catch (err) {
      this._pending.delete(id);
      clearTimeout(timer);
      reject(new SwitchboardError("disconnected", `${msg.type} not sent: ${err.message}`));
    }
  }

  _onMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    this._emit("message", msg);
    if (msg.id !== undefined && this._pending.has(msg.id)) {
      const p = this._pending.get(msg.id);
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === "error") p.reject(new SwitchboardError(msg.code, msg.message || msg.code, msg));
      else p.resolve(msg);
      return;
    }
    const ch = typeof msg.channel === "string" ? this._channels.get(msg.channel) : undefined;
    switch (msg.type) {
      case "welcome":
        this._onWelcome(msg);
        break;
      case "user_action":
        ch?._onAction(msg);
        break;
      case "presence":
        ch?._onPresence(msg);
        break;
      case "resync":
        ch?._onResync();
        break;
      case "left":
        if (msg.reason) ch?._onServerLeft(msg);
        break;
      case "error":
        this._emit("error", new SwitchboardError(msg.code, msg.message || msg.code, msg));
        break;
      default:
        break;
    }
  }

  _onWelcome(msg) {
    this.welcome = msg;
    this._welcomeAt = Date.now();
    this._lastSeen = this._welcomeAt;
    this._setState("connected");
    this._emit("welcome", msg);
    for (const ch of this._channels.values()) {
      if (ch._wanted) ch._sendJoin(false);
    }
    this._schedulePing((msg.heartbeat_s || 25) * 1000);
    this._scheduleRefresh();
  }

  /**
   * A connection can die without a close (a node's host vanishing, a NAT
   * forgetting the flow): when nothing has arrived for a heartbeat period,
   * ping, and drop the connection if the pong does not come in time.
   */
  _schedulePing(periodMs) {
    const ws = this._ws;
    this._pingTimer = this._later(periodMs, () => {
      if (this._ws !== ws || this.state !== "connected") return;
      if (Date.now() - this._lastSeen < periodMs) {
        this._schedulePing(periodMs);
        return;
      }
      this.ping().then(
        () => this._schedulePing(periodMs),
        (err) => {
          if (err.code === "timeout" && this._ws === ws) this._drop(ws, 0, "no pong within timeoutMs");
        },
      );
    });
  }

  /** Sends `refresh` before the token expires (PROTOCOL.md section 6). */
  _scheduleRefresh() {
    this._cancel(this._refreshTimer);
    if (!this._opts.getToken || this._token === undefined) return;
    const exp = tokenExpiry(this._token);
    if (exp === undefined) return;
    const left = exp * 1000 - Date.now();
    // `refreshBeforeMs` ahead of exp, but not before half of the time left:
    // a token that lives less than `refreshBeforeMs` would otherwise be
    // refreshed again and again without pause.
    const delay = Math.max(0, left - this._opts.refreshBeforeMs, left / 2);
    const ws = this._ws;
    this._refreshTimer = this._later(delay, () => this._refresh(ws));
  }

  async _refresh(ws) {
    if (this._ws !== ws || this.state !== "connected") return;
    let token;
    try {
      token = await this._opts.getToken();
    } catch (err) {
      this._emit("error", err);
      this._refreshTimer = this._later(Math.max(this._opts.minDelayMs, 1000), () => this._refresh(ws));
      return;
    }
    if (this._ws !== ws) {
      this._token = token;
      return;
    }
    try {
      await this._request({ type: "refresh", token });
      this._token = token;
      this._tokenStale = false;
      this._emit("refreshed", token);
      this._scheduleRefresh();
    } catch (err) {
      // The old deadline stands; when it passes the server closes with
      // 4010 and the reconnect asks getToken again.
      this._emit("error", err);
    }
  }
}

function detach(ws) {
  ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
}
