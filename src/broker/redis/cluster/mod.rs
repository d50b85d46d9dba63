//! Redis Cluster, the pure parts (PROTOCOL.md 1.1 §13): the slot of a
//! channel, the slot map, redirections, and the per-worker [`Router`] that
//! says which master a channel's commands and its `SSUBSCRIBE` go to.
//!
//! Nothing here touches a socket or a clock. The Redis owner keeps one link
//! per master it needs and asks the router, per channel, which one; every
//! command of a channel and its shard subscription go on that one link, so
//! Redis's order of the channel is still the order every node delivers.
//!
//! | file | what |
//! | --- | --- |
//! | `slot.rs` | CRC16 slot of a key and of a channel's hash tag |
//! | `map.rs` | [`SlotMap`] from `CLUSTER SHARDS` / `CLUSTER SLOTS` |
//! | `redirect.rs` | `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN` |

mod map;
mod owner;
pub mod redirect;
mod slot;

use std::fmt;

pub use map::{MapError, SlotMap};
pub use owner::{ClusterOwner, MAX_TRIES};
pub use redirect::{Endpoint, Redirect, RedirectError};
pub use slot::{channel_slot, key_slot, SLOTS};

/// A cluster node's address as the cluster names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a channel's commands go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The master at this index of [`Router::masters`].
    Master(usize),
    /// No master serves the channel's slot (failover in progress, or the
    /// map is not known yet): answer `unavailable`.
    Unavailable,
}

/// What to do with a command whose reply was an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Not a cluster error: the reply stands as it is.
    Reply,
    /// The slot moved for good: the map now says so (send again by
    /// [`Router::route`]), and a full refresh is due
    /// ([`Router::refresh_due`]). The channel's subscription moves too.
    Moved { master: usize },
    /// Send this one command to `to` after `ASKING`; the map is unchanged.
    Ask { to: NodeAddr },
    /// Send the same command again after a short pause.
    TryAgain,
    /// The cluster cannot serve the slot now: `unavailable`, and refresh.
    Unavailable,
}

/// One worker's view of the cluster: the slot map and the key prefix.
#[derive(Debug)]
pub struct Router {
    prefix: String,
    map: SlotMap,
    refresh_due: bool,
}

impl Router {
    /// A router that knows no slot yet (every channel unavailable) and
    /// wants a map.
    pub fn new(prefix: &str) -> Router {
        Router {
            prefix: prefix.to_owned(),
            map: SlotMap::empty(),
            refresh_due: true,
        }
    }

    /// The slot of `channel`'s keys.
    pub fn slot(&self, channel: &str) -> u16 {
        channel_slot(&self.prefix, channel)
    }

    /// Where `channel`'s commands and subscription go.
    pub fn route(&self, channel: &str) -> Route {
        match self.map.master_of(self.slot(channel)) {
            Some((i, _)) => Route::Master(i),
            None => Route::Unavailable,
        }
    }

    /// The masters routes point at, by index.
    pub fn masters(&self) -> &[NodeAddr] {
        self.map.masters()
    }

    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// Whether a full map should be fetched (at start, after `MOVED` or
    /// `CLUSTERDOWN`, or when a master's link failed).
    pub fn refresh_due(&self) -> bool {
        self.refresh_due
    }

    /// Asks for a full map (e.g. a master's link failed).
    pub fn want_refresh(&mut self) {
        self.refresh_due = true;
    }

    /// A fresh map replaces the old one. Indices of [`Router::masters`] may
    /// change: the caller re-routes every channel by name.
    pub fn refreshed(&mut self, map: SlotMap) {
        self.map = map;
        self.refresh_due = false;
    }

    /// Reads an error reply from the master at `asked`.
    pub fn on_error(&mut self, error: &[u8], asked: &NodeAddr) -> Follow {
        match redirect::parse(error) {
            Ok(None) => Follow::Reply,
            // A garbled redirection is still a sign that our map is wrong.
            Err(_) => {
                self.refresh_due = true;
                Follow::Unavailable
            }
            Ok(Some(Redirect::Moved { slot, to })) => {
                self.refresh_due = true;
                match self.map.set(slot, &to.resolve(asked)) {
                    Some(master) => Follow::Moved { master },
                    None => Follow::Unavailable,
                }
            }
            Ok(Some(Redirect::Ask { to, .. })) => Follow::Ask {
                to: to.resolve(asked),
            },
            Ok(Some(Redirect::TryAgain)) => Follow::TryAgain,
            Ok(Some(Redirect::ClusterDown)) => {
                self.refresh_due = true;
                Follow::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::resp::Value;

    fn addr(port: u16) -> NodeAddr {
        NodeAddr {
            host: "127.0.0.1".to_owned(),
            port,
        }
    }

    /// Slots 0-8191 on port 1, 8192-16383 on port 2, as `CLUSTER SLOTS`.
    fn halves() -> SlotMap {
        let range = |a: i64, b: i64, port: i64| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![
                    Value::Bulk(Bytes::from_static(b"127.0.0.1")),
                    Value::Int(port),
                ]),
            ])
        };
        let reply = Value::Array(vec![range(0, 8191, 1), range(8192, 16383, 2)]);
        SlotMap::from_slots(&reply, &addr(1)).unwrap()
    }

    #[test]
    fn routes_by_the_channel_slot() {
        let mut r = Router::new("sb:");
        assert!(r.refresh_due());
        assert_eq!(r.route("room:1"), Route::Unavailable);
        r.refreshed(halves());
        assert!(!r.refresh_due());
        for ch in ["room:1", "a", "b", "chat:42"] {
            let want = if r.slot(ch) < 8192 { 0 } else { 1 };
            assert_eq!(r.route(ch), Route::Master(want), "{ch}");
        }
    }

    #[test]
    fn moved_reroutes_and_asks_for_a_map() {
        let mut r = Router::new("sb:");
        r.refreshed(halves());
        let slot = r.slot("room:1");
        let before = r.route("room:1");
        let to: u16 = if before == Route::Master(0) { 2 } else { 1 };
        let err = format!("MOVED {slot} 127.0.0.1:{to}");
        let follow = r.on_error(err.as_bytes(), &addr(9));
        assert_eq!(
            follow,
            Follow::Moved {
                master: usize::from(to - 1)
            }
        );
        assert_ne!(r.route("room:1"), before);
        assert!(r.refresh_due());
    }

    #[test]
    fn ask_tryagain_clusterdown_and_plain_errors() {
        let mut r = Router::new("sb:");
        r.refreshed(halves());
        assert_eq!(
            r.on_error(b"ASK 7 :5", &addr(1)),
            Follow::Ask { to: addr(5) }
        );
        assert!(!r.refresh_due(), "ASK leaves the map alone");
        assert_eq!(r.on_error(b"TRYAGAIN later", &addr(1)), Follow::TryAgain);
        assert_eq!(r.on_error(b"NOSCRIPT x", &addr(1)), Follow::Reply);
        assert!(!r.refresh_due());
        assert_eq!(
            r.on_error(b"CLUSTERDOWN The cluster is down", &addr(1)),
            Follow::Unavailable
        );
        assert!(r.refresh_due());
    }

    #[test]
    fn addresses_show_v6_in_brackets() {
        assert_eq!(addr(7).to_string(), "127.0.0.1:7");
        let v6 = NodeAddr {
            host: "::1".to_owned(),
            port: 7,
        };
        assert_eq!(v6.to_string(), "[::1]:7");
    }
}
