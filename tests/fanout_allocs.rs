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
