//! Cost of the metric writes on the message path, and of one scrape.
//!
//! The writes must stay in the low nanoseconds: they run once per client
//! request, once per fan-out and once per loop turn.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::metrics::{render, DeliveredType, Gauges, MsgType, WorkerMetrics};

fn writes(c: &mut Criterion) {
    let m = WorkerMetrics::new();
    c.bench_function("metrics/received", |b| {
        b.iter(|| m.received(black_box(MsgType::Action)))
    });
    c.bench_function("metrics/delivered_fanout", |b| {
        b.iter(|| m.delivered(black_box(DeliveredType::UserAction), black_box(10_000)))
    });
    c.bench_function("metrics/error_by_code", |b| {
        b.iter(|| m.error(black_box("not_joined")))
    });
    // A spread of durations so the bucket scan is not always one compare.
    let samples: Vec<u64> = (0..1024u64).map(|i| (i * 7_919) % 2_000_000).collect();
    let mut i = 0usize;
    c.bench_function("metrics/observe", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            m.loop_time
                .observe(black_box(samples.get(i).copied().unwrap_or(0)))
        })
    });
}

fn scrape(c: &mut Criterion) {
    let workers: Vec<_> = (0..8).map(|_| Arc::new(WorkerMetrics::new())).collect();
    let g = Gauges {
        connections: 10_000,
        channels: 500,
        draining: false,
        broker_up: true,
    };
    c.bench_function("metrics/render_8_workers", |b| {
        b.iter(|| render(black_box(&workers), &g))
    });
}

criterion_group!(benches, writes, scrape);
criterion_main!(benches);
