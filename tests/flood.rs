//! The queues between workers are bounded (docs/architecture.md, "Bounds"):
//! clients on every worker flood one channel's owner as fast as they can
//! write, and every accepted action is still acknowledged, once, while the
//! server's memory stays bounded. At the bound a worker stops reading its
//! clients until the owner catches up, so the flood waits in the kernel's
//! buffers and the clients' own, not in the server.

mod common;
#[path = "../benches/support/node.rs"]
mod node;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Publishers per worker.
const PER_WORKER: usize = 2;
/// Actions each publisher sends in one write.
const ACTIONS: u64 = 5_000;
/// Padding per action, so the flood is megabytes, not kilobytes.
const PAD: usize = 200;
/// Allowed growth of the server's resident memory over the flood: the
/// queues hold at most `QUEUE_BOUND` messages each plus a read's worth, the
/// publishers' outbound queues at most what their own 5 000 events take
/// (about 1.5 MiB each); the rest is allocator slack.
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;

#[test]
fn a_flood_from_every_worker_is_acked_in_full_with_memory_bounded() {
    let server = Server::start(&["--rate", "1000000", "--burst", "1000000"]);
    // One channel per publisher (each hears only its own actions), every
    // one owned by worker 0.
    let channels: Vec<String> = (0..)
        .map(|i| format!("flood:{i}"))
        .filter(|c| switchboard::broker::owner_of(c, 2) == 0)
        .take(2 * PER_WORKER)
        .collect();
    // Raw sockets: one thread writes the whole flood while another reads.
    let mut publishers = Vec::new();
    for _ in 0..64 {
        if publishers.len() == 2 * PER_WORKER {
            break;
        }
        let mut raw = Raw::ws(server.addr, &format!("user=p{}", publishers.len()));
        let w = worker_of(raw.welcome["conn"].as_str().expect("conn"));
        let on_w = publishers.iter().filter(|(_, pw)| *pw == w).count();
        if on_w >= PER_WORKER {
            continue;
        }
        let channel = &channels[publishers.len()];
        raw.send(&text_frame(
            &json!({"type": "join_channel", "channel": channel, "id": 0}).to_string(),
        ));
        let joined = raw.read_frame(TIMEOUT).expect("joined").json();
        assert_eq!(joined["type"], "joined", "{joined}");
        publishers.push((raw, w));
    }
    assert_eq!(
        publishers.len(),
        2 * PER_WORKER,
        "publishers on both workers"
    );
    let rss_before = server.vm_rss_kib();
    let pad = "x".repeat(PAD);
    let started = Instant::now();
    let readers: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(p, (mut raw, _))| {
            let channel = &channels[p];
            let mut flood = Vec::new();
            for id in 1..=ACTIONS {
                let req = json!({"type": "user_action", "channel": channel, "id": id,
                                 "action": {"p": p, "pad": pad}});
                flood.extend(text_frame(&req.to_string()));
            }
            let mut writer = raw.stream.try_clone().expect("clone");
            thread::spawn(move || {
                writer
                    .set_write_timeout(Some(Duration::from_secs(60)))
                    .expect("write timeout");
                writer.write_all(&flood).expect("the flood is written");
            });
            thread::spawn(move || {
                let mut acked = vec![false; ACTIONS as usize + 1];
                let mut acks = 0;
                while acks < ACTIONS {
                    let f = raw
                        .try_read_frame(Duration::from_secs(60))
                        .unwrap_or_else(|e| panic!("publisher {p}: {acks} acks, then {e:?}"));
                    let v = f.json();
                    match v["type"].as_str() {
                        Some("ack") => {
                            let id = v["id"].as_u64().expect("id") as usize;
                            assert!(!acked[id], "publisher {p}: ack {id} twice");
                            acked[id] = true;
                            acks += 1;
                        }
                        Some("user_action") => {}
                        _ => panic!("publisher {p}: unexpected {v}"),
                    }
                }
                acks
            })
        })
        .collect();
    let mut peak = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        peak = peak.max(server.vm_rss_kib());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood was not acked within 120 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let total: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert_eq!(total, 2 * PER_WORKER as u64 * ACTIONS);
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "{total} actions acked in {:?}; server RSS {rss_before} KiB, peak +{growth} KiB",
        started.elapsed()
    );
    assert!(
        growth <= RSS_GROWTH_BOUND_KIB,
        "server RSS grew by {growth} KiB during the flood"
    );
}

/// The bound itself, on the worker's own driver over an in-memory socket:
/// while another worker's queue holds `QUEUE_BOUND` messages, a read waits
/// (the bytes stay in the socket); once that worker has handled them, the
/// read happens and the request is answered.
#[test]
fn reads_wait_while_another_workers_queue_is_at_its_bound() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use switchboard::broker::{Broker, Msg, Owner, OwnerLimits, ToWorker, QUEUE_BOUND};
    use switchboard::config::Config;
    use switchboard::node::Node;
    use switchboard::worker::{Driver, Shared};

    let config = Arc::new(Config {
        threads: 2,
        ..Config::default()
    });
    let poll = mio::Poll::new().expect("poll");
    // One waker per poll (mio's rule); both workers' slots share it.
    let waker = Arc::new(mio::Waker::new(poll.registry(), switchboard::id::WAKER).expect("waker"));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..2).map(|_| crossbeam_channel::unbounded()).unzip();
    let node = Node::new(config.clone(), 2, false, None);
    let metrics = node.metrics[0].clone();
    let shared = Arc::new(Shared::new(node, senders, vec![waker.clone(), waker]));
    let owner = Owner::new(OwnerLimits { config, metrics }, 1);
    let mut d = Driver::new(0, shared.clone(), Broker::Embedded(owner));
    let input = Rc::new(RefCell::new(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    let counters = Rc::new(node::Counters::default());
    let key = d.insert(node::MemSocket::new(
        input.clone(),
        counters.clone(),
        1 << 16,
    ));

    // Worker 1 has not handled a full queue's worth of messages yet.
    let full: Vec<Msg> = (0..QUEUE_BOUND)
        .map(|_| Msg::Worker(ToWorker::Shutdown))
        .collect();
    shared.queues.send(1, full);
    assert!(shared.queues.congested(0) && !shared.queues.congested(1));
    d.read(key, false);
    assert!(!d.pump(), "one connection: one round");
    assert!(d.has_deferred(), "the read waits");
    assert_eq!(counters.taken.get(), 0, "nothing answered");
    assert!(
        !input.borrow().is_empty(),
        "the request stays in the socket"
    );
    d.resume_deferred();
    assert!(d.has_deferred(), "still at the bound");

    // Worker 1 handles its queue.
    let batch = receivers[1].try_recv().expect("the batch");
    shared.queues.handled(1, batch.len());
    d.resume_deferred();
    assert!(!d.pump(), "one connection: one round");
    assert!(!d.has_deferred());
    assert!(input.borrow().is_empty(), "read");
    assert!(counters.taken.get() > 0, "answered");
}
