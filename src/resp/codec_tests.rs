use super::*;
use proptest::prelude::*;

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn decode_one(wire: &[u8]) -> Result<Option<Frame>, RespError> {
    let mut buf = BytesMut::from(wire);
    let frame = decode(&mut buf);
    if let Ok(Some(_)) = frame {
        assert!(
            buf.is_empty(),
            "{:?} left {:?}",
            String::from_utf8_lossy(wire),
            buf
        );
    }
    frame
}

fn reply(wire: &[u8]) -> Value {
    match decode_one(wire) {
        Ok(Some(Frame::Reply(v))) => v,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(wire)),
    }
}

fn push(wire: &[u8]) -> Push {
    match decode_one(wire) {
        Ok(Some(Frame::Push(p))) => p,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(wire)),
    }
}

#[test]
fn encode_command_writes_an_array_of_blob_strings() {
    let mut dst = BytesMut::new();
    encode_command(&[b"PUBLISH", b"sb:room", b"a\r\nb"], &mut dst);
    assert_eq!(
        &dst[..],
        b"*3\r\n$7\r\nPUBLISH\r\n$7\r\nsb:room\r\n$4\r\na\r\nb\r\n"
    );
    dst.clear();
    encode_command(&[b"GET", b""], &mut dst);
    assert_eq!(&dst[..], b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
    dst.clear();
    encode_command(&[], &mut dst);
    assert_eq!(&dst[..], b"*0\r\n");
    let long = vec![b'x'; 12345];
    let args: &[&[u8]] = &[b"SET", b"k", &long];
    dst.clear();
    encode_command(args, &mut dst);
    assert_eq!(dst.len(), command_len(args));
    assert!(dst.starts_with(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12345\r\nxxx"));
}

#[test]
fn decodes_every_reply_type() {
    use Value::*;
    let cases: Vec<(&[u8], Value)> = vec![
        (b"+OK\r\n", Ok),
        (b"+PONG\r\n", Simple(b(b"PONG"))),
        (
            b"-ERR unknown command\r\n",
            Error(b(b"ERR unknown command")),
        ),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Error(b(b"SYNTAX invalid syntax")),
        ),
        (b":-42\r\n", Int(-42)),
        (b":9223372036854775807\r\n", Int(i64::MAX)),
        (b"$5\r\nhe\r\no\r\n", Bulk(b(b"he\r\no"))),
        (b"$0\r\n\r\n", Bulk(b(b""))),
        (b"_\r\n", Nil),
        (b",3.25\r\n", Double(3.25)),
        (b",inf\r\n", Double(f64::INFINITY)),
        (b",-inf\r\n", Double(f64::NEG_INFINITY)),
        (b"#t\r\n", Bool(true)),
        (b"#f\r\n", Bool(false)),
        (b"(3492890328409238509324850943850943825024385\r\n", Other),
        (b"=15\r\ntxt:Some string\r\n", Bulk(b(b"Some string"))),
        (
            b"*3\r\n:1\r\n$1\r\nx\r\n*0\r\n",
            Array(vec![Int(1), Bulk(b(b"x")), Array(vec![])]),
        ),
        (
            b"~2\r\n$1\r\na\r\n$1\r\nb\r\n",
            Array(vec![Bulk(b(b"a")), Bulk(b(b"b"))]),
        ),
        (
            b"%3\r\n$1\r\nz\r\n:1\r\n$1\r\na\r\n_\r\n$1\r\nm\r\n*1\r\n#t\r\n",
            Map(vec![
                (Bulk(b(b"z")), Int(1)),
                (Bulk(b(b"a")), Nil),
                (Bulk(b(b"m")), Array(vec![Bool(true)])),
            ]),
        ),
        (b"%0\r\n", Map(vec![])),
        // Attributes are dropped, at the top and inside an aggregate.
        (b"|1\r\n+ttl\r\n:3\r\n:5\r\n", Int(5)),
        (
            b"*2\r\n|1\r\n+a\r\n+b\r\n$1\r\nx\r\n:2\r\n",
            Array(vec![Bulk(b(b"x")), Int(2)]),
        ),
        // A push nested in a reply is not a push of its own.
        (b"*1\r\n>1\r\n:1\r\n", Array(vec![Other])),
    ];
    for (wire, want) in cases {
        assert_eq!(reply(wire), want, "{:?}", String::from_utf8_lossy(wire));
    }
    assert!(matches!(reply(b",nan\r\n"), Double(d) if d.is_nan()));
}

#[test]
fn decodes_pubsub_pushes() {
    use Subscription::*;
    let cases: Vec<(&[u8], Push)> = vec![
        (
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n",
            Push::Message {
                channel: b(b"ch"),
                payload: b(b"hi!"),
            },
        ),
        (
            b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$0\r\n\r\n",
            Push::PMessage {
                pattern: b(b"c*"),
                channel: b(b"ch"),
                payload: b(b""),
            },
        ),
        (
            b">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\ny\r\n",
            Push::SMessage {
                channel: b(b"s"),
                payload: b(b"y"),
            },
        ),
        (
            b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
            Push::Subscribed {
                kind: Channel,
                channel: b(b"a"),
                count: 1,
            },
        ),
        (
            b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n",
            Push::Unsubscribed {
                kind: Channel,
                channel: b(b"a"),
                count: 0,
            },
        ),
        (
            b">3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:1\r\n",
            Push::Subscribed {
                kind: Pattern,
                channel: b(b"p*"),
                count: 1,
            },
        ),
        (
            b">3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n",
            Push::Unsubscribed {
                kind: Pattern,
                channel: b(b"p*"),
                count: 0,
            },
        ),
        (
            b">3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n",
            Push::Subscribed {
                kind: Shard,
                channel: b(b"s"),
                count: 1,
            },
        ),
        (
            b">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n",
            Push::Unsubscribed {
                kind: Shard,
                channel: b(b"s"),
                count: 0,
            },
        ),
        // Unsubscribing from everything while subscribed to nothing.
        (
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n",
            Push::Other(Value::Array(vec![
                Value::Bulk(b(b"unsubscribe")),
                Value::Nil,
                Value::Int(0),
            ])),
        ),
        (
            b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
            Push::Other(Value::Array(vec![
                Value::Bulk(b(b"invalidate")),
                Value::Array(vec![Value::Bulk(b(b"k"))]),
            ])),
        ),
        (b">0\r\n", Push::Other(Value::Array(vec![]))),
        // Right name, wrong shape.
        (
            b">2\r\n$7\r\nmessage\r\n$2\r\nch\r\n",
            Push::Other(Value::Array(vec![
                Value::Bulk(b(b"message")),
                Value::Bulk(b(b"ch")),
            ])),
        ),
    ];
    for (wire, want) in cases {
        assert_eq!(push(wire), want, "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn pushes_and_replies_interleave_in_order() {
    let wire = b"+OK\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n1\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n2\r\n$1\r\nv\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    let mut frames = Vec::new();
    while let Some(frame) = decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    let msg = |p: &'static [u8]| {
        Frame::Push(Push::Message {
            channel: b(b"a"),
            payload: b(p),
        })
    };
    assert_eq!(
        frames,
        vec![
            Frame::Reply(Value::Ok),
            msg(b"1"),
            Frame::Reply(Value::Int(1)),
            msg(b"2"),
            Frame::Reply(Value::Bulk(b(b"v"))),
        ]
    );
    assert!(buf.is_empty());
}

#[test]
fn incomplete_input_consumes_nothing() {
    let wire = b"*2\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n%1\r\n+k\r\n,1.5\r\n";
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(&buf[..], &wire[..cut]);
    }
}

#[test]
fn payloads_are_slices_of_the_input() {
    let mut buf = BytesMut::from(&b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let range = start..start + buf.len();
    let Ok(Some(Frame::Push(Push::Message { channel, payload }))) = decode(&mut buf) else {
        panic!("not a message");
    };
    assert!(range.contains(&(channel.as_ptr() as usize)));
    assert!(range.contains(&(payload.as_ptr() as usize)));
    assert_eq!(&payload[..], b"hello");
}

#[test]
fn refuses_what_the_crate_cannot_parse() {
    for wire in [
        &b":12a\r\n"[..],
        b",x\r\n",
        b"#y\r\n",
        b"=3\r\ntxt\r\n",
        b"=7\r\nbad:abc\r\n",
        b"%1\r\n*0\r\n:1\r\n",
        b"|1\r\n+a\r\n+b\r\n|0\r\n:1\r\n",
    ] {
        let got = decode_one(wire);
        assert!(
            matches!(got, Err(RespError::Protocol(_))),
            "{:?}: {got:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let deep = b"*1\r\n".repeat(100_000);
    assert_eq!(
        decode_one(&deep),
        Err(RespError::TooDeep { max: MAX_DEPTH })
    );
    let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
    ok.extend_from_slice(b":7\r\n");
    let mut want = Value::Int(7);
    for _ in 0..MAX_DEPTH {
        want = Value::Array(vec![want]);
    }
    assert_eq!(reply(&ok), want);
}

#[test]
fn wide_replies_decode() {
    let n = 100_000;
    let mut wire = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        wire.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    let Value::Array(items) = reply(&wire) else {
        panic!("not an array")
    };
    assert_eq!(items.len(), n);
    assert_eq!(items[n - 1], Value::Int(n as i64 - 1));
}

#[test]
fn frame_limit_is_checked_on_the_declared_length() {
    let mut buf = BytesMut::from(&b"$1000\r\n"[..]);
    let err = Decoder::new(100).decode(&mut buf);
    assert_eq!(
        err,
        Err(RespError::FrameTooLarge {
            size: 1009,
            max: 100
        })
    );
    let mut buf = BytesMut::from(&format!("${}\r\n", MAX_FRAME)[..]);
    assert!(matches!(
        decode(&mut buf),
        Err(RespError::FrameTooLarge { .. })
    ));
}

// ---- properties ----

fn blob() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn scalar() -> impl Strategy<Value = Value> {
    let line = blob().prop_filter("one line, not OK", |s| !contains_crlf(s) && &s[..] != b"OK");
    let double = prop_oneof![
        any::<f64>().prop_filter("nan != nan", |d| !d.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ];
    prop_oneof![
        Just(Value::Nil),
        Just(Value::Ok),
        line.prop_map(Value::Simple),
        blob().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Int),
        blob().prop_map(Value::Bulk),
        double.prop_map(Value::Double),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        let keys = prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 0..8),
            inner.clone(),
            0..5,
        );
        prop_oneof![
            prop::collection::vec(inner, 0..6).prop_map(Value::Array),
            keys.prop_map(|m| Value::Map(
                m.into_iter()
                    .map(|(k, v)| (Value::Bulk(k.into()), v))
                    .collect()
            )),
        ]
    })
}

fn pushes() -> impl Strategy<Value = Push> {
    let kind = prop_oneof![
        Just(Subscription::Channel),
        Just(Subscription::Pattern),
        Just(Subscription::Shard)
    ];
    prop_oneof![
        (blob(), blob()).prop_map(|(channel, payload)| Push::Message { channel, payload }),
        (blob(), blob()).prop_map(|(channel, payload)| Push::SMessage { channel, payload }),
        (blob(), blob(), blob()).prop_map(|(pattern, channel, payload)| Push::PMessage {
            pattern,
            channel,
            payload
        }),
        (kind.clone(), blob(), any::<i64>()).prop_map(|(kind, channel, count)| Push::Subscribed {
            kind,
            channel,
            count
        }),
        (kind, blob(), any::<i64>()).prop_map(|(kind, channel, count)| Push::Unsubscribed {
            kind,
            channel,
            count
        }),
        // Led by a number, so never taken for a known push.
        (any::<i64>(), prop::collection::vec(value(), 0..3)).prop_map(|(n, rest)| {
            Push::Other(Value::Array(
                std::iter::once(Value::Int(n)).chain(rest).collect(),
            ))
        }),
    ]
}

fn frames() -> impl Strategy<Value = Vec<Frame>> {
    prop::collection::vec(
        prop_oneof![
            value().prop_map(Frame::Reply),
            pushes().prop_map(Frame::Push)
        ],
        0..8,
    )
}

/// Feeds `wire` in the given chunks through one `Decoder`; returns the frames
/// and whether it stopped on an error.
fn decode_chunked(wire: &[u8], cuts: &[usize], max_frame: usize) -> (Vec<Frame>, bool) {
    let mut decoder = Decoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&wire.len())) {
        let to = to.clamp(from, wire.len());
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame consumed nothing");
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

proptest! {
    #[test]
    fn values_round_trip(v in value()) {
        let mut wire = BytesMut::new();
        encode_value(&v, &mut wire);
        prop_assert_eq!(decode(&mut wire), Ok(Some(Frame::Reply(v))));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn pushes_round_trip(p in pushes()) {
        let mut wire = BytesMut::new();
        encode_frame(&Frame::Push(p.clone()), &mut wire);
        prop_assert_eq!(decode(&mut wire), Ok(Some(Frame::Push(p))));
    }

    #[test]
    fn chunking_does_not_change_the_frames(
        sent in frames(),
        mut cuts in prop::collection::vec(0usize..4096, 0..12),
    ) {
        let mut wire = BytesMut::new();
        sent.iter().for_each(|f| encode_frame(f, &mut wire));
        cuts.sort_unstable();
        let (whole, failed) = decode_chunked(&wire, &[], MAX_FRAME);
        prop_assert!(!failed);
        prop_assert_eq!(&whole, &sent);
        let (chunked, failed) = decode_chunked(&wire, &cuts, MAX_FRAME);
        prop_assert!(!failed);
        prop_assert_eq!(&chunked, &sent);
        // Byte by byte, the hardest chunking.
        let every: Vec<usize> = (1..wire.len()).collect();
        prop_assert_eq!(decode_chunked(&wire, &every, MAX_FRAME), (sent, false));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_chunked(&data, &[], 256);
    }

    #[test]
    fn resp_shaped_bytes_never_panic_and_chunk_alike(
        data in prop::collection::vec(prop::sample::select(b"*$%>|~:+-_#,!=(;.?tfxH\r\n0123456789".to_vec()), 0..256),
        mut cuts in prop::collection::vec(0usize..256, 0..8),
    ) {
        cuts.sort_unstable();
        let (whole, whole_failed) = decode_chunked(&data, &[], 128);
        let (chunked, chunked_failed) = decode_chunked(&data, &cuts, 128);
        // Frames compare by their Debug text, where NaN equals NaN.
        prop_assert_eq!(format!("{whole:?}"), format!("{chunked:?}"));
        prop_assert_eq!(whole_failed, chunked_failed);
    }
}
