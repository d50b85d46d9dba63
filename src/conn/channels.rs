//! The channels one WebSocket joined or is joining, as the client sees them.
//!
//! Every open connection has one, and most hold one or a few channels, so
//! it is a sorted `Vec` sized to its contents rather than a hash set: 24
//! bytes in the session and 16 per channel on the heap, where a `HashSet`
//! costs 48 bytes and a table of at least four slots plus control bytes.
//! Lookups are binary searches; an insert or removal moves at most
//! `--max-channels` pointers, on a join or a leave, never on delivery.

use std::sync::Arc;

/// A set of channel names, sorted.
#[derive(Debug, Default)]
pub struct ChannelSet {
    names: Vec<Arc<str>>,
}

impl ChannelSet {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.names.binary_search_by(|c| (**c).cmp(channel))
    }

    /// The stored name equal to `channel`.
    pub fn get(&self, channel: &str) -> Option<&Arc<str>> {
        self.find(channel).ok().map(|i| &self.names[i])
    }

    /// Adds `channel`; false when it was already there.
    pub fn insert(&mut self, channel: Arc<str>) -> bool {
        match self.find(&channel) {
            Ok(_) => false,
            Err(i) => {
                // Grows by one: joins are rare, idle connections many.
                self.names.reserve_exact(1);
                self.names.insert(i, channel);
                true
            }
        }
    }

    /// Removes `channel` and returns the stored name.
    pub fn take(&mut self, channel: &str) -> Option<Arc<str>> {
        let i = self.find(channel).ok()?;
        let name = self.names.remove(i);
        if self.names.is_empty() {
            self.names = Vec::new();
        }
        Some(name)
    }

    /// Removes `channel`; false when it was not there.
    pub fn remove(&mut self, channel: &str) -> bool {
        self.take(channel).is_some()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.names.iter()
    }

    /// Empties the set, releasing its memory.
    pub fn drain(&mut self) -> impl Iterator<Item = Arc<str>> {
        std::mem::take(&mut self.names).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_names() {
        let mut s = ChannelSet::default();
        assert!(s.insert("b".into()));
        assert!(s.insert("a".into()));
        assert!(!s.insert("b".into()), "no duplicates");
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a").map(|c| &**c), Some("a"));
        assert!(s.get("c").is_none());
        assert_eq!(s.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.take("a").as_deref(), Some("a"));
        assert!(!s.remove("a"));
        assert!(s.remove("b"));
        assert!(s.is_empty());
        s.insert("x".into());
        assert_eq!(s.drain().count(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn one_channel_costs_one_slot() {
        let mut s = ChannelSet::default();
        s.insert("room".into());
        assert_eq!(s.names.capacity(), 1);
        assert_eq!(std::mem::size_of::<ChannelSet>(), 24);
    }
}
