//! One worker of the real server over in-memory sockets, for the fan-out
//! bench and the allocation test: the worker's own [`Driver`] (its dispatch,
//! registry, connections and flush) with the embedded owner, and sockets
//! that answer `WouldBlock` when they have nothing to read and take at most
//! `room` bytes per write.
//!
//! Every member connects with a real upgrade request and joins with a real
//! `join_channel` frame; a publisher's `user_action` goes in as a masked
//! frame and comes out of every member's socket.

#![allow(dead_code)] // each includer uses a part

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use mio::{Poll, Waker};
use switchboard::broker::{Broker, Msg, Owner, OwnerLimits, ToWorker};
use switchboard::config::Config;
use switchboard::metrics::DeliveredType;
use switchboard::node::Node;
use switchboard::socket::Socket;
use switchboard::worker::{Driver, Shared};
use switchboard::ws::deflate::Broadcast;

/// The channel every member joins.
pub const CHANNEL: &str = "doc:bench";

/// Bytes and calls that took bytes, over every socket of a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub taken: Cell<u64>,
    pub calls: Cell<u64>,
}

/// A non-blocking socket: reads what the test queued, then `WouldBlock`;
/// takes up to `room` bytes per write (a short write when more is offered,
/// as a kernel whose buffer filled) and keeps none of them.
#[derive(Debug)]
pub struct MemSocket {
    input: Rc<RefCell<Vec<u8>>>,
    counters: Rc<Counters>,
    room: usize,
}

impl MemSocket {
    /// A socket that reads from `input` and counts into `counters`.
    pub fn new(input: Rc<RefCell<Vec<u8>>>, counters: Rc<Counters>, room: usize) -> Self {
        MemSocket {
            input,
            counters,
            room,
        }
    }
}

impl Read for MemSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut input = self.input.borrow_mut();
        if input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(input.len());
        buf[..n].copy_from_slice(&input[..n]);
        input.drain(..n);
        Ok(n)
    }
}

impl Write for MemSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let n = offered.min(self.room);
        let c = &self.counters;
        c.taken.set(c.taken.get() + n as u64);
        c.calls.set(c.calls.get() + 1);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for MemSocket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A masked client text frame (RFC 6455 §5.3).
pub fn client_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// One worker with `members` connections joined to [`CHANNEL`].
pub struct Room {
    pub driver: Driver<MemSocket>,
    inputs: Vec<Rc<RefCell<Vec<u8>>>>,
    pub counters: Rc<Counters>,
    channel: Arc<str>,
    _poll: Poll,
}

impl Room {
    /// One worker (so every message is local), no presence, no rate limit
    /// in the way: the shape of `perf/compare` runs.
    pub fn new(members: usize, room: usize) -> Self {
        Self::with_offers(members, room, &[None])
    }

    /// As [`Room::new`] with `--compression`: member `i` offers
    /// permessage-deflate as `offers[i % offers.len()]` says (`None`: no
    /// offer; `Some(15)`: a plain offer; `Some(n)`: with
    /// `server_max_window_bits=n`).
    pub fn with_offers(members: usize, room: usize, offers: &[Option<u8>]) -> Self {
        let config = Arc::new(Config {
            threads: 1,
            node: "bench".into(),
            no_presence: vec!["*".to_owned()],
            rate: u32::MAX,
            burst: u32::MAX,
            compression: offers.iter().any(Option::is_some),
            ..Config::default()
        });
        let poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), switchboard::id::WAKER).expect("waker");
        let (tx, _rx) = crossbeam_channel::unbounded();
        let node = Node::new(config.clone(), 1, false, None);
        let metrics = node.metrics[0].clone();
        let shared = Arc::new(Shared::new(node, vec![tx], vec![Arc::new(waker)]));
        let owner = Owner::new(OwnerLimits { config, metrics }, 7);
        let mut r = Room {
            driver: Driver::new(0, shared, Broker::Embedded(owner)),
            inputs: Vec::with_capacity(members),
            counters: Rc::default(),
            channel: CHANNEL.into(),
            _poll: poll,
        };
        let join =
            client_text(format!(r#"{{"type":"join_channel","channel":"{CHANNEL}"}}"#).as_bytes());
        for i in 0..members {
            let input = Rc::new(RefCell::new(Vec::new()));
            let key = r.driver.insert(MemSocket {
                input: input.clone(),
                counters: r.counters.clone(),
                room,
            });
            assert_eq!(key, r.inputs.len());
            let mut bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                Sec-WebSocket-Version: 13\r\n"
                .to_vec();
            match offers[i % offers.len()] {
                None => {}
                Some(15) => bytes.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                Some(n) => bytes.extend_from_slice(
                    format!("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={n}\r\n")
                        .as_bytes(),
                ),
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&join);
            *input.borrow_mut() = bytes;
            r.inputs.push(input);
            r.driver.read(key, false);
        }
        // The joins reach the owner and the `joined` replies come back.
        r.flush();
        r
    }

    /// Connection `from` sends `frame` (a masked client frame); the worker
    /// reads it, the owner orders it, every member gets it, and the turn's
    /// flush writes it out.
    pub fn publish(&mut self, from: usize, frame: &[u8]) {
        self.inputs[from].borrow_mut().extend_from_slice(frame);
        self.driver.read(from, false);
        self.flush();
    }

    /// An owner's delivery of `frame` reaching this worker, queued for
    /// every member (not yet written).
    pub fn deliver(&mut self, frame: &Bytes) {
        self.deliver_broadcast(&Broadcast::from(frame.clone()));
    }

    /// As [`Room::deliver`], for a broadcast that may carry compressed twins.
    pub fn deliver_broadcast(&mut self, frame: &Broadcast) {
        self.driver.dispatch(Msg::Worker(ToWorker::Deliver {
            channel: self.channel.clone(),
            frame: frame.clone(),
            except: None,
            kind: DeliveredType::UserAction,
        }));
    }

    /// The end of the turn: every connection that got frames writes them,
    /// in as many rounds as the worker's loop would make (with nothing to
    /// poll in between here).
    pub fn flush(&mut self) {
        while self.driver.pump() {}
    }

    /// Bytes taken by the sockets so far.
    pub fn taken(&self) -> u64 {
        self.counters.taken.get()
    }

    pub fn calls(&self) -> u64 {
        self.counters.calls.get()
    }
}

/// A `user_action` like sb-load's, as a client frame: a sequence number, a
/// send time and the publisher's index, padded to about 100 bytes.
pub fn action_frame() -> Vec<u8> {
    client_text(
        format!(
            r#"{{"type":"user_action","channel":"{CHANNEL}","action":{{"s":123456,"t":98765432101234,"p":0,"pad":"xxxxxxxxxxxxxxxx"}}}}"#
        )
        .as_bytes(),
    )
}
