//! PROTOCOL.md §4 "Order" under load, shared by the one-node test
//! (`fanout.rs`) and the two-node Redis test (`redis_order.rs`): publishers
//! race on one channel while every member records what it receives, then
//! all the records must be one sequence, FIFO per sender, none lost.

use std::collections::BTreeMap;
use std::sync::Barrier;

use super::*;

/// What one member received: its conn id and the (sender conn, seq) of
/// every action, in arrival order.
pub type Seen = (String, Vec<(String, u64)>);

/// Reads user_actions of `channel` until `total`, as (conn, seq) pairs.
pub fn collect_actions(c: &mut Client, channel: &str, total: usize) -> Vec<(String, u64)> {
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        let v = c.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["channel"], channel, "{v}");
        let conn = v["conn"]
            .as_str()
            .unwrap_or_else(|| panic!("no conn: {v}"))
            .to_owned();
        let seq = v["action"]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {v}"));
        got.push((conn, seq));
    }
    got
}

/// Joins every client to `channel` (with a 20 s read timeout), then lets
/// each publisher send `per_publisher` actions `{"seq": n}`, all starting
/// together and calling `pace(n)` after each send, while every client,
/// publishers included, records all the actions on its own thread.
/// Returns the receivers' records, then the publishers'.
pub fn race_publishers(
    mut publishers: Vec<Client>,
    mut receivers: Vec<Client>,
    channel: &str,
    per_publisher: u64,
    pace: fn(u64),
) -> Vec<Seen> {
    for c in publishers.iter_mut().chain(receivers.iter_mut()) {
        c.timeout = Duration::from_secs(20);
        c.join(channel);
    }
    let total = publishers.len() * per_publisher as usize;
    let start = Arc::new(Barrier::new(publishers.len()));

    let mut handles = Vec::new();
    for mut c in receivers {
        let channel = channel.to_owned();
        handles.push(thread::spawn(move || {
            (
                c.conn().to_owned(),
                collect_actions(&mut c, &channel, total),
            )
        }));
    }
    for mut c in publishers {
        let (start, channel) = (Arc::clone(&start), channel.to_owned());
        handles.push(thread::spawn(move || {
            start.wait();
            for seq in 0..per_publisher {
                c.send_json(
                    json!({"type": "user_action", "channel": channel, "action": {"seq": seq}}),
                );
                pace(seq);
            }
            (
                c.conn().to_owned(),
                collect_actions(&mut c, &channel, total),
            )
        }));
    }
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("a client thread panicked (see above)"))
        })
        .collect()
}

/// Asserts that every member saw the same sequence and that in it there
/// are `senders` senders, each with seqs `0..per_publisher` in send order;
/// returns that sequence.
#[track_caller]
pub fn assert_same_order(seen: &[Seen], senders: usize, per_publisher: u64) -> &[(String, u64)] {
    let (ref_conn, reference) = &seen[0];
    for (conn, seq) in &seen[1..] {
        if seq != reference {
            let at = seq
                .iter()
                .zip(reference)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{conn} and {ref_conn} saw different orders, first at index {at}: {:?} vs {:?}",
                seq.get(at),
                reference.get(at)
            );
        }
    }
    let mut per_sender: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (conn, seq) in reference {
        per_sender.entry(conn.as_str()).or_default().push(*seq);
    }
    assert_eq!(
        per_sender.len(),
        senders,
        "senders seen: {:?}",
        per_sender.keys()
    );
    let expected: Vec<u64> = (0..per_publisher).collect();
    for (conn, seqs) in per_sender {
        assert_eq!(seqs, expected, "{conn}'s messages in send order, none lost");
    }
    reference
}
