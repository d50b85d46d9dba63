//! The owner against a scripted Redis, with no socket: the test plays the
//! IO shim, taking what the owner transmits and handing it Redis's bytes,
//! for what the live tests' `redis-server` (7.0) does not do: since Redis
//! 7.2 the push of a connection's own `PUBLISH` comes after the command's
//! reply instead of before it (redis/redis#12326), and RESP3 allows either.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Token;

use super::*;
use crate::broker::{ConnId, MemberInfo, Msg, Outbox, ToOwner, ToWorker};
use crate::config::Config;

/// An owner and the Redis end of its link, on a clock of the test's own.
struct Scripted {
    owner: RedisOwner,
    out: Outbox,
    now: Now,
    /// Everything the owner wrote to Redis so far.
    seen: Vec<u8>,
}

/// A RESP bulk string (also used by the cluster owner's tests).
pub(super) fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// A three-element RESP3 push: kind, channel, then `last` as it is.
pub(super) fn push(kind: &[u8], channel: &[u8], last: &[u8]) -> Vec<u8> {
    let mut out = b">3\r\n".to_vec();
    out.extend(bulk(kind));
    out.extend(bulk(channel));
    out.extend_from_slice(last);
    out
}

impl Scripted {
    /// An owner whose link is up: handshake and script loads answered.
    fn up() -> Scripted {
        Scripted::up_with(Config {
            threads: 2,
            ..Config::default()
        })
    }

    fn up_with(config: Config) -> Scripted {
        let addr = "127.0.0.1:1".parse().unwrap();
        let config = Arc::new(config);
        let url = crate::resp::parse_url("redis://127.0.0.1:1").unwrap();
        let now = Now {
            mono: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        let owner = RedisOwner::new(
            config,
            url,
            Endpoint { addr, tls: None },
            Token(2),
            0,
            7,
            Arc::new(AtomicUsize::new(1)),
            Arc::default(),
            now.mono,
        );
        let mut s = Scripted {
            owner,
            out: Outbox::new(2),
            now,
            seen: Vec::new(),
        };
        s.connect();
        s
    }

    /// Ticks until the owner asks for a socket, then takes it through the
    /// handshake.
    fn connect(&mut self) {
        for _ in 0..100 {
            self.owner.handle_timeout(self.now, &mut self.out);
            if let Some((token, io)) = self.owner.poll_io() {
                assert_eq!(token, Token(2));
                if matches!(io, LinkIo::Connect(_)) {
                    return self.handshake();
                }
                continue;
            }
            self.advance(Duration::from_millis(100));
        }
        panic!("the owner never connected");
    }

    fn advance(&mut self, by: Duration) {
        self.now.mono += by;
        self.now.unix_ms += by.as_millis() as u64;
    }

    /// Answers the `HELLO` and the script loads of a fresh connection.
    fn handshake(&mut self) {
        self.seen.clear();
        self.take_sent();
        assert_eq!(self.count(b"HELLO"), 1);
        assert_eq!(self.count(b"SETNAME"), 1, "links are named");
        let name = format!("switchboard-{}-w0", self.owner.config.node);
        assert_eq!(self.count(name.as_bytes()), 1, "named for CLIENT LIST");
        self.send(b"%1\r\n+proto\r\n:3\r\n");
        assert_eq!(self.count(b"SCRIPT"), scripts::Script::ALL.len());
        assert!(self.owner.up);
        for _ in scripts::Script::ALL {
            self.send(b"+sha\r\n");
        }
    }

    /// Drops the owner's connection as a crashed Redis would, and takes
    /// its next one (after the reconnection backoff) through the handshake.
    fn restart(&mut self) {
        self.owner.handle_closed(self.now, &mut self.out);
        assert!(!self.owner.up, "the owner saw its link drop");
        assert!(matches!(self.owner.poll_io(), Some((_, LinkIo::Close))));
        self.connect();
    }

    /// Redis's bytes to the owner, then what it answers.
    fn send(&mut self, bytes: &[u8]) {
        self.owner.handle_input(bytes, self.now, &mut self.out);
        self.take_sent();
    }

    fn take_sent(&mut self) {
        while let Some(b) = self.owner.poll_transmit() {
            self.seen.extend_from_slice(&b);
        }
    }

    fn count(&self, needle: &[u8]) -> usize {
        self.seen
            .windows(needle.len())
            .filter(|w| w == &needle)
            .count()
    }

    /// A message for the owner, and what it sends Redis.
    fn handle(&mut self, msg: ToOwner) {
        self.owner.handle(msg, self.now, &mut self.out);
        self.take_sent();
    }

    /// Worker 0's messages, exactly `n` of them.
    fn messages(&mut self, n: usize) -> Vec<Msg> {
        let got = std::mem::take(self.out.queue_mut(0));
        assert_eq!(got.len(), n, "{got:?}");
        got
    }
}

/// A member's presence entry, as the owner stores it.
fn member_entry(m: &MemberInfo) -> Vec<u8> {
    let mut out = Vec::new();
    server::member_fields(&mut out, m.as_member());
    out
}

fn member(user: &str, conn: &str) -> Arc<MemberInfo> {
    Arc::new(MemberInfo {
        user: user.into(),
        conn: conn.into(),
        info: None,
    })
}

/// Joins `who` to `room:x` and answers as Redis does, the join event's
/// push before or after the script's reply; returns what worker 0 got.
fn join_with_push(push_first: bool) -> (ConnId, Vec<Msg>) {
    let mut s = Scripted::up();
    let who = ConnId::new(0, 1, 1);
    let m = member("u", "n-0-1");
    let channel: Arc<str> = Arc::from("room:x");
    let pubsub = b"sb:{room:x}:ch";
    // A member already on the joiner's worker: the join event goes there,
    // for everyone but the joiner (a worker whose one member is the joiner
    // gets no delivery at all).
    s.handle(ToOwner::Join {
        channel: channel.clone(),
        who: ConnId::new(0, 9, 1),
        member: member("w", "n-0-9"),
        id: None,
        since: None,
        rejoin: false,
    });
    s.send(&push(b"subscribe", pubsub, b":1\r\n"));
    s.send(b"*5\r\n*0\r\n:0\r\n$0\r\n\r\n:-1\r\n*0\r\n");
    let early = s.messages(1);
    assert!(
        matches!(&early[..], [Msg::Worker(ToWorker::Joined { .. })]),
        "{early:?}"
    );
    s.handle(ToOwner::Join {
        channel: channel.clone(),
        who,
        member: m.clone(),
        id: Some(1),
        since: None,
        rejoin: false,
    });
    assert_eq!(s.count(b"EVALSHA"), 2);
    let entry = member_entry(&m);
    let event = presence_event(&channel, PresenceEvent::Join, &entry);
    let message = push(b"message", pubsub, &bulk(&event));
    let mut reply = b"*5\r\n*1\r\n".to_vec();
    reply.extend(bulk(&entry));
    reply.extend_from_slice(b":0\r\n$0\r\n\r\n:-1\r\n*0\r\n");
    if push_first {
        s.send(&message);
        s.send(&reply);
    } else {
        s.send(&reply);
        s.send(&message);
    }
    let got = s.messages(2);
    // Someone else's join is for everyone.
    let other = presence_event(
        &channel,
        PresenceEvent::Join,
        &member_entry(&member("v", "m-1-1")),
    );
    s.send(&push(b"message", pubsub, &bulk(&other)));
    let more = s.messages(1);
    assert!(
        matches!(
            &more[..],
            [Msg::Worker(ToWorker::Deliver { except: None, .. })]
        ),
        "{more:?}"
    );
    (who, got)
}

#[test]
fn joiner_never_gets_its_own_join_whichever_comes_first() {
    for push_first in [true, false] {
        let (who, got) = join_with_push(push_first);
        let joined = got
            .iter()
            .position(|m| matches!(m, Msg::Worker(ToWorker::Joined { who: w, .. }) if *w == who));
        let deliver = got.iter().position(
            |m| matches!(m, Msg::Worker(ToWorker::Deliver { except: Some(e), .. }) if *e == who),
        );
        assert!(
            joined.is_some() && deliver.is_some(),
            "push first: {push_first}: {got:?}"
        );
        // Redis's order is kept: the owner does not hold either back.
        assert_eq!(deliver < joined, push_first, "{got:?}");
    }
}

/// A member of a history channel without presence on worker `worker`.
fn history_join(s: &mut Scripted, key: u32, worker: u16, reply_offset: u64, epoch: &str) {
    let who = ConnId::new(usize::from(worker), key as usize, 1);
    let sent = s.count(b"EVALSHA");
    s.handle(ToOwner::Join {
        channel: Arc::from("doc:x"),
        who,
        member: member("u", "n-0-1"),
        id: None,
        since: None,
        rejoin: false,
    });
    assert_eq!(s.count(b"EVALSHA"), sent + 1);
    if key == 1 {
        s.send(&push(b"subscribe", b"sb:{doc:x}:ch", b":1\r\n"));
    }
    let mut reply = format!("*5\r\n*0\r\n:{reply_offset}\r\n").into_bytes();
    reply.extend(bulk(epoch.as_bytes()));
    reply.extend_from_slice(b":-1\r\n*0\r\n");
    s.send(&reply);
}

fn action_push(offset: u64) -> Vec<u8> {
    let event =
        format!(r#"{{"type":"user_action","channel":"doc:x","action":1,"offset":{offset}}}"#);
    push(b"message", b"sb:{doc:x}:ch", &bulk(event.as_bytes()))
}

/// What worker 0 got, as `joined`, `resync` or the offset of an event.
fn kinds(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m {
            Msg::Worker(ToWorker::Joined { .. }) => "joined".to_owned(),
            Msg::Worker(ToWorker::Deliver { frame, kind, .. }) => match kind {
                crate::metrics::DeliveredType::Resync => {
                    let text = String::from_utf8_lossy(&frame.plain()[2..]).into_owned();
                    assert_eq!(text, r#"{"type":"resync","channel":"doc:x"}"#);
                    "resync".to_owned()
                }
                _ => match server::Written::of(&frame.plain()[2..]) {
                    server::Written::Action { offset: Some(n) } => n.to_string(),
                    other => panic!("not an event with an offset: {other:?}"),
                },
            },
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// PROTOCOL.md §5 "Gaps are never silent", as the owner sees it: one
/// `resync` to each worker with members before an event whose offset does
/// not follow, before a join answer that contradicts what was delivered,
/// and when the link comes back; none while offsets follow.
#[test]
fn gaps_are_told_once_before_the_event_that_reveals_them() {
    let mut s = Scripted::up_with(Config {
        threads: 2,
        history: vec![("doc".to_owned(), 100)],
        no_presence: vec!["doc".to_owned()],
        ..Config::default()
    });
    history_join(&mut s, 1, 0, 3, "e1");
    for off in [4, 5, 7, 8, 1, 2] {
        s.send(&action_push(off));
    }
    let got = s.messages(9);
    assert_eq!(
        kinds(&got),
        ["joined", "4", "5", "resync", "7", "8", "resync", "1", "2"]
    );
    assert!(s.out.queue_mut(1).is_empty(), "no members on worker 1");

    // A second member's join answer: Redis is at 4, this node delivered
    // only up to 2 (or another epoch): the first member is told, then the
    // joiner gets its `joined`.
    history_join(&mut s, 2, 1, 4, "e1");
    let got = s.messages(1);
    assert_eq!(kinds(&got), ["resync"]);
    // Worker 1 hears it too, before the `joined` that makes the joiner a
    // member there: it reaches nobody.
    assert_eq!(
        kinds(&std::mem::take(s.out.queue_mut(1))),
        ["resync", "joined"]
    );
    history_join(&mut s, 3, 0, 4, "e2");
    assert_eq!(kinds(&s.messages(2)), ["resync", "joined"]);
    assert_eq!(kinds(&std::mem::take(s.out.queue_mut(1))), ["resync"]);
    history_join(&mut s, 4, 0, 4, "e2");
    assert_eq!(kinds(&s.messages(1)), ["joined"], "it agrees: no resync");

    // The link drops and comes back: every worker with members is told at
    // once, and the first event on the new link starts afresh.
    std::mem::take(s.out.queue_mut(1));
    s.restart();
    s.send(&action_push(9));
    assert_eq!(kinds(&s.messages(2)), ["resync", "9"]);
    assert_eq!(kinds(&std::mem::take(s.out.queue_mut(1))), ["resync", "9"]);
}
