//! `resp::Session` against a real `redis-server`, driven over a blocking
//! `TcpStream` the way the mio driver will drive it over a non-blocking one.
//!
//! Each test starts its own throwaway server ([`RedisServer`], shared with
//! the Redis-mode tests) on a free loopback port and kills it by pid when
//! done; the machine's own Redis is never touched. Without `redis-server`
//! the tests are skipped with a note, except under `CI=true`, where they
//! fail.

mod common;

use std::fmt::Debug;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::RedisServer;
use switchboard::resp::{
    parse_url, Event, HandshakeStep, Push, Session, SessionConfig, SessionError, Subscription,
    Value,
};

const WAIT: Duration = Duration::from_secs(10);

/// A session and its socket: the driver loop in miniature.
struct Link<T> {
    session: Session<T>,
    stream: TcpStream,
}

impl<T: Debug> Link<T> {
    fn connect(url: &str, client_name: Option<&str>) -> Self {
        let url = parse_url(url).unwrap();
        let config = SessionConfig {
            client_name: client_name.map(Into::into),
            ..SessionConfig::default()
        };
        let stream = TcpStream::connect((url.host.as_str(), url.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            session: Session::with_config(&url, config),
            stream,
        }
    }

    /// Runs the loop until an event matching `done` arrives; returns every
    /// event seen, that one last.
    fn until(&mut self, done: impl Fn(&Event<T>) -> bool) -> Vec<Event<T>> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        // Small reads, so large replies arrive in many pieces.
        let mut buf = [0u8; 4096];
        loop {
            while let Some(bytes) = self.session.poll_transmit() {
                self.stream.write_all(&bytes).unwrap();
            }
            while let Some(event) = self.session.poll_event() {
                let last = done(&event);
                seen.push(event);
                if last {
                    return seen;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out; events so far: {seen:?}"
            );
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("Redis closed the connection; events so far: {seen:?}"),
                Ok(n) => self.session.handle_input(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn reply(&mut self, args: &[&[u8]], tag: T) -> Value
    where
        T: PartialEq + Clone,
    {
        self.session.command(args, tag.clone()).unwrap();
        match self
            .until(|e| matches!(e, Event::Reply { tag: t, .. } if *t == tag))
            .pop()
        {
            Some(Event::Reply { value, .. }) => value,
            other => panic!("{other:?}"),
        }
    }
}

fn is_reply<T: PartialEq>(tag: T) -> impl Fn(&Event<T>) -> bool {
    move |e| matches!(e, Event::Reply { tag: t, .. } if *t == tag)
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

#[test]
fn pubsub_and_pipelined_commands() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut sub: Link<u32> = Link::connect(&redis.url_with("", 0), Some("sb-live-sub"));
    // Queued before the handshake completes: sent right after it.
    sub.session
        .subscribe(&[b"sb:live:room", b"sb:live:other"])
        .unwrap();
    sub.session.command(&[b"CLIENT", b"GETNAME"], 1).unwrap();
    let events = sub.until(is_reply(1));
    let confirmation = |channel, count| {
        Event::Push(Push::Subscribed {
            kind: Subscription::Channel,
            channel,
            count,
        })
    };
    assert_eq!(
        events,
        vec![
            Event::Ready,
            confirmation(b(b"sb:live:room"), 1),
            confirmation(b(b"sb:live:other"), 2),
            Event::Reply {
                tag: 1,
                value: Value::Bulk(b(b"sb-live-sub"))
            },
        ]
    );

    let mut publisher: Link<u32> = Link::connect(&redis.url_with("", 5), None);
    assert_eq!(
        publisher.reply(&[b"PUBLISH", b"sb:live:room", b"hello"], 10),
        Value::Int(1)
    );
    let message = sub.until(|e| matches!(e, Event::Push(_))).pop();
    let want = Push::Message {
        channel: b(b"sb:live:room"),
        payload: b(b"hello"),
    };
    assert_eq!(message, Some(Event::Push(want)));

    // Pipelined replies of several RESP3 types, in order, on database 5.
    let big = vec![b'x'; 1 << 20];
    let cmds: &[&[u8]] = &[b"SET", b"sb:live:big", &big];
    publisher.session.command(cmds, 20).unwrap();
    publisher
        .session
        .command(&[b"GET", b"sb:live:big"], 21)
        .unwrap();
    publisher
        .session
        .command(&[b"HSET", b"sb:live:h", b"f1", b"v1", b"f2", b"v2"], 22)
        .unwrap();
    publisher
        .session
        .command(&[b"HGETALL", b"sb:live:h"], 23)
        .unwrap();
    publisher
        .session
        .command(&[b"SADD", b"sb:live:s", b"m"], 24)
        .unwrap();
    publisher
        .session
        .command(&[b"SMEMBERS", b"sb:live:s"], 25)
        .unwrap();
    publisher
        .session
        .command(&[b"GET", b"sb:live:missing"], 26)
        .unwrap();
    publisher
        .session
        .command(&[b"NO-SUCH-COMMAND"], 27)
        .unwrap();
    publisher
        .session
        .command(&[b"CLIENT", b"INFO"], 28)
        .unwrap();
    let replies: Vec<(u32, Value)> = publisher
        .until(is_reply(28))
        .into_iter()
        .map(|e| match e {
            Event::Reply { tag, value } => (tag, value),
            other => panic!("{other:?}"),
        })
        .collect();
    let tags: Vec<u32> = replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, (20..=28).collect::<Vec<_>>());
    assert_eq!(replies[0].1, Value::Ok);
    assert_eq!(replies[1].1, Value::Bulk(Bytes::from(big)));
    assert_eq!(replies[2].1, Value::Int(2));
    let field = |s: &'static [u8]| Value::Bulk(b(s));
    assert_eq!(
        replies[3].1,
        Value::Map(vec![
            (field(b"f1"), field(b"v1")),
            (field(b"f2"), field(b"v2"))
        ])
    );
    assert_eq!(replies[4].1, Value::Int(1));
    assert_eq!(replies[5].1, Value::Array(vec![field(b"m")]));
    assert_eq!(replies[6].1, Value::Nil);
    assert!(matches!(&replies[7].1, Value::Error(e) if e.starts_with(b"ERR unknown command")));
    // A verbatim string, decoded to its text: the connection is on db 5.
    let Value::Bulk(info) = &replies[8].1 else {
        panic!("{:?}", replies[8])
    };
    assert!(String::from_utf8_lossy(info).contains(" db=5 "), "{info:?}");

    // The subscribed connection still runs commands, and unsubscribes.
    assert_eq!(sub.reply(&[b"PING"], 2), Value::Simple(b(b"PONG")));
    sub.session.unsubscribe(&[b"sb:live:room"]).unwrap();
    let unsubscribed = Push::Unsubscribed {
        kind: Subscription::Channel,
        channel: b(b"sb:live:room"),
        count: 1,
    };
    assert_eq!(
        sub.until(|e| matches!(e, Event::Push(_))),
        vec![Event::Push(unsubscribed)]
    );
    assert_eq!(
        publisher.reply(&[b"PUBLISH", b"sb:live:room", b"nobody"], 11),
        Value::Int(0)
    );
    assert_eq!(sub.session.close(), Vec::<u32>::new());
}

#[test]
fn authentication_and_handshake_refusals() {
    let Some(redis) = RedisServer::start_with(&["--requirepass", "secret"]) else {
        return;
    };

    let mut admin: Link<u8> = Link::connect(&redis.url_with(":secret@", 0), None);
    assert_eq!(admin.reply(&[b"PING"], 1), Value::Simple(b(b"PONG")));
    // A user allowed one channel only, to see a refused SUBSCRIBE for real.
    let acl: &[&[u8]] = &[
        b"ACL",
        b"SETUSER",
        b"sbuser",
        b"on",
        b">p@ss:w/d",
        b"~*",
        b"&sb:allowed",
        b"+@all",
    ];
    assert_eq!(admin.reply(acl, 2), Value::Ok);

    let failed = |url: String| -> SessionError {
        let mut link: Link<u8> = Link::connect(&url, None);
        link.session.command(&[b"PING"], 1).unwrap();
        match link.until(|e| matches!(e, Event::Failed(_))).pop() {
            Some(Event::Failed(err)) => {
                assert_eq!(
                    link.session.close(),
                    vec![1],
                    "the held PING is handed back"
                );
                err
            }
            other => panic!("{other:?}"),
        }
    };
    for (credentials, db, step, prefix) in [
        (":wrong@", 0, HandshakeStep::Hello, &b"WRONGPASS"[..]),
        ("", 0, HandshakeStep::Hello, b"NOAUTH"),
        ("sbuser:nope@", 0, HandshakeStep::Hello, b"WRONGPASS"),
        (":secret@", 99_999, HandshakeStep::Select, b"ERR"),
    ] {
        match failed(redis.url_with(credentials, db)) {
            SessionError::Handshake { step: s, error }
                if s == step && error.starts_with(prefix) => {}
            other => panic!("{credentials}/{db}: {other:?}"),
        }
    }

    // Percent-encoded password, ACL user, refused then accepted subscriptions.
    let mut user: Link<u8> = Link::connect(&redis.url_with("sbuser:p%40ss%3Aw%2Fd@", 0), None);
    user.session.subscribe(&[b"sb:denied"]).unwrap();
    user.session.subscribe(&[b"sb:allowed"]).unwrap();
    user.session.command(&[b"PING"], 3).unwrap();
    let events = user.until(is_reply(3));
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], Event::Ready);
    assert!(
        matches!(&events[1], Event::PubSubRefused { channels, error, .. }
            if channels == &[b(b"sb:denied")] && error.starts_with(b"NOPERM")),
        "{events:?}"
    );
    let allowed = Push::Subscribed {
        kind: Subscription::Channel,
        channel: b(b"sb:allowed"),
        count: 1,
    };
    assert_eq!(events[2], Event::Push(allowed));
    assert_eq!(
        events[3],
        Event::Reply {
            tag: 3,
            value: Value::Simple(b(b"PONG"))
        }
    );
}
