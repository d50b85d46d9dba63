//! The JSON the load generator sends, and the cheap scan that reads it back.
//!
//! Every published `action` has one fixed shape, `{"s":SEQ,"t":NANOS,"p":PUB}`
//! (sequence number, send time in ns since the run's start, publisher index
//! within its channel). PROTOCOL.md §4 promises the server passes `action`
//! through byte for byte, so a receiver finds the stamp with a byte search for
//! `{"s":` instead of parsing the event: the event's other fields (type,
//! channel, user, conn) cannot contain `{` followed by that key.
//!
//! Replies during setup are classified by substring (`"joined"`, `"error"`),
//! which holds for every field order a server may choose.

use std::io::Write;

/// What a receiver reads back from a delivered `user_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
    /// Send time: monotonic ns since the run's start.
    pub sent_ns: u64,
    /// Publisher index within the channel.
    pub publisher: u32,
}

/// A setup-time reply, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Joined,
    Error,
    Other,
}

/// Appends `{"type":"join_channel","channel":CHANNEL}`.
///
/// `channel` comes from the scenario and uses only the channel alphabet of
/// PROTOCOL.md §7, so it needs no escaping.
pub fn write_join(channel: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"join_channel\",\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Appends a `user_action` request carrying `stamp` in its `action`.
pub fn write_user_action(channel: &str, stamp: Stamp, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"user_action\",\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    // Writing integers into a Vec cannot fail.
    let _ = write!(
        out,
        "\",\"action\":{{\"s\":{},\"t\":{},\"p\":{}}}}}",
        stamp.seq, stamp.sent_ns, stamp.publisher
    );
}

/// Appends a `user_action` request whose `action` carries `stamp` and,
/// after it, a realistic batch of editor cursors until the action is about
/// `action_bytes` long: `{"s":..,"t":..,"p":..,"cursors":[{"user":"user-3",
/// "x":412,"y":273,"sel":[9,15]},…]}`. The numbers move with the sequence
/// number, so no two messages are alike; the keys repeat, as in the JSON
/// real-time apps send (what `--compression` is measured on).
pub fn write_padded_user_action(
    channel: &str,
    stamp: Stamp,
    action_bytes: usize,
    out: &mut Vec<u8>,
) {
    write_user_action(channel, stamp, out);
    // Reopen the action: drop its `}` and the request's.
    out.truncate(out.len() - 2);
    let action_start = out.len();
    out.extend_from_slice(b",\"cursors\":[");
    let s = stamp.seq;
    let mut i: u64 = 0;
    // The stamp itself is about 40 bytes; stop before passing the target.
    while out.len() - action_start + 40 + 60 < action_bytes {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(
            out,
            "{{\"user\":\"user-{i}\",\"x\":{},\"y\":{},\"sel\":[{},{}]}}",
            (s * 7 + (3 + i) * 37) % 1000,
            (s * 3 + i * 91) % 800,
            (s + i * 3) % 100,
            (s + i * 5) % 100
        );
        i += 1;
    }
    out.extend_from_slice(b"]}}");
}

/// Finds the stamp in a delivered event, or `None` when `payload` is not one
/// of ours (a reply, a presence event, a malformed action).
pub fn scan_stamp(payload: &[u8]) -> Option<Stamp> {
    const KEY: &[u8] = b"{\"s\":";
    let mut from = 0;
    while let Some(at) = payload.get(from..)?.iter().position(|&b| b == b'{') {
        let start = from + at;
        let rest = payload.get(start..)?;
        if rest.starts_with(KEY) {
            return parse_stamp(rest.get(KEY.len()..)?);
        }
        from = start + 1;
    }
    None
}

/// Parses `SEQ,"t":NANOS,"p":PUB}` (the part after `{"s":`).
fn parse_stamp(buf: &[u8]) -> Option<Stamp> {
    let (seq, buf) = parse_u64(buf)?;
    let (sent_ns, buf) = parse_u64(buf.strip_prefix(b",\"t\":")?)?;
    let (publisher, buf) = parse_u64(buf.strip_prefix(b",\"p\":")?)?;
    // `}`, or `,` before the padding of `write_padded_user_action`.
    if !matches!(buf.first(), Some(b'}' | b',')) {
        return None;
    }
    Some(Stamp {
        seq,
        sent_ns,
        publisher: u32::try_from(publisher).ok()?,
    })
}

/// Leading decimal digits of `buf` as a u64 (at least one, no overflow).
fn parse_u64(buf: &[u8]) -> Option<(u64, &[u8])> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in &buf[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, &buf[digits..]))
}

/// Classifies a setup-time reply by substring.
pub fn classify_reply(payload: &[u8]) -> Reply {
    if crate::ws::find(payload, b"\"joined\"").is_some() {
        Reply::Joined
    } else if crate::ws::find(payload, b"\"error\"").is_some() {
        Reply::Error
    } else {
        Reply::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        seq: 42,
        sent_ns: 1_234_567_890_123,
        publisher: 3,
    };

    #[test]
    fn request_is_valid_json_with_the_stamp() {
        let mut out = Vec::new();
        write_user_action("load:7", STAMP, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "user_action");
        assert_eq!(v["channel"], "load:7");
        assert_eq!(v["action"]["s"], 42);
        assert_eq!(v["action"]["t"], 1_234_567_890_123u64);
        assert_eq!(v["action"]["p"], 3);
        let mut join = Vec::new();
        write_join("load:7", &mut join);
        let v: serde_json::Value = serde_json::from_slice(&join).unwrap();
        assert_eq!(v["type"], "join_channel");
        assert_eq!(v["channel"], "load:7");
    }

    #[test]
    fn scan_finds_the_stamp_in_every_server_layout() {
        let action = r#"{"s":42,"t":1234567890123,"p":3}"#;
        for event in [
            format!(
                r#"{{"type":"user_action","channel":"load:7","user":"anon-n1-1","conn":"n1-1","action":{action}}}"#
            ),
            format!(
                r#"{{"type":"user_action","channel":"load:7","user":"a","conn":"b","action":{action},"offset":18,"info":{{"x":1}}}}"#
            ),
            format!(r#"{{"action":{action},"type":"user_action"}}"#),
        ] {
            assert_eq!(scan_stamp(event.as_bytes()), Some(STAMP), "{event}");
        }
    }

    #[test]
    fn scan_rejects_what_is_not_ours() {
        for payload in [
            r#"{"type":"welcome","conn":"n1-1","heartbeat_s":25}"#,
            r#"{"type":"user_action","action":{"x":1}}"#,
            r#"{"type":"user_action","action":{"s":1,"t":2}}"#,
            r#"{"type":"user_action","action":{"s":1,"t":2,"p":3"#,
            r#"{"type":"user_action","action":{"s":99999999999999999999999,"t":2,"p":3}}"#,
            r#"{"type":"user_action","action":{"s":1,"t":2,"p":99999999999}}"#,
            r#"{"s":}"#,
            "{",
            "",
        ] {
            assert_eq!(scan_stamp(payload.as_bytes()), None, "{payload}");
        }
    }

    #[test]
    fn scan_round_trips_written_stamps() {
        for stamp in [
            Stamp {
                seq: 0,
                sent_ns: 0,
                publisher: 0,
            },
            Stamp {
                seq: u64::MAX,
                sent_ns: u64::MAX,
                publisher: u32::MAX,
            },
        ] {
            let mut out = Vec::new();
            write_user_action("c", stamp, &mut out);
            assert_eq!(scan_stamp(&out), Some(stamp));
        }
    }

    #[test]
    fn padded_actions_are_json_of_the_asked_size_with_the_stamp() {
        for want in [0usize, 100, 1024, 4096] {
            let mut out = Vec::new();
            write_padded_user_action("load:1", STAMP, want, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let action = serde_json::to_string(&v["action"]).unwrap();
            assert!(
                action.len() <= want.max(100) + 10,
                "{want}: {}",
                action.len()
            );
            if want >= 1024 {
                assert!(action.len() + 80 >= want, "{want}: {}", action.len());
                assert!(v["action"]["cursors"].as_array().unwrap().len() > 10);
            }
            assert_eq!(scan_stamp(&out), Some(STAMP));
        }
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(
            classify_reply(br#"{"type":"joined","channel":"a"}"#),
            Reply::Joined
        );
        assert_eq!(
            classify_reply(br#"{"channel":"a","type":"joined"}"#),
            Reply::Joined
        );
        assert_eq!(
            classify_reply(br#"{"type":"error","code":"forbidden"}"#),
            Reply::Error
        );
        assert_eq!(classify_reply(br#"{"type":"welcome"}"#), Reply::Other);
    }
}
