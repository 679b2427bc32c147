//! `treeward-check [PATH...] [--all] [--json]`: read-only preflight — what
//! would be lost if these worktrees were removed.
//!
//! Exit status: 0 nothing at risk, 1 something at risk, 2 an error (such as a
//! PATH that does not exist), 78 bad configuration.

use clap::Parser;
use std::process::ExitCode;
use treeward::args::Check as Args;
use treeward::as_owner::Worker;
use treeward::check;
use treeward::cli;
use treeward::config::Config;
use treeward::error::{Error, EXIT_AT_RISK, EXIT_ERROR, EXIT_OK};
use treeward::ledger::Ledger;
use treeward::risk::{self, Kind};

fn main() -> ExitCode {
    cli::run("treeward-check", || run(Args::parse()))
}

fn run(args: Args) -> Result<u8, Error> {
    args.common.apply();
    let config = Config::load(args.common.config.as_deref())?;
    risk::allow_foreign_owners().map_err(|e| Error::Failed(e.message().to_owned()))?;
    let (ledger, ledger_error) = match Ledger::new(&config.ledger).read() {
        Ok(doc) => (doc, None),
        Err(e) => {
            log::warn!("{e}; checking without it");
            (Default::default(), Some(e.to_string()))
        }
    };
    let mut paths = Vec::new();
    for p in &args.paths {
        paths.push(
            std::path::absolute(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?,
        );
    }
    let mut skipped = Vec::new();
    if args.all {
        let (all, left_out) = check::all_targets(&config, &ledger);
        paths.extend(all);
        for s in &left_out {
            log::warn!(
                "ledger record {} ({}): skipped: {}",
                s.ledger_id,
                s.path.display(),
                s.why
            );
        }
        skipped = left_out;
    } else if paths.is_empty() {
        paths.push(
            std::env::current_dir()
                .map_err(|e| Error::Failed(format!("current directory: {e}")))?,
        );
    }
    let mut report = check::check(&paths, &ledger, ledger_error, &Worker::current());
    report.skipped = skipped;
    args.common
        .print(&report, || check::render_human(&report))?;
    let missing_argument = report
        .worktrees
        .iter()
        .filter(|w| w.assessment.kind == Kind::Missing)
        .any(|w| {
            args.paths
                .iter()
                .any(|p| std::path::absolute(p).is_ok_and(|a| a == w.assessment.path))
        });
    Ok(if missing_argument {
        EXIT_ERROR
    } else if report.any_at_risk() {
        EXIT_AT_RISK
    } else {
        EXIT_OK
    })
}
