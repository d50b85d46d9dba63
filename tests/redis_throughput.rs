//! A rough throughput figure, Redis mode against the embedded broker: one
//! publisher floods a channel with `N` actions, 100 receivers count them;
//! deliveries per second from the first send to the last receiver's last
//! frame. Redis mode: publisher on node A, receivers on node B. Embedded:
//! all on one node.
//!
//! Ignored by default (it measures, it does not check much). Run against a
//! release build:
//!
//! ```text
//! cargo build --release --bin switchboard
//! SWITCHBOARD_TEST_BIN=target/release/switchboard \
//!     cargo test --test redis_throughput -- --ignored --nocapture
//! ```
//!
//! `N` is small enough that no queue limit is reached even if receivers
//! lag: each receiver's share (N frames of ~90 bytes) stays under the 4 MiB
//! outbound limit, and node B's share under Redis's 8 MiB pub/sub soft limit.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::*;

const RECEIVERS: usize = 100;
const N: usize = 20_000;

/// Counts complete server text frames in `buf`, keeping a partial one.
fn count_frames(buf: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    let mut n = 0;
    loop {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            break;
        }
        let (len, head) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("no frame this large here"),
            126 => break,
            l => (usize::from(l), 2),
        };
        if rest.len() < head + len {
            break;
        }
        if rest[0] & 0x0f == 0x1 {
            n += 1;
        }
        pos += head + len;
    }
    buf.drain(..pos);
    n
}

/// Reads and drops whatever arrived (presence events of the joins) once
/// they had `settle` to arrive.
fn drain(raws: &mut [Raw], settle: Duration) {
    std::thread::sleep(settle);
    let mut buf = [0u8; 64 * 1024];
    for r in raws.iter_mut() {
        r.stream
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        loop {
            match r.stream.read(&mut buf) {
                Ok(0) => panic!("a receiver was closed"),
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

fn join(raw: &mut Raw, ch: &str) {
    raw.send(&text_frame(&format!(
        r#"{{"type":"join_channel","channel":"{ch}"}}"#
    )));
    loop {
        let f = raw.read_frame(TIMEOUT).expect("joined");
        if f.opcode == 0x1 && f.json()["type"] == "joined" {
            return;
        }
    }
}

/// One run: returns deliveries per second.
fn run(label: &str, publisher_node: &Server, receiver_node: &Server) -> f64 {
    let ch = "bench:1";
    let mut receivers: Vec<Raw> = (0..RECEIVERS)
        .map(|i| Raw::ws(receiver_node.addr, &format!("user=r{i}")))
        .collect();
    for r in receivers.iter_mut() {
        join(r, ch);
    }
    let mut publisher = Raw::ws(publisher_node.addr, "user=pub");
    join(&mut publisher, ch);
    drain(&mut receivers, Duration::from_millis(300));

    // The publisher's own copies are read and dropped by another thread.
    let mut echo = publisher.stream.try_clone().unwrap();
    echo.set_read_timeout(None).unwrap();
    let echo_thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut pending = Vec::new();
        let mut seen = 0;
        while seen < N {
            match echo.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    seen += count_frames(&mut pending);
                }
            }
        }
        seen
    });

    let mut streams: Vec<mio::net::TcpStream> = receivers
        .iter()
        .map(|r| {
            let s = r.stream.try_clone().unwrap();
            s.set_nonblocking(true).unwrap();
            mio::net::TcpStream::from_std(s)
        })
        .collect();
    let mut poll = mio::Poll::new().unwrap();
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, mio::Token(i), mio::Interest::READABLE)
            .unwrap();
    }

    let start = Instant::now();
    let writer = {
        let mut out = publisher.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut batch = Vec::with_capacity(64 * 1024);
            for i in 0..N {
                batch.extend(text_frame(&format!(
                    r#"{{"type":"user_action","channel":"bench:1","action":{}}}"#,
                    100_000 + i
                )));
                if batch.len() > 32 * 1024 {
                    out.write_all(&batch).unwrap();
                    batch.clear();
                }
            }
            out.write_all(&batch).unwrap();
            start.elapsed()
        })
    };

    let mut counts = vec![0usize; RECEIVERS];
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); RECEIVERS];
    let mut done = 0;
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = start + Duration::from_secs(120);
    while done < RECEIVERS {
        assert!(
            Instant::now() < deadline,
            "{label}: {} of {} deliveries after 120 s",
            counts.iter().sum::<usize>(),
            N * RECEIVERS
        );
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => panic!("{label}: receiver {i} closed"),
                    Ok(n) => {
                        pending[i].extend_from_slice(&buf[..n]);
                        let before = counts[i];
                        counts[i] += count_frames(&mut pending[i]);
                        if before < N && counts[i] >= N {
                            done += 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("{label}: {e}"),
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let sent_in = writer.join().unwrap();
    let echoed = echo_thread.join().unwrap();
    assert_eq!(echoed, N, "{label}: the publisher's own copies");
    assert!(counts.iter().all(|&c| c == N), "{label}: {counts:?}");
    let rate = (N * RECEIVERS) as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{label}: {N} actions to {RECEIVERS} receivers: sent in {sent_in:.2?}, \
         all delivered in {elapsed:.2?}: {:.0} actions/s in, {rate:.0} deliveries/s",
        N as f64 / elapsed.as_secs_f64()
    );
    rate
}

#[test]
#[ignore = "a measurement; run with --ignored against a release build"]
fn deliveries_per_second_redis_vs_embedded() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let fast = ["--rate", "1000000", "--burst", "1000000"];
    let embedded = Server::start_node("ne", &fast);
    let e = run("embedded, one node", &embedded, &embedded);
    drop(embedded);
    let a = redis_node("na", &redis, &fast);
    let b = redis_node("nb", &redis, &fast);
    let r = run("redis, publisher on A, receivers on B", &a, &b);
    eprintln!("redis / embedded: {:.2}", r / e);
    let stats = redis.cmd(&["INFO", "stats"]).text();
    for key in ["total_commands_processed", "total_net_output_bytes"] {
        if let Some(line) = stats.lines().find(|l| l.starts_with(key)) {
            eprintln!("redis {line}");
        }
    }
}
