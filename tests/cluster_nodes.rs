//! Redis Cluster (PROTOCOL.md 1.1 §13), switchboard on it: two nodes on one
//! throwaway cluster of three masters with a replica each ([`RedisCluster`])
//! pass the cross-node scenarios of one Redis: broadcast and members, one
//! order with concurrent publishers on both nodes, presence merged, a
//! SIGKILLed node's members leaving within the TTL, history recovery. The
//! channels spread over all three shards (asserted), each channel's keys
//! and its one shard subscription per node are on its own master, and
//! `/api/channels` visits every master.
//!
//! One cluster serves every scenario, in one test, to keep the time
//! modest: starting a cluster costs seconds.

mod common;
mod history_cases;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn body_json(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.body_text()))
}

#[test]
fn two_nodes_on_a_cluster_behave_as_one_server() {
    let Some(rc) = RedisCluster::start() else {
        return;
    };
    let began = Instant::now();
    broadcast_presence_and_spread(&rc);
    eprintln!("broadcast and spread: {:?}", began.elapsed());
    order_with_publishers_on_both_nodes(&rc);
    eprintln!("order: {:?}", began.elapsed());
    killed_node_members_leave(&rc);
    eprintln!("node kill: {:?}", began.elapsed());
    history_recovery(&rc);
    eprintln!("history: {:?}", began.elapsed());
}

/// Broadcast, members and presence on a channel of each master; the
/// channel's keys and one shard subscription per node on that master.
fn broadcast_presence_and_spread(rc: &RedisCluster) {
    let a = cluster_node("na", rc, &[]);
    let b = cluster_node("nb", rc, &[]);
    let chans = one_channel_per_master(rc, "room:");
    assert_eq!(
        chans.len(),
        3,
        "channels spread over the three masters: {chans:?}"
    );
    let mut keep = Vec::new();
    for (&port, ch) in &chans {
        let mut a1 = a.connect("user=a1");
        let mut b1 = b.connect("user=b1");
        a1.join(ch);
        let v = b1.join(ch);
        assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
        let v = a1.recv_until(|v| v["type"] == "presence");
        assert_eq!(v["conn"], b1.conn(), "{v}");
        for sender in 0..2 {
            let c = if sender == 0 { &mut a1 } else { &mut b1 };
            c.send_json(json!({"type": "user_action", "channel": ch, "action": {"from": sender}}));
            for c in [&mut a1, &mut b1] {
                let v = c.recv_until(|v| v["type"] == "user_action");
                assert_eq!(v["action"], json!({"from": sender}), "{v}");
            }
        }
        let v = b1.request(json!({"type": "presence", "channel": ch}));
        assert_eq!(members(&v), who(&[&a1, &b1]), "{v}");
        // The channel lives on its master: its presence key, and one
        // shard subscription per switchboard node.
        let master = rc.node(port);
        let pr = format!("sb:{{{ch}}}:pr");
        assert_eq!(master.cmd(&["EXISTS", &pr]).int(), 1, "{pr} on {port}");
        let pubsub = format!("sb:{{{ch}}}:ch");
        let subs = master.cmd(&["PUBSUB", "SHARDNUMSUB", &pubsub]);
        assert_eq!(subs.array()[1].int(), 2, "{pubsub} on {port}: {subs:?}");
        keep.push((a1, b1));
    }
    // `/api/channels` visits every master; presence through the API too.
    let r = a.http_get("/api/channels");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let listed: BTreeSet<String> = body_json(&r)["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["channel"].as_str().expect("name").to_owned())
        .collect();
    let expected: BTreeSet<String> = chans.values().cloned().collect();
    assert_eq!(listed, expected);
    for ch in chans.values() {
        let r = b.http_get(&format!("/api/presence?channel={ch}"));
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(members(&body_json(&r)).len(), 2);
    }
}

fn order_with_publishers_on_both_nodes(rc: &RedisCluster) {
    let fast = ["--rate", "100000", "--burst", "100000"];
    let nodes = [cluster_node("na", rc, &fast), cluster_node("nb", rc, &fast)];
    let mut publishers = Vec::new();
    let mut receivers = Vec::new();
    for node in &nodes {
        publishers.extend(connect_spread(node, "pub", 2));
        receivers.extend(connect_spread(node, "rcv", 4));
    }
    let per = 200;
    let pace = |seq| {
        if seq % 5 == 4 {
            thread::sleep(Duration::from_millis(2));
        }
    };
    let results = race_publishers(publishers, receivers, "ord:1", per, pace);
    let reference = assert_same_order(&results, 4, per);
    let node_of = |conn: &str| conn.split('-').next().unwrap_or_default().to_owned();
    let sending: BTreeSet<String> = reference.iter().map(|(c, _)| node_of(c)).collect();
    assert_eq!(sending.len(), 2, "publishers on both nodes: {sending:?}");
}

/// A SIGKILLed node's members leave, once each, within the TTL: the
/// survivors' reaping runs on the channel's master.
fn killed_node_members_leave(rc: &RedisCluster) {
    let ttl = ["--presence-ttl", "3"];
    let a = cluster_node("na", rc, &ttl);
    let c = cluster_node("nc", rc, &ttl);
    let ch = "room:k";
    let mut a1 = a.connect("user=a1");
    let mut c1 = c.connect("user=c1");
    let mut c2 = c.connect("user=c2");
    a1.join(ch);
    c1.join(ch);
    c2.join(ch);
    a1.recv_until(|v| v["type"] == "presence" && v["conn"] == c2.conn());
    let doomed = who(&[&c1, &c2]);
    c.signal(libc::SIGKILL);
    let killed = Instant::now();
    a1.timeout = Duration::from_secs(5);
    let mut left = BTreeSet::new();
    while left.len() < 2 {
        let v = a1.recv_until(|v| v["type"] == "presence");
        assert_eq!(v["event"], "leave", "{v}");
        let id = (
            v["user"].as_str().unwrap_or_default().to_owned(),
            v["conn"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(left.insert(id), "a leave came twice: {v}");
    }
    assert_eq!(left, doomed);
    eprintln!("both leaves {:?} after the kill", killed.elapsed());
    a1.timeout = TIMEOUT;
    let v = a1.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a1]), "{v}");
}

/// PROTOCOL.md §5 over the cluster: consecutive offsets, and members that
/// drop and recover while others publish, through either node.
fn history_recovery(rc: &RedisCluster) {
    let mut flags: Vec<&str> = history_cases::FLAGS.to_vec();
    flags.extend(["--presence-ttl", "10"]);
    let cl = history_cases::Cluster {
        nodes: vec![
            cluster_node("n1", rc, &flags),
            cluster_node("n2", rc, &flags),
        ],
    };
    history_cases::offsets_are_consecutive_and_only_on_history_channels(&cl);
    history_cases::drop_and_recover_while_publishing(&cl, true);
}
