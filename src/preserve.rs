//! Preserve: record a worktree's at-risk work in its common repository, where
//! it outlives the worktree, before anything removes the worktree.
//!
//! Shared by the sweep, the reaper and `treeward restore`. Contract:
//!
//! - Uncommitted work becomes one commit shaped exactly like a `git stash`
//!   commit, so plain git can recover it: `W` (tracked files as in the working
//!   tree) with parents `[HEAD, I]` or `[HEAD, I, U]`, where `I` holds the
//!   index and `U` (parentless, only when there are some) the untracked files
//!   that are not ignored. `git stash apply --index <ref>` in a clean worktree
//!   at the same HEAD gives back staged as staged, unstaged as unstaged and
//!   untracked as untracked, with executable bits and symlinks.
//! - Refs, in the common repository, never overwritten:
//!   `refs/treeward/preserved/<worktree-name>/<stamp>/work` (that commit),
//!   `…/<stamp>/head` (a detached HEAD whose commits no ref reaches),
//!   `…/<stamp>/worktree/<rest>` and `…/<stamp>/bisect/<rest>` (copies of the
//!   per-worktree refs). `<stamp>` is `20261120T231500Z`, with `-1`, `-2`, …
//!   when that name is taken. Nothing at risk: no refs, no-op.
//! - Nothing in the worktree changes: every tree is built in standalone
//!   in-memory indexes (a copy of the worktree's index is read, never
//!   written), so its index, HEAD and files stay byte-identical.
//!
//! Edge cases, decided:
//! - A conflicted index cannot be a stash (git refuses). The conflicted paths
//!   are taken as "ours" (stage 2, HEAD's version) in `I`, and the
//!   working-tree file, conflict markers and all, goes into `W`; restored,
//!   the path shows as modified with the markers. The in-progress merge
//!   itself (`MERGE_HEAD`) is not kept. A path deleted on our side is absent
//!   from `I`, so its working-tree file lands in `U`.
//! - Unborn HEAD: `I` and `W` have no HEAD parent (`W` = `[I]` or `[I, U]`),
//!   which `git stash apply` cannot use; `treeward restore` handles it.
//! - Submodules are kept as recorded in the index; empty directories are
//!   not recorded (git cannot); sockets and FIFOs hold no data and are
//!   skipped. An untracked nested repository cannot be preserved as files:
//!   that is an error (fail closed), and nothing is written.
//!
//! Failure mode: any git or filesystem error is returned as a value naming
//! the path and what failed; refs already written by a failed call stay
//! (they only ever add safety). This runs as the repository's owner; the
//! privilege drop is the caller's.

use crate::fd;
use crate::ledger;
use crate::risk::{self, branch, reach, Location};
use git2::{
    BranchType, Commit, Delta, DiffOptions, ErrorCode, Index, IndexEntry, IndexTime, ObjectType,
    Oid, Repository, RepositoryOpenFlags, Signature,
};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The namespace every preserved ref lives under.
pub const NAMESPACE: &str = "refs/treeward/preserved";

/// The identity of every commit preserve writes: no dependence on the
/// user's configuration.
const SIGNATURE_NAME: &str = "treeward";
const SIGNATURE_EMAIL: &str = "treeward@localhost";

const MODE_FILE: u32 = 0o100644;
const MODE_EXECUTABLE: u32 = 0o100755;
const MODE_SYMLINK: u32 = 0o120000;

/// What a preserve wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preserved {
    /// Full names of the refs written, sorted; empty when nothing was at risk.
    pub refs: Vec<String>,
    /// The stash-shaped commit holding the uncommitted work, if any.
    pub work: Option<String>,
}

/// What [`delete_branch_if_integrated`] did with a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchFate {
    /// Integrated into the default branch and checked out nowhere: deleted.
    Deleted,
    /// Not integrated (or there is no default branch to compare with): kept.
    KeptUnintegrated,
    /// Checked out (or being rebased or bisected) in some worktree: kept.
    KeptCheckedOut,
    /// The default branch itself (or the local branch of that name): kept.
    KeptDefaultBranch,
    /// No such local branch.
    Missing,
}

/// Why preserving (or deleting a branch) failed.
#[derive(Debug)]
pub enum PreserveError {
    /// The path is not a linked worktree with an existing repository.
    NotALinkedWorktree { path: PathBuf, why: String },
    /// A git operation failed.
    Git {
        path: PathBuf,
        doing: String,
        source: git2::Error,
    },
    /// A file could not be read.
    Io {
        path: PathBuf,
        doing: String,
        source: io::Error,
    },
    /// Work that cannot be recorded in a commit (an untracked nested
    /// repository).
    Unpreservable { path: PathBuf, why: String },
}

impl fmt::Display for PreserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreserveError::NotALinkedWorktree { path, why } => {
                write!(f, "{}: not a linked worktree: {why}", path.display())
            }
            PreserveError::Git {
                path,
                doing,
                source,
            } => write!(f, "{}: {doing}: {}", path.display(), source.message()),
            PreserveError::Io {
                path,
                doing,
                source,
            } => write!(f, "{}: {doing}: {source}", path.display()),
            PreserveError::Unpreservable { path, why } => {
                write!(f, "{}: cannot preserve: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for PreserveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PreserveError::Git { source, .. } => Some(source),
            PreserveError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Builds the mapper from a git error to a [`PreserveError`] about `path`.
fn git_err<'a>(path: &'a Path, doing: &'a str) -> impl FnOnce(git2::Error) -> PreserveError + 'a {
    move |source| PreserveError::Git {
        path: path.to_path_buf(),
        doing: doing.to_owned(),
        source,
    }
}

/// Preserves the at-risk work of the linked worktree at `worktree`, stamped
/// with the current time. See the module documentation.
pub fn preserve(worktree: &Path) -> Result<Preserved, PreserveError> {
    preserve_at(worktree, SystemTime::now())
}

/// [`preserve`] with the time that names the refs given (a caller may want
/// the refs to carry the same time as its ledger record).
pub fn preserve_at(worktree: &Path, time: SystemTime) -> Result<Preserved, PreserveError> {
    let (gitdir, common, name) = match risk::locate(worktree) {
        Location::Linked {
            gitdir,
            common,
            name,
        } => (gitdir, common, name),
        other => {
            return Err(PreserveError::NotALinkedWorktree {
                path: worktree.to_path_buf(),
                why: describe(&other),
            })
        }
    };
    let repo = Repository::open_ext(
        worktree,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(git_err(worktree, "opening the repository"))?;
    let head = read_head(&repo).map_err(git_err(worktree, "reading HEAD"))?;

    let work = match snapshot_trees(&repo, worktree, &gitdir.join("index"), &head)? {
        Some(trees) => Some(
            commit_work(&repo, &head, &trees)
                .map_err(git_err(worktree, "writing the work commit"))?,
        ),
        None => None,
    };
    let unreachable_head = match (head.detached, head.commit.as_ref()) {
        (true, Some(c)) => {
            let lost = reach::unreachable_from_head(&repo, c.id(), &common, Some(&name))
                .map_err(git_err(worktree, "walking the detached HEAD's commits"))?;
            (lost > 0).then(|| c.id())
        }
        _ => None,
    };
    let per_worktree =
        per_worktree_refs(&repo).map_err(git_err(worktree, "reading per-worktree refs"))?;

    let planned = planned_refs(work, unreachable_head, &per_worktree);
    if planned.is_empty() {
        return Ok(Preserved::default());
    }
    let base = format!("{NAMESPACE}/{}", ref_component(&name));
    let stamp = compact_stamp(&ledger::format_timestamp(time));
    let refs = write_refs(&repo, &base, &stamp, &planned)
        .map_err(git_err(&common, "writing the preserved refs"))?;
    log::info!("preserved {}: {}", worktree.display(), refs.join(", "));
    Ok(Preserved {
        refs,
        work: work.map(|w| w.to_string()),
    })
}

fn describe(location: &Location) -> String {
    match location {
        Location::Missing => "no such file or directory".into(),
        Location::Symlink => "a symbolic link".into(),
        Location::NotADirectory => "not a directory".into(),
        Location::Plain { .. } => "a directory without .git".into(),
        Location::Main { .. } => "the main worktree of a repository".into(),
        Location::Broken { why } => why.clone(),
        Location::Linked { .. } => "a linked worktree".into(),
    }
}

/// HEAD as the messages and parents of the work commit need it.
struct Head<'r> {
    /// `None` when HEAD is unborn.
    commit: Option<Commit<'r>>,
    detached: bool,
    /// The branch's short name, or `(no branch)` when detached.
    label: String,
}

fn read_head(repo: &Repository) -> Result<Head<'_>, git2::Error> {
    let detached = repo.head_detached()?;
    let head = repo.find_reference("HEAD")?;
    let label = if detached {
        "(no branch)".to_owned()
    } else {
        let target = head.symbolic_target_bytes().unwrap_or_default();
        let target = String::from_utf8_lossy(target);
        target.trim_start_matches("refs/heads/").to_owned()
    };
    let commit = match head.resolve() {
        Ok(r) => Some(r.peel_to_commit()?),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(Head {
        commit,
        detached,
        label,
    })
}

/// The trees of the work commit.
struct Trees {
    index: Oid,
    work: Oid,
    untracked: Option<Oid>,
}

/// Builds the index, working-tree and untracked trees (writing only tree
/// and blob objects); `None` when there is no uncommitted work.
fn snapshot_trees(
    repo: &Repository,
    worktree: &Path,
    index_path: &Path,
    head: &Head<'_>,
) -> Result<Option<Trees>, PreserveError> {
    let head_tree = match &head.commit {
        Some(c) => c.tree_id(),
        None => Oid::hash_object(ObjectType::Tree, &[])
            .map_err(git_err(worktree, "hashing the empty tree"))?,
    };
    // A copy of the worktree's index: read from its file, changed only in
    // memory, never written back (no `write()` call exists in this module).
    let mut index = Index::open(index_path).map_err(git_err(index_path, "reading the index"))?;
    let conflicted =
        take_ours_for_conflicts(&mut index).map_err(git_err(index_path, "reading conflicts"))?;
    let index_tree = index
        .write_tree_to(repo)
        .map_err(git_err(index_path, "writing the index tree"))?;
    let changes = workdir_changes(repo, &index).map_err(git_err(
        worktree,
        "comparing the working tree with the index",
    ))?;

    let mut work = Index::new().map_err(git_err(worktree, "creating an index"))?;
    let tree = repo
        .find_tree(index_tree)
        .map_err(git_err(worktree, "reading the index tree"))?;
    work.read_tree(&tree)
        .map_err(git_err(worktree, "reading the index tree"))?;
    let mut untracked = Index::new().map_err(git_err(worktree, "creating an index"))?;
    let trust_filemode = repo
        .config()
        .and_then(|c| c.get_bool("core.filemode"))
        .unwrap_or(true);

    for change in &changes {
        let rel = Path::new(std::ffi::OsStr::from_bytes(&change.path));
        let abs = worktree.join(rel);
        match change.kind {
            ChangeKind::Deleted => {
                work.remove_path(rel)
                    .map_err(git_err(&abs, "recording a deletion"))?;
            }
            ChangeKind::Changed => {
                let prior = index.get_path(rel, 0).map(|e| e.mode);
                match record_file(repo, &abs, &change.path, prior, trust_filemode)? {
                    Some(entry) => work.add(&entry),
                    None => work.remove_path(rel),
                }
                .map_err(git_err(&abs, "recording a change"))?;
            }
            ChangeKind::Untracked => {
                refuse_nested_repository(&abs)?;
                if let Some(entry) = record_file(repo, &abs, &change.path, None, true)? {
                    untracked
                        .add(&entry)
                        .map_err(git_err(&abs, "recording an untracked file"))?;
                }
            }
        }
    }
    let work_tree = work
        .write_tree_to(repo)
        .map_err(git_err(worktree, "writing the working-tree tree"))?;
    let untracked_tree = if untracked.is_empty() {
        None
    } else {
        Some(
            untracked
                .write_tree_to(repo)
                .map_err(git_err(worktree, "writing the untracked tree"))?,
        )
    };
    let trees = Trees {
        index: index_tree,
        work: work_tree,
        untracked: untracked_tree,
    };
    Ok(has_work(head_tree, &trees, conflicted).then_some(trees))
}

/// Whether the trees hold anything HEAD does not.
fn has_work(head_tree: Oid, trees: &Trees, conflicted: bool) -> bool {
    conflicted || trees.untracked.is_some() || trees.index != head_tree || trees.work != trees.index
}

/// Replaces each conflict in `index` by its "ours" side (stage 2, which is
/// HEAD's version) at stage 0, or by nothing when ours deleted the path.
/// Returns whether there was any conflict.
fn take_ours_for_conflicts(index: &mut Index) -> Result<bool, git2::Error> {
    let mut conflicts = Vec::new();
    for c in index.conflicts()? {
        conflicts.push(c?);
    }
    let conflicted = !conflicts.is_empty();
    for c in conflicts {
        let Some(path) = [&c.our, &c.their, &c.ancestor]
            .into_iter()
            .flatten()
            .map(|e| e.path.clone())
            .next()
        else {
            continue;
        };
        index.conflict_remove(Path::new(std::ffi::OsStr::from_bytes(&path)))?;
        if let Some(mut ours) = c.our {
            ours.flags &= !STAGE_MASK;
            index.add(&ours)?;
        }
    }
    Ok(conflicted)
}

/// The stage bits of an index entry's flags.
const STAGE_MASK: u16 = 0x3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    /// A tracked path whose working-tree file differs from the index.
    Changed,
    /// A tracked path missing from the working tree.
    Deleted,
    /// A path git neither tracks nor ignores.
    Untracked,
}

struct Change {
    path: Vec<u8>,
    kind: ChangeKind,
}

/// The working tree compared with the index copy, the way `git status
/// --untracked-files=all` sees it; the index is not refreshed or written.
fn workdir_changes(repo: &Repository, index: &Index) -> Result<Vec<Change>, git2::Error> {
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .include_typechange(true)
        .include_unreadable(true)
        .ignore_submodules(true);
    let diff = repo.diff_index_to_workdir(Some(index), Some(&mut opts))?;
    let mut out = Vec::new();
    for delta in diff.deltas() {
        let kind = match delta.status() {
            Delta::Modified | Delta::Typechange => ChangeKind::Changed,
            Delta::Deleted => {
                let skipped = delta
                    .old_file()
                    .path()
                    .and_then(|p| index.get_path(p, 0))
                    .is_some_and(|e| e.flags_extended & SKIP_WORKTREE != 0);
                if skipped {
                    continue; // sparse checkout: not in the working tree by design
                }
                ChangeKind::Deleted
            }
            Delta::Untracked => ChangeKind::Untracked,
            Delta::Unreadable => {
                let path = delta.new_file().path_bytes().unwrap_or_default();
                return Err(git2::Error::from_str(&format!(
                    "{} cannot be read",
                    String::from_utf8_lossy(path)
                )));
            }
            _ => continue,
        };
        let file = if kind == ChangeKind::Deleted {
            delta.old_file()
        } else {
            delta.new_file()
        };
        if let Some(path) = file.path_bytes() {
            out.push(Change {
                path: path.to_vec(),
                kind,
            });
        }
    }
    Ok(out)
}

const SKIP_WORKTREE: u16 = git2::IndexEntryExtendedFlag::SKIP_WORKTREE.bits();

/// An untracked directory that git reports as one entry is a nested
/// repository: its files (and history) cannot be kept in a commit.
fn refuse_nested_repository(abs: &Path) -> Result<(), PreserveError> {
    match fs::symlink_metadata(abs) {
        Ok(m) if m.is_dir() && abs.join(".git").exists() => Err(PreserveError::Unpreservable {
            path: abs.to_path_buf(),
            why: "an untracked nested git repository".into(),
        }),
        _ => Ok(()),
    }
}

/// What kind of working-tree file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Regular {
        executable: bool,
    },
    Symlink,
    /// A directory, socket, FIFO or device: no file content to record.
    Other,
}

/// The index mode to record a file with: git's two regular-file modes by the
/// executable bit (unless `core.filemode` is false, when the mode the index
/// had wins), and the symlink mode.
fn entry_mode(kind: FileKind, trust_filemode: bool, prior: Option<u32>) -> Option<u32> {
    match kind {
        FileKind::Symlink => Some(MODE_SYMLINK),
        FileKind::Regular { executable } => Some(match prior {
            Some(p) if !trust_filemode && (p == MODE_FILE || p == MODE_EXECUTABLE) => p,
            _ if executable => MODE_EXECUTABLE,
            _ => MODE_FILE,
        }),
        FileKind::Other => None,
    }
}

/// Writes the blob of the working-tree file at `abs` and returns its index
/// entry; `None` when there is no file content to record (gone, a
/// directory, a socket).
fn record_file(
    repo: &Repository,
    abs: &Path,
    rel: &[u8],
    prior: Option<u32>,
    trust_filemode: bool,
) -> Result<Option<IndexEntry>, PreserveError> {
    let meta = match fs::symlink_metadata(abs) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PreserveError::Io {
                path: abs.to_path_buf(),
                doing: "reading file metadata".into(),
                source,
            })
        }
    };
    let kind = if meta.file_type().is_symlink() {
        FileKind::Symlink
    } else if meta.is_file() {
        FileKind::Regular {
            executable: meta.permissions().mode() & 0o111 != 0,
        }
    } else {
        FileKind::Other
    };
    let Some(mode) = entry_mode(kind, trust_filemode, prior) else {
        if !meta.is_dir() {
            log::warn!("not preserving {}: not a regular file", abs.display());
        }
        return Ok(None);
    };
    let id = if kind == FileKind::Symlink {
        let target = fs::read_link(abs).map_err(|source| PreserveError::Io {
            path: abs.to_path_buf(),
            doing: "reading the symbolic link".into(),
            source,
        })?;
        repo.blob(target.as_os_str().as_bytes())
    } else {
        repo.blob_path(abs)
    }
    .map_err(git_err(abs, "storing the file"))?;
    Ok(Some(IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: u32::try_from(meta.len()).unwrap_or(u32::MAX),
        id,
        flags: 0,
        flags_extended: 0,
        path: rel.to_vec(),
    }))
}

/// Writes `I`, `U` and `W` as `git stash` shapes them; returns `W`.
fn commit_work(repo: &Repository, head: &Head<'_>, trees: &Trees) -> Result<Oid, git2::Error> {
    let sig = Signature::now(SIGNATURE_NAME, SIGNATURE_EMAIL)?;
    let on = match &head.commit {
        Some(c) => format!(
            "{}: {} {}",
            head.label,
            c.as_object().short_id()?.as_str().unwrap_or_default(),
            String::from_utf8_lossy(c.summary_bytes().unwrap_or_default())
        ),
        None => format!("{}: (no commit yet)", head.label),
    };
    let head_parents: Vec<&Commit<'_>> = head.commit.iter().collect();

    let index_tree = repo.find_tree(trees.index)?;
    let i = repo.commit(
        None,
        &sig,
        &sig,
        &format!("index on {on}\n"),
        &index_tree,
        &head_parents,
    )?;
    let i = repo.find_commit(i)?;
    let u = match trees.untracked {
        Some(t) => {
            let tree = repo.find_tree(t)?;
            let u = repo.commit(
                None,
                &sig,
                &sig,
                &format!("untracked files on {on}\n"),
                &tree,
                &[],
            )?;
            Some(repo.find_commit(u)?)
        }
        None => None,
    };
    let mut parents = head_parents;
    parents.push(&i);
    parents.extend(u.as_ref());
    let work_tree = repo.find_tree(trees.work)?;
    repo.commit(
        None,
        &sig,
        &sig,
        &format!("WIP on {on}\n"),
        &work_tree,
        &parents,
    )
}

/// This worktree's per-worktree refs and what they point at.
fn per_worktree_refs(repo: &Repository) -> Result<Vec<(String, Oid)>, git2::Error> {
    let mut out = Vec::new();
    for name in reach::worktree_refs(repo)? {
        let oid = repo.refname_to_id(&name)?;
        out.push((name, oid));
    }
    Ok(out)
}

/// The refs to write, relative to `<namespace>/<worktree>/<stamp>/`: the work
/// commit, the detached HEAD when commits of it would be lost, and one copy
/// of each per-worktree ref (`refs/worktree/x` → `worktree/x`).
fn planned_refs(
    work: Option<Oid>,
    unreachable_head: Option<Oid>,
    per_worktree: &[(String, Oid)],
) -> Vec<(String, Oid)> {
    let mut out = Vec::new();
    out.extend(work.map(|w| ("work".to_owned(), w)));
    out.extend(unreachable_head.map(|h| ("head".to_owned(), h)));
    for (name, oid) in per_worktree {
        if let Some(rest) = name.strip_prefix("refs/") {
            out.push((rest.to_owned(), *oid));
        }
    }
    out
}

/// `2026-11-20T23:15:00Z` → `20261120T231500Z`.
fn compact_stamp(rfc3339: &str) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The `n`th candidate name for a stamp: the stamp itself, then `-1`, `-2`….
fn stamp_candidate(stamp: &str, n: usize) -> String {
    if n == 0 {
        stamp.to_owned()
    } else {
        format!("{stamp}-{n}")
    }
}

/// The stamp component of a ref name under `base`, if it is under `base`.
fn stamp_of<'a>(base: &str, name: &'a str) -> Option<&'a str> {
    let rest = name.strip_prefix(base)?.strip_prefix('/')?;
    rest.split('/').next().filter(|s| !s.is_empty())
}

/// A worktree's admin name made into one valid ref-name component: every
/// character or sequence git refuses (`check-ref-format`) becomes `_`.
fn ref_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev = '\0';
    for c in name.chars() {
        let bad = c.is_ascii_control()
            || " ~^:?*[\\/".contains(c)
            || (c == '.' && prev == '.')
            || (c == '{' && prev == '@');
        let c = if bad { '_' } else { c };
        out.push(c);
        prev = c;
    }
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.ends_with('.') {
        out.pop();
        out.push('_');
    }
    if out.ends_with(".lock") {
        let at = out.len() - ".lock".len();
        out.replace_range(at..at + 1, "_");
    }
    if out.is_empty() || out == "@" {
        out = "_".to_owned();
    }
    out
}

/// Writes the planned refs under `<base>/<stamp>` (or the first free
/// `<stamp>-N`), never overwriting a ref: a name taken meanwhile (a
/// concurrent preserve) moves the whole set to the next candidate.
fn write_refs(
    repo: &Repository,
    base: &str,
    stamp: &str,
    planned: &[(String, Oid)],
) -> Result<Vec<String>, git2::Error> {
    let taken = taken_stamps(repo, base)?;
    for n in 0..10_000 {
        let candidate = stamp_candidate(stamp, n);
        if taken.contains(&candidate) {
            continue;
        }
        if let Some(mut refs) = try_write_set(repo, &format!("{base}/{candidate}"), planned)? {
            refs.sort();
            return Ok(refs);
        }
    }
    Err(git2::Error::from_str(&format!(
        "no free name left under {base}/{stamp}"
    )))
}

/// The stamp components already used under `base`.
fn taken_stamps(repo: &Repository, base: &str) -> Result<BTreeSet<String>, git2::Error> {
    let mut taken = BTreeSet::new();
    for r in repo.references_glob(&format!("{base}/*"))? {
        let r = r?;
        if let Some(stamp) = r.name().ok().and_then(|n| stamp_of(base, n)) {
            taken.insert(stamp.to_owned());
        }
    }
    Ok(taken)
}

/// Writes every ref of the set under `prefix`; `None` (after taking back what
/// it wrote) when one of the names exists already.
fn try_write_set(
    repo: &Repository,
    prefix: &str,
    planned: &[(String, Oid)],
) -> Result<Option<Vec<String>>, git2::Error> {
    let mut written = Vec::new();
    for (rel, oid) in planned {
        let name = format!("{prefix}/{rel}");
        match repo.reference(&name, *oid, false, "treeward: preserve") {
            Ok(_) => written.push((name, *oid)),
            Err(e) if e.code() == ErrorCode::Exists => {
                for (name, oid) in &written {
                    if let Ok(mut r) = repo.find_reference(name) {
                        if r.target() == Some(*oid) {
                            r.delete()?;
                        }
                    }
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(written.into_iter().map(|(name, _)| name).collect()))
}

/// Deletes the local `branch` of the repository whose common git dir is
/// `repo_common_dir`, as `git branch -d` would, but only when it is
/// integrated into the default branch (same commit, ancestor, or its changes
/// already there, as with squash and rebase merges), is not the default
/// branch, and is checked out in no worktree. A branch without a default
/// branch to compare with is kept. If the branch moves between the check and
/// the deletion, the deletion fails (libgit2 deletes only the value it read).
pub fn delete_branch_if_integrated(
    repo_common_dir: &Path,
    branch: &str,
) -> Result<BranchFate, PreserveError> {
    let here = repo_common_dir;
    let short = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    let repo = Repository::open_ext(
        here,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(git_err(here, "opening the repository"))?;
    // The integration test simulates a merge; its objects stay in memory.
    let odb = repo
        .odb()
        .map_err(git_err(here, "opening the object database"))?;
    odb.add_new_mempack_backend(1000)
        .map_err(git_err(here, "opening the object database"))?;
    let mut found = match repo.find_branch(short, BranchType::Local) {
        Ok(b) => b,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(BranchFate::Missing),
        Err(e) => return Err(git_err(here, "finding the branch")(e)),
    };
    let checked_out = checked_out_anywhere(here, short)?;
    let default = branch::default_branch(&repo);
    let integrated = match (&default, checked_out) {
        (Some((_, d)), false) => {
            let tip = found
                .get()
                .peel_to_commit()
                .map_err(git_err(here, "reading the branch"))?
                .id();
            Some(branch::integrated(&repo, tip, *d).map_err(git_err(here, "testing integration"))?)
        }
        _ => None,
    };
    let facts = BranchState {
        checked_out,
        is_default: default
            .as_ref()
            .is_some_and(|(d, _)| is_default_branch(short, d)),
        integrated,
    };
    let fate = branch_fate(&facts);
    if fate == BranchFate::Deleted {
        found
            .delete()
            .map_err(git_err(here, "deleting the branch"))?;
        log::info!("deleted integrated branch {short} of {}", here.display());
    }
    Ok(fate)
}

/// What decides the fate of an existing branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BranchState {
    checked_out: bool,
    is_default: bool,
    /// `None` when there is no default branch (or it was not asked).
    integrated: Option<bool>,
}

fn branch_fate(s: &BranchState) -> BranchFate {
    if s.checked_out {
        BranchFate::KeptCheckedOut
    } else if s.is_default {
        BranchFate::KeptDefaultBranch
    } else if s.integrated == Some(true) {
        BranchFate::Deleted
    } else {
        BranchFate::KeptUnintegrated
    }
}

/// Whether local `branch` is the default branch (`main` for `main` or
/// `origin/main`).
fn is_default_branch(branch: &str, default: &str) -> bool {
    default == branch
        || default
            .split_once('/')
            .is_some_and(|(_, name)| name == branch)
}

/// Whether any worktree of the repository has `branch` checked out, or is
/// rebasing or bisecting it (as `git branch -d` checks). Below the common
/// dir, everything is read relative to directory descriptors, never through
/// a symlink, never blocking on a FIFO, capped: an admin file that is not a
/// regular file (or a `worktrees` or admin entry that is not a directory)
/// cannot tell, so the branch counts as checked out there (kept). An admin
/// file that cannot be read is an error: not knowing must not delete.
pub fn checked_out_anywhere(common: &Path, branch: &str) -> Result<bool, PreserveError> {
    let io_error = |path: &Path, doing: &str, errno: nix::errno::Errno| PreserveError::Io {
        path: path.to_path_buf(),
        doing: doing.into(),
        source: io::Error::from(errno),
    };
    let common_fd =
        fd::open_path_trusted(common).map_err(|e| io_error(common, "opening the repository", e))?;
    let worktrees = common.join("worktrees");
    let cannot_tell = |path: &Path, why: &dyn fmt::Display| {
        log::warn!(
            "{}: {why}: whether it has {branch} checked out cannot be told; the branch is kept",
            path.display()
        );
        Ok(true)
    };
    let mut others = Vec::new();
    match fd::open_dir_at(common_fd.as_fd(), OsStr::new("worktrees")) {
        Ok(dir) => {
            let names = crate::remove::list_names(dir.as_fd())
                .map_err(|e| io_error(&worktrees, "listing worktrees", e))?;
            for name in names {
                others.push((worktrees.join(&name), fd::open_path_at(dir.as_fd(), &name)));
            }
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e @ (nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR)) => {
            return cannot_tell(&worktrees, &e.desc())
        }
        Err(e) => return Err(io_error(&worktrees, "listing worktrees", e)),
    }
    let admin_dirs = std::iter::once((common.to_path_buf(), Ok(common_fd))).chain(others);
    for (dir, admin) in admin_dirs {
        let admin = match admin {
            Ok(fd) => fd,
            Err(e @ (nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR)) => {
                return cannot_tell(&dir, &e.desc())
            }
            Err(e) => return Err(io_error(&dir, "opening an admin dir", e)),
        };
        for file in [
            "HEAD",
            "rebase-merge/head-name",
            "rebase-apply/head-name",
            "BISECT_START",
        ] {
            let path = dir.join(file);
            match fd::read_below(admin.as_fd(), file, MAX_ADMIN_FILE) {
                Ok(Some(bytes)) if names_branch(&String::from_utf8_lossy(&bytes), branch) => {
                    return Ok(true)
                }
                Ok(_) => {}
                Err(fd::ReadError::Io(e)) => {
                    return Err(io_error(&path, "reading which branch is checked out", e))
                }
                Err(e) => return cannot_tell(&path, &e),
            }
        }
    }
    Ok(false)
}

/// The largest HEAD, `head-name` or `BISECT_START` read.
const MAX_ADMIN_FILE: u64 = 4096;

/// Whether a HEAD (`ref: refs/heads/x`), `head-name` (`refs/heads/x`) or
/// `BISECT_START` (`x`) file names `branch`.
fn names_branch(text: &str, branch: &str) -> bool {
    let text = text.trim();
    let text = text.strip_prefix("ref:").map_or(text, str::trim);
    text.strip_prefix("refs/heads/").unwrap_or(text) == branch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    #[test]
    fn stamps_are_compact_and_numbered() {
        assert_eq!(compact_stamp("2026-11-20T23:15:00Z"), "20261120T231500Z");
        assert_eq!(stamp_candidate("20261120T231500Z", 0), "20261120T231500Z");
        assert_eq!(stamp_candidate("20261120T231500Z", 2), "20261120T231500Z-2");
    }

    #[test]
    fn stamp_of_takes_the_component_under_base() {
        let base = "refs/treeward/preserved/wt";
        assert_eq!(
            stamp_of(base, "refs/treeward/preserved/wt/S/work"),
            Some("S")
        );
        assert_eq!(
            stamp_of(base, "refs/treeward/preserved/wt/S-1"),
            Some("S-1")
        );
        assert_eq!(stamp_of(base, "refs/treeward/preserved/wt2/S/work"), None);
        assert_eq!(stamp_of(base, "refs/treeward/preserved/wt"), None);
    }

    #[test]
    fn ref_components_are_valid() {
        for (name, want) in [
            ("review-1", "review-1"),
            ("a b", "a_b"),
            ("a..b", "a._b"),
            (".hidden", "_hidden"),
            ("end.", "end_"),
            ("x.lock", "x_lock"),
            ("a@{b", "a@_b"),
            ("@", "_"),
            ("", "_"),
            ("q?*[~^:\\\x01", "q________"),
            ("é", "é"),
        ] {
            let got = ref_component(name);
            assert_eq!(got, want, "{name:?}");
            let full = format!("{NAMESPACE}/{got}/20261120T231500Z/work");
            assert!(git2::Reference::is_valid_name(&full), "{full}");
        }
    }

    #[test]
    fn planned_refs_name_each_kind() {
        let wt = vec![
            ("refs/worktree/wip".to_owned(), oid(3)),
            ("refs/bisect/bad".to_owned(), oid(4)),
        ];
        assert_eq!(
            planned_refs(Some(oid(1)), Some(oid(2)), &wt),
            vec![
                ("work".to_owned(), oid(1)),
                ("head".to_owned(), oid(2)),
                ("worktree/wip".to_owned(), oid(3)),
                ("bisect/bad".to_owned(), oid(4)),
            ]
        );
        assert!(planned_refs(None, None, &[]).is_empty());
    }

    #[test]
    fn has_work_when_anything_differs() {
        let t = |index, work, untracked: bool| Trees {
            index: oid(index),
            work: oid(work),
            untracked: untracked.then(|| oid(9)),
        };
        assert!(!has_work(oid(1), &t(1, 1, false), false));
        assert!(has_work(oid(1), &t(1, 1, false), true), "conflicted");
        assert!(has_work(oid(1), &t(2, 2, false), false), "staged");
        assert!(has_work(oid(1), &t(1, 2, false), false), "modified");
        assert!(has_work(oid(1), &t(1, 1, true), false), "untracked");
    }

    #[test]
    fn modes_follow_git() {
        let exec = FileKind::Regular { executable: true };
        let plain = FileKind::Regular { executable: false };
        assert_eq!(entry_mode(exec, true, None), Some(MODE_EXECUTABLE));
        assert_eq!(
            entry_mode(plain, true, Some(MODE_EXECUTABLE)),
            Some(MODE_FILE)
        );
        assert_eq!(
            entry_mode(plain, false, Some(MODE_EXECUTABLE)),
            Some(MODE_EXECUTABLE)
        );
        assert_eq!(entry_mode(exec, false, None), Some(MODE_EXECUTABLE));
        assert_eq!(
            entry_mode(FileKind::Symlink, true, Some(MODE_FILE)),
            Some(MODE_SYMLINK)
        );
        assert_eq!(entry_mode(FileKind::Other, true, None), None);
    }

    #[test]
    fn branch_fate_order() {
        let s = |checked_out, is_default, integrated| BranchState {
            checked_out,
            is_default,
            integrated,
        };
        assert_eq!(
            branch_fate(&s(true, false, Some(true))),
            BranchFate::KeptCheckedOut
        );
        assert_eq!(
            branch_fate(&s(false, true, Some(true))),
            BranchFate::KeptDefaultBranch
        );
        assert_eq!(
            branch_fate(&s(false, false, Some(true))),
            BranchFate::Deleted
        );
        assert_eq!(
            branch_fate(&s(false, false, Some(false))),
            BranchFate::KeptUnintegrated
        );
        assert_eq!(
            branch_fate(&s(false, false, None)),
            BranchFate::KeptUnintegrated
        );
    }

    #[test]
    fn default_branch_names() {
        assert!(is_default_branch("main", "main"));
        assert!(is_default_branch("main", "origin/main"));
        assert!(!is_default_branch("feature/main", "origin/main"));
        assert!(!is_default_branch("main2", "origin/main"));
    }

    #[test]
    fn checked_out_file_forms() {
        assert!(names_branch("ref: refs/heads/task-1\n", "task-1"));
        assert!(names_branch("refs/heads/task-1\n", "task-1"));
        assert!(names_branch("task-1\n", "task-1"));
        assert!(!names_branch("ref: refs/heads/task-10\n", "task-1"));
        assert!(!names_branch(
            "0123456789abcdef0123456789abcdef01234567\n",
            "task-1"
        ));
    }
}
