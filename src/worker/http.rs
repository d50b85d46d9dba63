//! HTTP traffic of one worker: the upgrade to WebSocket, the demo page,
//! `/healthz`, and the API of PROTOCOL.md §9.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::conn::{Phase, WsConn};
use super::Worker;
use crate::auth::{self, Identity};
use crate::broker::{Answer, ConnId, MemberInfo, Origin, Query, ToOwner};
use crate::conn::{Rate, Session};
use crate::http::{self, Head, Method, Response, Route, UpgradeError};
use crate::metrics::{self, Gauges, HttpRoute};
use crate::proto::{self, server};
use crate::ws::{self, Role};

/// An API request waiting for owners to answer, with how to send the
/// answer once they have.
#[derive(Debug)]
pub struct PendingApi {
    wait: Awaited,
    keep_alive: bool,
    /// A HEAD request: the answer describes the body without sending it.
    head_only: bool,
}

/// What the pending API request waits for.
#[derive(Debug)]
enum Awaited {
    Publish,
    Presence(Arc<str>),
    /// Answers still to come from `remaining` owners, summed into `acc`.
    Channels {
        remaining: usize,
        acc: Vec<(Arc<str>, usize)>,
    },
}

impl Worker {
    /// Serves one request from the front of `data`; returns the bytes used,
    /// 0 when more are needed (or an answer is still pending).
    pub(super) fn on_http(&mut self, key: usize, data: &[u8]) -> usize {
        let Some(conn) = self.conns.get_mut(key) else {
            return 0;
        };
        // `Worker::on_data` holds input while an answer is pending.
        debug_assert!(conn.api_pending.is_none());
        let (head, head_len) = match http::parse_head(data) {
            Ok(None) => return 0,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                self.respond(
                    key,
                    Response::text(e.status(), http::reason(e.status())),
                    false,
                    false,
                );
                return data.len();
            }
        };
        let route = http::route(&head, self.config.autobahn_echo);
        self.metrics.http(match route {
            Route::WebSocket | Route::Echo => HttpRoute::Ws,
            Route::Demo => HttpRoute::Demo,
            Route::Healthz => HttpRoute::Healthz,
            Route::Metrics => HttpRoute::Metrics,
            Route::ApiPublish => HttpRoute::ApiPublish,
            Route::ApiPresence => HttpRoute::ApiPresence,
            Route::ApiChannels => HttpRoute::ApiChannels,
            Route::NotFound => HttpRoute::NotFound,
            Route::MethodNotAllowed { .. } => HttpRoute::Other,
        });
        if matches!(route, Route::WebSocket | Route::Echo) {
            self.upgrade(key, &head, route == Route::Echo);
            return head_len;
        }
        let body_len = match http::body_len(&head) {
            Ok(n) => n,
            Err(resp) => {
                self.respond(key, resp, false, false);
                return data.len();
            }
        };
        let Some(body) = data.get(head_len..head_len + body_len) else {
            return 0;
        };
        let keep_alive = http::keep_alive(&head);
        let head_only = head.method == Method::Head;
        let resp = match route {
            Route::Demo => Some(Response::html(http::DEMO_PAGE)),
            Route::Healthz => Some(if self.shared.draining.load(Ordering::Relaxed) {
                Response::text(503, "draining")
            } else if !self.broker_up() {
                Response::text(503, "broker unreachable")
            } else {
                Response::text(200, "ok")
            }),
            Route::Metrics => Some(self.metrics_response()),
            Route::ApiPublish | Route::ApiPresence | Route::ApiChannels => {
                self.api(key, &head, route, body, keep_alive, head_only)
            }
            // JSON under `/api` (§9: every answer there is JSON), text
            // elsewhere; `Allow` on 405.
            Route::NotFound | Route::MethodNotAllowed { .. } => route.error_response(&head.path),
            Route::WebSocket | Route::Echo => None,
        };
        if let Some(resp) = resp {
            self.respond(key, resp, keep_alive, head_only);
        }
        head_len + body_len
    }

    fn metrics_response(&self) -> Response {
        let gauges = Gauges {
            connections: self.shared.ws_connections.load(Ordering::Relaxed) as u64,
            channels: self
                .shared
                .owned_channels
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as u64)
                .sum(),
            draining: self.shared.draining.load(Ordering::Relaxed),
            broker_up: self.broker_up(),
        };
        let body = metrics::render(&self.shared.metrics, &gauges);
        let mut resp = Response::text(200, body);
        resp.content_type = metrics::CONTENT_TYPE;
        resp
    }

    /// Queues a response; closes after it unless kept alive. A client that
    /// leaves answers unread is held back by `Worker::on_data`, not here.
    fn respond(&mut self, key: usize, resp: Response, keep_alive: bool, head_only: bool) {
        let deadline = self.now + self.config.handshake_timeout;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let bytes = resp.encode(keep_alive, head_only);
        conn.out.push_unbounded(bytes.into());
        if keep_alive {
            conn.phase = Phase::Http { deadline };
            self.mark_dirty(key);
        } else {
            self.close_after_response(key);
        }
    }

    fn upgrade(&mut self, key: usize, head: &Head, echo: bool) {
        let mut up = match http::check_upgrade(head) {
            Ok(up) => up,
            Err(UpgradeError::NotUpgrade) => {
                return self.respond(
                    key,
                    Response::text(426, "upgrade to websocket").with_header("Upgrade", "websocket"),
                    false,
                    false,
                )
            }
            Err(UpgradeError::UnsupportedVersion) => {
                return self.respond(
                    key,
                    Response::text(426, "websocket version 13 only")
                        .with_header("Sec-WebSocket-Version", "13"),
                    false,
                    false,
                )
            }
            Err(UpgradeError::BadRequest(why)) => {
                return self.respond(key, Response::text(400, why), false, false)
            }
        };
        if self.config.compression {
            if let Err(UpgradeError::BadRequest(why)) = up.negotiate_deflate(head) {
                return self.respond(key, Response::text(400, why), false, false);
            }
        }
        if !http::origin_allowed(head.origin.as_deref(), &self.config.allowed_origin) {
            return self.respond(key, Response::text(403, "origin not allowed"), false, false);
        }
        let seq = self.next_conn_seq;
        let conn_id = format!("{}-{}-{:x}", self.config.node, self.index, seq);
        let Identity {
            user,
            info,
            channels: allowed,
        } = match self.identify(head, &conn_id) {
            Ok(identity) => identity,
            Err(resp) => return self.respond(key, resp, false, false),
        };
        if self.shared.draining.load(Ordering::Relaxed) {
            return self.respond(key, Response::text(503, "draining"), false, false);
        }
        let cap = self.config.max_connections;
        let open = self.shared.ws_connections.fetch_add(1, Ordering::Relaxed);
        if cap > 0 && open >= cap {
            self.shared.ws_connections.fetch_sub(1, Ordering::Relaxed);
            return self.respond(
                key,
                Response::text(503, "too many connections"),
                false,
                false,
            );
        }
        self.next_conn_seq += 1;
        let member = Arc::new(MemberInfo {
            user: user.into_boxed_str(),
            conn: conn_id.into_boxed_str(),
            info,
        });
        let welcome = ws::text_frame_with(|b| {
            server::welcome(
                b,
                &member.conn,
                &member.user,
                &self.config.node,
                self.config.heartbeat.as_secs(),
                self.config.max_message_bytes,
            )
        });
        let rate = Rate {
            per_second: self.config.rate,
            burst: self.config.burst,
        };
        let now = self.now;
        let max = if echo {
            super::ws::ECHO_MAX_MESSAGE
        } else {
            self.config.max_message_bytes
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.counted = true;
        conn.out
            .push_unbounded(http::switching_protocols(&up).into());
        if !echo {
            conn.out.push_unbounded(welcome);
        }
        let mut decoder = ws::Decoder::new(Role::Server, max);
        decoder.set_deflate(up.deflate.is_some());
        conn.deflate = up.deflate.map(|agreed| agreed.window());
        conn.phase = Phase::Ws(Box::new(WsConn {
            decoder,
            session: Session::new(member, allowed, rate, now),
            echo,
            last_recv: now,
            next_ping: now + self.config.heartbeat,
        }));
        self.mark_dirty(key);
    }

    /// Who the client is: from its token when authentication is on
    /// (PROTOCOL.md §6, `user` ignored), else from `?user=`.
    ///
    /// Every token refusal is the same bare 401: the reason goes to the
    /// debug log only, so that a client probing with forged tokens learns
    /// nothing about which check failed.
    fn identify(&self, head: &Head, conn_id: &str) -> Result<Identity, Response> {
        if let Some(secret) = &self.config.hmac_secret {
            let token = http::query_param(&head.query, "token").unwrap_or_default();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return auth::verify(&token, secret.as_bytes(), now).map_err(|e| {
                tracing::debug!(reason = %e, "token refused");
                Response::text(401, "a valid token is required")
            });
        }
        let user = match http::query_param(&head.query, "user") {
            Some(user) if proto::valid_user(&user) => user,
            // Absent; a `user` whose value is not UTF-8 is invalid.
            None if !has_param(&head.query, "user") => format!("anon-{conn_id}"),
            _ => {
                return Err(Response::text(
                    400,
                    "invalid user: 1-64 bytes of A-Z a-z 0-9 _ - : . @ = /",
                ))
            }
        };
        Ok(Identity {
            user,
            info: None,
            channels: None,
        })
    }

    /// §9's API: checks the key, then asks the owners; the response is sent
    /// when they answer (see [`Worker::on_answer`]).
    fn api(
        &mut self,
        key: usize,
        head: &Head,
        route: Route,
        body: &[u8],
        keep_alive: bool,
        head_only: bool,
    ) -> Option<Response> {
        if let Err(resp) = http::check_api_key(head, self.config.api_key.as_deref()) {
            return Some(resp);
        }
        let from = self.conn_id(key)?;
        let workers = self.outbox.workers();
        let wait = match route {
            Route::ApiPublish => {
                let proto::Publish { channel, action } = match http::parse_publish(body) {
                    Ok(parsed) => parsed,
                    Err(resp) => return Some(resp),
                };
                if !self.broker_up() {
                    return Some(Response::api_error(
                        503,
                        "unavailable",
                        "the broker is unreachable",
                    ));
                }
                let channel: Arc<str> = Arc::from(&*channel);
                let owner = self.outbox.owner_of(&channel);
                self.outbox.to_owner(
                    owner,
                    ToOwner::Publish {
                        channel,
                        origin: Origin::Api(from),
                        id: None,
                        action: bytes::Bytes::copy_from_slice(action.get().as_bytes()),
                    },
                );
                Awaited::Publish
            }
            Route::ApiPresence => {
                let Some(channel) = http::query_param(&head.query, "channel") else {
                    return Some(Response::api_error(
                        400,
                        "bad_request",
                        "missing channel parameter",
                    ));
                };
                if !proto::valid_channel(&channel) {
                    return Some(Response::api_error(
                        400,
                        "invalid_channel",
                        "invalid channel name",
                    ));
                }
                let channel: Arc<str> = channel.into();
                let owner = self.outbox.owner_of(&channel);
                self.outbox.to_owner(
                    owner,
                    ToOwner::Query {
                        query: Query::Presence(channel.clone()),
                        from,
                    },
                );
                Awaited::Presence(channel)
            }
            _ => {
                // The embedded broker asks every owner; Redis knows the
                // whole cluster, so one owner asks it.
                let asked = if self.config.redis.is_some() {
                    vec![self.index]
                } else {
                    (0..workers).collect()
                };
                for &w in &asked {
                    self.outbox.to_owner(
                        w,
                        ToOwner::Query {
                            query: Query::Channels,
                            from,
                        },
                    );
                }
                Awaited::Channels {
                    remaining: asked.len(),
                    acc: Vec::new(),
                }
            }
        };
        if let Some(conn) = self.conns.get_mut(key) {
            conn.api_pending = Some(PendingApi {
                wait,
                keep_alive,
                head_only,
            });
        }
        None
    }

    /// An owner answered an API request of connection `to`.
    pub(super) fn on_answer(&mut self, to: ConnId, answer: Answer) {
        let key = to.key();
        let Some(conn) = self.conn_for(to) else {
            return;
        };
        let Some(pending) = conn.api_pending.take() else {
            return;
        };
        let PendingApi {
            wait,
            keep_alive,
            head_only,
        } = pending;
        let resp = match (wait, answer) {
            (Awaited::Publish, Answer::Published(offset)) => {
                let body = match offset {
                    Some(o) => format!("{{\"offset\":{o}}}"),
                    None => "{}".to_string(),
                };
                Response::json(200, body.into_bytes())
            }
            (Awaited::Presence(_), Answer::Presence(None)) => {
                Response::api_error(403, "forbidden", "presence is off in this namespace")
            }
            (Awaited::Presence(channel), Answer::Presence(Some(array))) => {
                let mut body = Vec::with_capacity(32 + channel.len() + array.len());
                body.extend_from_slice(b"{\"channel\":");
                proto::write_string(&mut body, &channel);
                body.extend_from_slice(b",\"members\":");
                body.extend_from_slice(&array);
                body.push(b'}');
                Response::json(200, body)
            }
            (_, Answer::Unavailable) => {
                Response::api_error(503, "unavailable", "the broker is unreachable")
            }
            (Awaited::Channels { remaining, mut acc }, Answer::Channels(list)) => {
                acc.extend(list);
                if remaining > 1 {
                    conn.api_pending = Some(PendingApi {
                        wait: Awaited::Channels {
                            remaining: remaining - 1,
                            acc,
                        },
                        keep_alive,
                        head_only,
                    });
                    return;
                }
                channels_body(acc)
            }
            (wait, answer) => {
                tracing::error!(?wait, ?answer, "API answer does not match the request");
                Response::api_error(500, "internal", "internal error")
            }
        };
        self.respond(key, resp, keep_alive, head_only);
        // Pipelined requests waited behind this one.
        self.resume_input(key);
    }

    /// Serves input that arrived while a response was pending or the
    /// response queue was full, then reads what was left in the kernel.
    pub(super) fn resume_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let held = std::mem::take(&mut conn.held);
        if !conn.inbuf.is_empty() {
            let mut buf = std::mem::take(&mut conn.inbuf);
            let used = self.on_data(key, &mut buf);
            if let Some(conn) = self.conns.get_mut(key) {
                buf.drain(..used.min(buf.len()));
                conn.inbuf = buf;
            }
        }
        if held {
            self.on_readable(key, false);
        }
    }
}

/// Whether `query` has a parameter called `name` (spelled without
/// escapes), whatever its value.
fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == name)
}

/// `{"channels":[{"channel":..,"members":N},...]}` (§9), sorted by name so
/// that the answer does not depend on the order the owners answered in.
fn channels_body(mut acc: Vec<(Arc<str>, usize)>) -> Response {
    acc.sort();
    let mut body = b"{\"channels\":[".to_vec();
    for (i, (name, members)) in acc.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"channel\":");
        proto::write_string(&mut body, name);
        body.extend_from_slice(b",\"members\":");
        proto::write_u64(&mut body, *members as u64);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    Response::json(200, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_param_matches_names_not_substrings() {
        assert!(has_param("user=a", "user"));
        assert!(has_param("x=1&user", "user"));
        assert!(has_param("token=t&user=", "user"));
        // Caught: `contains("user=")` took these for a `user` parameter.
        assert!(!has_param("xuser=1", "user"));
        assert!(!has_param("a=user=1", "user"));
        assert!(!has_param("", "user"));
    }

    #[test]
    fn channels_body_is_sorted_json() {
        let resp = channels_body(vec![("b:1".into(), 2), ("a:1".into(), 1)]);
        assert_eq!((resp.status, resp.content_type), (200, "application/json"));
        assert_eq!(
            std::str::from_utf8(&resp.body).unwrap(),
            r#"{"channels":[{"channel":"a:1","members":1},{"channel":"b:1","members":2}]}"#
        );
        assert_eq!(channels_body(Vec::new()).body, br#"{"channels":[]}"#);
    }
}
