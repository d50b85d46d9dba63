//! PROTOCOL.md §4 across workers: broadcast to every member (sender
//! included), presence snapshots and events, and the ordering guarantee
//! (one order per channel, FIFO per sender).

mod common;

use common::*;
use serde_json::json;

#[test]
fn broadcast_reaches_every_member_on_both_workers_sender_included() {
    let s = Server::start(&[]);
    let [w0, w1] = connect_on_both_workers(&s, "m", 3);
    let mut all: Vec<Client> = w0.into_iter().chain(w1).collect();
    for c in all.iter_mut() {
        c.join("fan:1");
    }
    // One sender on each worker.
    for sender in [0, 3] {
        let (user, conn) = (all[sender].user().to_owned(), all[sender].conn().to_owned());
        all[sender].send_json(
            json!({"type": "user_action", "channel": "fan:1", "action": {"from": sender}}),
        );
        for c in all.iter_mut() {
            let v = c.recv_until(|v| v["type"] == "user_action");
            let expected = json!({
                "type": "user_action", "channel": "fan:1", "user": user, "conn": conn,
                "action": {"from": sender}
            });
            assert_eq!(
                v,
                expected,
                "delivery to {} (worker {})",
                c.conn(),
                c.worker()
            );
        }
    }
    // A channel's events stay in it: a member of another channel gets nothing.
    let mut outsider = s.connect("user=outsider");
    outsider.join("fan:2");
    all[1].send_json(json!({"type": "user_action", "channel": "fan:1", "action": "x"}));
    for c in all.iter_mut() {
        c.recv_until(|v| v["type"] == "user_action");
    }
    outsider.expect_silence(SILENCE);
}

#[test]
fn members_and_presence_events_span_both_workers() {
    let s = Server::start(&[]);
    let [mut w0, mut w1] = connect_on_both_workers(&s, "p", 2);
    let mut a = w0.pop().expect("worker 0 client"); // member on worker 0
    let mut b = w1.pop().expect("worker 1 client"); // member on worker 1
    let mut j0 = w0.pop().expect("worker 0 client"); // actor on worker 0
    let mut j1 = w1.pop().expect("worker 1 client"); // actor on worker 1
    let ch = "pr:1";

    let v = a.join(ch);
    assert_eq!(members(&v), who(&[&a]), "{v}");
    let v = b.join(ch);
    assert_eq!(
        members(&v),
        who(&[&a, &b]),
        "b (worker 1) sees a (worker 0): {v}"
    );
    expect_presence(&mut a, ch, "join", &b);

    let v = join_as_actor(&mut j0, ch);
    assert_eq!(members(&v), who(&[&a, &b, &j0]), "{v}");
    expect_presence(&mut a, ch, "join", &j0);
    expect_presence(&mut b, ch, "join", &j0);

    let v = join_as_actor(&mut j1, ch);
    assert_eq!(members(&v), who(&[&a, &b, &j0, &j1]), "{v}");
    for c in [&mut a, &mut b, &mut j0] {
        expect_presence(c, ch, "join", &j1);
    }

    // The actors never get their own presence events: barrier on an action.
    for c in [&mut j0, &mut j1] {
        c.send_json(json!({"type": "user_action", "channel": ch, "action": "barrier"}));
        let conn = c.conn().to_owned();
        let seen = c.recv_all_until(|v| v["type"] == "user_action" && v["conn"] == conn.as_str());
        assert_none_about(&seen, &conn);
    }

    let v = a.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a, &b, &j0, &j1]), "{v}");

    // Leave by request.
    let (v, before) = j0.request_noting(json!({"type": "leave_channel", "channel": ch}));
    assert_eq!(v["type"], "left", "{v}");
    assert_none_about(&before, j0.conn());
    for c in [&mut a, &mut b, &mut j1] {
        expect_presence(c, ch, "leave", &j0);
    }
    let v = b.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a, &b, &j1]), "{v}");

    // Leave by disconnect.
    let (j1_user, j1_conn) = (j1.user().to_owned(), j1.conn().to_owned());
    drop(j1);
    for c in [&mut a, &mut b] {
        let v = c.recv_until(|v| v["type"] == "presence");
        assert_eq!(
            v,
            json!({"type": "presence", "channel": ch, "event": "leave", "user": j1_user, "conn": j1_conn})
        );
    }
    let v = a.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&v), who(&[&a, &b]), "{v}");
}

/// Joins and asserts the joiner got no presence event about itself first.
#[track_caller]
fn join_as_actor(c: &mut Client, ch: &str) -> serde_json::Value {
    let (v, before) = c.request_noting(json!({"type": "join_channel", "channel": ch}));
    assert_eq!(v["type"], "joined", "{v}");
    assert_none_about(&before, c.conn());
    v
}

/// No presence event in `seen` is about `conn`.
#[track_caller]
fn assert_none_about(seen: &[serde_json::Value], conn: &str) {
    for v in seen {
        assert!(
            !(v["type"] == "presence" && v["conn"] == conn),
            "{conn} got a presence event about itself: {v}"
        );
    }
}

/// The next presence event of `c` is `event` for `actor`, fields exact.
#[track_caller]
fn expect_presence(c: &mut Client, ch: &str, event: &str, actor: &Client) {
    let v = c.recv_until(|v| v["type"] == "presence");
    let expected = json!({
        "type": "presence", "channel": ch, "event": event, "user": actor.user(), "conn": actor.conn()
    });
    assert_eq!(
        v,
        expected,
        "presence seen by {} (worker {})",
        c.conn(),
        c.worker()
    );
}

const PUBLISHERS_PER_WORKER: usize = 2;
const PER_PUBLISHER: u64 = 500;
const RECEIVERS: usize = 40;
const CH: &str = "ord:1";

#[test]
fn one_order_per_channel_and_fifo_per_sender_across_workers() {
    let s = Server::start(&["--rate", "100000", "--burst", "100000"]);
    let [p0, p1] = connect_on_both_workers(&s, "pub", PUBLISHERS_PER_WORKER);
    let publishers: Vec<Client> = p0.into_iter().chain(p1).collect();
    let receivers = connect_spread(&s, "rcv", RECEIVERS);
    let seen = race_publishers(publishers, receivers, CH, PER_PUBLISHER, |_| {});
    assert_same_order(&seen, 2 * PUBLISHERS_PER_WORKER, PER_PUBLISHER);
    assert!(seen.len() >= RECEIVERS + 2 * PUBLISHERS_PER_WORKER);
}
