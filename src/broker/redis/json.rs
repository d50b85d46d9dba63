//! The JSON text the Redis broker stores and publishes.
//!
//! A presence entry is `"user":…,"conn":…[,"info":…]`: the member list of a
//! `joined` is built from entries, and so are the `join`/`leave` events, here
//! and inside the reap script, so the bytes match the embedded broker's.

use bytes::Bytes;

use crate::broker::MemberInfo;
use crate::resp::Value;

/// `"user":…,"conn":…[,"info":…]`, the same bytes the presence events and
/// member lists of the embedded broker carry.
pub(super) fn member_entry(m: &MemberInfo) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"\"user\":");
    json_str(&mut out, &m.user);
    out.extend_from_slice(b",\"conn\":");
    json_str(&mut out, &m.conn);
    if let Some(info) = &m.info {
        out.extend_from_slice(b",\"info\":");
        out.extend_from_slice(info.get().as_bytes());
    }
    out.into()
}

pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(super) fn presence_event(channel: &str, event: &str, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entry.len());
    out.extend_from_slice(b"{\"type\":\"presence\",\"channel\":");
    json_str(&mut out, channel);
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(entry);
    out.push(b'}');
    out
}

/// `[{entry},{entry}]` from presence entries.
pub(super) fn members_json<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, e) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        out.extend_from_slice(e);
        out.push(b'}');
    }
    out.push(b']');
    out
}

pub(super) fn bulk_items(v: &Value) -> impl Iterator<Item = &[u8]> {
    let items: &[Value] = match v {
        Value::Array(items) => items,
        _ => &[],
    };
    items.iter().filter_map(|i| match i {
        Value::Bulk(b) => Some(&b[..]),
        _ => None,
    })
}

/// The offset a history event ends with: the publish script appends
/// `"offset":N}` to every `user_action` of a history channel. `None` for
/// anything else (a presence event, a channel without history).
pub(super) fn event_offset(payload: &[u8]) -> Option<u64> {
    let body = payload.strip_suffix(b"}")?;
    let digits = body.len() - body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == body.len() || body.len() - digits > 20 {
        return None;
    }
    if !body[..digits].ends_with(b"\"offset\":") {
        return None;
    }
    std::str::from_utf8(&body[digits..]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::event_offset;

    #[test]
    fn offset_is_read_from_the_end_of_a_history_event() {
        let cases: [(&[u8], Option<u64>); 7] = [
            (
                br#"{"type":"user_action","action":1,"offset":17}"#,
                Some(17),
            ),
            (br#"{"action":{"offset":3},"offset":0}"#, Some(0)),
            (br#"{"type":"user_action","action":{"offset":3}}"#, None),
            (br#"{"type":"user_action","action":12}"#, None),
            (br#"{"type":"presence","event":"join"}"#, None),
            (br#""offset":99999999999999999999999}"#, None),
            (b"", None),
        ];
        for (payload, want) in cases {
            assert_eq!(
                event_offset(payload),
                want,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
