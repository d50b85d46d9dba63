use super::*;
use crate::resp::codec::{encode_command, encode_frame};

const HELLO_REPLY: &[u8] = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";

fn url(user: Option<&str>, pass: Option<&str>, db: u32) -> RedisUrl {
    RedisUrl {
        host: "127.0.0.1".into(),
        port: 6379,
        username: user.map(Into::into),
        password: pass.map(Into::into),
        db,
        tls: false,
    }
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_command(args, &mut dst);
    dst.to_vec()
}

fn push_bytes(push: Push) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_frame(&Frame::Push(push), &mut dst);
    dst.to_vec()
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn events<T>(s: &mut Session<T>) -> Vec<Event<T>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn transmit<T>(s: &mut Session<T>) -> Vec<u8> {
    let out = s.poll_transmit().map(|b| b.to_vec()).unwrap_or_default();
    assert_eq!(
        s.poll_transmit(),
        None,
        "all queued bytes come in one buffer"
    );
    out
}

fn ready() -> Session<u32> {
    let mut s = Session::new(&url(None, None, 0));
    transmit(&mut s);
    s.handle_input(HELLO_REPLY);
    assert_eq!(events(&mut s), vec![Event::Ready]);
    s
}

fn subscribed(channel: &'static [u8], count: i64) -> Push {
    Push::Subscribed {
        kind: Subscription::Channel,
        channel: b(channel),
        count,
    }
}

#[test]
fn handshake_is_hello_3_alone_by_default() {
    let mut s: Session<u32> = Session::new(&url(None, None, 0));
    assert!(!s.is_ready());
    assert_eq!(transmit(&mut s), cmd(&[b"HELLO", b"3"]));
    s.handle_input(&HELLO_REPLY[..10]);
    assert_eq!(events(&mut s), vec![]);
    s.handle_input(&HELLO_REPLY[10..]);
    assert_eq!(events(&mut s), vec![Event::Ready]);
    assert!(s.is_ready());
}

#[test]
fn handshake_authenticates_names_and_selects() {
    let config = SessionConfig {
        client_name: Some("sb-n1".into()),
        ..SessionConfig::default()
    };
    let mut s: Session<u32> = Session::with_config(&url(Some("sb"), Some("pw"), 3), config);
    let mut want = cmd(&[b"HELLO", b"3", b"AUTH", b"sb", b"pw", b"SETNAME", b"sb-n1"]);
    want.extend(cmd(&[b"SELECT", b"3"]));
    assert_eq!(transmit(&mut s), want);
    s.handle_input(HELLO_REPLY);
    assert_eq!(events(&mut s), vec![], "not ready before SELECT answers");
    s.handle_input(b"+OK\r\n");
    assert_eq!(events(&mut s), vec![Event::Ready]);

    let mut s: Session<u32> = Session::new(&url(None, Some("pw"), 0));
    assert_eq!(
        transmit(&mut s),
        cmd(&[b"HELLO", b"3", b"AUTH", b"default", b"pw"])
    );
}

#[test]
fn commands_wait_for_the_handshake() {
    let mut s: Session<u32> = Session::new(&url(None, None, 0));
    s.command(&[b"PING"], 1).unwrap();
    s.subscribe(&[b"a"]).unwrap();
    assert_eq!(transmit(&mut s), cmd(&[b"HELLO", b"3"]));
    s.command(&[b"GET", b"k"], 2).unwrap();
    assert_eq!(transmit(&mut s), b"");
    s.handle_input(HELLO_REPLY);
    assert_eq!(events(&mut s), vec![Event::Ready]);
    let mut want = cmd(&[b"PING"]);
    want.extend(cmd(&[b"SUBSCRIBE", b"a"]));
    want.extend(cmd(&[b"GET", b"k"]));
    assert_eq!(transmit(&mut s), want);
    let mut wire = b"+PONG\r\n".to_vec();
    wire.extend(push_bytes(subscribed(b"a", 1)));
    wire.extend(b"_\r\n");
    s.handle_input(&wire);
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reply {
                tag: 1,
                value: Value::Simple(b(b"PONG"))
            },
            Event::Push(subscribed(b"a", 1)),
            Event::Reply {
                tag: 2,
                value: Value::Nil
            },
        ]
    );
}

#[test]
fn pushes_never_take_a_reply_slot() {
    let mut s = ready();
    s.subscribe(&[b"a", b"a", b"b"]).unwrap();
    s.command(&[b"PUBLISH", b"a", b"x"], 7).unwrap();
    s.command(&[b"GET", b"k"], 8).unwrap();
    transmit(&mut s);
    let message = Push::Message {
        channel: b(b"a"),
        payload: b(b"x"),
    };
    let mut wire = Vec::new();
    for (ch, n) in [(&b"a"[..], 1), (b"a", 1), (b"b", 2)] {
        wire.extend(push_bytes(Push::Subscribed {
            kind: Subscription::Channel,
            channel: Bytes::from(ch),
            count: n,
        }));
    }
    wire.extend(push_bytes(message.clone()));
    wire.extend(b":1\r\n");
    wire.extend(push_bytes(message.clone()));
    wire.extend(b"$1\r\nv\r\n");
    // Byte by byte gives the same events as all at once.
    let mut whole = ready();
    whole.subscribe(&[b"a", b"a", b"b"]).unwrap();
    whole.command(&[b"PUBLISH", b"a", b"x"], 7).unwrap();
    whole.command(&[b"GET", b"k"], 8).unwrap();
    whole.handle_input(&wire);
    wire.iter().for_each(|byte| s.handle_input(&[*byte]));
    let got = events(&mut s);
    assert_eq!(got, events(&mut whole));
    assert_eq!(got.len(), 7);
    assert_eq!(got[3], Event::Push(message.clone()));
    assert_eq!(
        got[4],
        Event::Reply {
            tag: 7,
            value: Value::Int(1)
        }
    );
    assert_eq!(got[5], Event::Push(message));
    assert_eq!(
        got[6],
        Event::Reply {
            tag: 8,
            value: Value::Bulk(b(b"v"))
        }
    );
    assert_eq!(s.close(), Vec::<u32>::new(), "nothing left waiting");
}

#[test]
fn a_refused_subscribe_does_not_eat_the_next_reply() {
    let mut s = ready();
    s.pubsub(Subscription::Shard, true, &[b"s1", b"s2"])
        .unwrap();
    s.command(&[b"PING"], 9).unwrap();
    assert_eq!(
        transmit(&mut s),
        [cmd(&[b"SSUBSCRIBE", b"s1", b"s2"]), cmd(&[b"PING"])].concat()
    );
    s.handle_input(b"-NOPERM no permissions\r\n+PONG\r\n");
    assert_eq!(
        events(&mut s),
        vec![
            Event::PubSubRefused {
                kind: Subscription::Shard,
                subscribe: true,
                channels: vec![b(b"s1"), b(b"s2")],
                error: b(b"NOPERM no permissions"),
            },
            Event::Reply {
                tag: 9,
                value: Value::Simple(b(b"PONG"))
            },
        ]
    );
}

#[test]
fn unasked_confirmations_pass_through() {
    let mut s = ready();
    s.command(&[b"PING"], 1).unwrap();
    s.subscribe(&[b"a"]).unwrap();
    let moved = Push::Unsubscribed {
        kind: Subscription::Shard,
        channel: b(b"s"),
        count: 0,
    };
    let wrong_channel = subscribed(b"zz", 1);
    let mut wire = push_bytes(moved.clone());
    wire.extend(b"+PONG\r\n");
    wire.extend(push_bytes(wrong_channel.clone()));
    s.handle_input(&wire);
    assert_eq!(events(&mut s).len(), 3);
    // The SUBSCRIBE still waits for its own confirmation: an error now is its refusal.
    s.handle_input(b"-NOPERM x\r\n");
    assert!(matches!(events(&mut s)[..], [Event::PubSubRefused { .. }]));
}

#[test]
fn empty_pubsub_commands_send_nothing() {
    let mut s = ready();
    s.subscribe(&[]).unwrap();
    s.unsubscribe(&[]).unwrap();
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(s.close(), Vec::<u32>::new());
}

#[test]
fn refused_handshakes_fail_the_session() {
    let cases: [(&[u8], u32, &[u8], SessionError); 5] = [
        (
            b"-WRONGPASS invalid username-password pair\r\n",
            0,
            b"",
            SessionError::Handshake {
                step: HandshakeStep::Hello,
                error: b(b"WRONGPASS invalid username-password pair"),
            },
        ),
        (
            b"-NOAUTH HELLO must be called with the client already authenticated\r\n",
            0,
            b"",
            SessionError::Handshake {
                step: HandshakeStep::Hello,
                error: b(b"NOAUTH HELLO must be called with the client already authenticated"),
            },
        ),
        (
            b"-ERR DB index is out of range\r\n",
            99,
            HELLO_REPLY,
            SessionError::Handshake {
                step: HandshakeStep::Select,
                error: b(b"ERR DB index is out of range"),
            },
        ),
        (
            b"+OK\r\n",
            0,
            b"",
            SessionError::UnexpectedReply {
                reason: "a handshake reply of the wrong type",
            },
        ),
        (
            b"?\r\n",
            0,
            b"",
            SessionError::Resp(RespError::InvalidType { byte: b'?' }),
        ),
    ];
    for (reply, db, before, want) in cases {
        let mut s: Session<u32> = Session::new(&url(None, Some("pw"), db));
        s.command(&[b"PING"], 1).unwrap();
        transmit(&mut s);
        s.handle_input(before);
        s.handle_input(reply);
        s.handle_input(b"+ignored\r\n");
        assert_eq!(events(&mut s), vec![Event::Failed(want)]);
        assert!(s.is_closed() && !s.is_ready());
        assert_eq!(s.command(&[b"PING"], 2), Err((SendError::Closed, 2)));
        assert_eq!(s.poll_transmit(), None, "held commands are never sent");
        assert_eq!(s.close(), vec![1]);
    }
}

#[test]
fn a_reply_nobody_waits_for_fails_the_session() {
    let mut s = ready();
    s.command(&[b"PING"], 1).unwrap();
    s.handle_input(b"+PONG\r\n+PONG\r\n:1\r\n");
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reply {
                tag: 1,
                value: Value::Simple(b(b"PONG"))
            },
            Event::Failed(SessionError::UnexpectedReply {
                reason: "no command waits for a reply"
            }),
        ]
    );
    let mut s = ready();
    s.subscribe(&[b"a", b"b"]).unwrap();
    let mut wire = push_bytes(subscribed(b"a", 1));
    wire.extend(b"-ERR late\r\n");
    s.handle_input(&wire);
    assert!(matches!(
        events(&mut s)[..],
        [
            Event::Push(_),
            Event::Failed(SessionError::UnexpectedReply { .. })
        ]
    ));
}

#[test]
fn input_is_bounded_by_the_frame_limit() {
    let config = SessionConfig {
        max_frame: 64,
        ..SessionConfig::default()
    };
    let mut s: Session<u32> = Session::with_config(&url(None, None, 0), config.clone());
    s.handle_input(HELLO_REPLY);
    s.command(&[b"GET", b"k"], 1).unwrap();
    s.handle_input(b"$1000\r\n");
    assert_eq!(
        events(&mut s),
        vec![
            Event::Ready,
            Event::Failed(SessionError::Resp(RespError::FrameTooLarge {
                size: 1009,
                max: 64
            }))
        ]
    );
    let mut s: Session<u32> = Session::with_config(&url(None, None, 0), config);
    s.handle_input(HELLO_REPLY);
    s.handle_input(&[b'+'; 60]);
    assert_eq!(events(&mut s), vec![Event::Ready]);
    s.handle_input(&[b'x'; 10]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Failed(SessionError::Resp(
            RespError::FrameTooLarge { .. }
        ))]
    ));
}

#[test]
fn output_and_pending_are_bounded() {
    let hello = cmd(&[b"HELLO", b"3"]).len();
    let ping = cmd(&[b"PING"]).len();
    let config = SessionConfig {
        max_output: hello + 2 * ping,
        max_pending: 4,
        ..SessionConfig::default()
    };
    let mut s: Session<u32> = Session::with_config(&url(None, None, 0), config);
    s.command(&[b"PING"], 1).unwrap();
    s.command(&[b"PING"], 2).unwrap();
    let full = SendError::OutputFull {
        queued: hello + 3 * ping,
        max: hello + 2 * ping,
    };
    assert_eq!(s.command(&[b"PING"], 3), Err((full, 3)));
    assert_eq!(
        s.subscribe(&[b"a"]).unwrap_err(),
        SendError::OutputFull {
            queued: hello + 2 * ping + cmd(&[b"SUBSCRIBE", b"a"]).len(),
            max: hello + 2 * ping
        }
    );
    transmit(&mut s);
    s.command(&[b"PING"], 3).unwrap();
    assert_eq!(
        s.command(&[b"PING"], 4),
        Err((SendError::TooManyPending { max: 4 }, 4)),
        "HELLO + 3 PINGs"
    );
    assert_eq!(s.close(), vec![1, 2, 3]);
}

#[test]
fn debug_hides_the_password() {
    let s: Session<u32> = Session::new(&url(Some("u"), Some("hunter2"), 0));
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
