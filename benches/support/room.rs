//! One worker's broadcast path over in-memory connections, for the fan-out
//! bench and the allocation test: the worker's [`Registry::deliver`] and
//! [`Outbound::write_to`] over a slab of connections whose sockets take at
//! most `room` bytes per flush and then answer `WouldBlock`, fed either
//! directly or through an embedded-broker [`Owner`] the way a worker's
//! `dispatch` feeds it.

#![allow(dead_code)] // each includer uses a part

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use slab::Slab;
use switchboard::broker::{
    ConnId, MemberInfo, Msg, Origin, Outbox, Owner, OwnerLimits, ToOwner, ToWorker,
};
use switchboard::config::Config;
use switchboard::conn::Outbound;
use switchboard::metrics::WorkerMetrics;
use switchboard::registry::{Fanout, Handle, Recipient, Registry};

/// The server's default `--outbound-limit`.
pub const LIMIT: usize = 4 * 1024 * 1024;

/// A connection as the delivery loop sees it.
#[derive(Debug, Default)]
pub struct MockConn {
    pub serial: u32,
    pub out: Outbound,
    pub dirty: bool,
}

impl Recipient for MockConn {
    fn serial(&self) -> u32 {
        self.serial
    }
    fn outbound(&mut self) -> Option<&mut Outbound> {
        Some(&mut self.out)
    }
    fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }
}

/// A non-blocking socket whose peer drains `room` bytes between flushes:
/// it takes up to what is left of that, then answers `WouldBlock`. It keeps
/// no bytes, like a kernel that copied them away.
#[derive(Debug)]
pub struct Socket {
    pub room: usize,
    left: usize,
    /// Bytes taken, over all flushes.
    pub taken: u64,
    /// `write`/`writev` calls that took bytes.
    pub calls: u64,
}

impl Socket {
    pub fn new(room: usize) -> Self {
        Socket {
            room,
            left: room,
            taken: 0,
            calls: 0,
        }
    }

    /// The peer read everything: `room` bytes fit again.
    pub fn drain(&mut self) {
        self.left = self.room;
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let n = offered.min(self.left);
        self.left -= n;
        self.taken += n as u64;
        self.calls += 1;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One channel with `members` connections on one worker.
#[derive(Debug)]
pub struct Room {
    pub channel: Arc<str>,
    pub registry: Registry,
    pub conns: Slab<MockConn>,
    pub fanout: Fanout,
    pub socket: Socket,
}

impl Room {
    /// Connections in a slab with serials from 1; with `joined`, already in
    /// the channel's fan-out list (else [`Broker::join_all`] puts them there).
    pub fn new(members: usize, room: usize, joined: bool) -> Self {
        let channel: Arc<str> = "doc:bench".into();
        let mut registry = Registry::default();
        let mut conns = Slab::with_capacity(members);
        for i in 0..members {
            let serial = i as u32 + 1;
            let key = conns.insert(MockConn {
                serial,
                ..MockConn::default()
            }) as u32;
            if joined {
                registry.add(&channel, Handle { key, serial });
            }
        }
        Room {
            channel,
            registry,
            conns,
            fanout: Fanout::default(),
            socket: Socket::new(room),
        }
    }

    /// Queues `frame` for every member of `channel` but `except`.
    pub fn deliver(&mut self, channel: &str, frame: &Bytes, except: Option<Handle>) -> u64 {
        let n = self.registry.deliver(
            channel,
            frame,
            except,
            LIMIT,
            &mut self.conns,
            &mut self.fanout,
        );
        assert!(self.fanout.slow.is_empty(), "no queue may fill here");
        n
    }

    /// The worker's end-of-turn flush: every connection that got frames
    /// writes them, each into a freshly drained socket. Returns the bytes
    /// written.
    pub fn flush(&mut self) -> usize {
        let mut total = 0;
        for key in self.fanout.dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            self.socket.drain();
            total += conn
                .out
                .write_to(&mut self.socket)
                .expect("in-memory write");
        }
        total
    }
}

/// The embedded broker's owner for the room's channel, with the outbox the
/// worker drains after each event.
#[derive(Debug)]
pub struct Broker {
    pub owner: Owner,
    pub outbox: Outbox,
    pub member: Arc<MemberInfo>,
    now: Instant,
}

impl Broker {
    /// One worker (so every message is local), no presence: the shape of
    /// `perf/compare` runs.
    pub fn new() -> Self {
        let config = Config {
            threads: 1,
            no_presence: vec!["*".to_owned()],
            ..Config::default()
        };
        let limits = OwnerLimits {
            config: Arc::new(config),
            metrics: Arc::new(WorkerMetrics::new()),
        };
        Broker {
            owner: Owner::new(limits, 7),
            outbox: Outbox::new(1),
            member: Arc::new(MemberInfo {
                user: "publisher".into(),
                conn: "n1-0-1".into(),
                info: None,
            }),
            now: Instant::now(),
        }
    }

    fn who(key: usize, serial: u32) -> ConnId {
        ConnId::new(0, key, serial)
    }

    /// Joins every connection of `room` through the owner and applies the
    /// `Joined` replies to the fan-out list, as a worker does.
    pub fn join_all(&mut self, room: &mut Room) {
        let conns: Vec<(usize, u32)> = room.conns.iter().map(|(k, c)| (k, c.serial)).collect();
        for (key, serial) in conns {
            self.owner.handle(
                ToOwner::Join {
                    channel: room.channel.clone(),
                    who: Self::who(key, serial),
                    member: self.member.clone(),
                    id: None,
                    since: None,
                    rejoin: false,
                },
                self.now,
                &mut self.outbox,
            );
            self.dispatch(room);
        }
        // The `joined` replies are not broadcast frames: write them out.
        room.flush();
    }

    /// A client's `user_action` from connection `from`, as the worker hands
    /// it to the owner (the action copied out of the read buffer), then the
    /// owner's messages dispatched. Returns the deliveries queued.
    pub fn publish(&mut self, room: &mut Room, from: usize, action: &[u8]) -> u64 {
        let serial = room.conns[from].serial;
        self.owner.handle(
            ToOwner::Publish {
                channel: room.channel.clone(),
                origin: Origin::Client(Self::who(from, serial), self.member.clone()),
                id: None,
                action: Bytes::copy_from_slice(action),
            },
            self.now,
            &mut self.outbox,
        );
        self.dispatch(room)
    }

    /// The worker's `pump` and `dispatch` for the messages this test uses,
    /// reusing the outbox's allocation as `pump` does.
    fn dispatch(&mut self, room: &mut Room) -> u64 {
        let mut queue = std::mem::take(self.outbox.queue_mut(0));
        let mut delivered = 0;
        for msg in queue.drain(..) {
            match msg {
                Msg::Worker(ToWorker::Joined {
                    channel,
                    who,
                    frames,
                }) => {
                    room.registry.add(&channel, who.handle());
                    let conn = &mut room.conns[who.key()];
                    for f in frames {
                        conn.out.push(f, LIMIT).expect("joined fits");
                    }
                    if !std::mem::replace(&mut conn.dirty, true) {
                        room.fanout.dirty.push(who.key());
                    }
                }
                Msg::Worker(ToWorker::Deliver {
                    channel,
                    frame,
                    except,
                    ..
                }) => {
                    let except = except.map(ConnId::handle);
                    delivered += room.deliver(&channel, &frame, except);
                }
                other => panic!("unexpected message {other:?}"),
            }
        }
        *self.outbox.queue_mut(0) = queue;
        delivered
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

/// A `user_action` payload like sb-load's: a sequence number, a send time
/// and the publisher's index, padded to about 100 bytes of frame.
pub fn action() -> Vec<u8> {
    br#"{"s":123456,"t":98765432101234,"p":0,"pad":"xxxxxxxxxxxxxxxx"}"#.to_vec()
}
