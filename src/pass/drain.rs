//! The side-effect half of reclaiming, shared by `treeward-sweep` and
//! `treeward-reap`: draining a root's trash, deleting a reclaimed entry and
//! turning what happened into a report line, calling the repository owner's
//! worker, and moving ledger records to the state an outcome means.
//!
//! The sweep fills the trash (as root, before the service starts) and drains
//! what its time budget allows; the reaper drains the rest when the trash is
//! its own. Both go through [`drain_trash`]: for each waiting entry, reclaim
//! it as its repository's owner ([`crate::as_owner::reclaim`]: assess, preserve,
//! forget), then move it to its batch's remains ([`Trash::set_aside`]) and
//! delete its files there with [`crate::remove::remove_entry_until`], or
//! put it back where it was when its work is kept. An entry this pass may not
//! touch (an unprivileged pass meeting another user's residue) is reported
//! and left for a pass that may. Failures are per entry, in the outcome's
//! `error`; nothing here stops a pass.
//!
//! The deadline (the sweep's budget; the reaper has none) is checked
//! between files and between worker calls, which are paced by
//! [`crate::pace`]. What it leaves is `deferred` and complete: an entry not
//! reclaimed yet waits in its batch, quarantined and assessable as it was;
//! one reclaimed (its work preserved, or nothing at risk) waits in the
//! remains, whole or half-deleted, and the next pass deletes the rest first,
//! without assessing it again.

use crate::as_owner::reclaim::Reclaimed;
use crate::as_owner::{self, AsOwnerError, Owner, Request, Response, Route, Worker};
use crate::claim::{self, Claim, Expect, Unclaimed};
use crate::config::{Policy, Root};
use crate::fd;
use crate::ledger::{Document, Ledger, Record, State};
use crate::pace::{call_limits, next_chunk, Speed};
use crate::pass::inspect::{kind_at, unlinked_at_risk};
use crate::pass::policy::{drain, unrecordable, Drain, EntryKind};
use crate::pass::report::{Action, Outcome};
use crate::progress::Progress;
use crate::remove::{RemoveError, Removed};
use crate::roots::{OpenRoot, TRASH};
use crate::trash::{self, Batch, Cleared, Fate, Remains, Stray, Taken, Trash, TrashError};
use nix::unistd::Uid;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The report's word for a drain decision.
pub fn action_of(decision: Drain) -> Action {
    match decision {
        Drain::Remove => Action::Removed,
        Drain::PreserveThenRemove => Action::Preserved,
        Drain::Keep => Action::Kept,
    }
}

/// A `--dry-run` line: `planned`, with what would have been done.
pub fn planned(path: PathBuf, action: Action) -> Outcome {
    let mut o = Outcome::new(path, Action::Planned);
    o.planned = Some(action);
    o
}

/// Why the worker did not do what one request asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnswerError {
    /// The call as a whole failed: the same error for each of its requests.
    Call(Arc<AsOwnerError>),
    /// The worker failed to carry out the request. Its message crossed the
    /// pipe from the worker as a string (the wire format, see
    /// [`Response::Failed`]), and stays one.
    Failed(String),
    /// The worktree was locked meanwhile by someone else, with this reason.
    LockedMeanwhile(Option<String>),
    /// The worker answered something else than the request asks for.
    Unexpected(Box<Response>),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Call(e) => write!(f, "{e}"),
            AnswerError::Failed(message) => f.write_str(message),
            AnswerError::LockedMeanwhile(reason) => write!(
                f,
                "locked meanwhile by someone else: {}",
                reason.as_deref().unwrap_or("no reason")
            ),
            AnswerError::Unexpected(other) => {
                write!(f, "unexpected answer from the worker: {other:?}")
            }
        }
    }
}

impl std::error::Error for AnswerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AnswerError::Call(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Calls the worker with a batch of reclaims; one result per request.
pub fn call(
    worker: &Worker,
    owner: Owner,
    requests: &[Request],
) -> Vec<Result<Reclaimed, AnswerError>> {
    responses(worker, owner, requests)
        .into_iter()
        .map(|r| r.and_then(reclaim_answer))
        .collect()
}

/// Calls the worker with a batch of requests: one response per request,
/// or the call's error for each when the call failed.
fn responses(
    worker: &Worker,
    owner: Owner,
    requests: &[Request],
) -> Vec<Result<Response, AnswerError>> {
    match worker.call_batch(owner, requests) {
        Ok(responses) => responses.into_iter().map(Ok).collect(),
        Err(e) => {
            let e = Arc::new(e);
            requests
                .iter()
                .map(|_| Err(AnswerError::Call(Arc::clone(&e))))
                .collect()
        }
    }
}

/// What a worker's response to a reclaim means.
fn reclaim_answer(response: Response) -> Result<Reclaimed, AnswerError> {
    match response {
        Response::Reclaimed { reclaimed } => Ok(reclaimed),
        Response::Failed { message } => Err(AnswerError::Failed(message)),
        other => Err(AnswerError::Unexpected(Box::new(other))),
    }
}

/// Calls the worker with a batch of simple requests, turning anything but
/// `ok` into that entry's error.
pub fn call_simple(
    worker: &Worker,
    owner: Owner,
    requests: &[Request],
    ok: fn(&Response) -> bool,
) -> Vec<Result<(), AnswerError>> {
    responses(worker, owner, requests)
        .into_iter()
        .map(|r| match r? {
            r if ok(&r) => Ok(()),
            Response::Failed { message } => Err(AnswerError::Failed(message)),
            Response::Locked {
                newly_locked: false,
                reason,
            } => Err(AnswerError::LockedMeanwhile(reason)),
            other => Err(AnswerError::Unexpected(Box::new(other))),
        })
        .collect()
}

/// Why this pass may not act on something owned by `uid`: `None` when it
/// may (it is root, or `uid` is its own). Root's residue met by an
/// unprivileged pass is `root_owned_skipped` (left for the sweep); another
/// user's is refused.
pub fn not_ours(path: &Path, uid: u32) -> Option<Outcome> {
    let euid = Uid::effective();
    if euid.is_root() || uid == euid.as_raw() {
        return None;
    }
    Some(if uid == 0 {
        Outcome::new(path.to_path_buf(), Action::RootOwnedSkipped)
    } else {
        Outcome::new(path.to_path_buf(), Action::Refused).with_error(format!(
            "owned by uid {uid}, not by this pass (uid {}): left for treeward-sweep",
            euid.as_raw()
        ))
    })
}

/// The worker, its calls bounded by what is left of the pass's budget when
/// one reclaim takes `per_entry` ([`call_limits`]): it starts no request
/// that would not end by the deadline, and one that is stopped or spins is
/// killed a little after it, failing only its own entries.
fn within(worker: &Worker, deadline: Option<Instant>, per_entry: Option<Duration>) -> Worker {
    match time_left(deadline) {
        Some(left) => {
            let (stop, kill) = call_limits(left, per_entry, worker.timeout);
            worker.clone().with_stop_after(stop).with_timeout(kill)
        }
        None => worker.clone(),
    }
}

/// The time until `deadline`, zero once it passed; `None`: no deadline.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Whether `deadline` has passed.
fn past(deadline: Option<Instant>) -> bool {
    time_left(deadline).is_some_and(|left| left.is_zero())
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

/// How a drain runs: until when, whom it tells how far it got, and where
/// it records what it is about to delete (see [`drain_trash`]).
pub struct Drive<'a> {
    /// `None`: no deadline.
    pub deadline: Option<Instant>,
    pub progress: &'a mut Progress,
    pub intend: &'a dyn Fn(&[Outcome]),
}

/// The drain: reclaims and deletes what waits in the trash of `root`, oldest
/// batch first, until the deadline (`None`: no deadline), telling
/// `progress` as it goes. Each worker call runs as the entry's repository
/// owner. Before the files of reclaimed entries are deleted, what is about
/// to be done (`removed`, `preserved`) is handed to `intend`, which records
/// it in the ledger: a pass killed between the deletion and its own final
/// ledger write leaves the records where an uninterrupted pass leaves them
/// (the final outcomes are recorded again by the caller; recording is
/// idempotent).
pub fn drain_trash(
    root: &Root,
    open: &OpenRoot,
    worker: &Worker,
    known: &Known,
    drive: Drive<'_>,
    out: &mut Vec<Outcome>,
) {
    let Drive {
        deadline,
        progress,
        intend,
    } = drive;
    let trash = match open_trash(root, open, false, out) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            out.push(Outcome::new(root.path.join(TRASH), Action::Refused).with_error(e));
            return;
        }
    };
    let (batches, strays) = match trash.batches() {
        Ok(b) => b,
        Err(e) => {
            out.push(Outcome::new(root.path.join(TRASH), Action::Failed).with_error(e));
            return;
        }
    };
    for stray in strays {
        out.extend(clear_stray(root, &trash, stray));
    }
    let mut remains = Vec::new();
    let mut waiting = Vec::new();
    for batch in &batches {
        let at = root.path.join(TRASH).join(&batch.name);
        match trash.remains(batch) {
            Ok(r) => remains.extend(r),
            Err(e) => out.push(Outcome::new(at.clone(), Action::Failed).with_error(e)),
        }
        match batch.entries() {
            Ok(names) => waiting.extend(names.into_iter().map(|name| Waiting {
                batch,
                path: at.join(&name),
                original: root.path.join(&name),
                name,
            })),
            Err(e) => out.push(Outcome::new(at, Action::Failed).with_error(e)),
        }
    }
    progress.found(remains.iter().map(|r| r.names.len()).sum::<usize>() + waiting.len());
    // What earlier passes reclaimed but did not finish deleting goes first:
    // it needs no worker, only the rest of its removal.
    for r in &remains {
        for name in &r.names {
            let o = delete_remains(root, open, r, name, deadline);
            progress.settled(&o);
            out.push(o);
        }
    }
    // A pipeline on two cores: while the files of one chunk are deleted
    // here ([`finish_all`]), the next chunk is assessed and preserved (by
    // its owners' workers) on another thread. An entry is still deleted
    // only after its own reclaim finished.
    let mut queue = waiting.into_iter().peekable();
    let mut reclaimed: Vec<Reclaiming> = Vec::new();
    let mut speed = Speed::default();
    loop {
        let size = match queue.peek() {
            Some(_) => next_chunk(time_left(deadline), speed.per_entry()),
            None => 0,
        };
        if size == 0 && reclaimed.is_empty() {
            break;
        }
        let chunk: Vec<Waiting> = queue.by_ref().take(size).collect();
        let bounded = within(worker, deadline, speed.per_entry());
        intend(&intents(&reclaimed));
        let (done, next) = std::thread::scope(|s| {
            let next = (!chunk.is_empty()).then(|| {
                s.spawn(|| {
                    let started = Instant::now();
                    let r = reclaim_chunk(root, &bounded, known, chunk);
                    (r, started.elapsed())
                })
            });
            let done = finish_all(
                open,
                &trash,
                worker,
                std::mem::take(&mut reclaimed),
                deadline,
            );
            (done, next.map(|n| n.join()))
        });
        for o in done {
            progress.settled(&o);
            out.push(o);
        }
        match next {
            None => {}
            Some(Ok(((outcomes, ready, served), took))) => {
                speed.observe(served, took);
                for o in outcomes {
                    progress.settled(&o);
                    out.push(o);
                }
                reclaimed = ready;
            }
            Some(Err(_)) => {
                log::error!("a reclaim thread panicked; its entries wait for the next pass")
            }
        }
    }
    for w in queue {
        let o = Outcome::new(w.original, Action::Deferred);
        progress.settled(&o);
        out.push(o);
    }
    for batch in &batches {
        trash.remove_if_empty(batch);
    }
}

/// Deletes the rest of a reclaimed entry that an earlier pass left in the
/// trash's remains, until the deadline. Its report line is its fate's
/// (removed, or preserved), with why there is nothing to assess; the
/// preserved refs were in the report that deferred it. Only remains of the
/// trash's owner are deleted unassessed (or any, in a trash only root can
/// write into): the owner could have moved anything of theirs there, but
/// of another user's (root's residue, say) only what it can rename, so
/// that is judged again as residue, without git, and what holds work is
/// reported and left alone (judged before, it held none: deleting only
/// takes away).
fn delete_remains(
    root: &Root,
    open: &OpenRoot,
    r: &Remains,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Outcome {
    let path = root.path.join(name);
    let dir = r.fd.as_fd();
    let st = match fd::stat_at(dir, name) {
        Ok(Some(st)) => st,
        Ok(None) => return Outcome::new(path, action_of_fate(r.fate)),
        Err(e) => return Outcome::new(path, Action::Failed).with_error(e.desc()),
    };
    if let Some(skipped) = not_ours(&path, st.st_uid) {
        return skipped;
    }
    if open.uid != 0 && st.st_uid != open.uid {
        let holds_work =
            kind_at(dir, name, st.st_mode).map_or(true, |kind| unlinked_at_risk(kind, dir, name));
        if drain(holds_work, false, root.policy) != Drain::Remove {
            return Outcome::new(path, Action::Refused).with_error(format!(
                "in the trash's remains, owned by uid {}, not by the trash's owner (uid {}), and it holds files: left alone",
                st.st_uid, open.uid
            ));
        }
    }
    if past(deadline) {
        return Outcome::new(path, Action::Deferred)
            .with_error("reclaimed by an earlier pass; the rest of its files waits in the trash");
    }
    let mut o = Outcome::new(path, action_of_fate(r.fate));
    o.reason = Some(
        "reclaimed by an earlier pass whose budget ran out: the rest of its files deleted".into(),
    );
    remove_into(o, dir, name, deadline)
}

/// The report's word for an entry whose remains are gone.
fn action_of_fate(fate: Fate) -> Action {
    match fate {
        Fate::Removed => Action::Removed,
        Fate::Preserved => Action::Preserved,
    }
}

/// The trash of `root` for this pass to fill or drain (`create`: made if
/// missing). As root, residue that squats its name (anything but a
/// directory of the root's owner: a file, a symlink, a FIFO, another user's
/// directory) is swapped out for a new trash and removed with the safe
/// removal engine, and reported in `out`. An unprivileged pass reports a
/// squatted trash in `out`, left for `treeward-sweep`, and gets `None`.
/// `Err`: the trash cannot be used, for the caller to report.
pub fn open_trash(
    root: &Root,
    open: &OpenRoot,
    create: bool,
    out: &mut Vec<Outcome>,
) -> Result<Option<Trash>, TrashError> {
    let squat = match Trash::open(open, create) {
        Ok(t) => return Ok(t),
        Err(TrashError::Taken(t)) if !t.may_hold_work() => t,
        Err(e) => return Err(e),
    };
    if Uid::effective().is_root() {
        let (trash, cleared) = Trash::claim(open)?;
        out.extend(cleared.map(|c| cleared_outcome(root, c)));
        return Ok(Some(trash));
    }
    out.push(squatted(root, &squat));
    Ok(None)
}

/// The report line of a squatted trash an unprivileged pass leaves.
pub fn squatted(root: &Root, squat: &Taken) -> Outcome {
    Outcome::new(root.path.join(TRASH), Action::Refused).with_error(format!(
        "the trash is squatted: {squat}; not used, and left for treeward-sweep, which removes it as residue"
    ))
}

/// The report line of a squat [`Trash::claim`] removed: the trash, or
/// the name it was moved aside to when it was not all removed.
fn cleared_outcome(root: &Root, c: Cleared) -> Outcome {
    if c.complete() {
        let mut o = Outcome::new(root.path.join(TRASH), Action::Removed).with_error(c.to_string());
        o.bytes_freed = c.removed.as_ref().map_or(0, |r| r.bytes);
        o
    } else {
        Outcome::new(root.path.join(&c.aside), Action::Failed).with_error(c.to_string())
    }
}

/// A name in the trash that is not a batch: residue that root removes (only
/// treeward's own batches hold quarantined worktrees), else reported and
/// left alone.
fn clear_stray(root: &Root, trash: &Trash, stray: Stray) -> Option<Outcome> {
    let path = root.path.join(TRASH).join(&stray.name);
    let taken = match stray.found {
        Ok(t) => t,
        Err(e) => return Some(Outcome::new(path, Action::Refused).with_error(e)),
    };
    if taken.may_hold_work() {
        return Some(Outcome::new(path, Action::Refused).with_error(taken.to_string()));
    }
    if !Uid::effective().is_root() {
        return Some(Outcome::new(path, Action::Refused).with_error(format!(
            "not a batch of treeward's: {taken}; left for treeward-sweep, which removes it as residue"
        )));
    }
    let why = format!("not a batch of treeward's: {taken}");
    match trash.remove_stray(&stray.name) {
        Ok(None) => None,
        Ok(Some((seen, removed))) => {
            let why = seen.map_or(why, |t| format!("not a batch of treeward's: {t}"));
            let o = Outcome::new(path, Action::Removed)
                .with_error(format!("{why}; removed as residue"));
            Some(settle(o, &removed))
        }
        Err(e) => {
            Some(Outcome::new(path, Action::Failed).with_error(format!("{why}; not removed: {e}")))
        }
    }
}

/// An entry whose drain decision is made (and, for a linked worktree, whose
/// reclaim as its owner is done): what is left is to delete it or put it
/// back.
struct Reclaiming<'a> {
    waiting: Waiting<'a>,
    decision: Drain,
    reclaimed: Option<Reclaimed>,
    /// The verified claim of a linked worktree, where it waits in the trash.
    claim: Option<Claim>,
    /// Why it is not acted on, and how that is reported: it stopped being
    /// a verified claim while it waited (refused), or a process started
    /// using it (in use). It goes back where it was, untouched.
    left: Option<(Action, String)>,
    /// What it is, when it is not a verified claim: why it is kept, if it is.
    kind: EntryKind,
}

/// Decides a chunk of waiting entries: linked worktrees whose claims still
/// hold are reclaimed through their owners' workers (one call per owner);
/// so are broken worktrees under `preserve` whose repository can be found
/// (the one their `.git` names, or one of the `known` ones their admin dir
/// moved into: [`claim::find_repository`]), their files preserved there;
/// the rest are judged without git. Returns the outcomes already final
/// (skipped, failed; deferred: a worker reached its stop time before it),
/// the entries ready for [`finish`], and how many entries were dealt with
/// (all but the deferred ones). Deletes nothing.
fn reclaim_chunk<'a>(
    root: &Root,
    worker: &Worker,
    known: &Known,
    chunk: Vec<Waiting<'a>>,
) -> (Vec<Outcome>, Vec<Reclaiming<'a>>, usize) {
    let mut served = chunk.len();
    let (mut out, mut ready) = (Vec::new(), Vec::new());
    // Nothing taken while in use: a process may have come into an entry
    // since the blocking phase looked (an agent, a reaper's lease holder).
    let processes = crate::in_use::ProcessTable::scan();
    let mut linked: BTreeMap<Owner, Vec<(Waiting, Request, Option<Claim>)>> = BTreeMap::new();
    let expected = claim::expected_owner(root, Uid::effective().as_raw());
    for w in chunk {
        let dir = w.batch.fd.as_fd();
        let st = match fd::stat_at(dir, &w.name) {
            Ok(Some(st)) => st,
            Ok(None) => continue,
            Err(e) => {
                out.push(Outcome::new(w.original, Action::Failed).with_error(e.desc()));
                continue;
            }
        };
        if let Some(skipped) = not_ours(&w.original, st.st_uid) {
            out.push(skipped);
            continue;
        }
        let users = crate::in_use::describe_use(&w.path, &processes);
        let in_use = |w, claim, kind| Reclaiming {
            waiting: w,
            decision: Drain::Keep,
            reclaimed: None,
            claim,
            left: Some((Action::SkippedInUse, users.join("; "))),
            kind,
        };
        let parent = w.path.parent().unwrap_or(&w.path).to_path_buf();
        let expect = Expect {
            owner: expected,
            also_named: Some(&w.original),
        };
        let (kind, refused): (EntryKind, Option<String>) =
            match claim::verify_at(dir, &parent, &w.name, expect) {
                Ok(c)
                    if as_owner::route(Uid::effective().as_raw(), c.owner().uid)
                        == Route::CannotSwitch =>
                {
                    out.extend(not_ours(&w.original, c.owner().uid));
                    continue;
                }
                // Put back with its claim, so that its admin dir names it
                // again and treeward's lock is lifted.
                Ok(c) if !users.is_empty() => {
                    ready.push(in_use(w, Some(c), EntryKind::Linked));
                    continue;
                }
                Ok(c) => {
                    let request = Request::Reclaim {
                        claimed: c.ticket(),
                        policy: root.policy,
                        dry_run: false,
                    };
                    linked
                        .entry(c.owner())
                        .or_default()
                        .push((w, request, Some(c)));
                    continue;
                }
                Err(Unclaimed::NotLinked) => match kind_at(dir, &w.name, st.st_mode) {
                    Ok(kind) => (kind, None),
                    Err(e) => {
                        out.push(Outcome::new(w.original, Action::Failed).with_error(e.desc()));
                        continue;
                    }
                },
                Err(Unclaimed::Broken(_)) if !users.is_empty() => (EntryKind::Broken, None),
                Err(Unclaimed::Broken(_)) => {
                    let found = (root.policy == Policy::Preserve)
                        .then(|| {
                            claim::find_repository(
                                dir,
                                &parent,
                                &w.name,
                                &w.original,
                                expected,
                                &known.repositories,
                            )
                        })
                        .flatten()
                        .filter(|f| {
                            as_owner::route(Uid::effective().as_raw(), f.repository.owner().uid)
                                != Route::CannotSwitch
                        });
                    if let Some(f) = found {
                        let request = Request::ReclaimBroken {
                            entry: w.path.clone(),
                            repository: f.repository.common().to_path_buf(),
                            admin: f.admin,
                            name: PathBuf::from(f.name),
                            commits: known.commits(&w.original),
                        };
                        linked
                            .entry(f.repository.owner())
                            .or_default()
                            .push((w, request, None));
                        continue;
                    }
                    (EntryKind::Broken, None)
                }
                Err(Unclaimed::Refused(why)) => (EntryKind::Linked, Some(why)),
            };
        if !users.is_empty() {
            ready.push(in_use(w, None, kind));
            continue;
        }
        let decision = match refused {
            Some(_) => Drain::Keep,
            None => drain(unlinked_at_risk(kind, dir, &w.name), false, root.policy),
        };
        ready.push(Reclaiming {
            waiting: w,
            decision,
            reclaimed: None,
            claim: None,
            left: refused.map(|why| (Action::Refused, why)),
            kind,
        });
    }
    for (owner, items) in linked {
        let requests: Vec<Request> = items.iter().map(|(_, r, _)| r.clone()).collect();
        for ((w, _, c), response) in items.into_iter().zip(responses(worker, owner, &requests)) {
            if let Ok(Response::NotStarted) = response {
                served -= 1;
                out.push(Outcome::new(w.original, Action::Deferred));
                continue;
            }
            let kind = match c {
                Some(_) => EntryKind::Linked,
                None => EntryKind::Broken,
            };
            match response.and_then(reclaim_answer) {
                Ok(r) if r.error.is_none() || r.decision == Drain::Keep => ready.push(Reclaiming {
                    waiting: w,
                    decision: r.decision,
                    reclaimed: Some(r),
                    claim: c,
                    left: None,
                    kind,
                }),
                Ok(r) => out.push(failed_reclaim(w.original.clone(), r)),
                Err(e) => out.push(Outcome::new(w.original, Action::Failed).with_error(e)),
            }
        }
    }
    (out, ready, served)
}

/// A reclaim that failed: reported with whatever it preserved first.
pub fn failed_reclaim(path: PathBuf, r: Reclaimed) -> Outcome {
    let mut o = Outcome::new(path, Action::Failed).with_error(r.error.unwrap_or_default());
    if !r.preserved_refs.is_empty() {
        o.repository = r.repository;
    }
    o.preserved_refs = r.preserved_refs;
    o
}

/// The report line for a reclaimed entry, before its files are deleted.
pub fn reclaimed_outcome(path: PathBuf, decision: Drain, reclaimed: Option<Reclaimed>) -> Outcome {
    let mut o = Outcome::new(path, action_of(decision));
    if let Some(r) = reclaimed {
        if !r.preserved_refs.is_empty() {
            o.repository = r.repository;
        }
        o.preserved_refs = r.preserved_refs;
        o.branch = r.branch;
        o.branch_deleted = r.branch_deleted;
        o.error = r.error;
    }
    o
}

/// Carries out a worker's answer for an entry reclaimed where it is (the
/// reaper's entries, a sweep's worktree with submodules): its files deleted
/// when its work is preserved or not at risk, kept work left in place, a
/// failure reported with whatever was preserved first.
pub fn settle_in_place(
    path: PathBuf,
    answer: Result<Reclaimed, AnswerError>,
    parent: BorrowedFd<'_>,
    name: &OsStr,
) -> Outcome {
    match answer {
        Ok(r) if r.error.is_none() && r.decision != Drain::Keep => {
            let decision = r.decision;
            remove_into(
                reclaimed_outcome(path, decision, Some(r)),
                parent,
                name,
                None,
            )
        }
        Ok(r) if r.decision == Drain::Keep => reclaimed_outcome(path, Drain::Keep, Some(r)),
        Ok(r) => failed_reclaim(path, r),
        Err(e) => Outcome::new(path, Action::Failed).with_error(e),
    }
}

/// Deletes entry `name` of `parent` with the safe removal engine, until
/// `deadline` (`None`: to the end), and completes its report line: bytes
/// freed, or what was left and why (an entry already gone counts as
/// removed). Only for an entry whose work is preserved or not at risk: one
/// the deadline stops is `deferred`, half-deleted.
pub fn remove_into(
    mut o: Outcome,
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Outcome {
    match crate::remove::remove_entry_until(parent, name, deadline) {
        Ok(removed) => settle(o, &removed),
        Err(RemoveError::NotFound { .. }) => o,
        Err(e) => {
            o.action = Action::Failed;
            o.error = Some(e.to_string());
            o
        }
    }
}

fn settle(mut o: Outcome, removed: &Removed) -> Outcome {
    o.bytes_freed = removed.bytes;
    if removed.interrupted {
        let why = match o.action {
            Action::Preserved => "its work is preserved",
            _ => "nothing in it is at risk",
        };
        let when = match removed.files {
            0 => "before its files were deleted".to_owned(),
            n => format!("after {n} of its files"),
        };
        o.action = Action::Deferred;
        o.error = Some(format!(
            "{why}; the budget ran out {when}: the rest waits in the trash for the next pass"
        ));
    } else if !removed.complete {
        o.action = Action::Failed;
        o.error = Some(format!(
            "partly removed, retried next pass: {}",
            removed.describe()
        ));
    }
    o
}

/// What [`finish`] is about to do to the entries that will be deleted (the
/// report lines they get unless the deletion fails).
fn intents(ready: &[Reclaiming]) -> Vec<Outcome> {
    ready
        .iter()
        .filter(|r| r.left.is_none() && r.decision != Drain::Keep)
        .map(|r| reclaimed_outcome(r.waiting.original.clone(), r.decision, r.reclaimed.clone()))
        .collect()
}

/// How many reclaimed entries are deleted at once. An unlink mostly waits
/// on the filesystem's journal and metadata blocks, and unlinks in
/// different directories wait side by side: on this project's test host
/// (ext4, two cores), two `rm -rf` over halves of 200 trees of 2,000 files
/// took 28.8 s where one over all of them took 47.5 s, for the same system
/// time.
const DELETERS: usize = 2;

// Together the deleters hold at most 64 directory descriptors, the budget
// a whole pass is tested under (`tests/shapes.rs`: 128 descriptors in all):
// more deleters need a lower cap per removal.
const _: () = assert!(DELETERS * crate::remove::MAX_OPEN_DIR_FDS <= 64);

/// [`finish`] for each entry of a chunk, [`DELETERS`] at a time (the
/// calling thread is one of them), the outcomes in the chunk's order. An
/// entry whose deletion panicked on another thread gets no outcome (the
/// others keep theirs): it waits in the trash, or its remains, for the
/// next pass, as after a crash.
fn finish_all(
    open: &OpenRoot,
    trash: &Trash,
    worker: &Worker,
    reclaimed: Vec<Reclaiming>,
    deadline: Option<Instant>,
) -> Vec<Outcome> {
    let queue = Mutex::new(reclaimed.into_iter().enumerate());
    let done = Mutex::new(Vec::new());
    // Neither lock is held while `finish` runs: a panic there poisons
    // nothing.
    let deleter = || {
        while let Some((i, r)) = queue.lock().map_or(None, |mut q| q.next()) {
            let o = finish(open, trash, worker, r, deadline);
            if let Ok(mut list) = done.lock() {
                list.push((i, o));
            }
        }
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..DELETERS).map(|_| s.spawn(deleter)).collect();
        deleter();
        for other in others {
            if other.join().is_err() {
                log::error!(
                    "a deletion thread panicked; the entry it was deleting waits in the trash for the next pass"
                );
            }
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

/// Carries out the drain decision for one entry: delete it (in the
/// remains, until the deadline), or put it back. Kept work goes back
/// through its owner's worker; past the deadline it waits for the next
/// pass, still quarantined and assessable.
fn finish(
    open: &OpenRoot,
    trash: &Trash,
    worker: &Worker,
    r: Reclaiming,
    deadline: Option<Instant>,
) -> Outcome {
    let w = &r.waiting;
    if let Some((action, why)) = r.left {
        let o = Outcome::new(w.original.clone(), action).with_error(why);
        return put_back(open, worker, w, r.claim, o);
    }
    let mut o = reclaimed_outcome(w.original.clone(), r.decision, r.reclaimed.clone());
    let fate = match r.decision {
        Drain::Keep if past(deadline) => {
            return Outcome::new(w.original.clone(), Action::Deferred)
                .with_error("at risk and kept: it goes back in place with the next pass");
        }
        Drain::Keep => {
            if r.reclaimed.is_none() {
                o.error = Some(unrecordable(r.kind).to_owned());
            }
            return put_back(open, worker, w, r.claim, o);
        }
        Drain::Remove => Fate::Removed,
        Drain::PreserveThenRemove => Fate::Preserved,
    };
    match trash.set_aside(w.batch, &w.name, fate) {
        Ok(dir) => remove_into(o, dir.as_fd(), &w.name, deadline),
        Err(e) => {
            // Where a later pass would take it for work no repository can
            // record: deleted now, whatever the budget.
            log::warn!("{}: {e}; deleted where it is", w.path.display());
            remove_into(o, w.batch.fd.as_fd(), &w.name, None)
        }
    }
}

/// Puts a kept entry back where it was, its admin entry pointed back and
/// treeward's quarantine lock lifted.
fn put_back(
    open: &OpenRoot,
    worker: &Worker,
    w: &Waiting,
    claim: Option<Claim>,
    mut o: Outcome,
) -> Outcome {
    if let Err(e) = trash::put_back(open, &w.name, w.batch) {
        o.error = Some(format!(
            "kept in the trash at {} ({e}): its name is taken again",
            w.path.display()
        ));
        return o;
    }
    if let Some(c) = claim {
        let back = c.ticket_moved(&w.original);
        let requests = [
            Request::Relocate {
                claimed: back.clone(),
            },
            Request::UnlockWorktree { claimed: back },
        ];
        let answers = call_simple(worker, c.owner(), &requests, |r| {
            matches!(r, Response::Relocated | Response::Unlocked { .. })
        });
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            log::warn!("{}: put back, but: {e}", w.original.display());
        }
    }
    o
}

/// What the ledger tells about broken worktrees: the repositories it names,
/// each once (where an admin dir may have moved with its repository), and
/// per path the commits its records name (their branches and base commits:
/// what the files of a clean worktree are).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub repositories: Vec<PathBuf>,
    commits: BTreeMap<PathBuf, Vec<String>>,
}

impl Known {
    pub fn of(doc: &Document) -> Known {
        let repositories: std::collections::BTreeSet<PathBuf> =
            doc.records.iter().map(|r| r.repository.clone()).collect();
        let mut commits: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for r in &doc.records {
            commits
                .entry(r.path.clone())
                .or_default()
                .extend(record_commits(r));
        }
        Known {
            repositories: repositories.into_iter().collect(),
            commits,
        }
    }

    /// The commits the records of `path` name.
    pub fn commits(&self, path: &Path) -> Vec<String> {
        self.commits.get(path).cloned().unwrap_or_default()
    }
}

/// Pure: the revisions a record names, as git takes them: its branch
/// (`refs/heads/<branch>`) and its base commit.
fn record_commits(r: &Record) -> Vec<String> {
    let branch = r.branch.as_deref().map(|b| {
        if b.starts_with("refs/") {
            b.to_owned()
        } else {
            format!("refs/heads/{b}")
        }
    });
    branch.into_iter().chain(r.base_commit.clone()).collect()
}

/// Moves one record to the state `o` means (removed, preserved, kept, or
/// retry_remove with one more attempt); other actions leave it as it is.
/// Idempotent: a record already in that state keeps its last transition.
pub fn apply(rec: &mut Record, o: &Outcome) {
    let state = match o.action {
        Action::Removed => State::Removed,
        Action::Preserved => State::Preserved,
        Action::Kept => State::Kept,
        Action::Failed => State::RetryRemove,
        // Its work may be preserved already, its files not all deleted:
        // the refs are recorded now, the state when the rest is gone.
        Action::Deferred => {
            rec.preserved_refs.extend(o.preserved_refs.iter().cloned());
            return;
        }
        _ => return,
    };
    if state == State::RetryRemove {
        rec.attempts += 1;
        rec.last_error = o.error.clone();
    }
    for r in &o.preserved_refs {
        if !rec.preserved_refs.contains(r) {
            rec.preserved_refs.push(r.clone());
        }
    }
    if rec.state != state || state == State::RetryRemove {
        rec.transition(state);
    }
}

/// Records what `o` did in the ledger: moves the record at `index`
/// ([`apply`]); with no record, a preserved set gets one of its own, in
/// state `preserved`, so that `treeward list` shows it and `treeward
/// restore` finds it by id.
pub fn record_outcome(doc: &mut Document, index: Option<usize>, o: &Outcome) {
    match index.and_then(|i| doc.records.get_mut(i)) {
        Some(rec) => apply(rec, o),
        None => {
            if let Some(record) = preserved_record(o) {
                doc.records.push(record);
            }
        }
    }
}

/// Pure but for the owner's uid: a new `preserved` record for a set that
/// no record lists.
fn preserved_record(o: &Outcome) -> Option<Record> {
    let repository = o.repository.as_ref()?;
    if o.preserved_refs.is_empty() {
        return None;
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(repository).map_or(0, |m| m.uid());
    let mut rec = Record::new(&o.path, repository, uid);
    rec.preserved_refs.clone_from(&o.preserved_refs);
    rec.branch.clone_from(&o.branch);
    rec.transition(State::Preserved);
    Some(rec)
}

/// Moves the ledger's records of drained entries (found by path) to their
/// new states, and gives each preserved set without one a record. A ledger
/// that cannot be written is logged, not fatal: the report stands. With no
/// ledger, no journal and no preserved set, nothing is created.
pub fn record(ledger: &Ledger, outcomes: &[Outcome]) {
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let new_sets = outcomes.iter().any(|o| preserved_record(o).is_some());
    if outcomes.is_empty() || !(new_sets || exists(ledger.path()) || exists(&ledger.journal_path()))
    {
        return;
    }
    let result = ledger.update(|doc| {
        for o in outcomes {
            let index = doc.records.iter().rposition(|r| r.path == o.path);
            record_outcome(doc, index, o);
        }
    });
    if let Err(e) = result {
        log::error!("the ledger was not updated: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_removal_records_its_refs_and_waits_for_its_state() {
        let mut rec = Record::new(Path::new("/r/wt-1"), Path::new("/repo/.git"), 4242);
        let before = rec.state;
        let mut deferred = Outcome::new("/r/wt-1".into(), Action::Deferred);
        deferred.preserved_refs = vec!["refs/treeward/preserved/wt-1/20261202T090000Z/work".into()];
        apply(&mut rec, &deferred);
        assert_eq!(rec.state, before, "its files are not all deleted yet");
        assert_eq!(rec.preserved_refs, deferred.preserved_refs);
        // The next pass deletes the rest: the fate's state, the refs kept.
        apply(&mut rec, &Outcome::new("/r/wt-1".into(), Action::Preserved));
        assert_eq!(rec.state, State::Preserved);
        assert_eq!(rec.preserved_refs, deferred.preserved_refs);
    }

    #[test]
    fn a_record_names_its_branch_as_a_ref_and_its_base_commit() {
        let mut r = Record::new(Path::new("/r/wt"), Path::new("/repo/.git"), 0);
        assert!(record_commits(&r).is_empty());
        r.branch = Some("feature".into());
        r.base_commit = Some("a".repeat(40));
        assert_eq!(
            record_commits(&r),
            vec!["refs/heads/feature".to_owned(), "a".repeat(40)]
        );
        r.branch = Some("refs/heads/x".into());
        assert_eq!(record_commits(&r)[0], "refs/heads/x");
        let known = Known::of(&Document {
            records: vec![r.clone()],
            ..Document::default()
        });
        assert_eq!(known.commits(Path::new("/r/wt")).len(), 2);
        assert!(known.commits(Path::new("/r/other")).is_empty());
        assert_eq!(known.repositories, vec![PathBuf::from("/repo/.git")]);
    }

    #[test]
    fn applying_an_outcome_twice_changes_nothing_more() {
        let mut r = Record::new(Path::new("/r/wt"), Path::new("/repo/.git"), 0);
        let mut o = Outcome::new(PathBuf::from("/r/wt"), Action::Preserved);
        o.preserved_refs = vec!["refs/treeward/preserved/wt/1/state".into()];
        apply(&mut r, &o);
        let once = r.clone();
        apply(&mut r, &o);
        assert_eq!(r, once, "the intent, then the final outcome");
        assert_eq!(r.state, State::Preserved);
        assert_eq!(r.preserved_refs.len(), 1);
    }
}
