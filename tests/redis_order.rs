//! Redis mode, PROTOCOL.md §4 "Order" across nodes: with concurrent
//! publishers on two nodes, every member on every node sees one and the same
//! sequence of a channel's actions, each sender's actions in send order,
//! none lost.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const PUBLISHERS_PER_NODE: usize = 2;
const PER_PUBLISHER: u64 = 300;
const RECEIVERS_PER_NODE: usize = 6;
const CH: &str = "ord:1";

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
    let total = publishers.len() * PER_PUBLISHER as usize;
    let began = Instant::now();
    // Short bursts, so the two nodes' publications interleave in Redis
    // instead of arriving as two blocks.
    let pace = |seq| {
        if seq % 5 == 4 {
            thread::sleep(Duration::from_millis(2));
        }
    };
    let results = race_publishers(publishers, receivers, CH, PER_PUBLISHER, pace);
    eprintln!(
        "{} actions to {} members on 2 nodes in {:?}",
        total,
        results.len(),
        began.elapsed()
    );
    let reference = assert_same_order(&results, 2 * PUBLISHERS_PER_NODE, PER_PUBLISHER);
    let node_of = |conn: &str| conn.split('-').next().unwrap_or_default().to_owned();
    let sending_nodes: BTreeSet<String> = reference.iter().map(|(c, _)| node_of(c)).collect();
    assert_eq!(
        sending_nodes.len(),
        2,
        "publishers on both nodes: {sending_nodes:?}"
    );
    // Interleaved, not one node's burst after the other's: the order test
    // means something only if publishers really raced.
    let switches = reference
        .windows(2)
        .filter(|w| node_of(&w[0].0) != node_of(&w[1].0))
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
