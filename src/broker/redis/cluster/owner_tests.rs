//! The cluster owner against two scripted masters, with no socket: the test
//! plays the IO shim for both links (what the owner transmits on each, and
//! Redis's bytes back), so redirections, re-subscriptions and refusals are
//! checked byte by byte, on a clock of the test's own.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Token;

use super::*;
use crate::broker::redis::cluster::channel_slot;
use crate::broker::redis::scripts::Script;
use crate::broker::redis::tests::{bulk, push};
use crate::broker::{ConnId, MemberInfo, Msg, Origin, ToWorker};

const A: u16 = 7001;
const B: u16 = 7002;

/// A cluster owner whose seed is master A (slots 0-8191); B has the rest.
struct Scripted {
    owner: ClusterOwner,
    out: Outbox,
    now: Now,
    /// What the owner wrote on each link, by master port.
    seen: HashMap<u16, Vec<u8>>,
}

/// `CLUSTER SLOTS`: 0-8191 on A, 8192-16383 on B.
fn slots_reply() -> Vec<u8> {
    let mut r = b"*2\r\n".to_vec();
    for (a, b, port) in [(0, 8191, A), (8192, 16383, B)] {
        r.extend(format!("*3\r\n:{a}\r\n:{b}\r\n*2\r\n").into_bytes());
        r.extend(bulk(b"127.0.0.1"));
        r.extend(format!(":{port}\r\n").into_bytes());
    }
    r
}

/// A channel without history whose slot is on master `port`.
fn channel_on(port: u16, prefix: &str) -> Arc<str> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|c| (channel_slot("sb:", c) < 8192) == (port == A))
        .expect("a name")
        .into()
}

fn pubsub(ch: &str) -> Vec<u8> {
    format!("sb:{{{ch}}}:ch").into_bytes()
}

fn member() -> Arc<MemberInfo> {
    Arc::new(MemberInfo {
        user: "u".into(),
        conn: "n-0-1".into(),
        info: None,
    })
}

impl Scripted {
    /// The owner with both links up and the slot map known.
    fn up() -> Scripted {
        let config = Arc::new(Config {
            threads: 2,
            ..Config::default()
        });
        let url = crate::resp::parse_url(&format!("redis://127.0.0.1:{A}")).unwrap();
        let now = Now {
            mono: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        let seeds = ClusterSeeds {
            urls: vec![url],
            tls: None,
        };
        let owner = ClusterOwner::new(
            config,
            seeds,
            0,
            7,
            Arc::new(AtomicUsize::new(1)),
            Arc::default(),
            now,
        );
        let mut s = Scripted {
            owner,
            out: Outbox::new(2),
            now,
            seen: HashMap::new(),
        };
        for _ in 0..20 {
            s.tick(Duration::from_millis(100));
            if s.count(A, b"CLUSTER") > 0 {
                break;
            }
        }
        assert_eq!(s.count(A, b"CLUSTER"), 1, "a map is asked of the seed");
        // The keepalive pings sent meanwhile come first.
        for _ in 0..s.count(A, b"PING") {
            s.reply(A, b"+PONG\r\n");
        }
        // Not Redis 7's `CLUSTER SHARDS`: the owner falls back.
        s.reply(A, b"-ERR unknown subcommand\r\n");
        assert_eq!(s.count(A, b"SLOTS"), 1);
        s.reply(A, &slots_reply());
        s.tick(Duration::from_millis(1));
        assert!(s.seen.contains_key(&B), "a link to the other master");
        for _ in 0..s.count(B, b"PING") {
            s.reply(B, b"+PONG\r\n");
        }
        assert_eq!(s.owner.link_count(), 2);
        s.seen.clear();
        s
    }

    fn token(&self, port: u16) -> Token {
        let addr = NodeAddr {
            host: "127.0.0.1".into(),
            port,
        };
        shard_token(self.owner.find(&addr).expect("a link to the node"))
    }

    fn port(&self, token: Token) -> u16 {
        let i = shard_of(token).expect("a shard token");
        self.owner.shards[i]
            .as_ref()
            .expect("a live shard")
            .addr
            .port
    }

    /// Socket requests answered (a connect gets its handshake), and what
    /// every link transmits taken into `seen`.
    fn pump(&mut self) {
        for _ in 0..10 {
            let mut any = false;
            while let Some((token, io)) = self.owner.poll_io() {
                any = true;
                if let LinkIo::Connect(_) = io {
                    let port = self.port(token);
                    self.take_sent();
                    self.owner.handle_input(
                        token,
                        b"%1\r\n+proto\r\n:3\r\n",
                        self.now,
                        &mut self.out,
                    );
                    for _ in Script::ALL {
                        self.owner
                            .handle_input(token, b"+sha\r\n", self.now, &mut self.out);
                    }
                    self.seen.entry(port).or_default();
                }
            }
            any |= self.take_sent();
            if !any {
                return;
            }
        }
    }

    fn take_sent(&mut self) -> bool {
        let mut any = false;
        for port in [A, B] {
            let addr = NodeAddr {
                host: "127.0.0.1".into(),
                port,
            };
            let Some(i) = self.owner.find(&addr) else {
                continue;
            };
            while let Some(b) = self.owner.poll_transmit(shard_token(i)) {
                self.seen.entry(port).or_default().extend_from_slice(&b);
                any = true;
            }
        }
        any
    }

    fn tick(&mut self, by: Duration) {
        self.now.mono += by;
        self.now.unix_ms += by.as_millis() as u64;
        self.owner.handle_timeout(self.now, &mut self.out);
        self.pump();
    }

    /// Master `port`'s bytes to the owner.
    fn reply(&mut self, port: u16, bytes: &[u8]) {
        let token = self.token(port);
        self.owner
            .handle_input(token, bytes, self.now, &mut self.out);
        self.pump();
    }

    fn handle(&mut self, msg: ToOwner) {
        self.owner.handle(msg, self.now, &mut self.out);
        self.pump();
    }

    fn count(&self, port: u16, needle: &[u8]) -> usize {
        self.seen.get(&port).map_or(0, |seen| {
            seen.windows(needle.len()).filter(|w| w == &needle).count()
        })
    }

    /// Worker 0's messages so far.
    fn messages(&mut self) -> Vec<Msg> {
        std::mem::take(self.out.queue_mut(0))
    }

    /// `who` joins `ch` on its master `port`; Redis confirms.
    fn join(&mut self, ch: &Arc<str>, port: u16) {
        self.handle(ToOwner::Join {
            channel: ch.clone(),
            who: ConnId::new(0, 1, 1),
            member: member(),
            id: Some(1),
            since: None,
            rejoin: false,
        });
        assert_eq!(self.count(port, b"SSUBSCRIBE"), 1);
        self.reply(port, &push(b"ssubscribe", &pubsub(ch), b":1\r\n"));
        self.reply(port, b"*5\r\n*0\r\n:0\r\n$0\r\n\r\n:-1\r\n*0\r\n");
        self.messages();
        self.seen.clear();
    }

    fn publish(&mut self, ch: &Arc<str>, id: u64) {
        self.handle(ToOwner::Publish {
            channel: ch.clone(),
            origin: Origin::Client(ConnId::new(0, 1, 1), member()),
            id: Some(id),
            action: Bytes::from(format!("{{\"seq\":{id}}}")),
        });
    }
}

fn reply_text(m: &Msg) -> String {
    match m {
        Msg::Worker(ToWorker::Reply { frame, .. }) => String::from_utf8_lossy(frame).into_owned(),
        other => panic!("not a reply: {other:?}"),
    }
}

#[test]
fn ask_waits_at_the_old_master_and_tells_the_other_nodes() {
    let mut s = Scripted::up();
    let ch = channel_on(A, "room:");
    let slot = channel_slot("sb:", &ch);
    s.join(&ch, A);
    s.publish(&ch, 2);
    assert_eq!(s.count(A, b"EVALSHA"), 1, "a plain action is a script too");
    s.reply(A, format!("-ASK {slot} 127.0.0.1:{B}\r\n").as_bytes());
    // Subscribed at the importing master, the others told through the old
    // one, and the command not sent to the importing master.
    assert_eq!(s.count(B, b"ASKING"), 1);
    assert_eq!(s.count(B, b"SSUBSCRIBE"), 1);
    assert_eq!(s.count(B, b"EVALSHA"), 0);
    let notice = [&[0u8][..], format!("ASK {slot} 127.0.0.1:{B}").as_bytes()].concat();
    assert_eq!(s.count(A, b"SPUBLISH"), 1);
    assert_eq!(s.count(A, &notice), 1);
    assert!(s.messages().is_empty(), "the publisher waits");
    // Asked again of the old master 20 ms later.
    s.tick(Duration::from_millis(25));
    assert_eq!(s.count(A, b"EVALSHA"), 2);
    // Another ASK: no second notice, no second subscription.
    s.reply(A, b"+OK\r\n"); // the notice's SPUBLISH
    s.reply(A, format!("-ASK {slot} 127.0.0.1:{B}\r\n").as_bytes());
    assert_eq!(s.count(A, b"SPUBLISH"), 1);
    assert_eq!(s.count(B, b"SSUBSCRIBE"), 1);
    // The old master hands the slot over: the command goes to the new one
    // at once (the move was announced), the channel with it.
    s.tick(Duration::from_millis(25));
    assert_eq!(s.count(A, b"EVALSHA"), 3);
    s.reply(A, format!("-MOVED {slot} 127.0.0.1:{B}\r\n").as_bytes());
    assert_eq!(s.count(B, b"EVALSHA"), 1);
    assert_eq!(s.count(A, b"SUNSUBSCRIBE"), 1);
    // Behind the subscription and the members' presence at B.
    let seen = &s.seen[&B];
    let at = |n: &[u8]| seen.windows(n.len()).rposition(|w| w == n);
    assert!(at(b"SSUBSCRIBE") < at(b"EVALSHA"));
    assert!(s.messages().is_empty(), "no answer before B's");
}

#[test]
fn messages_from_the_importing_master_wait_for_the_old_ones() {
    let mut s = Scripted::up();
    let ch = channel_on(A, "room:");
    let slot = channel_slot("sb:", &ch);
    let name = pubsub(&ch);
    s.join(&ch, A);
    // Another node's notice: subscribe at B too.
    let notice = [&[0u8][..], format!("ASK {slot} 127.0.0.1:{B}").as_bytes()].concat();
    s.reply(A, &push(b"smessage", &name, &bulk(&notice)));
    assert_eq!(s.count(B, b"SSUBSCRIBE"), 1);
    assert!(s.messages().is_empty(), "a notice is not an event");
    s.reply(B, &push(b"ssubscribe", &name, b":1\r\n"));
    let event = |n: u32| format!("{{\"type\":\"user_action\",\"n\":{n}}}").into_bytes();
    // B's message waits; A's last one is delivered first.
    s.reply(B, &push(b"smessage", &name, &bulk(&event(2))));
    assert!(s.messages().is_empty(), "held");
    s.reply(A, &push(b"smessage", &name, &bulk(&event(1))));
    let first = s.messages();
    assert_eq!(first.len(), 1, "{first:?}");
    // A lets go: B's message follows, A is asked again (and says MOVED).
    s.reply(A, &push(b"sunsubscribe", &name, b":0\r\n"));
    let then = s.messages();
    assert!(
        matches!(&then[..], [Msg::Worker(ToWorker::Deliver { .. })]),
        "{then:?}"
    );
    assert_eq!(s.count(A, b"SSUBSCRIBE"), 1);
    s.reply(A, format!("-MOVED {slot} 127.0.0.1:{B}\r\n").as_bytes());
    // Moved to B with its member: subscribed there, presence registered,
    // and B's messages delivered straight away.
    assert_eq!(s.count(B, b"SSUBSCRIBE"), 2);
    assert_eq!(s.count(B, b"ZADD"), 1, "the member registered at B");
    s.reply(B, &push(b"smessage", &name, &bulk(&event(3))));
    assert_eq!(s.messages().len(), 1);
}

#[test]
fn an_unannounced_move_keeps_requests_for_a_quiet_time() {
    let mut s = Scripted::up();
    let ch = channel_on(A, "room:");
    let slot = channel_slot("sb:", &ch);
    let name = pubsub(&ch);
    s.join(&ch, A);
    // The slot handed over with no ASK before: Redis drops the
    // subscription, the owner asks again, the refusal names B.
    s.reply(A, &push(b"sunsubscribe", &name, b":0\r\n"));
    assert_eq!(s.count(A, b"SSUBSCRIBE"), 1);
    s.reply(A, format!("-MOVED {slot} 127.0.0.1:{B}\r\n").as_bytes());
    assert_eq!(s.count(B, b"SSUBSCRIBE"), 1, "moved without a re-join");
    // Requests wait 100 ms for the other nodes to subscribe at B, in
    // their order.
    s.publish(&ch, 2);
    s.publish(&ch, 3);
    assert_eq!(s.count(B, b"EVALSHA"), 0);
    s.tick(Duration::from_millis(50));
    assert_eq!(s.count(B, b"EVALSHA"), 0);
    s.tick(Duration::from_millis(60));
    assert_eq!(s.count(B, b"EVALSHA"), 2);
    let seen = &s.seen[&B];
    let at = |n: &[u8]| seen.windows(n.len()).position(|w| w == n);
    assert!(at(b"{\"seq\":2}") < at(b"{\"seq\":3}"));
}

#[test]
fn tryagain_keeps_a_senders_order() {
    let mut s = Scripted::up();
    let ch = channel_on(A, "room:");
    s.join(&ch, A);
    s.publish(&ch, 2);
    s.reply(
        A,
        b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
    );
    // The next action waits behind the first.
    s.publish(&ch, 3);
    assert_eq!(s.count(A, b"EVALSHA"), 1);
    s.tick(Duration::from_millis(25));
    assert_eq!(s.count(A, b"EVALSHA"), 3);
    let seen = &s.seen[&A];
    let last = |n: &[u8]| seen.windows(n.len()).rposition(|w| w == n);
    assert!(
        last(b"{\"seq\":2}") < last(b"{\"seq\":3}"),
        "sent again in order"
    );
}

#[test]
fn a_master_down_refuses_its_channels_only() {
    let mut s = Scripted::up();
    let on_a = channel_on(A, "a:");
    let on_b = channel_on(B, "b:");
    s.join(&on_a, A);
    s.join(&on_b, B);
    let token = s.token(A);
    s.owner.handle_closed(token, s.now, &mut s.out);
    s.pump();
    s.messages();
    s.publish(&on_a, 2);
    let got = s.messages();
    assert!(
        matches!(&got[..], [m] if reply_text(m).contains("unavailable")),
        "{got:?}"
    );
    s.publish(&on_b, 3);
    assert_eq!(s.count(B, b"EVALSHA"), 1, "the other master carries on");
    assert!(s.messages().is_empty());
}
