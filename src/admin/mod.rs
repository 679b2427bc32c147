//! The `treeward` admin command's operations, one module each: `list`,
//! `release`, `restore` (with `rebuild`, its git side run as the
//! repository's owner), `hooks` (install/uninstall the `post-checkout` shim)
//! and `doctor`. The binary `src/bin/treeward.rs` only parses arguments and
//! prints; everything here is usable in-process.

pub mod doctor;
pub mod hooks;
pub mod list;
pub mod rebuild;
pub mod release;
pub mod restore;

use crate::as_owner::{self, Owner, Request, Response, Worker};
use crate::error::Error;
use git2::{ErrorCode, Repository, RepositoryOpenFlags};
use std::path::{Path, PathBuf};

/// The common git dir of the repository at `path` (its worktree top, a
/// linked worktree, or its git dir). Reads only; an error names the path.
pub fn common_dir(path: &Path) -> Result<PathBuf, Error> {
    let repo = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        Error::Usage(if e.code() == ErrorCode::NotFound {
            format!("{}: not a git repository (or it is gone)", path.display())
        } else {
            format!(
                "{}: cannot open the repository: {}",
                path.display(),
                e.message()
            )
        })
    })?;
    // Without the trailing slash libgit2 gives, as the ledger spells it.
    Ok(repo.commondir().components().collect())
}

/// Serves one request as the owner of the repository `common`, turning a
/// failure of any kind into an [`Error`].
pub fn call_as_owner(worker: &Worker, common: &Path, request: &Request) -> Result<Response, Error> {
    let owner: Owner = as_owner::owner_of(common)
        .map_err(|e| Error::Failed(format!("{}: {e}", common.display())))?;
    match worker.call(owner, request) {
        Ok(Response::Failed { message }) => Err(Error::Failed(message)),
        Ok(response) => Ok(response),
        Err(e) => Err(Error::Failed(e.to_string())),
    }
}
