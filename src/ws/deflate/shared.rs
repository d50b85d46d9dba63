//! A broadcast frame with its compressed twins, built once and shared.
//!
//! The owner encodes a channel event once into a plain frame and, when
//! compression is on and the message is long enough, wraps it with room for
//! one compressed twin per window size. The first recipient that uses a
//! window size (on whichever worker) compresses the message with its
//! worker's [`Deflater`]; every other recipient of that size, on every
//! worker, queues the same `Bytes`. Per recipient that is a lookup and a
//! reference-count increment: no allocation and no compression.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{Deflater, WindowBits, WINDOW_SIZES};
use crate::ws::frame::{parse_header, Role};

/// A whole unmasked server frame, plus its compressed twins when the
/// message may be sent compressed. Cloning is two reference counts.
#[derive(Debug, Clone)]
pub struct Broadcast {
    plain: Bytes,
    twins: Option<Arc<Twins>>,
}

/// `None` inside a twin: compressing did not make the frame shorter, so the
/// plain one is sent.
#[derive(Debug, Default)]
struct Twins {
    by_window: [OnceLock<Option<Bytes>>; WINDOW_SIZES],
}

impl From<Bytes> for Broadcast {
    /// A frame only ever sent plain.
    fn from(plain: Bytes) -> Self {
        Broadcast { plain, twins: None }
    }
}

impl Broadcast {
    /// Wraps `plain`. With `compress_from` (compression is on, messages from
    /// that many payload bytes are compressed) and a payload that long, the
    /// twins are made room for (one allocation, per broadcast).
    pub fn new(plain: Bytes, compress_from: Option<usize>) -> Self {
        let long_enough = compress_from.is_some_and(|min| {
            parse_header(&plain, Role::Client)
                .ok()
                .flatten()
                .is_some_and(|h| h.payload_len >= min as u64)
        });
        Broadcast {
            twins: long_enough.then(Arc::default),
            plain,
        }
    }

    /// The frame for recipients without the extension.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The frame for a recipient that negotiated `window` (`None`: no
    /// extension). The twin for that window is compressed by the first
    /// caller, here or on another worker, and shared after.
    pub fn frame_for(&self, window: Option<WindowBits>, deflater: &mut Deflater) -> &Bytes {
        let (Some(window), Some(twins)) = (window, &self.twins) else {
            return &self.plain;
        };
        twins.by_window[window.index()]
            .get_or_init(|| deflater.reframe(&self.plain, window))
            .as_ref()
            .unwrap_or(&self.plain)
    }
}
