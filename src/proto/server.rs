//! Server messages (PROTOCOL.md §1 `welcome`, §3 replies, §4 events, §5
//! recovery fields, §7 `error`).
//!
//! Each encoder **appends** one compact JSON object to `out`, so the worker
//! can reserve a WebSocket frame header in front of it and send the buffer
//! without a copy. Fields come in the order of PROTOCOL.md's examples.
//!
//! # Absent, never null
//!
//! An optional field that does not apply is left out, not written as `null`:
//! `id` when the request had none (or an invalid one), `members` when the
//! namespace keeps no presence, `offset`/`epoch` when the channel keeps no
//! history (§3: "absent (not null)"), `recovered` when the join had no
//! `since`, `info` when the member has none. The one `null`s are `user` and
//! `conn` of a `user_action` published over HTTP (§9).
//!
//! Strings are escaped as serde_json escapes them; the raw values (`action`,
//! `info`) are copied byte for byte and must be valid JSON already.

use super::error::ErrorCode;
use super::json::{write_string, write_u64};
use serde_json::value::RawValue;

/// One connection in a channel, as listed in `members` and presence events.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub user: &'a str,
    pub conn: &'a str,
    /// The token's `info` claim (§6), as raw JSON.
    pub info: Option<&'a RawValue>,
}

/// The history position a `joined` reports (§5).
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub offset: u64,
    pub epoch: &'a str,
}

/// Which way a member went, for a `presence` event (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceEvent {
    Join,
    Leave,
}

impl PresenceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceEvent::Join => "join",
            PresenceEvent::Leave => "leave",
        }
    }
}

/// `{"type":"welcome","conn":..,"user":..,"node":..,"heartbeat_s":N,"max_message_bytes":N}`
/// (§1), the first message after the upgrade.
pub fn welcome(
    out: &mut Vec<u8>,
    conn: &str,
    user: &str,
    node: &str,
    heartbeat_s: u64,
    max_message_bytes: usize,
) {
    out.extend_from_slice(br#"{"type":"welcome","conn":"#);
    write_string(out, conn);
    out.extend_from_slice(br#","user":"#);
    write_string(out, user);
    out.extend_from_slice(br#","node":"#);
    write_string(out, node);
    out.extend_from_slice(br#","heartbeat_s":"#);
    write_u64(out, heartbeat_s);
    out.extend_from_slice(br#","max_message_bytes":"#);
    write_u64(out, u64::try_from(max_message_bytes).unwrap_or(u64::MAX));
    out.push(b'}');
}

/// `{"type":"joined","id":N,"channel":..,"members":[..],"offset":N,"epoch":..,"recovered":B,"replayed":K}`
/// (§3, §5).
///
/// `members` is `None` when the namespace keeps no presence (`--no-presence`):
/// the field is then absent. `offset`/`epoch` are written only with
/// `history`, `recovered` and `replayed` only when `Some`.
pub fn joined(
    out: &mut Vec<u8>,
    id: Option<u64>,
    channel: &str,
    members: Option<&[Member<'_>]>,
    history: Option<History<'_>>,
    recovered: Option<bool>,
    replayed: Option<u64>,
) {
    let members = members.map(|m| move |out: &mut Vec<u8>| write_members(out, m));
    joined_with(out, id, channel, members, history, recovered, replayed);
}

/// [`joined`] with the member list given as an encoded JSON array (the
/// Redis broker keeps members as JSON text and never decodes them).
pub fn joined_raw(
    out: &mut Vec<u8>,
    id: Option<u64>,
    channel: &str,
    members: Option<&[u8]>,
    history: Option<History<'_>>,
    recovered: Option<bool>,
    replayed: Option<u64>,
) {
    let members = members.map(|m| move |out: &mut Vec<u8>| out.extend_from_slice(m));
    joined_with(out, id, channel, members, history, recovered, replayed);
}

fn joined_with(
    out: &mut Vec<u8>,
    id: Option<u64>,
    channel: &str,
    members: Option<impl FnOnce(&mut Vec<u8>)>,
    history: Option<History<'_>>,
    recovered: Option<bool>,
    replayed: Option<u64>,
) {
    out.extend_from_slice(br#"{"type":"joined""#);
    id_field(out, id);
    channel_field(out, channel);
    if let Some(write) = members {
        out.extend_from_slice(br#","members":"#);
        write(out);
    }
    if let Some(History { offset, epoch }) = history {
        offset_field(out, Some(offset));
        out.extend_from_slice(br#","epoch":"#);
        write_string(out, epoch);
    }
    if let Some(recovered) = recovered {
        out.extend_from_slice(if recovered {
            br#","recovered":true"#
        } else {
            br#","recovered":false"#
        });
    }
    if let Some(replayed) = replayed {
        out.extend_from_slice(br#","replayed":"#);
        write_u64(out, replayed);
    }
    out.push(b'}');
}

/// `{"type":"left","id":N,"channel":..}` (§3).
pub fn left(out: &mut Vec<u8>, id: Option<u64>, channel: &str) {
    out.extend_from_slice(br#"{"type":"left""#);
    id_field(out, id);
    channel_field(out, channel);
    out.push(b'}');
}

/// `{"type":"left","channel":..,"reason":..}` (§6, 1.1): a leave the client
/// did not ask for, so no `id`. The one reason PROTOCOL.md names is
/// `forbidden` (a refreshed token no longer allows the channel).
pub fn left_with_reason(out: &mut Vec<u8>, channel: &str, reason: &str) {
    out.extend_from_slice(br#"{"type":"left""#);
    channel_field(out, channel);
    out.extend_from_slice(br#","reason":"#);
    write_string(out, reason);
    out.push(b'}');
}

/// `{"type":"refreshed","id":N,"exp":N}` (§3, §6, 1.1): the new token's
/// expiry, in seconds since the Unix epoch.
pub fn refreshed(out: &mut Vec<u8>, id: Option<u64>, exp: u64) {
    out.extend_from_slice(br#"{"type":"refreshed""#);
    id_field(out, id);
    out.extend_from_slice(br#","exp":"#);
    write_u64(out, exp);
    out.push(b'}');
}

/// `{"type":"resync","channel":..}` (§5, 1.1): the node saw a gap in the
/// channel's offsets (or its broker link was down), so the member must join
/// again with `since` to fill it. Sent to every local member, encoded once.
pub fn resync(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"type":"resync""#);
    channel_field(out, channel);
    out.push(b'}');
}

/// `{"type":"ack","id":N,"channel":..,"offset":N}` (§3); `offset` only when
/// the channel keeps history. §3 sends an `ack` only to requests with an
/// `id`, which is the caller's decision.
pub fn ack(out: &mut Vec<u8>, id: Option<u64>, channel: &str, offset: Option<u64>) {
    out.extend_from_slice(br#"{"type":"ack""#);
    id_field(out, id);
    channel_field(out, channel);
    offset_field(out, offset);
    out.push(b'}');
}

/// `{"type":"presence_state","id":N,"channel":..,"members":[..]}` (§3).
pub fn presence_state(out: &mut Vec<u8>, id: Option<u64>, channel: &str, members: &[Member<'_>]) {
    presence_state_head(out, id, channel);
    write_members(out, members);
    out.push(b'}');
}

/// [`presence_state`] with the member list as an encoded JSON array.
pub fn presence_state_raw(out: &mut Vec<u8>, id: Option<u64>, channel: &str, members: &[u8]) {
    presence_state_head(out, id, channel);
    out.extend_from_slice(members);
    out.push(b'}');
}

fn presence_state_head(out: &mut Vec<u8>, id: Option<u64>, channel: &str) {
    out.extend_from_slice(br#"{"type":"presence_state""#);
    id_field(out, id);
    channel_field(out, channel);
    out.extend_from_slice(br#","members":"#);
}

/// `{"type":"pong","id":N}` (§3).
pub fn pong(out: &mut Vec<u8>, id: Option<u64>) {
    out.extend_from_slice(br#"{"type":"pong""#);
    id_field(out, id);
    out.push(b'}');
}

/// `{"type":"error","id":N,"code":..,"message":..}` (§7).
pub fn error(out: &mut Vec<u8>, id: Option<u64>, code: ErrorCode, message: &str) {
    out.extend_from_slice(br#"{"type":"error""#);
    id_field(out, id);
    out.extend_from_slice(br#","code":""#);
    out.extend_from_slice(code.as_str().as_bytes());
    out.extend_from_slice(br#"","message":"#);
    write_string(out, message);
    out.push(b'}');
}

/// `{"type":"user_action","channel":..,"user":..|null,"conn":..|null[,"info":..],"action":<raw>[,"offset":N]}`
/// (§4).
///
/// `user`/`conn` are `None` for actions published over HTTP (§9), which
/// writes `null`. `action` is copied byte for byte and must be one valid JSON
/// value (as [`parse`](super::parse) returns it).
pub fn user_action(
    out: &mut Vec<u8>,
    channel: &str,
    user: Option<&str>,
    conn: Option<&str>,
    info: Option<&RawValue>,
    action: &[u8],
    offset: Option<u64>,
) {
    user_action_open(out, channel, user, conn, info, action);
    offset_field(out, offset);
    out.push(b'}');
}

/// [`user_action`] for a history channel over Redis, whose offset only
/// Redis knows: everything up to `,"offset":`, which the publish script
/// (`broker/redis/scripts.rs`) completes with the offset and `}` in the
/// step that assigns it. The bytes are then [`user_action`]'s with that
/// offset.
pub fn user_action_until_offset(
    out: &mut Vec<u8>,
    channel: &str,
    user: Option<&str>,
    conn: Option<&str>,
    info: Option<&RawValue>,
    action: &[u8],
) {
    user_action_open(out, channel, user, conn, info, action);
    out.extend_from_slice(br#","offset":"#);
}

fn user_action_open(
    out: &mut Vec<u8>,
    channel: &str,
    user: Option<&str>,
    conn: Option<&str>,
    info: Option<&RawValue>,
    action: &[u8],
) {
    // One reservation for the common case of short names and no escapes.
    out.reserve(80 + channel.len() + action.len() + info.map_or(0, |i| i.get().len()));
    out.extend_from_slice(br#"{"type":"user_action""#);
    channel_field(out, channel);
    out.extend_from_slice(br#","user":"#);
    write_opt_string(out, user);
    out.extend_from_slice(br#","conn":"#);
    write_opt_string(out, conn);
    info_field(out, info);
    out.extend_from_slice(br#","action":"#);
    out.extend_from_slice(action);
}

/// `{"type":"presence","channel":..,"event":"join"|"leave","user":..,"conn":..[,"info":..]}`
/// (§4); `info` on `leave` too.
pub fn presence(out: &mut Vec<u8>, channel: &str, event: PresenceEvent, member: Member<'_>) {
    presence_with(out, channel, event, |out| member_fields(out, member));
}

/// [`presence`] with the member given as its [`member_fields`] (the Redis
/// broker's presence entry).
pub fn presence_raw(out: &mut Vec<u8>, channel: &str, event: PresenceEvent, fields: &[u8]) {
    presence_with(out, channel, event, |out| out.extend_from_slice(fields));
}

fn presence_with(
    out: &mut Vec<u8>,
    channel: &str,
    event: PresenceEvent,
    fields: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(br#"{"type":"presence""#);
    channel_field(out, channel);
    out.extend_from_slice(br#","event":""#);
    out.extend_from_slice(event.as_str().as_bytes());
    out.extend_from_slice(br#"","#);
    fields(out);
    out.push(b'}');
}

/// Appends `"user":..,"conn":..[,"info":..]`: one member's fields, which
/// presence events and member lists share. The Redis broker stores these
/// bytes as the member's presence entry and builds both from them (as does
/// the reap script, for the `leave` of a member whose node died).
pub fn member_fields(out: &mut Vec<u8>, member: Member<'_>) {
    out.extend_from_slice(br#""user":"#);
    write_string(out, member.user);
    out.extend_from_slice(br#","conn":"#);
    write_string(out, member.conn);
    info_field(out, member.info);
}

/// [`write_members`] from members given as their [`member_fields`].
pub fn write_members_raw<'a>(out: &mut Vec<u8>, members: impl IntoIterator<Item = &'a [u8]>) {
    out.push(b'[');
    for (i, fields) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        out.extend_from_slice(fields);
        out.push(b'}');
    }
    out.push(b']');
}

/// What an event written here is, read back from its bytes. Over Redis an
/// event travels as itself (every node, and an operator's `PUBLISH`, sends
/// the same JSON), so its kind and offset are read where they are written:
/// a presence event starts as [`presence`] starts it, and an action of a
/// history channel ends as [`user_action`] ends it, `,"offset":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Presence,
    /// A `user_action` (or anything else), with its offset when it ends in
    /// one.
    Action {
        offset: Option<u64>,
    },
}

impl Written {
    pub fn of(event: &[u8]) -> Written {
        if event.starts_with(br#"{"type":"presence""#) {
            return Written::Presence;
        }
        Written::Action {
            offset: trailing_offset(event),
        }
    }
}

/// The `N` of an event ending in `"offset":N}`.
fn trailing_offset(event: &[u8]) -> Option<u64> {
    let body = event.strip_suffix(b"}")?;
    let digits = body.len() - body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == body.len() || body.len() - digits > 20 {
        return None;
    }
    if !body[..digits].ends_with(br#""offset":"#) {
        return None;
    }
    std::str::from_utf8(&body[digits..]).ok()?.parse().ok()
}

/// Appends `[{"user":..,"conn":..[,"info":..]},...]`, the `members` array of
/// `joined` and `presence_state` (and of `GET /api/presence`, §9).
pub fn write_members(out: &mut Vec<u8>, members: &[Member<'_>]) {
    out.push(b'[');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        member_fields(out, *member);
        out.push(b'}');
    }
    out.push(b']');
}

/// `{"offset":N}`, or `{}` for a channel without history: the answer of
/// `POST /api/publish` (§9).
pub fn api_published(out: &mut Vec<u8>, offset: Option<u64>) {
    out.push(b'{');
    if let Some(o) = offset {
        out.extend_from_slice(br#""offset":"#);
        write_u64(out, o);
    }
    out.push(b'}');
}

/// `{"channel":..,"members":[..]}`: the answer of `GET /api/presence` (§9),
/// `members` already a JSON array.
pub fn api_presence(out: &mut Vec<u8>, channel: &str, members: &[u8]) {
    out.extend_from_slice(br#"{"channel":"#);
    write_string(out, channel);
    out.extend_from_slice(br#","members":"#);
    out.extend_from_slice(members);
    out.push(b'}');
}

/// `{"channels":[{"channel":..,"members":N},..]}`: the answer of
/// `GET /api/channels` (§9), in the order given.
pub fn api_channels<'a>(out: &mut Vec<u8>, channels: impl IntoIterator<Item = (&'a str, usize)>) {
    out.extend_from_slice(br#"{"channels":["#);
    for (i, (name, members)) in channels.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"channel":"#);
        write_string(out, name);
        out.extend_from_slice(br#","members":"#);
        write_u64(out, members as u64);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

fn id_field(out: &mut Vec<u8>, id: Option<u64>) {
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        write_u64(out, id);
    }
}

fn channel_field(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#","channel":"#);
    write_string(out, channel);
}

fn offset_field(out: &mut Vec<u8>, offset: Option<u64>) {
    if let Some(offset) = offset {
        out.extend_from_slice(br#","offset":"#);
        write_u64(out, offset);
    }
}

fn info_field(out: &mut Vec<u8>, info: Option<&RawValue>) {
    if let Some(info) = info {
        out.extend_from_slice(br#","info":"#);
        out.extend_from_slice(info.get().as_bytes());
    }
}

fn write_opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
