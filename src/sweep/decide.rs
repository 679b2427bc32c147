//! What the sweep does with one entry before anything moves: the
//! *blocking* decision, which must be cheap (no git status), from what a
//! `stat`, the `/proc` scan and the admin dir tell. A pure function, so that
//! every combination is tested without a filesystem (see the table below).
//! What happens once the quarantined entry is assessed is the shared table,
//! [`crate::pass::policy::drain`].

use crate::config::Policy;
use crate::pass::policy::{EntryKind, Seen};

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
}
