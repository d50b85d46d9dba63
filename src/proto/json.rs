//! Small JSON helpers shared by the request parser and the reply encoders:
//! typing a borrowed [`RawValue`], measuring nesting, escaping strings and
//! formatting integers without going through `serde_json::Value`.
//!
//! Every function that reads takes text that serde_json has already accepted
//! as one JSON value (RFC 8259 §2), so the only question left is its type.

use serde_json::value::RawValue;
use std::borrow::Cow;

/// The string a raw value holds, unescaped; `None` when it is not a string.
///
/// Borrows from the input unless the string has escapes. A string no Rust
/// `str` can hold (a lone UTF-16 surrogate such as `"\ud800"`, which RFC
/// 8259's grammar allows) is still a string: it comes back as its JSON text,
/// quotes included, which matches no type, channel name or epoch, so the
/// caller answers as for any other unknown string.
pub(crate) fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        Some(serde_json::from_str::<String>(text).map_or(Cow::Borrowed(text), Cow::Owned))
    } else {
        // A valid JSON string without `\` has no escapes and no control
        // characters: its content is the text between the quotes.
        Some(Cow::Borrowed(inner))
    }
}

/// The value of a raw JSON integer literal without sign, fraction or
/// exponent that fits in a `u64`; `None` for anything else (`-1`, `1.0`,
/// `1e3`, `"1"`, `null`, `18446744073709551616`).
pub(crate) fn as_uint(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether arrays and objects in `json` (one valid JSON value) nest more than
/// `max` levels deep. `[]` is one level, `[[]]` two, a scalar zero.
///
/// serde_json parses a `RawValue` with an iterative skipper and no depth
/// limit, so the limit of a message that is passed through is checked here.
pub(crate) fn nesting_exceeds(json: &str, max: usize) -> bool {
    if !json.starts_with(['[', '{']) {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in json.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `ESCAPE[b]` is 0 when byte `b` is copied as is, else the character after
/// the `\` (`u` meaning `\u00XX`). Same choices as serde_json: RFC 8259 §7
/// requires escaping `"`, `\` and U+0000..U+001F, nothing else.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

static HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, quotes included.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s.as_bytes();
    // Copy the longest run that needs no escape, then escape one byte.
    while let Some(at) = rest.iter().position(|&b| ESCAPE[usize::from(b)] != 0) {
        let (run, tail) = rest.split_at(at);
        out.extend_from_slice(run);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match ESCAPE[usize::from(b)] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            short => out.extend_from_slice(&[b'\\', short]),
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Appends `n` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).expect("test input is JSON")
    }

    #[test]
    fn as_str_borrows_unless_escaped() {
        assert!(matches!(
            as_str(raw(r#""doc:42""#)),
            Some(Cow::Borrowed("doc:42"))
        ));
        assert!(matches!(as_str(raw(r#""doc\u003a42""#)), Some(Cow::Owned(s)) if s == "doc:42"));
        assert_eq!(as_str(raw(r#""a\"b\\c""#)).as_deref(), Some("a\"b\\c"));
        assert_eq!(as_str(raw(r#""""#)).as_deref(), Some(""));
    }

    #[test]
    fn as_str_refuses_other_types() {
        for text in ["1", "null", "true", "[\"a\"]", "{\"a\":1}"] {
            assert_eq!(as_str(raw(text)), None, "{text}");
        }
    }

    #[test]
    fn undecodable_string_comes_back_quoted() {
        let text = r#""a\ud800""#;
        assert_eq!(as_str(raw(text)).as_deref(), Some(text));
    }

    #[test]
    fn as_uint_accepts_only_plain_integers() {
        assert_eq!(as_uint(raw("0")), Some(0));
        assert_eq!(as_uint(raw("9007199254740993")), Some(9007199254740993));
        assert_eq!(as_uint(raw("18446744073709551615")), Some(u64::MAX));
        for text in [
            "18446744073709551616",
            "-1",
            "-0",
            "1.0",
            "1e3",
            "\"1\"",
            "null",
            "true",
            "[1]",
        ] {
            assert_eq!(as_uint(raw(text)), None, "{text}");
        }
    }

    #[test]
    fn nesting_counts_arrays_and_objects_not_strings() {
        assert!(!nesting_exceeds("1", 0));
        assert!(!nesting_exceeds("[]", 1));
        assert!(nesting_exceeds("[]", 0));
        assert!(!nesting_exceeds(r#"[{"a":[1]},[2]]"#, 3));
        assert!(nesting_exceeds(r#"[{"a":[1]},[2]]"#, 2));
        // Brackets and escaped quotes inside strings do not count.
        assert!(!nesting_exceeds(r#"["[[[[", "\"[[[", {"k[[":"]"}]"#, 2));
        assert!(nesting_exceeds(r#"["\\", [[]]]"#, 2));
    }

    #[test]
    fn escapes_like_serde_json() {
        let all: String = (0u8..0x80).map(char::from).collect();
        for s in [
            all.as_str(),
            "",
            "plain",
            "caf\u{e9} \u{2028} \u{1f600}",
            "\"\\/",
        ] {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).expect("str serializes"), "{s:?}");
        }
    }

    #[test]
    fn writes_integers_like_display() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX] {
            let mut out = b"x".to_vec();
            write_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    proptest! {
        #[test]
        fn write_string_matches_serde_json(s in "\\PC*|[\\x00-\\x7f]*") {
            let mut out = Vec::new();
            write_string(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_vec(&s).expect("str serializes"));
        }

        #[test]
        fn write_u64_matches_display(n in any::<u64>()) {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            prop_assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
