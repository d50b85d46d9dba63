// Type declarations for switchboard.js (switchboard-client).

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

export interface Member {
  user: string;
  conn: string;
  info?: unknown;
}

export interface Welcome {
  type: "welcome";
  conn: string;
  user: string;
  node: string;
  heartbeat_s: number;
  max_message_bytes: number;
}

export interface Joined {
  type: "joined";
  id?: number;
  channel: string;
  members?: Member[];
  /** Present on channels that keep history. */
  offset?: number;
  epoch?: string;
  /** Present when the join carried `since`. */
  recovered?: boolean;
  replayed?: number;
}

export interface Left {
  type: "left";
  id?: number;
  channel: string;
  /** Set when the server left the channel on its own (a refreshed token no longer allows it). */
  reason?: string;
}

export interface Ack {
  type: "ack";
  id: number;
  channel: string;
  /** Present on channels that keep history. */
  offset?: number;
}

export interface UserAction<A = unknown> {
  type: "user_action";
  channel: string;
  /** null for actions published over the HTTP API. */
  user: string | null;
  conn: string | null;
  action: A;
  offset?: number;
  info?: unknown;
}

export interface PresenceEvent {
  type: "presence";
  channel: string;
  event: "join" | "leave";
  user: string;
  conn: string;
  info?: unknown;
}

export interface PresenceState {
  type: "presence_state";
  id?: number;
  channel: string;
  members: Member[];
}

export interface Options {
  /** User name shown in presence when the server has authentication off. */
  user?: string;
  /**
   * Returns a JWT for `?token=`. Called before the first connection, again
   * after a refused handshake or a 4010 close, and before the token's `exp`
   * to send `refresh` on the open connection.
   */
  getToken?: () => string | Promise<string>;
  /** WebSocket constructor for runtimes without a global one (e.g. the `ws` package). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  /** Wait for a reply (and for the welcome) before giving up. Default 10000. */
  timeoutMs?: number;
  /** Backoff floor: no reconnect comes sooner. Default 500. */
  minDelayMs?: number;
  /** Backoff ceiling. Default 20000. */
  maxDelayMs?: number;
  /** A connection that dies sooner than this after its welcome counts as a failed attempt. Default 1000. */
  stableMs?: number;
  /** Send `refresh` this long before the token's `exp`, but not before half its remaining life. Default 30000. */
  refreshBeforeMs?: number;
  /** Source of randomness for the jitter (tests). Default Math.random. */
  random?: () => number;
}

/** An error reply of the server, or a local failure. */
export class SwitchboardError extends Error {
  /** The server's code (`forbidden`, `not_joined`, ...) or `disconnected`, `timeout`, `closed`, `left`. */
  code: string;
  reply?: { type: "error"; id?: number; code: string; message: string };
}

export interface ChannelEvents<A = unknown> {
  action: (ev: UserAction<A>) => void;
  presence: (ev: PresenceEvent) => void;
  members: (members: Member[]) => void;
  /** History could not be recovered after a drop: reload your state. */
  reset: (joined: Joined) => void;
  joined: (joined: Joined) => void;
  /** A re-join's replay has been delivered; `missed` actions were new to the app. */
  recovered: (info: { missed: number }) => void;
  left: (ev: Left) => void;
}

export class Channel<A = unknown> {
  readonly name: string;
  /** Current presence, kept up to date from events. */
  readonly members: Member[];
  readonly joined: boolean;
  /** Last offset delivered to the app (history channels), and its epoch. */
  readonly offset: number | undefined;
  readonly epoch: string | undefined;
  on<K extends keyof ChannelEvents<A>>(event: K, fn: ChannelEvents<A>[K]): () => void;
  off<K extends keyof ChannelEvents<A>>(event: K, fn: ChannelEvents<A>[K]): void;
  /** Joins (and stays joined across reconnects). */
  join(): Promise<Joined>;
  /** Never re-sent: rejects with code `disconnected` if the connection drops first. */
  publish(action: A): Promise<Ack>;
  presence(): Promise<PresenceState>;
  leave(): Promise<Left>;
}

export interface SwitchboardEvents {
  state: (state: ConnectionState) => void;
  error: (err: Error) => void;
  welcome: (welcome: Welcome) => void;
  message: (msg: { type: string; [k: string]: unknown }) => void;
  disconnect: (info: { code: number; reason: string; lived: number }) => void;
  retry: (info: { attempt: number; delayMs: number }) => void;
  refreshed: (token: string) => void;
}

export class Switchboard {
  /** `url` may be a ws(s):// URL, a path (`/ws`, resolved against the page), or a list to rotate over. */
  constructor(url: string | string[], options?: Options);
  readonly state: ConnectionState;
  readonly welcome: Welcome | undefined;
  readonly url: string | undefined;
  readonly urls: string[];
  on<K extends keyof SwitchboardEvents>(event: K, fn: SwitchboardEvents[K]): () => void;
  off<K extends keyof SwitchboardEvents>(event: K, fn: SwitchboardEvents[K]): void;
  channel<A = unknown>(name: string): Channel<A>;
  ping(): Promise<{ type: "pong"; id: number }>;
  close(): void;
}

export const CloseCode: Readonly<{
  GOING_AWAY: 1001;
  SLOW_CONSUMER: 4008;
  RATE_LIMITED: 4009;
  TOKEN_EXPIRED: 4010;
}>;

export function backoffDelay(attempt: number, minMs: number, maxMs: number, random?: () => number): number;
export function tokenExpiry(token: string): number | undefined;
