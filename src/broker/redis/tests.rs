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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(Config {
            threads: 2,
            ..Config::default()
        });
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
            seen: Vec::new(),
        };
        s.redis
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        s.wait_for(b"HELLO", 1);
        s.send(b"%1\r\n+proto\r\n:3\r\n");
        s.wait_for(b"SCRIPT", scripts::ALL.len());
        assert!(s.owner.up);
        for _ in scripts::ALL {
            s.send(b"+sha\r\n");
        }
        s
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
