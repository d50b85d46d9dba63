//! Heap allocations on the broadcast path, counted by a global allocator,
//! through the worker's own driver over in-memory sockets
//! (`benches/support/node.rs`): once the first message has given every
//! outbound queue its capacity, queueing a broadcast for a member and
//! writing it out allocate nothing (issue 7: "heap allocations per recipient
//! on the broadcast path; the target is 0"). Only the per-message work
//! allocates: reading and parsing the publisher's frame, the action copied
//! out of it, and the frame encoded once by the owner.

#[path = "../benches/support/alloc.rs"]
mod alloc;
#[path = "../benches/support/node.rs"]
mod node;

use node::{action_frame, Room};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const MEMBERS: usize = 2_000;
const MESSAGES: u64 = 10;
/// What one write may take: more than a turn's frames.
const ROOM: usize = 64 * 1024;
/// Allocations a published message may cost, whatever the room's size.
const PER_MESSAGE: u64 = 8;

#[test]
fn counting_allocator_counts_this_thread() {
    let (v, n) = alloc::counting(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert_eq!(n, 1);
}

#[test]
fn broadcast_allocates_nothing_per_recipient() {
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let mut room = Room::new(MEMBERS, ROOM);
    room.deliver(&frame);
    room.flush();
    let before = room.taken();
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..MESSAGES {
            room.deliver(&frame);
            room.flush();
        }
    });
    assert_eq!(room.taken() - before, MESSAGES * MEMBERS as u64 * 7);
    assert_eq!(allocs, 0, "allocations on the deliver+write path");
}

#[test]
fn several_frames_per_turn_allocate_nothing_per_recipient() {
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let mut room = Room::new(MEMBERS, ROOM);
    for _ in 0..4 {
        room.deliver(&frame);
    }
    room.flush();
    let calls = room.calls();
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..MESSAGES {
            for _ in 0..4 {
                room.deliver(&frame);
            }
            room.flush();
        }
    });
    assert_eq!(allocs, 0);
    assert_eq!(
        room.calls() - calls,
        MESSAGES * MEMBERS as u64,
        "one writev per member per turn"
    );
}

#[test]
fn publish_through_the_owner_allocates_per_message_only() {
    let mut room = Room::new(MEMBERS, ROOM);
    let a = action_frame();
    room.publish(0, &a);
    let before = room.taken();
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..MESSAGES {
            room.publish(0, &a);
        }
    });
    let per_member = (room.taken() - before) / MESSAGES / MEMBERS as u64;
    assert!(
        per_member > 100,
        "every member got each action ({per_member} B)"
    );
    assert_eq!((room.taken() - before) % (MESSAGES * MEMBERS as u64), 0);
    assert!(
        allocs <= PER_MESSAGE * MESSAGES,
        "{allocs} allocations for {MESSAGES} messages to {MEMBERS} members"
    );
    eprintln!(
        "{:.1} allocations per published message",
        allocs as f64 / MESSAGES as f64
    );
}

/// A 1 KiB JSON event, compressible like real channel traffic: a batch of
/// cursor positions.
fn cursor_json(seq: u64) -> String {
    let cursors: Vec<String> = (0..16)
        .map(|i| {
            format!(
                r#"{{"user":"user-{i}","x":{},"y":{},"sel":[{},{}]}}"#,
                (seq + i) * 37 % 1000,
                i * 91 % 800,
                i * 3,
                i * 5
            )
        })
        .collect();
    format!(r#"{{"seq":{seq},"cursors":[{}]}}"#, cursors.join(","))
}

/// Issue 12: a broadcast to members that negotiated permessage-deflate is
/// compressed once per window size in use, and per member costs no
/// allocation and no compression, whatever the mix of compressing and
/// plain members.
#[test]
fn compressing_recipients_cost_no_allocation_and_no_compression_each() {
    use switchboard::ws::deflate::Broadcast;
    use switchboard::ws::{server_frame, OpCode};
    let mixes: [&[Option<u8>]; 3] = [&[Some(15)], &[Some(15), None], &[Some(15), None, Some(10)]];
    for offers in mixes {
        let windows = offers.iter().flatten().count() as u64;
        let mut room = Room::with_offers(MEMBERS, ROOM, offers);
        let broadcast = |seq| {
            Broadcast::new(
                server_frame(OpCode::Text, cursor_json(seq).as_bytes()),
                Some(128),
            )
        };
        room.deliver_broadcast(&broadcast(0));
        room.flush();
        // Built outside the count: the owner's per-message work.
        let frames: Vec<Broadcast> = (1..=MESSAGES).map(broadcast).collect();
        let plain = frames[0].plain().len() as u64;
        let before = (room.taken(), room.driver.compressions());
        let ((), allocs) = alloc::counting(|| {
            for f in &frames {
                room.deliver_broadcast(f);
                room.flush();
            }
        });
        let compressions = room.driver.compressions() - before.1;
        assert_eq!(
            compressions,
            MESSAGES * windows,
            "one per message and window size ({offers:?})"
        );
        // Per message, the shared header the plain frame's first clone makes;
        // per compression, the compressed frame and its shared header; once,
        // a growth of the worker's scratch buffer. Nothing per member.
        assert!(
            allocs <= MESSAGES + 2 * compressions + 2,
            "{allocs} allocations for {compressions} compressions ({offers:?})"
        );
        let per_member = (room.taken() - before.0) / MESSAGES / MEMBERS as u64;
        if !offers.contains(&None) {
            assert!(
                per_member * 2 < plain,
                "compressed: {per_member} B of {plain}"
            );
        }
    }
}

#[test]
fn publish_through_the_owner_with_compression_allocates_per_message_only() {
    let mut room = Room::with_offers(MEMBERS, ROOM, &[Some(15), None]);
    let a = node::client_text(
        format!(
            r#"{{"type":"user_action","channel":"{}","action":{}}}"#,
            node::CHANNEL,
            cursor_json(7)
        )
        .as_bytes(),
    );
    room.publish(0, &a);
    let compressions = room.driver.compressions();
    let ((), allocs) = alloc::counting(|| {
        for _ in 0..MESSAGES {
            room.publish(0, &a);
        }
    });
    assert_eq!(room.driver.compressions() - compressions, MESSAGES);
    // The plain path's allowance, plus the twins' box, the compressed
    // frame and its shared header.
    assert!(
        allocs <= (PER_MESSAGE + 3) * MESSAGES,
        "{allocs} allocations for {MESSAGES} messages to {MEMBERS} members"
    );
}
