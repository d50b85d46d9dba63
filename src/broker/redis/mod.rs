//! The Redis-mode owner: a worker's share of channels when nodes scale out
//! through Redis.
//!
//! The worker that owns a channel on this node (the same hash as the
//! embedded broker) holds its one subscription, so each published message
//! reaches each node once and is framed once there. Every request of a
//! channel goes through its owner and out on the owner's one Redis
//! connection, so a connection's requests keep their order, and Redis's
//! order of a channel's messages is the order every node delivers.
//!
//! Joins and history actions are Lua scripts ([`scripts`]) so that their
//! parts happen in one Redis step. Presence lives in a sorted set per
//! channel scored by expiry: each node re-adds its members every TTL/3 (so a
//! flushed or restarted Redis learns them again), and any node with members
//! in a channel reaps expired entries every TTL/6, publishing the `leave`
//! events of members whose node died.

mod link;
pub mod scripts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mio::{Registry, Token};

use super::{Answer, ConnRef, MemberInfo, Msg, Origin, Outbox, Query};
use crate::config::Config;
use crate::metrics::WorkerMetrics;
use crate::proto::{server, ErrorCode, Since};
use crate::resp::{Event, Push, RedisUrl, Value};
use crate::ws;
use link::{Link, LinkEvent};

/// Why a command was sent, to act on its reply.
#[derive(Debug)]
enum Tag {
    Join {
        channel: Arc<str>,
        who: ConnRef,
        id: Option<u64>,
        since: bool,
        rejoin: bool,
    },
    Publish {
        channel: Arc<str>,
        origin: Origin,
        id: Option<u64>,
        history: bool,
        sent: Instant,
    },
    Presence {
        channel: Arc<str>,
        who: ConnRef,
        id: Option<u64>,
    },
    ApiPresence {
        to: ConnRef,
    },
    ApiChannels {
        to: ConnRef,
    },
    /// A leave's `ZREM`: its `left` goes out with the reply, so that it
    /// follows the `joined` of a join still waiting for Redis.
    Left {
        channel: Arc<str>,
        who: ConnRef,
        frame: Option<Bytes>,
    },
    /// The last `SCRIPT LOAD` of a reload after `NOSCRIPT`.
    ScriptsLoaded,
    /// Replies nobody waits for (presence upkeep, script loads).
    Ignore,
}

/// The Redis names of one channel.
#[derive(Debug)]
struct Keys {
    presence: Vec<u8>,
    pubsub: Vec<u8>,
    meta: Vec<u8>,
    stream: Vec<u8>,
}

impl Keys {
    fn new(prefix: &str, channel: &str) -> Keys {
        let k = |suffix: &str| format!("{prefix}{{{channel}}}:{suffix}").into_bytes();
        Keys {
            presence: k("pr"),
            pubsub: k("ch"),
            meta: k("hm"),
            stream: k("hs"),
        }
    }
}

#[derive(Debug)]
struct LocalMember {
    /// The presence entry: `"user":…,"conn":…[,"info":…]`.
    entry: Bytes,
}

#[derive(Debug)]
struct Channel {
    keys: Keys,
    members: HashMap<ConnRef, LocalMember>,
    per_worker: Vec<u32>,
    presence: bool,
    history: Option<usize>,
    /// `join` events this node published whose push has not come back yet,
    /// with their joiner. Redis 7.2+ sends a connection the push of its own
    /// `PUBLISH` after the command's reply, older versions before it (both
    /// are allowed by RESP3), so the joiner may already be registered when
    /// its own event arrives: it is skipped by name. Empty but for joins in
    /// flight.
    own_joins: Vec<(Bytes, ConnRef)>,
}

/// A leave Redis has not heard of: the member left while the link was down.
#[derive(Debug)]
struct OwedLeave {
    presence: Vec<u8>,
    pubsub: Vec<u8>,
    entry: Bytes,
    /// The `leave` event, when the channel has presence.
    event: Option<Vec<u8>>,
}

/// How long after its link is up a node publishes the leaves it owes:
/// past the longest reconnection backoff, so that after a Redis restart the
/// other nodes are subscribed again and hear them.
const OWED_DELAY: Duration = link::BACKOFF_MAX.saturating_add(Duration::from_millis(500));

/// How long Redis keeps an idle channel's history and presence keys: each
/// publish, join and presence refresh (every presence TTL / 3, while a node
/// has members) pushes the expiry back (docs/history.md).
pub const KEY_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct RedisOwner {
    config: Arc<Config>,
    link: Link<Tag>,
    channels: HashMap<Arc<str>, Channel>,
    /// Redis pub/sub name back to the channel.
    by_pubsub: HashMap<Bytes, Arc<str>>,
    shas: Vec<String>,
    seed: u64,
    next_refresh: Instant,
    next_reap: Instant,
    up: bool,
    /// Whether the link was ever up, to count reconnects.
    ever_up: bool,
    /// A reload of the scripts after `NOSCRIPT` is on its way.
    reloading: bool,
    /// Leaves during an outage, sent when the link is up again: a Redis
    /// that restarted empty would otherwise never tell the other nodes, and
    /// one that did not would tell them only a TTL later, by reaping. At
    /// most one per membership that existed when the link went down.
    owed: Vec<OwedLeave>,
    /// When the owed leaves are published.
    owed_at: Instant,
    links_down: Arc<AtomicUsize>,
    metrics: Arc<WorkerMetrics>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `"user":…,"conn":…[,"info":…]`, the same bytes the presence events and
/// member lists of the embedded broker carry.
pub fn member_entry(m: &MemberInfo) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"\"user\":");
    json_str(&mut out, &m.user);
    out.extend_from_slice(b",\"conn\":");
    json_str(&mut out, &m.conn);
    if let Some(info) = &m.info {
        out.extend_from_slice(b",\"info\":");
        out.extend_from_slice(info.get().as_bytes());
    }
    out.into()
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn presence_event(channel: &str, event: &str, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entry.len());
    out.extend_from_slice(b"{\"type\":\"presence\",\"channel\":");
    json_str(&mut out, channel);
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(entry);
    out.push(b'}');
    out
}

/// `[{entry},{entry}]` from presence entries.
fn members_json<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, e) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        out.extend_from_slice(e);
        out.push(b'}');
    }
    out.push(b']');
    out
}

fn sha1_hex(script: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(script.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisOwner {
    pub fn new(
        config: Arc<Config>,
        url: RedisUrl,
        addr: SocketAddr,
        token: Token,
        seed: u64,
        links_down: Arc<AtomicUsize>,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        let now = Instant::now();
        RedisOwner {
            config,
            link: Link::new(url, addr, token, seed),
            channels: HashMap::new(),
            by_pubsub: HashMap::new(),
            shas: scripts::ALL.iter().map(|s| sha1_hex(s)).collect(),
            seed: seed | 1,
            next_refresh: now,
            next_reap: now,
            up: false,
            ever_up: false,
            reloading: false,
            owed: Vec::new(),
            owed_at: now,
            links_down,
            metrics,
        }
    }

    fn ttl(&self) -> Duration {
        self.config.presence_ttl
    }

    /// Presence entries live two thirds of the TTL past each refresh, and
    /// reaping runs every sixth: a dead node's members leave within the TTL.
    fn expiry_ms(&self) -> u64 {
        now_ms() + (self.ttl().as_millis() as u64) * 2 / 3
    }

    fn epoch_candidate(&mut self) -> String {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        format!("{:08x}", x as u32)
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: Msg, out: &mut Outbox) {
        match msg {
            Msg::Join {
                channel,
                who,
                member,
                id,
                since,
                rejoin,
            } => self.join(channel, who, &member, id, since, rejoin, out),
            Msg::Leave {
                channel,
                who,
                id,
                reply,
            } => self.leave(channel, who, id, reply, out),
            Msg::Publish {
                channel,
                origin,
                id,
                action,
            } => self.publish(channel, origin, id, &action, out),
            Msg::Presence { channel, who, id } => {
                let keys = Keys::new(&self.config.redis_prefix, &channel);
                let now = now_ms().to_string();
                let tag = Tag::Presence { channel, who, id };
                self.command_or_fail(
                    &[b"ZRANGEBYSCORE", &keys.presence, now.as_bytes(), b"+inf"],
                    tag,
                    out,
                );
            }
            Msg::Query { query, from } => match query {
                Query::Presence(channel) => {
                    if !self.config.presence_on(&channel) {
                        out.send(
                            usize::from(from.worker),
                            Msg::Answer {
                                to: from,
                                answer: Answer::Presence(None),
                            },
                        );
                        return;
                    }
                    let keys = Keys::new(&self.config.redis_prefix, &channel);
                    let now = now_ms().to_string();
                    self.command_or_fail(
                        &[b"ZRANGEBYSCORE", &keys.presence, now.as_bytes(), b"+inf"],
                        Tag::ApiPresence { to: from },
                        out,
                    );
                }
                Query::Channels => {
                    let now = now_ms().to_string();
                    let sha = self.shas[3].clone();
                    let prefix = self.config.redis_prefix.clone();
                    self.command_or_fail(
                        &[
                            b"EVALSHA",
                            sha.as_bytes(),
                            b"0",
                            prefix.as_bytes(),
                            now.as_bytes(),
                        ],
                        Tag::ApiChannels { to: from },
                        out,
                    );
                }
            },
            other => debug_assert!(false, "not an owner message: {other:?}"),
        }
    }

    /// Sends a command whose requester waits; when the link cannot take
    /// it, the requester hears `unavailable` at once.
    fn command_or_fail(&mut self, args: &[&[u8]], tag: Tag, out: &mut Outbox) {
        if !self.up {
            return self.fail_tag(tag, out);
        }
        if let Err((e, tag)) = self.link.command(args, tag) {
            tracing::warn!(error = %e, "redis command refused");
            self.fail_tag(tag, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        channel: Arc<str>,
        who: ConnRef,
        member: &MemberInfo,
        id: Option<u64>,
        since: Option<Since>,
        rejoin: bool,
        out: &mut Outbox,
    ) {
        if !self.up {
            out.send(
                usize::from(who.worker),
                Msg::JoinFailed {
                    channel,
                    who,
                    id,
                    rejoin,
                },
            );
            return;
        }
        let workers = self.config.threads;
        let prefix = self.config.redis_prefix.clone();
        let presence_on = self.config.presence_on(&channel);
        let history = self.config.history_for(&channel);
        let mut subscribe = None;
        self.channels.entry(channel.clone()).or_insert_with(|| {
            let keys = Keys::new(&prefix, &channel);
            subscribe = Some(Bytes::from(keys.pubsub.clone()));
            Channel {
                keys,
                members: HashMap::new(),
                per_worker: vec![0; workers],
                presence: presence_on,
                history,
                own_joins: Vec::new(),
            }
        });
        if let Some(name) = subscribe {
            let _ = self.link.subscribe(&[&name]);
            self.by_pubsub.insert(name, channel.clone());
        }
        let ch = self
            .channels
            .get_mut(&channel)
            .expect("inserted just above");
        let mut entry = Bytes::new();
        let newly = !rejoin && !ch.members.contains_key(&who);
        if newly {
            entry = member_entry(member);
            ch.members.insert(
                who,
                LocalMember {
                    entry: entry.clone(),
                },
            );
            ch.per_worker[usize::from(who.worker)] += 1;
        }
        let join_event = if newly && ch.presence {
            let event = Bytes::from(presence_event(&channel, "join", &entry));
            ch.own_joins.push((event.clone(), who));
            event
        } else {
            Bytes::new()
        };
        let want_members = if ch.presence { "1" } else { "0" };
        let history_n = ch.history.unwrap_or(0).to_string();
        let (since_offset, since_epoch) = match &since {
            Some(s) if ch.history.is_some() => (s.offset.to_string(), s.epoch.clone()),
            _ => (String::new(), String::new()),
        };
        let keys = [
            ch.keys.presence.clone(),
            ch.keys.pubsub.clone(),
            ch.keys.meta.clone(),
            ch.keys.stream.clone(),
        ];
        let now = now_ms().to_string();
        let expiry = self.expiry_ms().to_string();
        let epoch = self.epoch_candidate();
        let ttl = KEY_TTL.as_secs().to_string();
        let sha = self.shas[0].clone();
        let tag = Tag::Join {
            channel,
            who,
            id,
            since: since.is_some(),
            rejoin,
        };
        self.command_or_fail(
            &[
                b"EVALSHA",
                sha.as_bytes(),
                b"4",
                &keys[0],
                &keys[1],
                &keys[2],
                &keys[3],
                now.as_bytes(),
                expiry.as_bytes(),
                &entry,
                &join_event,
                want_members.as_bytes(),
                history_n.as_bytes(),
                epoch.as_bytes(),
                since_offset.as_bytes(),
                since_epoch.as_bytes(),
                ttl.as_bytes(),
            ],
            tag,
            out,
        );
    }

    fn leave(
        &mut self,
        channel: Arc<str>,
        who: ConnRef,
        id: Option<u64>,
        reply: bool,
        out: &mut Outbox,
    ) {
        let frame = reply.then(|| ws::text_frame_with(|b| server::left(b, id, &channel)));
        let left = |channel, frame| Msg::Left {
            channel,
            who,
            frame,
        };
        let Some(ch) = self.channels.get_mut(&channel) else {
            return out.send(usize::from(who.worker), left(channel, frame));
        };
        let Some(m) = ch.members.remove(&who) else {
            return out.send(usize::from(who.worker), left(channel, frame));
        };
        let w = &mut ch.per_worker[usize::from(who.worker)];
        *w = w.saturating_sub(1);
        if !ch.own_joins.is_empty() {
            ch.own_joins.retain(|(_, j)| *j != who);
        }
        let presence_key = ch.keys.presence.clone();
        let pubsub = ch.keys.pubsub.clone();
        let event = ch
            .presence
            .then(|| presence_event(&channel, "leave", &m.entry));
        let mut pending = Some(Tag::Left {
            channel: channel.clone(),
            who,
            frame,
        });
        if self.up {
            // The `left` rides on the ZREM's reply: a join of this member
            // still waiting for Redis is answered first, in request order.
            if let Some(tag) = pending.take() {
                if let Err((_, tag)) = self.link.command(&[b"ZREM", &presence_key, &m.entry], tag) {
                    pending = Some(tag);
                }
            }
            if pending.is_none() {
                if let Some(event) = &event {
                    let _ = self
                        .link
                        .command(&[b"PUBLISH", &pubsub, event], Tag::Ignore);
                }
            }
        }
        if let Some(tag) = pending {
            self.owed.push(OwedLeave {
                presence: presence_key,
                pubsub,
                entry: m.entry,
                event,
            });
            self.fail_tag(tag, out);
        }
        self.drop_if_empty(&channel);
    }

    /// Unsubscribes and forgets a channel without local members.
    fn drop_if_empty(&mut self, channel: &str) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        if !ch.members.is_empty() {
            return;
        }
        let pubsub = ch.keys.pubsub.clone();
        // Down, the subscription is gone with the connection already.
        let _ = self.link.unsubscribe(&[&pubsub]);
        self.by_pubsub.remove(&pubsub[..]);
        self.channels.remove(channel);
    }

    fn publish(
        &mut self,
        channel: Arc<str>,
        origin: Origin,
        id: Option<u64>,
        action: &[u8],
        out: &mut Outbox,
    ) {
        let history = self.config.history_for(&channel);
        let member = match &origin {
            Origin::Client(_, m) => Some(m.clone()),
            Origin::Api(_) => None,
        };
        let mut event = Vec::with_capacity(96 + action.len());
        server::user_action(
            &mut event,
            &channel,
            member.as_ref().map(|m| &*m.user),
            member.as_ref().map(|m| &*m.conn),
            member.as_ref().and_then(|m| m.info.as_deref()),
            action,
            None,
        );
        let keys = Keys::new(&self.config.redis_prefix, &channel);
        let tag = Tag::Publish {
            channel,
            origin,
            id,
            history: history.is_some(),
            sent: Instant::now(),
        };
        match history {
            None => self.command_or_fail(&[b"PUBLISH", &keys.pubsub, &event], tag, out),
            Some(n) => {
                // The script appends the offset and the closing brace.
                event.pop();
                event.extend_from_slice(b",\"offset\":");
                let n = n.to_string();
                let epoch = self.epoch_candidate();
                let ttl = KEY_TTL.as_secs().to_string();
                let sha = self.shas[1].clone();
                self.command_or_fail(
                    &[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"3",
                        &keys.meta,
                        &keys.stream,
                        &keys.pubsub,
                        &event,
                        n.as_bytes(),
                        epoch.as_bytes(),
                        ttl.as_bytes(),
                    ],
                    tag,
                    out,
                );
            }
        }
    }

    /// Settles a command without (the value of) its reply: a request that
    /// needed Redis hears `unavailable`; a leave, which happens locally
    /// anyway, gets its `left`.
    fn fail_tag(&mut self, tag: Tag, out: &mut Outbox) {
        let unavailable = |id| {
            ws::text_frame_with(|b| {
                server::error(b, id, ErrorCode::Unavailable, "the broker is unreachable")
            })
        };
        match tag {
            Tag::Join {
                channel,
                who,
                id,
                rejoin,
                ..
            } => {
                if !rejoin {
                    if let Some(ch) = self.channels.get_mut(&channel) {
                        if ch.members.remove(&who).is_some() {
                            let w = &mut ch.per_worker[usize::from(who.worker)];
                            *w = w.saturating_sub(1);
                        }
                        ch.own_joins.retain(|(_, j)| *j != who);
                    }
                    // A failed first join must not keep the node subscribed.
                    self.drop_if_empty(&channel);
                }
                out.send(
                    usize::from(who.worker),
                    Msg::JoinFailed {
                        channel,
                        who,
                        id,
                        rejoin,
                    },
                );
            }
            Tag::Publish { origin, id, .. } => match origin {
                Origin::Client(who, _) => out.send(
                    usize::from(who.worker),
                    Msg::Reply {
                        who,
                        frame: unavailable(id),
                    },
                ),
                Origin::Api(to) => out.send(
                    usize::from(to.worker),
                    Msg::Answer {
                        to,
                        answer: Answer::Unavailable,
                    },
                ),
            },
            Tag::Presence { who, id, .. } => out.send(
                usize::from(who.worker),
                Msg::Reply {
                    who,
                    frame: unavailable(id),
                },
            ),
            Tag::ApiPresence { to } | Tag::ApiChannels { to } => out.send(
                usize::from(to.worker),
                Msg::Answer {
                    to,
                    answer: Answer::Unavailable,
                },
            ),
            // Leaving needs nothing from Redis: it happens locally anyway.
            Tag::Left {
                channel,
                who,
                frame,
            } => out.send(
                usize::from(who.worker),
                Msg::Left {
                    channel,
                    who,
                    frame,
                },
            ),
            Tag::ScriptsLoaded => self.reloading = false,
            Tag::Ignore => {}
        }
    }

    /// The link's socket is ready.
    pub fn on_ready(&mut self, now: Instant, registry: &Registry, out: &mut Outbox) {
        self.link.pump(now, registry);
        self.on_link_events(out);
        // What the events queued (the subscriptions and scripts of a link
        // just up, a reload, an unsubscription) goes out now, not at the
        // next tick: `/healthz` says 200 from here on.
        self.link.flush(now, registry);
        self.on_link_events(out);
    }

    /// Writes what handling messages queued.
    pub fn flush(&mut self, now: Instant, registry: &Registry, out: &mut Outbox) {
        self.link.flush(now, registry);
        self.on_link_events(out);
    }

    /// Reconnects, refreshes presence and reaps dead members when due.
    pub fn tick(&mut self, now: Instant, registry: &Registry, out: &mut Outbox) {
        self.link.tick(now, registry);
        if self.up && now >= self.next_refresh {
            self.refresh();
            self.next_refresh = now + self.ttl() / 3;
        }
        if self.up && now >= self.next_reap {
            self.reap();
            self.next_reap = now + self.ttl() / 6;
        }
        if self.up && now >= self.owed_at && !self.owed.is_empty() {
            self.pay_owed();
        }
        self.link.flush(now, registry);
        self.on_link_events(out);
    }

    /// Channels with local members on this owner (for metrics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// When the owner next needs a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        let upkeep = self.up.then(|| {
            let t = self.next_refresh.min(self.next_reap);
            if self.owed.is_empty() {
                t
            } else {
                t.min(self.owed_at)
            }
        });
        match (upkeep, self.link.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_link_events(&mut self, out: &mut Outbox) {
        let events = self.link.take_events();
        for ev in events {
            match ev {
                LinkEvent::Up => self.on_up(),
                LinkEvent::Down(lost) => self.on_down(lost, out),
                LinkEvent::Session(Event::Reply { tag, value }) => self.on_reply(tag, value, out),
                LinkEvent::Session(Event::Push(push)) => self.on_push(push, out),
                LinkEvent::Session(other) => {
                    tracing::warn!(event = ?other, "unexpected redis event");
                }
            }
        }
    }

    /// Queues `SCRIPT LOAD` of every script, ahead of any `EVALSHA` sent
    /// after it on this connection.
    fn load_scripts(&mut self) {
        self.reloading = true;
        let last = scripts::ALL.len() - 1;
        for (i, script) in scripts::ALL.iter().enumerate() {
            let tag = if i == last {
                Tag::ScriptsLoaded
            } else {
                Tag::Ignore
            };
            if self
                .link
                .command(&[b"SCRIPT", b"LOAD", script.as_bytes()], tag)
                .is_err()
            {
                self.reloading = false;
            }
        }
    }

    fn on_up(&mut self) {
        self.load_scripts();
        let names: Vec<Vec<u8>> = self
            .channels
            .values()
            .map(|c| c.keys.pubsub.clone())
            .collect();
        for chunk in names.chunks(256) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let _ = self.link.subscribe(&refs);
        }
        // Register live members again at once: Redis may have restarted.
        self.refresh();
        // Out of the member lists at once; the events once the other
        // nodes are back too.
        for o in &self.owed {
            let _ = self
                .link
                .command(&[b"ZREM", &o.presence, &o.entry], Tag::Ignore);
        }
        let now = Instant::now();
        self.next_refresh = now + self.ttl() / 3;
        self.next_reap = now + self.ttl() / 6;
        self.owed_at = now + OWED_DELAY;
        if !self.up {
            self.up = true;
            self.links_down.fetch_sub(1, Ordering::SeqCst);
        }
        if self.ever_up {
            self.metrics.redis_reconnect();
        }
        self.ever_up = true;
    }

    fn on_down(&mut self, lost: Vec<Tag>, out: &mut Outbox) {
        if self.up {
            self.up = false;
            self.links_down.fetch_add(1, Ordering::SeqCst);
        }
        self.reloading = false;
        // Pushes of the old connection never come now.
        for ch in self.channels.values_mut() {
            ch.own_joins.clear();
        }
        for tag in lost {
            self.fail_tag(tag, out);
        }
    }

    /// Publishes the leaves of the outage; a link that fails meanwhile
    /// keeps them owed.
    fn pay_owed(&mut self) {
        while let Some(o) = self.owed.pop() {
            let Some(event) = &o.event else { continue };
            if self
                .link
                .command(&[b"PUBLISH", &o.pubsub, event], Tag::Ignore)
                .is_err()
            {
                self.owed.push(o);
                return;
            }
        }
    }

    /// Re-adds every local member's presence entry with a fresh expiry.
    fn refresh(&mut self) {
        let expiry = self.expiry_ms().to_string();
        let ttl = KEY_TTL.as_secs().to_string();
        for ch in self.channels.values() {
            if ch.members.is_empty() {
                continue;
            }
            let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 2 * ch.members.len());
            args.push(b"ZADD");
            args.push(&ch.keys.presence);
            for m in ch.members.values() {
                args.push(expiry.as_bytes());
                args.push(&m.entry);
            }
            let _ = self.link.command(&args, Tag::Ignore);
            let _ = self
                .link
                .command(&[b"EXPIRE", &ch.keys.presence, ttl.as_bytes()], Tag::Ignore);
            // A channel with members is not idle, however quiet: its history
            // (and so its epoch) lasts as long as on the embedded broker.
            if ch.history.is_some() {
                for key in [&ch.keys.meta, &ch.keys.stream] {
                    let _ = self
                        .link
                        .command(&[b"EXPIRE", key, ttl.as_bytes()], Tag::Ignore);
                }
            }
        }
    }

    /// Removes expired presence entries of our channels, publishing their
    /// `leave` events.
    fn reap(&mut self) {
        let now = now_ms().to_string();
        let sha = self.shas[2].clone();
        for (name, ch) in &self.channels {
            let mut channel_json = Vec::new();
            json_str(&mut channel_json, name);
            let presence = if ch.presence { "1" } else { "0" };
            let _ = self.link.command(
                &[
                    b"EVALSHA",
                    sha.as_bytes(),
                    b"2",
                    &ch.keys.presence,
                    &ch.keys.pubsub,
                    now.as_bytes(),
                    &channel_json,
                    presence.as_bytes(),
                ],
                Tag::Ignore,
            );
        }
    }

    fn on_push(&mut self, push: Push, out: &mut Outbox) {
        let Push::Message { channel, payload } = push else {
            return;
        };
        let Some(name) = self.by_pubsub.get(&channel) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let presence = payload.starts_with(br#"{"type":"presence""#);
        // A joiner never hears its own join (PROTOCOL.md §4).
        let mut except = None;
        if !ch.own_joins.is_empty() {
            if let Some(i) = ch.own_joins.iter().position(|(e, _)| *e == payload) {
                except = Some(ch.own_joins.swap_remove(i).1);
            }
        }
        // Framed once on this node; every local recipient shares it.
        let frame = ws::text_frame_with(|b| b.extend_from_slice(&payload));
        for (worker, &n) in ch.per_worker.iter().enumerate() {
            if n > 0 {
                out.send(
                    worker,
                    Msg::Deliver {
                        channel: name.clone(),
                        frame: frame.clone(),
                        except,
                        presence,
                    },
                );
            }
        }
    }

    fn on_reply(&mut self, tag: Tag, value: Value, out: &mut Outbox) {
        if let Value::Error(e) = &value {
            tracing::warn!(error = %String::from_utf8_lossy(e), "redis error reply");
            // Redis lost the scripts (SCRIPT FLUSH, a failover) with the
            // link up: load them again, once for a burst of such replies.
            if e.starts_with(b"NOSCRIPT") && !self.reloading {
                self.load_scripts();
            }
            self.fail_tag(tag, out);
            return;
        }
        match tag {
            Tag::Ignore => {}
            // Their replies carry nothing they need.
            tag @ (Tag::Left { .. } | Tag::ScriptsLoaded) => self.fail_tag(tag, out),
            Tag::Join {
                channel,
                who,
                id,
                since,
                ..
            } => self.on_joined(channel, who, id, since, value, out),
            Tag::Publish {
                channel,
                origin,
                id,
                history,
                sent,
            } => {
                self.metrics
                    .broker_rtt
                    .observe(sent.elapsed().as_nanos() as u64);
                let offset = match (&value, history) {
                    (Value::Int(n), true) => Some(*n as u64),
                    _ => None,
                };
                match origin {
                    Origin::Client(who, _) => {
                        if let Some(id) = id {
                            let frame =
                                ws::text_frame_with(|b| server::ack(b, Some(id), &channel, offset));
                            out.send(usize::from(who.worker), Msg::Reply { who, frame });
                        }
                    }
                    Origin::Api(to) => out.send(
                        usize::from(to.worker),
                        Msg::Answer {
                            to,
                            answer: Answer::Published(offset),
                        },
                    ),
                }
            }
            Tag::Presence { channel, who, id } => {
                let list = members_json(bulk_items(&value));
                let frame =
                    ws::text_frame_with(|b| server::presence_state_raw(b, id, &channel, &list));
                out.send(usize::from(who.worker), Msg::Reply { who, frame });
            }
            Tag::ApiPresence { to } => out.send(
                usize::from(to.worker),
                Msg::Answer {
                    to,
                    answer: Answer::Presence(Some(members_json(bulk_items(&value)))),
                },
            ),
            Tag::ApiChannels { to } => {
                let mut list = Vec::new();
                if let Value::Array(items) = &value {
                    for pair in items.chunks(2) {
                        if let [Value::Bulk(name), Value::Int(n)] = pair {
                            if let Ok(name) = std::str::from_utf8(name) {
                                list.push((Arc::from(name), *n as usize));
                            }
                        }
                    }
                }
                out.send(
                    usize::from(to.worker),
                    Msg::Answer {
                        to,
                        answer: Answer::Channels(list),
                    },
                );
            }
        }
    }

    fn on_joined(
        &mut self,
        channel: Arc<str>,
        who: ConnRef,
        id: Option<u64>,
        since: bool,
        value: Value,
        out: &mut Outbox,
    ) {
        let Value::Array(parts) = value else {
            return self.fail_tag(
                Tag::Join {
                    channel,
                    who,
                    id,
                    since,
                    rejoin: true,
                },
                out,
            );
        };
        // From the configuration: the channel may be gone already when the
        // joiner left before this reply.
        let presence = self.config.presence_on(&channel);
        let history = self.config.history_for(&channel).is_some();
        let members =
            presence.then(|| members_json(parts.first().map(bulk_items).into_iter().flatten()));
        let offset = match parts.get(1) {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        };
        let epoch = match parts.get(2) {
            Some(Value::Bulk(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let recovered_flag = match parts.get(3) {
            Some(Value::Int(n)) => *n,
            _ => -1,
        };
        let replay: Vec<Bytes> = match parts.get(4) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Bulk(b) => Some(ws::text_frame_with(|out| out.extend_from_slice(b))),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let recovered = since.then_some(recovered_flag == 1);
        if let Some(r) = recovered {
            self.metrics.recovery(r);
            self.metrics.replayed(replay.len() as u64);
        }
        let hist = history.then_some(server::History {
            offset,
            epoch: &epoch,
        });
        let replayed = history.then_some(replay.len() as u64);
        let mut frames = Vec::with_capacity(1 + replay.len());
        frames.push(ws::text_frame_with(|b| {
            server::joined_raw(
                b,
                id,
                &channel,
                members.as_deref(),
                hist,
                recovered,
                replayed,
            )
        }));
        frames.extend(replay);
        out.send(
            usize::from(who.worker),
            Msg::Joined {
                channel,
                who,
                frames,
            },
        );
    }
}

fn bulk_items(v: &Value) -> impl Iterator<Item = &[u8]> {
    let items: &[Value] = match v {
        Value::Array(items) => items,
        _ => &[],
    };
    items.iter().filter_map(|i| match i {
        Value::Bulk(b) => Some(&b[..]),
        _ => None,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
