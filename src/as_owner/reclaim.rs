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
//! which the next pass takes up ([`reclaim_broken`]): removed without
//! preserving when its files are exactly a commit the repository has (a
//! clean one), else preserved; a detached HEAD that only the set of an
//! earlier, interrupted reclaim keeps is reported preserved in that set. A
//! rerun after a crash at any step thus reaches the uninterrupted pass's
//! decision.
//!
//! Its branch is kept unless integrated, so branch commits are never at risk
//! from treeward's own removal: only what dies with the directory and the
//! admin entry counts (see [`at_risk_for_removal`]).

use crate::claim::{Claim, Repository, Unclaimed};
use crate::config::Policy;
use crate::fd;
use crate::git::branch::{self, BranchFate};
use crate::pass::policy::{drain, Drain};
use crate::preserve::{self, PreserveError};
use crate::remove::RemoveError;
use crate::risk::refs::SharedRefs;
use crate::risk::{self, Assessment, Kind, Reason};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    /// The common git dir its work is (or would be) preserved in.
    #[serde(default, with = "crate::as_owner::wire_path_opt")]
    pub repository: Option<std::path::PathBuf>,
}

impl Reclaimed {
    /// Nothing done yet to a worktree of `repository`: kept, until decided.
    fn new(repository: &std::path::Path) -> Reclaimed {
        Reclaimed {
            decision: Drain::Keep,
            reasons: Vec::new(),
            branch: None,
            preserved_refs: Vec::new(),
            forgotten: false,
            branch_deleted: false,
            error: None,
            repository: Some(repository.to_path_buf()),
        }
    }
}

/// Whether removing the worktree with treeward (which keeps unintegrated
/// branches) would lose work.
pub fn at_risk_for_removal(a: &Assessment) -> bool {
    a.reasons
        .iter()
        .any(|r| !matches!(r, Reason::Unpushed | Reason::Unmerged))
}

/// Reclaims the claimed worktree under `policy`; with `dry_run`, only
/// assesses and decides. Runs as the claim's owner. `shared`: the
/// repository's shared refs as listed for the run this reclaim is part of;
/// dropped before this reclaim changes any.
pub fn reclaim(claim: &Claim, policy: Policy, dry_run: bool, shared: &SharedRefs) -> Reclaimed {
    let path = claim.entry();
    let mut out = Reclaimed::new(claim.common());
    // A quarantine whose relocation did not happen (its worker was killed):
    // git finds the files only once the admin dir names where they are.
    if claim.named_before() && !dry_run {
        if let Err(e) = crate::admin_dir::relocate(claim) {
            out.error = Some(e.to_string());
            return out;
        }
    }
    let (a, listed) = risk::assess_listing_refs(path, shared);
    out.reasons.clone_from(&a.reasons);
    out.branch.clone_from(&a.branch);
    if a.kind != Kind::LinkedWorktree {
        out.error = Some(format!(
            "not a linked worktree ({}): {}",
            a.kind.words(),
            a.error.as_deref().unwrap_or("")
        ));
        return out;
    }
    out.decision = drain(at_risk_for_removal(&a), true, policy);
    if dry_run || out.decision == Drain::Keep {
        return out;
    }
    // Preserving writes refs, and an integrated branch is deleted: the next
    // reclaim of the run lists this repository's refs again.
    if out.decision != Drain::Remove || a.branch.is_some() {
        shared.changed(claim.common());
    }
    // A detached HEAD kept only by the set of an earlier reclaim of this
    // worktree, cut short after its refs were written: preserved there.
    if let (Drain::Remove, Policy::Preserve, None, Some(head)) =
        (out.decision, policy, &a.branch, &a.head)
    {
        let name = claim.name().to_string_lossy();
        match preserve::set_keeping_head(claim.common(), &name, head, &listed) {
            Ok(refs) if !refs.is_empty() => {
                out.decision = Drain::PreserveThenRemove;
                out.preserved_refs = refs;
            }
            Ok(_) => {}
            Err(e) => {
                out.error = Some(format!("nothing removed: {e}"));
                return out;
            }
        }
    }
    if out.decision == Drain::PreserveThenRemove && out.preserved_refs.is_empty() {
        match preserve::preserve_moved(path, claim.origin()) {
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
    if let Err(e) = forget(claim, &a, &mut out) {
        out.error = Some(e.to_string());
    }
    out
}

/// Why a reclaimed worktree could not be forgotten by its repository (it
/// becomes the error of the [`Reclaimed`], which the wire carries as text).
#[derive(Debug)]
enum ForgetError {
    /// The `worktrees` dir no longer verifies as the claim's.
    Unclaimed(Unclaimed),
    /// The admin entry was only partly removed.
    Partly { admin: PathBuf, left: String },
    /// The admin entry could not be removed.
    Remove { admin: PathBuf, source: RemoveError },
    /// The branch could not be judged or deleted.
    Branch(PreserveError),
}

impl std::fmt::Display for ForgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForgetError::Unclaimed(e) => write!(f, "{e}"),
            ForgetError::Partly { admin, left } => write!(
                f,
                "the admin entry {} was only partly removed: {left}",
                admin.display()
            ),
            ForgetError::Remove { admin, source } => {
                write!(f, "removing the admin entry {}: {source}", admin.display())
            }
            ForgetError::Branch(e) => write!(f, "{e}"),
        }
    }
}

/// Removes the worktree's admin entry (even though it is locked: the lock is
/// treeward's quarantine or the caller decided) with the safe removal engine,
/// under the `worktrees` dir the claim verified, then its branch if
/// integrated.
fn forget(claim: &Claim, a: &Assessment, out: &mut Reclaimed) -> Result<(), ForgetError> {
    let worktrees = claim.open_worktrees().map_err(ForgetError::Unclaimed)?;
    match crate::remove::remove_entry(worktrees.as_fd(), claim.name()) {
        Ok(removed) if removed.complete => {}
        Ok(removed) => {
            return Err(ForgetError::Partly {
                admin: claim.admin().to_path_buf(),
                left: removed.describe(),
            })
        }
        Err(RemoveError::NotFound { .. }) => {}
        Err(source) => {
            return Err(ForgetError::Remove {
                admin: claim.admin().to_path_buf(),
                source,
            })
        }
    }
    let common = claim.common();
    out.forgotten = true;
    if let Some(branch) = &a.branch {
        let fate =
            branch::delete_branch_if_integrated(common, branch).map_err(ForgetError::Branch)?;
        out.branch_deleted = fate == BranchFate::Deleted;
    }
    Ok(())
}

/// Reclaims the broken worktree at `entry` (its `.git` names the admin dir
/// `name`, gone, or moved with the repository to `admin`). With its admin
/// dir gone (its HEAD, index and state died with it), when its files are
/// exactly a commit the repository has ([`preserve::identical_commit`],
/// `commits`: the ledger record's branch and base commit, looked at first),
/// nothing exists only there: the decision is `remove`, nothing preserved
/// (a clean worktree whose reclaim was cut short between forgetting it and
/// deleting its files converges to `removed`, as the uninterrupted pass).
/// Else preserves its files into `repository`
/// ([`preserve::preserve_broken`]), then forgets the moved admin dir. Runs
/// as the repository's owner, and acts only on a directory of the owner's
/// reached without a symlink, and on an admin dir that is
/// `<repository>/worktrees/<name>`. Whatever fails keeps the worktree (the
/// decision is then `keep`, with why).
pub fn reclaim_broken(
    repository: &Repository,
    entry: &Path,
    admin: Option<&Path>,
    name: &OsStr,
    commits: &[String],
) -> Reclaimed {
    let mut out = Reclaimed::new(repository.common());
    let common = repository.common();
    let expected_admin = common.join("worktrees").join(name);
    let checked = fd::open_path(entry)
        .map_err(|e| {
            format!(
                "{}: cannot be reached without a symlink: {e}",
                entry.display()
            )
        })
        .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).map_err(|e| e.to_string()))
        .and_then(|st| {
            (st.st_uid == repository.owner().uid)
                .then_some(())
                .ok_or_else(|| format!("{}: not the repository owner's", entry.display()))
        })
        .and_then(|()| match admin {
            Some(a) if a != expected_admin => Err(format!(
                "{}: not the admin dir {} of the repository",
                a.display(),
                expected_admin.display()
            )),
            _ => Ok(()),
        });
    if let Err(e) = checked {
        out.error = Some(format!("kept: {e}"));
        return out;
    }
    if admin.is_none() {
        match preserve::identical_commit(entry, common, commits) {
            Ok(Some(commit)) => {
                log::debug!(
                    "{}: its files are commit {commit}: removed, nothing to preserve",
                    entry.display()
                );
                out.decision = Drain::Remove;
                return out;
            }
            Ok(None) => {}
            Err(e) => log::warn!(
                "{}: whether its files are a commit is not known ({e}): preserving",
                entry.display()
            ),
        }
    }
    match preserve::preserve_broken(
        entry,
        common,
        admin,
        &name.to_string_lossy(),
        SystemTime::now(),
    ) {
        Ok(p) => {
            out.preserved_refs = p.refs;
            out.decision = Drain::PreserveThenRemove;
        }
        Err(e) => {
            out.error = Some(format!("kept: preserving the broken worktree failed: {e}"));
            return out;
        }
    }
    if admin.is_some() {
        let forgotten = crate::claim::open_worktrees_of(common, repository.owner().uid)
            .map_err(|e| e.to_string())
            .and_then(|fd| {
                crate::remove::remove_entry(fd.as_fd(), name).map_err(|e| e.to_string())
            });
        match forgotten {
            Ok(r) if r.complete => out.forgotten = true,
            Ok(r) => {
                out.error = Some(format!(
                    "its admin dir was only partly removed: {}",
                    r.describe()
                ))
            }
            Err(e) => out.error = Some(format!("removing its admin dir: {e}")),
        }
    }
    out
}
