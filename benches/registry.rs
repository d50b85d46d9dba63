//! Registry membership changes: one connection joining and leaving a
//! channel that already has N members. Both scan the channel's member list
//! (the delivery loop's `Vec`), so the cost grows with N; joins and leaves
//! are rare next to deliveries, which is the trade `registry.rs` makes.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::registry::{Handle, Registry};

fn h(key: u32) -> Handle {
    Handle { key, serial: 1 }
}

fn join_leave(c: &mut Criterion) {
    let mut g = c.benchmark_group("registry_join_leave");
    for members in [0u32, 100, 10_000] {
        let channel: Arc<str> = "doc:bench".into();
        let mut r = Registry::default();
        for key in 0..members {
            r.add(&channel, h(key));
        }
        // The newcomer sits at the end of the list, where a leave finds it
        // last: the worst case of both scans.
        let newcomer = h(members);
        g.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                assert!(r.add(black_box(&channel), newcomer));
                assert!(r.remove(black_box("doc:bench"), newcomer));
            })
        });
    }
    g.finish();
}

/// Many connections, each in its own channel: the per-channel map work
/// (hash, insert and remove of the channel's entry) with short lists.
fn many_channels(c: &mut Criterion) {
    let names: Vec<Arc<str>> = (0..1000).map(|i| format!("chat:{i}").into()).collect();
    let mut r = Registry::default();
    c.bench_function("registry_join_leave_1000_channels", |b| {
        b.iter(|| {
            for (i, name) in names.iter().enumerate() {
                r.add(name, h(i as u32));
            }
            for (i, name) in names.iter().enumerate() {
                r.remove(name, h(i as u32));
            }
            black_box(r.channel_count())
        })
    });
}

criterion_group!(benches, join_leave, many_channels);
criterion_main!(benches);
