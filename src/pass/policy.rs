//! The policy table that the sweep and the reaper share: what an entry is
//! ([`EntryKind`], [`Seen`]), and what happens to it once its risk is known
//! under the root's policy ([`drain`]). Pure functions, so that every
//! combination is tested without a filesystem (see the tables below).
//!
//! Each binary has its own first decision from the cheap facts (the sweep's
//! blocking one, [`crate::sweep::decide`]; the reaper's triage,
//! [`crate::reap::decide`]); both end here, so that work at risk is treated
//! the same way whoever reclaims it.

use crate::config::Policy;
use serde::{Deserialize, Serialize};

/// What an entry is, as far as the sweep is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A symbolic link: removed as a link, never followed.
    Symlink,
    /// A regular file, FIFO, socket or device node.
    NotADirectory,
    /// A directory with no `.git`: a crash between `mkdir` and
    /// `git worktree add`.
    Plain,
    /// A linked worktree whose admin dir names this entry.
    Linked,
    /// A worktree whose admin dir or repository is gone.
    Broken,
    /// A clone (its `.git` is the repository itself).
    Main,
}

/// The facts known before anything moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub kind: EntryKind,
    /// `git worktree lock`ed by someone (not by treeward's own quarantine).
    pub locked: bool,
    /// A process has a foot inside, or holds a `flock` on it.
    pub in_use: bool,
    /// The entry lives on the root's filesystem (a rename can move it).
    pub same_filesystem: bool,
    /// It looks like a linked worktree but is not a verified claim
    /// ([`crate::claim`]): its `.git`, its admin dir, its repository or their
    /// owners do not hold together.
    pub unverified: bool,
}

/// The drain decision, after the quarantined entry has been assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drain {
    /// Nothing at risk (or `discard`): delete.
    Remove,
    /// At risk under `preserve`: record the work in the repository, then
    /// delete.
    PreserveThenRemove,
    /// At risk under `keep`: put back where it was and report.
    Keep,
}

/// Decides what happens to a quarantined entry once its risk is known.
///
/// `preservable` is whether the work can be recorded in a repository (a
/// verified linked worktree can; a broken one, a plain directory and a clone
/// cannot). Work at risk that cannot be recorded in any repository is kept
/// under `preserve` and reported, never deleted (SPEC, "preserve"): a plain
/// directory with files, a broken worktree whose repository is gone. Only
/// `discard` removes it.
pub fn drain(at_risk: bool, preservable: bool, policy: Policy) -> Drain {
    match (at_risk, policy) {
        (false, _) | (true, Policy::Discard) => Drain::Remove,
        (true, Policy::Keep) => Drain::Keep,
        (true, Policy::Preserve) if preservable => Drain::PreserveThenRemove,
        (true, Policy::Preserve) => Drain::Keep,
    }
}

/// Why an entry whose work no repository can record is kept (SPEC,
/// "preserve"): only `policy = "discard"` removes it.
pub fn unrecordable(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Broken => {
            "kept: a broken worktree (its admin dir or repository is gone) whose files no repository can record; policy discard removes it"
        }
        EntryKind::Main => {
            "kept: a clone: removing it would remove its repository; policy discard removes it"
        }
        _ => "kept: a directory with files that no repository can record; policy discard removes it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: [Policy; 3] = [Policy::Preserve, Policy::Keep, Policy::Discard];

    #[test]
    fn drain_table() {
        use Drain::*;
        // (at_risk, preservable, policy) -> action. Unrecordable work (a
        // plain directory with files, a broken worktree, a clone) is the
        // `preservable: false` rows: kept unless `discard`.
        let table = [
            (false, true, Policy::Preserve, Remove),
            (true, true, Policy::Preserve, PreserveThenRemove),
            (true, true, Policy::Keep, Keep),
            (true, true, Policy::Discard, Remove),
            (true, false, Policy::Preserve, Keep),
            (true, false, Policy::Keep, Keep),
            (true, false, Policy::Discard, Remove),
            (false, false, Policy::Keep, Remove),
        ];
        for (at_risk, preservable, policy, want) in table {
            assert_eq!(
                drain(at_risk, preservable, policy),
                want,
                "{at_risk} {preservable} {policy:?}"
            );
        }
    }

    #[test]
    fn nothing_at_risk_is_always_removed() {
        for policy in POLICIES {
            for preservable in [false, true] {
                assert_eq!(drain(false, preservable, policy), Drain::Remove);
            }
        }
    }
}
