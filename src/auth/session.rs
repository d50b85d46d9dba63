//! A connection's token life (PROTOCOL.md §6, "Expiry and refresh"): the
//! deadline `exp` + leeway at which it is closed with 4010, and the
//! decisions of a `refresh` request.
//!
//! Pure: the worker passes both clocks (Unix seconds for `exp`, an
//! `Instant` for its timers) and acts on what comes back. The deadline is a
//! plain `Option<Instant>` in the connection, checked by the worker's
//! periodic timer scan, so no timer is allocated per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{channel_allowed, AuthError, Identity};

/// The close code of an expired token (§8).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4010;

/// What a connection keeps of its token.
#[derive(Debug, Default)]
pub struct TokenLife {
    /// The token's `exp`, whole seconds (0: no token, authentication off).
    pub exp: u64,
    /// `exp` + leeway as a worker instant; `None`: never (authentication
    /// off, or a deadline beyond what an `Instant` holds).
    deadline: Option<Instant>,
    /// Channels being left because a refresh no longer allows them: the
    /// worker sends their `left` with `reason:"forbidden"` when the owner
    /// confirms the leave. At most the connection's channel count.
    leaving: Vec<Arc<str>>,
}

impl TokenLife {
    /// The life of a token with `exp`, verified at `now_unix` (Unix
    /// seconds) = `now` (the worker's clock). `exp == 0` means no token.
    pub fn new(exp: u64, leeway_s: u64, now_unix: u64, now: Instant) -> TokenLife {
        TokenLife {
            exp,
            deadline: deadline(exp, leeway_s, now_unix, now),
            leaving: Vec::new(),
        }
    }

    /// Whether the deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A successful refresh: the new `exp` and deadline replace the old.
    pub fn renew(&mut self, exp: u64, leeway_s: u64, now_unix: u64, now: Instant) {
        self.exp = exp;
        self.deadline = deadline(exp, leeway_s, now_unix, now);
    }

    /// Notes that `channel` is being left because the token no longer
    /// allows it.
    pub fn start_forbidden_leave(&mut self, channel: Arc<str>) {
        if !self.leaving.iter().any(|c| **c == *channel) {
            self.leaving.push(channel);
        }
    }

    /// Whether the owner's confirmation of a leave of `channel` ends a
    /// forbidden leave (and forgets it).
    pub fn finish_forbidden_leave(&mut self, channel: &str) -> bool {
        match self.leaving.iter().position(|c| **c == *channel) {
            Some(i) => {
                self.leaving.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// `exp` + leeway as an `Instant`, given that `now_unix` is `now`.
/// `None` for `exp == 0` (no token) or a date too far to represent.
pub fn deadline(exp: u64, leeway_s: u64, now_unix: u64, now: Instant) -> Option<Instant> {
    if exp == 0 {
        return None;
    }
    let at = exp.saturating_add(leeway_s);
    now.checked_add(Duration::from_secs(at.saturating_sub(now_unix)))
}

/// Why a `refresh` is refused; the worker answers the matching `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Authentication is off: `bad_request`.
    AuthOff,
    /// The token fails a check of §6: `unauthorized`; nothing changes.
    Unauthorized(AuthError),
    /// A valid token for another `sub`: `forbidden`; nothing changes.
    OtherUser,
}

/// Decides a `refresh` of a connection of `user`: `verified` is the new
/// token checked exactly as at the handshake (`None` when authentication
/// is off).
pub fn refresh(
    user: &str,
    verified: Option<Result<Identity, AuthError>>,
) -> Result<Identity, RefreshError> {
    let identity = verified
        .ok_or(RefreshError::AuthOff)?
        .map_err(RefreshError::Unauthorized)?;
    if identity.user != user {
        return Err(RefreshError::OtherUser);
    }
    Ok(identity)
}

/// The joined channels that the new `channels` claim no longer allows.
pub fn no_longer_allowed<'a>(
    joined: impl IntoIterator<Item = &'a Arc<str>>,
    allowed: Option<&[String]>,
) -> Vec<Arc<str>> {
    joined
        .into_iter()
        .filter(|c| !channel_allowed(allowed, c))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn id(user: &str, exp: u64, channels: Option<&[&str]>) -> Identity {
        Identity {
            user: user.into(),
            info: None,
            channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
            exp,
        }
    }

    #[test]
    fn deadline_is_exp_plus_leeway_on_the_worker_clock() {
        let now = Instant::now();
        let d = deadline(1_000, 60, 990, now).unwrap();
        assert_eq!(d - now, Duration::from_secs(70));
        // Already past: the deadline is now (the scan closes at once).
        assert_eq!(deadline(1_000, 0, 2_000, now), Some(now));
        assert_eq!(deadline(0, 60, 990, now), None);
        // Far future: no panic; either never or very far.
        assert!(deadline(u64::MAX, 60, 0, now).is_none_or(|d| d > now));
    }

    #[test]
    fn life_expires_and_renews() {
        let now = Instant::now();
        let mut life = TokenLife::new(100, 1, 99, now);
        assert!(!life.expired(now));
        assert!(!life.expired(now + Duration::from_millis(1_999)));
        assert!(life.expired(now + Duration::from_secs(2)));
        life.renew(200, 1, 99, now);
        assert_eq!(life.exp, 200);
        assert!(!life.expired(now + Duration::from_secs(2)));
        assert!(!TokenLife::default().expired(now + Duration::from_secs(1 << 30)));
    }

    #[test]
    fn refresh_decisions() {
        assert_eq!(refresh("a", None).unwrap_err(), RefreshError::AuthOff);
        assert_eq!(
            refresh("a", Some(Err(AuthError::Expired))).unwrap_err(),
            RefreshError::Unauthorized(AuthError::Expired)
        );
        assert_eq!(
            refresh("a", Some(Ok(id("b", 5, None)))).unwrap_err(),
            RefreshError::OtherUser
        );
        assert_eq!(refresh("a", Some(Ok(id("a", 5, None)))).unwrap().exp, 5);
    }

    #[test]
    fn narrowed_channels_are_listed() {
        let joined: HashSet<Arc<str>> = ["doc:1", "doc:2", "lobby"]
            .into_iter()
            .map(Arc::from)
            .collect();
        let mut gone = no_longer_allowed(&joined, Some(&["doc:*".to_string()]));
        gone.sort();
        assert_eq!(gone, [Arc::<str>::from("lobby")]);
        assert!(no_longer_allowed(&joined, None).is_empty());
        assert_eq!(no_longer_allowed(&joined, Some(&[])).len(), 3);
    }

    #[test]
    fn forbidden_leaves_are_matched_once() {
        let mut life = TokenLife::default();
        life.start_forbidden_leave("a".into());
        life.start_forbidden_leave("a".into());
        assert!(life.finish_forbidden_leave("a"));
        assert!(!life.finish_forbidden_leave("a"));
    }
}
