//! `bench-summary`: prints the comparison tables and target checks for JSON
//! lines written by `bench/run.sh` (see `switchyard_bench::summary`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use switchyard_bench::summary::{parse_jsonl, render};

/// Summarizes switchyard-bench --json reports (tagged scenario=, target=,
/// open=) and memory samples into side-by-side tables and target checks.
#[derive(Parser)]
#[command(name = "bench-summary")]
struct Args {
    /// JSON-lines files to read, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Leave out the check of the targets (for comparisons they do not apply to).
    #[arg(long)]
    no_targets: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut records = Vec::new();
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bench-summary: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        match parse_jsonl(&text) {
            Ok(r) => records.extend(r),
            Err(e) => {
                eprintln!("bench-summary: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", render(&records, !args.no_targets));
    ExitCode::SUCCESS
}
