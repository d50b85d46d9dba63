//! PROTOCOL.md §8 close codes driven by limits: 4008 for a slow consumer
//! (with the server's memory staying bounded) and 4009 for repeated
//! rate limiting.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

const OUTBOUND_LIMIT: usize = 64 * 1024;
/// Messages published while the slow consumer does not read.
const MESSAGES: usize = 2_000;
/// Padding per action: 2 000 × 8 KiB = 16 MiB published in all, which a
/// server without the outbound limit would have to hold for the slow one.
const PAD: usize = 8 * 1024;
/// Allowed growth of the server's resident memory while publishing. The
/// server may hold at most the 64 KiB limit plus one frame per connection
/// (three here), a per-worker read scratch buffer and allocator slack; 8 MiB
/// is generous for that and still half of what unbounded queueing costs.
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

#[test]
fn slow_consumer_is_closed_4008_while_others_keep_receiving() {
    let limit = OUTBOUND_LIMIT.to_string();
    let s = Server::start(&[
        "--outbound-limit",
        &limit,
        "--rate",
        "100000",
        "--burst",
        "100000",
    ]);

    // The slow consumer: a tiny receive window so the server's queue, not
    // the kernel, has to absorb what it does not read.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&s.addr.into()).expect("connect");
    let mut slow = Client::from_stream(TcpStream::from(sock), s.addr, "user=slow", &[])
        .unwrap_or_else(|e| panic!("slow client: {e}"));
    slow.join("slow:1");

    let mut fast = s.connect("user=fast");
    fast.join("slow:1");
    let mut publisher = s.connect("user=pub");
    publisher.join("slow:1");
    let gone = slow.conn().to_owned();

    // The fast consumer reports its progress so the publisher can stay at
    // most WINDOW messages ahead of it too.
    let (progress_tx, progress) = mpsc::channel::<usize>();
    // The slow consumer resumes reading once it is cut off (the others see
    // it leave) or publishing is over. It must not wait longer: the server
    // keeps a closing connection's last bytes for a bounded time
    // (`FLUSH_GRACE`), and a consumer that does not read by then gets an
    // EOF instead of the close frame, however long this test's publishing
    // takes on a loaded machine.
    let (cut_tx, cut) = mpsc::channel::<()>();
    let slow_reader = thread::spawn(move || {
        let _ = cut.recv_timeout(Duration::from_secs(120));
        slow.timeout = Duration::from_secs(10);
        slow.expect_close(4008)
    });
    let fast_reader = {
        let gone = gone.clone();
        let cut_tx = cut_tx.clone();
        thread::spawn(move || {
            fast.timeout = Duration::from_secs(20);
            let mut saw_leave = false;
            for i in 0..MESSAGES {
                let v = next_action(&mut fast, &gone, &mut saw_leave, &cut_tx);
                assert_eq!(
                    v["action"]["seq"].as_u64(),
                    Some(i as u64),
                    "fast consumer lost or reordered"
                );
                let _ = progress_tx.send(i + 1);
            }
            (fast, saw_leave)
        })
    };

    let baseline = s.vm_rss_kib();
    let mut peak = baseline;
    let pad = "p".repeat(PAD);
    // At most WINDOW actions in flight to the publisher itself and to the
    // fast consumer, so their queues stay far under the outbound limit (4 ×
    // 8 KiB) however the threads are scheduled; only the slow one lags.
    const WINDOW: usize = 4;
    let mut echoed = 0;
    let mut fast_seen = 0;
    let mut publisher_saw_leave = false;
    for seq in 0..MESSAGES {
        publisher.send_json(
            json!({"type": "user_action", "channel": "slow:1", "action": {"seq": seq, "pad": pad}}),
        );
        if seq + 1 - echoed >= WINDOW {
            next_action(&mut publisher, &gone, &mut publisher_saw_leave, &cut_tx);
            echoed += 1;
        }
        while seq + 1 - fast_seen >= WINDOW {
            fast_seen = progress
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("the fast consumer stalled at {fast_seen} ({e})"));
        }
        if seq % 100 == 0 {
            peak = peak.max(s.vm_rss_kib());
        }
    }
    while echoed < MESSAGES {
        next_action(&mut publisher, &gone, &mut publisher_saw_leave, &cut_tx);
        echoed += 1;
    }
    peak = peak.max(s.vm_rss_kib());
    let (mut fast, fast_saw_leave) = fast_reader
        .join()
        .unwrap_or_else(|_| panic!("the fast consumer failed (see above)"));

    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "server RSS grew by {growth} KiB (baseline {baseline} KiB, peak {peak} KiB) with a {OUTBOUND_LIMIT}-byte outbound limit"
    );

    // The queued data comes first, then the close.
    let _ = cut_tx.send(());
    let texts = slow_reader
        .join()
        .unwrap_or_else(|_| panic!("the slow consumer got no 4008 close (see above)"));
    let actions = texts
        .iter()
        .filter(|t| t.contains("\"user_action\""))
        .count();
    assert!(
        actions < MESSAGES,
        "the slow consumer got all {actions} messages: it was never cut off"
    );

    // The others see the slow one leave (a 4008 is a disconnect, §4) and are
    // otherwise unaffected.
    for (c, saw_leave) in [
        (&mut fast, fast_saw_leave),
        (&mut publisher, publisher_saw_leave),
    ] {
        if !saw_leave {
            c.recv_until(|v| is_leave_of(v, &gone));
        }
        c.send_json(json!({"type": "ping", "id": 1}));
        assert_eq!(
            c.recv_until(|v| v["type"] == "pong"),
            json!({"type": "pong", "id": 1})
        );
    }
    let v = publisher.request(json!({"type": "presence", "channel": "slow:1"}));
    assert_eq!(
        members(&v),
        who(&[&fast, &publisher]),
        "the slow one left the channel: {v}"
    );
}

fn is_leave_of(v: &Value, conn: &str) -> bool {
    v["type"] == "presence" && v["event"] == "leave" && v["conn"] == conn
}

/// Reads until the next `user_action`, noting a presence leave of `gone`
/// (and telling `cut` when it is the first).
fn next_action(c: &mut Client, gone: &str, saw_leave: &mut bool, cut: &mpsc::Sender<()>) -> Value {
    let mut seen = c.recv_all_until(|v| v["type"] == "user_action");
    if !*saw_leave && seen.iter().any(|v| is_leave_of(v, gone)) {
        *saw_leave = true;
        let _ = cut.send(());
    }
    seen.pop().expect("recv_all_until returns the match last")
}

#[test]
fn tenth_rate_limited_in_a_row_closes_4009() {
    let s = Server::start(&["--rate", "1", "--burst", "1"]);
    let mut c = s.connect("user=a");
    c.send_json(json!({"type": "ping", "id": 0}));
    assert_eq!(c.recv_json(), json!({"type": "pong", "id": 0}));
    for id in 1..=10 {
        c.send_json(json!({"type": "ping", "id": id}));
    }
    for id in 1..=10 {
        let v = c.recv_json();
        assert_eq!(v["type"], "error", "request {id}: {v}");
        assert_eq!(v["code"], "rate_limited", "request {id}: {v}");
    }
    let after = c.expect_close(4009);
    assert!(
        after.is_empty(),
        "nothing between the 10th rate_limited and the close: {after:?}"
    );
}

#[test]
fn an_accepted_request_resets_the_rate_limited_streak() {
    let s = Server::start(&["--rate", "1", "--burst", "1"]);
    let mut c = s.connect("user=a");
    c.send_json(json!({"type": "ping", "id": 0}));
    assert_eq!(c.recv_json(), json!({"type": "pong", "id": 0}));
    for id in 1..=9 {
        c.send_json(json!({"type": "ping", "id": id}));
        assert_eq!(c.recv_json()["code"], "rate_limited");
    }
    // One token comes back after a second; only waiting gets it.
    thread::sleep(Duration::from_millis(1_100));
    c.send_json(json!({"type": "ping", "id": 100}));
    assert_eq!(
        c.recv_json(),
        json!({"type": "pong", "id": 100}),
        "a refilled token is accepted"
    );
    // Nine more in a row: still open.
    for id in 101..=109 {
        c.send_json(json!({"type": "ping", "id": id}));
        assert_eq!(c.recv_json()["code"], "rate_limited", "request {id}");
    }
    // Nine in a row do not close: the tenth still gets its error reply.
    c.send_json(json!({"type": "ping", "id": 110}));
    assert_eq!(c.recv_json()["code"], "rate_limited");
    c.expect_close(4009);
}
