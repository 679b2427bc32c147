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
//! in the root).
//!
//! Only root and that owner can make such a directory, so anything else that
//! holds the trash's name (a file, a symlink, a FIFO, another user's
//! directory: a *squat*, easy in a sticky root like `/tmp`) can hold no
//! quarantined worktree and is never used. Root ([`Trash::claim`]) swaps it
//! out for a new trash atomically and removes it as residue with the safe
//! removal engine; an unprivileged pass reports it and leaves it to
//! `treeward-sweep`. The same holds for a name inside the trash that is not
//! a batch ([`Trash::remove_stray`]). A directory of the owner that others
//! can read or write may still hold quarantined work: it is neither used nor
//! removed, only reported.
//!
//! Once an entry is reclaimed (its work preserved, or nothing at risk, and
//! its repository told to forget it), only its files are left to delete,
//! and that may take more than one pass: the sweep's budget stops a removal
//! between two files. So before its files are deleted it moves into its
//! batch's *remains* ([`Trash::set_aside`]), where a later pass finds it
//! ([`Trash::remains`]) and deletes the rest without assessing it again: a
//! half-deleted tree looks like a plain directory or a broken worktree,
//! which an assessment would keep as work no repository can record. The
//! remains sort by [`Fate`], so the report line that finishes one still
//! says whether its work was preserved.

use crate::fd;
use crate::remove::{self, Kind, Meta, RemoveError, Removed};
use crate::roots::{OpenRoot, TRASH};
use nix::errno::Errno;
use nix::fcntl::{renameat2, AtFlags, RenameFlags};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// rwx for the owner, search (not list) for everyone else.
const TRASH_MODE: Mode = Mode::S_IRWXU.union(Mode::S_IXGRP).union(Mode::S_IXOTH);

/// The remains of a batch: `<batch>/.treeward-trash/<fate>/<name>`. The
/// trash's own name is the one name no entry has
/// ([`crate::roots::is_entry`]), so it never meets a quarantined entry.
const REMAINS: &str = TRASH;

/// How many times [`Trash::claim`] looks again when the trash's name keeps
/// changing under it.
const CLAIM_ATTEMPTS: usize = 4;

/// What holds a name treeward reserves (the trash in a root, a batch in the
/// trash) when it is not a private directory of the root's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub kind: Kind,
    pub uid: u32,
    /// Permission bits.
    pub perm: u32,
    /// The root's owner, for whom the name is reserved.
    pub owner: u32,
}

impl Taken {
    /// What holds the name, `None` when it is a private directory of `owner`
    /// (no read or write for group and others).
    pub fn of(meta: &Meta, owner: u32) -> Option<Taken> {
        let private = meta.kind == Kind::Directory && meta.uid == owner && meta.perm & 0o066 == 0;
        (!private).then_some(Taken {
            kind: meta.kind,
            uid: meta.uid,
            perm: meta.perm,
            owner,
        })
    }

    /// Whether it may hold quarantined work: a directory of the owner that
    /// others can read or write. Never used and never removed: reported.
    /// Anything else is residue.
    pub fn may_hold_work(&self) -> bool {
        self.kind == Kind::Directory && self.uid == self.owner
    }

    /// What it is and who owns it: "a FIFO of uid 4343", "a directory of uid
    /// 4343, mode 777".
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Directory => "a directory",
            Kind::Regular => "a regular file",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Unknown => "a file of unknown type",
        };
        match self.kind {
            Kind::Directory => format!("{kind} of uid {}, mode {:o}", self.uid, self.perm),
            _ => format!("{kind} of uid {}", self.uid),
        }
    }
}

impl fmt::Display for Taken {
    /// Why it is not what the name is reserved for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.may_hold_work() {
            write!(
                f,
                "{}: a directory of the root's owner that others can read or write (a trash or batch must be 0711); it may hold quarantined work, so it is neither used nor removed: check what it holds, then chmod 0711 it",
                self.describe()
            )
        } else {
            write!(
                f,
                "{}, not a private directory of the root's owner (uid {})",
                self.describe(),
                self.owner
            )
        }
    }
}

/// Why a trash cannot be used.
#[derive(Debug, Clone)]
pub enum TrashError {
    /// Something else holds its name.
    Taken(Taken),
    /// Anything else, phrased for a report.
    Failed(String),
}

impl fmt::Display for TrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrashError::Taken(t) if t.may_hold_work() => write!(f, "{TRASH} is {t}"),
            TrashError::Taken(t) => write!(f, "{TRASH} is squatted: {t}; not used"),
            TrashError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<TrashError> for String {
    fn from(e: TrashError) -> String {
        e.to_string()
    }
}

/// What holds a reserved name.
enum Slot {
    Absent,
    /// A private directory of the owner, open.
    Private(OwnedFd),
    Taken(Taken),
}

/// Looks at `name` under `parent` without following a symlink or opening
/// anything but a directory (a FIFO is never opened, so never blocks), and
/// opens it if it is a private directory of `uid`. When `create` is set, a
/// missing one is created first (mode 0711, chowned to `uid:gid`).
fn slot(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    uid: u32,
    gid: u32,
    create: bool,
) -> Result<Slot, String> {
    if create {
        if let Some(fd) = make(parent, name, uid, gid)? {
            let st =
                fstat(&fd).map_err(|e| format!("cannot stat {}: {e}", name.to_string_lossy()))?;
            return Ok(match Taken::of(&Meta::from_stat(&st), uid) {
                Some(t) => Slot::Taken(t),
                None => Slot::Private(fd),
            });
        }
    }
    look(parent, name, uid)
}

/// Creates `name` under `parent`: a directory of `uid:gid`, exactly
/// [`TRASH_MODE`] whatever the umask. `None`: the name exists.
fn make(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    uid: u32,
    gid: u32,
) -> Result<Option<OwnedFd>, String> {
    let shown = name.to_string_lossy();
    match mkdirat(parent, name, Mode::S_IRWXU) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(None),
        Err(e) => return Err(format!("cannot create {shown}: {e}")),
    }
    let fd = fd::open_dir_at(parent, name)
        .map_err(|e| format!("cannot open {shown}, just created: {e}"))?;
    fchmod(fd.as_fd(), TRASH_MODE).map_err(|e| format!("cannot chmod {shown}: {e}"))?;
    if Uid::effective().as_raw() != uid {
        fchown(
            fd.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(|e| format!("cannot chown {shown}: {e}"))?;
    }
    Ok(Some(fd))
}

/// [`slot`] of an existing name: `fstatat` first (no symlink followed), and
/// only a private directory of `uid` is opened, checked to be the object
/// that was looked at.
fn look(parent: BorrowedFd<'_>, name: &OsStr, uid: u32) -> Result<Slot, String> {
    let shown = name.to_string_lossy();
    let seen = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::from_stat(&st),
        Err(Errno::ENOENT) => return Ok(Slot::Absent),
        Err(e) => return Err(format!("cannot stat {shown}: {e}")),
    };
    if let Some(t) = Taken::of(&seen, uid) {
        return Ok(Slot::Taken(t));
    }
    let changed = || format!("{shown} changed while it was opened");
    let fd = fd::open_dir_at(parent, name).map_err(|e| format!("{}: {e}", changed()))?;
    let now = Meta::from_stat(&fstat(&fd).map_err(|e| format!("cannot stat {shown}: {e}"))?);
    if !now.same_object(&seen) {
        return Err(changed());
    }
    Ok(match Taken::of(&now, uid) {
        Some(t) => Slot::Taken(t),
        None => Slot::Private(fd),
    })
}

/// What removing residue found.
enum Cleanup {
    /// Not residue (a directory of the owner): left alone.
    Kept,
    /// Removed (or already gone: then what it was is not known).
    Done(Option<Taken>, Removed),
}

/// Removes `name` of `dir` with the safe removal engine if, as the engine's
/// own `fstatat` sees it, it is residue: anything but a directory of
/// `owner`. Symlinks are unlinked as links, FIFOs are never opened, mounts
/// never crossed.
fn remove_residue(dir: BorrowedFd<'_>, name: &OsStr, owner: u32) -> Result<Cleanup, RemoveError> {
    let mut seen = None;
    let result = remove::remove_entry_if(dir, name, |m| {
        seen = Taken::of(m, owner).filter(|t| !t.may_hold_work());
        seen.is_some()
    });
    match result {
        Ok(Some(removed)) => Ok(Cleanup::Done(seen, removed)),
        Ok(None) => Ok(Cleanup::Kept),
        Err(RemoveError::NotFound { .. }) => Ok(Cleanup::Done(
            None,
            Removed {
                complete: true,
                ..Removed::default()
            },
        )),
        Err(e) => Err(e),
    }
}

/// A squat [`Trash::claim`] took the trash's name back from.
#[derive(Debug)]
pub struct Cleared {
    /// What held the name.
    pub taken: Taken,
    /// The name it was moved aside to in the root (`.treeward-trash` itself
    /// where the filesystem cannot swap two names), and removed from.
    pub aside: OsString,
    /// How its removal went.
    pub removed: Result<Removed, RemoveError>,
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

/// What was decided for an entry whose remains wait in the trash: the
/// report's word when they are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Nothing was at risk (or the policy is `discard`).
    Removed,
    /// Its work was preserved first.
    Preserved,
}

impl Fate {
    const ALL: [Fate; 2] = [Fate::Removed, Fate::Preserved];

    fn dir(self) -> &'static OsStr {
        OsStr::new(match self {
            Fate::Removed => "removed",
            Fate::Preserved => "preserved",
        })
    }
}

/// The remains of one fate in one batch, waiting to be deleted.
#[derive(Debug)]
pub struct Remains {
    pub fate: Fate,
    /// The directory that holds them.
    pub fd: OwnedFd,
    /// Their names (the entries' own), sorted.
    pub names: Vec<OsString>,
}

/// A name in the trash that is not a batch: what holds it (`Err`: why it
/// could not be looked at).
#[derive(Debug)]
pub struct Stray {
    pub name: OsString,
    pub found: Result<Taken, String>,
}

impl Trash {
    fn new(root: &OpenRoot, fd: OwnedFd) -> Trash {
        Trash {
            fd,
            uid: root.uid,
            gid: root.gid,
        }
    }

    /// Opens the trash of `root`, creating it when `create` is set; `None`
    /// when it does not exist and `create` is not set. Whatever else holds
    /// its name is [`TrashError::Taken`], never used.
    pub fn open(root: &OpenRoot, create: bool) -> Result<Option<Trash>, TrashError> {
        match slot(
            root.fd.as_fd(),
            OsStr::new(TRASH),
            root.uid,
            root.gid,
            create,
        )
        .map_err(TrashError::Failed)?
        {
            Slot::Absent if create => Err(TrashError::Failed(format!(
                "{TRASH} vanished as it was created"
            ))),
            Slot::Absent => Ok(None),
            Slot::Private(fd) => Ok(Some(Trash::new(root, fd))),
            Slot::Taken(t) => Err(TrashError::Taken(t)),
        }
    }

    /// The trash of `root`, created if missing, for a pass running as root,
    /// whatever squats its name. Residue there (anything but a directory of
    /// the root's owner) is swapped for a new trash in one
    /// `renameat2(RENAME_EXCHANGE)`, so that the name is never free for the
    /// squatter to take again, then removed as residue under the name it
    /// was moved aside to (`Cleared` says what it was and how that went). A
    /// directory of the owner that others can read or write may hold
    /// quarantined work: [`TrashError::Taken`], left alone.
    ///
    /// Another pass's genuine trash that appears at the name meanwhile is
    /// never removed: the removal engine checks the object it acts on, and
    /// the swap is undone.
    pub fn claim(root: &OpenRoot) -> Result<(Trash, Option<Cleared>), TrashError> {
        let dir = root.fd.as_fd();
        let name = OsStr::new(TRASH);
        let mut cleared = None;
        for _ in 0..CLAIM_ATTEMPTS {
            let taken =
                match slot(dir, name, root.uid, root.gid, true).map_err(TrashError::Failed)? {
                    Slot::Private(fd) => return Ok((Trash::new(root, fd), cleared)),
                    Slot::Absent => continue,
                    Slot::Taken(t) if t.may_hold_work() => return Err(TrashError::Taken(t)),
                    Slot::Taken(t) => t,
                };
            match swap_in(dir, root)? {
                Swap::Swapped(fd, aside) => match clear(dir, &aside, taken, root.uid) {
                    Some(c) => return Ok((Trash::new(root, fd), Some(c))),
                    // Another pass's trash after all: give it its name back.
                    None => give_back(dir, &aside)?,
                },
                Swap::Free(fd) => return Ok((Trash::new(root, fd), cleared)),
                Swap::Again => {}
                // Remove the squat in place; the next round creates the trash.
                Swap::Unsupported => {
                    if let Some(c) = clear(dir, name, taken, root.uid) {
                        if !c.complete() {
                            return Err(TrashError::Failed(c.to_string()));
                        }
                        cleared = Some(c);
                    }
                }
            }
        }
        Err(TrashError::Failed(format!(
            "{TRASH} kept changing while treeward claimed it; retried next pass"
        )))
    }

    /// A new, empty batch named for this moment and process.
    pub fn new_batch(&self) -> Result<Batch, String> {
        let stamp = crate::ledger::now().replace([':', '-'], "");
        let name = OsString::from(format!("{stamp}-{}", std::process::id()));
        match slot(self.fd.as_fd(), &name, self.uid, self.gid, true)? {
            Slot::Private(fd) => Ok(Batch { name, fd }),
            Slot::Absent => Err("batch directory vanished".to_owned()),
            Slot::Taken(t) => Err(format!("batch {}: {t}", name.to_string_lossy())),
        }
    }

    /// Every batch in the trash, oldest first (names sort by time), and
    /// every other name in it ([`Stray`]), left alone.
    pub fn batches(&self) -> Result<(Vec<Batch>, Vec<Stray>), String> {
        let names = sorted_names(&self.fd, "the trash")?;
        let (mut batches, mut strays) = (Vec::new(), Vec::new());
        for name in names {
            match look(self.fd.as_fd(), &name, self.uid) {
                Ok(Slot::Private(fd)) => batches.push(Batch { name, fd }),
                Ok(Slot::Absent) => {}
                Ok(Slot::Taken(t)) => strays.push(Stray { name, found: Ok(t) }),
                Err(e) => strays.push(Stray {
                    name,
                    found: Err(e),
                }),
            }
        }
        Ok((batches, strays))
    }

    /// Removes a stray name of the trash with the safe removal engine if it
    /// is residue (not a directory of the owner, which may hold quarantined
    /// work): only treeward's own batches hold quarantined worktrees. `None`:
    /// left alone (not residue), or already gone.
    pub fn remove_stray(
        &self,
        name: &OsStr,
    ) -> Result<Option<(Option<Taken>, Removed)>, RemoveError> {
        match remove_residue(self.fd.as_fd(), name, self.uid)? {
            Cleanup::Kept => Ok(None),
            Cleanup::Done(taken, removed) => Ok(Some((taken, removed))),
        }
    }

    /// A private directory of the trash's owner at `name` of `parent`,
    /// created when `create` is set; `None` when it does not exist (and
    /// `create` is not set). Anything else there is an error.
    fn private(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        create: bool,
    ) -> Result<Option<OwnedFd>, String> {
        match slot(parent, name, self.uid, self.gid, create)? {
            Slot::Private(fd) => Ok(Some(fd)),
            Slot::Absent if create => Err(format!("{} vanished", name.to_string_lossy())),
            Slot::Absent => Ok(None),
            Slot::Taken(t) => Err(format!("{}: {t}", name.to_string_lossy())),
        }
    }

    /// Moves the reclaimed entry `name` of `batch` into the batch's
    /// remains of `fate` (made as needed), and returns the directory that
    /// holds it now. Never replaces anything.
    pub fn set_aside(&self, batch: &Batch, name: &OsStr, fate: Fate) -> Result<OwnedFd, String> {
        let area = self
            .private(batch.fd.as_fd(), OsStr::new(REMAINS), true)?
            .ok_or("the remains vanished")?;
        let dir = self
            .private(area.as_fd(), fate.dir(), true)?
            .ok_or("the remains vanished")?;
        renameat2(
            batch.fd.as_fd(),
            name,
            dir.as_fd(),
            name,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| format!("cannot move it to the trash's remains: {e}"))?;
        Ok(dir)
    }

    /// The remains waiting in `batch`, by fate.
    pub fn remains(&self, batch: &Batch) -> Result<Vec<Remains>, String> {
        let Some(area) = self.private(batch.fd.as_fd(), OsStr::new(REMAINS), false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for fate in Fate::ALL {
            if let Some(fd) = self.private(area.as_fd(), fate.dir(), false)? {
                let names = sorted_names(&fd, "the trash's remains")?;
                out.push(Remains { fate, fd, names });
            }
        }
        Ok(out)
    }

    /// Removes a batch directory if it is empty (its entries all drained,
    /// its remains all deleted).
    pub fn remove_if_empty(&self, batch: &Batch) {
        if let Ok(Some(area)) = self.private(batch.fd.as_fd(), OsStr::new(REMAINS), false) {
            for fate in Fate::ALL {
                let _ = unlinkat(area.as_fd(), fate.dir(), UnlinkatFlags::RemoveDir);
            }
            let _ = unlinkat(batch.fd.as_fd(), REMAINS, UnlinkatFlags::RemoveDir);
        }
        let _ = unlinkat(
            self.fd.as_fd(),
            batch.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

impl Batch {
    /// The names of the entries waiting in this batch, sorted (its
    /// remains aside).
    pub fn entries(&self) -> Result<Vec<OsString>, String> {
        let mut names = sorted_names(&self.fd, "a trash batch")?;
        names.retain(|n| n != REMAINS);
        Ok(names)
    }
}

/// What [`swap_in`] did.
enum Swap {
    /// The new trash holds the name; what held it is at this name now.
    Swapped(OwnedFd, OsString),
    /// The name was free meanwhile: the new trash took it.
    Free(OwnedFd),
    /// Try again: the name or ours changed meanwhile.
    Again,
    /// The filesystem cannot exchange two names.
    Unsupported,
}

/// Makes a new trash under an unguessable name in the root and exchanges
/// it with whatever holds [`TRASH`], in one `renameat2`.
fn swap_in(dir: BorrowedFd<'_>, root: &OpenRoot) -> Result<Swap, TrashError> {
    let aside = aside_name();
    let Some(fd) = make(dir, &aside, root.uid, root.gid).map_err(TrashError::Failed)? else {
        return Ok(Swap::Again);
    };
    let name = OsStr::new(TRASH);
    let drop_ours = || {
        let _ = unlinkat(dir, aside.as_os_str(), UnlinkatFlags::RemoveDir);
    };
    match renameat2(
        dir,
        aside.as_os_str(),
        dir,
        name,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(Swap::Swapped(fd, aside)),
        Err(Errno::ENOENT) => {
            match renameat2(
                dir,
                aside.as_os_str(),
                dir,
                name,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => Ok(Swap::Free(fd)),
                Err(_) => {
                    drop_ours();
                    Ok(Swap::Again)
                }
            }
        }
        Err(Errno::EINVAL) => {
            drop_ours();
            Ok(Swap::Unsupported)
        }
        Err(e) => {
            drop_ours();
            Err(TrashError::Failed(format!(
                "{TRASH} is squatted, and a new trash could not be swapped in: {e}"
            )))
        }
    }
}

/// Puts back a trash of the owner that [`swap_in`] moved aside (another
/// pass made it meanwhile), and removes the new one, empty, that took its
/// name.
fn give_back(dir: BorrowedFd<'_>, aside: &OsStr) -> Result<(), TrashError> {
    renameat2(dir, aside, dir, TRASH, RenameFlags::RENAME_EXCHANGE).map_err(|e| {
        TrashError::Failed(format!(
            "a trash of the root's owner appeared at {TRASH} meanwhile and could not be moved back from {}: {e}",
            aside.to_string_lossy()
        ))
    })?;
    let _ = unlinkat(dir, aside, UnlinkatFlags::RemoveDir);
    Ok(())
}

/// Removes what squatted the trash, now at `name` of `dir`, if it is
/// residue; `None` when it is not (left alone).
fn clear(dir: BorrowedFd<'_>, name: &OsStr, taken: Taken, owner: u32) -> Option<Cleared> {
    let (taken, removed) = match remove_residue(dir, name, owner) {
        Ok(Cleanup::Kept) => return None,
        Ok(Cleanup::Done(seen, removed)) => (seen.unwrap_or(taken), Ok(removed)),
        Err(e) => (taken, Err(e)),
    };
    Some(Cleared {
        taken,
        aside: name.to_os_string(),
        removed,
    })
}

impl Cleared {
    /// Whether it is all gone.
    pub fn complete(&self) -> bool {
        self.removed.as_ref().is_ok_and(|r| r.complete)
    }
}

impl fmt::Display for Cleared {
    /// How its removal went, for a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the trash was squatted: {}; ", self.taken)?;
        let aside = self.aside.to_string_lossy();
        match &self.removed {
            Ok(r) if r.complete => {
                f.write_str("removed as residue, and treeward's own trash took its place")
            }
            Ok(r) => write!(f, "partly removed (at {aside}): {}", r.describe()),
            Err(e) => write!(f, "not removed (at {aside}): {e}"),
        }
    }
}

/// A name in the root, not guessable in advance, for a new trash on its
/// way in (and then for the squat it swapped out).
fn aside_name() -> OsString {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    OsString::from(format!("{TRASH}.aside-{}-{nanos:09}", std::process::id()))
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
    crate::fault::point("trash: before a quarantine");
    let moved = renameat2(
        root.fd.as_fd(),
        name,
        batch.fd.as_fd(),
        name,
        RenameFlags::RENAME_NOREPLACE,
    );
    crate::fault::point("trash: after a quarantine");
    moved
}

/// Moves a quarantined entry back to its place in the root (for work that
/// is kept). Fails with `EEXIST` if the name has been taken meanwhile.
pub fn put_back(root: &OpenRoot, name: &OsStr, batch: &Batch) -> nix::Result<()> {
    crate::fault::point("trash: before a put-back");
    renameat2(
        batch.fd.as_fd(),
        name,
        root.fd.as_fd(),
        name,
        RenameFlags::RENAME_NOREPLACE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn meta(kind: Kind, uid: u32, perm: u32) -> Meta {
        Meta {
            kind,
            dev: 1,
            ino: 2,
            perm,
            uid,
            nlink: 1,
            size: 0,
        }
    }

    #[test]
    fn only_a_private_directory_of_the_owner_holds_a_reserved_name() {
        let cases = [
            (meta(Kind::Directory, 4242, 0o711), None),
            (meta(Kind::Directory, 4242, 0o700), None),
            (meta(Kind::Directory, 4242, 0o755), Some(true)),
            (meta(Kind::Directory, 4242, 0o1777), Some(true)),
            (meta(Kind::Directory, 4343, 0o711), Some(false)),
            (meta(Kind::Directory, 0, 0o711), Some(false)),
            (meta(Kind::Regular, 4242, 0o600), Some(false)),
            (meta(Kind::Symlink, 4242, 0o777), Some(false)),
            (meta(Kind::Fifo, 4343, 0o644), Some(false)),
        ];
        for (m, expected) in cases {
            let taken = Taken::of(&m, 4242);
            assert_eq!(taken.as_ref().map(Taken::may_hold_work), expected, "{m:?}");
        }
        let fifo = Taken::of(&meta(Kind::Fifo, 4343, 0o644), 4242).unwrap();
        assert_eq!(
            fifo.to_string(),
            "a FIFO of uid 4343, not a private directory of the root's owner (uid 4242)"
        );
    }

    /// A root-owned sticky root in a temp dir, opened, and a directory
    /// beside it; `None` unless root (the squats are other users').
    fn sticky_root() -> Option<(tempfile::TempDir, OpenRoot)> {
        if !Uid::effective().is_root() {
            eprintln!("skipped: squatting as another uid needs root");
            return None;
        }
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(base.path().join("outside")).unwrap();
        std::fs::write(base.path().join("outside/keep"), "keep").unwrap();
        let fd = remove::open_dir_nofollow(&root).unwrap();
        let st = fstat(&fd).unwrap();
        let open = OpenRoot {
            fd,
            dev: st.st_dev,
            uid: st.st_uid,
            gid: st.st_gid,
        };
        Some((base, open))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Makes a squat at its first path, given a directory outside the root.
    type Squat = fn(&Path, &Path);

    #[test]
    fn claim_swaps_out_any_squat_and_never_follows_it() {
        let squats: [(&str, Squat); 4] = [
            ("a regular file", |t, _| std::fs::write(t, "x").unwrap()),
            ("a symlink", |t, outside| {
                std::os::unix::fs::symlink(outside, t).unwrap()
            }),
            ("a FIFO", |t, _| {
                nix::unistd::mkfifo(t, Mode::from_bits_truncate(0o644)).unwrap()
            }),
            ("a directory", |t, outside| {
                std::fs::create_dir(t).unwrap();
                std::os::unix::fs::symlink(outside, t.join("link")).unwrap();
                std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o711)).unwrap();
            }),
        ];
        for (what, make_squat) in squats {
            let Some((base, open)) = sticky_root() else {
                return;
            };
            let root = base.path().join("root");
            let outside = base.path().join("outside");
            let trash = root.join(TRASH);
            make_squat(&trash, &outside);
            std::os::unix::fs::lchown(&trash, Some(4343), Some(4343)).unwrap();
            match Trash::open(&open, true) {
                Err(TrashError::Taken(t)) => assert_eq!(t.uid, 4343, "{what}"),
                other => panic!("{what}: not refused: {other:?}"),
            }
            let (_trash, cleared) = Trash::claim(&open).unwrap();
            let cleared = cleared.expect("a squat was cleared");
            assert!(cleared.complete(), "{what}: {cleared}");
            assert!(cleared.taken.describe().starts_with(what), "{cleared}");
            let m = std::fs::symlink_metadata(&trash).unwrap();
            assert!(m.is_dir(), "{what}");
            assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o711), "{what}");
            assert_eq!(names(&root), vec![TRASH.to_owned()], "nothing left aside");
            assert_eq!(names(&outside), vec!["keep".to_owned()], "{what}");
            // Claimed again: the same trash, nothing to clear.
            assert!(Trash::claim(&open).unwrap().1.is_none());
        }
    }

    #[test]
    fn an_open_directory_of_the_owner_is_neither_used_nor_removed() {
        let Some((base, open)) = sticky_root() else {
            return;
        };
        let trash = base.path().join("root").join(TRASH);
        std::fs::create_dir(&trash).unwrap();
        std::fs::write(trash.join("work"), "w").unwrap();
        std::fs::set_permissions(&trash, std::fs::Permissions::from_mode(0o777)).unwrap();
        match Trash::claim(&open) {
            Err(TrashError::Taken(t)) => assert!(t.may_hold_work(), "{t}"),
            other => panic!("not refused: {other:?}"),
        }
        assert!(trash.join("work").is_file());
    }
}
