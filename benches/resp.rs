//! Decoding what Redis pushes for every published event in Redis mode: a
//! RESP3 `>3 message <channel> <payload>` push frame (RESP3 spec, "Push
//! type"), one at a time and 64 from one read, with the decoder the Redis
//! link keeps per connection.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchboard::resp::{Decoder, Frame, Push};

/// A push as the link receives it: the channel name and a payload of about
/// a broadcast frame's size.
fn message_push() -> Vec<u8> {
    let channel = b"sb:c:doc:bench";
    let mut payload = br#"{"type":"user_action","channel":"doc:bench","user":"u1","conn":"n1-0-1","data":{"s":123456,"t":98765432101234,"p":0}}"#.to_vec();
    payload.resize(160, b' ');
    let mut out = Vec::new();
    out.extend_from_slice(b">3\r\n$7\r\nmessage\r\n");
    out.extend_from_slice(format!("${}\r\n", channel.len()).as_bytes());
    out.extend_from_slice(channel);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(b"\r\n");
    out
}

fn is_message(frame: &Frame) -> bool {
    matches!(frame, Frame::Push(Push::Message { .. }))
}

fn decode(c: &mut Criterion) {
    let one = message_push();
    let mut g = c.benchmark_group("resp_decode");
    g.throughput(Throughput::Elements(1));
    let mut decoder = Decoder::default();
    g.bench_function("message_push", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&one[..]),
            |buf| match decoder.decode(buf) {
                Ok(Some(f)) if is_message(&f) => black_box(f),
                other => panic!("{other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    let many: Vec<u8> = one.repeat(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("message_push_x64_one_read", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&many[..]),
            |buf| {
                let mut n = 0;
                while let Ok(Some(f)) = decoder.decode(buf) {
                    n += usize::from(is_message(&f));
                }
                assert_eq!(n, 64);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
