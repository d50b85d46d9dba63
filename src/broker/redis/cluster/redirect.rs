//! Cluster error replies that say where to go instead (Redis Cluster
//! specification, "Moved redirection", "ASK redirection", and the
//! `TRYAGAIN`/`CLUSTERDOWN` errors of "Multi-keys operations" and "Cluster
//! state").
//!
//! - `MOVED <slot> <host>:<port>`: the slot lives elsewhere for good; send
//!   there and refresh the slot map.
//! - `ASK <slot> <host>:<port>`: the slot is migrating and this key is
//!   already at the target; send this one command there, preceded by
//!   `ASKING`, and leave the map alone.
//! - `TRYAGAIN ...`: a multi-key command during a migration; retry later.
//! - `CLUSTERDOWN ...`: the cluster cannot serve the slot now (no master
//!   for it, or no quorum); answer `unavailable` and retry later.
//!
//! The endpoint may be empty (`MOVED 3999 :6380`) when the node does not
//! know its own address: it then means "the host you asked" (specification,
//! `cluster-preferred-endpoint-type`), which the caller resolves.
//!
//! Parsing is pure and never panics on any input (fuzzed).

use super::slot::SLOTS;
use super::NodeAddr;

/// A cluster redirection or cluster-state error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot has a new owner; the map is stale.
    Moved { slot: u16, to: Endpoint },
    /// One command goes to `to`, after `ASKING`.
    Ask { slot: u16, to: Endpoint },
    /// Retry the same command later (keys of a migrating slot are split).
    TryAgain,
    /// The cluster cannot serve now.
    ClusterDown,
}

/// Where a redirection points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host and port.
    Node(NodeAddr),
    /// An empty host: the host of the node that answered, at this port.
    SameHost { port: u16 },
}

impl Endpoint {
    /// The address, with an empty host taken from `asked`.
    pub fn resolve(&self, asked: &NodeAddr) -> NodeAddr {
        match self {
            Endpoint::Node(n) => n.clone(),
            Endpoint::SameHost { port } => NodeAddr {
                host: asked.host.clone(),
                port: *port,
            },
        }
    }
}

/// Why an error reply that starts like a redirection is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectError {
    /// A field is missing or there are too many.
    Fields,
    /// The slot is not a number below 16384.
    Slot,
    /// The endpoint has no `:port`, or the port is not 1-65535.
    Endpoint,
}

impl std::fmt::Display for RedirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedirectError::Fields => "redirection: wrong number of fields",
            RedirectError::Slot => "redirection: bad slot",
            RedirectError::Endpoint => "redirection: bad host:port",
        })
    }
}

impl std::error::Error for RedirectError {}

/// Reads the text of an error reply (as in `resp::Value::Error`, code
/// first). `Ok(None)`: not a cluster error at all (`ERR ...`, `NOSCRIPT`).
pub fn parse(error: &[u8]) -> Result<Option<Redirect>, RedirectError> {
    let mut words = error.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(code) = words.next() else {
        return Ok(None);
    };
    let moved = match code {
        b"MOVED" => true,
        b"ASK" => false,
        b"TRYAGAIN" => return Ok(Some(Redirect::TryAgain)),
        b"CLUSTERDOWN" => return Ok(Some(Redirect::ClusterDown)),
        _ => return Ok(None),
    };
    let (Some(slot), Some(to), None) = (words.next(), words.next(), words.next()) else {
        return Err(RedirectError::Fields);
    };
    let slot = number(slot)
        .filter(|&s| s < u64::from(SLOTS))
        .ok_or(RedirectError::Slot)? as u16;
    let to = endpoint(to)?;
    Ok(Some(if moved {
        Redirect::Moved { slot, to }
    } else {
        Redirect::Ask { slot, to }
    }))
}

/// `host:port`, `[v6]:port` or `:port`; the port is after the last `:`.
fn endpoint(text: &[u8]) -> Result<Endpoint, RedirectError> {
    let colon = text
        .iter()
        .rposition(|&b| b == b':')
        .ok_or(RedirectError::Endpoint)?;
    let port = number(&text[colon + 1..])
        .filter(|&p| (1..=u64::from(u16::MAX)).contains(&p))
        .ok_or(RedirectError::Endpoint)? as u16;
    let mut host = &text[..colon];
    if let [b'[', inner @ .., b']'] = host {
        host = inner;
    }
    // A bracket left after the one pair is no host Redis would name, and
    // it could not be printed back unambiguously.
    if host.iter().any(|&b| b == b'[' || b == b']') {
        return Err(RedirectError::Endpoint);
    }
    if host.is_empty() {
        return Ok(Endpoint::SameHost { port });
    }
    let host = std::str::from_utf8(host).map_err(|_| RedirectError::Endpoint)?;
    if host.bytes().any(|b| b.is_ascii_control()) {
        return Err(RedirectError::Endpoint);
    }
    Ok(Endpoint::Node(NodeAddr {
        host: host.to_owned(),
        port,
    }))
}

/// A decimal of at most 5 digits (slots and ports), nothing else.
fn number(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> Endpoint {
        Endpoint::Node(NodeAddr {
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn moved_and_ask() {
        assert_eq!(
            parse(b"MOVED 3999 127.0.0.1:6381"),
            Ok(Some(Redirect::Moved {
                slot: 3999,
                to: node("127.0.0.1", 6381)
            }))
        );
        assert_eq!(
            parse(b"ASK 16383 redis-2.example:7000"),
            Ok(Some(Redirect::Ask {
                slot: 16383,
                to: node("redis-2.example", 7000)
            }))
        );
        assert_eq!(
            parse(b"MOVED 0 [::1]:7001"),
            Ok(Some(Redirect::Moved {
                slot: 0,
                to: node("::1", 7001)
            }))
        );
        assert_eq!(
            parse(b"MOVED 12 ::1:7001"),
            Ok(Some(Redirect::Moved {
                slot: 12,
                to: node("::1", 7001)
            }))
        );
    }

    #[test]
    fn empty_host_is_the_host_asked() {
        let r = parse(b"MOVED 5 :6390").unwrap().unwrap();
        let Redirect::Moved { to, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(to, Endpoint::SameHost { port: 6390 });
        let asked = NodeAddr {
            host: "10.0.0.7".to_owned(),
            port: 6379,
        };
        assert_eq!(
            to.resolve(&asked),
            NodeAddr {
                host: "10.0.0.7".to_owned(),
                port: 6390
            }
        );
    }

    #[test]
    fn state_errors() {
        assert_eq!(
            parse(b"TRYAGAIN Multiple keys request during rehashing of slot"),
            Ok(Some(Redirect::TryAgain))
        );
        assert_eq!(
            parse(b"CLUSTERDOWN Hash slot not served"),
            Ok(Some(Redirect::ClusterDown))
        );
        assert_eq!(
            parse(b"CLUSTERDOWN The cluster is down"),
            Ok(Some(Redirect::ClusterDown))
        );
    }

    #[test]
    fn other_errors_are_not_redirections() {
        for e in [
            &b"ERR unknown command"[..],
            b"NOSCRIPT No matching script",
            b"",
            b"   ",
            b"MOVEDX 1 h:1",
            b"moved 1 h:1",
        ] {
            assert_eq!(parse(e), Ok(None), "{}", String::from_utf8_lossy(e));
        }
    }

    #[test]
    fn malformed_redirections_are_errors() {
        let cases: [(&[u8], RedirectError); 12] = [
            (b"MOVED", RedirectError::Fields),
            (b"MOVED 1", RedirectError::Fields),
            (b"ASK 1 h:1 extra", RedirectError::Fields),
            (b"MOVED 16384 h:1", RedirectError::Slot),
            (b"MOVED -1 h:1", RedirectError::Slot),
            (b"MOVED 99999999999999999999 h:1", RedirectError::Slot),
            (b"MOVED 1 h", RedirectError::Endpoint),
            (b"MOVED 1 h:0", RedirectError::Endpoint),
            (b"MOVED 1 h:65536", RedirectError::Endpoint),
            (b"ASK 1 h:x", RedirectError::Endpoint),
            // Found by the fuzz target: printed back, "[]" read as no host.
            (b"ASK 1 [[]]:7", RedirectError::Endpoint),
            (b"ASK 1 [x]:y:7", RedirectError::Endpoint),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Err(want), "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(parse(b"MOVED 1 \xff:1"), Err(RedirectError::Endpoint));
    }
}
