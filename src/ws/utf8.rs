//! Incremental UTF-8 validation of a text message that arrives in fragments
//! (RFC 6455 5.6 and 8.1).
//!
//! A fragment boundary may split a code point, so "invalid" and "incomplete
//! at the end" must be told apart: `std::str::from_utf8` does that through
//! `Utf8Error::error_len()` (`None` means the bytes stop in the middle of a
//! sequence that could still be completed). The validator carries those at
//! most 3 trailing bytes into the next fragment, so it never looks at a byte
//! twice and an invalid byte fails as soon as its fragment arrives (the
//! Autobahn 6.4 fail-fast cases). Only `finish` may complain about a
//! sequence that is merely unfinished.

use std::str;

/// Marker error: the bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates UTF-8 fed in pieces.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// The unfinished sequence at the end of the previous piece.
    carry: [u8; 4],
    carry_len: usize,
}

impl Utf8Validator {
    /// Validates the next piece of the text.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        // First complete the carried sequence, one byte at a time: at most 3.
        while self.carry_len > 0 {
            let Some((&b, rest)) = piece.split_first() else {
                return Ok(());
            };
            piece = rest;
            let slot = self.carry.get_mut(self.carry_len).ok_or(InvalidUtf8)?;
            *slot = b;
            self.carry_len += 1;
            match str::from_utf8(&self.carry[..self.carry_len]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {}
            }
        }
        match str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // Incomplete at the end: keep the (at most 3) trailing bytes.
                let tail = piece.get(e.valid_up_to()..).unwrap_or_default();
                let slot = self.carry.get_mut(..tail.len()).ok_or(InvalidUtf8)?;
                slot.copy_from_slice(tail);
                self.carry_len = tail.len();
                Ok(())
            }
        }
    }

    /// Ends the text: an unfinished trailing sequence is invalid. Resets the
    /// validator for the next message either way.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.carry_len == 0;
        *self = Self::default();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_split(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn valid_text_passes_at_every_split() {
        let text = "aé€😀z κόσμε".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(validate_split(text, &[i, j]), Ok(()), "{i} {j}");
            }
        }
    }

    #[test]
    fn invalid_text_fails_at_every_split() {
        let cases: &[&[u8]] = &[
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"ab\xff",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
        ];
        for bytes in cases {
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    assert_eq!(
                        validate_split(bytes, &[i, j]),
                        Err(InvalidUtf8),
                        "{bytes:?} {i} {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_byte_fails_before_the_end() {
        // Autobahn 6.4.1: the first fragment holds a code point above U+10FFFF.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(b"\xf4\x90\x80\x80"), Err(InvalidUtf8));
        // A valid prefix split across pieces fails on the byte that breaks it.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_sequence_fails_only_at_finish() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ok\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish resets: the next message starts clean.
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
