//! `treeward release PATH|ID`: the orchestrator's "done with it". The record
//! goes to `released`, and the reaper may then take the worktree without
//! waiting for its grace period. Public so that an orchestrator in Rust
//! calls the same code in-process.
//!
//! Contract:
//! - The argument is an id when the ledger has a record with that id, else a
//!   path (made absolute, symlinks not resolved).
//! - A record in `active` or `kept` goes to `released`. A record already
//!   `released`, or past it (`removed`, `preserved`, `retry_remove`), is left
//!   as it is: releasing twice, or after the sweep took it, is success.
//! - A path without a record must be an entry of a configured root holding a
//!   linked worktree: a `released` record is created from what is on disk
//!   (repository, admin name, branch, HEAD as base commit, the directory's
//!   owner as uid). Anything else is an error and nothing changes: an
//!   unknown id, a path outside every root, a path that is missing or not a
//!   linked worktree (the reaper treats such unrecorded entries as orphans
//!   anyway).

use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Document, Ledger, Record, State};
use crate::risk::{self, Location};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    pub id: String,
    pub path: PathBuf,
    /// The record's state before (`null`: there was no record).
    pub previous: Option<State>,
    /// The record's state now.
    pub state: State,
    /// Whether the ledger changed (or would, under dry run).
    pub changed: bool,
    pub dry_run: bool,
}

/// Releases the worktree named by `target` (a record id or a path).
pub fn release(config: &Config, target: &str, dry_run: bool) -> Result<Released, Error> {
    let ledger = Ledger::new(&config.ledger);
    // Decided against the current ledger, then redone under the lock: the
    // record found must still be there when it is changed.
    let doc = ledger.read()?;
    let fresh = match find(&doc, target) {
        Some(_) => None,
        None => Some(record_from_disk(config, &absolute(target)?)?),
    };
    let apply = |doc: &mut Document| -> Result<Released, Error> {
        let mut out = match (find(doc, target), &fresh) {
            (Some(i), _) => release_record(&mut doc.records[i]),
            (None, Some(record)) => {
                doc.records.push(record.clone());
                Released {
                    id: record.id.clone(),
                    path: record.path.clone(),
                    previous: None,
                    state: State::Released,
                    changed: true,
                    dry_run: false,
                }
            }
            (None, None) => return Err(Error::Usage(format!("no ledger record {target}"))),
        };
        out.dry_run = dry_run;
        Ok(out)
    };
    if dry_run {
        return apply(&mut doc.clone());
    }
    ledger.update(apply)?
}

/// The index of the record `target` names: by id, else by absolute path.
fn find(doc: &Document, target: &str) -> Option<usize> {
    doc.records.iter().position(|r| r.id == target).or_else(|| {
        let path = absolute(target).ok()?;
        doc.records.iter().position(|r| r.path == path)
    })
}

fn absolute(target: &str) -> Result<PathBuf, Error> {
    std::path::absolute(target).map_err(|e| Error::Usage(format!("{target}: {e}")))
}

/// Pure: moves a record to `released` when it is before that state.
pub fn release_record(record: &mut Record) -> Released {
    let previous = record.state;
    let changed = matches!(previous, State::Active | State::Kept);
    if changed {
        record.transition(State::Released);
    }
    Released {
        id: record.id.clone(),
        path: record.path.clone(),
        previous: Some(previous),
        state: record.state,
        changed,
        dry_run: false,
    }
}

/// A `released` record for the unrecorded linked worktree at `path`, which
/// must be an entry of a configured root.
fn record_from_disk(config: &Config, path: &Path) -> Result<Record, Error> {
    if config.entry_of(path).is_none() {
        return Err(Error::Usage(format!(
            "{}: no ledger record, and not an entry of any configured root (nothing changed)",
            path.display()
        )));
    }
    let (common, name) = match risk::locate(path) {
        Location::Linked { common, name, .. } => (common, name),
        Location::Missing => {
            return Err(Error::Usage(format!(
                "{}: no ledger record and no such file or directory",
                path.display()
            )))
        }
        _ => {
            return Err(Error::Usage(format!(
                "{}: no ledger record, and not a linked worktree: there is nothing to release \
                 (the reaper treats unrecorded entries as orphans)",
                path.display()
            )))
        }
    };
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
    let mut record = Record::new(path, &common, meta.uid());
    record.worktree_name = Some(name);
    let head = head_of(path);
    record.branch = head.0;
    record.base_commit = head.1;
    record.state = State::Released;
    Ok(record)
}

/// The branch (short name) and HEAD commit of the worktree at `path`, as far
/// as they can be read.
fn head_of(path: &Path) -> (Option<String>, Option<String>) {
    let Ok(repo) = git2::Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    ) else {
        return (None, None);
    };
    let Ok(head) = repo.find_reference("HEAD") else {
        return (None, None);
    };
    let branch = head
        .symbolic_target()
        .ok()
        .flatten()
        .and_then(|t| t.strip_prefix("refs/heads/"))
        .map(str::to_owned);
    let commit = head.resolve().ok().and_then(|r| r.target());
    (branch, commit.map(|c| c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_states_before_released_move() {
        for (state, moves) in [
            (State::Active, true),
            (State::Kept, true),
            (State::Released, false),
            (State::Removed, false),
            (State::Preserved, false),
            (State::RetryRemove, false),
        ] {
            let mut r = Record::new(Path::new("/r/a"), Path::new("/repo/.git"), 1);
            r.state = state;
            let out = release_record(&mut r);
            assert_eq!(out.changed, moves, "{state:?}");
            assert_eq!(r.state, if moves { State::Released } else { state });
            assert_eq!(out.previous, Some(state));
        }
    }
}
