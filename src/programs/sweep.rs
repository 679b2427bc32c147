//! `treeward-sweep [--dry-run] [--budget 10s] [--json]`: clear the residue
//! under the sweep roots before the agent service starts. Runs as root from
//! `ExecStartPre=+` and from a oneshot unit at boot.
//!
//! Exit status: 0 done (per-entry failures are in the report, and are
//! retried next pass: a sweep must not keep the service down for one stuck
//! entry); 2 an error, or a root the sweep refused (not sticky and writable
//! by others, owned by a stranger, a symlink, cannot be listed...; also
//! under `--dry-run`), once every other root is swept and the report
//! printed, so that `ExecStartPre=` keeps the service down on a root the
//! sweep could not vouch for; 78 bad configuration (nothing touched).

use crate::args::Sweep as Args;
use crate::error::{Error, EXIT_OK};
use crate::sweep::{self, Options};

pub(super) fn run(args: Args) -> Result<u8, Error> {
    let super::Setup { config, worker } = super::setup(&args.common)?;
    let opts = Options {
        dry_run: args.dry_run,
        budget: args.budget,
        progress: args.common.human_on_stdout(),
        worker,
    };
    let report = sweep::sweep(&config, &opts);
    let level = if report.backlog_count > config.backlog_warn() as usize {
        log::Level::Warn
    } else {
        log::Level::Info
    };
    if level == log::Level::Warn {
        log::warn!(
            "backlog of {} entries exceeds backlog_warn = {}: crashes are piling up",
            report.backlog_count,
            config.backlog_warn()
        );
    }
    let pass = super::Pass {
        program: "treeward-sweep",
        report: &report,
        summary: report.summary(),
        fields: report.fields(),
        level,
        sample: (!args.dry_run).then_some(&report),
    };
    super::publish(
        &args.common,
        &config,
        pass,
        || report.render_entries(),
        || report.render_human(),
    )?;
    refusal(&report).map_or(Ok(EXIT_OK), |e| Err(Error::Failed(e)))
}

/// The error a sweep that refused a root ends with (after its report).
fn refusal(report: &crate::pass::report::Report) -> Option<String> {
    let paths: Vec<String> = report
        .refused_roots
        .iter()
        .map(|r| r.path.display().to_string())
        .collect();
    (!paths.is_empty()).then(|| {
        format!(
            "refused {} root(s), not swept: {} (see the report); the other roots were swept",
            paths.len(),
            paths.join(", ")
        )
    })
}
