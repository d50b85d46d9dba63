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
