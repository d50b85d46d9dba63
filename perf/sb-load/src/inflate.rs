//! `--compression`: permessage-deflate (RFC 7692) on the receiving side.
//!
//! The offer asks for `client_no_context_takeover` and the server always
//! answers with `server_no_context_takeover`, so every message inflates on
//! its own: one raw inflater per worker, reset before each message, and
//! one output buffer whose capacity is kept. No state per connection.
//!
//! # Inflating a broadcast once per worker
//!
//! A message inflates the same wherever it arrives (no context is kept),
//! and a broadcast arrives at every member a worker drives as the same
//! compressed bytes (the server compresses once). So the worker keeps the
//! last [`MEMO`] messages it inflated, keyed by their exact compressed
//! bytes, and a repeat is a byte comparison instead of an inflate. Without
//! it sb-load spent 86 % of its CPU in zlib-rs' inflate (Huffman tables
//! and copies, once per delivery) and could not offer 100 000 compressed
//! 1 KiB deliveries/s on 2 shared cores where it offered plain ones
//! (docs/compression.md): a load generator that cannot hold the rate turns
//! a per-delivery comparison into one at different rates.

use flate2::{Decompress, FlushDecompress, Status};

/// The four bytes a sender strips from the end of each message (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid deflate stream.
    Corrupt,
    /// It inflates to more than the limit.
    TooLarge { max: usize },
}

/// Messages remembered per worker: more than the broadcasts in flight to
/// one worker at once in the perf scenarios (20 channels publishing).
pub const MEMO: usize = 64;

/// A worker's inflater, its output buffer and the messages it inflated
/// last (see the module docs).
pub struct Inflater {
    z: Decompress,
    out: Vec<u8>,
    /// (compressed, inflated) of recent messages; replaced round-robin.
    memo: Vec<(Vec<u8>, Vec<u8>)>,
    next: usize,
    /// Messages answered from `memo`.
    #[cfg(test)]
    hits: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("capacity", &self.out.capacity())
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            z: Decompress::new(false),
            out: Vec::new(),
            memo: Vec::new(),
            next: 0,
            #[cfg(test)]
            hits: 0,
        }
    }
}

impl Inflater {
    /// Inflates one whole message's payload (RSV1 set on its frame) into at
    /// most `max` bytes, returned until the next call.
    pub fn inflate(&mut self, body: &[u8], max: usize) -> Result<&[u8], InflateError> {
        if let Some(i) = self.memo.iter().position(|(z, _)| z.as_slice() == body) {
            if self.memo[i].1.len() > max {
                return Err(InflateError::TooLarge { max });
            }
            #[cfg(test)]
            {
                self.hits += 1;
            }
            return Ok(&self.memo[i].1);
        }
        self.inflate_fresh(body, max)?;
        let entry = (body.to_vec(), self.out.clone());
        if self.memo.len() < MEMO {
            self.memo.push(entry);
        } else {
            self.memo[self.next] = entry;
            self.next = (self.next + 1) % MEMO;
        }
        Ok(&self.out)
    }

    /// Messages answered without inflating so far.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits
    }

    fn inflate_fresh(&mut self, body: &[u8], max: usize) -> Result<(), InflateError> {
        self.z.reset(false);
        self.out.clear();
        let mut input = body;
        let mut tail_fed = false;
        loop {
            if self.out.len() == self.out.capacity() {
                // One byte past the limit tells "exactly max" from "more".
                if self.out.len() > max {
                    return Err(InflateError::TooLarge { max });
                }
                let room = max + 1 - self.out.len();
                self.out.reserve(self.out.capacity().max(1024).min(room));
            }
            let (in0, out0) = (self.z.total_in(), self.out.len());
            let status = self
                .z
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            input = &input[(self.z.total_in() - in0) as usize..];
            if status == Status::StreamEnd {
                break; // a final block (BFINAL) may end a message: legal
            }
            let full = self.out.len() == self.out.capacity();
            if input.is_empty() && !full {
                if tail_fed {
                    break;
                }
                input = &TAIL;
                tail_fed = true;
            } else if !full && self.z.total_in() == in0 && self.out.len() == out0 {
                return Err(InflateError::Corrupt);
            }
        }
        if self.out.len() > max {
            return Err(InflateError::TooLarge { max });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// What the server sends: raw deflate, sync flush, the tail removed.
    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(2), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn messages_inflate_one_by_one_with_no_context() {
        let mut inf = Inflater::default();
        for n in [0usize, 1, 100, 5000, 60_000] {
            let msg: Vec<u8> = (0..n).map(|i| b"{\"x\":1,\"y\":2}"[i % 13]).collect();
            let z = deflate(&msg);
            assert_eq!(inf.inflate(&z, 1 << 16).unwrap(), &msg[..], "len {n}");
        }
    }

    #[test]
    fn limits_and_garbage() {
        let mut inf = Inflater::default();
        let z = deflate(&vec![b'a'; 10_000]);
        assert_eq!(
            inf.inflate(&z, 5000),
            Err(InflateError::TooLarge { max: 5000 })
        );
        assert_eq!(
            inf.inflate(&[0xff, 0xff, 0xff], 100),
            Err(InflateError::Corrupt)
        );
        // Still usable afterwards.
        assert_eq!(inf.inflate(&deflate(b"ok"), 100).unwrap(), b"ok");
    }

    #[test]
    fn a_repeated_message_is_remembered_and_the_limit_still_holds() {
        let mut inf = Inflater::default();
        let msgs: Vec<Vec<u8>> = (0..MEMO + 10)
            .map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(i)).into_bytes())
            .collect();
        let zs: Vec<Vec<u8>> = msgs.iter().map(|m| deflate(m)).collect();
        for (m, z) in msgs.iter().zip(&zs) {
            assert_eq!(inf.inflate(z, 1 << 16).unwrap(), &m[..]);
            assert_eq!(inf.inflate(z, 1 << 16).unwrap(), &m[..]);
        }
        assert_eq!(inf.hits(), (MEMO + 10) as u64);
        // The last MEMO are remembered, the first were replaced: both
        // still inflate right.
        for (m, z) in msgs.iter().zip(&zs) {
            assert_eq!(inf.inflate(z, 1 << 16).unwrap(), &m[..]);
        }
        let last = zs.last().unwrap();
        let len = msgs.last().unwrap().len();
        assert_eq!(
            inf.inflate(last, len - 1),
            Err(InflateError::TooLarge { max: len - 1 })
        );
    }
}
