//! Where one worker's channels are ordered: the embedded [`Owner`], the
//! Redis link's [`RedisOwner`] or the Redis Cluster links' [`ClusterOwner`],
//! behind the few calls a driver makes.
//!
//! The driver hands this owner-bound messages, the Redis socket's
//! readiness and its timer ticks, and never matches on which broker it is.
//! (Both owners still build their fan-out and replies apart: issue 17,
//! step 4.)

use std::io;
use std::time::{Duration, Instant};

use super::redis::cluster::ClusterOwner;
use super::redis::{ClusterSeeds, Endpoint, RedisOwner};
use super::{Outbox, Owner, OwnerLimits, ToOwner};
use crate::node::Node;

/// A worker's broker.
#[derive(Debug)]
pub enum Broker {
    /// In this process.
    Embedded(Owner),
    /// Through Redis, shared with other nodes; the link is registered with
    /// the worker's poll through `registry`.
    Redis {
        owner: Box<RedisOwner>,
        registry: mio::Registry,
    },
    /// Through a Redis Cluster: one link per master, each registered with
    /// the worker's poll under its own token.
    Cluster {
        owner: Box<ClusterOwner>,
        registry: mio::Registry,
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
        Ok(match (endpoint, config.redis_url(), cluster) {
            (_, _, Some(seeds)) => Broker::Cluster {
                owner: Box::new(ClusterOwner::new(
                    config,
                    seeds,
                    seed,
                    node.links_down.clone(),
                    metrics,
                )),
                registry: registry.try_clone()?,
            },
            (Some(endpoint), Some(url), None) => Broker::Redis {
                owner: Box::new(RedisOwner::new(
                    config,
                    url,
                    endpoint,
                    crate::id::REDIS,
                    seed,
                    node.links_down.clone(),
                    metrics,
                )),
                registry: registry.try_clone()?,
            },
            _ => Broker::Embedded(Owner::new(OwnerLimits { config, metrics }, seed)),
        })
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: ToOwner, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Embedded(owner) => owner.handle(msg, now, out),
            Broker::Redis { owner, .. } => owner.handle(msg, out),
            Broker::Cluster { owner, registry } => owner.handle(msg, now, registry, out),
        }
    }

    /// A Redis link's socket is ready: the one link's ([`crate::id::REDIS`])
    /// or a cluster node's (its shard token).
    pub fn ready(&mut self, token: mio::Token, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Redis { owner, registry } => owner.on_ready(now, registry, out),
            Broker::Cluster { owner, registry } => owner.on_ready(token, now, registry, out),
            Broker::Embedded(_) => {}
        }
    }

    /// After messages were handled: lets the Redis link send what they
    /// queued.
    pub fn flush(&mut self, now: Instant, out: &mut Outbox) {
        match self {
            Broker::Redis { owner, registry } => owner.flush(now, registry, out),
            Broker::Cluster { owner, registry } => owner.flush(now, registry, out),
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
            Broker::Redis { owner, registry } => {
                owner.tick(now, registry, out);
                owner.next_deadline().map(|t| t.max(soonest))
            }
            Broker::Cluster { owner, registry } => {
                owner.tick(now, registry, out);
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
