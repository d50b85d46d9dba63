//! One client connection's protocol state, without its socket.
//!
//! [`Session`] holds what PROTOCOL.md attaches to a WebSocket connection: who
//! it is, which channels it asked to join, its rate limit, and how many
//! requests in a row were refused for rate. The worker owns the socket and
//! the outbound queue; this module decides.

pub mod channels;
pub mod outbound;
pub mod rate;
pub mod replies;

use std::sync::Arc;
use std::time::Instant;

pub use channels::ChannelSet;
pub use outbound::{Outbound, Overflow};
pub use rate::{Rate, TokenBucket};
pub use replies::{CloseNow, Replies};

use crate::broker::MemberInfo;

/// After this many `rate_limited` errors in a row the connection is closed
/// with 4009 (PROTOCOL.md §8).
pub const RATE_LIMIT_STREAK_CLOSE: u32 = 10;

/// What the rate limiter says about one client data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refused: answer `rate_limited`.
    Limited,
    /// Refused for the tenth time in a row: answer `rate_limited`, then
    /// close with 4009.
    LimitedClose,
}

/// The protocol state of one open WebSocket.
#[derive(Debug)]
pub struct Session {
    pub member: Arc<MemberInfo>,
    /// Channels the token allows (`None`: all), PROTOCOL.md §6.
    pub allowed: Option<Vec<String>>,
    /// Channels joined or being joined, as the client sees it.
    pub channels: ChannelSet,
    /// Replies owed by owners, and local ones and a close waiting for them.
    pub replies: Replies,
    /// The token's expiry deadline and the leaves a refresh caused
    /// (PROTOCOL.md §6); no deadline with authentication off.
    pub token: crate::auth::session::TokenLife,
    bucket: TokenBucket,
    limited_streak: u32,
}

impl Session {
    pub fn new(
        member: Arc<MemberInfo>,
        allowed: Option<Vec<String>>,
        rate: Rate,
        now: Instant,
    ) -> Self {
        Session {
            member,
            allowed,
            channels: ChannelSet::default(),
            replies: Replies::default(),
            token: crate::auth::session::TokenLife::default(),
            bucket: TokenBucket::new(rate, now),
            limited_streak: 0,
        }
    }

    /// Charges one client data message to the rate limit.
    pub fn admit(&mut self, rate: Rate, now: Instant) -> Admission {
        if self.bucket.try_take(rate, now) {
            self.limited_streak = 0;
            return Admission::Allowed;
        }
        self.limited_streak += 1;
        if self.limited_streak >= RATE_LIMIT_STREAK_CLOSE {
            Admission::LimitedClose
        } else {
            Admission::Limited
        }
    }

    /// Whether the token allows joining `channel` (PROTOCOL.md §6).
    pub fn may_join(&self, channel: &str) -> bool {
        crate::auth::channel_allowed(self.allowed.as_deref(), channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(allowed: Option<Vec<String>>) -> Session {
        let m = Arc::new(MemberInfo {
            user: "u".into(),
            conn: "n-0-1".into(),
            info: None,
        });
        Session::new(
            m,
            allowed,
            Rate {
                per_second: 1,
                burst: 1,
            },
            Instant::now(),
        )
    }

    #[test]
    fn tenth_refusal_in_a_row_closes() {
        let mut s = session(None);
        let now = Instant::now();
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        assert_eq!(s.admit(rate, now), Admission::Allowed);
        for _ in 0..9 {
            assert_eq!(s.admit(rate, now), Admission::Limited);
        }
        assert_eq!(s.admit(rate, now), Admission::LimitedClose);
    }

    #[test]
    fn an_allowed_message_resets_the_streak() {
        let mut s = session(None);
        let t = Instant::now();
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        assert_eq!(s.admit(rate, t), Admission::Allowed);
        for _ in 0..5 {
            assert_eq!(s.admit(rate, t), Admission::Limited);
        }
        let later = t + std::time::Duration::from_secs(1);
        assert_eq!(s.admit(rate, later), Admission::Allowed);
        for _ in 0..9 {
            assert_eq!(s.admit(rate, later), Admission::Limited);
        }
    }

    #[test]
    fn channel_permissions() {
        assert!(session(None).may_join("x"));
        assert!(!session(Some(vec![])).may_join("x"));
        let s = session(Some(vec!["doc:*".into(), "lobby".into()]));
        assert!(s.may_join("doc:1"));
        assert!(s.may_join("doc:"));
        assert!(s.may_join("lobby"));
        assert!(!s.may_join("lobby2"));
        assert!(!s.may_join("do"));
    }
}
