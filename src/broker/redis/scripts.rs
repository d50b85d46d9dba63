//! The Lua scripts that make a channel's Redis state change atomically.
//!
//! Each runs in one round trip and one Redis step, so no other client's
//! command falls between its parts: a join's presence entry, its `join`
//! event and the member list it reads; an action's offset, its history entry
//! and its publication. They are loaded with `SCRIPT LOAD` whenever the link
//! comes up and called with `EVALSHA`.
//!
//! Keys of one channel C (with the prefix P): `P{C}:pr` a sorted set of
//! presence entries scored by expiry (ms since the epoch), `P{C}:hm` a hash
//! with `offset` and `epoch`, `P{C}:hs` a stream of the last N events with
//! ids `<offset>-0`, and the pub/sub channel `P{C}:ch`. The braces keep a
//! channel's keys in one Redis Cluster slot.
//!
//! A presence entry is the JSON text `"user":…,"conn":…[,"info":…]`, the
//! tail that both the member list and the presence events are built from.

/// KEYS: presence, pub/sub, meta, stream.
/// ARGV: now_ms, expiry_ms, entry ('' = rejoin: add nothing), join event
/// ('' = none), want members (1/0), history N (0 = none), epoch candidate,
/// since offset ('' = none), since epoch, key ttl s.
/// Returns {members, offset, epoch, recovered (-1 none, 0, 1), replay}.
pub const JOIN: &str = r#"
local ttl = tonumber(ARGV[10])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ttl)
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[4])
end
local members = {}
if ARGV[5] == '1' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
end
local offset, epoch, recovered, replay = 0, '', -1, {}
if tonumber(ARGV[6]) > 0 then
  redis.call('HSETNX', KEYS[3], 'epoch', ARGV[7])
  redis.call('EXPIRE', KEYS[3], ttl)
  epoch = redis.call('HGET', KEYS[3], 'epoch')
  offset = tonumber(redis.call('HGET', KEYS[3], 'offset') or '0')
  if ARGV[8] ~= '' then
    local since = tonumber(ARGV[8])
    recovered = 0
    if ARGV[9] == epoch and since <= offset then
      if since == offset then
        recovered = 1
      else
        local entries = redis.call('XRANGE', KEYS[4], (since + 1) .. '-0', '+')
        if #entries > 0 and entries[1][1] == (since + 1) .. '-0' then
          recovered = 1
          for i, e in ipairs(entries) do
            replay[i] = e[2][2]
          end
        end
      end
    end
  end
end
return {members, offset, epoch, recovered, replay}
"#;

/// KEYS: meta, stream, pub/sub. ARGV: event without its end (ends in
/// `"offset":`), history N, epoch candidate, key ttl s.
/// Returns the offset given to the event.
pub const PUBLISH: &str = r#"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3])
local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local event = ARGV[1] .. off .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], off .. '-0', 'd', event)
redis.call('PUBLISH', KEYS[3], event)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return off
"#;

/// KEYS: presence, pub/sub. ARGV: event. A Redis Cluster shard's publish
/// of an action without history: the same `SPUBLISH`, behind a key the
/// channel keeps (its presence set), so that once that key has moved to an
/// importing master the old one answers `ASK` and the node learns of the
/// move before the slot is handed over (docs/scaling.md, "Live
/// resharding"). With one Redis a plain `PUBLISH` does it.
pub const RELAY: &str = r#"
return redis.call('PUBLISH', KEYS[2], ARGV[1])
"#;

/// KEYS: presence, pub/sub. ARGV: now_ms, channel as a JSON string,
/// presence on (1/0). Removes expired entries (a dead node's members) and
/// publishes their `leave` events; being one step, only one node does it.
/// Returns how many left.
pub const REAP: &str = r#"
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
  if ARGV[3] == '1' then
    for _, m in ipairs(dead) do
      redis.call('PUBLISH', KEYS[2], '{"type":"presence","channel":' .. ARGV[2] .. ',"event":"leave",' .. m .. '}')
    end
  end
end
return #dead
"#;

/// ARGV: key prefix, now_ms. Returns a flat list of channel name and live
/// member count for every channel with members, cluster-wide. The prefix
/// may hold glob characters (`--redis-prefix` is any visible ASCII): they
/// are escaped, so `a*` does not list the channels of prefix `ab`.
pub const CHANNELS: &str = r#"
local out, cursor = {}, '0'
local pattern = (string.gsub(ARGV[1], '[%*%?%[%]\\]', '\\%0')) .. '{*}:pr'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    local n = redis.call('ZCOUNT', key, ARGV[2], '+inf')
    if n > 0 then
      out[#out + 1] = string.sub(key, #ARGV[1] + 2, -5)
      out[#out + 1] = n
    end
  end
until cursor == '0'
return out
"#;

/// A script by what it does, so a call names its script instead of an
/// index into a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Join,
    Publish,
    Reap,
    Channels,
    Relay,
}

impl Script {
    /// Every script, in load order.
    pub const ALL: [Script; 5] = [
        Script::Join,
        Script::Publish,
        Script::Reap,
        Script::Channels,
        Script::Relay,
    ];

    /// The script's text; `sharded`: the form for a Redis Cluster shard,
    /// which publishes with `SPUBLISH` (received by `SSUBSCRIBE` on the
    /// channel's shard only) and lets the channel scan read the keys of
    /// every slot of its node.
    pub fn source(self, sharded: bool) -> Cow<'static, str> {
        let text = match self {
            Script::Join => JOIN,
            Script::Publish => PUBLISH,
            Script::Reap => REAP,
            Script::Channels => CHANNELS,
            Script::Relay => RELAY,
        };
        match (sharded, self) {
            (false, _) => Cow::Borrowed(text),
            (true, Script::Channels) => Cow::Owned(format!(
                "#!lua flags=allow-cross-slot-keys,no-writes\n{text}"
            )),
            (true, _) => Cow::Owned(text.replace("'PUBLISH'", "'SPUBLISH'")),
        }
    }
}

use std::borrow::Cow;

/// The SHA-1 of every script, as `EVALSHA` takes it.
#[derive(Debug, Clone)]
pub struct Shas([String; 5]);

impl Shas {
    /// The SHA-1s of the scripts in their plain or `sharded` form.
    pub fn new(sharded: bool) -> Self {
        Shas(Script::ALL.map(|s| sha1_hex(&s.source(sharded))))
    }

    pub fn of(&self, script: Script) -> &str {
        &self.0[script as usize]
    }
}

fn sha1_hex(script: &str) -> String {
    use sha1::Digest;
    data_encoding::HEXLOWER.encode(&sha1::Sha1::digest(script.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_has_its_own_sha1_in_lowercase_hex() {
        // SHA-1 of the empty string, to pin the hex form.
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let plain = Shas::new(false);
        let sharded = Shas::new(true);
        let all: Vec<&str> = Script::ALL
            .iter()
            .flat_map(|&s| [plain.of(s), sharded.of(s)])
            .collect();
        for (i, (s, sha)) in Script::ALL
            .iter()
            .flat_map(|s| [(s, false), (s, true)])
            .zip(&all)
            .enumerate()
        {
            assert_eq!(*sha, sha1_hex(&s.0.source(s.1)));
            assert!(!all[..i].contains(sha), "{s:?} shares a SHA-1");
        }
    }

    #[test]
    fn sharded_scripts_publish_to_the_shard() {
        for s in Script::ALL {
            let text = s.source(true);
            assert!(!text.contains("'PUBLISH'"), "{s:?}");
            assert_eq!(
                text.contains("'SPUBLISH'"),
                s.source(false).contains("'PUBLISH'")
            );
        }
    }
}
