//! The two per-message hot paths of the WebSocket codec: decoding a small
//! masked client text frame, and framing a broadcast once.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchboard::ws::{encode_client_frame, text_frame_with, Decoder, Message, OpCode, Role};

fn payload() -> Vec<u8> {
    let mut p =
        br#"{"type":"user_action","channel":"doc:42","data":{"x":1,"y":2},"id":7}"#.to_vec();
    p.resize(100, b' ');
    p
}

fn decode(c: &mut Criterion) {
    let mut frame = Vec::new();
    encode_client_frame(
        OpCode::Text,
        true,
        &payload(),
        [0x6d, 0xb6, 0xb2, 0x80],
        &mut frame,
    );
    let mut decoder = Decoder::new(Role::Server, 64 * 1024);
    let mut g = c.benchmark_group("ws_decode");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    // Decoding unmasks in place, so every iteration gets a fresh copy
    // (made outside the timed part).
    g.bench_function("masked_text_100", |b| {
        b.iter_batched_ref(
            || frame.clone(),
            |input| match decoder.decode(input) {
                Ok((n, Some(Message::Text(t)))) => black_box((n, t.len())),
                other => panic!("{other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let payload = payload();
    let mut g = c.benchmark_group("ws_encode");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("text_frame_with_100", |b| {
        b.iter(|| text_frame_with(|v| v.extend_from_slice(black_box(&payload))))
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
