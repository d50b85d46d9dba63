//! One client connection's state machine, without its socket.
//!
//! `Connecting` → (socket writable) → `Handshake` (request written) → `101`
//! → `Joining` (`join_channel` written) → `joined` → `Joined`, where every
//! text frame is scanned for a stamp (`payload`) and tracked per publisher
//! (`track`). The worker reads bytes, hands them to [`Conn::on_bytes`] with
//! the time of the read, and writes whatever [`Conn::out`] holds afterwards.
//!
//! The receive path allocates nothing: frames are parsed in the worker's read
//! buffer, and only a partial frame at the end of a read is copied into
//! [`Conn::inbuf`], whose capacity is kept for the next time.

use hdrhistogram::Histogram;

use crate::inflate::{InflateError, Inflater};
use crate::payload::{self, Reply};
use crate::track::{Arrival, SeqTrack};
use crate::ws::{self, FrameError, HandshakeError};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Handshake,
    Joining,
    Joined,
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    Handshake(HandshakeError),
    Frame(FrameError),
    /// The server answered `join_channel` with an `error`.
    JoinRefused,
    /// The server sent a close frame with this code (0 when it had none).
    ClosedByServer {
        code: u16,
    },
    /// A compressed message that did not inflate.
    Inflate(InflateError),
}

/// The measured window in ns since the run's start: `[start, end)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.start_ns && t_ns < self.end_ns
    }
}

/// What a worker's receivers have seen, shared by all its connections.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Latency in ns of deliveries received inside `window`.
    pub hist: Histogram<u64>,
    pub window: Window,
    /// Distinct deliveries over the whole run.
    pub delivered: u64,
    /// Distinct deliveries received inside `window`.
    pub delivered_in_window: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Stamped events naming a publisher the channel does not have, and
    /// fragmented or binary frames.
    pub unparsed: u64,
    /// Text frames without a stamp after joining (replies, presence events).
    pub other: u64,
    /// Bytes read from the sockets inside `window` (TLS records or
    /// WebSocket frames as they crossed the wire, compressed or not).
    pub wire_bytes_in_window: u64,
    /// Messages that arrived compressed (RSV1), over the whole run.
    pub compressed: u64,
    mask_state: u64,
}

impl Sink {
    pub fn new(seed: u64) -> Sink {
        // 1 ns to 100 s at 3 significant figures; larger values saturate.
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5), so this cannot fail.
        let hist = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .expect("constant histogram bounds are valid");
        Sink {
            hist,
            window: Window::default(),
            delivered: 0,
            delivered_in_window: 0,
            duplicates: 0,
            reordered: 0,
            unparsed: 0,
            other: 0,
            wire_bytes_in_window: 0,
            compressed: 0,
            mask_state: seed | 1,
        }
    }

    /// A fresh masking key (xorshift64; RFC 6455 §5.3 wants it unpredictable
    /// to proxies, which a load test does not have).
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_le_bytes()
    }

    /// Counts `n` bytes read from a socket at `now_ns`.
    pub fn wire(&mut self, n: usize, now_ns: u64) {
        if self.window.contains(now_ns) {
            self.wire_bytes_in_window += n as u64;
        }
    }

    fn record(&mut self, arrival: Arrival, sent_ns: u64, now_ns: u64) {
        if !arrival.is_new() {
            self.duplicates += 1;
            return;
        }
        if arrival.is_reordered() {
            self.reordered += 1;
        }
        self.delivered += 1;
        if self.window.contains(now_ns) {
            self.delivered_in_window += 1;
            self.hist
                .saturating_record(now_ns.saturating_sub(sent_ns).max(1));
        }
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Conn {
    pub phase: Phase,
    /// Its publisher index within the channel, when it publishes.
    pub publisher: Option<u32>,
    /// Sequence number of the next message it publishes.
    pub next_seq: u64,
    /// One tracker per publisher of the channel.
    tracks: Box<[SeqTrack]>,
    /// A partial frame left over from the previous read.
    pub inbuf: Vec<u8>,
    /// Bytes waiting for the socket to become writable.
    pub out: Vec<u8>,
    /// The server accepted permessage-deflate: text frames may be compressed.
    pub deflate: bool,
}

impl Conn {
    pub fn new(publisher: Option<u32>, channel_publishers: u32) -> Conn {
        Conn {
            phase: Phase::Connecting,
            publisher,
            next_seq: 0,
            tracks: vec![SeqTrack::default(); channel_publishers as usize].into_boxed_slice(),
            inbuf: Vec::new(),
            out: Vec::new(),
            deflate: false,
        }
    }

    /// Consumes what it can of `buf` (read at `now_ns`) and returns how many
    /// bytes it used; the rest is an incomplete head or frame to keep.
    ///
    /// Replies it owes (the join, pongs) are appended to [`Conn::out`].
    /// `channel` is the name to join; `max_frame` bounds a frame's payload
    /// (and an inflated message). Compressed messages inflate through
    /// `inflater`, the worker's.
    pub fn on_bytes(
        &mut self,
        buf: &[u8],
        now_ns: u64,
        channel: &str,
        max_frame: usize,
        sink: &mut Sink,
        inflater: &mut Inflater,
    ) -> Result<usize, ConnError> {
        let mut at = 0;
        if self.phase == Phase::Handshake {
            match ws::parse_handshake_response(buf).map_err(ConnError::Handshake)? {
                None => return Ok(0),
                Some(head) => at = head,
            }
            self.deflate = ws::deflate_accepted(&buf[..at]);
            let mut join = Vec::with_capacity(64);
            payload::write_join(channel, &mut join);
            ws::write_client_frame(ws::OP_TEXT, &join, sink.next_mask(), &mut self.out);
            self.phase = Phase::Joining;
        }
        while let Some(head) =
            ws::parse_frame_with(&buf[at..], max_frame, self.deflate).map_err(ConnError::Frame)?
        {
            let body = &buf[at + head.header_len..at + head.frame_len()];
            at += head.frame_len();
            match head.opcode {
                ws::OP_TEXT if head.fin && head.rsv1 => {
                    sink.compressed += 1;
                    let text = inflater
                        .inflate(body, max_frame)
                        .map_err(ConnError::Inflate)?;
                    self.on_text(text, now_ns, sink)?
                }
                ws::OP_TEXT if head.fin => self.on_text(body, now_ns, sink)?,
                ws::OP_PING => {
                    ws::write_client_frame(ws::OP_PONG, body, sink.next_mask(), &mut self.out)
                }
                ws::OP_CLOSE => {
                    let code = match body {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]),
                        _ => 0,
                    };
                    self.phase = Phase::Closed;
                    return Err(ConnError::ClosedByServer { code });
                }
                ws::OP_PONG => {}
                _ => sink.unparsed += 1,
            }
        }
        Ok(at)
    }

    fn on_text(&mut self, body: &[u8], now_ns: u64, sink: &mut Sink) -> Result<(), ConnError> {
        match self.phase {
            Phase::Joined => match payload::scan_stamp(body) {
                Some(stamp) => match self.tracks.get_mut(stamp.publisher as usize) {
                    Some(track) => sink.record(track.observe(stamp.seq), stamp.sent_ns, now_ns),
                    None => sink.unparsed += 1,
                },
                None => sink.other += 1,
            },
            Phase::Joining => match payload::classify_reply(body) {
                Reply::Joined => self.phase = Phase::Joined,
                Reply::Error => return Err(ConnError::JoinRefused),
                Reply::Other => {}
            },
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Stamp;

    fn server_text(payload: &str) -> Vec<u8> {
        let mut f = vec![0x81];
        assert!(payload.len() < 126);
        f.push(payload.len() as u8);
        f.extend_from_slice(payload.as_bytes());
        f
    }

    fn event(publisher: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut p =
            br#"{"type":"user_action","channel":"c","user":"u","conn":"n","action":"#.to_vec();
        let mut req = Vec::new();
        payload::write_user_action(
            "c",
            Stamp {
                seq,
                sent_ns,
                publisher,
            },
            &mut req,
        );
        let action = &req[ws::find(&req, b"{\"s\"").unwrap()..req.len() - 1];
        p.extend_from_slice(action);
        p.push(b'}');
        server_text(std::str::from_utf8(&p).unwrap())
    }

    fn joined_conn(sink: &mut Sink) -> Conn {
        let mut c = Conn::new(None, 2);
        c.phase = Phase::Handshake;
        let mut input = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::ACCEPT
        )
        .into_bytes();
        input.extend(server_text(r#"{"type":"welcome","conn":"n1-1"}"#));
        input.extend(server_text(r#"{"type":"joined","channel":"c"}"#));
        assert_eq!(
            c.on_bytes(&input, 0, "c", 1 << 16, sink, &mut Inflater::default()),
            Ok(input.len())
        );
        assert_eq!(c.phase, Phase::Joined);
        assert!(ws::find(&c.out, &[0x81]).is_some(), "join request written");
        c
    }

    #[test]
    fn setup_then_deliveries_in_and_out_of_the_window() {
        let mut sink = Sink::new(7);
        sink.window = Window {
            start_ns: 100,
            end_ns: 1000,
        };
        let mut c = joined_conn(&mut sink);
        let mut input = Vec::new();
        input.extend(event(0, 0, 10)); // before the window
        input.extend(event(1, 0, 150));
        input.extend(event(0, 1, 190));
        let used = c
            .on_bytes(
                &input,
                50,
                "c",
                1 << 16,
                &mut sink,
                &mut Inflater::default(),
            )
            .unwrap();
        assert_eq!(used, input.len());
        assert_eq!(sink.delivered, 3);
        assert_eq!(
            sink.delivered_in_window, 0,
            "received at 50, before the window"
        );
        let more = event(0, 2, 400);
        c.on_bytes(
            &more,
            500,
            "c",
            1 << 16,
            &mut sink,
            &mut Inflater::default(),
        )
        .unwrap();
        assert_eq!(sink.delivered_in_window, 1);
        assert_eq!(sink.hist.max(), sink.hist.highest_equivalent(100));
        assert_eq!(c.tracks[0].unique() + c.tracks[1].unique(), 4);
    }

    #[test]
    fn partial_frames_are_left_for_the_next_read() {
        let mut sink = Sink::new(1);
        let mut c = joined_conn(&mut sink);
        let frame = event(0, 0, 1);
        for cut in 0..frame.len() {
            assert_eq!(
                c.on_bytes(
                    &frame[..cut],
                    5,
                    "c",
                    1 << 16,
                    &mut sink,
                    &mut Inflater::default()
                ),
                Ok(0)
            );
        }
        assert_eq!(sink.delivered, 0);
        let mut two = frame.clone();
        two.extend_from_slice(&event(0, 1, 1)[..4]);
        assert_eq!(
            c.on_bytes(&two, 5, "c", 1 << 16, &mut sink, &mut Inflater::default()),
            Ok(frame.len())
        );
        assert_eq!(sink.delivered, 1);
    }

    #[test]
    fn duplicates_reorders_and_foreign_publishers_are_counted() {
        let mut sink = Sink::new(1);
        let mut c = joined_conn(&mut sink);
        let mut input = Vec::new();
        for (p, s) in [(0, 0), (0, 2), (0, 1), (0, 1), (5, 0)] {
            input.extend(event(p, s, 1));
        }
        input.extend(server_text(r#"{"type":"ack","id":1}"#));
        c.on_bytes(&input, 5, "c", 1 << 16, &mut sink, &mut Inflater::default())
            .unwrap();
        assert_eq!((sink.delivered, sink.reordered, sink.duplicates), (3, 1, 1));
        assert_eq!((sink.unparsed, sink.other), (1, 1));
    }

    #[test]
    fn ping_is_answered_and_close_ends_the_connection() {
        let mut sink = Sink::new(1);
        let mut c = joined_conn(&mut sink);
        c.out.clear();
        assert_eq!(
            c.on_bytes(
                &[0x89, 2, b'h', b'i'],
                0,
                "c",
                1 << 16,
                &mut sink,
                &mut Inflater::default()
            ),
            Ok(4)
        );
        assert_eq!(&c.out[..2], &[0x8A, 0x82], "masked pong of 2 bytes");
        assert_eq!(
            c.on_bytes(
                &[0x88, 2, 0x03, 0xE9],
                0,
                "c",
                1 << 16,
                &mut sink,
                &mut Inflater::default()
            ),
            Err(ConnError::ClosedByServer { code: 1001 })
        );
        assert_eq!(c.phase, Phase::Closed);
    }

    #[test]
    fn refused_join_and_bad_handshake() {
        let mut sink = Sink::new(1);
        let mut c = Conn::new(None, 1);
        c.phase = Phase::Handshake;
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::ACCEPT
        );
        let mut input = ok.into_bytes();
        input.extend(server_text(r#"{"type":"error","code":"forbidden"}"#));
        assert_eq!(
            c.on_bytes(&input, 0, "c", 1 << 16, &mut sink, &mut Inflater::default()),
            Err(ConnError::JoinRefused)
        );
        let mut c = Conn::new(None, 1);
        c.phase = Phase::Handshake;
        assert_eq!(
            c.on_bytes(
                b"HTTP/1.1 503 Busy\r\n\r\n",
                0,
                "c",
                1 << 16,
                &mut sink,
                &mut Inflater::default()
            ),
            Err(ConnError::Handshake(HandshakeError::Status))
        );
    }
}
