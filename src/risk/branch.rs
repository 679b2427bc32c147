//! Is a branch's work safe elsewhere? Its upstream and the default branch.
//!
//! "Integrated" follows what a careful reviewer would accept as merged: the
//! same commit, an ancestor of the default branch, or a branch whose changes
//! are already in it (squash and rebase merges rewrite the commits, so
//! ancestry alone would call those branches unmerged and keep them forever).

use git2::{BranchType, ErrorCode, MergeOptions, Oid, Repository};

/// The default branch: `origin/HEAD`, else the first of `origin/main`,
/// `origin/master`, `main`, `master` that exists. Returns its short name and
/// commit.
pub fn default_branch(repo: &Repository) -> Option<(String, Oid)> {
    if let Ok(head) = repo.find_reference("refs/remotes/origin/HEAD") {
        if let Ok(resolved) = head.resolve() {
            if let (Ok(name), Some(oid)) = (resolved.shorthand(), resolved.target()) {
                return Some((name.to_owned(), oid));
            }
        }
    }
    [
        "refs/remotes/origin/main",
        "refs/remotes/origin/master",
        "refs/heads/main",
        "refs/heads/master",
    ]
    .iter()
    .find_map(|name| {
        let r = repo.find_reference(name).ok()?;
        let oid = r.peel_to_commit().ok()?.id();
        Some((r.shorthand().ok()?.to_owned(), oid))
    })
}

/// Whether `branch` is integrated into `default`.
pub fn integrated(repo: &Repository, branch: Oid, default: Oid) -> Result<bool, git2::Error> {
    if branch == default || repo.graph_descendant_of(default, branch)? {
        return Ok(true);
    }
    let base = match repo.merge_base(branch, default) {
        Ok(b) => b,
        // Unrelated histories: nothing of the branch can be in the default.
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let base_tree = repo.find_commit(base)?.tree()?;
    let branch_tree = repo.find_commit(branch)?.tree()?;
    // Three-dot diff empty: the branch's commits change nothing.
    if base_tree.id() == branch_tree.id() {
        return Ok(true);
    }
    // A simulated merge that yields the default branch's tree: every change
    // of the branch is already there (squash or rebase merge).
    let default_tree = repo.find_commit(default)?.tree()?;
    let mut index = repo.merge_trees(
        &base_tree,
        &default_tree,
        &branch_tree,
        Some(&MergeOptions::new()),
    )?;
    if index.has_conflicts() {
        return Ok(false);
    }
    Ok(index.write_tree_to(repo)? == default_tree.id())
}

/// The upstream's short name and how many commits `branch` has that it lacks;
/// `None` when the branch has no upstream.
pub fn ahead_of_upstream(
    repo: &Repository,
    name: &str,
    tip: Oid,
) -> Result<Option<(String, usize)>, git2::Error> {
    let local = repo.find_branch(name, BranchType::Local)?;
    let upstream = match local.upstream() {
        Ok(u) => u,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(up) = upstream.get().target() else {
        return Ok(None);
    };
    let up_name = upstream.name()?.unwrap_or_default().to_owned();
    Ok(Some((up_name, repo.graph_ahead_behind(tip, up)?.0)))
}
