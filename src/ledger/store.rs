//! The ledger's store: how the [`Document`] is kept on disk, read, written,
//! locked and journaled, so that every treeward binary shares one state file
//! (SPEC invariant 5) without losing a record.
//!
//! On disk it is two files, both the library's private format (readers
//! use `treeward list --json` or this module, never the files):
//! - `<ledger>`: one pretty-printed JSON object, `{"schema": 1, "records":
//!   [...], "journal_folded": "<line id>"}`, ending with a newline, so an
//!   admin can read and diff it;
//! - `<ledger>.journal`: changes appended since the last compaction, one JSON
//!   object per line (the `journal` submodule documents it; [`Change`] is
//!   what a line says). This is how
//!   `treeward-hook` records a worktree in a fraction of a millisecond with
//!   10,000 records in the ledger: it never reads or rewrites the document.
//!
//! Every reader sees the one [`Document`]: the file with the journal folded
//! in.
//!
//! Contract:
//! - [`Ledger::read`] changes nothing on disk: no lock file, no directory, no
//!   move-aside, not even an mtime. It takes a *shared* flock on
//!   `<ledger>.lock` when that file exists, so that it never sees a document
//!   and a journal from either side of a compaction. A missing file is an
//!   empty document; a corrupt one, or one with a newer schema, is an error.
//! - [`Ledger::append`] adds one change to the journal under a shared flock:
//!   appenders run side by side and wait only for an update.
//! - [`Ledger::update`] is a read-modify-write under an exclusive `flock` on
//!   the sidecar `<ledger>.lock` (not on the ledger, which is replaced by
//!   rename, so a lock on it would be on the old inode). It folds the
//!   journal in, the new document goes to `.<name>.tmp.<pid>` in the same
//!   directory, gets the old ledger's owner and mode (a new ledger: the
//!   caller's uid, mode 0644), is fsynced, renamed over the ledger, and the
//!   directory is fsynced; then the journal is truncated (compaction). Flock
//!   locks belong to the open file description and every update opens the
//!   lock file anew, so updates exclude each other across processes and
//!   threads alike.
//! - A corrupt or truncated ledger met by `update` is moved aside to
//!   `<name>.corrupt-<UTC timestamp>` (never over an existing file), logged at
//!   error level with both paths, and replaced by an empty document (plus
//!   the journal's records) whose [`Document::recovered_from`] names the
//!   aside file, so the caller can rebuild from what is on disk. A newer
//!   schema is refused and left untouched. Temp files left by a crash are
//!   removed by the next update (holding the lock proves nobody is writing
//!   them).
//! - The ledger, its journal and its lock are opened with `O_NOFOLLOW` and
//!   must be regular files: a symlink planted at their paths is refused,
//!   never followed.

use super::journal::{self, Change};
use super::record::{now, Document, Record, SCHEMA_VERSION};
use crate::fd::{self, CreateOrOpenError, Opened};

use nix::errno::Errno;
use nix::fcntl::{renameat2, Flock, FlockArg, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a ledger (and lock file) that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;
/// Mode of a ledger directory that did not exist before.
const NEW_DIR_MODE: u32 = 0o755;

/// Why the ledger could not be read or written. Every variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum LedgerError {
    /// A system call failed; `action` says what treeward was doing.
    Io {
        /// The file.
        path: PathBuf,
        /// What treeward was doing.
        action: &'static str,
        /// The system call's error.
        source: std::io::Error,
    },
    /// The file is not valid ledger JSON (from reading it; an update moves
    /// such a file aside instead).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The file was written by a newer treeward; it was left untouched.
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The schema version it has.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The path is a symlink, directory or device, not a regular file.
    NotARegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The journal has a change this build does not know (written by a
    /// newer treeward); the ledger and journal were left untouched.
    UnknownJournalEntry {
        /// The journal.
        path: PathBuf,
        /// Its line (1-based).
        line: usize,
        /// The change's unknown operation.
        op: String,
    },
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Io {
                path,
                action,
                source,
            } => write!(f, "ledger {}: cannot {action}: {source}", path.display()),
            LedgerError::Corrupt { path, detail } => {
                write!(f, "ledger {} is corrupt: {detail}", path.display())
            }
            LedgerError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "ledger {} has schema {found}, newer than schema {supported} that this \
                 treeward understands; upgrade treeward (the file was left untouched)",
                path.display()
            ),
            LedgerError::NotARegularFile { path } => write!(
                f,
                "ledger {} is not a regular file (a symlink, directory or device); \
                 refusing to use it",
                path.display()
            ),
            LedgerError::UnknownJournalEntry { path, line, op } => write!(
                f,
                "ledger journal {}:{line}: change \"{op}\" is not one this treeward \
                 understands (written by a newer treeward); upgrade treeward (the files \
                 were left untouched)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LedgerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// What the bytes of a ledger file turned out to be.
#[derive(Debug)]
enum Decoded {
    /// The document and its `journal_folded` stamp.
    Valid(Document, Option<String>),
    Corrupt(String),
    NewerSchema(u32),
}

/// Only the schema, so that a newer document whose records this build cannot
/// parse is recognised as newer rather than as corrupt.
/// The stamp comes along: it is not part of [`Document`].
#[derive(Deserialize)]
struct SchemaProbe {
    schema: u32,
    #[serde(default)]
    journal_folded: Option<String>,
}

/// Pure: classifies a ledger's bytes.
fn decode(bytes: &[u8]) -> Decoded {
    let probe: SchemaProbe = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) => return Decoded::Corrupt(e.to_string()),
    };
    if probe.schema > SCHEMA_VERSION {
        return Decoded::NewerSchema(probe.schema);
    }
    if probe.schema < 1 {
        return Decoded::Corrupt(format!(
            "schema {} is not a version treeward ever wrote",
            probe.schema
        ));
    }
    match serde_json::from_slice::<Document>(bytes) {
        Ok(doc) => Decoded::Valid(doc, probe.journal_folded),
        Err(e) => Decoded::Corrupt(e.to_string()),
    }
}

/// The on-disk form of a document: its fields and the id of the last
/// journal line folded into it.
#[derive(Serialize)]
struct Stored<'a> {
    schema: u32,
    records: &'a [Record],
    #[serde(skip_serializing_if = "Option::is_none")]
    journal_folded: Option<&'a str>,
}

/// Pure: the bytes written for `doc`, stamped with the last journal line
/// folded into it (pretty JSON and a final newline).
fn encode(doc: &Document, journal_folded: Option<&str>) -> Result<Vec<u8>, serde_json::Error> {
    let stored = Stored {
        schema: doc.schema,
        records: &doc.records,
        journal_folded,
    };
    let mut bytes = serde_json::to_vec_pretty(&stored)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The ledger file as found: its bytes and metadata, or `None` if missing.
struct OnDisk {
    bytes: Vec<u8>,
    meta: Metadata,
}

/// Reads the ledger without following a symlink and without blocking on a
/// FIFO; changes nothing on disk.
fn read_on_disk(path: &Path) -> Result<Option<OnDisk>, LedgerError> {
    let opened = fd::open_file(OpenOptions::new().read(true), path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, "open it for reading", e)),
    };
    let (mut file, meta) = regular(file, path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "read it", e))?;
    Ok(Some(OnDisk { bytes, meta }))
}

/// The error for a path that is not a regular file.
fn not_regular(path: &Path) -> LedgerError {
    LedgerError::NotARegularFile {
        path: path.to_path_buf(),
    }
}

/// An open's failure: `O_NOFOLLOW` meeting a symlink (`ELOOP`) is
/// [`LedgerError::NotARegularFile`]; anything else fails `action`.
fn open_error(path: &Path, action: &'static str, e: std::io::Error) -> LedgerError {
    if e.raw_os_error() == Some(Errno::ELOOP as i32) {
        not_regular(path)
    } else {
        io_error(path, action, e)
    }
}

/// `file` and its metadata, if it is a regular file (not a directory,
/// FIFO or device).
fn regular(file: File, path: &Path) -> Result<(File, Metadata), LedgerError> {
    let meta = file.metadata().map_err(|e| io_error(path, "stat it", e))?;
    if meta.is_file() {
        Ok((file, meta))
    } else {
        Err(not_regular(path))
    }
}

/// Owner and permission bits a ledger file should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ownership {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Ownership {
    fn of(meta: &Metadata) -> Ownership {
        Ownership {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o777,
        }
    }

    /// A file that did not exist before: the caller's, mode 0644.
    fn new_file() -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: NEW_FILE_MODE,
        }
    }
}

/// Gives `file` (new, owned by us) the owner and mode of `want`. Root must
/// succeed; an unprivileged writer that may not give the file away keeps the
/// group and mode, and the change of owner is logged.
fn apply_ownership(file: &File, path: &Path, want: Ownership) -> Result<(), LedgerError> {
    let meta = file.metadata().map_err(|e| io_error(path, "stat it", e))?;
    if meta.uid() != want.uid || meta.gid() != want.gid {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(want.uid), Some(want.gid)) {
            if nix::unistd::geteuid().is_root() || e.kind() != ErrorKind::PermissionDenied {
                return Err(io_error(path, "give it the ledger's owner", e));
            }
            // Best effort on the group; the owner becomes us.
            let _ = std::os::unix::fs::fchown(file, None, Some(want.gid));
            log::warn!(
                "ledger {}: not allowed to keep owner uid {} gid {}; it is now owned by uid {}",
                path.display(),
                want.uid,
                want.gid,
                meta.uid()
            );
        }
    }
    file.set_permissions(Permissions::from_mode(want.mode))
        .map_err(|e| io_error(path, "give it the ledger's mode", e))
}

/// The sidecar lock file's path: `<ledger>.lock`.
fn lock_path(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Opens (creating if needed) the lock file and takes a flock of `kind` on
/// it (exclusive for updaters, shared for appenders), waiting as long as a
/// conflicting holder holds it. A lock file this call creates next to an
/// existing ledger gets that ledger's owner.
fn lock(ledger: &Path, kind: FlockArg) -> Result<Flock<File>, LedgerError> {
    let path = lock_path(ledger);
    let file = open_lock_file(ledger, &path)?;
    flock_waiting(file, kind, &path)
}

fn flock_waiting(mut file: File, kind: FlockArg, path: &Path) -> Result<Flock<File>, LedgerError> {
    loop {
        match Flock::lock(file, kind) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(io_error(path, "lock it", std::io::Error::from(errno))),
        }
    }
}

/// For readers: a shared flock on the lock file when it exists, so that a
/// read never sees a document and journal from either side of a
/// compaction. Creates nothing: with no lock file (nothing was ever written
/// through it) or none this user may open, the read goes unlocked.
fn lock_shared_if_present(ledger: &Path) -> Result<Option<Flock<File>>, LedgerError> {
    let path = lock_path(ledger);
    let opened = fd::open_file(OpenOptions::new().read(true), &path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            log::debug!("reading {} without its lock: {e}", ledger.display());
            return Ok(None);
        }
        Err(e) => return Err(open_error(&path, "open the lock file", e)),
    };
    let (file, _) = regular(file, &path)?;
    flock_waiting(file, FlockArg::LockShared, &path).map(Some)
}

thread_local! {
    /// The ledgers whose exclusive lock this thread holds (inside
    /// [`Ledger::update`]): a `read` there must not wait for itself.
    static HELD: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Registers `ledger` as locked by this thread until dropped.
struct Held(PathBuf);

impl Held {
    fn register(ledger: &Path) -> Held {
        HELD.with(|h| h.borrow_mut().push(ledger.to_path_buf()));
        Held(ledger.to_path_buf())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut held = h.borrow_mut();
            if let Some(i) = held.iter().rposition(|p| *p == self.0) {
                held.remove(i);
            }
        });
    }
}

fn held_by_this_thread(ledger: &Path) -> bool {
    HELD.with(|h| h.borrow().iter().any(|p| p == ledger))
}

/// The journal's path: `<ledger>.journal`.
fn journal_path(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// The journal's lines (empty when there is none), refusing one with a
/// change this build does not know.
fn read_journal(path: &Path) -> Result<journal::Decoded, LedgerError> {
    let Some(on_disk) = read_on_disk(path)? else {
        return Ok(journal::Decoded::default());
    };
    let decoded = journal::decode(&on_disk.bytes);
    if let Some((line, op)) = decoded.unknown_op.clone() {
        return Err(LedgerError::UnknownJournalEntry {
            path: path.to_path_buf(),
            line,
            op,
        });
    }
    Ok(decoded)
}

/// Logs the journal lines a fold leaves out. `compacting`: they are about
/// to be dropped, and a torn last line is certainly torn (no appender runs
/// under the exclusive lock); a reader says nothing of a last line, which
/// may be an append in progress.
fn report_dropped(path: &Path, decoded: &journal::Decoded, compacting: bool) {
    let verb = if compacting { "dropped" } else { "ignored" };
    for (line, error, text) in &decoded.garbage {
        log::error!(
            "ledger journal {}:{line} is not a ledger change ({error}); {verb}: {}",
            path.display(),
            text.chars().take(2000).collect::<String>()
        );
    }
    if let (true, Some(text)) = (compacting, &decoded.unterminated) {
        log::warn!(
            "ledger journal {} ends with an incomplete line (a writer crashed or the disk \
             filled mid-append); dropped: {}",
            path.display(),
            text.chars().take(2000).collect::<String>()
        );
    }
}

/// Empties the journal in place, keeping its inode, owner and mode.
fn truncate_journal(path: &Path) -> Result<(), LedgerError> {
    let file = fd::open_file(OpenOptions::new().write(true), path)
        .map_err(|e| open_error(path, "open the journal to compact it", e))?;
    let (file, _) = regular(file, path)?;
    file.set_len(0)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, "truncate the folded journal", e))
}

/// Opens the journal for appending (and reading its last byte), creating
/// it if needed. A journal this call creates gets the ledger's mode, and
/// its owner too when the caller is root (anyone else keeps it: only root
/// can give a file away); with no ledger yet, the caller's, mode 0644.
fn open_journal_for_append(ledger: &Path, path: &Path) -> Result<File, LedgerError> {
    let mut append = OpenOptions::new();
    append.read(true).append(true);
    open_sidecar(
        path,
        &append,
        &append,
        |ledger_meta| match ledger_meta {
            Some(meta) if nix::unistd::geteuid().is_root() => Ownership::of(meta),
            Some(meta) => Ownership {
                mode: meta.mode() & 0o777,
                ..Ownership::new_file()
            },
            None => Ownership::new_file(),
        },
        ledger,
        ["create the journal", "open the journal"],
    )
}

/// Whether `file` (of `len` bytes) ends in the middle of a line.
fn ends_mid_line(file: &File, len: u64, path: &Path) -> Result<bool, LedgerError> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut last, len - 1)
        .map_err(|e| io_error(path, "read its last byte", e))?;
    Ok(last[0] != b'\n')
}

fn open_lock_file(ledger: &Path, path: &Path) -> Result<File, LedgerError> {
    let mut create = OpenOptions::new();
    create.read(true).write(true);
    // Read-only is enough for flock, and lets any user who can write the
    // ledger lock a lock file another user created.
    let mut existing = OpenOptions::new();
    existing.read(true);
    open_sidecar(
        path,
        &create,
        &existing,
        // Only root can give the lock file away; anyone else keeps it.
        |ledger_meta| match ledger_meta {
            Some(meta) if nix::unistd::geteuid().is_root() => Ownership {
                mode: NEW_FILE_MODE,
                ..Ownership::of(meta)
            },
            _ => Ownership::new_file(),
        },
        ledger,
        ["create the lock file", "open the lock file"],
    )
}

/// Opens `path`, a file beside `ledger` (its lock or journal), never
/// through a symlink and only if it is a regular file: with `existing`'s
/// access if it is there, else created with `create`'s and given
/// `ownership(the ledger's metadata, if the ledger is a regular file)`.
/// `actions`: what creating and opening are called in errors.
fn open_sidecar(
    path: &Path,
    create: &OpenOptions,
    existing: &OpenOptions,
    ownership: impl FnOnce(Option<&Metadata>) -> Ownership,
    ledger: &Path,
    actions: [&'static str; 2],
) -> Result<File, LedgerError> {
    let file = match fd::create_or_open(create, existing, NEW_FILE_MODE, path) {
        Ok(Opened::Created(f)) => {
            let ledger_meta = std::fs::symlink_metadata(ledger)
                .ok()
                .filter(Metadata::is_file);
            apply_ownership(&f, path, ownership(ledger_meta.as_ref()))?;
            f
        }
        Ok(Opened::Existing(f)) => f,
        Err(CreateOrOpenError::Create(e)) => return Err(open_error(path, actions[0], e)),
        Err(CreateOrOpenError::Open(e)) => return Err(open_error(path, actions[1], e)),
    };
    regular(file, path).map(|(file, _)| file)
}

/// The directory holding the ledger (`.` for a bare file name).
fn parent_dir(ledger: &Path) -> &Path {
    match ledger.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The ledger's file name, or an error for a path like `/` or `..`.
fn file_name(ledger: &Path) -> Result<&std::ffi::OsStr, LedgerError> {
    ledger
        .file_name()
        .ok_or_else(|| LedgerError::NotARegularFile {
            path: ledger.to_path_buf(),
        })
}

/// Creates `dir` and its missing ancestors with mode 0755 (not subject to
/// the umask). A `dir` this call creates goes to `owner` (uid, gid) when
/// given; its ancestors stay the caller's, so that no one else can swap a
/// component of the path above the ledger's own directory.
fn ensure_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), LedgerError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| std::fs::symlink_metadata(a).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {
                std::fs::set_permissions(d, Permissions::from_mode(NEW_DIR_MODE))
                    .map_err(|e| io_error(d, "set the mode of the new directory", e))?;
                if let Some((uid, gid)) = owner.filter(|_| d == dir) {
                    // lchown: the name is the directory just made, in a
                    // parent only the caller can write.
                    std::os::unix::fs::lchown(d, Some(uid), Some(gid)).map_err(|e| {
                        io_error(d, "give the new directory to the roots' owner", e)
                    })?;
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(d, "create the ledger's directory", e)),
        }
    }
    Ok(())
}

/// The temp file prefix `.<name>.tmp.`; a temp file is the prefix and a pid.
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    format!(".{}.tmp.", name.to_string_lossy())
}

/// Pure: whether `entry` is a temp file of the ledger called `name`.
fn is_temp_of(entry: &str, prefix: &str) -> bool {
    entry
        .strip_prefix(prefix)
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes temp files a crashed writer left. Called with the lock held, so
/// no live writer owns any of them. Failures are logged, not fatal.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            log::warn!(
                "cannot list {} for stale ledger temp files: {e}",
                dir.display()
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_of(&name.to_string_lossy(), prefix) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => log::warn!(
                "removed a ledger temp file left by a crash: {}",
                path.display()
            ),
            Err(e) => log::warn!(
                "cannot remove stale ledger temp file {}: {e}",
                path.display()
            ),
        }
    }
}

/// Pure: the aside name for a corrupt ledger; `attempt` > 0 disambiguates
/// two recoveries within the same second.
fn corrupt_name(name: &std::ffi::OsStr, stamp: &str, attempt: u32) -> String {
    let base = format!("{}.corrupt-{stamp}", name.to_string_lossy());
    if attempt == 0 {
        base
    } else {
        format!("{base}.{attempt}")
    }
}

/// Renames the corrupt ledger to `<name>.corrupt-<UTC timestamp>`, never
/// over an existing file. Returns the new path.
fn move_aside(ledger: &Path) -> Result<PathBuf, LedgerError> {
    let dir = parent_dir(ledger);
    let name = file_name(ledger)?;
    let stamp = now();
    for attempt in 0..1000 {
        let aside = dir.join(corrupt_name(name, &stamp, attempt));
        match renameat2(
            AT_FDCWD,
            ledger,
            AT_FDCWD,
            &aside,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(aside),
            Err(Errno::EEXIST) => continue,
            Err(errno) => {
                return Err(io_error(
                    ledger,
                    "move the corrupt ledger aside",
                    std::io::Error::from(errno),
                ))
            }
        }
    }
    Err(io_error(
        ledger,
        "move the corrupt ledger aside",
        std::io::Error::new(ErrorKind::AlreadyExists, "every aside name is taken"),
    ))
}

/// Writes `bytes` to the ledger atomically: temp file, owner and mode,
/// fsync, rename, fsync of the directory. The temp file is removed on error.
fn replace_atomically(ledger: &Path, bytes: &[u8], want: Ownership) -> Result<(), LedgerError> {
    let dir = parent_dir(ledger);
    let name = file_name(ledger)?;
    let temp = dir.join(format!("{}{}", temp_prefix(name), std::process::id()));
    crate::fault::point("ledger: before the temp file");
    let result = write_temp(&temp, bytes, want).and_then(|()| {
        crate::fault::point("ledger: before the rename");
        std::fs::rename(&temp, ledger)
            .map_err(|e| io_error(ledger, "rename the new ledger into place", e))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    crate::fault::point("ledger: after the rename");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync the ledger's directory", e))
}

fn write_temp(temp: &Path, bytes: &[u8], want: Ownership) -> Result<(), LedgerError> {
    let mut file = fd::open_file(
        OpenOptions::new().write(true).create_new(true).mode(0o600),
        temp,
    )
    .map_err(|e| io_error(temp, "create the temp file", e))?;
    file.write_all(bytes)
        .map_err(|e| io_error(temp, "write the temp file", e))?;
    apply_ownership(&file, temp, want)?;
    file.sync_all()
        .map_err(|e| io_error(temp, "fsync the temp file", e))
}

/// A ledger file.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
    /// Who a ledger (and its directories) created by root belongs to.
    created_for: Option<(u32, u32)>,
}

impl Ledger {
    pub fn new(path: &Path) -> Ledger {
        Ledger {
            path: path.to_path_buf(),
            created_for: None,
        }
    }

    /// A ledger that root creates, and the directories it creates for it,
    /// go to this uid and gid (the roots' configured owner, so that the
    /// unprivileged reaper and hook can write what the sweep started);
    /// `None`, or a caller that is not root: the caller's.
    pub fn created_for(mut self, owner: Option<(u32, u32)>) -> Ledger {
        self.created_for = owner.filter(|_| nix::unistd::geteuid().is_root());
        self
    }

    /// The ownership of a ledger file this call creates.
    fn new_ledger_ownership(&self) -> Ownership {
        match self.created_for {
            Some((uid, gid)) => Ownership {
                uid,
                gid,
                mode: NEW_FILE_MODE,
            },
            None => Ownership::new_file(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal next to this ledger (`<ledger>.journal`).
    pub fn journal_path(&self) -> PathBuf {
        journal_path(&self.path)
    }

    /// Reads the document with the journal folded in, without changing
    /// anything on disk (no lock file created, no move-aside, no
    /// compaction): a missing file is an empty document; a corrupt one is an
    /// error. Waits while an update is writing.
    pub fn read(&self) -> Result<Document, LedgerError> {
        let _lock = if held_by_this_thread(&self.path) {
            None
        } else {
            lock_shared_if_present(&self.path)?
        };
        let (mut doc, folded) = match read_on_disk(&self.path)? {
            None => (Document::empty(), None),
            Some(on_disk) => match decode(&on_disk.bytes) {
                Decoded::Valid(doc, folded) => (doc, folded),
                Decoded::Corrupt(detail) => {
                    return Err(LedgerError::Corrupt {
                        path: self.path.clone(),
                        detail,
                    })
                }
                Decoded::NewerSchema(found) => return Err(self.newer_schema(found)),
            },
        };
        let journal_path = journal_path(&self.path);
        let journal = read_journal(&journal_path)?;
        report_dropped(&journal_path, &journal, false);
        journal::fold(
            &mut doc,
            journal::unfolded(&journal.lines, folded.as_deref()),
        );
        Ok(doc)
    }

    /// Records `change` in the journal: one line, one `write(2)` on an
    /// `O_APPEND` descriptor under the exclusive lock, held only for the
    /// write, so concurrent appenders never lose or interleave a line (and a
    /// line torn by a crash, fenced off with a newline, is told apart from
    /// another append still being written: a reader can see a write that
    /// spans a page boundary half done). It costs the same however long the
    /// ledger is; the next
    /// [`update`](Ledger::update) folds it into the document.
    ///
    /// It does not fsync: a line survives any crash of the process (it is in
    /// the page cache once `write` returns) but not a power cut within the
    /// next few seconds. What it records is a convenience, not a safety
    /// net: the sweep and the reaper find unrecorded worktrees under the
    /// roots on disk anyway, and an fsync would cost a spinning disk its
    /// 3 ms budget on its own.
    ///
    /// Called inside an `update` closure on the same ledger, it fails (the
    /// update would truncate the line away): change the document there.
    pub fn append(&self, change: &Change) -> Result<(), LedgerError> {
        let path = journal_path(&self.path);
        if held_by_this_thread(&self.path) {
            return Err(io_error(
                &path,
                "append to it inside Ledger::update (change the document there instead)",
                std::io::Error::from(Errno::EDEADLK),
            ));
        }
        ensure_dir(parent_dir(&self.path), self.created_for)?;
        let _lock = lock(&self.path, FlockArg::LockExclusive)?;
        let mut file = open_journal_for_append(&self.path, &path)?;
        let len = file
            .metadata()
            .map_err(|e| io_error(&path, "stat it", e))?
            .len();
        let torn = ends_mid_line(&file, len, &path)?;
        let bytes = journal::encode_line(&Record::new_id(), change, torn)
            .map_err(|e| io_error(&path, "serialize the change", std::io::Error::other(e)))?;
        crate::fault::point("journal: before the append");
        let written = file
            .write(&bytes)
            .map_err(|e| io_error(&path, "append to it", e))?;
        crate::fault::point("journal: after the append");
        if written != bytes.len() {
            return Err(io_error(
                &path,
                "append to it",
                std::io::Error::new(ErrorKind::WriteZero, "short write (is the disk full?)"),
            ));
        }
        Ok(())
    }

    /// Read-modify-write under an exclusive lock, replaced atomically; the
    /// journal is folded in and then emptied (compaction).
    ///
    /// `f` sees the current document, journal included; if the ledger was
    /// corrupt it sees the journal's records alone with
    /// [`Document::recovered_from`] set. An update that changes nothing in a
    /// valid ledger (journal included) does not rewrite it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Document) -> R) -> Result<R, LedgerError> {
        let dir = parent_dir(&self.path);
        let name = file_name(&self.path)?;
        ensure_dir(dir, self.created_for)?;
        let _lock = lock(&self.path, FlockArg::LockExclusive)?;
        let _held = Held::register(&self.path);
        remove_stale_temps(dir, &temp_prefix(name));
        let journal_path = journal_path(&self.path);
        let journal = read_journal(&journal_path)?;

        let on_disk = read_on_disk(&self.path)?;
        let (mut doc, before, want, folded) = match on_disk {
            None => (Document::empty(), None, self.new_ledger_ownership(), None),
            Some(found) => {
                let want = Ownership::of(&found.meta);
                match decode(&found.bytes) {
                    Decoded::Valid(doc, folded) => (doc.clone(), Some(doc), want, folded),
                    Decoded::NewerSchema(v) => return Err(self.newer_schema(v)),
                    Decoded::Corrupt(detail) => {
                        let aside = move_aside(&self.path)?;
                        log::error!(
                            "ledger {} is corrupt ({detail}); moved it aside to {} and \
                             starting from an empty ledger to rebuild from disk",
                            self.path.display(),
                            aside.display()
                        );
                        let mut doc = Document::empty();
                        doc.recovered_from = Some(aside);
                        (doc, None, want, None)
                    }
                }
            }
        };
        report_dropped(&journal_path, &journal, true);
        journal::fold(
            &mut doc,
            journal::unfolded(&journal.lines, folded.as_deref()),
        );

        let result = f(&mut doc);
        doc.schema = SCHEMA_VERSION;
        if before.as_ref() != Some(&doc) {
            let stamp = journal.lines.last().map(|l| l.id.as_str());
            let bytes = encode(&doc, stamp).map_err(|e| LedgerError::Io {
                path: self.path.clone(),
                action: "serialize it",
                source: std::io::Error::other(e),
            })?;
            replace_atomically(&self.path, &bytes, want)?;
        }
        // Only now: a crash before this point leaves lines the stamp says
        // are folded, and the next fold skips them.
        if !journal.is_empty() {
            truncate_journal(&journal_path)?;
        }
        Ok(result)
    }

    fn newer_schema(&self, found: u32) -> LedgerError {
        LedgerError::NewerSchema {
            path: self.path.clone(),
            found,
            supported: SCHEMA_VERSION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{format_timestamp, parse_timestamp, Holder, State};
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;
    use std::time::SystemTime;

    fn ledger_in(dir: &tempfile::TempDir) -> Ledger {
        Ledger::new(&dir.path().join("ledger.json"))
    }

    fn sample(path: &str) -> Record {
        let mut r = Record::new(Path::new(path), Path::new("/srv/repo.git"), 1000);
        r.branch = Some("review-1".into());
        r.preserved_refs = vec!["refs/treeward/preserved/x".into()];
        r
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Backdates a file's mtime so that any rewrite is visible.
    fn backdate(path: &Path) -> SystemTime {
        let old = SystemTime::now() - Duration::from_secs(3600);
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let mut rec = sample("/tmp/adf-worktrees/review-1");
        rec.worktree_name = Some("review-1".into());
        rec.base_commit = Some("0123abcd".into());
        rec.state = State::RetryRemove;
        rec.attempts = 3;
        rec.last_error = Some("EBUSY".into());
        rec.owner_pid = Some(42);
        rec.lease = Some(Holder {
            pid: 43,
            start_time: 123_456,
        });
        let stored = rec.clone();
        ledger.update(|doc| doc.records.push(rec)).unwrap();

        let doc = ledger.read().unwrap();
        assert_eq!(doc.schema, SCHEMA_VERSION);
        assert_eq!(doc.records, vec![stored.clone()]);
        assert_eq!(doc.recovered_from, None);
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        assert!(text.contains("\"schema\": 1"), "{text}");
        assert!(text.contains("\"state\": \"retry_remove\""), "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(names(dir.path()), ["ledger.json", "ledger.json.lock"]);
    }

    #[test]
    fn read_of_missing_ledger_is_empty_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(&dir.path().join("state/ledger.json"));
        assert_eq!(ledger.read().unwrap(), Document::empty());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn read_changes_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let text = r#"{"schema": 1, "records": []}"#;
        std::fs::write(&path, text).unwrap();
        let mtime = backdate(&path);

        assert_eq!(Ledger::new(&path).read().unwrap().records, vec![]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert_eq!(names(dir.path()), ["ledger.json"]);
    }

    #[test]
    fn read_of_corrupt_ledger_is_an_error_and_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), "{\"schema\": 1, \"records\": [").unwrap();
        let err = ledger.read().unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("ledger.json is corrupt"), "{msg}");
        assert!(msg.contains("EOF"), "parse error missing: {msg}");
        assert_eq!(names(dir.path()), ["ledger.json"]);
    }

    fn assert_recovers_from(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), bytes).unwrap();
        let before = SystemTime::now() - Duration::from_secs(1);

        let seen = ledger
            .update(|doc| {
                let seen = (doc.records.len(), doc.recovered_from.clone());
                doc.records.push(sample("/tmp/adf-worktrees/rebuilt"));
                seen
            })
            .unwrap();

        let (count, aside) = seen;
        assert_eq!(count, 0);
        let aside = aside.expect("recovery is visible to the caller");
        let aside_name = aside.file_name().unwrap().to_string_lossy().into_owned();
        let stamp = aside_name
            .strip_prefix("ledger.json.corrupt-")
            .unwrap_or_else(|| panic!("bad aside name {aside_name}"));
        let t = parse_timestamp(stamp).expect("aside name ends with an RFC 3339 time");
        assert!(t >= before && t <= SystemTime::now(), "{stamp}");
        assert!(stamp.ends_with('Z'), "UTC: {stamp}");
        assert_eq!(aside.parent(), Some(dir.path()));
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            bytes,
            "aside keeps the bytes"
        );

        let doc = ledger.read().unwrap();
        assert_eq!(doc.records.len(), 1);
        assert_eq!(doc.recovered_from, None, "not stored");
        let mut expected = vec![
            "ledger.json".to_string(),
            "ledger.json.lock".into(),
            aside_name,
        ];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }

    #[test]
    fn update_moves_corrupt_ledger_aside_and_starts_empty() {
        assert_recovers_from(b"this is not json\x00\xff");
    }

    #[test]
    fn update_moves_truncated_ledger_aside_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/a")))
            .unwrap();
        let full = std::fs::read(ledger.path()).unwrap();
        assert_recovers_from(&full[..full.len() / 2]);
        assert_recovers_from(b"");
    }

    #[test]
    fn update_recovers_from_valid_json_that_is_not_a_ledger() {
        assert_recovers_from(br#"{"schema": 1, "records": [{"id": 7}]}"#);
        assert_recovers_from(br#"{"schema": 0, "records": []}"#);
        assert_recovers_from(b"[1, 2, 3]");
    }

    #[test]
    fn move_aside_never_overwrites_an_existing_aside_file() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), "garbage").unwrap();
        // Occupy the names of this second and the next few.
        let now = SystemTime::now();
        let mut taken = Vec::new();
        for s in 0..3 {
            let stamp = format_timestamp(now + Duration::from_secs(s));
            let p = dir.path().join(format!("ledger.json.corrupt-{stamp}"));
            std::fs::write(&p, format!("older aside {s}")).unwrap();
            taken.push(p);
        }

        let aside = ledger.update(|doc| doc.recovered_from.clone()).unwrap();

        let aside = aside.expect("recovered");
        assert!(!taken.contains(&aside), "{}", aside.display());
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "garbage");
        for (s, p) in taken.iter().enumerate() {
            assert_eq!(
                std::fs::read_to_string(p).unwrap(),
                format!("older aside {s}")
            );
        }
    }

    #[test]
    fn newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        // Records in a shape this build cannot parse: still "newer", not corrupt.
        let text = r#"{"schema": 2, "records": [{"totally": "different"}]}"#;
        std::fs::write(ledger.path(), text).unwrap();
        let mtime = backdate(ledger.path());
        let ino = std::fs::metadata(ledger.path()).unwrap().ino();

        let read_err = ledger.read().unwrap_err();
        let mut called = false;
        let update_err = ledger.update(|_| called = true).unwrap_err();

        assert!(!called, "the closure must not run on a newer ledger");
        for err in [read_err, update_err] {
            assert!(
                matches!(
                    err,
                    LedgerError::NewerSchema {
                        found: 2,
                        supported: 1,
                        ..
                    }
                ),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("schema 2") && msg.contains("schema 1"),
                "{msg}"
            );
        }
        let meta = std::fs::metadata(ledger.path()).unwrap();
        assert_eq!(std::fs::read_to_string(ledger.path()).unwrap(), text);
        assert_eq!(meta.modified().unwrap(), mtime);
        assert_eq!(meta.ino(), ino);
        assert!(!names(dir.path()).iter().any(|n| n.contains("corrupt")));
    }

    #[test]
    fn update_creates_missing_directory_and_a_0644_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/treeward/ledger.json");
        Ledger::new(&path)
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/x")))
            .unwrap();
        for d in ["var", "var/lib", "var/lib/treeward"] {
            let meta = std::fs::metadata(dir.path().join(d)).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o755, "{d}");
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(Ledger::new(&path).read().unwrap().records.len(), 1);
    }

    #[test]
    fn update_keeps_mode_of_existing_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger.update(|_| ()).unwrap();
        std::fs::set_permissions(ledger.path(), Permissions::from_mode(0o600)).unwrap();
        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/y")))
            .unwrap();
        let meta = std::fs::metadata(ledger.path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
    }

    #[test]
    fn a_ledger_root_creates_for_the_roots_owner_is_theirs() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping a_ledger_root_creates_for_the_roots_owner_is_theirs: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/treeward/ledger.json");
        let ledger = Ledger::new(&path).created_for(Some((4242, 4243)));
        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/o")))
            .unwrap();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&path), (4242, 4243));
        assert_eq!(owner(path.parent().unwrap()), (4242, 4243));
        // The directories above the ledger's own stay root's.
        assert_eq!(owner(&dir.path().join("var")), (0, 0));
        // Control: without an owner, root's.
        let other = dir.path().join("other/ledger.json");
        Ledger::new(&other)
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/p")))
            .unwrap();
        assert_eq!(owner(&other), (0, 0));
    }

    #[test]
    fn root_update_keeps_a_users_owner_and_mode() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping root_update_keeps_a_users_owner_and_mode: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), r#"{"schema": 1, "records": []}"#).unwrap();
        std::os::unix::fs::chown(ledger.path(), Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(ledger.path(), Permissions::from_mode(0o640)).unwrap();

        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/r")))
            .unwrap();

        let meta = std::fs::metadata(ledger.path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4242));
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let lock = std::fs::metadata(lock_path(ledger.path())).unwrap();
        assert_eq!(
            (lock.uid(), lock.gid()),
            (4242, 4242),
            "lock file keeps owner"
        );
        assert_eq!(ledger.read().unwrap().records.len(), 1);
    }

    #[test]
    fn root_recovery_keeps_a_users_owner_and_mode() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping root_recovery_keeps_a_users_owner_and_mode: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), "{\"schema\": 1, \"rec").unwrap();
        std::os::unix::fs::chown(ledger.path(), Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(ledger.path(), Permissions::from_mode(0o600)).unwrap();

        let aside = ledger.update(|doc| doc.recovered_from.clone()).unwrap();

        assert!(aside.is_some());
        let meta = std::fs::metadata(ledger.path()).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (4242, 4242, 0o600)
        );
    }

    #[test]
    fn symlinked_ledger_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.json");
        let text = r#"{"schema": 1, "records": []}"#;
        std::fs::write(&target, text).unwrap();
        let ledger = ledger_in(&dir);
        std::os::unix::fs::symlink(&target, ledger.path()).unwrap();

        let read_err = ledger.read().unwrap_err();
        let update_err = ledger.update(|_| ()).unwrap_err();

        for err in [read_err, update_err] {
            assert!(
                matches!(err, LedgerError::NotARegularFile { .. }),
                "{err:?}"
            );
        }
        assert!(std::fs::symlink_metadata(ledger.path())
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
    }

    #[test]
    fn update_that_changes_nothing_does_not_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/z")))
            .unwrap();
        let mtime = backdate(ledger.path());
        let ino = std::fs::metadata(ledger.path()).unwrap().ino();

        let n = ledger.update(|doc| doc.records.len()).unwrap();

        assert_eq!(n, 1);
        let meta = std::fs::metadata(ledger.path()).unwrap();
        assert_eq!((meta.modified().unwrap(), meta.ino()), (mtime, ino));
    }

    #[test]
    fn stale_temp_files_are_removed_and_none_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let stale = dir.path().join(".ledger.json.tmp.999999");
        std::fs::write(&stale, "half a ledg").unwrap();
        let unrelated = dir.path().join(".other.json.tmp.1");
        std::fs::write(&unrelated, "not ours").unwrap();

        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/t")))
            .unwrap();

        assert!(!stale.exists());
        assert!(unrelated.exists());
        assert_eq!(
            names(dir.path()),
            [".other.json.tmp.1", "ledger.json", "ledger.json.lock"]
        );
    }

    #[test]
    fn temp_name_matching_is_exact() {
        let p = temp_prefix(std::ffi::OsStr::new("ledger.json"));
        assert!(is_temp_of(".ledger.json.tmp.123", &p));
        assert!(!is_temp_of(".ledger.json.tmp.", &p));
        assert!(!is_temp_of(".ledger.json.tmp.12x", &p));
        assert!(!is_temp_of("ledger.json", &p));
        assert!(!is_temp_of(".ledger.json.lock", &p));
    }

    /// Runs `step(ledger, thread, i)` for `i` in `0..steps` on each of
    /// `threads` threads at once.
    fn in_threads(
        ledger: &Ledger,
        threads: usize,
        steps: usize,
        step: impl Fn(&Ledger, usize, usize) + Sync,
    ) {
        std::thread::scope(|s| {
            for t in 0..threads {
                let step = &step;
                s.spawn(move || (0..steps).for_each(|i| step(ledger, t, i)));
            }
        });
    }

    #[test]
    fn threads_never_lose_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        in_threads(&ledger, 16, 20, |ledger, t, i| {
            let path = format!("/tmp/adf-worktrees/t{t}-{i}");
            ledger
                .update(|doc| doc.records.push(sample(&path)))
                .unwrap();
        });
        let doc = ledger.read().unwrap();
        assert_eq!(doc.records.len(), 320);
        for t in 0..16 {
            for i in 0..20 {
                let path = PathBuf::from(format!("/tmp/adf-worktrees/t{t}-{i}"));
                assert!(doc.find_by_path(&path).is_some(), "{}", path.display());
            }
        }
        assert_eq!(names(dir.path()), ["ledger.json", "ledger.json.lock"]);
    }

    const CHILD_ENV: &str = "TREEWARD_LEDGER_TEST_CHILD";
    const CHILD_UPDATES: usize = 25;

    /// Runs the ignored test `name` of this test binary in `n` processes,
    /// the `k`th told `<ledger>|p<k>` through [`CHILD_ENV`], and asserts that
    /// each ran and passed.
    fn run_children(ledger: &Ledger, name: &str, n: usize) {
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..n)
            .map(|p| {
                std::process::Command::new(&exe)
                    .args(["--exact", name, "--ignored", "--test-threads=1"])
                    .env(CHILD_ENV, format!("{}|p{p}", ledger.path().display()))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed: {stdout}");
            assert!(stdout.contains("1 passed"), "child did not run: {stdout}");
        }
    }

    /// In a child started by [`run_children`] for the test `parent`: its
    /// ledger and tag; `None` (and a note) when run any other way.
    fn child_of(parent: &str) -> Option<(Ledger, String)> {
        let spec = std::env::var(CHILD_ENV).ok();
        let found = spec.as_deref().and_then(|s| s.split_once('|'));
        if found.is_none() {
            eprintln!("skipping: only run as a child of {parent}");
        }
        found.map(|(p, t)| (Ledger::new(Path::new(p)), t.to_string()))
    }

    /// Run only as a child of `processes_never_lose_a_record`.
    #[test]
    #[ignore = "child process of processes_never_lose_a_record"]
    fn child_process_appends_records() {
        let Some((ledger, tag)) = child_of("processes_never_lose_a_record") else {
            return;
        };
        for i in 0..CHILD_UPDATES {
            let p = format!("/tmp/adf-worktrees/{tag}-{i}");
            ledger.update(|doc| doc.records.push(sample(&p))).unwrap();
        }
    }

    #[test]
    fn processes_never_lose_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        run_children(
            &ledger,
            "ledger::store::tests::child_process_appends_records",
            6,
        );
        let doc = ledger.read().unwrap();
        assert_eq!(doc.records.len(), 6 * CHILD_UPDATES);
        let mut ids: Vec<&str> = doc.records.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6 * CHILD_UPDATES, "ids are unique");
        assert_eq!(names(dir.path()), ["ledger.json", "ledger.json.lock"]);
    }

    #[test]
    fn records_missing_optional_fields_still_parse() {
        let text = r#"{"schema": 1, "records": [{"id": "a", "path": "/w/a",
            "repository": "/r.git", "uid": 0, "created_at": "2024-01-01T00:00:00Z",
            "last_transition": "2024-01-01T00:00:00Z", "state": "kept"}]}"#;
        match decode(text.as_bytes()) {
            Decoded::Valid(doc, _) => {
                assert_eq!(doc.records[0].state, State::Kept);
                assert!(doc.records[0].preserved_refs.is_empty());
                assert_eq!(doc.records[0].lease, None, "a ledger from before leases");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_owner_pid_and_a_lease_holder_are_read() {
        let text = r#"{"schema": 1, "records": [{"id": "a", "path": "/w/a",
            "repository": "/r.git", "uid": 0, "created_at": "2024-01-01T00:00:00Z",
            "last_transition": "2024-01-01T00:00:00Z", "state": "active",
            "owner_pid": 7, "lease": {"pid": 8, "start_time": 99}}]}"#;
        match decode(text.as_bytes()) {
            Decoded::Valid(doc, _) => {
                assert_eq!(doc.records[0].owner_pid, Some(7));
                assert_eq!(
                    doc.records[0].lease,
                    Some(Holder {
                        pid: 8,
                        start_time: 99
                    })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn add(path: &str) -> (Record, Change) {
        let rec = sample(path);
        (
            rec.clone(),
            Change::Add {
                record: Box::new(rec),
            },
        )
    }

    #[test]
    fn append_is_read_back_without_rewriting_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger
            .update(|doc| doc.records.push(sample("/tmp/adf-worktrees/old")))
            .unwrap();
        let mtime = backdate(ledger.path());
        let (a, change) = add("/tmp/adf-worktrees/a");

        ledger.append(&change).unwrap();
        ledger
            .append(&Change::Branch {
                path: a.path.clone(),
                repository: a.repository.clone(),
                branch: Some("renamed".into()),
            })
            .unwrap();

        let doc = ledger.read().unwrap();
        assert_eq!(doc.records.len(), 2);
        let got = doc.find_by_id(&a.id).unwrap();
        assert_eq!(got.branch.as_deref(), Some("renamed"));
        assert_eq!(got.created_at, a.created_at);
        assert_eq!(
            std::fs::metadata(ledger.path())
                .unwrap()
                .modified()
                .unwrap(),
            mtime,
            "append and read leave the document alone"
        );
        let text = std::fs::read_to_string(ledger.journal_path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            names(dir.path()),
            ["ledger.json", "ledger.json.journal", "ledger.json.lock"]
        );
    }

    #[test]
    fn append_before_any_ledger_creates_the_directory_and_journal() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(&dir.path().join("state/ledger.json"));
        let (a, change) = add("/tmp/adf-worktrees/a");
        ledger.append(&change).unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![a]);
        let meta = std::fs::metadata(ledger.journal_path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert!(!ledger.path().exists(), "only update writes the document");
    }

    #[test]
    fn update_compacts_the_journal_into_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let mut added = Vec::new();
        for i in 0..3 {
            let (rec, change) = add(&format!("/tmp/adf-worktrees/c{i}"));
            ledger.append(&change).unwrap();
            added.push(rec);
        }
        let journal_ino = std::fs::metadata(ledger.journal_path()).unwrap().ino();

        let seen = ledger.update(|doc| doc.records.len()).unwrap();

        assert_eq!(seen, 3, "the closure sees the journal's records");
        let journal = std::fs::metadata(ledger.journal_path()).unwrap();
        assert_eq!((journal.len(), journal.ino()), (0, journal_ino));
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["records"].as_array().unwrap().len(), 3);
        assert!(value["journal_folded"].is_string(), "{text}");
        assert_eq!(ledger.read().unwrap().records, added);
    }

    #[test]
    fn a_compaction_that_crashed_before_truncating_is_not_folded_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let (a, change_a) = add("/tmp/adf-worktrees/a");
        let (b, change_b) = add("/tmp/adf-worktrees/b");
        ledger.append(&change_a).unwrap();
        ledger.append(&change_b).unwrap();
        let journal = std::fs::read(ledger.journal_path()).unwrap();
        // The crash: the document was written, the journal not truncated.
        ledger.update(|_| ()).unwrap();
        std::fs::write(ledger.journal_path(), &journal).unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![a.clone(), b.clone()]);

        // An update that forgets `a` must not see it come back from the
        // lines already folded, not even after another such crash.
        ledger
            .update(|doc| doc.records.retain(|r| r.id != a.id))
            .unwrap();
        std::fs::write(ledger.journal_path(), &journal).unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![b.clone()]);
        let (c, change_c) = add("/tmp/adf-worktrees/c");
        ledger.append(&change_c).unwrap();
        ledger.update(|_| ()).unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![b, c]);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_the_next_append_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let (a, change_a) = add("/tmp/adf-worktrees/a");
        ledger.append(&change_a).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(ledger.journal_path())
            .unwrap();
        f.write_all(b"{\"id\":\"torn\",\"op\":\"add\",\"rec")
            .unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![a.clone()]);

        let (b, change_b) = add("/tmp/adf-worktrees/b");
        ledger.append(&change_b).unwrap();

        assert_eq!(ledger.read().unwrap().records, vec![a.clone(), b.clone()]);
        ledger.update(|_| ()).unwrap();
        assert_eq!(ledger.read().unwrap().records, vec![a, b]);
        assert_eq!(std::fs::metadata(ledger.journal_path()).unwrap().len(), 0);
    }

    #[test]
    fn a_change_from_a_newer_treeward_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger.update(|_| ()).unwrap();
        let text = "{\"id\":\"x\",\"op\":\"rename\",\"to\":\"/w\"}\n";
        std::fs::write(ledger.journal_path(), text).unwrap();
        let ledger_text = std::fs::read_to_string(ledger.path()).unwrap();

        let read_err = ledger.read().unwrap_err();
        let update_err = ledger.update(|doc| doc.records.clear()).unwrap_err();

        for err in [read_err, update_err] {
            let msg = err.to_string();
            assert!(
                matches!(err, LedgerError::UnknownJournalEntry { line: 1, .. }),
                "{err:?}"
            );
            assert!(
                msg.contains("ledger.json.journal:1") && msg.contains("rename"),
                "{msg}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(ledger.journal_path()).unwrap(),
            text
        );
        assert_eq!(std::fs::read_to_string(ledger.path()).unwrap(), ledger_text);
    }

    #[test]
    fn a_symlinked_journal_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, ledger.journal_path()).unwrap();

        let append_err = ledger.append(&add("/tmp/adf-worktrees/a").1).unwrap_err();
        let read_err = ledger.read().unwrap_err();
        let update_err = ledger.update(|_| ()).unwrap_err();

        for err in [append_err, read_err, update_err] {
            assert!(
                matches!(err, LedgerError::NotARegularFile { .. }),
                "{err:?}"
            );
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }

    #[test]
    fn inside_an_update_read_works_and_append_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger.append(&add("/tmp/adf-worktrees/a").1).unwrap();
        let (count, append) = ledger
            .update(|_| {
                let count = ledger.read().map(|d| d.records.len());
                (count, ledger.append(&add("/tmp/adf-worktrees/b").1))
            })
            .unwrap();
        assert_eq!(count.unwrap(), 1);
        let msg = append.unwrap_err().to_string();
        assert!(msg.contains("inside Ledger::update"), "{msg}");
        assert_eq!(ledger.read().unwrap().records.len(), 1);
    }

    #[test]
    fn read_waits_for_an_update_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger.append(&add("/tmp/adf-worktrees/a").1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let writer = ledger.clone();
            s.spawn(move || {
                writer
                    .update(|doc| {
                        tx.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(300));
                        doc.records.push(sample("/tmp/adf-worktrees/b"));
                    })
                    .unwrap();
            });
            rx.recv().unwrap();
            // The compaction is under way: the reader sees its result whole.
            assert_eq!(ledger.read().unwrap().records.len(), 2);
        });
    }

    #[test]
    fn threads_appending_and_compacting_never_lose_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        in_threads(&ledger, 8, 25, |ledger, t, i| {
            let (_, change) = add(&format!("/tmp/adf-worktrees/t{t}-{i}"));
            ledger.append(&change).unwrap();
            if i % 10 == 0 {
                ledger.update(|_| ()).unwrap();
            }
        });
        assert_eq!(ledger.read().unwrap().records.len(), 200);
        ledger.update(|_| ()).unwrap();
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["records"].as_array().unwrap().len(), 200);
        assert_eq!(std::fs::metadata(ledger.journal_path()).unwrap().len(), 0);
    }

    #[test]
    #[ignore = "child process of processes_appending_never_lose_a_line"]
    fn child_process_appends_to_the_journal() {
        let Some((ledger, tag)) = child_of("processes_appending_never_lose_a_line") else {
            return;
        };
        for i in 0..CHILD_UPDATES {
            let (_, change) = add(&format!("/tmp/adf-worktrees/{tag}-{i}"));
            ledger.append(&change).unwrap();
        }
    }

    #[test]
    fn processes_appending_never_lose_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        run_children(
            &ledger,
            "ledger::store::tests::child_process_appends_to_the_journal",
            8,
        );
        let text = std::fs::read_to_string(ledger.journal_path()).unwrap();
        assert_eq!(text.lines().count(), 8 * CHILD_UPDATES, "one line each");
        let doc = ledger.read().unwrap();
        assert_eq!(doc.records.len(), 8 * CHILD_UPDATES);
        for p in 0..8 {
            for i in 0..CHILD_UPDATES {
                let path = PathBuf::from(format!("/tmp/adf-worktrees/p{p}-{i}"));
                assert!(doc.find_by_path(&path).is_some(), "{}", path.display());
            }
        }
    }

    #[test]
    fn root_journal_gets_the_ledgers_owner_and_mode_and_keeps_them() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!(
                "skipping root_journal_gets_the_ledgers_owner_and_mode_and_keeps_them: needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        std::fs::write(ledger.path(), r#"{"schema": 1, "records": []}"#).unwrap();
        std::os::unix::fs::chown(ledger.path(), Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(ledger.path(), Permissions::from_mode(0o640)).unwrap();

        ledger.append(&add("/tmp/adf-worktrees/a").1).unwrap();
        let owner = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777, m.ino())
        };
        let created = owner(&ledger.journal_path());
        assert_eq!((created.0, created.1, created.2), (4242, 4242, 0o640));

        ledger.update(|_| ()).unwrap();
        ledger.append(&add("/tmp/adf-worktrees/b").1).unwrap();
        assert_eq!(
            owner(&ledger.journal_path()),
            created,
            "kept through compaction"
        );
        let l = owner(ledger.path());
        assert_eq!((l.0, l.1, l.2), (4242, 4242, 0o640));
        assert_eq!(ledger.read().unwrap().records.len(), 2);
    }

    #[test]
    fn a_users_journal_gets_the_ledgers_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(&dir);
        ledger.update(|_| ()).unwrap();
        std::fs::set_permissions(ledger.path(), Permissions::from_mode(0o600)).unwrap();
        ledger.append(&add("/tmp/adf-worktrees/a").1).unwrap();
        let meta = std::fs::metadata(ledger.journal_path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    }
}
