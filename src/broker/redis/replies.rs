//! Acting on what Redis answers: replies matched to their requests, pushed
//! messages framed once and handed to the workers with members, and
//! `unavailable` for requests that will never be answered.

use std::sync::Arc;

use bytes::Bytes;

use super::sharded::MOVING;
use super::{Note, Now, RedisOwner, Tag};
use crate::broker::{Answer, ConnId, Outbox, Refused};
use crate::metrics::DeliveredType;
use crate::proto::server::{self, Written};
use crate::resp::{Push, Subscription, Value};
use crate::ws;
use crate::ws::deflate::Broadcast;

impl RedisOwner {
    /// Settles a command without (the value of) its reply: a request that
    /// needed Redis hears `unavailable`; a leave, which happens locally
    /// anyway, gets its `left`.
    pub(super) fn fail_tag(&mut self, tag: Tag, out: &mut Outbox) {
        let refused = match tag {
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
                            let w = &mut ch.per_worker[who.worker()];
                            *w = w.saturating_sub(1);
                        }
                        ch.own_joins.retain(|(_, j)| *j != who);
                    }
                    // A failed first join must not keep the node subscribed.
                    self.drop_if_empty(&channel);
                }
                Refused::Join {
                    channel,
                    who,
                    id,
                    rejoin,
                }
            }
            Tag::Publish { origin, id, .. } => Refused::Publish { origin, id },
            Tag::Presence { who, id, .. } => Refused::Presence { who, id },
            Tag::ApiChannels { to } if self.sharded => {
                return self.notes.push(Note::Channels { to, list: None });
            }
            Tag::ApiPresence { to, .. } | Tag::ApiChannels { to } => Refused::Query { to },
            Tag::Left {
                channel,
                who,
                frame,
            } => Refused::Leave {
                channel,
                who,
                frame,
            },
            Tag::ScriptsLoaded => return self.reloading = false,
            Tag::Map { .. } => return self.notes.push(Note::Map(None)),
            Tag::Ignore => return,
        };
        out.refuse(refused);
    }

    pub(super) fn on_push(&mut self, push: Push, out: &mut Outbox) {
        let (channel, payload) = match push {
            Push::Message { channel, payload } | Push::SMessage { channel, payload } => {
                (channel, payload)
            }
            // Redis dropped a shard subscription we still want: its slot
            // moved. Our own `SUNSUBSCRIBE`s are confirmed for channels
            // already forgotten.
            Push::Unsubscribed {
                kind: Subscription::Shard,
                channel,
                ..
            } if self.by_pubsub.contains_key(&channel) => {
                self.notes.push(Note::Unsubscribed(channel));
                return;
            }
            _ => return,
        };
        // Another node's word that the channel's keys moved to an importing
        // master (see `sharded`): never an event, which starts with `{`.
        if self.sharded && payload.first() == Some(&MOVING) {
            self.notes.push(Note::Moving {
                pubsub: channel,
                ask: payload.slice(1..),
            });
            return;
        }
        let Some(name) = self.by_pubsub.get(&channel) else {
            // On a cluster, a channel being moved is subscribed on two
            // masters for a moment; the shard that holds it delivers.
            if self.sharded {
                self.notes
                    .push(Note::Stray(Push::SMessage { channel, payload }));
            }
            return;
        };
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let written = Written::of(&payload);
        // One comparison per event on this node: a gap is told to every
        // local member once, before the event that revealed it.
        if let (
            Some(watch),
            Written::Action {
                offset: Some(offset),
            },
        ) = (&mut ch.watch, written)
        {
            if watch.event(offset) {
                out.resync(name, &ch.per_worker);
            }
        }
        // A joiner never hears its own join (PROTOCOL.md §4).
        let mut except = None;
        if !ch.own_joins.is_empty() {
            if let Some(i) = ch.own_joins.iter().position(|(e, _)| *e == payload) {
                except = Some(ch.own_joins.swap_remove(i).1);
            }
        }
        // Framed once on this node; every local recipient shares it.
        let frame = ws::text_frame_with(|b| b.extend_from_slice(&payload));
        let frame = Broadcast::new(frame, self.config.compress_from());
        let kind = match written {
            Written::Presence => DeliveredType::Presence,
            Written::Action { .. } => DeliveredType::UserAction,
        };
        out.fan_out(name, &ch.per_worker, frame, except, kind);
    }

    pub(super) fn on_reply(&mut self, tag: Tag, value: Value, now: Now, out: &mut Outbox) {
        if let Tag::Map { shards } = tag {
            return self.notes.push(Note::Map(Some((shards, value))));
        }
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
            tag @ (Tag::Left { .. } | Tag::ScriptsLoaded | Tag::Map { .. }) => {
                self.fail_tag(tag, out)
            }
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
                    .observe(now.mono.saturating_duration_since(sent).as_nanos() as u64);
                let offset = match (&value, history) {
                    (Value::Int(n), true) => Some(*n as u64),
                    _ => None,
                };
                out.published(&origin, id, &channel, offset);
            }
            Tag::Presence { channel, who, id } => {
                let list = members_json(bulk_items(&value));
                let frame =
                    ws::text_frame_with(|b| server::presence_state_raw(b, id, &channel, &list));
                out.reply(who, frame, true);
            }
            Tag::ApiPresence { to, .. } => {
                out.answer(to, Answer::Presence(Some(members_json(bulk_items(&value)))))
            }
            Tag::ApiChannels { to } => {
                let mut list: Vec<(Arc<str>, usize)> = Vec::new();
                if let Value::Array(items) = &value {
                    for pair in items.chunks(2) {
                        if let [Value::Bulk(name), Value::Int(n)] = pair {
                            if let Ok(name) = std::str::from_utf8(name) {
                                list.push((Arc::from(name), *n as usize));
                            }
                        }
                    }
                }
                if self.sharded {
                    self.notes.push(Note::Channels {
                        to,
                        list: Some(list),
                    });
                    return;
                }
                out.answer(to, Answer::Channels(list));
            }
        }
    }

    pub(super) fn on_joined(
        &mut self,
        channel: Arc<str>,
        who: ConnId,
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
        // The answer states the channel's position at the join's point in
        // Redis's order, which every event delivered here so far precedes:
        // a mismatch means local members missed events (or the epoch
        // changed). They hear it before the joiner is one of them.
        if history {
            if let Some(ch) = self.channels.get_mut(&channel) {
                if let Some(watch) = ch.watch.as_mut() {
                    if watch.position(offset, &epoch) {
                        out.resync(&channel, &ch.per_worker);
                    }
                }
            }
        }
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
        out.joined(channel, who, frames);
    }
}

/// `[{entry},{entry}]` from a reply's presence entries.
fn members_json<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    server::write_members_raw(&mut out, entries);
    out
}

/// The bulk strings of an array reply.
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
