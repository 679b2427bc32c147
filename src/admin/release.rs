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
//! - The ledger is untrusted: a record is released only if its path is an
//!   entry of a configured root holding either nothing or a worktree that
//!   verifies as the root's owner's claim, of the repository the record
//!   names. Otherwise: exit 2, nothing changed. Only the ledger is written;
//!   nothing of the worktree's repository is read as root.

use crate::as_owner::{Request, Response, Worker};
use crate::claim::{self, Expect, Unclaimed};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Document, Ledger, Record, State};
use crate::risk::{self, Location};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// The record's id.
    pub id: String,
    /// The worktree's path.
    pub path: PathBuf,
    /// The record's state before (`null`: there was no record).
    pub previous: Option<State>,
    /// The record's state now.
    pub state: State,
    /// Whether the ledger changed (or would, under dry run).
    pub changed: bool,
    /// Planned only: the ledger was not written.
    pub dry_run: bool,
}

/// The line a person reads: what happened, in words.
pub fn render_human(r: &Released) -> String {
    let path = crate::style::path(&r.path);
    let what = match (r.changed, r.dry_run, r.previous) {
        (true, true, None) => "would be recorded as released".to_owned(),
        (true, true, Some(p)) => format!("would be released (now {})", p.words()),
        (true, false, None) => "recorded as released".to_owned(),
        (true, false, Some(p)) => format!("released (was {})", p.words()),
        (false, _, _) => format!("unchanged: already {}", r.state.words()),
    };
    format!("{path} ({}): {what}\n", r.id)
}

/// Releases the worktree named by `target` (a record id or a path). Only
/// the ledger is written; the worktree's HEAD is read (for a new record) as
/// its verified owner, through `worker`.
pub fn release(
    config: &Config,
    target: &str,
    worker: &Worker,
    dry_run: bool,
) -> Result<Released, Error> {
    let ledger = Ledger::new(&config.ledger);
    // Decided against the current ledger, then redone under the lock: the
    // record found must still be there when it is changed.
    let doc = ledger.read()?;
    let euid = super::euid();
    let fresh = match find(&doc, target) {
        Some(i) => {
            vet_record(config, &doc.records[i], euid)?;
            None
        }
        None => Some(record_from_disk(config, &absolute(target)?, worker, euid)?),
    };
    let apply = |doc: &mut Document| -> Result<Released, Error> {
        let mut out = match (find(doc, target), &fresh) {
            (Some(i), _) => {
                vet_record(config, &doc.records[i], euid)?;
                release_record(&mut doc.records[i])
            }
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
    super::absolute(Path::new(target))
}

/// Whether a recorded worktree may be released: its path must be an entry of
/// a configured root, and what is there either gone or a worktree that
/// verifies as the root's owner's, of the repository the record names.
fn vet_record(config: &Config, record: &Record, euid: u32) -> Result<(), Error> {
    let (id, path) = (&record.id, &record.path);
    let refused = |why: String| {
        Error::Usage(format!(
            "ledger record {id} ({}): {why}: the record is not trusted, nothing changed",
            path.display()
        ))
    };
    let Some(root) = super::entry_of(config, path) else {
        return Err(refused("not an entry of any configured root".to_owned()));
    };
    let owner = claim::expected_owner(root, euid);
    match claim::verify(path, Expect::owner(owner)) {
        Ok(c) if c.common() == record.repository => Ok(()),
        Ok(c) => Err(refused(format!(
            "it names the repository {}, but the worktree there belongs to {}",
            record.repository.display(),
            c.common().display()
        ))),
        Err(_) if risk::locate(path) == Location::Missing => Ok(()),
        Err(e) => Err(refused(format!("what is there does not verify: {e}"))),
    }
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
/// must be an entry of a configured root and verify as a claim of the root's
/// owner. Its branch and HEAD are read by that owner (the assessment, in a
/// worker when this runs as root): root opens no repository of another user.
fn record_from_disk(
    config: &Config,
    path: &Path,
    worker: &Worker,
    euid: u32,
) -> Result<Record, Error> {
    let Some(root) = super::entry_of(config, path) else {
        return Err(Error::Usage(format!(
            "{}: no ledger record, and not an entry of any configured root (nothing changed)",
            path.display()
        )));
    };
    let owner = claim::expected_owner(root, euid);
    let claim = match claim::verify(path, Expect::owner(owner)) {
        Ok(c) => c,
        Err(Unclaimed::NotLinked) if risk::locate(path) == Location::Missing => {
            return Err(Error::Usage(format!(
                "{}: no ledger record and no such file or directory",
                path.display()
            )))
        }
        Err(Unclaimed::NotLinked) => {
            return Err(Error::Usage(format!(
                "{}: no ledger record, and not a linked worktree: there is nothing to release \
                 (the reaper treats unrecorded entries as orphans)",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "{}: no ledger record, and refused: {e} (nothing changed)",
                path.display()
            )))
        }
    };
    let mut record = Record::new(path, claim.common(), claim.owner().uid);
    record.worktree_name = Some(claim.name().to_string_lossy().into_owned());
    let request = Request::Assess {
        path: path.to_path_buf(),
    };
    match worker.call(claim.owner(), &request) {
        Ok(Response::Assessed { assessment }) => {
            record.branch = assessment.branch;
            record.base_commit = assessment.head;
        }
        Ok(other) => log::warn!("{}: HEAD not read: {other:?}", path.display()),
        Err(e) => log::warn!("{}: HEAD not read: {e}", path.display()),
    }
    record.state = State::Released;
    Ok(record)
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

    #[test]
    fn the_human_line_says_what_happened() {
        let r = |previous, changed, dry_run| Released {
            id: "abc".into(),
            path: PathBuf::from("/r/a"),
            previous,
            state: State::Released,
            changed,
            dry_run,
        };
        assert_eq!(
            render_human(&r(None, true, false)),
            "/r/a (abc): recorded as released\n"
        );
        assert_eq!(
            render_human(&r(Some(State::Active), true, false)),
            "/r/a (abc): released (was active)\n"
        );
        assert_eq!(
            render_human(&r(Some(State::Released), false, false)),
            "/r/a (abc): unchanged: already released\n"
        );
    }
}
