//! PROTOCOL.md §5 scenarios shared by the embedded broker (`history.rs`)
//! and two nodes over Redis (`history_redis.rs`): each takes a [`Cluster`]
//! of one or more running nodes and spreads its clients over them.
//!
//! Every server these run against keeps history in two namespaces:
//! `doc` (100 events, as the issue asks) and `short` (5 events, for offsets
//! that leave the history); `plain` keeps none. Rates are lifted so that
//! publishers are limited only by their own pacing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// Flags every history test server runs with (plus `--redis` in Redis mode).
pub const FLAGS: [&str; 8] = [
    "--history",
    "doc=100",
    "--history",
    "short=5",
    "--rate",
    "100000",
    "--burst",
    "100000",
];

/// Capacity of the `short` namespace.
pub const SHORT: u64 = 5;

/// One or more nodes sharing a broker.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// A client on node `i` (modulo the node count).
    pub fn connect(&self, i: usize, user: &str) -> Client {
        self.nodes[i % self.nodes.len()].connect(&format!("user={user}"))
    }
}

/// `join_channel` with a `since`; returns the `joined`.
#[track_caller]
pub fn join_since(c: &mut Client, channel: &str, offset: u64, epoch: &str) -> Value {
    let v = c.request(json!({
        "type": "join_channel", "channel": channel,
        "since": {"offset": offset, "epoch": epoch}
    }));
    assert_eq!(
        v["type"], "joined",
        "join {channel} since {offset}/{epoch}: {v}"
    );
    v
}

/// Publishes `action` and returns the `ack`'s offset (`None` when absent).
#[track_caller]
pub fn publish(c: &mut Client, channel: &str, action: Value) -> Option<u64> {
    let ack = c.request(json!({"type": "user_action", "channel": channel, "action": action}));
    assert_eq!(ack["type"], "ack", "publish to {channel}: {ack}");
    assert_eq!(ack["channel"], channel, "{ack}");
    ack.get("offset").map(|o| {
        o.as_u64()
            .unwrap_or_else(|| panic!("ack offset is not an unsigned integer: {ack}"))
    })
}

/// The next message, which must be a `user_action` of `channel`.
#[track_caller]
pub fn next_action(c: &mut Client, channel: &str) -> Value {
    // Presence events (a member who dropped earlier in the test leaving)
    // may come between actions; only actions carry offsets.
    let v = c.recv_until(|v| v["type"] != "presence");
    assert_eq!(v["type"], "user_action", "expected a user_action: {v}");
    assert_eq!(v["channel"], channel, "{v}");
    v
}

/// The `offset` of an event or reply, which must be present.
#[track_caller]
pub fn offset_of(v: &Value) -> u64 {
    v["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no unsigned offset in {v}"))
}

#[track_caller]
pub fn epoch_of(v: &Value) -> String {
    let e = v["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no string epoch in {v}"));
    assert!(!e.is_empty(), "empty epoch in {v}");
    e.to_owned()
}

/// Asserts a `joined` after a `since` that could not be honoured: §5
/// "`recovered:false` replays nothing".
#[track_caller]
pub fn assert_not_recovered(v: &Value) {
    assert_eq!(v["recovered"], json!(false), "{v}");
    assert!(
        v.get("replayed").is_none() || v["replayed"] == json!(0),
        "recovered:false must replay nothing: {v}"
    );
}

/// The first message after a `joined` that replays nothing must be the next
/// live event: publishes one from `publisher` and checks `c` receives exactly
/// that one (nothing replayed slipped in).
#[track_caller]
pub fn expect_next_live(c: &mut Client, publisher: &mut Client, channel: &str, marker: &str) {
    let off = publish(publisher, channel, json!({"marker": marker}));
    let v = next_action(c, channel);
    assert_eq!(
        v["action"],
        json!({"marker": marker}),
        "a replayed event arrived: {v}"
    );
    assert_eq!(v.get("offset").and_then(Value::as_u64), off, "{v}");
}

// ---------------------------------------------------------------------------
// Offsets and where they appear.

/// Offsets start at 1 and grow by one per action, across publishers on
/// every node; `joined`, `ack` and `user_action` carry them on a history
/// channel (joined with the epoch, the same on every node) and never on a
/// channel without history.
pub fn offsets_are_consecutive_and_only_on_history_channels(cl: &Cluster) {
    let ch = "doc:offsets";
    let n = cl.nodes.len();
    // Three publishers and one observer per node.
    let mut pubs: Vec<Client> = (0..3).map(|i| cl.connect(i, &format!("p{i}"))).collect();
    let mut obs: Vec<Client> = (0..n).map(|i| cl.connect(i, &format!("o{i}"))).collect();
    let mut epoch = None::<String>;
    for c in pubs.iter_mut().chain(obs.iter_mut()) {
        let v = c.join(ch);
        assert_eq!(
            v["offset"],
            json!(0),
            "a new channel starts at offset 0: {v}"
        );
        assert!(v.get("recovered").is_none(), "no since, no recovered: {v}");
        assert_eq!(v["replayed"], json!(0), "{v}");
        let e = epoch_of(&v);
        match &epoch {
            None => epoch = Some(e),
            Some(first) => assert_eq!(&e, first, "one epoch per channel on every node: {v}"),
        }
    }
    const PER: usize = 30;
    let handles: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(p, mut c)| {
            thread::spawn(move || {
                (0..PER)
                    .map(|i| {
                        publish(&mut c, ch, json!({"p": p, "i": i}))
                            .unwrap_or_else(|| panic!("ack without offset on {ch}"))
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut acked: Vec<u64> = Vec::new();
    let mut per_pub: Vec<Vec<u64>> = Vec::new();
    for h in handles {
        let offs = h.join().expect("publisher panicked");
        assert!(
            offs.windows(2).all(|w| w[0] < w[1]),
            "one publisher's offsets grow: {offs:?}"
        );
        acked.extend(&offs);
        per_pub.push(offs);
    }
    acked.sort_unstable();
    let total = (3 * PER) as u64;
    assert_eq!(
        acked,
        (1..=total).collect::<Vec<_>>(),
        "acked offsets are 1..={total}"
    );
    for o in obs.iter_mut() {
        let mut by_offset = BTreeMap::new();
        for expected in 1..=total {
            let v = o.recv_until(|v| v["type"] == "user_action");
            assert_eq!(offset_of(&v), expected, "observer {} order", o.conn());
            let (p, i) = (v["action"]["p"].as_u64(), v["action"]["i"].as_u64());
            by_offset.insert(expected, (p, i));
        }
        // The offset each publisher was acked is the one the event carried.
        for (p, offs) in per_pub.iter().enumerate() {
            for (i, off) in offs.iter().enumerate() {
                assert_eq!(
                    by_offset[off],
                    (Some(p as u64), Some(i as u64)),
                    "ack offset {off} of publisher {p} action {i}"
                );
            }
        }
    }

    // A channel without history: no offset, no epoch, anywhere.
    let plain = "plain:offsets";
    let mut a = cl.connect(0, "pa");
    let mut b = cl.connect(1, "pb");
    for c in [&mut a, &mut b] {
        let v = c.join(plain);
        for field in ["offset", "epoch", "recovered"] {
            assert!(
                v.get(field).is_none(),
                "{field} on a channel without history: {v}"
            );
        }
    }
    // The sender's own copy comes before its ack (docs/protocol-notes.md).
    let (ack, before) =
        a.request_noting(json!({"type": "user_action", "channel": plain, "action": 1}));
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(
        ack.get("offset").is_none(),
        "ack offset without history: {ack}"
    );
    let own = before
        .iter()
        .find(|v| v["type"] == "user_action")
        .unwrap_or_else(|| panic!("no own copy before the ack: {before:?}"));
    assert!(
        own.get("offset").is_none(),
        "event offset without history: {own}"
    );
    let v = b.recv_until(|v| v["type"] == "user_action");
    assert!(
        v.get("offset").is_none(),
        "event offset without history: {v}"
    );
}

// ---------------------------------------------------------------------------
// Recovery while publishers keep publishing.

/// Most events the publishers let the subscriber fall behind by: below the
/// `doc` capacity (less the overshoot of three publishers checking at
/// once), so every reconnection can be recovered however slow the machine.
const WINDOW: u64 = 90;
/// How far behind the subscriber is, at least, when it comes back: the
/// publishers, unpaced, still have `WINDOW - BEHIND` events to publish
/// while it connects and joins.
const BEHIND: u64 = 10;
const PUBLISHERS: usize = 3;
const PER_PUBLISHER: u64 = 300;
/// Where the subscriber drops (offsets it has seen).
const DROPS: [u64; 6] = [100, 220, 340, 460, 580, 700];

#[derive(Default)]
struct Progress {
    /// The last offset the subscriber has seen.
    seen: AtomicU64,
    /// The highest offset any publisher was acked.
    acked: AtomicU64,
    finished: AtomicUsize,
}

impl Progress {
    fn bump_acked(&self, off: u64) {
        self.acked.fetch_max(off, Ordering::SeqCst);
    }
}

/// A subscriber drops mid-stream while three publishers keep publishing,
/// and comes back with `since` (on the next node, in a cluster): `joined`
/// first with `recovered:true` and `replayed:K`, then exactly the K missed
/// events, then live ones. Over all its connections it sees every offset
/// exactly once and in order, each event equal to what an observer that
/// never dropped received.
///
/// `spread`: publishers and observer on every node; otherwise all on the
/// first, so that in a cluster the subscriber is alternately the only
/// member on its node (its join also subscribes the node to the channel).
pub fn drop_and_recover_while_publishing(cl: &Cluster, spread: bool) {
    let ch = "doc:recover";
    let n = cl.nodes.len();
    let node = |i: usize| if spread { i } else { 0 };
    let mut pubs: Vec<Client> = (0..PUBLISHERS)
        .map(|i| cl.connect(node(i), &format!("rp{i}")))
        .collect();
    for c in pubs.iter_mut() {
        c.join(ch);
    }
    let mut observer = cl.connect(node(n.saturating_sub(1)), "observer");
    observer.join(ch);
    let mut sub = cl.connect(0, "sub");
    let joined = sub.join(ch);
    assert_eq!(joined["offset"], json!(0), "{joined}");
    let epoch = epoch_of(&joined);

    let progress = Arc::new(Progress::default());
    let total = PUBLISHERS as u64 * PER_PUBLISHER;
    let handles: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(p, mut c)| {
            let progress = Arc::clone(&progress);
            thread::spawn(move || {
                for i in 0..PER_PUBLISHER {
                    // Flow control: never let the subscriber fall out of
                    // the history, whatever the machine's load.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while progress.acked.load(Ordering::SeqCst)
                        >= progress.seen.load(Ordering::SeqCst) + WINDOW
                    {
                        assert!(Instant::now() < deadline, "subscriber stalled");
                        thread::sleep(Duration::from_millis(1));
                    }
                    let off = publish(&mut c, ch, json!({"p": p, "i": i}))
                        .unwrap_or_else(|| panic!("ack without offset"));
                    progress.bump_acked(off);
                }
                progress.finished.fetch_add(1, Ordering::SeqCst);
                c
            })
        })
        .collect();

    // offset -> event, over every connection of the subscriber.
    let mut got: Vec<Value> = Vec::new();
    let record = |v: Value, got: &mut Vec<Value>, progress: &Progress| {
        let off = offset_of(&v);
        assert_eq!(
            off,
            got.len() as u64 + 1,
            "gap or duplicate: expected offset {} next, got {v}",
            got.len() + 1
        );
        got.push(v);
        progress.seen.store(off, Ordering::SeqCst);
    };
    let mut concurrent_joins = 0;
    let mut replays = Vec::new();
    for (cycle, &drop_at) in DROPS.iter().enumerate() {
        while (got.len() as u64) < drop_at {
            let v = sub.recv_until(|v| v["type"] == "user_action");
            assert_eq!(v["channel"], ch, "{v}");
            record(v, &mut got, &progress);
        }
        // A network blip: the socket goes away without a close frame.
        let _ = sub.stream().shutdown(std::net::Shutdown::Both);
        drop(sub);
        let last = got.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.acked.load(Ordering::SeqCst) < last + BEHIND {
            assert!(Instant::now() < deadline, "publishers stalled");
            thread::sleep(Duration::from_millis(1));
        }
        sub = cl.connect(cycle + 1, &format!("sub{cycle}"));
        let before = progress.acked.load(Ordering::SeqCst);
        let v = join_since(&mut sub, ch, last, &epoch);
        let after = progress.acked.load(Ordering::SeqCst);
        if after > before {
            concurrent_joins += 1;
        }
        assert_eq!(
            v["recovered"],
            json!(true),
            "cycle {cycle}, since {last}: {v}"
        );
        assert_eq!(epoch_of(&v), epoch, "{v}");
        let at = offset_of(&v);
        let k = v["replayed"]
            .as_u64()
            .unwrap_or_else(|| panic!("no replayed count: {v}"));
        assert!(
            at >= last + BEHIND,
            "joined offset {at} below {}: {v}",
            last + BEHIND
        );
        assert_eq!(k, at - last, "replayed = joined offset - since offset: {v}");
        replays.push(k);
        // Exactly K replayed events, nothing else between them.
        for _ in 0..k {
            let e = next_action(&mut sub, ch);
            assert!(
                offset_of(&e) <= at,
                "live event {e} among the replayed ones (at {at})"
            );
            record(e, &mut got, &progress);
        }
    }
    while (got.len() as u64) < total {
        let v = sub.recv_until(|v| v["type"] == "user_action");
        assert_eq!(v["channel"], ch, "{v}");
        record(v, &mut got, &progress);
    }
    let mut pubs = Vec::new();
    for h in handles {
        pubs.push(h.join().expect("publisher panicked"));
    }
    assert_eq!(progress.acked.load(Ordering::SeqCst), total);
    // Nothing after the last offset either.
    expect_next_live(&mut sub, &mut pubs[0], ch, "end");

    for (i, mine) in got.iter().enumerate() {
        let theirs = observer.recv_until(|v| v["type"] == "user_action");
        assert_eq!(
            mine,
            &theirs,
            "replayed or live event {} differs from the observer's",
            i + 1
        );
    }
    eprintln!(
        "recovery: replayed {replays:?}; {concurrent_joins}/{} joins overlapped a publish",
        DROPS.len()
    );
    assert!(
        concurrent_joins > 0,
        "no join overlapped a publish: the test did not exercise joins under load"
    );
}

// ---------------------------------------------------------------------------
// recovered:false.

/// A wrong epoch, an offset ahead of the channel, a channel without
/// history: `recovered:false`, nothing replayed, the next event is live.
/// The right epoch at the current offset or at 0: `recovered:true`.
pub fn not_recovered_for_wrong_epoch_ahead_or_no_history(cl: &Cluster) {
    let ch = "doc:norecover";
    let mut p = cl.connect(0, "np");
    let v = p.join(ch);
    let epoch = epoch_of(&v);
    for i in 0..10 {
        assert_eq!(publish(&mut p, ch, json!(i)), Some(i + 1));
    }
    let mut k = 0;
    let mut fresh = |cl: &Cluster| {
        k += 1;
        cl.connect(k, &format!("nr{k}"))
    };

    // Another epoch.
    let mut c = fresh(cl);
    let v = join_since(&mut c, ch, 5, "not-the-epoch");
    assert_not_recovered(&v);
    assert_eq!(offset_of(&v), 10, "{v}");
    assert_eq!(epoch_of(&v), epoch, "{v}");
    expect_next_live(&mut c, &mut p, ch, "epoch");

    // Ahead of the channel (now at 11).
    let mut c = fresh(cl);
    let v = join_since(&mut c, ch, 12, &epoch);
    assert_not_recovered(&v);
    assert_eq!(offset_of(&v), 11, "{v}");
    expect_next_live(&mut c, &mut p, ch, "ahead");

    // Exactly at the channel's offset (12): recovered, nothing missed.
    let mut c = fresh(cl);
    let v = join_since(&mut c, ch, 12, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(0), "{v}");
    expect_next_live(&mut c, &mut p, ch, "current");

    // From 0 with every event still kept: all 13 replayed.
    let mut c = fresh(cl);
    let v = join_since(&mut c, ch, 0, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(13), "{v}");
    for expected in 1..=13 {
        assert_eq!(offset_of(&next_action(&mut c, ch)), expected);
    }
    expect_next_live(&mut c, &mut p, ch, "from-zero");

    // A channel without history, with `since`: recovered:false, no offset.
    let plain = "plain:norecover";
    let mut q = cl.connect(0, "npp");
    q.join(plain);
    let mut c = fresh(cl);
    let v = join_since(&mut c, plain, 0, &epoch);
    assert_not_recovered(&v);
    assert!(v.get("offset").is_none() && v.get("epoch").is_none(), "{v}");
    let ack = q.request(json!({"type": "user_action", "channel": plain, "action": "x"}));
    assert_eq!(ack["type"], "ack", "{ack}");
    let e = next_action(&mut c, plain);
    assert_eq!(e["action"], json!("x"), "{e}");
}

/// With `short=5`, after 12 events only 8..=12 are kept: `since` 7 is
/// recovered (5 replayed), `since` 6 and 3 are not (event 7 and more left
/// the history).
pub fn not_recovered_once_events_left_the_history(cl: &Cluster) {
    let ch = "short:gone";
    let mut p = cl.connect(0, "gp");
    let epoch = epoch_of(&p.join(ch));
    for i in 0..12 {
        assert_eq!(publish(&mut p, ch, json!(i)), Some(i + 1));
    }
    for (k, since) in [3u64, 6].into_iter().enumerate() {
        let mut c = cl.connect(k + 1, &format!("g{k}"));
        let v = join_since(&mut c, ch, since, &epoch);
        assert_not_recovered(&v);
        assert_eq!(offset_of(&v), 12 + k as u64, "{v}");
        expect_next_live(&mut c, &mut p, ch, &format!("gone{since}"));
    }
    // The channel is at 14 now; 10..=14 are kept.
    let mut c = cl.connect(3, "g-ok");
    let v = join_since(&mut c, ch, 14 - SHORT, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(SHORT), "{v}");
    for expected in 14 - SHORT + 1..=14 {
        assert_eq!(offset_of(&next_action(&mut c, ch)), expected);
    }
    expect_next_live(&mut c, &mut p, ch, "kept");
    let mut c = cl.connect(4, "g-late");
    let v = join_since(&mut c, ch, 14 - SHORT, &epoch);
    assert_not_recovered(&v);
}

/// History outlives the channel's last member: everyone leaves, a client
/// comes back with `since` and recovers, even on a channel that had no
/// event yet.
pub fn history_survives_the_last_member(cl: &Cluster) {
    let ch = "doc:idle";
    let mut a = cl.connect(0, "ia");
    let epoch = epoch_of(&a.join(ch));
    for i in 0..4 {
        publish(&mut a, ch, json!(i));
    }
    a.leave(ch);
    drop(a);
    let mut b = cl.connect(1, "ib");
    let v = join_since(&mut b, ch, 2, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(2), "{v}");
    assert_eq!(offset_of(&next_action(&mut b, ch)), 3);
    assert_eq!(offset_of(&next_action(&mut b, ch)), 4);

    // Joined, nothing published, everyone gone: the epoch stays.
    let ch = "doc:idle-empty";
    let mut a = cl.connect(0, "ie");
    let v = a.join(ch);
    let epoch = epoch_of(&v);
    assert_eq!(offset_of(&v), 0);
    drop(a);
    // The disconnect is applied by the owner before a later join only if it
    // has reached it; wait until the channel is empty (a fresh joiner sees
    // no other member).
    let mut b = cl.connect(1, "ie2");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let v = b.join(ch);
        if members(&v).len() == 1 {
            b.leave(ch);
            break;
        }
        b.leave(ch);
        assert!(
            Instant::now() < deadline,
            "the dropped member never left: {v}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut c = cl.connect(0, "ie3");
    let v = join_since(&mut c, ch, 0, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(0), "{v}");
    assert_eq!(epoch_of(&v), epoch, "{v}");
}

/// §5 "An ill-typed `since` is `bad_request`", and the join is not made.
pub fn ill_typed_since_is_bad_request(cl: &Cluster) {
    let mut c = cl.connect(0, "bad");
    let forms = [
        json!(null),
        json!("3"),
        json!(3),
        json!([3, "e"]),
        json!({}),
        json!({"offset": 3}),
        json!({"epoch": "e"}),
        json!({"offset": -1, "epoch": "e"}),
        json!({"offset": 1.5, "epoch": "e"}),
        json!({"offset": "3", "epoch": "e"}),
        json!({"offset": 3, "epoch": 7}),
        json!({"offset": 3, "epoch": null}),
    ];
    for (i, since) in forms.iter().enumerate() {
        let id = 10 + i as u64;
        c.send_json(
            json!({"type": "join_channel", "id": id, "channel": "doc:bad", "since": since}),
        );
        let v = c.recv_reply(id);
        assert_error(&v, "bad_request", Some(id));
        let _ = v;
        let v = c.request(json!({"type": "user_action", "channel": "doc:bad", "action": 1}));
        assert_error(&v, "not_joined", v["id"].as_u64());
    }
}

// ---------------------------------------------------------------------------
// Re-joining with `since` while joined (PROTOCOL.md §5, 1.1).

/// A member that joins its channel again with `since` is answered and
/// replayed exactly like a reconnecting client: `joined` with `recovered`
/// and `replayed:K`, then the K events, then live ones; no presence event
/// and still one membership (one leave ends it).
pub fn rejoin_with_since_while_joined(cl: &Cluster) {
    let ch = "doc:rejoin";
    let mut a = cl.connect(0, "ja");
    let mut b = cl.connect(1, "jb");
    let epoch = epoch_of(&a.join(ch));
    b.join(ch);
    for i in 1..=4 {
        assert_eq!(publish(&mut b, ch, json!(i)), Some(i));
    }
    for i in 1..=4 {
        assert_eq!(offset_of(&next_action(&mut a, ch)), i);
    }
    let v = join_since(&mut a, ch, 1, &epoch);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(3), "{v}");
    assert_eq!(offset_of(&v), 4, "{v}");
    assert_eq!(epoch_of(&v), epoch, "{v}");
    for i in 2..=4 {
        let e = next_action(&mut a, ch);
        assert_eq!((offset_of(&e), &e["action"]), (i, &json!(i)), "{e}");
    }
    expect_next_live(&mut a, &mut b, ch, "after");
    // The other member heard no presence event; the list has one entry
    // per connection.
    let (state, before) = b.request_noting(json!({"type": "presence", "channel": ch}));
    assert!(
        before.iter().all(|v| v["type"] == "user_action"),
        "the re-join showed as a presence event: {before:?}"
    );
    assert_eq!(members(&state), who(&[&a, &b]), "{state}");
    // A `since` the history cannot honour answers recovered:false and
    // leaves the membership alone too.
    let v = join_since(&mut a, ch, 2, "not-the-epoch");
    assert_not_recovered(&v);
    expect_next_live(&mut a, &mut b, ch, "still");
    a.leave(ch);
    let state = b.request(json!({"type": "presence", "channel": ch}));
    assert_eq!(members(&state), who(&[&b]), "one leave ends it: {state}");
}

/// Re-joins with `since` while another node publishes without pause: each
/// answer's replay is exactly `since+1..=offset`, nothing before it is past
/// `offset`, and the first live event after it is `offset+1`: no live event
/// overtakes the replay and none falls between replay and live.
pub fn rejoin_with_since_while_publishing(cl: &Cluster) {
    const REJOINS: usize = 30;
    let ch = "doc:rejoinlive";
    let mut a = cl.connect(0, "jla");
    let epoch = epoch_of(&a.join(ch));
    let stop = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let mut p = cl.connect(1, "jlp");
        p.join(ch);
        let stop = stop.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while stop.load(Ordering::Relaxed) == 0 {
                n += 1;
                publish(&mut p, ch, json!(n));
                // Paced so that a replay is a handful of events.
                thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let mut last = 0u64;
    for round in 0..REJOINS {
        // Rewind by up to 3 events: the replay repeats some applied ones.
        let since = last.saturating_sub(round as u64 % 4);
        let (v, before) = a.request_noting(json!({
            "type": "join_channel", "channel": ch,
            "since": {"offset": since, "epoch": epoch}
        }));
        assert_eq!(v["recovered"], json!(true), "round {round}: {v}");
        let at = offset_of(&v);
        for e in before.iter().filter(|e| e["type"] == "user_action") {
            let off = offset_of(e);
            assert!(
                off <= at,
                "round {round}: live {off} before the joined at {at}"
            );
            assert_eq!(off, last + 1, "round {round}: {e}");
            last = off;
        }
        let k = v["replayed"].as_u64().expect("replayed");
        assert_eq!(k, at - since, "round {round}: {v}");
        for off in since + 1..=at {
            assert_eq!(offset_of(&next_action(&mut a, ch)), off, "round {round}");
        }
        last = at;
        let e = next_action(&mut a, ch);
        assert_eq!(offset_of(&e), at + 1, "round {round}: first live event");
        last += 1;
    }
    stop.store(1, Ordering::Relaxed);
    let published = publisher.join().expect("publisher");
    assert!(published >= last, "{published} published, {last} seen");
}
