//! The side-effect half of reclaiming, shared by `treeward-sweep` and
//! `treeward-reap`: draining a root's trash, deleting a reclaimed entry and
//! turning what happened into a report line, calling the repository owner's
//! worker, and moving ledger records to the state an outcome means.
//!
//! The sweep fills the trash (as root, before the service starts) and drains
//! what its time budget allows; the reaper drains the rest when the trash is
//! its own. Both go through [`drain_trash`]: for each waiting entry, reclaim
//! it as its repository's owner ([`crate::reclaim`]: assess, preserve,
//! forget), then delete its files with [`crate::remove::remove_entry`], or
//! put it back where it was when its work is kept. An entry this pass may not
//! touch (an unprivileged pass meeting another user's residue) is reported
//! and left for a pass that may. Failures are per entry, in the outcome's
//! `error`; nothing here stops a pass.

use crate::as_owner::{self, Owner, Request, Response, Route, Worker};
use crate::claim::{self, Claim, Expect, Unclaimed};
use crate::config::{Policy, Root};
use crate::fd;
use crate::ledger::{Document, Ledger, Record, State};
use crate::reclaim::Reclaimed;
use crate::remove::{RemoveError, Removed};
use crate::roots::{OpenRoot, TRASH};
use crate::sweep::decide::{drain, unrecordable, Drain, EntryKind};
use crate::sweep::inspect::{kind_at, unlinked_at_risk};
use crate::sweep::report::{Action, Outcome};
use crate::trash::{self, Batch, Cleared, Stray, Taken, Trash, TrashError};
use nix::unistd::Uid;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many reclaims one worker call carries (a worker is one process; the
/// chunk bounds its run time under the timeout and lets the budget be
/// checked between chunks).
pub const RECLAIM_CHUNK: usize = 16;

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

/// Calls the worker with a batch of reclaims; one result per request.
pub fn call(worker: &Worker, owner: Owner, requests: &[Request]) -> Vec<Result<Reclaimed, String>> {
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
pub fn call_simple(
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

/// The shortest a worker call of the drain is given, even at the end of
/// the budget: enough to assess and preserve one small worktree.
pub const MIN_DRAIN_CALL: Duration = Duration::from_secs(1);

/// The worker, its calls bounded by what is left of the pass's budget
/// (never less than [`MIN_DRAIN_CALL`], never more than its own timeout): a
/// worker that is stopped or spins is killed at the deadline, failing only
/// its own entries.
fn within(worker: &Worker, deadline: Option<Instant>) -> Worker {
    match deadline {
        Some(d) => {
            let left = d
                .saturating_duration_since(Instant::now())
                .max(MIN_DRAIN_CALL);
            worker.clone().with_timeout(left.min(worker.timeout))
        }
        None => worker.clone(),
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

/// The drain: reclaims and deletes what waits in the trash of `root`, oldest
/// batch first, until the deadline (`None`: no deadline). Each worker call
/// runs as the entry's repository owner. Before the files of reclaimed
/// entries are deleted, what is about to be done (`removed`, `preserved`)
/// is handed to `intend`, which records it in the ledger: a pass killed
/// between the deletion and its own final ledger write leaves the records
/// where an uninterrupted pass leaves them (the final outcomes are recorded
/// again by the caller; recording is idempotent).
pub fn drain_trash(
    root: &Root,
    open: &OpenRoot,
    worker: &Worker,
    deadline: Option<Instant>,
    known: &Known,
    intend: &dyn Fn(&[Outcome]),
    out: &mut Vec<Outcome>,
) {
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
    // A pipeline on two cores: while the files of one chunk are deleted
    // here, the next chunk is assessed and preserved (by its owners'
    // workers) on another thread. An entry is still deleted only after its
    // own reclaim finished.
    let mut queue = waiting.into_iter().peekable();
    let mut reclaimed: Vec<Reclaiming> = Vec::new();
    while queue.peek().is_some() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let chunk: Vec<Waiting> = queue.by_ref().take(RECLAIM_CHUNK).collect();
        let bounded = within(worker, deadline);
        intend(&intents(&reclaimed));
        let (done, next) = std::thread::scope(|s| {
            let next = s.spawn(|| reclaim_chunk(root, &bounded, known, chunk));
            let done: Vec<Outcome> = reclaimed
                .drain(..)
                .map(|r| finish(open, worker, r))
                .collect();
            (done, next.join())
        });
        out.extend(done);
        match next {
            Ok((outcomes, ready)) => {
                out.extend(outcomes);
                reclaimed = ready;
            }
            Err(_) => log::error!("a reclaim thread panicked; its entries wait for the next pass"),
        }
    }
    intend(&intents(&reclaimed));
    out.extend(reclaimed.into_iter().map(|r| finish(open, worker, r)));
    out.extend(queue.map(|w| Outcome::new(w.original, Action::Deferred)));
    for batch in &batches {
        trash.remove_if_empty(batch);
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
) -> Result<Option<Trash>, String> {
    let squat = match Trash::open(open, create) {
        Ok(t) => return Ok(t),
        Err(TrashError::Taken(t)) if !t.may_hold_work() => t,
        Err(e) => return Err(e.to_string()),
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
    /// Why it is not acted on: it stopped being a verified claim while it
    /// waited. It goes back where it was, untouched.
    refused: Option<String>,
    /// What it is, when it is not a verified claim: why it is kept, if it is.
    kind: EntryKind,
}

/// Decides a chunk of waiting entries: linked worktrees whose claims still
/// hold are reclaimed through their owners' workers (one call per owner);
/// so are broken worktrees under `preserve` whose repository can be found
/// (the one their `.git` names, or one of the `known` ones their admin dir
/// moved into: [`claim::find_repository`]), their files preserved there;
/// the rest are judged without git. Returns the outcomes already final
/// (skipped, failed) and the entries ready for [`finish`]. Deletes nothing.
fn reclaim_chunk<'a>(
    root: &Root,
    worker: &Worker,
    known: &Known,
    chunk: Vec<Waiting<'a>>,
) -> (Vec<Outcome>, Vec<Reclaiming<'a>>) {
    let (mut out, mut ready) = (Vec::new(), Vec::new());
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
        let parent = w.path.parent().unwrap_or(&w.path).to_path_buf();
        let expect = Expect {
            owner: expected,
            also_named: Some(&w.original),
        };
        let (kind, refused) = match claim::verify_at(dir, &parent, &w.name, expect) {
            Ok(c)
                if as_owner::route(Uid::effective().as_raw(), c.owner().uid)
                    == Route::CannotSwitch =>
            {
                out.extend(not_ours(&w.original, c.owner().uid));
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
        let decision = match refused {
            Some(_) => Drain::Keep,
            None => drain(unlinked_at_risk(kind, dir, &w.name), false, root.policy),
        };
        ready.push(Reclaiming {
            waiting: w,
            decision,
            reclaimed: None,
            claim: None,
            refused,
            kind,
        });
    }
    for (owner, items) in linked {
        let requests: Vec<Request> = items.iter().map(|(_, r, _)| r.clone()).collect();
        for ((w, _, c), answer) in items.into_iter().zip(call(worker, owner, &requests)) {
            let kind = match c {
                Some(_) => EntryKind::Linked,
                None => EntryKind::Broken,
            };
            match answer {
                Ok(r) if r.error.is_none() || r.decision == Drain::Keep => ready.push(Reclaiming {
                    waiting: w,
                    decision: r.decision,
                    reclaimed: Some(r),
                    claim: c,
                    refused: None,
                    kind,
                }),
                Ok(r) => out.push(failed_reclaim(w.original.clone(), r)),
                Err(e) => out.push(Outcome::new(w.original, Action::Failed).with_error(e)),
            }
        }
    }
    (out, ready)
}

/// A reclaim that failed: reported with whatever it preserved first.
pub fn failed_reclaim(path: PathBuf, r: Reclaimed) -> Outcome {
    let mut o = Outcome::new(path, Action::Failed).with_error(r.error.unwrap_or_default());
    o.preserved_refs = r.preserved_refs;
    o
}

/// The report line for a reclaimed entry, before its files are deleted.
pub fn reclaimed_outcome(path: PathBuf, decision: Drain, reclaimed: Option<Reclaimed>) -> Outcome {
    let mut o = Outcome::new(path, action_of(decision));
    if let Some(r) = reclaimed {
        o.preserved_refs = r.preserved_refs;
        o.branch = r.branch;
        o.branch_deleted = r.branch_deleted;
        o.error = r.error;
    }
    o
}

/// Deletes entry `name` of `parent` with the safe removal engine and
/// completes its report line: bytes freed, or what was left and why (an
/// entry already gone counts as removed).
pub fn remove_into(mut o: Outcome, parent: BorrowedFd<'_>, name: &OsStr) -> Outcome {
    match crate::remove::remove_entry(parent, name) {
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
    if !removed.complete {
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
        .filter(|r| r.refused.is_none() && r.decision != Drain::Keep)
        .map(|r| reclaimed_outcome(r.waiting.original.clone(), r.decision, r.reclaimed.clone()))
        .collect()
}

/// Carries out the drain decision for one entry: delete it, or put it back.
fn finish(open: &OpenRoot, worker: &Worker, r: Reclaiming) -> Outcome {
    let w = &r.waiting;
    if let Some(why) = r.refused {
        let o = Outcome::new(w.original.clone(), Action::Refused).with_error(why);
        return put_back(open, worker, w, None, o);
    }
    let mut o = reclaimed_outcome(w.original.clone(), r.decision, r.reclaimed.clone());
    if r.decision == Drain::Keep {
        if r.reclaimed.is_none() {
            o.error = Some(unrecordable(r.kind).to_owned());
        }
        return put_back(open, worker, w, r.claim, o);
    }
    remove_into(o, w.batch.fd.as_fd(), &w.name)
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

/// Moves the ledger's records of drained entries (found by path) to their
/// new states. A ledger that cannot be written is logged, not fatal: the
/// report stands. With no ledger and no journal there is no record to move,
/// and nothing is created.
pub fn record(ledger: &Ledger, outcomes: &[Outcome]) {
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if outcomes.is_empty() || !(exists(ledger.path()) || exists(&ledger.journal_path())) {
        return;
    }
    let result = ledger.update(|doc| {
        for o in outcomes {
            if let Some(rec) = doc.find_by_path_mut(&o.path) {
                apply(rec, o);
            }
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
