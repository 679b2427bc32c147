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
    crate::logging::summary(
        level,
        &report.summary(),
        &report.fields(),
        args.common.human_on_stdout(),
    );
    crate::logging::status(&report.summary());
    // A pass that found another one running did nothing worth a sample.
    if !args.dry_run && !report.busy {
        crate::metrics::write(config.metrics(), "treeward-reap", &report.pass);
    }
    // Under systemd with stdout on the journal, the summary is already a
    // journal record with its fields: print only the entries.
    args.common.print(&report, || {
        if crate::logging::stdout_is_journal() {
            report.pass.render_entries()
        } else {
            report.render_human()
        }
    })?;
    Ok(EXIT_OK)
}
