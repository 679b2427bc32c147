//! Preserved sets in plain sight: `treeward list --preserved` lists the
//! sets under `refs/treeward/preserved/` of the repositories treeward
//! knows, and `treeward drop ID|SET` deletes one once it is no longer
//! wanted, as the repository's owner (a ref written as root would leave
//! root-owned files in the user's repository).
//!
//! Which repositories: those of ledger records whose path is an entry of a
//! configured root, each verified as the root's owner's ([`known`]); the
//! ledger is untrusted, so nothing else is opened. Reading a set's refs and
//! `meta`, and deleting its refs, runs as that owner ([`sets`], [`drop`]
//! through the owner worker). Failure mode: a repository that cannot be
//! read is listed with its error, the others still are; a drop deletes all
//! of a set's refs in one `git update-ref` transaction, or none.

use crate::as_owner::{Request, Response, Worker};
use crate::config::Config;
use crate::error::Error;
use crate::git::Git;
use crate::ledger::{Document, Ledger, State};
use crate::preserve::layout::{Meta, META};
use crate::preserve::NAMESPACE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One preserved set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    /// The common git dir it lives in.
    #[serde(with = "crate::as_owner::wire_path")]
    pub repository: PathBuf,
    /// `<name>/<stamp>`: what `treeward restore` and `drop` take.
    pub set: String,
    /// Where the worktree was (from the set's metadata).
    pub path: Option<String>,
    /// When it was preserved (`<stamp>`, UTC).
    pub stamp: String,
    pub branch: Option<String>,
    pub head: Option<String>,
    /// What is in it, in words: `files and index`, `detached HEAD`, `3
    /// per-worktree refs`, `1 nested repository`, `in-progress state`.
    pub contents: Vec<String>,
    /// Its refs, full names.
    pub refs: Vec<String>,
}

/// The `list --preserved` document.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub sets: Vec<Set>,
    /// Repositories that could not be read, and why.
    pub errors: Vec<String>,
}

/// Pure: the sets among full ref names, by `<name>/<stamp>`, each with its
/// refs.
pub fn group(refs: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in refs {
        let Some(rest) = r.strip_prefix(NAMESPACE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let mut parts = rest.splitn(3, '/');
        if let (Some(name), Some(stamp), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            sets.entry(format!("{name}/{stamp}"))
                .or_default()
                .push(r.clone());
        }
    }
    sets
}

/// Pure: what a set holds, in words, from its refs and metadata.
pub fn contents(refs: &[String], meta: Option<&Meta>) -> Vec<String> {
    let has = |suffix: &str| refs.iter().any(|r| r.ends_with(suffix));
    let mut out = Vec::new();
    if has("/state") {
        out.push("files and index".to_owned());
    } else if has("/work") {
        out.push("uncommitted work (stash-shaped)".to_owned());
    }
    if has("/head") {
        out.push("detached HEAD".to_owned());
    }
    if let Some(m) = meta {
        if !m.worktree_refs.is_empty() {
            out.push(format!("{} per-worktree ref(s)", m.worktree_refs.len()));
        }
        if !m.root_refs.is_empty() {
            out.push("in-progress state".to_owned());
        }
        if !m.modules.is_empty() {
            out.push(format!("{} nested repositor(ies)", m.modules.len()));
        }
    }
    out
}

/// The sets of the repository at `common`. Runs as its owner.
pub fn sets(common: &Path, owner: u32) -> Result<Vec<Set>, String> {
    let out = Git::new(common, owner)
        .map_err(|e| e.to_string())?
        .read_only()
        .args(["for-each-ref", "--format=%(refname)", NAMESPACE])
        .output()
        .map_err(|e| e.to_string())?;
    let refs: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut found = Vec::new();
    for (set, refs) in group(&refs) {
        let meta = refs
            .iter()
            .find(|r| r.ends_with("/state"))
            .and_then(|state| read_meta(common, owner, state));
        let stamp = set.rsplit('/').next().unwrap_or_default().to_owned();
        found.push(Set {
            repository: common.to_path_buf(),
            contents: contents(&refs, meta.as_ref()),
            path: meta.as_ref().map(|m| m.path.clone()),
            branch: meta.as_ref().and_then(|m| m.branch.clone()),
            head: meta.as_ref().and_then(|m| m.head.clone()),
            set,
            stamp,
            refs,
        });
    }
    Ok(found)
}

fn read_meta(common: &Path, owner: u32, state: &str) -> Option<Meta> {
    let bytes = Git::new(common, owner)
        .ok()?
        .read_only()
        .args(["cat-file", "blob", &format!("{state}:{META}")])
        .output()
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Deletes every ref of `set` (`<name>/<stamp>`) in the repository at
/// `common`, in one transaction, each only if it still points where it was
/// read; returns the refs deleted (that would be, under `dry_run`). Runs
/// as its owner.
pub fn drop(common: &Path, owner: u32, set: &str, dry_run: bool) -> Result<Vec<String>, String> {
    let prefix = format!("{NAMESPACE}/{set}/");
    let out = Git::new(common, owner)
        .map_err(|e| e.to_string())?
        .read_only()
        .args(["for-each-ref", "--format=%(refname) %(objectname)", &prefix])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let refs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    if refs.is_empty() {
        return Err(format!("no preserved set {set} in {}", common.display()));
    }
    if !dry_run {
        let mut stdin = Vec::new();
        for (name, oid) in &refs {
            stdin.extend_from_slice(format!("delete {name} {oid}\n").as_bytes());
        }
        Git::new(common, owner)
            .map_err(|e| e.to_string())?
            .args(["update-ref", "--stdin"])
            .stdin(stdin)
            .output()
            .map_err(|e| e.to_string())?;
    }
    Ok(refs.iter().map(|(n, _)| (*n).to_owned()).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_group_into_sets() {
        let refs: Vec<String> = [
            "refs/treeward/preserved/a/20260101T000000Z/state",
            "refs/treeward/preserved/a/20260101T000000Z/work",
            "refs/treeward/preserved/a/20260101T000000Z-1/state",
            "refs/treeward/preserved/b/20260102T000000Z/worktree/wip",
            "refs/treeward/preserved/stray",
            "refs/heads/main",
        ]
        .map(str::to_owned)
        .to_vec();
        let sets = group(&refs);
        assert_eq!(
            sets.keys().collect::<Vec<_>>(),
            [
                "a/20260101T000000Z",
                "a/20260101T000000Z-1",
                "b/20260102T000000Z"
            ]
        );
        assert_eq!(sets["a/20260101T000000Z"].len(), 2);
        assert_eq!(
            contents(&sets["a/20260101T000000Z"], None),
            ["files and index"]
        );
    }
}
