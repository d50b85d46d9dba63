//! One worker's fan-out index: for each channel, the local connections that
//! receive its events.
//!
//! Pure and small on purpose: the delivery loop walks a `Vec` of slab
//! handles, the cheapest thing to iterate, and membership changes (rare next
//! to deliveries) pay a linear scan.

use std::collections::HashMap;
use std::sync::Arc;

/// A slab key with the serial of the connection it was given to, so a stale
/// entry for a reused slot is recognised and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub key: u32,
    pub serial: u32,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(key: u32) -> Handle {
        Handle { key, serial: 1 }
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

    #[test]
    fn serial_tells_reused_slots_apart() {
        let mut r = Registry::default();
        let c: Arc<str> = "x".into();
        r.add(&c, Handle { key: 3, serial: 1 });
        assert!(!r.remove("x", Handle { key: 3, serial: 2 }));
        assert!(r.remove("x", Handle { key: 3, serial: 1 }));
    }
}
