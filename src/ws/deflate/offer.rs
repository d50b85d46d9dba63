//! `Sec-WebSocket-Extensions` offers and the permessage-deflate answer
//! (RFC 6455 9.1, RFC 7692 5 and 7).
//!
//! # Grammar (RFC 6455 9.1, with RFC 9110 5.6's list and quoting rules)
//!
//! ```text
//! extension-list  = 1#extension          ; empty elements allowed
//! extension       = extension-token *( OWS ";" OWS extension-param )
//! extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
//! ```
//!
//! A header that breaks this grammar is a handshake that does not match
//! RFC 6455 4.2.1, which the server answers 400: [`Malformed`]. Everything
//! else that we cannot honour is declined (RFC 7692 5: "A server MUST
//! decline an extension negotiation offer for this extension if ...") and
//! the connection goes on uncompressed.
//!
//! # What we accept
//!
//! The first `permessage-deflate` offer whose parameters are all known, not
//! repeated and with valid values (7.1). Whatever the offer says, the answer
//! carries `server_no_context_takeover` and `client_no_context_takeover`
//! (7.1.1.1 and 7.1.1.2 allow a server to add both), so no connection keeps a
//! window between messages. An offered `server_max_window_bits` is honoured
//! (7.1.2.1: answered with the same value); `client_max_window_bits` needs
//! nothing from us, since we inflate with the largest window.

use std::borrow::Cow;
use std::fmt;

use super::WindowBits;

/// The extension header breaks the RFC 6455 9.1 grammar: answer 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed Sec-WebSocket-Extensions")
    }
}

impl std::error::Error for Malformed {}

/// One offered extension with its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer<'a> {
    pub name: &'a str,
    /// `None` for a parameter without a value; a quoted value is unescaped.
    pub params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// An accepted permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The offer's `server_max_window_bits` (8-15), echoed in the answer.
    pub server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The window our compressor uses for this connection: the offered limit,
    /// with 8 compressed as 9. zlib cannot make an 8-bit raw window and
    /// widens it to 9, but its matches never reach back further than the
    /// window minus 262 bytes (`MAX_DIST`), so a 9-bit stream never refers
    /// past 250 bytes and an 8-bit inflater reads it.
    pub fn window(&self) -> WindowBits {
        WindowBits::new(self.server_max_window_bits.unwrap_or(15))
    }

    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub fn response(&self) -> String {
        let mut out = String::from(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if let Some(bits) = self.server_max_window_bits {
            out.push_str("; server_max_window_bits=");
            out.push_str(&bits.to_string());
        }
        out
    }
}

/// Reads the offers of a `Sec-WebSocket-Extensions` value (several header
/// fields already joined with `,`).
pub fn parse(header: &str) -> Result<Vec<Offer<'_>>, Malformed> {
    let mut p = Parser { s: header, pos: 0 };
    let mut offers = Vec::new();
    loop {
        p.ows();
        match p.peek() {
            None => break,
            // RFC 9110 5.6.1: a recipient accepts empty list elements.
            Some(b',') => {
                p.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.ows();
            match p.peek() {
                None | Some(b',') => break,
                Some(b';') => p.pos += 1,
                Some(_) => return Err(Malformed),
            }
            p.ows();
            let key = p.token()?;
            p.ows();
            let value = if p.peek() == Some(b'=') {
                p.pos += 1;
                p.ows();
                Some(if p.peek() == Some(b'"') {
                    p.quoted()?
                } else {
                    Cow::Borrowed(p.token()?)
                })
            } else {
                None
            };
            params.push((key, value));
        }
        offers.push(Offer { name, params });
    }
    if offers.is_empty() {
        // `1#extension`: at least one.
        return Err(Malformed);
    }
    Ok(offers)
}

/// The first permessage-deflate offer of `header` we can honour, `None` when
/// there is none (the connection goes on uncompressed).
pub fn negotiate(header: &str) -> Result<Option<Agreed>, Malformed> {
    Ok(parse(header)?.iter().find_map(accept))
}

/// RFC 7692 5 and 7.1: an offer with an unknown or repeated parameter or an
/// invalid value is declined.
pub fn accept(offer: &Offer<'_>) -> Option<Agreed> {
    if !offer.name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreed = Agreed {
        server_max_window_bits: None,
    };
    for (key, value) in &offer.params {
        let (slot, ok) = match *key {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            "server_max_window_bits" => {
                // 7.1.2.1: a value is required.
                let bits = value.as_deref().and_then(window_bits);
                agreed.server_max_window_bits = bits;
                (2, bits.is_some())
            }
            // 7.1.2.2: the value may be absent; we inflate with the largest
            // window either way, so it only has to be valid.
            "client_max_window_bits" => {
                (3, value.as_deref().is_none_or(|v| window_bits(v).is_some()))
            }
            _ => return None,
        };
        if !ok || std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreed)
}

/// 7.1.2: "a decimal integer value without leading zeros between 8 and 15,
/// inclusive".
fn window_bits(v: &str) -> Option<u8> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// RFC 9110 5.6.2: `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// Optional whitespace: spaces and tabs.
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, Malformed> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.s.get(start..self.pos) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(Malformed),
        }
    }

    /// A quoted-string, unescaped. RFC 6455 9.1 adds that the unescaped
    /// value must itself be a token.
    fn quoted(&mut self) -> Result<Cow<'a, str>, Malformed> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let mut escaped = false;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(Malformed),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    let c = self.peek().ok_or(Malformed)?;
                    value.push(char::from(c));
                }
                Some(c) => value.push(char::from(c)),
            }
            self.pos += 1;
        }
        let raw = self.s.get(start..self.pos).ok_or(Malformed)?;
        self.pos += 1; // the closing quote
        if value.is_empty() || !value.bytes().all(is_tchar) {
            return Err(Malformed);
        }
        Ok(if escaped {
            Cow::Owned(value)
        } else {
            Cow::Borrowed(raw)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agreed(bits: Option<u8>) -> Option<Agreed> {
        Some(Agreed {
            server_max_window_bits: bits,
        })
    }

    #[test]
    fn several_offers_params_with_and_without_values_and_quotes() {
        let offers = parse(
            "foo, permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\" ,\
             x-webkit-deflate-frame;a=b",
        )
        .unwrap();
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0].name, "foo");
        assert!(offers[0].params.is_empty());
        assert_eq!(
            offers[1].params,
            [
                ("client_max_window_bits", None),
                ("server_max_window_bits", Some(Cow::Borrowed("10")))
            ]
        );
        assert_eq!(offers[2].params, [("a", Some(Cow::Borrowed("b")))]);
        assert_eq!(
            parse("a;b=\"c\\d\"").unwrap()[0].params[0].1.as_deref(),
            Some("cd")
        );
    }

    #[test]
    fn browser_offer_is_accepted_with_both_no_context_takeovers() {
        let a = negotiate("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(a, agreed(None));
        assert_eq!(
            a.unwrap().response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(a.unwrap().window().get(), 15);
    }

    #[test]
    fn server_max_window_bits_is_echoed_and_8_compresses_as_9() {
        for bits in 8..=15u8 {
            let a = negotiate(&format!(
                "permessage-deflate; server_max_window_bits={bits}"
            ))
            .unwrap()
            .unwrap();
            assert_eq!(a.server_max_window_bits, Some(bits));
            assert!(a
                .response()
                .ends_with(&format!("; server_max_window_bits={bits}")));
            assert_eq!(a.window().get(), bits.max(9));
        }
    }

    #[test]
    fn first_acceptable_offer_wins_and_bad_ones_are_declined() {
        let h = "permessage-deflate; server_max_window_bits=16, \
                 permessage-deflate; mystery, \
                 permessage-deflate; server_no_context_takeover; server_no_context_takeover, \
                 permessage-deflate; server_max_window_bits=12, \
                 permessage-deflate";
        assert_eq!(negotiate(h).unwrap(), agreed(Some(12)));
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(negotiate(declined), Ok(None), "{declined}");
        }
        assert_eq!(
            negotiate("permessage-deflate; client_max_window_bits=\"9\"").unwrap(),
            agreed(None)
        );
    }

    #[test]
    fn grammar_violations_are_malformed() {
        for bad in [
            "",
            " , ",
            ";",
            "permessage-deflate;",
            "permessage-deflate; =1",
            "permessage-deflate; a=",
            "permessage-deflate; a=\"1",
            "permessage-deflate; a=\"\"",
            "permessage-deflate; a=\"1 2\"",
            "permessage deflate",
            "permessage-deflate; a=b c",
            "permessage-deflate; a=(b)",
            "per@message",
        ] {
            assert_eq!(parse(bad), Err(Malformed), "{bad:?}");
        }
        assert!(parse("a,,b, ").is_ok(), "empty list elements are allowed");
        assert!(
            parse("a ; b = 1 ;c=\"2\"").is_ok(),
            "whitespace around separators"
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    fn param() -> impl Strategy<Value = (String, Option<(String, bool)>)> {
        (token(), proptest::option::of((token(), any::<bool>())))
    }

    proptest! {
        /// Whatever well-formed header is written, parsing gives back its
        /// offers, names and unquoted values.
        #[test]
        fn well_formed_headers_round_trip(
            offers in proptest::collection::vec((token(), proptest::collection::vec(param(), 0..4)), 1..4),
            sep in "[ \t]{0,2}",
        ) {
            let mut h = String::new();
            for (i, (name, params)) in offers.iter().enumerate() {
                if i > 0 {
                    h.push_str(&format!("{sep},{sep}"));
                }
                h.push_str(name);
                for (k, v) in params {
                    h.push_str(&format!("{sep};{sep}{k}"));
                    if let Some((v, quoted)) = v {
                        if *quoted {
                            h.push_str(&format!("=\"{v}\""));
                        } else {
                            h.push_str(&format!("={v}"));
                        }
                    }
                }
            }
            let parsed = parse(&h).unwrap();
            prop_assert_eq!(parsed.len(), offers.len());
            for (got, (name, params)) in parsed.iter().zip(&offers) {
                prop_assert_eq!(got.name, name.as_str());
                prop_assert_eq!(got.params.len(), params.len());
                for ((k, v), (ek, ev)) in got.params.iter().zip(params) {
                    prop_assert_eq!(*k, ek.as_str());
                    prop_assert_eq!(v.as_deref(), ev.as_ref().map(|(v, _)| v.as_str()));
                }
            }
        }

        /// Any input: parsing and negotiating never panic, an accepted offer
        /// is permessage-deflate, and its answer parses and is accepted again.
        #[test]
        fn arbitrary_input_never_panics(h in "[ -~]{0,60}") {
            if let Ok(Some(a)) = negotiate(&h) {
                prop_assert_eq!(negotiate(&a.response()), Ok(Some(a)));
                prop_assert!(h.to_ascii_lowercase().contains("permessage-deflate"));
            }
        }

        /// Every server_max_window_bits spelling: accepted exactly for 8-15
        /// written without leading zeros.
        #[test]
        fn window_bits_values(v in "[0-9]{1,3}") {
            let got = negotiate(&format!("permessage-deflate; server_max_window_bits={v}")).unwrap();
            let n: u32 = v.parse().unwrap();
            let valid = (8..=15).contains(&n) && !v.starts_with('0');
            prop_assert_eq!(got.is_some(), valid);
        }
    }
}
