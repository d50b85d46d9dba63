//! Arbitrary error replies from "a cluster node": parsing never panics, a
//! parsed slot is below 16384, a port is not 0, and a redirection printed
//! back in Redis's form parses to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::broker::redis::cluster::{redirect, Endpoint, Redirect};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(r)) = redirect::parse(data) else {
        return;
    };
    let (code, slot, to) = match &r {
        Redirect::Moved { slot, to } => ("MOVED", *slot, to),
        Redirect::Ask { slot, to } => ("ASK", *slot, to),
        Redirect::TryAgain | Redirect::ClusterDown => return,
    };
    assert!(slot < 16384);
    let to = match to {
        Endpoint::Node(n) => {
            assert!(n.port != 0);
            n.to_string()
        }
        Endpoint::SameHost { port } => {
            assert!(*port != 0);
            format!(":{port}")
        }
    };
    let again = format!("{code} {slot} {to}");
    assert_eq!(redirect::parse(again.as_bytes()), Ok(Some(r)));
});
