//! `treeward-hook <old> <new> <flag>`: git's `post-checkout` hook (through
//! the `hooks/post-checkout` shim); records each new linked worktree in the
//! ledger. See `crate::hook`.
//!
//! Exit status: always 0 as git calls it, whatever went wrong (the failure
//! is logged), since git makes it the status of `git worktree add`. With
//! `--dry-run` (prints what it would record, changes nothing): 0 done, 2 an
//! error such as wrong arguments, 78 bad configuration.

use crate::args::Hook as Args;
use crate::cli;
use crate::error::{Error, EXIT_OK};
use crate::hook;
use clap::Parser;
use std::process::ExitCode;

const PROGRAM: &str = "treeward-hook";

pub(super) fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() && !std::env::args_os().any(|a| a == "--dry-run") => {
            // Called as a hook: a usage error must not fail git.
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            let message = format!("bad arguments: {}", first.trim_start_matches("error: "));
            return cli::run_hook(PROGRAM, || Err(Error::Usage(message)));
        }
        Err(e) => e.exit(),
    };
    if args.dry_run {
        cli::run(PROGRAM, || dry_run(&args))
    } else {
        cli::run_hook(PROGRAM, || {
            hook::run(args.common.config.as_deref(), &args.args, false).map(drop)
        })
    }
}

fn dry_run(args: &Args) -> Result<u8, Error> {
    args.common.apply();
    let outcome = hook::run(args.common.config.as_deref(), &args.args, true)?;
    args.common.print(&outcome.decision, || {
        hook::render_human(&outcome.decision, &outcome.ledger)
    })?;
    Ok(EXIT_OK)
}
