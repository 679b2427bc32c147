//! libgit2's answer to "is a branch integrated into the default branch?",
//! kept only for `preserve` until it moves to git: the checker asks git
//! ([`super::integration`], whose `integrated` is the replacement).
//!
//! "Integrated" follows what a careful reviewer would accept as merged: the
//! same commit, an ancestor of the default branch, or a branch whose changes
//! are already in it (squash and rebase merges rewrite the commits, so
//! ancestry alone would call those branches unmerged and keep them forever).

use git2::{ErrorCode, IndexEntry, IndexTime, Oid, Repository};
use std::path::Path;

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
///
/// Writes nothing: libgit2's tree merge writes merged blobs and trees to the
/// object database (and "freshens" the mtime of objects that already exist),
/// so the simulated merge is done path by path, in memory: for every path
/// the branch changed since the merge base, the default branch must hold the
/// branch's version, or a version that a clean three-way merge of the two
/// leaves unchanged. Paths only the default branch changed keep the default
/// branch's version in any merge, so they need no look.
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
    let default_tree = repo.find_commit(default)?.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&base_tree), Some(&branch_tree), None)?;
    // An empty three-dot diff means the branch's commits change nothing.
    for delta in diff.deltas() {
        let Some(path) = delta.new_file().path().or(delta.old_file().path()) else {
            return Ok(false);
        };
        let ours = entry(&default_tree, path)?;
        let theirs = entry(&branch_tree, path)?;
        if ours == theirs {
            continue;
        }
        let ancestor = entry(&base_tree, path)?;
        if !merges_to_ours(repo, path, ancestor, ours, theirs)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A path's (blob id, mode) in a tree, `None` when absent.
fn entry(tree: &git2::Tree<'_>, path: &Path) -> Result<Option<(Oid, i32)>, git2::Error> {
    match tree.get_path(path) {
        Ok(e) => Ok(Some((e.id(), e.filemode()))),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the three-way merge of one file, with `ours` the default branch,
/// is clean and yields `ours` unchanged (the branch's change is already in
/// it). Done in memory by libgit2's file merge.
fn merges_to_ours(
    repo: &Repository,
    path: &Path,
    ancestor: Option<(Oid, i32)>,
    ours: Option<(Oid, i32)>,
    theirs: Option<(Oid, i32)>,
) -> Result<bool, git2::Error> {
    if ours == ancestor {
        // The default branch never took the branch's change.
        return Ok(false);
    }
    let (Some(a), Some(o), Some(t)) = (ancestor, ours, theirs) else {
        // Added or deleted differently on the two sides: not the same change.
        return Ok(false);
    };
    if o.1 != t.1 && a.1 != t.1 {
        return Ok(false);
    }
    let merged = repo.merge_file_from_index(
        &index_entry(path, a),
        &index_entry(path, o),
        &index_entry(path, t),
        None,
    )?;
    Ok(merged.is_automergeable() && merged.content() == repo.find_blob(o.0)?.content())
}

fn index_entry(path: &Path, (id, mode): (Oid, i32)) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: mode as u32,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_os_str().as_encoded_bytes().to_vec(),
    }
}
