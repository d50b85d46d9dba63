//! The owner against a scripted Redis on a loopback socket, for what the
//! live tests' `redis-server` (7.0) does not do: since Redis 7.2 the push of
//! a connection's own `PUBLISH` comes after the command's reply instead of
//! before it (redis/redis#12326), and RESP3 allows either.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::*;
use crate::broker::{ConnId, MemberInfo, Msg, Outbox, ToOwner, ToWorker};
use crate::config::Config;

const WAIT: Duration = Duration::from_secs(5);

/// An owner, its poll, and the Redis end of its link.
struct Scripted {
    poll: Poll,
    owner: RedisOwner,
    out: Outbox,
    redis: TcpStream,
    /// Where the owner connects again after its link dropped.
    listener: TcpListener,
    /// Everything the owner wrote to Redis so far.
    seen: Vec<u8>,
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

fn push(kind: &[u8], channel: &[u8], last: &[u8]) -> Vec<u8> {
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(config);
        let url = crate::resp::parse_url(&format!("redis://{addr}")).unwrap();
        let links_down = Arc::new(AtomicUsize::new(1));
        let poll = Poll::new().unwrap();
        let mut owner = RedisOwner::new(
            config,
            url,
            Endpoint { addr, tls: None },
            Token(2),
            7,
            links_down,
            Arc::default(),
        );
        let mut out = Outbox::new(2);
        // The first tick connects.
        owner.tick(Instant::now(), poll.registry(), &mut out);
        let (redis, _) = listener.accept().unwrap();
        let mut s = Scripted {
            poll,
            owner,
            out,
            redis,
            listener,
            seen: Vec::new(),
        };
        s.handshake();
        s
    }

    /// Answers the `HELLO` and the script loads of a fresh connection.
    fn handshake(&mut self) {
        self.seen.clear();
        self.redis
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        self.wait_for(b"HELLO", 1);
        self.send(b"%1\r\n+proto\r\n:3\r\n");
        self.wait_for(b"SCRIPT", scripts::Script::ALL.len());
        assert!(self.owner.up);
        for _ in scripts::Script::ALL {
            self.send(b"+sha\r\n");
        }
    }

    /// Drops the owner's connection as a crashed Redis would, and takes
    /// its next one (after the reconnection backoff) through the handshake.
    fn restart(&mut self) {
        self.redis.shutdown(std::net::Shutdown::Both).unwrap();
        let deadline = Instant::now() + WAIT;
        while self.owner.up {
            assert!(
                Instant::now() < deadline,
                "the owner never saw its link drop"
            );
            self.turn();
        }
        self.listener.set_nonblocking(true).unwrap();
        loop {
            assert!(Instant::now() < deadline, "the owner never connected again");
            self.owner
                .tick(Instant::now(), self.poll.registry(), &mut self.out);
            match self.listener.accept() {
                Ok((redis, _)) => {
                    redis.set_nonblocking(false).unwrap();
                    self.redis = redis;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        self.handshake();
    }

    fn send(&mut self, bytes: &[u8]) {
        self.redis.write_all(bytes).unwrap();
    }

    /// One loop turn of the worker, as far as the owner is concerned.
    fn turn(&mut self) {
        let mut events = Events::with_capacity(8);
        let _ = self.poll.poll(&mut events, Some(Duration::from_millis(5)));
        let now = Instant::now();
        self.owner
            .on_ready(now, self.poll.registry(), &mut self.out);
        self.owner.flush(now, self.poll.registry(), &mut self.out);
        let mut buf = [0u8; 4096];
        match self.redis.read(&mut buf) {
            Ok(n) => self.seen.extend_from_slice(&buf[..n]),
            Err(e) => assert!(matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
        }
    }

    /// Turns until the owner has sent `count` commands containing `needle`.
    fn wait_for(&mut self, needle: &[u8], count: usize) {
        let deadline = Instant::now() + WAIT;
        while self
            .seen
            .windows(needle.len())
            .filter(|w| w == &needle)
            .count()
            < count
        {
            assert!(Instant::now() < deadline, "never sent {count} × {needle:?}");
            self.turn();
        }
    }

    /// Turns until worker 0 has `n` messages; returns them.
    fn messages(&mut self, n: usize) -> Vec<Msg> {
        let deadline = Instant::now() + WAIT;
        while self.out.queue_mut(0).len() < n {
            assert!(Instant::now() < deadline, "{:?}", self.out.queue_mut(0));
            self.turn();
        }
        std::mem::take(self.out.queue_mut(0))
    }
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
    s.owner.handle(
        ToOwner::Join {
            channel: channel.clone(),
            who,
            member: m.clone(),
            id: Some(1),
            since: None,
            rejoin: false,
        },
        &mut s.out,
    );
    s.wait_for(b"EVALSHA", 1);
    let pubsub = b"sb:{room:x}:ch";
    let entry = member_entry(&m);
    let event = presence_event(&channel, "join", &entry);
    let message = push(b"message", pubsub, &bulk(&event));
    let mut reply = b"*5\r\n*1\r\n".to_vec();
    reply.extend(bulk(&entry));
    reply.extend_from_slice(b":0\r\n$0\r\n\r\n:-1\r\n*0\r\n");
    s.send(&push(b"subscribe", pubsub, b":1\r\n"));
    if push_first {
        s.send(&message);
        s.send(&reply);
    } else {
        s.send(&reply);
        s.send(&message);
    }
    let got = s.messages(2);
    // Someone else's join is for everyone.
    let other = presence_event(&channel, "join", &member_entry(&member("v", "m-1-1")));
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
    s.owner.handle(
        ToOwner::Join {
            channel: Arc::from("doc:x"),
            who,
            member: member("u", "n-0-1"),
            id: None,
            since: None,
            rejoin: false,
        },
        &mut s.out,
    );
    let sent = s.seen.windows(7).filter(|w| w == b"EVALSHA").count();
    s.wait_for(b"EVALSHA", sent + 1);
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
                _ => json::event_offset(&frame.plain()[2..])
                    .expect("an offset")
                    .to_string(),
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
