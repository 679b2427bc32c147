//! The git engine: every question about a repository's state, and every
//! change treeward makes to one, goes to the host's `git`.
//!
//! Why the host's git and not a library: git's formats move (reftable,
//! SHA-256, sparse index, split index, partial clones, the Git 3.0
//! defaults), and a second implementation lags them; the judge of what a
//! worktree holds is the program that wrote it. Whatever the host's git can
//! work with, treeward can; a format it does not know fails closed with
//! git's own message.
//!
//! Contract of every [`Git`] command:
//!
//! - It runs as the current user, and only when that user owns the
//!   repository ([`Git::new`] refuses otherwise with
//!   [`GitError::ForeignOwner`]): git reads its owner's configuration, and
//!   nobody else's configuration may run in treeward's name. Root reaches a
//!   user's repository through the owner worker (`as_owner`), never here.
//! - Its environment is fixed: nothing of the caller's (no `GIT_*`, no
//!   locale), a fixed `PATH`, the user's `HOME` from the account database,
//!   the C locale, no terminal prompt, no lazy fetch from a promisor remote
//!   and no transport at all (treeward never talks to a remote: a partial
//!   clone's missing object fails closed), replace refs ignored, no hooks,
//!   no fsmonitor (it may start a daemon), stdin empty unless given.
//! - [`Git::read_only`] adds `GIT_OPTIONAL_LOCKS=0`, so that `git status`
//!   does not refresh the index: the checker writes nothing.
//! - git dies with the thread that started it (`PR_SET_PDEATHSIG`): a
//!   worker killed at its deadline (git blocked on a FIFO the owner
//!   planted, say) leaves no git behind, holding the worktree in use.
//! - Every command has a deadline ([`DEFAULT_DEADLINE`], or the caller's
//!   budget: [`Git::deadline`]). git runs in a process group of its own;
//!   at the deadline the whole group (git and whatever it started) is
//!   killed and the command fails with [`GitError::TimedOut`]: a FIFO
//!   planted where git reads (a loose ref, `packed-refs`, a reflog) cannot
//!   block treeward, nor leave a git behind.
//! - A failure is a value holding the command and git's stderr; the exit
//!   status is never ignored unless the caller asks for it ([`Git::run`]).
//! - git holds no descriptor of treeward's but its stdin, stdout and
//!   stderr (and the trace2 pipe of [`Git::on_region`]), nor one treeward
//!   inherited; nothing of git's start copies treeward's memory, and a
//!   command costs no thread (see `process`).
//!
//! Git operations on a repository's branches live in [`branch`].

pub mod branch;
mod process;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long a git command may run unless its caller gives it another
/// budget ([`Git::deadline`]).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The `PATH` git runs with (and the owner worker).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The `HOME` of a uid without an account.
pub const NO_HOME: &str = "/nonexistent";

/// Configuration every command runs with, whatever the repository says.
const FIXED_CONFIG: &[&str] = &[
    // No hook of the repository's runs in treeward's name.
    "core.hooksPath=/dev/null",
    // The builtin fsmonitor starts a daemon that outlives the command.
    "core.fsmonitor=false",
    // Never talk to a remote; `file` stays for the local fetches of
    // submodule objects into the common repository (`git fetch <dir>`).
    "protocol.allow=never",
    "protocol.file.allow=always",
    // Never page, never colour: output is parsed.
    "core.pager=cat",
    "color.ui=false",
];

/// Why a git command failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GitError {
    /// The repository belongs to another user: running git there would run
    /// that user's configuration as the current one.
    ForeignOwner { owner: u32, euid: u32 },
    /// `git` could not be started (not installed, not executable).
    Spawn { command: String, source: io::Error },
    /// git ran and failed; `stderr` is git's own message.
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    /// git did not finish within its deadline (blocked on a FIFO, say): it
    /// was killed, with everything it started.
    TimedOut { command: String, after: Duration },
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitError::ForeignOwner { owner, euid } => write!(
                f,
                "the repository belongs to uid {owner}; uid {euid} does not run git with \
                 another user's configuration (run as root or as uid {owner})"
            ),
            GitError::Spawn { command, source } => write!(f, "cannot run {command}: {source}"),
            GitError::TimedOut { command, after } => write!(
                f,
                "{command} did not finish within {} s and was killed \
                 (something it reads may block: a FIFO?)",
                after.as_secs_f32()
            ),
            GitError::Failed {
                command,
                code,
                stderr,
            } => {
                let status = code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"));
                let stderr = stderr.trim();
                if stderr.is_empty() {
                    write!(f, "{command} failed ({status})")
                } else {
                    write!(f, "{command} failed ({status}): {stderr}")
                }
            }
        }
    }
}

impl std::error::Error for GitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GitError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a command that ran printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when a signal ended git.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One git command being built.
pub struct Git {
    /// After `git`.
    args: Vec<OsString>,
    /// The whole environment; a key set again replaces its value.
    env: Vec<(OsString, OsString)>,
    shown: Vec<String>,
    stdin: Option<Vec<u8>>,
    deadline: Duration,
    region: Option<Region>,
}

/// The descriptor git writes its trace2 events to when a [`Region`] is
/// watched (`GIT_TRACE2_EVENT` takes 2 to 9 for a descriptor).
const TRACE_FD: i32 = 9;

/// A trace2 region of a git command to be told about ([`Git::on_region`]).
struct Region {
    /// The event line's `"category":"…","label":"…"`, as git writes it.
    needle: String,
    reached: mpsc::SyncSender<()>,
}

impl Git {
    /// A git command working in `dir` (`git -C dir`), for a repository
    /// owned by `owner`. Refused unless the current user is `owner`.
    pub fn new(dir: &Path, owner: u32) -> Result<Git, GitError> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != owner {
            return Err(GitError::ForeignOwner { owner, euid });
        }
        // Nothing of the caller's environment: only what is set here.
        let mut env: Vec<(OsString, OsString)> = [
            ("PATH", OsString::from(PATH)),
            ("HOME", home(euid).into_os_string()),
            ("LC_ALL", "C".into()),
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_NO_LAZY_FETCH", "1".into()),
            ("GIT_NO_REPLACE_OBJECTS", "1".into()),
            ("GIT_PROTOCOL_FROM_USER", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), v))
        .collect();
        env.extend(inherited_log_variables());
        let mut args = vec![OsString::from("-C"), dir.as_os_str().to_owned()];
        for c in FIXED_CONFIG {
            args.extend([OsString::from("-c"), OsString::from(c)]);
        }
        Ok(Git {
            args,
            env,
            shown: vec!["git".to_owned(), "-C".to_owned(), dir.display().to_string()],
            stdin: None,
            deadline: DEFAULT_DEADLINE,
            region: None,
        })
    }

    /// Sends on `reached` when git enters the trace2 region `label` of
    /// `category` (read from git's event stream, `GIT_TRACE2_EVENT`, as it
    /// is written) and when git ends: a receiver never waits past the
    /// command, nor past a failure to start it. A moment to start other
    /// work, never a fact about the repository: a git that names its
    /// regions otherwise only signals at its end.
    pub fn on_region(mut self, category: &str, label: &str, reached: mpsc::SyncSender<()>) -> Git {
        self.region = Some(Region {
            needle: format!("\"category\":\"{category}\",\"label\":\"{label}\""),
            reached,
        });
        self
    }

    /// Gives the command `budget` instead of [`DEFAULT_DEADLINE`] (for the
    /// tests of the deadline itself).
    #[cfg(test)]
    pub fn deadline(mut self, budget: Duration) -> Git {
        self.deadline = budget;
        self
    }

    /// Asks git to take no optional lock (`git status` refreshes and writes
    /// the index otherwise).
    pub fn read_only(self) -> Git {
        self.env("GIT_OPTIONAL_LOCKS", "0")
    }

    /// Names the git dir and work tree explicitly (`GIT_DIR`,
    /// `GIT_WORK_TREE`): no discovery.
    pub fn git_dir(self, git_dir: &Path, work_tree: Option<&Path>) -> Git {
        let git = self.env("GIT_DIR", git_dir);
        match work_tree {
            Some(w) => git.env("GIT_WORK_TREE", w),
            None => git,
        }
    }

    /// Sets one environment variable (`GIT_INDEX_FILE`,
    /// `GIT_OBJECT_DIRECTORY`, …).
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Git {
        set_env(&mut self.env, key, value);
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Git {
        self.shown.push(arg.as_ref().to_string_lossy().into_owned());
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(self, args: I) -> Git
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Git::arg)
    }

    /// Feeds `input` to git's stdin.
    pub fn stdin(mut self, input: Vec<u8>) -> Git {
        self.stdin = Some(input);
        self
    }

    /// The command as a person would type it (for messages).
    pub fn shown(&self) -> String {
        self.shown.join(" ")
    }

    /// Runs git and returns its stdout; any exit but 0 is an error.
    pub fn output(self) -> Result<Vec<u8>, GitError> {
        let command = self.shown();
        let done = self.run()?;
        if done.code == Some(0) {
            Ok(done.stdout)
        } else {
            Err(GitError::Failed {
                command,
                code: done.code,
                stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
            })
        }
    }

    /// Runs git and returns how it ended, whatever the exit code (for the
    /// commands whose status is the answer, like `merge-base
    /// --is-ancestor`).
    pub fn run(self) -> Result<Finished, GitError> {
        let command = self.shown();
        let spawn_error = |source| GitError::Spawn {
            command: command.clone(),
            source,
        };
        let Git {
            args,
            mut env,
            stdin,
            deadline,
            region,
            ..
        } = self;
        let (mut watched, mut extra) = (None, None);
        if let Some(region) = region {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| spawn_error(e.into()))?;
            set_env(&mut env, "GIT_TRACE2_EVENT", TRACE_FD.to_string());
            set_env(&mut env, "GIT_TRACE2_EVENT_NESTING", "2");
            watched = Some((region, read));
            extra = Some((write, TRACE_FD));
        }
        crate::fault::point("git: before a command");
        let spawned = process::spawn(process::Spec {
            program: OsStr::new("git"),
            args: &args,
            env: &env,
            cwd: OsStr::new("/"),
            stdin: stdin.is_some(),
            extra,
        });
        // The write end is git's now (or nobody's). The watcher is not
        // waited for: something git started may hold the stream open past
        // git's end, so the end of git is signalled here too.
        let git_ended = watched.map(|(region, read)| {
            let ended = region.reached.clone();
            watch(read, region);
            ended
        });
        let ended = spawned
            .map_err(spawn_error)?
            .finish(stdin.unwrap_or_default(), deadline);
        if let Some(ended) = git_ended {
            // Full: the region's signal is still waiting to be taken.
            let _ = ended.try_send(());
        }
        crate::fault::point("git: after a command");
        let ended = ended.map_err(spawn_error);
        ended?.ok_or(GitError::TimedOut {
            command,
            after: deadline,
        })
    }
}

/// Sets `key` in `env`, in place of its value if it has one.
fn set_env(env: &mut Vec<(OsString, OsString)>, key: &str, value: impl AsRef<OsStr>) {
    let value = value.as_ref().to_owned();
    match env.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => env.push((key.into(), value)),
    }
}

/// Reads git's trace2 events to their end on a thread of its own, and
/// signals `region` at its first entry.
fn watch(read: std::os::fd::OwnedFd, region: Region) {
    std::thread::spawn(move || {
        let mut reached = Some(region.reached);
        let lines = io::BufRead::split(io::BufReader::new(std::fs::File::from(read)), b'\n');
        for line in lines {
            let Ok(line) = line else { break };
            let entered = line.starts_with(b"{\"event\":\"region_enter\"")
                && memchr::memmem::find(&line, region.needle.as_bytes()).is_some();
            if entered {
                if let Some(r) = reached.take() {
                    let _ = r.try_send(());
                }
            }
        }
    });
}

/// `HOME` for `uid`: its account's home, or [`NO_HOME`].
pub fn home(uid: u32) -> PathBuf {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| PathBuf::from(NO_HOME), |u| u.dir)
}

/// The logging variables git's own trace may use; nothing else passes.
fn inherited_log_variables() -> Vec<(OsString, OsString)> {
    ["GIT_TRACE2_EVENT"]
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

/// One record of `git ls-files -s -v -z`: `<tag> <mode> <oid>
/// <stage>\t<path>`, borrowed from git's output (no allocation per entry:
/// an index may hold millions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord<'a> {
    /// The `-v` tag: `H`, `S` (skip-worktree), lowercase when
    /// assume-unchanged, and so on.
    pub tag: u8,
    /// Octal, as git prints it (`100644`, `160000`).
    pub mode: &'a str,
    pub oid: &'a str,
    /// `0`, or the conflict stage.
    pub stage: &'a str,
    pub path: &'a [u8],
}

/// Pure: the one parser of `git ls-files -s -v -z`, one item per record;
/// `Err` with the raw record when it is not one (exactly four fields, a
/// one-byte tag, a tab before the path).
pub fn ls_files(out: &[u8]) -> impl Iterator<Item = Result<IndexRecord<'_>, &[u8]>> {
    // memchr: a listing of 100k entries is 6.7 MB; splitting it byte by
    // byte took 4 ms of the 8 the whole parse took, with memchr 1.5.
    // A last record without its NUL (a cut listing) is still a record.
    let mut rest = Some(out);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(0, r) {
            Some(end) => {
                rest = Some(&r[end + 1..]);
                Some(&r[..end])
            }
            None => rest.take(),
        }
    })
    .filter(|r| !r.is_empty())
    .map(|rec| ls_files_record(rec).ok_or(rec))
}

fn ls_files_record(rec: &[u8]) -> Option<IndexRecord<'_>> {
    let tab = memchr::memchr(b'\t', rec)?;
    let (meta, path) = (&rec[..tab], &rec[tab + 1..]);
    let mut f = meta.split(|b| *b == b' ');
    let (Some(&[tag]), Some(mode), Some(oid), Some(stage), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return None;
    };
    let text = |field| std::str::from_utf8(field).ok();
    Some(IndexRecord {
        tag,
        mode: text(mode)?,
        oid: text(oid)?,
        stage: text(stage)?,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_users_repository_is_refused_before_git_runs() {
        let euid = nix::unistd::geteuid().as_raw();
        let other = euid.wrapping_add(1);
        match Git::new(Path::new("/"), other) {
            Err(GitError::ForeignOwner { owner, euid: e }) => {
                assert_eq!((owner, e), (other, euid));
            }
            _ => panic!("a foreign owner must be refused"),
        }
    }

    #[test]
    fn the_callers_environment_does_not_reach_git() {
        let euid = nix::unistd::geteuid().as_raw();
        let git = Git::new(Path::new("/"), euid).unwrap();
        assert!(git
            .env
            .iter()
            .all(|(k, _)| !k.to_string_lossy().starts_with("GIT_DIR")));
        assert!(git.env.iter().any(|(k, v)| *k == "LC_ALL" && *v == "C"));
    }

    /// The processes whose command line mentions `needle`.
    fn processes_naming(needle: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(needle))
            .collect()
    }

    #[test]
    fn a_git_blocked_on_a_fifo_is_killed_at_its_deadline() {
        let euid = nix::unistd::geteuid().as_raw();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("treeward-git-deadline-fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let hash = |path: &Path| {
            Git::new(dir.path(), euid)
                .unwrap()
                .args(["hash-object", "--no-filters"])
                .arg(path)
                .deadline(Duration::from_millis(300))
                .output()
        };
        let started = std::time::Instant::now();
        match hash(&fifo) {
            Err(GitError::TimedOut { command, .. }) => assert!(command.contains("hash-object")),
            other => panic!("not timed out: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            processes_naming("treeward-git-deadline-fifo"),
            Vec::<String>::new()
        );
        // Control: a regular file is hashed well within the same deadline.
        let file = dir.path().join("file");
        std::fs::write(&file, "x\n").unwrap();
        assert!(hash(&file).is_ok());
    }

    /// `git status` in a repository whose `sub/.gitignore` is a FIFO:
    /// git blocks opening it, inside its "untracked" region, until its
    /// deadline. Returns what `reached` got within a second, while git was
    /// blocked, and what it got once git was killed.
    fn region_signals(label: &str) -> (bool, bool) {
        let euid = nix::unistd::geteuid().as_raw();
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| Git::new(dir.path(), euid).unwrap().args(args).output();
        git(&["init", "-q"]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/new"), "x\n").unwrap();
        let fifo = dir.path().join("sub/.gitignore");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (reached, signal) = mpsc::sync_channel(1);
        let status = Git::new(dir.path(), euid)
            .unwrap()
            .args(["status", "--porcelain", "-uall"])
            .on_region("status", label, reached)
            .deadline(Duration::from_secs(3));
        let running = std::thread::spawn(move || status.output());
        let during = signal.recv_timeout(Duration::from_secs(1)).is_ok();
        assert!(matches!(
            running.join().unwrap(),
            Err(GitError::TimedOut { .. })
        ));
        (
            during,
            during || signal.recv_timeout(Duration::from_secs(1)).is_ok(),
        )
    }

    #[test]
    fn a_region_is_signalled_while_git_is_in_it_and_any_region_at_the_end() {
        assert_eq!(region_signals("untracked"), (true, true));
        // Control: a region git never enters is signalled at git's end only.
        assert_eq!(region_signals("treeward-no-such-region"), (false, true));
    }

    #[test]
    fn a_git_that_cannot_start_still_signals() {
        let euid = nix::unistd::geteuid().as_raw();
        let (reached, signal) = mpsc::sync_channel(1);
        let git = Git::new(Path::new("/"), euid)
            .unwrap()
            .on_region("status", "untracked", reached)
            .env("PATH", "/nonexistent");
        assert!(matches!(git.output(), Err(GitError::Spawn { .. })));
        // Every sender is gone: a receiver returns at once.
        assert!(signal.recv_timeout(Duration::from_secs(5)).is_err());
    }

    #[test]
    fn a_failure_carries_gits_message() {
        let euid = nix::unistd::geteuid().as_raw();
        let dir = std::env::temp_dir();
        let e = Git::new(&dir, euid)
            .unwrap()
            .args([
                "rev-parse",
                "--verify",
                "refs/heads/treeward-no-such-ref-here",
            ])
            .env("GIT_DIR", "/nonexistent/treeward")
            .output()
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("rev-parse"), "{text}");
        assert!(text.contains("failed"), "{text}");
    }
}
