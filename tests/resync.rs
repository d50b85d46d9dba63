//! PROTOCOL.md §5 "Gaps are never silent" on two nodes sharing a throwaway
//! `redis-server`: a Redis crash with and without persistence, a gap
//! between Redis and the nodes, and one node's link cut while the other
//! publishes. Plain channels never hear `resync`.
//!
//! Each history member is a [`Follower`] thread that behaves as §5 asks of
//! a client: it applies offsets in order, answers `resync` by joining again
//! with `since` = the last offset and epoch it applied, ignores events
//! between the `resync` and that answer, applies the replay, and on
//! `recovered:false` adopts the answer's epoch and offset (it reloads). A
//! publisher thread posts numbered actions through `POST /api/publish` and
//! keeps the acknowledged ones; the tally then checks, member by member,
//! that every acknowledged action was applied once and in order, or was
//! covered by a `recovered:false` (it left with Redis's data, or predates
//! the new state the member reloaded). Each test prints its counts.

mod common;
mod history_cases;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use history_cases::{epoch_of, offset_of, FLAGS};
use serde_json::{json, Value};

/// How long a follower waits for the publisher's last action.
const FOLLOW: Duration = Duration::from_secs(40);
/// The action that ends a run.
const STOP: u64 = u64::MAX;

/// Two nodes on `redis`, each with `--history doc=100`.
fn nodes(redis: &RedisServer) -> Vec<Server> {
    vec![
        redis_node("n1", redis, &FLAGS),
        redis_node("n2", redis, &FLAGS),
    ]
}

/// What one member lived through.
#[derive(Debug, Default)]
struct Seen {
    name: String,
    /// Epochs adopted, in order: the first join's, then each reload's.
    epochs: Vec<String>,
    /// `(epoch index, offset, seq)` of every action applied.
    applied: Vec<(usize, u64, u64)>,
    resyncs: usize,
    /// `recovered` of each answer to a re-join.
    recovered: Vec<bool>,
    /// `(epoch index, offset)` adopted by each `recovered:false`.
    resets: Vec<(usize, u64)>,
    /// Events ignored between a `resync` and the answer to the re-join.
    untrusted: usize,
    /// Events of an offset already applied (a replay repeating them).
    dropped: usize,
    /// Offsets skipped without a `resync` first: must stay 0.
    silent_gaps: u64,
    finished: bool,
    /// Why it ended early, if it did.
    failure: Option<String>,
}

/// A member of `channel` joined already (`joined` its answer) that follows
/// it until it applies the [`STOP`] action.
struct Follower;

impl Follower {
    fn spawn(mut c: Client, channel: &'static str, joined: &Value) -> JoinHandle<Seen> {
        let mut seen = Seen {
            name: c.user().to_owned(),
            epochs: vec![epoch_of(joined)],
            ..Seen::default()
        };
        let mut last = offset_of(joined);
        thread::spawn(move || {
            let deadline = Instant::now() + FOLLOW;
            // The id of the re-join whose answer is awaited.
            let mut pending: Option<u64> = None;
            let rejoin = |c: &mut Client, last: u64, epoch: &str| {
                let id = c.fresh_id();
                c.send_json(json!({
                    "type": "join_channel", "id": id, "channel": channel,
                    "since": {"offset": last, "epoch": epoch}
                }));
                id
            };
            while !seen.finished {
                let text = match c.next(deadline) {
                    Next::Text(t) => t,
                    Next::Timeout => {
                        seen.failure = Some(format!("no STOP by the deadline, last {last}"));
                        break;
                    }
                    Next::Close(f) => {
                        seen.failure = Some(format!("closed: {f:?}"));
                        break;
                    }
                    Next::Binary(_) => {
                        seen.failure = Some("a binary message".into());
                        break;
                    }
                    Next::Failed(e) => {
                        seen.failure = Some(format!("read failed: {e}"));
                        break;
                    }
                };
                let v: Value = serde_json::from_str(&text).expect("server JSON");
                let epoch = seen.epochs.last().expect("an epoch").clone();
                match v["type"].as_str() {
                    Some("resync") => {
                        assert_eq!(v["channel"], channel, "{v}");
                        seen.resyncs += 1;
                        pending = Some(rejoin(&mut c, last, &epoch));
                    }
                    Some("joined") if v["id"].as_u64() == pending && pending.is_some() => {
                        pending = None;
                        let recovered = v["recovered"].as_bool().expect("recovered");
                        seen.recovered.push(recovered);
                        if recovered {
                            assert_eq!(epoch_of(&v), epoch, "{v}");
                        } else {
                            seen.epochs.push(epoch_of(&v));
                            last = offset_of(&v);
                            seen.resets.push((seen.epochs.len() - 1, last));
                        }
                    }
                    Some("error") if v["id"].as_u64() == pending && pending.is_some() => {
                        // The node's other link may still be down: again.
                        assert_eq!(v["code"], "unavailable", "{v}");
                        thread::sleep(Duration::from_millis(50));
                        pending = Some(rejoin(&mut c, last, &epoch));
                    }
                    Some("user_action") if v["channel"] == channel => {
                        if pending.is_some() {
                            seen.untrusted += 1;
                            continue;
                        }
                        let off = offset_of(&v);
                        if off <= last {
                            seen.dropped += 1;
                            continue;
                        }
                        if off > last + 1 {
                            seen.silent_gaps += off - last - 1;
                        }
                        last = off;
                        let seq = v["action"]["seq"].as_u64().expect("a numbered action");
                        seen.applied.push((seen.epochs.len() - 1, off, seq));
                        seen.finished = seq == STOP;
                    }
                    _ => {}
                }
            }
            seen
        })
    }
}

/// What the publisher was told.
#[derive(Debug, Default)]
struct Published {
    /// `(epoch index, offset, seq)` of each acknowledged action; a new
    /// epoch shows as an offset not above the previous one.
    acked: Vec<(usize, u64, u64)>,
    refused: u64,
}

/// Posts `{"seq":N}` to `channel` through the nodes `via` in turn until
/// `stop` is set, then the [`STOP`] action until it is acknowledged.
struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    handle: JoinHandle<Published>,
}

impl Publisher {
    fn spawn(addrs: Vec<std::net::SocketAddr>, channel: &'static str) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let (stop_flag, acked_n, refused_n) = (stop.clone(), acked.clone(), refused.clone());
        let handle = thread::spawn(move || {
            let mut out = Published::default();
            let mut epoch = 0;
            let deadline = Instant::now() + FOLLOW;
            for seq in 1.. {
                let last = stop_flag.load(Ordering::SeqCst);
                let seq = if last { STOP } else { seq };
                let addr = addrs[seq as usize % addrs.len()];
                let body = json!({"channel": channel, "action": {"seq": seq}}).to_string();
                let req = format!(
                    "POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                match try_http(addr, &req) {
                    Ok(r) if r.status == 200 => {
                        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
                        let off = v["offset"].as_u64().expect("an offset");
                        if out.acked.last().is_some_and(|&(_, prev, _)| off <= prev) {
                            epoch += 1;
                        }
                        out.acked.push((epoch, off, seq));
                        acked_n.fetch_add(1, Ordering::SeqCst);
                        if last {
                            break;
                        }
                    }
                    Ok(r) if r.status == 503 => {
                        out.refused += 1;
                        refused_n.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("publish answered {} {}", r.status, r.body_text()),
                    Err(_) => {
                        out.refused += 1;
                        refused_n.fetch_add(1, Ordering::SeqCst);
                    }
                }
                assert!(Instant::now() < deadline, "the publisher never finished");
                // Pacing (~150 actions/s), not synchronisation.
                thread::sleep(Duration::from_millis(5));
            }
            out
        });
        Publisher {
            stop,
            acked,
            refused,
            handle,
        }
    }
}

impl Publisher {
    /// Waits until `counter` reaches `n`.
    #[track_caller]
    fn wait(counter: &AtomicU64, what: &str, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while counter.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{what} stayed at {} (< {n}) for {within:?}",
                counter.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    fn wait_acked(&self, more: u64) {
        let n = self.acked.load(Ordering::SeqCst) + more;
        Publisher::wait(&self.acked, "acknowledged", n, Duration::from_secs(30));
    }

    #[track_caller]
    fn wait_refused(&self, more: u64) {
        let n = self.refused.load(Ordering::SeqCst) + more;
        Publisher::wait(&self.refused, "refused", n, Duration::from_secs(10));
    }

    /// Publishes the [`STOP`] action and returns what was acknowledged.
    fn finish(self) -> Published {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("publisher thread")
    }
}

/// The counts of one run, summed over members.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    acknowledged: usize,
    refused: u64,
    members: usize,
    /// Acknowledged actions applied (once each is the goal).
    applied: usize,
    /// Acknowledged actions neither applied nor covered by a reload.
    missing: usize,
    /// Actions applied more than once.
    duplicated: usize,
    /// Acknowledged actions not applied because a `recovered:false` told
    /// the member to reload (they were lost with Redis's data, or precede
    /// the state it reloaded).
    reset: usize,
    /// Applied actions whose number was not above the previous one's.
    out_of_order: usize,
    /// An offset held another action than the one acknowledged for it.
    mismatched: usize,
    resyncs: usize,
    silent_gaps: u64,
    untrusted: usize,
}

fn tally(label: &str, p: &Published, seen: &[Seen]) -> Tally {
    let epochs = p.acked.last().map_or(0, |a| a.0) + 1;
    let mut t = Tally {
        acknowledged: p.acked.len(),
        refused: p.refused,
        members: seen.len(),
        ..Tally::default()
    };
    for s in seen {
        assert!(s.finished, "{}: {:?}", s.name, s.failure);
        assert_eq!(
            s.epochs.len(),
            epochs,
            "{}: epochs {:?}, the publisher saw {epochs}",
            s.name,
            s.epochs
        );
        t.resyncs += s.resyncs;
        t.silent_gaps += s.silent_gaps;
        t.untrusted += s.untrusted;
        let mut at: BTreeMap<(usize, u64), u64> = BTreeMap::new();
        let mut times: BTreeMap<u64, usize> = BTreeMap::new();
        let mut prev = 0;
        for &(e, off, seq) in &s.applied {
            at.insert((e, off), seq);
            *times.entry(seq).or_default() += 1;
            if seq <= prev {
                t.out_of_order += 1;
            }
            prev = seq;
        }
        t.duplicated += times.values().map(|n| n - 1).sum::<usize>();
        let last_in = |e: usize| {
            s.applied
                .iter()
                .filter(|a| a.0 == e)
                .map(|a| a.1)
                .max()
                .unwrap_or(0)
        };
        for &(e, off, seq) in &p.acked {
            match at.get(&(e, off)) {
                Some(&got) if got == seq => t.applied += 1,
                Some(_) => t.mismatched += 1,
                None => {
                    let covered = s.resets.iter().any(|&(re, roff)| {
                        (re == e && off <= roff) || (re > e && off > last_in(e))
                    });
                    if covered {
                        t.reset += 1;
                    } else {
                        t.missing += 1;
                    }
                }
            }
        }
    }
    println!(
        "{label}: acknowledged {}, refused {}; over {} members: applied {}, missing {}, \
         duplicated {}, reset {}, out of order {}, mismatched {}, resyncs {}, silent gaps {}, \
         ignored between resync and answer {}",
        t.acknowledged,
        t.refused,
        t.members,
        t.applied,
        t.missing,
        t.duplicated,
        t.reset,
        t.out_of_order,
        t.mismatched,
        t.resyncs,
        t.silent_gaps,
        t.untrusted
    );
    t
}

/// `per_node` followers of `channel` on each node, joined before return.
fn followers(nodes: &[Server], channel: &'static str, per_node: usize) -> Vec<JoinHandle<Seen>> {
    let mut out = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..per_node {
            let mut c = node.connect(&format!("user=f{n}-{i}"));
            let joined = c.join(channel);
            out.push(Follower::spawn(c, channel, &joined));
        }
    }
    out
}

fn collect(handles: Vec<JoinHandle<Seen>>) -> Vec<Seen> {
    handles
        .into_iter()
        .map(|h| h.join().expect("follower thread"))
        .collect()
}

/// One member per node in a channel without history.
fn plain_members(nodes: &[Server], channel: &str) -> Vec<Client> {
    nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let mut c = node.connect(&format!("user=plain{n}"));
            c.join(channel);
            c
        })
        .collect()
}

/// Publishes a marker to the plain channel and asserts that nothing its
/// members received before it was a `resync`.
fn assert_plain_never_resynced(nodes: &[Server], channel: &str, members: &mut [Client]) {
    let body = json!({"channel": channel, "action": "marker"}).to_string();
    let r = http(
        nodes[0].addr,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    for c in members {
        let seen = c.recv_all_until(|v| v["action"] == "marker");
        assert!(
            seen.iter().all(|v| v["type"] != "resync"),
            "a channel without history heard resync: {seen:?}"
        );
    }
}

/// Redis is SIGKILLed while actions flow and restarted: every member of the
/// history channel hears `resync`, joins again, and either recovers (Redis
/// persisted every write) or is told `recovered:false` (it did not). No
/// acknowledged action is missed silently or applied twice.
fn redis_kill(persist: bool) -> Tally {
    let extra: &[&str] = if persist {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &[]
    };
    let Some(mut redis) = RedisServer::start_with(extra) else {
        return Tally::default();
    };
    let nodes = nodes(&redis);
    let ch = "doc:kill";
    let mut plain = plain_members(&nodes, "plain:kill");
    let handles = followers(&nodes, ch, 3);
    let publisher = Publisher::spawn(nodes.iter().map(|n| n.addr).collect(), ch);
    publisher.wait_acked(40);
    redis.kill();
    publisher.wait_refused(3);
    redis.restart();
    publisher.wait_acked(40);
    let published = publisher.finish();
    let seen = collect(handles);
    let label = if persist {
        "redis SIGKILL, appendfsync always"
    } else {
        "redis SIGKILL, no persistence"
    };
    let t = tally(label, &published, &seen);
    for s in &seen {
        assert!(s.resyncs >= 1, "{} never heard resync: {s:?}", s.name);
        assert!(
            s.recovered.iter().all(|&r| r == persist),
            "{}: recovered {:?}",
            s.name,
            s.recovered
        );
    }
    assert_plain_never_resynced(&nodes, "plain:kill", &mut plain);
    assert_eq!(t.silent_gaps, 0, "{t:?}");
    assert_eq!(
        (t.missing, t.duplicated, t.out_of_order, t.mismatched),
        (0, 0, 0, 0),
        "{t:?}"
    );
    assert!(t.refused > 0, "the outage was never seen: {t:?}");
    t
}

#[test]
fn redis_kill_without_persistence_resyncs_and_reloads() {
    redis_kill(false);
}

#[test]
fn redis_kill_with_appendfsync_always_loses_nothing() {
    let t = redis_kill(true);
    assert_eq!(t.reset, 0, "{t:?}");
    assert_eq!(t.applied, t.acknowledged * t.members, "{t:?}");
}

/// An event that reaches Redis's history but never the nodes (here: the
/// test writes offset 4 into the stream itself and publishes only 5): each
/// node sees 3 then 5, tells its members `resync` before 5, and their
/// re-join replays 4 and 5.
#[test]
fn injected_gap_is_resynced_and_replayed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis);
    let ch = "doc:gap";
    let handles = followers(&nodes, ch, 2);
    let post = |seq: u64| {
        let body = json!({"channel": ch, "action": {"seq": seq}}).to_string();
        let r = http(
            nodes[(seq % 2) as usize].addr,
            &format!(
                "POST /api/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(r.status, 200, "{}", r.body_text());
        serde_json::from_slice::<Value>(&r.body).expect("JSON")["offset"]
            .as_u64()
            .expect("offset")
    };
    for seq in 1..=3 {
        assert_eq!(post(seq), seq);
    }
    let meta = format!("sb:{{{ch}}}:hm");
    let stream = format!("sb:{{{ch}}}:hs");
    assert_eq!(redis.cmd(&["HINCRBY", &meta, "offset", "1"]).int(), 4);
    let lost = json!({
        "type": "user_action", "channel": ch, "user": null, "conn": null,
        "action": {"seq": 4}, "offset": 4
    })
    .to_string();
    assert_eq!(
        redis.cmd(&["XADD", &stream, "4-0", "d", &lost]).text(),
        "4-0"
    );
    assert_eq!(post(5), 5);
    assert_eq!(post(STOP), 6);
    let seen = collect(handles);
    for s in &seen {
        let seqs: Vec<u64> = s.applied.iter().map(|a| a.2).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, STOP], "{}: {s:?}", s.name);
        assert_eq!((s.resyncs, &s.recovered[..]), (1, &[true][..]), "{s:?}");
        assert_eq!(s.silent_gaps, 0, "{s:?}");
    }
}

/// The Redis connections of one node are killed (`CLIENT KILL`) while the
/// other node publishes: only the cut node's members hear `resync`, when
/// its links are back, and the replay fills what they missed: every
/// acknowledged action applied exactly once, in order, everywhere.
#[test]
fn cut_link_is_resynced_on_reconnect() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = redis_node("n1", &redis, &FLAGS);
    let cut: Vec<String> = redis
        .client_list()
        .iter()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        cut.len(),
        2,
        "one link per worker: {:?}",
        redis.client_list()
    );
    let n2 = redis_node("n2", &redis, &FLAGS);
    let nodes = vec![n1, n2];
    let ch = "doc:cut";
    let mut plain = plain_members(&nodes, "plain:cut");
    let handles = followers(&nodes, ch, 2);
    let publisher = Publisher::spawn(vec![nodes[1].addr], ch);
    publisher.wait_acked(30);
    for id in &cut {
        assert_eq!(redis.cmd(&["CLIENT", "KILL", "ID", id]).int(), 1);
    }
    publisher.wait_acked(60);
    let published = publisher.finish();
    let seen = collect(handles);
    let t = tally("one node's links cut", &published, &seen);
    for s in &seen {
        let on_cut_node = s.name.starts_with("f0-");
        assert_eq!(s.resyncs >= 1, on_cut_node, "{}: {s:?}", s.name);
        assert!(s.recovered.iter().all(|&r| r), "{s:?}");
    }
    assert_plain_never_resynced(&nodes, "plain:cut", &mut plain);
    assert_eq!(
        (
            t.missing,
            t.duplicated,
            t.reset,
            t.out_of_order,
            t.mismatched,
            t.silent_gaps
        ),
        (0, 0, 0, 0, 0, 0),
        "{t:?}"
    );
    assert_eq!(t.applied, t.acknowledged * t.members, "{t:?}");
}

/// Redis loses the channel's data with the links up (`FLUSHALL`): the next
/// action starts a new epoch at offset 1, which each node sees as an offset
/// that does not follow. Every member hears `resync` before it, re-joins and
/// is told `recovered:false`; nobody takes offset 1 of the new epoch for
/// one it already applied.
#[test]
fn flush_with_links_up_is_resynced() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis);
    let ch = "doc:flush";
    let handles = followers(&nodes, ch, 2);
    let publisher = Publisher::spawn(nodes.iter().map(|n| n.addr).collect(), ch);
    publisher.wait_acked(20);
    assert_eq!(redis.cmd(&["FLUSHALL"]).text(), "OK");
    publisher.wait_acked(20);
    let published = publisher.finish();
    let seen = collect(handles);
    let t = tally("FLUSHALL with links up", &published, &seen);
    for s in &seen {
        // One gap, told once: the re-joins' answers state the new epoch
        // and are not taken for a second change.
        assert_eq!(s.resyncs, 1, "{}: {s:?}", s.name);
        assert_eq!(s.recovered, [false], "{}: {s:?}", s.name);
    }
    assert_eq!(
        (
            t.missing,
            t.duplicated,
            t.out_of_order,
            t.mismatched,
            t.silent_gaps
        ),
        (0, 0, 0, 0, 0),
        "{t:?}"
    );
}
