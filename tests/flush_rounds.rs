//! A fan-out to many local members is written in bounded rounds (issue 16,
//! point 4): one `Driver::pump` writes at most `FLUSH_ROUND` connections
//! and says more wait, the worker's loop polls between rounds, and every
//! member is written exactly once, in the order they were queued to. A
//! frame delivered between two rounds joins the pending write of a member
//! not yet written. Run through the worker's own driver over in-memory
//! sockets (`benches/support/node.rs`).

#[path = "../benches/support/node.rs"]
mod node;

use node::Room;
use switchboard::worker::FLUSH_ROUND;

/// Fewer than three rounds' worth, so the last round is a partial one.
const MEMBERS: usize = 2 * FLUSH_ROUND + 10;
const ROOM: usize = 64 * 1024;

#[test]
fn a_big_fanout_is_written_in_bounded_rounds() {
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let mut room = Room::new(MEMBERS, ROOM);
    let (calls, taken) = (room.calls(), room.taken());

    room.deliver(&frame);
    assert!(room.driver.pump(), "members still wait after one round");
    assert_eq!(room.calls() - calls, FLUSH_ROUND as u64, "one write each");
    assert!(room.driver.pump());
    assert_eq!(room.calls() - calls, 2 * FLUSH_ROUND as u64);

    // A second delivery arrives between rounds: the members still waiting
    // take both frames in their one write, the written ones get one more.
    room.deliver(&frame);
    let mut rounds = 0;
    while room.driver.pump() {
        rounds += 1;
        assert!(rounds < 10, "the rounds end");
    }
    assert_eq!(
        room.calls() - calls,
        (MEMBERS + 2 * FLUSH_ROUND) as u64,
        "every member written once per round it was listed in"
    );
    assert_eq!(
        room.taken() - taken,
        2 * (MEMBERS * frame.len()) as u64,
        "both frames reached every member"
    );
}

/// A socket that took less than it was offered is full: the kernel raises
/// its writable edge when it drains. Until then the driver does not offer
/// it frames again (a stalled reader used to cost one `writev` of its whole
/// backlog per turn), though frames keep queueing for it; its writable
/// event lists it once more.
#[test]
fn a_full_socket_waits_for_its_writable_edge() {
    const FULL_MEMBERS: usize = 3;
    // Every write is short: the upgrade response alone fills the socket.
    let mut room = Room::new(FULL_MEMBERS, 16);
    let frame = bytes::Bytes::from_static(b"\x81\x05hello");
    let calls = room.calls();
    for _ in 0..5 {
        room.deliver(&frame);
        room.flush();
    }
    assert_eq!(room.calls(), calls, "no write to a full socket");

    room.driver.writable(1);
    room.flush();
    assert_eq!(room.calls(), calls + 1, "its edge gives it one write");
    room.deliver(&frame);
    room.flush();
    assert_eq!(room.calls(), calls + 1, "still full after a short write");

    for key in 0..FULL_MEMBERS {
        room.driver.writable(key);
    }
    room.flush();
    assert_eq!(room.calls(), calls + 1 + FULL_MEMBERS as u64);
}
