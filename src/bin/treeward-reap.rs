//! `treeward-reap [--dry-run] [--json] [--config PATH]`: reclaim released
//! and orphaned worktrees while the agent service runs. Runs unprivileged,
//! as the service's user, from a systemd timer; one pass at a time.
//!
//! Exit status: 0 done (per-entry failures are in the report and retried
//! next pass; also when another pass was running and this one did nothing),
//! 2 an error (the pass lock or the ledger could not be used: nothing was
//! touched), 78 bad configuration (nothing touched).

use clap::Parser;
use std::process::ExitCode;
use treeward::args::Reap as Args;
use treeward::as_owner::Worker;
use treeward::cli;
use treeward::config::Config;
use treeward::error::{Error, EXIT_OK};
use treeward::reap::{self, Options};

fn main() -> ExitCode {
    cli::run("treeward-reap", || run(Args::parse()))
}

fn run(args: Args) -> Result<u8, Error> {
    args.common.apply();
    let config = Config::load(args.common.config.as_deref())?;
    let opts = Options {
        dry_run: args.dry_run,
        worker: Worker::current(),
    };
    let report = reap::reap(&config, &opts)?;
    let level = if report.busy {
        log::Level::Warn
    } else {
        log::Level::Info
    };
    treeward::logging::summary(
        level,
        &report.summary(),
        &report.fields(),
        args.common.human_on_stdout(),
    );
    treeward::logging::status(&report.summary());
    // A pass that found another one running did nothing worth a sample.
    if !args.dry_run && !report.busy {
        treeward::metrics::write(config.metrics(), "treeward-reap", &report.pass);
    }
    // Under systemd with stdout on the journal, the summary is already a
    // journal record with its fields: print only the entries.
    args.common.print(&report, || {
        if treeward::logging::stdout_is_journal() {
            report.pass.render_entries()
        } else {
            report.render_human()
        }
    })?;
    Ok(EXIT_OK)
}
