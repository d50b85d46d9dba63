#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::http::{check_upgrade, parse_head, query_param, route, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_head(data) {
        assert!(len <= data.len().min(MAX_HEAD));
        let _ = route(&head, true);
        let _ = check_upgrade(&head);
        let _ = query_param(&head.query, "user");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = query_param(text, "token");
    }
});
