//! docs/protocol.md against the binary's settings, and the repository
//! against links outside it. (The page's JSON examples are checked in
//! `src/proto/doc_tests.rs`, against the parser itself.)

use std::path::Path;

use switchboard::config::{Config, ConfigError};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The long flags `--help` lists, `--help` and `--version` aside.
fn flags() -> Vec<String> {
    let help = match Config::parse_from(["switchboard", "--help"], &|_| None) {
        Err(ConfigError::Cli(e)) => e.render().to_string(),
        other => panic!("--help did not print help: {other:?}"),
    };
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_setting_is_in_the_reference() {
    let page = read("docs/protocol.md");
    let flags = flags();
    assert!(
        flags.len() >= 20,
        "too few flags parsed from --help: {flags:?}"
    );
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !page.contains(&format!("`{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "settings missing from docs/protocol.md: {missing:?}"
    );
}

#[test]
fn readme_and_docs_stay_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ is readable") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            !text.contains("../shared"),
            "{} refers to ../shared",
            path.display()
        );
    }
    assert!(
        read("README.md").contains("(docs/protocol.md)"),
        "README.md links the protocol reference"
    );
}
