//! Telling members that they missed events (PROTOCOL.md §5, "Gaps are never
//! silent").
//!
//! A node delivers a history channel's events in the broker's order, each
//! with its offset. Offsets grow by one per event, so the node notices a
//! lost event (or a broker that lost its data and started a new epoch at
//! offset 1) by comparing each offset with the last one it delivered: one
//! comparison per event per node, not per member. On a mismatch the owner
//! sends every local member one `resync` before the event, and the members
//! fill the gap themselves by joining again with `since`.
//!
//! The embedded broker never needs one: it numbers the events itself, in
//! the same step as it delivers them. The Redis owner keeps one per history
//! channel it subscribes to.

/// What a node last delivered of one history channel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GapWatch {
    /// The offset of the last event delivered, or the position a join's
    /// answer stated; `None` until the first of either (or since
    /// [`GapWatch::forget`]).
    last: Option<u64>,
    /// The epoch a join's answer stated, when one did. Events do not carry
    /// their epoch; a new one shows as an offset that does not follow.
    epoch: Option<Box<str>>,
}

impl GapWatch {
    /// An event with `offset` is about to be delivered. True when it does
    /// not follow the last one (an event was lost, or the offsets started
    /// again in a new epoch): the members must hear `resync` before it.
    #[inline]
    pub fn event(&mut self, offset: u64) -> bool {
        let gap = self.last.is_some_and(|l| offset != l.wrapping_add(1));
        self.last = Some(offset);
        if gap {
            // The gap may be a new epoch: the next join answer states it,
            // and must not count as a second gap for it.
            self.epoch = None;
        }
        gap
    }

    /// The broker stated the channel's position at one point of its order
    /// (a join's answer: the offset and epoch when it ran). True when that
    /// contradicts what was delivered up to that point: events were lost
    /// before it, or the epoch changed.
    pub fn position(&mut self, offset: u64, epoch: &str) -> bool {
        let gap = self.last.is_some_and(|l| l != offset)
            || self.epoch.as_deref().is_some_and(|e| e != epoch);
        self.last = Some(offset);
        if self.epoch.as_deref() != Some(epoch) {
            self.epoch = Some(epoch.into());
        }
        gap
    }

    /// Forgets the position, after the members were told to resync for
    /// another reason (the broker link came back): what comes next is the
    /// new starting point, not a gap.
    pub fn forget(&mut self) {
        self.last = None;
        self.epoch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_offsets_are_no_gap() {
        let mut w = GapWatch::default();
        assert!(!w.event(7), "the first event sets the starting point");
        for off in 8..100 {
            assert!(!w.event(off));
        }
    }

    #[test]
    fn a_skipped_repeated_or_lower_offset_is_a_gap_once() {
        let mut w = GapWatch::default();
        w.event(1);
        w.event(2);
        assert!(w.event(4), "3 was lost");
        assert!(!w.event(5), "counted from the event that revealed it");
        assert!(w.event(5), "the same offset twice");
        assert!(w.event(1), "a new epoch starts at 1 again");
        assert!(!w.event(2));
    }

    #[test]
    fn a_join_answer_checks_offset_and_epoch() {
        let mut w = GapWatch::default();
        assert!(!w.position(3, "e1"), "the first answer sets the position");
        assert!(!w.event(4));
        assert!(!w.position(4, "e1"), "it agrees with the last event");
        assert!(w.position(6, "e1"), "5 and 6 never arrived");
        assert!(!w.event(7));
        assert!(w.position(7, "e2"), "a new epoch at the same offset");
        assert!(!w.position(7, "e2"));
        assert!(w.position(0, "e2"), "the offset went back");
    }

    #[test]
    fn a_gap_forgets_the_epoch_it_may_have_changed() {
        let mut w = GapWatch::default();
        w.position(5, "e1");
        assert!(w.event(1), "offsets started again: a new epoch");
        assert!(!w.position(1, "e2"), "the re-joins' answers: told once");
        assert!(w.position(1, "e3"), "a further change is a gap again");
    }

    #[test]
    fn forget_starts_over() {
        let mut w = GapWatch::default();
        w.position(10, "e1");
        w.forget();
        assert!(!w.event(1), "told to resync already: no second one");
        assert!(!w.position(1, "e2"), "the epoch was forgotten too");
        assert!(!w.event(2));
    }
}
