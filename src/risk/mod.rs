//! Risk assessment: what removing one worktree would lose.
//!
//! Read-only by construction: the repository is opened through libgit2 (which
//! runs no hooks, filters or fsmonitor commands, so reading another user's
//! repository as root executes nothing of theirs), the index is never
//! refreshed, the integration test merges in memory (see `branch`), and an
//! in-memory object backend sits in front of the object database as a
//! second guard: should any libgit2 call want to write an object, it lands in
//! memory. Any git error is reported as the reason `error` with its
//! text: at risk, because nothing was proven (fail closed).

pub mod branch;
mod changes;
mod locate;
pub mod reach;
mod verdict;

pub use locate::{locate, Location};
pub use verdict::{reasons, BranchFacts, Changes, Facts, Reason};

use git2::{Repository, RepositoryOpenFlags, WorktreeLockStatus};
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Allows libgit2 to open repositories owned by other users.
///
/// git refuses such repositories (`safe.directory`) because *git* may run
/// commands named in their config; treeward only reads them through libgit2,
/// which never does, and reports the owner instead. Call it once at start,
/// before any thread uses libgit2.
pub fn allow_foreign_owners() -> Result<(), git2::Error> {
    // SAFETY: a process-wide libgit2 option; called before other threads
    // use libgit2 (documented above).
    unsafe { git2::opts::set_verify_owner_validation(false) }
}

/// What kind of thing was assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    LinkedWorktree,
    MainWorktree,
    Broken,
    NotAWorktree,
    Symlink,
    Missing,
}

/// The upstream of a branch and how far the branch is ahead of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub name: String,
    pub ahead: usize,
}

/// Everything the checker knows about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub path: PathBuf,
    pub kind: Kind,
    /// The common git dir.
    pub repository: Option<PathBuf>,
    /// The worktree's admin name under `<repository>/worktrees/`.
    pub worktree_name: Option<String>,
    /// The uid owning the repository.
    pub repository_owner: Option<u32>,
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    pub head: Option<String>,
    pub at_risk: bool,
    pub reasons: Vec<Reason>,
    pub changes: Changes,
    pub upstream: Option<Upstream>,
    pub default_branch: Option<String>,
    /// Whether the branch is integrated into the default branch; `None` when
    /// detached or there is no default branch.
    pub integrated: Option<bool>,
    pub detached_unreachable: usize,
    pub worktree_refs: Vec<String>,
    pub locked: bool,
    pub lock_reason: Option<String>,
    /// Stash entries: noted, not at risk (they live in the common dir).
    pub stashes: usize,
    pub error: Option<String>,
}

impl Assessment {
    fn new(path: &Path, kind: Kind) -> Assessment {
        Assessment {
            path: path.to_path_buf(),
            kind,
            repository: None,
            worktree_name: None,
            repository_owner: None,
            branch: None,
            head: None,
            at_risk: false,
            reasons: Vec::new(),
            changes: Changes::default(),
            upstream: None,
            default_branch: None,
            integrated: None,
            detached_unreachable: 0,
            worktree_refs: Vec::new(),
            locked: false,
            lock_reason: None,
            stashes: 0,
            error: None,
        }
    }

    fn flag(&mut self, reason: Reason) {
        self.at_risk = true;
        self.reasons.push(reason);
    }
}

impl Location {
    /// The kind of thing it is, in the checker's vocabulary.
    pub fn kind(&self) -> Kind {
        match self {
            Location::Missing => Kind::Missing,
            Location::Symlink => Kind::Symlink,
            Location::NotADirectory | Location::Plain { .. } => Kind::NotAWorktree,
            Location::Main { .. } => Kind::MainWorktree,
            Location::Linked { .. } => Kind::LinkedWorktree,
            Location::Broken { .. } => Kind::Broken,
        }
    }

    /// Whether assessing it opens a repository (a main or linked
    /// worktree); everything else is judged from the filesystem alone.
    pub fn holds_repository(&self) -> bool {
        matches!(self, Location::Main { .. } | Location::Linked { .. })
    }
}

/// Assesses the worktree (or whatever else) at `path`. Never fails: every
/// problem becomes part of the verdict.
pub fn assess(path: &Path) -> Assessment {
    assess_located(path, locate(path))
}

/// The verdict on a worktree that holds a repository but was not assessed
/// because nothing vouched for it (see `claim`): at risk, with why, never a
/// silent pass (fail closed).
pub fn unassessed(path: &Path, kind: Kind, why: String) -> Assessment {
    let mut a = Assessment::new(path, kind);
    a.error = Some(why);
    a.flag(Reason::Error);
    if kind == Kind::MainWorktree {
        a.flag(Reason::MainWorktree);
    }
    a.reasons.sort();
    a
}

/// [`assess`] of a path already located: a repository is opened (with
/// libgit2) only when `location` [holds one](Location::holds_repository).
pub fn assess_located(path: &Path, location: Location) -> Assessment {
    match location {
        Location::Missing => {
            let mut a = Assessment::new(path, Kind::Missing);
            a.error = Some(format!("{}: no such file or directory", path.display()));
            a
        }
        Location::Symlink => Assessment::new(path, Kind::Symlink),
        Location::NotADirectory => flagged(path, Kind::NotAWorktree, Reason::NotAWorktree),
        Location::Plain { empty: true } => Assessment::new(path, Kind::NotAWorktree),
        Location::Plain { empty: false } => flagged(path, Kind::NotAWorktree, Reason::NotAWorktree),
        Location::Broken { why } => {
            let mut a = flagged(path, Kind::Broken, Reason::Broken);
            a.error = Some(why);
            a
        }
        Location::Main { common } => assess_repository(path, Kind::MainWorktree, &common, None),
        Location::Linked { common, name, .. } => {
            assess_repository(path, Kind::LinkedWorktree, &common, Some(name))
        }
    }
}

fn flagged(path: &Path, kind: Kind, reason: Reason) -> Assessment {
    let mut a = Assessment::new(path, kind);
    a.flag(reason);
    a
}

fn assess_repository(path: &Path, kind: Kind, common: &Path, name: Option<String>) -> Assessment {
    let mut a = Assessment::new(path, kind);
    a.repository = Some(common.to_path_buf());
    a.repository_owner = std::fs::metadata(common).ok().map(|m| m.uid());
    a.worktree_name = name;
    if let Err(e) = inspect(&mut a, common) {
        a.error = Some(e.message().to_owned());
        a.flag(Reason::Error);
    }
    if kind == Kind::MainWorktree {
        a.flag(Reason::MainWorktree);
    }
    a.reasons.sort();
    a.reasons.dedup();
    a
}

/// Opens the repository at a worktree path for reading only: no search
/// upwards (a directory inside another repository is not that repository's
/// worktree), and writes to the object database go to memory.
fn open_read_only(path: &Path) -> Result<Repository, git2::Error> {
    let repo = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )?;
    repo.odb()?.add_new_mempack_backend(1000)?;
    Ok(repo)
}

/// Stash entries, counted from the stash's reflog file: libgit2's reflog
/// reader creates the file when it is missing, and the checker writes
/// nothing. Read relative to the common dir's descriptor, never through a
/// symlink, never blocking on a FIFO, capped (anything else counts none).
fn stash_entries(common: &Path) -> usize {
    crate::fd::open_path_trusted(common)
        .ok()
        .and_then(|dir| {
            crate::fd::read_below(dir.as_fd(), "logs/refs/stash", MAX_STASH_LOG)
                .ok()
                .flatten()
        })
        .map(|log| log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

/// The largest stash reflog read (some 100,000 entries).
const MAX_STASH_LOG: u64 = 32 << 20;

/// Gathers the facts from git and turns them into the verdict.
fn inspect(a: &mut Assessment, common: &Path) -> Result<(), git2::Error> {
    let repo = open_read_only(&a.path)?;
    if repo.is_worktree() {
        let wt = git2::Worktree::open_from_repository(&repo)?;
        if let WorktreeLockStatus::Locked(reason) = wt.is_locked()? {
            a.locked = true;
            a.lock_reason = reason
                .map(|r| r.trim_end().to_owned())
                .filter(|r| !r.is_empty());
        }
    }
    a.stashes = stash_entries(common);

    let mut facts = Facts {
        changes: changes::count(&repo)?,
        ..Facts::default()
    };
    a.changes = facts.changes;

    let head_ref = match repo.head() {
        Ok(h) => Some(h),
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => None,
        Err(e) => return Err(e),
    };
    let head = head_ref.as_ref().and_then(|h| h.target());
    a.head = head.map(|o| o.to_string());
    let default = branch::default_branch(&repo);
    a.default_branch = default.as_ref().map(|(n, _)| n.clone());

    if repo.head_detached()? {
        if let Some(head) = head {
            facts.detached_unreachable =
                reach::unreachable_from_head(&repo, head, common, a.worktree_name.as_deref())?;
        }
    } else if let (Some(h), Some(tip)) = (&head_ref, head) {
        let name = h.shorthand().unwrap_or_default().to_owned();
        a.integrated = match &default {
            Some((_, d)) => Some(branch::integrated(&repo, tip, *d)?),
            None => None,
        };
        let upstream = branch::ahead_of_upstream(&repo, &name, tip)?;
        facts.branch = Some(BranchFacts {
            integrated: a.integrated,
            ahead_of_upstream: upstream.as_ref().map(|u| u.1),
        });
        a.upstream = upstream.map(|(name, ahead)| Upstream { name, ahead });
        a.branch = Some(name);
    } else {
        // Unborn branch: no commits to lose, only uncommitted files.
        let head = repo.find_reference("HEAD")?;
        a.branch = head
            .symbolic_target()?
            .map(|t| t.trim_start_matches("refs/heads/").to_owned());
    }
    a.detached_unreachable = facts.detached_unreachable;
    a.worktree_refs = reach::worktree_refs(&repo)?;
    facts.worktree_refs = a.worktree_refs.len();
    for reason in reasons(&facts) {
        a.flag(reason);
    }
    Ok(())
}
