//! Inbound compressed frames: a decoder with permessage-deflate negotiated
//! and the worker's inflater, on arbitrary bytes (the first byte picks the
//! limit and a window). Never panics; no message comes out over the limit;
//! and the input itself, compressed by our deflater, inflates back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::ws::deflate::{Deflater, Inflater, WindowBits};
use switchboard::ws::{Decoder, Message, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(cfg) * 64;
    let mut decoder = Decoder::new(Role::Server, max);
    decoder.set_deflate(true);
    let mut inflater = Inflater::default();
    let mut wire = rest.to_vec();
    let mut at = 0;
    loop {
        match decoder.decode(&mut wire[at..]) {
            Ok((0, None)) | Err(_) => break,
            Ok((n, message)) => {
                at += n;
                let Some(message) = message else { continue };
                match inflater.message(message, max) {
                    Ok(Message::Text(t)) => {
                        assert!(t.len() <= max);
                        assert!(std::str::from_utf8(t).is_ok());
                    }
                    Ok(Message::Binary(b)) => assert!(b.len() <= max),
                    Ok(Message::Deflated { .. }) => panic!("left compressed"),
                    Ok(_) | Err(_) => {}
                }
            }
        }
    }

    let window = WindowBits::new(9 + cfg % 7);
    let mut deflater = Deflater::default();
    if let Some(body) = deflater.compress(rest, window) {
        let body = body.to_vec();
        assert_eq!(inflater.inflate(&body, rest.len()).expect("own output"), rest);
    }
});
