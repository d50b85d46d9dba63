//! Property tests across the codec: client-encoded streams round-trip
//! through a server decoder however they are fragmented and however the
//! bytes arrive, and no input makes the decoder panic.

use proptest::prelude::*;
use proptest::sample::Index;

use super::{encode_client_frame, CloseFrame, Decoder, Message, OpCode, ProtocolError, Role};

/// An owned copy of a decoded message, to compare runs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl From<Message<'_>> for Owned {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(t) => Owned::Text(t.to_vec()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(p) => Owned::Ping(p.to_vec()),
            Message::Pong(p) => Owned::Pong(p.to_vec()),
            Message::Close(c) => {
                Owned::Close(c.map(|CloseFrame { code, reason }| (code, reason.to_owned())))
            }
            Message::Deflated { .. } => unreachable!("these decoders never negotiate deflate"),
        }
    }
}

/// One data message, the points its payload is split at, and the control
/// frames sent after each fragment.
#[derive(Clone, Debug)]
struct Planned {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<Index>,
    controls: Vec<Option<(bool, Vec<u8>)>>,
    mask: [u8; 4],
}

fn planned() -> impl Strategy<Value = Planned> {
    (
        prop_oneof![
            any::<String>().prop_map(|s| (true, s.into_bytes())),
            prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| (false, b)),
        ],
        prop::collection::vec(any::<Index>(), 0..5),
        prop::collection::vec(
            prop::option::of((any::<bool>(), prop::collection::vec(any::<u8>(), 0..=125))),
            0..6,
        ),
        any::<[u8; 4]>(),
    )
        .prop_map(|((text, payload), cuts, controls, mask)| Planned {
            text,
            payload,
            cuts,
            controls,
            mask,
        })
}

/// Encodes the plan as client frames and returns the messages a server
/// must decode from them, in order.
fn encode(plan: &[Planned], close: Option<(u16, String)>) -> (Vec<u8>, Vec<Owned>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for p in plan {
        let mut cuts: Vec<usize> = p
            .cuts
            .iter()
            .map(|i| i.index(p.payload.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.push(p.payload.len());
        let mut start = 0;
        for (n, &cut) in cuts.iter().enumerate() {
            let op = match (n, p.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let last = n + 1 == cuts.len();
            encode_client_frame(op, last, &p.payload[start..cut], p.mask, &mut wire);
            start = cut;
            if last {
                break;
            }
            if let Some(Some((ping, body))) = p.controls.get(n) {
                let op = if *ping { OpCode::Ping } else { OpCode::Pong };
                encode_client_frame(op, true, body, p.mask, &mut wire);
                expected.push(if *ping {
                    Owned::Ping(body.clone())
                } else {
                    Owned::Pong(body.clone())
                });
            }
        }
        expected.push(if p.text {
            Owned::Text(p.payload.clone())
        } else {
            Owned::Binary(p.payload.clone())
        });
    }
    if let Some((code, reason)) = close {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        encode_client_frame(OpCode::Close, true, &payload, [1, 2, 3, 4], &mut wire);
        expected.push(Owned::Close(Some((code, reason))));
    }
    (wire, expected)
}

/// Feeds `wire` in the given chunks the way a connection does: unconsumed
/// bytes stay and the next chunk is appended.
fn feed_chunked(
    d: &mut Decoder,
    wire: &[u8],
    chunks: &[usize],
) -> Result<Vec<Owned>, ProtocolError> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let take = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        pending.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            let (n, m) = d.decode(&mut pending)?;
            if let Some(m) = m {
                out.push(Owned::from(m));
            }
            if n == 0 {
                break;
            }
            pending.drain(..n);
        }
    }
    assert!(pending.is_empty(), "{} bytes left over", pending.len());
    Ok(out)
}

/// Decodes until the decoder stops, checking the memory bound throughout.
fn drain(d: &mut Decoder, bytes: &mut [u8], max: usize) -> Result<(), ProtocolError> {
    let mut at = 0;
    loop {
        let _ = d.frame_len_hint(&bytes[at..]);
        let (n, _) = d.decode(&mut bytes[at..])?;
        assert!(d.buffered() <= max);
        if n == 0 {
            return Ok(());
        }
        at += n;
    }
}

proptest! {
    #[test]
    fn round_trips_however_fragmented_and_chunked(
        plan in prop::collection::vec(planned(), 0..5),
        close in prop::option::of((3000u16..5000, "[a-z ]{0,20}")),
        chunks in prop::collection::vec(1usize..40, 1..8),
    ) {
        let (wire, expected) = encode(&plan, close);
        let at_once = feed_chunked(&mut Decoder::new(Role::Server, 1 << 16), &wire, &[wire.len().max(1)]);
        prop_assert_eq!(at_once.as_ref(), Ok(&expected));
        let chunked = feed_chunked(&mut Decoder::new(Role::Server, 1 << 16), &wire, &chunks);
        prop_assert_eq!(chunked, at_once);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..2000),
        max in 0usize..300,
        client in any::<bool>(),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let _ = drain(&mut Decoder::new(role, max), &mut bytes, max);
    }

    #[test]
    fn mutated_streams_never_panic(
        plan in prop::collection::vec(planned(), 1..4),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        max in 0usize..700,
    ) {
        let (mut wire, _) = encode(&plan, None);
        for (at, x) in flips {
            let i = at.index(wire.len());
            wire[i] ^= x;
        }
        let _ = drain(&mut Decoder::new(Role::Server, max), &mut wire, max);
    }
}
