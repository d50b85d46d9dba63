//! Where one worker's channels are ordered: the embedded [`Owner`], the
//! Redis link's [`RedisOwner`] or the Redis Cluster links' [`ClusterOwner`],
//! behind the few calls a driver makes.
//!
//! The driver hands this owner-bound messages, the Redis sockets'
//! readiness and its timer ticks, and never matches on which broker it is.
//! The Redis owners are pure (they take bytes and `now`, and ask for
//! sockets); the [`LinkSockets`] beside each does their IO.

use std::io;
use std::time::{Duration, Instant};

use super::redis::cluster::ClusterOwner;
use super::redis::{ClusterSeeds, Endpoint, Now, RedisOwner};
use super::{Outbox, Owner, OwnerLimits, ToOwner};
use crate::node::Node;
use crate::socket::LinkSockets;

/// A worker's broker.
#[derive(Debug)]
pub enum Broker {
    /// In this process.
    Embedded(Owner),
    /// Through Redis, shared with other nodes; the link's socket is
    /// registered with the worker's poll by `links`.
    Redis {
        owner: Box<RedisOwner>,
        links: LinkSockets,
    },
    /// Through a Redis Cluster: one link per master, each registered with
    /// the worker's poll under its own token.
    Cluster {
        owner: Box<ClusterOwner>,
        links: LinkSockets,
    },
}

impl Broker {
    /// Worker `index`'s broker: through a Redis Cluster when the node has
    /// `cluster` seeds, through Redis when it has an `endpoint` (resolved
    /// at start), each link registered with `registry`; embedded otherwise.
    pub fn new(
        node: &Node,
        index: usize,
        endpoint: Option<Endpoint>,
        cluster: Option<ClusterSeeds>,
        seed: u64,
        registry: &mio::Registry,
    ) -> io::Result<Self> {
        let config = node.config.clone();
        let metrics = node.metrics[index].clone();
        let now = Instant::now();
        Ok(match (endpoint, config.redis_url(), cluster) {
            (_, _, Some(seeds)) => Broker::Cluster {
                owner: Box::new(ClusterOwner::new(
                    config,
                    seeds,
                    index,
                    seed,
                    node.links_down.clone(),
                    metrics,
                    Now::at(now),
                )),
                links: LinkSockets::new(registry.try_clone()?),
            },
            (Some(endpoint), Some(url), None) => Broker::Redis {
                owner: Box::new(RedisOwner::new(
                    config,
                    url,
                    endpoint,
                    crate::id::REDIS,
                    index,
                    seed,
                    node.links_down.clone(),
                    metrics,
                    now,
                )),
                links: LinkSockets::new(registry.try_clone()?),
            },
            _ => Broker::Embedded(Owner::new(OwnerLimits { config, metrics }, seed)),
        })
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: ToOwner, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Embedded(owner) => owner.handle(msg, now, out),
            Broker::Redis { owner, .. } => owner.handle(msg, Now::at(now), out),
            Broker::Cluster { owner, .. } => owner.handle(msg, Now::at(now), out),
        }
    }

    /// A Redis link's socket is ready: the one link's ([`crate::id::REDIS`])
    /// or a cluster node's (its shard token).
    pub fn ready(&mut self, token: mio::Token, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Redis { owner, links } => links.ready(token, &mut **owner, Now::at(now), out),
            Broker::Cluster { owner, links } => links.ready(token, &mut **owner, Now::at(now), out),
            Broker::Embedded(_) => {}
        }
    }

    /// After messages were handled: lets the Redis links send what they
    /// queued.
    pub fn flush(&mut self, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Redis { owner, links } => links.drive(&mut **owner, Now::at(now), out),
            Broker::Cluster { owner, links } => links.drive(&mut **owner, Now::at(now), out),
            Broker::Embedded(_) => {}
        }
    }

    /// Upkeep (idle history, the link's pings, presence refresh and
    /// reconnects); returns the link's next deadline, no sooner than 10 ms
    /// from `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox) -> Option<Instant> {
        let soonest = now + Duration::from_millis(10);
        match self {
            Broker::Embedded(owner) => {
                owner.sweep(now);
                None
            }
            Broker::Redis { owner, links } => {
                let now = Now::at(now);
                owner.handle_timeout(now, out);
                links.drive(&mut **owner, now, out);
                owner.next_deadline().map(|t| t.max(soonest))
            }
            Broker::Cluster { owner, links } => {
                let now = Now::at(now);
                owner.handle_timeout(now, out);
                links.drive(&mut **owner, now, out);
                owner.next_deadline().map(|t| t.max(soonest))
            }
        }
    }

    /// A deadline the broker set between ticks (a Redis Cluster command to
    /// send again): the next tick must come no later.
    pub fn take_wake(&mut self) -> Option<Instant> {
        match self {
            Broker::Cluster { owner, .. } => owner.take_wake(),
            _ => None,
        }
    }

    /// How many channels this broker orders here (for `/metrics`).
    pub fn channel_count(&self) -> usize {
        match self {
            Broker::Embedded(owner) => owner.channel_count(),
            Broker::Redis { owner, .. } => owner.channel_count(),
            Broker::Cluster { owner, .. } => owner.channel_count(),
        }
    }
}
