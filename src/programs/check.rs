//! `treeward-check [PATH...] [--all] [--json]`: read-only preflight — what
//! would be lost if these worktrees were removed.
//!
//! Exit status: 0 nothing at risk, 1 something at risk, 2 an error (such as a
//! PATH that does not exist), 78 bad configuration.

use crate::args::Check as Args;
use crate::check;
use crate::error::{Error, EXIT_AT_RISK, EXIT_ERROR, EXIT_OK};
use crate::risk::Kind;

pub(super) fn run(args: Args) -> Result<u8, Error> {
    let super::Setup { config, worker } = super::setup(&args.common)?;
    let (ledger, ledger_error) = check::read_ledger(&config);
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
        &worker,
        check::Scan::NotOwnTree,
    );
    report.skipped = skipped;
    check::mark_requested(&mut report, &requested);
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
