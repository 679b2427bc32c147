//! Leases (SPEC "lease"): a worktree held for the lifetime of a process, so
//! that nothing takes it while that process lives, and so that the reaper
//! takes it at its next pass once that process dies without letting go.
//! [`Lease`] is the guard; `treeward lease PATH -- CMD` is [`run`].
//!
//! Contract:
//! - [`Lease::acquire`] leases the worktree at `path` (made absolute,
//!   symlinks not resolved). It must be an entry of a configured root
//!   holding a linked worktree that verifies as the root's owner's claim
//!   ([`crate::claim`]; the owner is the root's configured `owner`, else
//!   the caller), and a ledger record of that path, if any, must name the
//!   same repository. Anything else is [`LeaseError::BadPath`]: nothing is
//!   locked or written.
//! - The lease is a BSD `flock(LOCK_EX|LOCK_NB)` on the worktree's
//!   directory, opened under the root's descriptor without following a
//!   symlink, close-on-exec. It is held as long as that open file
//!   description is: by the [`Lease`], and by every process the descriptor
//!   is handed to ([`Lease::as_fd`]; [`run`] hands it to its command). The
//!   sweep, the reaper, `treeward-check` and `treeward list` see a held
//!   `flock` on an entry as "in use", and never take it.
//! - A lease on a worktree whose `flock` is held fails at once with
//!   [`LeaseError::Held`], naming the recorded holder; it never waits (unlike
//!   `flock(1)`'s default). A lease is one agent's exclusive use of a
//!   worktree: a second one means two agents were handed the same worktree,
//!   an orchestrator's bug that waiting would hide (the second would start
//!   later in whatever state the first left). And the other holder may be a
//!   reaper pass reclaiming the worktree: waiting for it would hand the
//!   lease a deleted directory. A caller that wants to wait retries.
//! - Once locked (and the entry verified again, under the lock, as the
//!   directory locked), the holder — this process: its pid and start time,
//!   field 22 of `/proc/<pid>/stat` — is written on the record that
//!   governs the path (the `active` one, else the latest unfinished one).
//!   With no such record, an `active` record is created from the claim
//!   (repository, admin name, owner, and the branch or detached commit its
//!   admin dir's `HEAD` names), as the hook would have recorded it. A
//!   record's state is never changed.
//! - Dropping the lease, or [`Lease::release`], clears the holder from the
//!   record (if it is still this lease's), then closes the descriptor: the
//!   record is as it would be without a lease. An `active` record is then
//!   left alone by the reaper until `treeward release`, as before.
//! - A holder that dies without that (SIGKILL, OOM) leaves its holder on the
//!   record, and the kernel drops the `flock` once the last process holding
//!   the descriptor is gone. The reaper then takes the `active` record as
//!   released: reclaimed at its next pass without waiting for the grace,
//!   work at risk preserved by the root's policy, its report line saying
//!   why. A pid the kernel has given to another process since is not the
//!   holder: its start time differs. While the holder lives (same pid,
//!   same start time), its record's worktree is in use for the reaper.
//!
//! The descriptor is close-on-exec in the holder: a library caller that
//! forks without exec passes it on, and so the `flock`, to the child.

use crate::claim::{self, Claim, Expect, Unclaimed};
use crate::config::{Config, Root};
use crate::error::Error;
use crate::fd;
use crate::ledger::{Document, Holder, Ledger, LedgerError, Record, State};
use crate::roots::{self, OpenRoot};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::fstat;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// The environment variable that tells [`run`]'s command which descriptor
/// holds the lease (it may close it, e.g. before starting a daemon that
/// should not keep the worktree in use).
pub const LEASE_FD_ENV: &str = "TREEWARD_LEASE_FD";

/// The largest admin-dir `HEAD` read.
const MAX_HEAD: u64 = 4096;

/// A held lease; dropping it ends it (see the module's contract).
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    record_id: String,
    holder: Holder,
    ledger: PathBuf,
    lock: Option<Flock<File>>,
}

/// Why a lease was not taken (or not ended cleanly).
#[derive(Debug)]
#[non_exhaustive]
pub enum LeaseError {
    /// The path cannot be leased; nothing was locked or written.
    BadPath {
        /// The path, absolute.
        path: PathBuf,
        /// Why, in words.
        why: String,
    },
    /// Its `flock` is held: by another lease (`holder`, as recorded), a
    /// reaper pass reclaiming it, or another tool. Nothing was written.
    Held {
        /// The path, absolute.
        path: PathBuf,
        /// The lease holder the ledger names, if it names one.
        holder: Option<Holder>,
    },
    /// The ledger could not be read or written (the `flock` was let go).
    Ledger(LedgerError),
    /// This process's start time could not be read from `/proc`.
    StartTime(std::io::Error),
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::BadPath { path, why } => write!(
                f,
                "{}: cannot lease it: {why} (nothing was locked or recorded)",
                path.display()
            ),
            LeaseError::Held { path, holder } => {
                write!(
                    f,
                    "{}: already leased or in use: a flock is held on it",
                    path.display()
                )?;
                if let Some(h) = holder {
                    write!(f, " (the ledger names lease holder pid {})", h.pid)?;
                }
                f.write_str("; a lease fails at once rather than wait")
            }
            LeaseError::Ledger(e) => write!(f, "{e}"),
            LeaseError::StartTime(e) => write!(
                f,
                "cannot read this process's start time from /proc/self/stat: {e}"
            ),
        }
    }
}

impl std::error::Error for LeaseError {}

impl From<LeaseError> for Error {
    fn from(e: LeaseError) -> Error {
        match e {
            LeaseError::Ledger(e) => Error::Ledger(e),
            LeaseError::BadPath { .. } | LeaseError::Held { .. } => Error::Usage(e.to_string()),
            LeaseError::StartTime(_) => Error::Failed(e.to_string()),
        }
    }
}

impl Lease {
    /// Takes a lease on the worktree at `path` for this process (see the
    /// module's contract).
    pub fn acquire(config: &Config, path: &Path) -> Result<Lease, LeaseError> {
        let Entry {
            path,
            root,
            open,
            name,
        } = Entry::locate(config, path).map_err(|(path, why)| LeaseError::BadPath { path, why })?;
        let bad = |why: String| LeaseError::BadPath {
            path: path.clone(),
            why,
        };
        let dir = fd::open_dir_at(open.fd.as_fd(), &name).map_err(|e| bad(entry_error(e)))?;
        let lock = match Flock::lock(File::from(dir), FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                let holder = Ledger::new(&config.ledger)
                    .read()
                    .ok()
                    .and_then(|doc| governing(&doc, &path).and_then(|i| doc.records[i].lease));
                return Err(LeaseError::Held { path, holder });
            }
            Err((_, e)) => return Err(bad(format!("cannot flock it: {}", e.desc()))),
        };
        // Verified under the lock, as the very directory locked.
        let owner = claim::expected_owner(root, nix::unistd::geteuid().as_raw());
        let claim = claim::verify_at(open.fd.as_fd(), &root.path, &name, Expect::owner(owner))
            .map_err(|e| bad(refusal(e)))?;
        let locked = fstat(lock.as_fd()).map_err(|e| bad(format!("cannot stat it: {e}")))?;
        match fd::stat_at(open.fd.as_fd(), &name) {
            Ok(Some(st)) if (st.st_dev, st.st_ino) == (locked.st_dev, locked.st_ino) => {}
            _ => return Err(bad("it was replaced while being locked".to_owned())),
        }
        let holder = Holder {
            pid: std::process::id(),
            start_time: crate::in_use::own_start_time().map_err(LeaseError::StartTime)?,
        };
        let fresh = record_from_claim(&claim);
        let ledger = Ledger::new(&config.ledger);
        let record_id = ledger
            .update(|doc| hold(doc, &fresh, holder))
            .map_err(LeaseError::Ledger)?
            .map_err(bad)?;
        log::debug!(
            "{}: leased by pid {} (record {record_id})",
            path.display(),
            holder.pid
        );
        Ok(Lease {
            path,
            record_id,
            holder,
            ledger: config.ledger.clone(),
            lock: Some(lock),
        })
    }

    /// The worktree's path, absolute.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the ledger record that names the holder.
    pub fn record_id(&self) -> &str {
        &self.record_id
    }

    /// The holder recorded: this process.
    pub fn holder(&self) -> Holder {
        self.holder
    }

    /// The descriptor that holds the `flock`. A process it is handed to
    /// holds the lease's `flock` too, for as long as it keeps it open.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.lock
            .as_ref()
            .expect("a lease holds its lock until dropped")
            .as_fd()
    }

    /// Ends the lease: clears its holder from the record, then lets the
    /// `flock` go (also when the ledger could not be written: the record
    /// then still names this process, and once it exits the reaper takes
    /// the worktree as released).
    pub fn release(mut self) -> Result<(), LeaseError> {
        self.end()
    }

    fn end(&mut self) -> Result<(), LeaseError> {
        let Some(lock) = self.lock.take() else {
            return Ok(());
        };
        let (id, holder) = (&self.record_id, self.holder);
        let cleared = Ledger::new(&self.ledger).update(|doc| {
            if let Some(r) = doc.find_by_id_mut(id) {
                if r.lease == Some(holder) {
                    r.lease = None;
                }
            }
        });
        drop(lock);
        cleared.map_err(LeaseError::Ledger)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            log::error!(
                "{}: the lease ended, but its holder is still recorded ({e}): \
                 the reaper will take the worktree as released",
                self.path.display()
            );
        }
    }
}

/// The index of the record that governs `path`: the `active` one, else the
/// latest unfinished one, else the latest finished one (as the reaper
/// chooses).
fn governing(doc: &Document, path: &Path) -> Option<usize> {
    doc.records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == path)
        .max_by_key(|(i, r)| (crate::reap::rank(r), *i))
        .map(|(i, _)| i)
}

/// Pure: records `holder` on the record that governs `fresh.path`, as
/// [`adopt`] finds or adds it. Returns the record's id.
fn hold(doc: &mut Document, fresh: &Record, holder: Holder) -> Result<String, String> {
    let record = adopt(doc, fresh)?;
    record.lease = Some(holder);
    Ok(record.id.clone())
}

/// Pure: the record that governs `fresh.path`, or `fresh` (an `active`
/// record built from the worktree's claim) added when none governs it or
/// only a finished one does (the path was reused). `Err` when that record
/// names another repository.
pub(crate) fn adopt<'d>(doc: &'d mut Document, fresh: &Record) -> Result<&'d mut Record, String> {
    let index = governing(doc, &fresh.path)
        .filter(|&i| !matches!(doc.records[i].state, State::Removed | State::Preserved));
    let record = match index {
        Some(i) => &mut doc.records[i],
        None => {
            doc.records.push(fresh.clone());
            doc.records.last_mut().expect("just pushed")
        }
    };
    if record.repository != fresh.repository {
        return Err(format!(
            "its ledger record {} names the repository {}, but the worktree there belongs \
             to {}: the record is not trusted",
            record.id,
            record.repository.display(),
            fresh.repository.display()
        ));
    }
    Ok(record)
}

/// An entry of a configured root, found from a caller's path: the path
/// made absolute and normal (symlinks not resolved), its root opened and
/// vetted ([`roots::open`]), and its name there.
pub(crate) struct Entry<'c> {
    pub path: PathBuf,
    pub root: &'c Root,
    pub open: OpenRoot,
    pub name: OsString,
}

impl<'c> Entry<'c> {
    /// Finds the entry `path` names; `Err` is the path as made absolute and
    /// why it is not an entry that can be used.
    pub fn locate(config: &'c Config, path: &Path) -> Result<Entry<'c>, (PathBuf, String)> {
        let path = std::path::absolute(path)
            .map(|p| claim::normalize(&p))
            .map_err(|e| (path.to_path_buf(), e.to_string()))?;
        let (Some(root), Some(name)) = (crate::admin::entry_of(config, &path), path.file_name())
        else {
            return Err((path, "not an entry of any configured root".to_owned()));
        };
        let name = name.to_os_string();
        let open = match roots::open(root) {
            Ok(Some(open)) => open,
            Ok(None) => {
                let why = format!("its root {} does not exist", root.path.display());
                return Err((path, why));
            }
            Err(e) => {
                let why = format!("its root {} is refused: {e}", root.path.display());
                return Err((path, why));
            }
        };
        Ok(Entry {
            path,
            root,
            open,
            name,
        })
    }
}

/// Why an entry's directory could not be opened, in words.
pub(crate) fn entry_error(e: Errno) -> String {
    match e {
        Errno::ENOENT => "no such file or directory".to_owned(),
        Errno::ENOTDIR | Errno::ELOOP => "not a directory (a file or a symlink)".to_owned(),
        e => format!("cannot open it: {}", e.desc()),
    }
}

/// Why an entry's claim was refused, in words.
pub(crate) fn refusal(e: Unclaimed) -> String {
    match e {
        Unclaimed::NotLinked => "not a linked worktree".to_owned(),
        e => format!("refused: {e}"),
    }
}

/// An `active` record of a verified worktree, as the hook would have made
/// it: its branch, or its detached commit, read from its admin dir's `HEAD`
/// (through the claim's descriptors: no repository is opened).
pub(crate) fn record_from_claim(claim: &Claim) -> Record {
    let mut record = Record::new(claim.entry(), claim.common(), claim.owner().uid);
    record.worktree_name = Some(claim.name().to_string_lossy().into_owned());
    let head = claim
        .open_admin()
        .ok()
        .and_then(|admin| fd::read_at(admin.as_fd(), OsStr::new("HEAD"), MAX_HEAD).ok())
        .flatten();
    if let Some(text) = head.as_deref().map(String::from_utf8_lossy) {
        (record.branch, record.base_commit) = if crate::hook::is_reftable_stub(&text) {
            match crate::hook::head_by_git(claim.entry()) {
                (Some(branch), _) => (Some(branch), None),
                (None, commit) => (None, commit),
            }
        } else {
            head_facts(&text)
        };
    }
    record
}

/// Pure: the branch a `HEAD` names, or the commit it is detached at.
fn head_facts(text: &str) -> (Option<String>, Option<String>) {
    if let Some(branch) = crate::hook::branch_of_head(text) {
        return (Some(branch), None);
    }
    let id = text.trim();
    let is_id = matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit());
    (None, is_id.then(|| id.to_owned()))
}

/// The status of a command that could not be started: 127 not found, 126
/// found but not executable (as a shell says).
pub const EXIT_NOT_FOUND: u8 = 127;
pub const EXIT_CANNOT_EXECUTE: u8 = 126;

/// `treeward lease PATH -- CMD [ARGS...]`: runs `command` while holding a
/// lease on the worktree at `path`, and returns the status to exit with:
/// the command's own, 128+N when a signal N killed it, 127 when it was not
/// found, 126 when it could not be executed. `Err` (exit 2): no lease was
/// taken and the command was not started.
///
/// The command inherits the lease's descriptor (its number is in
/// [`LEASE_FD_ENV`]), so the `flock` outlives this process if it is killed
/// while the command lives on: the worktree stays in use until the command
/// exits too, and is then released (the holder recorded, this process, is
/// gone). When the command ends, this process ends the lease cleanly
/// (clears the holder) before returning its status.
///
/// While the command runs, SIGINT, SIGQUIT, SIGTERM and SIGHUP sent to this
/// process by another process are passed on to the command (so that
/// stopping the lease stops its command, and the lease still ends cleanly);
/// the same signals from the terminal, which reach the command already,
/// are not sent twice.
pub fn run(config: &Config, path: &Path, command: &[OsString]) -> Result<u8, Error> {
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage("no command to run".to_owned()));
    };
    let lease = Lease::acquire(config, path)?;
    let fd = lease.as_fd().as_raw_fd();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env(LEASE_FD_ENV, fd.to_string());
    // SAFETY: only fcntl(2) on a descriptor this process owns, between fork
    // and exec: async-signal-safe, no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            inherit(fd).map_err(std::io::Error::from)
        });
    }
    let relay = signals::Relay::install();
    let status = match cmd.spawn() {
        Ok(mut child) => {
            relay.started(child.id());
            // Not reaped yet, so that its pid cannot be reused while the
            // relay may still signal it.
            signals::wait_unreaped(child.id());
            relay.stopped();
            child.wait()
        }
        Err(e) => Err(e),
    };
    drop(relay);
    let code = match status {
        Ok(status) => status_code(status),
        Err(e) => {
            let (code, why) = match e.kind() {
                std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "command not found".to_owned()),
                _ => (EXIT_CANNOT_EXECUTE, e.to_string()),
            };
            eprintln!("treeward: {}: {why}", program.to_string_lossy());
            code
        }
    };
    if let Err(e) = lease.release() {
        eprintln!(
            "treeward: warning: {}: the lease's holder is still recorded ({e}): \
             the reaper will take the worktree as released",
            path.display()
        );
    }
    Ok(code)
}

/// In the child: keeps the lease's descriptor open across exec.
fn inherit(fd: i32) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: the descriptor is the lease's, open for the child's lifetime.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

/// Pure: the status a shell gives a command that ended with `status`.
pub fn status_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => crate::error::EXIT_ERROR,
    }
}

/// Passing a process's signals on to the command it waits for.
mod signals {
    use nix::libc;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The signals passed on.
    const RELAYED: [Signal; 4] = [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGHUP,
    ];

    /// The command's pid once started; 0 before.
    static CHILD: AtomicI32 = AtomicI32::new(0);
    /// A signal that came before the command started.
    static PENDING: AtomicI32 = AtomicI32::new(0);

    extern "C" fn relay(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let code = if info.is_null() {
            0
        } else {
            unsafe { (*info).si_code }
        };
        // Sent by a process (kill(2), sigqueue(3)): si_code <= 0. A terminal's
        // signal (SI_KERNEL) reaches the command's process group already.
        if code > 0 {
            return;
        }
        match CHILD.load(Ordering::SeqCst) {
            0 => PENDING.store(signal, Ordering::SeqCst),
            // SAFETY: kill(2) is async-signal-safe.
            child => unsafe {
                libc::kill(child, signal);
            },
        }
    }

    /// The relay, installed until dropped (then the old dispositions).
    pub struct Relay {
        old: Vec<(Signal, SigAction)>,
    }

    impl Relay {
        pub fn install() -> Relay {
            CHILD.store(0, Ordering::SeqCst);
            PENDING.store(0, Ordering::SeqCst);
            let action = SigAction::new(
                SigHandler::SigAction(relay),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            let mut old = Vec::new();
            for signal in RELAYED {
                // SAFETY: the handler only touches atomics and calls kill(2).
                if let Ok(previous) = unsafe { sigaction(signal, &action) } {
                    old.push((signal, previous));
                }
            }
            Relay { old }
        }

        /// The command started as `pid`: a signal that came before goes to it.
        pub fn started(&self, pid: u32) {
            let Ok(pid) = i32::try_from(pid) else {
                return;
            };
            CHILD.store(pid, Ordering::SeqCst);
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending != 0 {
                // SAFETY: a plain kill(2) of our child.
                unsafe {
                    libc::kill(pid, pending);
                }
            }
        }
    }

    impl Relay {
        /// The command has ended: nothing more is passed on.
        pub fn stopped(&self) {
            CHILD.store(0, Ordering::SeqCst);
        }
    }

    /// Waits until the child `pid` has ended, leaving it to be reaped.
    pub fn wait_unreaped(pid: u32) {
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        let Ok(pid) = i32::try_from(pid) else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            for (signal, previous) in self.old.drain(..) {
                // SAFETY: puts back what was there before `install`.
                let _ = unsafe { sigaction(signal, &previous) };
            }
            CHILD.store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    const H1: Holder = Holder {
        pid: 100,
        start_time: 5000,
    };

    fn rec(id: &str, path: &str, repo: &str, state: State) -> Record {
        let mut r = Record::new(Path::new(path), Path::new(repo), 4242);
        r.id = id.to_owned();
        r.state = state;
        r
    }

    #[test]
    fn the_holder_goes_on_the_governing_record_whose_state_is_kept() {
        for state in [
            State::Active,
            State::Released,
            State::Kept,
            State::RetryRemove,
        ] {
            let mut doc = Document::empty();
            doc.records
                .push(rec("old", "/r/a", "/repo/.git", State::Removed));
            doc.records.push(rec("cur", "/r/a", "/repo/.git", state));
            doc.records
                .push(rec("other", "/r/b", "/repo/.git", State::Active));
            let fresh = rec("new", "/r/a", "/repo/.git", State::Active);
            assert_eq!(hold(&mut doc, &fresh, H1), Ok("cur".to_owned()));
            assert_eq!(doc.records.len(), 3, "{state:?}: no record added");
            assert_eq!(doc.records[1].lease, Some(H1));
            assert_eq!(doc.records[1].state, state, "the state is not changed");
            assert_eq!(doc.records[0].lease, None);
            assert_eq!(doc.records[2].lease, None);
        }
    }

    #[test]
    fn without_a_live_record_an_active_one_is_added() {
        let mut doc = Document::empty();
        doc.records
            .push(rec("gone", "/r/a", "/repo/.git", State::Preserved));
        let fresh = rec("new", "/r/a", "/repo/.git", State::Active);
        assert_eq!(hold(&mut doc, &fresh, H1), Ok("new".to_owned()));
        let added = doc.records.last().unwrap();
        assert_eq!((added.state, added.lease), (State::Active, Some(H1)));
        assert_eq!(doc.records[0].lease, None);

        let mut empty = Document::empty();
        assert_eq!(hold(&mut empty, &fresh, H1), Ok("new".to_owned()));
        assert_eq!(empty.records.len(), 1);
    }

    #[test]
    fn a_new_lease_replaces_a_dead_holder() {
        let mut doc = Document::empty();
        let mut r = rec("cur", "/r/a", "/repo/.git", State::Active);
        r.lease = Some(Holder {
            pid: 7,
            start_time: 1,
        });
        doc.records.push(r);
        let fresh = rec("new", "/r/a", "/repo/.git", State::Active);
        assert_eq!(hold(&mut doc, &fresh, H1), Ok("cur".to_owned()));
        assert_eq!(doc.records[0].lease, Some(H1));
    }

    #[test]
    fn a_record_of_another_repository_is_not_trusted() {
        let mut doc = Document::empty();
        doc.records
            .push(rec("cur", "/r/a", "/elsewhere/.git", State::Active));
        let fresh = rec("new", "/r/a", "/repo/.git", State::Active);
        let err = hold(&mut doc, &fresh, H1).unwrap_err();
        assert!(err.contains("/elsewhere/.git"), "{err}");
        assert_eq!(doc.records[0].lease, None);
    }

    #[test]
    fn head_names_a_branch_or_a_detached_commit() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            head_facts("ref: refs/heads/feat/x\n"),
            (Some("feat/x".to_owned()), None)
        );
        assert_eq!(head_facts(&format!("{id}\n")), (None, Some(id.to_owned())));
        assert_eq!(head_facts("ref: refs/remotes/o/x\n"), (None, None));
        assert_eq!(head_facts("garbage"), (None, None));
    }

    #[test]
    fn statuses_read_as_a_shell_gives_them() {
        // Raw wait statuses: exit code in the high byte, signal in the low.
        assert_eq!(status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(status_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(status_code(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137, "SIGKILL");
        assert_eq!(status_code(ExitStatus::from_raw(15)), 143, "SIGTERM");
        assert_eq!(status_code(ExitStatus::from_raw(6 | 0x80)), 134, "core");
    }
}
