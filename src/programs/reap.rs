//! `treeward-reap [--dry-run] [--json] [--config PATH]`: reclaim released
//! and orphaned worktrees while the agent service runs. Runs unprivileged,
//! as the service's user, from a systemd timer; one pass at a time.
//!
//! Exit status: 0 done (per-entry failures are in the report and retried
//! next pass; also when another pass was running and this one did nothing),
//! 2 an error (the pass lock or the ledger could not be used: nothing was
//! touched), 78 bad configuration (nothing touched).

use crate::args::Reap as Args;
use crate::error::{Error, EXIT_OK};
use crate::reap::{self, Options};

pub(super) fn run(args: Args) -> Result<u8, Error> {
    let super::Setup { config, worker } = super::setup(&args.common)?;
    let opts = Options {
        dry_run: args.dry_run,
        worker,
    };
    let report = reap::reap(&config, &opts)?;
    let level = if report.busy {
        log::Level::Warn
    } else {
        log::Level::Info
    };
    // A pass that found another one running did nothing worth a sample.
    let sample = (!args.dry_run && !report.busy).then_some(&report.pass);
    let pass = super::Pass {
        program: "treeward-reap",
        report: &report,
        summary: report.summary(),
        fields: report.fields(),
        level,
        sample,
    };
    super::publish(
        &args.common,
        &config,
        pass,
        || report.pass.render_entries(),
        || report.render_human(),
    )?;
    Ok(EXIT_OK)
}
