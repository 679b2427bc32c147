//! Deleting a worktree's branch once its work is safe: only when it is
//! integrated into the default branch, is not the default branch, and is
//! checked out (or being rebased or bisected) in no worktree
//! ([`delete_branch_if_integrated`]), the way `git branch -d` would decide.
//! Git operations on the repository's branches, as its owner; reclaiming
//! ([`crate::as_owner::reclaim`]) and restoring
//! ([`crate::as_owner::rebuild`]) ask here.

use crate::fd;
use crate::preserve::{admin_dirs, io_error, owner_uid, unreadable_worktree, PreserveError, Repo};
use crate::risk;
use std::os::fd::AsFd;
use std::path::Path;

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

/// Deletes the local `branch` of the repository whose common git dir is
/// `repo_common_dir`, as `git branch -d` would, but only when it is
/// integrated into the default branch ([`integration`]), is not the default
/// branch, and is checked out (or being rebased or bisected) in no
/// worktree. A branch without a default branch to compare with is kept.
/// The deletion is `git update-ref -d <ref> <tip>`: if the branch moved
/// after it was judged, nothing is deleted (an error). Runs as the
/// repository's owner.
pub fn delete_branch_if_integrated(
    repo_common_dir: &Path,
    branch: &str,
) -> Result<BranchFate, PreserveError> {
    let here = repo_common_dir;
    let short = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    let full = format!("refs/heads/{short}");
    let owner = owner_uid(here)?;
    let repo = Repo::new(here, owner);
    let Some(tip) = repo.maybe(
        &[
            "rev-parse",
            "-q",
            "--verify",
            "--end-of-options",
            &format!("{full}^{{commit}}"),
        ],
        "finding the branch",
    )?
    else {
        return Ok(BranchFate::Missing);
    };
    let checked_out = checked_out_anywhere(here, owner, short)?;
    let judged = if checked_out {
        None
    } else {
        integration(here, &tip)?
    };
    let facts = BranchState {
        checked_out,
        is_default: judged
            .as_ref()
            .is_some_and(|(d, _)| is_default_branch(short, d)),
        integrated: judged.as_ref().map(|(_, i)| *i),
    };
    let fate = branch_fate(&facts);
    if fate == BranchFate::Deleted {
        repo.out(
            repo.git()?
                .args(["update-ref", "-d", "--end-of-options", &full, &tip]),
            "deleting the branch",
        )?;
        log::debug!("deleted integrated branch {short} of {}", here.display());
    }
    Ok(fate)
}

/// The one place a branch's integration is judged for deletion: the
/// default branch's name and whether `tip` is integrated into it; `None`
/// when there is no default branch.
fn integration(common: &Path, tip: &str) -> Result<Option<(String, bool)>, PreserveError> {
    let owner = owner_uid(common)?;
    let verdict =
        risk::integration::integrated(&risk::Repo::common(common, owner), tip).map_err(|why| {
            PreserveError::Unpreservable {
                path: common.to_path_buf(),
                why: format!("testing integration: {why}"),
            }
        })?;
    let integrated = verdict.integrated();
    Ok(verdict.default_branch.zip(integrated))
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

/// Whether any worktree of the repository (common dir `common`, owned by
/// `owner`) has `branch` checked out, as git lists them (`git worktree
/// list --porcelain -z`: whatever the ref format), or is rebasing or
/// bisecting it (as `git branch -d` checks). The admin files are first
/// read relative to directory descriptors, never through a symlink, never
/// blocking on a FIFO, capped ([`unreadable_worktree`]): git would block
/// on a FIFO there, and whatever cannot be read cannot tell, so the branch
/// counts as checked out (kept). An admin file that cannot be read for
/// another reason is an error: not knowing must not delete.
pub fn checked_out_anywhere(
    common: &Path,
    owner: u32,
    branch: &str,
) -> Result<bool, PreserveError> {
    if let Some((path, why)) = unreadable_worktree(common)? {
        log::warn!(
            "{}: {why}: whether it has {branch} checked out cannot be told; the branch is kept",
            path.display()
        );
        return Ok(true);
    }
    for (dir, admin) in admin_dirs(common)? {
        for file in [
            "rebase-merge/head-name",
            "rebase-apply/head-name",
            "BISECT_START",
        ] {
            match fd::read_below(admin.as_fd(), file, MAX_ADMIN_FILE) {
                Ok(Some(bytes)) if names_branch(&String::from_utf8_lossy(&bytes), branch) => {
                    return Ok(true)
                }
                Ok(_) => {}
                Err(fd::ReadError::Io(e)) => {
                    return Err(io_error(
                        &dir.join(file),
                        "reading which branch is checked out",
                        e,
                    ))
                }
                Err(e) => {
                    log::warn!(
                        "{}: {e}: whether it has {branch} checked out cannot be told; the branch is kept",
                        dir.join(file).display()
                    );
                    return Ok(true);
                }
            }
        }
    }
    let repo = Repo::new(common, owner);
    let listed = repo.out(
        repo.git()?
            .read_only()
            .args(["worktree", "list", "--porcelain", "-z"]),
        "listing worktrees",
    )?;
    let wanted = format!("branch refs/heads/{branch}");
    Ok(listed
        .split(|b| *b == 0)
        .any(|line| line == wanted.as_bytes()))
}

/// The largest `head-name` or `BISECT_START` read.
const MAX_ADMIN_FILE: u64 = 4096;

/// Whether a `head-name` (`refs/heads/x`) or `BISECT_START` (`x`) file
/// names `branch`.
fn names_branch(text: &str, branch: &str) -> bool {
    let text = text.trim();
    let text = text.strip_prefix("ref:").map_or(text, str::trim);
    text.strip_prefix("refs/heads/").unwrap_or(text) == branch
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(names_branch("refs/heads/task-1\n", "task-1"));
        assert!(names_branch("task-1\n", "task-1"));
        assert!(!names_branch("refs/heads/task-10\n", "task-1"));
        assert!(!names_branch(
            "0123456789abcdef0123456789abcdef01234567\n",
            "task-1"
        ));
    }
}
