//! sb-load: switchboard's load generator. See perf/README.md.
//!
//! `cargo run --release -p sb-load -- --scenario fanout --url ws://127.0.0.1:8080/ws --server-pid PID`

mod blocking;
mod churn;
mod conn;
mod inflate;
mod ledger;
mod payload;
mod procstat;
mod recover;
mod report;
mod run;
mod sampler;
mod scenario;
mod schedule;
mod stalled;
#[cfg(test)]
mod testserver;
mod tls;
mod track;
mod worker;
mod ws;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = scenario::Args::parse();
    if args.recover {
        return recover_main(&args);
    }
    let summary = match run::run(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sb-load: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", summary.human());
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("sb-load: JSON: {e}"),
        }
    }
    let problems = summary.problems();
    if args.assert_no_loss && !problems.is_empty() {
        eprintln!("sb-load: FAILED: {}", problems.join(", "));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `--recover`: one summary line (and the JSON line with `--json`).
fn recover_main(args: &scenario::Args) -> ExitCode {
    if args.compression {
        eprintln!("sb-load: --recover speaks without compression only");
        return ExitCode::from(2);
    }
    let summary = match recover::run(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sb-load: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{}", summary.line());
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("sb-load: JSON: {e}"),
        }
    }
    let problems = summary.problems();
    if args.assert_no_loss && !problems.is_empty() {
        eprintln!("sb-load: FAILED: {}", problems.join(", "));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
