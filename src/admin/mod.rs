//! The `treeward` admin command's operations, one module each: `list`,
//! `release`, `restore`, `hooks` (install/uninstall the `post-checkout` shim),
//! `preserved` and `doctor`. What of them runs as a repository's owner
//! (restore's rebuild, the shim, reading and dropping preserved sets) lives
//! in [`crate::as_owner`]: here requests are built and answers read. The
//! program (`src/programs/admin.rs`) only parses arguments and
//! prints; everything here is usable in-process.
//!
//! The ledger and every entry are untrusted input (SPEC invariant 2): a
//! record is acted on only when its path is an entry of a configured root
//! ([`entry_of`]), and a repository is reached only once verified as one
//! user's ([`repository`], or a claim); git operations on it then run as
//! that user ([`call_as_owner`]), never as root on someone else's.

pub mod doctor;
pub mod hooks;
pub mod list;
pub mod preserved;
pub mod release;
pub mod restore;

use crate::as_owner::{Request, Response, Worker};
use crate::claim::{self, Repository, Unclaimed};
use crate::config::{Config, Root};
use crate::error::Error;
use std::path::{Path, PathBuf};

/// The root `path` is an entry of: a direct child whose name the root's
/// patterns own (never the trash), `path` being absolute and normal. The
/// ledger is untrusted input: an admin command acts on a record, or creates
/// a worktree, only at such a path.
pub fn entry_of<'c>(config: &'c Config, path: &Path) -> Option<&'c Root> {
    if !claim::is_normal(path) {
        return None;
    }
    config
        .entry_of(path)
        .filter(|(root, name)| crate::roots::is_entry(root, name))
        .map(|(root, _)| root)
}

/// A path from the command line made absolute and normal (`.` and `name/..`
/// folded lexically, symlinks not resolved).
pub fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path)
        .map(|p| claim::normalize(&p))
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// The repository named by `path` (a worktree top, a linked worktree or a
/// common git dir), verified as belonging to `owner`, or with `None` to
/// whoever owns `path` (see [`claim::repository_of`]): the only way an admin
/// command reaches a repository. No git before this holds.
pub fn repository(path: &Path, owner: Option<u32>) -> Result<Repository, Error> {
    claim::repository_of(path, owner).map_err(|e| {
        Error::Usage(match e {
            Unclaimed::NotLinked => {
                format!("{}: not a git repository (or it is gone)", path.display())
            }
            e => format!("refused: {e} (nothing changed)"),
        })
    })
}

/// Serves one request as the owner of the verified repository `repo`,
/// turning a failure of any kind into an [`Error`].
pub fn call_as_owner(
    worker: &Worker,
    repo: &Repository,
    request: &Request,
) -> Result<Response, Error> {
    match worker.call(repo.owner(), request) {
        Ok(Response::Failed { message }) => Err(Error::Failed(message)),
        Ok(response) => Ok(response),
        Err(e) => Err(Error::Failed(e.to_string())),
    }
}

/// This process's effective uid.
pub(crate) fn euid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}
