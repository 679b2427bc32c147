//! Preserve: record the whole state of a worktree in its common repository,
//! where it outlives the worktree, before anything removes the worktree.
//! Everything goes through the host's `git` ([`crate::git`]), as the
//! repository's owner (the caller's privilege drop: the owner worker when
//! root), so whatever format git can work with (SHA-256, reftable, sparse
//! index, split index) can be preserved.
//!
//! Contract. One preserve writes one *set*, refs under
//! `refs/treeward/preserved/<worktree-name>/<stamp>/` in the common
//! repository, never overwriting one (`<stamp>` is `20261120T231500Z`, then
//! `-1`, `-2`, … when taken; the set is created in one ref transaction):
//!
//! - `state`: a commit (parent: HEAD, when born) whose tree holds, by the
//!   names of [`layout`]:
//!   - `meta`: JSON ([`layout::Meta`]): format version, repository, admin
//!     name, original path, stamp, object and ref formats, HEAD, branch,
//!     root refs (`ORIG_HEAD`, `CHERRY_PICK_HEAD`, `AUTO_MERGE`, …),
//!     per-worktree refs, nested repositories: restoring needs no ledger;
//!   - `files/<path>`: every working file, tracked (skip-worktree,
//!     assume-unchanged and outside-the-sparse-patterns ones included) or
//!     untracked and not ignored, as raw bytes (`hash-object
//!     --no-filters`: no attribute applied), with its executable bit;
//!     symlinks as their targets;
//!   - `index`: the index file as git wrote it (stages, flags,
//!     intent-to-add, sparse entries, extensions), and
//!     `sharedindex/<name>` the split index's shared files;
//!   - `stages/<stage>/<path>`: every object the index names, so staged and
//!     conflicting blobs stay alive;
//!   - `admin/<path>`: the in-progress state files of the git dir
//!     ([`layout::STATE_FILES`], [`layout::STATE_DIRS`]: merge, rebase,
//!     cherry-pick, revert, sequencer, bisect), `config.worktree` and
//!     `info/sparse-checkout`;
//!   - `modules/<enc-path>`: for every submodule and embedded repository
//!     (at any depth, by its path from the worktree's top, [`layout::encode`]d)
//!     the same layout for its own state, its git `config` in `admin/`;
//! - `work`: when there is uncommitted work, a commit shaped exactly like a
//!   `git stash` commit, so plain git can recover it: `W` (tracked files as
//!   in the working tree) with parents `[HEAD, I]` or `[HEAD, I, U]` (`I`
//!   the index, conflicts taken as "ours"; `U`, parentless, the untracked
//!   files); `[I]`/`[I, U]` on an unborn branch. `git stash apply --index`
//!   at the same HEAD gives it back (`W` and `U` hold raw bytes, like
//!   `files/`: under eol or filter attributes the exact copy is `state`);
//! - `head`: a detached HEAD whose commits no other ref reaches;
//! - `worktree/…`, `bisect/…`, `rewritten/…`: copies of the per-worktree
//!   refs. The objects only the in-progress state names (root refs, ids
//!   written in state files: `MERGE_HEAD`, `rebase-merge/onto`, an
//!   autostash) stay alive as further parents of `state` (commits) or
//!   under `keep/<NAME>` in its tree (`AUTO_MERGE`'s tree);
//! - `modules/<enc-path>/refs/…`, `…/keep/…`: every ref of each nested
//!   repository and the objects its state names, fetched into the common
//!   repository (a linked worktree's submodule keeps its git dir in the
//!   admin dir, which dies with the worktree).
//!
//! Nothing in the worktree changes: its index, HEAD, files and git dir are
//! only read (the git dir below its descriptor, never through a symlink);
//! every tree is built in a temporary index in a scratch directory inside
//! the common dir (removed afterwards); a nested repository gets objects
//! written into its object store and nothing else.
//!
//! Not recorded (SPEC's exceptions): ignored files, empty directories,
//! FIFOs and sockets, permission bits git does not track.
//!
//! Failure mode: any git or filesystem error is returned as a value naming
//! the path and what failed, and no ref of the set is written (objects may
//! be, for `git gc` to take); a preserve cut short may leave refs under
//! `refs/treeward/tmp/` (they only keep objects alive).

mod capture;
mod identical;
pub mod layout;

pub use capture::Repo;
pub use identical::identical_commit;

use crate::fd;
use crate::git::GitError;
use crate::ledger;
use crate::risk::{self, Location};
use capture::{capture, Captured, Kept, Scratch, Target};
use layout::{ModuleKind, KEEP, MODULES};
use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The namespace every preserved ref lives under.
pub const NAMESPACE: &str = "refs/treeward/preserved";
/// Where a preserve keeps fetched refs until its set is written.
const SCRATCH_NAMESPACE: &str = "refs/treeward/tmp";

/// The identity of every commit preserve writes: no dependence on the
/// user's configuration.
const SIGNATURE_NAME: &str = "treeward";
const SIGNATURE_EMAIL: &str = "treeward@localhost";

/// The most nested repositories one worktree's set records.
const MAX_MODULES: usize = 256;

/// What a preserve wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preserved {
    /// Full names of the refs written, sorted.
    pub refs: Vec<String>,
    /// The stash-shaped commit holding the uncommitted work, if any.
    pub work: Option<String>,
}

/// Why preserving (or deleting a branch) failed.
#[derive(Debug)]
pub enum PreserveError {
    /// The path is not a linked worktree with an existing repository.
    NotALinkedWorktree { path: PathBuf, why: String },
    /// A git command failed.
    Git {
        path: PathBuf,
        doing: String,
        source: GitError,
    },
    /// A file could not be read.
    Io {
        path: PathBuf,
        doing: String,
        source: io::Error,
    },
    /// Work that cannot be recorded (a state file that is not a regular
    /// file, nested repositories beyond the limit).
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
            } => write!(f, "{}: {doing}: {source}", path.display()),
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

/// Preserves the whole state of the linked worktree at `worktree`, stamped
/// with the current time. See the module documentation. (The sweep and the
/// reaper preserve a worktree they moved, with [`preserve_moved`]; the
/// tests preserve one where it is.)
#[cfg(feature = "internals")]
pub fn preserve(worktree: &Path) -> Result<Preserved, PreserveError> {
    preserve_at(worktree, worktree, SystemTime::now())
}

/// [`preserve`] of a worktree moved from `origin` (into the sweep's
/// trash): the set's metadata names `origin`, where it was.
pub fn preserve_moved(worktree: &Path, origin: &Path) -> Result<Preserved, PreserveError> {
    preserve_at(worktree, origin, SystemTime::now())
}

/// [`preserve`] with where the worktree was (`origin`, for the set's
/// metadata) and the time that names the refs given (a caller may want the
/// refs to carry the same time as its ledger record).
pub fn preserve_at(
    worktree: &Path,
    origin: &Path,
    time: SystemTime,
) -> Result<Preserved, PreserveError> {
    let (git_dir, common, name) = match risk::locate(worktree) {
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
    preserve_into(
        &Source {
            worktree,
            origin,
            git_dir: &git_dir,
            common: &common,
            name: &name,
        },
        time,
    )
}

/// Where a preserve reads from and writes to.
struct Source<'a> {
    /// The worktree's directory.
    worktree: &'a Path,
    /// Where it was, for the set's metadata (it may have been moved).
    origin: &'a Path,
    /// Its git dir (the admin dir of a linked worktree).
    git_dir: &'a Path,
    /// The common git dir the set goes into.
    common: &'a Path,
    /// The admin name that names the set.
    name: &'a str,
}

/// Preserves the worktree `s` describes into its common repository.
fn preserve_into(s: &Source<'_>, time: SystemTime) -> Result<Preserved, PreserveError> {
    let owner = owner_uid(s.common)?;
    let scratch = Scratch::new(s.common)?;
    let stamp = compact_stamp(&ledger::format_timestamp(time));
    let top = capture(
        &Target {
            dir: s.worktree,
            origin: s.origin,
            git_dir: s.git_dir,
            owner,
            nested: false,
            repository: s.common,
            admin_name: Some(s.name.to_owned()),
            stamp: &stamp,
        },
        &scratch,
    )?;
    let repo = Repo {
        dir: s.worktree,
        owner,
        git_dir: Some(s.git_dir),
    };
    let unique = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let scratch_refs = format!("{SCRATCH_NAMESPACE}/{}-{unique}", std::process::id());
    let written = modules(
        &repo,
        s.worktree,
        s.common,
        &top,
        &stamp,
        &scratch,
        &scratch_refs,
    )
    .and_then(|modules| write_set(&repo, s, &top, &modules, &stamp, time, &scratch_refs));
    if written.is_err() {
        drop_refs(&repo, &scratch_refs);
    }
    let p = written?;
    log::debug!("preserved {}: {}", s.worktree.display(), p.refs.join(", "));
    Ok(p)
}

/// Preserves a broken worktree, the directory `entry` whose `.git` leads
/// to no admin dir, into the repository whose common dir is `common`
/// (found by `claim::find_repository`), under the admin name `name`.
/// With its admin dir (`admin`: the repository moved along with it) the
/// whole state is recorded as for any worktree. Without it (pruned or
/// deleted: HEAD, index and in-progress state died with it), the files are
/// recorded against the repository's HEAD: a stand-in worktree is added
/// (`git worktree add --no-checkout`, its index read from HEAD) and its git
/// dir used with `entry` as the work tree; it is removed afterwards. Runs
/// as the repository's owner.
pub fn preserve_broken(
    entry: &Path,
    common: &Path,
    admin: Option<&Path>,
    name: &str,
    time: SystemTime,
) -> Result<Preserved, PreserveError> {
    if let Some(admin) = admin {
        let source = Source {
            worktree: entry,
            origin: entry,
            git_dir: admin,
            common,
            name,
        };
        return preserve_into(&source, time);
    }
    let owner = owner_uid(common)?;
    let repo = Repo::new(common, owner);
    let head = repo
        .maybe(
            &["rev-parse", "-q", "--verify", "HEAD^{commit}"],
            "reading the repository's HEAD",
        )?
        .ok_or_else(|| PreserveError::Unpreservable {
            path: common.to_path_buf(),
            why: "the repository has no commit to record the files against".into(),
        })?;
    // Adding a worktree reads every worktree's admin dir.
    refuse_unreadable(entry, common)?;
    let scratch = Scratch::new(common)?;
    let stand_in = scratch.path("worktree");
    repo.out(
        repo.git()?
            .args(["worktree", "add", "--quiet", "--no-checkout", "--detach"])
            .arg(&stand_in)
            .arg(&head),
        "adding a stand-in worktree",
    )?;
    let preserved = Repo::new(&stand_in, owner)
        .text(
            &["rev-parse", "--absolute-git-dir"],
            "finding the stand-in's git dir",
        )
        .and_then(|git_dir| {
            let git_dir = PathBuf::from(git_dir);
            let files = Repo {
                dir: entry,
                owner,
                git_dir: Some(&git_dir),
            };
            files.out(
                files.git()?.args(["read-tree", &head]),
                "reading HEAD into the index",
            )?;
            let source = Source {
                worktree: entry,
                origin: entry,
                git_dir: &git_dir,
                common,
                name,
            };
            preserve_into(&source, time)
        });
    let removed = repo.git().and_then(|git| {
        repo.out(
            git.args(["worktree", "remove", "--force"]).arg(&stand_in),
            "removing the stand-in worktree",
        )
    });
    if let Err(e) = removed {
        log::warn!("{e}");
    }
    preserved
}

/// The uid that owns the common dir `common`: every git command runs as it.
pub(crate) fn owner_uid(common: &Path) -> Result<u32, PreserveError> {
    crate::as_owner::owner_of(common)
        .map(|o| o.uid)
        .map_err(|source| PreserveError::Io {
            path: common.to_path_buf(),
            doing: "reading the repository's owner".into(),
            source,
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

/// Captures every nested repository (breadth first, by path from the top),
/// fetching its refs, its state tree and the objects its state names into
/// the top repository under `scratch_refs/modules/<enc>/`. Returns each
/// module's encoded path and state tree.
fn modules(
    top_repo: &Repo<'_>,
    top: &Path,
    common: &Path,
    captured: &Captured,
    stamp: &str,
    scratch: &Scratch,
    scratch_refs: &str,
) -> Result<Vec<(String, String)>, PreserveError> {
    let mut queue: VecDeque<(Vec<u8>, ModuleKind)> = captured.nested.iter().cloned().collect();
    let mut out = Vec::new();
    // A fetch reads every worktree's HEAD (it never updates a checked-out
    // branch): where git would block, nothing is fetched.
    if !queue.is_empty() {
        refuse_unreadable(top, common)?;
    }
    while let Some((path, _)) = queue.pop_front() {
        let dir = top.join(OsStr::from_bytes(&path));
        if out.len() == MAX_MODULES {
            return Err(PreserveError::Unpreservable {
                path: dir,
                why: format!("more than {MAX_MODULES} nested repositories"),
            });
        }
        let repo = Repo::new(&dir, top_repo.owner);
        let git_dir = PathBuf::from(repo.text(
            &["rev-parse", "--absolute-git-dir"],
            "finding a nested repository's git dir",
        )?);
        let c = capture(
            &Target {
                dir: &dir,
                origin: &dir,
                git_dir: &git_dir,
                owner: top_repo.owner,
                nested: true,
                repository: &git_dir,
                admin_name: None,
                stamp,
            },
            scratch,
        )?;
        let enc = layout::encode(&path);
        let dst = format!("{scratch_refs}/{MODULES}/{enc}");
        let mut refspecs = vec![c.tree.clone(), format!("+refs/*:{dst}/refs/*")];
        refspecs.extend(
            c.keep
                .iter()
                .map(|k| format!("{}:{dst}/keep/{}", k.oid, k.name)),
        );
        top_repo.out(
            top_repo
                .git()?
                .args(layout::LOCAL_FETCH)
                .arg("--end-of-options")
                .arg(&git_dir)
                .args(&refspecs),
            "fetching a nested repository's objects",
        )?;
        for (child, kind) in &c.nested {
            queue.push_back(([&path[..], b"/", child].concat(), *kind));
        }
        out.push((enc, c.tree));
    }
    Ok(out)
}

/// Writes the commits of the set and then its refs, in one transaction
/// under the first free stamp.
fn write_set(
    repo: &Repo<'_>,
    s: &Source<'_>,
    top: &Captured,
    modules: &[(String, String)],
    stamp: &str,
    time: SystemTime,
    scratch_refs: &str,
) -> Result<Preserved, PreserveError> {
    let tree = extend_tree(repo, &top.tree, modules, &top.keep)?;
    let head = top.meta.head.as_deref();
    let date = format!(
        "@{} +0000",
        time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    );
    let commit = |tree: &str, parents: &[&str], message: &str| -> Result<String, PreserveError> {
        let mut git = repo
            .git()?
            .env("GIT_AUTHOR_NAME", SIGNATURE_NAME)
            .env("GIT_AUTHOR_EMAIL", SIGNATURE_EMAIL)
            .env("GIT_COMMITTER_NAME", SIGNATURE_NAME)
            .env("GIT_COMMITTER_EMAIL", SIGNATURE_EMAIL)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit-tree", "--no-gpg-sign", "-m", message]);
        for p in parents {
            git = git.args(["-p", p]);
        }
        let out = repo.out(git.arg(tree), "writing a commit")?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    };
    let head_parents: Vec<&str> = head.into_iter().collect();
    let mut state_parents = head_parents.clone();
    for k in top.keep.iter().filter(|k| k.kind == "commit") {
        if !state_parents.contains(&k.oid.as_str()) {
            state_parents.push(&k.oid);
        }
    }
    let state = commit(
        &tree,
        &state_parents,
        &format!("treeward: preserved state of {}", s.name),
    )?;

    let head_tree = match head {
        Some(h) => repo.text(
            &["rev-parse", &format!("{h}^{{tree}}")],
            "reading HEAD's tree",
        )?,
        None => repo.mktree(&[])?,
    };
    let work = if has_work(&head_tree, top) {
        let on = match head {
            Some(h) => {
                let line = repo.text(
                    &[
                        "log",
                        "-1",
                        "--no-show-signature",
                        "--format=%h %s",
                        "--abbrev=7",
                        h,
                    ],
                    "reading HEAD's subject",
                )?;
                format!("{}: {line}", label(top.meta.branch.as_deref()))
            }
            None => format!("{}: (no commit yet)", label(top.meta.branch.as_deref())),
        };
        let i = commit(&top.index_tree, &head_parents, &format!("index on {on}\n"))?;
        let u = top
            .untracked_tree
            .as_deref()
            .map(|u| commit(u, &[], &format!("untracked files on {on}\n")))
            .transpose()?;
        let mut parents = head_parents.clone();
        parents.push(&i);
        parents.extend(u.as_deref());
        Some(commit(&top.work_tree, &parents, &format!("WIP on {on}\n"))?)
    } else {
        None
    };
    // Walking from every worktree's HEAD reads their admin dirs: where git
    // would block, the detached HEAD is taken as unreachable (kept).
    let walkable = unreadable_worktree(s.common)?.is_none();
    let unreachable_head = match (top.meta.branch.as_deref(), head) {
        (None, Some(h)) if !walkable => Some(h.to_owned()),
        (None, Some(h)) => repo
            .maybe(
                &[
                    "rev-list",
                    "-n1",
                    h,
                    "--not",
                    // What dies with the worktree reaches nothing.
                    "--exclude=HEAD",
                    "--exclude=refs/worktree/*",
                    "--exclude=refs/bisect/*",
                    "--exclude=refs/rewritten/*",
                    "--all",
                ],
                "walking the detached HEAD's commits",
            )?
            .is_some_and(|out| !out.is_empty())
            .then(|| h.to_owned()),
        _ => None,
    };
    let fetched = repo.text(
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            &format!("{scratch_refs}/"),
        ],
        "reading the fetched refs",
    )?;
    let fetched: Vec<(String, String)> = fetched
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect();
    let planned = planned_refs(
        &state,
        work.as_deref(),
        unreachable_head.as_deref(),
        top,
        &fetched,
        scratch_refs,
    );
    let base = format!("{NAMESPACE}/{}", ref_component(s.name));
    let refs = write_refs(repo, &base, stamp, &planned, &fetched)?;
    Ok(Preserved { refs, work })
}

/// The state tree with a `modules` subtree of the nested repositories'
/// state trees and a `keep` subtree of the trees and blobs the state names
/// (the commits it names are the state commit's parents).
fn extend_tree(
    repo: &Repo<'_>,
    tree: &str,
    modules: &[(String, String)],
    keep: &[Kept],
) -> Result<String, PreserveError> {
    let kept: Vec<(u32, &str, String, Vec<u8>)> = keep
        .iter()
        .filter_map(|k| {
            let mode = match k.kind.as_str() {
                "tree" => 0o040000,
                "blob" => layout::MODE_FILE,
                _ => return None,
            };
            Some((
                mode,
                k.kind.as_str(),
                k.oid.clone(),
                k.name.as_bytes().to_vec(),
            ))
        })
        .collect();
    if modules.is_empty() && kept.is_empty() {
        return Ok(tree.to_owned());
    }
    let listed = repo.out(
        repo.git()?.read_only().args(["ls-tree", "-z", "-l", tree]),
        "reading the state tree",
    )?;
    let mut top: Vec<(u32, &str, String, Vec<u8>)> = layout::parse_ls_tree(&listed)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let kind = if e.mode == 0o040000 { "tree" } else { "blob" };
            (e.mode, kind, e.oid, e.path)
        })
        .collect();
    if !modules.is_empty() {
        let entries: Vec<(u32, &str, String, Vec<u8>)> = modules
            .iter()
            .map(|(enc, t)| (0o040000, "tree", t.clone(), enc.as_bytes().to_vec()))
            .collect();
        top.push((
            0o040000,
            "tree",
            repo.mktree(&entries)?,
            MODULES.as_bytes().to_vec(),
        ));
    }
    if !kept.is_empty() {
        top.push((
            0o040000,
            "tree",
            repo.mktree(&kept)?,
            KEEP.as_bytes().to_vec(),
        ));
    }
    repo.mktree(&top)
}

/// `git stash`'s label for HEAD: the branch's short name, or `(no branch)`.
fn label(branch: Option<&str>) -> &str {
    branch.map_or("(no branch)", |b| {
        b.strip_prefix("refs/heads/").unwrap_or(b)
    })
}

/// Whether the trees hold anything HEAD does not: a stash is due.
fn has_work(head_tree: &str, top: &Captured) -> bool {
    top.conflicted
        || top.untracked_tree.is_some()
        || top.index_tree != head_tree
        || top.work_tree != top.index_tree
}

/// The refs of the set, relative to `<namespace>/<worktree>/<stamp>/`, and
/// their targets: the state, the work commit, the detached HEAD when
/// commits of it would be lost, a copy of each per-worktree ref
/// (`refs/worktree/x` → `worktree/x`), the objects the state names
/// (`keep/<name>`), and the nested repositories' fetched refs.
fn planned_refs(
    state: &str,
    work: Option<&str>,
    unreachable_head: Option<&str>,
    top: &Captured,
    fetched: &[(String, String)],
    scratch_refs: &str,
) -> Vec<(String, String)> {
    let mut out = vec![("state".to_owned(), state.to_owned())];
    out.extend(work.map(|w| ("work".to_owned(), w.to_owned())));
    out.extend(unreachable_head.map(|h| ("head".to_owned(), h.to_owned())));
    for (name, oid) in &top.meta.worktree_refs {
        if let Some(rest) = name.strip_prefix("refs/") {
            out.push((rest.to_owned(), oid.clone()));
        }
    }
    for (name, oid) in fetched {
        if let Some(rest) = name
            .strip_prefix(scratch_refs)
            .and_then(|r| r.strip_prefix('/'))
        {
            out.push((rest.to_owned(), oid.clone()));
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

/// Pure: the `git update-ref --stdin -z` input that creates every planned
/// ref under `prefix` (failing if any exists) and deletes the `fetched`
/// scratch refs, in one transaction.
fn transaction(
    prefix: &str,
    planned: &[(String, String)],
    fetched: &[(String, String)],
) -> Vec<u8> {
    let mut input = Vec::new();
    for (rel, oid) in planned {
        input.extend(format!("create {prefix}/{rel}\0{oid}\0").bytes());
    }
    for (name, oid) in fetched {
        input.extend(format!("delete {name}\0{oid}\0").bytes());
    }
    input
}

/// Writes the planned refs under `<base>/<stamp>` (or the first free
/// `<stamp>-N`) in one transaction, never overwriting a ref: a name taken
/// meanwhile (a concurrent preserve) moves the whole set to the next
/// candidate. Returns the full names, sorted.
fn write_refs(
    repo: &Repo<'_>,
    base: &str,
    stamp: &str,
    planned: &[(String, String)],
    fetched: &[(String, String)],
) -> Result<Vec<String>, PreserveError> {
    let taken = |repo: &Repo<'_>| -> Result<BTreeSet<String>, PreserveError> {
        let out = repo.text(
            &["for-each-ref", "--format=%(refname)", &format!("{base}/")],
            "listing the preserved refs",
        )?;
        Ok(out
            .lines()
            .filter_map(|n| stamp_of(base, n))
            .map(str::to_owned)
            .collect())
    };
    let mut used = taken(repo)?;
    for n in 0..10_000 {
        let candidate = stamp_candidate(stamp, n);
        if used.contains(&candidate) {
            continue;
        }
        let prefix = format!("{base}/{candidate}");
        let written = repo.out(
            repo.git()?
                .args(["update-ref", "--stdin", "-z"])
                .stdin(transaction(&prefix, planned, fetched)),
            "writing the preserved refs",
        );
        match written {
            Ok(_) => {
                let mut refs: Vec<String> = planned
                    .iter()
                    .map(|(rel, _)| format!("{prefix}/{rel}"))
                    .collect();
                refs.sort();
                return Ok(refs);
            }
            Err(e) => {
                used = taken(repo)?;
                if !used.contains(&candidate) {
                    return Err(e);
                }
            }
        }
    }
    Err(PreserveError::Unpreservable {
        path: repo.dir.to_path_buf(),
        why: format!("no free name left under {base}/{stamp}"),
    })
}

/// Deletes every ref under `prefix`, best effort (the scratch refs of a
/// preserve that failed).
fn drop_refs(repo: &Repo<'_>, prefix: &str) {
    let listed = repo.text(
        &[
            "for-each-ref",
            "--format=delete %(refname)",
            &format!("{prefix}/"),
        ],
        "listing scratch refs",
    );
    let result = listed.and_then(|list| {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        repo.out(
            repo.git()?
                .args(["update-ref", "--stdin"])
                .stdin(format!("{list}\n").into_bytes()),
            "deleting scratch refs",
        )
    });
    if let Err(e) = result {
        log::warn!("{e}");
    }
}

/// The refs of a set that already keeps the detached HEAD `head` of the
/// worktree named `name` (its `head` ref points at it): the set of an
/// earlier reclaim of this worktree, cut short after its refs were written.
/// That set is why the detached commits no longer count as at risk; a rerun
/// reports them preserved there rather than removed unrecorded. Empty when
/// there is none (the newest set is taken when there are several). `listed`
/// are the refs the worktree's assessment listed just before (a set's
/// `head` ref names the commit itself): git lists a set's refs only when
/// one keeps the HEAD. Runs as the repository's owner.
pub fn set_keeping_head(
    common: &Path,
    name: &str,
    head: &str,
    listed: &risk::refs::Refs,
) -> Result<Vec<String>, PreserveError> {
    let base = format!("{NAMESPACE}/{}", ref_component(name));
    let within = format!("{base}/");
    let heads: String = listed
        .0
        .iter()
        .filter(|r| r.oid == head && r.name.starts_with(&within))
        .map(|r| format!("{}\n", r.name))
        .collect();
    let Some(stamp) = newest_stamp_with_head(&base, &heads) else {
        return Ok(Vec::new());
    };
    let repo = Repo::new(common, owner_uid(common)?);
    let refs = repo.text(
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("{base}/{stamp}/"),
        ],
        "listing the set's refs",
    )?;
    Ok(refs.lines().map(str::to_owned).collect())
}

/// Pure: the newest stamp under `base` among `refs` (one name a line) that
/// names a set's `head` ref.
fn newest_stamp_with_head<'a>(base: &str, refs: &'a str) -> Option<&'a str> {
    refs.lines()
        .filter_map(|r| {
            let stamp = stamp_of(base, r)?;
            (r.strip_prefix(base)? == format!("/{stamp}/head")).then_some(stamp)
        })
        .max_by(|a, b| stamp_order(a).cmp(&stamp_order(b)))
}

/// Pure: the order of stamps: by time, then by the `-N` of a taken one.
fn stamp_order(stamp: &str) -> (&str, u64) {
    match stamp.split_once('-') {
        Some((t, n)) => (t, n.parse().unwrap_or(0)),
        None => (stamp, 0),
    }
}

pub(crate) fn io_error(path: &Path, doing: &str, errno: nix::errno::Errno) -> PreserveError {
    PreserveError::Io {
        path: path.to_path_buf(),
        doing: doing.into(),
        source: io::Error::from(errno),
    }
}

/// The files git reads of every worktree when it lists them or walks from
/// all their HEADs.
const WORKTREE_FILES: &[&str] = &["HEAD", "gitdir", "commondir", "locked"];

/// Where git would block or misread when it reads every worktree of the
/// repository (`git worktree list`, `rev-list --all`): the first admin dir
/// that is not a directory, or whose [`WORKTREE_FILES`] are not regular
/// files (a FIFO), and why; `None` when there is nothing of the kind.
/// Read relative to directory descriptors, never through a symlink.
pub fn unreadable_worktree(common: &Path) -> Result<Option<(PathBuf, String)>, PreserveError> {
    let dirs = match admin_dirs(common) {
        Ok(dirs) => dirs,
        Err(PreserveError::Unpreservable { path, why }) => return Ok(Some((path, why))),
        Err(e) => return Err(e),
    };
    for (dir, fd) in dirs {
        for file in WORKTREE_FILES {
            match fd::stat_at(fd.as_fd(), OsStr::new(file)) {
                Ok(Some(st)) if st.st_mode & 0o170000 != 0o100000 => {
                    return Ok(Some((
                        dir.join(file),
                        format!("is {}", fd::kind_name(st.st_mode)),
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(io_error(&dir.join(file), "reading", e)),
            }
        }
    }
    Ok(None)
}

/// [`unreadable_worktree`] as an error about `path`.
fn refuse_unreadable(path: &Path, common: &Path) -> Result<(), PreserveError> {
    match unreadable_worktree(common)? {
        Some((at, why)) => Err(PreserveError::Unpreservable {
            path: path.to_path_buf(),
            why: format!("{} {why}: git would block on it", at.display()),
        }),
        None => Ok(()),
    }
}

/// The common dir and every `worktrees/<id>` admin dir, opened relative to
/// descriptors; one that is a symlink or not a directory is
/// [`PreserveError::Unpreservable`] (it cannot be read as git would).
pub(crate) fn admin_dirs(
    common: &Path,
) -> Result<Vec<(PathBuf, std::os::fd::OwnedFd)>, PreserveError> {
    let cannot = |path: &Path, e: nix::errno::Errno| PreserveError::Unpreservable {
        path: path.to_path_buf(),
        why: e.desc().to_owned(),
    };
    let common_fd =
        fd::open_path_trusted(common).map_err(|e| io_error(common, "opening the repository", e))?;
    let worktrees = common.join("worktrees");
    let mut out = Vec::new();
    match fd::open_dir_at(common_fd.as_fd(), OsStr::new("worktrees")) {
        Ok(dir) => {
            let names = crate::remove::list_names(dir.as_fd())
                .map_err(|e| io_error(&worktrees, "listing worktrees", e))?;
            for name in names {
                let path = worktrees.join(&name);
                match fd::open_path_at(dir.as_fd(), &name) {
                    Ok(fd) => out.push((path, fd)),
                    Err(e @ (nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR)) => {
                        return Err(cannot(&path, e))
                    }
                    Err(e) => return Err(io_error(&path, "opening an admin dir", e)),
                }
            }
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e @ (nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR)) => {
            return Err(cannot(&worktrees, e))
        }
        Err(e) => return Err(io_error(&worktrees, "listing worktrees", e)),
    }
    out.insert(0, (common.to_path_buf(), common_fd));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_compact_and_numbered() {
        assert_eq!(compact_stamp("2026-11-20T23:15:00Z"), "20261120T231500Z");
        assert_eq!(stamp_candidate("20261120T231500Z", 0), "20261120T231500Z");
        assert_eq!(stamp_candidate("20261120T231500Z", 2), "20261120T231500Z-2");
    }

    #[test]
    fn the_newest_set_keeping_a_head_is_found() {
        let base = "refs/treeward/preserved/wt";
        let refs = format!(
            "{base}/20260101T000000Z/head\n{base}/20260102T000000Z/worktree/x\n\
             {base}/20260101T000000Z-2/head\n{base}/20260101T000000Z-10/head\n"
        );
        assert_eq!(
            newest_stamp_with_head(base, &refs),
            Some("20260101T000000Z-10")
        );
        // A ref that is not a set's `head` does not count (control).
        assert_eq!(
            newest_stamp_with_head(base, &format!("{base}/20260102T000000Z/worktree/x\n")),
            None
        );
        assert_eq!(newest_stamp_with_head(base, ""), None);
    }

    #[test]
    fn without_a_set_at_the_head_git_is_not_asked() {
        let base = "refs/treeward/preserved/wt";
        let listed = risk::refs::parse(
            format!(
                "refs/heads/main aaa  \n{base}/20260101T000000Z/head bbb  \n\
                 refs/treeward/preserved/other/20260101T000000Z/head aaa  \n"
            )
            .as_bytes(),
        )
        .unwrap();
        // No repository is there: a git call would fail.
        let none = Path::new("/nonexistent/treeward-test");
        assert_eq!(
            set_keeping_head(none, "wt", "aaa", &listed).unwrap(),
            Vec::<String>::new()
        );
        // Control: a set of this worktree at the head is looked up in git.
        assert!(set_keeping_head(none, "wt", "bbb", &listed).is_err());
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
            let valid = std::process::Command::new("git")
                .args(["check-ref-format", &full])
                .status()
                .unwrap()
                .success();
            assert!(valid, "{full}");
        }
    }

    #[test]
    fn the_transaction_creates_the_set_and_drops_the_scratch_refs() {
        let planned = vec![
            ("state".to_owned(), "aa".to_owned()),
            ("modules/sub/refs/heads/main".to_owned(), "bb".to_owned()),
        ];
        let fetched = vec![(
            "refs/treeward/tmp/1-2/modules/sub/refs/heads/main".to_owned(),
            "bb".to_owned(),
        )];
        assert_eq!(
            transaction("refs/treeward/preserved/wt/S", &planned, &fetched),
            b"create refs/treeward/preserved/wt/S/state\0aa\0\
create refs/treeward/preserved/wt/S/modules/sub/refs/heads/main\0bb\0\
delete refs/treeward/tmp/1-2/modules/sub/refs/heads/main\0bb\0"
                .to_vec()
        );
    }
}
