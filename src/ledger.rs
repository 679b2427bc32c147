//! The ledger: the JSON state file. STUB: contract only.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Lifecycle state of a record (SPEC "Lifecycle states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Released,
    Removed,
    Preserved,
    RetryRemove,
    Kept,
}

/// One known worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub path: PathBuf,
    /// The common git dir.
    pub repository: PathBuf,
    /// The worktree's admin name under `<common>/worktrees/`.
    pub worktree_name: Option<String>,
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    pub uid: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub last_transition: String,
    pub state: State,
    pub preserved_refs: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// A process that owns the worktree while it lives (in use).
    pub owner_pid: Option<u32>,
}

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub schema: u32,
    pub records: Vec<Record>,
}

#[derive(Debug)]
pub struct LedgerError;

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}
impl std::error::Error for LedgerError {}

/// A ledger file.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn new(path: &Path) -> Ledger {
        Ledger {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads without changing anything on disk (no lock file created, no
    /// move-aside): a missing file is an empty document; a corrupt one is an
    /// error.
    pub fn read(&self) -> Result<Document, LedgerError> {
        todo!()
    }

    /// Read-modify-write under an exclusive lock, replaced atomically.
    pub fn update<R>(&self, _f: impl FnOnce(&mut Document) -> R) -> Result<R, LedgerError> {
        todo!()
    }
}
