//! Finds where the first RESP3 frame of a buffer ends, before anything is
//! parsed into values.
//!
//! `redis-protocol` parses recursively and from the start of the buffer on
//! every call, so on its own it would (a) overflow the stack on a deeply
//! nested frame (`*1\r\n*1\r\n...`), (b) re-parse a large reply once per read
//! while it arrives, and (c) wait forever for a declared length of exabytes.
//! This scanner walks the frame iteratively, keeps its place between reads,
//! checks every declared length against the frame limit before anything is
//! buffered for it, bounds the nesting depth, and only then hands exactly
//! one complete frame to the crate.
//!
//! Types follow the RESP3 specification
//! (<https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md>),
//! section "RESP3 types". Streamed strings and aggregates (`$?`, `*?`, `;`,
//! `.`) and RESP2 null lengths (`$-1`, `*-1`) are refused: Redis sends
//! neither on a connection that said `HELLO 3`, and the crate cannot decode
//! the latter.

use super::codec::RespError;

/// Resumable frame-boundary scanner for one buffer whose front is the start
/// of a frame.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    /// Bytes of the current frame already walked: every item before this
    /// offset is complete.
    pos: usize,
    /// Elements still expected by each open aggregate, innermost last.
    open: Vec<u64>,
    max_frame: usize,
    max_depth: usize,
}

/// One RESP item: a scalar, or the header of an aggregate.
enum Item {
    Scalar { len: usize },
    Aggregate { header: usize, elements: u64 },
}

impl Scanner {
    pub(crate) fn new(max_frame: usize, max_depth: usize) -> Self {
        Self {
            pos: 0,
            open: Vec::new(),
            max_frame,
            max_depth,
        }
    }

    /// Forgets the walked prefix; call once the frame was taken off the buffer.
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
    }

    /// `Ok(Some(len))` when `buf[..len]` is one complete frame; `Ok(None)`
    /// when more bytes are needed (the place reached is kept, so the next call
    /// with the same buffer grown at its end continues from there).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        loop {
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some(item) = self.item(rest)? else {
                return self.incomplete(buf.len());
            };
            match item {
                Item::Aggregate { header, elements } if elements > 0 => {
                    if self.open.len() >= self.max_depth {
                        return Err(RespError::TooDeep {
                            max: self.max_depth,
                        });
                    }
                    self.advance(header)?;
                    self.open.push(elements);
                }
                Item::Aggregate { header: len, .. } | Item::Scalar { len } => {
                    self.advance(len)?;
                    if self.close_finished() {
                        return Ok(Some(self.pos));
                    }
                }
            }
        }
    }

    fn incomplete(&self, buffered: usize) -> Result<Option<usize>, RespError> {
        if buffered > self.max_frame {
            return Err(RespError::FrameTooLarge {
                size: buffered as u64,
                max: self.max_frame,
            });
        }
        Ok(None)
    }

    fn advance(&mut self, len: usize) -> Result<(), RespError> {
        self.pos = self.pos.saturating_add(len);
        if self.pos > self.max_frame {
            return Err(RespError::FrameTooLarge {
                size: self.pos as u64,
                max: self.max_frame,
            });
        }
        Ok(())
    }

    /// Counts one finished element against the open aggregates; true when
    /// that finished the whole frame.
    fn close_finished(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    /// Reads the item at the front of `rest`, or `None` if it is cut short.
    fn item(&self, rest: &[u8]) -> Result<Option<Item>, RespError> {
        let Some(&kind) = rest.first() else {
            return Ok(None);
        };
        // For aggregates, the fewest bytes one counted unit takes on the wire.
        let unit = match kind {
            // Simple string, simple error, number, double, boolean, null, big number.
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => None,
            // Blob string, blob error, verbatim string: `$<len>\r\n<bytes>\r\n`.
            b'$' | b'!' | b'=' => Some(0),
            // Array, set, push: every element takes 3 bytes or more (`_\r\n`).
            b'*' | b'~' | b'>' => Some(3),
            // Map, attribute: pairs.
            b'%' | b'|' => Some(6),
            byte => return Err(RespError::InvalidType { byte }),
        };
        let Some(line) = line_len(rest) else {
            return Ok(None);
        };
        let Some(unit) = unit else {
            return Ok(Some(Item::Scalar { len: line }));
        };
        let n = length(&rest[1..line - 2])?;
        if unit == 0 {
            let total = (line as u64).saturating_add(n).saturating_add(2);
            self.fits(total)?;
            let total = total as usize;
            return match rest.get(total - 2..total) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some(Item::Scalar { len: total })),
                Some(_) => Err(RespError::MissingCrlf),
            };
        }
        // A count that cannot fit the frame is refused now, not after
        // buffering up to the limit.
        self.fits((line as u64).saturating_add(n.saturating_mul(unit)))?;
        let elements = match kind {
            b'%' => n * 2,
            // An attribute's pairs are followed by the frame they describe,
            // counted as one more element of the same aggregate.
            b'|' => n * 2 + 1,
            _ => n,
        };
        Ok(Some(Item::Aggregate {
            header: line,
            elements,
        }))
    }

    /// Refuses an item whose declared size would take the frame past the limit.
    fn fits(&self, item: u64) -> Result<(), RespError> {
        let size = (self.pos as u64).saturating_add(item);
        if size > self.max_frame as u64 {
            return Err(RespError::FrameTooLarge {
                size,
                max: self.max_frame,
            });
        }
        Ok(())
    }
}

/// Parses a length or count: plain decimal digits.
fn length(digits: &[u8]) -> Result<u64, RespError> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::InvalidLength);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Length of the first line including its `\r\n`, if the buffer holds it.
fn line_len(buf: &[u8]) -> Option<usize> {
    // Byte 0 is the type, so the earliest `\r` is at 1 and `\n` at 2.
    let mut from = 2;
    loop {
        let lf = from + buf.get(from..)?.iter().position(|&b| b == b'\n')?;
        if buf[lf - 1] == b'\r' {
            return Some(lf + 1);
        }
        from = lf + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(buf: &[u8]) -> Result<Option<usize>, RespError> {
        Scanner::new(1 << 20, 8).scan(buf)
    }

    #[test]
    fn finds_the_end_of_each_type() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-12\r\n",
            b",1.5\r\n",
            b"#t\r\n",
            b"_\r\n",
            b"(12345678901234567890\r\n",
            b"$0\r\n\r\n",
            b"$4\r\na\r\nb\r\n",
            b"!3\r\nERR\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"*0\r\n",
            b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n",
            b"~1\r\n+a\r\n",
            b"%1\r\n+k\r\n%0\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n",
            b"|1\r\n+k\r\n+v\r\n:5\r\n",
            b"*1\r\n|1\r\n+k\r\n+v\r\n*1\r\n:5\r\n",
            b"+a\rb\nc\r\n",
        ];
        for frame in frames {
            let mut buf = frame.to_vec();
            buf.extend_from_slice(b"+next\r\n");
            assert_eq!(
                scan_all(&buf),
                Ok(Some(frame.len())),
                "{:?}",
                String::from_utf8_lossy(frame)
            );
            for cut in 0..frame.len() {
                assert_eq!(scan_all(&frame[..cut]), Ok(None), "{frame:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn resumes_where_it_stopped() {
        let frame = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n:2\r\n+x\r\n";
        let mut s = Scanner::new(1 << 20, 8);
        for cut in 0..frame.len() {
            assert_eq!(s.scan(&frame[..cut]), Ok(None));
        }
        assert_eq!(s.scan(frame), Ok(Some(frame.len())));
    }

    #[test]
    fn refuses_malformed_items() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?\r\n", RespError::InvalidType { byte: b'?' }),
            (b"HELLO 3\r\n", RespError::InvalidType { byte: b'H' }),
            (b";4\r\n", RespError::InvalidType { byte: b';' }),
            (b"$?\r\n", RespError::InvalidLength),
            (b"$-1\r\n", RespError::InvalidLength),
            (b"*-1\r\n", RespError::InvalidLength),
            (b"*\r\n", RespError::InvalidLength),
            (b"*+1\r\n", RespError::InvalidLength),
            (b"\r\n", RespError::InvalidType { byte: b'\r' }),
            (b"$99999999999999999999\r\n", RespError::InvalidLength),
            (b"$1\r\nab\r\n", RespError::MissingCrlf),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                scan_all(bytes).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn refuses_declared_sizes_over_the_limit_before_buffering() {
        let mut s = Scanner::new(100, 8);
        assert_eq!(
            s.scan(b"$96\r\n"),
            Err(RespError::FrameTooLarge {
                size: 103,
                max: 100
            })
        );
        let mut s = Scanner::new(100, 8);
        assert_eq!(s.scan(b"$91\r\n"), Ok(None), "91 + 5 + 2 + 2 fits");
        let mut s = Scanner::new(100, 8);
        assert!(matches!(
            s.scan(b"*34\r\n"),
            Err(RespError::FrameTooLarge { .. })
        ));
        let mut s = Scanner::new(100, 8);
        assert!(matches!(
            s.scan(b"%9999999999999999999\r\n"),
            Err(RespError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn refuses_an_unterminated_line_past_the_limit() {
        let mut s = Scanner::new(100, 8);
        let mut line = vec![b'+'; 100];
        assert_eq!(s.scan(&line), Ok(None));
        line.push(b'x');
        assert_eq!(
            s.scan(&line),
            Err(RespError::FrameTooLarge {
                size: 101,
                max: 100
            })
        );
    }

    #[test]
    fn bounds_nesting_depth() {
        let deep = b"*1\r\n".repeat(9);
        assert_eq!(scan_all(&deep), Err(RespError::TooDeep { max: 8 }));
        let mut ok = b"*1\r\n".repeat(8);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(scan_all(&ok), Ok(Some(ok.len())));
    }
}
