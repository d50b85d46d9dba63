use super::*;
use proptest::prelude::*;

const UPGRADE: &[u8] = b"GET /ws?user=alice&x=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Upgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: chat , switchboard.v1,,\r\n\
Origin: https://example.com\r\n\
\r\n";

fn parse(buf: &[u8]) -> Head {
    match parse_head(buf) {
        Ok(Some((head, _))) => head,
        other => panic!("expected a complete head, got {other:?}"),
    }
}

/// A GET of `/` padded with one `X-Pad` field to exactly `len` bytes.
fn padded_head(len: usize) -> Vec<u8> {
    let fixed = b"GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
    let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(len - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    assert!(len > fixed);
    assert_eq!(head.len(), len);
    head
}

#[test]
fn parses_a_websocket_upgrade() {
    let (head, len) = parse_head(UPGRADE).unwrap().unwrap();
    assert_eq!(len, UPGRADE.len());
    assert_eq!(head.method, Method::Get);
    assert_eq!(head.path, "/ws");
    assert_eq!(head.query, "user=alice&x=1");
    assert_eq!(head.minor_version, 1);
    assert_eq!(head.host.as_deref(), Some("example.com:8080"));
    assert!(head.upgrade_websocket);
    assert!(head.connection_upgrade);
    assert!(head.connection_keep_alive);
    assert!(!head.connection_close);
    assert_eq!(head.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(head.ws_version.as_deref(), Some("13"));
    assert_eq!(head.ws_protocols, ["chat", "switchboard.v1"]);
    assert_eq!(head.origin.as_deref(), Some("https://example.com"));
    assert_eq!(head.authorization, None);
    assert_eq!(head.content_length, None);
    assert!(!head.chunked);
}

#[test]
fn methods_are_case_sensitive_tokens() {
    for (token, method) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("PATCH", Method::Patch),
        ("OPTIONS", Method::Options),
        ("get", Method::Other),
        ("BREW", Method::Other),
    ] {
        let req = format!("{token} / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(req.as_bytes()).method, method, "{token}");
    }
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let head = parse(b"GET /ws HTTP/1.1\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\r\n");
    assert!(head.upgrade_websocket && head.connection_upgrade);
    let head = parse(b"GET /ws HTTP/1.1\r\nUpgrade: h2c, websocket\r\nConnection: close\r\n\r\n");
    assert!(head.upgrade_websocket && head.connection_close && !head.connection_upgrade);
    let head = parse(b"GET /ws HTTP/1.1\r\nUpgrade: websockets\r\nConnection: upgrader\r\n\r\n");
    assert!(!head.upgrade_websocket && !head.connection_upgrade);
}

#[test]
fn repeated_list_fields_accumulate() {
    let head = parse(
        b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: upgrade\r\n\
Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b, c\r\n\r\n",
    );
    assert!(head.connection_close && head.connection_upgrade);
    assert_eq!(head.ws_protocols, ["a", "b", "c"]);
}

#[test]
fn repeated_single_fields_are_combined_so_they_fail_validation() {
    let head = parse(b"GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nsec-websocket-key: b\r\n\r\n");
    assert_eq!(head.ws_key.as_deref(), Some("a, b"));
    let head = parse(b"GET / HTTP/1.1\r\nOrigin: x\r\nOrigin: y\r\n\r\n");
    assert_eq!(head.origin.as_deref(), Some("x, y"));
}

#[test]
fn incomplete_heads_are_none_at_every_prefix() {
    for end in 0..UPGRADE.len() {
        assert_eq!(
            parse_head(&UPGRADE[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn head_len_lets_the_caller_parse_pipelined_requests() {
    let mut buf =
        b"GET /healthz HTTP/1.1\r\n\r\nPOST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec();
    buf.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /");
    let (first, n1) = parse_head(&buf).unwrap().unwrap();
    assert_eq!(
        (first.method, first.path.as_str()),
        (Method::Get, "/healthz")
    );
    let (second, n2) = parse_head(&buf[n1..]).unwrap().unwrap();
    assert_eq!(second.path, "/api/publish");
    assert_eq!(second.content_length, Some(2));
    let body_end = n1 + n2 + 2;
    assert_eq!(&buf[n1 + n2..body_end], b"{}");
    let (third, n3) = parse_head(&buf[body_end..]).unwrap().unwrap();
    assert_eq!(third.path, "/metrics");
    assert_eq!(parse_head(&buf[body_end + n3..]), Ok(None));
}

#[test]
fn leading_empty_lines_are_skipped() {
    // RFC 9112 §2.2: a stray CRLF after a previous body is tolerated.
    let (head, len) = parse_head(b"\r\nGET /healthz HTTP/1.1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.path, "/healthz");
    assert_eq!(len, 27);
}

#[test]
fn head_of_exactly_max_head_is_accepted() {
    let buf = padded_head(MAX_HEAD);
    assert_eq!(parse_head(&buf).unwrap().unwrap().1, MAX_HEAD);
}

#[test]
fn head_one_byte_over_max_head_is_431_even_when_complete() {
    let buf = padded_head(MAX_HEAD + 1);
    assert_eq!(parse_head(&buf), Err(HttpError::HeadTooLarge));
    assert_eq!(HttpError::HeadTooLarge.status(), 431);
}

#[test]
fn incomplete_head_is_431_exactly_at_the_cap() {
    let mut buf = padded_head(MAX_HEAD + 100);
    buf.truncate(MAX_HEAD - 1);
    assert_eq!(parse_head(&buf), Ok(None));
    buf.push(b'a');
    assert_eq!(buf.len(), MAX_HEAD);
    assert_eq!(parse_head(&buf), Err(HttpError::HeadTooLarge));
    // Empty lines alone never make a head, but still count toward the cap.
    assert_eq!(
        parse_head(&b"\r\n".repeat(MAX_HEAD / 2)),
        Err(HttpError::HeadTooLarge)
    );
}

#[test]
fn too_many_fields_is_431() {
    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert!(
        parse_head(&buf).unwrap().is_some(),
        "{MAX_HEADERS} fields fit"
    );
    buf.truncate(buf.len() - 2);
    buf.extend_from_slice(b"X-last: v\r\n\r\n");
    assert_eq!(parse_head(&buf), Err(HttpError::HeadTooLarge));
}

#[test]
fn malformed_heads_are_400() {
    for bad in [
        &b"GET /\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo Colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nOrigin: \xff\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            parse_head(bad),
            Err(HttpError::Malformed),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(HttpError::Malformed.status(), 400);
}

#[test]
fn non_utf8_in_ignored_fields_is_fine() {
    let head = parse(b"GET / HTTP/1.1\r\nX-Whatever: caf\xe9\r\n\r\n");
    assert_eq!(head.path, "/");
}

#[test]
fn content_length_is_strict() {
    let head = parse(b"POST /api/publish HTTP/1.1\r\nContent-Length: 0042\r\n\r\n");
    assert_eq!(head.content_length, Some(42));
    let max = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX);
    assert_eq!(parse(max.as_bytes()).content_length, Some(u64::MAX));
    for bad in [
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 5",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 0x10",
        "Content-Length: 1 2",
        "Content-Length: ",
        "Content-Length: 18446744073709551616",
        "Content-Length: 3\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 3",
    ] {
        let req = format!("POST / HTTP/1.1\r\n{bad}\r\n\r\n");
        assert_eq!(
            parse_head(req.as_bytes()),
            Err(HttpError::BadContentLength),
            "{bad}"
        );
    }
    assert_eq!(HttpError::BadContentLength.status(), 400);
}

#[test]
fn transfer_encoding_must_end_in_chunked() {
    assert!(parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").chunked);
    assert!(parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").chunked);
    for bad in [
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        "Transfer-Encoding: ",
    ] {
        let req = format!("POST / HTTP/1.1\r\n{bad}\r\n\r\n");
        assert_eq!(
            parse_head(req.as_bytes()),
            Err(HttpError::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn request_targets_split_into_path_and_query() {
    for (target, path, query) in [
        ("/", "/", ""),
        ("/ws?", "/ws", ""),
        ("/ws?a=1?b=2", "/ws", "a=1?b=2"),
        (
            "/api/presence?channel=doc%3A42",
            "/api/presence",
            "channel=doc%3A42",
        ),
        ("http://example.com/ws?user=a", "/ws", "user=a"),
        ("HTTPS://example.com", "/", ""),
        ("http://example.com?x", "/", "x"),
        ("*", "*", ""),
        ("/%77s", "/%77s", ""),
    ] {
        let head = parse(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(
            (head.path.as_str(), head.query.as_str()),
            (path, query),
            "{target}"
        );
    }
}

#[test]
fn http_1_0_is_minor_version_0() {
    let head = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_eq!(head.minor_version, 0);
    assert!(head.connection_keep_alive);
}

#[test]
fn query_param_decodes_like_a_form() {
    let q = "user=al%C3%ADce&channel=doc%3A42&sp=a+b%20c&empty=&flag&user=bob&bad=%zz%4&n%61me=v";
    assert_eq!(query_param(q, "user").as_deref(), Some("alíce"));
    assert_eq!(query_param(q, "channel").as_deref(), Some("doc:42"));
    assert_eq!(query_param(q, "sp").as_deref(), Some("a b c"));
    assert_eq!(query_param(q, "empty").as_deref(), Some(""));
    assert_eq!(query_param(q, "flag").as_deref(), Some(""));
    assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
    assert_eq!(query_param(q, "name").as_deref(), Some("v"));
    assert_eq!(query_param(q, "missing"), None);
    assert_eq!(query_param(q, "Use"), None);
    assert_eq!(query_param("", "user"), None);
    assert_eq!(query_param("&&user=x&&", "user").as_deref(), Some("x"));
    assert_eq!(query_param("t=a%3Db%3D", "t").as_deref(), Some("a=b="));
    assert_eq!(query_param("t=a=b", "t").as_deref(), Some("a=b"));
    assert_eq!(
        query_param("user=%FF", "user"),
        None,
        "not UTF-8 after decoding"
    );
    assert_eq!(query_param("%2B=plus", "+").as_deref(), Some("plus"));
}

/// Feeds `buf` to `parse_head` the way a worker would: accumulate each chunk,
/// parse, stop at the first answer that is not `Ok(None)`.
fn parse_in_chunks(buf: &[u8], cuts: &[usize]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (buf.len() + 1)).collect();
    cuts.push(buf.len());
    cuts.sort_unstable();
    for end in cuts {
        match parse_head(&buf[..end]) {
            Ok(None) => continue,
            done => return done,
        }
    }
    Ok(None)
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_head(&buf);
    }

    #[test]
    fn never_panics_on_mangled_heads(
        pos in 0..UPGRADE.len(),
        byte in any::<u8>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = UPGRADE.to_vec();
        buf[pos] = byte;
        buf.extend_from_slice(&tail);
        if let Ok(Some((_, len))) = parse_head(&buf) {
            prop_assert!(len <= buf.len());
        }
    }

    #[test]
    fn chunking_does_not_change_the_result(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut buf = UPGRADE.to_vec();
        buf.extend_from_slice(&tail);
        let whole = parse_head(&buf);
        prop_assert_eq!(parse_in_chunks(&buf, &cuts), whole);
    }

    #[test]
    fn chunking_a_generated_head_does_not_change_the_result(
        path in "/[a-z0-9/]{0,20}",
        query in "[a-z0-9=&%+]{0,20}",
        fields in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,30}"), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut buf = format!("POST {path}?{query} HTTP/1.1\r\n");
        for (name, value) in &fields {
            buf.push_str(&format!("{name}: {value}\r\n"));
        }
        buf.push_str("\r\n");
        let whole = parse_head(buf.as_bytes());
        if let Ok(Some((_, len))) = &whole {
            prop_assert_eq!(*len, buf.len());
        }
        prop_assert_eq!(parse_in_chunks(buf.as_bytes(), &cuts), whole);
    }

    #[test]
    fn query_param_never_panics(query in "[ -~]{0,64}", name in "[a-z%+]{0,4}") {
        let _ = query_param(&query, &name);
    }
}
