//! Risk assessment: what removing one worktree would lose.
//!
//! The judge is the host's `git` (see [`crate::git`]), run as the
//! repository's owner with a fixed environment: whatever repository git can
//! work with (reftable, SHA-256, sparse index, split index, partial clones),
//! treeward can assess, and a format git does not know fails closed with
//! git's message. Per worktree, three git processes run at once:
//! `git status` (changes, HEAD, branch, upstream, stash, submodules), `git
//! ls-files` (edits hidden by skip-worktree and assume-unchanged, gitlinks)
//! and `git for-each-ref` (per-worktree refs, the default branch); more only
//! where the answer needs it (a detached HEAD, a branch not trivially
//! integrated, a flagged file present, a submodule). The admin dir's own
//! files (lock, operation in progress) are read relative to its descriptor.
//!
//! Read-only by construction: optional locks are off (`git status` never
//! refreshes the index), and no command that writes objects runs (the
//! integration test asks plumbing that prints, see [`integration`]). Any git error is the reason
//! `error` with git's message: at risk, because nothing was proven (fail
//! closed).

mod error;
mod index;
pub mod integration;
mod locate;
pub mod refs;
mod state;
mod status;
mod verdict;

pub use error::RiskError;
pub use integration::{How, Integration};
pub use locate::{discover, locate, Location};
pub use verdict::{reasons, BranchFacts, Changes, Facts, Reason};

use crate::git::{Finished, Git};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What kind of thing was assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A linked worktree (`git worktree add`) whose repository is there.
    LinkedWorktree,
    /// A repository's main worktree: never removed.
    MainWorktree,
    /// A worktree whose repository or admin dir is gone or does not name it.
    Broken,
    /// A directory (or file) that holds no worktree.
    NotAWorktree,
    /// A symlink: never followed, only the link itself is removed.
    Symlink,
    /// Nothing at the path.
    Missing,
}

/// The upstream of a branch and how far the branch is ahead of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The upstream's short name (`origin/main`).
    pub name: String,
    /// Commits on the branch that the upstream lacks.
    pub ahead: usize,
}

/// Everything the checker knows about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The path assessed (the worktree's top directory).
    pub path: PathBuf,
    /// What is there.
    pub kind: Kind,
    /// The common git dir.
    pub repository: Option<PathBuf>,
    /// The worktree's admin name under `<repository>/worktrees/`.
    pub worktree_name: Option<String>,
    /// The uid owning the repository.
    pub repository_owner: Option<u32>,
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The commit HEAD names, when there is one.
    pub head: Option<String>,
    /// Whether removing the worktree would lose work (the reasons say what).
    pub at_risk: bool,
    /// What would be lost, one reason per kind of work.
    pub reasons: Vec<Reason>,
    /// Counts of uncommitted changes by kind.
    pub changes: Changes,
    /// The branch's upstream and how far the branch is ahead of it.
    pub upstream: Option<Upstream>,
    /// The repository's default branch (short name), when known.
    pub default_branch: Option<String>,
    /// Whether the branch is integrated into the default branch; `None` when
    /// detached or there is no default branch.
    pub integrated: Option<bool>,
    /// Into which target and how, when integrated.
    pub integration: Option<Integration>,
    /// The branches integration was measured against (short names).
    pub integration_targets: Vec<String>,
    /// Commits of a detached HEAD that no branch or tag reaches.
    pub detached_unreachable: usize,
    /// Per-worktree refs (`refs/worktree/*`, `refs/bisect/*`,
    /// `refs/rewritten/*`): they die with the worktree.
    pub worktree_refs: Vec<String>,
    /// Operations in progress (`merge`, `rebase`, `cherry-pick`, `revert`,
    /// `bisect`, `sequencer`).
    pub in_progress: Vec<String>,
    /// Submodules and embedded repositories (paths inside the worktree)
    /// holding uncommitted changes or commits none of their remote-tracking
    /// refs reaches.
    pub submodules: Vec<String>,
    /// Whether the worktree is locked (`git worktree lock`).
    pub locked: bool,
    /// The lock's reason, when it gives one.
    pub lock_reason: Option<String>,
    /// Stash entries: noted, not at risk (they live in the common dir).
    pub stashes: usize,
    /// Why the worktree could not be fully assessed (it is then at risk).
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
            integration: None,
            integration_targets: Vec::new(),
            detached_unreachable: 0,
            worktree_refs: Vec::new(),
            in_progress: Vec::new(),
            submodules: Vec::new(),
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

impl Kind {
    /// What it is, in words.
    pub fn words(self) -> &'static str {
        match self {
            Kind::LinkedWorktree => "a linked worktree",
            Kind::MainWorktree => "a main worktree",
            Kind::Broken => "a broken worktree",
            Kind::NotAWorktree => "not a worktree",
            Kind::Symlink => "a symlink",
            Kind::Missing => "missing",
        }
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

    /// Whether assessing it runs git (a main or linked worktree);
    /// everything else is judged from the filesystem alone.
    pub fn holds_repository(&self) -> bool {
        matches!(self, Location::Main { .. } | Location::Linked { .. })
    }
}

/// Where git runs for one repository, and as whom: every command is built
/// by [`Repo::git`], read-only, as `owner` (refused with a clear error when
/// this process is not `owner`, see [`Git::new`]).
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    /// The git dir and work tree named explicitly (`GIT_DIR`,
    /// `GIT_WORK_TREE`): no discovery.
    git_dir: Option<PathBuf>,
    owner: u32,
}

impl Repo {
    /// The worktree `dir`, whose git dir is `git_dir` (the admin dir of a
    /// linked worktree, the repository of a main one), owned by `owner`.
    pub fn worktree(dir: &Path, git_dir: &Path, owner: u32) -> Repo {
        Repo {
            dir: dir.to_path_buf(),
            git_dir: Some(git_dir.to_path_buf()),
            owner,
        }
    }

    /// The repository whose common git dir is `common` (no work tree), owned
    /// by `owner`: for questions about refs and commits only.
    pub fn common(common: &Path, owner: u32) -> Repo {
        Repo {
            dir: common.to_path_buf(),
            git_dir: Some(common.to_path_buf()),
            owner,
        }
    }

    /// A repository found by git from `dir` (a submodule or embedded
    /// repository inside a worktree), and only there: discovery stops at
    /// `dir` (`GIT_CEILING_DIRECTORIES`), so a broken `.git` there is an
    /// error, never the worktree's own repository answering instead.
    fn nested(dir: &Path, owner: u32) -> Repo {
        Repo {
            dir: dir.to_path_buf(),
            git_dir: None,
            owner,
        }
    }

    /// A read-only git command in this repository.
    pub fn git(&self) -> Result<Git, RiskError> {
        let git = Git::new(&self.dir, self.owner)?.read_only();
        Ok(match &self.git_dir {
            // A repository without a work tree (`Repo::common`).
            Some(g) if *g == self.dir => git.git_dir(g, None),
            Some(g) => git.git_dir(g, Some(&self.dir)),
            None => match self.dir.parent() {
                Some(above) => git.env("GIT_CEILING_DIRECTORIES", above),
                None => git,
            },
        })
    }

    /// Runs `git` and returns its stdout; a failure is git's message.
    fn output(&self, git: Git) -> Result<Vec<u8>, RiskError> {
        Ok(git.output()?)
    }

    /// Runs `git` whatever its exit code (for commands whose status is the
    /// answer).
    fn run(&self, git: Git) -> Result<Finished, RiskError> {
        Ok(git.run()?)
    }

    /// The error for a command that [`Repo::run`] ran and that failed.
    fn failed(&self, what: &'static str, done: Finished) -> RiskError {
        RiskError::Failed {
            what,
            dir: self.dir.clone(),
            code: done.code,
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        }
    }
}

/// Assesses the worktree (or whatever else) at `path`. Never fails: every
/// problem becomes part of the verdict.
#[cfg(any(test, feature = "internals"))]
pub fn assess(path: &Path) -> Assessment {
    located(path, locate(path), None).0
}

/// Assesses the worktree (or whatever else) at `path`, as `assess` does,
/// and returns the refs git listed for it too (none when it holds no
/// repository, or git failed before listing them): what its reclaim asks
/// next of the same refs needs no second listing. The repository's shared
/// refs come from `shared` when the worktree has no ref of its own (see
/// [`worktree_refs`]).
pub fn assess_listing_refs(path: &Path, shared: &refs::SharedRefs) -> (Assessment, refs::Refs) {
    located(path, locate(path), Some(shared))
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

/// The assessment of a path already located: git runs only when `location`
/// [holds a repository](Location::holds_repository).
pub fn assess_located(path: &Path, location: Location) -> Assessment {
    located(path, location, None).0
}

/// [`assess_located`], with the refs git listed.
fn located(
    path: &Path,
    location: Location,
    shared: Option<&refs::SharedRefs>,
) -> (Assessment, refs::Refs) {
    let alone = |a: Assessment| (a, refs::Refs::default());
    match location {
        Location::Missing => {
            let mut a = Assessment::new(path, Kind::Missing);
            a.error = Some(format!("{}: no such file or directory", path.display()));
            alone(a)
        }
        Location::Symlink => alone(Assessment::new(path, Kind::Symlink)),
        Location::NotADirectory => alone(flagged(path, Kind::NotAWorktree, Reason::NotAWorktree)),
        Location::Plain { empty: true } => alone(Assessment::new(path, Kind::NotAWorktree)),
        Location::Plain { empty: false } => {
            alone(flagged(path, Kind::NotAWorktree, Reason::NotAWorktree))
        }
        Location::Broken { why } => {
            let mut a = flagged(path, Kind::Broken, Reason::Broken);
            a.error = Some(why);
            alone(a)
        }
        Location::Main { common } => {
            assess_repository(path, Kind::MainWorktree, (&common, &common), None, shared)
        }
        Location::Linked {
            gitdir,
            common,
            name,
        } => assess_repository(
            path,
            Kind::LinkedWorktree,
            (&gitdir, &common),
            Some(name),
            shared,
        ),
    }
}

fn flagged(path: &Path, kind: Kind, reason: Reason) -> Assessment {
    let mut a = Assessment::new(path, kind);
    a.flag(reason);
    a
}

/// `dirs`: the worktree's git dir and the repository's common dir.
fn assess_repository(
    path: &Path,
    kind: Kind,
    (gitdir, common): (&Path, &Path),
    name: Option<String>,
    shared: Option<&refs::SharedRefs>,
) -> (Assessment, refs::Refs) {
    let mut a = Assessment::new(path, kind);
    a.repository = Some(common.to_path_buf());
    a.worktree_name = name;
    let mut listed = refs::Refs::default();
    match std::fs::metadata(common) {
        Ok(m) => {
            a.repository_owner = Some(m.uid());
            let repo = Repo::worktree(path, gitdir, m.uid());
            match inspect(&mut a, &repo, (gitdir, common), shared) {
                Ok(refs) => listed = refs,
                Err(e) => {
                    a.error = Some(e.to_string());
                    a.flag(Reason::Error);
                }
            }
        }
        Err(e) => {
            a.error = Some(format!("{}: {e}", common.display()));
            a.flag(Reason::Error);
        }
    }
    if kind == Kind::MainWorktree {
        a.flag(Reason::MainWorktree);
    }
    a.reasons.sort();
    a.reasons.dedup();
    (a, listed)
}

/// The size of index file from which `git ls-files` and the refs wait for
/// `git status`'s untracked walk (see [`inspect`]). A smaller index is
/// stat'ed in a moment, and the wait costs more than it saves: git's
/// trace2 events on a pipe, a thread to read them, and `git status` alone
/// for most of its run. Reaping 100 orphans of 20 files (a 1.7 kB index)
/// took 629 ms starting all three at once, 923 ms waiting (medians of 12).
/// Set between the sizes measured: 1.7 kB and 8 MB (100k files).
const SMALL_INDEX: i64 = 256 * 1024;

/// `git status` as the checker runs it.
const STATUS: [&str; 6] = [
    "status",
    "--porcelain=v2",
    "-z",
    "--branch",
    "--untracked-files=all",
    "--ignore-submodules=none",
];

/// Gathers the facts from git and turns them into the verdict; returns the
/// refs it listed.
fn inspect(
    a: &mut Assessment,
    repo: &Repo,
    (gitdir, common): (&Path, &Path),
    shared: Option<&refs::SharedRefs>,
) -> Result<refs::Refs, RiskError> {
    let admin = crate::fd::open_path_trusted(gitdir).map_err(|source| RiskError::Open {
        path: gitdir.to_path_buf(),
        source,
    })?;
    if a.kind == Kind::LinkedWorktree {
        if let Some(reason) = state::locked(admin.as_fd())? {
            a.locked = true;
            a.lock_reason = reason;
        }
    }
    a.in_progress = state::in_progress(admin.as_fd())?;
    // With reftable, CHERRY_PICK_HEAD and REVERT_HEAD are refs in the
    // table, not files: only git can say whether they exist.
    let in_a_table = state::refs_in_a_table(admin.as_fd());
    if in_a_table {
        for (name, op) in state::ROOT_REF_OPERATIONS {
            let found = repo
                .git()?
                .args(["rev-parse", "-q", "--verify", "--end-of-options", name])
                .run()?;
            if found.code == Some(0) && !a.in_progress.iter().any(|o| o == op) {
                a.in_progress.push(op.to_owned());
            }
        }
    }

    // A worktree with refs of its own lists all it sees itself.
    let shared = shared.filter(|_| !in_a_table && state::no_own_refs(admin.as_fd()));
    // The three listings overlap, each parsed as soon as it is read, so the
    // whole costs about what `git status` alone does. On a large index
    // ([`SMALL_INDEX`]), `git ls-files` and the refs start when `git
    // status` enters its walk for untracked files, which keeps one core
    // busy, not beside its stat of every entry, which keeps all of them
    // busy: on 2 cores and 100k files, check took 197.1 ms this way and
    // 209.9 ms with all three started at once (paired medians of 100; `git
    // status` plus `git rev-list` took 186.2). Only the timing depends on
    // the size read here (a split index's shared part is not counted).
    let walk_first = crate::fd::stat_at(admin.as_fd(), OsStr::new("index"))
        .ok()
        .flatten()
        .is_some_and(|st| st.st_size >= SMALL_INDEX);
    let (untracked, listing) = std::sync::mpsc::sync_channel(1);
    let (status, index, refs) = std::thread::scope(|s| {
        let status = s.spawn(|| {
            let git = repo.git()?.args(STATUS);
            let git = if walk_first {
                git.on_region("status", "untracked", untracked)
            } else {
                let _ = untracked.send(());
                git
            };
            status::parse(&repo.output(git)?)
        });
        let later = s.spawn(move || {
            let _ = listing.recv();
            let refs = s.spawn(move || worktree_refs(repo, common, shared));
            let index = repo
                .git()
                .and_then(|git| repo.output(git.args(["ls-files", "-v", "-s", "-z"])))
                .and_then(|listed| index::parse(&listed));
            (index, join(refs))
        });
        let status = join(status);
        let (index, refs) = later
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (status, index, refs)
    });
    let (status, index, refs) = (status?, index?, refs?);

    let mut facts = Facts {
        changes: status.changes,
        in_progress: a.in_progress.len(),
        ..Facts::default()
    };
    hidden_edits(repo, &index.flagged, &mut facts.changes)?;
    a.changes = facts.changes;
    a.stashes = stash_entries(repo, common, &refs)?;
    a.head.clone_from(&status.head);
    a.worktree_refs = refs.per_worktree();
    facts.worktree_refs = a.worktree_refs.len();
    a.submodules = submodules(repo, &status.dirty_submodules, &index.gitlinks)?;
    facts.submodules = a.submodules.len();

    match (&status.head, &status.branch) {
        // A ref that outlives the worktree at HEAD itself reaches all of
        // it (the common case: detached at a branch's tip): no walk.
        (Some(head), None) if refs.survivor_at(head) => {}
        (Some(_), None) => {
            facts.detached_unreachable =
                unreachable_from_head(repo, common, a.worktree_name.as_deref())?;
            a.detached_unreachable = facts.detached_unreachable;
        }
        (Some(tip), Some(branch)) => {
            let verdict = integration::integrated_into(repo, tip, &refs)?;
            a.integrated = verdict.integrated();
            a.default_branch = verdict.default_branch;
            a.integration_targets = verdict.targets;
            a.integration = verdict.integration;
            a.upstream = match (&status.upstream, status.ahead_behind) {
                (Some(name), Some((ahead, _))) => Some(Upstream {
                    name: name.clone(),
                    ahead,
                }),
                _ => None,
            };
            facts.branch = Some(BranchFacts {
                integrated: a.integrated,
                ahead_of_upstream: a.upstream.as_ref().map(|u| u.ahead),
            });
            a.branch = Some(branch.clone());
        }
        // An unborn branch: no commits to lose, only uncommitted files.
        (None, branch) => a.branch.clone_from(branch),
    }
    for reason in reasons(&facts) {
        a.flag(reason);
    }
    Ok(refs)
}

/// The refs the worktree sees, listed there; or, given `shared` (its admin
/// dir holds no ref of its own, see [`state::no_own_refs`]), the
/// repository's shared refs, listed once for a run of reclaims.
fn worktree_refs(
    repo: &Repo,
    common: &Path,
    shared: Option<&refs::SharedRefs>,
) -> Result<refs::Refs, RiskError> {
    let list = |r: &Repo| refs::parse(&r.output(r.git()?.args(["for-each-ref", refs::FORMAT]))?);
    match shared {
        Some(shared) => shared.of(common, || list(&Repo::common(common, repo.owner))),
        None => list(repo),
    }
}

/// Stash entries (noted, not at risk: they live in the common dir). The
/// files backend's stash reflog is read relative to the common dir's
/// descriptor, never through a symlink, never blocking on a FIFO (git
/// would block on one; a log that cannot be read so counts none); the
/// reftable backend keeps it in its tables, read by git.
fn stash_entries(repo: &Repo, common: &Path, refs: &refs::Refs) -> Result<usize, RiskError> {
    if refs.get("refs/stash").is_none() {
        return Ok(0);
    }
    let lines = |log: &[u8]| log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    let log = crate::fd::open_path_trusted(common)
        .map_err(|source| RiskError::Open {
            path: common.to_path_buf(),
            source,
        })
        .map(|dir| crate::fd::read_below(dir.as_fd(), "logs/refs/stash", MAX_STASH_LOG))?;
    match log {
        Ok(Some(log)) => Ok(lines(&log)),
        Ok(None) => {
            let out =
                repo.output(
                    repo.git()?
                        .args(["reflog", "show", "--format=%H", "refs/stash"]),
                )?;
            Ok(lines(&out))
        }
        Err(_) => Ok(0),
    }
}

/// The largest stash reflog read (some 100,000 entries).
const MAX_STASH_LOG: u64 = 32 << 20;

/// The result of a reader thread; a panic in it is an error of the
/// assessment, not of the process.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, RiskError>>) -> Result<T, RiskError> {
    h.join().unwrap_or(Err(RiskError::ReaderPanicked))
}

/// Adds the edits hidden by skip-worktree and assume-unchanged flags to
/// `changes`: each flagged file present in the working tree is hashed by
/// git (with its attributes and filters) and compared with the index.
fn hidden_edits(
    repo: &Repo,
    flagged: &[index::Flagged],
    changes: &mut Changes,
) -> Result<(), RiskError> {
    let mut on_disk = Vec::with_capacity(flagged.len());
    for f in flagged {
        let disk =
            index::on_disk(&repo.dir, &f.path, &f.mode).map_err(|source| RiskError::Worktree {
                path: repo.dir.join(OsStr::from_bytes(&f.path)),
                source,
            })?;
        on_disk.push(disk);
    }
    let files: Vec<&[u8]> = flagged
        .iter()
        .zip(&on_disk)
        .filter(|(_, d)| **d == index::OnDisk::File)
        .map(|(f, _)| f.path.as_slice())
        .collect();
    let hashes = if files.is_empty() {
        Vec::new()
    } else {
        let out = repo.output(
            repo.git()?
                .args(["hash-object", "--stdin-paths"])
                .stdin(index::stdin_paths(files.iter().copied())),
        )?;
        let hashes: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect();
        if hashes.len() != files.len() {
            return Err(RiskError::HashCount {
                hashes: hashes.len(),
                files: files.len(),
            });
        }
        hashes
    };
    let mut hashes = hashes.iter();
    for (f, disk) in flagged.iter().zip(on_disk) {
        let hashed = if disk == index::OnDisk::File {
            hashes.next().map(String::as_str)
        } else {
            None
        };
        match index::judge(f, disk, hashed) {
            index::Hidden::Unchanged => continue,
            index::Hidden::Modified => changes.modified += 1,
            index::Hidden::Deleted => changes.deleted += 1,
        }
        changes.hidden += 1;
    }
    Ok(())
}

/// The submodules and embedded repositories inside the worktree that hold
/// work of their own: uncommitted changes (`git status` of the worktree
/// says so), or commits none of their remote-tracking refs reaches (asked
/// of each populated gitlink's repository). Sorted, each once.
fn submodules(
    repo: &Repo,
    dirty: &[Vec<u8>],
    gitlinks: &[Vec<u8>],
) -> Result<Vec<String>, RiskError> {
    let mut found: Vec<String> = dirty
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    for link in gitlinks {
        let dir = repo.dir.join(OsStr::from_bytes(link));
        // Not populated: nothing of it is in the worktree.
        if std::fs::symlink_metadata(dir.join(".git")).is_err() {
            continue;
        }
        let nested = Repo::nested(&dir, repo.owner);
        let out = nested.output(nested.git()?.args([
            "rev-list",
            "--count",
            "--all",
            "--not",
            "--remotes",
        ]))?;
        if String::from_utf8_lossy(&out).trim() != "0" {
            found.push(String::from_utf8_lossy(link).into_owned());
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// How many commits reachable from the worktree's HEAD no surviving ref
/// reaches: every ref but this worktree's own HEAD and per-worktree refs,
/// plus the detached HEADs of the other worktrees of `common` (which keep
/// their commits alive for as long as they exist). `repo` is a
/// [`Repo::worktree`]; `own_name` its admin name (`None`: the main
/// worktree).
///
/// git's `--all` would read the other worktrees' HEADs itself, by path: a
/// FIFO planted as one would block it. So it looks at this worktree's refs
/// only (`--single-worktree`), and the other HEADs are read here, relative
/// to descriptors, never through a symlink or from a FIFO, and given to it;
/// one that cannot be read so hides nothing (the count can only grow: fail
/// closed). Usually the refs alone reach everything: only then is it worth
/// reading every other worktree's HEAD (a thousand files on a busy host).
pub fn unreachable_from_head(
    repo: &Repo,
    common: &Path,
    own_name: Option<&str>,
) -> Result<usize, RiskError> {
    let count = |extra: &[String]| -> Result<usize, RiskError> {
        let mut git = repo
            .git()?
            .args(["rev-list", "--count", "--ignore-missing", "HEAD", "--not"])
            .arg("--exclude=HEAD");
        for ns in refs::PER_WORKTREE {
            git = git.arg(format!("--exclude={ns}*"));
        }
        let out = repo.output(git.args(["--single-worktree", "--all"]).args(extra))?;
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(RiskError::Count)
    };
    match count(&[])? {
        0 => Ok(0),
        _ => {
            let (mut heads, in_tables) = other_detached_heads(common, own_name);
            // A reftable keeps each worktree's HEAD in its table: git reads
            // it, by the name it gives another worktree's HEAD.
            for name in in_tables {
                let rev = match &name {
                    Some(n) => format!("worktrees/{n}/HEAD"),
                    None => "main-worktree/HEAD".to_owned(),
                };
                let out = repo
                    .git()?
                    .args(["rev-parse", "-q", "--verify", "--end-of-options", &rev])
                    .run()?;
                let oid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if out.code == Some(0) && !oid.is_empty() {
                    heads.push(oid);
                }
            }
            count(&heads)
        }
    }
}

/// The largest HEAD file read.
const MAX_HEAD: u64 = 4096;

/// What another worktree's HEAD file says.
enum OtherHead {
    /// Detached at this commit.
    Detached(String),
    /// Git's reftable stub: HEAD is in the table.
    InTable,
    /// On a branch (a ref, already counted), or unreadable.
    Nothing,
}

/// The commits the other worktrees of `common` have detached HEADs on (a
/// HEAD on a branch names a ref, already counted), and the worktrees whose
/// HEAD is in a reftable (`None`: the main worktree).
fn other_detached_heads(
    common: &Path,
    own_name: Option<&str>,
) -> (Vec<String>, Vec<Option<String>>) {
    use crate::fd;
    let read = |admin: std::os::fd::BorrowedFd<'_>| {
        let Some(text) = fd::read_at(admin, OsStr::new("HEAD"), MAX_HEAD)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return OtherHead::Nothing;
        };
        let oid = text.trim();
        if crate::hook::is_reftable_stub(&text) {
            OtherHead::InTable
        } else if !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            OtherHead::Detached(oid.to_owned())
        } else {
            OtherHead::Nothing
        }
    };
    let (mut heads, mut in_tables) = (Vec::new(), Vec::new());
    let mut note = |head: OtherHead, name: Option<String>| match head {
        OtherHead::Detached(oid) => heads.push(oid),
        OtherHead::InTable => in_tables.push(name),
        OtherHead::Nothing => {}
    };
    let Ok(common_fd) = fd::open_path_trusted(common) else {
        return (heads, in_tables);
    };
    if own_name.is_some() {
        note(read(common_fd.as_fd()), None);
    }
    if let Ok(worktrees) = fd::open_dir_at(common_fd.as_fd(), OsStr::new("worktrees")) {
        for name in crate::remove::list_names(worktrees.as_fd()).unwrap_or_default() {
            if own_name.is_some_and(|own| name == own) {
                continue;
            }
            if let Ok(admin) = fd::open_path_at(worktrees.as_fd(), &name) {
                note(
                    read(admin.as_fd()),
                    Some(name.to_string_lossy().into_owned()),
                );
            }
        }
    }
    (heads, in_tables)
}
