//! Safe removal of one entry of a root: the only code in treeward that deletes
//! files. `treeward-sweep` runs it as root over untrusted residue and
//! `treeward-reap` runs it as the service user, so it is written so that
//! neither the tree nor a concurrent attacker can turn it against anything
//! outside the entry (SPEC invariant 1).
//!
//! # Contract
//!
//! [`remove_entry`] removes the directory child `name` of an already open
//! directory `parent` (a root, opened with [`open_dir_nofollow`]), recursively,
//! and reports what it did in [`Removed`].
//!
//! - Every filesystem call is relative to a directory descriptor
//!   (`openat`/`openat2`, `fstatat`, `unlinkat`, `fchmodat`); no path string is
//!   ever handed to a syscall, so trees deeper than `PATH_MAX` are fine. The
//!   paths in a report are for humans only and are capped in length.
//! - Every open is `O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC`, every
//!   stat is `AT_SYMLINK_NOFOLLOW`. Only directories are ever opened: files,
//!   symlinks, FIFOs, sockets and device nodes are unlinked as themselves, so
//!   a symlink's target is never touched and a FIFO never blocks the walk.
//! - A directory is opened only after `fstatat` saw a directory, and the new
//!   descriptor must be the same object (`st_dev`, `st_ino`) and a directory;
//!   if an attacker swaps it for a symlink, `O_NOFOLLOW` makes the open fail,
//!   and if it is swapped for another object the child is left alone and
//!   reported as [`Problem::Replaced`].
//! - Mount points are never crossed: a directory (the entry included) whose
//!   `st_dev` differs from the root's, or that `openat2(RESOLVE_NO_XDEV)` refuses (this catches
//!   bind mounts of the same filesystem), is left in place and listed in
//!   [`Removed::mounts_left`]. Where `openat2` is unavailable (Linux < 5.6,
//!   or a seccomp filter), the mount id from `/proc/self/fdinfo` is compared
//!   instead; if that cannot be read either, only `st_dev` protects.
//! - Directories owned by the caller that lack `u+rwx` (mode 000, read-only)
//!   get `u+rwx` added (`fchmod` on the verified descriptor, or `fchmodat`
//!   with `AT_SYMLINK_NOFOLLOW` when the directory cannot be opened at all)
//!   before the walk reads or unlinks inside them. Root does not need this
//!   and only does it for directories it owns that lack those bits. (glibc
//!   implements that `fchmodat` through `/proc/self/fd`; without procfs a
//!   mode-000 directory of the caller's is reported, not removed.) File
//!   modes are never changed: unlinking needs none.
//! - Depth is handled with an explicit stack, never Rust recursion. At most
//!   [`MAX_OPEN_DIR_FDS`] directory descriptors are held (plus two for a
//!   moment: a `readdir` duplicate, a reopened parent); deeper than that,
//!   the shallowest descriptors are closed and, on the way back up, reopened
//!   with `openat(child, "..")`, accepted only if (`st_dev`, `st_ino`) is the
//!   one recorded on the way down. If it is not (someone moved the tree
//!   during the walk) the walk stops and reports [`Problem::Moved`].
//! - `bytes` is the apparent size (`st_size`) of regular files whose last
//!   link was removed: a hard link to a file elsewhere frees nothing and is
//!   not counted; two links inside the entry count once.
//!
//! # Failure modes
//!
//! [`RemoveError`] only when nothing was done: `name` is not a single path
//! component, or the entry cannot be stat'ed (including [`RemoveError::NotFound`],
//! which callers treat as "already removed"). Everything that goes wrong
//! inside the tree (permission denied, a mount point, a swapped directory,
//! a directory that filled up again) is reported per path in [`Removed`],
//! the rest of the tree is still removed, and the directories above the
//! problem are left (they cannot be empty): [`Removed::complete`] is then
//! false and the caller retries or reports. Nothing here ever panics on what
//! it finds on disk.
//!
//! [`remove_entry_until`] is the same removal that stops at a deadline,
//! checked before each child it visits (one `fstatat` and one `unlinkat`
//! or `openat` apart): a drain with a time budget must not be held by one
//! big tree. It leaves the rest of the tree as it is, reports
//! [`Removed::interrupted`], and the caller finishes it later (the drain
//! only ever starts removing an entry whose work is preserved or not at
//! risk, so a half-removed tree loses nothing).
//!
//! Outcome vocabulary, per path: removed (counted in `files`/`dirs`),
//! already gone (not counted, not a failure), a mount point left
//! ([`Removed::mounts_left`]), or a [`Failure`] whose [`Problem`] is
//! `Replaced`, `Moved`, `NotEmpty` or a failed system call. After the first
//! `EACCES`/`EROFS` from an unlink in a directory, the rest of that
//! directory is not attempted (it would fail the same way) and is only
//! counted in [`Removed::failures_unreported`].
//!
//! What this does not prevent: a directory the walk already holds open and
//! that someone renames elsewhere keeps being emptied where it now is. Only
//! who may rename it (write access to it and to its old and new parents) can
//! do that, and its contents were inside the entry when the walk found them.

use crate::fd::dir_flags;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The most directory descriptors one removal holds open at a time. The
/// drain runs two removals at once, which together hold at most 64 (a
/// compile-time check there keeps it so); only a tree deeper than this
/// many directories reopens parents through `..`.
pub const MAX_OPEN_DIR_FDS: usize = 32;

/// Reports keep at most this many failures; the rest are only counted.
pub const MAX_REPORTED_FAILURES: usize = 100;

/// Paths in reports longer than this many bytes keep only their tail.
pub const MAX_REPORT_PATH: usize = 1024;

/// An error that stopped [`remove_entry`] or [`open_dir_nofollow`] before
/// anything was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveError {
    /// `name` is empty, `.`, `..`, or holds a `/` or a NUL byte.
    InvalidName { name: OsString },
    /// A path given to [`open_dir_nofollow`] is relative or holds `..`.
    InvalidPath { path: PathBuf, reason: &'static str },
    /// The entry does not exist (any more).
    NotFound { name: OsString },
    /// The entry could not be stat'ed.
    Stat { name: OsString, errno: Errno },
    /// A component of a path given to [`open_dir_nofollow`] could not be
    /// opened as a directory without following symlinks.
    Open { path: PathBuf, errno: Errno },
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::InvalidName { name } => write!(
                f,
                "refusing to remove {:?}: an entry name must be one path component (not empty, `.`, `..`, no `/`)",
                name
            ),
            RemoveError::InvalidPath { path, reason } => {
                write!(f, "refusing to open {}: {reason}", path.display())
            }
            RemoveError::NotFound { name } => write!(f, "{:?} does not exist", name),
            RemoveError::Stat { name, errno } => {
                write!(f, "cannot stat {:?}: {}", name, errno.desc())
            }
            RemoveError::Open { path, errno } => match errno {
                Errno::ELOOP | Errno::ENOTDIR => write!(
                    f,
                    "cannot open {}: it is a symbolic link or not a directory, and treeward follows no symlinks on the way to a root",
                    path.display()
                ),
                _ => write!(f, "cannot open {}: {}", path.display(), errno.desc()),
            },
        }
    }
}

impl std::error::Error for RemoveError {}

/// What went wrong at one path inside the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The object changed between `fstatat` and `openat` (swapped for a
    /// symlink, a file or another directory); it was left alone.
    Replaced,
    /// A directory the walk climbed back to through `..` is no longer the one
    /// it left: the tree was moved during the removal, and the walk stopped.
    Moved,
    /// A directory still held entries when it was to be removed (something
    /// was created in it during the removal).
    NotEmpty,
    /// A system call failed.
    Io { op: &'static str, errno: Errno },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Replaced => f.write_str("replaced during removal; left alone"),
            Problem::Moved => f.write_str("moved during removal; walk stopped"),
            Problem::NotEmpty => f.write_str("not empty: created into during removal"),
            Problem::Io { op, errno } => write!(f, "{op}: {}", errno.desc()),
        }
    }
}

/// One path left behind and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Relative to the entry (`.` is the entry itself); for humans only.
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// What one [`remove_entry`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Non-directories unlinked: files, symlinks, FIFOs, sockets, devices.
    pub files: u64,
    /// Directories removed, the entry included.
    pub dirs: u64,
    /// Apparent size of regular files whose last link was removed.
    pub bytes: u64,
    /// Mount points found inside the entry (relative to it, `.` for the entry
    /// itself), left in place with everything below them.
    pub mounts_left: Vec<PathBuf>,
    /// Other paths left behind, at most [`MAX_REPORTED_FAILURES`].
    pub failures: Vec<Failure>,
    /// Failures beyond those listed.
    pub failures_unreported: u64,
    /// The entry is gone (removed, or removed by someone else meanwhile).
    pub complete: bool,
    /// The deadline of [`remove_entry_until`] came before the end: what
    /// is left was not attempted (and is not a failure).
    pub interrupted: bool,
}

impl Removed {
    /// What was left behind, in one line for a report: the mount points and
    /// the first few failures.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .mounts_left
            .iter()
            .map(|m| format!("mount point {} left in place", m.display()))
            .collect();
        parts.extend(self.failures.iter().take(3).map(Failure::to_string));
        let more = self.failures.len().saturating_sub(3) as u64 + self.failures_unreported;
        if more > 0 {
            parts.push(format!("and {more} more"));
        }
        parts.join("; ")
    }

    fn fail(&mut self, path: PathBuf, problem: Problem) {
        if self.failures.len() < MAX_REPORTED_FAILURES {
            self.failures.push(Failure { path, problem });
        } else {
            self.failures_unreported += 1;
        }
    }
}

/// The type of a filesystem object, from `st_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Regular,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

/// The parts of a `stat` the decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub dev: u64,
    pub ino: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub perm: u32,
    pub uid: u32,
    pub nlink: u64,
    pub size: u64,
}

impl Meta {
    /// What a `stat` says.
    #[allow(clippy::unnecessary_cast)] // field types differ between architectures
    pub fn from_stat(st: &FileStat) -> Meta {
        let fmt = st.st_mode as u32 & SFlag::S_IFMT.bits() as u32;
        let kind = [
            (SFlag::S_IFDIR, Kind::Directory),
            (SFlag::S_IFREG, Kind::Regular),
            (SFlag::S_IFLNK, Kind::Symlink),
            (SFlag::S_IFIFO, Kind::Fifo),
            (SFlag::S_IFSOCK, Kind::Socket),
            (SFlag::S_IFCHR, Kind::CharDevice),
            (SFlag::S_IFBLK, Kind::BlockDevice),
        ]
        .into_iter()
        .find(|(flag, _)| flag.bits() as u32 == fmt)
        .map_or(Kind::Unknown, |(_, kind)| kind);
        Meta {
            kind,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            perm: st.st_mode as u32 & 0o7777,
            uid: st.st_uid as u32,
            nlink: st.st_nlink as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }

    /// Whether both describe the same filesystem object (`st_dev`, `st_ino`).
    pub fn same_object(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// What the walk does with a child, given its `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A directory of the entry's filesystem: open it and empty it.
    Descend,
    /// A directory of another filesystem: leave it and report it.
    LeaveMountPoint,
    /// Anything else: `unlinkat` it as itself, never open it.
    Unlink,
}

/// Decides what to do with a child of the walk. Only directories are
/// compared by device: on overlayfs non-directories may report the device
/// of a lower layer, and unlinking a non-directory never reaches past it
/// (a file mount point fails with `EBUSY`, reported as a mount).
pub fn decide(child: &Meta, entry_dev: u64) -> Action {
    match child.kind {
        Kind::Directory if child.dev != entry_dev => Action::LeaveMountPoint,
        Kind::Directory => Action::Descend,
        _ => Action::Unlink,
    }
}

/// The bytes freed by unlinking this object: the size of a regular file
/// whose last link this is, else 0.
pub fn bytes_freed(child: &Meta) -> u64 {
    if child.kind == Kind::Regular && child.nlink <= 1 {
        child.size
    } else {
        0
    }
}

/// The mode to give a directory before working inside it: `u+rwx` added
/// when `euid` owns it and lacks one of those bits, else `None`.
pub fn repaired_dir_mode(dir: &Meta, euid: u32) -> Option<u32> {
    (dir.kind == Kind::Directory && dir.uid == euid && dir.perm & 0o700 != 0o700)
        .then_some(dir.perm | 0o700)
}

/// Whether `name` is one path component that can be an entry.
pub fn is_valid_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes != b"."
        && bytes != b".."
        && !bytes.contains(&b'/')
        && !bytes.contains(&0)
}

/// A human path relative to the entry from its components (`.` when there
/// are none), keeping only the tail when longer than [`MAX_REPORT_PATH`].
pub fn report_path<'a>(components: impl DoubleEndedIterator<Item = &'a OsStr>) -> PathBuf {
    let mut tail: Vec<&OsStr> = Vec::new();
    let mut len = 0usize;
    let mut truncated = false;
    for name in components.rev() {
        len += name.len() + 1;
        if len > MAX_REPORT_PATH {
            truncated = true;
            break;
        }
        tail.push(name);
    }
    if tail.is_empty() && !truncated {
        return PathBuf::from(".");
    }
    let mut path = PathBuf::new();
    if truncated {
        path.push("…");
    }
    for name in tail.into_iter().rev() {
        path.push(name);
    }
    path
}

/// Opens an absolute directory path component by component from `/`, each
/// with `O_NOFOLLOW | O_DIRECTORY`, so a symlink anywhere in the path is
/// refused. Used by callers to open a root.
pub fn open_dir_nofollow(path: &Path) -> Result<OwnedFd, RemoveError> {
    if !path.is_absolute() {
        return Err(RemoveError::InvalidPath {
            path: path.to_path_buf(),
            reason: "not an absolute path",
        });
    }
    let mut opened = PathBuf::from("/");
    let mut fd =
        nix::fcntl::open("/", dir_flags(), Mode::empty()).map_err(|errno| RemoveError::Open {
            path: opened.clone(),
            errno,
        })?;
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RemoveError::InvalidPath {
                    path: path.to_path_buf(),
                    reason: "it holds a `..` component",
                })
            }
            Component::Normal(name) => {
                opened.push(name);
                fd = openat(&fd, name, dir_flags(), Mode::empty()).map_err(|errno| {
                    RemoveError::Open {
                        path: opened.clone(),
                        errno,
                    }
                })?;
            }
        }
    }
    Ok(fd)
}

/// Removes the entry `name` of the directory `parent` recursively; see the
/// module documentation for the contract.
pub fn remove_entry(parent: BorrowedFd<'_>, name: &OsStr) -> Result<Removed, RemoveError> {
    crate::fault::point("remove: before an entry");
    walk(parent, name, Strategy::default()).map(|(removed, _)| removed)
}

/// [`remove_entry`] until `deadline` (`None`: to the end): at the deadline
/// the walk stops before its next child, leaves the rest in place and
/// reports [`Removed::interrupted`].
pub fn remove_entry_until(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Result<Removed, RemoveError> {
    walk_if(parent, name, Strategy::default(), deadline, |_| true)
        .map(|r| r.expect("every entry is accepted").0)
}

/// [`remove_entry`], only if `accept` approves of the entry as the walk's
/// own `fstatat` sees it: the walk then acts on that very object (a
/// directory is opened only if it is still the one `accept` saw, else it is
/// left as [`Problem::Replaced`]; a non-directory is unlinked as itself).
/// `Ok(None)`: not accepted, nothing done.
pub fn remove_entry_if(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    accept: impl FnOnce(&Meta) -> bool,
) -> Result<Option<Removed>, RemoveError> {
    walk_if(parent, name, Strategy::default(), None, accept).map(|r| r.map(|(removed, _)| removed))
}

/// How child directories are checked for mount points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Strategy {
    /// Try `openat2(RESOLVE_NO_XDEV)` first (falls back when unavailable).
    openat2: bool,
    /// Without `openat2`, compare mount ids from `/proc/self/fdinfo`.
    mount_ids: bool,
}

impl Default for Strategy {
    fn default() -> Strategy {
        Strategy {
            openat2: true,
            mount_ids: true,
        }
    }
}

/// Set once `openat2` reported `ENOSYS`: do not try it again.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Facts about one walk that the report does not carry (for tests).
#[derive(Debug, Clone, Copy, Default)]
struct WalkStats {
    max_open_fds: usize,
    reopened_via_dotdot: u64,
}

/// What the side-effect step did with one child.
#[derive(Debug)]
enum ChildOutcome {
    /// A non-directory was unlinked.
    Unlinked { bytes: u64 },
    /// It no longer exists: someone else removed it.
    Gone,
    /// A directory was opened and verified; its contents come next.
    Opened { fd: OwnedFd, meta: Meta },
    /// A mount point, left in place.
    MountLeft,
    /// Left in place for this reason.
    Left(Problem),
    /// Left, and nothing else in the same directory can be unlinked either
    /// (no write permission on it, read-only filesystem).
    LeftDirUnwritable(Problem),
}

/// The settings every step of one walk shares.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    strategy: Strategy,
    euid: u32,
    entry_dev: u64,
}

fn walk(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    strategy: Strategy,
) -> Result<(Removed, WalkStats), RemoveError> {
    walk_if(parent, name, strategy, None, |_| true).map(|r| r.expect("every entry is accepted"))
}

fn walk_if(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    strategy: Strategy,
    deadline: Option<Instant>,
    accept: impl FnOnce(&Meta) -> bool,
) -> Result<Option<(Removed, WalkStats)>, RemoveError> {
    if !is_valid_name(name) {
        return Err(RemoveError::InvalidName {
            name: name.to_os_string(),
        });
    }
    let meta = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::from_stat(&st),
        Err(Errno::ENOENT) => {
            return Err(RemoveError::NotFound {
                name: name.to_os_string(),
            })
        }
        Err(errno) => {
            return Err(RemoveError::Stat {
                name: name.to_os_string(),
                errno,
            })
        }
    };
    if !accept(&meta) {
        return Ok(None);
    }
    // The root's filesystem: an entry that is itself a mount point is left.
    let root_dev = match fstat(parent) {
        Ok(st) => Meta::from_stat(&st).dev,
        Err(errno) => {
            return Err(RemoveError::Stat {
                name: OsString::from("."),
                errno,
            })
        }
    };
    let mut walker = Walker {
        ctx: Ctx {
            strategy,
            euid: nix::unistd::geteuid().as_raw(),
            entry_dev: root_dev,
        },
        frames: Vec::new(),
        first_open: 0,
        entry_gone: false,
        deadline,
        out: Removed::default(),
        stats: WalkStats::default(),
    };
    let outcome = handle_child(&walker.ctx, parent, name, &meta);
    walker.apply(outcome, name);
    walker.run(parent);
    walker.out.complete = walker.entry_gone;
    Ok(Some((walker.out, walker.stats)))
}

/// Unlinks a non-directory or opens a directory, after `meta` (its
/// `fstatat`) was taken. Only system calls; the bookkeeping is the caller's.
fn handle_child(ctx: &Ctx, dirfd: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> ChildOutcome {
    match decide(meta, ctx.entry_dev) {
        Action::Unlink => match unlinkat(dirfd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => ChildOutcome::Unlinked {
                bytes: bytes_freed(meta),
            },
            Err(Errno::ENOENT) => ChildOutcome::Gone,
            Err(Errno::EBUSY) => ChildOutcome::MountLeft,
            // It became a directory after the stat.
            Err(Errno::EISDIR) => ChildOutcome::Left(Problem::Replaced),
            Err(errno @ (Errno::EACCES | Errno::EROFS)) => {
                ChildOutcome::LeftDirUnwritable(Problem::Io {
                    op: "unlink",
                    errno,
                })
            }
            Err(errno) => ChildOutcome::Left(Problem::Io {
                op: "unlink",
                errno,
            }),
        },
        Action::LeaveMountPoint => ChildOutcome::MountLeft,
        Action::Descend => open_verified_dir(ctx, dirfd, name, meta),
    }
}

/// Opens the directory `name` that `fstatat` described as `meta`, giving
/// the owner `u+rwx` first if it cannot be opened, and checks that the
/// descriptor is that same directory.
fn open_verified_dir(ctx: &Ctx, dirfd: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> ChildOutcome {
    let mut opened = open_child_dir(ctx, dirfd, name);
    if matches!(opened, Err(Errno::EACCES)) {
        if let Some(mode) = repaired_dir_mode(meta, ctx.euid) {
            let mode = Mode::from_bits_truncate(mode as nix::libc::mode_t);
            if let Err(errno) = fchmodat(dirfd, name, mode, FchmodatFlags::NoFollowSymlink) {
                return ChildOutcome::Left(Problem::Io {
                    op: "fchmodat",
                    errno,
                });
            }
            opened = open_child_dir(ctx, dirfd, name);
        }
    }
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::EXDEV) => return ChildOutcome::MountLeft,
        // A symlink or a non-directory took its place after the stat.
        Err(Errno::ELOOP | Errno::ENOTDIR) => return ChildOutcome::Left(Problem::Replaced),
        Err(Errno::ENOENT) => return ChildOutcome::Gone,
        Err(errno) => {
            return ChildOutcome::Left(Problem::Io {
                op: "openat",
                errno,
            })
        }
    };
    let now = match fstat(&fd) {
        Ok(st) => Meta::from_stat(&st),
        Err(errno) => return ChildOutcome::Left(Problem::Io { op: "fstat", errno }),
    };
    if now.kind != Kind::Directory || !now.same_object(meta) {
        return ChildOutcome::Left(Problem::Replaced);
    }
    if let Some(mode) = repaired_dir_mode(&now, ctx.euid) {
        let mode = Mode::from_bits_truncate(mode as nix::libc::mode_t);
        if let Err(errno) = fchmod(&fd, mode) {
            // Unlinks inside will fail and be reported; keep going.
            log::debug!("fchmod of {:?} failed: {}", name, errno.desc());
        }
    }
    ChildOutcome::Opened { fd, meta: now }
}

/// Opens the child directory `name` of `dirfd` without following a symlink
/// and without entering a mount point (`EXDEV` when it is one).
fn open_child_dir(ctx: &Ctx, dirfd: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    if ctx.strategy.openat2 && !OPENAT2_MISSING.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(dir_flags()).resolve(
            ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        match openat2(dirfd, name, how) {
            Err(Errno::ENOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
            // A seccomp filter that refuses unknown system calls.
            Err(Errno::EPERM) => {}
            other => return other,
        }
    }
    let fd = openat(dirfd, name, dir_flags(), Mode::empty())?;
    if !ctx.strategy.mount_ids {
        return Ok(fd);
    }
    match (mount_id(dirfd), mount_id(fd.as_fd())) {
        (Some(outer), Some(inner)) if outer != inner => Err(Errno::EXDEV),
        _ => Ok(fd),
    }
}

/// The mount id of an open descriptor, from `/proc/self/fdinfo`; `None`
/// when procfs is not there.
fn mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    parse_mount_id(&info)
}

/// The `mnt_id:` field of an fdinfo text.
fn parse_mount_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|value| value.trim().parse().ok())
}

/// The names in an open directory, without `.` and `..`. Lists through a
/// fresh open of the directory (`openat(fd, ".")`), so the caller's
/// descriptor keeps its offset and the directory can be listed again.
pub fn list_names(fd: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let fresh = openat(fd, ".", dir_flags(), nix::sys::stat::Mode::empty())?;
    let mut dir = Dir::from_fd(fresh)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let bytes = entry?.file_name().to_bytes().to_vec();
        if bytes != b"." && bytes != b".." {
            names.push(OsString::from_vec(bytes));
        }
    }
    Ok(names)
}

/// Reopens the parent of `child` through `..`, accepted only if it is the
/// directory `expected` recorded on the way down.
fn reopen_parent(child: BorrowedFd<'_>, expected: &Meta) -> Result<OwnedFd, Problem> {
    let fd = openat(child, "..", dir_flags(), Mode::empty()).map_err(|errno| Problem::Io {
        op: "openat ..",
        errno,
    })?;
    let meta = fstat(&fd)
        .map(|st| Meta::from_stat(&st))
        .map_err(|errno| Problem::Io { op: "fstat", errno })?;
    if meta.kind == Kind::Directory && meta.same_object(expected) {
        Ok(fd)
    } else {
        Err(Problem::Moved)
    }
}

/// One directory being emptied.
struct Frame {
    /// `None` only for frames more than [`MAX_OPEN_DIR_FDS`] above the top.
    fd: Option<OwnedFd>,
    meta: Meta,
    /// The name in the parent frame (the entry's name for the first frame).
    name: OsString,
    /// Children not yet visited.
    pending: Vec<OsString>,
    /// Something below was left, so this directory cannot be removed.
    blocked: bool,
}

/// The explicit stack of one removal and its report.
struct Walker {
    ctx: Ctx,
    frames: Vec<Frame>,
    /// Frames below this index have their descriptor closed; the top frame
    /// is always open.
    first_open: usize,
    entry_gone: bool,
    /// When to stop (see [`remove_entry_until`]).
    deadline: Option<Instant>,
    out: Removed,
    stats: WalkStats,
}

impl Walker {
    fn run(&mut self, parent: BorrowedFd<'_>) {
        while let Some(top) = self.frames.last_mut() {
            match top.pending.pop() {
                Some(_) if self.deadline.is_some_and(|d| Instant::now() >= d) => {
                    self.out.interrupted = true;
                    self.frames.clear();
                }
                Some(child) => self.visit(child),
                None => self.finish_top(parent),
            }
        }
    }

    /// The human path of `child` of the top frame, relative to the entry;
    /// `.` for the entry itself (when no frame is open).
    fn path_of(&self, child: &OsStr) -> PathBuf {
        if self.frames.is_empty() {
            return PathBuf::from(".");
        }
        let names: Vec<&OsStr> = self
            .frames
            .iter()
            .skip(1)
            .map(|f| f.name.as_os_str())
            .chain(std::iter::once(child))
            .collect();
        report_path(names.into_iter())
    }

    fn block_top(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.blocked = true;
        }
    }

    fn visit(&mut self, child: OsString) {
        let Some(dirfd) = self.frames.last().and_then(|f| f.fd.as_ref()) else {
            // The top frame is always open; if not, stop rather than guess.
            let path = self.path_of(&child);
            let problem = Problem::Io {
                op: "walk (no open directory)",
                errno: Errno::EBADF,
            };
            self.out.fail(path, problem);
            self.frames.clear();
            return;
        };
        let outcome = match fstatat(dirfd, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => handle_child(&self.ctx, dirfd.as_fd(), &child, &Meta::from_stat(&st)),
            Err(Errno::ENOENT) => ChildOutcome::Gone,
            Err(errno) => ChildOutcome::Left(Problem::Io {
                op: "fstatat",
                errno,
            }),
        };
        self.apply(outcome, &child);
    }

    /// Books what happened to `child` of the top frame (or to the entry
    /// itself when no frame is open yet).
    fn apply(&mut self, outcome: ChildOutcome, child: &OsStr) {
        let is_entry = self.frames.is_empty();
        match outcome {
            ChildOutcome::Unlinked { bytes } => {
                self.out.files += 1;
                self.out.bytes += bytes;
                self.entry_gone |= is_entry;
            }
            ChildOutcome::Gone => self.entry_gone |= is_entry,
            ChildOutcome::Opened { fd, meta } => match list_names(fd.as_fd()) {
                Ok(pending) => self.push(Frame {
                    fd: Some(fd),
                    meta,
                    name: child.to_os_string(),
                    pending,
                    blocked: false,
                }),
                Err(errno) => {
                    let path = self.path_of(child);
                    self.out.fail(
                        path,
                        Problem::Io {
                            op: "readdir",
                            errno,
                        },
                    );
                    self.block_top();
                }
            },
            ChildOutcome::MountLeft => {
                let path = self.path_of(child);
                self.out.mounts_left.push(path);
                self.block_top();
            }
            ChildOutcome::Left(problem) => {
                let path = self.path_of(child);
                self.out.fail(path, problem);
                self.block_top();
            }
            ChildOutcome::LeftDirUnwritable(problem) => {
                let path = self.path_of(child);
                self.out.fail(path, problem);
                if let Some(top) = self.frames.last_mut() {
                    top.blocked = true;
                    self.out.failures_unreported += top.pending.len() as u64;
                    top.pending.clear();
                }
            }
        }
    }

    /// Pushes a frame, closing the shallowest descriptor when more than
    /// [`MAX_OPEN_DIR_FDS`] would be open.
    fn push(&mut self, frame: Frame) {
        self.frames.push(frame);
        while self.frames.len() - self.first_open > MAX_OPEN_DIR_FDS {
            self.frames[self.first_open].fd = None;
            self.first_open += 1;
        }
        let open = self.frames.len() - self.first_open;
        self.stats.max_open_fds = self.stats.max_open_fds.max(open);
    }

    /// The top frame is empty: climb back to its parent and remove it.
    fn finish_top(&mut self, parent: BorrowedFd<'_>) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        if let Some(index) = self.frames.len().checked_sub(1) {
            if index < self.first_open {
                let reopened = match &frame.fd {
                    Some(fd) => reopen_parent(fd.as_fd(), &self.frames[index].meta),
                    None => Err(Problem::Moved),
                };
                match reopened {
                    Ok(fd) => {
                        self.frames[index].fd = Some(fd);
                        self.first_open = index;
                        self.stats.reopened_via_dotdot += 1;
                    }
                    Err(problem) => {
                        // The directory to climb back to is the one named.
                        if let Some(moved) = self.frames.pop() {
                            let path = self.path_of(&moved.name);
                            self.out.fail(path, problem);
                        }
                        self.frames.clear();
                        return;
                    }
                }
            }
        }
        let Frame {
            fd, name, blocked, ..
        } = frame;
        drop(fd);
        if blocked {
            self.block_top();
            return;
        }
        let result = match self.frames.last().and_then(|f| f.fd.as_ref()) {
            Some(fd) => unlinkat(fd, name.as_os_str(), UnlinkatFlags::RemoveDir),
            None if self.frames.is_empty() => {
                unlinkat(parent, name.as_os_str(), UnlinkatFlags::RemoveDir)
            }
            None => Err(Errno::EBADF),
        };
        let is_entry = self.frames.is_empty();
        match result {
            Ok(()) => {
                self.out.dirs += 1;
                self.entry_gone |= is_entry;
            }
            Err(Errno::ENOENT) => self.entry_gone |= is_entry,
            Err(Errno::EBUSY) => self.apply(ChildOutcome::MountLeft, &name),
            // A symlink or a file took its name after it was emptied.
            Err(Errno::ENOTDIR) => self.apply(ChildOutcome::Left(Problem::Replaced), &name),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                self.apply(ChildOutcome::Left(Problem::NotEmpty), &name)
            }
            Err(errno) => self.apply(
                ChildOutcome::Left(Problem::Io { op: "rmdir", errno }),
                &name,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::thread;

    const CHILD_MODE: &str = "TREEWARD_REMOVE_TEST_CHILD";
    const CHILD_ROOT: &str = "TREEWARD_REMOVE_TEST_ROOT";
    const CHILD_NAME: &str = "TREEWARD_REMOVE_TEST_NAME";
    const CHILD_CANARY: &str = "TREEWARD_REMOVE_TEST_CANARY";

    fn is_root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    /// A root directory to remove entries from, and a directory outside it.
    struct Fixture {
        _base: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        fd: OwnedFd,
    }

    fn fixture() -> Fixture {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        let fd = open_dir_nofollow(&root).unwrap();
        Fixture {
            _base: base,
            root,
            outside,
            fd,
        }
    }

    impl Fixture {
        fn remove(&self, name: impl AsRef<OsStr>) -> Removed {
            remove_entry(self.fd.as_fd(), name.as_ref()).unwrap()
        }
    }

    fn write(path: impl AsRef<Path>, content: impl AsRef<[u8]>) {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(path, content).unwrap();
    }

    fn exists(path: impl AsRef<Path>) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn set_mode(path: impl AsRef<Path>, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Files with known contents; `assert_intact` fails if any changed.
    struct Canary(Vec<(PathBuf, String)>);

    fn canary(dir: &Path) -> Canary {
        let mut files = Vec::new();
        for i in 0..5 {
            for sub in ["", "b", "b/c"] {
                let path = dir.join(sub).join(format!("f{i}"));
                let content = format!("canary {sub} {i}");
                write(&path, &content);
                files.push((path, content));
            }
        }
        Canary(files)
    }

    impl Canary {
        fn assert_intact(&self) {
            for (path, content) in &self.0 {
                let now = fs::read_to_string(path).unwrap_or_else(|e| {
                    panic!("canary {} is damaged: {e}", path.display());
                });
                assert_eq!(&now, content, "canary {} changed", path.display());
            }
        }
    }

    // ---- pure decisions -------------------------------------------------

    fn meta(kind: Kind, dev: u64) -> Meta {
        Meta {
            kind,
            dev,
            ino: 7,
            perm: 0o755,
            uid: 1000,
            nlink: 1,
            size: 42,
        }
    }

    #[test]
    fn remove_entry_if_acts_only_on_what_it_accepted() {
        let f = fixture();
        write(f.root.join("sess-a/file"), "a");
        let declined = remove_entry_if(f.fd.as_fd(), OsStr::new("sess-a"), |m| {
            m.kind != Kind::Directory
        });
        assert_eq!(declined, Ok(None));
        assert!(exists(f.root.join("sess-a/file")), "declined: nothing done");
        let seen = std::cell::Cell::new(None);
        let removed = remove_entry_if(f.fd.as_fd(), OsStr::new("sess-a"), |m| {
            seen.set(Some(m.kind));
            true
        })
        .unwrap()
        .unwrap();
        assert!(removed.complete && !exists(f.root.join("sess-a")));
        assert_eq!(seen.get(), Some(Kind::Directory));
    }

    #[test]
    fn decide_descends_only_into_directories_of_the_entry_filesystem() {
        assert_eq!(decide(&meta(Kind::Directory, 1), 1), Action::Descend);
        assert_eq!(
            decide(&meta(Kind::Directory, 2), 1),
            Action::LeaveMountPoint
        );
        for kind in [
            Kind::Regular,
            Kind::Symlink,
            Kind::Fifo,
            Kind::Socket,
            Kind::CharDevice,
            Kind::BlockDevice,
            Kind::Unknown,
        ] {
            assert_eq!(decide(&meta(kind, 1), 1), Action::Unlink, "{kind:?}");
            assert_eq!(decide(&meta(kind, 2), 1), Action::Unlink, "{kind:?}");
        }
    }

    #[test]
    fn bytes_are_counted_for_the_last_link_of_regular_files_only() {
        assert_eq!(bytes_freed(&meta(Kind::Regular, 1)), 42);
        let linked = Meta {
            nlink: 2,
            ..meta(Kind::Regular, 1)
        };
        assert_eq!(bytes_freed(&linked), 0);
        assert_eq!(bytes_freed(&meta(Kind::Symlink, 1)), 0);
        assert_eq!(bytes_freed(&meta(Kind::Directory, 1)), 0);
    }

    #[test]
    fn owner_gets_rwx_on_directories_missing_it() {
        let locked = Meta {
            perm: 0o000,
            ..meta(Kind::Directory, 1)
        };
        assert_eq!(repaired_dir_mode(&locked, 1000), Some(0o700));
        let read_only = Meta {
            perm: 0o1555,
            ..meta(Kind::Directory, 1)
        };
        assert_eq!(repaired_dir_mode(&read_only, 1000), Some(0o1755));
        assert_eq!(repaired_dir_mode(&locked, 4242), None, "not the owner");
        assert_eq!(repaired_dir_mode(&meta(Kind::Directory, 1), 1000), None);
        let file = Meta {
            perm: 0o444,
            ..meta(Kind::Regular, 1)
        };
        assert_eq!(repaired_dir_mode(&file, 1000), None, "files keep modes");
    }

    #[test]
    fn names_must_be_one_component() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!is_valid_name(OsStr::new(bad)), "{bad:?}");
        }
        assert!(is_valid_name(OsStr::new("sess-1")));
        assert!(is_valid_name(OsStr::new("new\nline")));
        assert!(is_valid_name(OsStr::from_bytes(b"bad\xff")));
        assert!(is_valid_name(OsStr::new("...")));
    }

    #[test]
    fn report_paths_are_relative_and_capped() {
        let empty: Vec<&OsStr> = Vec::new();
        assert_eq!(report_path(empty.into_iter()), PathBuf::from("."));
        let names = [OsStr::new("a"), OsStr::new("b")];
        assert_eq!(report_path(names.into_iter()), PathBuf::from("a/b"));
        let long = "d".repeat(100);
        let many: Vec<&OsStr> = (0..100).map(|_| OsStr::new(&long)).collect();
        let path = report_path(many.into_iter());
        assert!(path.as_os_str().len() <= MAX_REPORT_PATH + 8, "{path:?}");
        assert!(path.starts_with("…"), "{path:?}");
        assert!(path.ends_with(&long));
    }

    #[test]
    fn mount_id_is_read_from_fdinfo() {
        let text = "pos:\t0\nflags:\t02100000\nmnt_id:\t31\nino:\t5\n";
        assert_eq!(parse_mount_id(text), Some(31));
        assert_eq!(parse_mount_id("pos:\t0\n"), None);
        let fd = nix::fcntl::open("/", dir_flags(), Mode::empty()).unwrap();
        assert!(mount_id(fd.as_fd()).is_some(), "procfs is mounted here");
    }

    // ---- open_dir_nofollow ---------------------------------------------

    #[test]
    fn open_dir_nofollow_refuses_symlinks_relative_paths_and_dotdot() {
        let f = fixture();
        let link = f.outside.join("link");
        symlink(&f.root, &link).unwrap();
        write(f.root.join("file"), "x");

        let err = open_dir_nofollow(&link).unwrap_err();
        assert!(
            matches!(
                err,
                RemoveError::Open {
                    errno: Errno::ELOOP | Errno::ENOTDIR,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = open_dir_nofollow(&link.join("deeper")).unwrap_err();
        assert!(matches!(err, RemoveError::Open { .. }), "{err:?}");
        let err = open_dir_nofollow(Path::new("relative/root")).unwrap_err();
        assert!(matches!(err, RemoveError::InvalidPath { .. }), "{err:?}");
        let err = open_dir_nofollow(&f.root.join("..").join("root")).unwrap_err();
        assert!(matches!(err, RemoveError::InvalidPath { .. }), "{err:?}");
        let err = open_dir_nofollow(&f.root.join("file")).unwrap_err();
        assert!(
            matches!(
                err,
                RemoveError::Open {
                    errno: Errno::ENOTDIR,
                    ..
                }
            ),
            "{err:?}"
        );

        let fd = open_dir_nofollow(&f.root).unwrap();
        let st = fstat(&fd).unwrap();
        assert_eq!(st.st_ino, fs::metadata(&f.root).unwrap().ino());
    }

    #[test]
    fn climbing_back_through_dotdot_accepts_only_the_recorded_directory() {
        let f = fixture();
        fs::create_dir_all(f.root.join("a/b")).unwrap();
        fs::create_dir_all(f.root.join("elsewhere")).unwrap();
        let a = open_dir_nofollow(&f.root.join("a")).unwrap();
        let b = open_dir_nofollow(&f.root.join("a/b")).unwrap();
        let a_meta = Meta::from_stat(&fstat(&a).unwrap());
        let parent = reopen_parent(b.as_fd(), &a_meta).unwrap();
        assert_eq!(Meta::from_stat(&fstat(&parent).unwrap()), a_meta);

        // `b` is moved elsewhere while open: its `..` is no longer `a`.
        fs::rename(f.root.join("a/b"), f.root.join("elsewhere/b")).unwrap();
        assert_eq!(
            reopen_parent(b.as_fd(), &a_meta).unwrap_err(),
            Problem::Moved
        );
    }

    // ---- removal --------------------------------------------------------

    #[test]
    fn refuses_bad_names_and_reports_missing_entries() {
        let f = fixture();
        write(f.root.join("keep"), "x");
        for bad in ["", ".", "..", "a/b"] {
            let err = remove_entry(f.fd.as_fd(), OsStr::new(bad)).unwrap_err();
            assert!(matches!(err, RemoveError::InvalidName { .. }), "{err:?}");
        }
        let err = remove_entry(f.fd.as_fd(), OsStr::new("missing")).unwrap_err();
        assert!(matches!(err, RemoveError::NotFound { .. }), "{err:?}");
        assert!(exists(f.root.join("keep")));
    }

    #[test]
    fn removes_a_tree_counts_it_and_leaves_siblings() {
        let f = fixture();
        let entry = f.root.join("sess-1");
        write(entry.join("a.txt"), "hello");
        write(entry.join("sub/b.txt"), "0123456789");
        write(entry.join("sub/deeper/c.bin"), vec![7u8; 1000]);
        fs::create_dir(entry.join("empty")).unwrap();
        write(f.root.join("sess-2/keep.txt"), "keep");
        write(f.root.join("sess-10"), "keep");

        let removed = f.remove("sess-1");
        assert_eq!(
            removed,
            Removed {
                files: 3,
                dirs: 4,
                bytes: 1015,
                complete: true,
                ..Removed::default()
            }
        );
        assert!(!exists(&entry));
        assert_eq!(
            fs::read_to_string(f.root.join("sess-2/keep.txt")).unwrap(),
            "keep"
        );
        assert_eq!(fs::read_to_string(f.root.join("sess-10")).unwrap(), "keep");
    }

    #[test]
    fn a_deadline_stops_the_walk_between_files_and_the_rest_waits() {
        let f = fixture();
        let entry = f.root.join("sess-big");
        for i in 0..50 {
            write(entry.join(format!("d{}/f{i}", i % 5)), "x");
        }
        let past = Some(Instant::now());
        let removed = remove_entry_until(f.fd.as_fd(), OsStr::new("sess-big"), past).unwrap();
        assert!(removed.interrupted && !removed.complete, "{removed:?}");
        assert!(removed.failures.is_empty(), "{removed:?}");
        assert_eq!((removed.files, removed.dirs), (0, 0), "nothing after it");
        assert!(exists(entry.join("d0/f0")));
        let later = Some(Instant::now() + std::time::Duration::from_secs(60));
        let removed = remove_entry_until(f.fd.as_fd(), OsStr::new("sess-big"), later).unwrap();
        assert!(removed.complete && !removed.interrupted, "{removed:?}");
        assert_eq!((removed.files, removed.dirs), (50, 6));
        assert!(!exists(&entry));
    }

    #[test]
    fn a_file_entry_is_unlinked() {
        let f = fixture();
        write(f.root.join("sess-file"), "abc");
        let removed = f.remove("sess-file");
        assert_eq!(
            (removed.files, removed.bytes, removed.complete),
            (1, 3, true)
        );
        assert!(!exists(f.root.join("sess-file")));
    }

    #[test]
    fn a_symlink_entry_is_removed_as_a_link_and_its_target_untouched() {
        let f = fixture();
        let target = f.outside.join("target");
        let canary = canary(&target);
        symlink(&target, f.root.join("sess-link")).unwrap();

        let removed = f.remove("sess-link");
        assert_eq!((removed.files, removed.dirs, removed.bytes), (1, 0, 0));
        assert!(removed.complete);
        assert!(!exists(f.root.join("sess-link")));
        canary.assert_intact();
    }

    #[test]
    fn symlinks_inside_are_removed_as_links() {
        let f = fixture();
        let canary = canary(&f.outside.join("target"));
        let entry = f.root.join("sess-1");
        write(entry.join("sub/own.txt"), "own");
        symlink(f.outside.join("target"), entry.join("sub/to-dir")).unwrap();
        symlink(f.outside.join("target/f0"), entry.join("to-file")).unwrap();
        symlink("/", entry.join("to-slash")).unwrap();
        symlink("dangling-nowhere", entry.join("dangling")).unwrap();

        let removed = f.remove("sess-1");
        assert!(removed.complete, "{removed:?}");
        assert_eq!((removed.files, removed.dirs), (5, 2));
        assert!(!exists(&entry));
        canary.assert_intact();
    }

    #[test]
    fn hard_links_count_once_and_outside_links_survive() {
        let f = fixture();
        write(f.outside.join("keep.txt"), vec![1u8; 100]);
        let entry = f.root.join("sess-1");
        write(entry.join("own.txt"), "seven!!");
        fs::hard_link(entry.join("own.txt"), entry.join("own-again")).unwrap();
        fs::hard_link(f.outside.join("keep.txt"), entry.join("to-outside")).unwrap();

        let removed = f.remove("sess-1");
        assert!(removed.complete);
        assert_eq!((removed.files, removed.bytes), (3, 7));
        assert_eq!(
            fs::read(f.outside.join("keep.txt")).unwrap(),
            vec![1u8; 100]
        );
    }

    #[test]
    fn special_files_are_unlinked_without_being_opened() {
        let f = fixture();
        let entry = f.root.join("sess-1");
        fs::create_dir(&entry).unwrap();
        nix::unistd::mkfifo(&entry.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(entry.join("sock")).unwrap();
        let mut expected_files = 2;
        if is_root() {
            // A character device with the numbers of /dev/null.
            nix::sys::stat::mknod(
                &entry.join("null"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
            expected_files += 1;
        } else {
            eprintln!("skipping the device node part: mknod needs root");
        }
        let removed = f.remove("sess-1");
        assert!(removed.complete, "{removed:?}");
        assert_eq!(removed.files, expected_files);
        assert!(!exists(&entry));
        assert!(fs::metadata("/dev/null").is_ok());
    }

    #[test]
    fn names_that_are_not_utf8_or_hold_newlines() {
        let f = fixture();
        let entry_name = OsStr::from_bytes(b"sess-\xff\n2");
        let entry = f.root.join(entry_name);
        write(entry.join(OsStr::from_bytes(b"bad\xfe\xff")), "x");
        write(entry.join("new\nline").join("a\nb"), "y");
        fs::create_dir(entry.join(OsStr::from_bytes(b"\n\xc3"))).unwrap();

        let removed = f.remove(entry_name);
        assert!(removed.complete, "{removed:?}");
        assert_eq!((removed.files, removed.dirs), (2, 3));
        assert!(!exists(&entry));
    }

    /// An entry with a mode-000 subtree and a read-only subtree.
    fn build_locked_tree(entry: &Path) {
        write(entry.join("locked/file"), "x");
        write(entry.join("locked/inner/file"), "y");
        write(entry.join("ro/file"), "z");
        write(entry.join("ro/inner/file"), "w");
        write(entry.join("plain.txt"), "p");
    }

    fn lock_down(entry: &Path) {
        set_mode(entry.join("ro/file"), 0o444);
        set_mode(entry.join("ro/inner/file"), 0o444);
        set_mode(entry.join("ro/inner"), 0o555);
        set_mode(entry.join("ro"), 0o555);
        set_mode(entry.join("locked/inner"), 0o000);
        set_mode(entry.join("locked"), 0o000);
    }

    #[test]
    fn mode_000_and_read_only_subtrees_as_root() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let f = fixture();
        let entry = f.root.join("sess-1");
        build_locked_tree(&entry);
        lock_down(&entry);
        let removed = f.remove("sess-1");
        assert!(removed.complete, "{removed:?}");
        assert_eq!((removed.files, removed.dirs), (5, 5));
        assert!(!exists(&entry));
    }

    fn chown_tree(path: &Path, uid: u32) {
        lchown(path, Some(uid), Some(uid)).unwrap();
        if fs::symlink_metadata(path).unwrap().is_dir() {
            for child in fs::read_dir(path).unwrap() {
                chown_tree(&child.unwrap().path(), uid);
            }
        }
    }

    /// A root owned by uid 4242 in a directory that uid can traverse.
    fn fixture_for_4242() -> Fixture {
        let f = fixture();
        set_mode(f._base.path(), 0o755);
        chown_tree(&f.root, 4242);
        f
    }

    /// Runs `child_process_helper` in a child process, optionally as `uid`;
    /// returns its exit status and output.
    fn run_child(mode: &str, envs: &[(&str, &OsStr)], uid: Option<u32>) -> (i32, String) {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "remove::tests::child_process_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode);
        for (key, value) in envs {
            cmd.env(key, value);
        }
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    #[ignore = "helper: run by other tests in a child process"]
    fn child_process_helper() {
        let (Ok(mode), Some(root)) = (std::env::var(CHILD_MODE), std::env::var_os(CHILD_ROOT))
        else {
            eprintln!("child helper: nothing to do without {CHILD_MODE}");
            return;
        };
        let root = PathBuf::from(root);
        let code = match mode.as_str() {
            "remove" => child_remove(&root),
            "bind" => child_bind(&root),
            _ => 5,
        };
        std::process::exit(code);
    }

    /// Child mode: remove the entry named in the environment; 0 when
    /// complete, 3 when incomplete, 4 on an error.
    fn child_remove(root: &Path) -> i32 {
        let name = std::env::var_os(CHILD_NAME).unwrap_or_default();
        let result = open_dir_nofollow(root).and_then(|fd| remove_entry(fd.as_fd(), &name));
        println!("RESULT {result:?}");
        match result {
            Ok(removed) if removed.complete => 0,
            Ok(_) => 3,
            Err(_) => 4,
        }
    }

    #[test]
    fn mode_000_and_read_only_subtrees_as_their_unprivileged_owner() {
        if !is_root() {
            eprintln!("skipping: needs root to act as uid 4242");
            return;
        }
        let f = fixture_for_4242();
        let entry = f.root.join("sess-1");
        build_locked_tree(&entry);
        chown_tree(&entry, 4242);
        lock_down(&entry);
        write(f.root.join("sess-2/keep"), "keep");

        let (code, out) = run_child(
            "remove",
            &[
                (CHILD_ROOT, f.root.as_os_str()),
                (CHILD_NAME, OsStr::new("sess-1")),
            ],
            Some(4242),
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("files: 5, dirs: 5"), "{out}");
        assert!(!exists(&entry));
        assert!(exists(f.root.join("sess-2/keep")));
    }

    #[test]
    fn unprivileged_removal_reports_what_it_may_not_remove() {
        if !is_root() {
            eprintln!("skipping: needs root to act as uid 4242");
            return;
        }
        let f = fixture_for_4242();
        let entry = f.root.join("sess-1");
        write(entry.join("mine.txt"), "mine");
        write(entry.join("also/mine.txt"), "mine");
        chown_tree(&entry, 4242);
        write(entry.join("rootdir/rootfile"), "root's");
        write(entry.join("rootdir/rootfile2"), "root's");
        write(entry.join("rootdir/rootfile3"), "root's");

        let (code, out) = run_child(
            "remove",
            &[
                (CHILD_ROOT, f.root.as_os_str()),
                (CHILD_NAME, OsStr::new("sess-1")),
            ],
            Some(4242),
        );
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("rootdir/rootfile"), "{out}");
        // The first refusal stops work in that directory: one failure
        // listed, its two siblings only counted.
        assert!(out.contains("failures_unreported: 2"), "{out}");
        assert!(
            out.contains("EACCES") || out.contains("Permission denied"),
            "{out}"
        );
        assert!(!exists(entry.join("mine.txt")));
        assert!(!exists(entry.join("also")));
        assert_eq!(
            fs::read_to_string(entry.join("rootdir/rootfile")).unwrap(),
            "root's"
        );
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_removed_with_bounded_descriptors() {
        const DEPTH: usize = 2_000;
        let name = "dddddddddd";
        let f = fixture();
        fs::create_dir(f.root.join("sess-deep")).unwrap();
        let mut fd = openat(&f.fd, "sess-deep", dir_flags(), Mode::empty()).unwrap();
        let mut files = 0;
        for level in 0..DEPTH {
            nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755)).unwrap();
            fd = openat(&fd, name, dir_flags(), Mode::empty()).unwrap();
            if level % 100 == 0 {
                let mut file = crate::fd::create_new_at(fd.as_fd(), OsStr::new("file")).unwrap();
                std::io::Write::write_all(&mut file, b"1234").unwrap();
                files += 1;
            }
        }
        drop(fd);
        assert!(DEPTH * (name.len() + 1) > 4 * 4096, "deeper than PATH_MAX");

        let (removed, stats) =
            walk(f.fd.as_fd(), OsStr::new("sess-deep"), Strategy::default()).unwrap();
        assert!(removed.complete, "{removed:?}");
        assert_eq!(removed.dirs, DEPTH as u64 + 1);
        assert_eq!((removed.files, removed.bytes), (files, 4 * files));
        assert!(stats.max_open_fds <= MAX_OPEN_DIR_FDS, "{stats:?}");
        assert!(stats.reopened_via_dotdot > 0, "{stats:?}");
        assert!(!exists(f.root.join("sess-deep")));
    }

    /// Child mode, in a private mount namespace: bind-mount the canary onto
    /// directories inside entries and remove them; 0 when every mount point
    /// was left and reported.
    fn child_bind(root: &Path) -> i32 {
        use nix::mount::{mount, MsFlags};
        let Some(canary) = std::env::var_os(CHILD_CANARY) else {
            return 5;
        };
        let none: Option<&str> = None;
        let setup = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .and_then(|()| mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none))
            .and_then(|()| {
                [
                    "sess-openat2/inner/mnt",
                    "sess-fallback/inner/mnt",
                    "sess-whole",
                ]
                .iter()
                .try_for_each(|target| {
                    mount(
                        Some(canary.as_os_str()),
                        &root.join(target),
                        none,
                        MsFlags::MS_BIND,
                        none,
                    )
                })
            });
        let setup = setup.and_then(|()| {
            ["sess-tmpfs/inner/mnt", "sess-tmpfs-whole"]
                .iter()
                .try_for_each(|target| {
                    let target = root.join(target);
                    mount(
                        Some("tmpfs"),
                        &target,
                        Some("tmpfs"),
                        MsFlags::empty(),
                        none,
                    )?;
                    std::fs::write(target.join("on-tmpfs"), "t").map_err(|_| Errno::EIO)
                })
        });
        if let Err(e) = setup {
            println!("SETUP FAILED {e}");
            return 6;
        }
        let Ok(fd) = open_dir_nofollow(root) else {
            return 4;
        };
        let mut ok = true;
        let fallback = Strategy {
            openat2: false,
            mount_ids: true,
        };
        let st_dev_only = Strategy {
            openat2: false,
            mount_ids: false,
        };
        for (name, strategy, expected) in [
            ("sess-openat2", Strategy::default(), "inner/mnt"),
            ("sess-fallback", fallback, "inner/mnt"),
            ("sess-whole", Strategy::default(), "."),
            ("sess-tmpfs", st_dev_only, "inner/mnt"),
            ("sess-tmpfs-whole", st_dev_only, "."),
        ] {
            let result = walk(fd.as_fd(), OsStr::new(name), strategy);
            println!("RESULT {name} {result:?}");
            match result {
                Ok((removed, _)) => {
                    ok &= !removed.complete
                        && removed.mounts_left == vec![PathBuf::from(expected)]
                        && removed.failures.is_empty();
                }
                Err(_) => ok = false,
            }
        }
        for target in ["sess-tmpfs/inner/mnt", "sess-tmpfs-whole"] {
            let left = std::fs::read_to_string(root.join(target).join("on-tmpfs"));
            println!("TMPFS {target} {left:?}");
            ok &= left.is_ok();
        }
        if ok {
            0
        } else {
            3
        }
    }

    #[test]
    fn a_bind_mount_inside_the_entry_is_not_crossed() {
        if !is_root() {
            eprintln!("skipping: bind mounts need root");
            return;
        }
        let f = fixture();
        let canary_dir = f.outside.join("canary");
        let canary = canary(&canary_dir);
        for name in ["sess-openat2", "sess-fallback", "sess-tmpfs"] {
            let entry = f.root.join(name);
            fs::create_dir_all(entry.join("inner/mnt")).unwrap();
            write(entry.join("inner/file"), "x");
            write(entry.join("top"), "y");
        }
        fs::create_dir(f.root.join("sess-whole")).unwrap();
        fs::create_dir(f.root.join("sess-tmpfs-whole")).unwrap();
        // Same filesystem, so st_dev alone cannot tell the mount point.
        assert_eq!(
            fs::metadata(&canary_dir).unwrap().dev(),
            fs::metadata(&f.root).unwrap().dev()
        );

        let (code, out) = run_child(
            "bind",
            &[
                (CHILD_ROOT, f.root.as_os_str()),
                (CHILD_CANARY, canary_dir.as_os_str()),
            ],
            None,
        );
        assert_eq!(code, 0, "{out}");
        canary.assert_intact();
        for name in ["sess-openat2", "sess-fallback", "sess-tmpfs"] {
            let entry = f.root.join(name);
            assert!(exists(entry.join("inner/mnt")), "mount point left");
            assert!(!exists(entry.join("inner/file")), "the rest removed");
            assert!(!exists(entry.join("top")));
        }
    }

    // ---- attacker races ---------------------------------------------------

    const RACE_ITERATIONS: usize = 2_000;

    /// Builds a small tree: `entry/a/b/{c/…,…}` and `entry/a/x/…`.
    fn build_victim(entry: &Path) {
        fs::create_dir_all(entry.join("a/b/c")).unwrap();
        fs::create_dir(entry.join("a/x")).unwrap();
        for sub in ["a/b", "a/b/c", "a/x"] {
            for i in 0..2 {
                fs::write(entry.join(sub).join(format!("f{i}")), "v").unwrap();
            }
        }
    }

    /// Removes whatever the races left in the root, checking it works.
    fn clean_root(f: &Fixture) {
        for child in fs::read_dir(&f.root).unwrap() {
            let name = child.unwrap().file_name();
            let removed = f.remove(&name);
            assert!(removed.complete, "{name:?}: {removed:?}");
        }
        assert_eq!(fs::read_dir(&f.root).unwrap().count(), 0);
    }

    /// Spawns an attacker that, until stopped, renames the directory
    /// `target()` away, puts a symlink to `canary` in its place, and back.
    fn spawn_attacker(
        target: Arc<Mutex<Option<PathBuf>>>,
        canary: PathBuf,
        stop: Arc<AtomicBool>,
    ) -> thread::JoinHandle<u64> {
        thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Some(victim) = target.lock().ok().and_then(|t| t.clone()) else {
                    thread::yield_now();
                    continue;
                };
                let mut away = victim.clone().into_os_string();
                away.push(".away");
                if fs::rename(&victim, &away).is_ok() {
                    if symlink(&canary, &victim).is_ok() {
                        swaps += 1;
                    }
                    thread::yield_now();
                    let _ = fs::remove_file(&victim);
                    let _ = fs::rename(&away, &victim);
                } else {
                    // Nothing to swap (already removed): do not starve the
                    // remover of CPU on a busy machine.
                    thread::sleep(std::time::Duration::from_micros(50));
                }
            }
            swaps
        })
    }

    fn race(swap_entry_itself: bool) {
        let f = fixture();
        let canary_dir = f.outside.join("canary");
        let canary = canary(&canary_dir);
        let target = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = spawn_attacker(target.clone(), canary_dir.clone(), stop.clone());
        let incomplete = AtomicU64::new(0);
        let started = std::time::Instant::now();
        for i in 0..RACE_ITERATIONS {
            let name = format!("sess-{i}");
            let entry = f.root.join(&name);
            // Built before the attacker is pointed at it, so that building
            // never writes through the attacker's symlink.
            build_victim(&entry);
            let victim = if swap_entry_itself {
                entry.clone()
            } else {
                entry.join("a/b")
            };
            *target.lock().unwrap() = Some(victim);
            // The caller's discovery: it saw a directory.
            let _ = fstatat(&f.fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
            match remove_entry(f.fd.as_fd(), OsStr::new(&name)) {
                Ok(removed) if removed.complete => {}
                Ok(_) | Err(RemoveError::NotFound { .. }) => {
                    incomplete.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = attacker.join().unwrap();
        eprintln!(
            "{RACE_ITERATIONS} removals in {:?}, {swaps} swaps, {} disturbed",
            started.elapsed(),
            incomplete.load(Ordering::Relaxed)
        );
        assert!(swaps > 0, "the attacker never got to swap");
        canary.assert_intact();
        clean_root(&f);
        canary.assert_intact();
    }

    #[test]
    fn attacker_swapping_a_deep_directory_for_a_symlink_cannot_redirect_removal() {
        race(false);
    }

    #[test]
    fn attacker_swapping_the_entry_for_a_symlink_cannot_redirect_removal() {
        race(true);
    }
}
