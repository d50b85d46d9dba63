//! Per-publisher sequence tracking at one receiver.
//!
//! PROTOCOL.md §4: messages from one connection to one channel are delivered
//! in the order it sent them, and every member receives every message. A
//! receiver keeps, for each publisher of its channel, the next sequence number
//! it expects and a 64-bit window of the ones just below it, which is enough
//! to tell a late (reordered) arrival from a duplicate without storing every
//! number. Loss is counted at the end: messages sent minus distinct ones seen.

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next number expected.
    InOrder,
    /// Ahead of the next expected: `skipped` numbers have not arrived (yet).
    Ahead { skipped: u64 },
    /// Below the next expected and not seen before: reordered.
    Late,
    /// Seen before.
    Duplicate,
    /// So far below the window that it cannot be told apart; counted as late.
    Stale,
}

impl Arrival {
    /// Whether the arrival adds a distinct message.
    pub fn is_new(self) -> bool {
        !matches!(self, Arrival::Duplicate)
    }

    /// Whether the arrival counts as reordered.
    pub fn is_reordered(self) -> bool {
        matches!(self, Arrival::Late | Arrival::Stale)
    }
}

/// One publisher's sequence as one receiver sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTrack {
    /// Next sequence number expected.
    next: u64,
    /// Bit `i` set: number `next - 1 - i` has arrived.
    seen: u64,
    /// Distinct numbers seen.
    unique: u64,
}

impl SeqTrack {
    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let skipped = seq - self.next;
            self.seen = match skipped.checked_add(1) {
                Some(shift) if shift < 64 => (self.seen << shift) | 1,
                _ => 1,
            };
            self.next = seq.saturating_add(1);
            self.unique += 1;
            return if skipped == 0 {
                Arrival::InOrder
            } else {
                Arrival::Ahead { skipped }
            };
        }
        let below = self.next - 1 - seq;
        if below >= 64 {
            self.unique += 1;
            return Arrival::Stale;
        }
        let bit = 1u64 << below;
        if self.seen & bit != 0 {
            return Arrival::Duplicate;
        }
        self.seen |= bit;
        self.unique += 1;
        Arrival::Late
    }

    /// Distinct sequence numbers seen so far (the sink counts them at run time).
    #[cfg(test)]
    pub fn unique(&self) -> u64 {
        self.unique
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut t = SeqTrack::default();
        for s in 0..1000 {
            assert_eq!(t.observe(s), Arrival::InOrder);
        }
        assert_eq!(t.unique(), 1000);
    }

    #[test]
    fn gap_then_late_fill_then_duplicate() {
        let mut t = SeqTrack::default();
        assert_eq!(t.observe(0), Arrival::InOrder);
        assert_eq!(t.observe(3), Arrival::Ahead { skipped: 2 });
        assert_eq!(t.observe(1), Arrival::Late);
        assert_eq!(t.observe(2), Arrival::Late);
        assert_eq!(t.observe(2), Arrival::Duplicate);
        assert_eq!(t.observe(3), Arrival::Duplicate);
        assert_eq!(t.observe(0), Arrival::Duplicate);
        assert_eq!(t.observe(4), Arrival::InOrder);
        assert_eq!(t.unique(), 5);
    }

    #[test]
    fn window_edges() {
        let mut t = SeqTrack::default();
        assert_eq!(t.observe(64), Arrival::Ahead { skipped: 64 });
        assert_eq!(t.observe(1), Arrival::Late, "1 is bit 63 below next=65");
        assert_eq!(t.observe(1), Arrival::Duplicate);
        assert_eq!(t.observe(0), Arrival::Stale, "just past the window");
        assert_eq!(t.observe(1000), Arrival::Ahead { skipped: 935 });
        assert_eq!(t.observe(10), Arrival::Stale);
        assert!(Arrival::Stale.is_reordered() && Arrival::Late.is_reordered());
        assert!(!Arrival::Duplicate.is_new());
    }

    /// Compares the window against a plain set on a shuffled stream.
    #[test]
    fn matches_a_set_within_the_window() {
        let mut order: Vec<u64> = (0..500).chain(470..500).chain(7..9).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        // Shuffles within blocks of 8 keep every arrival inside the window.
        for block in order.chunks_mut(8) {
            for i in (1..block.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                block.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let mut t = SeqTrack::default();
        let mut set = std::collections::HashSet::new();
        for s in order {
            let arrival = t.observe(s);
            let stale = arrival == Arrival::Stale;
            assert_eq!(arrival.is_new(), set.insert(s) || stale, "seq {s}");
        }
        assert_eq!(t.unique(), 502, "the two stale re-sends count as new");
    }
}
