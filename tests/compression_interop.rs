//! A client of another implementation with compression on: Python's
//! `websockets` (tests/interop/deflate_client.py) joins a `--compression`
//! server, sends compressed actions and receives compressed broadcasts.
//!
//! The interpreter is `$SB_INTEROP_PYTHON`, else the virtualenv
//! `scripts/test` makes in `target/interop-venv`. Without one the test
//! says so and passes, except under `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SB_INTEROP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    let ok = Command::new(&venv)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(venv)
}

#[test]
fn python_websockets_compresses_both_ways() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with websockets: run scripts/test, or set SB_INTEROP_PYTHON"
        );
        eprintln!("skipped: no Python with websockets (scripts/test installs it)");
        return;
    };
    let server = Server::start(&["--compression"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/deflate_client.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(server.addr.to_string())
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let counts: serde_json::Value = serde_json::from_str(stdout.trim()).expect("counts");
    assert!(counts["sent_compressed"].as_u64() >= Some(10), "{counts}");
    assert_eq!(counts["received_compressed"], 20, "{counts}");
}
