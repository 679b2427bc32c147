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
//! reclaim it as its repository's owner ([`crate::reclaim`]: assess,
//! preserve, forget), then delete its files as root with the safe removal
//! engine ([`crate::remove`]). What the budget leaves waits in the trash for
//! the next sweep or reap pass. Nothing here deletes by path, and no git
//! operation runs as root on another user's repository.

pub mod decide;
mod inspect;
pub mod report;

use crate::as_owner::{self, Owner, Request, Response, Worker};
use crate::config::{Config, Root};
use crate::in_use::ProcessTable;
use crate::ledger::{Ledger, State};
use crate::reclaim::Reclaimed;
use crate::risk::{self, Location};
use crate::roots::{self, OpenRoot, TRASH};
use crate::trash::{self, Batch, Trash};
use decide::{drain, first, Drain, EntryKind, First};
use inspect::{inspect, Inspected};
use nix::errno::Errno;
use nix::unistd::{unlinkat, Uid, UnlinkatFlags};
use report::{Action, Outcome, RefusedRoot, Report};
use std::collections::BTreeMap;
use std::ffi::OsString;
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
    /// The program that serves git operations as a repository's owner.
    pub worker: Worker,
}

/// The reason written into the lock of a quarantined worktree.
pub const QUARANTINE_LOCK: &str = "treeward: quarantined by treeward-sweep, being reclaimed";

/// How many reclaims one worker call carries (a worker is one process; the
/// chunk bounds its run time under the timeout and lets the budget be
/// checked between chunks).
const RECLAIM_CHUNK: usize = 16;

/// Sweeps every root with `sweep = true`.
pub fn sweep(config: &Config, opts: &Options) -> Report {
    let start = Instant::now();
    let processes = ProcessTable::scan();
    let mut outcomes = Vec::new();
    let mut refused = Vec::new();
    let mut opened = Vec::new();
    for root in config.roots.iter().filter(|r| r.sweep) {
        match roots::open(root) {
            Ok(None) => log::info!(
                "root {} does not exist: nothing to sweep",
                root.path.display()
            ),
            Ok(Some(open)) => match block(root, &open, &processes, opts, &mut outcomes) {
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
        for (root, open) in &opened {
            drain_trash(root, open, opts, deadline, &mut outcomes);
        }
        record(&config.ledger, &outcomes);
    }
    let prune_succeeded = !outcomes.iter().any(|o| {
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("admin entry"))
    });
    Report::new(
        opts.dry_run,
        outcomes,
        refused,
        prune_succeeded,
        millis(blocking),
        millis(start.elapsed()),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The blocking phase for one root. `Err`: the root could not be listed.
fn block(
    root: &Root,
    open: &OpenRoot,
    processes: &ProcessTable,
    opts: &Options,
    out: &mut Vec<Outcome>,
) -> Result<(), String> {
    let names = roots::entry_names(root, open).map_err(|e| format!("cannot list: {e}"))?;
    let mut to_quarantine = Vec::new();
    for name in names {
        let path = root.path.join(&name);
        let inspected = match inspect(&path, open.dev, processes) {
            Ok(i) => i,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(
                    Outcome::new(path, Action::Failed).with_error(format!("cannot inspect: {e}")),
                );
                continue;
            }
        };
        let decision = first(inspected.seen, root.policy);
        match decision {
            First::Quarantine => to_quarantine.push((name, inspected)),
            First::Unlink if opts.dry_run => out.push(planned(path, Action::Removed)),
            First::Unlink => out.push(unlink(open, &name, path, &inspected)),
            First::SkipLocked => out.push(Outcome::new(path, Action::SkippedLocked)),
            First::SkipInUse => out.push(Outcome::new(path, Action::SkippedInUse)),
            First::Refuse(why) => {
                let detail = inspected.mismatch.clone().unwrap_or_else(|| why.to_owned());
                out.push(Outcome::new(path, Action::Refused).with_error(detail));
            }
            First::Keep => out.push(Outcome::new(path, Action::Kept).with_error(
                "a clone: removing it would remove its repository (policy discard only)",
            )),
        }
    }
    if opts.dry_run {
        plan(root, to_quarantine, opts, out);
        return Ok(());
    }
    if to_quarantine.is_empty() {
        return Ok(());
    }
    let trash = Trash::open(open, true)?.ok_or("the trash vanished")?;
    let batch = trash.new_batch()?;
    quarantine(root, open, &batch, to_quarantine, opts, out);
    Ok(())
}

fn planned(path: PathBuf, action: Action) -> Outcome {
    let mut o = Outcome::new(path, Action::Planned);
    o.planned = Some(action);
    o
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

/// `--dry-run`: what the drain would do with each entry, assessed read-only
/// where it lies.
fn plan(root: &Root, items: Vec<(OsString, Inspected)>, opts: &Options, out: &mut Vec<Outcome>) {
    let mut linked: BTreeMap<Owner, Vec<PathBuf>> = BTreeMap::new();
    for (name, inspected) in items {
        let path = root.path.join(&name);
        match &inspected.admin {
            Some(a) => linked
                .entry(Owner {
                    uid: a.uid,
                    gid: a.gid,
                })
                .or_default()
                .push(path),
            None => {
                let decision = drain(
                    inspected.seen.kind,
                    risk::assess(&path).at_risk,
                    false,
                    root.policy,
                );
                out.push(planned(path, action_of(decision)));
            }
        }
    }
    for (owner, paths) in linked {
        let requests: Vec<Request> = paths
            .iter()
            .map(|p| Request::Reclaim {
                path: p.clone(),
                policy: root.policy,
                dry_run: true,
            })
            .collect();
        let answers = call(&opts.worker, owner, &requests);
        for (path, answer) in paths.into_iter().zip(answers) {
            out.push(match answer {
                Ok(r) if r.error.is_none() => planned(path, action_of(r.decision)),
                Ok(r) => Outcome::new(path, Action::Failed).with_error(r.error.unwrap_or_default()),
                Err(e) => Outcome::new(path, Action::Failed).with_error(e),
            });
        }
    }
}

fn action_of(decision: Drain) -> Action {
    match decision {
        Drain::Remove => Action::Removed,
        Drain::PreserveThenRemove => Action::Preserved,
        Drain::Keep => Action::Kept,
    }
}

/// Calls the worker with a batch of reclaims; one result per request.
fn call(worker: &Worker, owner: Owner, requests: &[Request]) -> Vec<Result<Reclaimed, String>> {
    match worker.call_batch(owner, requests) {
        Ok(responses) => responses
            .into_iter()
            .map(|r| match r {
                Response::Reclaimed { reclaimed } => Ok(reclaimed),
                Response::Failed { message } => Err(message),
                other => Err(format!("unexpected answer from the worker: {other:?}")),
            })
            .collect(),
        Err(e) => requests.iter().map(|_| Err(e.to_string())).collect(),
    }
}

/// Calls the worker with a batch of simple requests, turning anything but
/// `ok` into that entry's error.
fn call_simple(
    worker: &Worker,
    owner: Owner,
    requests: &[Request],
    ok: fn(&Response) -> bool,
) -> Vec<Result<(), String>> {
    match worker.call_batch(owner, requests) {
        Ok(responses) => responses
            .iter()
            .map(|r| match r {
                r if ok(r) => Ok(()),
                Response::Failed { message } => Err(message.clone()),
                Response::Locked {
                    newly_locked: false,
                    reason,
                } => Err(format!(
                    "locked meanwhile by someone else: {}",
                    reason.as_deref().unwrap_or("no reason")
                )),
                other => Err(format!("unexpected answer from the worker: {other:?}")),
            })
            .collect(),
        Err(e) => requests.iter().map(|_| Err(e.to_string())).collect(),
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
        if let Some(a) = &inspected.admin {
            by_owner
                .entry(Owner {
                    uid: a.uid,
                    gid: a.gid,
                })
                .or_default()
                .push(i);
        }
    }
    let mut lock_failed: BTreeMap<usize, String> = BTreeMap::new();
    for (owner, idx) in &by_owner {
        let requests: Vec<Request> = idx
            .iter()
            .map(|&i| Request::LockWorktree {
                path: root.path.join(&items[i].0),
                reason: Some(QUARANTINE_LOCK.to_owned()),
            })
            .collect();
        let answers = call_simple(&opts.worker, *owner, &requests, |r| {
            matches!(
                r,
                Response::Locked {
                    newly_locked: true,
                    ..
                }
            )
        });
        for (&i, answer) in idx.iter().zip(answers) {
            if let Err(e) = answer {
                lock_failed.insert(i, e);
            }
        }
    }
    let trash_dir = root.path.join(TRASH).join(&batch.name);
    let mut moved: BTreeMap<Owner, Vec<(PathBuf, PathBuf)>> = BTreeMap::new();
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
                if let Some(a) = &inspected.admin {
                    moved
                        .entry(Owner {
                            uid: a.uid,
                            gid: a.gid,
                        })
                        .or_default()
                        .push((a.gitdir.clone(), trash_dir.join(name)));
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => out.push(denied(path, inspected.uid, e)),
        }
    }
    for (owner, places) in moved {
        let requests: Vec<Request> = places
            .iter()
            .map(|(gitdir, worktree)| Request::Relocate {
                gitdir: gitdir.clone(),
                worktree: worktree.clone(),
            })
            .collect();
        for ((_, worktree), answer) in
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

/// One entry waiting in the trash.
struct Waiting<'a> {
    batch: &'a Batch,
    name: OsString,
    /// Where it lives now.
    path: PathBuf,
    /// Where it lived (and what the report and the ledger call it).
    original: PathBuf,
}

/// The drain: reclaims and deletes what waits in the trash, oldest batch
/// first, until the deadline.
fn drain_trash(
    root: &Root,
    open: &OpenRoot,
    opts: &Options,
    deadline: Instant,
    out: &mut Vec<Outcome>,
) {
    let trash = match Trash::open(open, false) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            out.push(Outcome::new(root.path.join(TRASH), Action::Refused).with_error(e));
            return;
        }
    };
    let (batches, problems) = match trash.batches() {
        Ok(b) => b,
        Err(e) => {
            out.push(Outcome::new(root.path.join(TRASH), Action::Failed).with_error(e));
            return;
        }
    };
    for p in problems {
        out.push(Outcome::new(root.path.join(TRASH), Action::Refused).with_error(p));
    }
    let mut waiting = Vec::new();
    for batch in &batches {
        match batch.entries() {
            Ok(names) => waiting.extend(names.into_iter().map(|name| Waiting {
                batch,
                path: root.path.join(TRASH).join(&batch.name).join(&name),
                original: root.path.join(&name),
                name,
            })),
            Err(e) => out.push(
                Outcome::new(root.path.join(TRASH).join(&batch.name), Action::Failed).with_error(e),
            ),
        }
    }
    let mut queue = waiting.into_iter().peekable();
    while queue.peek().is_some() {
        if Instant::now() >= deadline {
            out.extend(queue.map(|w| Outcome::new(w.original, Action::Deferred)));
            break;
        }
        let chunk: Vec<Waiting> = queue.by_ref().take(RECLAIM_CHUNK).collect();
        drain_chunk(root, open, opts, chunk, out);
    }
    for batch in &batches {
        trash.remove_if_empty(batch);
    }
}

/// Reclaims a chunk of waiting entries (linked worktrees through their
/// owners' workers, one call per owner) and deletes what may go.
fn drain_chunk(
    root: &Root,
    open: &OpenRoot,
    opts: &Options,
    chunk: Vec<Waiting>,
    out: &mut Vec<Outcome>,
) {
    let mut linked: BTreeMap<Owner, Vec<(Waiting, PathBuf)>> = BTreeMap::new();
    for w in chunk {
        match risk::locate(&w.path) {
            Location::Linked { common, gitdir, .. } => match as_owner::owner_of(&common) {
                Ok(owner) => linked.entry(owner).or_default().push((w, gitdir)),
                Err(e) => out.push(
                    Outcome::new(w.original, Action::Failed)
                        .with_error(format!("owner of {}: {e}", common.display())),
                ),
            },
            Location::Missing => {}
            other => {
                let kind = match other {
                    Location::Symlink => EntryKind::Symlink,
                    Location::NotADirectory => EntryKind::NotADirectory,
                    Location::Plain { .. } => EntryKind::Plain,
                    Location::Main { .. } => EntryKind::Main,
                    _ => EntryKind::Broken,
                };
                let decision = drain(kind, risk::assess(&w.path).at_risk, false, root.policy);
                out.push(finish(open, opts, &w, decision, None, None));
            }
        }
    }
    for (owner, items) in linked {
        let requests: Vec<Request> = items
            .iter()
            .map(|(w, _)| Request::Reclaim {
                path: w.path.clone(),
                policy: root.policy,
                dry_run: false,
            })
            .collect();
        for ((w, gitdir), answer) in items.into_iter().zip(call(&opts.worker, owner, &requests)) {
            out.push(match answer {
                Ok(r) if r.error.is_none() || r.decision == Drain::Keep => {
                    let decision = r.decision;
                    finish(open, opts, &w, decision, Some(r), Some((owner, gitdir)))
                }
                Ok(r) => failed_reclaim(&w, r),
                Err(e) => Outcome::new(w.original, Action::Failed).with_error(e),
            });
        }
    }
}

fn failed_reclaim(w: &Waiting, r: Reclaimed) -> Outcome {
    let mut o =
        Outcome::new(w.original.clone(), Action::Failed).with_error(r.error.unwrap_or_default());
    o.preserved_refs = r.preserved_refs;
    o
}

/// Carries out the drain decision for one entry: delete it, or put it back.
fn finish(
    open: &OpenRoot,
    opts: &Options,
    w: &Waiting,
    decision: Drain,
    reclaimed: Option<Reclaimed>,
    admin: Option<(Owner, PathBuf)>,
) -> Outcome {
    let mut o = Outcome::new(w.original.clone(), action_of(decision));
    if let Some(r) = reclaimed {
        o.preserved_refs = r.preserved_refs;
        o.branch = r.branch;
        o.branch_deleted = r.branch_deleted;
        o.error = r.error;
    }
    if decision == Drain::Keep {
        return put_back(open, opts, w, admin, o);
    }
    match crate::remove::remove_entry(w.batch.fd.as_fd(), &w.name) {
        Ok(removed) if removed.complete => {
            o.bytes_freed = removed.bytes;
            o
        }
        Ok(removed) => {
            o.bytes_freed = removed.bytes;
            o.action = Action::Failed;
            o.error = Some(format!(
                "left in the trash, to be retried: {}",
                removed.describe()
            ));
            o
        }
        Err(e) => {
            o.action = Action::Failed;
            o.error = Some(e.to_string());
            o
        }
    }
}

/// Puts a kept entry back where it was, its admin entry pointed back and
/// treeward's quarantine lock lifted.
fn put_back(
    open: &OpenRoot,
    opts: &Options,
    w: &Waiting,
    admin: Option<(Owner, PathBuf)>,
    mut o: Outcome,
) -> Outcome {
    if let Err(e) = trash::put_back(open, &w.name, w.batch) {
        o.error = Some(format!(
            "kept in the trash at {} ({e}): its name is taken again",
            w.path.display()
        ));
        return o;
    }
    if let Some((owner, gitdir)) = admin {
        let requests = [
            Request::Relocate {
                gitdir,
                worktree: w.original.clone(),
            },
            Request::UnlockWorktree {
                path: w.original.clone(),
            },
        ];
        let answers = call_simple(&opts.worker, owner, &requests, |r| {
            matches!(r, Response::Relocated | Response::Unlocked { .. })
        });
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            log::warn!("{}: put back, but: {e}", w.original.display());
        }
    }
    o
}

/// Moves the ledger's records of swept entries to their new states. A
/// ledger that cannot be written is logged, not fatal: the report stands.
fn record(ledger: &std::path::Path, outcomes: &[Outcome]) {
    let result = Ledger::new(ledger).update(|doc| {
        for o in outcomes {
            let Some(rec) = doc.find_by_path_mut(&o.path) else {
                continue;
            };
            let state = match o.action {
                Action::Removed => State::Removed,
                Action::Preserved => State::Preserved,
                Action::Kept => State::Kept,
                Action::Failed => State::RetryRemove,
                _ => continue,
            };
            if state == State::RetryRemove {
                rec.attempts += 1;
                rec.last_error = o.error.clone();
            }
            rec.preserved_refs.extend(o.preserved_refs.iter().cloned());
            if rec.state != state || state == State::RetryRemove {
                rec.transition(state);
            }
        }
    });
    if let Err(e) = result {
        log::error!("the ledger was not updated: {e}");
    }
}
