//! What the sweep does with one entry: pure functions from the facts about
//! an entry to one action, so every combination is tested without a
//! filesystem (see the tables below).
//!
//! The sweep decides twice. Before anything moves (the *blocking* decision,
//! which must be cheap: no git status), from what a `stat`, the `/proc` scan
//! and the admin dir tell; and after the entry is quarantined and assessed
//! as its repository's owner (the *drain* decision), from the risk verdict
//! and the root's policy.

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

/// The blocking decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Unlink it now (a link or a file: constant time, nothing inside).
    Unlink,
    /// Rename it into the trash, to be assessed and drained.
    Quarantine,
    SkipLocked,
    SkipInUse,
    /// Left in place and reported, with why.
    Refuse(&'static str),
    /// Left in place: at risk and not ours to decide (see [`first`]).
    Keep,
}

const MOUNT_POINT: &str = "a mount point: another filesystem is never crossed";
const UNVERIFIED: &str = "not a verified worktree of the repository its .git names";

/// Decides what happens to an entry before anything moves.
///
/// Use beats everything: an entry in use is never touched. A lock is an
/// owner's explicit "keep". A clone under a root is a whole repository with
/// every branch in it; only `policy = "discard"` removes it. An entry on
/// another filesystem (a mount point as an entry) is never crossed into. A
/// worktree that is not a verified claim is not provably what its `.git`
/// says, so nothing is done to it or to the admin dir it names.
pub fn first(seen: Seen, policy: Policy) -> First {
    match seen {
        Seen { in_use: true, .. } => First::SkipInUse,
        Seen { locked: true, .. } => First::SkipLocked,
        Seen {
            kind: EntryKind::Symlink | EntryKind::NotADirectory,
            ..
        } => First::Unlink,
        Seen {
            same_filesystem: false,
            ..
        } => First::Refuse(MOUNT_POINT),
        Seen {
            unverified: true, ..
        } => First::Refuse(UNVERIFIED),
        Seen {
            kind: EntryKind::Main,
            ..
        } if policy != Policy::Discard => First::Keep,
        _ => First::Quarantine,
    }
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
    use EntryKind::*;

    const KINDS: [EntryKind; 6] = [Symlink, NotADirectory, Plain, Linked, Broken, Main];
    const POLICIES: [Policy; 3] = [Policy::Preserve, Policy::Keep, Policy::Discard];

    fn seen(
        kind: EntryKind,
        locked: bool,
        in_use: bool,
        same_filesystem: bool,
        unverified: bool,
    ) -> Seen {
        Seen {
            kind,
            locked,
            in_use,
            same_filesystem,
            unverified,
        }
    }

    #[test]
    fn first_decision_covers_every_combination() {
        for kind in KINDS {
            for policy in POLICIES {
                for locked in [false, true] {
                    for in_use in [false, true] {
                        for (same, unverified) in
                            [(false, false), (true, false), (true, true), (false, true)]
                        {
                            let got = first(seen(kind, locked, in_use, same, unverified), policy);
                            let want = if in_use {
                                First::SkipInUse
                            } else if locked {
                                First::SkipLocked
                            } else if matches!(kind, Symlink | NotADirectory) {
                                First::Unlink
                            } else if !same {
                                First::Refuse(MOUNT_POINT)
                            } else if unverified {
                                First::Refuse(UNVERIFIED)
                            } else if kind == Main && policy != Policy::Discard {
                                First::Keep
                            } else {
                                First::Quarantine
                            };
                            assert_eq!(got, want, "{kind:?} {policy:?} locked={locked} in_use={in_use} same_fs={same} unverified={unverified}");
                        }
                    }
                }
            }
        }
    }

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
