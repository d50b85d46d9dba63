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

pub mod cluster;
mod link;
mod replies;
pub mod scripts;
mod sharded;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mio::Token;

use super::{left_frame, Answer, ConnId, GapWatch, MemberInfo, Origin, Outbox, Query, ToOwner};
use crate::config::Config;
use crate::metrics::WorkerMetrics;
use crate::proto::{server, PresenceEvent, Since};
use crate::resp::{RedisUrl, SendError, Subscription};
use crate::rng::XorShift;
use link::Link;
pub use link::{Endpoint, LinkIo};
use scripts::Script;
pub use sharded::ClusterSeeds;
use sharded::{Note, Sent};

/// Why a command was sent, to act on its reply.
#[derive(Debug)]
enum Tag {
    Join {
        channel: Arc<str>,
        who: ConnId,
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
        who: ConnId,
        id: Option<u64>,
    },
    ApiPresence {
        channel: Arc<str>,
        to: ConnId,
    },
    ApiChannels {
        to: ConnId,
    },
    /// A leave's `ZREM`: its `left` goes out with the reply, so that it
    /// follows the `joined` of a join still waiting for Redis.
    Left {
        channel: Arc<str>,
        who: ConnId,
        frame: Option<Bytes>,
    },
    /// The last `SCRIPT LOAD` of a reload after `NOSCRIPT`.
    ScriptsLoaded,
    /// `CLUSTER SHARDS` (`shards`) or `CLUSTER SLOTS`: the slot map.
    Map {
        shards: bool,
    },
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

impl Tag {
    /// The channel a command is about, when it is about one.
    fn channel(&self) -> Option<&Arc<str>> {
        match self {
            Tag::Join { channel, .. }
            | Tag::Publish { channel, .. }
            | Tag::Presence { channel, .. }
            | Tag::ApiPresence { channel, .. }
            | Tag::Left { channel, .. } => Some(channel),
            _ => None,
        }
    }
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
    members: HashMap<ConnId, LocalMember>,
    per_worker: Vec<u32>,
    presence: bool,
    history: Option<usize>,
    /// For a history channel: the last offset delivered here, to send
    /// `resync` on a gap (PROTOCOL.md §5).
    watch: Option<GapWatch>,
    /// `join` events this node published whose push has not come back yet,
    /// with their joiner. Redis 7.2+ sends a connection the push of its own
    /// `PUBLISH` after the command's reply, older versions before it (both
    /// are allowed by RESP3), so the joiner may already be registered when
    /// its own event arrives: it is skipped by name. Empty but for joins in
    /// flight.
    own_joins: Vec<(Bytes, ConnId)>,
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
    link: Link<Sent>,
    /// The link's poll token, by which the IO shim names it.
    token: Token,
    /// One master's share of a Redis Cluster (PROTOCOL.md 1.1 §13):
    /// `SPUBLISH`/`SSUBSCRIBE`, scripts that `SPUBLISH`, channel commands
    /// kept for a redirection, and what only the cluster owner can act on
    /// left in `notes` (see `sharded`).
    sharded: bool,
    notes: Vec<Note>,
    channels: HashMap<Arc<str>, Channel>,
    /// Redis pub/sub name back to the channel.
    by_pubsub: HashMap<Bytes, Arc<str>>,
    shas: scripts::Shas,
    /// Epoch candidates for the scripts, which keep an epoch already set.
    rng: XorShift,
    next_refresh: Instant,
    next_reap: Instant,
    next_ping: Instant,
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

/// The time of a call into an owner, read by the IO shim: the monotonic
/// clock for the owner's own deadlines, the wall clock (ms since the Unix
/// epoch) for what Redis stores and other nodes compare, presence expiries.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: u64,
}

impl Now {
    /// `mono` with the wall clock read now.
    pub fn at(mono: Instant) -> Now {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now { mono, unix_ms }
    }
}

/// What the IO shim (`crate::socket::links`) drives: an owner with Redis
/// links (one, or one per cluster node), each named by its poll token. The
/// shim opens and drops sockets as [`LinkDriven::poll_io`] asks, feeds what
/// it reads to [`LinkDriven::handle_input`] and writes what
/// [`LinkDriven::poll_transmit`] returns.
pub trait LinkDriven {
    /// Bytes read from link `token`'s socket.
    fn handle_input(&mut self, token: Token, data: &[u8], now: Now, out: &mut Outbox);
    /// Link `token`'s socket failed, hung up or could not connect.
    fn handle_closed(&mut self, token: Token, now: Now, out: &mut Outbox);
    /// The next socket to open or drop, oldest first.
    fn poll_io(&mut self) -> Option<(Token, LinkIo)>;
    /// Bytes for link `token`'s socket.
    fn poll_transmit(&mut self, token: Token) -> Option<Bytes>;
}

impl RedisOwner {
    /// Worker `worker`'s owner, linked to Redis at `url` (resolved as
    /// `endpoint`) under poll token `token`. It connects at its first
    /// [`RedisOwner::handle_timeout`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        url: RedisUrl,
        endpoint: Endpoint,
        token: Token,
        worker: usize,
        seed: u64,
        links_down: Arc<AtomicUsize>,
        metrics: Arc<WorkerMetrics>,
        now: Instant,
    ) -> Self {
        let name = client_name(&config.node, worker);
        RedisOwner {
            link: Link::new(url, endpoint, name, seed, now),
            token,
            config,
            sharded: false,
            notes: Vec::new(),
            channels: HashMap::new(),
            by_pubsub: HashMap::new(),
            shas: scripts::Shas::new(false),
            rng: XorShift::new(seed),
            next_refresh: now,
            next_reap: now,
            next_ping: now,
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
    fn expiry_ms(&self, now: Now) -> u64 {
        now.unix_ms + (self.ttl().as_millis() as u64) * 2 / 3
    }

    fn epoch_candidate(&mut self) -> String {
        self.rng.epoch()
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: ToOwner, now: Now, out: &mut Outbox) {
        match msg {
            ToOwner::Join {
                channel,
                who,
                member,
                id,
                since,
                rejoin,
            } => self.join(channel, who, &member, id, since, rejoin, now, out),
            ToOwner::Leave {
                channel,
                who,
                id,
                reply,
            } => self.leave(channel, who, id, reply, out),
            ToOwner::Publish {
                channel,
                origin,
                id,
                action,
            } => self.publish(channel, origin, id, &action, now, out),
            ToOwner::Presence { channel, who, id } => {
                let keys = Keys::new(&self.config.redis_prefix, &channel);
                let now = now.unix_ms.to_string();
                let tag = Tag::Presence { channel, who, id };
                self.command_or_fail(
                    &[b"ZRANGEBYSCORE", &keys.presence, now.as_bytes(), b"+inf"],
                    tag,
                    out,
                );
            }
            ToOwner::Query { query, from } => match query {
                Query::Presence(channel) => {
                    if !self.config.presence_on(&channel) {
                        return out.answer(from, Answer::Presence(None));
                    }
                    let keys = Keys::new(&self.config.redis_prefix, &channel);
                    let now = now.unix_ms.to_string();
                    self.command_or_fail(
                        &[b"ZRANGEBYSCORE", &keys.presence, now.as_bytes(), b"+inf"],
                        Tag::ApiPresence { channel, to: from },
                        out,
                    );
                }
                Query::Channels => {
                    let now = now.unix_ms.to_string();
                    let sha = self.shas.of(Script::Channels).to_owned();
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
        }
    }

    /// Sends a command whose requester waits; when the link cannot take
    /// it, the requester hears `unavailable` at once.
    fn command_or_fail(&mut self, args: &[&[u8]], tag: Tag, out: &mut Outbox) {
        if !self.up {
            return self.fail_tag(tag, out);
        }
        if let Err((e, tag)) = self.send(args, tag) {
            tracing::warn!(error = %e, "redis command refused");
            self.fail_tag(tag, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        channel: Arc<str>,
        who: ConnId,
        member: &MemberInfo,
        id: Option<u64>,
        since: Option<Since>,
        rejoin: bool,
        now: Now,
        out: &mut Outbox,
    ) {
        if !self.up {
            let since = since.is_some();
            return self.fail_tag(
                Tag::Join {
                    channel,
                    who,
                    id,
                    since,
                    rejoin,
                },
                out,
            );
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
                watch: history.map(|_| GapWatch::default()),
                own_joins: Vec::new(),
            }
        });
        if let Some(name) = subscribe {
            let _ = self.subscribe(&[&name], true);
            self.by_pubsub.insert(name, channel.clone());
        }
        let ch = self
            .channels
            .get_mut(&channel)
            .expect("inserted just above");
        let mut entry = Bytes::new();
        let newly = !rejoin && !ch.members.contains_key(&who);
        if newly {
            let mut fields = Vec::with_capacity(64);
            server::member_fields(&mut fields, member.as_member());
            entry = Bytes::from(fields);
            ch.members.insert(
                who,
                LocalMember {
                    entry: entry.clone(),
                },
            );
            ch.per_worker[who.worker()] += 1;
        }
        let join_event = if newly && ch.presence {
            let event = Bytes::from(presence_event(&channel, PresenceEvent::Join, &entry));
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
        let expiry = self.expiry_ms(now).to_string();
        let now = now.unix_ms.to_string();
        let epoch = self.epoch_candidate();
        let ttl = KEY_TTL.as_secs().to_string();
        let sha = self.shas.of(Script::Join).to_owned();
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
        who: ConnId,
        id: Option<u64>,
        reply: bool,
        out: &mut Outbox,
    ) {
        let frame = reply.then(|| left_frame(id, &channel));
        let Some(ch) = self.channels.get_mut(&channel) else {
            return out.left(channel, who, frame);
        };
        let Some(m) = ch.members.remove(&who) else {
            return out.left(channel, who, frame);
        };
        let w = &mut ch.per_worker[who.worker()];
        *w = w.saturating_sub(1);
        if !ch.own_joins.is_empty() {
            ch.own_joins.retain(|(_, j)| *j != who);
        }
        let presence_key = ch.keys.presence.clone();
        let pubsub = ch.keys.pubsub.clone();
        let event = ch
            .presence
            .then(|| presence_event(&channel, PresenceEvent::Leave, &m.entry));
        let mut pending = Some(Tag::Left {
            channel: channel.clone(),
            who,
            frame,
        });
        if self.up {
            // The `left` rides on the ZREM's reply: a join of this member
            // still waiting for Redis is answered first, in request order.
            if let Some(tag) = pending.take() {
                if let Err((_, tag)) = self.send(&[b"ZREM", &presence_key, &m.entry], tag) {
                    pending = Some(tag);
                }
            }
            if pending.is_none() {
                if let Some(event) = &event {
                    let publish = self.publish_command();
                    let _ = self.send(&[publish, &pubsub, event], Tag::Ignore);
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
        let _ = self.subscribe(&[&pubsub], false);
        self.by_pubsub.remove(&pubsub[..]);
        self.channels.remove(channel);
    }

    fn publish(
        &mut self,
        channel: Arc<str>,
        origin: Origin,
        id: Option<u64>,
        action: &[u8],
        now: Now,
        out: &mut Outbox,
    ) {
        let history = self.config.history_for(&channel);
        let member = match &origin {
            Origin::Client(_, m) => Some(m.clone()),
            Origin::Api(_) => None,
        };
        let (user, conn) = match &member {
            Some(m) => (Some(&*m.user), Some(&*m.conn)),
            None => (None, None),
        };
        let info = member.as_ref().and_then(|m| m.info.as_deref());
        let mut event = Vec::with_capacity(96 + action.len());
        if history.is_some() {
            // The script completes it with the offset it assigns.
            server::user_action_until_offset(&mut event, &channel, user, conn, info, action);
        } else {
            server::user_action(&mut event, &channel, user, conn, info, action, None);
        }
        let keys = Keys::new(&self.config.redis_prefix, &channel);
        let tag = Tag::Publish {
            channel,
            origin,
            id,
            history: history.is_some(),
            sent: now.mono,
        };
        match history {
            None if self.sharded => {
                let sha = self.shas.of(Script::Relay).to_owned();
                self.command_or_fail(
                    &[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"2",
                        &keys.presence,
                        &keys.pubsub,
                        &event,
                    ],
                    tag,
                    out,
                );
            }
            None => {
                let publish = self.publish_command();
                self.command_or_fail(&[publish, &keys.pubsub, &event], tag, out);
            }
            Some(n) => {
                let n = n.to_string();
                let epoch = self.epoch_candidate();
                let ttl = KEY_TTL.as_secs().to_string();
                let sha = self.shas.of(Script::Publish).to_owned();
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

    /// Bytes read from the link's socket.
    pub fn handle_input(&mut self, data: &[u8], now: Now, out: &mut Outbox) {
        self.link.handle_input(data, now.mono);
        self.on_link_events(now, out);
    }

    /// The link's socket failed, hung up or could not connect.
    pub fn handle_closed(&mut self, now: Now, out: &mut Outbox) {
        self.link.handle_closed(now.mono);
        self.on_link_events(now, out);
    }

    /// Bytes for the link's socket.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.link.poll_transmit()
    }

    /// What the IO shim is to do with the link's socket.
    pub fn poll_io(&mut self) -> Option<(Token, LinkIo)> {
        self.link.poll_io().map(|io| (self.token, io))
    }

    /// Reconnects, refreshes presence and reaps dead members when due.
    pub fn handle_timeout(&mut self, now: Now, out: &mut Outbox) {
        self.link.tick(now.mono);
        // A connect that timed out, a link gone silent.
        self.on_link_events(now, out);
        let mono = now.mono;
        if self.up && mono >= self.next_refresh {
            self.refresh(now);
            self.next_refresh = mono + self.ttl() / 3;
        }
        if self.up && mono >= self.next_reap {
            self.reap(now);
            self.next_reap = mono + self.ttl() / 6;
        }
        if self.up && mono >= self.owed_at && !self.owed.is_empty() {
            self.pay_owed();
        }
        if self.up && mono >= self.next_ping {
            // Keeps a live link talking, so a silent one is a dead one.
            let _ = self.send(&[b"PING"], Tag::Ignore);
            self.next_ping = mono + link::KEEPALIVE;
        }
    }

    /// Queues a command; in cluster mode a channel's command is kept, to
    /// be sent again where a redirection points. On refusal the tag comes
    /// back.
    fn send(&mut self, args: &[&[u8]], tag: Tag) -> Result<(), (SendError, Tag)> {
        let keep = self.sharded && tag.channel().is_some();
        let sent = Sent {
            args: keep.then(|| args.iter().map(|a| Bytes::copy_from_slice(a)).collect()),
            tag,
            tries: 0,
        };
        self.link.command(args, sent).map_err(|(e, s)| (e, s.tag))
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster's shard.
    fn publish_command(&self) -> &'static [u8] {
        if self.sharded {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        }
    }

    /// Subscribes to (or unsubscribes from) pub/sub names: all in one
    /// command with one Redis, one command each on a cluster's shard (a
    /// shard command's channels must share a slot).
    fn subscribe(&mut self, names: &[&[u8]], on: bool) -> Result<(), SendError> {
        if !self.sharded {
            return self.link.pubsub(Subscription::Channel, on, names);
        }
        for name in names {
            self.link.pubsub(Subscription::Shard, on, &[name])?;
        }
        Ok(())
    }

    /// Channels with local members on this owner (for metrics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// When the owner next needs a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        let upkeep = self.up.then(|| {
            let t = self.next_refresh.min(self.next_reap).min(self.next_ping);
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
}

impl LinkDriven for RedisOwner {
    fn handle_input(&mut self, token: Token, data: &[u8], now: Now, out: &mut Outbox) {
        if token == self.token {
            RedisOwner::handle_input(self, data, now, out);
        }
    }

    fn handle_closed(&mut self, token: Token, now: Now, out: &mut Outbox) {
        if token == self.token {
            RedisOwner::handle_closed(self, now, out);
        }
    }

    fn poll_io(&mut self) -> Option<(Token, LinkIo)> {
        RedisOwner::poll_io(self)
    }

    fn poll_transmit(&mut self, token: Token) -> Option<Bytes> {
        if token == self.token {
            RedisOwner::poll_transmit(self)
        } else {
            None
        }
    }
}

/// A `join` or `leave` from a stored presence entry.
fn presence_event(channel: &str, event: PresenceEvent, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entry.len());
    server::presence_raw(&mut out, channel, event, entry);
    out
}

/// `switchboard-<node>-w<worker>`: how operators tell the links apart in
/// `CLIENT LIST` (a client name may not hold spaces).
fn client_name(node: &str, worker: usize) -> String {
    let node: String = node
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("switchboard-{node}-w{worker}")
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
