//! Which of the 16384 slots a key hashes to (Redis Cluster specification,
//! "Key distribution model" and "Hash tags").
//!
//! The slot is CRC16 (XMODEM) of the key modulo 16384, or of the hash tag
//! when the key has one: the bytes between the first `{` and the first `}`
//! after it, when that is not empty. `redis-protocol` (already our RESP
//! codec) implements exactly this as `redis_keyslot`, so we use it rather
//! than a second CRC table.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The slot of `key`, hash tag rules included.
pub fn key_slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// The slot of every key of `channel`: its keys are `PREFIX{CHANNEL}:SUFFIX`
/// (see `Keys` in the Redis owner), so they share the tag and the slot, as
/// long as the prefix holds no `{` (the configuration refuses one in cluster
/// mode). Computed from the key itself so that a channel name holding a `}`
/// hashes as Redis hashes it.
pub fn channel_slot(prefix: &str, channel: &str) -> u16 {
    let mut key = Vec::with_capacity(prefix.len() + channel.len() + 5);
    key.extend_from_slice(prefix.as_bytes());
    key.push(b'{');
    key.extend_from_slice(channel.as_bytes());
    key.extend_from_slice(b"}:ch");
    key_slot(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures from `redis-cli CLUSTER KEYSLOT` (Redis 7.0) and the
    /// specification's CRC16 check value (`123456789` -> 0x31C3).
    #[test]
    fn slots_match_redis() {
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        // An empty tag means the whole key is hashed.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        // Only the first `{` ... `}` counts.
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn every_key_of_a_channel_shares_its_slot() {
        for ch in ["room:1", "a", "chat:xyz", "odd}name", "n:{x"] {
            let slot = channel_slot("sb:", ch);
            for suffix in ["pr", "ch", "hm", "hs"] {
                let key = format!("sb:{{{ch}}}:{suffix}");
                assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
            }
            assert!(slot < SLOTS);
        }
        assert_eq!(channel_slot("sb:", "room:1"), key_slot(b"room:1"));
    }
}
