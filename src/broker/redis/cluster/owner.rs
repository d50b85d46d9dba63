//! A worker's share of channels on a Redis Cluster: one shard owner (the
//! single-Redis owner in its sharded form) per cluster node this worker
//! talks to, and the [`Router`] that says which node serves each channel.
//!
//! Every command of a channel and its one `SSUBSCRIBE` on this worker go to
//! the shard owner that holds the channel, over that node's one link, so a
//! channel still has one order on every node: its master's. A worker has a
//! link to each master (and, until the first map, to each seed): at most
//! workers × masters links per switchboard node.
//!
//! # Topology changes
//!
//! - The slot map is fetched at start, after a `MOVED`, a `CLUSTERDOWN`, a
//!   dropped subscription or a failed link, every 250 ms while a master's
//!   link is down or a slot has no master, and every 5 s otherwise.
//! - A channel stays on the shard that holds it while that master is up
//!   and still a master; it moves (members, gap watch and subscription: no
//!   client joins again) on that master's `MOVED`, on a refused
//!   re-subscription, or when the master is gone. A map alone does not
//!   move it: during a resharding the new master owns the slot a moment
//!   before the old one lets go.
//! - A subscription Redis drops (`sunsubscribe`: the slot was handed over)
//!   is asked again at once on the same node; the `MOVED` refusal names the
//!   new master, and the channel moves there without waiting for a map.
//! - `ASK` (the channel's keys are at an importing master): this node
//!   subscribes there too, tells the other nodes through the old master (a
//!   notice on the channel's pub/sub name, see `sharded::MOVING`), and asks
//!   the old master again every 20 ms until it hands the slot over
//!   (`MOVED`); at most [`ASK_WAITS`] times, then the command goes to the
//!   importing master after `ASKING`. Messages from the importing master
//!   wait for the old master's `sunsubscribe` (its last message): every
//!   node delivers the old master's messages, then the new one's, and none
//!   is lost (docs/scaling.md, "Live resharding without loss").
//! - `TRYAGAIN`: again after 20 ms, at most [`MAX_TRIES`] times. Requests
//!   of a channel with a command waiting to be sent again wait behind it,
//!   so a sender's actions keep their order. `CLUSTERDOWN`: `unavailable`.
//! - While a channel's master is down (before its replica is promoted) its
//!   requests answer `unavailable`; other channels carry on.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Token;
use rustls::pki_types::ServerName;

use super::redirect::{self, Redirect};
use super::{Follow, NodeAddr, Route, Router, SlotMap};
use crate::broker::redis::sharded::{Note, Sent};
use crate::broker::redis::{ClusterSeeds, Endpoint, LinkDriven, LinkIo, Now, RedisOwner, Tag};
use crate::broker::{Answer, ConnId, Outbox, Query, ToOwner};
use crate::config::Config;
use crate::id::{shard_of, shard_token, SHARD_LINKS};
use crate::metrics::WorkerMetrics;
use crate::resp::{Push, RedisUrl, Value};

/// Sends of one command after `ASK` or `TRYAGAIN` before `unavailable`
/// (with [`TRY_AGAIN_AFTER`]: about 4 s).
pub const MAX_TRIES: u8 = 200;
/// Sends of one command answered `ASK` that wait for the old master to
/// hand the slot over (about 3 s); past them it goes to the importing
/// master after `ASKING`, and nodes not yet subscribed there may miss it.
const ASK_WAITS: u8 = 150;
/// Pause before sending a command again after `TRYAGAIN` or `ASK`.
const TRY_AGAIN_AFTER: Duration = Duration::from_millis(20);
/// How long the requests of a channel that moved unannounced (no `ASK` or
/// notice before its `MOVED` or `sunsubscribe`) wait before they go to the
/// new master: the other nodes learnt of the move at the same moment and
/// re-subscribe there within a round trip.
const UNANNOUNCED_WAIT: Duration = Duration::from_millis(100);
/// Longest a message from a channel's importing master waits for the old
/// master's last ones (its `sunsubscribe`) before it is delivered anyway.
const HOLD_MAX: Duration = Duration::from_secs(2);
/// Map refresh while something is wrong (a master's link down, a slot
/// without a master, a redirection seen).
const MAP_RETRY: Duration = Duration::from_millis(250);
/// Map refresh while all is well: catches changes nobody told us of.
const MAP_EVERY: Duration = Duration::from_secs(5);
/// A map request unanswered this long is given up.
const MAP_TIMEOUT: Duration = Duration::from_secs(3);

/// One cluster node this worker has a link to.
#[derive(Debug)]
struct Shard {
    addr: NodeAddr,
    owner: RedisOwner,
}

/// Messages of a channel from its importing master, waiting for the old
/// master's last ones.
#[derive(Debug)]
struct Held {
    /// The shard that held the channel (the old master's).
    holder: usize,
    since: Instant,
    pushes: Vec<Push>,
}

/// `/api/channels` answers still coming from the masters.
#[derive(Debug, Default)]
struct Gather {
    remaining: usize,
    acc: Vec<(Arc<str>, usize)>,
    failed: bool,
}

#[derive(Debug)]
pub struct ClusterOwner {
    config: Arc<Config>,
    router: Router,
    seeds: ClusterSeeds,
    /// By link index (the link's token is `shard_token(index)`).
    shards: Vec<Option<Shard>>,
    /// This worker's index (for the links' client names).
    worker: usize,
    seed: u64,
    metrics: Arc<WorkerMetrics>,
    /// The time of the call being handled: new links start from it.
    now: Now,
    /// Socket requests of links already given up, for the IO shim before
    /// any of the live links' (a new link may take the same token).
    io: Vec<(Token, LinkIo)>,
    /// The node's count of workers without a broker; this worker is in it
    /// while no master is reachable.
    links_down: Arc<AtomicUsize>,
    counted_down: bool,
    /// A map request is on its way on this shard, since then.
    map_pending: Option<(usize, Instant)>,
    next_map: Instant,
    last_map: Instant,
    /// Commands to send again after `TRYAGAIN` or `ASK`, in the order
    /// they were answered.
    retries: Vec<(Instant, Sent)>,
    /// Requests of a channel that has commands in `retries`: they wait
    /// behind them, so a sender's actions keep their order.
    parked: HashMap<Arc<str>, Vec<ToOwner>>,
    /// Channels whose keys answered `ASK`: the importing master's shard,
    /// where this node subscribed too (once per move).
    moving: HashMap<Arc<str>, usize>,
    /// Messages that came from a channel's importing master while the old
    /// master still had its subscription, by pub/sub name: delivered after
    /// the old master's last ones (its `sunsubscribe`).
    held: HashMap<Bytes, Held>,
    /// Channels that moved unannounced, until when their requests wait.
    quiet: HashMap<Arc<str>, Instant>,
    /// The soonest deadline set since the last tick (a retry, a hold),
    /// for the worker to tick in time: see [`ClusterOwner::take_wake`].
    wake: Option<Instant>,
    gathers: HashMap<ConnId, Gather>,
}

impl ClusterOwner {
    /// Worker `worker`'s owner; its seeds' links connect at the first
    /// [`ClusterOwner::handle_timeout`].
    pub fn new(
        config: Arc<Config>,
        seeds: ClusterSeeds,
        worker: usize,
        seed: u64,
        links_down: Arc<AtomicUsize>,
        metrics: Arc<WorkerMetrics>,
        now: Now,
    ) -> ClusterOwner {
        let mut owner = ClusterOwner {
            router: Router::new(&config.redis_prefix),
            config,
            seeds,
            shards: Vec::new(),
            worker,
            seed,
            metrics,
            now,
            io: Vec::new(),
            links_down,
            counted_down: true,
            map_pending: None,
            next_map: now.mono,
            last_map: now.mono,
            retries: Vec::new(),
            parked: HashMap::new(),
            moving: HashMap::new(),
            held: HashMap::new(),
            quiet: HashMap::new(),
            wake: None,
            gathers: HashMap::new(),
        };
        let seed_addrs: Vec<NodeAddr> = owner
            .seeds
            .urls
            .iter()
            .map(|u| NodeAddr {
                host: u.host.clone(),
                port: u.port,
            })
            .collect();
        for addr in seed_addrs {
            owner.ensure_shard(&addr);
        }
        owner
    }

    /// The shard for `addr`, with a new link when there is none yet.
    fn ensure_shard(&mut self, addr: &NodeAddr) -> Option<usize> {
        if let Some(i) = self.find(addr) {
            return Some(i);
        }
        let endpoint = match self.endpoint(addr) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(node = %addr, error = %e, "cluster node unreachable");
                return None;
            }
        };
        let i = match self.shards.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.shards.len() < SHARD_LINKS => {
                self.shards.push(None);
                self.shards.len() - 1
            }
            None => return None,
        };
        let mut url: RedisUrl = self.seeds.urls[0].clone();
        url.host = addr.host.clone();
        url.port = addr.port;
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let owner = RedisOwner::shard(
            self.config.clone(),
            url,
            endpoint,
            shard_token(i),
            self.worker,
            self.seed,
            self.metrics.clone(),
            self.now.mono,
        );
        self.shards[i] = Some(Shard {
            addr: addr.clone(),
            owner,
        });
        Some(i)
    }

    fn endpoint(&self, addr: &NodeAddr) -> std::io::Result<Endpoint> {
        let sock = (addr.host.as_str(), addr.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let tls = match &self.seeds.tls {
            Some(config) => {
                let name =
                    ServerName::try_from(addr.host.clone()).map_err(std::io::Error::other)?;
                Some((config.clone(), name))
            }
            None => None,
        };
        Ok(Endpoint { addr: sock, tls })
    }

    fn find(&self, addr: &NodeAddr) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.addr == *addr))
    }

    fn shard(&mut self, i: usize) -> &mut RedisOwner {
        &mut self.shards[i].as_mut().expect("a live shard index").owner
    }

    /// The shard holding `channel`'s state, if any does.
    fn holder(&self, channel: &str) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.owner.holds(channel)))
    }

    /// Where `channel`'s requests go now: the shard that holds it while
    /// that master is up and still a master (it says `MOVED` once the slot
    /// is handed over, see [`ClusterOwner::move_to_route`]); else its
    /// master's shard (the channel moves there), or the holder while its
    /// slot has no master; `None`: unavailable.
    ///
    /// A map alone does not move a channel whose master is up: the map may
    /// come from the importing master, which owns the slot a moment before
    /// the old one lets it go, and a node that moved then would publish
    /// where other nodes are not subscribed yet.
    fn shard_for(&mut self, channel: &Arc<str>) -> Option<usize> {
        let held = self.holder(channel);
        if let Some(h) = held {
            let s = self.shards[h].as_ref().expect("a live shard index");
            if s.owner.is_up() && self.router.masters().contains(&s.addr) {
                return Some(h);
            }
        }
        self.move_to_route(channel)
    }

    /// Moves `channel` to its master by the map (after that master's
    /// `MOVED`, or when the holder is gone), and says where it is now.
    fn move_to_route(&mut self, channel: &Arc<str>) -> Option<usize> {
        let held = self.holder(channel);
        let routed = match self.router.route(channel) {
            Route::Master(m) => {
                let addr = self.router.masters()[m].clone();
                self.ensure_shard(&addr)
            }
            Route::Unavailable => None,
        };
        match (held, routed) {
            (Some(h), Some(r)) if h != r => {
                self.move_channel(channel, h, r);
                Some(r)
            }
            (Some(h), _) => Some(h),
            (None, r) => r,
        }
    }

    fn move_channel(&mut self, channel: &str, from: usize, to: usize) {
        if let Some((name, ch)) = self.shard(from).release(channel) {
            tracing::info!(channel = %name, "channel moves to another cluster master");
            if self.moving.remove(&name).is_none() {
                // Unannounced: other nodes may not listen at the new
                // master yet. Its requests wait a little (quiet time).
                let q = self.now.mono + UNANNOUNCED_WAIT;
                self.quiet.insert(name.clone(), q);
                self.wake = Some(self.wake.map_or(q, |w| w.min(q)));
            }
            let now = self.now;
            self.shard(to).adopt(name, ch, now);
        }
    }

    /// Subscribes at the importing master `t` of `channel` (after
    /// `ASKING`), once per move, and with `ask` (this node's own `ASK`)
    /// tells the other nodes subscribed at the old master to do the same.
    fn follow_move(&mut self, channel: &Arc<str>, t: usize, ask: Option<&[u8]>) {
        if self.moving.get(channel) == Some(&t) {
            return;
        }
        let Some(h) = self.holder(channel) else {
            return;
        };
        if h == t {
            return;
        }
        let Some(pubsub) = self.shard(h).pubsub_of(channel).map(<[u8]>::to_vec) else {
            return;
        };
        tracing::debug!(%channel, "channel's keys at an importing master: subscribed there too");
        self.shard(t).subscribe_asking(&pubsub);
        if let Some(ask) = ask {
            self.shard(h).notify_moving(&pubsub, ask);
        }
        self.moving.insert(channel.clone(), t);
    }

    /// Delivers what the importing master sent for `pubsub` while the old
    /// one still had it, through the shard that holds the channel now.
    fn deliver_held(&mut self, pubsub: &[u8], out: &mut Outbox) {
        if let Some(h) = self.held.remove(pubsub) {
            if let Some(at) = self.holder_of_pubsub(pubsub) {
                for p in h.pushes {
                    self.shard(at).on_push(p, out);
                }
            }
        }
    }

    /// Held messages whose wait is over: their channel moved (or is gone),
    /// or they waited [`HOLD_MAX`].
    fn release_held(&mut self, now: Instant, out: &mut Outbox) {
        if self.held.is_empty() {
            return;
        }
        let done: Vec<Bytes> = self
            .held
            .iter()
            .filter(|(p, h)| {
                self.holder_of_pubsub(p) != Some(h.holder) || now >= h.since + HOLD_MAX
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in done {
            self.deliver_held(&p, out);
        }
    }

    fn holder_of_pubsub(&self, pubsub: &[u8]) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.owner.holds_pubsub(pubsub)))
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: ToOwner, now: Now, out: &mut Outbox) {
        self.now = now;
        let channel = match &msg {
            ToOwner::Join { channel, .. }
            | ToOwner::Leave { channel, .. }
            | ToOwner::Publish { channel, .. }
            | ToOwner::Presence { channel, .. } => channel.clone(),
            ToOwner::Query {
                query: Query::Presence(channel),
                ..
            } => channel.clone(),
            ToOwner::Query {
                query: Query::Channels,
                from,
            } => {
                let from = *from;
                return self.gather_channels(from, now, out);
            }
        };
        // Behind its channel's commands waiting to be sent again, or until
        // its quiet time is over.
        if let Some(p) = self.parked.get_mut(&channel) {
            p.push(msg);
            return;
        }
        let quiet = self.quiet_of(&channel, now.mono);
        if quiet.is_some()
            || self
                .retries
                .iter()
                .any(|(_, s)| s.tag.channel() == Some(&channel))
        {
            if let Some(q) = quiet {
                self.wake = Some(self.wake.map_or(q, |w| w.min(q)));
            }
            self.parked.insert(channel, vec![msg]);
            return;
        }
        self.route(channel, msg, now, out);
        self.settle(now, out);
    }

    fn route(&mut self, channel: Arc<str>, msg: ToOwner, now: Now, out: &mut Outbox) {
        match self.shard_for(&channel) {
            Some(i) => self.shard(i).handle(msg, now, out),
            None => out.refuse(msg.into()),
        }
    }

    /// `/api/channels`: the channel scan runs on every master.
    fn gather_channels(&mut self, from: ConnId, now: Now, out: &mut Outbox) {
        let masters: Vec<usize> = self
            .router
            .masters()
            .to_vec()
            .iter()
            .filter_map(|a| self.ensure_shard(a))
            .collect();
        if masters.is_empty() {
            return out.answer(from, Answer::Unavailable);
        }
        self.gathers.insert(
            from,
            Gather {
                remaining: masters.len(),
                ..Gather::default()
            },
        );
        for i in masters {
            self.shard(i).handle(
                ToOwner::Query {
                    query: Query::Channels,
                    from,
                },
                now,
                out,
            );
        }
        self.settle(now, out);
    }

    /// Acts on what the shards noted, until none has anything left.
    fn settle(&mut self, now: Now, out: &mut Outbox) {
        loop {
            let mut notes = Vec::new();
            for (i, s) in self.shards.iter_mut().enumerate() {
                if let Some(s) = s {
                    notes.extend(s.owner.take_notes().into_iter().map(|n| (i, n)));
                }
            }
            if notes.is_empty() {
                break;
            }
            for (i, note) in notes {
                self.on_note(i, note, now, out);
            }
        }
        self.release_held(now.mono, out);
        self.update_health();
    }

    fn on_note(&mut self, i: usize, note: Note, now: Now, out: &mut Outbox) {
        match note {
            Note::Redirect { sent, error } => self.on_redirect(i, sent, &error, now.mono, out),
            Note::Unsubscribed(pubsub) => {
                // The old master's last message of the channel came before
                // this: what the new one sent meanwhile follows it.
                self.deliver_held(&pubsub, out);
                // Asked again at once: the `MOVED` that answers names the
                // new master sooner than a map from a node whose view may
                // lag behind the gossip.
                self.shard(i).resubscribe(&pubsub);
                self.router.want_refresh();
                self.next_map = now.mono;
            }
            Note::Refused { channels, error } => {
                let asked = self.shards[i].as_ref().expect("noting shard").addr.clone();
                self.next_map = now.mono;
                if let Follow::Moved { .. } = self.router.on_error(&error, &asked) {
                    for pubsub in channels {
                        if let Some(name) = self.shard(i).channel_of_pubsub(&pubsub) {
                            self.move_to_route(&name);
                        }
                    }
                }
            }
            Note::Stray(push) => {
                let name = match &push {
                    Push::SMessage { channel, .. } | Push::Message { channel, .. } => channel,
                    _ => return,
                };
                let Some(h) = self.holder_of_pubsub(name) else {
                    return;
                };
                // From the importing master while the old one (the holder)
                // still has the subscription: its last messages may still
                // be on their way, on another link.
                let up = self.shards[h].as_ref().is_some_and(|s| s.owner.is_up());
                match self.held.get_mut(&name[..]) {
                    Some(held) => held.pushes.push(push),
                    None if up => {
                        let name = name.clone();
                        let at = now.mono + HOLD_MAX;
                        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
                        self.held.insert(
                            name,
                            Held {
                                holder: h,
                                since: now.mono,
                                pushes: vec![push],
                            },
                        );
                    }
                    None => self.shard(h).on_push(push, out),
                }
            }
            Note::Moving { pubsub, ask } => {
                let asked = self.shards[i].as_ref().expect("noting shard").addr.clone();
                tracing::debug!(node = %asked, pubsub = %String::from_utf8_lossy(&pubsub), ask = %String::from_utf8_lossy(&ask), "moving notice");
                let Some(h) = self.holder_of_pubsub(&pubsub) else {
                    return;
                };
                let Some(name) = self.shard(h).channel_of_pubsub(&pubsub) else {
                    return;
                };
                if let Ok(Some(Redirect::Ask { to, .. })) = redirect::parse(&ask) {
                    if let Some(t) = self.ensure_shard(&to.resolve(&asked)) {
                        self.follow_move(&name, t, None);
                    }
                }
            }
            Note::Orphan(tag) => self.fail_at_holder(i, tag, out),
            Note::Channels { to, list } => {
                let Some(g) = self.gathers.get_mut(&to) else {
                    return;
                };
                match list {
                    Some(list) => g.acc.extend(list),
                    None => g.failed = true,
                }
                g.remaining -= 1;
                if g.remaining == 0 {
                    let g = self.gathers.remove(&to).expect("just seen");
                    let a = if g.failed {
                        Answer::Unavailable
                    } else {
                        Answer::Channels(g.acc)
                    };
                    out.answer(to, a);
                }
            }
            Note::Map(reply) => self.on_map(i, reply, now, out),
        }
    }

    fn on_redirect(&mut self, i: usize, sent: Sent, error: &[u8], now: Instant, out: &mut Outbox) {
        let asked = self.shards[i].as_ref().expect("noting shard").addr.clone();
        let follow = self.router.on_error(error, &asked);
        tracing::debug!(node = %asked, error = %String::from_utf8_lossy(error), ?follow, "cluster redirection");
        if sent.args.is_none() {
            // Upkeep (presence refresh, reaping): the next round goes to
            // the right master once the map says so.
            self.next_map = self.next_map.min(now);
            return;
        }
        let channel = sent.tag.channel().cloned();
        match follow {
            Follow::Moved { .. } => {
                self.next_map = now;
                // After a move nobody announced, the channel's commands
                // wait its quiet time (see `move_channel`).
                let target = channel.as_ref().and_then(|c| self.move_to_route(c));
                let quiet = channel.as_ref().and_then(|c| self.quiet_of(c, now));
                let queued = channel
                    .as_ref()
                    .is_some_and(|c| self.retries.iter().any(|(_, s)| s.tag.channel() == Some(c)));
                match (target, quiet) {
                    (Some(_), Some(q)) if sent.tries < MAX_TRIES => self.retry(q, sent),
                    // Behind the channel's commands still queued.
                    (Some(_), None) if queued && sent.tries < MAX_TRIES => self.retry(now, sent),
                    (Some(t), _) => self.resend(t, sent, false, out),
                    (None, _) => self.fail_at_holder(i, sent.tag, out),
                }
            }
            // The channel's keys are at the importing master. Every node
            // subscribed at the old one is told to subscribe there too, and
            // the command is asked again of the old master until it hands
            // the slot over (`MOVED`): nothing of the channel is published
            // at the new master before every node listens there
            // (docs/scaling.md, "Live resharding").
            Follow::Ask { to } => match (self.ensure_shard(&to), channel) {
                (Some(t), Some(c)) if sent.tries < ASK_WAITS => {
                    self.follow_move(&c, t, Some(error));
                    self.retry(now + TRY_AGAIN_AFTER, sent);
                }
                (Some(t), c) if sent.tries < MAX_TRIES => {
                    if let Some(c) = &c {
                        self.follow_move(c, t, Some(error));
                    }
                    self.resend(t, sent, true, out);
                }
                _ => self.fail_at_holder(i, sent.tag, out),
            },
            Follow::TryAgain if sent.tries < MAX_TRIES => {
                self.retry(now + TRY_AGAIN_AFTER, sent);
            }
            Follow::TryAgain | Follow::Unavailable | Follow::Reply => {
                self.next_map = now;
                self.fail_at_holder(i, sent.tag, out);
            }
        }
    }

    /// Queues a command to be sent again at `at`, or after the channel's
    /// commands already queued: a channel's commands go out in the order
    /// they were answered.
    fn retry(&mut self, at: Instant, sent: Sent) {
        let channel = sent.tag.channel();
        let at = self
            .retries
            .iter()
            .filter(|(_, s)| channel.is_some() && s.tag.channel() == channel)
            .map(|(t, _)| *t)
            .fold(at, Instant::max);
        self.retries.push((at, sent));
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// The end of `channel`'s quiet time after an unannounced move, if it
    /// is not over.
    fn quiet_of(&self, channel: &str, now: Instant) -> Option<Instant> {
        self.quiet.get(channel).copied().filter(|q| *q > now)
    }

    /// A deadline that came up between ticks (a command to send again, a
    /// held message): the worker's next tick must not be later.
    pub fn take_wake(&mut self) -> Option<Instant> {
        self.wake.take()
    }

    fn resend(&mut self, t: usize, sent: Sent, asking: bool, out: &mut Outbox) {
        if let Err((_, tag)) = self.shard(t).resend(sent, asking) {
            self.fail_at_holder(t, tag, out);
        }
    }

    /// Answers `unavailable` (or settles a leave) where the channel's state
    /// is, so that a failed join leaves no member behind.
    fn fail_at_holder(&mut self, fallback: usize, tag: Tag, out: &mut Outbox) {
        let at = tag
            .channel()
            .and_then(|c| self.holder(c))
            .unwrap_or(fallback);
        self.shard(at).fail(tag, out);
    }

    fn on_map(&mut self, i: usize, reply: Option<(bool, Value)>, now: Now, out: &mut Outbox) {
        let Some((shards, value)) = reply else {
            self.map_pending = None;
            return;
        };
        let asked = self.shards[i].as_ref().expect("noting shard").addr.clone();
        let tls = self.seeds.tls.is_some();
        let map = if shards {
            SlotMap::from_shards(&value, &asked, tls)
        } else {
            SlotMap::from_slots(&value, &asked)
        };
        match map {
            Ok(map) => {
                self.map_pending = None;
                self.last_map = now.mono;
                if map != *self.router.map() {
                    tracing::info!(
                        masters = map.masters().len(),
                        unassigned = map.unassigned(),
                        "cluster slot map"
                    );
                }
                self.router.refreshed(map);
                self.reconcile(now, out);
            }
            // Before Redis 7: the older command.
            Err(_) if shards && self.shard(i).request_map(false) => {}
            Err(e) => {
                tracing::warn!(node = %asked, error = %e, "cluster slot map unreadable");
                self.map_pending = None;
            }
        }
    }

    /// Moves every channel to its master's shard and closes links no
    /// longer needed.
    fn reconcile(&mut self, now: Now, out: &mut Outbox) {
        let masters = self.router.masters().to_vec();
        for m in &masters {
            self.ensure_shard(m);
        }
        for i in 0..self.shards.len() {
            if self.shards[i].is_none() {
                continue;
            }
            for name in self.shard(i).channel_names() {
                if let Some(t) = self.shard_for(&name) {
                    if t != i {
                        debug_assert!(!self.shard(i).holds(&name));
                    }
                }
            }
        }
        if masters.is_empty() {
            return;
        }
        for i in 0..self.shards.len() {
            let unused = self.shards[i]
                .as_ref()
                .is_some_and(|s| !masters.contains(&s.addr) && s.owner.channel_count() == 0);
            if unused {
                if let Some(mut s) = self.shards[i].take() {
                    tracing::debug!(node = %s.addr, "cluster node link closed (not a master)");
                    s.owner.close(now, out);
                    while let Some(io) = s.owner.poll_io() {
                        self.io.push(io);
                    }
                    // What it still owed is settled by now.
                    let notes = s.owner.take_notes();
                    self.shards[i] = Some(s);
                    for n in notes {
                        self.on_note(i, n, now, out);
                    }
                    self.shards[i] = None;
                }
            }
        }
    }

    /// Whether some master's link is up (never before the first map: no
    /// channel could be routed).
    fn any_master_up(&self) -> bool {
        let masters = self.router.masters();
        self.shards
            .iter()
            .flatten()
            .any(|s| s.owner.is_up() && masters.contains(&s.addr))
    }

    fn update_health(&mut self) {
        let up = self.any_master_up();
        if up && self.counted_down {
            self.counted_down = false;
            self.links_down.fetch_sub(1, Ordering::SeqCst);
        } else if !up && !self.counted_down {
            self.counted_down = true;
            self.links_down.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether the map should be fetched again now.
    fn map_due(&self, now: Instant) -> bool {
        if now < self.next_map {
            return false;
        }
        let masters = self.router.masters();
        let master_down = masters.iter().any(|m| {
            self.find(m)
                .and_then(|i| self.shards[i].as_ref())
                .is_none_or(|s| !s.owner.is_up())
        });
        self.router.refresh_due()
            || master_down
            || self.router.map().unassigned() > 0
            || now >= self.last_map + MAP_EVERY
    }

    fn request_map(&mut self, now: Instant) {
        if let Some((_, since)) = self.map_pending {
            if now < since + MAP_TIMEOUT {
                return;
            }
            self.map_pending = None;
        }
        // Not its time yet: a tick for something else (a ping, a command
        // sent again) must not push the refresh further away.
        if now < self.next_map {
            return;
        }
        if !self.map_due(now) {
            self.next_map = now + MAP_RETRY;
            return;
        }
        let masters = self.router.masters().to_vec();
        // A master's view first; any node will do.
        let mut order: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.shards[i].as_ref().is_some_and(|s| s.owner.is_up()))
            .collect();
        order.sort_by_key(|&i| !masters.contains(&self.shards[i].as_ref().expect("filtered").addr));
        for i in order {
            if self.shard(i).request_map(true) {
                self.map_pending = Some((i, now));
                self.next_map = now + MAP_RETRY;
                return;
            }
        }
        self.next_map = now + MAP_RETRY;
    }

    /// Every link's upkeep, commands due again, the map when due.
    pub fn handle_timeout(&mut self, now: Now, out: &mut Outbox) {
        self.now = now;
        self.wake = None;
        for s in self.shards.iter_mut().flatten() {
            s.owner.handle_timeout(now, out);
        }
        self.settle(now, out);
        self.quiet.retain(|_, q| *q > now.mono);
        if !self.retries.is_empty() {
            // A channel's commands in its quiet time wait for its end, in
            // their order.
            for (t, s) in &mut self.retries {
                if let Some(q) = s.tag.channel().and_then(|c| self.quiet.get(c)) {
                    *t = (*t).max(*q);
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retries)
                .into_iter()
                .partition(|(t, _)| *t <= now.mono);
            self.retries = later;
            for (_, sent) in due {
                let target = sent.tag.channel().cloned().and_then(|c| self.shard_for(&c));
                match target {
                    Some(t) => self.resend(t, sent, false, out),
                    None => {
                        let any = self.shards.iter().position(Option::is_some).unwrap_or(0);
                        self.fail_at_holder(any, sent.tag, out);
                    }
                }
            }
        }
        // Requests parked behind commands that are now sent again go out
        // after them, on the same link.
        let free: Vec<Arc<str>> = self
            .parked
            .keys()
            .filter(|c| {
                !self.quiet.contains_key(*c)
                    && !self
                        .retries
                        .iter()
                        .any(|(_, s)| s.tag.channel() == Some(*c))
            })
            .cloned()
            .collect();
        for c in free {
            for msg in self.parked.remove(&c).unwrap_or_default() {
                self.route(c.clone(), msg, now, out);
            }
        }
        self.release_held(now.mono, out);
        self.request_map(now.mono);
        self.settle(now, out);
    }

    /// Channels with local members on this worker (for metrics).
    pub fn channel_count(&self) -> usize {
        self.shards
            .iter()
            .flatten()
            .map(|s| s.owner.channel_count())
            .sum()
    }

    /// When the owner next needs a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        let links = self
            .shards
            .iter()
            .flatten()
            .filter_map(|s| s.owner.next_deadline());
        let retries = self.retries.iter().map(|(t, _)| *t);
        let held = self.held.values().map(|h| h.since + HOLD_MAX);
        let quiet = self.quiet.values().copied();
        let map = Some(self.next_map);
        links
            .chain(retries)
            .chain(held)
            .chain(quiet)
            .chain(map)
            .min()
    }

    /// How many links this worker has (for tests and docs: at most one per
    /// master once the map is known).
    pub fn link_count(&self) -> usize {
        self.shards.iter().flatten().count()
    }
}

impl LinkDriven for ClusterOwner {
    fn handle_input(&mut self, token: Token, data: &[u8], now: Now, out: &mut Outbox) {
        self.now = now;
        let Some(i) = shard_of(token) else { return };
        if let Some(Some(s)) = self.shards.get_mut(i) {
            s.owner.handle_input(data, now, out);
        }
        self.settle(now, out);
    }

    fn handle_closed(&mut self, token: Token, now: Now, out: &mut Outbox) {
        self.now = now;
        let Some(i) = shard_of(token) else { return };
        if let Some(Some(s)) = self.shards.get_mut(i) {
            s.owner.handle_closed(now, out);
        }
        self.settle(now, out);
    }

    fn poll_io(&mut self) -> Option<(Token, LinkIo)> {
        if !self.io.is_empty() {
            return Some(self.io.remove(0));
        }
        self.shards
            .iter_mut()
            .flatten()
            .find_map(|s| s.owner.poll_io())
    }

    fn poll_transmit(&mut self, token: Token) -> Option<Bytes> {
        let i = shard_of(token)?;
        self.shards.get_mut(i)?.as_mut()?.owner.poll_transmit()
    }
}

#[cfg(test)]
#[path = "owner_tests.rs"]
mod tests;
