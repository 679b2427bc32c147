//! Registering a worktree: what the hook does for `git worktree add`, for
//! an orchestrator that creates worktrees in-process (through a library, or
//! with hooks disabled) and wants them in the ledger all the same.
//!
//! Contract:
//! - `path` (made absolute, symlinks not resolved) must be an entry of a
//!   configured root holding a linked worktree that verifies as the root's
//!   owner's claim ([`crate::claim`]), exactly as for a lease. Anything else
//!   is [`RegisterError::BadPath`] and nothing is written.
//! - The worktree gets an `active` record built from its claim (repository,
//!   admin name, owner, and the branch or detached commit its admin dir's
//!   `HEAD` names), unless a record that is not finished already governs
//!   the path: then that record is the answer and nothing changes
//!   (registering twice is success). A governing record that names another
//!   repository is refused: the ledger is not trusted over the disk.
//! - Nothing of the worktree's repository is run or read beyond its claim;
//!   only the ledger is written.

use crate::claim::{self, Expect};
use crate::config::Config;
use crate::lease::{adopt, record_from_claim, refusal, Entry};
use crate::ledger::{Ledger, LedgerError};
use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A worktree in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The record's id (what `treeward release` and `list` name).
    pub id: String,
    /// The worktree's path, absolute.
    pub path: PathBuf,
    /// Whether this call created the record (`false`: it was there).
    pub created: bool,
}

/// Why a worktree was not registered; nothing was written.
#[derive(Debug)]
#[non_exhaustive]
pub enum RegisterError {
    /// The path is not a worktree treeward may record.
    BadPath {
        /// The path, absolute.
        path: PathBuf,
        /// Why, in words.
        why: String,
    },
    /// The ledger could not be read or written.
    Ledger(LedgerError),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadPath { path, why } => write!(
                f,
                "{}: cannot register it: {why} (nothing was recorded)",
                path.display()
            ),
            RegisterError::Ledger(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RegisterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegisterError::Ledger(e) => Some(e),
            RegisterError::BadPath { .. } => None,
        }
    }
}

/// Records the worktree at `path` as `active` (see the module's contract).
pub fn register(config: &Config, path: &Path) -> Result<Registered, RegisterError> {
    let bad = |(path, why)| RegisterError::BadPath { path, why };
    let entry = Entry::locate(config, path).map_err(bad)?;
    let owner = claim::expected_owner(entry.root, nix::unistd::geteuid().as_raw());
    let claim = claim::verify_at(
        entry.open.fd.as_fd(),
        &entry.root.path,
        &entry.name,
        Expect::owner(owner),
    )
    .map_err(|e| bad((entry.path.clone(), refusal(e))))?;
    let fresh = record_from_claim(&claim);
    let (id, created) = Ledger::new(&config.ledger)
        .update(|doc| {
            let before = doc.records.len();
            let id = adopt(doc, &fresh)?.id.clone();
            Ok((id, doc.records.len() > before))
        })
        .map_err(RegisterError::Ledger)?
        .map_err(|why| bad((entry.path.clone(), why)))?;
    Ok(Registered {
        id,
        path: entry.path,
        created,
    })
}
