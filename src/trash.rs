//! The trash of a root: `<root>/.treeward-trash/<batch>/<entry name>`.
//!
//! The sweep holds up the service's start only for as long as it takes to
//! *rename* its residue out of the way (one `renameat2` per entry, on the
//! root's own filesystem), not to delete it. The trash keeps each entry under
//! its original name inside a batch directory, so an entry left there by a
//! crash or by the time budget is still known for what it was and is
//! finished by the next sweep or reap pass. The trash belongs to the root's
//! owner (so the unprivileged reaper can drain it), and only that owner can
//! list or change it (mode 0711: a repository's owner, whose worker reclaims
//! a quarantined worktree, can still reach the entry by its name, as it could
//! in the root); a trash that is not such a directory of that owner is
//! refused, never used.

use crate::roots::{OpenRoot, TRASH};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat2, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};

/// rwx for the owner, search (not list) for everyone else.
const TRASH_MODE: Mode = Mode::S_IRWXU.union(Mode::S_IXGRP).union(Mode::S_IXOTH);

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// A directory of `uid` under `parent` that no one else can list or change:
/// created if missing (mode 0711, chowned to `uid:gid`), refused if it exists
/// as anything else.
fn private_dir(
    parent: &OwnedFd,
    name: &OsStr,
    uid: u32,
    gid: u32,
    create: bool,
) -> Result<Option<OwnedFd>, String> {
    let shown = name.to_string_lossy();
    let created = create
        && match mkdirat(parent.as_fd(), name, Mode::S_IRWXU) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(format!("cannot create {shown}: {e}")),
        };
    let fd = match openat(parent.as_fd(), name, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if !create => return Ok(None),
        Err(e) => {
            return Err(format!(
                "{shown} is not a directory we can open without following links: {e}"
            ))
        }
    };
    if created {
        // Exactly TRASH_MODE whatever the umask, owned by the root's owner.
        fchmod(fd.as_fd(), TRASH_MODE).map_err(|e| format!("cannot chmod {shown}: {e}"))?;
        if Uid::effective().as_raw() != uid {
            fchown(
                fd.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| format!("cannot chown {shown}: {e}"))?;
        }
    }
    let st = fstat(fd.as_fd()).map_err(|e| format!("cannot stat {shown}: {e}"))?;
    if st.st_uid != uid {
        return Err(format!(
            "{shown} is owned by uid {}, not by the root's owner (uid {uid}): refused",
            st.st_uid
        ));
    }
    if st.st_mode & 0o066 != 0 {
        return Err(format!(
            "{shown} has mode {:o}; a trash must be unreadable and unwritable by others (0711): refused",
            st.st_mode & 0o7777
        ));
    }
    Ok(Some(fd))
}

/// A root's trash, open.
#[derive(Debug)]
pub struct Trash {
    fd: OwnedFd,
    uid: u32,
    gid: u32,
}

/// One batch directory of a trash: the entries one sweep quarantined.
#[derive(Debug)]
pub struct Batch {
    pub name: OsString,
    pub fd: OwnedFd,
}

impl Trash {
    /// Opens the trash of `root`, creating it when `create` is set; `None`
    /// when it does not exist and `create` is not set.
    pub fn open(root: &OpenRoot, create: bool) -> Result<Option<Trash>, String> {
        let fd = private_dir(&root.fd, OsStr::new(TRASH), root.uid, root.gid, create)?;
        Ok(fd.map(|fd| Trash {
            fd,
            uid: root.uid,
            gid: root.gid,
        }))
    }

    /// A new, empty batch named for this moment and process.
    pub fn new_batch(&self) -> Result<Batch, String> {
        let stamp = crate::ledger::now().replace([':', '-'], "");
        let name = OsString::from(format!("{stamp}-{}", std::process::id()));
        let fd = private_dir(&self.fd, &name, self.uid, self.gid, true)?
            .ok_or_else(|| "batch directory vanished".to_owned())?;
        Ok(Batch { name, fd })
    }

    /// Every batch in the trash, oldest first (names sort by time). Anything
    /// in the trash that is not a private batch directory is reported in the
    /// second list and left alone.
    pub fn batches(&self) -> Result<(Vec<Batch>, Vec<String>), String> {
        let names = sorted_names(&self.fd, "the trash")?;
        let (mut batches, mut problems) = (Vec::new(), Vec::new());
        for name in names {
            match private_dir(&self.fd, &name, self.uid, self.gid, false) {
                Ok(Some(fd)) => batches.push(Batch { name, fd }),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        Ok((batches, problems))
    }

    /// Removes a batch directory if it is empty (its entries all drained).
    pub fn remove_if_empty(&self, batch: &Batch) {
        let _ = unlinkat(
            self.fd.as_fd(),
            batch.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

impl Batch {
    /// The names of the entries waiting in this batch, sorted.
    pub fn entries(&self) -> Result<Vec<OsString>, String> {
        sorted_names(&self.fd, "a trash batch")
    }
}

/// The names in a trash directory, sorted (batch names sort by time).
fn sorted_names(fd: &OwnedFd, what: &str) -> Result<Vec<OsString>, String> {
    let mut names =
        crate::remove::list_names(fd.as_fd()).map_err(|e| format!("cannot list {what}: {e}"))?;
    names.sort();
    Ok(names)
}

/// Moves entry `name` of the root into the batch, under the same name. Never
/// replaces anything (`RENAME_NOREPLACE`); the rename is atomic, so the entry
/// is either still live or in the trash, whatever happens.
pub fn quarantine(root: &OpenRoot, name: &OsStr, batch: &Batch) -> nix::Result<()> {
    renameat2(
        root.fd.as_fd(),
        name,
        batch.fd.as_fd(),
        name,
        RenameFlags::RENAME_NOREPLACE,
    )
}

/// Moves a quarantined entry back to its place in the root (for work that
/// is kept). Fails with `EEXIST` if the name has been taken meanwhile.
pub fn put_back(root: &OpenRoot, name: &OsStr, batch: &Batch) -> nix::Result<()> {
    renameat2(
        batch.fd.as_fd(),
        name,
        root.fd.as_fd(),
        name,
        RenameFlags::RENAME_NOREPLACE,
    )
}
