//! `treeward-reap`: while the agent service runs, reclaim the worktrees
//! nobody wants any more — released ones, orphans older than their root's
//! grace, failed removals whose backoff is over, records whose worktree is
//! already gone, and what a budgeted sweep left in a trash of its own —
//! unprivileged, as the service's user, never touching one that is in use.
//!
//! One pass at a time: a pass holds an exclusive `flock` on
//! `<ledger>.reap.lock`; a second pass that finds it held does nothing and
//! says so ([`Report::busy`]).
//!
//! For each entry of each `reap = true` root: the ledger triages it
//! ([`decide::triage`]: an `active` record protects it without a look,
//! unless it names a lease holder — see [`crate::lease`]: a held lease is
//! reported in use, an abandoned one makes the record releasable, taken as
//! `released` without waiting for the grace, and its report line says so in
//! `reason`), the cheap facts are gathered ([`crate::pass::inspect`]) and
//! [`decide::decide`] rules. A candidate is then, in chunks:
//! 1. guarded: this pass takes an exclusive `flock` on the entry's directory
//!    (held until it is deleted: a tool that follows the `flock` convention
//!    cannot start using it meanwhile, and one already holding it makes it
//!    "in use") and `git worktree lock`s a linked worktree with
//!    [`REAP_LOCK`] (a lock taken by anyone else meanwhile makes it
//!    `skipped_locked`);
//! 2. re-checked: `/proc` is scanned again and the owner pid and lease
//!    holder probed, right before anything changes; in use now means
//!    unlocked and skipped;
//! 3. reclaimed with [`crate::as_owner::reclaim::reclaim`] as its repository's owner
//!    (this very process: the reaper is the owner), which assesses,
//!    preserves by the root's policy and forgets it in its repository;
//! 4. deleted with [`crate::remove::remove_entry`] relative to the root's
//!    descriptor.
//!
//! What remains possible: a process that enters the directory in the
//! instant between step 2 and step 4 without taking a `flock`; the grace
//! period makes that an entry nobody touched for that long.
//!
//! What this pass may not touch (root's residue, another user's entry or
//! repository) is reported and left for `treeward-sweep`. Every failure is
//! one entry's: it is reported, its record goes to `retry_remove`, and the
//! pass goes on. A ledger that cannot be read stops the pass before anything
//! is touched (without it, an `active` worktree would look orphaned).

pub mod decide;

use crate::as_owner::{Owner, Request, Response, Worker};
use crate::claim::{self, Claimed};
use crate::config::{Config, Policy, Root};
use crate::error::Error;
use crate::fd::{self, CreateOrOpenError, Opened};
use crate::in_use::{flock_held, holder_alive, pid_alive, recorded_process_alive, ProcessTable};
use crate::ledger::{parse_timestamp, Document, Ledger, Record, State};
use crate::pace::RECLAIM_CHUNK;
use crate::pass::drain::{
    action_of, call, call_simple, drain_trash, failed_reclaim, planned, reclaimed_outcome,
    remove_into, settle_in_place, AnswerError, Drive, Known,
};
use crate::pass::inspect::{inspect, unlinked_at_risk, Inspected};
use crate::pass::policy::{unrecordable, Drain, EntryKind};
use crate::pass::report::{self, Action, Outcome, RefusedRoot};
use crate::progress::Progress;
use crate::roots::{self, OpenRoot};
use decide::{decide, decision_state, triage, Facts, Lease, Skip, Triage, Verdict};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::Uid;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The reason written into the lock of a worktree the reaper is reclaiming.
/// A worktree left locked with it (a crash mid-pass) is the reaper's own and
/// is taken up again by the next pass.
pub const REAP_LOCK: &str = "treeward: being reclaimed by treeward-reap";

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plan and report; change nothing (and take no pass lock).
    pub dry_run: bool,
    /// Serves git operations as a repository's owner: in this process when
    /// the owner is the caller, which is the reaper's normal case.
    pub worker: Worker,
}

impl Options {
    /// A real pass through `worker`.
    pub fn new(worker: Worker) -> Options {
        Options {
            dry_run: false,
            worker,
        }
    }
}

/// What a reap pass did: the sweep's report (same fields, same entry
/// vocabulary), and the reaper's own counts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    /// The counts and entries, as the sweep reports them.
    pub pass: report::Report,
    /// Another pass held the pass lock; this one did nothing.
    pub busy: bool,
    /// The pass lock file.
    pub pass_lock: PathBuf,
    /// Entries left because they are younger than their root's grace.
    pub young_count: usize,
    /// Records whose worktree was already gone, moved to `removed` (part of
    /// `swept_count`).
    pub reconciled_count: usize,
    /// Entries left alone because an `active` record names them (not listed
    /// in `entries`).
    pub active_count: usize,
    /// Processes this pass could not examine (other users' processes, for
    /// an unprivileged pass): their use of an entry is not seen, only their
    /// `flock`s are.
    pub unreadable_processes: u32,
    /// The ledger was corrupt and moved aside to this file; orphans were not
    /// reaped this pass.
    pub ledger_recovered_from: Option<PathBuf>,
}

impl Report {
    /// The report of a pass that found another one running.
    pub fn busy(pass_lock: PathBuf) -> Report {
        Report {
            pass: report::Report::new(false, Vec::new(), Vec::new(), true, 0, 0),
            busy: true,
            pass_lock,
            young_count: 0,
            reconciled_count: 0,
            active_count: 0,
            unreadable_processes: 0,
            ledger_recovered_from: None,
        }
    }

    /// The counts as journald fields (`TREEWARD_SWEPT=3`, …).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = self.pass.fields();
        fields.retain(|(k, _)| *k != "blocking_ms" && *k != "backlog");
        fields.extend([
            ("busy", self.busy.to_string()),
            ("young", self.young_count.to_string()),
            ("reconciled", self.reconciled_count.to_string()),
            ("active", self.active_count.to_string()),
            (
                "unreadable_processes",
                self.unreadable_processes.to_string(),
            ),
        ]);
        fields
    }

    /// The one-line summary (also the log message and sd_notify STATUS).
    pub fn summary(&self) -> String {
        if self.busy {
            return format!(
                "another treeward-reap pass is running (it holds {}): nothing done",
                self.pass_lock.display()
            );
        }
        let p = &self.pass;
        let mut line = p.summary_counts(&[
            (self.young_count, "younger than grace"),
            (self.active_count, "active left alone"),
        ]);
        if self.reconciled_count > 0 {
            line.push_str(&format!(
                "; {} record(s) of worktrees already gone closed",
                self.reconciled_count
            ));
        }
        line.push_str(&format!(" ({} ms)", p.duration_ms));
        line
    }

    /// The human report: one line per entry, then the summary.
    pub fn render_human(&self) -> String {
        let mut out = self.pass.render_entries();
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

/// The pass lock of the reapers sharing `ledger`: `<ledger>.reap.lock`.
pub fn pass_lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| OsString::from("ledger"));
    name.push(".reap.lock");
    ledger.with_file_name(name)
}

/// A held pass lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct PassLock {
    _lock: Flock<File>,
}

/// Why the reaper's pass lock could not be taken (another pass holding it
/// is not an error: [`try_lock_pass`] answers `None`).
#[derive(Debug)]
#[non_exhaustive]
pub enum PassLockError {
    /// The lock file's directory could not be created.
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file could not be opened.
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file is a symlink, a FIFO, a directory...
    NotARegularFile(PathBuf),
    /// `flock` failed.
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: Errno,
    },
}

impl std::fmt::Display for PassLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassLockError::CreateDir { dir, source } => write!(
                f,
                "cannot create {} for the pass lock: {source}",
                dir.display()
            ),
            PassLockError::Open { path, source } => {
                write!(f, "cannot open the pass lock {}: {source}", path.display())
            }
            PassLockError::NotARegularFile(path) => {
                write!(f, "the pass lock {} is not a regular file", path.display())
            }
            PassLockError::Lock { path, source } => {
                write!(f, "cannot lock {}: {}", path.display(), source.desc())
            }
        }
    }
}

impl std::error::Error for PassLockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PassLockError::CreateDir { source, .. } | PassLockError::Open { source, .. } => {
                Some(source)
            }
            PassLockError::Lock { source, .. } => Some(source),
            PassLockError::NotARegularFile(_) => None,
        }
    }
}

/// Takes the pass lock without waiting: `None` when another pass holds it.
/// The lock file is created (mode 0644) if missing; one that exists is
/// opened read-only (enough for `flock`, so a lock file another user
/// created, such as root running a pass by hand, still works). It is never
/// followed if it is a symlink, and must be a regular file.
pub fn try_lock_pass(path: &Path) -> Result<Option<PassLock>, PassLockError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PassLockError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let file = match fd::create_or_open(
        OpenOptions::new().read(true).write(true),
        OpenOptions::new().read(true),
        0o644,
        path,
    ) {
        Ok(Opened::Created(file) | Opened::Existing(file)) => file,
        Err(CreateOrOpenError::Create(source) | CreateOrOpenError::Open(source)) => {
            return Err(PassLockError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if !is_file {
        return Err(PassLockError::NotARegularFile(path.to_path_buf()));
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(PassLock { _lock: lock })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, source)) => Err(PassLockError::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs one pass over every root with `reap = true`. `Err` only when the
/// pass could not start (the pass lock or the ledger); per-entry failures
/// are in the report.
pub fn reap(config: &Config, opts: &Options) -> Result<Report, Error> {
    let start = Instant::now();
    let lock_path = pass_lock_path(&config.ledger);
    let _lock = if opts.dry_run {
        None
    } else {
        match try_lock_pass(&lock_path).map_err(Error::operation)? {
            Some(lock) => Some(lock),
            None => return Ok(Report::busy(lock_path)),
        }
    };
    let ledger = Ledger::new(&config.ledger);
    let doc = if opts.dry_run {
        ledger.read()?
    } else {
        // `update` moves a corrupt ledger aside (and writes nothing else).
        ledger.update(|doc| doc.clone())?
    };
    if let Some(aside) = &doc.recovered_from {
        log::error!(
            "the ledger was corrupt (moved aside to {}): orphans are not reaped this pass",
            aside.display()
        );
    }
    let processes = ProcessTable::scan();
    if processes.unreadable() > 0 {
        log::info!(
            "{} processes could not be examined ({}); only their flocks are seen",
            processes.unreadable(),
            processes.problem().unwrap_or(
                "their links could not be read: other users' processes, for an unprivileged pass"
            )
        );
    }
    let mut pass = Pass {
        config,
        opts,
        doc: &doc,
        known: Known::of(&doc),
        processes,
        now: SystemTime::now(),
        euid: Uid::effective().as_raw(),
        tracked: Vec::new(),
        refused: Vec::new(),
        active: 0,
        reconciled: 0,
        reasons: BTreeMap::new(),
    };
    for root in config.roots.iter().filter(|r| r.reap) {
        match roots::open(root) {
            Ok(None) => log::info!(
                "root {} does not exist: nothing to reap",
                root.path.display()
            ),
            Ok(Some(open)) => pass.root(root, &open),
            Err(error) => {
                log::error!("refusing root {}: {error}", root.path.display());
                pass.refused.push(RefusedRoot {
                    path: root.path.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
    if !opts.dry_run {
        record(&ledger, &pass.tracked);
    }
    let outcomes: Vec<Outcome> = pass.tracked.into_iter().map(|t| t.outcome).collect();
    let young_count = outcomes
        .iter()
        .filter(|o| o.action == Action::SkippedYoung)
        .count();
    let prune_succeeded = report::prune_succeeded(&outcomes);
    Ok(Report {
        pass: report::Report::new(
            opts.dry_run,
            outcomes,
            pass.refused,
            prune_succeeded,
            0,
            report::millis(start.elapsed()),
        ),
        busy: false,
        pass_lock: lock_path,
        young_count,
        reconciled_count: pass.reconciled,
        active_count: pass.active,
        unreadable_processes: pass.processes.unreadable(),
        ledger_recovered_from: doc.recovered_from.clone(),
    })
}

/// One report line and the record it moves (by id; `None`: found by path).
struct Tracked {
    outcome: Outcome,
    record: Option<String>,
}

/// The state of one pass.
struct Pass<'a> {
    config: &'a Config,
    opts: &'a Options,
    doc: &'a Document,
    /// What the ledger tells about broken worktrees ([`Known`]).
    known: Known,
    processes: ProcessTable,
    now: SystemTime,
    euid: u32,
    tracked: Vec<Tracked>,
    refused: Vec<RefusedRoot>,
    active: usize,
    reconciled: usize,
    /// Why an entry is a candidate when its record alone would not make it
    /// one (an abandoned lease), for every report line of that path.
    reasons: BTreeMap<PathBuf, String>,
}

/// An entry the decision made a candidate.
struct Candidate<'a> {
    name: OsString,
    path: PathBuf,
    record: Option<&'a Record>,
    inspected: Inspected,
    facts: Facts,
    verdict: Verdict,
    /// A broken worktree's repository, where its work goes.
    found: Option<claim::Found>,
}

impl Candidate<'_> {
    /// The owner of a linked worktree's verified claim, and its ticket for
    /// that owner's worker; `None` for anything else.
    fn claimed(&self) -> Option<(Owner, Claimed)> {
        match (&self.facts.kind, &self.inspected.claim) {
            (EntryKind::Linked, Some(claim)) => Some((claim.owner(), claim.ticket())),
            _ => None,
        }
    }

    fn record_id(&self) -> Option<String> {
        self.record.map(|r| r.id.clone())
    }
}

/// The record that governs `path` among `records` (all of one path): an
/// `active` one if any (it protects the entry), else the latest unfinished
/// one, else the latest finished one.
fn governing<'r>(records: &[&'r Record]) -> Option<&'r Record> {
    records
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(i, r)| (rank(r), *i))
        .map(|(_, r)| r)
}

/// How strongly a record governs its path: active, then unfinished, then
/// finished.
pub(crate) fn rank(r: &Record) -> u8 {
    match r.state {
        State::Active => 2,
        State::Released | State::RetryRemove | State::Kept => 1,
        State::Removed | State::Preserved => 0,
    }
}

fn owner_alive(record: Option<&Record>) -> bool {
    record.is_some_and(recorded_process_alive)
}

/// What the record's lease says of the entry at `path`: the `flock` is
/// probed only for a holder that is not alive. A directory whose `flock`
/// cannot be probed counts as held (unknown is never "not in use").
fn lease_of(record: Option<&Record>, path: &Path) -> Lease {
    let Some(holder) = record.and_then(|r| r.lease) else {
        return Lease::None;
    };
    let alive = holder_alive(&holder);
    let flocked = !alive
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && flock_held(path).unwrap_or(true);
    Lease::of(true, alive, flocked)
}

/// Why an abandoned lease's worktree is taken, for its report line.
fn abandoned_reason(record: &Record) -> String {
    let Some(h) = record.lease else {
        return "its lease was abandoned: taken as released".to_owned();
    };
    let reused = if pid_alive(h.pid) {
        ", that pid is another process now"
    } else {
        ""
    };
    format!(
        "its lease holder (pid {}{reused}) is gone and nobody holds its flock: \
         taken as released, without waiting for the grace",
        h.pid
    )
}

impl<'a> Pass<'a> {
    /// Records in the ledger what is about to be done to entries whose
    /// files are deleted next (see [`crate::pass::drain::drain_trash`]): a pass
    /// killed before its final ledger write leaves the records where an
    /// uninterrupted pass leaves them.
    fn intend(&self, tracked: Vec<Tracked>) {
        if !self.opts.dry_run && !tracked.is_empty() {
            record(&Ledger::new(&self.config.ledger), &tracked);
        }
    }

    fn push(&mut self, mut outcome: Outcome, record: Option<String>) {
        if outcome.reason.is_none() {
            outcome.reason = self.reasons.get(&outcome.path).cloned();
        }
        self.tracked.push(Tracked { outcome, record });
    }

    /// One root: drain its trash if it is this pass's, then triage and
    /// decide every entry and every record of it, then act on the
    /// candidates.
    fn root(&mut self, root: &Root, open: &OpenRoot) {
        let names = match roots::entry_names(root, open) {
            Ok(n) => n,
            Err(e) => {
                self.refused.push(RefusedRoot {
                    path: root.path.clone(),
                    error: format!("cannot list: {e}"),
                });
                return;
            }
        };
        // First, so that a record of a worktree waiting there is not taken
        // for one whose worktree is gone.
        let drained = self.drain(root, open);
        let doc = self.doc;
        let mut by_name: BTreeMap<OsString, Vec<&'a Record>> = BTreeMap::new();
        for r in &doc.records {
            if let Some((owner, name)) = self.config.entry_of(&r.path) {
                if owner.path == root.path {
                    by_name.entry(name).or_default().push(r);
                }
            }
        }
        let mut candidates = Vec::new();
        for name in &names {
            let record = by_name.get(name).and_then(|rs| governing(rs));
            if let Some(c) = self.consider(root, open, name, record) {
                candidates.push(c);
            }
        }
        let listed: BTreeSet<&OsString> = names.iter().collect();
        for (name, records) in &by_name {
            if !listed.contains(name) {
                if let Some(record) = governing(records) {
                    if !drained.contains(&record.path) {
                        self.gone(record);
                    }
                }
            }
        }
        if self.opts.dry_run {
            self.plan(open, candidates);
        } else {
            // A pipeline, as the drain's: while one chunk is re-checked and
            // reclaimed (its gits, on both cores), the files of the chunk
            // before are deleted and the chunk after is guarded and locked,
            // each on a thread of its own and mostly waiting on the disk
            // (the locks are made durable). An entry is still deleted only
            // after its own reclaim finished and its intent is in the
            // ledger, and reclaimed only after its lock and re-check.
            let worker = &self.opts.worker;
            let mut deleting = Vec::new();
            let mut chunks = chunks(candidates).into_iter();
            let mut locked = chunks.next().map(|c| lock(worker, open, c));
            while let Some(current) = locked.take() {
                let batch = std::mem::take(&mut deleting);
                let next = chunks.next();
                let deleted = std::thread::scope(|s| {
                    let deleted = s.spawn(|| delete_all(open, batch));
                    let next = next.map(|c| s.spawn(|| lock(worker, open, c)));
                    deleting = self.act(open, root.policy, current);
                    locked = next.map(|n| {
                        n.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    });
                    deleted.join()
                });
                self.deleted(deleted);
            }
            self.deleted(Ok(delete_all(open, deleting)));
        }
    }

    fn deleted(&mut self, deleted: std::thread::Result<Vec<Tracked>>) {
        match deleted {
            Ok(tracked) => {
                for t in tracked {
                    self.push(t.outcome, t.record);
                }
            }
            Err(_) => log::error!(
                "a deletion thread panicked; its entries, forgotten by their \
                 repositories, are taken as broken worktrees by the next pass"
            ),
        }
    }

    /// Triage and decision for one listed entry; `Some` for a candidate.
    fn consider(
        &mut self,
        root: &Root,
        open: &OpenRoot,
        name: &OsStr,
        record: Option<&'a Record>,
    ) -> Option<Candidate<'a>> {
        let path = root.path.join(name);
        let alive = owner_alive(record);
        let id = record.map(|r| r.id.clone());
        let triaged = triage(
            record.map(|r| r.state),
            true,
            alive,
            lease_of(record, &path),
        );
        match (triaged, record) {
            (Triage::Leave, _) => {
                self.active += 1;
                return None;
            }
            (Triage::InUse, _) => {
                let detail = use_detail(&path, &self.processes, record);
                self.push(
                    Outcome::new(path, Action::SkippedInUse).with_error(detail),
                    id,
                );
                return None;
            }
            (Triage::Abandoned, Some(r)) => {
                self.reasons.insert(path.clone(), abandoned_reason(r));
            }
            _ => {}
        }
        let state = decision_state(record.map(|r| r.state), triaged);
        if self.doc.recovered_from.is_some() && record.is_none() {
            self.push(
                Outcome::new(path, Action::Refused).with_error(
                    "the ledger was just rebuilt: whether this is an orphan is not known this pass",
                ),
                id,
            );
            return None;
        }
        let owner = claim::expected_owner(root, self.euid);
        let (inspected, mtime) = match inspect(open, &root.path, name, owner, &self.processes)
            .map_err(std::io::Error::from)
            .and_then(|i| match i {
                Some(i) => Ok(Some((i, std::fs::symlink_metadata(&path)?.modified()?))),
                None => Ok(None),
            }) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                let o =
                    Outcome::new(path, Action::Failed).with_error(format!("cannot inspect: {e}"));
                self.push(o, id);
                return None;
            }
        };
        let found = (inspected.seen.kind == EntryKind::Broken && root.policy == Policy::Preserve)
            .then(|| {
                claim::find_repository(
                    open.fd.as_fd(),
                    &root.path,
                    name,
                    &path,
                    owner,
                    &self.known.repositories,
                )
            })
            .flatten()
            .filter(|f| self.euid == 0 || f.repository.owner().uid == self.euid);
        let mut facts = self.facts(root, record, state, &inspected, mtime, alive);
        if found.is_some() {
            facts.recordable = true;
            facts.repository_gone = false;
        }
        match decide(&facts) {
            Verdict::Leave => {
                self.active += 1;
                None
            }
            Verdict::Skip(skip) => {
                let o = self.skipped(path, skip, &facts, &inspected, record);
                self.push(o, id);
                None
            }
            verdict => Some(Candidate {
                name: name.to_os_string(),
                path,
                record,
                inspected,
                facts,
                verdict,
                found,
            }),
        }
    }

    /// The facts [`decide`] needs about an inspected entry; `state` is the
    /// record's state as [`decision_state`] gives it.
    fn facts(
        &self,
        root: &Root,
        record: Option<&Record>,
        state: Option<State>,
        inspected: &Inspected,
        mtime: SystemTime,
        owner_alive: bool,
    ) -> Facts {
        // A transition that cannot be read counts as now: unknown is young.
        let transition = record.map(|r| parse_timestamp(&r.last_transition).unwrap_or(self.now));
        let newest = transition.map_or(mtime, |t| t.max(mtime));
        let elapsed = |t: SystemTime| self.now.duration_since(t).unwrap_or(Duration::ZERO);
        let root_pass = self.euid == 0;
        let repo_uid = inspected.claim.as_ref().map(|c| c.owner().uid);
        Facts {
            kind: inspected.seen.kind,
            record: state,
            attempts: record.map_or(0, |r| r.attempts),
            since_transition: transition.map_or(Duration::ZERO, elapsed),
            age: elapsed(newest),
            grace: root.grace,
            in_use: inspected.seen.in_use,
            owner_alive,
            locked: inspected.seen.locked
                && inspected
                    .claim
                    .as_ref()
                    .is_none_or(|c| c.lock() != Some(REAP_LOCK)),
            root_owned: !root_pass && inspected.uid == 0,
            foreign: !root_pass
                && ((inspected.uid != self.euid && inspected.uid != 0)
                    || repo_uid.is_some_and(|u| u != self.euid)),
            same_filesystem: inspected.seen.same_filesystem,
            unverified: inspected.seen.unverified,
            repository_gone: record.is_some_and(|r| is_gone(&r.repository)),
            recordable: false,
            at_risk: None,
            policy: root.policy,
        }
    }

    /// The report line of a skipped entry, saying why where it helps.
    fn skipped(
        &self,
        path: PathBuf,
        skip: Skip,
        facts: &Facts,
        inspected: &Inspected,
        record: Option<&Record>,
    ) -> Outcome {
        let o = Outcome::new(path.clone(), skip.action());
        let detail = match skip {
            Skip::InUse => Some(use_detail(&path, &self.processes, record)),
            Skip::Young => Some(format!(
                "{} old, the grace is {}",
                humantime::format_duration(whole_seconds(facts.age)),
                humantime::format_duration(facts.grace)
            )),
            Skip::Backoff => Some(format!(
                "attempt {} failed {} ago; the next waits {}",
                facts.attempts,
                humantime::format_duration(whole_seconds(facts.since_transition)),
                humantime::format_duration(decide::backoff(facts.attempts))
            )),
            Skip::Unverified => inspected.refusal.clone(),
            Skip::RepositoryGone => record.map(|r| {
                format!(
                    "its repository {} is gone: nothing can be preserved there; reported and left",
                    r.repository.display()
                )
            }),
            _ => None,
        };
        match detail.or(skip.why().map(str::to_owned)) {
            Some(d) => o.with_error(d),
            None => o,
        }
    }

    /// A record whose worktree is no longer there.
    fn gone(&mut self, record: &Record) {
        if !is_gone(&record.path) {
            return; // listed as something the root's patterns do not own
        }
        let id = Some(record.id.clone());
        let alive = owner_alive(Some(record));
        let lease = lease_of(Some(record), &record.path);
        match triage(Some(record.state), false, alive, lease) {
            Triage::Leave | Triage::Inspect | Triage::Abandoned => {}
            Triage::InUse => {
                let o = Outcome::new(record.path.clone(), Action::SkippedInUse)
                    .with_error(use_detail(&record.path, &self.processes, Some(record)));
                self.push(o, id);
            }
            Triage::Reconcile if self.opts.dry_run => {
                self.reconciled += 1;
                self.push(planned(record.path.clone(), Action::Removed), id);
            }
            Triage::Reconcile => {
                let o = match prune_admin(record, self.euid) {
                    Ok(Pruned::Moved(to)) => Outcome::new(record.path.clone(), Action::Deferred)
                        .with_error(format!(
                            "its worktree is at {} now (quarantined by treeward-sweep): left to the pass that drains it",
                            to.display()
                        )),
                    Ok(Pruned::Locked) => Outcome::new(record.path.clone(), Action::SkippedLocked)
                        .with_error("its worktree is gone but git keeps its locked entry (git worktree lock): left as git leaves it"),
                    Ok(Pruned::Done) => {
                        self.reconciled += 1;
                        Outcome::new(record.path.clone(), Action::Removed)
                    }
                    Ok(Pruned::NotOurs(uid)) => {
                        log::info!(
                            "{}: gone; its repository belongs to uid {uid}, whose `git worktree prune` forgets it",
                            record.path.display()
                        );
                        self.reconciled += 1;
                        Outcome::new(record.path.clone(), Action::Removed)
                    }
                    Err(e) => Outcome::new(record.path.clone(), Action::Failed)
                        .with_error(format!("removing its admin entry: {e}")),
                };
                self.push(o, id);
            }
        }
    }

    /// `--dry-run`: what each candidate would become, assessed where it lies
    /// (a linked worktree by a dry-run reclaim, as its owner).
    fn plan(&mut self, open: &OpenRoot, candidates: Vec<Candidate<'a>>) {
        let mut linked: BTreeMap<Owner, Vec<(Candidate, Claimed)>> = BTreeMap::new();
        for c in candidates {
            match (c.verdict, c.claimed()) {
                (Verdict::Assess, Some((owner, ticket))) => {
                    linked.entry(owner).or_default().push((c, ticket))
                }
                _ => {
                    let verdict = settle(open, &c);
                    let o = match verdict {
                        Verdict::Act(d) => planned(c.path.clone(), action_of(d)),
                        _ => Outcome::new(c.path.clone(), Action::Failed)
                            .with_error("no decision could be reached"),
                    };
                    self.push(o, c.record_id());
                }
            }
        }
        for (owner, items) in linked {
            let requests: Vec<Request> = items
                .iter()
                .map(|(c, ticket)| Request::Reclaim {
                    claimed: ticket.clone(),
                    policy: c.facts.policy,
                    dry_run: true,
                })
                .collect();
            for ((c, _), answer) in items
                .into_iter()
                .zip(call(&self.opts.worker, owner, &requests))
            {
                let o = match answer {
                    Ok(r) if r.error.is_none() => planned(c.path.clone(), action_of(r.decision)),
                    Ok(r) => failed_reclaim(c.path.clone(), r),
                    Err(e) => Outcome::new(c.path.clone(), Action::Failed).with_error(e),
                };
                self.push(o, c.record_id());
            }
        }
    }

    /// Re-checks and reclaims one chunk of candidates, guarded and locked
    /// ([`lock`]); returns those whose files are to be deleted next
    /// ([`delete_all`]).
    fn act(&mut self, open: &OpenRoot, policy: Policy, locked: Locked<'a>) -> Vec<Deletion> {
        for (o, record) in locked.outcomes {
            self.push(o, record);
        }
        let guarded = locked.guarded;
        // 2. Re-check, right before anything changes: who uses it now.
        let now = ProcessTable::scan();
        let mut ready = Vec::new();
        let mut to_unlock = Vec::new();
        for (c, g) in guarded {
            if now.users_of(&c.path).is_empty() && !owner_alive(c.record) {
                ready.push((c, g));
                continue;
            }
            drop(g);
            let o = Outcome::new(c.path.clone(), Action::SkippedInUse)
                .with_error(use_detail(&c.path, &now, c.record));
            self.push(o, c.record_id());
            to_unlock.extend(c.claimed());
        }
        // 3 and 4. Reclaim (linked worktrees, as their owners), then delete.
        let mut linked: BTreeMap<Owner, Vec<(Candidate, Guard, Claimed)>> = BTreeMap::new();
        let mut broken: BTreeMap<Owner, Vec<(Candidate, Guard, Request)>> = BTreeMap::new();
        let mut deletions = Vec::new();
        for (c, g) in ready {
            if let (None, Some(f)) = (c.claimed(), &c.found) {
                let request = Request::ReclaimBroken {
                    entry: c.path.clone(),
                    repository: f.repository.common().to_path_buf(),
                    admin: f.admin.clone(),
                    name: PathBuf::from(&f.name),
                    commits: self.known.commits(&c.path),
                };
                let owner = f.repository.owner();
                broken.entry(owner).or_default().push((c, g, request));
                continue;
            }
            match c.claimed() {
                Some((owner, ticket)) => linked.entry(owner).or_default().push((c, g, ticket)),
                None => deletions.push(Deletion::of(
                    &c,
                    Outcome::new(c.path.clone(), Action::Removed),
                    g,
                )),
            }
        }
        for (owner, items) in linked {
            let requests: Vec<Request> = items
                .iter()
                .map(|(_, _, ticket)| Request::Reclaim {
                    claimed: ticket.clone(),
                    policy,
                    dry_run: false,
                })
                .collect();
            let answers = call(&self.opts.worker, owner, &requests);
            self.intend(intended(items.iter().map(|(c, _, _)| c), &answers));
            for ((c, g, ticket), answer) in items.into_iter().zip(answers) {
                let o = match answer {
                    Ok(r) if r.error.is_none() && r.decision != Drain::Keep => {
                        let decision = r.decision;
                        let o = reclaimed_outcome(c.path.clone(), decision, Some(r));
                        deletions.push(Deletion::of(&c, o, g));
                        continue;
                    }
                    // Kept, or nothing changed but its work may be preserved:
                    // the worktree stays, unlocked, as it was found.
                    Ok(r) if r.decision == Drain::Keep => {
                        reclaimed_outcome(c.path.clone(), Drain::Keep, Some(r))
                    }
                    Ok(r) => failed_reclaim(c.path.clone(), r),
                    Err(e) => Outcome::new(c.path.clone(), Action::Failed).with_error(e),
                };
                to_unlock.push((owner, ticket));
                drop(g);
                self.push(o, c.record_id());
            }
        }
        for (owner, items) in broken {
            let requests: Vec<Request> = items.iter().map(|(_, _, r)| r.clone()).collect();
            let answers = call(&self.opts.worker, owner, &requests);
            self.intend(intended(items.iter().map(|(c, _, _)| c), &answers));
            for ((c, g, _), answer) in items.into_iter().zip(answers) {
                let o = settle_in_place(c.path.clone(), answer, open.fd.as_fd(), &c.name);
                drop(g);
                self.push(o, c.record_id());
            }
        }
        self.unlock_all(to_unlock);
        deletions
    }

    /// Lifts this pass's lock from worktrees it leaves in place.
    fn unlock_all(&self, worktrees: Vec<(Owner, Claimed)>) {
        let mut by_owner: BTreeMap<Owner, Vec<Claimed>> = BTreeMap::new();
        for (owner, claimed) in worktrees {
            by_owner.entry(owner).or_default().push(claimed);
        }
        for (owner, claims) in by_owner {
            let requests: Vec<Request> = claims
                .iter()
                .map(|claimed| Request::UnlockWorktree {
                    claimed: claimed.clone(),
                })
                .collect();
            let answers = call_simple(&self.opts.worker, owner, &requests, |r| {
                matches!(r, Response::Unlocked { .. })
            });
            for (claimed, answer) in claims.iter().zip(answers) {
                if let Err(e) = answer {
                    log::warn!(
                        "{}: left in place, but still locked: {e}",
                        claimed.entry().display()
                    );
                }
            }
        }
    }

    /// Drains the root's trash when it is this pass's: the root's owner's
    /// (or any, for root). Another user's trash is left to the sweep, and so
    /// is every trash under `--dry-run`. Returns the original paths of the
    /// entries it found there.
    fn drain(&mut self, root: &Root, open: &OpenRoot) -> BTreeSet<PathBuf> {
        if self.opts.dry_run {
            return BTreeSet::new();
        }
        if self.euid != 0 && open.uid != self.euid {
            log::debug!(
                "the trash of {} belongs to uid {}: left to treeward-sweep",
                root.path.display(),
                open.uid
            );
            return BTreeSet::new();
        }
        let mut outcomes = Vec::new();
        let mut progress = Progress::new(false);
        drain_trash(
            root,
            open,
            &self.opts.worker,
            &self.known,
            Drive {
                deadline: None,
                progress: &mut progress,
                intend: &|intended| {
                    let tracked: Vec<Tracked> = intended
                        .iter()
                        .map(|o| Tracked {
                            outcome: o.clone(),
                            record: None,
                        })
                        .collect();
                    self.intend(tracked);
                },
            },
            &mut outcomes,
        );
        progress.finish();
        let paths = outcomes.iter().map(|o| o.path.clone()).collect();
        for o in outcomes {
            self.push(o, None);
        }
        paths
    }
}

/// A chunk of candidates guarded and locked ([`lock`]), and the outcomes
/// of those that went no further.
struct Locked<'a> {
    guarded: Vec<(Candidate<'a>, Guard)>,
    outcomes: Vec<(Outcome, Option<String>)>,
}

/// The first half of reclaiming a chunk of candidates: settles those that
/// are not linked worktrees (assessed in place), then takes this pass's
/// flock on each directory and its lock on each linked worktree. Needs
/// nothing of the pass but its worker, so that it runs while the chunk
/// before is reclaimed ([`Pass::act`]).
fn lock<'a>(worker: &Worker, open: &OpenRoot, chunk: Vec<Candidate<'a>>) -> Locked<'a> {
    let mut outcomes = Vec::new();
    let mut going = Vec::new();
    for mut c in chunk {
        c.verdict = settle(open, &c);
        if c.verdict == Verdict::Act(Drain::Keep) {
            let o =
                Outcome::new(c.path.clone(), Action::Kept).with_error(unrecordable(c.facts.kind));
            outcomes.push((o, c.record_id()));
        } else {
            going.push(c);
        }
    }
    let mut guarded = Vec::new();
    for c in going {
        match guard(open, &c) {
            Ok(g) => guarded.push((c, g)),
            Err(Some(o)) => outcomes.push((*o, c.record_id())),
            Err(None) => {} // gone meanwhile: the next pass sees why
        }
    }
    let guarded = lock_all(worker, guarded, &mut outcomes);
    Locked { guarded, outcomes }
}

/// `git worktree lock`s each linked worktree of `guarded` with
/// [`REAP_LOCK`], as its owner; returns those that are now locked by this
/// pass (and the others, which need no lock), adding the rest to
/// `outcomes`.
fn lock_all<'a>(
    worker: &Worker,
    guarded: Vec<(Candidate<'a>, Guard)>,
    outcomes: &mut Vec<(Outcome, Option<String>)>,
) -> Vec<(Candidate<'a>, Guard)> {
    let mut out = Vec::new();
    let mut by_owner: BTreeMap<Owner, Vec<(Candidate<'a>, Guard)>> = BTreeMap::new();
    let mut tickets: BTreeMap<Owner, Vec<Claimed>> = BTreeMap::new();
    for (c, g) in guarded {
        match c.claimed() {
            Some((owner, ticket)) => {
                by_owner.entry(owner).or_default().push((c, g));
                tickets.entry(owner).or_default().push(ticket);
            }
            None => out.push((c, g)),
        }
    }
    for (owner, items) in by_owner {
        let requests: Vec<Request> = tickets
            .remove(&owner)
            .unwrap_or_default()
            .into_iter()
            .map(|claimed| Request::LockWorktree {
                claimed,
                reason: Some(REAP_LOCK.to_owned()),
            })
            .collect();
        let answers = call_simple(worker, owner, &requests, |r| match r {
            Response::Locked {
                newly_locked: true, ..
            } => true,
            Response::Locked { reason, .. } => reason.as_deref() == Some(REAP_LOCK),
            _ => false,
        });
        for ((c, g), answer) in items.into_iter().zip(answers) {
            match answer {
                Ok(()) => out.push((c, g)),
                Err(e) => {
                    let action = if matches!(e, AnswerError::LockedMeanwhile(_)) {
                        Action::SkippedLocked
                    } else {
                        Action::Failed
                    };
                    let o = Outcome::new(c.path.clone(), action).with_error(e);
                    outcomes.push((o, c.record_id()));
                }
            }
        }
    }
    out
}

/// A candidate's flock on its directory, held until it is deleted (`None`
/// for a link or a file, which cannot be entered).
type Guard = Option<Flock<File>>;

/// A reclaimed (or unlinked) candidate whose files are to be deleted, with
/// this pass's flock on it until they are.
struct Deletion {
    outcome: Outcome,
    name: OsString,
    guard: Guard,
    record: Option<String>,
}

impl Deletion {
    fn of(c: &Candidate, outcome: Outcome, guard: Guard) -> Deletion {
        Deletion {
            outcome,
            name: c.name.clone(),
            guard,
            record: c.record_id(),
        }
    }
}

/// Deletes the files of each entry of `deletions`, in the root's directory;
/// one report line each.
fn delete_all(open: &OpenRoot, deletions: Vec<Deletion>) -> Vec<Tracked> {
    deletions
        .into_iter()
        .map(|d| {
            let outcome = remove_into(d.outcome, open.fd.as_fd(), &d.name, None);
            drop(d.guard);
            Tracked {
                outcome,
                record: d.record,
            }
        })
        .collect()
}

/// Takes this pass's exclusive `flock` on a candidate directory without
/// waiting. `Err(Some)`: someone holds one (in use) or it cannot be opened;
/// `Err(None)`: it is gone.
fn guard(open: &OpenRoot, c: &Candidate) -> Result<Guard, Option<Box<Outcome>>> {
    if matches!(c.facts.kind, EntryKind::Symlink | EntryKind::NotADirectory) {
        return Ok(None);
    }
    let fd = match fd::open_dir_at(open.fd.as_fd(), c.name.as_os_str()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(None),
        Err(e) => {
            return Err(Some(Box::new(
                Outcome::new(c.path.clone(), Action::Failed)
                    .with_error(format!("cannot open it to lock it: {}", e.desc())),
            )))
        }
    };
    match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Err(Some(Box::new(
            Outcome::new(c.path.clone(), Action::SkippedInUse).with_error("a flock is held on it"),
        ))),
        Err((_, e)) => Err(Some(Box::new(
            Outcome::new(c.path.clone(), Action::Failed)
                .with_error(format!("cannot flock it: {}", e.desc())),
        ))),
    }
}

/// The verdict once a candidate that is not a linked worktree has been
/// assessed where it lies (a linked one is assessed by its reclaim).
fn settle(open: &OpenRoot, c: &Candidate) -> Verdict {
    match c.verdict {
        Verdict::Assess if c.facts.kind != EntryKind::Linked => decide(&Facts {
            at_risk: Some(unlinked_at_risk(c.facts.kind, open.fd.as_fd(), &c.name)),
            ..c.facts
        }),
        verdict => verdict,
    }
}

fn chunks<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some(last) if last.len() < RECLAIM_CHUNK => last.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

/// Whether nothing is at `path` (an error other than "not found" is not
/// proof of absence).
fn is_gone(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Who uses `path`, for the report.
fn use_detail(path: &Path, processes: &ProcessTable, record: Option<&Record>) -> String {
    let mut parts = crate::in_use::describe_use(path, processes);
    if let Some(pid) = record.and_then(|r| r.owner_pid).filter(|&p| pid_alive(p)) {
        parts.push(format!("its owner pid {pid} is alive"));
    }
    if let Some(h) = record.and_then(|r| r.lease) {
        if holder_alive(&h) {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", h.pid))
                .map(|c| format!(" ({})", c.trim_end()))
                .unwrap_or_default();
            parts.push(format!(
                "leased: its lease holder pid {}{comm} is alive",
                h.pid
            ));
        } else if path.is_dir() && flock_held(path).unwrap_or(false) {
            parts.push(format!(
                "its lease holder pid {} is gone, but its flock is still held \
                 (by a command it started, which inherited it)",
                h.pid
            ));
        }
    }
    if parts.is_empty() {
        "in use".to_owned()
    } else {
        parts.join("; ")
    }
}

/// What reconciling a gone worktree did in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pruned {
    /// Its admin entry was removed, or there was none (or no repository).
    Done,
    /// Its admin entry names a worktree that exists elsewhere (a sweep's
    /// trash): not gone.
    Moved(PathBuf),
    /// Its admin entry is locked: git keeps it, and so does treeward.
    Locked,
    /// The repository belongs to this uid, not to this pass: its admin entry
    /// is left to its owner's `git worktree prune` (no git work as root on
    /// another user's repository, SPEC invariant 4).
    NotOurs(u32),
}

/// Removes the admin entry of a record whose worktree is gone, the way
/// `git worktree prune` would for that one entry: only if it is invalid
/// (its worktree is missing) and not locked. The admin entry is the
/// record's `worktree_name` (one that names a worktree elsewhere means the
/// worktree moved), else the one that names the record's path.
///
/// The admin entries are read as git writes them (`gitdir`, `locked`),
/// relative to the repository's descriptors, never through a symlink or a
/// FIFO, size-capped: no git runs, so a repository of another user is read
/// (to tell a moved worktree) without running anything of theirs.
fn prune_admin(record: &Record, euid: u32) -> Result<Pruned, String> {
    let common = &record.repository;
    let owner = match crate::as_owner::owner_of(common) {
        Ok(owner) => owner,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pruned::Done),
        Err(e) => return Err(e.to_string()),
    };
    let listing = |e: Errno| {
        format!(
            "listing the worktrees of {}: {}",
            common.display(),
            e.desc()
        )
    };
    let common_fd = crate::fd::open_path_trusted(common).map_err(listing)?;
    let worktrees = match crate::fd::open_dir_at(common_fd.as_fd(), OsStr::new("worktrees")) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Pruned::Done),
        Err(e) => return Err(listing(e)),
    };
    let names = crate::remove::list_names(worktrees.as_fd()).map_err(listing)?;
    for name in names {
        let named = record.worktree_name.as_deref().map(OsStr::new) == Some(name.as_os_str());
        if record.worktree_name.is_some() && !named {
            continue;
        }
        let Ok(admin) = crate::fd::open_path_at(worktrees.as_fd(), &name) else {
            continue;
        };
        let Ok(Some(gitdir)) = crate::fd::read_at(admin.as_fd(), OsStr::new("gitdir"), 4096) else {
            continue;
        };
        let gitfile = PathBuf::from(OsStr::from_bytes(gitdir.trim_ascii_end()));
        let Some(path) = gitfile.parent() else {
            continue;
        };
        let valid = std::fs::symlink_metadata(path).is_ok();
        if named && valid && path != record.path {
            return Ok(Pruned::Moved(path.to_path_buf()));
        }
        if path != record.path || valid {
            continue;
        }
        if owner.uid != euid {
            return Ok(Pruned::NotOurs(owner.uid));
        }
        if crate::fd::stat_at(admin.as_fd(), OsStr::new("locked")).map_or(true, |l| l.is_some()) {
            return Ok(Pruned::Locked);
        }
        let worktrees = claim::open_worktrees_of(common, euid).map_err(|e| e.to_string())?;
        match crate::remove::remove_entry(worktrees.as_fd(), &name) {
            Ok(removed) if !removed.complete => {
                return Err(format!(
                    "pruning {}: {}",
                    name.to_string_lossy(),
                    removed.describe()
                ))
            }
            Ok(_) | Err(crate::remove::RemoveError::NotFound { .. }) => {}
            Err(e) => return Err(format!("pruning {}: {e}", name.to_string_lossy())),
        }
    }
    Ok(Pruned::Done)
}

/// What is about to be done to the candidates whose reclaim succeeded and
/// whose files are deleted next (the outcomes they get unless the deletion
/// fails).
fn intended<'c, 'a: 'c>(
    candidates: impl Iterator<Item = &'c Candidate<'a>>,
    answers: &[Result<crate::as_owner::reclaim::Reclaimed, AnswerError>],
) -> Vec<Tracked> {
    candidates
        .zip(answers)
        .filter_map(|(c, answer)| match answer {
            Ok(r) if r.error.is_none() && r.decision != Drain::Keep => Some(Tracked {
                outcome: reclaimed_outcome(c.path.clone(), r.decision, Some(r.clone())),
                record: c.record_id(),
            }),
            _ => None,
        })
        .collect()
}

/// Moves the records of what this pass did to their new states: by id for
/// the records it acted on, by path for what it drained from the trash. A ledger that cannot be written is logged, not
/// fatal: the report stands, and the next pass converges.
fn record(ledger: &Ledger, tracked: &[Tracked]) {
    let result = ledger.update(|doc| {
        for t in tracked {
            let index = match &t.record {
                Some(id) => doc.records.iter().position(|r| &r.id == id),
                None => by_path(doc, &t.outcome.path),
            };
            crate::pass::drain::record_outcome(doc, index, &t.outcome);
        }
    });
    if let Err(e) = result {
        log::error!("the ledger was not updated: {e}");
    }
}

/// The record a trash outcome for `path` moves: the one governing the path,
/// unless the path holds a live entry again, whose `active` record is not
/// the drained one's.
fn by_path(doc: &Document, path: &Path) -> Option<usize> {
    let reused = !is_gone(path);
    doc.records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == path && !(reused && r.state == State::Active))
        .max_by_key(|(i, r)| (rank(r), *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, path: &str, state: State) -> Record {
        let mut r = Record::new(Path::new(path), Path::new("/repo/.git"), 1000);
        r.id = id.to_owned();
        r.state = state;
        r
    }

    #[test]
    fn the_pass_lock_lives_next_to_the_ledger() {
        assert_eq!(
            pass_lock_path(Path::new("/var/lib/treeward/ledger.json")),
            Path::new("/var/lib/treeward/ledger.json.reap.lock")
        );
    }

    #[test]
    fn a_second_pass_finds_the_lock_held_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = pass_lock_path(&dir.path().join("state/ledger.json"));
        let first = try_lock_pass(&path).unwrap();
        assert!(
            first.is_some(),
            "the first pass takes it (and its directory is made)"
        );
        // Another open file description, as another process would have.
        assert!(try_lock_pass(&path).unwrap().is_none());
        drop(first);
        assert!(try_lock_pass(&path).unwrap().is_some());
    }

    #[test]
    fn a_pass_lock_that_is_a_symlink_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let path = dir.path().join("ledger.json.reap.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = try_lock_pass(&path).unwrap_err().to_string();
        assert!(err.contains("pass lock"), "{err}");
        let fifo = dir.path().join("fifo.reap.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = try_lock_pass(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_governing_record_is_active_then_unfinished_then_the_latest() {
        let a = rec("a", "/r/x", State::Removed);
        let b = rec("b", "/r/x", State::Released);
        let c = rec("c", "/r/x", State::Preserved);
        let d = rec("d", "/r/x", State::Active);
        let id = |rs: &[&Record]| governing(rs).map(|r| r.id.clone());
        assert_eq!(id(&[&a, &c]), Some("c".into()), "the latest finished one");
        assert_eq!(id(&[&a, &b, &c]), Some("b".into()));
        assert_eq!(id(&[&d, &a, &b, &c]), Some("d".into()));
        assert_eq!(id(&[]), None);
    }

    #[test]
    fn trash_outcomes_move_the_record_of_their_path_not_a_new_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let reused = dir.path().join("reused");
        std::fs::create_dir(&reused).unwrap();
        let mut doc = Document::empty();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        doc.records.push(rec("g", &path(&gone), State::Active));
        doc.records
            .push(rec("old", &path(&reused), State::Released));
        doc.records.push(rec("new", &path(&reused), State::Active));
        assert_eq!(
            by_path(&doc, &gone),
            Some(0),
            "an active record whose worktree was swept"
        );
        assert_eq!(by_path(&doc, &reused), Some(1), "not the new worktree's");
        assert_eq!(by_path(&doc, Path::new("/nowhere")), None);
    }

    #[test]
    fn candidates_go_in_chunks() {
        let sizes: Vec<usize> = chunks((0..40).collect()).iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![RECLAIM_CHUNK, RECLAIM_CHUNK, 40 - 2 * RECLAIM_CHUNK]
        );
        assert!(chunks(Vec::<u8>::new()).is_empty());
    }

    #[test]
    fn a_busy_report_says_so_and_keeps_the_contract_fields() {
        let r = Report::busy(PathBuf::from("/l/ledger.json.reap.lock"));
        assert!(r
            .summary()
            .contains("another treeward-reap pass is running"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["busy"], true);
        for key in [
            "swept_count",
            "failed_count",
            "root_owned_skipped",
            "entries",
            "young_count",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}
