//! Whether a broken worktree's files are exactly a commit the repository
//! has (SPEC, issue 10 point 5: such a directory is removed without being
//! preserved, since nothing in it exists only there).
//!
//! Contract. The tree of the directory's files is computed as `git add -A`
//! computes it (ignored files left out), but on their raw bytes, as
//! preserve records them: no attribute applies (`--attr-source` is the
//! empty tree, `core.autocrlf` off), so no filter or driver of the
//! repository runs and "identical" means byte for byte. The directory is
//! the work tree of the common dir, in a temporary index and a throwaway object
//! directory inside a [`Scratch`] (the repository's own objects as its
//! alternate): nothing is written into the repository's objects, refs or
//! index. That tree is then looked for among the trees of the `candidates`
//! (the ledger record's branch and base commit), of every branch and
//! remote-tracking tip and HEAD, and of the newest [`WALK`] commits they
//! reach (a branch deleted as integrated is usually in the default
//! branch's history). A directory holding a nested repository (a gitlink
//! in the tree) never matches: its own work is not in the tree. Runs as
//! the repository's owner.
//!
//! Failure mode: any git or filesystem error is returned; the caller then
//! preserves, as it would without this check.

use super::capture::{Repo, Scratch};
use super::layout::{self, MODE_GITLINK};
use super::{owner_uid, PreserveError};
use std::path::Path;

/// How many commits reachable from the tips are looked at, newest first.
const WALK: &str = "10000";

/// The commit whose tree the files of `entry` are, if the repository whose
/// common dir is `common` has one (see the module doc).
pub fn identical_commit(
    entry: &Path,
    common: &Path,
    candidates: &[String],
) -> Result<Option<String>, PreserveError> {
    let owner = owner_uid(common)?;
    let scratch = Scratch::new(common)?;
    let objects = scratch.path("objects");
    std::fs::create_dir(&objects).map_err(|source| PreserveError::Io {
        path: objects.clone(),
        doing: "creating a throwaway object directory".into(),
        source,
    })?;
    let index = scratch.path("index");
    let files = Repo {
        dir: entry,
        owner,
        git_dir: Some(common),
    };
    let empty_tree = files.out(
        files
            .git()?
            .args(["hash-object", "-t", "tree", "--stdin"])
            .stdin(Vec::new()),
        "naming the empty tree",
    )?;
    let attr_source = format!(
        "--attr-source={}",
        String::from_utf8_lossy(&empty_tree).trim()
    );
    let throwaway = || -> Result<crate::git::Git, PreserveError> {
        Ok(files
            .temp_index(&index)?
            .arg(&attr_source)
            .args(["-c", "core.autocrlf=false", "-c", "core.safecrlf=false"])
            .env("GIT_OBJECT_DIRECTORY", &objects)
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", common.join("objects"))
            .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"]))
    };
    files.out(
        throwaway()?.args(["add", "--all", "--", "."]),
        "hashing the files",
    )?;
    let listed = files.out(
        throwaway()?.args(["ls-files", "-s", "-v", "-z"]),
        "listing the hashed files",
    )?;
    let entries =
        layout::parse_ls_files(&listed).ok_or_else(|| files.odd("git ls-files -s", &listed))?;
    if entries.iter().any(|(_, e)| e.mode == MODE_GITLINK) {
        return Ok(None);
    }
    let tree = files.out(throwaway()?.arg("write-tree"), "writing the files' tree")?;
    let tree = String::from_utf8_lossy(&tree).trim().to_owned();
    let repo = Repo::new(common, owner);
    let candidates: Vec<&str> = candidates
        .iter()
        .map(String::as_str)
        .filter(|c| is_revision(c))
        .collect();
    for walk in [&["--no-walk"][..], &["--max-count", WALK][..]] {
        let out = repo.out(
            repo.git()?
                .read_only()
                .args(["rev-list", "--ignore-missing", "--no-commit-header"])
                .arg("--format=%H %T")
                .args(walk)
                .args(["--branches", "--remotes", "HEAD", "--end-of-options"])
                .args(&candidates),
            "listing the repository's commits",
        )?;
        if let Some(commit) = commit_with_tree(&String::from_utf8_lossy(&out), &tree) {
            return Ok(Some(commit));
        }
    }
    Ok(None)
}

/// Pure: whether a name from the ledger (untrusted) may be given to git as
/// a revision: a full object id or a ref name, never an option.
fn is_revision(name: &str) -> bool {
    let hex = matches!(name.len(), 40 | 64) && name.bytes().all(|b| b.is_ascii_hexdigit());
    let reference = name.starts_with("refs/heads/")
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b));
    hex || reference
}

/// Pure: the first commit of `rev-list --format='%H %T'` output whose tree
/// is `tree`.
fn commit_with_tree(listing: &str, tree: &str) -> Option<String> {
    listing
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(_, t)| *t == tree)
        .map(|(c, _)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_whose_tree_matches_is_found() {
        let listing = "c1 t1\nc2 t2\nc3 t2\n";
        assert_eq!(commit_with_tree(listing, "t2").as_deref(), Some("c2"));
        assert_eq!(commit_with_tree(listing, "t9"), None);
        assert_eq!(commit_with_tree("", "t1"), None);
        // A commit id equal to the tree is not a match (control).
        assert_eq!(commit_with_tree("t1 x\n", "t1"), None);
    }

    #[test]
    fn only_object_ids_and_branch_refs_reach_git() {
        assert!(is_revision(&"a".repeat(40)));
        assert!(is_revision(&"0".repeat(64)));
        assert!(is_revision("refs/heads/feature/x"));
        assert!(!is_revision("--output=/etc/passwd"));
        assert!(!is_revision("refs/heads/a..b"));
        assert!(!is_revision("refs/heads/a b"));
        assert!(!is_revision("main"));
        assert!(!is_revision(&"g".repeat(40)));
        assert!(!is_revision(&"a".repeat(39)));
    }
}
