//! The ledger: the JSON state file every treeward binary shares (SPEC
//! invariant 5).
//!
//! On disk it is one pretty-printed JSON object, `{"schema": 1, "records":
//! [...]}`, ending with a newline, so an admin can read and diff it.
//!
//! Contract:
//! - [`Ledger::read`] changes nothing on disk: no lock file, no directory, no
//!   move-aside, not even an mtime. It takes no lock: every write replaces the
//!   file with one `rename`, so a reader always sees a whole old or a whole new
//!   document. A missing file is an empty document; a corrupt one, or one with
//!   a newer schema, is an error.
//! - [`Ledger::update`] is a read-modify-write under an exclusive `flock` on
//!   the sidecar `<ledger>.lock` (not on the ledger, which is replaced by
//!   rename, so a lock on it would be on the old inode). The new document goes
//!   to `.<name>.tmp.<pid>` in the same directory, gets the old ledger's owner
//!   and mode (a new ledger: the caller's uid, mode 0644), is fsynced, renamed
//!   over the ledger, and the directory is fsynced. Flock locks belong to the
//!   open file description and every update opens the lock file anew, so
//!   updates exclude each other across processes and threads alike.
//! - A corrupt or truncated ledger met by `update` is moved aside to
//!   `<name>.corrupt-<UTC timestamp>` (never over an existing file), logged at
//!   error level with both paths, and replaced by an empty document whose
//!   [`Document::recovered_from`] names the aside file, so the caller can
//!   rebuild from what is on disk. A newer schema is refused and left
//!   untouched. Temp files left by a crash are removed by the next update
//!   (holding the lock proves nobody is writing them).
//! - The ledger and its lock are opened with `O_NOFOLLOW` and must be regular
//!   files: a symlink planted at the ledger's path is refused, never followed.

use nix::errno::Errno;
use nix::fcntl::{renameat2, Flock, FlockArg, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Mode of a ledger (and lock file) that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;
/// Mode of a ledger directory that did not exist before.
const NEW_DIR_MODE: u32 = 0o755;

/// Lifecycle state of a record (SPEC "Lifecycle states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Released,
    Removed,
    Preserved,
    RetryRemove,
    Kept,
}

/// One known worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub path: PathBuf,
    /// The common git dir.
    pub repository: PathBuf,
    /// The worktree's admin name under `<common>/worktrees/`.
    #[serde(default)]
    pub worktree_name: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub base_commit: Option<String>,
    pub uid: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub last_transition: String,
    pub state: State,
    #[serde(default)]
    pub preserved_refs: Vec<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// A process that owns the worktree while it lives (in use).
    #[serde(default)]
    pub owner_pid: Option<u32>,
}

impl Record {
    /// A new `active` record created now, with a fresh id.
    pub fn new(path: &Path, repository: &Path, uid: u32) -> Record {
        let created = now();
        Record {
            id: Record::new_id(),
            path: path.to_path_buf(),
            repository: repository.to_path_buf(),
            worktree_name: None,
            branch: None,
            base_commit: None,
            uid,
            created_at: created.clone(),
            last_transition: created,
            state: State::Active,
            preserved_refs: Vec::new(),
            attempts: 0,
            last_error: None,
            owner_pid: None,
        }
    }

    /// An id unique across processes and threads: nanoseconds since the
    /// epoch, pid and a per-process counter, in hex (`<nanos>-<pid>-<n>`).
    pub fn new_id() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:x}-{:x}-{n:x}", std::process::id())
    }

    /// Moves the record to `state`, stamping `last_transition` with now.
    pub fn transition(&mut self, state: State) {
        self.state = state;
        self.last_transition = now();
    }
}

/// The current time as RFC 3339 UTC with second precision
/// (`2024-05-01T12:00:00Z`): the one format of every ledger timestamp.
pub fn now() -> String {
    format_timestamp(SystemTime::now())
}

/// `t` as RFC 3339 UTC with second precision.
pub fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses a ledger timestamp (RFC 3339 UTC); `None` if it is not one.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub schema: u32,
    pub records: Vec<Record>,
    /// Not stored. Set by [`Ledger::update`] when the ledger was corrupt: the
    /// file it was moved aside to. The document is then empty and the caller
    /// should rebuild it from what is on disk.
    #[serde(skip)]
    pub recovered_from: Option<PathBuf>,
}

impl Default for Document {
    fn default() -> Document {
        Document::empty()
    }
}

impl Document {
    /// A document with no records at the current schema.
    pub fn empty() -> Document {
        Document {
            schema: SCHEMA_VERSION,
            records: Vec::new(),
            recovered_from: None,
        }
    }

    /// The record for the worktree at exactly `path`.
    pub fn find_by_path(&self, path: &Path) -> Option<&Record> {
        self.records.iter().find(|r| r.path == path)
    }

    /// The record for the worktree at exactly `path`, to change it.
    pub fn find_by_path_mut(&mut self, path: &Path) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.path == path)
    }

    /// The record with this id.
    pub fn find_by_id(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    /// The record with this id, to change it.
    pub fn find_by_id_mut(&mut self, id: &str) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.id == id)
    }
}

/// Why the ledger could not be read or written. Every variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum LedgerError {
    /// A system call failed; `action` says what treeward was doing.
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file is not valid ledger JSON (from [`Ledger::read`]; `update`
    /// moves such a file aside instead).
    Corrupt { path: PathBuf, detail: String },
    /// The file was written by a newer treeward; it was left untouched.
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The path is a symlink, directory or device, not a regular file.
    NotARegularFile { path: PathBuf },
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
    Valid(Document),
    Corrupt(String),
    NewerSchema(u32),
}

/// Only the schema, so that a newer document whose records this build cannot
/// parse is recognised as newer rather than as corrupt.
#[derive(Deserialize)]
struct SchemaProbe {
    schema: u32,
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
        Ok(doc) => Decoded::Valid(doc),
        Err(e) => Decoded::Corrupt(e.to_string()),
    }
}

/// Pure: the bytes written for `doc` (pretty JSON and a final newline).
fn encode(doc: &Document) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(doc)?;
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
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::NOFOLLOW | libc_flags::NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Err(LedgerError::NotARegularFile {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(path, "open it for reading", e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, "stat it", e))?;
    if !meta.is_file() {
        return Err(LedgerError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "read it", e))?;
    Ok(Some(OnDisk { bytes, meta }))
}

/// The open flags this module needs, named.
mod libc_flags {
    use nix::fcntl::OFlag;
    pub const NOFOLLOW: i32 = OFlag::O_NOFOLLOW.bits();
    pub const NONBLOCK: i32 = OFlag::O_NONBLOCK.bits();
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

/// Opens (creating if needed) the lock file and takes an exclusive flock on
/// it, waiting as long as another updater holds it. A lock file this call
/// creates next to an existing ledger gets that ledger's owner.
fn lock_exclusive(ledger: &Path) -> Result<Flock<File>, LedgerError> {
    let path = lock_path(ledger);
    let file = open_lock_file(ledger, &path)?;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(io_error(&path, "lock it", std::io::Error::from(errno))),
        }
    }
}

fn open_lock_file(ledger: &Path, path: &Path) -> Result<File, LedgerError> {
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .custom_flags(libc_flags::NOFOLLOW)
        .open(path);
    let file = match created {
        Ok(f) => {
            let want = match std::fs::symlink_metadata(ledger) {
                Ok(meta) if meta.is_file() => Ownership {
                    mode: NEW_FILE_MODE,
                    ..Ownership::of(&meta)
                },
                _ => Ownership::new_file(),
            };
            apply_ownership(&f, path, want)?;
            f
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // Read-only is enough for flock, and lets any user who can write
            // the ledger lock a lock file another user created.
            OpenOptions::new()
                .read(true)
                .custom_flags(libc_flags::NOFOLLOW | libc_flags::NONBLOCK)
                .open(path)
                .map_err(|e| match e.raw_os_error() {
                    Some(code) if code == Errno::ELOOP as i32 => LedgerError::NotARegularFile {
                        path: path.to_path_buf(),
                    },
                    _ => io_error(path, "open the lock file", e),
                })?
        }
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Err(LedgerError::NotARegularFile {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(path, "create the lock file", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error(path, "stat the lock file", e))?;
    if !meta.is_file() {
        return Err(LedgerError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
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
/// the umask).
fn ensure_dir(dir: &Path) -> Result<(), LedgerError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| std::fs::symlink_metadata(a).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(NEW_DIR_MODE))
                .map_err(|e| io_error(d, "set the mode of the new directory", e))?,
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
    let result = write_temp(&temp, bytes, want).and_then(|()| {
        std::fs::rename(&temp, ledger)
            .map_err(|e| io_error(ledger, "rename the new ledger into place", e))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync the ledger's directory", e))
}

fn write_temp(temp: &Path, bytes: &[u8], want: Ownership) -> Result<(), LedgerError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_flags::NOFOLLOW)
        .open(temp)
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
}

impl Ledger {
    pub fn new(path: &Path) -> Ledger {
        Ledger {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads without changing anything on disk (no lock file created, no
    /// move-aside): a missing file is an empty document; a corrupt one is an
    /// error.
    pub fn read(&self) -> Result<Document, LedgerError> {
        let Some(on_disk) = read_on_disk(&self.path)? else {
            return Ok(Document::empty());
        };
        match decode(&on_disk.bytes) {
            Decoded::Valid(doc) => Ok(doc),
            Decoded::Corrupt(detail) => Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail,
            }),
            Decoded::NewerSchema(found) => Err(self.newer_schema(found)),
        }
    }

    /// Read-modify-write under an exclusive lock, replaced atomically.
    ///
    /// `f` sees the current document; if the ledger was corrupt it sees an
    /// empty one with [`Document::recovered_from`] set. An update that
    /// changes nothing in a valid ledger does not rewrite it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Document) -> R) -> Result<R, LedgerError> {
        let dir = parent_dir(&self.path);
        let name = file_name(&self.path)?;
        ensure_dir(dir)?;
        let _lock = lock_exclusive(&self.path)?;
        remove_stale_temps(dir, &temp_prefix(name));

        let on_disk = read_on_disk(&self.path)?;
        let (mut doc, before, want) = match on_disk {
            None => (Document::empty(), None, Ownership::new_file()),
            Some(found) => {
                let want = Ownership::of(&found.meta);
                match decode(&found.bytes) {
                    Decoded::Valid(doc) => (doc.clone(), Some(doc), want),
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
                        (doc, None, want)
                    }
                }
            }
        };

        let result = f(&mut doc);
        doc.schema = SCHEMA_VERSION;
        if before.as_ref() == Some(&doc) {
            return Ok(result);
        }
        let bytes = encode(&doc).map_err(|e| LedgerError::Io {
            path: self.path.clone(),
            action: "serialize it",
            source: std::io::Error::other(e),
        })?;
        replace_atomically(&self.path, &bytes, want)?;
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
