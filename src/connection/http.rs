//! The HTTP phase of a connection: the upgrade to WebSocket, the demo page,
//! `/healthz`, `/metrics`, and the API of PROTOCOL.md §9.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ws::Ws;
use super::{Connection, Cx, Phase};
use crate::auth::Identity;
use crate::broker::{Answer, MemberInfo, Origin, Query, ToOwner};
use crate::http::{self, Head, Method, Param, Response, Route, UpgradeError};
use crate::metrics::{self, Gauges, HttpRoute};
use crate::node::Node;
use crate::proto::{self, server};
use crate::ws;

/// An API request waiting for owners to answer, with how to send the
/// answer once they have.
#[derive(Debug)]
pub(super) struct PendingApi {
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

impl Connection {
    /// Serves one request from the front of `data`; returns the bytes used,
    /// 0 when more are needed (or an answer is still pending).
    pub(super) fn on_http(&mut self, data: &[u8], cx: &mut Cx<'_>) -> usize {
        // `Connection::on_data` holds input while an answer is pending.
        debug_assert!(self.api.is_none());
        let (head, head_len) = match http::parse_head(data) {
            Ok(None) => return 0,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                let resp = Response::text(e.status(), http::reason(e.status()));
                self.respond(resp, false, false, cx);
                return data.len();
            }
        };
        let config = &cx.node.config;
        let route = http::route(&head, config.autobahn_echo);
        cx.metrics.http(match route {
            Route::WebSocket | Route::Echo => HttpRoute::Ws,
            Route::Static(_) => HttpRoute::Demo,
            Route::Healthz => HttpRoute::Healthz,
            Route::Metrics => HttpRoute::Metrics,
            Route::ApiPublish => HttpRoute::ApiPublish,
            Route::ApiPresence => HttpRoute::ApiPresence,
            Route::ApiChannels => HttpRoute::ApiChannels,
            Route::NotFound => HttpRoute::NotFound,
            Route::MethodNotAllowed { .. } => HttpRoute::Other,
        });
        if matches!(route, Route::WebSocket | Route::Echo) {
            self.upgrade(&head, route == Route::Echo, cx);
            return head_len;
        }
        let body_len = match http::body_len(&head) {
            Ok(n) => n,
            Err(resp) => {
                self.respond(resp, false, false, cx);
                return data.len();
            }
        };
        let Some(body) = data.get(head_len..head_len + body_len) else {
            return 0;
        };
        let keep_alive = http::keep_alive(&head);
        let head_only = head.method == Method::Head;
        let node = cx.node;
        let resp = match route {
            Route::Static(asset) => Some(asset.response(&head)),
            Route::Healthz => Some(if node.draining() {
                Response::text(503, "draining")
            } else if !node.broker_up() {
                Response::text(503, "broker unreachable")
            } else {
                Response::text(200, "ok")
            }),
            Route::Metrics => Some(metrics_response(node)),
            Route::ApiPublish | Route::ApiPresence | Route::ApiChannels => {
                self.api(&head, route, body, keep_alive, head_only, cx)
            }
            // JSON under `/api` (§9: every answer there is JSON), text
            // elsewhere; `Allow` on 405.
            Route::NotFound | Route::MethodNotAllowed { .. } => route.error_response(&head.path),
            Route::WebSocket | Route::Echo => None,
        };
        if let Some(resp) = resp {
            self.respond(resp, keep_alive, head_only, cx);
        }
        head_len + body_len
    }

    /// Queues a response; closes after it unless kept alive. A client that
    /// leaves answers unread is held back by `Connection::on_data`, not here.
    fn respond(&mut self, resp: Response, keep_alive: bool, head_only: bool, cx: &Cx<'_>) {
        let bytes = resp.encode(keep_alive, head_only);
        if keep_alive {
            self.push_unbounded(bytes.into());
            self.phase = Phase::Http {
                deadline: cx.now + cx.node.config.handshake_timeout,
            };
        } else {
            // Ends the exchange: half-close once written.
            self.close_with(bytes.into(), cx);
        }
    }

    fn upgrade(&mut self, head: &Head, echo: bool, cx: &mut Cx<'_>) {
        let mut up = match http::check_upgrade(head) {
            Ok(up) => up,
            Err(UpgradeError::NotUpgrade) => {
                let resp =
                    Response::text(426, "upgrade to websocket").with_header("Upgrade", "websocket");
                return self.respond(resp, false, false, cx);
            }
            Err(UpgradeError::UnsupportedVersion) => {
                let resp = Response::text(426, "websocket version 13 only")
                    .with_header("Sec-WebSocket-Version", "13");
                return self.respond(resp, false, false, cx);
            }
            Err(UpgradeError::BadRequest(why)) => {
                return self.respond(Response::text(400, why), false, false, cx)
            }
        };
        let node = cx.node;
        let config = &node.config;
        if config.compression {
            if let Err(UpgradeError::BadRequest(why)) = up.negotiate_deflate(head) {
                return self.respond(Response::text(400, why), false, false, cx);
            }
        }
        if !http::origin_allowed(head.origin.as_deref(), &config.allowed_origin) {
            let resp = Response::text(403, "origin not allowed");
            return self.respond(resp, false, false, cx);
        }
        let conn_id = format!("{}-{}-{:x}", config.node, self.id.worker(), *cx.conn_seq);
        let Identity {
            user,
            info,
            channels: allowed,
            exp,
        } = match identify(head, &conn_id, cx) {
            Ok(identity) => identity,
            Err(resp) => return self.respond(resp, false, false, cx),
        };
        if node.draining() {
            return self.respond(Response::text(503, "draining"), false, false, cx);
        }
        let cap = config.max_connections;
        let open = node.ws_connections.fetch_add(1, Ordering::Relaxed);
        if cap > 0 && open >= cap {
            node.ws_connections.fetch_sub(1, Ordering::Relaxed);
            let resp = Response::text(503, "too many connections");
            return self.respond(resp, false, false, cx);
        }
        *cx.conn_seq += 1;
        let member = Arc::new(MemberInfo {
            user: user.into_boxed_str(),
            conn: conn_id.into_boxed_str(),
            info,
        });
        self.counted = true;
        self.push_unbounded(http::switching_protocols(&up).into());
        if !echo {
            self.push_unbounded(ws::text_frame_with(|b| {
                server::welcome(
                    b,
                    &member.conn,
                    &member.user,
                    &config.node,
                    config.heartbeat.as_secs(),
                    config.max_message_bytes,
                )
            }));
        }
        let window = up.deflate.map(|agreed| agreed.window());
        let mut ws = Ws::new(member, allowed, echo, window, cx);
        ws.start_token_life(exp, cx);
        self.phase = Phase::Ws(Box::new(ws));
    }

    /// §9's API: checks the key, then asks the owners; the response is sent
    /// when they answer (see [`Connection::on_answer`]).
    fn api(
        &mut self,
        head: &Head,
        route: Route,
        body: &[u8],
        keep_alive: bool,
        head_only: bool,
        cx: &mut Cx<'_>,
    ) -> Option<Response> {
        let config = &cx.node.config;
        if let Err(resp) = http::check_api_key(head, config.api_key.as_deref()) {
            return Some(resp);
        }
        let from = self.id;
        let wait = match route {
            Route::ApiPublish => {
                let proto::Publish { channel, action } = match http::parse_publish(body) {
                    Ok(parsed) => parsed,
                    Err(resp) => return Some(resp),
                };
                if !cx.node.broker_up() {
                    return Some(Response::api_error(
                        503,
                        "unavailable",
                        "the broker is unreachable",
                    ));
                }
                let channel: Arc<str> = Arc::from(&*channel);
                let owner = cx.out.owner_of(&channel);
                cx.out.to_owner(
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
                let owner = cx.out.owner_of(&channel);
                cx.out.to_owner(
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
                let asked = if config.redis.is_some() || !config.redis_cluster.is_empty() {
                    vec![from.worker()]
                } else {
                    (0..cx.out.workers()).collect()
                };
                for &w in &asked {
                    cx.out.to_owner(
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
        self.api = Some(Box::new(PendingApi {
            wait,
            keep_alive,
            head_only,
        }));
        None
    }

    /// An owner answered this connection's API request.
    pub(super) fn on_answer(&mut self, answer: Answer, cx: &mut Cx<'_>) {
        let Some(pending) = self.api.take() else {
            return;
        };
        let PendingApi {
            wait,
            keep_alive,
            head_only,
        } = *pending;
        let resp = match (wait, answer) {
            (Awaited::Publish, Answer::Published(offset)) => {
                let mut body = Vec::with_capacity(32);
                server::api_published(&mut body, offset);
                Response::json(200, body)
            }
            (Awaited::Presence(_), Answer::Presence(None)) => {
                Response::api_error(403, "forbidden", "presence is off in this namespace")
            }
            (Awaited::Presence(channel), Answer::Presence(Some(array))) => {
                let mut body = Vec::with_capacity(32 + channel.len() + array.len());
                server::api_presence(&mut body, &channel, &array);
                Response::json(200, body)
            }
            (_, Answer::Unavailable) => {
                Response::api_error(503, "unavailable", "the broker is unreachable")
            }
            (Awaited::Channels { remaining, mut acc }, Answer::Channels(list)) => {
                acc.extend(list);
                if remaining > 1 {
                    self.api = Some(Box::new(PendingApi {
                        wait: Awaited::Channels {
                            remaining: remaining - 1,
                            acc,
                        },
                        keep_alive,
                        head_only,
                    }));
                    return;
                }
                channels_body(acc)
            }
            (wait, answer) => {
                tracing::error!(?wait, ?answer, "API answer does not match the request");
                Response::api_error(500, "internal", "internal error")
            }
        };
        self.respond(resp, keep_alive, head_only, cx);
    }
}

/// `/metrics`: every worker's counters summed, and the node's gauges.
fn metrics_response(node: &Node) -> Response {
    let gauges = Gauges {
        connections: node.ws_connections.load(Ordering::Relaxed) as u64,
        channels: node
            .owned_channels
            .iter()
            .map(|c| c.load(Ordering::Relaxed) as u64)
            .sum(),
        draining: node.draining(),
        broker_up: node.broker_up(),
    };
    let mut body = metrics::render(&node.metrics, &gauges);
    if let Some(jwks) = node.auth.as_ref().and_then(|a| a.jwks()) {
        body.push_str(&metrics::render_jwks(&jwks.gauges()));
    }
    let mut resp = Response::text(200, body);
    resp.content_type = metrics::CONTENT_TYPE;
    resp
}

/// Who the client is: from its token when authentication is on
/// (PROTOCOL.md §6, `user` ignored), else from `?user=`.
///
/// Every token refusal is the same bare 401: the reason goes to the debug
/// log only, so that a client probing with forged tokens learns nothing
/// about which check failed.
fn identify(head: &Head, conn_id: &str, cx: &Cx<'_>) -> Result<Identity, Response> {
    if let Some(auth) = &cx.node.auth {
        let token = http::query_param(&head.query, "token").unwrap_or_default();
        return auth.verify(&token, cx.unix_secs).map_err(|e| {
            tracing::debug!(reason = %e, "token refused");
            Response::text(401, "a valid token is required")
        });
    }
    let user = match http::param(&head.query, "user") {
        Param::Text(user) if proto::valid_user(&user) => user,
        Param::Absent => format!("anon-{conn_id}"),
        // Not UTF-8, or outside the alphabet.
        Param::Text(_) | Param::NotText => {
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
        exp: 0,
    })
}

/// `{"channels":[{"channel":..,"members":N},...]}` (§9), sorted by name so
/// that the answer does not depend on the order the owners answered in.
fn channels_body(mut acc: Vec<(Arc<str>, usize)>) -> Response {
    acc.sort();
    let mut body = Vec::with_capacity(16 + 48 * acc.len());
    server::api_channels(&mut body, acc.iter().map(|(name, n)| (&**name, *n)));
    Response::json(200, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_found_by_its_decoded_name_only() {
        let p = |q| http::param(q, "user");
        assert_eq!(p("user=a"), Param::Text("a".into()));
        assert_eq!(p("x=1&user"), Param::Text(String::new()));
        assert_eq!(p("token=t&user="), Param::Text(String::new()));
        // Caught: `contains("user=")` took these for a `user` parameter.
        assert_eq!(p("xuser=1"), Param::Absent);
        assert_eq!(p("a=user=1"), Param::Absent);
        assert_eq!(p(""), Param::Absent);
        // Caught: a raw-name check and a decoded-name lookup disagreed, and
        // this got an `anon-` user instead of 400.
        assert_eq!(p("us%65r=%FF"), Param::NotText);
        assert_eq!(p("us%65r=bob"), Param::Text("bob".into()));
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
