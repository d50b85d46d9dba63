//! Who a message is for: one id for a connection, with every conversion to
//! the numbers it travels as (slab key, `mio::Token`, registry handle) in
//! this one place.
//!
//! A worker keeps its connections in a slab, whose keys are reused; the
//! serial given with each connection tells a reused slot from the
//! connection a late message was meant for.

use mio::Token;

use crate::registry::Handle;

/// The worker's wake-up token (cross-worker queues).
pub const WAKER: Token = Token(0);
/// The worker's listening socket.
pub const LISTENER: Token = Token(1);
/// The worker's Redis connection, in Redis mode.
pub const REDIS: Token = Token(2);
/// Tokens from here on are connections: token = slab key + `FIRST_CONN`.
const FIRST_CONN: usize = 3;
/// Most links a worker has to Redis Cluster nodes; theirs are the top
/// tokens, counted down from `usize::MAX`.
pub const SHARD_LINKS: usize = 1024;

/// The token of a worker's link number `i` to a Redis Cluster node.
pub fn shard_token(i: usize) -> Token {
    Token(usize::MAX - i)
}

/// The link number of a cluster node link's token.
pub fn shard_of(token: Token) -> Option<usize> {
    let i = usize::MAX - token.0;
    (i < SHARD_LINKS).then_some(i)
}

/// A connection anywhere on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    worker: u16,
    key: u32,
    serial: u32,
}

impl ConnId {
    /// The connection in slot `key` of worker `worker`'s slab, given with
    /// `serial`.
    pub fn new(worker: usize, key: usize, serial: u32) -> Self {
        ConnId {
            worker: u16::try_from(worker).expect("at most 65 536 workers"),
            key: u32::try_from(key).expect("at most 2^32 connections per worker"),
            serial,
        }
    }

    /// The worker the connection lives on (where its replies go).
    pub fn worker(self) -> usize {
        usize::from(self.worker)
    }

    /// Its slab key on that worker.
    pub fn key(self) -> usize {
        self.key as usize
    }

    pub fn serial(self) -> u32 {
        self.serial
    }

    /// Its poll token on its worker.
    pub fn token(self) -> Token {
        token_of(self.key())
    }

    /// Its entry in its worker's fan-out registry.
    pub fn handle(self) -> Handle {
        Handle {
            key: self.key,
            serial: self.serial,
        }
    }
}

/// The poll token of slab key `key`.
pub fn token_of(key: usize) -> Token {
    Token(key + FIRST_CONN)
}

/// The slab key of a connection's token; `None` for a reserved token.
pub fn key_of(token: Token) -> Option<usize> {
    token
        .0
        .checked_sub(FIRST_CONN)
        .filter(|_| shard_of(token).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_reserved_tokens_are_no_keys() {
        let id = ConnId::new(3, 41, 7);
        assert_eq!((id.worker(), id.key(), id.serial()), (3, 41, 7));
        assert_eq!(key_of(id.token()), Some(41));
        assert_eq!(id.handle(), Handle { key: 41, serial: 7 });
        for reserved in [
            WAKER,
            LISTENER,
            REDIS,
            shard_token(0),
            shard_token(SHARD_LINKS - 1),
        ] {
            assert_eq!(key_of(reserved), None);
        }
        assert_eq!(shard_of(shard_token(5)), Some(5));
        assert_eq!(shard_of(token_of(5)), None);
        assert_eq!(shard_of(REDIS), None);
    }
}
