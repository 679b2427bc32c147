//! `treeward-check`: the read-only preflight. For each path, what removing it
//! would lose (the risk assessment), whether something is using it, and what
//! the ledger knows of it; rendered as a table for people or one JSON
//! document for scripts (schema in the README).

use crate::config::Config;
use crate::in_use::{flock_held, ProcessTable, ProcessUse};
use crate::ledger::{Document, Record, State};
use crate::risk::{self, Assessment, Kind, Reason};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One checked path: the assessment plus use and ledger facts.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    #[serde(flatten)]
    pub assessment: Assessment,
    /// A process has its cwd, root or an open file inside, or holds a
    /// `flock` on the directory, or the ledger's recorded owner is alive.
    pub in_use: bool,
    pub in_use_by: Vec<ProcessUse>,
    pub flock_held: bool,
    /// Processes whose use could not be read (permissions): `in_use: false`
    /// means "not in use by any process that could be read".
    pub unreadable_processes: u32,
    pub ledger_id: Option<String>,
    pub ledger_state: Option<State>,
}

/// The whole document `treeward-check --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub worktrees: Vec<Checked>,
    /// Why the ledger could not be read, if it could not; the check goes on
    /// without it.
    pub ledger_error: Option<String>,
}

impl Report {
    pub fn any_at_risk(&self) -> bool {
        self.worktrees.iter().any(|w| w.assessment.at_risk)
    }
}

/// The paths `--all` covers: every ledger record whose directory may still
/// exist, and every entry under the configured roots, each once.
pub fn all_targets(config: &Config, ledger: &Document) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ledger
        .records
        .iter()
        .filter(|r| !matches!(r.state, State::Removed | State::Preserved) || r.path.exists())
        .map(|r| r.path.clone())
        .collect();
    for root in &config.roots {
        match crate::roots::entries(root) {
            Ok(entries) => paths.extend(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot list root {}: {e}", root.path.display()),
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Checks each path. Reads only.
pub fn check(paths: &[PathBuf], ledger: &Document, ledger_error: Option<String>) -> Report {
    let processes = ProcessTable::scan();
    let worktrees = paths
        .iter()
        .map(|p| check_one(p, &processes, ledger))
        .collect();
    Report {
        worktrees,
        ledger_error,
    }
}

fn check_one(path: &Path, processes: &ProcessTable, ledger: &Document) -> Checked {
    let assessment = risk::assess(path);
    let record = ledger.records.iter().find(|r| r.path == path);
    let is_dir = matches!(
        assessment.kind,
        Kind::LinkedWorktree | Kind::MainWorktree | Kind::Broken | Kind::NotAWorktree
    ) && path.is_dir();
    let in_use_by: Vec<ProcessUse> = if is_dir {
        processes.users_of(path).into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let flock = is_dir && flock_held(path).unwrap_or(false);
    let owner_alive = record.is_some_and(owner_alive);
    Checked {
        in_use: !in_use_by.is_empty() || flock || owner_alive,
        in_use_by,
        flock_held: flock,
        unreadable_processes: processes.unreadable(),
        ledger_id: record.map(|r| r.id.clone()),
        ledger_state: record.map(|r| r.state),
        assessment,
    }
}

fn owner_alive(record: &Record) -> bool {
    record.owner_pid.is_some_and(crate::in_use::pid_alive)
}

/// The table a person reads: one line per path, the reasons spelled out.
pub fn render_human(report: &Report) -> String {
    let mut out = String::new();
    if let Some(e) = &report.ledger_error {
        out.push_str(&format!("warning: ledger not read: {e}\n"));
    }
    for w in &report.worktrees {
        let a = &w.assessment;
        let verdict = if a.at_risk { "AT RISK" } else { "safe" };
        out.push_str(&format!(
            "{verdict:<8} {}  {}\n",
            a.path.display(),
            headline(a)
        ));
        for line in details(w) {
            out.push_str(&format!("         - {line}\n"));
        }
    }
    let at_risk = report
        .worktrees
        .iter()
        .filter(|w| w.assessment.at_risk)
        .count();
    out.push_str(&format!(
        "{at_risk} of {} at risk\n",
        report.worktrees.len()
    ));
    out
}

fn headline(a: &Assessment) -> String {
    let what = match a.kind {
        Kind::LinkedWorktree => "worktree",
        Kind::MainWorktree => "main worktree",
        Kind::Broken => "broken worktree",
        Kind::NotAWorktree => "not a worktree",
        Kind::Symlink => "symlink (removed as a link)",
        Kind::Missing => "missing",
    };
    match (&a.branch, &a.head) {
        (Some(b), _) => format!("{what} on {b}"),
        (None, Some(h)) => format!("{what}, detached at {}", &h[..h.len().min(12)]),
        (None, None) => what.to_owned(),
    }
}

fn details(w: &Checked) -> Vec<String> {
    let a = &w.assessment;
    let mut lines: Vec<String> = a.reasons.iter().map(|r| spell(*r, a)).collect();
    if a.locked {
        lines.push(match &a.lock_reason {
            Some(r) => format!("locked: {r}"),
            None => "locked".to_owned(),
        });
    }
    for p in &w.in_use_by {
        lines.push(format!(
            "in use by {} (pid {}, {:?} {})",
            p.comm,
            p.pid,
            p.how,
            p.path.display()
        ));
    }
    if w.flock_held {
        lines.push("in use: a process holds a flock on the directory".to_owned());
    }
    if a.stashes > 0 {
        lines.push(format!(
            "{} stash entries (kept in the repository, not at risk)",
            a.stashes
        ));
    }
    lines
}

fn spell(reason: Reason, a: &Assessment) -> String {
    let c = &a.changes;
    let default = a
        .default_branch
        .as_deref()
        .unwrap_or("no default branch found");
    match reason {
        Reason::Staged => format!("{} staged change(s)", c.staged),
        Reason::Modified => format!("{} modified file(s)", c.modified),
        Reason::Deleted => format!("{} deleted file(s)", c.deleted),
        Reason::Untracked => format!("{} untracked file(s)", c.untracked),
        Reason::Conflicted => format!("{} conflicted file(s)", c.conflicted),
        Reason::Unpushed => match &a.upstream {
            Some(u) => format!("{} commit(s) not pushed to {}", u.ahead, u.name),
            None => "branch has no upstream".to_owned(),
        },
        Reason::Unmerged => format!("branch not integrated into {default}"),
        Reason::DetachedUnreachable => {
            format!(
                "{} commit(s) on the detached HEAD that no ref reaches",
                a.detached_unreachable
            )
        }
        Reason::WorktreeRefs => format!("per-worktree refs: {}", a.worktree_refs.join(", ")),
        Reason::NotAWorktree => "not a git worktree: its files are in no repository".to_owned(),
        Reason::Broken => format!(
            "broken: {}",
            a.error.as_deref().unwrap_or("repository unreadable")
        ),
        Reason::MainWorktree => "the main worktree: removing it removes the repository".to_owned(),
        Reason::Error => format!(
            "could not assess: {}",
            a.error.as_deref().unwrap_or("unknown error")
        ),
    }
}
