//! The transport across the privilege boundary: whose ids a repository's
//! operations run with ([`Owner`], [`Identity`]), how they are reached
//! ([`route`]), starting a worker with those ids and a clean environment,
//! its deadlines, and reading its reply ([`Worker`]); and, in the worker,
//! the self-checks it passes before serving anything ([`serve_if_worker`]).
//! What it serves is [`super::serve`]; the whole picture is in
//! [`crate::as_owner`].

use super::protocol::{Envelope, Reply, Request, Response};
use super::serve::{current_groups, serve_until};
use crate::error::EXIT_ERROR;
use nix::unistd::{Gid, Pid, Uid};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The hidden first argument that turns any treeward binary into a worker.
pub const WORKER_FLAG: &str = "--treeward-owner-worker";
/// How long a call may take unless [`Worker::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The `PATH` a worker runs with.
pub const WORKER_PATH: &str = crate::git::PATH;
/// The `HOME` of a worker whose uid has no account.
pub const NO_HOME: &str = crate::git::NO_HOME;
/// Variables a worker inherits: only the logging setup, never `GIT_*`.
const INHERITED_VARIABLES: &[&str] = &["TREEWARD_LOG", "RUST_LOG", "JOURNAL_STREAM"];
/// The largest request or reply accepted, in bytes.
const MAX_MESSAGE: u64 = 64 << 20;

/// Whose ids to act with: the owner (and group) of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub uid: u32,
    /// Used only when `uid` has no account (see the module doc).
    pub gid: u32,
}

impl From<&crate::config::Owner> for Owner {
    fn from(o: &crate::config::Owner) -> Owner {
        Owner {
            uid: o.uid,
            gid: o.gid,
        }
    }
}

/// The owner of a repository: the owner of its common git dir, read with
/// `lstat` (a common dir that is a symlink is refused, not followed).
pub fn owner_of(common_dir: &Path) -> io::Result<Owner> {
    let meta = std::fs::symlink_metadata(common_dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: the repository is a symlink; its owner is not decided by following it",
                common_dir.display()
            ),
        ));
    }
    Ok(Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// The full set of ids a worker runs with, and its account if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates; always holds `gid`.
    pub groups: Vec<u32>,
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

/// What the account database says about a uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub gid: u32,
    pub home: PathBuf,
    /// `getgrouplist` for the account.
    pub groups: Vec<u32>,
}

impl Identity {
    /// The ids to act as `owner` with, from the account database.
    pub fn of(owner: Owner) -> Result<Identity, AsOwnerError> {
        identity_for(owner, account_of(owner.uid)?)
    }

    /// The ids this process runs with (for a worker of its own ids): its
    /// effective uid and gid and its groups as they are, whatever the
    /// account database says.
    pub fn current() -> Result<Identity, AsOwnerError> {
        let uid = Uid::effective().as_raw();
        let failed = |why: String| AsOwnerError::Account { uid, why };
        let account = account_of(uid)?;
        let groups = current_groups().map_err(|e| failed(format!("listing its groups: {e}")))?;
        Ok(Identity {
            uid,
            gid: Gid::effective().as_raw(),
            groups,
            name: account.as_ref().map(|a| a.name.clone()),
            home: account.map(|a| a.home),
        })
    }
}

/// Looks up the account of `uid` and its groups.
fn account_of(uid: u32) -> Result<Option<Account>, AsOwnerError> {
    let failed = |why: String| AsOwnerError::Account { uid, why };
    let Some(user) = nix::unistd::User::from_uid(Uid::from_raw(uid))
        .map_err(|e| failed(format!("looking up the account: {e}")))?
    else {
        return Ok(None);
    };
    let name = std::ffi::CString::new(user.name.clone())
        .map_err(|_| failed(format!("account name {:?} holds a NUL byte", user.name)))?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .map_err(|e| failed(format!("listing the groups of {}: {e}", user.name)))?;
    Ok(Some(Account {
        name: user.name,
        gid: user.gid.as_raw(),
        home: user.dir,
        groups: groups.into_iter().map(Gid::as_raw).collect(),
    }))
}

/// Decides the worker's ids: the account's when there is one, else the
/// repository's group alone, which must not be group 0.
pub fn identity_for(owner: Owner, account: Option<Account>) -> Result<Identity, AsOwnerError> {
    let (gid, mut groups, name, home) = match account {
        Some(a) => (a.gid, a.groups, Some(a.name), Some(a.home)),
        None if owner.gid == 0 => return Err(AsOwnerError::NoSafeGroup { uid: owner.uid }),
        None => (owner.gid, Vec::new(), None, None),
    };
    groups.push(gid);
    groups.sort_unstable();
    groups.dedup();
    Ok(Identity {
        uid: owner.uid,
        gid,
        groups,
        name,
        home,
    })
}

/// The environment of a worker: the logging variables of `inherited`, the
/// owner's `HOME` (or [`NO_HOME`]), `USER`/`LOGNAME` when there is a name, a
/// fixed `PATH`, and nothing else (in particular no `GIT_*`).
pub fn worker_environment(
    identity: &Identity,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(k, _)| {
            INHERITED_VARIABLES
                .iter()
                .chain(crate::fault::VARIABLES)
                .any(|v| OsStr::new(v) == k)
        })
        .collect();
    let home = identity
        .home
        .as_ref()
        .map_or_else(|| OsString::from(NO_HOME), |h| h.clone().into_os_string());
    env.push(("HOME".into(), home));
    env.push(("PATH".into(), WORKER_PATH.into()));
    if let Some(name) = &identity.name {
        env.push(("USER".into(), name.into()));
        env.push(("LOGNAME".into(), name.into()));
    }
    env
}

/// How a call is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In this process: root, for root's own repositories (a worker never
    /// runs as root).
    InProcess,
    /// In a worker running as the owner: the caller is root.
    Worker,
    /// In a worker running as the caller itself, who is the owner and not
    /// root: no ids change, but the call gets the worker's deadline, so a
    /// FIFO the owner planted where git reads (a loose ref) cannot hang the
    /// caller's pass.
    SelfWorker,
    /// The caller is not root and the owner is someone else.
    CannotSwitch,
}

/// Decides how to serve requests for `owner_uid` from a caller whose
/// effective uid is `caller_euid`.
pub fn route(caller_euid: u32, owner_uid: u32) -> Route {
    if caller_euid == owner_uid && caller_euid == 0 {
        Route::InProcess
    } else if caller_euid == owner_uid {
        Route::SelfWorker
    } else if caller_euid == 0 {
        Route::Worker
    } else {
        Route::CannotSwitch
    }
}

/// Why a call failed as a whole.
#[derive(Debug)]
#[non_exhaustive]
pub enum AsOwnerError {
    /// An unprivileged caller cannot act as another uid.
    CannotSwitch {
        /// The caller's effective uid.
        caller: u32,
        /// The uid it would have had to act as.
        owner: u32,
    },
    /// The uid has no account and the repository's group is 0: there is no
    /// group the worker could safely run with.
    NoSafeGroup {
        /// The owner's uid.
        uid: u32,
    },
    /// The account database could not be read.
    Account {
        /// The owner's uid.
        uid: u32,
        /// What failed.
        why: String,
    },
    /// The requests could not be encoded.
    Encode(String),
    /// The worker could not be started (no program, no permission, the ids
    /// could not be set).
    Spawn {
        /// The worker program.
        program: PathBuf,
        /// The uid it was to run as.
        uid: u32,
        /// The error `spawn` returned.
        error: io::Error,
    },
    /// The worker did not finish in time and was killed.
    TimedOut {
        /// The worker program.
        program: PathBuf,
        /// The uid it ran as.
        uid: u32,
        /// The timeout it overran.
        after: Duration,
    },
    /// The worker ended without a reply.
    Exited {
        /// The worker program.
        program: PathBuf,
        /// The uid it ran as.
        uid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The worker refused to serve (wrong ids, running as root, bad request).
    Refused {
        /// The worker program.
        program: PathBuf,
        /// The uid it ran as.
        uid: u32,
        /// Why, as the worker said it.
        message: String,
    },
    /// The worker's reply is not a valid answer to the requests.
    BadResponse {
        /// The worker program.
        program: PathBuf,
        /// The uid it ran as.
        uid: u32,
        /// What is wrong with the reply.
        why: String,
    },
}

impl fmt::Display for AsOwnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsOwnerError::CannotSwitch { caller, owner } => write!(
                f,
                "cannot act as uid {owner}: this process runs as uid {caller}, not root"
            ),
            AsOwnerError::NoSafeGroup { uid } => write!(
                f,
                "cannot act as uid {uid}: it has no account and its repository's group is 0"
            ),
            AsOwnerError::Account { uid, why } => write!(f, "cannot act as uid {uid}: {why}"),
            AsOwnerError::Encode(why) => write!(f, "cannot encode the worker's requests: {why}"),
            AsOwnerError::Spawn {
                program,
                uid,
                error,
            } => write!(
                f,
                "cannot start the worker {} as uid {uid}: {error}",
                program.display()
            ),
            AsOwnerError::TimedOut {
                program,
                uid,
                after,
            } => write!(
                f,
                "the worker {} running as uid {uid} did not finish within {} and was killed",
                program.display(),
                humantime::format_duration(*after)
            ),
            AsOwnerError::Exited {
                program,
                uid,
                status,
            } => write!(
                f,
                "the worker {} running as uid {uid} ended without a reply ({status})",
                program.display()
            ),
            AsOwnerError::Refused {
                program,
                uid,
                message,
            } => write!(
                f,
                "the worker {} for uid {uid} refused: {message}",
                program.display()
            ),
            AsOwnerError::BadResponse { program, uid, why } => write!(
                f,
                "the worker {} running as uid {uid} sent a bad reply: {why}",
                program.display()
            ),
        }
    }
}

impl std::error::Error for AsOwnerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AsOwnerError::Spawn { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The program run as the worker, and how long a call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The program started as the worker: a treeward binary, or a program
    /// that calls [`serve_if_worker`](crate::serve_if_worker) first.
    pub program: PathBuf,
    /// How long one call may take before the worker is killed.
    pub timeout: Duration,
    /// How long after a call starts its requests may still be started.
    pub stop_after: Option<Duration>,
}

impl Worker {
    /// A worker running `program`: a treeward binary (each serves as a
    /// worker when started as one), or a program whose `main` calls
    /// [`serve_if_worker`] first.
    pub fn new(program: impl Into<PathBuf>) -> Worker {
        Worker {
            program: program.into(),
            timeout: DEFAULT_TIMEOUT,
            stop_after: None,
        }
    }

    /// The current program, through `/proc/self/exe`: the very binary that
    /// is running (even if its file was replaced since), whatever the
    /// owner's permissions on the directories above it.
    pub fn current() -> Worker {
        Worker::new("/proc/self/exe")
    }

    /// The same worker with another timeout for each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Worker {
        self.timeout = timeout;
        self
    }

    /// The same worker, each call starting no request later than `after`
    /// from its start: the rest are answered as not started.
    pub fn with_stop_after(mut self, after: Duration) -> Worker {
        self.stop_after = Some(after);
        self
    }

    /// Serves one request as `owner` (see [`Worker::call_batch`]).
    pub fn call(&self, owner: Owner, request: &Request) -> Result<Response, AsOwnerError> {
        let mut responses = self.call_batch(owner, std::slice::from_ref(request))?;
        responses.pop().ok_or_else(|| AsOwnerError::BadResponse {
            program: self.program.clone(),
            uid: owner.uid,
            why: "no response".into(),
        })
    }

    /// Serves `requests` as `owner`, in order, all in one worker: one
    /// response per request. In-process (without timeout) only for root's
    /// own repositories; an unprivileged owner's in a worker of its own ids;
    /// an error when an unprivileged caller asks for another uid.
    pub fn call_batch(
        &self,
        owner: Owner,
        requests: &[Request],
    ) -> Result<Vec<Response>, AsOwnerError> {
        match route(Uid::effective().as_raw(), owner.uid) {
            Route::InProcess => Ok(serve_until(requests, self.stop_after)),
            Route::CannotSwitch => Err(AsOwnerError::CannotSwitch {
                caller: Uid::effective().as_raw(),
                owner: owner.uid,
            }),
            Route::Worker | Route::SelfWorker if requests.is_empty() => Ok(Vec::new()),
            Route::Worker => self.run_worker(&Identity::of(owner)?, requests),
            Route::SelfWorker => self.run_worker(&Identity::current()?, requests),
        }
    }

    /// Spawns the worker as `identity`, hands it the requests and collects
    /// its reply within the timeout.
    fn run_worker(
        &self,
        identity: &Identity,
        requests: &[Request],
    ) -> Result<Vec<Response>, AsOwnerError> {
        let envelope = Envelope {
            uid: identity.uid,
            gid: identity.gid,
            groups: identity.groups.clone(),
            requests: requests.to_vec(),
            stop_after_ms: self.stop_after.map(crate::pass::report::millis),
        };
        let input =
            serde_json::to_vec(&envelope).map_err(|e| AsOwnerError::Encode(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        let mut child =
            KillOnDrop(
                self.command(identity)
                    .spawn()
                    .map_err(|error| AsOwnerError::Spawn {
                        program: self.program.clone(),
                        uid: identity.uid,
                        error,
                    })?,
            );
        let bad = |why: String| AsOwnerError::BadResponse {
            program: self.program.clone(),
            uid: identity.uid,
            why,
        };
        let timed_out = || AsOwnerError::TimedOut {
            program: self.program.clone(),
            uid: identity.uid,
            after: self.timeout,
        };
        if let Some(mut stdin) = child.0.stdin.take() {
            // A worker that refuses may not read it all: a broken pipe is
            // its reply's business, not ours.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let stdout = child
            .0
            .stdout
            .take()
            .ok_or_else(|| bad("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let read = stdout.take(MAX_MESSAGE + 1).read_to_end(&mut out);
            let _ = tx.send(read.map(|_| out));
        });
        let left = deadline.saturating_duration_since(Instant::now());
        let output = match rx.recv_timeout(left) {
            Ok(Ok(out)) if out.len() as u64 > MAX_MESSAGE => {
                return Err(bad(format!("larger than {MAX_MESSAGE} bytes")))
            }
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(bad(format!("reading it: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(bad("the reader stopped".into()))
            }
        };
        let status = wait_until(&mut child.0, deadline)
            .map_err(|e| bad(format!("waiting for it: {e}")))?
            .ok_or_else(timed_out)?;
        interpret(status, &output, requests.len()).map_err(|problem| match problem {
            Problem::Exited(status) => AsOwnerError::Exited {
                program: self.program.clone(),
                uid: identity.uid,
                status,
            },
            Problem::Refused(message) => AsOwnerError::Refused {
                program: self.program.clone(),
                uid: identity.uid,
                message,
            },
            Problem::Bad(why) => bad(why),
        })
    }

    /// The worker's command line, environment and credentials.
    fn command(&self, identity: &Identity) -> Command {
        let mut cmd = Command::new(&self.program);
        // The worker logs under the caller's name (journald's
        // SYSLOG_IDENTIFIER comes from argv[0]), not as `exe`.
        if let Some(arg0) = std::env::args_os().next() {
            cmd.arg0(arg0);
        }
        cmd.arg(WORKER_FLAG)
            .env_clear()
            .envs(worker_environment(identity, std::env::vars_os()))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let credentials = Credentials {
            switch: identity.uid != Uid::effective().as_raw(),
            uid: Uid::from_raw(identity.uid),
            gid: Gid::from_raw(identity.gid),
            groups: identity.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
            parent: Pid::this(),
            open_fds: open_descriptors(),
        };
        // SAFETY: `Credentials::enter` only makes system calls (no allocation, no
        // lock), as required between fork and exec.
        unsafe {
            cmd.pre_exec(move || credentials.enter());
        }
        cmd
    }
}

/// Kills and reaps the child if the call returns before it was reaped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Both are no-ops on a child that was already reaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the child until `deadline`; `None` when it was still running.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The descriptors this process has open (above stderr), to be closed on
/// exec in the worker: a root parent may hold descriptors it inherited
/// without close-on-exec, which the owner must not get.
fn open_descriptors() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect()
}

/// The credentials a worker takes between fork and exec.
struct Credentials {
    /// Whether the ids change (root starting an owner's worker); a worker
    /// of the caller's own ids keeps them as they are.
    switch: bool,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    parent: Pid,
    open_fds: Vec<i32>,
}

impl Credentials {
    /// Runs in the forked child: groups, then gid, then uid (real, effective
    /// and saved, so nothing is kept), then death with the parent and no new
    /// privileges through exec. `CommandExt::uid` cannot be used: std sets
    /// the uid before `pre_exec` runs, after which groups cannot be set.
    fn enter(&self) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        for &fd in &self.open_fds {
            // SAFETY: only flags the descriptor; a closed one fails harmlessly.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
        if self.switch {
            nix::unistd::setgroups(&self.groups)?;
            nix::unistd::setresgid(self.gid, self.gid, self.gid)?;
            nix::unistd::setresuid(self.uid, self.uid, self.uid)?;
        }
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        if nix::unistd::getppid() != self.parent {
            return Err(io::Error::from_raw_os_error(
                nix::errno::Errno::ESRCH as i32,
            ));
        }
        nix::sys::prctl::set_no_new_privs()?;
        Ok(())
    }
}

/// Why a worker's output is not an answer.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    Exited(ExitStatus),
    Refused(String),
    Bad(String),
}

/// Turns a worker's exit status and stdout into the responses to
/// `expected` requests.
fn interpret(status: ExitStatus, stdout: &[u8], expected: usize) -> Result<Vec<Response>, Problem> {
    match serde_json::from_slice::<Reply>(stdout) {
        Ok(Reply::Refused { message }) => Err(Problem::Refused(message)),
        Ok(Reply::Done { .. }) | Err(_) if !status.success() => Err(Problem::Exited(status)),
        Ok(Reply::Done { responses }) if responses.len() == expected => Ok(responses),
        Ok(Reply::Done { responses }) => Err(Problem::Bad(format!(
            "{} responses to {expected} requests",
            responses.len()
        ))),
        Err(e) => Err(Problem::Bad(e.to_string())),
    }
}

/// When this process was started as a worker (first argument
/// `WORKER_FLAG`): serves the requests on stdin and returns the exit
/// status (0 served, 2 refused); the program itself must then exit with it
/// and do nothing else. `None` otherwise. Every treeward binary calls it
/// first (`cli::run`); a program that embeds treeward and uses
/// [`Worker::current`] must too.
pub fn serve_if_worker() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(WORKER_FLAG)) {
        return None;
    }
    let extra = args.next();
    let code = std::panic::catch_unwind(move || serve_worker(extra)).unwrap_or_else(|_| {
        eprintln!("treeward worker: internal error (a bug in treeward); nothing further was done");
        EXIT_ERROR
    });
    Some(ExitCode::from(code))
}

/// The worker's body: checks, serves, replies on stdout.
fn serve_worker(extra_argument: Option<OsString>) -> u8 {
    // The owner must not trace or read a process that started as root.
    let _ = nix::sys::prctl::set_dumpable(false);
    let (reply, code) = match checked_requests(extra_argument) {
        Ok(envelope) => {
            let stop_after = envelope.stop_after_ms.map(Duration::from_millis);
            let responses = serve_until(&envelope.requests, stop_after)
                .into_iter()
                .map(sendable)
                .collect();
            (Reply::Done { responses }, 0)
        }
        Err(message) => {
            eprintln!("treeward worker: refused: {message}");
            (Reply::Refused { message }, EXIT_ERROR)
        }
    };
    let mut out = io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &reply)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => code,
        Err(e) => {
            eprintln!("treeward worker: cannot send the reply: {e}");
            EXIT_ERROR
        }
    }
}

/// Reads the envelope and checks every condition for serving it.
fn checked_requests(extra_argument: Option<OsString>) -> Result<Envelope, String> {
    if let Some(arg) = extra_argument {
        return Err(format!("unexpected argument {arg:?} after {WORKER_FLAG}"));
    }
    let actual = ActualIds::current().map_err(|e| format!("reading this process's ids: {e}"))?;
    if actual.has_root() {
        return Err(format!(
            "a worker never runs as root (uid {}, euid {}); it must be started with the owner's ids",
            actual.uids[0], actual.uids[1]
        ));
    }
    let envelope = read_envelope(io::stdin().lock())?;
    identity_mismatch(&envelope, &actual).map_or(Ok(()), Err)?;
    cannot_regain_root()?;
    Ok(envelope)
}

fn read_envelope(input: impl Read) -> Result<Envelope, String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the request: {e}"))?;
    if bytes.len() as u64 > MAX_MESSAGE {
        return Err(format!("the request is larger than {MAX_MESSAGE} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the request is not valid: {e}"))
}

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ActualIds {
    /// Real, effective, saved.
    uids: [u32; 3],
    gids: [u32; 3],
    /// Sorted, without duplicates.
    groups: Vec<u32>,
}

impl ActualIds {
    fn current() -> nix::Result<ActualIds> {
        let u = nix::unistd::getresuid()?;
        let g = nix::unistd::getresgid()?;
        Ok(ActualIds {
            uids: [u.real, u.effective, u.saved].map(Uid::as_raw),
            gids: [g.real, g.effective, g.saved].map(Gid::as_raw),
            groups: current_groups()?,
        })
    }

    fn has_root(&self) -> bool {
        self.uids.contains(&0)
    }
}

/// What differs between the ids the parent asked for and the actual ones;
/// `None` when they match exactly. An envelope asking for root is refused.
fn identity_mismatch(expected: &Envelope, actual: &ActualIds) -> Option<String> {
    let mut wanted = expected.groups.clone();
    wanted.sort_unstable();
    wanted.dedup();
    if expected.uid == 0 {
        Some("asked to run as root; root's own repositories are served in-process".into())
    } else if actual.uids != [expected.uid; 3] {
        Some(format!(
            "runs with uids {:?} (real, effective, saved), expected {}",
            actual.uids, expected.uid
        ))
    } else if actual.gids != [expected.gid; 3] {
        Some(format!(
            "runs with gids {:?} (real, effective, saved), expected {}",
            actual.gids, expected.gid
        ))
    } else if actual.groups != wanted {
        Some(format!(
            "runs with groups {:?}, expected {wanted:?}",
            actual.groups
        ))
    } else {
        None
    }
}

/// Asserts that root cannot come back: `setuid(0)` fails, no capability is
/// held or can be gained, `no_new_privs` is set.
fn cannot_regain_root() -> Result<(), String> {
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("setuid(0) succeeded: privileges were not dropped".into());
    }
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    capabilities_problem(&status).map_or(Ok(()), Err)
}

/// What is wrong with the capability and `no_new_privs` lines of a
/// `/proc/<pid>/status` text; `None` when nothing is held.
fn capabilities_problem(status: &str) -> Option<String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    for name in ["CapPrm", "CapEff", "CapAmb"] {
        match field(name).map(|v| u64::from_str_radix(v, 16)) {
            Some(Ok(0)) => {}
            Some(Ok(caps)) => return Some(format!("holds capabilities {name}={caps:x}")),
            Some(Err(_)) | None => return Some(format!("cannot read {name}")),
        }
    }
    match field("NoNewPrivs") {
        Some("1") => None,
        _ => Some("no_new_privs is not set".into()),
    }
}

/// A response that can be sent as JSON: one that cannot (a path that is
/// not UTF-8 inside an assessment) becomes [`Response::Failed`].
fn sendable(response: Response) -> Response {
    match serde_json::to_vec(&response) {
        Ok(_) => response,
        Err(e) => Response::Failed {
            message: format!("the result cannot be sent: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn identity(name: Option<&str>, home: Option<&str>) -> Identity {
        Identity {
            uid: 4242,
            gid: 4242,
            groups: vec![4242],
            name: name.map(str::to_owned),
            home: home.map(PathBuf::from),
        }
    }

    fn get<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a OsStr> {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    #[test]
    fn environment_keeps_only_logging_and_sets_home_and_path() {
        let inherited = [
            ("GIT_DIR", "/evil"),
            ("GIT_CONFIG_GLOBAL", "/evil/config"),
            ("GIT_CONFIG_SYSTEM", "/evil/config"),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "core.excludesFile"),
            ("GIT_CONFIG_VALUE_0", "/root/.ignore"),
            ("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='/evil'"),
            ("XDG_CONFIG_HOME", "/root/.config"),
            ("LD_PRELOAD", "/evil.so"),
            ("HOME", "/root"),
            ("PATH", "/evil/bin"),
            ("RUST_LOG", "debug"),
            ("TREEWARD_LOG", "trace"),
            ("JOURNAL_STREAM", "8:123"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = worker_environment(&identity(None, None), inherited);
        assert!(env
            .iter()
            .all(|(k, _)| !k.to_string_lossy().starts_with("GIT_")));
        assert_eq!(get(&env, "LD_PRELOAD"), None);
        // Root's git configuration never reaches the owner's worker.
        assert_eq!(get(&env, "XDG_CONFIG_HOME"), None);
        assert_eq!(get(&env, "HOME"), Some(OsStr::new(NO_HOME)));
        assert_eq!(get(&env, "PATH"), Some(OsStr::new(WORKER_PATH)));
        assert_eq!(get(&env, "RUST_LOG"), Some(OsStr::new("debug")));
        assert_eq!(get(&env, "TREEWARD_LOG"), Some(OsStr::new("trace")));
        assert_eq!(get(&env, "JOURNAL_STREAM"), Some(OsStr::new("8:123")));
        assert_eq!(get(&env, "USER"), None);
        assert_eq!(env.len(), 5, "{env:?}");
    }

    #[test]
    fn environment_names_the_account() {
        let env = worker_environment(&identity(Some("agent"), Some("/home/agent")), []);
        assert_eq!(get(&env, "HOME"), Some(OsStr::new("/home/agent")));
        assert_eq!(get(&env, "USER"), Some(OsStr::new("agent")));
        assert_eq!(get(&env, "LOGNAME"), Some(OsStr::new("agent")));
    }

    #[test]
    fn identity_uses_the_account_not_the_files_group() {
        let account = Account {
            name: "agent".into(),
            gid: 100,
            home: "/home/agent".into(),
            groups: vec![27, 100, 27],
        };
        let id = identity_for(Owner { uid: 1000, gid: 0 }, Some(account)).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 100));
        assert_eq!(id.groups, vec![27, 100]);
        assert_eq!(id.name.as_deref(), Some("agent"));
    }

    #[test]
    fn identity_without_account_is_the_repository_group_alone_never_zero() {
        let id = identity_for(
            Owner {
                uid: 4242,
                gid: 4343,
            },
            None,
        )
        .unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (4242, 4343, vec![4343]));
        assert_eq!(id.home, None);
        let err = identity_for(Owner { uid: 4242, gid: 0 }, None).unwrap_err();
        assert!(matches!(err, AsOwnerError::NoSafeGroup { uid: 4242 }));
        assert!(err.to_string().contains("uid 4242"), "{err}");
    }

    #[test]
    fn routes() {
        assert_eq!(route(0, 4242), Route::Worker);
        assert_eq!(route(0, 0), Route::InProcess);
        assert_eq!(route(4242, 4242), Route::SelfWorker);
        assert_eq!(route(4242, 4343), Route::CannotSwitch);
        assert_eq!(route(4242, 0), Route::CannotSwitch);
    }

    #[test]
    fn unknown_fields_and_ops_are_rejected() {
        let with =
            |requests: &str| format!(r#"{{"uid":1,"gid":1,"groups":[1],"requests":[{requests}]}}"#);
        assert!(read_envelope(with(r#"{"op":"probe"}"#).as_bytes()).is_ok());
        for bad in [
            r#"{"op":"rm_rf","path":"/"}"#,
            r#"{"op":"assess","path":"/x","extra":1}"#,
            r#"{"op":"assess"}"#,
        ] {
            let err = read_envelope(with(bad).as_bytes()).unwrap_err();
            assert!(err.contains("the request is not valid"), "{bad}: {err}");
        }
        assert!(read_envelope(&b"not json"[..]).is_err());
    }

    fn ids(uid: u32, gid: u32, groups: &[u32]) -> ActualIds {
        ActualIds {
            uids: [uid; 3],
            gids: [gid; 3],
            groups: groups.to_vec(),
        }
    }

    fn envelope(uid: u32, gid: u32, groups: &[u32]) -> Envelope {
        Envelope {
            uid,
            gid,
            groups: groups.to_vec(),
            requests: vec![],
            stop_after_ms: None,
        }
    }

    #[test]
    fn identity_must_match_exactly() {
        let want = envelope(4242, 4242, &[4242, 4242]);
        assert_eq!(identity_mismatch(&want, &ids(4242, 4242, &[4242])), None);
        let mut saved = ids(4242, 4242, &[4242]);
        saved.uids[2] = 0;
        assert!(identity_mismatch(&want, &saved).unwrap().contains("uids"));
        assert!(identity_mismatch(&want, &ids(4242, 100, &[4242]))
            .unwrap()
            .contains("gids"));
        assert!(identity_mismatch(&want, &ids(4242, 4242, &[]))
            .unwrap()
            .contains("groups"));
        assert!(identity_mismatch(&want, &ids(4242, 4242, &[0, 4242]))
            .unwrap()
            .contains("groups"));
        assert!(identity_mismatch(&envelope(0, 0, &[0]), &ids(0, 0, &[0]))
            .unwrap()
            .contains("root"));
        assert!(!ids(4242, 4242, &[]).has_root() && saved.has_root());
    }

    #[test]
    fn capabilities_must_all_be_clear() {
        let clean = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                     CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n\
                     CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        assert_eq!(capabilities_problem(clean), None);
        let eff = clean.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000080");
        assert!(capabilities_problem(&eff).unwrap().contains("CapEff=80"));
        let nnp = clean.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert!(capabilities_problem(&nnp).unwrap().contains("no_new_privs"));
        assert!(capabilities_problem("Name:\tx\n")
            .unwrap()
            .contains("cannot read"));
    }

    #[test]
    fn interpreting_replies() {
        let ok = ExitStatus::from_raw(0);
        let two = ExitStatus::from_raw(2 << 8);
        let done = br#"{"reply":"done","responses":[{"response":"unlocked","was_locked":true}]}"#;
        assert_eq!(
            interpret(ok, done, 1),
            Ok(vec![Response::Unlocked { was_locked: true }])
        );
        assert!(
            matches!(interpret(ok, done, 2), Err(Problem::Bad(m)) if m.contains("1 responses to 2"))
        );
        assert_eq!(interpret(two, done, 1), Err(Problem::Exited(two)));
        assert_eq!(interpret(two, b"", 1), Err(Problem::Exited(two)));
        assert!(matches!(interpret(ok, b"garbage", 1), Err(Problem::Bad(_))));
        let refused = br#"{"reply":"refused","message":"wrong ids"}"#;
        assert_eq!(
            interpret(two, refused, 1),
            Err(Problem::Refused("wrong ids".into()))
        );
    }

    #[test]
    fn owner_of_reads_the_directory_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(tmp.path()).unwrap();
        let owner = owner_of(tmp.path()).unwrap();
        assert_eq!((owner.uid, owner.gid), (meta.uid(), meta.gid()));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = owner_of(&link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(owner_of(&tmp.path().join("missing")).is_err());
    }
}
