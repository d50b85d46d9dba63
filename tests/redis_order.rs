//! Redis mode, PROTOCOL.md §4 "Order" across nodes: with concurrent
//! publishers on two nodes, every member on every node sees one and the same
//! sequence of a channel's actions, each sender's actions in send order,
//! none lost.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const PUBLISHERS_PER_NODE: usize = 2;
const PER_PUBLISHER: u64 = 300;
const RECEIVERS_PER_NODE: usize = 6;
const CH: &str = "ord:1";

/// Reads user_actions of [`CH`] until `total`, as (conn, seq) pairs.
fn collect(c: &mut Client, total: usize) -> Vec<(String, u64)> {
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["channel"], CH, "{v}");
        let conn = v["conn"]
            .as_str()
            .unwrap_or_else(|| panic!("no conn: {v}"))
            .to_owned();
        let seq = v["action"]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {v}"));
        got.push((conn, seq));
    }
    got
}

#[test]
fn one_order_per_channel_and_fifo_per_sender_across_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let fast = ["--rate", "100000", "--burst", "100000"];
    let nodes = [
        redis_node("na", &redis, &fast),
        redis_node("nb", &redis, &fast),
    ];
    let mut publishers = Vec::new();
    let mut receivers = Vec::new();
    for node in &nodes {
        // Spread over both workers of each node, so the owner worker's
        // hand-off to the other worker is on the path too.
        publishers.extend(connect_spread(node, "pub", PUBLISHERS_PER_NODE));
        receivers.extend(connect_spread(node, "rcv", RECEIVERS_PER_NODE));
    }
    for c in publishers.iter_mut().chain(receivers.iter_mut()) {
        c.timeout = Duration::from_secs(20);
        c.join(CH);
    }
    let total = publishers.len() * PER_PUBLISHER as usize;
    let start = Arc::new(Barrier::new(publishers.len()));
    let began = Instant::now();

    let mut handles = Vec::new();
    for mut c in receivers {
        handles.push(thread::spawn(move || {
            (c.conn().to_owned(), collect(&mut c, total))
        }));
    }
    for mut c in publishers {
        let start = Arc::clone(&start);
        handles.push(thread::spawn(move || {
            start.wait();
            for seq in 0..PER_PUBLISHER {
                c.send_json(json!({"type": "user_action", "channel": CH, "action": {"seq": seq}}));
                // Short bursts, so the two nodes' publications interleave
                // in Redis instead of arriving as two blocks.
                if seq % 5 == 4 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            (c.conn().to_owned(), collect(&mut c, total))
        }));
    }
    let results: Vec<(String, Vec<(String, u64)>)> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("a client thread panicked (see above)"))
        })
        .collect();
    eprintln!(
        "{} actions to {} members on 2 nodes in {:?}",
        total,
        results.len(),
        began.elapsed()
    );

    let (ref_conn, reference) = &results[0];
    for (conn, seq) in &results[1..] {
        if seq != reference {
            let at = seq
                .iter()
                .zip(reference)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{conn} and {ref_conn} saw different orders, first at index {at}: {:?} vs {:?}",
                seq.get(at),
                reference.get(at)
            );
        }
    }
    let mut per_sender: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (conn, seq) in reference {
        per_sender.entry(conn.as_str()).or_default().push(*seq);
    }
    assert_eq!(
        per_sender.len(),
        2 * PUBLISHERS_PER_NODE,
        "senders seen: {:?}",
        per_sender.keys()
    );
    let nodes_seen: BTreeMap<&str, usize> = per_sender.keys().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.split('-').next().unwrap_or_default())
            .or_default() += 1;
        m
    });
    assert_eq!(
        nodes_seen.len(),
        2,
        "publishers on both nodes: {nodes_seen:?}"
    );
    let expected: Vec<u64> = (0..PER_PUBLISHER).collect();
    for (conn, seqs) in per_sender {
        assert_eq!(seqs, expected, "{conn}'s messages in send order, none lost");
    }
    // Interleaved, not one node's burst after the other's: the order test
    // means something only if publishers really raced.
    let switches = reference
        .windows(2)
        .filter(|w| w[0].0.split('-').next() != w[1].0.split('-').next())
        .count();
    eprintln!("node switches in the sequence: {switches}");
    assert!(
        switches >= 2,
        "the nodes' publications did not interleave ({switches} switches)"
    );
    assert_eq!(
        results.len(),
        2 * (PUBLISHERS_PER_NODE + RECEIVERS_PER_NODE)
    );
}
