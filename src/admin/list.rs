//! `treeward list`: the ledger's records joined with what is on disk, plus
//! the entries under the configured roots that no record names. Reads only,
//! and cheaply: no repository is opened (locked is the admin dir's `locked`
//! file, in use is one `/proc` scan, `flock` probes and the recorded owner).
//!
//! Run as root over untrusted entries, it must never block or be led
//! astray: a path outside the roots is not looked into, and inside an entry
//! only a verified claim is read (no file by path, so a FIFO planted as
//! `locked`, `HEAD`, `gitdir` or `commondir` is a refusal, not a hang).
//!
//! The JSON document (`--json`) is a contract, documented in the README.

use crate::claim::{self, Expect, Unclaimed};
use crate::config::Config;
use crate::in_use::{flock_held, holder_alive, pid_alive, ProcessTable};
use crate::ledger::{self, Document, Holder, Record, State};
use crate::risk::{self, Kind, Location};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One row: a record, an unrecorded entry, or both facts joined.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(serialize_with = "crate::as_owner::wire_path::serialize")]
    pub path: PathBuf,
    /// The root the path is an entry of, if any.
    pub root: Option<PathBuf>,
    /// Whether the ledger has a record for it.
    pub recorded: bool,
    pub id: Option<String>,
    pub state: Option<State>,
    pub repository: Option<PathBuf>,
    pub branch: Option<String>,
    /// What is at the path now.
    pub kind: Kind,
    pub exists: bool,
    pub locked: bool,
    pub lock_reason: Option<String>,
    pub in_use: bool,
    /// Pids using it (cwd, root, open file, the recorded live owner or lease
    /// holder).
    pub in_use_by: Vec<u32>,
    /// The lease holder the record names (`treeward lease`), and whether it
    /// is alive; null when the record names none.
    pub lease: Option<LeaseHolder>,
    pub created_at: Option<String>,
    pub last_transition: Option<String>,
    /// Seconds since the record was created, or for an unrecorded entry
    /// since its directory last changed; null when unknown.
    pub age_seconds: Option<u64>,
    pub preserved_refs: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Why treeward does not act on this path or record (not an entry of
    /// any configured root, a worktree that fails its claim, a record whose
    /// repository is not the one on disk); null when nothing is refused.
    pub refused: Option<String>,
}

/// A recorded lease holder.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseHolder {
    pub pid: u32,
    /// Its process start time (clock ticks since boot).
    pub start_time: u64,
    /// The process with this pid and start time still runs. False: the
    /// holder died without ending its lease, and the reaper takes an
    /// `active` worktree whose lease's `flock` nobody holds as released.
    pub alive: bool,
}

/// The whole `treeward list --json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub ledger: PathBuf,
    /// Why the ledger could not be read; the listing then holds only what
    /// is on disk.
    pub ledger_error: Option<String>,
    pub worktrees: Vec<Listed>,
}

/// Lists every record of `doc` and every unrecorded entry of the roots.
pub fn list(config: &Config, doc: &Document, ledger_error: Option<String>) -> Listing {
    let processes = ProcessTable::scan();
    let now = SystemTime::now();
    let mut worktrees: Vec<Listed> = doc
        .records
        .iter()
        .map(|r| {
            let mut row = on_disk(config, &r.path, &processes, now);
            join_record(&mut row, r, now);
            row
        })
        .collect();
    for root in &config.roots {
        let entries = crate::roots::entries(root).unwrap_or_else(|e| {
            log::warn!("cannot list root {}: {e}", root.path.display());
            Vec::new()
        });
        for path in entries {
            if doc.find_by_path(&path).is_none() {
                worktrees.push(on_disk(config, &path, &processes, now));
            }
        }
    }
    worktrees.sort_by(|a, b| a.path.cmp(&b.path));
    Listing {
        ledger: config.ledger.clone(),
        ledger_error,
        worktrees,
    }
}

/// What is at `path` now, as an unrecorded row. Nothing inside an entry is
/// read by path: the kind comes from `lstat` and the `.git`/`commondir`
/// pointers read with [`crate::fd::read_at`] ([`risk::locate`]); whether it
/// is locked, and its repository, only from a verified claim.
fn on_disk(config: &Config, path: &Path, processes: &ProcessTable, now: SystemTime) -> Listed {
    let location = risk::locate(path);
    let meta = std::fs::symlink_metadata(path).ok();
    let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
    let root = super::entry_of(config, path);
    let seen = match root {
        None => OnDisk::refused(NOT_AN_ENTRY.to_owned()),
        Some(root) => look(path, &location, root),
    };
    let mut in_use_by: Vec<u32> = if is_dir {
        processes.users_of(path).iter().map(|u| u.pid).collect()
    } else {
        Vec::new()
    };
    in_use_by.dedup();
    let flocked = is_dir && flock_held(path).unwrap_or(false);
    Listed {
        path: path.to_path_buf(),
        root: root.map(|r| r.path.clone()),
        recorded: false,
        id: None,
        state: None,
        repository: seen.repository,
        branch: None,
        kind: location.kind(),
        exists: meta.is_some(),
        locked: seen.lock.is_some(),
        lock_reason: seen.lock.filter(|r| !r.is_empty()),
        in_use: !in_use_by.is_empty() || flocked,
        in_use_by,
        lease: None,
        created_at: None,
        last_transition: None,
        age_seconds: meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| seconds_between(t, now)),
        preserved_refs: Vec::new(),
        attempts: 0,
        last_error: None,
        refused: seen.refused,
    }
}

/// Why a path outside the roots is not looked into.
const NOT_AN_ENTRY: &str =
    "not an entry of any configured root: treeward does not act on it, nor look inside";

/// What a listing learns from inside an entry.
#[derive(Default)]
struct OnDisk {
    repository: Option<PathBuf>,
    /// The lock reason ("" when none was given); `None` when unlocked.
    lock: Option<String>,
    refused: Option<String>,
}

impl OnDisk {
    fn refused(why: String) -> OnDisk {
        OnDisk {
            refused: Some(why),
            ..OnDisk::default()
        }
    }
}

/// Looks inside the entry `path` of `root`: a linked worktree only through
/// its claim for the root's owner; a main worktree's repository is where
/// its `.git` directory is.
fn look(path: &Path, location: &Location, root: &crate::config::Root) -> OnDisk {
    match location {
        Location::Main { common } => OnDisk {
            repository: Some(common.clone()),
            ..OnDisk::default()
        },
        Location::Linked { .. } => {
            let owner = claim::expected_owner(root, super::euid());
            match claim::verify(path, Expect::owner(owner)) {
                Ok(c) => OnDisk {
                    repository: Some(c.common().to_path_buf()),
                    lock: c.lock().map(str::to_owned),
                    refused: None,
                },
                Err(Unclaimed::Refused(why)) => OnDisk::refused(why),
                // Gone or broken meanwhile: residue, nothing to refuse.
                Err(_) => OnDisk::default(),
            }
        }
        _ => OnDisk::default(),
    }
}

/// Adds the record's facts to the row of its path.
fn join_record(row: &mut Listed, r: &Record, now: SystemTime) {
    row.recorded = true;
    row.id = Some(r.id.clone());
    row.state = Some(r.state);
    if let Some(on_disk) = row.repository.as_ref().filter(|c| **c != r.repository) {
        row.refused.get_or_insert(format!(
            "the ledger names the repository {}, but the worktree on disk belongs to {}: \
             the record is not acted on",
            r.repository.display(),
            on_disk.display()
        ));
    }
    row.repository = Some(r.repository.clone());
    row.branch = r.branch.clone();
    row.created_at = Some(r.created_at.clone());
    row.last_transition = Some(r.last_transition.clone());
    row.age_seconds = ledger::parse_timestamp(&r.created_at).and_then(|t| seconds_between(t, now));
    row.preserved_refs = r.preserved_refs.clone();
    row.attempts = r.attempts;
    row.last_error = r.last_error.clone();
    if let Some(pid) = r.owner_pid.filter(|p| pid_alive(*p)) {
        row.in_use = true;
        row.in_use_by.push(pid);
    }
    if let Some(h @ Holder { pid, start_time }) = r.lease {
        let alive = holder_alive(&h);
        if alive {
            row.in_use = true;
            row.in_use_by.push(pid);
        }
        row.lease = Some(LeaseHolder {
            pid,
            start_time,
            alive,
        });
    }
}

fn seconds_between(then: SystemTime, now: SystemTime) -> Option<u64> {
    now.duration_since(then).ok().map(|d| d.as_secs())
}

/// The human listing: a header, one aligned row per path (state, kind,
/// age, branch, preserved work, path, then notes), and a count. Warnings
/// (an unreadable ledger) are the caller's, on stderr.
pub fn render_human(listing: &Listing) -> String {
    let mut rows = vec![[
        "STATE",
        "KIND",
        "AGE",
        "BRANCH",
        "PRESERVED",
        "PATH",
        "NOTES",
    ]
    .map(str::to_owned)
    .to_vec()];
    for w in &listing.worktrees {
        let state = w.state.map_or("unrecorded", State::words).to_owned();
        let preserved = match w.preserved_refs.len() {
            0 => "-".to_owned(),
            n => format!("{n} ref(s)"),
        };
        rows.push(vec![
            state,
            kind_words(w).to_owned(),
            w.age_seconds.map_or_else(|| "?".to_owned(), short_age),
            w.branch.clone().unwrap_or_else(|| "-".to_owned()),
            preserved,
            crate::style::path(&w.path),
            notes(w).join(", "),
        ]);
    }
    let mut out = crate::style::table(&rows);
    let worktrees = listing
        .worktrees
        .iter()
        .filter(|w| w.exists && matches!(w.kind, Kind::LinkedWorktree | Kind::MainWorktree))
        .count();
    let others = listing.worktrees.len() - worktrees;
    out.push_str(&format!("{worktrees} worktree(s)"));
    if others > 0 {
        out.push_str(&format!(", {others} other entr(ies) and record(s)"));
    }
    out.push('\n');
    out
}

/// What is at the path, in words.
fn kind_words(w: &Listed) -> &'static str {
    if !w.exists {
        return "gone";
    }
    match w.kind {
        Kind::LinkedWorktree => "worktree",
        Kind::MainWorktree => "main worktree",
        Kind::Broken => "broken",
        Kind::NotAWorktree => "directory",
        Kind::Symlink => "symlink",
        Kind::Missing => "gone",
    }
}

/// The row's notes: id, lock, use, lease, refusal, last error.
fn notes(w: &Listed) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(id) = &w.id {
        notes.push(format!("id {id}"));
    }
    if w.locked {
        notes.push(match &w.lock_reason {
            Some(r) => format!("locked: {r}"),
            None => "locked".to_owned(),
        });
    }
    if w.in_use {
        notes.push("in use".to_owned());
    }
    match &w.lease {
        Some(l) if l.alive => notes.push(format!("leased by pid {}", l.pid)),
        Some(l) => notes.push(format!("lease holder pid {} gone", l.pid)),
        None => {}
    }
    if let Some(r) = &w.refused {
        notes.push(format!("refused: {r}"));
    }
    if let Some(e) = &w.last_error {
        notes.push(format!("last error: {e}"));
    }
    notes
}

/// An age in its largest unit: `40s`, `12m`, `5h`, `3d`.
fn short_age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_checker() {
        assert_eq!(Location::Missing.kind(), Kind::Missing);
        assert_eq!(Location::Plain { empty: true }.kind(), Kind::NotAWorktree);
        assert_eq!(Location::Broken { why: "x".into() }.kind(), Kind::Broken);
    }

    #[test]
    fn ages_read_in_their_largest_unit() {
        assert_eq!(short_age(59), "59s");
        assert_eq!(short_age(3599), "59m");
        assert_eq!(short_age(7200), "2h");
        assert_eq!(short_age(3 * 86_400 + 5), "3d");
    }

    #[test]
    fn an_age_in_the_future_is_unknown() {
        let now = SystemTime::now();
        assert_eq!(
            seconds_between(now + std::time::Duration::from_secs(5), now),
            None
        );
        assert_eq!(
            seconds_between(now - std::time::Duration::from_secs(5), now),
            Some(5)
        );
    }
}
