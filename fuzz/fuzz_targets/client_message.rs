//! `proto::parse` on arbitrary bytes: never panics; an accepted action is a
//! slice of the input that serde_json accepts as a JSON value, and survives
//! a round trip through the `user_action` encoder byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::proto::{self, RawValue, Request};

fuzz_target!(|data: &[u8]| {
    let env = proto::parse(data);
    assert!(env.id.is_none_or(|id| id <= proto::MAX_ID));
    let Ok(request) = env.request else { return };
    if let Some(channel) = request.channel() {
        assert!(proto::valid_channel(channel));
    }
    let Request::Action { channel, action } = request else { return };
    let bytes = action.get().as_bytes();
    let input = data.as_ptr_range();
    let slice = bytes.as_ptr_range();
    assert!(input.start <= slice.start && slice.end <= input.end);
    assert!(RawValue::from_string(action.get().to_owned()).is_ok());

    let mut out = Vec::new();
    proto::user_action(&mut out, &channel, Some("u"), Some("c"), None, bytes, Some(1));
    match proto::parse(&out).request {
        Ok(Request::Action { action: again, .. }) => assert_eq!(again.get(), action.get()),
        other => panic!("encoded user_action does not parse back: {other:?}"),
    }
});
