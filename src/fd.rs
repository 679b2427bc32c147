//! Directory-descriptor primitives for reading and writing inside
//! directories that someone else controls (entries, admin dirs,
//! repositories): the only way treeward touches a file there.
//!
//! Every call is relative to an open directory, never a path string; nothing
//! is followed through a symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`);
//! nothing that is not a regular file or a directory is ever opened, so a
//! FIFO, a socket or a device node cannot block or trigger anything; and
//! every read is capped, so a huge file cannot exhaust memory. Writes create
//! a new file (`O_CREAT | O_EXCL`, so an existing name, a symlink included,
//! is never written through) and rename it over the old one in the same
//! directory.
//!
//! It is also the one home of the open flags: every directory open uses
//! [`dir_flags`] ([`open_dir_at`], [`open_dir`]), every open of a file by
//! path where someone else may have put something goes through
//! [`open_file`] or [`create_or_open`] (the ledger, its lock and journal,
//! the reaper's pass lock).

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The flags of every directory open: read-only, a directory or nothing,
/// never through a symlink, never blocking.
pub fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK
}

/// Opens the directory `name` of `parent`; a symlink fails (`ELOOP` or
/// `ENOTDIR`), so does anything that is not a directory.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    // SAFETY (of the object opened): O_DIRECTORY|O_NOFOLLOW refuse anything
    // but a directory reached without a symlink; O_NONBLOCK is moot for a
    // directory but keeps the flags one set.
    openat(parent, name, dir_flags(), Mode::empty())
}

/// Opens the directory at `path`, for a directory that is not below one
/// already open (a root, a worktree whose `flock` is probed): its last
/// component is never a symlink, and it must be a directory.
pub fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    // SAFETY (of the object opened): as in open_dir_at, for the last
    // component; the components before it are the caller's to trust.
    nix::fcntl::open(path, dir_flags(), Mode::empty())
}

/// The flags added to every open of a file by path ([`open_file`]): never
/// through a symlink, never blocking. `std` adds `O_CLOEXEC` itself.
const FILE_FLAGS: i32 = OFlag::O_NOFOLLOW.bits() | OFlag::O_NONBLOCK.bits();

/// Opens the file at `path` with `options`, never through a symlink as its
/// last component (`ELOOP`) and never blocking on a FIFO planted there. The
/// caller checks that what it got is a regular file before using it.
pub fn open_file(options: &OpenOptions, path: &Path) -> io::Result<File> {
    // SAFETY (of the object opened): O_NOFOLLOW refuses a symlink at `path`;
    // O_NONBLOCK keeps a FIFO or device from blocking the open; with
    // `create_new`, O_EXCL never reuses a name that exists.
    options.clone().custom_flags(FILE_FLAGS).open(path)
}

/// What [`create_or_open`] opened.
#[derive(Debug)]
pub enum Opened {
    /// Nothing was there: created now, with the caller's mode.
    Created(File),
    /// It was there already.
    Existing(File),
}

/// Which step of [`create_or_open`] failed.
#[derive(Debug)]
pub enum CreateOrOpenError {
    /// Creating the file, when nothing was there.
    Create(io::Error),
    /// Opening the one that was.
    Open(io::Error),
}

/// Opens a file that several processes share (a lock file, a journal): with
/// `create`'s access and permission bits `mode` (less the umask) if nothing
/// is at `path`, else the existing one with `existing`'s access. Both
/// through [`open_file`]: never through a symlink, never blocking.
pub fn create_or_open(
    create: &OpenOptions,
    existing: &OpenOptions,
    mode: u32,
    path: &Path,
) -> Result<Opened, CreateOrOpenError> {
    match open_file(create.clone().create_new(true).mode(mode), path) {
        Ok(file) => Ok(Opened::Created(file)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_file(existing, path)
            .map(Opened::Existing)
            .map_err(CreateOrOpenError::Open),
        Err(e) => Err(CreateOrOpenError::Create(e)),
    }
}

/// Opens the directory `name` of `parent` as a handle for `*at` calls only
/// (`O_PATH`): it needs search permission on `parent`, not read permission
/// on the directory, so a worker can reach its worktree through the
/// root-owned trash (mode 0711). Never through a symlink.
pub fn open_path_at(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    // SAFETY (of the object opened): O_PATH opens nothing for reading or
    // writing (no FIFO is ever opened); O_DIRECTORY|O_NOFOLLOW refuse a
    // symlink or anything but a directory.
    openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `/` as a handle like [`open_path_at`] does.
pub fn open_path_root() -> nix::Result<OwnedFd> {
    // SAFETY (of the object opened): `/` is nobody's to replace; O_PATH.
    nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the absolute directory `path` as a handle like [`open_path_at`]
/// does, one component at a time from `/`: a symlink anywhere on the way
/// fails (`ELOOP` or `ENOTDIR`), so does a `..` (`EINVAL`).
pub fn open_path(path: &Path) -> nix::Result<OwnedFd> {
    use std::path::Component;
    if !path.is_absolute() {
        return Err(Errno::EINVAL);
    }
    let mut fd = open_path_root()?;
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => fd = open_path_at(fd.as_fd(), name)?,
            Component::ParentDir | Component::Prefix(_) => return Err(Errno::EINVAL),
        }
    }
    Ok(fd)
}

/// Opens the directory `path` as a handle like [`open_path_at`] does, but
/// through whatever symlinks its path holds: for a directory the caller
/// already trusts by its path (a repository's common dir), below which
/// everything is then opened relative to it, never following a link.
pub fn open_path_trusted(path: &Path) -> nix::Result<OwnedFd> {
    // SAFETY (of the object opened): follows `path`'s links by design (the
    // caller trusts it); O_PATH|O_DIRECTORY open nothing but a directory
    // handle, for `*at` calls that follow nothing below it.
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `fstatat(parent, name, AT_SYMLINK_NOFOLLOW)`; `None` when nothing is
/// there.
pub fn stat_at(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<FileStat>> {
    // SAFETY (of what is looked at): AT_SYMLINK_NOFOLLOW stats a symlink
    // itself; a stat opens nothing, so a FIFO cannot block it.
    match fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a file type is called in a message.
pub fn kind_name(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "an unknown kind of file",
    }
}

fn is_regular(mode: u32) -> bool {
    mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
}

/// Why a small file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// It is not a regular file (a symlink, a FIFO, a device...).
    NotRegular(&'static str),
    /// It is larger than the cap.
    TooLarge {
        size: u64,
        cap: u64,
    },
    /// It was replaced between the `stat` and the `open`.
    Replaced,
    Io(Errno),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            ReadError::TooLarge { size, cap } => {
                write!(f, "is {size} bytes, more than the {cap} allowed")
            }
            ReadError::Replaced => f.write_str("was replaced while being opened"),
            ReadError::Io(e) => f.write_str(e.desc()),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads the regular file `name` of `dir`, at most `cap` bytes; `Ok(None)`
/// when nothing is there. Anything but a regular file is an error without
/// ever being opened; a file swapped in between the `stat` and the `open`
/// (`st_dev`/`st_ino` differ) is an error too.
pub fn read_at(dir: BorrowedFd<'_>, name: &OsStr, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let Some(seen) = stat_at(dir, name).map_err(ReadError::Io)? else {
        return Ok(None);
    };
    check_regular(&seen, cap)?;
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    // SAFETY (of the object opened): only after the stat saw a regular file;
    // O_NOFOLLOW refuses a symlink swapped in since (ELOOP), O_NONBLOCK a
    // FIFO, O_NOCTTY a terminal; the fstat below compares the inode.
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => return Err(ReadError::Replaced),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let st = fstat(fd.as_fd()).map_err(ReadError::Io)?;
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err(ReadError::Replaced);
    }
    check_regular(&st, cap)?;
    let mut bytes = Vec::new();
    File::from(fd)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(Some(bytes))
}

/// [`read_at`] of `rel` (names joined by `/`, such as
/// `rebase-merge/head-name`) below `dir`, each directory on the way opened
/// with [`open_path_at`]: `Ok(None)` when something on the way is absent; a
/// directory on the way that is a symlink or not a directory is
/// [`ReadError::NotRegular`].
pub fn read_below(dir: BorrowedFd<'_>, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut held: Option<OwnedFd> = None;
    for part in dirs.split('/').filter(|p| !p.is_empty()) {
        let parent = held.as_ref().map_or(dir, |fd| fd.as_fd());
        match open_path_at(parent, OsStr::new(part)) {
            Ok(fd) => held = Some(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let kind = stat_at(parent, OsStr::new(part))
                    .ok()
                    .flatten()
                    .map_or("not a directory", |st| kind_name(st.st_mode));
                return Err(ReadError::NotRegular(kind));
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    read_at(
        held.as_ref().map_or(dir, |fd| fd.as_fd()),
        OsStr::new(name),
        cap,
    )
}

fn check_regular(st: &FileStat, cap: u64) -> Result<(), ReadError> {
    if !is_regular(st.st_mode) {
        return Err(ReadError::NotRegular(kind_name(st.st_mode)));
    }
    if st.st_size as u64 > cap {
        return Err(ReadError::TooLarge {
            size: st.st_size as u64,
            cap,
        });
    }
    Ok(())
}

/// Creates the new regular file `name` in `dir` for writing (`O_CREAT |
/// O_EXCL | O_NOFOLLOW`, mode 0644 less the umask): a name that is taken,
/// a planted symlink included, is never written through (`EEXIST`).
pub fn create_new_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<File> {
    create_new_with_mode_at(dir, name, 0o644)
}

/// [`create_new_at`] with the permission bits `perm` (less the umask).
pub fn create_new_with_mode_at(dir: BorrowedFd<'_>, name: &OsStr, perm: u32) -> nix::Result<File> {
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    // Relative to `dir` only: a symlink at `name` is refused (O_NOFOLLOW), a
    // name that exists is never reused (O_EXCL), a FIFO never blocks.
    openat(dir, name, flags, Mode::from_bits_truncate(perm)).map(File::from)
}

/// Replaces the file `name` of `dir` with `bytes`: written to a new file
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0644 less the umask), synced, then
/// renamed over `name`. A temporary name that is taken (a planted symlink,
/// say) is never written through: the write fails instead.
pub fn replace_at(dir: BorrowedFd<'_>, name: &OsStr, bytes: &[u8]) -> nix::Result<()> {
    let staged = stage_at(dir, name, bytes, Durable::Now)?;
    staged.place(dir, Place::Replace)
}

/// Whether [`stage_at`] syncs the file it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// `fsync` the file before returning.
    Now,
    /// The caller makes a whole batch durable at once ([`sync_files`])
    /// before placing any of it: about one journal commit, not one a file.
    WithTheBatch,
}

/// How [`Staged::place`] puts a staged file at its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Over whatever is there (`rename(2)`: the name itself, never what a
    /// symlink there points to).
    Replace,
    /// Only if the name is free (`RENAME_NOREPLACE`; `EEXIST` otherwise):
    /// create-if-absent with its content already written, so no reader, and
    /// no crash, ever sees the file empty or half written.
    IfAbsent,
}

/// A file written in full under a temporary name beside its final one
/// ([`stage_at`]), not yet in place. Dropped without being placed
/// ([`Staged::place`]) or discarded ([`Staged::discard`]), the temporary
/// name stays behind: an unused file nobody reads, which is what a crash
/// leaves too.
#[derive(Debug)]
pub struct Staged {
    tmp: std::ffi::OsString,
    name: std::ffi::OsString,
    /// The file, open, for [`sync_files`].
    file: File,
}

/// Writes `bytes` to a new temporary file beside `name` in `dir`
/// (`<name>.treeward.<pid>.<n>`, `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0644
/// less the umask); synced when `durable` says so.
pub fn stage_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    durable: Durable,
) -> nix::Result<Staged> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = name.to_os_string();
    tmp.push(format!(".treeward.{}.{n}", std::process::id()));
    let mut file = create_new_at(dir, &tmp)?;
    let written = file.write_all(bytes).and_then(|()| match durable {
        Durable::Now => file.sync_all(),
        Durable::WithTheBatch => Ok(()),
    });
    let staged = Staged {
        tmp,
        name: name.to_os_string(),
        file,
    };
    match written {
        Ok(()) => Ok(staged),
        Err(e) => {
            staged.discard(dir);
            Err(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        }
    }
}

impl Staged {
    /// Renames the staged file to its name in `dir` (the directory it was
    /// staged in); on failure the temporary file is removed.
    pub fn place(&self, dir: BorrowedFd<'_>, how: Place) -> nix::Result<()> {
        // SAFETY (of the names): both relative to `dir`; neither rename
        // follows a symlink at either name, and the unlink removes only our
        // own temporary name.
        let placed = match how {
            Place::Replace => renameat(dir, self.tmp.as_os_str(), dir, self.name.as_os_str()),
            Place::IfAbsent => nix::fcntl::renameat2(
                dir,
                self.tmp.as_os_str(),
                dir,
                self.name.as_os_str(),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ),
        };
        if placed.is_err() {
            self.discard(dir);
        }
        placed
    }

    /// The staged file, open (also once placed).
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Removes the staged file, unplaced.
    pub fn discard(&self, dir: BorrowedFd<'_>) {
        let _ = unlinkat(dir, self.tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// Makes the files `files` durable, with their names: the barrier of a
/// batch of [`Durable::WithTheBatch`] writes, before anything that depends
/// on them and again after they are placed. Writeback of every file is
/// started first (`sync_file_range(2)`), then each is synced (`fsync(2)`):
/// the first sync commits the journal transaction that by then holds the
/// whole batch, and the others find little left to do, so a batch costs
/// about one commit, not one a file. Unlike `syncfs(2)`, nobody else's
/// dirty data on the filesystem is waited for. On failure, the position in
/// `files` of the one that failed, and why.
pub fn sync_files<'a>(
    files: impl IntoIterator<Item = BorrowedFd<'a>> + Clone,
) -> Result<(), (usize, Errno)> {
    for (i, fd) in files.clone().into_iter().enumerate() {
        // SAFETY: sync_file_range(2) only starts writeback of `fd`'s dirty
        // pages (offset 0, length 0: all of it); `fd` is not changed.
        let started = unsafe {
            nix::libc::sync_file_range(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
                0,
                nix::libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        Errno::result(started).map_err(|e| (i, e))?;
    }
    for (i, fd) in files.into_iter().enumerate() {
        nix::unistd::fsync(fd).map_err(|e| (i, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir(path: &std::path::Path) -> OwnedFd {
        crate::remove::open_dir_nofollow(path).unwrap()
    }

    #[test]
    fn reads_regular_files_only_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("small"), b"hello\n").unwrap();
        std::fs::write(tmp.path().join("big"), vec![b'x'; 100]).unwrap();
        symlink(tmp.path().join("small"), tmp.path().join("link")).unwrap();
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::S_IRWXU).unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let fd = dir(tmp.path());
        let read = |name: &str| read_at(fd.as_fd(), OsStr::new(name), 64);
        assert_eq!(read("small"), Ok(Some(b"hello\n".to_vec())));
        assert_eq!(read("absent"), Ok(None));
        assert_eq!(read("big"), Err(ReadError::TooLarge { size: 100, cap: 64 }));
        assert_eq!(read("link"), Err(ReadError::NotRegular("a symlink")));
        assert_eq!(read("fifo"), Err(ReadError::NotRegular("a FIFO")));
        assert_eq!(read("sub"), Err(ReadError::NotRegular("a directory")));
    }

    #[test]
    fn open_path_never_follows_a_link_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        symlink(tmp.path().join("a"), tmp.path().join("link")).unwrap();
        assert!(open_path(&tmp.path().join("a/b")).is_ok());
        for through in ["link/b", "link"] {
            let err = open_path(&tmp.path().join(through)).unwrap_err();
            assert!(
                matches!(err, Errno::ELOOP | Errno::ENOTDIR),
                "{through}: {err}"
            );
        }
        assert_eq!(
            open_path(&tmp.path().join("a/../a/b")).unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(
            open_path(std::path::Path::new("relative")).unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(
            open_path(&tmp.path().join("absent")).unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn reads_below_without_following_or_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::write(tmp.path().join("a/b/name"), b"refs/heads/x\n").unwrap();
        nix::unistd::mkfifo(&tmp.path().join("a/fifo"), Mode::S_IRWXU).unwrap();
        symlink(tmp.path().join("a"), tmp.path().join("link")).unwrap();
        let fd = open_path_trusted(tmp.path()).unwrap();
        let read = |rel: &str| read_below(fd.as_fd(), rel, 64);
        assert_eq!(read("a/b/name"), Ok(Some(b"refs/heads/x\n".to_vec())));
        assert_eq!(read("a/missing/name"), Ok(None));
        assert_eq!(read("a/fifo"), Err(ReadError::NotRegular("a FIFO")));
        assert_eq!(read("link/b/name"), Err(ReadError::NotRegular("a symlink")));
    }

    #[test]
    fn replace_never_writes_through_a_planted_name() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let fd = dir(tmp.path());
        replace_at(fd.as_fd(), OsStr::new("gitdir"), b"/x/.git\n").unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("gitdir")).unwrap(),
            b"/x/.git\n"
        );
        // Every temporary name this process could use next.
        for n in 0..10_000 {
            let planted = tmp
                .path()
                .join(format!("gitdir.treeward.{}.{n}", std::process::id()));
            let _ = symlink(&victim, &planted);
        }
        assert_eq!(
            replace_at(fd.as_fd(), OsStr::new("gitdir"), b"evil\n"),
            Err(Errno::EEXIST)
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_staged_file_appears_whole_and_only_where_the_name_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        // As an admin dir is reached: by O_PATH.
        let fd = nix::fcntl::open(
            tmp.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let names = || {
            let mut n: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            n.sort();
            n
        };
        let staged = stage_at(
            fd.as_fd(),
            OsStr::new("locked"),
            b"ours",
            Durable::WithTheBatch,
        )
        .unwrap();
        assert!(!tmp.path().join("locked").exists(), "not in place yet");
        sync_files([staged.file(), staged.file()]).unwrap();
        staged.place(fd.as_fd(), Place::IfAbsent).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("locked")).unwrap(), b"ours");
        assert_eq!(names(), ["locked"]);
        // Taken meanwhile: refused, theirs untouched, nothing left behind.
        let second = stage_at(fd.as_fd(), OsStr::new("locked"), b"mine", Durable::Now).unwrap();
        assert_eq!(
            second.place(fd.as_fd(), Place::IfAbsent),
            Err(Errno::EEXIST)
        );
        assert_eq!(std::fs::read(tmp.path().join("locked")).unwrap(), b"ours");
        assert_eq!(names(), ["locked"]);
    }
}
