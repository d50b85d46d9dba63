//! The order of one connection's replies, and a close that waits for them.
//!
//! PROTOCOL.md §8: "Every reply the server owes for requests it received
//! before a close is sent before the close frame." Some replies are built
//! where the connection lives (errors, `pong`); others come back from the
//! channel's owner, possibly on another worker or through Redis (`joined`,
//! `left`, `ack`, `presence_state`). Left alone, a local reply overtakes an
//! owner's reply still in flight, and a close decided locally (4009 after a
//! burst of `rate_limited`, say) overtakes them all.
//!
//! [`Replies`] counts the replies owed by owners. A local reply made while
//! some are owed is parked behind them, and a close decided while some are
//! owed or parked waits, at most [`REPLY_WAIT`], until they have gone out.
//! Every close of a WebSocket goes through [`Replies::request_close`], so
//! every close code (4008, 4009, 1001, 1009, a future 4010) keeps the rule.
//!
//! # Counting
//!
//! Owners answer a connection's requests in the order they were sent to
//! them, but two owners answer independently. A parked reply therefore
//! waits until as many owed replies have arrived as had been asked for when
//! it was made; that keeps it behind every earlier owed reply when they come
//! from one owner, and never makes it wait on replies asked for later.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a decided close waits for owed replies. Owners on this node
/// answer within a loop turn and Redis within a round trip; a link that
/// stops answering is declared dead (and its requests answered
/// `unavailable`) within about 3 s, so this only bounds the unexpected.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);

/// A close decided while replies were owed.
#[derive(Debug)]
struct PendingClose {
    frame: Bytes,
    deadline: Instant,
}

/// Replies owed by owners, local replies parked behind them, and a close
/// waiting for both.
#[derive(Debug, Default)]
pub struct Replies {
    /// Owed replies asked for, ever.
    asked: u64,
    /// Owed replies that have arrived, ever.
    arrived: u64,
    /// Local replies, each with the value of `asked` when it was made.
    parked: VecDeque<(u64, Bytes)>,
    parked_bytes: usize,
    close: Option<PendingClose>,
}

/// What [`Replies::request_close`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseNow {
    /// Nothing is owed: send this close frame now.
    Yes(Bytes),
    /// The close waits; [`Replies::poll_close`] hands it out.
    Waits,
    /// A close was already decided.
    AlreadyClosing,
}

impl Replies {
    /// A request was sent to an owner that will answer it.
    pub fn ask(&mut self) {
        self.asked += 1;
    }

    /// Replies owed and not yet arrived.
    pub fn owed(&self) -> u64 {
        self.asked - self.arrived
    }

    /// Bytes of local replies parked.
    pub fn parked_bytes(&self) -> usize {
        self.parked_bytes
    }

    /// Whether a close was decided (input is then ignored).
    pub fn closing(&self) -> bool {
        self.close.is_some()
    }

    /// A local reply: returns it when it may be sent now, or parks it
    /// behind the owed replies and returns `None`.
    pub fn local(&mut self, frame: Bytes) -> Option<Bytes> {
        if self.parked.is_empty() && self.owed() == 0 {
            return Some(frame);
        }
        self.parked_bytes += frame.len();
        self.parked.push_back((self.asked, frame));
        None
    }

    /// An owed reply arrived (the caller sends it first, then what
    /// [`Replies::pop_ready`] releases).
    pub fn arrived(&mut self) {
        // A miscounted extra answer must not wrap the count.
        if self.arrived < self.asked {
            self.arrived += 1;
        }
    }

    /// The next parked reply whose owed replies have all arrived.
    pub fn pop_ready(&mut self) -> Option<Bytes> {
        match self.parked.front() {
            Some(&(mark, _)) if mark <= self.arrived => {}
            _ => return None,
        }
        let (_, frame) = self.parked.pop_front()?;
        self.parked_bytes -= frame.len();
        Some(frame)
    }

    /// Forgets parked replies (a slow consumer's queue is dropped).
    pub fn drop_parked(&mut self) {
        self.parked.clear();
        self.parked_bytes = 0;
    }

    /// Decides a close with `frame` (the close frame).
    pub fn request_close(&mut self, frame: Bytes, now: Instant) -> CloseNow {
        if self.close.is_some() {
            return CloseNow::AlreadyClosing;
        }
        if self.owed() == 0 && self.parked.is_empty() {
            return CloseNow::Yes(frame);
        }
        self.close = Some(PendingClose {
            frame,
            deadline: now + REPLY_WAIT,
        });
        CloseNow::Waits
    }

    /// The close frame, once the decided close may go: every owed reply has
    /// arrived and every parked one is released, or [`REPLY_WAIT`] passed
    /// (then the caller sends what is still parked, see
    /// [`Replies::take_parked`]).
    pub fn poll_close(&mut self, now: Instant) -> Option<Bytes> {
        let ready = self.owed() == 0 && self.parked.is_empty();
        let close = self.close.as_ref()?;
        if ready || now >= close.deadline {
            return self.close.take().map(|c| c.frame);
        }
        None
    }

    /// When a decided close must go out now.
    pub fn close_deadline(&self) -> Option<Instant> {
        self.close.as_ref().map(|c| c.deadline)
    }

    /// Gives up waiting (the connection's queue overflowed: the bound
    /// wins): forgets parked replies and returns the decided close frame.
    pub fn abandon(&mut self) -> Option<Bytes> {
        self.drop_parked();
        self.close.take().map(|c| c.frame)
    }

    /// Takes every parked reply, ready or not (the wait is over).
    pub fn take_parked(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.parked_bytes = 0;
        self.parked.drain(..).map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_local_reply_goes_at_once_when_nothing_is_owed() {
        let mut r = Replies::default();
        assert_eq!(r.local(b("pong")), Some(b("pong")));
        let now = Instant::now();
        assert_eq!(r.request_close(b("close"), now), CloseNow::Yes(b("close")));
    }

    #[test]
    fn local_replies_and_the_close_wait_for_owed_ones() {
        let mut r = Replies::default();
        let now = Instant::now();
        r.ask();
        r.ask();
        assert_eq!(r.local(b("e1")), None);
        r.ask();
        assert_eq!(r.local(b("e2")), None);
        assert_eq!(r.request_close(b("close"), now), CloseNow::Waits);
        assert!(r.closing());
        assert_eq!(r.request_close(b("x"), now), CloseNow::AlreadyClosing);
        assert_eq!(r.parked_bytes(), 4);
        r.arrived();
        assert_eq!(r.pop_ready(), None);
        r.arrived();
        assert_eq!(r.pop_ready(), Some(b("e1")));
        assert_eq!(r.pop_ready(), None);
        assert_eq!(r.poll_close(now), None);
        r.arrived();
        assert_eq!(r.pop_ready(), Some(b("e2")));
        assert_eq!(r.poll_close(now), Some(b("close")));
        assert!(!r.closing());
    }

    #[test]
    fn the_close_goes_at_its_deadline_with_whatever_is_parked() {
        let mut r = Replies::default();
        let now = Instant::now();
        r.ask();
        assert_eq!(r.local(b("e")), None);
        assert_eq!(r.request_close(b("close"), now), CloseNow::Waits);
        assert_eq!(r.close_deadline(), Some(now + REPLY_WAIT));
        assert_eq!(r.poll_close(now + REPLY_WAIT / 2), None);
        assert_eq!(r.poll_close(now + REPLY_WAIT), Some(b("close")));
        assert_eq!(r.take_parked().collect::<Vec<_>>(), vec![b("e")]);
        assert_eq!(r.parked_bytes(), 0);
    }

    #[test]
    fn a_reply_parked_behind_later_asks_waits_only_for_earlier_ones() {
        let mut r = Replies::default();
        r.ask();
        assert_eq!(r.local(b("e")), None);
        r.ask();
        r.arrived();
        assert_eq!(r.pop_ready(), Some(b("e")));
        // A later local reply still queues behind the one parked before it.
        assert_eq!(r.local(b("f")), None);
        r.arrived();
        assert_eq!(r.pop_ready(), Some(b("f")));
        assert_eq!(r.local(b("g")), Some(b("g")));
    }

    #[test]
    fn abandoning_hands_out_the_close_and_forgets_parked() {
        let mut r = Replies::default();
        r.ask();
        assert_eq!(r.local(b("e")), None);
        assert_eq!(r.abandon(), None);
        assert_eq!(r.request_close(b("close"), Instant::now()), CloseNow::Waits);
        assert_eq!(r.abandon(), Some(b("close")));
        assert_eq!((r.parked_bytes(), r.closing()), (0, false));
        assert_eq!(r.pop_ready(), None);
    }

    #[test]
    fn an_extra_arrival_does_not_wrap() {
        let mut r = Replies::default();
        r.arrived();
        assert_eq!(r.owed(), 0);
        r.ask();
        assert_eq!(r.owed(), 1);
    }
}
