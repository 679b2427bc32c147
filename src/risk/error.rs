//! Why an assessment could not be finished. The verdict carries the message
//! (an unfinished assessment is at risk: fail closed); the type lets a
//! caller of [`super::integration::integrated`] tell a git failure from a
//! surprise in git's output.

use crate::fd::ReadError;
use crate::git::GitError;
use std::fmt;
use std::io;
use std::num::ParseIntError;
use std::path::PathBuf;

/// Why git could not answer a question about a worktree or repository.
#[derive(Debug)]
#[non_exhaustive]
pub enum RiskError {
    /// A git command could not run, timed out, or failed.
    Git(GitError),
    /// A git command whose exit code is its answer gave none of the
    /// expected ones.
    Failed {
        /// The command after `git`, such as `merge-base`.
        what: &'static str,
        /// Where it ran.
        dir: PathBuf,
        /// Its exit code; `None` when a signal ended it.
        code: Option<i32>,
        /// git's own message.
        stderr: String,
    },
    /// A git dir (or common dir) could not be opened.
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// An operation's state file in the admin dir could not be looked for.
    State {
        /// The name looked for, such as `MERGE_HEAD`.
        name: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// The admin dir's `locked` file could not be read.
    Locked(ReadError),
    /// A file of the worktree could not be looked at.
    Worktree {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// git printed something the parser does not know: fail closed.
    Unexpected {
        /// The git command, such as `git status`.
        command: &'static str,
        /// What it printed that does not parse (a line, a record).
        what: &'static str,
        /// The text, as printed.
        text: String,
    },
    /// `git hash-object` gave a different number of hashes than files.
    HashCount {
        /// The hashes printed.
        hashes: usize,
        /// The files given.
        files: usize,
    },
    /// `git rev-list --count` printed something else than a count.
    Count(ParseIntError),
    /// A thread reading git's output panicked.
    ReaderPanicked,
}

impl fmt::Display for RiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskError::Git(e) => write!(f, "{e}"),
            RiskError::Failed {
                what,
                dir,
                code,
                stderr,
            } => {
                let status = code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"));
                write!(
                    f,
                    "git {what} in {} failed ({status}): {}",
                    dir.display(),
                    stderr.trim()
                )
            }
            RiskError::Open { path, source } => write!(f, "opening {}: {source}", path.display()),
            RiskError::State { name, source } => {
                write!(f, "looking for {name} in the admin dir: {source}")
            }
            RiskError::Locked(e) => write!(f, "reading the admin dir's locked file: {e}"),
            RiskError::Worktree { path, source } => write!(f, "{}: {source}", path.display()),
            RiskError::Unexpected {
                command,
                what,
                text,
            } => write!(f, "{command}: unexpected {what} {text:?}"),
            RiskError::HashCount { hashes, files } => {
                write!(f, "git hash-object: {hashes} hashes for {files} files")
            }
            RiskError::Count(e) => write!(f, "git rev-list --count: {e}"),
            RiskError::ReaderPanicked => f.write_str("a git reader panicked"),
        }
    }
}

impl RiskError {
    /// git's `command` printed `text`, a `what` that does not parse.
    pub(crate) fn unexpected(command: &'static str, what: &'static str, text: &[u8]) -> RiskError {
        RiskError::Unexpected {
            command,
            what,
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }
}

impl std::error::Error for RiskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RiskError::Git(e) => Some(e),
            RiskError::Open { source, .. } | RiskError::State { source, .. } => Some(source),
            RiskError::Locked(e) => Some(e),
            RiskError::Worktree { source, .. } => Some(source),
            RiskError::Count(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GitError> for RiskError {
    fn from(e: GitError) -> RiskError {
        RiskError::Git(e)
    }
}
