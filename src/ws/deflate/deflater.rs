//! Compressing one message into one frame (RFC 7692 7.2.1), with one
//! compressor per window size, owned by the worker and reset per message.
//!
//! Every connection negotiated `server_no_context_takeover`, so each message
//! starts from an empty window: the compressor is reset, fed the whole
//! payload with a sync flush, and the flush's trailing `00 00 ff ff` removed
//! (7.2.1). The result depends on the payload and the window size only, which
//! is what lets a broadcast be compressed once for every recipient.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use super::{WindowBits, WINDOW_SIZES};
use crate::ws::frame::{parse_header, write_header, OpCode, Role, MAX_HEADER_LEN};

/// RFC 7692 7.2.1: the end of a sync flush, removed from every message.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The zlib level. Level 1 is zlib's quick strategy with static Huffman
/// codes only: on our 882-byte JSON event it gives 417 bytes (0.47), level
/// 2 (fast strategy, dynamic codes) 319 bytes (0.36, the same as level 6)
/// for about twice level 1's time and less than level 6's, paid once per
/// broadcast (docs/compression.md).
const LEVEL: u32 = 2;

/// A scratch buffer bigger than this after a message is dropped, so a rare
/// large message does not pin memory in every worker.
const KEEP_SCRATCH: usize = 256 * 1024;

/// The worker's compressors, one per window size in use, made on first use.
#[derive(Default)]
pub struct Deflater {
    by_window: [Option<Compress>; WINDOW_SIZES],
    /// The compressed bytes of the message in progress, then copied into a
    /// frame of exactly their size.
    scratch: Vec<u8>,
    compressions: u64,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("compressions", &self.compressions)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// Messages compressed so far: the fan-out tests count them.
    pub fn compressions(&self) -> u64 {
        self.compressions
    }

    /// The raw deflate of `payload` under `window` (sync flush, tail
    /// removed), or `None` when it is not shorter than `payload` (then the
    /// message is better sent plain, which 6 allows per message).
    pub fn compress(&mut self, payload: &[u8], window: WindowBits) -> Option<&[u8]> {
        self.compressions += 1;
        let c = self.by_window[window.index()].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, window.get())
        });
        c.reset();
        if self.scratch.capacity() > KEEP_SCRATCH {
            self.scratch = Vec::new();
        }
        self.scratch.clear();
        self.scratch.reserve(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if self.scratch.len() == self.scratch.capacity() {
                self.scratch.reserve(self.scratch.capacity().max(64));
            }
            let before = c.total_in();
            // Only a stream error can fail, and a fresh stream with room to
            // write has none.
            c.compress_vec(input, &mut self.scratch, FlushCompress::Sync)
                .ok()?;
            let used = usize::try_from(c.total_in() - before).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            // zlib's contract: the flush is complete once all input is taken
            // and the output was not filled.
            if input.is_empty() && self.scratch.len() < self.scratch.capacity() {
                break;
            }
        }
        let body = self.scratch.strip_suffix(&TAIL).unwrap_or(&self.scratch);
        (body.len() < payload.len()).then_some(body)
    }

    /// One unmasked FIN frame of opcode `op` carrying `payload` compressed
    /// (RSV1 set), in an allocation of exactly its size; `None` when
    /// compressing does not make it shorter.
    pub fn frame(&mut self, op: OpCode, payload: &[u8], window: WindowBits) -> Option<Bytes> {
        let body = self.compress(payload, window)?;
        let mut header = [0; MAX_HEADER_LEN];
        let n = write_header(&mut header, true, op, None, body.len());
        // RFC 7692 6: RSV1 on the first frame marks the message compressed.
        header[0] |= 0x40;
        let mut frame = Vec::with_capacity(n + body.len());
        frame.extend_from_slice(header.get(..n).unwrap_or_default());
        frame.extend_from_slice(body);
        Some(Bytes::from(frame))
    }

    /// The compressed twin of a whole unmasked server frame (as the owner
    /// encodes broadcasts), or `None` when it would not be shorter.
    pub fn reframe(&mut self, plain: &Bytes, window: WindowBits) -> Option<Bytes> {
        let h = parse_header(plain, Role::Client).ok()??;
        let payload = plain.get(h.header_len..)?;
        self.frame(h.opcode, payload, window)
    }
}
