//! The cheap facts about an entry that the blocking decision needs: what it
//! is (from `fstatat` and the trust decision of [`crate::claim`]), whether
//! it is locked, whether it is in use. No git status here: this runs while
//! the service's start waits. Everything is read relative to the root's
//! descriptor, without following a link or opening anything but regular
//! files and directories.

use super::policy::{EntryKind, Seen};
use crate::claim::{self, Claim, Expect, Unclaimed};
use crate::fd;
use crate::in_use::{flock_held, ProcessTable};
use crate::roots::OpenRoot;
use nix::sys::stat::SFlag;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The reason the sweep writes into the lock of a worktree it quarantines:
/// inspection tells it from an owner's own lock.
pub const QUARANTINE_LOCK: &str = "treeward: quarantined by treeward-sweep, being reclaimed";

/// Everything the blocking decision and the quarantine need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub seen: Seen,
    /// The verified claim of a linked worktree: the only key to its git
    /// operations.
    pub claim: Option<Claim>,
    /// Why an entry that looks like a linked worktree is not taken for one.
    pub refusal: Option<String>,
    /// The entry's own owner.
    pub uid: u32,
}

/// Inspects the entry `name` of the open root at `root_path`, whose
/// worktrees must belong to `owner`. `Ok(None)`: it vanished meanwhile.
pub fn inspect(
    open: &OpenRoot,
    root_path: &Path,
    name: &OsStr,
    owner: u32,
    processes: &ProcessTable,
) -> nix::Result<Option<Inspected>> {
    let Some(st) = fd::stat_at(open.fd.as_fd(), name)? else {
        return Ok(None);
    };
    let path = root_path.join(name);
    let is_dir = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits();
    let (kind, claim, refusal) = if is_dir {
        match claim::verify_at(open.fd.as_fd(), root_path, name, Expect::owner(owner)) {
            Ok(c) => (EntryKind::Linked, Some(c), None),
            Err(Unclaimed::NotLinked) => (kind_at(open.fd.as_fd(), name, st.st_mode)?, None, None),
            Err(Unclaimed::Broken(_)) => (EntryKind::Broken, None, None),
            Err(Unclaimed::Refused(why)) => (EntryKind::Linked, None, Some(why)),
        }
    } else {
        (kind_at(open.fd.as_fd(), name, st.st_mode)?, None, None)
    };
    // A quarantine lock on an entry still in the root is the sweep's own,
    // left by a pass that was killed between locking and renaming: not an
    // owner's "keep".
    let locked = claim
        .as_ref()
        .is_some_and(|c| c.lock().is_some_and(|r| r != QUARANTINE_LOCK));
    let in_use =
        is_dir && (!processes.users_of(&path).is_empty() || flock_held(&path).unwrap_or(false));
    Ok(Some(Inspected {
        seen: Seen {
            kind,
            locked,
            in_use,
            same_filesystem: st.st_dev == open.dev,
            unverified: refusal.is_some(),
        },
        claim,
        refusal,
        uid: st.st_uid,
    }))
}

/// What an entry with no `.git` file is (`mode` from its `lstat`): a link,
/// a file, a clone (its `.git` is a directory) or a plain directory.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> nix::Result<EntryKind> {
    let file_type = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    if file_type == SFlag::S_IFLNK {
        return Ok(EntryKind::Symlink);
    }
    if file_type != SFlag::S_IFDIR {
        return Ok(EntryKind::NotADirectory);
    }
    let entry = fd::open_dir_at(dir, name)?;
    Ok(match fd::stat_at(entry.as_fd(), OsStr::new(".git"))? {
        Some(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => EntryKind::Main,
        _ => EntryKind::Plain,
    })
}

/// Whether deleting an entry that is not a verified linked worktree would
/// lose anything, judged without git (no git runs on what no claim
/// vouches for): a link or a file entry holds nothing of its own, a plain
/// directory only what is more than FIFOs, sockets and empty directories
/// (what SPEC says no preserving keeps anyway); anything else (a clone, a
/// broken or unverified worktree) is at risk. Whatever cannot be read is
/// at risk.
pub fn unlinked_at_risk(kind: EntryKind, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    match kind {
        EntryKind::Symlink | EntryKind::NotADirectory => false,
        EntryKind::Plain => holds_work(dir, name).unwrap_or(true),
        EntryKind::Linked | EntryKind::Broken | EntryKind::Main => true,
    }
}

/// Whether the directory `name` of `dir` holds anything but FIFOs, sockets
/// and empty directories (one level down: a deeper tree counts as work).
fn holds_work(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<bool> {
    let fd = fd::open_dir_at(dir, name)?;
    for child in crate::remove::list_names(fd.as_fd())? {
        let Some(st) = fd::stat_at(fd.as_fd(), &child)? else {
            continue;
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let nothing = match kind {
            SFlag::S_IFIFO | SFlag::S_IFSOCK => true,
            SFlag::S_IFDIR => fd::open_dir_at(fd.as_fd(), &child)
                .and_then(|d| crate::remove::list_names(d.as_fd()))?
                .is_empty(),
            _ => false,
        };
        if !nothing {
            return Ok(true);
        }
    }
    Ok(false)
}
