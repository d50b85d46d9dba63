// Unit tests of switchboard.js against a fake WebSocket (node --test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Switchboard, SwitchboardError, backoffDelay, tokenExpiry } from "../switchboard.js";
import { FakeServer, once, until, fakeToken } from "./fake.js";

const FAST = { minDelayMs: 5, maxDelayMs: 40, timeoutMs: 1000 };

function client(urls, opts = {}) {
  const server = new FakeServer();
  const sb = new Switchboard(urls, { WebSocket: server.WebSocket, ...FAST, ...opts });
  return { server, sb };
}

/** Connects and joins `name`, answering as a history channel at offset/epoch. */
async function joinedHistory(sb, server, name, offset = 0, epoch = "e1") {
  const ws = await server.socket(0);
  ws.open();
  const ch = sb.channel(name);
  const joining = ch.join();
  const req = await ws.waitSent((m) => m.type === "join_channel");
  assert.equal(req.since, undefined);
  ws.push({ type: "joined", id: req.id, channel: name, members: [{ user: "u", conn: "n1-1" }], offset, epoch });
  await joining;
  return { ws, ch };
}

function action(channel, offset, extra = {}) {
  return { type: "user_action", channel, user: "x", conn: "n1-9", action: { n: offset }, offset, ...extra };
}

test("backoff: full jitter between the floor and a doubling cap, bounded by the ceiling", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(1000, 100 * 2 ** (attempt + 1));
    assert.equal(backoffDelay(attempt, 100, 1000, () => 0), 100, "never below the floor");
    const hi = backoffDelay(attempt, 100, 1000, () => 0.999999);
    assert.ok(hi <= cap && hi >= cap - 1, `attempt ${attempt}: ${hi} vs cap ${cap}`);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, 100, 1000);
      assert.ok(d >= 100 && d <= cap);
    }
  }
  assert.ok(backoffDelay(0, 0, 0, () => 0) >= 1, "never a zero delay");
  assert.equal(backoffDelay(100, 100, 1000, () => 0.999999), 999);
});

test("tokenExpiry reads exp from a JWT and tolerates garbage", () => {
  assert.equal(tokenExpiry(fakeToken({ sub: "a", exp: 1767225600 })), 1767225600);
  assert.equal(tokenExpiry(fakeToken({ sub: "a" })), undefined);
  assert.equal(tokenExpiry("nonsense"), undefined);
  assert.equal(tokenExpiry("a.!!!.c"), undefined);
});

test("connects with user and subprotocol, reports states, joins, tracks presence, leaves", async () => {
  const { server, sb } = client("ws://h/ws", { user: "alice" });
  const states = [];
  sb.on("state", (s) => states.push(s));
  const ws = await server.socket(0);
  assert.equal(ws.url, "ws://h/ws?user=alice");
  assert.equal(ws.protocols, "switchboard.v1");
  ws.open({ user: "alice" });
  assert.equal(sb.state, "connected");
  assert.equal(sb.welcome.user, "alice");

  const ch = sb.channel("room:1");
  assert.equal(sb.channel("room:1"), ch, "one object per name");
  const joining = ch.join();
  const req = await ws.waitSent((m) => m.type === "join_channel");
  assert.equal(req.channel, "room:1");
  assert.equal(typeof req.id, "number");
  ws.push({ type: "joined", id: req.id, channel: "room:1", members: [{ user: "alice", conn: "n1-1" }] });
  const joined = await joining;
  assert.equal(joined.type, "joined");
  assert.deepEqual(ch.members, [{ user: "alice", conn: "n1-1" }]);

  const mark = ws.sent.length;
  assert.equal(await ch.join(), joined, "joining a joined channel asks nothing");
  assert.equal(ws.sent.length, mark);

  const presence = [];
  ch.on("presence", (ev) => presence.push(ev));
  ws.push({ type: "presence", channel: "room:1", event: "join", user: "bob", conn: "n2-1", info: { c: 1 } });
  assert.deepEqual(ch.members.map((m) => m.user), ["alice", "bob"]);
  assert.deepEqual(ch.members[1].info, { c: 1 });
  ws.push({ type: "presence", channel: "room:1", event: "leave", user: "bob", conn: "n2-1" });
  assert.deepEqual(ch.members.map((m) => m.user), ["alice"]);
  assert.deepEqual(presence.map((e) => e.event), ["join", "leave"]);

  const actions = [];
  ch.on("action", (ev) => actions.push(ev));
  ws.push({ type: "user_action", channel: "room:1", user: "bob", conn: "n2-1", action: null });
  ws.push({ type: "user_action", channel: "room:1", user: "bob", conn: "n2-1", action: null });
  assert.equal(actions.length, 2, "no-history channels deliver everything");
  assert.deepEqual(actions[0].action, null);

  const leaving = ch.leave();
  const lreq = await ws.waitSent((m) => m.type === "leave_channel");
  ws.push({ type: "left", id: lreq.id, channel: "room:1" });
  assert.equal((await leaving).type, "left");
  assert.equal(ch.joined, false);
  sb.close();
  assert.deepEqual(states, ["connected", "closed"]);
});

test("a join error rejects with the server's code and is not retried", async () => {
  const { server, sb } = client("ws://h/ws");
  const ws = await server.socket(0);
  ws.open();
  const joining = sb.channel("secret:1").join();
  const req = await ws.waitSent((m) => m.type === "join_channel");
  ws.push({ type: "error", id: req.id, code: "forbidden", message: "no" });
  await assert.rejects(joining, (e) => e instanceof SwitchboardError && e.code === "forbidden");
  ws.serverClose(1001);
  const ws2 = await server.socket(1);
  ws2.open();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws2.sent.filter((m) => m.type === "join_channel").length, 0, "a refused channel is not re-joined");
  sb.close();
});

test("publish: ack with offset; rejects when disconnected and on drop; never re-sent", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1");
  const p1 = ch.publish({ x: 1 });
  const req = await ws.waitSent((m) => m.type === "user_action");
  assert.deepEqual(req.action, { x: 1 });
  ws.push({ type: "ack", id: req.id, channel: "doc:1", offset: 1 });
  assert.equal((await p1).offset, 1);

  const inFlight = ch.publish({ x: 2 });
  await ws.waitSent((m) => m.type === "user_action" && m.action.x === 2);
  ws.serverClose(4008, "slow");
  await assert.rejects(inFlight, (e) => e.code === "disconnected" && /connection lost/.test(e.message));
  await assert.rejects(ch.publish({ x: 3 }), (e) => e.code === "disconnected");

  const ws2 = await server.socket(1);
  ws2.open();
  const rejoin = await ws2.waitSent((m) => m.type === "join_channel");
  assert.deepEqual(rejoin.since, { offset: 0, epoch: "e1" }, "since = last applied, not the ack");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws2.sent.filter((m) => m.type === "user_action").length, 0, "publishes are never retried");
  sb.close();
});

test("a request without a reply rejects with timeout", async () => {
  const { server, sb } = client("ws://h/ws", { timeoutMs: 50 });
  const ws = await server.socket(0);
  ws.open();
  await assert.rejects(sb.ping(), (e) => e.code === "timeout");
  sb.close();
});

test("reconnect: re-join with since, replay before live, no offset delivered twice, recovered note", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1", 4, "e1");
  const seen = [];
  ch.on("action", (ev) => seen.push(ev.offset));
  ws.push(action("doc:1", 5));
  ws.push(action("doc:1", 6));
  ws.push(action("doc:1", 6)); // a duplicate from the server: dropped
  assert.deepEqual(seen, [5, 6]);

  ws.serverClose(1001, "shutting down");
  const ws2 = await server.socket(1);
  ws2.open();
  const req = await ws2.waitSent((m) => m.type === "join_channel");
  assert.deepEqual(req.since, { offset: 6, epoch: "e1" });
  const recovered = once(ch, "recovered");
  ws2.push({ type: "joined", id: req.id, channel: "doc:1", members: [], offset: 9, epoch: "e1", recovered: true, replayed: 4 });
  // A replay may start at or before what was applied; those are dropped.
  for (const o of [6, 7, 8, 9]) ws2.push(action("doc:1", o));
  assert.deepEqual(await recovered, { missed: 3 });
  ws2.push(action("doc:1", 10));
  assert.deepEqual(seen, [5, 6, 7, 8, 9, 10]);
  assert.equal(ch.offset, 10);
  sb.close();
});

test("recovered:false emits reset and restarts from the new epoch", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1", 17, "old");
  ws.serverClose(1006);
  const ws2 = await server.socket(1);
  ws2.open();
  const req = await ws2.waitSent((m) => m.type === "join_channel");
  assert.deepEqual(req.since, { offset: 17, epoch: "old" });
  const reset = once(ch, "reset");
  ws2.push({ type: "joined", id: req.id, channel: "doc:1", members: [], offset: 0, epoch: "new", recovered: false, replayed: 0 });
  assert.equal((await reset).epoch, "new");
  const seen = [];
  ch.on("action", (ev) => seen.push(ev.offset));
  ws2.push(action("doc:1", 1));
  assert.deepEqual(seen, [1], "offset 1 of the new epoch is not a duplicate");
  sb.close();
});

test("resync: re-join with the last offset, distrust events until joined, drop applied offsets", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1", 0, "e1");
  const seen = [];
  ch.on("action", (ev) => seen.push(ev.offset));
  ws.push(action("doc:1", 1));
  ws.push(action("doc:1", 2));
  const mark = ws.sent.length;
  ws.push({ type: "resync", channel: "doc:1" });
  const req = await ws.waitSent((m) => m.type === "join_channel", { from: mark });
  assert.deepEqual(req.since, { offset: 2, epoch: "e1" });
  ws.push(action("doc:1", 4)); // between resync and joined: not trusted
  ws.push({ type: "joined", id: req.id, channel: "doc:1", members: [], offset: 4, epoch: "e1", recovered: true, replayed: 2 });
  ws.push(action("doc:1", 3));
  ws.push(action("doc:1", 4));
  ws.push(action("doc:1", 5));
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  sb.close();
});

test("a hole in the live offsets is filled like a resync", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1", 0, "e1");
  const seen = [];
  ch.on("action", (ev) => seen.push(ev.offset));
  ws.push(action("doc:1", 1));
  const mark = ws.sent.length;
  ws.push(action("doc:1", 3));
  const req = await ws.waitSent((m) => m.type === "join_channel", { from: mark });
  assert.deepEqual(req.since, { offset: 1, epoch: "e1" });
  ws.push({ type: "joined", id: req.id, channel: "doc:1", members: [], offset: 3, epoch: "e1", recovered: true, replayed: 2 });
  ws.push(action("doc:1", 2));
  ws.push(action("doc:1", 3));
  assert.deepEqual(seen, [1, 2, 3]);
  sb.close();
});

test("rotates over the URLs and backs off more when connections die young", async () => {
  const { server, sb } = client(["ws://a/ws", "ws://b/ws"], { stableMs: 60000, random: () => 0.999999 });
  const retries = [];
  sb.on("retry", (r) => retries.push(r));
  for (let i = 0; i < 4; i++) {
    const ws = await server.socket(i);
    assert.equal(ws.url, i % 2 ? "ws://b/ws" : "ws://a/ws");
    ws.open();
    ws.serverClose(4009, "rate limited");
  }
  await until(() => retries.length >= 4);
  assert.deepEqual(retries.slice(0, 4).map((r) => r.attempt), [0, 1, 2, 3], "short-lived connections are failures");
  assert.ok(retries[3].delayMs > retries[0].delayMs);
  assert.ok(retries.every((r) => r.delayMs >= FAST.minDelayMs && r.delayMs <= FAST.maxDelayMs));
  sb.close();
});

test("a connection that lived past stableMs resets the backoff", async () => {
  const { server, sb } = client("ws://h/ws", { stableMs: 0 });
  const retries = [];
  sb.on("retry", (r) => retries.push(r));
  for (let i = 0; i < 3; i++) {
    const ws = await server.socket(i);
    ws.open();
    await new Promise((r) => setTimeout(r, 2));
    ws.serverClose(4008);
  }
  await until(() => retries.length >= 3);
  assert.deepEqual(retries.map((r) => r.attempt), [0, 0, 0]);
  sb.close();
});

test("a refused handshake and 4010 ask getToken again; an ordinary drop reuses the token", async () => {
  let calls = 0;
  const getToken = async () => fakeToken({ sub: "a", n: ++calls });
  const { server, sb } = client("ws://h/ws?x=1", { getToken, user: "ignored" });
  const ws0 = await server.socket(0);
  assert.match(ws0.url, /^ws:\/\/h\/ws\?x=1&token=/);
  assert.doesNotMatch(ws0.url, /user=/);
  ws0.serverClose(1006); // before the welcome: maybe a 401
  const ws1 = await server.socket(1);
  assert.equal(calls, 2);
  ws1.open();
  ws1.serverClose(4008);
  const ws2 = await server.socket(2);
  assert.equal(calls, 2, "a slow-consumer close keeps the token");
  assert.equal(ws2.url, ws1.url);
  ws2.open();
  ws2.serverClose(4010, "token expired");
  const ws3 = await server.socket(3);
  assert.equal(calls, 3);
  assert.notEqual(ws3.url, ws2.url);
  sb.close();
});

test("refresh: a new token is sent before exp, and again after refreshed", async () => {
  let calls = 0;
  const now = () => Math.floor(Date.now() / 1000);
  const getToken = async () => fakeToken({ sub: "a", exp: now() + 2, n: ++calls });
  const { server, sb } = client("ws://h/ws", { getToken, refreshBeforeMs: 1990 });
  const ws = await server.socket(0);
  ws.open();
  const req = await ws.waitSent((m) => m.type === "refresh", { timeoutMs: 3000 });
  assert.equal(calls, 2);
  assert.equal(tokenExpiry(req.token), tokenExpiry(req.token));
  assert.match(req.token, /\./);
  const refreshed = once(sb, "refreshed");
  ws.push({ type: "refreshed", id: req.id, exp: tokenExpiry(req.token) });
  assert.equal(await refreshed, req.token);
  const again = await ws.waitSent((m) => m.type === "refresh" && m.id !== req.id, { timeoutMs: 3000 });
  assert.equal(calls, 3);
  // A refused refresh is reported; the connection stays.
  const err = once(sb, "error");
  ws.push({ type: "error", id: again.id, code: "unauthorized", message: "bad token" });
  assert.equal((await err).code, "unauthorized");
  assert.equal(sb.state, "connected");
  sb.close();
});

test("a token shorter-lived than refreshBeforeMs is refreshed at half its life, not in a loop", async () => {
  const now = () => Math.floor(Date.now() / 1000);
  const getToken = async () => fakeToken({ sub: "a", exp: now() + 3 });
  const { server, sb } = client("ws://h/ws", { getToken });
  const ws = await server.socket(0);
  ws.open();
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(ws.sent.filter((m) => m.type === "refresh").length, 0, "not at once");
  const req = await ws.waitSent((m) => m.type === "refresh", { timeoutMs: 3000 });
  ws.push({ type: "refreshed", id: req.id, exp: now() + 3 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(ws.sent.filter((m) => m.type === "refresh").length, 1, "one refresh per half-life");
  sb.close();
});

test("no refresh without exp, nor without getToken", async () => {
  const { server, sb } = client("ws://h/ws", { getToken: async () => "opaque-token", refreshBeforeMs: 0 });
  const ws = await server.socket(0);
  ws.open();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(ws.sent.filter((m) => m.type === "refresh").length, 0);
  sb.close();
});

test("the server leaving a channel for us (refresh narrowed channels) emits left", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1");
  const left = once(ch, "left");
  ws.push({ type: "left", channel: "doc:1", reason: "forbidden" });
  assert.equal((await left).reason, "forbidden");
  assert.equal(ch.joined, false);
  ws.serverClose(1001);
  const ws2 = await server.socket(1);
  ws2.open();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws2.sent.filter((m) => m.type === "join_channel").length, 0);
  sb.close();
});

test("join while disconnected waits for the connection; close rejects and stops", async () => {
  const { server, sb } = client("ws://h/ws");
  const ch = sb.channel("doc:1");
  const joining = ch.join();
  const ws = await server.socket(0);
  ws.open();
  const req = await ws.waitSent((m) => m.type === "join_channel");
  ws.push({ type: "joined", id: req.id, channel: "doc:1", members: [] });
  await joining;
  const pending = sb.ping();
  sb.close();
  await assert.rejects(pending, (e) => e.code === "closed");
  assert.equal(sb.state, "closed");
  assert.equal(ws.closedWith, 1000);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(server.sockets.length, 1, "no reconnect after close");
});

test("no welcome within timeoutMs gives the connection up and retries", async () => {
  const { server, sb } = client("ws://h/ws", { timeoutMs: 30 });
  const ws = await server.socket(0);
  ws.readyState = 1; // open, but the server never says welcome
  await server.socket(1);
  assert.equal(ws.closedWith, 4000);
  sb.close();
});

test("a throwing handler does not stop delivery and is reported as error", async () => {
  const { server, sb } = client("ws://h/ws");
  const { ws, ch } = await joinedHistory(sb, server, "doc:1");
  const seen = [];
  ch.on("action", () => {
    throw new Error("app bug");
  });
  ch.on("action", (ev) => seen.push(ev.offset));
  const err = once(sb, "error");
  ws.push(action("doc:1", 1));
  assert.equal((await err).message, "app bug");
  assert.deepEqual(seen, [1]);
  assert.equal(ch.offset, 1);
  sb.close();
});
