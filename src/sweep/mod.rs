//! `treeward-sweep`: clear the residue under the sweep roots before an agent
//! service starts, as root, losing nothing.
//!
//! Two phases. **Blocking** (the service's start waits on it, so it grows
//! with the number of entries, not their size): inspect each entry cheaply,
//! decide ([`decide::first`]), unlink links and files, and rename every
//! directory to be reclaimed into the root's trash — after locking it as a
//! worktree of its repository and before pointing its admin entry at the new
//! place, so no `git worktree prune` can lose its admin dir meanwhile.
//! **Drain** (within `--budget`): for each entry in the trash, oldest first,
//! reclaim it as its repository's owner ([`crate::as_owner::reclaim`]: assess,
//! preserve, forget), then delete its files as root with the safe removal
//! engine ([`crate::remove`]); the drain is [`crate::pass::drain`], shared with
//! the reaper. What the budget leaves waits in the trash for the next sweep
//! or reap pass. Nothing here deletes by path, and no git
//! operation runs as root on another user's repository.

pub mod decide;

use crate::as_owner::{Owner, Request, Response, Worker};
use crate::claim::{self, Claim, Claimed};
use crate::config::{Config, Root};
use crate::in_use::ProcessTable;
use crate::ledger::Ledger;
use crate::pass::drain::{
    action_of, call, call_simple, drain_trash, open_trash, planned, record, settle_in_place,
    squatted, Drive, Known,
};
use crate::pass::inspect::{inspect, unlinked_at_risk, Inspected, QUARANTINE_LOCK};
use crate::pass::policy::{drain, unrecordable, Drain, EntryKind};
use crate::pass::report::{self, millis, Action, Outcome, RefusedRoot, Report};
use crate::progress::Progress;
use crate::roots::{self, OpenRoot, TRASH};
use crate::trash::{self, Batch, Trash, TrashError};
use decide::{first, First};
use nix::errno::Errno;
use nix::unistd::{unlinkat, Uid, UnlinkatFlags};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plan and report; change nothing.
    pub dry_run: bool,
    /// How long the drain may take before it leaves the rest in the trash.
    pub budget: Duration,
    /// A progress bar on stderr while the drain runs (when stderr is a
    /// terminal); `sd_notify` progress goes to systemd either way.
    pub progress: bool,
    /// The program that serves git operations as a repository's owner.
    pub worker: Worker,
}

impl Options {
    /// A real sweep through `worker`, with the binary's defaults: a 10 s
    /// budget for the drain, no progress bar.
    pub fn new(worker: Worker) -> Options {
        Options {
            dry_run: false,
            budget: DEFAULT_BUDGET,
            progress: false,
            worker,
        }
    }
}

/// The drain's budget unless told otherwise (`--budget`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// How long one worker call of the blocking phase may take (locking and
/// relocating a batch: a few small writes each). The service's start waits
/// on this phase, so a worker that is stopped or spins is killed at this
/// deadline and only its entries fail.
pub const BLOCKING_CALL: Duration = Duration::from_secs(5);

/// Sweeps every root with `sweep = true`.
pub fn sweep(config: &Config, opts: &Options) -> Report {
    let start = Instant::now();
    let blocking = Options {
        worker: opts.worker.clone().with_timeout(BLOCKING_CALL),
        ..opts.clone()
    };
    // A dry run locks and moves nothing: its calls are the drain's
    // assessments, with the worker's own timeout.
    let phase = if opts.dry_run { opts } else { &blocking };
    let processes = ProcessTable::scan();
    // Where broken worktrees' repositories may have moved (a ledger that
    // cannot be read only means fewer are found).
    let known = Ledger::new(&config.ledger)
        .read()
        .map(|doc| Known::of(&doc))
        .unwrap_or_default();
    let mut outcomes = Vec::new();
    let mut refused = Vec::new();
    let mut opened = Vec::new();
    for root in config.roots.iter().filter(|r| r.sweep) {
        match roots::open(root) {
            Ok(None) => log::info!(
                "root {} does not exist: nothing to sweep",
                root.path.display()
            ),
            Ok(Some(open)) => match block(root, &open, &processes, phase, &known, &mut outcomes) {
                Ok(()) => opened.push((root, open)),
                Err(error) => refused.push(RefusedRoot {
                    path: root.path.clone(),
                    error,
                }),
            },
            Err(error) => {
                log::error!("refusing root {}: {error}", root.path.display());
                refused.push(RefusedRoot {
                    path: root.path.clone(),
                    error,
                });
            }
        }
    }
    let blocking = start.elapsed();
    crate::logging::status(&format!(
        "residue moved out of the way in {} ms; draining",
        blocking.as_millis()
    ));
    if !opts.dry_run {
        let deadline = Instant::now() + opts.budget;
        let mut progress = Progress::new(opts.progress);
        for (root, open) in &opened {
            drain_trash(
                root,
                open,
                &opts.worker,
                &known,
                Drive {
                    deadline: Some(deadline),
                    progress: &mut progress,
                    intend: &|intended| record(&config.ledger_store(), intended),
                },
                &mut outcomes,
            );
        }
        progress.finish();
        record(&config.ledger_store(), &outcomes);
    }
    let prune_succeeded = report::prune_succeeded(&outcomes);
    Report::new(
        opts.dry_run,
        outcomes,
        refused,
        prune_succeeded,
        millis(blocking),
        millis(start.elapsed()),
    )
}

/// Whether an entry that is not a verified claim can still have its work
/// recorded: a broken worktree whose repository is found
/// ([`claim::find_repository`]; a check of a few files, no git).
fn recordable(
    root: &Root,
    open: &OpenRoot,
    name: &OsStr,
    inspected: &Inspected,
    known: &Known,
) -> bool {
    let owner = claim::expected_owner(root, Uid::effective().as_raw());
    inspected.seen.kind == EntryKind::Broken
        && claim::find_repository(
            open.fd.as_fd(),
            &root.path,
            name,
            &root.path.join(name),
            owner,
            &known.repositories,
        )
        .is_some()
}

/// The blocking phase for one root. `Err`: the root could not be listed.
fn block(
    root: &Root,
    open: &OpenRoot,
    processes: &ProcessTable,
    opts: &Options,
    known: &Known,
    out: &mut Vec<Outcome>,
) -> Result<(), String> {
    let names = roots::entry_names(root, open).map_err(|e| format!("cannot list: {e}"))?;
    let owner = claim::expected_owner(root, Uid::effective().as_raw());
    let mut to_quarantine = Vec::new();
    for name in names {
        let path = root.path.join(&name);
        let inspected = match inspect(open, &root.path, &name, owner, processes) {
            Ok(Some(i)) => i,
            Ok(None) | Err(Errno::ENOENT) => continue,
            Err(e) => {
                out.push(
                    Outcome::new(path, Action::Failed).with_error(format!("cannot inspect: {e}")),
                );
                continue;
            }
        };
        let decision = first(inspected.seen, root.policy);
        match decision {
            // Work no repository can record stays where it is: judged here,
            // without git, so it is not moved to the trash and back.
            First::Quarantine
                if inspected.claim.is_none()
                    && drain(
                        unlinked_at_risk(inspected.seen.kind, open.fd.as_fd(), &name),
                        recordable(root, open, &name, &inspected, known),
                        root.policy,
                    ) == Drain::Keep =>
            {
                let why = unrecordable(inspected.seen.kind);
                out.push(if opts.dry_run {
                    planned(path, Action::Kept).with_error(why)
                } else {
                    Outcome::new(path, Action::Kept).with_error(why)
                });
            }
            First::Quarantine
                if inspected
                    .claim
                    .as_ref()
                    .is_some_and(|c| c.holds_submodules()) =>
            {
                out.push(in_place(open, &name, path, &inspected, root, opts));
            }
            First::Quarantine => to_quarantine.push((name, inspected)),
            First::Unlink if opts.dry_run => out.push(planned(path, Action::Removed)),
            First::Unlink => out.push(unlink(open, &name, path, &inspected)),
            First::SkipLocked => {
                let why = match inspected.claim.as_ref().and_then(|c| c.lock()) {
                    Some(r) if !r.trim().is_empty() => format!("locked by its owner: {}", r.trim()),
                    _ => "locked by its owner (no reason given)".to_owned(),
                };
                out.push(Outcome::new(path, Action::SkippedLocked).with_error(why));
            }
            First::SkipInUse => {
                let why = crate::in_use::describe_use(&path, processes).join("; ");
                out.push(Outcome::new(path, Action::SkippedInUse).with_error(why));
            }
            First::Refuse(why) => {
                let detail = inspected.refusal.clone().unwrap_or_else(|| why.to_owned());
                out.push(Outcome::new(path, Action::Refused).with_error(detail));
            }
            First::Keep => out.push(Outcome::new(path, Action::Kept).with_error(
                "a clone: removing it would remove its repository (policy discard only)",
            )),
        }
    }
    if opts.dry_run {
        plan_trash(root, open, !to_quarantine.is_empty(), out)?;
        plan(root, open, to_quarantine, opts, known, out);
        return Ok(());
    }
    if to_quarantine.is_empty() {
        return Ok(());
    }
    let trash = open_trash(root, open, true, out)?
        .ok_or("its trash is squatted and this pass is not root: nothing can be quarantined")?;
    let batch = trash.new_batch()?;
    quarantine(root, open, &batch, to_quarantine, opts, out);
    Ok(())
}

/// Reclaims a worktree where it is, in the blocking phase: one whose
/// submodules keep their git dirs in its admin dir, named from inside the
/// worktree by relative paths that a move into the trash would break (git
/// itself refuses to move such a worktree). Assessed and preserved as its
/// owner, then removed; kept work stays in place.
fn in_place(
    open: &OpenRoot,
    name: &OsStr,
    path: PathBuf,
    inspected: &Inspected,
    root: &Root,
    opts: &Options,
) -> Outcome {
    let Some(claim) = &inspected.claim else {
        return Outcome::new(path, Action::Failed).with_error("no claim");
    };
    let request = Request::Reclaim {
        claimed: claim.ticket(),
        policy: root.policy,
        dry_run: opts.dry_run,
    };
    match call(&opts.worker, claim.owner(), std::slice::from_ref(&request)).pop() {
        Some(Ok(r)) if opts.dry_run && r.error.is_none() => planned(path, action_of(r.decision)),
        Some(answer) => settle_in_place(path, answer, open.fd.as_fd(), name),
        None => Outcome::new(path, Action::Failed).with_error("no answer from the worker"),
    }
}

/// Unlinks a symlink or a file entry (never follows it).
fn unlink(open: &OpenRoot, name: &OsString, path: PathBuf, inspected: &Inspected) -> Outcome {
    match unlinkat(
        open.fd.as_fd(),
        name.as_os_str(),
        UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Outcome::new(path, Action::Removed),
        Err(e) => denied(path, inspected.uid, e),
    }
}

/// An entry this pass may not touch: root's residue when we are not root.
fn denied(path: PathBuf, uid: u32, e: Errno) -> Outcome {
    if matches!(e, Errno::EPERM | Errno::EACCES) && uid == 0 && !Uid::effective().is_root() {
        Outcome::new(path, Action::RootOwnedSkipped)
    } else {
        Outcome::new(path, Action::Failed).with_error(e.desc())
    }
}

/// `--dry-run`: what would be done with the root's trash when something
/// else holds its name (see [`crate::pass::drain::open_trash`]). `Err` where the
/// real pass would refuse the root: it `needs` the trash, and cannot have it.
fn plan_trash(
    root: &Root,
    open: &OpenRoot,
    needed: bool,
    out: &mut Vec<Outcome>,
) -> Result<(), String> {
    let path = root.path.join(TRASH);
    match Trash::open(open, false) {
        Ok(_) => {}
        Err(TrashError::Taken(t)) if !t.may_hold_work() && Uid::effective().is_root() => out.push(
            planned(path, Action::Removed).with_error(format!(
                "the trash is squatted: {t}; it would be removed as residue, and treeward's own trash would take its place"
            )),
        ),
        Err(e) if needed => return Err(e.to_string()),
        Err(TrashError::Taken(t)) if !t.may_hold_work() => out.push(squatted(root, &t)),
        Err(e) => out.push(Outcome::new(path, Action::Refused).with_error(e.to_string())),
    }
    Ok(())
}

/// `--dry-run`: what the drain would do with each entry, assessed read-only
/// where it lies.
fn plan(
    root: &Root,
    open: &OpenRoot,
    items: Vec<(OsString, Inspected)>,
    opts: &Options,
    known: &Known,
    out: &mut Vec<Outcome>,
) {
    let mut linked: BTreeMap<Owner, Vec<Claim>> = BTreeMap::new();
    for (name, inspected) in items {
        match inspected.claim {
            Some(c) => linked.entry(c.owner()).or_default().push(c),
            None => {
                let path = root.path.join(&name);
                let at_risk = unlinked_at_risk(inspected.seen.kind, open.fd.as_fd(), &name);
                let preservable = recordable(root, open, &name, &inspected, known);
                let decision = drain(at_risk, preservable, root.policy);
                out.push(planned(path, action_of(decision)));
            }
        }
    }
    for (owner, claims) in linked {
        let requests: Vec<Request> = claims
            .iter()
            .map(|c| Request::Reclaim {
                claimed: c.ticket(),
                policy: root.policy,
                dry_run: true,
            })
            .collect();
        let answers = call(&opts.worker, owner, &requests);
        let paths = claims.iter().map(|c| c.entry().to_path_buf());
        for (path, answer) in paths.zip(answers) {
            out.push(match answer {
                Ok(r) if r.error.is_none() => planned(path, action_of(r.decision)),
                Ok(r) => Outcome::new(path, Action::Failed).with_error(r.error.unwrap_or_default()),
                Err(e) => Outcome::new(path, Action::Failed).with_error(e),
            });
        }
    }
}

/// Locks the linked worktrees (as their owners), renames every entry into
/// the batch, then points the admin entries at the new places.
fn quarantine(
    root: &Root,
    open: &OpenRoot,
    batch: &Batch,
    items: Vec<(OsString, Inspected)>,
    opts: &Options,
    out: &mut Vec<Outcome>,
) {
    let mut by_owner: BTreeMap<Owner, Vec<usize>> = BTreeMap::new();
    for (i, (_, inspected)) in items.iter().enumerate() {
        if let Some(c) = &inspected.claim {
            by_owner.entry(c.owner()).or_default().push(i);
        }
    }
    let mut lock_failed: BTreeMap<usize, String> = BTreeMap::new();
    for (owner, idx) in &by_owner {
        let requests: Vec<Request> = idx
            .iter()
            .filter_map(|&i| items[i].1.claim.as_ref())
            .map(|c| Request::LockWorktree {
                claimed: c.ticket(),
                reason: Some(QUARANTINE_LOCK.to_owned()),
            })
            .collect();
        let answers = call_simple(&opts.worker, *owner, &requests, |r| {
            match r {
                Response::Locked {
                    newly_locked: true, ..
                } => true,
                // Our own lock, left by a pass killed before its rename.
                Response::Locked { reason, .. } => reason.as_deref() == Some(QUARANTINE_LOCK),
                _ => false,
            }
        });
        for (&i, answer) in idx.iter().zip(answers) {
            if let Err(e) = answer {
                lock_failed.insert(i, e);
            }
        }
    }
    let trash_dir = root.path.join(TRASH).join(&batch.name);
    let mut moved: BTreeMap<Owner, Vec<(PathBuf, Claimed)>> = BTreeMap::new();
    for (i, (name, inspected)) in items.iter().enumerate() {
        let path = root.path.join(name);
        if let Some(e) = lock_failed.remove(&i) {
            let action = if e.starts_with("locked meanwhile") {
                Action::SkippedLocked
            } else {
                Action::Failed
            };
            out.push(Outcome::new(path, action).with_error(e));
            continue;
        }
        match trash::quarantine(open, name, batch) {
            Ok(()) => {
                if let Some(c) = &inspected.claim {
                    let now = trash_dir.join(name);
                    let ticket = c.ticket_moved(&now);
                    moved.entry(c.owner()).or_default().push((now, ticket));
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => out.push(denied(path, inspected.uid, e)),
        }
    }
    for (owner, places) in moved {
        let requests: Vec<Request> = places
            .iter()
            .map(|(_, claimed)| Request::Relocate {
                claimed: claimed.clone(),
            })
            .collect();
        for ((worktree, _), answer) in
            places
                .iter()
                .zip(call_simple(&opts.worker, owner, &requests, |r| {
                    matches!(r, Response::Relocated)
                }))
        {
            if let Err(e) = answer {
                // Still locked, so still safe; the drain assesses it where it is.
                log::warn!(
                    "{}: admin entry not pointed at the trash: {e}",
                    worktree.display()
                );
            }
        }
    }
}
