//! Redis Cluster (PROTOCOL.md 1.1 §13), the parts built so far, against a
//! real cluster of six `redis-server`s ([`RedisCluster`]): our slot of a
//! channel is the cluster's, our slot map read from `CLUSTER SHARDS`
//! through our own RESP3 decoder agrees with `CLUSTER SLOTS`, channels
//! spread over the three shards, a `MOVED` from a real node parses to the
//! right master, and a killed master's slots move to its replica in the map.
//! The binary refuses `--redis-cluster` beside `--redis`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use switchboard::broker::redis::cluster::{
    channel_slot, redirect, Endpoint, NodeAddr, Redirect, SlotMap,
};
use switchboard::resp::{decode, encode_command, Frame, Value};

/// Sends `commands` over one RESP3 connection (after `HELLO 3`) and returns
/// their replies, decoded by switchboard's own codec.
fn resp3(port: u16, commands: &[&[&[u8]]]) -> Vec<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut out = BytesMut::new();
    encode_command(&[b"HELLO", b"3"], &mut out);
    for c in commands {
        encode_command(c, &mut out);
    }
    stream.write_all(&out).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    while replies.len() < commands.len() + 1 {
        assert!(Instant::now() < deadline, "replies so far: {replies:?}");
        while let Some(frame) = decode(&mut buf).expect("RESP3 from Redis decodes") {
            if let Frame::Reply(v) = frame {
                replies.push(v);
            }
        }
        if replies.len() > commands.len() {
            break;
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("node {port} closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if would_block(&e) || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    replies.remove(0); // HELLO
    replies
}

fn addr(port: u16) -> NodeAddr {
    NodeAddr {
        host: "127.0.0.1".to_owned(),
        port,
    }
}

fn shards_map(port: u16) -> SlotMap {
    let reply = resp3(port, &[&[b"CLUSTER", b"SHARDS"]]).remove(0);
    SlotMap::from_shards(&reply, &addr(port), false)
        .unwrap_or_else(|e| panic!("CLUSTER SHARDS of {port}: {e}: {reply:?}"))
}

/// The channels `room:0`..`room:N`, by the port of their master.
fn spread(map: &SlotMap, n: usize) -> BTreeSet<u16> {
    (0..n)
        .map(|i| {
            let slot = channel_slot("sb:", &format!("room:{i}"));
            map.master_of(slot).expect("every slot has a master").1.port
        })
        .collect()
}

#[test]
fn slot_map_slots_and_moved_agree_with_a_real_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // Our CRC16 of the hash tag is the cluster's.
    for ch in ["room:1", "a", "chat:xyz", "odd}name", "n:{x", "émoji"] {
        let key = format!("sb:{{{ch}}}:ch");
        assert_eq!(
            channel_slot("sb:", ch),
            cluster.key_slot(&key),
            "slot of {key}"
        );
    }
    // CLUSTER SHARDS through our decoder, and CLUSTER SLOTS, agree with the
    // cluster's own answer for every slot we look at.
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "three masters: {masters:?}");
    let seed = cluster.nodes[0].port;
    let map = shards_map(seed);
    assert_eq!(map.unassigned(), 0, "{map:?}");
    let mut ports: Vec<u16> = map.masters().iter().map(|m| m.port).collect();
    ports.sort();
    assert_eq!(ports, masters);
    let slots_reply = resp3(seed, &[&[b"CLUSTER", b"SLOTS"]]).remove(0);
    let old_map = SlotMap::from_slots(&slots_reply, &addr(seed)).unwrap();
    for slot in (0..16384)
        .step_by(97)
        .chain([0, 5460, 5461, 10922, 10923, 16383])
    {
        let want = cluster.master_port(slot);
        assert_eq!(map.master_of(slot).map(|m| m.1.port), want, "slot {slot}");
        assert_eq!(
            old_map.master_of(slot).map(|m| m.1.port),
            want,
            "slot {slot}"
        );
    }
    // Channels spread over all three shards.
    assert_eq!(spread(&map, 64).len(), 3, "64 channels on 3 shards");

    // A command sent to the wrong master gets a MOVED naming the right one.
    let key = "sb:{room:1}:hm";
    let slot = cluster.key_slot(key);
    let right = cluster.master_port(slot).unwrap();
    let wrong = *masters.iter().find(|&&p| p != right).unwrap();
    let reply = resp3(wrong, &[&[b"HGET", key.as_bytes(), b"f"]]).remove(0);
    let Value::Error(text) = &reply else {
        panic!("expected MOVED, got {reply:?}");
    };
    assert_eq!(
        redirect::parse(text),
        Ok(Some(Redirect::Moved {
            slot,
            to: Endpoint::Node(addr(right))
        }))
    );
    // The right master answers.
    let reply = resp3(right, &[&[b"HGET", key.as_bytes(), b"f"]]).remove(0);
    assert_eq!(reply, Value::Nil);
}

#[test]
fn a_killed_master_slots_go_to_its_replica_in_the_map() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let slot = channel_slot("sb:", "room:1");
    let old = cluster.master_port(slot).unwrap();
    let other_slot = (0..16384u16)
        .find(|&s| cluster.master_port(s) != Some(old))
        .unwrap();
    let other = cluster.master_port(other_slot).unwrap();
    cluster.kill(old);
    let (new, took) = cluster.wait_promoted(slot, old, Duration::from_secs(30));
    eprintln!("failover of port {old} to {new} took {took:?}");
    assert_ne!(new, old);
    let seed = cluster.live().next().unwrap().port;
    let map = shards_map(seed);
    assert_eq!(map.master_of(slot).unwrap().1.port, new);
    assert_eq!(
        map.master_of(other_slot).unwrap().1.port,
        other,
        "other shards unaffected"
    );
    assert_eq!(map.unassigned(), 0, "{map:?}");
}

#[test]
fn the_binary_refuses_redis_cluster_beside_redis() {
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let out = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--redis", "redis://h:1", "--redis-cluster", "redis://h:2"])
        .output()
        .expect("run switchboard");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--redis-cluster") && err.contains("--redis:"),
        "{err}"
    );
}

/// A live resharding of one channel's slot, step by step, as a real cluster
/// answers it: `ASK` for a key already moved, `TRYAGAIN` for a script's
/// keys split over source and target, an answer at the target after
/// `ASKING`, and `MOVED` plus a new map once the slot is given away.
#[test]
fn resharding_answers_ask_tryagain_then_moved() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (k1, k2) = ("sb:{room:7}:hm", "sb:{room:7}:pr");
    let slot = cluster.key_slot(k1);
    let from = cluster.master_port(slot).unwrap();
    let to = *cluster.master_ports().iter().find(|&&p| p != from).unwrap();
    for k in [k1, k2] {
        assert_eq!(
            cluster.node(from).cmd(&["SET", k, "v"]),
            Resp::Simple("OK".into())
        );
    }
    assert_eq!(cluster.begin_migration(slot, to), from);
    cluster.migrate_keys(from, to, &[k1]);

    let parse_err = |v: &Value| match v {
        Value::Error(e) => redirect::parse(e),
        other => panic!("expected an error, got {other:?}"),
    };
    let replies = resp3(
        from,
        &[
            &[b"GET", k1.as_bytes()],
            &[b"GET", k2.as_bytes()],
            &[b"EXISTS", k1.as_bytes(), k2.as_bytes()],
        ],
    );
    assert_eq!(
        parse_err(&replies[0]),
        Ok(Some(Redirect::Ask {
            slot,
            to: Endpoint::Node(addr(to))
        }))
    );
    assert!(
        matches!(&replies[1], Value::Bulk(b) if &b[..] == b"v"),
        "{replies:?}"
    );
    assert_eq!(parse_err(&replies[2]), Ok(Some(Redirect::TryAgain)));
    // The target answers only after ASKING; without it, MOVED to the source.
    let replies = resp3(
        to,
        &[
            &[b"GET", k1.as_bytes()],
            &[b"ASKING"],
            &[b"GET", k1.as_bytes()],
        ],
    );
    assert_eq!(
        parse_err(&replies[0]),
        Ok(Some(Redirect::Moved {
            slot,
            to: Endpoint::Node(addr(from))
        }))
    );
    assert!(
        matches!(&replies[2], Value::Bulk(b) if &b[..] == b"v"),
        "{replies:?}"
    );

    cluster.finish_migration(slot, from, to);
    let reply = resp3(from, &[&[b"GET", k2.as_bytes()]]).remove(0);
    assert_eq!(
        parse_err(&reply),
        Ok(Some(Redirect::Moved {
            slot,
            to: Endpoint::Node(addr(to))
        }))
    );
    assert_eq!(shards_map(from).master_of(slot).unwrap().1.port, to);
}
