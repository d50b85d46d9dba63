//! Every JSON example of `docs/protocol.md` is checked against this module,
//! so that the user's reference and the code cannot drift apart.
//!
//! # The convention the page follows
//!
//! A JSON example is a fenced block whose info string is `json` and one tag;
//! each non-blank line of the block is one JSON text:
//!
//! | tag | each line must be |
//! | --- | --- |
//! | `json client` | a request that [`parse`](super::parse) accepts |
//! | `json client rejected=CODE` | a request that `parse` refuses with `CODE` |
//! | `json server` | a server message that [`check_server_message`] accepts |
//! | `json publish` | a `POST /api/publish` body that [`parse_publish`](super::parse_publish) accepts |
//! | `json http` | an HTTP API answer body: one JSON object |
//!
//! A `json` block without a tag is an error, so no example escapes the
//! check. Then the page must show every request type, every server message
//! type, both presence events, a `left` with a `reason` and an `error` of
//! every code: a reference that leaves one out is incomplete.

use super::{check_server_message, parse, parse_publish, shape, ErrorCode, Request};

const PAGE: &str = include_str!("../../docs/protocol.md");

/// The tag of a block in another language (no info string can hold a NUL).
const SKIP: &str = "\u{0}skip";

/// One example line: where it is, its block's tag, its text.
struct Example<'a> {
    line: usize,
    tag: &'a str,
    text: &'a str,
}

/// The lines of every ```` ```json ```` block, or the line numbers of blocks
/// opened but never closed.
fn examples(page: &str) -> (Vec<Example<'_>>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    for (i, line) in page.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        match open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let info = info.trim();
                    if info == "json" || info.starts_with("json ") {
                        let tag = info["json".len()..].trim();
                        open = Some((n, tag));
                    } else {
                        // Another language, or none: skip to its closing fence.
                        open = Some((n, SKIP));
                    }
                }
            }
            Some((_, tag)) => {
                if trimmed.starts_with("```") {
                    open = None;
                } else if tag != SKIP && !line.trim().is_empty() {
                    out.push(Example {
                        line: n,
                        tag,
                        text: line.trim(),
                    });
                }
            }
        }
    }
    if let Some((n, _)) = open {
        problems.push(format!("line {n}: code block never closed"));
    }
    (out, problems)
}

/// Checks one example; `Err` says what is wrong with it.
fn check(ex: &Example<'_>, seen: &mut Seen) -> Result<(), String> {
    match ex.tag {
        "client" => {
            let env = parse(ex.text.as_bytes());
            let req = env.request.map_err(|e| format!("refused: {e}"))?;
            if let Request::Join { since: Some(_), .. } = req {
                seen.types.push("join_channel with since".to_owned());
            }
            seen.types.push(format!("request {}", req.type_name()));
            Ok(())
        }
        "server" => {
            let ty = check_server_message(ex.text.as_bytes()).map_err(|e| e.to_string())?;
            seen.types.push(format!("server {ty}"));
            let v: serde_json::Value = serde_json::from_str(ex.text).map_err(|e| e.to_string())?;
            if let Some(event) = v.get("event").and_then(|e| e.as_str()) {
                seen.types.push(format!("server {ty} {event}"));
            }
            if v.get("reason").is_some() {
                seen.types.push(format!("server {ty} with reason"));
            }
            if v.get("recovered").is_some() {
                seen.types.push(format!("server {ty} with recovered"));
            }
            if let Some(code) = v.get("code").and_then(|c| c.as_str()) {
                seen.types.push(format!("error code {code}"));
            }
            Ok(())
        }
        "publish" => parse_publish(ex.text.as_bytes())
            .map(|_| ())
            .map_err(|e| format!("refused: {e}")),
        "http" => match serde_json::from_str::<serde_json::Value>(ex.text) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => Err("not a JSON object".to_owned()),
            Err(e) => Err(format!("not JSON: {e}")),
        },
        tag => {
            if let Some(code) = tag.strip_prefix("client rejected=") {
                let env = parse(ex.text.as_bytes());
                return match env.request {
                    Ok(req) => Err(format!("accepted as {}", req.type_name())),
                    Err(e) if e.code.as_str() == code => Ok(()),
                    Err(e) => Err(format!("refused with {e}, not {code}")),
                };
            }
            Err(format!(
                "untagged or unknown tag `json {tag}` (client, client rejected=CODE, server, publish, http)"
            ))
        }
    }
}

#[derive(Default)]
struct Seen {
    types: Vec<String>,
}

/// What the page must show at least once.
fn required() -> Vec<String> {
    let requests = [
        "join_channel",
        "leave_channel",
        "user_action",
        "presence",
        "ping",
        "refresh",
    ];
    let mut want: Vec<String> = requests.iter().map(|r| format!("request {r}")).collect();
    want.push("join_channel with since".to_owned());
    want.extend(shape::server_types().map(|t| format!("server {t}")));
    want.push("server presence join".to_owned());
    want.push("server presence leave".to_owned());
    want.push("server left with reason".to_owned());
    want.push("server joined with recovered".to_owned());
    want.extend(ErrorCode::ALL.iter().map(|c| format!("error code {c}")));
    want
}

/// Every problem of `page`: broken examples, then what it fails to show.
fn problems(page: &str) -> Vec<String> {
    let (examples, mut problems) = examples(page);
    let mut seen = Seen::default();
    for ex in &examples {
        if let Err(why) = check(ex, &mut seen) {
            problems.push(format!(
                "docs/protocol.md:{} (json {}): {why}\n    {}",
                ex.line, ex.tag, ex.text
            ));
        }
    }
    for want in required() {
        if !seen.types.contains(&want) {
            problems.push(format!("docs/protocol.md has no example of {want}"));
        }
    }
    problems
}

#[test]
fn every_example_of_the_protocol_page_parses() {
    let problems = problems(PAGE);
    assert!(
        problems.is_empty(),
        "{} problem(s) in docs/protocol.md:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn a_broken_example_is_reported_with_its_line() {
    let page = "text\n\n```json client\n{\"type\":\"ping\",\"id\":-1}\n```\n\n```json\n{}\n```\n\n```json server\n{\"type\":\"pong\",\"id\":1,\"x\":2}\n```\n";
    let found = problems(page);
    assert!(
        found[0].starts_with("docs/protocol.md:4 (json client): refused: bad_request"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("docs/protocol.md:8 (json ): untagged"),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("docs/protocol.md:12 (json server): `pong` has no field `x`"),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|p| p == "docs/protocol.md has no example of request refresh"));
}

#[test]
fn other_languages_and_unclosed_blocks() {
    let (ex, problems) = examples("```sh\n{not json}\n```\n```json http\n{}\n");
    assert_eq!(ex.len(), 1);
    assert_eq!(problems, ["line 4: code block never closed"]);
}
