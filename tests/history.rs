//! PROTOCOL.md §5 on the embedded broker: offsets, epochs and recovery
//! within one node (the owner worker's history ring). The scenarios live in
//! `history_cases/` and run on two Redis-backed nodes in `history_redis.rs`.

mod common;
mod history_cases;

use common::*;
use history_cases::*;

fn cluster() -> Cluster {
    Cluster {
        nodes: vec![Server::start(&FLAGS)],
    }
}

#[test]
fn offsets_are_consecutive_and_only_on_history_channels_embedded() {
    offsets_are_consecutive_and_only_on_history_channels(&cluster());
}

#[test]
fn drop_and_recover_while_publishing_embedded() {
    drop_and_recover_while_publishing(&cluster(), true);
}

#[test]
fn not_recovered_for_wrong_epoch_ahead_or_no_history_embedded() {
    not_recovered_for_wrong_epoch_ahead_or_no_history(&cluster());
}

#[test]
fn not_recovered_once_events_left_the_history_embedded() {
    not_recovered_once_events_left_the_history(&cluster());
}

#[test]
fn history_survives_the_last_member_embedded() {
    history_survives_the_last_member(&cluster());
}

#[test]
fn ill_typed_since_is_bad_request_embedded() {
    ill_typed_since_is_bad_request(&cluster());
}

/// Epochs of different channels differ, and a restarted server gives a
/// channel a new one: a client of the old process is told to reload.
#[test]
fn restart_gives_a_new_epoch_embedded() {
    let s = Server::start(&FLAGS);
    let mut a = s.connect("user=ra");
    let e1 = epoch_of(&a.join("doc:r1"));
    let e2 = epoch_of(&a.join("doc:r2"));
    assert_ne!(e1, e2, "two channels share an epoch");
    publish(&mut a, "doc:r1", serde_json::json!(1));
    drop(a);
    drop(s);
    let s = Server::start(&FLAGS);
    let mut b = s.connect("user=rb");
    let v = join_since(&mut b, "doc:r1", 1, &e1);
    assert_not_recovered(&v);
    assert_ne!(epoch_of(&v), e1, "{v}");
    assert_eq!(offset_of(&v), 0, "{v}");
}

#[test]
fn rejoin_with_since_while_joined_embedded() {
    rejoin_with_since_while_joined(&cluster());
}

#[test]
fn rejoin_with_since_while_publishing_embedded() {
    rejoin_with_since_while_publishing(&cluster());
}
