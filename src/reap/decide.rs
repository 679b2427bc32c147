//! What the reaper does with one entry or record: pure functions from the
//! facts about it to one verdict, so that every combination is tested
//! without a filesystem (see the tables below).
//!
//! Two steps, so that the cheap one spares the expensive facts: [`triage`]
//! from the ledger alone (an `active` record's entry is not looked at,
//! unless the record names a lease holder: then whether its lease is still
//! held, see [`Lease`]; a record whose worktree is gone is reconciled), then
//! [`decide`] from what inspecting the entry told. An `active` record whose
//! lease was abandoned (its holder is gone, nobody holds its `flock`) is
//! decided as `released` ([`decision_state`]). The at-risk verdict under the root's policy is
//! [`crate::pass::policy::drain`], the table the sweep shares, so that both
//! binaries treat work at risk the same way (reclaiming a linked worktree
//! applies it as its owner, see [`crate::as_owner::reclaim`]).

use crate::config::Policy;
use crate::ledger::State;
use crate::pass::policy::{drain, Drain, EntryKind};
use crate::pass::report::Action;
use std::time::Duration;

/// The wait after a first failed removal; it doubles with each attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5 * 60);
/// The longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a `retry_remove` record waits after its last attempt before the
/// next one: nothing before the first failure, then 5 minutes, doubling with
/// each failed attempt, at most a day.
pub fn backoff(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let doublings = (attempts - 1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// What the governing record's lease says (SPEC "lease").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The record names no lease holder: no lease was taken, or the last
    /// one ended cleanly.
    None,
    /// Held: its holder is alive (same pid, same start time), or a `flock`
    /// is still held on the directory (a command the holder started, which
    /// inherited the lease's descriptor, outlives it).
    Held,
    /// Abandoned: its holder died without ending it (SIGKILL, OOM), and no
    /// one holds the `flock` any more.
    Abandoned,
}

impl Lease {
    /// Pure: from whether the record names a holder, whether that holder is
    /// alive, and whether a `flock` is held on the directory.
    pub fn of(recorded: bool, holder_alive: bool, flock_held: bool) -> Lease {
        match (recorded, holder_alive || flock_held) {
            (false, _) => Lease::None,
            (true, true) => Lease::Held,
            (true, false) => Lease::Abandoned,
        }
    }
}

/// The first step, from the ledger and the path's existence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triage {
    /// Not the reaper's: an `active` record's worktree (without a lease),
    /// or a finished record (`removed`, `preserved`) whose path is empty.
    Leave,
    /// The record's worktree is gone: move it to `removed` and prune its
    /// admin entry in the repository.
    Reconcile,
    /// In use, left alone and reported: the record's worktree is gone but
    /// its owner or lease holder still lives (wait), or an `active`
    /// worktree's lease is held.
    InUse,
    /// Inspect the entry and [`decide`].
    Inspect,
    /// An `active` worktree whose lease was abandoned: releasable. Inspect
    /// it and decide it as `released` ([`decision_state`]): taken without
    /// waiting for the grace.
    Abandoned,
}

/// Triage of one path: `record` is the state of the record that governs it
/// (`None`: no record, or only finished records of a worktree that once was
/// there), `exists` whether anything is at the path, `owner_alive` whether
/// the record names a live owner process (its `owner_pid` or its lease
/// holder), `lease` what its lease says.
pub fn triage(record: Option<State>, exists: bool, owner_alive: bool, lease: Lease) -> Triage {
    let unfinished = matches!(
        record,
        Some(State::Active | State::Released | State::RetryRemove | State::Kept)
    );
    match (exists, record) {
        (false, _) if !unfinished => Triage::Leave,
        (false, _) if owner_alive || lease == Lease::Held => Triage::InUse,
        (false, _) => Triage::Reconcile,
        (true, Some(State::Active)) => match lease {
            Lease::None => Triage::Leave,
            Lease::Held => Triage::InUse,
            Lease::Abandoned => Triage::Abandoned,
        },
        (true, _) => Triage::Inspect,
    }
}

/// The record state [`decide`] is given after `triage`: `released` for an
/// abandoned lease, else the record's own.
pub fn decision_state(record: Option<State>, triage: Triage) -> Option<State> {
    match triage {
        Triage::Abandoned => Some(State::Released),
        _ => record,
    }
}

/// What inspecting an existing entry (and its record, if any) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: EntryKind,
    /// The governing record's state (`None`: an orphan, no live record).
    pub record: Option<State>,
    /// Failed removals so far (`retry_remove`).
    pub attempts: u32,
    /// Time since the record's last transition (zero without a record).
    pub since_transition: Duration,
    /// Now minus the later of the entry's mtime and the record's last
    /// transition.
    pub age: Duration,
    /// The root's grace period.
    pub grace: Duration,
    /// A process has its cwd, root or an open file inside, or holds a
    /// `flock` on it.
    pub in_use: bool,
    /// The record names an owner process that is alive.
    pub owner_alive: bool,
    /// `git worktree lock`ed by anyone but treeward-reap itself.
    pub locked: bool,
    /// The entry belongs to root and this pass is not root.
    pub root_owned: bool,
    /// The entry, or its repository, belongs to another user and this pass
    /// is not root.
    pub foreign: bool,
    /// The entry lives on its root's filesystem.
    pub same_filesystem: bool,
    /// It looks like a linked worktree but is not a verified claim
    /// ([`crate::claim`]).
    pub unverified: bool,
    /// The record's repository no longer exists (and the entry's work has
    /// no other repository to go to).
    pub repository_gone: bool,
    /// A broken worktree whose repository was found
    /// ([`crate::claim::find_repository`]): its work can be preserved.
    pub recordable: bool,
    /// Whether removing it would lose work; `None` until assessed.
    pub at_risk: Option<bool>,
    pub policy: Policy,
}

/// Why an entry is left alone this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    InUse,
    Locked,
    RootOwned,
    Foreign,
    MountPoint,
    Unverified,
    RepositoryGone,
    Young,
    Backoff,
}

impl Skip {
    /// The report's word for it.
    pub fn action(self) -> Action {
        match self {
            Skip::InUse => Action::SkippedInUse,
            Skip::Locked => Action::SkippedLocked,
            Skip::RootOwned => Action::RootOwnedSkipped,
            Skip::Foreign | Skip::MountPoint | Skip::Unverified | Skip::RepositoryGone => {
                Action::Refused
            }
            Skip::Young => Action::SkippedYoung,
            Skip::Backoff => Action::Deferred,
        }
    }

    /// Why, for the report's `error` (`None` when the action says it all).
    pub fn why(self) -> Option<&'static str> {
        match self {
            Skip::Foreign => Some(
                "owned by another user: treeward-reap acts only as itself; left for treeward-sweep",
            ),
            Skip::MountPoint => Some("a mount point: another filesystem is never crossed"),
            Skip::Unverified => Some("not a verified worktree of the repository its .git names"),
            Skip::RepositoryGone => {
                Some("its repository is gone: nothing can be preserved there; reported and left")
            }
            Skip::Backoff => Some("a removal failed before: waiting before the next attempt"),
            Skip::InUse | Skip::Locked | Skip::RootOwned | Skip::Young => None,
        }
    }
}

/// The verdict on an existing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a candidate (an `active` record).
    Leave,
    Skip(Skip),
    /// A candidate whose risk is not known yet: assess it (a linked
    /// worktree is assessed and reclaimed in one step, as its owner).
    Assess,
    /// What to do, risk known.
    Act(Drain),
}

/// Decides what happens to an existing entry.
///
/// An `active` record protects its entry whatever else is true. Then use
/// beats everything (a process inside, a `flock`, a live owner); then an
/// owner's lock; then what this unprivileged pass may not touch (root's or
/// another user's, another filesystem, a `.git` that is not provably this
/// entry's, a repository that is gone); then time (younger than the grace,
/// measured from the later of the entry's mtime and the record's last
/// transition — except a `released` worktree, which its orchestrator said
/// it is done with, so it is taken without waiting; a failed removal's
/// backoff). What is left is a candidate: a
/// link or a file is removed, a clone is kept unless the policy is
/// `discard` (removing it removes a repository), anything else is assessed
/// and the sweep's table decides by the policy.
pub fn decide(f: &Facts) -> Verdict {
    let skip = match f {
        Facts {
            record: Some(State::Active),
            ..
        } => return Verdict::Leave,
        Facts { in_use: true, .. }
        | Facts {
            owner_alive: true, ..
        } => Some(Skip::InUse),
        Facts { locked: true, .. } => Some(Skip::Locked),
        Facts {
            root_owned: true, ..
        } => Some(Skip::RootOwned),
        Facts { foreign: true, .. } => Some(Skip::Foreign),
        Facts {
            same_filesystem: false,
            ..
        } => Some(Skip::MountPoint),
        Facts {
            unverified: true, ..
        } => Some(Skip::Unverified),
        Facts {
            repository_gone: true,
            ..
        } => Some(Skip::RepositoryGone),
        Facts {
            age, grace, record, ..
        } if age < grace && *record != Some(State::Released) => Some(Skip::Young),
        Facts {
            record: Some(State::RetryRemove),
            attempts,
            since_transition,
            ..
        } if *since_transition < backoff(*attempts) => Some(Skip::Backoff),
        _ => None,
    };
    if let Some(skip) = skip {
        return Verdict::Skip(skip);
    }
    match (f.kind, f.at_risk) {
        (EntryKind::Symlink | EntryKind::NotADirectory, _) => Verdict::Act(Drain::Remove),
        (EntryKind::Main, _) if f.policy != Policy::Discard => Verdict::Act(Drain::Keep),
        (_, None) => Verdict::Assess,
        (kind, Some(at_risk)) => Verdict::Act(drain(
            at_risk,
            kind == EntryKind::Linked || f.recordable,
            f.policy,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    const H: Duration = Duration::from_secs(3600);

    /// An orphan linked worktree two hours old under a one-hour grace, with
    /// nothing in its way and its risk not yet known.
    fn candidate() -> Facts {
        Facts {
            kind: Linked,
            record: None,
            attempts: 0,
            since_transition: Duration::ZERO,
            age: 2 * H,
            grace: H,
            in_use: false,
            owner_alive: false,
            locked: false,
            root_owned: false,
            foreign: false,
            same_filesystem: true,
            unverified: false,
            repository_gone: false,
            recordable: false,
            at_risk: None,
            policy: Policy::Preserve,
        }
    }

    #[test]
    fn triage_table() {
        use State::*;
        use Triage::*;
        // (record, exists, owner alive) -> triage, for a record without a
        // lease: what it was before leases.
        let table = [
            (None, true, false, Inspect),
            (None, false, false, Leave),
            (Some(Active), true, false, Leave),
            (Some(Active), true, true, Leave),
            (Some(Active), false, false, Reconcile),
            (Some(Active), false, true, InUse),
            (Some(Released), true, false, Inspect),
            (Some(Released), false, false, Reconcile),
            (Some(Released), false, true, InUse),
            (Some(RetryRemove), true, false, Inspect),
            (Some(RetryRemove), false, false, Reconcile),
            (Some(Kept), true, false, Inspect),
            (Some(Kept), false, false, Reconcile),
            (Some(Removed), true, false, Inspect),
            (Some(Removed), false, false, Leave),
            (Some(Preserved), true, false, Inspect),
            (Some(Preserved), false, true, Leave),
        ];
        for (record, exists, alive, want) in table {
            assert_eq!(
                triage(record, exists, alive, Lease::None),
                want,
                "{record:?} exists={exists} alive={alive}"
            );
        }
    }

    #[test]
    fn lease_table() {
        use Lease::*;
        // (holder recorded, holder alive, flock held) -> lease
        let table = [
            (false, false, false, None),
            (false, true, true, None),
            (true, true, false, Held),
            (true, true, true, Held),
            (true, false, true, Held),
            (true, false, false, Abandoned),
        ];
        for (recorded, alive, flocked, want) in table {
            assert_eq!(
                Lease::of(recorded, alive, flocked),
                want,
                "recorded={recorded} alive={alive} flocked={flocked}"
            );
        }
    }

    #[test]
    fn triage_of_leased_records() {
        use State::*;
        use Triage::*;
        // (record, exists, owner alive, lease) -> triage. A live holder
        // also makes "owner alive"; a held flock alone does not.
        let table = [
            (Some(Active), true, true, Lease::Held, InUse),
            (Some(Active), true, false, Lease::Held, InUse),
            (Some(Active), true, false, Lease::Abandoned, Abandoned),
            // A live owner_pid does not save an abandoned lease: that is
            // decided, with every other obstacle, by `decide`.
            (Some(Active), true, true, Lease::Abandoned, Abandoned),
            (Some(Active), false, true, Lease::Held, InUse),
            (Some(Active), false, false, Lease::Abandoned, Reconcile),
            (Some(Released), true, true, Lease::Held, Inspect),
            (Some(Released), true, false, Lease::Abandoned, Inspect),
            (Some(Released), false, true, Lease::Held, InUse),
            (Some(Kept), true, false, Lease::Abandoned, Inspect),
            (Some(Removed), false, false, Lease::Abandoned, Leave),
            (Some(Preserved), true, false, Lease::Abandoned, Inspect),
        ];
        for (record, exists, alive, lease, want) in table {
            assert_eq!(
                triage(record, exists, alive, lease),
                want,
                "{record:?} exists={exists} alive={alive} {lease:?}"
            );
        }
    }

    #[test]
    fn an_abandoned_lease_is_decided_as_a_release() {
        let t = triage(Some(State::Active), true, false, Lease::Abandoned);
        let abandoned = |change: fn(&mut Facts)| {
            let mut f = Facts {
                record: decision_state(Some(State::Active), t),
                age: Duration::ZERO,
                since_transition: Duration::ZERO,
                ..candidate()
            };
            change(&mut f);
            decide(&f)
        };
        assert_eq!(abandoned(|_| {}), Verdict::Assess, "young: no grace");
        assert_eq!(
            abandoned(|f| f.at_risk = Some(true)),
            Verdict::Act(Drain::PreserveThenRemove),
            "its work at risk is preserved"
        );
        assert_eq!(abandoned(|f| f.in_use = true), Verdict::Skip(Skip::InUse));
        assert_eq!(
            abandoned(|f| f.owner_alive = true),
            Verdict::Skip(Skip::InUse)
        );
        assert_eq!(abandoned(|f| f.locked = true), Verdict::Skip(Skip::Locked));
        // Every other triage leaves the record's state as it is.
        for t in [Triage::Inspect, Triage::Leave, Triage::InUse] {
            assert_eq!(decision_state(Some(State::Active), t), Some(State::Active));
        }
        assert_eq!(decision_state(None, Triage::Inspect), None);
    }

    #[test]
    fn each_obstacle_skips_and_the_first_one_is_reported() {
        // (change to the candidate, verdict), in precedence order: each row
        // also carries every obstacle of the rows below it, so a row passes
        // only if its own obstacle wins over all the later ones.
        type Change = fn(&mut Facts);
        let rows: [(Change, Verdict); 10] = [
            (|f| f.record = Some(State::Active), Verdict::Leave),
            (|f| f.in_use = true, Verdict::Skip(Skip::InUse)),
            (|f| f.locked = true, Verdict::Skip(Skip::Locked)),
            (|f| f.root_owned = true, Verdict::Skip(Skip::RootOwned)),
            (|f| f.foreign = true, Verdict::Skip(Skip::Foreign)),
            (
                |f| f.same_filesystem = false,
                Verdict::Skip(Skip::MountPoint),
            ),
            (|f| f.unverified = true, Verdict::Skip(Skip::Unverified)),
            (
                |f| f.repository_gone = true,
                Verdict::Skip(Skip::RepositoryGone),
            ),
            (|f| f.age = H / 2, Verdict::Skip(Skip::Young)),
            (
                |f| {
                    f.record = f.record.or(Some(State::RetryRemove));
                    f.attempts = 5;
                    f.since_transition = 2 * H / 3;
                },
                Verdict::Skip(Skip::Backoff),
            ),
        ];
        for i in 0..rows.len() {
            let mut f = candidate();
            for (change, _) in &rows[i..] {
                change(&mut f);
            }
            assert_eq!(decide(&f), rows[i].1, "row {i}: {f:?}");
            // And alone, each obstacle stops the candidate.
            let mut alone = candidate();
            (rows[i].0)(&mut alone);
            assert_eq!(decide(&alone), rows[i].1, "row {i} alone: {alone:?}");
        }
    }

    #[test]
    fn a_live_owner_is_use() {
        let f = Facts {
            owner_alive: true,
            record: Some(State::Released),
            ..candidate()
        };
        assert_eq!(decide(&f), Verdict::Skip(Skip::InUse));
    }

    #[test]
    fn a_release_is_taken_without_waiting_for_the_grace() {
        let just_released = Facts {
            record: Some(State::Released),
            age: Duration::ZERO,
            since_transition: Duration::ZERO,
            ..candidate()
        };
        assert_eq!(decide(&just_released), Verdict::Assess);
        let young_orphan = Facts {
            age: Duration::ZERO,
            ..candidate()
        };
        assert_eq!(decide(&young_orphan), Verdict::Skip(Skip::Young));
    }

    #[test]
    fn grace_is_inclusive_and_zero_grace_takes_at_once() {
        let at = Facts {
            age: H,
            ..candidate()
        };
        assert_eq!(decide(&at), Verdict::Assess);
        let zero = Facts {
            age: Duration::ZERO,
            grace: Duration::ZERO,
            ..candidate()
        };
        assert_eq!(decide(&zero), Verdict::Assess);
    }

    #[test]
    fn candidates_by_record_state() {
        use State::*;
        for record in [
            None,
            Some(Released),
            Some(Kept),
            Some(Removed),
            Some(Preserved),
        ] {
            let f = Facts {
                record,
                ..candidate()
            };
            assert_eq!(decide(&f), Verdict::Assess, "{record:?}");
        }
        let retry = |attempts, since| Facts {
            record: Some(RetryRemove),
            attempts,
            since_transition: since,
            ..candidate()
        };
        assert_eq!(decide(&retry(1, H)), Verdict::Assess);
        assert_eq!(
            decide(&retry(1, Duration::from_secs(60))),
            Verdict::Skip(Skip::Backoff)
        );
        assert_eq!(decide(&retry(5, H)), Verdict::Skip(Skip::Backoff));
        assert_eq!(decide(&retry(5, 2 * H)), Verdict::Assess);
    }

    #[test]
    fn at_risk_by_kind_and_policy() {
        use Drain::*;
        use Policy::{Discard, Keep as KeepIt, Preserve};
        // (kind, at risk, policy) -> verdict once assessed
        let table = [
            (Linked, Some(false), Preserve, Verdict::Act(Remove)),
            (
                Linked,
                Some(true),
                Preserve,
                Verdict::Act(PreserveThenRemove),
            ),
            (Linked, Some(true), KeepIt, Verdict::Act(Keep)),
            (Linked, Some(true), Discard, Verdict::Act(Remove)),
            (Linked, None, KeepIt, Verdict::Assess),
            (Broken, Some(true), Preserve, Verdict::Act(Keep)),
            (Broken, Some(true), KeepIt, Verdict::Act(Keep)),
            (Plain, Some(true), Preserve, Verdict::Act(Keep)),
            (Plain, None, Preserve, Verdict::Assess),
            (Main, None, Preserve, Verdict::Act(Keep)),
            (Main, None, KeepIt, Verdict::Act(Keep)),
            (Main, None, Discard, Verdict::Assess),
            (Main, Some(true), Discard, Verdict::Act(Remove)),
            (Symlink, None, KeepIt, Verdict::Act(Remove)),
            (NotADirectory, None, Preserve, Verdict::Act(Remove)),
        ];
        for (kind, at_risk, policy, want) in table {
            let f = Facts {
                kind,
                at_risk,
                policy,
                ..candidate()
            };
            assert_eq!(decide(&f), want, "{kind:?} {at_risk:?} {policy:?}");
        }
    }

    #[test]
    fn a_broken_worktree_whose_repository_is_found_is_preserved() {
        let broken = |policy, recordable, repository_gone| Facts {
            kind: Broken,
            at_risk: Some(true),
            policy,
            recordable,
            repository_gone,
            ..candidate()
        };
        use Policy::{Discard, Keep as KeepIt, Preserve};
        assert_eq!(
            decide(&broken(Preserve, true, false)),
            Verdict::Act(Drain::PreserveThenRemove)
        );
        assert_eq!(
            decide(&broken(Preserve, false, false)),
            Verdict::Act(Drain::Keep)
        );
        assert_eq!(
            decide(&broken(KeepIt, true, false)),
            Verdict::Act(Drain::Keep)
        );
        assert_eq!(
            decide(&broken(Discard, true, false)),
            Verdict::Act(Drain::Remove)
        );
        assert_eq!(
            decide(&broken(Preserve, false, true)),
            Verdict::Skip(Skip::RepositoryGone)
        );
    }

    #[test]
    fn backoff_grows_then_caps() {
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), m(5));
        assert_eq!(backoff(2), m(10));
        assert_eq!(backoff(3), m(20));
        assert_eq!(backoff(8), m(640));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn skips_read_as_the_contract_vocabulary() {
        let words = |s: Skip| serde_json::to_value(s.action()).unwrap();
        assert_eq!(words(Skip::InUse), "skipped_in_use");
        assert_eq!(words(Skip::Locked), "skipped_locked");
        assert_eq!(words(Skip::Young), "skipped_young");
        assert_eq!(words(Skip::RootOwned), "root_owned_skipped");
        assert_eq!(words(Skip::RepositoryGone), "refused");
        assert_eq!(words(Skip::Backoff), "deferred");
        assert!(Skip::RepositoryGone.why().is_some());
    }
}
