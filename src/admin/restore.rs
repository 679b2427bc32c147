//! `treeward restore ID|REF [--path P] [--repo R]`: which preserved set to
//! restore, where, in which repository; then the restore itself as the
//! repository's owner ([`super::rebuild`]) and the ledger update.
//!
//! Contract:
//! - `ID`: a ledger record; its newest preserved set (by stamp) is restored.
//! - `REF`: a full ref under `refs/treeward/preserved/` (any ref of the set)
//!   or its `<name>/<stamp>` part. Any other `refs/…` is refused. The
//!   repository is the record's that lists the set, else `--repo`.
//! - The path is `--path`, else the record's path.
//! - Afterwards the record (a new one if none listed the set) is `active` at
//!   the new path, its preserved refs kept: treeward never deletes them; an
//!   admin does, once satisfied, with `treeward drop` (as the owner). A record of
//!   what was moved aside follows it to the aside path.
//! - Bad input (unknown id, not a treeward ref, refs that do not exist, a
//!   repository that is gone, a live worktree at the path) is an error and
//!   nothing changes.
//! - The ledger is untrusted ([`vet`]): the path restored to (and a record's
//!   own path) must be an entry of a configured root, and the repository one
//!   that belongs to that root's owner on a strict path; the restore runs as
//!   that owner. A forged record, a `--repo` of someone else's or root's,
//!   or a path elsewhere is refused (exit 2) before anything is touched.

use super::call_as_owner;
use crate::as_owner::preserved::Set;
use crate::as_owner::rebuild::Restored;
use crate::as_owner::{Request, Response, Worker};
use crate::claim::{self, Repository};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Document, Ledger, Record, State};
use crate::preserve::NAMESPACE;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `restore` asked for, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `refs/treeward/preserved/<name>/<stamp>`.
    pub prefix: String,
    /// The repository as named (by `--repo` or the record); the verified
    /// common git dir once [`vet`] passed.
    pub repository: PathBuf,
    pub path: PathBuf,
    /// The record that lists the set, if any.
    pub record: Option<String>,
    /// That record's path.
    pub record_path: Option<PathBuf>,
}

/// The result: what the owner's side did and the ledger record now.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub restored: Restored,
    pub prefix: String,
    pub repository: PathBuf,
    /// The record now `active` at the path (null under dry run when none
    /// existed).
    pub id: Option<String>,
}

/// Pure: the set prefix a ref or `<name>/<stamp>` names; an error for
/// anything outside the namespace.
pub fn set_prefix(target: &str) -> Result<String, String> {
    let rest = if target.starts_with("refs/") {
        target
            .strip_prefix(NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                format!("{target} is not a treeward ref: only refs under {NAMESPACE}/ are restored")
            })?
    } else {
        target
    };
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some(name), Some(stamp)) if valid_component(name) && valid_component(stamp) => {
            Ok(format!("{NAMESPACE}/{name}/{stamp}"))
        }
        _ => Err(format!(
            "{target}: not a preserved set: give {NAMESPACE}/<name>/<stamp>[/…] or <name>/<stamp>"
        )),
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0'])
}

/// Pure: the newest set among a record's preserved refs (stamps sort by
/// time; `-N` suffixes after their stamp).
pub fn newest_set(refs: &[String]) -> Option<String> {
    refs.iter()
        .filter_map(|r| set_prefix(r).ok())
        .max_by(|a, b| stamp_key(a).cmp(&stamp_key(b)))
}

fn stamp_key(prefix: &str) -> (String, u64) {
    let stamp = prefix.rsplit('/').next().unwrap_or_default();
    match stamp.split_once('-') {
        Some((s, n)) => (s.to_owned(), n.parse().unwrap_or(0)),
        None => (stamp.to_owned(), 0),
    }
}

/// Resolves `target` (an id or a ref) against the ledger and options;
/// `found` is the set as a known repository holds it (its repository, and
/// the path its metadata names), for a set no record lists. Everything
/// still missing is named in one error.
pub fn plan(
    doc: &Document,
    target: &str,
    path: Option<&Path>,
    repo: Option<&Path>,
    found: Option<&Set>,
) -> Result<Plan, Error> {
    let (prefix, record) = match doc.find_by_id(target) {
        Some(r) if !target.starts_with("refs/") => {
            let prefix = newest_set(&r.preserved_refs).ok_or_else(|| {
                Error::Usage(format!(
                    "record {target} ({}) has no preserved refs: nothing to restore",
                    r.path.display()
                ))
            })?;
            (prefix, Some(r))
        }
        _ => {
            let prefix = set_prefix(target).map_err(|why| {
                Error::Usage(if target.starts_with("refs/") {
                    why
                } else {
                    format!("no ledger record with id {target}, and {why}")
                })
            })?;
            let under = format!("{prefix}/");
            let record = doc
                .records
                .iter()
                .find(|r| r.preserved_refs.iter().any(|p| p.starts_with(&under)));
            (prefix, record)
        }
    };
    let mut missing = Vec::new();
    let repository = match (repo, record, found) {
        (Some(r), _, _) => Some(super::absolute(r)?),
        (None, Some(r), _) => Some(r.repository.clone()),
        (None, None, Some(s)) => Some(s.repository.clone()),
        (None, None, None) => {
            missing.push("its repository (--repo REPO: no ledger record lists the set, and no repository the ledger knows holds it)");
            None
        }
    };
    let path = match (path, record, found.and_then(|s| s.path.as_deref())) {
        (Some(p), _, _) => Some(super::absolute(p)?),
        (None, Some(r), _) => Some(r.path.clone()),
        (None, None, Some(p)) => Some(PathBuf::from(p)),
        (None, None, None) => {
            missing
                .push("where to restore it (--path P: no record or set metadata names its path)");
            None
        }
    };
    let (Some(repository), Some(path)) = (repository, path) else {
        return Err(Error::Usage(format!(
            "cannot restore {prefix}; missing: {}",
            missing.join("; ")
        )));
    };
    Ok(Plan {
        prefix,
        repository,
        path,
        record: record.map(|r| r.id.clone()),
        record_path: record.map(|r| r.path.clone()),
    })
}

/// Decides whether a plan may be carried out, and as whom: the path must
/// be an entry of a configured root that passes its checks, a record's path
/// too, and the repository must be verified as belonging to the root's
/// expected owner on a strict path ([`super::repository`]); the restore
/// then runs as that owner. Reads only; every refusal names what failed.
pub fn vet(config: &Config, plan: &Plan, euid: u32) -> Result<Repository, Error> {
    if let (Some(id), Some(path)) = (&plan.record, &plan.record_path) {
        if super::entry_of(config, path).is_none() {
            return Err(Error::Usage(format!(
                "ledger record {id}: its path {} is not an entry of any configured root: the \
                 record is not trusted, nothing changed",
                path.display()
            )));
        }
    }
    let Some(root) = super::entry_of(config, &plan.path) else {
        return Err(Error::Usage(format!(
            "{}: not an entry of any configured root: restore creates worktrees only in a root \
             (nothing changed)",
            plan.path.display()
        )));
    };
    match crate::roots::open(root) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Error::Usage(format!(
                "{}: the root {} does not exist (nothing changed)",
                plan.path.display(),
                root.path.display()
            )))
        }
        Err(why) => {
            return Err(Error::Usage(format!(
                "the root {} is refused: {why} (nothing changed)",
                root.path.display()
            )))
        }
    }
    let owner = claim::expected_owner(root, euid);
    super::repository(&plan.repository, Some(owner)).map_err(|e| {
        Error::Usage(format!(
            "{e}; worktrees in {} belong to uid {owner} (the root's configured `owner`, else \
             whoever runs treeward), and so must the repository",
            root.path.display()
        ))
    })
}

/// A set `target` (`<name>/<stamp>` or its ref) that no ledger record
/// lists, looked for in the repositories the ledger knows (read as their
/// owners): found in exactly one, it names its repository and path.
fn unlisted_set(config: &Config, doc: &Document, target: &str, worker: &Worker) -> Option<Set> {
    if doc.find_by_id(target).is_some() {
        return None;
    }
    let prefix = set_prefix(target).ok()?;
    let under = format!("{prefix}/");
    if doc
        .records
        .iter()
        .any(|r| r.preserved_refs.iter().any(|p| p.starts_with(&under)))
    {
        return None;
    }
    let set = prefix.strip_prefix(&format!("{NAMESPACE}/"))?.to_owned();
    let mut holders: Vec<Set> = super::preserved::list(config, doc, worker)
        .sets
        .into_iter()
        .filter(|s| s.set == set)
        .collect();
    (holders.len() == 1).then(|| holders.remove(0))
}

/// The set a `drop` target names and its repository, verified: a record
/// id (its newest set), or `<name>/<stamp>` (a ref of it) in the record's
/// repository that lists it, else `repo`, else the one known repository
/// that holds it. Everything missing is named in one error.
pub fn resolve_set(
    config: &Config,
    doc: &Document,
    target: &str,
    repo: Option<&Path>,
    worker: &Worker,
) -> Result<super::preserved::Resolved, Error> {
    let found = match repo {
        None => unlisted_set(config, doc, target, worker),
        Some(_) => None,
    };
    // A drop needs no path: "/" stands in, so that only what a drop needs
    // can be missing.
    let plan = plan(doc, target, Some(Path::new("/")), repo, found.as_ref())?;
    let owner = plan
        .record_path
        .as_deref()
        .and_then(|p| super::entry_of(config, p))
        .map(|root| claim::expected_owner(root, super::euid()));
    let repository = super::repository(&plan.repository, owner)?;
    let set = plan
        .prefix
        .strip_prefix(&format!("{NAMESPACE}/"))
        .unwrap_or(&plan.prefix)
        .to_owned();
    Ok(super::preserved::Resolved { repository, set })
}

/// Restores as the plan says, as the repository's verified owner, then
/// records it. Refused (nothing touched) unless [`vet`] passes.
pub fn restore(
    config: &Config,
    target: &str,
    path: Option<&Path>,
    repo: Option<&Path>,
    worker: &Worker,
    dry_run: bool,
) -> Result<Outcome, Error> {
    let ledger = Ledger::new(&config.ledger);
    let doc = ledger.read()?;
    let found = match repo {
        None => unlisted_set(config, &doc, target, worker),
        Some(_) => None,
    };
    let mut plan = plan(&doc, target, path, repo, found.as_ref())?;
    let verified = vet(config, &plan, super::euid())?;
    plan.repository = verified.common().to_path_buf();
    let request = Request::Restore {
        repository: plan.repository.clone(),
        prefix: plan.prefix.clone(),
        path: plan.path.clone(),
        dry_run,
    };
    let restored = match call_as_owner(worker, &verified, &request)? {
        Response::Restored { restored } => restored,
        other => return Err(Error::Failed(format!("unexpected reply {other:?}"))),
    };
    let id = if dry_run {
        plan.record.clone()
    } else {
        let owner = verified.owner().uid;
        let id = ledger
            .update(|doc| record_restore(doc, &plan, &restored, owner))
            .map_err(|e| {
                Error::Failed(format!(
                    "restored {} at {}, but the ledger was not updated: {e}",
                    plan.prefix,
                    restored.path.display()
                ))
            })?;
        unlock_restored(worker, &verified, &restored.path)?;
        Some(id)
    };
    Ok(Outcome {
        restored,
        prefix: plan.prefix,
        repository: plan.repository,
        id,
    })
}

/// Lifts the lock a restore leaves on its worktree until it is recorded
/// ([`super::rebuild`]): done once the ledger names it, so that a restore
/// killed before that is taken up again by a rerun.
fn unlock_restored(worker: &Worker, repo: &Repository, path: &Path) -> Result<(), Error> {
    let claim =
        crate::claim::verify(path, crate::claim::Expect::owner(repo.owner().uid)).map_err(|e| {
            Error::Failed(format!(
                "{}: restored, but not unlocked: {e}",
                path.display()
            ))
        })?;
    call_as_owner(
        worker,
        repo,
        &Request::UnlockWorktree {
            claimed: claim.ticket(),
        },
    )
    .map(drop)
}

/// Pure: the ledger after a restore. The record listing the set (or a new
/// one) is `active` at the new path with its preserved refs kept; a record
/// of what was moved aside follows it. Returns the restored record's id.
pub fn record_restore(doc: &mut Document, plan: &Plan, restored: &Restored, uid: u32) -> String {
    if let Some(aside) = &restored.aside {
        for r in doc.records.iter_mut() {
            if r.path == restored.path && Some(&r.id) != plan.record.as_ref() {
                r.path = aside.clone();
            }
        }
    }
    let index = plan
        .record
        .as_ref()
        .and_then(|id| doc.records.iter().position(|r| &r.id == id));
    let record = match index {
        Some(i) => &mut doc.records[i],
        None => {
            let mut r = Record::new(&restored.path, &plan.repository, uid);
            r.preserved_refs = restored.preserved_refs.clone();
            doc.records.push(r);
            let last = doc.records.len() - 1;
            &mut doc.records[last]
        }
    };
    record.path = restored.path.clone();
    record.repository = plan.repository.clone();
    record.worktree_name = restored.worktree_name.clone();
    record.branch = restored.branch.clone();
    record.base_commit = restored.head.clone();
    record.attempts = 0;
    record.last_error = None;
    record.owner_pid = None;
    record.transition(State::Active);
    record.id.clone()
}

/// The lines a person reads.
pub fn render_human(o: &Outcome) -> String {
    let r = &o.restored;
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    let at = match (&r.branch, &r.head) {
        (Some(b), _) => format!("on branch {b}"),
        (None, Some(h)) => format!("detached at {}", &h[..h.len().min(12)]),
        (None, None) => "unborn".to_owned(),
    };
    let mut out = format!("{verb} {} to {} ({at})\n", o.prefix, r.path.display());
    if let Some(aside) = &r.aside {
        out.push_str(&format!(
            "{} {} aside to {}\n",
            r.path.display(),
            if r.dry_run { "would be moved" } else { "moved" },
            aside.display()
        ));
    }
    if let Some(id) = &o.id {
        out.push_str(&format!("ledger record {id}: active\n"));
    }
    out.push_str(&format!(
        "the preserved set is kept; drop it once satisfied: treeward drop {}\n",
        o.prefix
            .strip_prefix(&format!("{NAMESPACE}/"))
            .unwrap_or(&o.prefix)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = "refs/treeward/preserved/review-1/20261120T231500Z";
        assert_eq!(set_prefix(&format!("{p}/work")).unwrap(), p);
        assert_eq!(set_prefix(&format!("{p}/worktree/x")).unwrap(), p);
        assert_eq!(set_prefix(p).unwrap(), p);
        assert_eq!(set_prefix("review-1/20261120T231500Z").unwrap(), p);
        for bad in [
            "refs/heads/main",
            "refs/treeward/preservedX/a/b",
            "refs/treeward/preserved/a",
            "review-1",
            "../x",
            "a/..",
        ] {
            assert!(set_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn newest_set_by_stamp_then_suffix() {
        let refs: Vec<String> = [
            "refs/treeward/preserved/a/20260101T000000Z/work",
            "refs/treeward/preserved/a/20260102T000000Z-2/work",
            "refs/treeward/preserved/a/20260102T000000Z-10/head",
            "refs/treeward/preserved/a/20260102T000000Z/work",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            newest_set(&refs).unwrap(),
            "refs/treeward/preserved/a/20260102T000000Z-10"
        );
        assert_eq!(newest_set(&[]), None);
    }
}
