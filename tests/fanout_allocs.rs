//! Heap allocations on the broadcast path, counted by a global allocator:
//! once the first message has given every outbound queue its capacity,
//! queueing a broadcast for a member and writing it out allocate nothing
//! (issue 7: "heap allocations per recipient on the broadcast path; the
//! target is 0"). Only the per-message work allocates: the action copied
//! out of the read buffer and the frame encoded once by the owner.

#[path = "../benches/support/alloc.rs"]
mod alloc;
#[path = "../benches/support/room.rs"]
mod room;

use room::{action, Broker, Room};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const MEMBERS: usize = 2_000;
const MESSAGES: u64 = 10;

#[test]
fn counting_allocator_counts_this_thread() {
    let (v, n) = alloc::counting(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert_eq!(n, 1);
}

#[test]
fn broadcast_allocates_nothing_per_recipient() {
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let mut room = Room::new(MEMBERS, 64 * 1024, true);
    room.deliver("doc:bench", &frame, None);
    room.flush();
    let (delivered, allocs) = alloc::counting(|| {
        let mut n = 0;
        for _ in 0..MESSAGES {
            n += room.deliver("doc:bench", &frame, None);
            room.flush();
        }
        n
    });
    assert_eq!(delivered, MESSAGES * MEMBERS as u64);
    assert_eq!(room.socket.taken, (MESSAGES + 1) * MEMBERS as u64 * 7);
    assert_eq!(allocs, 0, "allocations on the deliver+write path");
}

#[test]
fn several_frames_per_turn_allocate_nothing_per_recipient() {
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let mut room = Room::new(MEMBERS, 64 * 1024, true);
    for _ in 0..4 {
        room.deliver("doc:bench", &frame, None);
    }
    room.flush();
    let calls = room.socket.calls;
    let (_, allocs) = alloc::counting(|| {
        for _ in 0..MESSAGES {
            for _ in 0..4 {
                room.deliver("doc:bench", &frame, None);
            }
            room.flush();
        }
    });
    assert_eq!(allocs, 0);
    assert_eq!(
        room.socket.calls - calls,
        MESSAGES * MEMBERS as u64,
        "one writev per member per turn"
    );
}

#[test]
fn publish_through_the_owner_allocates_per_message_only() {
    let mut room = Room::new(MEMBERS, 64 * 1024, false);
    let mut broker = Broker::new();
    broker.join_all(&mut room);
    let a = action();
    broker.publish(&mut room, 0, &a);
    room.flush();
    let (delivered, allocs) = alloc::counting(|| {
        let mut n = 0;
        for _ in 0..MESSAGES {
            n += broker.publish(&mut room, 0, &a);
            room.flush();
        }
        n
    });
    assert_eq!(delivered, MESSAGES * MEMBERS as u64);
    // The action's copy, the encoded frame, and the shared header `Bytes`
    // gives that frame at its first clone.
    assert!(
        allocs <= 3 * MESSAGES,
        "{allocs} allocations for {MESSAGES} messages"
    );
}
