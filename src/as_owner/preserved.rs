//! Preserved sets as the repository's owner: reading the sets under
//! `refs/treeward/preserved/` with their metadata ([`sets`]) and deleting
//! one ([`drop`]). A ref written as root would leave root-owned files in the
//! user's repository, so these run only as its owner; `treeward list
//! --preserved` and `treeward drop` ([`crate::admin::preserved`]) reach them
//! through the worker.

use crate::git::Git;
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
