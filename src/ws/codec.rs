//! The decoder: frames in, messages out, with fragment reassembly
//! (RFC 6455 5.4), the message size limit and UTF-8 validation (8.1).
//!
//! # Buffering
//!
//! The decoder never reads a socket and holds no input of its own: the
//! caller keeps its read buffer and calls [`Decoder::decode`] on the unread
//! part, which returns how many bytes the frame took. An unfragmented Text
//! or Binary message, by far the common case, is returned borrowing that
//! buffer (unmasked in place), without a copy. Only the fragments of a
//! fragmented message are copied, into a buffer inside the decoder that
//! never grows past the limit.
//!
//! # Limits before allocation
//!
//! The limit applies to the reassembled message and is checked against the
//! frame header, before any payload is awaited or any memory reserved: a
//! header announcing 2^63-1 bytes fails as soon as it is readable.
//!
//! # Compressed messages (RFC 7692)
//!
//! With [`Decoder::set_deflate`] (the connection negotiated
//! permessage-deflate), a message whose first frame has RSV1 set is returned
//! still compressed, as [`Message::Deflated`], and the caller inflates it with
//! its worker's [`Inflater`](super::deflate::Inflater), which checks the
//! inflated size against the limit while inflating. The decoder keeps no
//! compression state: only the compressed fragments of a fragmented message,
//! as for any fragmented message. Its size limit on compressed bytes is the
//! message limit plus what deflate may add to incompressible data, since the
//! real limit applies to the inflated size. RSV1 without the extension, on a
//! control frame or on a continuation frame is a protocol error (RFC 7692 6:
//! the bit is set on the first frame of a message only).

use super::close::{parse_close_payload, CloseFrame};
use super::frame::{parse_header, FrameHeader, OpCode, Role};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::ProtocolError;

/// After a reassembled message, a buffer with more capacity than this is
/// freed rather than kept, so idle connections hold (almost) nothing.
const KEEP_CAPACITY: usize = 4 * 1024;

/// A complete message, or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text message, already validated as UTF-8.
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// `None` for a close frame with an empty payload.
    Close(Option<CloseFrame<'a>>),
    /// A complete message sent compressed (RSV1 on its first frame), not
    /// inflated yet and, for text, not validated yet: see the module docs.
    Deflated {
        text: bool,
        payload: &'a [u8],
    },
}

/// The kind of a fragmented message in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partial {
    Text,
    Binary,
}

/// Decodes frames of one connection. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    /// The fragmented message in progress, if any.
    partial: Option<Partial>,
    /// The connection negotiated permessage-deflate: RSV1 may start a message.
    deflate: bool,
    /// The fragmented message in progress is compressed.
    compressed: bool,
    /// Its fragments so far. After a reassembled message has been returned
    /// it still holds that message, until the next `decode` call releases it
    /// (the message borrows it).
    buf: Vec<u8>,
    utf8: Utf8Validator,
}

impl Decoder {
    /// A decoder for `role`, accepting messages of at most `max_message`
    /// bytes after reassembly.
    pub fn new(role: Role, max_message: usize) -> Self {
        Decoder {
            role,
            max_message,
            partial: None,
            deflate: false,
            compressed: false,
            buf: Vec::new(),
            utf8: Utf8Validator::default(),
        }
    }

    /// Accepts compressed messages from now on (permessage-deflate was
    /// negotiated in the handshake).
    pub fn set_deflate(&mut self, on: bool) {
        self.deflate = on;
    }

    /// The limit on a message's size, inflated size for a compressed one.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Decodes at most one frame from the front of `input`, unmasking it in
    /// place.
    ///
    /// - `Ok((0, None))`: `input` does not hold a whole frame yet; nothing
    ///   was consumed or modified. Call again with more bytes appended.
    /// - `Ok((n, None))`: consumed a non-final data fragment (kept inside
    ///   the decoder).
    /// - `Ok((n, Some(m)))`: consumed `n` bytes that completed message `m`.
    ///
    /// Control frames are returned as they come, also between the fragments
    /// of a message (RFC 6455 5.4). An error is final: fail the connection
    /// with [`ProtocolError::close_code`].
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Message<'a>>), ProtocolError> {
        if self.partial.is_none() {
            self.release();
        }
        let Some((header, frame_len)) = self.check_header(input)? else {
            return Ok((0, None));
        };
        let Some(frame) = input.get_mut(..frame_len) else {
            return Ok((0, None));
        };
        let payload = frame.get_mut(header.header_len..).unwrap_or_default();
        if let Some(key) = header.mask {
            apply_mask(payload, key);
        }
        let payload: &'a [u8] = payload;
        let message = match header.opcode {
            OpCode::Ping => Some(Message::Ping(payload)),
            OpCode::Pong => Some(Message::Pong(payload)),
            OpCode::Close => Some(Message::Close(parse_close_payload(payload)?)),
            OpCode::Text | OpCode::Binary if header.fin && header.rsv1 => Some(Message::Deflated {
                text: header.opcode == OpCode::Text,
                payload,
            }),
            OpCode::Text if header.fin => {
                std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                Some(Message::Text(payload))
            }
            OpCode::Binary if header.fin => Some(Message::Binary(payload)),
            OpCode::Text => {
                self.start(Partial::Text, header.rsv1, payload)?;
                None
            }
            OpCode::Binary => {
                self.start(Partial::Binary, header.rsv1, payload)?;
                None
            }
            OpCode::Continuation => self.continue_with(payload, header.fin)?,
        };
        Ok((frame_len, message))
    }

    /// Bytes held for a message being reassembled: 0 when idle. Right after
    /// a reassembled message is returned this still counts it, until the next
    /// `decode` call, which releases it.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many bytes of input the frame at the front of `input` needs in
    /// total, once its header is readable. `None` before that, and also when
    /// the header breaks a rule (`decode` then says which), so the hint is
    /// never larger than the limit allows and is safe to reserve.
    pub fn frame_len_hint(&self, input: &[u8]) -> Option<usize> {
        match self.check_header(input) {
            Ok(Some((_, frame_len))) => Some(frame_len),
            _ => None,
        }
    }

    /// Parses the header and applies the rules that depend on the decoder's
    /// state; returns it with the length of the whole frame.
    fn check_header(&self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let Some(header) = parse_header(input, self.role)? else {
            return Ok(None);
        };
        match (header.opcode, self.partial) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        // RFC 7692 6: RSV1 means "compressed" on the first frame of a data
        // message of a connection that negotiated the extension, and
        // nothing anywhere else.
        if header.rsv1
            && (!self.deflate
                || header.opcode.is_control()
                || header.opcode == OpCode::Continuation)
        {
            return Err(ProtocolError::ReservedBits);
        }
        if !header.opcode.is_control() {
            let size = (self.buf.len() as u64).saturating_add(header.payload_len);
            let compressed = header.rsv1 || (self.compressed && self.partial.is_some());
            let max = if compressed {
                compressed_limit(self.max_message)
            } else {
                self.max_message
            };
            if size > max as u64 {
                return Err(ProtocolError::MessageTooBig {
                    size,
                    max: self.max_message,
                });
            }
        }
        // Control payloads are at most 125 and data ones at most
        // `max_message`, so this only overflows for a limit near usize::MAX.
        let frame_len = usize::try_from(header.payload_len)
            .ok()
            .and_then(|len| len.checked_add(header.header_len))
            .ok_or(ProtocolError::MessageTooBig {
                size: header.payload_len,
                max: self.max_message,
            })?;
        Ok(Some((header, frame_len)))
    }

    /// Begins a fragmented message with its first fragment.
    fn start(
        &mut self,
        kind: Partial,
        compressed: bool,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        self.partial = Some(kind);
        self.compressed = compressed;
        self.utf8 = Utf8Validator::default();
        self.append(payload)
    }

    /// Adds a continuation fragment; returns the message when it is final.
    fn continue_with(
        &mut self,
        payload: &[u8],
        fin: bool,
    ) -> Result<Option<Message<'_>>, ProtocolError> {
        self.append(payload)?;
        if !fin {
            return Ok(None);
        }
        let kind = self.partial.take();
        if self.compressed {
            return Ok(Some(Message::Deflated {
                text: kind == Some(Partial::Text),
                payload: &self.buf,
            }));
        }
        if kind == Some(Partial::Text) {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            return Ok(Some(Message::Text(&self.buf)));
        }
        Ok(Some(Message::Binary(&self.buf)))
    }

    /// Validates (for text) and stores one fragment. The size was checked
    /// against the header already.
    fn append(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        if self.partial == Some(Partial::Text) && !self.compressed {
            self.utf8
                .feed(payload)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let needed = self.buf.len() + payload.len();
        if needed > self.buf.capacity() {
            // Grow geometrically so many small fragments stay linear, but
            // never reserve past the limit.
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .min(if self.compressed {
                    compressed_limit(self.max_message)
                } else {
                    self.max_message
                })
                .max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(payload);
        Ok(())
    }

    /// Drops the last reassembled message, and its memory if it was large.
    fn release(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

/// The most compressed bytes a message of at most `max` inflated bytes may
/// take: deflate's stored blocks add 5 bytes per 64 KiB to incompressible
/// data, and the final block and flush a few more.
fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 1024).saturating_add(64)
}

#[cfg(test)]
mod tests;
