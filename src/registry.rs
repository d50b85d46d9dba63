//! One worker's fan-out index: for each channel, the local connections that
//! receive its events.
//!
//! Pure and small on purpose: the delivery loop walks a `Vec` of slab
//! handles, the cheapest thing to iterate, and membership changes (rare next
//! to deliveries) pay a linear scan.
//!
//! [`Registry::deliver`] is that loop. It is generic over what a connection
//! is ([`Recipient`]), so the worker runs it over its sockets and the benches
//! over in-memory connections: one channel lookup per message, then per
//! member a slab index, a serial check and a reference-count increment, with
//! no allocation once the queues have their capacity. A member that
//! negotiated permessage-deflate gets the broadcast's compressed twin for its
//! window size, which the first such member (on any worker) compresses and
//! every later one shares: no compression and no allocation per member.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use crate::conn::{Outbound, Overflow};
use crate::ws::deflate::{Broadcast, Deflater, WindowBits};

/// A slab key with the serial of the connection it was given to, so a stale
/// entry for a reused slot is recognised and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub key: u32,
    pub serial: u32,
}

/// What the delivery loop needs of a connection.
pub trait Recipient {
    /// The serial the connection's slab slot was given with.
    fn serial(&self) -> u32;
    /// Where its events go; `None` when it takes no more (its close is
    /// decided, and the owner's `Left` is on its way).
    fn outbound(&mut self) -> Option<&mut Outbound>;
    /// Flags the connection for the end-of-turn flush; true when it was not
    /// flagged yet (the caller then lists it once).
    fn mark_dirty(&mut self) -> bool;
    /// The compressor window it negotiated with permessage-deflate; `None`
    /// (the default) for a connection that gets plain frames.
    fn deflate(&self) -> Option<WindowBits> {
        None
    }
}

/// What deliveries did, besides queueing: the connections to write, in
/// the order they were queued to, and the slow consumers found.
#[derive(Debug, Default)]
pub struct Fanout {
    /// Connections queued to, each listed once per flush; those before
    /// `written` are written already (the driver writes them in rounds).
    pub dirty: Vec<usize>,
    written: usize,
    /// Connections whose queue was full: slow consumers to close (4008).
    pub slow: Vec<usize>,
}

impl Fanout {
    /// Whether listed connections still wait to be written.
    pub fn waiting(&self) -> bool {
        self.written < self.dirty.len()
    }

    /// The places in `dirty` of the next round of at most `n` connections.
    pub fn next_round(&self, n: usize) -> std::ops::Range<usize> {
        self.written..self.dirty.len().min(self.written + n)
    }

    /// The round up to `end` is written. The list is kept within twice the
    /// connections still waiting.
    pub fn round_written(&mut self, end: usize) {
        self.written = end;
        if self.written == self.dirty.len() {
            self.dirty.clear();
            self.written = 0;
        } else if self.written > self.dirty.len() / 2 {
            self.dirty.drain(..self.written);
            self.written = 0;
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    channels: HashMap<Arc<str>, Vec<Handle>>,
}

impl Registry {
    /// Adds `h` to `channel`; returns false when it was already there.
    pub fn add(&mut self, channel: &Arc<str>, h: Handle) -> bool {
        let list = self.channels.entry(channel.clone()).or_default();
        if list.contains(&h) {
            return false;
        }
        list.push(h);
        true
    }

    /// Removes `h` from `channel`; returns false when it was not there.
    pub fn remove(&mut self, channel: &str, h: Handle) -> bool {
        let Some(list) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(i) = list.iter().position(|x| *x == h) else {
            return false;
        };
        list.swap_remove(i);
        if list.is_empty() {
            self.channels.remove(channel);
        }
        true
    }

    /// The local members of `channel`.
    pub fn members(&self, channel: &str) -> &[Handle] {
        self.channels.get(channel).map_or(&[], Vec::as_slice)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Queues `frame` for every live member of `channel` but `except`, each
    /// under `limit` bytes; returns how many were queued. Newly flagged
    /// connections go to `out.dirty`, the full ones to `out.slow` (nothing
    /// was queued for them). `deflater` compresses a twin of `frame` the
    /// first time a member needs one.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver<R: Recipient>(
        &self,
        channel: &str,
        frame: &Broadcast,
        except: Option<Handle>,
        limit: usize,
        conns: &mut Slab<R>,
        out: &mut Fanout,
        deflater: &mut Deflater,
    ) -> u64 {
        let mut queued = 0;
        for &h in self.members(channel) {
            if except == Some(h) {
                continue;
            }
            let key = h.key as usize;
            let Some(conn) = conns.get_mut(key).filter(|c| c.serial() == h.serial) else {
                continue;
            };
            let window = conn.deflate();
            let Some(queue) = conn.outbound() else {
                continue;
            };
            let frame = frame.frame_for(window, deflater).clone();
            if let Err(Overflow { .. }) = queue.push(frame, limit) {
                out.slow.push(key);
                continue;
            }
            queued += 1;
            if conn.mark_dirty() {
                out.dirty.push(key);
            }
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn h(key: u32) -> Handle {
        Handle { key, serial: 1 }
    }

    #[test]
    fn rounds_write_the_oldest_first_and_keep_the_list_short() {
        let mut f = Fanout::default();
        f.dirty.extend(0..10);
        assert_eq!(f.next_round(4), 0..4);
        f.round_written(4);
        assert!(f.waiting());
        assert_eq!(f.next_round(4), 4..8);
        f.round_written(8);
        // Past half the list: the written part is dropped.
        assert_eq!((f.dirty.len(), f.next_round(4)), (2, 0..2));
        f.dirty.push(10);
        f.round_written(3);
        assert!(!f.waiting() && f.dirty.is_empty());
    }

    #[test]
    fn add_is_idempotent_and_remove_forgets_empty_channels() {
        let mut r = Registry::default();
        let c: Arc<str> = "doc:1".into();
        assert!(r.add(&c, h(1)));
        assert!(!r.add(&c, h(1)));
        assert!(r.add(&c, h(2)));
        assert_eq!(r.members("doc:1").len(), 2);
        assert!(r.remove("doc:1", h(1)));
        assert!(!r.remove("doc:1", h(1)));
        assert!(r.remove("doc:1", h(2)));
        assert_eq!(r.channel_count(), 0);
        assert!(r.members("doc:1").is_empty());
    }

    #[derive(Default)]
    struct Mock {
        serial: u32,
        out: Outbound,
        dirty: bool,
    }

    impl Recipient for Mock {
        fn serial(&self) -> u32 {
            self.serial
        }
        fn outbound(&mut self) -> Option<&mut Outbound> {
            Some(&mut self.out)
        }
        fn mark_dirty(&mut self) -> bool {
            !std::mem::replace(&mut self.dirty, true)
        }
    }

    #[test]
    fn deliver_skips_except_stale_and_full_and_lists_each_once() {
        let mut conns = Slab::new();
        let c: Arc<str> = "c".into();
        let mut r = Registry::default();
        for serial in 1..=4 {
            let key = conns.insert(Mock {
                serial,
                ..Mock::default()
            }) as u32;
            r.add(&c, Handle { key, serial });
        }
        // A handle whose slot was reused by another connection.
        r.add(&c, Handle { key: 3, serial: 99 });
        conns[2]
            .out
            .push(Bytes::from_static(b"0123456789"), 100)
            .unwrap();
        let frame = Broadcast::from(Bytes::from_static(b"frame"));
        let mut out = Fanout::default();
        let mut d = Deflater::default();
        let except = Some(Handle { key: 0, serial: 1 });
        assert_eq!(
            r.deliver("c", &frame, except, 12, &mut conns, &mut out, &mut d),
            2
        );
        assert_eq!(out.dirty, [1, 3]);
        assert_eq!(out.slow, [2]);
        assert!(conns[0].out.is_empty(), "the sender was skipped");
        assert_eq!(conns[2].out.queued_bytes(), 10, "nothing queued when full");
        // Already flagged: queued again but not listed twice.
        out.dirty.clear();
        out.slow.clear();
        assert_eq!(
            r.deliver("c", &frame, None, 100, &mut conns, &mut out, &mut d),
            4
        );
        assert_eq!(out.dirty, [0, 2]);
        assert_eq!(conns[1].out.queued_bytes(), 10);
        assert_eq!(
            r.deliver("nobody", &frame, None, 100, &mut conns, &mut out, &mut d),
            0
        );
    }

    #[test]
    fn compressing_members_share_one_twin_per_window() {
        use crate::ws::{server_frame, OpCode};
        let mut conns = Slab::new();
        let c: Arc<str> = "c".into();
        let mut r = Registry::default();
        let windows = [None, Some(15), Some(15), Some(10), None, Some(10), Some(15)];
        for (i, w) in windows.iter().enumerate() {
            let serial = i as u32 + 1;
            let key = conns.insert(Deflating {
                mock: Mock {
                    serial,
                    ..Mock::default()
                },
                window: w.map(WindowBits::new),
            }) as u32;
            r.add(&c, Handle { key, serial });
        }
        let payload =
            br#"{"type":"user_action","action":{"text":"hello hello hello hello hello"}}"#;
        let plain = server_frame(OpCode::Text, payload);
        let frame = Broadcast::new(plain.clone(), Some(16));
        let mut out = Fanout::default();
        let mut d = Deflater::default();
        assert_eq!(
            r.deliver("c", &frame, None, 1000, &mut conns, &mut out, &mut d),
            7
        );
        assert_eq!(d.compressions(), 2, "one per window size in use");
        let front = |k: usize| {
            let mut s = [std::io::IoSlice::new(&[]); 1];
            conns[k].mock.out.io_slices(&mut s);
            s[0].as_ptr()
        };
        assert_eq!(front(0), plain.as_ptr());
        assert_eq!(front(4), plain.as_ptr());
        assert_eq!(front(1), front(2));
        assert_eq!(front(1), front(6));
        assert_eq!(front(3), front(5));
        assert_ne!(front(1), front(3));
        assert!(conns[1].mock.out.queued_bytes() < plain.len());
    }

    struct Deflating {
        mock: Mock,
        window: Option<WindowBits>,
    }

    impl Recipient for Deflating {
        fn serial(&self) -> u32 {
            self.mock.serial
        }
        fn outbound(&mut self) -> Option<&mut Outbound> {
            Some(&mut self.mock.out)
        }
        fn mark_dirty(&mut self) -> bool {
            self.mock.mark_dirty()
        }
        fn deflate(&self) -> Option<WindowBits> {
            self.window
        }
    }

    #[test]
    fn serial_tells_reused_slots_apart() {
        let mut r = Registry::default();
        let c: Arc<str> = "x".into();
        r.add(&c, Handle { key: 3, serial: 1 });
        assert!(!r.remove("x", Handle { key: 3, serial: 2 }));
        assert!(r.remove("x", Handle { key: 3, serial: 1 }));
    }
}
