//! The git side of reclaiming a linked worktree, shared by the sweep and the
//! reaper. It runs as the repository's owner (the sweep calls it through
//! [`crate::as_owner`]; the reaper already is that user), and does, in this
//! order: assess; decide by the root's policy; preserve what is at risk;
//! forget the worktree in its repository (its admin entry, then its branch
//! if integrated). Only then may the caller delete the files.
//!
//! Preserving comes first and nothing after it runs if it fails, so a crash
//! or an error at any step leaves either the whole worktree, or its work
//! already recorded under `refs/treeward/preserved/`. A worktree forgotten by
//! its repository but whose files are still there is a broken worktree,
//! which the next pass removes (its work is already preserved).
//!
//! Its branch is kept unless integrated, so branch commits are never at risk
//! from treeward's own removal: only what dies with the directory and the
//! admin entry counts (see [`at_risk_for_removal`]).

use crate::config::Policy;
use crate::preserve::{self, BranchFate, PreserveError};
use crate::risk::{self, Assessment, Kind, Reason};
use crate::sweep::decide::{drain, Drain, EntryKind};
use git2::{Repository, RepositoryOpenFlags, WorktreePruneOptions};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// What reclaiming did (or, under dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    pub decision: Drain,
    pub reasons: Vec<Reason>,
    pub branch: Option<String>,
    pub preserved_refs: Vec<String>,
    /// The admin entry under `<common>/worktrees/` was removed.
    pub forgotten: bool,
    pub branch_deleted: bool,
    /// What failed; the worktree is then left as it was found (or with its
    /// work preserved).
    pub error: Option<String>,
}

/// Whether removing the worktree with treeward (which keeps unintegrated
/// branches) would lose work.
pub fn at_risk_for_removal(a: &Assessment) -> bool {
    a.reasons
        .iter()
        .any(|r| !matches!(r, Reason::Unpushed | Reason::Unmerged))
}

/// Reclaims the linked worktree at `path` under `policy`; with `dry_run`,
/// only assesses and decides.
pub fn reclaim(path: &Path, policy: Policy, dry_run: bool) -> Reclaimed {
    let a = risk::assess(path);
    let mut out = Reclaimed {
        decision: Drain::Keep,
        reasons: a.reasons.clone(),
        branch: a.branch.clone(),
        preserved_refs: Vec::new(),
        forgotten: false,
        branch_deleted: false,
        error: None,
    };
    if a.kind != Kind::LinkedWorktree {
        out.error = Some(format!(
            "not a linked worktree ({:?}): {}",
            a.kind,
            a.error.as_deref().unwrap_or("")
        ));
        return out;
    }
    out.decision = drain(EntryKind::Linked, at_risk_for_removal(&a), true, policy);
    if dry_run || out.decision == Drain::Keep {
        return out;
    }
    if out.decision == Drain::PreserveThenRemove {
        match preserve::preserve(path) {
            Ok(p) => out.preserved_refs = p.refs,
            Err(PreserveError::Unpreservable { why, .. }) => {
                out.decision = Drain::Keep;
                out.error = Some(format!("kept: its work cannot be preserved: {why}"));
                return out;
            }
            Err(e) => {
                out.error = Some(format!("preserving failed, nothing removed: {e}"));
                return out;
            }
        }
    }
    if let Err(e) = forget(&a, &mut out) {
        out.error = Some(e);
    }
    out
}

/// Removes the worktree's admin entry (even though it is locked: the lock is
/// treeward's quarantine or the caller decided), then its branch if
/// integrated.
fn forget(a: &Assessment, out: &mut Reclaimed) -> Result<(), String> {
    let (Some(common), Some(name)) = (&a.repository, &a.worktree_name) else {
        return Err("no repository or admin name".to_owned());
    };
    let repo = Repository::open_ext(
        common,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| format!("opening {}: {}", common.display(), e.message()))?;
    let wt = repo
        .find_worktree(name)
        .map_err(|e| format!("finding worktree {name}: {}", e.message()))?;
    wt.prune(Some(
        WorktreePruneOptions::new()
            .valid(true)
            .locked(true)
            .working_tree(false),
    ))
    .map_err(|e| format!("removing the admin entry {name}: {}", e.message()))?;
    out.forgotten = true;
    if let Some(branch) = &a.branch {
        let fate =
            preserve::delete_branch_if_integrated(common, branch).map_err(|e| e.to_string())?;
        out.branch_deleted = fate == BranchFate::Deleted;
    }
    Ok(())
}

/// Points a worktree's admin entry at the worktree's new place (after the
/// sweep renamed it into the trash, or back), so that it stays a valid
/// worktree of its repository. Written atomically, as the repository's owner.
pub fn relocate(gitdir: &Path, worktree: &Path) -> Result<(), String> {
    let target = gitdir.join("gitdir");
    let tmp = gitdir.join(format!("gitdir.treeward.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{}\n", worktree.join(".git").display()).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rewriting {}: {e}", target.display())
    })
}
