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
///
/// Every open WebSocket has one, so it is two counters and a pointer: what
/// waits (rare: a local reply made while an owner's is in flight, or a
/// close) lives in a box that exists only while something waits.
#[derive(Debug, Default)]
pub struct Replies {
    /// Owed replies asked for, ever (wrapping).
    asked: u32,
    /// Owed replies that have arrived, ever (wrapping).
    arrived: u32,
    waiting: Option<Box<Waiting>>,
}

/// What waits behind owed replies.
#[derive(Debug, Default)]
struct Waiting {
    /// Local replies, each with the value of `asked` when it was made.
    parked: VecDeque<(u32, Bytes)>,
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
        self.asked = self.asked.wrapping_add(1);
    }

    /// Replies owed and not yet arrived.
    pub fn owed(&self) -> u32 {
        self.asked.wrapping_sub(self.arrived)
    }

    /// Bytes of local replies parked.
    pub fn parked_bytes(&self) -> usize {
        self.waiting.as_ref().map_or(0, |w| w.parked_bytes)
    }

    fn nothing_parked(&self) -> bool {
        self.waiting.as_ref().is_none_or(|w| w.parked.is_empty())
    }

    /// Whether a close was decided (input is then ignored).
    pub fn closing(&self) -> bool {
        self.waiting.as_ref().is_some_and(|w| w.close.is_some())
    }

    /// A local reply: returns it when it may be sent now, or parks it
    /// behind the owed replies and returns `None`.
    pub fn local(&mut self, frame: Bytes) -> Option<Bytes> {
        if self.nothing_parked() && self.owed() == 0 {
            return Some(frame);
        }
        let mark = self.asked;
        let w = self.waiting.get_or_insert_default();
        w.parked_bytes += frame.len();
        w.parked.push_back((mark, frame));
        None
    }

    /// An owed reply arrived (the caller sends it first, then what
    /// [`Replies::pop_ready`] releases).
    pub fn arrived(&mut self) {
        // A miscounted extra answer must not make the count run ahead.
        if self.owed() > 0 {
            self.arrived = self.arrived.wrapping_add(1);
        }
    }

    /// The next parked reply whose owed replies have all arrived.
    pub fn pop_ready(&mut self) -> Option<Bytes> {
        let arrived = self.arrived;
        let w = self.waiting.as_mut()?;
        let &(mark, _) = w.parked.front()?;
        // `mark <= arrived`, in wrapping arithmetic: the owed replies a
        // reply waits for are fewer than 2^31.
        if arrived.wrapping_sub(mark) > u32::MAX / 2 {
            return None;
        }
        let (_, frame) = w.parked.pop_front()?;
        w.parked_bytes -= frame.len();
        self.tidy();
        Some(frame)
    }

    /// Frees the box once nothing waits in it.
    fn tidy(&mut self) {
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| w.parked.is_empty() && w.close.is_none())
        {
            self.waiting = None;
        }
    }

    /// Forgets parked replies (a slow consumer's queue is dropped).
    pub fn drop_parked(&mut self) {
        if let Some(w) = &mut self.waiting {
            w.parked.clear();
            w.parked_bytes = 0;
        }
        self.tidy();
    }

    /// Decides a close with `frame` (the close frame).
    pub fn request_close(&mut self, frame: Bytes, now: Instant) -> CloseNow {
        if self.closing() {
            return CloseNow::AlreadyClosing;
        }
        if self.owed() == 0 && self.nothing_parked() {
            return CloseNow::Yes(frame);
        }
        self.waiting.get_or_insert_default().close = Some(PendingClose {
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
        let ready = self.owed() == 0 && self.nothing_parked();
        let w = self.waiting.as_mut()?;
        let close = w.close.as_ref()?;
        if ready || now >= close.deadline {
            return w.close.take().map(|c| c.frame);
        }
        None
    }

    /// When a decided close must go out now.
    pub fn close_deadline(&self) -> Option<Instant> {
        self.waiting.as_ref()?.close.as_ref().map(|c| c.deadline)
    }

    /// Gives up waiting (the connection's queue overflowed: the bound
    /// wins): forgets parked replies and returns the decided close frame.
    pub fn abandon(&mut self) -> Option<Bytes> {
        self.waiting.take()?.close.map(|c| c.frame)
    }

    /// Takes every parked reply, ready or not (the wait is over).
    pub fn take_parked(&mut self) -> impl Iterator<Item = Bytes> {
        let parked = self.waiting.take().map(|w| w.parked).unwrap_or_default();
        parked.into_iter().map(|(_, f)| f)
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
