//! What treeward writes into a worktree's admin dir
//! (`<common>/worktrees/<name>`): its `locked` file and its `gitdir`
//! back-link. Only on a verified [`Claim`], as the claim's owner, and only
//! relative to the admin dir's descriptor: a new file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (a planted name is never written
//! through), a replaced one is renamed into place.

use crate::claim::Claim;
use crate::fd;
use nix::errno::Errno;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;

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
pub fn lock(claim: &Claim, reason: &str) -> Result<Lock, String> {
    let admin = claim.open_admin().map_err(|e| e.to_string())?;
    crate::fault::point("admin dir: before a lock");
    match fd::create_new_at(admin.as_fd(), OsStr::new("locked")) {
        Ok(mut file) => {
            let written = file
                .write_all(reason.as_bytes())
                .and_then(|()| file.sync_all());
            if let Err(e) = written {
                // A lock whose reason could not be written (a full disk)
                // must not stay behind: an empty `locked` file is an
                // owner's lock to every later pass, so the worktree would
                // be skipped forever.
                drop(file);
                let _ = unlinkat(admin.as_fd(), "locked", UnlinkatFlags::NoRemoveDir);
                return Err(format!("{}/locked: {e}", claim.admin().display()));
            }
            crate::fault::point("admin dir: after a lock");
            Ok(Lock::Taken)
        }
        Err(Errno::EEXIST) => {
            let held = fd::read_at(admin.as_fd(), OsStr::new("locked"), MAX_REASON)
                .map_err(|e| format!("{}/locked {e}", claim.admin().display()))?
                .unwrap_or_default();
            Ok(Lock::Held(
                String::from_utf8_lossy(&held).trim_end().to_owned(),
            ))
        }
        Err(e) => Err(format!("{}/locked: {e}", claim.admin().display())),
    }
}

/// `git worktree unlock`: removes the `locked` file; whether there was one.
pub fn unlock(claim: &Claim) -> Result<bool, String> {
    let admin = claim.open_admin().map_err(|e| e.to_string())?;
    match unlinkat(admin.as_fd(), "locked", UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(format!("{}/locked: {e}", claim.admin().display())),
    }
}

/// Points the admin entry's `gitdir` at where the worktree is now (after
/// the sweep renamed it into the trash, or back), so that it stays a valid
/// worktree of its repository. Atomic: a new file renamed into place.
pub fn relocate(claim: &Claim) -> Result<(), String> {
    let admin = claim.open_admin().map_err(|e| e.to_string())?;
    crate::fault::point("admin dir: before a relocation");
    let mut line = claim.entry().join(".git").into_os_string();
    line.push("\n");
    fd::replace_at(
        admin.as_fd(),
        OsStr::new("gitdir"),
        std::os::unix::ffi::OsStrExt::as_bytes(line.as_os_str()),
    )
    .map_err(|e| format!("rewriting {}/gitdir: {e}", claim.admin().display()))
}
