//! Redis Cluster topology changes under switchboard (PROTOCOL.md 1.1 §13),
//! on one throwaway cluster ([`RedisCluster`], `cluster-node-timeout`
//! 1000 ms):
//!
//! - a live resharding of a busy channel's slot (`SETSLOT MIGRATING /
//!   IMPORTING`, `MIGRATE`, `SETSLOT NODE`) while publishers on both nodes
//!   run: every publish is answered, every node delivers in offset order,
//!   a lost event is never silent (`resync` first), and once the move is
//!   done every action reaches both nodes, in one order, without a client
//!   joining again;
//! - a master killed: its replica is promoted, its channel serves again
//!   within 5 s of the promotion with no re-join (answers `unavailable`
//!   meanwhile), and a channel of another shard carries on throughout.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use switchboard::broker::redis::cluster::channel_slot;

/// How many shard subscriptions `pubsub` has on the node at `port`.
fn shard_subs(rc: &RedisCluster, port: u16, pubsub: &str) -> i64 {
    rc.node(port)
        .cmd(&["PUBSUB", "SHARDNUMSUB", pubsub])
        .array()[1]
        .int()
}

const FLAGS: [&str; 6] = [
    "--history",
    "doc=1000",
    "--rate",
    "100000",
    "--burst",
    "100000",
];

#[test]
fn resharding_then_failover_under_load() {
    let Some(mut rc) = RedisCluster::start() else {
        return;
    };
    let a = cluster_node("na", &rc, &FLAGS);
    let b = cluster_node("nb", &rc, &FLAGS);
    live_resharding(&rc, &a, &b);
    failover(&mut rc, &a, &b);
}

/// A publisher's answers: per seq, the acked offset or the error.
type Answers = Vec<(u64, Result<u64, String>)>;

/// What a receiver saw: `(offset, sender conn, seq)` per action, and the
/// number of actions seen before each `resync`.
#[derive(Debug, Default)]
struct Record {
    actions: Vec<(u64, String, u64)>,
    resyncs: Vec<usize>,
}

fn live_resharding(rc: &RedisCluster, a: &Server, b: &Server) {
    let ch = "doc:busy";
    let slot = channel_slot("sb:", ch);
    let from = rc.master_port(slot).expect("slot has a master");
    let to = *rc
        .master_ports()
        .iter()
        .find(|&&p| p != from)
        .expect("another master");
    let pubsub = format!("sb:{{{ch}}}:ch");
    let stop = Arc::new(AtomicBool::new(false));
    // Receivers on both nodes record everything until told to stop.
    let mut receivers = Vec::new();
    for (i, node) in [a, b].into_iter().enumerate() {
        let mut c = node.connect(&format!("user=r{i}"));
        c.join(ch);
        let stop = stop.clone();
        receivers.push(thread::spawn(move || {
            let mut rec = Record::default();
            let mut quiet_since: Option<Instant> = None;
            loop {
                match c.next(Instant::now() + Duration::from_millis(100)) {
                    Next::Text(t) => {
                        quiet_since = None;
                        let v: Value = serde_json::from_str(&t).expect("json");
                        match v["type"].as_str() {
                            Some("user_action") => rec.actions.push((
                                v["offset"].as_u64().expect("offset"),
                                v["conn"].as_str().unwrap_or_default().to_owned(),
                                v["action"]["seq"].as_u64().expect("seq"),
                            )),
                            Some("resync") => rec.resyncs.push(rec.actions.len()),
                            _ => {}
                        }
                    }
                    Next::Timeout => {
                        if stop.load(Ordering::SeqCst) {
                            let q = *quiet_since.get_or_insert_with(Instant::now);
                            if q.elapsed() > Duration::from_millis(500) {
                                return rec;
                            }
                        }
                    }
                    other => panic!("receiver: {other:?}"),
                }
            }
        }));
    }
    // Publishers on both nodes, each waiting for every answer.
    let mut publishers = Vec::new();
    for (i, node) in [a, b].into_iter().enumerate() {
        let mut c = node.connect(&format!("user=p{i}"));
        c.join(ch);
        let stop = stop.clone();
        publishers.push(thread::spawn(move || {
            let mut answers: Answers = Vec::new();
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = c.fresh_id();
                c.send_json(
                    json!({"type": "user_action", "id": id, "channel": ch, "action": {"seq": seq}}),
                );
                let v = c.recv_reply(id);
                let r = match v["type"].as_str() {
                    Some("ack") => Ok(v["offset"].as_u64().expect("offset")),
                    _ => Err(v.to_string()),
                };
                answers.push((seq, r));
                seq += 1;
                thread::sleep(Duration::from_millis(3));
            }
            (c.conn().to_owned(), answers)
        }));
    }
    thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    rc.begin_migration(slot, to);
    thread::sleep(Duration::from_millis(200));
    let keys: Vec<String> = ["pr", "hm", "hs"]
        .iter()
        .map(|s| format!("sb:{{{ch}}}:{s}"))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    rc.migrate_keys(from, to, &keys);
    thread::sleep(Duration::from_millis(200));
    rc.finish_migration(slot, from, to);
    let moved = began.elapsed();
    // Both nodes subscribed at the new master, none left at the old one:
    // the move is done as far as switchboard is concerned.
    let deadline = Instant::now() + Duration::from_secs(10);
    while shard_subs(rc, to, &pubsub) < 2 || shard_subs(rc, from, &pubsub) > 0 {
        assert!(
            Instant::now() < deadline,
            "subscriptions did not follow the slot: {} at {to}, {} at {from}",
            shard_subs(rc, to, &pubsub),
            shard_subs(rc, from, &pubsub)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let settled = began.elapsed();
    // Publishing goes on past the move.
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let pubs: Vec<(String, Answers)> = publishers
        .into_iter()
        .map(|h| h.join().expect("publisher"))
        .collect();
    let recs: Vec<Record> = receivers
        .into_iter()
        .map(|h| h.join().expect("receiver"))
        .collect();

    // Every publish answered; offsets of the acks are unique.
    let mut by_offset: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    let mut failed = 0;
    for (conn, answers) in &pubs {
        for (seq, r) in answers {
            match r {
                Ok(off) => {
                    assert!(
                        by_offset.insert(*off, (conn.clone(), *seq)).is_none(),
                        "offset {off} acked twice"
                    );
                }
                Err(e) => {
                    assert!(e.contains("unavailable"), "{conn} seq {seq}: {e}");
                    failed += 1;
                }
            }
        }
    }
    let last_offset = *by_offset.keys().last().expect("some acks");
    for (i, rec) in recs.iter().enumerate() {
        // One order: offsets strictly increase on every node; each one is
        // the action acked with it.
        for w in rec.actions.windows(2) {
            assert!(w[0].0 < w[1].0, "receiver {i}: {:?} then {:?}", w[0], w[1]);
        }
        for (off, conn, seq) in &rec.actions {
            assert_eq!(
                by_offset.get(off),
                Some(&(conn.clone(), *seq)),
                "receiver {i}"
            );
        }
        // A gap is never silent: a resync comes before the first event
        // after it.
        let mut prev: Option<u64> = None;
        for (k, (off, _, _)) in rec.actions.iter().enumerate() {
            if let Some(p) = prev {
                if *off != p + 1 {
                    assert!(
                        rec.resyncs.contains(&k),
                        "receiver {i}: silent gap {p} -> {off}"
                    );
                }
            }
            prev = Some(*off);
        }
        assert_eq!(
            rec.actions.last().map(|x| x.0),
            Some(last_offset),
            "receiver {i} has the last action"
        );
    }
    // After the move: every action on both nodes, the same sequence.
    let cut = |rec: &Record| -> Vec<u64> {
        let n = rec.actions.len();
        rec.actions[n.saturating_sub(100)..]
            .iter()
            .map(|x| x.0)
            .collect()
    };
    let tail0 = cut(&recs[0]);
    assert_eq!(
        tail0,
        cut(&recs[1]),
        "the same last 100 actions on both nodes"
    );
    for w in tail0.windows(2) {
        assert_eq!(w[1], w[0] + 1, "none lost after the move: {tail0:?}");
    }
    let lost: Vec<usize> = recs
        .iter()
        .map(|r| by_offset.len() - r.actions.len())
        .collect();
    eprintln!(
        "resharding slot {slot} {from}->{to}: moved in {moved:?}, subscriptions followed {settled:?} after its start; {} actions acked, {failed} unavailable, missed per node {lost:?}, resyncs per node {:?}",
        by_offset.len(),
        recs.iter().map(|r| r.resyncs.len()).collect::<Vec<_>>()
    );
}

/// Sends actions with ids from `from` until `to` receives one of them;
/// every answer is an ack or `unavailable`. Returns when one arrived.
fn until_delivered(from: &mut Client, to: &mut Client, ch: &str, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    to.timeout = Duration::from_millis(100);
    loop {
        let id = from.fresh_id();
        from.send_json(
            json!({"type": "user_action", "id": id, "channel": ch, "action": {"probe": id}}),
        );
        let v = from.recv_reply(id);
        match v["type"].as_str() {
            Some("ack") => {}
            _ => assert_eq!(v["code"], "unavailable", "{v}"),
        }
        loop {
            match to.next(Instant::now() + Duration::from_millis(100)) {
                Next::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["type"] == "user_action" && v["action"]["probe"] == id {
                        to.timeout = TIMEOUT;
                        return Instant::now();
                    }
                }
                Next::Timeout => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "{ch}: nothing delivered within {within:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn failover(rc: &mut RedisCluster, a: &Server, b: &Server) {
    let chans = one_channel_per_master(rc, "fo:");
    let (&victim, vch) = chans.iter().next().expect("a channel");
    let vch = vch.clone();
    let (_, other) = chans
        .iter()
        .find(|(&p, _)| p != victim)
        .expect("a channel elsewhere");
    let other = other.clone();
    let mut a1 = a.connect("user=fa");
    let mut b1 = b.connect("user=fb");
    for c in [&mut a1, &mut b1] {
        c.join(&vch);
        c.join(&other);
    }
    until_delivered(&mut a1, &mut b1, &vch, TIMEOUT);
    let slot = channel_slot("sb:", &vch);
    rc.kill(victim);
    let killed = Instant::now();
    // Another shard carries on while the victim's is failed over.
    until_delivered(&mut a1, &mut b1, &other, Duration::from_secs(2));
    until_delivered(&mut b1, &mut a1, &other, Duration::from_secs(2));
    let promoted = loop {
        if rc.master_port(slot).is_some_and(|p| p != victim) {
            break Instant::now();
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "no promotion");
        thread::sleep(Duration::from_millis(20));
    };
    let t1 = until_delivered(&mut a1, &mut b1, &vch, Duration::from_secs(10));
    let t2 = until_delivered(&mut b1, &mut a1, &vch, Duration::from_secs(10));
    let back = t1.max(t2).saturating_duration_since(promoted);
    eprintln!(
        "failover: replica promoted {:?} after the kill; channel served both ways {back:?} after the promotion",
        promoted - killed
    );
    assert!(
        back < Duration::from_secs(5),
        "back {back:?} after promotion"
    );
    // Nobody joined again: both are still members, on the new master.
    let v = a1.request(json!({"type": "presence", "channel": vch}));
    assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
    until_delivered(&mut a1, &mut b1, &other, Duration::from_secs(2));
}
