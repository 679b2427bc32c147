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
use treeward::risk::Kind;

fn main() -> ExitCode {
    cli::run("treeward-check", || run(Args::parse()))
}

fn run(args: Args) -> Result<u8, Error> {
    args.common.apply();
    let config = Config::load(args.common.config.as_deref())?;
    let (ledger, ledger_error) = match Ledger::new(config.ledger()).read() {
        Ok(doc) => (doc, None),
        Err(e) => {
            log::warn!("{e}; checking without it");
            (Default::default(), Some(e.to_string()))
        }
    };
    // A named path is checked as the worktree it lies in.
    let mut requested = Vec::new();
    for p in &args.paths {
        requested.push(
            std::path::absolute(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?,
        );
    }
    let mut paths: Vec<_> = requested.iter().map(|p| check::worktree_of(p)).collect();
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
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Failed(format!("current directory: {e}")))?;
        paths.push(check::worktree_of(&cwd));
        requested.push(cwd);
    }
    // This program's only children are its git and workers.
    let mut report = check::check(
        &paths,
        &ledger,
        ledger_error,
        &Worker::current(),
        check::Scan::NotOwnTree,
    );
    report.skipped = skipped;
    for (w, asked) in report.worktrees.iter_mut().zip(&requested) {
        if *asked != w.assessment.path {
            w.requested_path = Some(asked.clone());
        }
    }
    args.common
        .print(&report, || check::render_human(&report))?;
    // A named path that does not exist is an error (the rows of `--all`
    // come after the named ones).
    let missing_argument = report
        .worktrees
        .iter()
        .take(requested.len())
        .any(|w| w.assessment.kind == Kind::Missing);
    Ok(if missing_argument {
        EXIT_ERROR
    } else if report.any_at_risk() {
        EXIT_AT_RISK
    } else {
        EXIT_OK
    })
}
