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
//! - A failure is a value holding the command and git's stderr; the exit
//!   status is never ignored unless the caller asks for it ([`Git::run`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    cmd: Command,
    shown: Vec<String>,
    stdin: Option<Vec<u8>>,
}

impl Git {
    /// A git command working in `dir` (`git -C dir`), for a repository
    /// owned by `owner`. Refused unless the current user is `owner`.
    pub fn new(dir: &Path, owner: u32) -> Result<Git, GitError> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != owner {
            return Err(GitError::ForeignOwner { owner, euid });
        }
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env("PATH", PATH)
            .env("HOME", home(euid))
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_LAZY_FETCH", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in inherited_log_variables() {
            cmd.env(key, value);
        }
        let parent = nix::unistd::getpid();
        // SAFETY: only async-signal-safe calls (prctl, getppid) between
        // fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The parent died before the line above: nobody waits.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
        cmd.arg("-C").arg(dir);
        for c in FIXED_CONFIG {
            cmd.args(["-c", c]);
        }
        Ok(Git {
            cmd,
            shown: vec!["git".to_owned(), "-C".to_owned(), dir.display().to_string()],
            stdin: None,
        })
    }

    /// Asks git to take no optional lock (`git status` refreshes and writes
    /// the index otherwise).
    pub fn read_only(mut self) -> Git {
        self.cmd.env("GIT_OPTIONAL_LOCKS", "0");
        self
    }

    /// Names the git dir and work tree explicitly (`GIT_DIR`,
    /// `GIT_WORK_TREE`): no discovery.
    pub fn git_dir(mut self, git_dir: &Path, work_tree: Option<&Path>) -> Git {
        self.cmd.env("GIT_DIR", git_dir);
        if let Some(w) = work_tree {
            self.cmd.env("GIT_WORK_TREE", w);
        }
        self
    }

    /// Sets one environment variable (`GIT_INDEX_FILE`,
    /// `GIT_OBJECT_DIRECTORY`, …).
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Git {
        self.cmd.env(key, value);
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Git {
        self.shown.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
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
    pub fn run(mut self) -> Result<Finished, GitError> {
        let command = self.shown();
        let spawn_error = |source| GitError::Spawn {
            command: command.clone(),
            source,
        };
        if self.stdin.is_some() {
            self.cmd.stdin(Stdio::piped());
        }
        crate::fault::point("git: before a command");
        let mut child = self.cmd.spawn().map_err(spawn_error)?;
        // Writing stdin while git fills its stdout pipe would deadlock on a
        // large input: the writer gets its own thread.
        let writer = match (self.stdin.take(), child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                Some(std::thread::spawn(move || pipe.write_all(&input)))
            }
            _ => None,
        };
        let mut stderr_pipe = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = stderr_pipe.as_mut() {
                // Best effort: git's message only decorates the error.
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut stdout).map_err(spawn_error)?;
        }
        let status = child.wait().map_err(spawn_error)?;
        crate::fault::point("git: after a command");
        let stderr = reader.join().unwrap_or_default();
        if let Some(w) = writer {
            // git may exit before reading all of its input (an error): its
            // status says what happened, so a broken pipe here is not news.
            let _ = w.join();
        }
        Ok(Finished {
            code: status.code(),
            stdout,
            stderr,
        })
    }
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
        let envs: Vec<_> = git.cmd.get_envs().collect();
        assert!(envs
            .iter()
            .all(|(k, _)| !k.to_string_lossy().starts_with("GIT_DIR")));
        assert!(envs
            .iter()
            .any(|(k, v)| *k == "LC_ALL" && *v == Some(OsStr::new("C"))));
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
