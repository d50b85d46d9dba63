//! What the link's state changes cost the owner: scripts and subscriptions
//! when it comes up, answers for lost commands when it goes down, and the
//! presence upkeep (refresh every TTL/3, reap every TTL/6, leaves owed from
//! an outage).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::link::LinkEvent;
use super::scripts::Script;
use super::{Note, Now, RedisOwner, Sent, Tag, KEY_TTL, OWED_DELAY};
use crate::broker::Outbox;
use crate::resp::Event;

impl RedisOwner {
    pub(super) fn on_link_events(&mut self, now: Now, out: &mut Outbox) {
        let events = self.link.take_events();
        for ev in events {
            match ev {
                LinkEvent::Up => self.on_up(now, out),
                LinkEvent::Down(lost) => {
                    self.on_down(lost.into_iter().map(|s| s.tag).collect(), out)
                }
                LinkEvent::Session(Event::Reply { tag, value }) => {
                    if let Some((sent, value)) = self.redirected(tag, value) {
                        self.on_reply(sent.tag, value, now, out);
                    }
                }
                LinkEvent::Session(Event::Push(push)) => self.on_push(push, out),
                LinkEvent::Session(Event::PubSubRefused {
                    channels, error, ..
                }) if self.sharded => {
                    // An `SSUBSCRIBE` answered `MOVED`: the slot is elsewhere.
                    tracing::debug!(error = %String::from_utf8_lossy(&error), "shard subscription refused");
                    self.notes.push(Note::Refused { channels, error });
                }
                LinkEvent::Session(other) => {
                    tracing::warn!(event = ?other, "unexpected redis event");
                }
            }
        }
    }

    /// Queues `SCRIPT LOAD` of every script, ahead of any `EVALSHA` sent
    /// after it on this connection.
    pub(super) fn load_scripts(&mut self) {
        self.reloading = true;
        let last = Script::ALL.len() - 1;
        for (i, script) in Script::ALL.iter().enumerate() {
            let tag = if i == last {
                Tag::ScriptsLoaded
            } else {
                Tag::Ignore
            };
            let source = script.source(self.sharded);
            if self
                .send(&[b"SCRIPT", b"LOAD", source.as_bytes()], tag)
                .is_err()
            {
                self.reloading = false;
            }
        }
    }

    pub(super) fn on_up(&mut self, now: Now, out: &mut Outbox) {
        // Whatever was published while the link was down never reaches
        // this node: the members of every history channel fill the gap
        // themselves, told before any event of the new connection.
        for (name, ch) in &mut self.channels {
            if let Some(watch) = ch.watch.as_mut() {
                watch.forget();
                out.resync(name, &ch.per_worker);
            }
        }
        self.load_scripts();
        let names: Vec<Vec<u8>> = self
            .channels
            .values()
            .map(|c| c.keys.pubsub.clone())
            .collect();
        for chunk in names.chunks(256) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let _ = self.subscribe(&refs, true);
        }
        // Register live members again at once: Redis may have restarted.
        self.refresh(now);
        // Out of the member lists at once; the events once the other
        // nodes are back too.
        for i in 0..self.owed.len() {
            let (presence, entry) = (self.owed[i].presence.clone(), self.owed[i].entry.clone());
            let _ = self.send(&[b"ZREM", &presence, &entry], Tag::Ignore);
        }
        let mono = now.mono;
        self.next_refresh = mono + self.ttl() / 3;
        self.next_reap = mono + self.ttl() / 6;
        self.owed_at = mono + OWED_DELAY;
        if !self.up {
            self.up = true;
            self.links_down.fetch_sub(1, Ordering::SeqCst);
        }
        if self.ever_up {
            self.metrics.redis_reconnect();
        }
        self.ever_up = true;
    }

    pub(super) fn on_down(&mut self, lost: Vec<Tag>, out: &mut Outbox) {
        if self.up {
            self.up = false;
            self.links_down.fetch_add(1, Ordering::SeqCst);
        }
        self.reloading = false;
        // Pushes of the old connection never come now.
        for ch in self.channels.values_mut() {
            ch.own_joins.clear();
        }
        for tag in lost {
            // A channel moved to another shard meanwhile: its holder
            // settles the request.
            if self.sharded
                && tag
                    .channel()
                    .is_some_and(|c| !self.channels.contains_key(c))
            {
                self.notes.push(Note::Orphan(tag));
                continue;
            }
            self.fail_tag(tag, out);
        }
    }

    /// Publishes the leaves of the outage; a link that fails meanwhile
    /// keeps them owed.
    pub(super) fn pay_owed(&mut self) {
        while let Some(o) = self.owed.pop() {
            let Some(event) = &o.event else { continue };
            let publish = self.publish_command();
            if self
                .send(&[publish, &o.pubsub, event], Tag::Ignore)
                .is_err()
            {
                self.owed.push(o);
                return;
            }
        }
    }

    /// Re-adds every local member's presence entry with a fresh expiry.
    pub(super) fn refresh(&mut self, now: Now) {
        let names: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for name in names {
            self.refresh_channel(&name, now);
        }
    }

    /// Re-adds one channel's local members with a fresh expiry.
    pub(super) fn refresh_channel(&mut self, name: &str, now: Now) {
        let expiry = self.expiry_ms(now).to_string();
        let ttl = KEY_TTL.as_secs().to_string();
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        if ch.members.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 2 * ch.members.len());
        args.push(b"ZADD");
        args.push(&ch.keys.presence);
        for m in ch.members.values() {
            args.push(expiry.as_bytes());
            args.push(&m.entry);
        }
        let _ = self.link.command(&args, Sent::ignored());
        let _ = self.link.command(
            &[b"EXPIRE", &ch.keys.presence, ttl.as_bytes()],
            Sent::ignored(),
        );
        // A channel with members is not idle, however quiet: its history
        // (and so its epoch) lasts as long as on the embedded broker.
        if ch.history.is_some() {
            for key in [&ch.keys.meta, &ch.keys.stream] {
                let _ = self
                    .link
                    .command(&[b"EXPIRE", key, ttl.as_bytes()], Sent::ignored());
            }
        }
    }

    /// Removes expired presence entries of our channels, publishing their
    /// `leave` events.
    pub(super) fn reap(&mut self, now: Now) {
        let now = now.unix_ms.to_string();
        let sha = self.shas.of(Script::Reap).to_owned();
        for (name, ch) in &self.channels {
            let mut channel_json = Vec::new();
            crate::proto::write_string(&mut channel_json, name);
            let presence = if ch.presence { "1" } else { "0" };
            let _ = self.link.command(
                &[
                    b"EVALSHA",
                    sha.as_bytes(),
                    b"2",
                    &ch.keys.presence,
                    &ch.keys.pubsub,
                    now.as_bytes(),
                    &channel_json,
                    presence.as_bytes(),
                ],
                Sent::ignored(),
            );
        }
    }
}
