//! What a sweep (or a reap pass) did, in the vocabulary scripts rely on
//! (SPEC "Contracts"): one [`Outcome`] per entry and the counts derived from
//! them, rendered as a human summary, one JSON document, and journald
//! fields. `treeward-reap` reports with the same [`Report`], adding its own
//! counts around it (see `crate::reap::Report`).

use serde::Serialize;
use std::path::PathBuf;

/// The report fields SPEC names for `treeward-sweep --json` and
/// `treeward-reap --json` (besides `entries`): scripts rely on them. The
/// tests hold the reports to it.
#[cfg(feature = "internals")]
pub const CONTRACT_FIELDS: [&str; 6] = [
    "swept_count",
    "failed_count",
    "root_owned_skipped",
    "prune_succeeded",
    "duration_ms",
    "backlog_count",
];

/// What happened to one entry. The names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Deleted; nothing was at risk (or the policy is `discard`).
    Removed,
    /// Its work was recorded under `refs/treeward/preserved/`, then deleted.
    Preserved,
    /// At risk and left in place (policy `keep`, or work that cannot be
    /// preserved), reported.
    Kept,
    /// `git worktree lock`ed by its owner: left alone.
    SkippedLocked,
    /// A process uses it: left alone.
    SkippedInUse,
    /// Younger than the root's grace period (reaper only).
    SkippedYoung,
    /// Not safe to act on (see `error`): left alone.
    Refused,
    /// Something failed; retried on the next pass (see `error`).
    Failed,
    /// Owned by root and this pass is not root: left for the sweep.
    RootOwnedSkipped,
    /// Left for a later pass: quarantined, but the sweep's time budget ran
    /// out before it was drained (it waits in the root's trash, whole, or
    /// half-deleted once its work is preserved: see `preserved_refs`), or
    /// a removal that failed before backs off (reaper).
    Deferred,
    /// `--dry-run`: what would have happened is in `planned`.
    Planned,
}

/// One entry's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(serialize_with = "crate::as_owner::wire_path::serialize")]
    pub path: PathBuf,
    pub action: Action,
    /// Under `--dry-run`, the action that would have been taken.
    pub planned: Option<Action>,
    pub preserved_refs: Vec<String>,
    /// Whether the branch was deleted (integrated) or kept.
    pub branch: Option<String>,
    pub branch_deleted: bool,
    /// Bytes of files removed.
    pub bytes_freed: u64,
    pub error: Option<String>,
    /// Why this entry was acted on, when its record alone would not say
    /// (the reaper: "its lease holder (pid N) is gone…"); null otherwise.
    pub reason: Option<String>,
    /// The repository its work was preserved in (null when nothing was).
    #[serde(serialize_with = "crate::as_owner::wire_path_opt::serialize")]
    pub repository: Option<PathBuf>,
}

impl Outcome {
    pub fn new(path: PathBuf, action: Action) -> Outcome {
        Outcome {
            path,
            action,
            planned: None,
            preserved_refs: Vec::new(),
            branch: None,
            branch_deleted: false,
            bytes_freed: 0,
            error: None,
            reason: None,
            repository: None,
        }
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Outcome {
        self.error = Some(error.into());
        self
    }
}

/// A root that was not swept, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedRoot {
    #[serde(serialize_with = "crate::as_owner::wire_path::serialize")]
    pub path: PathBuf,
    pub error: String,
}

/// The whole report: `treeward-sweep --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Planned only: nothing was changed.
    pub dry_run: bool,
    /// Entries removed (with their work preserved first where at risk).
    pub swept_count: usize,
    /// Entries whose reclaiming failed; retried next pass.
    pub failed_count: usize,
    /// Entries left because root owns them and only root may reclaim them.
    pub root_owned_skipped: usize,
    /// Whether every repository touched was pruned of its stale admin entries.
    pub prune_succeeded: bool,
    /// How long the pass took, in milliseconds.
    pub duration_ms: u64,
    /// `swept_count + root_owned_skipped`: residue that piled up since the
    /// last start. Over `backlog_warn`, crashes are piling up.
    pub backlog_count: usize,
    /// Entries whose work at risk was preserved before removal.
    pub preserved_count: usize,
    /// Entries kept in place (work at risk under `keep`, or unrecordable).
    pub kept_count: usize,
    /// Entries skipped because a `git worktree lock` holds them.
    pub locked_count: usize,
    /// Entries skipped because a process uses them.
    pub in_use_count: usize,
    /// Entries refused as untrusted (wrong owner, forged, swapped).
    pub refused_count: usize,
    /// Entries left in the trash when the budget ran out; next pass goes on.
    pub deferred_count: usize,
    /// Bytes of files removed.
    pub bytes_freed: u64,
    /// Under `--dry-run`: entries that would be removed or preserved then
    /// removed (`planned_removed_count + planned_preserved_count`); 0 on a
    /// real pass.
    pub planned_swept_count: usize,
    /// Under `--dry-run`: entries that would be removed.
    pub planned_removed_count: usize,
    /// Under `--dry-run`: entries that would be preserved, then removed.
    pub planned_preserved_count: usize,
    /// Under `--dry-run`: entries that would be kept in place.
    pub planned_kept_count: usize,
    /// How long the service's start was held up: until no entry was left
    /// under the roots' live names.
    pub blocking_ms: u64,
    /// Roots the pass refused to sweep, and why.
    pub refused_roots: Vec<RefusedRoot>,
    /// One outcome per entry, in the order handled.
    pub entries: Vec<Outcome>,
}

impl Report {
    /// Derives the counts from the entries.
    pub fn new(
        dry_run: bool,
        entries: Vec<Outcome>,
        refused_roots: Vec<RefusedRoot>,
        prune_succeeded: bool,
        blocking_ms: u64,
        duration_ms: u64,
    ) -> Report {
        let count = |a: Action| entries.iter().filter(|e| e.action == a).count();
        let preserved_count = count(Action::Preserved);
        let plans = |a: Action| entries.iter().filter(|e| e.planned == Some(a)).count();
        let planned_removed_count = plans(Action::Removed);
        let planned_preserved_count = plans(Action::Preserved);
        let swept_count = count(Action::Removed) + preserved_count;
        let root_owned_skipped = count(Action::RootOwnedSkipped);
        Report {
            dry_run,
            swept_count,
            failed_count: count(Action::Failed),
            root_owned_skipped,
            prune_succeeded,
            duration_ms,
            backlog_count: swept_count + root_owned_skipped,
            preserved_count,
            kept_count: count(Action::Kept),
            locked_count: count(Action::SkippedLocked),
            in_use_count: count(Action::SkippedInUse),
            refused_count: count(Action::Refused) + refused_roots.len(),
            deferred_count: count(Action::Deferred),
            bytes_freed: entries.iter().map(|e| e.bytes_freed).sum(),
            planned_swept_count: planned_removed_count + planned_preserved_count,
            planned_removed_count,
            planned_preserved_count,
            planned_kept_count: plans(Action::Kept),
            blocking_ms,
            refused_roots,
            entries,
        }
    }

    /// The report's counts as journald fields (`TREEWARD_SWEPT=12`, …).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("swept", self.swept_count.to_string()),
            ("failed", self.failed_count.to_string()),
            ("root_owned_skipped", self.root_owned_skipped.to_string()),
            ("prune_succeeded", self.prune_succeeded.to_string()),
            ("duration_ms", self.duration_ms.to_string()),
            ("backlog", self.backlog_count.to_string()),
            ("preserved", self.preserved_count.to_string()),
            ("kept", self.kept_count.to_string()),
            ("locked", self.locked_count.to_string()),
            ("in_use", self.in_use_count.to_string()),
            ("refused", self.refused_count.to_string()),
            ("deferred", self.deferred_count.to_string()),
            ("bytes_freed", self.bytes_freed.to_string()),
            ("blocking_ms", self.blocking_ms.to_string()),
            ("planned_swept", self.planned_swept_count.to_string()),
            (
                "planned_preserved",
                self.planned_preserved_count.to_string(),
            ),
            ("planned_kept", self.planned_kept_count.to_string()),
        ]
    }

    /// The one-line summary (also the log message and sd_notify STATUS):
    /// the counts that are not zero, as plans under `--dry-run`.
    pub fn summary(&self) -> String {
        let mut line = self.summary_counts(&[]);
        line.push_str(&format!(
            "; blocked {} ms of {} ms",
            self.blocking_ms, self.duration_ms
        ));
        line
    }

    /// The summary's counts, with `extra` (count, words) pairs among the
    /// skips (the reaper adds its own); `nothing to do` when all are zero.
    pub fn summary_counts(&self, extra: &[(usize, &str)]) -> String {
        let (removed, preserved, kept) = if self.dry_run {
            (
                self.planned_removed_count,
                self.planned_preserved_count,
                self.planned_kept_count,
            )
        } else {
            (
                self.swept_count - self.preserved_count,
                self.preserved_count,
                self.kept_count,
            )
        };
        let acted = if self.dry_run {
            [
                (removed, "would remove"),
                (preserved, "would preserve then remove"),
                (kept, "would keep"),
            ]
        } else {
            [
                (removed, "removed"),
                (preserved, "preserved then removed"),
                (kept, "kept"),
            ]
        };
        let mut parts: Vec<String> = acted
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, words)| format!("{words} {n}"))
            .collect();
        let skipped = [
            (self.failed_count, "failed"),
            (self.locked_count, "locked"),
            (self.in_use_count, "in use"),
            (self.refused_count, "refused"),
            (self.deferred_count, "deferred to the next pass"),
            (self.root_owned_skipped, "root-owned left for the sweep"),
        ];
        parts.extend(
            skipped
                .iter()
                .chain(extra)
                .filter(|(n, _)| *n > 0)
                .map(|(n, words)| format!("{n} {words}")),
        );
        if parts.is_empty() {
            parts.push("nothing to do".to_owned());
        }
        let mut line = if self.dry_run {
            format!("dry run, nothing changed: {}", parts.join(", "))
        } else {
            parts.join(", ")
        };
        if self.bytes_freed > 0 {
            line.push_str(&format!("; {} freed", human_bytes(self.bytes_freed)));
        }
        line
    }

    /// The human report: one line per entry, then the summary.
    pub fn render_human(&self) -> String {
        let mut out = self.render_entries();
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// One line per refused root and per entry, without the summary: what
    /// happened in words (what would happen, under `--dry-run`), the path,
    /// where its work went, and why.
    pub fn render_entries(&self) -> String {
        let mut out = String::new();
        for root in &self.refused_roots {
            out.push_str(&format!(
                "refused root {}: {}\n",
                crate::style::path(&root.path),
                root.error
            ));
        }
        for e in &self.entries {
            let words = match e.planned {
                Some(plan) => plan.planned_words(),
                None => e.action.words(),
            };
            let mut line = format!("{words:<28} {}", crate::style::path(&e.path));
            if !e.preserved_refs.is_empty() {
                line.push_str(&format!("  -> {}", e.preserved_refs.join(", ")));
            }
            if let Some(branch) = &e.branch {
                if !e.branch_deleted && matches!(e.action, Action::Removed | Action::Preserved) {
                    line.push_str(&format!("  (branch {branch} kept: not integrated)"));
                }
            }
            if let Some(err) = &e.error {
                line.push_str(&format!("  ({err})"));
            }
            if let Some(reason) = &e.reason {
                line.push_str(&format!("  [{reason}]"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

impl Action {
    /// What happened, in words.
    pub fn words(self) -> &'static str {
        match self {
            Action::Removed => "removed",
            Action::Preserved => "preserved then removed",
            Action::Kept => "kept (at risk)",
            Action::SkippedLocked => "skipped: locked",
            Action::SkippedInUse => "skipped: in use",
            Action::SkippedYoung => "skipped: younger than grace",
            Action::Refused => "refused",
            Action::Failed => "failed",
            Action::RootOwnedSkipped => "skipped: root-owned",
            Action::Deferred => "deferred to the next pass",
            Action::Planned => "planned",
        }
    }

    /// What would happen, in words (`--dry-run`).
    pub fn planned_words(self) -> &'static str {
        match self {
            Action::Removed => "would remove",
            Action::Preserved => "would preserve then remove",
            Action::Kept => "would keep (at risk)",
            Action::Failed => "would fail",
            other => other.words(),
        }
    }
}

/// Whether every admin entry that was to be removed was: no outcome failed
/// on one.
pub fn prune_succeeded(outcomes: &[Outcome]) -> bool {
    !outcomes.iter().any(|o| {
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("admin entry"))
    })
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(action: Action) -> Outcome {
        Outcome::new(PathBuf::from("/r/x"), action)
    }

    #[test]
    fn counts_derive_from_entries() {
        let entries = vec![
            outcome(Action::Removed),
            outcome(Action::Removed),
            outcome(Action::Preserved),
            outcome(Action::Failed),
            outcome(Action::RootOwnedSkipped),
            outcome(Action::SkippedLocked),
            outcome(Action::SkippedInUse),
            outcome(Action::Kept),
            outcome(Action::Refused),
            outcome(Action::Deferred),
        ];
        let r = Report::new(
            false,
            entries,
            vec![RefusedRoot {
                path: "/x".into(),
                error: "e".into(),
            }],
            true,
            5,
            9,
        );
        assert_eq!(
            (r.swept_count, r.preserved_count, r.failed_count),
            (3, 1, 1)
        );
        assert_eq!((r.root_owned_skipped, r.backlog_count), (1, 4));
        assert_eq!((r.locked_count, r.in_use_count, r.kept_count), (1, 1, 1));
        assert_eq!((r.refused_count, r.deferred_count), (2, 1));
    }

    #[test]
    fn json_uses_the_contract_names() {
        let mut e = outcome(Action::Planned);
        e.planned = Some(Action::SkippedInUse);
        let v = serde_json::to_value(Report::new(true, vec![e], vec![], true, 0, 0)).unwrap();
        for key in CONTRACT_FIELDS {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["entries"][0]["action"], "planned");
        assert_eq!(v["entries"][0]["planned"], "skipped_in_use");
        assert_eq!(v["entries"][0]["preserved_refs"], serde_json::json!([]));
        assert_eq!(v["entries"][0]["error"], serde_json::Value::Null);
        assert_eq!(v["entries"][0]["reason"], serde_json::Value::Null);
    }

    fn plan(action: Action) -> Outcome {
        let mut e = outcome(Action::Planned);
        e.planned = Some(action);
        e
    }

    #[test]
    fn a_dry_run_counts_and_words_its_plans() {
        let entries = vec![
            plan(Action::Removed),
            plan(Action::Removed),
            plan(Action::Preserved),
            plan(Action::Kept),
            outcome(Action::SkippedLocked),
        ];
        let r = Report::new(true, entries, vec![], true, 0, 3);
        assert_eq!(r.swept_count, 0, "nothing was swept");
        assert_eq!(
            (
                r.planned_swept_count,
                r.planned_removed_count,
                r.planned_preserved_count,
                r.planned_kept_count
            ),
            (3, 2, 1, 1)
        );
        let summary = r.summary();
        assert!(
            summary.starts_with(
                "dry run, nothing changed: would remove 2, would preserve then remove 1, \
                 would keep 1, 1 locked"
            ),
            "{summary}"
        );
        let lines = r.render_entries();
        assert!(lines.starts_with("would remove "), "{lines}");
        assert!(lines.contains("would preserve then remove "), "{lines}");
        assert!(!lines.contains("planned"), "{lines}");
    }

    #[test]
    fn a_summary_shows_only_the_counts_that_are_not_zero() {
        let r = Report::new(false, vec![outcome(Action::Removed)], vec![], true, 1, 2);
        assert_eq!(r.summary(), "removed 1; blocked 1 ms of 2 ms");
        let empty = Report::new(false, vec![], vec![], true, 0, 0);
        assert!(
            empty.summary().starts_with("nothing to do"),
            "{}",
            empty.summary()
        );
        let mut kept_branch = outcome(Action::Removed);
        kept_branch.branch = Some("feature".into());
        let r = Report::new(false, vec![kept_branch], vec![], true, 0, 0);
        assert!(
            r.render_entries()
                .contains("branch feature kept: not integrated"),
            "{}",
            r.render_entries()
        );
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
