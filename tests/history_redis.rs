//! PROTOCOL.md §5 on two nodes sharing a throwaway `redis-server`: offsets
//! assigned atomically across nodes, recovery through either node, and a new
//! epoch when Redis loses its data. The scenarios are `history_cases/`.
//!
//! Each test starts its own `redis-server` ([`RedisServer`]: a free
//! loopback port, no persistence, killed by pid); the machine's own Redis is
//! never touched. Without `redis-server` the tests are skipped with a note,
//! except under `CI=true`, where they fail.

mod common;
mod history_cases;

use std::thread;
use std::time::Duration;

use common::*;
use history_cases::*;
use serde_json::json;

/// Two nodes, `n1` and `n2`, on a fresh Redis (`None`: no redis-server).
fn cluster() -> Option<(RedisServer, Cluster)> {
    cluster_with(&[])
}

fn cluster_with(extra: &[&str]) -> Option<(RedisServer, Cluster)> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let mut flags: Vec<&str> = vec!["--redis", &url];
    flags.extend(FLAGS);
    flags.extend(extra);
    let nodes = vec![
        Server::start_node("n1", &flags),
        Server::start_node("n2", &flags),
    ];
    let cl = Cluster { nodes };
    wait_healthy(&cl);
    Some((redis, cl))
}

/// Runs a shared scenario on [`cluster`]; skipped without redis-server.
fn run(scenario: impl FnOnce(&Cluster)) {
    if let Some((_redis, cl)) = cluster() {
        scenario(&cl);
    }
}

/// Waits until every node answers `/healthz` 200: all its workers' Redis
/// links are up (the ready line comes before they are).
fn wait_healthy(cl: &Cluster) {
    for node in &cl.nodes {
        wait_health(node, 200, Duration::from_secs(15));
    }
}

#[test]
fn offsets_are_consecutive_and_only_on_history_channels_redis() {
    run(offsets_are_consecutive_and_only_on_history_channels);
}

#[test]
fn drop_and_recover_while_publishing_redis() {
    run(|cl| drop_and_recover_while_publishing(cl, true));
}

/// The subscriber comes back every other time on the node where it is the
/// channel's only member: the node subscribes during the join.
#[test]
fn drop_and_recover_alone_on_a_node_redis() {
    run(|cl| drop_and_recover_while_publishing(cl, false));
}

#[test]
fn not_recovered_for_wrong_epoch_ahead_or_no_history_redis() {
    run(not_recovered_for_wrong_epoch_ahead_or_no_history);
}

#[test]
fn not_recovered_once_events_left_the_history_redis() {
    run(not_recovered_once_events_left_the_history);
}

#[test]
fn history_survives_the_last_member_redis() {
    run(history_survives_the_last_member);
}

#[test]
fn rejoin_with_since_while_joined_redis() {
    run(rejoin_with_since_while_joined);
}

#[test]
fn rejoin_with_since_while_publishing_redis() {
    run(rejoin_with_since_while_publishing);
}

#[test]
fn ill_typed_since_is_bad_request_redis() {
    run(ill_typed_since_is_bad_request);
}

/// A Redis restart loses the history: the channel gets a new epoch and
/// starts again at offset 0 (first event 1), a client of the old epoch is
/// told `recovered:false`, and members connected throughout keep receiving.
#[test]
fn redis_restart_gives_a_new_epoch() {
    let Some((mut redis, cl)) = cluster() else {
        return;
    };
    let ch = "doc:restart";
    let mut a = cl.connect(0, "ra");
    let mut b = cl.connect(1, "rb");
    let old = epoch_of(&a.join(ch));
    assert_eq!(epoch_of(&b.join(ch)), old);
    for i in 0..3 {
        assert_eq!(publish(&mut a, ch, json!(i)), Some(i + 1));
    }
    for _ in 0..3 {
        b.recv_until(|v| v["type"] == "user_action");
    }

    redis.restart();

    // Both nodes come back (each saw its links drop when redis was killed,
    // before the new one listened). Nothing else is asked of node 2 before
    // the next publish: its members must be subscribed again by then
    // without a request of theirs flushing the owner's link.
    wait_healthy(&cl);
    let mut c = cl.connect(0, "rc");
    let v = join_since(&mut c, ch, 3, &old);
    assert_not_recovered(&v);
    let new = epoch_of(&v);
    assert_ne!(new, old, "the history was lost but the epoch stayed: {v}");
    assert_eq!(offset_of(&v), 0, "{v}");

    // Members that stayed connected are subscribed again and see the new
    // numbering; the other node agrees on the new epoch.
    assert_eq!(publish(&mut a, ch, json!("after")), Some(1));
    for member in [&mut b, &mut c] {
        let e = member.recv_until(|v| v["type"] == "user_action" && v["action"] == "after");
        assert_eq!(offset_of(&e), 1, "{e}");
    }
    let mut d = cl.connect(1, "rd");
    let v = join_since(&mut d, ch, 1, &new);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(0), "{v}");
    let v = join_since(&mut cl.connect(1, "re"), ch, 0, &new);
    assert_eq!(v["recovered"], json!(true), "{v}");
    assert_eq!(v["replayed"], json!(1), "{v}");
}

/// The history keys of a channel that has members but no traffic do not
/// run out: each node's presence refresh (here every second, with
/// `--presence-ttl 3`) pushes their expiry back, so a quiet channel keeps
/// its epoch as long as someone is in it, as on the embedded broker.
#[test]
fn quiet_channel_with_members_keeps_its_history_keys() {
    let Some((redis, cl)) = cluster_with(&["--presence-ttl", "3"]) else {
        return;
    };
    let ch = "doc:quiet";
    let mut a = cl.connect(0, "qa");
    a.join(ch);
    publish(&mut a, ch, json!(1));
    let keys = [format!("sb:{{{ch}}}:hm"), format!("sb:{{{ch}}}:hs")];
    let full = 300_000;
    for k in &keys {
        let t = redis.cmd(&["PTTL", k]).int();
        assert!(t > 0 && t <= full, "{k}: PTTL {t}");
    }
    // Five refresh periods: without refreshes the keys would be at or
    // below 295 s; with them, at most one period and one tick (2 s) old.
    thread::sleep(Duration::from_secs(5));
    for k in &keys {
        let t = redis.cmd(&["PTTL", k]).int();
        assert!(t > full - 3_000, "{k} was not refreshed: PTTL {t} ms");
    }
}
