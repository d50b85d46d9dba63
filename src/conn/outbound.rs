//! The bounded queue of frames waiting to be written to one connection.
//!
//! Broadcast frames are shared `Bytes`: queueing one is a reference-count
//! increment, never a copy. The queue counts the bytes not yet written to the
//! socket and refuses a frame that would pass the connection's limit; the
//! caller turns that refusal into the slow-consumer close (PROTOCOL.md §8,
//! 4008). Writing is vectored: [`Outbound::io_slices`] lends the front frames
//! to one `writev`, and [`Outbound::advance`] drops what the kernel took, so
//! every frame queued in one loop turn leaves in one system call.
//! [`Outbound::write_to`] is that loop over any [`Write`], so the worker's
//! sockets and the benches' in-memory writers run the same code.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// How many frames one `writev` carries at most (Linux allows 1024; more
/// iovecs per call stop paying off well before that).
pub const MAX_IOV: usize = 64;

/// A queue that refuses to grow past its limit.
#[derive(Debug, Default)]
pub struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes queued and not yet written, across all frames.
    queued: usize,
    /// The front frame has been partly written, so it must go out whole.
    started: bool,
}

/// The frame did not fit under the limit; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub queued: usize,
    pub limit: usize,
}

impl Outbound {
    /// Queues `frame` unless that would put more than `limit` bytes in the
    /// queue.
    pub fn push(&mut self, frame: Bytes, limit: usize) -> Result<(), Overflow> {
        if self.queued + frame.len() > limit {
            return Err(Overflow {
                queued: self.queued,
                limit,
            });
        }
        self.push_unbounded(frame);
        Ok(())
    }

    /// Queues a frame the server itself must send whatever the limit says (a
    /// close frame, a handshake response): small and at most one per event.
    pub fn push_unbounded(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.queued += frame.len();
        self.frames.push_back(frame);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Gives back the capacity of an empty queue but one slot (a heartbeat
    /// ping's). Called for a connection with nothing queued at a heartbeat,
    /// so an idle connection holds 32 bytes of queue rather than what its
    /// last burst grew; delivery keeps the capacity it grows between
    /// heartbeats, so the fan-out path still allocates nothing per
    /// recipient in steady traffic.
    pub fn trim(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 1 {
            self.frames = VecDeque::with_capacity(1);
        }
    }

    /// Slots the queue holds without allocating.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.frames.capacity()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Fills `slices` with the front frames; returns how many were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, frame) in slices.iter_mut().zip(self.frames.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        n
    }

    /// Writes queued frames to `w` until the queue is empty or `w` is full;
    /// returns the bytes written.
    ///
    /// # Draining readiness
    ///
    /// The loop stops at `WouldBlock`, and also at a short write: for a
    /// stream socket, fewer bytes taken than offered means the send buffer
    /// is full and the kernel has armed the next writable edge (epoll(7),
    /// "edge-triggered"), so the call that would only return `EAGAIN` is
    /// skipped. A single frame goes out with `write`, several with one
    /// `writev` of up to [`MAX_IOV`] frames.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while let Some(front) = self.frames.front() {
            let (offered, result) = if self.frames.len() == 1 {
                (front.len(), w.write(front))
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = self.io_slices(&mut slices);
                let offered = slices[..n].iter().map(|s| s.len()).sum();
                (offered, w.write_vectored(&slices[..n]))
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    total += written;
                    self.advance(written);
                    if written < offered {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Drops the first `written` bytes, as reported by the kernel.
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.queued);
        self.queued -= written.min(self.queued);
        while written > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                self.frames.pop_front();
                self.started = false;
            } else {
                front.advance(written);
                written = 0;
                self.started = true;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 16 {
            // A burst is over: give the memory back so an idle connection
            // holds no large buffer.
            self.frames = VecDeque::new();
        }
    }

    /// Drops every frame not yet started, keeping a partly written one whole
    /// so the byte stream stays a sequence of complete frames. Used before a
    /// close frame is queued on a connection that is being given up.
    pub fn truncate_unstarted(&mut self) {
        let keep = usize::from(self.started && !self.frames.is_empty());
        self.frames.truncate(keep);
        self.queued = self.frames.iter().map(Bytes::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, b: u8) -> Bytes {
        Bytes::from(vec![b; n])
    }

    #[test]
    fn push_refuses_past_the_limit_and_keeps_the_queue() {
        let mut q = Outbound::default();
        q.push(frame(6, 1), 10).unwrap();
        assert_eq!(
            q.push(frame(5, 2), 10),
            Err(Overflow {
                queued: 6,
                limit: 10
            })
        );
        q.push(frame(4, 3), 10).unwrap();
        assert_eq!(q.queued_bytes(), 10);
    }

    #[test]
    fn advance_across_frames_and_into_one() {
        let mut q = Outbound::default();
        q.push(frame(3, 1), 100).unwrap();
        q.push(frame(4, 2), 100).unwrap();
        q.advance(5);
        assert_eq!(q.queued_bytes(), 2);
        let mut s = [IoSlice::new(&[]); 4];
        assert_eq!(q.io_slices(&mut s), 1);
        assert_eq!(&*s[0], &[2, 2]);
        q.advance(2);
        assert!(q.is_empty());
    }

    #[test]
    fn io_slices_stop_at_the_slot_count() {
        let mut q = Outbound::default();
        for i in 0..10 {
            q.push(frame(1, i), 100).unwrap();
        }
        let mut s = [IoSlice::new(&[]); 4];
        assert_eq!(q.io_slices(&mut s), 4);
        assert_eq!(&*s[3], &[3]);
    }

    #[test]
    fn truncate_keeps_a_started_frame_whole() {
        let mut q = Outbound::default();
        q.push(frame(4, 1), 100).unwrap();
        q.push(frame(4, 2), 100).unwrap();
        q.truncate_unstarted();
        assert_eq!(q.queued_bytes(), 0, "nothing started: all dropped");
        q.push(frame(4, 1), 100).unwrap();
        q.push(frame(4, 2), 100).unwrap();
        q.advance(1);
        q.truncate_unstarted();
        assert_eq!(q.queued_bytes(), 3);
        q.advance(3);
        q.truncate_unstarted();
        assert!(q.is_empty());
    }

    /// Takes up to `budget` bytes per call, then answers `WouldBlock`;
    /// records how many buffers each call was offered.
    struct Mock {
        budget: usize,
        taken: Vec<u8>,
        calls: Vec<usize>,
        interrupt_first: bool,
    }

    impl Mock {
        fn new(budget: usize) -> Self {
            Mock {
                budget,
                taken: Vec::new(),
                calls: Vec::new(),
                interrupt_first: false,
            }
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls.push(bufs.len());
            if std::mem::take(&mut self.interrupt_first) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.budget);
                self.taken.extend_from_slice(&b[..take]);
                self.budget -= take;
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_to_sends_a_turn_of_frames_in_one_call() {
        let mut q = Outbound::default();
        for i in 0..5 {
            q.push(frame(3, i), 100).unwrap();
        }
        let mut w = Mock::new(1000);
        assert_eq!(q.write_to(&mut w).unwrap(), 15);
        assert_eq!(w.calls, [5], "one writev, no call after the queue emptied");
        assert!(q.is_empty());
        assert_eq!(w.taken, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    }

    #[test]
    fn write_to_stops_at_a_short_write_without_another_call() {
        let mut q = Outbound::default();
        q.push(frame(4, 1), 100).unwrap();
        q.push(frame(4, 2), 100).unwrap();
        let mut w = Mock::new(6);
        assert_eq!(q.write_to(&mut w).unwrap(), 6);
        assert_eq!(w.calls.len(), 1);
        assert_eq!(q.queued_bytes(), 2);
        // The rest goes out whole on the next writable edge.
        w.budget = 100;
        assert_eq!(q.write_to(&mut w).unwrap(), 2);
        assert_eq!(w.taken, [1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn write_to_stops_at_would_block_and_retries_interrupted() {
        let mut q = Outbound::default();
        q.push(frame(4, 1), 100).unwrap();
        let mut w = Mock::new(0);
        assert_eq!(q.write_to(&mut w).unwrap(), 0);
        assert_eq!(q.queued_bytes(), 4);
        let mut w = Mock::new(100);
        w.interrupt_first = true;
        assert_eq!(q.write_to(&mut w).unwrap(), 4);
        assert_eq!(w.calls, [1, 1]);
    }

    #[test]
    fn write_to_carries_at_most_max_iov_frames_per_call() {
        let mut q = Outbound::default();
        for _ in 0..MAX_IOV + 3 {
            q.push(frame(1, 9), 1000).unwrap();
        }
        let mut w = Mock::new(1000);
        assert_eq!(q.write_to(&mut w).unwrap(), MAX_IOV + 3);
        assert_eq!(w.calls, [MAX_IOV, 3]);
    }

    #[test]
    fn write_to_reports_a_zero_write() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = Outbound::default();
        q.push(frame(1, 1), 10).unwrap();
        let e = q.write_to(&mut Zero).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn shared_frames_are_not_copied() {
        let f = frame(8, 7);
        let mut a = Outbound::default();
        let mut b = Outbound::default();
        a.push(f.clone(), 100).unwrap();
        b.push(f.clone(), 100).unwrap();
        let mut s = [IoSlice::new(&[]); 1];
        a.io_slices(&mut s);
        assert_eq!(s[0].as_ptr(), f.as_ptr());
    }
}
