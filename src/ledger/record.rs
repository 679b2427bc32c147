//! The ledger's record model: what one known worktree is ([`Record`], its
//! lifecycle [`State`], a lease [`Holder`]), the [`Document`] that holds
//! them all, and the one timestamp format. Plain data and its rules, no
//! files: how it is stored is [`super::store`].

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Lifecycle state of a record (SPEC "Lifecycle states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Recorded by the hook, a lease or `register`: an agent may be using it.
    Active,
    /// The orchestrator is done with it: the reaper may take it now.
    Released,
    /// Its directory is gone (its branch kept or deleted as the report says).
    Removed,
    /// Its work at risk was recorded in its repository, then it was removed.
    Preserved,
    /// A removal failed; the next pass tries again.
    RetryRemove,
    /// Left in place: work at risk under `policy = "keep"`, or nothing could
    /// record it.
    Kept,
}

impl State {
    /// The state in words, for people.
    pub fn words(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Released => "released",
            State::Removed => "removed",
            State::Preserved => "preserved",
            State::RetryRemove => "retry removal",
            State::Kept => "kept",
        }
    }
}

/// One known worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub path: PathBuf,
    /// The common git dir.
    pub repository: PathBuf,
    /// The worktree's admin name under `<common>/worktrees/`.
    #[serde(default)]
    pub worktree_name: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub base_commit: Option<String>,
    pub uid: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub last_transition: String,
    pub state: State,
    #[serde(default)]
    pub preserved_refs: Vec<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// A process that owns the worktree while it lives (in use). Read, and
    /// honoured, but written by nothing in treeward: leases record
    /// [`Record::lease`] instead.
    #[serde(default)]
    pub owner_pid: Option<u32>,
    /// The process holding a lease on the worktree (`treeward lease`, see
    /// [`crate::lease`]); `None` when no lease was taken or the last one
    /// ended cleanly. Absent from ledgers written before leases: `None`.
    #[serde(default)]
    pub lease: Option<Holder>,
}

/// The process that holds a lease: its pid and its start time, so that a
/// pid the kernel gave to another process since is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// Field 22 (`starttime`) of `/proc/<pid>/stat`: clock ticks since boot.
    pub start_time: u64,
}

impl Record {
    /// A new `active` record created now, with a fresh id.
    pub fn new(path: &Path, repository: &Path, uid: u32) -> Record {
        let created = now();
        Record {
            id: Record::new_id(),
            path: path.to_path_buf(),
            repository: repository.to_path_buf(),
            worktree_name: None,
            branch: None,
            base_commit: None,
            uid,
            created_at: created.clone(),
            last_transition: created,
            state: State::Active,
            preserved_refs: Vec::new(),
            attempts: 0,
            last_error: None,
            owner_pid: None,
            lease: None,
        }
    }

    /// An id unique across processes and threads: nanoseconds since the
    /// epoch, pid and a per-process counter, in hex (`<nanos>-<pid>-<n>`).
    pub fn new_id() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:x}-{:x}-{n:x}", std::process::id())
    }

    /// Moves the record to `state`, stamping `last_transition` with now.
    pub fn transition(&mut self, state: State) {
        self.state = state;
        self.last_transition = now();
    }
}

/// The current time as RFC 3339 UTC with second precision
/// (`2024-05-01T12:00:00Z`): the one format of every ledger timestamp.
pub fn now() -> String {
    format_timestamp(SystemTime::now())
}

/// `t` as RFC 3339 UTC with second precision.
pub fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses a ledger timestamp (RFC 3339 UTC); `None` if it is not one.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub schema: u32,
    pub records: Vec<Record>,
    /// Not stored. Set by [`Ledger::update`] when the ledger was corrupt: the
    /// file it was moved aside to. The document is then empty and the caller
    /// should rebuild it from what is on disk.
    #[serde(skip)]
    pub recovered_from: Option<PathBuf>,
}

impl Default for Document {
    fn default() -> Document {
        Document::empty()
    }
}

impl Document {
    /// A document with no records at the current schema.
    pub fn empty() -> Document {
        Document {
            schema: SCHEMA_VERSION,
            records: Vec::new(),
            recovered_from: None,
        }
    }

    /// The newest record for the worktree at exactly `path` (a path can be
    /// reused: older records of it are history).
    pub fn find_by_path(&self, path: &Path) -> Option<&Record> {
        self.records.iter().rev().find(|r| r.path == path)
    }

    /// The newest record for the worktree at exactly `path`, to change it.
    pub fn find_by_path_mut(&mut self, path: &Path) -> Option<&mut Record> {
        self.records.iter_mut().rev().find(|r| r.path == path)
    }

    /// The record with this id.
    pub fn find_by_id(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    /// The record with this id, to change it.
    pub fn find_by_id_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(path: &str) -> Record {
        Record::new(Path::new(path), Path::new("/srv/repo.git"), 1000)
    }

    #[test]
    fn find_helpers_and_transitions() {
        let mut doc = Document::empty();
        doc.records.push(sample("/tmp/adf-worktrees/a"));
        doc.records.push(sample("/tmp/adf-worktrees/b"));
        let id = doc.records[1].id.clone();
        assert_ne!(doc.records[0].id, id);
        assert_eq!(
            doc.find_by_id(&id).map(|r| r.path.clone()),
            Some(PathBuf::from("/tmp/adf-worktrees/b"))
        );
        assert!(doc
            .find_by_path(Path::new("/tmp/adf-worktrees/c"))
            .is_none());
        let rec = doc
            .find_by_path_mut(Path::new("/tmp/adf-worktrees/a"))
            .unwrap();
        rec.transition(State::Released);
        assert_eq!(doc.records[0].state, State::Released);
        assert!(parse_timestamp(&doc.records[0].last_transition).is_some());
        assert!(doc.find_by_id_mut("nope").is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
