//! Work that lives only in a worktree's admin dir, as libgit2 sees it: the
//! commits of a detached HEAD that nothing else reaches, and per-worktree
//! refs. Kept only for `preserve` until it moves to git; the checker asks
//! git (`risk::refs`, and `git rev-list` in `risk`).

use crate::fd;
use git2::{Oid, Repository};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The largest HEAD file read.
const MAX_HEAD: u64 = 4096;

/// Ref namespaces git keeps per worktree (in the worktree's admin dir).
const PER_WORKTREE: [&str; 2] = ["refs/worktree/", "refs/bisect/"];

fn is_per_worktree(name: &str) -> bool {
    PER_WORKTREE.iter().any(|p| name.starts_with(p))
}

/// The names of this worktree's per-worktree refs.
pub fn worktree_refs(repo: &Repository) -> Result<Vec<String>, git2::Error> {
    let mut names = Vec::new();
    for r in repo.references()? {
        if let Ok(name) = r?.name() {
            if is_per_worktree(name) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// How many commits reachable from `head` no surviving ref reaches: every
/// ref of the common repository except this worktree's own per-worktree
/// refs, plus the detached HEADs of the other worktrees (which keep their
/// commits alive for as long as they exist).
///
/// A ref that cannot be peeled to a commit is not used to hide anything, so
/// an oddity can only make the count larger (fail closed), never smaller.
pub fn unreachable_from_head(
    repo: &Repository,
    head: Oid,
    common: &Path,
    own_name: Option<&str>,
) -> Result<usize, git2::Error> {
    let mut hidden = Vec::new();
    for r in repo.references()? {
        let r = r?;
        if r.name().is_ok_and(is_per_worktree) {
            continue;
        }
        if let Ok(commit) = r.peel_to_commit() {
            hidden.push(commit.id());
        }
    }
    // Usually the refs alone reach everything: only then is it worth
    // reading every other worktree's HEAD (a thousand files on a busy host).
    let count = count_unhidden(repo, head, &hidden)?;
    if count == 0 {
        return Ok(0);
    }
    hidden.extend(
        other_detached_heads(common, own_name)
            .into_iter()
            .filter(|oid| repo.find_commit(*oid).is_ok()),
    );
    count_unhidden(repo, head, &hidden)
}

/// Commits reachable from `head` and from none of `hidden`.
fn count_unhidden(repo: &Repository, head: Oid, hidden: &[Oid]) -> Result<usize, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    for oid in hidden {
        walk.hide(*oid)?;
    }
    let mut count = 0;
    for oid in walk {
        oid?;
        count += 1;
    }
    Ok(count)
}

/// The commits that the other worktrees of `common` have detached HEADs on.
/// `own_name` is this worktree's admin name, `None` for the main worktree.
/// Below the common dir, read relative to directory descriptors, never
/// through a symlink, never blocking on a FIFO, capped: a HEAD that cannot
/// be read so hides nothing (the count can only grow: fail closed).
fn other_detached_heads(common: &Path, own_name: Option<&str>) -> Vec<Oid> {
    let mut heads = Vec::new();
    let Ok(common_fd) = fd::open_path_trusted(common) else {
        return heads;
    };
    if own_name.is_some() {
        heads.extend(read_detached(common_fd.as_fd()));
    }
    let Ok(worktrees) = fd::open_dir_at(common_fd.as_fd(), OsStr::new("worktrees")) else {
        return heads;
    };
    for name in crate::remove::list_names(worktrees.as_fd()).unwrap_or_default() {
        if own_name.is_some_and(|own| name == own) {
            continue;
        }
        if let Ok(admin) = fd::open_path_at(worktrees.as_fd(), &name) {
            heads.extend(read_detached(admin.as_fd()));
        }
    }
    heads
}

/// The commit in the `HEAD` file of the admin dir `admin` if it is detached
/// (symbolic HEADs name a branch, which is a ref already counted).
fn read_detached(admin: BorrowedFd<'_>) -> Option<Oid> {
    let bytes = fd::read_at(admin, OsStr::new("HEAD"), MAX_HEAD).ok()??;
    Oid::from_str(std::str::from_utf8(&bytes).ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worktree_namespaces() {
        assert!(is_per_worktree("refs/worktree/wip"));
        assert!(is_per_worktree("refs/bisect/bad"));
        assert!(!is_per_worktree("refs/heads/worktree/x"));
        assert!(!is_per_worktree("refs/tags/v1"));
    }
}
