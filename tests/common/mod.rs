//! Black-box harness for the integration tests: the real `switchboard`
//! binary started as a child process on `127.0.0.1:0`, driven by blocking
//! tungstenite clients ([`Client`]) and by a raw TCP client ([`Raw`]) that
//! hand-builds frames and HTTP heads for what tungstenite refuses to send.
//!
//! Every wait has a deadline and panics with a message saying what was
//! awaited. The only fixed wait is [`Client::expect_silence`], used where the
//! *absence* of a message is the thing under test.
//!
//! The contract these helpers rely on (besides `/work/shared/PROTOCOL.md`):
//! the server prints one line `switchboard listening on ADDR` on stdout when
//! ready, logs go to stderr, and `welcome.conn` is `<node>-<worker>-<seq hex>`.
//!
//! Files: `server.rs` (the child process), `client.rs` (tungstenite),
//! `raw.rs` (hand-built frames and HTTP), `redis.rs` (a throwaway
//! `redis-server` and nodes on it), `cluster.rs` (a throwaway Redis
//! Cluster of six of them), `order.rs` (the §4 ordering check
//! under racing publishers); this file holds what they share
//! and the helpers that place clients on workers and read `members`.
#![allow(dead_code)]

mod client;
mod cluster;
mod order;
mod raw;
mod redis;
mod server;
mod tls;

pub use client::*;
// Only the Redis Cluster tests use this.
#[allow(unused_imports)]
pub use cluster::*;
// Only the ordering tests use this.
#[allow(unused_imports)]
pub use order::*;
pub use raw::*;
// Only the Redis-mode tests use these.
#[allow(unused_imports)]
pub use redis::*;
pub use server::*;
// Only the TLS tests use these.
#[allow(unused_imports)]
pub use tls::*;

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{Message, WebSocket};

/// Default deadline for any single awaited event.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for. Short on purpose: it is only
/// used after a barrier (a later reply that did arrive), so a message that
/// should not exist would already be in flight.
pub const SILENCE: Duration = Duration::from_millis(300);

pub fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Time left before `deadline`, never zero (a zero socket timeout is an error).
pub fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

/// The worker index of a `conn` id `<node>-<worker>-<seq hex>`, parsed from
/// the right because the node id may itself contain `-`.
pub fn worker_of(conn: &str) -> usize {
    let mut parts = conn.rsplitn(3, '-');
    let seq = parts.next().unwrap_or_default();
    let worker = parts.next().unwrap_or_default();
    let node = parts.next();
    assert!(
        node.is_some_and(|n| !n.is_empty())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_hexdigit()),
        "conn {conn:?} is not <node>-<worker>-<seq hex>"
    );
    worker
        .parse()
        .unwrap_or_else(|_| panic!("conn {conn:?}: worker {worker:?} is not a number"))
}

/// Connects until it holds `per_worker` clients on each of workers 0 and 1
/// (users `PREFIX<n>`). Extra connections are dropped before joining anything.
pub fn connect_on_both_workers(
    server: &Server,
    prefix: &str,
    per_worker: usize,
) -> [Vec<Client>; 2] {
    let mut out: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
    let attempts = 2 * per_worker + 64;
    for n in 0..attempts {
        if out.iter().all(|v| v.len() >= per_worker) {
            return out;
        }
        let c = server.connect(&format!("user={prefix}{n}"));
        let w = worker_of(c.conn());
        assert!(
            w < 2,
            "worker index {w} with --threads 2 (conn {})",
            c.conn()
        );
        if out[w].len() < per_worker {
            out[w].push(c);
        }
    }
    if out.iter().all(|v| v.len() >= per_worker) {
        return out;
    }
    panic!(
        "{attempts} connections did not give {per_worker} on each worker (got {} and {})",
        out[0].len(),
        out[1].len()
    );
}

/// `n` clients (users `PREFIX<i>`) with at least one on each worker.
pub fn connect_spread(server: &Server, prefix: &str, n: usize) -> Vec<Client> {
    assert!(n >= 2);
    let mut clients: Vec<Client> = (0..n)
        .map(|i| server.connect(&format!("user={prefix}{i}")))
        .collect();
    for extra in 0..64 {
        let on = |w: usize, cs: &[Client]| cs.iter().filter(|c| worker_of(c.conn()) == w).count();
        let (n0, n1) = (on(0, &clients), on(1, &clients));
        if n0 > 0 && n1 > 0 {
            return clients;
        }
        let missing = if n0 == 0 { 0 } else { 1 };
        let c = server.connect(&format!("user={prefix}x{extra}"));
        if worker_of(c.conn()) == missing {
            clients.pop();
            clients.push(c);
        }
    }
    panic!("64 extra connections all landed on one worker");
}

/// The `members` of a `joined`/`presence_state` as a set of (user, conn),
/// asserting each entry is `{user, conn}` strings and there are no duplicates.
pub fn members(v: &Value) -> BTreeSet<(String, String)> {
    let list = v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members array in {v}"));
    let set: BTreeSet<(String, String)> = list
        .iter()
        .map(|m| {
            let user = m["user"]
                .as_str()
                .unwrap_or_else(|| panic!("member without user: {m}"));
            let conn = m["conn"]
                .as_str()
                .unwrap_or_else(|| panic!("member without conn: {m}"));
            (user.to_owned(), conn.to_owned())
        })
        .collect();
    assert_eq!(set.len(), list.len(), "duplicate members in {v}");
    set
}

/// The (user, conn) pair of clients, for comparing with [`members`].
pub fn who(clients: &[&Client]) -> BTreeSet<(String, String)> {
    clients
        .iter()
        .map(|c| (c.user().to_owned(), c.conn().to_owned()))
        .collect()
}

/// Asserts `v` is an `error` with `code`, echoing `id` (or carrying none).
#[track_caller]
pub fn assert_error(v: &Value, code: &str, id: Option<u64>) {
    assert_eq!(v["type"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "wrong error code in {v}");
    match id {
        Some(id) => assert_eq!(v["id"].as_u64(), Some(id), "error must echo id {id}: {v}"),
        None => assert!(v.get("id").is_none(), "error must carry no id: {v}"),
    }
}
