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

/// A 1 KiB JSON event, compressible like real channel traffic.
fn json_frame(seq: u64) -> bytes::Bytes {
    let mut s = format!(r#"{{"type":"user_action","channel":"doc:bench","seq":{seq},"cursors":["#);
    for i in 0..16 {
        s.push_str(&format!(
            r#"{{"user":"user-{i}","x":{},"y":{},"sel":[{},{}]}},"#,
            (seq + i) * 37 % 1000,
            i * 91 % 800,
            i * 3,
            i * 5
        ));
    }
    s.pop();
    s.push_str("]}");
    switchboard::ws::server_frame(switchboard::ws::OpCode::Text, s.as_bytes())
}

/// Issue 12: a broadcast to compressing members is compressed once per
/// window size in use, and per member costs no allocation and no
/// compression, whatever the mix of compressing and plain members.
#[test]
fn compressing_recipients_cost_no_allocation_and_no_compression_each() {
    use switchboard::ws::deflate::Broadcast;
    for (nth, windows) in [(1, &[15u8][..]), (2, &[15][..]), (3, &[15, 10][..])] {
        let mut room = Room::new(MEMBERS, 64 * 1024, true).compressing(nth, windows[0]);
        if let Some(&w) = windows.get(1) {
            // A second window size on every other compressing member.
            for (i, (_, c)) in room.conns.iter_mut().enumerate() {
                if i % (2 * nth) == nth {
                    c.window = Some(switchboard::ws::deflate::WindowBits::new(w));
                }
            }
        }
        room.deliver_broadcast("doc:bench", &Broadcast::new(json_frame(0), Some(128)), None);
        room.flush();
        let before = room.deflater.compressions();
        // Built outside the count: the owner's per-message work.
        let frames: Vec<Broadcast> = (1..=MESSAGES)
            .map(|seq| Broadcast::new(json_frame(seq), Some(128)))
            .collect();
        let plain_len = frames[0].plain().len() as u64;
        let taken = room.socket.taken;
        let (delivered, allocs) = alloc::counting(|| {
            let mut n = 0;
            for f in &frames {
                n += room.deliver_broadcast("doc:bench", f, None);
                room.flush();
            }
            n
        });
        assert_eq!(delivered, MESSAGES * MEMBERS as u64);
        let compressions = room.deflater.compressions() - before;
        assert_eq!(
            compressions,
            MESSAGES * windows.len() as u64,
            "one compression per message and window size"
        );
        // Per message, the shared header the plain frame's first clone
        // makes; per compression, the compressed frame and its header; once,
        // a growth of the worker's scratch buffer. Nothing scales with the
        // 2,000 members.
        assert!(
            allocs <= MESSAGES + 2 * compressions + 2,
            "{allocs} allocations for {compressions} compressions (nth {nth})"
        );
        let compressing = MEMBERS.div_ceil(nth) as u64;
        let plain_bytes = (MEMBERS as u64 - compressing) * MESSAGES * plain_len;
        let wire = room.socket.taken - taken;
        assert!(
            wire < plain_bytes + compressing * MESSAGES * plain_len / 2,
            "compressing members got the compressed twin"
        );
    }
}

#[test]
fn publish_through_the_owner_with_compression_allocates_per_message_only() {
    let mut room = Room::new(MEMBERS, 64 * 1024, false).compressing(2, 15);
    let mut broker = Broker::with_compression(true);
    broker.join_all(&mut room);
    let a = {
        let f = json_frame(7);
        // The event's JSON as an action payload.
        f[4..].to_vec()
    };
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
    assert_eq!(room.deflater.compressions(), MESSAGES + 1);
    // Without compression: the action's copy, the frame, one growth of it
    // past its first 256 bytes and its shared header; with it, the twins'
    // box, the compressed frame and its header.
    assert!(
        allocs <= 7 * MESSAGES,
        "{allocs} allocations for {MESSAGES} messages"
    );
}
