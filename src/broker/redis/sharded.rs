//! The Redis owner as one master's share of a Redis Cluster (PROTOCOL.md
//! 1.1 §13): what it keeps and reports so that the cluster owner
//! ([`cluster::ClusterOwner`](super::cluster::ClusterOwner)) can follow
//! the cluster's topology.
//!
//! A shard owner is the single-Redis owner with three differences: it
//! publishes with `SPUBLISH` and subscribes with `SSUBSCRIBE` (one command
//! per channel, as a shard command's channels must share a slot); it keeps
//! each channel command's arguments until its reply, so a `MOVED` or `ASK`
//! can send it again elsewhere; and what only the cluster can act on (a
//! redirection, a dropped subscription, a message for a channel another
//! shard holds, the slot map) is left in its notes instead of acted on.

use std::sync::Arc;

use bytes::Bytes;
use mio::Token;

use super::cluster::redirect;
use super::{Channel, ConnId, Endpoint, Now, RedisOwner, Tag};
use crate::broker::Outbox;
use crate::resp::{Push, RedisUrl, SendError, Value};

/// A command on the link: its tag and, on a cluster, what to send again.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) tag: Tag,
    /// The command's arguments, kept for a channel command on a cluster.
    pub(super) args: Option<Box<[Bytes]>>,
    /// How many times it was sent again after `ASK` or `TRYAGAIN`.
    pub(super) tries: u8,
}

impl Sent {
    pub(super) fn ignored() -> Sent {
        Sent {
            tag: Tag::Ignore,
            args: None,
            tries: 0,
        }
    }
}

/// What a shard owner leaves for the cluster owner.
#[derive(Debug)]
pub(super) enum Note {
    /// A command answered with a redirection (`MOVED`, `ASK`, `TRYAGAIN`,
    /// `CLUSTERDOWN`) or an unreadable one.
    Redirect { sent: Sent, error: Bytes },
    /// Redis dropped the shard subscription of a channel we hold: its slot
    /// moved.
    Unsubscribed(Bytes),
    /// A message on a pub/sub name this shard does not hold.
    Stray(Push),
    /// A lost command of a channel that moved to another shard meanwhile.
    Orphan(Tag),
    /// This shard's part of `/api/channels`; `None`: it could not answer.
    Channels {
        to: ConnId,
        list: Option<Vec<(Arc<str>, usize)>>,
    },
    /// The slot map reply (`CLUSTER SHARDS` when `true`); `None`: lost.
    Map(Option<(bool, Value)>),
    /// A refused `SSUBSCRIBE` (`MOVED` when the slot is elsewhere).
    Refused { channels: Vec<Bytes>, error: Bytes },
    /// Another node's notice on a channel's pub/sub name: its keys moved
    /// to an importing master, as this `ASK` error says.
    Moving { pubsub: Bytes, ask: Bytes },
}

/// First byte of a notice published on a channel's pub/sub name while its
/// slot moves (`MOVING` then the text of the `ASK` error the node got).
/// Events are JSON objects, so none starts with it.
pub(super) const MOVING: u8 = 0;

/// The cluster's seeds and how to reach its nodes, resolved once at start.
#[derive(Debug, Clone)]
pub struct ClusterSeeds {
    pub urls: Vec<RedisUrl>,
    /// For `rediss://` seeds: the client configuration (roots) every
    /// node's link uses.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl RedisOwner {
    /// An owner for the channels of one cluster node, reached at `url`.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn shard(
        config: Arc<crate::config::Config>,
        url: RedisUrl,
        endpoint: Endpoint,
        token: Token,
        worker: usize,
        seed: u64,
        metrics: Arc<crate::metrics::WorkerMetrics>,
        now: std::time::Instant,
    ) -> RedisOwner {
        // The node-wide count is the cluster owner's: each shard counts
        // itself down until it is up.
        let own = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let mut owner = RedisOwner::new(
            config, url, endpoint, token, worker, seed, own, metrics, now,
        );
        owner.sharded = true;
        owner.shas = super::scripts::Shas::new(true);
        owner
    }

    /// A reply, unless it is a redirection for the cluster owner.
    pub(super) fn redirected(&mut self, sent: Sent, value: Value) -> Option<(Sent, Value)> {
        if self.sharded {
            if let Value::Error(e) = &value {
                if !matches!(redirect::parse(e), Ok(None)) {
                    self.notes.push(Note::Redirect {
                        sent,
                        error: e.clone(),
                    });
                    return None;
                }
            }
        }
        Some((sent, value))
    }

    pub(super) fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    pub(super) fn is_up(&self) -> bool {
        self.up
    }

    /// Asks this node for the slot map.
    pub(super) fn request_map(&mut self, shards: bool) -> bool {
        let args: &[&[u8]] = if shards {
            &[b"CLUSTER", b"SHARDS"]
        } else {
            &[b"CLUSTER", b"SLOTS"]
        };
        self.up && self.send(args, Tag::Map { shards }).is_ok()
    }

    /// Sends a redirected command again on this link, after `ASKING`
    /// when `asking`. On refusal the tag comes back.
    pub(super) fn resend(&mut self, mut sent: Sent, asking: bool) -> Result<(), (SendError, Tag)> {
        if !self.up {
            return Err((SendError::Closed, sent.tag));
        }
        let Some(owned) = sent.args.clone() else {
            return Err((SendError::Closed, sent.tag));
        };
        sent.tries = sent.tries.saturating_add(1);
        let args: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
        if asking {
            let _ = self.link.command(&[b"ASKING"], Sent::ignored());
        }
        self.link.command(&args, sent).map_err(|(e, s)| (e, s.tag))
    }

    /// Subscribes to `channel`'s pub/sub name here after `ASKING` (its slot
    /// is being imported by this node), so that what a script publishes
    /// here during the move reaches this node too.
    pub(super) fn subscribe_asking(&mut self, pubsub: &[u8]) {
        if self.up {
            let _ = self.link.command(&[b"ASKING"], Sent::ignored());
            let _ = self.subscribe(&[pubsub], true);
        }
    }

    /// Tells every node subscribed here to `pubsub` that the channel's
    /// keys answered `ask` (they moved to an importing master): they
    /// subscribe there too, before the slot is handed over.
    pub(super) fn notify_moving(&mut self, pubsub: &[u8], ask: &[u8]) {
        if self.up {
            let mut notice = Vec::with_capacity(1 + ask.len());
            notice.push(MOVING);
            notice.extend_from_slice(ask);
            let _ = self.send(&[b"SPUBLISH", pubsub, &notice], Tag::Ignore);
        }
    }

    /// The pub/sub name of a channel this shard holds.
    pub(super) fn pubsub_of(&self, channel: &str) -> Option<&[u8]> {
        self.channels.get(channel).map(|c| &c.keys.pubsub[..])
    }

    pub(super) fn holds(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    pub(super) fn holds_pubsub(&self, pubsub: &[u8]) -> bool {
        self.by_pubsub.contains_key(pubsub)
    }

    /// The channel of a pub/sub name this shard holds.
    pub(super) fn channel_of_pubsub(&self, pubsub: &[u8]) -> Option<Arc<str>> {
        self.by_pubsub.get(pubsub).cloned()
    }

    /// Subscribes again to a channel Redis dropped: where its slot went,
    /// the refusal (`MOVED`) says.
    pub(super) fn resubscribe(&mut self, pubsub: &[u8]) {
        if self.up {
            let _ = self.subscribe(&[pubsub], true);
        }
    }

    pub(super) fn channel_names(&self) -> Vec<Arc<str>> {
        self.channels.keys().cloned().collect()
    }

    /// Gives up a channel (its slot moved): unsubscribes here; the state
    /// goes to the channel's new shard with [`RedisOwner::adopt`].
    pub(super) fn release(&mut self, name: &str) -> Option<(Arc<str>, Channel)> {
        let (name, ch) = self.channels.remove_entry(name)?;
        self.by_pubsub.remove(&ch.keys.pubsub[..]);
        let pubsub = ch.keys.pubsub.clone();
        let _ = self.subscribe(&[&pubsub], false);
        Some((name, ch))
    }

    /// Takes over a channel from another shard, members and all: no client
    /// joins again. Subscribes and registers its members here (now, or
    /// when the link comes up). Its gap watch carries on: an event lost in
    /// the move shows as an offset that does not follow.
    pub(super) fn adopt(&mut self, name: Arc<str>, mut ch: Channel, now: Now) {
        ch.own_joins.clear();
        let pubsub = Bytes::from(ch.keys.pubsub.clone());
        self.by_pubsub.insert(pubsub.clone(), name.clone());
        self.channels.insert(name.clone(), ch);
        if self.up {
            let _ = self.subscribe(&[&pubsub], true);
            self.refresh_channel(&name, now);
        }
    }

    /// Closes the link of a node no longer used; what it still waited for
    /// is settled (`unavailable`).
    pub(super) fn close(&mut self, now: Now, out: &mut Outbox) {
        self.link.close(now.mono);
        self.on_link_events(now, out);
    }

    /// Settles a request this shard's link cannot carry.
    pub(super) fn fail(&mut self, tag: Tag, out: &mut Outbox) {
        self.fail_tag(tag, out);
    }
}
