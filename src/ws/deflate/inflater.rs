//! Inflating one client message (RFC 7692 7.2.2) under the message limit,
//! with one inflater per worker, reset per message.
//!
//! Every connection negotiated `client_no_context_takeover`, so no message
//! refers to an earlier one and nothing is kept between messages: the codec
//! hands over the whole compressed message and this inflates it at once.
//!
//! # The limit while inflating
//!
//! The output never holds more than the limit: once it is full, one more
//! byte is asked for into a one-byte probe on the stack, and if the stream
//! has it the message is too big (1009). A zip bomb costs the limit in
//! memory and the time to inflate that much, never more.

use flate2::{Decompress, FlushDecompress, Status};

use super::deflater::TAIL;
use crate::ws::{Message, ProtocolError};

/// How much output room one inflate call gets.
const CHUNK: usize = 16 * 1024;

/// An output buffer bigger than this is dropped before the next message.
const KEEP_OUT: usize = 256 * 1024;

/// The worker's inflater and output buffer, both made on first use.
#[derive(Default)]
pub struct Inflater {
    inner: Option<Decompress>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("out_capacity", &self.out.capacity())
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Bytes reserved for output: what the last message left, at most the
    /// limit it was inflated under.
    pub fn out_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// `msg` itself, or for [`Message::Deflated`] the message it inflates
    /// to (at most `max` bytes, text validated as UTF-8), borrowing this
    /// inflater's buffer until the next call.
    pub fn message<'a>(
        &'a mut self,
        msg: Message<'a>,
        max: usize,
    ) -> Result<Message<'a>, ProtocolError> {
        let Message::Deflated { text, payload } = msg else {
            return Ok(msg);
        };
        let out = self.inflate(payload, max)?;
        if text {
            std::str::from_utf8(out).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Text(out))
        } else {
            Ok(Message::Binary(out))
        }
    }

    /// Inflates one whole message (its frames' payloads joined, tail
    /// removed as sent) into at most `max` bytes.
    ///
    /// Errors: [`ProtocolError::MessageTooBig`] when the message inflates
    /// past `max` (`size` is then `max + 1`, what was proven), and
    /// [`ProtocolError::BadDeflate`] when it is not a raw deflate stream.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<&[u8], ProtocolError> {
        let d = self.inner.get_or_insert_with(|| Decompress::new(false));
        d.reset(false);
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        self.out.clear();
        // 7.2.2: append 00 00 ff ff to the payload, then inflate.
        for part in [payload, &TAIL[..]] {
            if inflate_into(d, part, &mut self.out, max)? {
                break;
            }
        }
        Ok(&self.out)
    }
}

/// Feeds all of `input`; returns true at the end of the deflate stream (a
/// final block: whatever follows is ignored).
fn inflate_into(
    d: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool, ProtocolError> {
    loop {
        let len = out.len();
        let room = (max - len).min(CHUNK);
        let (status, used, made) = if room == 0 {
            // Full: is there one byte more?
            let mut probe = [0u8; 1];
            let (status, used, made) = step(d, input, &mut probe)?;
            if made > 0 {
                return Err(ProtocolError::MessageTooBig {
                    size: max as u64 + 1,
                    max,
                });
            }
            (status, used, made)
        } else {
            out.resize(len + room, 0);
            let r = step(d, input, out.get_mut(len..).unwrap_or_default());
            let made = r.as_ref().map_or(0, |&(_, _, made)| made);
            out.truncate(len + made);
            r?
        };
        input = input.get(used..).unwrap_or_default();
        if status == Status::StreamEnd {
            return Ok(true);
        }
        // Done with this input once it is all taken and the output was not
        // filled (else the inflater may hold more to give).
        let filled = room == 0 || made == room;
        if input.is_empty() && !filled {
            return Ok(false);
        }
        if used == 0 && made == 0 {
            // No progress with input and room: a stream that needs input we
            // will never give it is over (BufError).
            return Ok(false);
        }
    }
}

/// One inflate call: status, input used, output made.
fn step(
    d: &mut Decompress,
    input: &[u8],
    output: &mut [u8],
) -> Result<(Status, usize, usize), ProtocolError> {
    let (in0, out0) = (d.total_in(), d.total_out());
    let status = d
        .decompress(input, output, FlushDecompress::Sync)
        .map_err(|_| ProtocolError::BadDeflate)?;
    let used = usize::try_from(d.total_in() - in0).unwrap_or(input.len());
    let made = usize::try_from(d.total_out() - out0).unwrap_or(output.len());
    Ok((status, used, made))
}
