//! The per-message JSON work of the hot path: parsing a `user_action` with a
//! 100-byte action, and encoding the event fanned out to its channel.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use switchboard::proto::{self, Request};

/// A 100-byte action, in the shape of a cursor/edit event.
const ACTION: &str = r##"{"op":"move","x":1234,"y":567,"sel":[12,40],"color":"#ff8800","ts":1717171717171,"tag":"abcdefghij"}"##;

fn request() -> String {
    format!(r#"{{"type":"user_action","id":42,"channel":"doc:42","action":{ACTION}}}"#)
}

fn parse(c: &mut Criterion) {
    assert_eq!(ACTION.len(), 100);
    let text = request();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("user_action_100b", |b| {
        b.iter(|| {
            let env = proto::parse(black_box(text.as_bytes()));
            match env.request {
                Ok(Request::Action { action, .. }) => action.get().len(),
                _ => unreachable!("the bench request is valid"),
            }
        })
    });
    group.bench_function("ping", |b| {
        b.iter(|| proto::parse(black_box(br#"{"type":"ping","id":7}"#)).id)
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut out = Vec::with_capacity(512);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("user_action_100b", |b| {
        b.iter(|| {
            out.clear();
            proto::user_action(
                &mut out,
                black_box("doc:42"),
                Some(black_box("alice")),
                Some(black_box("n1-7f3a")),
                None,
                black_box(ACTION.as_bytes()),
                Some(black_box(18)),
            );
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
