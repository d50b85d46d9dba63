//! Redis Cluster topology changes under switchboard (PROTOCOL.md 1.1 §13),
//! on one throwaway cluster ([`RedisCluster`], `cluster-node-timeout`
//! 1000 ms):
//!
//! - a live resharding of the slot of a busy history channel and a plain
//!   channel (`SETSLOT MIGRATING / IMPORTING`, `MIGRATE`, `SETSLOT NODE`)
//!   while a publisher per channel runs on each of two nodes and a third
//!   node only receives, once with a pause before the hand-over and once
//!   without: every acknowledged action reaches all three nodes, once, in
//!   the same order, no `resync`, no client joining again;
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
    // A node that only receives: it learns of the move from the others'
    // notice, having no command of its own answered `ASK`.
    let c = cluster_node("nc", &rc, &FLAGS);
    live_resharding(&rc, [&a, &b, &c], "doc:busy", true);
    // As `redis-cli --cluster reshard` does it: the slot handed over
    // right after its keys moved, before any node heard of the move.
    live_resharding(&rc, [&a, &b, &c], "doc:fast", false);
    drop(c);
    failover(&mut rc, &a, &b);
}

/// A publisher's answers: per seq, the acked offset (`None` without
/// history) or the error.
type Answers = Vec<(u64, Result<Option<u64>, String>)>;

/// What a receiver saw of one channel: `(offset, sender conn, seq)` per
/// action, and the number of actions seen before each `resync`.
#[derive(Debug, Default)]
struct Record {
    actions: Vec<(Option<u64>, String, u64)>,
    resyncs: Vec<usize>,
}

/// A channel without history whose slot is `slot` (found by name).
fn plain_channel_in(slot: u16) -> String {
    (0..1_000_000)
        .map(|i| format!("plain:{i}"))
        .find(|c| channel_slot("sb:", c) == slot)
        .expect("a name in every slot")
}

/// Receives on both channels until told to stop and quiet for 500 ms.
fn receiver(mut c: Client, chans: [String; 2], stop: Arc<AtomicBool>) -> [Record; 2] {
    let mut recs = [Record::default(), Record::default()];
    let mut quiet_since: Option<Instant> = None;
    loop {
        match c.next(Instant::now() + Duration::from_millis(100)) {
            Next::Text(t) => {
                quiet_since = None;
                let v: Value = serde_json::from_str(&t).expect("json");
                let Some(k) = chans.iter().position(|ch| v["channel"] == ch.as_str()) else {
                    continue;
                };
                let rec = &mut recs[k];
                match v["type"].as_str() {
                    Some("user_action") => rec.actions.push((
                        v["offset"].as_u64(),
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
                        return recs;
                    }
                }
            }
            other => panic!("receiver: {other:?}"),
        }
    }
}

/// Publishes on `ch`, one action at a time, each answered before the next.
fn publisher(mut c: Client, ch: String, stop: Arc<AtomicBool>) -> (String, Answers) {
    let mut answers: Answers = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let id = c.fresh_id();
        c.send_json(
            json!({"type": "user_action", "id": id, "channel": ch, "action": {"seq": seq}}),
        );
        let v = c.recv_reply(id);
        let r = match v["type"].as_str() {
            Some("ack") => Ok(v["offset"].as_u64()),
            _ => Err(v.to_string()),
        };
        answers.push((seq, r));
        seq += 1;
        thread::sleep(Duration::from_millis(3));
    }
    (c.conn().to_owned(), answers)
}

/// A live resharding of the slot of a history channel and a plain channel
/// (the same slot) while a publisher on each node publishes in each: after
/// it, both nodes have delivered every acknowledged action of both
/// channels, in one order, none lost (docs/scaling.md, "Live resharding").
fn live_resharding(rc: &RedisCluster, nodes: [&Server; 3], hist: &str, pause: bool) {
    let [a, b, c] = nodes;
    let hist = hist.to_owned();
    let slot = channel_slot("sb:", &hist);
    let plain = plain_channel_in(slot);
    let chans = [hist.clone(), plain.clone()];
    let from = rc.master_port(slot).expect("slot has a master");
    let to = *rc
        .master_ports()
        .iter()
        .find(|&&p| p != from)
        .expect("another master");
    let stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (i, node) in [a, b, c].into_iter().enumerate() {
        let mut c = node.connect(&format!("user=r{i}"));
        for ch in &chans {
            c.join(ch);
        }
        let (chans, stop) = (chans.clone(), stop.clone());
        receivers.push(thread::spawn(move || receiver(c, chans, stop)));
    }
    let mut publishers = Vec::new();
    for (i, node) in [a, b].into_iter().enumerate() {
        for ch in &chans {
            let mut c = node.connect(&format!("user=p{i}"));
            c.join(ch);
            let (ch, stop) = (ch.clone(), stop.clone());
            publishers.push(thread::spawn(move || publisher(c, ch, stop)));
        }
    }
    thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    rc.begin_migration(slot, to);
    thread::sleep(Duration::from_millis(200));
    let keys: Vec<String> = chans
        .iter()
        .flat_map(|ch| ["pr", "hm", "hs"].map(|s| format!("sb:{{{ch}}}:{s}")))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    rc.migrate_keys(from, to, &keys);
    // Before the slot is handed over, all three nodes listen at the
    // importing master too: the publishers' nodes after their own `ASK`,
    // the receive-only node after their notice.
    let deadline = Instant::now() + Duration::from_secs(5);
    for ch in chans.iter().filter(|_| pause) {
        let pubsub = format!("sb:{{{ch}}}:ch");
        while shard_subs(rc, to, &pubsub) < 3 {
            assert!(
                Instant::now() < deadline,
                "{ch}: {} nodes subscribed at the importing master",
                shard_subs(rc, to, &pubsub)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    let presubscribed = pause.then(|| began.elapsed());
    if pause {
        thread::sleep(Duration::from_millis(200));
    }
    rc.finish_migration(slot, from, to);
    let moved = began.elapsed();
    // Both nodes subscribed at the new master, none left at the old one:
    // the move is done as far as switchboard is concerned.
    let deadline = Instant::now() + Duration::from_secs(10);
    for ch in &chans {
        let pubsub = format!("sb:{{{ch}}}:ch");
        while shard_subs(rc, to, &pubsub) < 3 || shard_subs(rc, from, &pubsub) > 0 {
            assert!(
                Instant::now() < deadline,
                "subscriptions of {ch} did not follow the slot: {} at {to}, {} at {from}",
                shard_subs(rc, to, &pubsub),
                shard_subs(rc, from, &pubsub)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    let settled = began.elapsed();
    // Publishing goes on past the move.
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let pubs: Vec<(String, Answers)> = publishers
        .into_iter()
        .map(|h| h.join().expect("publisher"))
        .collect();
    let recs: Vec<[Record; 2]> = receivers
        .into_iter()
        .map(|h| h.join().expect("receiver"))
        .collect();

    let mut report = Vec::new();
    for (k, ch) in chans.iter().enumerate() {
        let history = k == 0;
        // Every acknowledged action of this channel, by (conn, seq); with
        // history, its offset (unique).
        let mut acked: BTreeMap<(String, u64), Option<u64>> = BTreeMap::new();
        let mut failed = 0;
        for (conn, answers) in pubs.iter().skip(k).step_by(2) {
            for (seq, r) in answers {
                match r {
                    Ok(off) => {
                        assert_eq!(off.is_some(), history, "{ch}: {conn} seq {seq}");
                        acked.insert((conn.clone(), *seq), *off);
                    }
                    Err(e) => {
                        assert!(e.contains("unavailable"), "{ch}: {conn} seq {seq}: {e}");
                        failed += 1;
                    }
                }
            }
        }
        if history {
            let mut offs: Vec<u64> = acked.values().map(|o| o.expect("offset")).collect();
            offs.sort_unstable();
            offs.dedup();
            assert_eq!(offs.len(), acked.len(), "{ch}: an offset acked twice");
        }
        let seqs: Vec<Vec<(String, u64)>> = recs
            .iter()
            .map(|r| {
                r[k].actions
                    .iter()
                    .map(|(_, c, s)| (c.clone(), *s))
                    .collect()
            })
            .collect();
        for (i, rec) in recs.iter().enumerate() {
            let rec = &rec[k];
            if !rec.resyncs.is_empty() {
                let around: Vec<_> = rec
                    .resyncs
                    .iter()
                    .map(|&r| &rec.actions[r.saturating_sub(2)..(r + 2).min(rec.actions.len())])
                    .collect();
                panic!(
                    "{ch}: receiver {i} resynced at {:?}: {around:?}",
                    rec.resyncs
                );
            }
            // Each action once, each one acked, as acked.
            let mut seen = std::collections::BTreeSet::new();
            for (off, conn, seq) in &rec.actions {
                assert!(
                    seen.insert((conn.clone(), *seq)),
                    "{ch}: receiver {i} got {conn} {seq} twice"
                );
                // An action answered `unavailable` may have been published.
                if let Some(o) = acked.get(&(conn.clone(), *seq)) {
                    assert_eq!(o, off, "{ch}: receiver {i}: {conn} {seq}");
                }
            }
            let missed: Vec<_> = acked.keys().filter(|k| !seen.contains(*k)).collect();
            assert!(
                missed.is_empty(),
                "{ch}: receiver {i} missed {} acked actions: {missed:?}",
                missed.len()
            );
            // One order: by offset with history; per sender by seq always.
            if history {
                for w in rec.actions.windows(2) {
                    assert_eq!(
                        w[1].0.expect("offset"),
                        w[0].0.expect("offset") + 1,
                        "{ch}: receiver {i}"
                    );
                }
            }
            let mut last: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, conn, seq) in &rec.actions {
                if let Some(p) = last.insert(conn, *seq) {
                    assert!(p < *seq, "{ch}: receiver {i}: {conn} {p} then {seq}");
                }
            }
        }
        for (i, s) in seqs.iter().enumerate().skip(1) {
            assert_eq!(
                &seqs[0], s,
                "{ch}: the same actions in the same order on nodes 0 and {i}"
            );
        }
        report.push(format!(
            "{ch}: {} acked, {failed} unavailable, {} delivered on each node",
            acked.len(),
            seqs[0].len()
        ));
    }
    eprintln!(
        "resharding (pause: {pause}) slot {slot} {from}->{to}: all nodes subscribed at the importing master {presubscribed:?} after the start (Some: checked), moved in {moved:?}, subscriptions followed {settled:?} after the start; {}",
        report.join("; ")
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
