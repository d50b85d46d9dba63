//! Exact accounting of acknowledged actions for the recovering client
//! (`--recover`, issue 16). Pure: the client feeds it what each connection
//! saw, and [`verify`] settles the books at the end.
//!
//! The claim checked (PROTOCOL.md §5): every `user_action` that got an `ack`
//! with an offset reaches every member that was joined, or recovered, at that
//! offset exactly once, in offset order. A member owes offsets through
//! *segments*: a segment opens at `joined.offset + 1` of a first join (or of
//! a re-join answered `recovered:false`) and stays open across re-joins
//! answered `recovered:true`. `recovered:false` closes the open segment at the
//! last offset the member applied: acknowledged actions after that are
//! counted as `reset` (the server said so; the client reloads), not as lost.
//!
//! Offsets carry no epoch on the wire (only `joined` does), so a member tags
//! every event with the epoch of its last `joined`; events that arrive while
//! a re-join is outstanding are not trusted (§5) and the client does not feed
//! them here. An `ack` carries no epoch either: it takes the epoch in which
//! some member applied that very action at that offset, or else the
//! publisher's epoch when it was acknowledged.

use std::collections::HashMap;

/// An epoch string, hashed (FNV-1a 64): epochs are compared, never shown.
pub type EpochId = u64;

/// FNV-1a of an epoch string.
pub fn epoch_id(epoch: &str) -> EpochId {
    epoch.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A publication's identity: its publisher (index in the channel) and sequence.
pub type StampKey = (u32, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    epoch: EpochId,
    /// First offset owed.
    start: u64,
    /// Last offset owed, once closed by `recovered:false`.
    end: Option<u64>,
    /// Opened by a `recovered:false`: what precedes `start` was excused.
    after_reset: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    epoch: EpochId,
    offset: u64,
    stamp: StampKey,
}

/// What one connection applied on its channel.
#[derive(Debug, Clone, Default)]
pub struct Member {
    pub channel: u32,
    segments: Vec<Segment>,
    applied: Vec<Applied>,
    /// The position to re-join from: epoch and last offset seen.
    position: Option<(EpochId, u64)>,
    /// Offsets of the same epoch seen again (a replay overlapping what was
    /// applied): dropped, as §5 tells a client to.
    pub dropped_replays: u64,
    /// Applied below the highest offset already applied in the epoch.
    pub reordered: u64,
    /// `recovered:false` answers.
    pub resets: u64,
    /// `recovered:true` answers.
    pub recoveries: u64,
    seen: std::collections::HashSet<(EpochId, u64)>,
}

impl Member {
    pub fn new(channel: u32) -> Member {
        Member {
            channel,
            ..Member::default()
        }
    }

    /// The `since` to re-join with, when the member ever joined.
    pub fn position(&self) -> Option<(EpochId, u64)> {
        self.position
    }

    /// A `joined` reply with history: `recovered` is `None` for a join
    /// without `since`.
    pub fn on_joined(&mut self, epoch: EpochId, offset: u64, recovered: Option<bool>) {
        let open = self.segments.last().is_some_and(|s| s.end.is_none());
        match recovered {
            Some(true) if open => {
                self.recoveries += 1;
                return;
            }
            Some(true) => self.recoveries += 1,
            Some(false) => {
                self.resets += 1;
                let last = self.position.map(|(_, o)| o);
                if let Some(seg) = self.segments.last_mut().filter(|s| s.end.is_none()) {
                    seg.end = Some(last.unwrap_or(seg.start.saturating_sub(1)));
                }
            }
            None if open => return,
            None => {}
        }
        self.segments.push(Segment {
            epoch,
            start: offset + 1,
            end: None,
            after_reset: recovered == Some(false),
        });
        self.position = Some((epoch, offset));
    }

    /// An event at `offset` of the current epoch. Returns false when it was
    /// already applied (dropped).
    pub fn on_event(&mut self, offset: u64, stamp: StampKey) -> bool {
        let epoch = self.position.map_or(0, |(e, _)| e);
        if !self.seen.insert((epoch, offset)) {
            self.dropped_replays += 1;
            return false;
        }
        let last = self.position.map_or(0, |(_, o)| o);
        if offset < last {
            self.reordered += 1;
        }
        self.position = Some((epoch, last.max(offset)));
        self.applied.push(Applied {
            epoch,
            offset,
            stamp,
        });
        true
    }
}

/// One acknowledged action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub channel: u32,
    /// The publisher's epoch when the ack arrived (a guess, see the module doc).
    pub epoch: EpochId,
    pub offset: u64,
    pub stamp: StampKey,
}

/// The books, settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// (acknowledged action, member owing it) pairs.
    pub owed: u64,
    pub delivered: u64,
    pub lost: u64,
    /// The same action applied twice by one member (at two offsets).
    pub duplicated: u64,
    pub reordered: u64,
    /// Owed deliveries a `recovered:false` excused.
    pub reset: u64,
    pub dropped_replays: u64,
}

/// Settles every acknowledged action against every member of its channel.
pub fn verify(members: &[Member], acks: &[Ack]) -> Tally {
    let mut tally = Tally::default();
    // The epoch an ack really belongs to: where a member applied it. When
    // no member applied it and another action holds its offset in the
    // publisher's epoch, the ack belongs to a later epoch nobody applied:
    // `None` (owed as reset by members that were reset, lost by the others).
    let mut held: HashMap<(u32, EpochId, u64), StampKey> = HashMap::new();
    let mut true_epoch: HashMap<(u32, StampKey, u64), EpochId> = HashMap::new();
    for m in members {
        for ap in &m.applied {
            held.entry((m.channel, ap.epoch, ap.offset))
                .or_insert(ap.stamp);
            true_epoch
                .entry((m.channel, ap.stamp, ap.offset))
                .or_insert(ap.epoch);
        }
    }
    let mut by_channel: HashMap<u32, Vec<(Ack, bool)>> = HashMap::new();
    for a in acks {
        let mut a = *a;
        let mut known = true;
        if let Some(&e) = true_epoch.get(&(a.channel, a.stamp, a.offset)) {
            a.epoch = e;
        } else if held
            .get(&(a.channel, a.epoch, a.offset))
            .is_some_and(|s| *s != a.stamp)
        {
            known = false;
        }
        by_channel.entry(a.channel).or_default().push((a, known));
    }
    for m in members {
        tally.reordered += m.reordered;
        tally.dropped_replays += m.dropped_replays;
        let mut at: HashMap<(EpochId, u64), StampKey> = HashMap::with_capacity(m.applied.len());
        let mut times: HashMap<StampKey, u32> = HashMap::with_capacity(m.applied.len());
        for ap in &m.applied {
            at.insert((ap.epoch, ap.offset), ap.stamp);
            *times.entry(ap.stamp).or_default() += 1;
        }
        tally.duplicated += times.values().map(|&n| u64::from(n - 1)).sum::<u64>();
        let Some(channel_acks) = by_channel.get(&m.channel) else {
            continue;
        };
        for (a, known) in channel_acks {
            let owed = match known {
                true => owes(&m.segments, m.resets, a.epoch, a.offset),
                false if m.resets > 0 => Owes::Reset,
                false => Owes::Yes,
            };
            match owed {
                Owes::No => {}
                Owes::Reset => tally.reset += 1,
                Owes::Yes => {
                    tally.owed += 1;
                    if at.get(&(a.epoch, a.offset)) == Some(&a.stamp) {
                        tally.delivered += 1;
                    } else {
                        tally.lost += 1;
                    }
                }
            }
        }
    }
    tally
}

#[derive(Debug, PartialEq, Eq)]
enum Owes {
    Yes,
    Reset,
    No,
}

fn owes(segments: &[Segment], resets: u64, epoch: EpochId, offset: u64) -> Owes {
    let mut in_epoch = false;
    for s in segments.iter().filter(|s| s.epoch == epoch) {
        in_epoch = true;
        if offset >= s.start && s.end.is_none_or(|e| offset <= e) {
            return Owes::Yes;
        }
    }
    let first = segments.iter().find(|s| s.epoch == epoch);
    let after_first = first.is_some_and(|s| offset >= s.start || s.after_reset);
    match (in_epoch, after_first) {
        (true, true) => Owes::Reset,
        (true, false) => Owes::No,
        // An epoch it never joined in: excused when a reset jumped over it.
        (false, _) if resets > 0 => Owes::Reset,
        (false, _) => Owes::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E1: EpochId = 1;
    const E2: EpochId = 2;

    fn ack(offset: u64, seq: u64) -> Ack {
        Ack {
            channel: 0,
            epoch: E1,
            offset,
            stamp: (0, seq),
        }
    }

    #[test]
    fn joined_members_owe_from_their_join_and_late_joiners_do_not() {
        let mut early = Member::new(0);
        early.on_joined(E1, 0, None);
        let mut late = Member::new(0);
        late.on_joined(E1, 2, None);
        for o in 1..=4 {
            early.on_event(o, (0, o));
            if o > 2 {
                late.on_event(o, (0, o));
            }
        }
        let acks: Vec<Ack> = (1..=4).map(|o| ack(o, o)).collect();
        let t = verify(&[early, late], &acks);
        assert_eq!((t.owed, t.delivered, t.lost, t.duplicated), (6, 6, 0, 0));
    }

    #[test]
    fn a_replay_overlap_is_dropped_and_a_missing_offset_is_lost() {
        let mut m = Member::new(0);
        m.on_joined(E1, 0, None);
        assert!(m.on_event(1, (0, 1)));
        m.on_joined(E1, 3, Some(true));
        assert!(!m.on_event(1, (0, 1)), "already applied");
        assert!(m.on_event(3, (0, 3)));
        let t = verify(&[m], &[ack(1, 1), ack(2, 2), ack(3, 3)]);
        assert_eq!((t.owed, t.delivered, t.lost), (3, 2, 1));
        assert_eq!(t.dropped_replays, 1);
    }

    #[test]
    fn recovered_false_excuses_the_hole_and_a_new_epoch_restarts() {
        let mut m = Member::new(0);
        m.on_joined(E1, 0, None);
        m.on_event(1, (0, 1));
        // Redis lost its data: new epoch at offset 0, recovery impossible.
        m.on_joined(E2, 0, Some(false));
        m.on_event(1, (0, 3));
        let acks = [
            ack(1, 1),
            ack(2, 2), // acked in E1 after the member's last: reset
            Ack {
                epoch: E1, // the publisher's stale guess; the member knows better
                ..ack(1, 3)
            },
        ];
        let t = verify(&[m], &acks);
        assert_eq!((t.owed, t.delivered, t.lost, t.reset), (2, 2, 0, 1));
    }

    #[test]
    fn an_ack_of_a_new_epoch_nobody_applied_is_a_reset_for_the_reset() {
        let mut m = Member::new(0);
        m.on_joined(E1, 0, None);
        m.on_event(1, (0, 1));
        m.on_joined(E2, 1, Some(false));
        // (0, 2) was acked at offset 1 of E2 while its publisher still
        // believed in E1; the member joined E2 after it.
        let t = verify(&[m.clone()], &[ack(1, 1), ack(1, 2)]);
        assert_eq!((t.delivered, t.lost, t.reset), (1, 0, 1));
        // Acked at E2 offset 1 and seen by someone: before m's start in E2,
        // excused by its reset.
        let mut other = Member::new(0);
        other.on_joined(E2, 0, None);
        other.on_event(1, (0, 2));
        let t = verify(&[m.clone(), other], &[ack(1, 2)]);
        assert_eq!((t.delivered, t.lost, t.reset), (1, 0, 1));
        let mut fresh = Member::new(0);
        fresh.on_joined(E1, 0, None);
        fresh.on_event(1, (0, 1));
        let t = verify(&[fresh], &[ack(1, 1), ack(1, 2)]);
        assert_eq!(
            (t.delivered, t.lost),
            (1, 1),
            "no reset: it should have had it"
        );
    }

    #[test]
    fn the_same_action_twice_is_duplicated_and_lower_offsets_reordered() {
        let mut m = Member::new(0);
        m.on_joined(E1, 0, None);
        m.on_event(2, (0, 2));
        m.on_event(1, (0, 1));
        m.on_event(3, (0, 1));
        let t = verify(&[m], &[ack(1, 1), ack(2, 2)]);
        assert_eq!(
            (t.delivered, t.lost, t.duplicated, t.reordered),
            (2, 0, 1, 1)
        );
    }
}
