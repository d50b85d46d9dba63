//! permessage-deflate on our payloads (issue 12).
//!
//! - `backend/*`: raw deflate with a sync flush of a 1 KiB JSON event, by
//!   `flate2` over zlib-rs (what the server uses, through [`Deflater`]) at
//!   levels 1 and 6, against miniz_oxide at the same levels, and inflate by
//!   each. Printed first: the compressed size for each.
//! - `compress_once/N`: one broadcast to N members of which every one
//!   negotiated compression: the worker's delivery loop over in-memory
//!   connections, compressing once and queueing the shared twin N times,
//!   against `plain/N`, the same delivery uncompressed.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::ws::deflate::{Broadcast, Deflater, Inflater, WindowBits, TAIL};
use switchboard::ws::{server_frame, OpCode};

#[path = "support/node.rs"]
mod node;

/// A realistic channel event of about 1 KiB: a batch of cursor positions
/// of a collaborative editor.
fn payload() -> Vec<u8> {
    let cursors: Vec<String> = (0..16)
        .map(|i| {
            format!(
                r#"{{"user":"user-{i}","x":{},"y":{},"sel":[{},{}]}}"#,
                (3 + i) * 37 % 1000,
                i * 91 % 800,
                i * 3,
                i * 5
            )
        })
        .collect();
    format!(
        r#"{{"type":"user_action","channel":"doc:bench","user":"alice","conn":"n1-0-1","action":{{"seq":3,"cursors":[{}]}},"offset":18}}"#,
        cursors.join(",")
    )
    .into_bytes()
}

fn miniz(data: &[u8], level: u8) -> Vec<u8> {
    use miniz_oxide::deflate::core::{
        compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
    };
    let flags = create_comp_flags_from_zip_params(level.into(), -15, 0);
    let mut c = CompressorOxide::new(flags);
    let mut out = Vec::with_capacity(data.len());
    let (_, _) = compress_to_output(&mut c, data, TDEFLFlush::Sync, |chunk| {
        out.extend_from_slice(chunk);
        true
    });
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
    out
}

fn miniz_inflate(state: &mut miniz_oxide::inflate::stream::InflateState, body: &[u8]) -> usize {
    use miniz_oxide::inflate::stream::inflate;
    use miniz_oxide::{DataFormat, MZFlush};
    state.reset(DataFormat::Raw);
    let mut input = body.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = [0u8; 4096];
    inflate(state, &input, &mut out, MZFlush::Sync).bytes_written
}

/// Raw deflate with a sync flush at `level` through flate2 (zlib-rs).
fn zlib_rs_deflate(c: &mut flate2::Compress, data: &[u8], out: &mut Vec<u8>) -> usize {
    c.reset();
    out.clear();
    c.compress_vec(data, out, flate2::FlushCompress::Sync)
        .unwrap();
    out.len() - 4
}

fn backends(c: &mut Criterion) {
    let data = payload();
    let mut ours = Deflater::default();
    let zlib_rs = ours.compress(&data, WindowBits::new(15)).unwrap().to_vec();
    eprintln!(
        "payload {} B; zlib-rs level 1 (ours): {} B; miniz_oxide level 1: {} B; level 6: {} B",
        data.len(),
        zlib_rs.len(),
        miniz(&data, 1).len(),
        miniz(&data, 6).len(),
    );
    let mut g = c.benchmark_group("backend");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("zlib-rs_level1_deflate_ours", |b| {
        b.iter(|| {
            black_box(
                ours.compress(black_box(&data), WindowBits::new(15))
                    .map(<[u8]>::len),
            )
        })
    });
    for level in [2u32, 4, 6] {
        let mut z = flate2::Compress::new(flate2::Compression::new(level), false);
        let mut out = Vec::with_capacity(data.len() * 2);
        eprintln!(
            "zlib-rs level {level}: {} B",
            zlib_rs_deflate(&mut z, &data, &mut out)
        );
        g.bench_function(format!("zlib-rs_level{level}_deflate"), |b| {
            b.iter(|| black_box(zlib_rs_deflate(&mut z, black_box(&data), &mut out)))
        });
    }
    g.bench_function("miniz_oxide_level1_deflate", |b| {
        b.iter(|| black_box(miniz(black_box(&data), 1).len()))
    });
    g.bench_function("miniz_oxide_level6_deflate", |b| {
        b.iter(|| black_box(miniz(black_box(&data), 6).len()))
    });
    let mut inflater = Inflater::default();
    g.bench_function("zlib-rs_inflate", |b| {
        b.iter(|| {
            black_box(
                inflater
                    .inflate(black_box(&zlib_rs), 1 << 20)
                    .unwrap()
                    .len(),
            )
        })
    });
    let mut state =
        miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
    assert_eq!(miniz_inflate(&mut state, &zlib_rs), data.len());
    g.bench_function("miniz_oxide_inflate", |b| {
        b.iter(|| black_box(miniz_inflate(&mut state, black_box(&zlib_rs))))
    });
    g.finish();
}

fn compress_once(c: &mut Criterion) {
    let frame = server_frame(OpCode::Text, &payload());
    let mut g = c.benchmark_group("compress_once");
    for members in [1usize, 100, 10_000] {
        g.throughput(Throughput::Elements(members as u64));
        let mut room = node::Room::with_offers(members, 1 << 20, &[Some(15)]);
        g.bench_function(BenchmarkId::new("deflate", members), |b| {
            b.iter(|| {
                // A fresh broadcast each time: its twin is compressed once.
                room.deliver_broadcast(&Broadcast::new(frame.clone(), Some(128)));
                room.flush();
            })
        });
        let mut room = node::Room::new(members, 1 << 20);
        g.bench_function(BenchmarkId::new("plain", members), |b| {
            b.iter(|| {
                room.deliver_broadcast(&Broadcast::new(frame.clone(), None));
                room.flush();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, backends, compress_once);
criterion_main!(benches);
