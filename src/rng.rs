//! The one pseudo-random sequence of the server: xorshift64 (Marsaglia,
//! "Xorshift RNGs", 2003), for what needs variety and not secrecy: history
//! epochs that differ between runs and channels, and reconnect jitter that
//! keeps nodes from retrying in step. Seeded per worker from the time and
//! the process id (`server.rs`).

/// A xorshift64 sequence.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// The sequence from `seed`; zero, the one state it never leaves, is
    /// avoided by setting the low bit.
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A history epoch: 8 lowercase hex digits (PROTOCOL.md §5).
    pub fn epoch(&mut self) -> String {
        format!("{:08x}", self.next_u64() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_xorshift64_and_never_stuck_at_zero() {
        let mut r = XorShift::new(0);
        let first = r.next_u64();
        assert_ne!(first, 0);
        let mut x = 1u64;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(first, x);
        let e = XorShift::new(7).epoch();
        assert_eq!(e.len(), 8);
        assert!(e
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
