//! The slot map: which master serves each of the 16384 slots, read from
//! `CLUSTER SHARDS` (Redis 7) or, on older servers, `CLUSTER SLOTS`.
//!
//! Only masters that report themselves `online` are kept: during a failover
//! the failed master's shard has no such node until its replica is
//! promoted, so its slots are unassigned and their channels answer
//! `unavailable` while every other shard carries on (PROTOCOL.md 1.1 §13).
//!
//! Replies are read from our RESP3 [`Value`]s; a map may also arrive as a
//! flat array of key/value pairs (RESP2 form), and both are accepted.

use crate::resp::Value;

use super::slot::SLOTS;
use super::NodeAddr;

/// A slot without a master.
const NONE: u16 = u16::MAX;

/// Which master serves each slot.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    masters: Vec<NodeAddr>,
    /// Index into `masters` per slot, [`NONE`] when unassigned.
    owner: Box<[u16]>,
}

impl std::fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMap")
            .field("masters", &self.masters)
            .field("unassigned", &self.unassigned())
            .finish()
    }
}

/// Why a reply is not a slot map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The reply is an error (e.g. `ERR unknown subcommand` before 7.0).
    Refused,
    /// The reply does not have the documented shape; names what is wrong.
    Shape(&'static str),
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Refused => f.write_str("slot map: the node refused the command"),
            MapError::Shape(what) => write!(f, "slot map: {what}"),
        }
    }
}

impl std::error::Error for MapError {}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap::empty()
    }
}

impl SlotMap {
    /// No slot assigned.
    pub fn empty() -> SlotMap {
        SlotMap {
            masters: Vec::new(),
            owner: vec![NONE; usize::from(SLOTS)].into_boxed_slice(),
        }
    }

    /// From a `CLUSTER SHARDS` reply of the node at `asked` (whose host
    /// stands in for an unknown endpoint). `tls`: use each node's
    /// `tls-port` when it reports one.
    pub fn from_shards(reply: &Value, asked: &NodeAddr, tls: bool) -> Result<SlotMap, MapError> {
        let mut map = SlotMap::empty();
        for shard in list(reply)? {
            let slots = field(shard, "slots")?.ok_or(MapError::Shape("shard without slots"))?;
            let nodes = field(shard, "nodes")?.ok_or(MapError::Shape("shard without nodes"))?;
            let mut master = None;
            for node in list(nodes)? {
                let role = field(node, "role")?.and_then(text);
                let health = field(node, "health")?.and_then(text);
                if role == Some("master") && health.is_none_or(|h| h == "online") {
                    master = Some(shard_node(node, asked, tls)?);
                }
            }
            let Some(master) = master else {
                continue; // Failed over, not yet promoted: unassigned.
            };
            let bounds = list(slots)?;
            if bounds.len() % 2 != 0 {
                return Err(MapError::Shape("odd number of slot bounds"));
            }
            for pair in bounds.chunks(2) {
                map.assign(slot(&pair[0])?, slot(&pair[1])?, &master)?;
            }
        }
        Ok(map)
    }

    /// From a `CLUSTER SLOTS` reply: `[start, end, [host, port, id, ..],
    /// replicas..]` per range.
    pub fn from_slots(reply: &Value, asked: &NodeAddr) -> Result<SlotMap, MapError> {
        let mut map = SlotMap::empty();
        for range in list(reply)? {
            let [start, end, master, ..] = list(range)? else {
                return Err(MapError::Shape("slot range with fewer than 3 fields"));
            };
            let [host, port, ..] = list(master)? else {
                return Err(MapError::Shape("master without host and port"));
            };
            let host = text(host).ok_or(MapError::Shape("host is not a string"))?;
            let master = NodeAddr {
                host: known_host(host, asked),
                port: port_of(port)?,
            };
            map.assign(slot(start)?, slot(end)?, &master)?;
        }
        Ok(map)
    }

    /// The master of `slot` and its index in [`SlotMap::masters`].
    pub fn master_of(&self, slot: u16) -> Option<(usize, &NodeAddr)> {
        let i = *self.owner.get(usize::from(slot))?;
        (i != NONE).then(|| (usize::from(i), &self.masters[usize::from(i)]))
    }

    /// Every master serving at least one slot (and, after [`SlotMap::set`],
    /// possibly one serving none any more), in a stable order.
    pub fn masters(&self) -> &[NodeAddr] {
        &self.masters
    }

    /// Slots without a master.
    pub fn unassigned(&self) -> usize {
        self.owner.iter().filter(|&&i| i == NONE).count()
    }

    /// Records that `slot` is served by `master` (after `MOVED`, until the
    /// next full map). Returns the master's index.
    pub fn set(&mut self, slot: u16, master: &NodeAddr) -> Option<usize> {
        if slot >= SLOTS {
            return None;
        }
        let i = self.index_of(master).ok()?;
        self.owner[usize::from(slot)] = i;
        Some(usize::from(i))
    }

    fn assign(&mut self, start: u16, end: u16, master: &NodeAddr) -> Result<(), MapError> {
        if start > end {
            return Err(MapError::Shape("slot range ends before it starts"));
        }
        let i = self.index_of(master)?;
        self.owner[usize::from(start)..=usize::from(end)].fill(i);
        Ok(())
    }

    fn index_of(&mut self, master: &NodeAddr) -> Result<u16, MapError> {
        if let Some(i) = self.masters.iter().position(|m| m == master) {
            return Ok(i as u16);
        }
        // At most one master per slot, so this bound is never reached by a
        // real cluster; it keeps the index below NONE.
        if self.masters.len() >= usize::from(SLOTS) {
            return Err(MapError::Shape("more masters than slots"));
        }
        self.masters.push(master.clone());
        Ok((self.masters.len() - 1) as u16)
    }
}

fn shard_node(node: &Value, asked: &NodeAddr, tls: bool) -> Result<NodeAddr, MapError> {
    let host = ["endpoint", "ip"]
        .into_iter()
        .find_map(|k| field(node, k).ok().flatten().and_then(text))
        .ok_or(MapError::Shape("node without endpoint or ip"))?;
    let port = match (tls, field(node, "tls-port")?) {
        (true, Some(p)) => p,
        _ => field(node, "port")?.ok_or(MapError::Shape("node without port"))?,
    };
    Ok(NodeAddr {
        host: known_host(host, asked),
        port: port_of(port)?,
    })
}

/// An empty or `?` endpoint means the node does not know its address: use
/// the host we asked (specification, `cluster-preferred-endpoint-type`).
fn known_host(host: &str, asked: &NodeAddr) -> String {
    if host.is_empty() || host == "?" {
        asked.host.clone()
    } else {
        host.to_owned()
    }
}

fn list(v: &Value) -> Result<&[Value], MapError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Error(_) => Err(MapError::Refused),
        _ => Err(MapError::Shape("expected an array")),
    }
}

/// The value under `key` of a map, or of a flat key/value array.
fn field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Value>, MapError> {
    match v {
        Value::Map(pairs) => Ok(pairs
            .iter()
            .find(|(k, _)| text(k) == Some(key))
            .map(|(_, v)| v)),
        Value::Array(items) => Ok(items
            .chunks(2)
            .find(|kv| kv.len() == 2 && text(&kv[0]) == Some(key))
            .map(|kv| &kv[1])),
        _ => Err(MapError::Shape("expected a map")),
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Bulk(b) | Value::Simple(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn slot(v: &Value) -> Result<u16, MapError> {
    match v {
        Value::Int(n) if (0..i64::from(SLOTS)).contains(n) => Ok(*n as u16),
        _ => Err(MapError::Shape("slot is not a number below 16384")),
    }
}

fn port_of(v: &Value) -> Result<u16, MapError> {
    match v {
        Value::Int(n) if (1..=i64::from(u16::MAX)).contains(n) => Ok(*n as u16),
        _ => Err(MapError::Shape("port is not 1-65535")),
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
