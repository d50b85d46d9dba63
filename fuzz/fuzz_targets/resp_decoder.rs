//! Arbitrary bytes from "Redis": decoding never panics, never loops without
//! consuming, and gives the same frames whether the bytes come at once or in
//! pieces (the first byte of the input picks the piece size).
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::resp::Decoder;

/// Small, so the limit paths are reached too.
const MAX_FRAME: usize = 4096;

fn run(data: &[u8], piece: usize) -> (String, bool) {
    let mut decoder = Decoder::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame consumed nothing");
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete input was consumed");
                    assert!(buf.len() <= MAX_FRAME, "buffered past the frame limit");
                    break;
                }
                Err(_) => return (format!("{frames:?}"), true),
            }
        }
    }
    // Debug text: NaN doubles compare equal there.
    (format!("{frames:?}"), false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let whole = run(data, data.len());
    let pieces = run(data, usize::from(piece % 17));
    assert_eq!(whole, pieces);
});
