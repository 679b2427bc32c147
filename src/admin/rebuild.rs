//! The git side of `treeward restore`: turn one set of preserved refs
//! (`refs/treeward/preserved/<name>/<stamp>/…`, see `preserve`) back into a
//! linked worktree with the same uncommitted state. Runs as the
//! repository's owner (through `as_owner` when the caller is root).
//!
//! What it builds, from the stash-shaped work commit `W` (parents `[HEAD, I]`
//! or `[HEAD, I, U]`; `[I]` or `[I, U]` on an unborn branch):
//! - a linked worktree at the path (`git worktree add --no-checkout`, hooks
//!   off, so no `post-checkout` records it: the caller updates the ledger),
//!   on the original branch when it still exists, still points at HEAD and
//!   is checked out nowhere, else detached at HEAD (`…/head` when the HEAD
//!   was a detached one); an unborn branch comes back as an orphan branch;
//! - the working tree checked out from `W`, the index set to `I`'s tree, the
//!   untracked files of `U` written as new files (never over one);
//! - the per-worktree refs (`…/worktree/x` → `refs/worktree/x`,
//!   `…/bisect/x` → `refs/bisect/x`).
//!
//! Something already at the path is renamed aside to
//! `<path>.treeward-aside-<stamp>` (never overwritten), unless it is a live
//! linked worktree, which is refused. The directory is then created with
//! `mkdir` before git runs, so that nothing planted at the path meanwhile
//! (a symlink, someone else's empty directory) is ever written through.
//! Everything is checked before anything changes; a failing `git worktree
//! add` puts the aside back. The preserved refs are never deleted.

use crate::preserve::{self, NAMESPACE};
use crate::risk::{self, Location};
use git2::{
    build::CheckoutBuilder, Commit, ObjectType, Oid, Repository, RepositoryOpenFlags, Tree,
};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a restore did (or, under dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub path: PathBuf,
    /// Where what was at the path went.
    pub aside: Option<PathBuf>,
    /// The new worktree's admin name (null under dry run).
    pub worktree_name: Option<String>,
    /// The branch checked out; null when detached.
    pub branch: Option<String>,
    /// The HEAD commit; null on an unborn branch.
    pub head: Option<String>,
    /// The work commit restored from, if there was uncommitted work.
    pub work: Option<String>,
    /// Per-worktree refs recreated.
    pub worktree_refs: Vec<String>,
    /// The refs of the set restored from (kept).
    pub preserved_refs: Vec<String>,
    pub dry_run: bool,
}

/// The preserved set, read from the repository.
struct Set<'r> {
    work: Option<Commit<'r>>,
    head: Option<Oid>,
    /// (ref to create, target).
    worktree_refs: Vec<(String, Oid)>,
    /// Full names of every ref of the set, sorted.
    names: Vec<String>,
}

/// The work commit taken apart.
struct Work<'r> {
    head: Option<Oid>,
    index: Tree<'r>,
    tree: Tree<'r>,
    untracked: Option<Tree<'r>>,
    /// The branch named in the commit message; `None` when it was detached.
    branch: Option<String>,
}

/// Where the new worktree's HEAD goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Checkout {
    Branch(String),
    Detached(Oid),
    Orphan(String),
}

/// Restores the set `prefix` (`refs/treeward/preserved/<name>/<stamp>`) of
/// the repository whose common dir is `common` into a new worktree at
/// `path`. `branch` is the record's branch, used when only per-worktree refs
/// were preserved.
pub fn rebuild(
    common: &Path,
    prefix: &str,
    path: &Path,
    branch: Option<&str>,
    dry_run: bool,
) -> Result<Restored, String> {
    if !prefix.starts_with(&format!("{NAMESPACE}/")) || !path.is_absolute() {
        return Err(format!(
            "refusing to restore {prefix} to {}",
            path.display()
        ));
    }
    let repo = Repository::open_ext(
        common,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        format!(
            "{}: cannot open the repository: {}",
            common.display(),
            e.message()
        )
    })?;
    let git =
        |doing: &'static str| move |e: git2::Error| format!("{prefix}: {doing}: {}", e.message());
    let set = read_set(&repo, prefix).map_err(git("reading the preserved refs"))?;
    let work = set
        .work
        .as_ref()
        .map(take_apart)
        .transpose()
        .map_err(git("reading the work commit"))?;
    let checkout = choose_checkout(common, &repo, &set, work.as_ref(), branch)?;
    let aside = plan_aside(path)?;
    let mut out = Restored {
        path: path.to_path_buf(),
        aside: aside.clone(),
        worktree_name: None,
        branch: match &checkout {
            Checkout::Branch(b) | Checkout::Orphan(b) => Some(b.clone()),
            Checkout::Detached(_) => None,
        },
        head: match &checkout {
            Checkout::Detached(h) => Some(h.to_string()),
            Checkout::Branch(b) => repo
                .refname_to_id(&format!("refs/heads/{b}"))
                .ok()
                .map(|o| o.to_string()),
            Checkout::Orphan(_) => None,
        },
        work: set.work.as_ref().map(|c| c.id().to_string()),
        worktree_refs: set.worktree_refs.iter().map(|(n, _)| n.clone()).collect(),
        preserved_refs: set.names.clone(),
        dry_run,
    };
    if dry_run {
        return Ok(out);
    }
    if let Some(aside) = &aside {
        move_aside(path, aside)?;
    }
    if let Err(e) = make_worktree_dir(path) {
        if let Some(aside) = &aside {
            if let Err(back) = rename_no_replace(aside, path) {
                log::error!("{back}");
            }
        }
        return Err(e);
    }
    if let Err(e) = add_worktree(common, path, &checkout) {
        // git removes the directory when it fails after taking it; when
        // it fails before, the directory is still ours and still empty.
        let _ = fs::remove_dir(path);
        if let Some(aside) = &aside {
            if let Err(back) = rename_no_replace(aside, path) {
                log::error!("{back}");
            }
        }
        return Err(e);
    }
    let wt = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        format!(
            "{}: opening the new worktree: {}",
            path.display(),
            e.message()
        )
    })?;
    out.worktree_name = wt
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    fill(&wt, path, work.as_ref(), &set.worktree_refs).map_err(|e| {
        format!(
            "{e}; the new worktree at {} is incomplete (the preserved refs are intact): \
             `git worktree remove --force {}` and restore again",
            path.display(),
            path.display()
        )
    })?;
    log::info!("restored {prefix} to {}", path.display());
    Ok(out)
}

/// Fills the new worktree: files, index, untracked files, per-worktree refs.
fn fill(
    wt: &Repository,
    path: &Path,
    work: Option<&Work<'_>>,
    worktree_refs: &[(String, Oid)],
) -> Result<(), String> {
    match work {
        Some(w) => fill_from_work(wt, path, w)?,
        None => wt
            .checkout_head(Some(CheckoutBuilder::new().force()))
            .map_err(|e| format!("{}: checking out HEAD: {}", path.display(), e.message()))?,
    }
    for (name, oid) in worktree_refs {
        wt.reference(name, *oid, false, "treeward: restore")
            .map_err(|e| format!("{}: creating {name}: {}", path.display(), e.message()))?;
    }
    Ok(())
}

/// The refs of the set and what they point at.
fn read_set<'r>(repo: &'r Repository, prefix: &str) -> Result<Set<'r>, git2::Error> {
    let mut set = Set {
        work: None,
        head: None,
        worktree_refs: Vec::new(),
        names: Vec::new(),
    };
    for r in repo.references()? {
        let r = r?;
        let Some(name) = r.name().ok() else { continue };
        let Some(rest) = name.strip_prefix(prefix).and_then(|n| n.strip_prefix('/')) else {
            continue;
        };
        set.names.push(name.to_owned());
        let Some(oid) = r.target() else { continue };
        if rest == "work" {
            set.work = Some(repo.find_commit(oid)?);
        } else if rest == "head" {
            set.head = Some(oid);
        } else if rest.starts_with("worktree/") || rest.starts_with("bisect/") {
            set.worktree_refs.push((format!("refs/{rest}"), oid));
        }
    }
    if set.names.is_empty() {
        return Err(git2::Error::from_str(
            "no such preserved refs in this repository",
        ));
    }
    set.worktree_refs.sort();
    set.names.sort();
    Ok(set)
}

/// Splits a stash-shaped commit into HEAD, index, tree and untracked files.
/// With a HEAD, `I` (second parent) has HEAD as its parent; on an unborn
/// branch `I` is the first parent and has none.
fn take_apart<'r>(w: &Commit<'r>) -> Result<Work<'r>, git2::Error> {
    let with_head =
        w.parent_count() >= 2 && w.parent(1)?.parent_ids().next() == Some(w.parent_id(0)?);
    let (head, i_at) = if with_head {
        (Some(w.parent_id(0)?), 1)
    } else {
        (None, 0)
    };
    let untracked = match w.parent(i_at + 1) {
        Ok(u) => Some(u.tree()?),
        Err(_) => None,
    };
    Ok(Work {
        head,
        index: w.parent(i_at)?.tree()?,
        tree: w.tree()?,
        untracked,
        branch: branch_of_message(w.message().unwrap_or_default()),
    })
}

/// Pure: the branch a `WIP on <branch>: …` message names; `None` for
/// `(no branch)` or another message.
pub fn branch_of_message(message: &str) -> Option<String> {
    let label = message.strip_prefix("WIP on ")?.split(": ").next()?;
    (label != "(no branch)" && !label.is_empty()).then(|| label.to_owned())
}

/// Decides where the new worktree's HEAD goes.
fn choose_checkout(
    common: &Path,
    repo: &Repository,
    set: &Set<'_>,
    work: Option<&Work<'_>>,
    record_branch: Option<&str>,
) -> Result<Checkout, String> {
    let (head, branch) = match work {
        Some(w) => (w.head, w.branch.clone()),
        None => (set.head, record_branch.map(str::to_owned)),
    };
    let tip = branch
        .as_ref()
        .and_then(|b| repo.refname_to_id(&format!("refs/heads/{b}")).ok());
    let free = |b: &str| -> Result<bool, String> {
        preserve::checked_out_anywhere(common, b)
            .map(|c| !c)
            .map_err(|e| e.to_string())
    };
    match (head, branch, tip) {
        (Some(h), Some(b), Some(t)) if t == h && free(&b)? => Ok(Checkout::Branch(b)),
        (Some(h), _, _) => Ok(Checkout::Detached(h)),
        // Unborn: the branch has no commit, so it must not exist now.
        (None, Some(b), None) if work.is_some() => Ok(Checkout::Orphan(b)),
        (None, Some(b), Some(_)) if work.is_none() && free(&b)? => Ok(Checkout::Branch(b)),
        _ => Err(format!(
            "nothing to restore a HEAD from: no work commit, no detached HEAD, and the branch \
             {} does not exist or is checked out elsewhere",
            record_branch.unwrap_or("(none recorded)")
        )),
    }
}

/// Where what is at `path` would go; `None` when nothing is there. A live
/// linked worktree is refused: moving it would break it.
fn plan_aside(path: &Path) -> Result<Option<PathBuf>, String> {
    match risk::locate(path) {
        Location::Missing => Ok(None),
        Location::Linked { common, .. } => Err(format!(
            "{} is a linked worktree of {}: remove or move it with git first, or restore \
             elsewhere with --path",
            path.display(),
            common.display()
        )),
        _ => {
            let stamp: String = crate::ledger::now()
                .chars()
                .filter(|c| *c != '-' && *c != ':')
                .collect();
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".treeward-aside-{stamp}"));
            let base = PathBuf::from(name);
            (0..1000)
                .map(|n| {
                    if n == 0 {
                        base.clone()
                    } else {
                        PathBuf::from(format!("{}-{n}", base.display()))
                    }
                })
                .find(|p| fs::symlink_metadata(p).is_err())
                .map(Some)
                .ok_or_else(|| format!("{}: no free aside name", path.display()))
        }
    }
}

/// Creates the new worktree's directory, as the serving user, before git
/// runs: `mkdir` takes the name or fails, and never follows a symlink there.
/// In a sticky root anyone may create names, and `git worktree add` accepts
/// whatever is at the path if it leads to an empty directory: a symlink
/// (to an empty directory anywhere) or an empty directory of someone else's
/// (renamed away for a symlink once git is inside) planted after the path
/// was found free would have git write `.git` and libgit2 write the whole
/// checkout through it — as root when the repository is root's (restored
/// in-process), and git's own clean-up on failure empties the directory
/// the symlink leads to. A directory this user created in a sticky root
/// can be renamed or replaced by no one else.
fn make_worktree_dir(path: &Path) -> Result<(), String> {
    fs::create_dir(path).map_err(|e| {
        format!(
            "{}: creating the worktree's directory: {e} (something took the path after it was \
             found free: nothing was written there)",
            path.display()
        )
    })
}

fn move_aside(path: &Path, aside: &Path) -> Result<(), String> {
    rename_no_replace(path, aside)?;
    log::warn!("moved {} aside to {}", path.display(), aside.display());
    Ok(())
}

fn rename_no_replace(from: &Path, to: &Path) -> Result<(), String> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| format!("renaming {} to {}: {e}", from.display(), to.display()))
}

/// `git worktree add` without checkout and without hooks, with none of the
/// caller's `GIT_*` variables.
fn add_worktree(common: &Path, path: &Path, checkout: &Checkout) -> Result<(), String> {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("-C").arg(common).args([
        "-c",
        "core.hooksPath=/dev/null",
        "worktree",
        "add",
        "--quiet",
    ]);
    match checkout {
        Checkout::Branch(b) => cmd.arg("--no-checkout").arg(path).arg(b),
        Checkout::Detached(h) => cmd
            .args(["--no-checkout", "--detach"])
            .arg(path)
            .arg(h.to_string()),
        Checkout::Orphan(b) => cmd.args(["--orphan", "-b", b]).arg(path),
    };
    let out = cmd
        .output()
        .map_err(|e| format!("running git worktree add: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git worktree add {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Working tree from `W`, index from `I`, untracked files from `U` (the
/// trees looked up again in the worktree's own repository handle).
fn fill_from_work(wt: &Repository, path: &Path, w: &Work<'_>) -> Result<(), String> {
    let failed = |doing: &'static str| {
        move |e: git2::Error| format!("{}: {doing}: {}", path.display(), e.message())
    };
    let tree = wt
        .find_tree(w.tree.id())
        .map_err(failed("reading the work tree"))?;
    wt.checkout_tree(
        tree.as_object(),
        Some(CheckoutBuilder::new().force().update_index(false)),
    )
    .map_err(failed("checking out the working tree"))?;
    let index_tree = wt
        .find_tree(w.index.id())
        .map_err(failed("reading the index tree"))?;
    let mut index = wt.index().map_err(failed("opening the index"))?;
    index
        .read_tree(&index_tree)
        .map_err(failed("reading the index tree"))?;
    index.write().map_err(failed("writing the index"))?;
    if let Some(u) = &w.untracked {
        write_untracked(wt, path, u)?;
    }
    Ok(())
}

/// Writes every file of `tree` under `top` as a new file (mode 0666 or
/// 0777 less the umask, as git does; symlinks as symlinks).
fn write_untracked(repo: &Repository, top: &Path, tree: &Tree<'_>) -> Result<(), String> {
    let mut error = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let rel = Path::new(dir).join(std::ffi::OsStr::from_bytes(entry.name_bytes()));
        match write_blob(repo, top, &rel, entry.id(), entry.filemode()) {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(e) => {
                error = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    })
    .or_else(|e| match &error {
        Some(_) => Ok(()),
        None => Err(format!(
            "{}: walking the untracked files: {}",
            top.display(),
            e.message()
        )),
    })?;
    error.map_or(Ok(()), Err)
}

fn write_blob(repo: &Repository, top: &Path, rel: &Path, id: Oid, mode: i32) -> Result<(), String> {
    let path = top.join(rel);
    let failed = |e: io::Error| format!("{}: writing an untracked file: {e}", path.display());
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!("{}: not a plain relative path", rel.display()));
    }
    let blob = repo
        .find_blob(id)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
        // A directory of the new worktree, not one a symlink leads out to.
        let inside = parent.canonicalize().map_err(failed)?;
        if !inside.starts_with(top.canonicalize().map_err(failed)?) {
            return Err(format!("{}: leads outside the worktree", path.display()));
        }
    }
    if mode == 0o120000 {
        return std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(blob.content()), &path)
            .map_err(failed);
    }
    let perm = if mode == 0o100755 { 0o777 } else { 0o666 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(&path)
        .map_err(failed)?;
    f.write_all(blob.content()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_from_the_stash_message() {
        assert_eq!(
            branch_of_message("WIP on task-1: abc123 second\n").as_deref(),
            Some("task-1")
        );
        assert_eq!(
            branch_of_message("WIP on feature/x: (no commit yet)\n").as_deref(),
            Some("feature/x")
        );
        assert_eq!(branch_of_message("WIP on (no branch): abc second\n"), None);
        assert_eq!(branch_of_message("index on main: abc"), None);
    }
}
