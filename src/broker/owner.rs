//! The owner side of the embedded broker: one worker's share of channels.
//!
//! Pure: it takes messages and the time, and produces messages for workers.
//! It keeps, for each channel it owns, the members on every worker (for
//! presence), how many members each worker has (to know where to deliver),
//! and, where the namespace keeps history, the offset, the epoch and a ring
//! of the last N encoded events (PROTOCOL.md §5).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{left_frame, Answer, ConnId, MemberInfo, Origin, Outbox, Query, ToOwner};
use crate::config::Config;
use crate::metrics::DeliveredType;
use crate::proto::{self, server, ErrorCode, Since};
use crate::rng::XorShift;
use crate::ws;
use crate::ws::deflate::Broadcast;

/// How long a channel with history and no members keeps it, so that clients
/// who all dropped at once can still recover (docs/protocol-notes.md).
pub const IDLE_HISTORY_TTL: Duration = Duration::from_secs(300);

/// The parts of the configuration the owner needs.
#[derive(Debug, Clone)]
pub struct OwnerLimits {
    pub config: Arc<Config>,
    /// The owning worker's counters (recoveries, replayed events).
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
}

#[derive(Debug)]
struct Channel {
    /// Members with their identity; empty for channels without presence,
    /// which only count.
    members: HashMap<ConnId, Arc<MemberInfo>>,
    /// Members per worker, to deliver only where someone listens.
    per_worker: Vec<u32>,
    total: usize,
    presence: bool,
    history: Option<History>,
    idle_since: Option<Instant>,
    /// [`Config::compress_from`]: events this long are compressed for
    /// recipients that negotiated permessage-deflate.
    compress_from: Option<usize>,
}

#[derive(Debug)]
struct History {
    capacity: usize,
    offset: u64,
    epoch: Box<str>,
    /// The last `capacity` events, oldest first, with their offsets.
    ring: VecDeque<(u64, Bytes)>,
}

/// The channels one worker owns.
#[derive(Debug)]
pub struct Owner {
    limits: OwnerLimits,
    channels: HashMap<Arc<str>, Channel>,
    rng: XorShift,
}

impl Owner {
    pub fn new(limits: OwnerLimits, seed: u64) -> Self {
        Owner {
            limits,
            channels: HashMap::new(),
            rng: XorShift::new(seed),
        }
    }

    /// Applies one owner-bound message.
    pub fn handle(&mut self, msg: ToOwner, now: Instant, out: &mut Outbox) {
        match msg {
            ToOwner::Join {
                channel,
                who,
                member,
                id,
                since,
                rejoin,
            } => self.join(channel, who, member, id, since, rejoin, out),
            ToOwner::Leave {
                channel,
                who,
                id,
                reply,
            } => self.leave(channel, who, id, reply, now, out),
            ToOwner::Publish {
                channel,
                origin,
                id,
                action,
            } => self.publish(&channel, origin, id, &action, now, out),
            ToOwner::Presence { channel, who, id } => self.presence(&channel, who, id, out),
            ToOwner::Query { query, from } => {
                let answer = self.query(query);
                out.answer(from, answer);
            }
        }
    }

    fn channel_entry(&mut self, channel: &Arc<str>) -> &mut Channel {
        let workers = self.limits_workers();
        let config = &self.limits.config;
        let rng = &mut self.rng;
        self.channels
            .entry(channel.clone())
            .or_insert_with(|| Channel {
                members: HashMap::new(),
                per_worker: vec![0; workers],
                total: 0,
                presence: config.presence_on(channel),
                history: config.history_for(channel).map(|capacity| History {
                    capacity,
                    offset: 0,
                    epoch: new_epoch(rng),
                    ring: VecDeque::new(),
                }),
                idle_since: None,
                compress_from: config.compress_from(),
            })
    }

    fn limits_workers(&self) -> usize {
        self.limits.config.threads
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        channel: Arc<str>,
        who: ConnId,
        member: Arc<MemberInfo>,
        id: Option<u64>,
        since: Option<Since>,
        rejoin: bool,
        out: &mut Outbox,
    ) {
        let metrics = self.limits.metrics.clone();
        let ch = self.channel_entry(&channel);
        ch.idle_since = None;
        let newly = !rejoin;
        if newly {
            ch.per_worker[who.worker()] += 1;
            ch.total += 1;
            if ch.presence {
                ch.members.insert(who, member.clone());
            }
        }
        let mut frames = Vec::with_capacity(1);
        // Replay decision first: `joined` carries how many events follow.
        let (recovered, replay): (Option<bool>, Vec<Bytes>) = match (&since, &ch.history) {
            (None, _) => (None, Vec::new()),
            (Some(s), Some(h)) => match h.replay_after(s) {
                Some(events) => (Some(true), events),
                None => (Some(false), Vec::new()),
            },
            (Some(_), None) => (Some(false), Vec::new()),
        };
        let members: Option<Vec<proto::Member<'_>>> = ch
            .presence
            .then(|| ch.members.values().map(|m| m.as_member()).collect());
        let history = ch.history.as_ref().map(|h| server::History {
            offset: h.offset,
            epoch: &h.epoch,
        });
        let replayed = ch.history.as_ref().map(|_| replay.len() as u64);
        if let Some(r) = recovered {
            metrics.recovery(r);
            metrics.replayed(replay.len() as u64);
        }
        frames.push(ws::text_frame_with(|buf| {
            server::joined(
                buf,
                id,
                &channel,
                members.as_deref(),
                history,
                recovered,
                replayed,
            )
        }));
        frames.extend(replay);
        drop(members);
        out.joined(channel.clone(), who, frames);
        if newly && ch.presence {
            let frame = ws::text_frame_with(|buf| {
                server::presence(
                    buf,
                    &channel,
                    server::PresenceEvent::Join,
                    member.as_member(),
                )
            });
            deliver(ch, &channel, frame, Some(who), DeliveredType::Presence, out);
        }
    }

    fn leave(
        &mut self,
        channel: Arc<str>,
        who: ConnId,
        id: Option<u64>,
        reply: bool,
        now: Instant,
        out: &mut Outbox,
    ) {
        let frame = reply.then(|| left_frame(id, &channel));
        let Some(ch) = self.channels.get_mut(&channel) else {
            return out.left(channel, who, frame);
        };
        // The leaver's worker must drop it from local fan-out before any
        // later event is delivered: `Left` goes first.
        out.left(channel.clone(), who, frame);
        let was_member = if ch.presence {
            ch.members.remove(&who)
        } else {
            None
        };
        // Without presence the owner only counts; the worker only sends a
        // leave for a connection it had asked to join.
        let counted = !ch.presence || was_member.is_some();
        if counted {
            let w = &mut ch.per_worker[who.worker()];
            *w = w.saturating_sub(1);
            ch.total = ch.total.saturating_sub(1);
        }
        if let Some(m) = was_member {
            let frame = ws::text_frame_with(|buf| {
                server::presence(buf, &channel, server::PresenceEvent::Leave, m.as_member())
            });
            // `Left` already took the leaver out of its worker's fan-out.
            deliver(ch, &channel, frame, None, DeliveredType::Presence, out);
        }
        if ch.total == 0 {
            // Kept even before its first event: forgetting it would change
            // its epoch, and a member who saw offset 0 would be told to
            // reload for nothing (PROTOCOL.md §5).
            if ch.history.is_some() {
                ch.idle_since = Some(now);
            } else {
                self.channels.remove(&channel);
            }
        }
    }

    fn publish(
        &mut self,
        channel: &Arc<str>,
        origin: Origin,
        id: Option<u64>,
        action: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let ch = self.channel_entry(channel);
        // An API publish to a channel nobody is in: its history must still
        // be swept once idle.
        if ch.total == 0 && ch.idle_since.is_none() {
            ch.idle_since = Some(now);
        }
        let offset = ch.history.as_mut().map(|h| {
            h.offset += 1;
            h.offset
        });
        let member = match &origin {
            Origin::Client(_, m) => Some(m),
            Origin::Api(_) => None,
        };
        let frame = ws::text_frame_with(|buf| {
            server::user_action(
                buf,
                channel,
                member.map(|m| &*m.user),
                member.map(|m| &*m.conn),
                member.and_then(|m| m.info.as_deref()),
                action,
                offset,
            )
        });
        if let (Some(h), Some(off)) = (ch.history.as_mut(), offset) {
            if h.ring.len() == h.capacity {
                h.ring.pop_front();
            }
            h.ring.push_back((off, frame.clone()));
        }
        deliver(ch, channel, frame, None, DeliveredType::UserAction, out);
        if ch.total == 0 && ch.history.is_none() {
            self.channels.remove(channel);
        }
        out.published(&origin, id, channel, offset);
    }

    fn presence(&mut self, channel: &Arc<str>, who: ConnId, id: Option<u64>, out: &mut Outbox) {
        let frame = match self.channels.get(channel) {
            Some(ch) if !ch.presence => ws::text_frame_with(|buf| {
                server::error(
                    buf,
                    id,
                    ErrorCode::Forbidden,
                    "presence is off in this namespace",
                )
            }),
            Some(ch) => {
                let members: Vec<_> = ch.members.values().map(|m| m.as_member()).collect();
                ws::text_frame_with(|buf| server::presence_state(buf, id, channel, &members))
            }
            None => ws::text_frame_with(|buf| server::presence_state(buf, id, channel, &[])),
        };
        out.reply(who, frame, true);
    }

    fn query(&self, q: Query) -> Answer {
        match q {
            Query::Presence(channel) => Answer::Presence(match self.channels.get(&channel) {
                Some(ch) if !ch.presence => None,
                Some(ch) => Some(members_json(ch.members.values())),
                None if !self.limits.config.presence_on(&channel) => None,
                None => Some(b"[]".to_vec()),
            }),
            Query::Channels => Answer::Channels(
                self.channels
                    .iter()
                    .filter(|(_, ch)| ch.total > 0)
                    .map(|(name, ch)| (name.clone(), ch.total))
                    .collect(),
            ),
        }
    }

    /// Forgets history of channels that have been empty for longer than
    /// [`IDLE_HISTORY_TTL`], so memory stays bounded by live channels.
    pub fn sweep(&mut self, now: Instant) {
        self.channels.retain(|_, ch| {
            ch.idle_since
                .is_none_or(|t| now.saturating_duration_since(t) < IDLE_HISTORY_TTL)
        });
    }

    /// Number of channels this owner holds (for metrics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

impl History {
    /// The events after `since`, or `None` when they are not all here
    /// (PROTOCOL.md §5: other epoch, offset ahead, or events gone).
    fn replay_after(&self, since: &Since) -> Option<Vec<Bytes>> {
        if since.epoch != *self.epoch || since.offset > self.offset {
            return None;
        }
        let first_needed = since.offset + 1;
        if first_needed <= self.offset {
            let oldest = self.ring.front().map_or(u64::MAX, |(o, _)| *o);
            if oldest > first_needed {
                return None;
            }
        }
        Some(
            self.ring
                .iter()
                .filter(|(o, _)| *o > since.offset)
                .map(|(_, f)| f.clone())
                .collect(),
        )
    }
}

fn deliver(
    ch: &Channel,
    channel: &Arc<str>,
    frame: Bytes,
    except: Option<ConnId>,
    kind: DeliveredType,
    out: &mut Outbox,
) {
    let frame = Broadcast::new(frame, ch.compress_from);
    out.fan_out(channel, &ch.per_worker, frame, except, kind);
}

/// A fresh epoch: 8 hex digits from a per-owner sequence seeded with the
/// time and the process id, so a restarted node never reuses one.
fn new_epoch(rng: &mut XorShift) -> Box<str> {
    rng.epoch().into_boxed_str()
}

/// The members as the JSON array `[{"user":…,"conn":…},…]`.
fn members_json<'a>(members: impl Iterator<Item = &'a Arc<MemberInfo>>) -> Vec<u8> {
    let list: Vec<proto::Member<'_>> = members.map(|m| m.as_member()).collect();
    let mut out = Vec::new();
    server::write_members(&mut out, &list);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Msg, ToWorker};

    fn owner(history: usize) -> Owner {
        let config = Config {
            threads: 2,
            history: vec![("doc".to_owned(), history)],
            ..Config::default()
        };
        Owner::new(
            OwnerLimits {
                config: Arc::new(config),
                metrics: Arc::default(),
            },
            0x1234_5678,
        )
    }

    fn member(n: u32) -> (ConnId, Arc<MemberInfo>) {
        let who = ConnId::new((n % 2) as usize, n as usize, 1);
        let info = Arc::new(MemberInfo {
            user: format!("u{n}").into(),
            conn: format!("t-{n}").into(),
            info: None,
        });
        (who, info)
    }

    fn text(frame: &Bytes) -> serde_json::Value {
        // Unmasked server frames under 64 KiB: a 2- or 4-byte header.
        let header = match frame[1] {
            126 => 4,
            n if n < 126 => 2,
            _ => panic!("test frames are under 64 KiB"),
        };
        serde_json::from_slice(&frame[header..]).expect("a JSON frame")
    }

    /// Joins `n` (with `since`) and returns the frames of its `Joined`.
    fn join(o: &mut Owner, ch: &str, n: u32, since: Option<Since>, now: Instant) -> Vec<Bytes> {
        let (who, member) = member(n);
        let mut out = Outbox::new(2);
        let msg = ToOwner::Join {
            channel: Arc::from(ch),
            who,
            member,
            id: None,
            since,
            rejoin: false,
        };
        o.handle(msg, now, &mut out);
        let q = std::mem::take(out.queue_mut(who.worker()));
        q.into_iter()
            .find_map(|m| match m {
                Msg::Worker(ToWorker::Joined { frames, .. }) => Some(frames),
                _ => None,
            })
            .expect("a Joined reply")
    }

    fn leave(o: &mut Owner, ch: &str, n: u32, now: Instant) {
        let (who, _) = member(n);
        let msg = ToOwner::Leave {
            channel: Arc::from(ch),
            who,
            id: None,
            reply: false,
        };
        o.handle(msg, now, &mut Outbox::new(2));
    }

    fn publish(o: &mut Owner, ch: &str, n: u32, now: Instant) {
        let (who, member) = member(n);
        let msg = ToOwner::Publish {
            channel: Arc::from(ch),
            origin: Origin::Client(who, member),
            id: None,
            action: Bytes::from_static(b"1"),
        };
        o.handle(msg, now, &mut Outbox::new(2));
    }

    fn since(offset: u64, epoch: &str) -> Option<Since> {
        Some(Since {
            offset,
            epoch: epoch.to_owned(),
        })
    }

    /// `(recovered, replayed, offsets of the replayed events)`.
    fn recovery(frames: &[Bytes]) -> (Option<bool>, u64, Vec<u64>) {
        let joined = text(&frames[0]);
        let offsets = frames[1..]
            .iter()
            .map(|f| text(f)["offset"].as_u64().expect("offset"))
            .collect();
        (
            joined["recovered"].as_bool(),
            joined["replayed"].as_u64().expect("replayed"),
            offsets,
        )
    }

    #[test]
    fn replays_exactly_what_the_ring_holds_after_since() {
        let now = Instant::now();
        let mut o = owner(5);
        let epoch = text(&join(&mut o, "doc:1", 0, None, now)[0])["epoch"]
            .as_str()
            .expect("epoch")
            .to_owned();
        for _ in 0..12 {
            publish(&mut o, "doc:1", 0, now);
        }
        // Ring: 8..=12.
        let cases: [(u64, &str, Option<bool>, Vec<u64>); 7] = [
            (12, &epoch, Some(true), vec![]),
            (11, &epoch, Some(true), vec![12]),
            (7, &epoch, Some(true), vec![8, 9, 10, 11, 12]),
            (6, &epoch, Some(false), vec![]),
            (0, &epoch, Some(false), vec![]),
            (13, &epoch, Some(false), vec![]),
            (12, "other", Some(false), vec![]),
        ];
        for (i, (off, ep, recovered, replayed)) in cases.into_iter().enumerate() {
            let frames = join(&mut o, "doc:1", 2 + i as u32, since(off, ep), now);
            let k = replayed.len() as u64;
            assert_eq!(
                recovery(&frames),
                (recovered, k, replayed),
                "since {off}/{ep}"
            );
        }
    }

    /// PROTOCOL.md §5: a `since` join of a member is answered and replayed
    /// like any other, with no presence event and no second membership.
    #[test]
    fn rejoin_with_since_replays_without_a_second_membership() {
        let now = Instant::now();
        let mut o = owner(10);
        let epoch = text(&join(&mut o, "doc:r", 0, None, now)[0])["epoch"]
            .as_str()
            .expect("epoch")
            .to_owned();
        join(&mut o, "doc:r", 1, None, now);
        for _ in 0..4 {
            publish(&mut o, "doc:r", 1, now);
        }
        let (who, member) = member(0);
        let mut out = Outbox::new(2);
        let msg = ToOwner::Join {
            channel: Arc::from("doc:r"),
            who,
            member,
            id: Some(9),
            since: since(1, &epoch),
            rejoin: true,
        };
        o.handle(msg, now, &mut out);
        let w0 = std::mem::take(out.queue_mut(0));
        let w1 = std::mem::take(out.queue_mut(1));
        assert!(
            w1.is_empty(),
            "no presence event for the other member: {w1:?}"
        );
        let [Msg::Worker(ToWorker::Joined { frames, .. })] = &w0[..] else {
            panic!("only the joined: {w0:?}");
        };
        assert_eq!(recovery(frames), (Some(true), 3, vec![2, 3, 4]));
        let Answer::Channels(list) = o.query(Query::Channels) else {
            panic!("channels");
        };
        assert_eq!(list, vec![(Arc::from("doc:r"), 2)], "one membership each");
    }

    #[test]
    fn no_history_namespace_is_never_recovered() {
        let now = Instant::now();
        let mut o = owner(5);
        let frames = join(&mut o, "plain:1", 0, since(0, "x"), now);
        let joined = text(&frames[0]);
        assert_eq!(joined["recovered"], serde_json::json!(false));
        assert!(joined.get("offset").is_none() && joined.get("replayed").is_none());
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn idle_history_is_kept_for_the_ttl_then_forgotten() {
        let t = Instant::now();
        let mut o = owner(5);
        let joined = text(&join(&mut o, "doc:idle", 0, None, t)[0]);
        let epoch = joined["epoch"].as_str().expect("epoch").to_owned();
        // Even before its first event, the empty channel keeps its epoch.
        leave(&mut o, "doc:idle", 0, t);
        assert_eq!(o.channel_count(), 1);
        o.sweep(t + IDLE_HISTORY_TTL - Duration::from_secs(1));
        let frames = join(&mut o, "doc:idle", 1, since(0, &epoch), t);
        assert_eq!(recovery(&frames).0, Some(true));
        // A join cleared the idle mark; the next leave sets it again.
        o.sweep(t + IDLE_HISTORY_TTL * 2);
        assert_eq!(o.channel_count(), 1, "a channel with a member is kept");
        leave(&mut o, "doc:idle", 1, t + IDLE_HISTORY_TTL);
        o.sweep(t + IDLE_HISTORY_TTL * 2 - Duration::from_secs(1));
        assert_eq!(o.channel_count(), 1);
        o.sweep(t + IDLE_HISTORY_TTL * 2);
        assert_eq!(o.channel_count(), 0);
        let frames = join(&mut o, "doc:idle", 2, since(0, &epoch), t);
        assert_eq!(
            recovery(&frames).0,
            Some(false),
            "a forgotten channel has a new epoch"
        );
    }

    #[test]
    fn channel_without_history_is_forgotten_with_its_last_member() {
        let t = Instant::now();
        let mut o = owner(5);
        join(&mut o, "plain:1", 0, None, t);
        leave(&mut o, "plain:1", 0, t);
        assert_eq!(o.channel_count(), 0);
    }

    #[test]
    fn api_publish_to_an_empty_history_channel_is_swept() {
        let t = Instant::now();
        let mut o = owner(5);
        let mut out = Outbox::new(2);
        let to = ConnId::new(0, 9, 1);
        let msg = ToOwner::Publish {
            channel: Arc::from("doc:api"),
            origin: Origin::Api(to),
            id: None,
            action: Bytes::from_static(b"1"),
        };
        o.handle(msg, t, &mut out);
        assert_eq!(o.channel_count(), 1);
        o.sweep(t + IDLE_HISTORY_TTL);
        assert_eq!(o.channel_count(), 0, "an API-only channel leaked");
    }

    #[test]
    fn epochs_differ_between_channels_and_seeds() {
        let mut a = XorShift::new(0x1234_5679);
        let mut b = XorShift::new(0x8765_4321);
        let (a1, a2, b1) = (new_epoch(&mut a), new_epoch(&mut a), new_epoch(&mut b));
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
        assert_eq!(a1.len(), 8);
    }
}
