//! Work that lives only in a worktree's admin dir: the commits of a detached
//! HEAD that nothing else reaches, and per-worktree refs. Both die when git's
//! admin entry for the worktree is pruned.

use git2::{Oid, Repository};
use std::fs;
use std::path::Path;

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
fn other_detached_heads(common: &Path, own_name: Option<&str>) -> Vec<Oid> {
    let mut heads = Vec::new();
    if own_name.is_some() {
        heads.extend(read_detached(&common.join("HEAD")));
    }
    if let Ok(dir) = fs::read_dir(common.join("worktrees")) {
        for entry in dir.flatten() {
            if own_name.is_some_and(|own| entry.file_name() == own) {
                continue;
            }
            heads.extend(read_detached(&entry.path().join("HEAD")));
        }
    }
    heads
}

/// The commit in a HEAD file if it is detached (symbolic HEADs name a branch,
/// which is a ref already counted).
fn read_detached(head_file: &Path) -> Option<Oid> {
    let text = fs::read_to_string(head_file).ok()?;
    Oid::from_str(text.trim()).ok()
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
