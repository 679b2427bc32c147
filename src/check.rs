//! `treeward-check`: the read-only preflight. For each path, what removing it
//! would lose (the risk assessment), whether something is using it, and what
//! the ledger knows of it; rendered as a table for people or one JSON
//! document for scripts (schema in the README).
//!
//! Root checks any path, but opens no other user's repository: a worktree
//! is assessed by its verified owner in a worker ([`assess`]), so neither
//! root's git configuration nor a planted FIFO or symlink reaches the
//! verdict, and what cannot be verified is at risk with the refusal as its
//! error (fail closed).

use crate::as_owner::{Request, Response, Worker};
use crate::claim;
use crate::config::Config;
use crate::in_use::{flock_held, ProcessTable, ProcessUse};
use crate::ledger::{Document, Ledger, Record, State};
use crate::risk::{self, Assessment, Kind, Reason};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One checked path: the assessment plus use and ledger facts.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    #[serde(flatten)]
    /// What the worktree holds and whether removing it loses work.
    pub assessment: Assessment,
    /// A process has its cwd, root or an open file inside, or holds a
    /// `flock` on the directory, or the ledger's recorded owner is alive.
    pub in_use: bool,
    /// The processes that use it, and how.
    pub in_use_by: Vec<ProcessUse>,
    /// Whether a `flock` (a lease, a reaper pass) is held on its directory.
    pub flock_held: bool,
    /// Processes whose use could not be read (permissions): `in_use: false`
    /// means "not in use by any process that could be read".
    pub unreadable_processes: u32,
    /// The id of its ledger record, if it has one.
    pub ledger_id: Option<String>,
    /// Its ledger record's state, if it has one.
    pub ledger_state: Option<State>,
    /// The path as named, when it lies inside the worktree checked (a path
    /// is checked as the worktree it lies in, found as git finds it);
    /// `None` when it is `path` itself.
    pub requested_path: Option<PathBuf>,
}

/// The whole document `treeward-check --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One row per path checked, in order.
    pub worktrees: Vec<Checked>,
    /// Why the ledger could not be read, if it could not; the check goes on
    /// without it.
    pub ledger_error: Option<String>,
    /// Ledger records `--all` did not check, and why.
    pub skipped: Vec<Skipped>,
}

/// A ledger record `--all` left out.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub ledger_id: String,
    pub why: String,
}

impl Report {
    /// Whether any row has work at risk (`treeward-check` exits 1).
    pub fn any_at_risk(&self) -> bool {
        self.worktrees.iter().any(|w| w.assessment.at_risk)
    }
}

/// Checks the worktrees `paths` lie in, for a program that embeds treeward
/// (an orchestrator before it deletes a worktree itself). Reads only. Each
/// path is made absolute and assessed as the worktree it lies in, with the
/// ledger's record of it; the ledger is read if it can be (why not is in
/// [`Report::ledger_error`]). Every process but the caller counts as a
/// user of a worktree, the caller's own agents included.
pub fn check_paths(config: &Config, paths: &[PathBuf], worker: &Worker) -> Report {
    let (ledger, ledger_error) = read_ledger(config);
    let requested: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let targets: Vec<PathBuf> = requested.iter().map(|p| worktree_of(p)).collect();
    let mut report = check(&targets, &ledger, ledger_error, worker, Scan::Others);
    mark_requested(&mut report, &requested);
    report
}

/// The ledger, or an empty one and why it could not be read (a check goes
/// on without it, with a warning).
pub fn read_ledger(config: &Config) -> (Document, Option<String>) {
    match Ledger::new(&config.ledger).read() {
        Ok(doc) => (doc, None),
        Err(e) => {
            log::warn!("{e}; checking without it");
            (Document::default(), Some(e.to_string()))
        }
    }
}

/// Notes, on each of the first rows, the path the caller named when it
/// lies inside the worktree checked rather than being its top.
pub fn mark_requested(report: &mut Report, requested: &[PathBuf]) {
    for (w, asked) in report.worktrees.iter_mut().zip(requested) {
        if *asked != w.assessment.path {
            w.requested_path = Some(asked.clone());
        }
    }
}

/// The paths `--all` covers: every ledger record whose directory may still
/// exist and whose path is an entry of a configured root, and every entry
/// under the configured roots, each once. The ledger is untrusted: a record
/// elsewhere is not checked, but listed as skipped with why.
pub fn all_targets(config: &Config, ledger: &Document) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    for r in &ledger.records {
        if crate::admin::entry_of(config, &r.path).is_none() {
            skipped.push(Skipped {
                path: r.path.clone(),
                ledger_id: r.id.clone(),
                why: "not an entry of any configured root: a ledger record is checked only \
                      there (name the path to check it)"
                    .to_owned(),
            });
        } else if !matches!(r.state, State::Removed | State::Preserved)
            || std::fs::symlink_metadata(&r.path).is_ok()
        {
            paths.push(r.path.clone());
        }
    }
    for root in &config.roots {
        match crate::roots::entries(root) {
            Ok(entries) => paths.extend(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot list root {}: {e}", root.path.display()),
        }
    }
    paths.sort();
    paths.dedup();
    (paths, skipped)
}

/// What a named path is checked as: the worktree it lies in (a tracked or
/// untracked file, any subdirectory), found as git finds it; else the path
/// itself. Reads only the filesystem (no git runs before the worktree is
/// verified).
pub fn worktree_of(path: &Path) -> PathBuf {
    risk::discover(path).unwrap_or_else(|| path.to_path_buf())
}

/// Who the in-use check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every process but the caller, read before git runs: for a caller
    /// whose children may be the users (an orchestrator and its agents).
    Others,
    /// Every process but the caller and the processes it started, read
    /// while git runs: for `treeward-check`, whose only children are its
    /// git and workers (see [`ProcessTable::scan_excluding_own_tree`]).
    NotOwnTree,
}

/// Checks each path. Reads only. A path holding a repository is assessed by
/// [`assess`]: as root, by its verified owner through `worker`.
pub fn check(
    paths: &[PathBuf],
    ledger: &Document,
    ledger_error: Option<String>,
    worker: &Worker,
    scan: Scan,
) -> Report {
    let euid = nix::unistd::Uid::effective().as_raw();
    let assess_all =
        || -> Vec<Assessment> { paths.iter().map(|p| assess(p, worker, euid)).collect() };
    let (processes, assessments) = match scan {
        Scan::Others => {
            let processes = ProcessTable::scan();
            (processes, assess_all())
        }
        // Reading every process's open files costs what a small `git
        // status` does: it runs while git works.
        Scan::NotOwnTree => std::thread::scope(|s| {
            let processes = s.spawn(ProcessTable::scan_excluding_own_tree);
            let assessments = assess_all();
            let processes = processes
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (processes, assessments)
        }),
    };
    let worktrees = paths
        .iter()
        .zip(assessments)
        .map(|(p, a)| check_one(p, a, &processes, ledger))
        .collect();
    Report {
        worktrees,
        ledger_error,
        skipped: Vec::new(),
    }
}

fn check_one(
    path: &Path,
    assessment: Assessment,
    processes: &ProcessTable,
    ledger: &Document,
) -> Checked {
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
        requested_path: None,
        assessment,
    }
}

/// The assessment of `path` for a caller running as `euid`. What holds no
/// repository is judged from the filesystem alone. A main or linked worktree:
/// - as root, only once it verifies as one user's (its directory's owner
///   owns its admin dir and repository too, on a strict path), and then by
///   that user in a worker: root never opens another user's repository, so
///   neither that repository's configuration nor root's own (an excludes
///   file in root's `~/.gitconfig`) shapes the verdict;
/// - as its own owner, in-process, as `git status` would;
/// - as anyone else: not assessed.
///
/// Whatever is not assessed is at risk with the reason (fail closed).
pub fn assess(path: &Path, worker: &Worker, euid: u32) -> Assessment {
    let location = risk::locate(path);
    if !location.holds_repository() {
        return risk::assess_located(path, location);
    }
    let kind = location.kind();
    if euid != 0 {
        return match std::fs::symlink_metadata(path).map(|m| m.uid()) {
            Ok(uid) if uid == euid => risk::assess_located(path, location),
            Ok(uid) => risk::unassessed(
                path,
                kind,
                format!(
                    "{} belongs to uid {uid}, and this runs as uid {euid}: only its owner or \
                     root can assess it",
                    path.display()
                ),
            ),
            Err(e) => risk::unassessed(path, kind, format!("{}: {e}", path.display())),
        };
    }
    let repository = match claim::repository_of(path, None) {
        Ok(r) => r,
        Err(e) => return risk::unassessed(path, kind, format!("not assessed: {e}")),
    };
    let request = Request::Assess {
        path: path.to_path_buf(),
    };
    match worker.call(repository.owner(), &request) {
        Ok(Response::Assessed { assessment }) => *assessment,
        Ok(Response::Failed { message }) => risk::unassessed(path, kind, message),
        Ok(other) => risk::unassessed(path, kind, format!("unexpected reply {other:?}")),
        Err(e) => risk::unassessed(path, kind, format!("not assessed: {e}")),
    }
}

/// The assessment of `path` served to its owner `owner` (this process, or
/// root for its own): a main or linked worktree is assessed only if it
/// verifies as `owner`'s (see `claim`), so a worker never opens anything it
/// was not sent for.
pub fn assess_verified(path: &Path, owner: u32) -> Assessment {
    let location = risk::locate(path);
    if !location.holds_repository() {
        return risk::assess_located(path, location);
    }
    match claim::repository_of(path, Some(owner)) {
        Ok(_) => risk::assess_located(path, location),
        Err(e) => risk::unassessed(path, location.kind(), format!("not assessed: {e}")),
    }
}

fn owner_alive(record: &Record) -> bool {
    crate::in_use::recorded_process_alive(record)
}

/// The table a person reads: one line per path, the reasons spelled out.
pub fn render_human(report: &Report) -> String {
    let colour = crate::style::colour_enabled();
    let mut out = String::new();
    for w in &report.worktrees {
        let a = &w.assessment;
        if a.kind == Kind::Missing {
            out.push_str(&format!(
                "error: {}: no such file or directory\n",
                a.path.display()
            ));
            continue;
        }
        let verdict = if a.at_risk {
            crate::style::alarm("AT RISK ", colour)
        } else {
            "safe    ".to_owned()
        };
        out.push_str(&format!(
            "{verdict} {}  {}\n",
            crate::style::path(&a.path),
            headline(a)
        ));
        let losses = losses(w);
        if !losses.is_empty() {
            out.push_str("         would lose:\n");
            for line in losses {
                out.push_str(&format!("           - {line}\n"));
            }
        }
        for line in notes(w) {
            out.push_str(&format!("         note: {line}\n"));
        }
    }
    for s in &report.skipped {
        out.push_str(&format!(
            "skipped  {}  ledger record {}: {}\n",
            s.path.display(),
            s.ledger_id,
            s.why
        ));
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

/// What removing it would lose, one line per reason.
fn losses(w: &Checked) -> Vec<String> {
    let a = &w.assessment;
    a.reasons.iter().map(|r| spell(*r, a)).collect()
}

/// What is worth knowing but not lost: where a named path lies, a lock,
/// who uses it, stash entries.
fn notes(w: &Checked) -> Vec<String> {
    let a = &w.assessment;
    let mut lines = Vec::new();
    if let Some(p) = &w.requested_path {
        lines.push(format!(
            "checked for {}, which lies inside",
            crate::style::path(p)
        ));
    }
    if a.locked {
        lines.push(match &a.lock_reason {
            Some(r) => format!("locked: {r}"),
            None => "locked".to_owned(),
        });
    }
    for p in &w.in_use_by {
        lines.push(format!(
            "in use: pid {} ({}) has {} inside",
            p.pid,
            p.comm,
            p.how.words()
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
        Reason::Modified if c.hidden > 0 => format!(
            "{} modified file(s), {} of them hidden from git status (skip-worktree, \
             assume-unchanged)",
            c.modified, c.hidden
        ),
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
        Reason::InProgress => format!("in progress: {}", a.in_progress.join(", ")),
        Reason::Submodule => format!(
            "submodules or embedded repositories with work of their own: {}",
            a.submodules.join(", ")
        ),
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
