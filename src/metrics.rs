//! Metrics for node_exporter's textfile collector: each pass of
//! `treeward-sweep` and `treeward-reap` writes `<binary>.prom` into the
//! configured `metrics` directory.
//!
//! Why: a backlog that grows pass after pass means agents keep crashing
//! (the seeds alert on it), and a pass that stopped succeeding must page
//! someone before the disk fills. The README has an example alert rule.
//!
//! Contract: the file is replaced atomically (written beside it under a
//! name the collector ignores, synced, renamed over it), so the collector
//! never reads half a file; every sample carries `binary="<name>"`, so the
//! two files never collide. `treeward_last_success_timestamp_seconds`
//! carries over from the previous file when this pass did not succeed (an
//! entry failed or a root was refused). Failure mode: a metrics file that
//! cannot be written is logged, never fails the pass.

use crate::pass::report::Report;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest previous file read back (for its last success time).
const MAX_PROM: u64 = 64 << 10;
const LAST_SUCCESS: &str = "treeward_last_success_timestamp_seconds";

/// Whether a pass succeeded: nothing failed and no root was refused.
pub fn succeeded(report: &Report) -> bool {
    report.failed_count == 0 && report.refused_roots.is_empty()
}

/// The text of `<binary>.prom` for one pass that ended at `now` (seconds
/// since the epoch); `last_success` is the previous file's value, used when
/// this pass did not succeed.
pub fn render(binary: &str, report: &Report, now: u64, last_success: Option<u64>) -> String {
    let entries: [(&str, &str, usize); 7] = [
        (
            "treeward_backlog_entries",
            "Residue found by the last pass (swept plus root-owned skipped); a growing backlog means crashes are piling up.",
            report.backlog_count,
        ),
        ("treeward_swept_entries", "Entries removed by the last pass (preserved ones included).", report.swept_count),
        ("treeward_failed_entries", "Entries whose removal failed in the last pass (retried next pass).", report.failed_count),
        ("treeward_preserved_entries", "Entries whose at-risk work the last pass preserved before removing them.", report.preserved_count),
        ("treeward_kept_entries", "At-risk entries the last pass left in place.", report.kept_count),
        ("treeward_in_use_entries", "Entries the last pass left alone because something uses them.", report.in_use_count),
        ("treeward_refused_entries", "Entries and roots the last pass refused to act on.", report.refused_count),
    ];
    let label = format!("{{binary=\"{binary}\"}}");
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{label} {value}\n"
        );
    };
    for (name, help, value) in entries {
        gauge(name, help, value.to_string());
    }
    gauge(
        "treeward_pass_duration_seconds",
        "How long the last pass took.",
        format!("{:.3}", report.duration_ms as f64 / 1000.0),
    );
    gauge(
        "treeward_last_pass_timestamp_seconds",
        "When the last pass ended (Unix time).",
        now.to_string(),
    );
    let success = if succeeded(report) {
        Some(now)
    } else {
        last_success
    };
    if let Some(t) = success {
        gauge(
            LAST_SUCCESS,
            "When the last pass that succeeded (nothing failed, no root refused) ended (Unix time).",
            t.to_string(),
        );
    }
    out
}

/// The last success time in a previous file's text.
pub fn last_success_in(text: &str) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(LAST_SUCCESS) && !l.starts_with('#'))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Writes `<binary>.prom` for `report` into `dir`, if metrics are
/// configured; errors are logged.
pub fn write(dir: Option<&Path>, binary: &str, report: &Report) {
    let Some(dir) = dir else { return };
    if let Err(e) = write_file(dir, binary, report) {
        log::warn!(
            "metrics not written to {}/{binary}.prom: {e}",
            dir.display()
        );
    }
}

fn write_file(dir: &Path, binary: &str, report: &Report) -> Result<(), String> {
    // The directory is the admin's (validated absolute); inside it nothing
    // is followed: the previous file is read only if regular, and the new
    // one is created exclusively, then renamed.
    let fd = crate::fd::open_path_trusted(dir).map_err(|e| e.to_string())?;
    let name = OsString::from(format!("{binary}.prom"));
    let previous = crate::fd::read_at(fd.as_fd(), &name, MAX_PROM)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = render(
        binary,
        report,
        now,
        previous.as_deref().and_then(last_success_in),
    );
    crate::fd::replace_at(fd.as_fd(), &name, text.as_bytes()).map_err(|e| e.desc().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::report::{Action, Outcome};

    fn report(actions: &[Action]) -> Report {
        let entries = actions
            .iter()
            .map(|a| Outcome::new("/r/x".into(), *a))
            .collect();
        Report::new(false, entries, vec![], true, 0, 1500)
    }

    #[test]
    fn a_successful_pass_is_its_own_last_success() {
        let text = render("treeward-sweep", &report(&[Action::Removed]), 100, Some(7));
        assert!(text.contains("treeward_swept_entries{binary=\"treeward-sweep\"} 1\n"));
        assert!(text.contains("treeward_pass_duration_seconds{binary=\"treeward-sweep\"} 1.500\n"));
        assert_eq!(last_success_in(&text), Some(100));
    }

    #[test]
    fn a_failed_pass_keeps_the_previous_success() {
        let text = render("treeward-reap", &report(&[Action::Failed]), 100, Some(7));
        assert_eq!(last_success_in(&text), Some(7));
        let first = render("treeward-reap", &report(&[Action::Failed]), 100, None);
        assert_eq!(last_success_in(&first), None);
        assert!(!first.contains(LAST_SUCCESS));
    }
}
