//! Channel names, user names and namespaces (PROTOCOL.md §1, §5, §7).
//!
//! A channel name is 1-200 bytes of `A-Z a-z 0-9 _ - : . @ = /` (§7,
//! `invalid_channel`); a user name is 1-64 bytes of the same alphabet (§1).
//! The alphabet is ASCII, so a valid name is valid UTF-8, needs no escaping in
//! JSON, and fits in a Redis key or channel as it is.
//!
//! # Namespaces
//!
//! §5: "a namespace is the part of a channel name before its first `:`". The
//! page is silent about a name without `:`; here it is in the **empty
//! namespace `""`**, not in a namespace named after the whole channel. So
//! `--history lobby=10` covers `lobby:1` but not the channel `lobby`, and
//! settings for plain names are written with an empty namespace (`=10`).
//! This mirrors Centrifugo, where a channel without the namespace separator
//! belongs to the top-level (unnamed) namespace.

/// Longest channel name, in bytes (§7).
pub const MAX_CHANNEL_BYTES: usize = 200;

/// Longest user name, in bytes (§1).
pub const MAX_USER_BYTES: usize = 64;

/// `ALPHABET[b]` is true when byte `b` may appear in a channel or user name.
static ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b'-' | b':' | b'.' | b'@' | b'=' | b'/');
        b += 1;
    }
    table
};

fn in_alphabet(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| ALPHABET[usize::from(b)])
}

/// Whether `name` is a valid channel name: 1-200 bytes of
/// `A-Z a-z 0-9 _ - : . @ = /`.
pub fn valid_channel(name: &str) -> bool {
    in_alphabet(name, MAX_CHANNEL_BYTES)
}

/// Whether `name` is a valid user name: 1-64 bytes of the channel alphabet.
pub fn valid_user(name: &str) -> bool {
    in_alphabet(name, MAX_USER_BYTES)
}

/// The namespace of `channel`: the part before its first `:`, or `""` when it
/// has none (see the module docs).
pub fn namespace(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALLOWED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:.@=/";

    #[test]
    fn alphabet_is_exactly_section_7() {
        for b in 0..=255u8 {
            let name = [b'a', b];
            let Ok(name) = std::str::from_utf8(&name) else {
                continue;
            };
            assert_eq!(
                valid_channel(name),
                ALLOWED.as_bytes().contains(&b),
                "byte {b:#04x}"
            );
        }
        assert!(valid_channel(ALLOWED));
        assert!(valid_user("alice@example.com"));
    }

    #[test]
    fn rejects_non_ascii_and_space() {
        for name in [
            "caf\u{e9}",
            "doc 42",
            "doc\t42",
            "doc\u{0}",
            "doc,1",
            "doc*",
            "doc#1",
        ] {
            assert!(!valid_channel(name), "{name:?}");
            assert!(!valid_user(name), "{name:?}");
        }
    }

    #[test]
    fn channel_length_bounds() {
        assert!(!valid_channel(""));
        assert!(valid_channel("a"));
        assert!(valid_channel(&"a".repeat(200)));
        assert!(!valid_channel(&"a".repeat(201)));
    }

    #[test]
    fn user_length_bounds() {
        assert!(!valid_user(""));
        assert!(valid_user("a"));
        assert!(valid_user(&"a".repeat(64)));
        assert!(!valid_user(&"a".repeat(65)));
    }

    #[test]
    fn namespace_is_before_first_colon() {
        assert_eq!(namespace("doc:42"), "doc");
        assert_eq!(namespace("doc:42:comments"), "doc");
        assert_eq!(namespace(":42"), "");
        assert_eq!(namespace("doc:"), "doc");
    }

    #[test]
    fn name_without_colon_is_in_empty_namespace() {
        assert_eq!(namespace("lobby"), "");
        assert_eq!(namespace(""), "");
    }

    proptest! {
        #[test]
        fn names_from_alphabet_are_valid(name in "[A-Za-z0-9_:.@=/-]{1,200}") {
            prop_assert!(valid_channel(&name));
            prop_assert_eq!(valid_user(&name), name.len() <= 64);
        }

        #[test]
        fn namespace_is_a_prefix_without_colon(name in "\\PC{0,40}") {
            let ns = namespace(&name);
            prop_assert!(name.starts_with(ns));
            prop_assert!(!ns.contains(':'));
            if !ns.is_empty() {
                prop_assert_eq!(name.as_bytes().get(ns.len()), Some(&b':'));
            }
        }
    }
}
