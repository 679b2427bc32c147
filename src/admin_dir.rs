//! What treeward writes into a worktree's admin dir
//! (`<common>/worktrees/<name>`): its `locked` file and its `gitdir`
//! back-link. Only on a verified [`Claim`], as the claim's owner, and only
//! relative to the admin dir's descriptor: a new file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (a planted name is never written
//! through), a replaced one is renamed into place.

use crate::claim::{Claim, Unclaimed};
use crate::fd::{self, ReadError};
use nix::errno::Errno;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// Why the admin dir's `locked` or `gitdir` file could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdminDirError {
    /// The admin dir no longer verifies as the claim's.
    Unclaimed(Unclaimed),
    /// Someone else's lock could not be read.
    ReadLock {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: ReadError,
    },
    /// The `locked` file could not be created or removed.
    Lock {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// The `gitdir` file could not be rewritten.
    Relocate {
        /// The admin dir.
        admin: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// A batch's writes could not be made durable (`fsync`): a lock may be
    /// in place, but nobody was told it holds.
    Sync {
        /// An admin dir on the filesystem that failed.
        admin: PathBuf,
        /// Why.
        source: nix::Error,
    },
}

impl fmt::Display for AdminDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminDirError::Unclaimed(e) => write!(f, "{e}"),
            AdminDirError::ReadLock { admin, source } => {
                write!(f, "{}/locked {source}", admin.display())
            }
            AdminDirError::Lock { admin, source } => {
                write!(f, "{}/locked: {source}", admin.display())
            }
            AdminDirError::Relocate { admin, source } => {
                write!(f, "rewriting {}/gitdir: {source}", admin.display())
            }
            AdminDirError::Sync { admin, source } => {
                write!(
                    f,
                    "making the writes in {} durable: {source}",
                    admin.display()
                )
            }
        }
    }
}

impl std::error::Error for AdminDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminDirError::Unclaimed(e) => Some(e),
            AdminDirError::ReadLock { source, .. } => Some(source),
            AdminDirError::Lock { source, .. }
            | AdminDirError::Relocate { source, .. }
            | AdminDirError::Sync { source, .. } => Some(source),
        }
    }
}

impl From<Unclaimed> for AdminDirError {
    fn from(e: Unclaimed) -> AdminDirError {
        AdminDirError::Unclaimed(e)
    }
}

/// The largest lock reason read back.
const MAX_REASON: u64 = 4096;

/// What locking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Locked now, by us, for the given reason.
    Taken,
    /// Someone had locked it already, for this reason (empty: none given).
    Held(String),
}

/// `git worktree lock --reason <reason>` for each `(claim, reason)`, in
/// order, as git does it: the `locked` file is the lock, and it is created
/// only if it does not exist. The writes of the whole batch are made
/// durable together (see [`Pending`]).
pub fn lock_all(claims: &[(&Claim, &str)]) -> Vec<Result<Lock, AdminDirError>> {
    let staged = claims
        .iter()
        .map(|(claim, reason)| {
            let admin = claim.open_admin()?;
            crate::fault::point("admin dir: before a lock");
            // Someone's lock already: theirs, untouched (an empty one is a
            // lock without a reason, as `git worktree lock` writes it).
            let held =
                fd::read_at(admin.as_fd(), OsStr::new("locked"), MAX_REASON).map_err(|source| {
                    AdminDirError::ReadLock {
                        admin: claim.admin().to_path_buf(),
                        source,
                    }
                })?;
            if let Some(held) = held {
                return Ok(Err(Lock::Held(reason_of(&held))));
            }
            Pending::stage(
                claim,
                admin,
                "locked",
                reason.as_bytes(),
                |admin, source| AdminDirError::Lock { admin, source },
            )
            .map(Ok)
        })
        .collect();
    durably(staged, |p| {
        match p.staged.place(p.admin.as_fd(), fd::Place::IfAbsent) {
            Ok(()) => {
                crate::fault::point("admin dir: after a lock");
                Ok(Lock::Taken)
            }
            // Locked by someone else between the look and the rename.
            Err(Errno::EEXIST) => fd::read_at(p.admin.as_fd(), OsStr::new("locked"), MAX_REASON)
                .map(|held| Lock::Held(reason_of(&held.unwrap_or_default())))
                .map_err(|source| AdminDirError::ReadLock {
                    admin: p.path.clone(),
                    source,
                }),
            Err(source) => Err(AdminDirError::Lock {
                admin: p.path.clone(),
                source,
            }),
        }
    })
}

/// A lock's reason as read back.
fn reason_of(held: &[u8]) -> String {
    String::from_utf8_lossy(held).trim_end().to_owned()
}

/// A `locked` or `gitdir` file written in full beside its place in an admin
/// dir, not yet in place. A batch stages all of its writes, makes them
/// durable together ([`fd::sync_files`]), places each by a rename, and
/// syncs again ([`durably`]): about one journal commit a batch instead of
/// one a worktree (the sweep holds up the service's start while it locks
/// and relocates), and a file is never seen, nor left by a crash, empty or half
/// written. A crash between staging and placing leaves an unused
/// `<name>.treeward.<pid>.<n>` in the admin dir, which nothing reads.
struct Pending {
    admin: OwnedFd,
    path: PathBuf,
    staged: fd::Staged,
}

impl Pending {
    /// Stages `bytes` as `name` of the claim's admin dir (`admin`, open),
    /// to be made durable with its batch; `failed` names what failed.
    fn stage(
        claim: &Claim,
        admin: OwnedFd,
        name: &str,
        bytes: &[u8],
        failed: fn(PathBuf, nix::Error) -> AdminDirError,
    ) -> Result<Pending, AdminDirError> {
        let path = claim.admin().to_path_buf();
        match fd::stage_at(
            admin.as_fd(),
            OsStr::new(name),
            bytes,
            fd::Durable::WithTheBatch,
        ) {
            Ok(staged) => Ok(Pending {
                admin,
                path,
                staged,
            }),
            Err(source) => Err(failed(path, source)),
        }
    }
}

/// Carries out a batch: `staged` holds, in order, an error, an answer
/// known without writing (`Err` of the inner result), or a [`Pending`]
/// write, which is made durable, placed with `place`, and made durable
/// again before its answer is given.
fn durably<T>(
    staged: Vec<Result<Result<Pending, T>, AdminDirError>>,
    place: impl Fn(&Pending) -> Result<T, AdminDirError>,
) -> Vec<Result<T, AdminDirError>> {
    let before = {
        let pending: Vec<&Pending> = staged
            .iter()
            .filter_map(|s| s.as_ref().ok()?.as_ref().ok())
            .collect();
        fd::sync_files(pending.iter().map(|p| p.staged.file()))
            .map_err(|(i, source)| (pending[i].path.clone(), source))
    };
    let mut answers = Vec::with_capacity(staged.len());
    let mut placed: Vec<(usize, Pending)> = Vec::new();
    for s in staged {
        let answer = match s {
            Err(e) => Err(e),
            Ok(Err(known)) => Ok(known),
            Ok(Ok(p)) => match &before {
                Err((admin, source)) => {
                    p.staged.discard(p.admin.as_fd());
                    Err(AdminDirError::Sync {
                        admin: admin.clone(),
                        source: *source,
                    })
                }
                Ok(()) => {
                    let answer = place(&p);
                    if answer.is_ok() {
                        placed.push((answers.len(), p));
                    }
                    answer
                }
            },
        };
        answers.push(answer);
    }
    // Placed: durable before the caller is told so.
    if let Err((i, source)) = fd::sync_files(placed.iter().map(|(_, p)| p.staged.file())) {
        for (j, _) in &placed {
            answers[*j] = Err(AdminDirError::Sync {
                admin: placed[i].1.path.clone(),
                source,
            });
        }
    }
    answers
}

/// `git worktree unlock`: removes the `locked` file; whether there was one.
pub fn unlock(claim: &Claim) -> Result<bool, AdminDirError> {
    let admin = claim.open_admin()?;
    match unlinkat(admin.as_fd(), "locked", UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(source) => Err(AdminDirError::Lock {
            admin: claim.admin().to_path_buf(),
            source,
        }),
    }
}

/// Points the admin entry's `gitdir` at where the worktree is now (after
/// the sweep renamed it into the trash, or back), so that it stays a valid
/// worktree of its repository. Atomic: a new file renamed into place. One
/// worktree: [`relocate_all`] of one.
pub fn relocate(claim: &Claim) -> Result<(), AdminDirError> {
    relocate_all(&[claim]).pop().expect("one answer a claim")
}

/// [`relocate`] for each claim, in order, with the writes of the whole
/// batch made durable together (see [`Pending`]).
pub fn relocate_all(claims: &[&Claim]) -> Vec<Result<(), AdminDirError>> {
    let staged = claims
        .iter()
        .map(|claim| {
            let admin = claim.open_admin()?;
            crate::fault::point("admin dir: before a relocation");
            let mut line = claim.entry().join(".git").into_os_string();
            line.push("\n");
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(line.as_os_str());
            Pending::stage(claim, admin, "gitdir", bytes, |admin, source| {
                AdminDirError::Relocate { admin, source }
            })
            .map(Ok)
        })
        .collect();
    durably(staged, |p| {
        p.staged
            .place(p.admin.as_fd(), fd::Place::Replace)
            .map_err(|source| AdminDirError::Relocate {
                admin: p.path.clone(),
                source,
            })
    })
}
