//! Preserved sets in plain sight: `treeward list --preserved` lists the
//! sets under `refs/treeward/preserved/` of the repositories treeward
//! knows, and `treeward drop ID|SET` deletes one once it is no longer
//! wanted, as the repository's owner (a ref written as root would leave
//! root-owned files in the user's repository).
//!
//! Which repositories: those of ledger records whose path is an entry of a
//! configured root, each verified as the root's owner's ([`known`]); the
//! ledger is untrusted, so nothing else is opened. Reading a set's refs and
//! `meta`, and deleting its refs, runs as that owner
//! ([`crate::as_owner::preserved`], through the owner worker). Failure
//! mode: a repository that cannot be read is listed with its error, the
//! others still are; a drop deletes all of a set's refs in one `git
//! update-ref` transaction, or none.

use crate::as_owner::preserved::Set;
use crate::as_owner::{Request, Response, Worker};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Document, Ledger, State};
use crate::preserve::NAMESPACE;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The `list --preserved` document.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub sets: Vec<Set>,
    /// Repositories that could not be read, and why.
    pub errors: Vec<String>,
}

/// The repositories of the ledger's records that are entries of a
/// configured root, verified as that root's owner's; the rest is not
/// opened, and is reported.
pub fn known(config: &Config, doc: &Document) -> (Vec<crate::claim::Repository>, Vec<String>) {
    let euid = super::euid();
    let mut seen = std::collections::BTreeSet::new();
    let (mut repos, mut errors) = (Vec::new(), Vec::new());
    for r in &doc.records {
        let Some(root) = super::entry_of(config, &r.path) else {
            continue;
        };
        let owner = crate::claim::expected_owner(root, euid);
        if !seen.insert((r.repository.clone(), owner)) {
            continue;
        }
        match super::repository(&r.repository, Some(owner)) {
            Ok(repo) => repos.push(repo),
            Err(e) => errors.push(format!("{}: {e}", r.repository.display())),
        }
    }
    (repos, errors)
}

/// `treeward list --preserved`: the sets of every known repository, each
/// read as its owner through `worker`.
pub fn list(config: &Config, doc: &Document, worker: &Worker) -> Listing {
    let (repos, mut errors) = known(config, doc);
    let mut found = Vec::new();
    for repo in repos {
        let request = Request::PreservedSets {
            repository: repo.common().to_path_buf(),
        };
        match super::call_as_owner(worker, &repo, &request) {
            Ok(Response::PreservedSets { sets }) => found.extend(sets),
            Ok(other) => errors.push(format!("unexpected answer {other:?}")),
            Err(e) => errors.push(format!("{}: {e}", repo.common().display())),
        }
    }
    found.sort_by(|a, b| (&a.repository, &a.stamp, &a.set).cmp(&(&b.repository, &b.stamp, &b.set)));
    Listing {
        sets: found,
        errors,
    }
}

/// The human table of `list --preserved`.
pub fn render_human(l: &Listing) -> String {
    let mut rows = vec![
        ["SET", "WHEN", "BRANCH", "WAS AT", "CONTENTS", "REPOSITORY"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for s in &l.sets {
        rows.push(vec![
            s.set.clone(),
            s.stamp.clone(),
            s.branch
                .as_deref()
                .map_or("-", |b| b.trim_start_matches("refs/heads/"))
                .to_owned(),
            s.path.clone().unwrap_or_else(|| "?".to_owned()),
            s.contents.join(", "),
            crate::style::path(&s.repository),
        ]);
    }
    let mut out = crate::style::table(&rows);
    out.push_str(&format!("{} preserved set(s)\n", l.sets.len()));
    out
}

/// A set a command names, and its verified repository.
#[derive(Debug)]
pub struct Resolved {
    pub repository: crate::claim::Repository,
    /// `<name>/<stamp>`.
    pub set: String,
}

/// What `drop` did.
#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    pub set: String,
    #[serde(with = "crate::as_owner::wire_path")]
    pub repository: PathBuf,
    pub refs: Vec<String>,
    pub dry_run: bool,
    /// Records that listed the set; a `preserved` one with no set left is
    /// now `removed`.
    pub records: Vec<String>,
}

/// `treeward drop ID|SET [--repo R]`: deletes the set a record lists (its
/// newest) or the set named, as the repository's owner, and forgets it in
/// the ledger.
pub fn drop_set(
    config: &Config,
    target: &str,
    repo: Option<&Path>,
    worker: &Worker,
    dry_run: bool,
) -> Result<Dropped, Error> {
    let ledger = Ledger::new(&config.ledger);
    let doc = ledger.read()?;
    let plan: Resolved = super::restore::resolve_set(config, &doc, target, repo, worker)?;
    let request = Request::DropSet {
        repository: plan.repository.common().to_path_buf(),
        set: plan.set.clone(),
        dry_run,
    };
    let refs = match super::call_as_owner(worker, &plan.repository, &request)? {
        Response::Dropped { refs } => refs,
        other => return Err(Error::Failed(format!("unexpected answer {other:?}"))),
    };
    let prefix = format!("{NAMESPACE}/{}/", plan.set);
    let mut records = Vec::new();
    let forget = |doc: &mut Document, records: &mut Vec<String>| {
        for r in doc
            .records
            .iter_mut()
            .filter(|r| r.preserved_refs.iter().any(|p| p.starts_with(&prefix)))
        {
            records.push(r.id.clone());
            r.preserved_refs.retain(|p| !p.starts_with(&prefix));
            if r.state == State::Preserved && r.preserved_refs.is_empty() {
                r.transition(State::Removed);
            }
        }
    };
    if dry_run {
        forget(&mut doc.clone(), &mut records);
    } else {
        ledger.update(|doc| forget(doc, &mut records))?;
    }
    Ok(Dropped {
        set: plan.set,
        repository: plan.repository.common().to_path_buf(),
        refs,
        dry_run,
        records,
    })
}

/// The line a person reads after `drop`.
pub fn render_dropped(d: &Dropped) -> String {
    let verb = if d.dry_run { "would drop" } else { "dropped" };
    format!(
        "{verb} {} from {} ({} ref(s){})\n",
        d.set,
        crate::style::path(&d.repository),
        d.refs.len(),
        if d.records.is_empty() {
            String::new()
        } else {
            format!("; ledger record(s) {}", d.records.join(", "))
        }
    )
}
