//! What treeward writes into a worktree's admin dir
//! (`<common>/worktrees/<name>`): its `locked` file and its `gitdir`
//! back-link. Only on a verified [`Claim`], as the claim's owner, and only
//! relative to the admin dir's descriptor: a new file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (a planted name is never written
//! through), a replaced one is renamed into place.

use crate::claim::{Claim, Unclaimed};
use crate::fd::{self, ReadError};
use nix::errno::Errno;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// Why the admin dir's `locked` or `gitdir` file could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdminDirError {
    /// The admin dir no longer verifies as the claim's.
    Unclaimed(Unclaimed),
    /// The lock's reason could not be written (the lock was taken back).
    WriteLock {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Someone else's lock could not be read.
    ReadLock {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: ReadError,
    },
    /// The `locked` file could not be created or removed.
    Lock {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// The `gitdir` file could not be rewritten.
    Relocate {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: nix::Error,
    },
}

impl fmt::Display for AdminDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminDirError::Unclaimed(e) => write!(f, "{e}"),
            AdminDirError::WriteLock { admin, source } => {
                write!(f, "{}/locked: {source}", admin.display())
            }
            AdminDirError::ReadLock { admin, source } => {
                write!(f, "{}/locked {source}", admin.display())
            }
            AdminDirError::Lock { admin, source } => {
                write!(f, "{}/locked: {source}", admin.display())
            }
            AdminDirError::Relocate { admin, source } => {
                write!(f, "rewriting {}/gitdir: {source}", admin.display())
            }
        }
    }
}

impl std::error::Error for AdminDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminDirError::Unclaimed(e) => Some(e),
            AdminDirError::WriteLock { source, .. } => Some(source),
            AdminDirError::ReadLock { source, .. } => Some(source),
            AdminDirError::Lock { source, .. } | AdminDirError::Relocate { source, .. } => {
                Some(source)
            }
        }
    }
}

impl From<Unclaimed> for AdminDirError {
    fn from(e: Unclaimed) -> AdminDirError {
        AdminDirError::Unclaimed(e)
    }
}

/// The largest lock reason read back.
const MAX_REASON: u64 = 4096;

/// What locking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Locked now, by us, for the given reason.
    Taken,
    /// Someone had locked it already, for this reason (empty: none given).
    Held(String),
}

/// `git worktree lock --reason <reason>`, as git does it: the `locked` file
/// is the lock, and it is created only if it does not exist.
pub fn lock(claim: &Claim, reason: &str) -> Result<Lock, AdminDirError> {
    let admin = claim.open_admin()?;
    crate::fault::point("admin dir: before a lock");
    match fd::create_new_at(admin.as_fd(), OsStr::new("locked")) {
        Ok(mut file) => {
            let written = file
                .write_all(reason.as_bytes())
                .and_then(|()| file.sync_all());
            if let Err(source) = written {
                // A lock whose reason could not be written (a full disk)
                // must not stay behind: an empty `locked` file is an
                // owner's lock to every later pass, so the worktree would
                // be skipped forever.
                drop(file);
                let _ = unlinkat(admin.as_fd(), "locked", UnlinkatFlags::NoRemoveDir);
                return Err(AdminDirError::WriteLock {
                    admin: claim.admin().to_path_buf(),
                    source,
                });
            }
            crate::fault::point("admin dir: after a lock");
            Ok(Lock::Taken)
        }
        Err(Errno::EEXIST) => {
            let held = fd::read_at(admin.as_fd(), OsStr::new("locked"), MAX_REASON)
                .map_err(|source| AdminDirError::ReadLock {
                    admin: claim.admin().to_path_buf(),
                    source,
                })?
                .unwrap_or_default();
            Ok(Lock::Held(
                String::from_utf8_lossy(&held).trim_end().to_owned(),
            ))
        }
        Err(source) => Err(AdminDirError::Lock {
            admin: claim.admin().to_path_buf(),
            source,
        }),
    }
}

/// `git worktree unlock`: removes the `locked` file; whether there was one.
pub fn unlock(claim: &Claim) -> Result<bool, AdminDirError> {
    let admin = claim.open_admin()?;
    match unlinkat(admin.as_fd(), "locked", UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(source) => Err(AdminDirError::Lock {
            admin: claim.admin().to_path_buf(),
            source,
        }),
    }
}

/// Points the admin entry's `gitdir` at where the worktree is now (after
/// the sweep renamed it into the trash, or back), so that it stays a valid
/// worktree of its repository. Atomic: a new file renamed into place.
pub fn relocate(claim: &Claim) -> Result<(), AdminDirError> {
    let admin = claim.open_admin()?;
    crate::fault::point("admin dir: before a relocation");
    let mut line = claim.entry().join(".git").into_os_string();
    line.push("\n");
    fd::replace_at(
        admin.as_fd(),
        OsStr::new("gitdir"),
        std::os::unix::ffi::OsStrExt::as_bytes(line.as_os_str()),
    )
    .map_err(|source| AdminDirError::Relocate {
        admin: claim.admin().to_path_buf(),
        source,
    })
}
