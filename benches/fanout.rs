//! Fan-out of one broadcast to 10 000 connections on one worker, through
//! the worker's own driver (dispatch, registry, connections, flush) over
//! in-memory sockets that take a bounded number of bytes per write
//! (`support/node.rs`): the registry lookup, a reference-counted frame
//! queued per member, and each member's vectored write. The kernel's share
//! of a real write (about 5 µs on loopback, see `perf/floor`) is not here;
//! this is everything switchboard adds to it.
//!
//! Before the timed runs it prints the heap allocations per recipient on the
//! broadcast path, counted by a global allocator (the target is 0 once the
//! first message has given every queue its capacity);
//! `tests/fanout_allocs.rs` asserts the same figure.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use switchboard::ws::text_frame_with;

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/node.rs"]
mod node;

use node::{action_frame, Room, CHANNEL};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const MEMBERS: usize = 10_000;
/// What a loopback socket takes in one call here, comfortably more than a
/// turn's frames.
const SOCKET_ROOM: usize = 64 * 1024;

fn frame() -> Bytes {
    text_frame_with(|v| {
        v.extend_from_slice(br#"{"type":"user_action","channel":""#);
        v.extend_from_slice(CHANNEL.as_bytes());
        v.extend_from_slice(
            br#"","action":{"s":123456,"t":98765432101234,"p":0,"pad":"xxxxxxxxxxxxxxxx"}}"#,
        );
    })
}

/// Allocations per recipient over `messages` broadcasts after one warm-up,
/// for the direct path and for the path through the owner.
fn report_allocations() {
    let messages = 20;
    let f = frame();
    let mut room = Room::new(MEMBERS, SOCKET_ROOM);
    room.deliver(&f);
    room.flush();
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..messages {
            room.deliver(&f);
            room.flush();
        }
    });
    let delivered = messages * MEMBERS as u64;
    println!(
        "allocations: deliver+write: {allocs} over {delivered} deliveries = {:.6} per recipient",
        allocs as f64 / delivered as f64
    );

    let a = action_frame();
    room.publish(0, &a);
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..messages {
            room.publish(0, &a);
        }
    });
    println!(
        "allocations: read+publish through the owner+deliver+write: {allocs} over {messages} messages \
         ({:.1} per message), {delivered} deliveries = {:.6} per recipient",
        allocs as f64 / messages as f64,
        allocs as f64 / delivered as f64
    );
}

fn fanout(c: &mut Criterion) {
    let f = frame();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    // One frame per member per turn: one `write` each (the fanout scenario).
    let mut room = Room::new(MEMBERS, SOCKET_ROOM);
    g.bench_function(BenchmarkId::new("deliver_write", MEMBERS), |b| {
        b.iter(|| {
            room.deliver(black_box(&f));
            room.flush();
        })
    });
    // The two halves, each timed alone (the other runs untimed, so the
    // queues empty between iterations).
    g.bench_function(BenchmarkId::new("deliver_only", MEMBERS), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                room.deliver(black_box(&f));
                spent += start.elapsed();
                room.flush();
            }
            spent
        })
    });
    g.bench_function(BenchmarkId::new("write_only", MEMBERS), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                room.deliver(&f);
                let start = Instant::now();
                room.flush();
                spent += start.elapsed();
            }
            spent
        })
    });
    // Four broadcasts in one turn: each member's four frames leave in one
    // `writev` (the bigroom scenario under load).
    g.throughput(Throughput::Elements(4 * MEMBERS as u64));
    g.bench_function(BenchmarkId::new("deliver4_writev", MEMBERS), |b| {
        b.iter(|| {
            for _ in 0..4 {
                room.deliver(black_box(&f));
            }
            room.flush();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("fanout_owner");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    let a = action_frame();
    g.bench_function(
        BenchmarkId::new("read_publish_deliver_write", MEMBERS),
        |b| b.iter(|| room.publish(0, black_box(&a))),
    );
    g.finish();
}

fn main() {
    report_allocations();
    let mut c = Criterion::default().configure_from_args();
    fanout(&mut c);
    c.final_summary();
}
