//! Is a branch's work already in the default branch? Asked of git.
//!
//! The targets, as worktrunk defines them: the local default branch and its
//! upstream, whichever is ahead, or both when they have diverged. A branch
//! is integrated into a target when it is the same commit, an ancestor of
//! it, made of commits the target holds patch-equivalents of (`git cherry`:
//! cherry-picks, rebase merges), or when its changes are already there
//! (squash merges, also after later edits and renames on the target).
//! Cheapest test first: most branches are decided without a diff.
//!
//! "Already there" is the question a merge answers (would merging the
//! branch change the target?), asked path by path with read-only plumbing:
//! for every path the branch changed since the merge base (`git diff-tree
//! -M`, so a rename on the branch is one change), the target must hold the
//! branch's version, or a version that a clean three-way merge of that
//! file leaves as it is (`git merge-file -p --object-id`, which prints the
//! result instead of writing it); a file the target renamed since the merge
//! base is followed to its new name (`git diff-tree -M`). A merge simulated
//! with `git merge-tree --write-tree` would be simpler, but git "freshens"
//! (touches the mtime of) every object it would write that the repository
//! already has, even with a throwaway object directory in front: the
//! checker would not be read-only. Cases git's merge would call conflicts
//! (a file added on both sides, a change on one side and a deletion on the
//! other, type changes) are not integrated here either.

use super::refs::{self, DefaultBranch, Ref, Refs};
use super::Repo;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a branch is integrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The branch's tip is the target's.
    SameCommit,
    /// The target contains the branch's tip.
    Ancestor,
    /// Every commit of the branch has a patch-equivalent on the target
    /// (cherry-picked, rebased).
    PatchEquivalent,
    /// The branch's changes are already in the target (squash-merged, also
    /// after later renames on the target).
    ChangesPresent,
}

/// Into which target, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    /// The target's short name (`main`, `origin/main`).
    pub target: String,
    /// How.
    pub how: How,
}

/// The answer for one branch tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The default branch's name; `None` when the repository has none
    /// (nothing to be integrated into).
    pub default_branch: Option<String>,
    /// The targets tested (short names).
    pub targets: Vec<String>,
    /// `Some` when integrated.
    pub integration: Option<Integration>,
}

impl Verdict {
    /// `Some(true/false)`, or `None` when there is no default branch.
    pub fn integrated(&self) -> Option<bool> {
        self.default_branch
            .as_ref()
            .map(|_| self.integration.is_some())
    }
}

/// Whether the commit `tip` is integrated into the default branch of
/// `repo` (the branch deletion path asks this before deleting a branch).
/// Runs `git for-each-ref` itself; [`integrated_into`] takes refs already
/// read.
pub fn integrated(repo: &Repo, tip: &str) -> Result<Verdict, String> {
    let out = repo.output(repo.git()?.args(["for-each-ref", refs::FORMAT]))?;
    let refs = refs::parse(&out)?;
    integrated_into(repo, tip, &refs)
}

/// [`integrated`] with the refs already read.
pub fn integrated_into(repo: &Repo, tip: &str, refs: &Refs) -> Result<Verdict, String> {
    let Some(default) = refs.default_branch() else {
        return Ok(Verdict {
            default_branch: None,
            targets: Vec::new(),
            integration: None,
        });
    };
    let mut verdict = Verdict {
        default_branch: Some(default.name()),
        targets: Vec::new(),
        integration: None,
    };
    // The tip is one of them: integrated whatever the other is.
    let candidates = [&default.local, &default.upstream];
    if let Some(t) = candidates.iter().copied().flatten().find(|t| t.oid == tip) {
        verdict.targets.push(refs::short(&t.name).to_owned());
        verdict.integration = Some(Integration {
            target: refs::short(&t.name).to_owned(),
            how: How::SameCommit,
        });
        return Ok(verdict);
    }
    let targets = targets(repo, &default)?;
    verdict.targets = targets
        .iter()
        .map(|t| refs::short(&t.name).to_owned())
        .collect();
    for t in &targets {
        if let Some(how) = into_target(repo, tip, &t.oid)? {
            verdict.integration = Some(Integration {
                target: refs::short(&t.name).to_owned(),
                how,
            });
            break;
        }
    }
    Ok(verdict)
}

/// The local default branch and its upstream: whichever is ahead, both
/// when they have diverged, the one that exists when only one does.
fn targets(repo: &Repo, d: &DefaultBranch) -> Result<Vec<Ref>, String> {
    let (local, upstream) = match (&d.local, &d.upstream) {
        (Some(l), Some(u)) if l.oid != u.oid => (l, u),
        (Some(one), _) | (None, Some(one)) => return Ok(vec![one.clone()]),
        (None, None) => return Ok(Vec::new()),
    };
    if is_ancestor(repo, &local.oid, &upstream.oid)? {
        Ok(vec![upstream.clone()])
    } else if is_ancestor(repo, &upstream.oid, &local.oid)? {
        Ok(vec![local.clone()])
    } else {
        Ok(vec![local.clone(), upstream.clone()])
    }
}

/// How `tip` is integrated into the commit `target`, if it is.
fn into_target(repo: &Repo, tip: &str, target: &str) -> Result<Option<How>, String> {
    if tip == target {
        return Ok(Some(How::SameCommit));
    }
    if is_ancestor(repo, tip, target)? {
        return Ok(Some(How::Ancestor));
    }
    let base = repo.run(repo.git()?.args(["merge-base", tip, target]))?;
    match base.code {
        Some(0) => {}
        // Unrelated histories: nothing of the branch is in the target.
        Some(1) if base.stdout.is_empty() => return Ok(None),
        _ => return Err(repo.failed("merge-base", base)),
    }
    let base = String::from_utf8_lossy(&base.stdout).trim().to_owned();
    let cherry = repo.output(repo.git()?.args(["cherry", target, tip]))?;
    let lines: Vec<&[u8]> = cherry
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if !lines.is_empty() && lines.iter().all(|l| l.starts_with(b"- ")) {
        return Ok(Some(How::PatchEquivalent));
    }
    if changes_present(repo, &base, tip, target)? {
        return Ok(Some(How::ChangesPresent));
    }
    Ok(None)
}

/// `git merge-base --is-ancestor a b`.
fn is_ancestor(repo: &Repo, a: &str, b: &str) -> Result<bool, String> {
    let done = repo.run(repo.git()?.args(["merge-base", "--is-ancestor", a, b]))?;
    match done.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(repo.failed("merge-base --is-ancestor", done)),
    }
}

/// One change of `git diff-tree -r -z --raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    status: u8,
    /// The path before (for a rename, the source).
    src: Vec<u8>,
    /// The path after (the source itself unless renamed).
    dst: Vec<u8>,
    old: Side,
    new: Side,
}

/// One side of a change: mode and object id (`None` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Side(Option<(String, String)>);

impl Side {
    fn of(mode: &str, oid: &str) -> Side {
        Side((mode != "000000").then(|| (mode.to_owned(), oid.to_owned())))
    }
}

/// Parses `git diff-tree -r -z --raw` output: `:<m1> <m2> <o1> <o2> <S>`,
/// then the path, or two for a rename or copy.
fn parse_raw(out: &[u8]) -> Result<Vec<Change>, String> {
    let mut fields = out.split(|b| *b == 0);
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        if meta.is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "git diff-tree: unexpected record {:?}",
                String::from_utf8_lossy(meta)
            )
        };
        let meta =
            std::str::from_utf8(meta.strip_prefix(b":").ok_or_else(bad)?).map_err(|_| bad())?;
        let [m1, m2, o1, o2, st] = meta.split(' ').collect::<Vec<_>>()[..] else {
            return Err(bad());
        };
        let status = *st.as_bytes().first().ok_or_else(bad)?;
        let mut path = || fields.next().filter(|p| !p.is_empty()).ok_or_else(bad);
        let src = path()?.to_vec();
        let dst = if matches!(status, b'R' | b'C') {
            path()?.to_vec()
        } else {
            src.clone()
        };
        changes.push(Change {
            status,
            src,
            dst,
            old: Side::of(m1, o1),
            new: Side::of(m2, o2),
        });
    }
    Ok(changes)
}

/// `git diff-tree -r -z --raw` of two commits, with renames detected when
/// `renames`.
fn diff_tree(repo: &Repo, a: &str, b: &str, renames: bool) -> Result<Vec<Change>, String> {
    let rename = if renames { "-M" } else { "--no-renames" };
    let out = repo.output(
        repo.git()?
            .args(["diff-tree", "-r", "-z", "--raw", rename, a, b]),
    )?;
    parse_raw(&out)
}

/// Whether merging `tip` into `target` (merge base `base`) would leave the
/// target as it is: see the module's documentation.
fn changes_present(repo: &Repo, base: &str, tip: &str, target: &str) -> Result<bool, String> {
    let branch = diff_tree(repo, base, tip, true)?;
    // What the target holds where it differs from the tip (`None`: absent).
    let differs: HashMap<Vec<u8>, Side> = diff_tree(repo, tip, target, false)?
        .into_iter()
        .map(|c| (c.dst, c.new))
        .collect();
    let mut renamed_on_target: Option<HashMap<Vec<u8>, Side>> = None;
    for c in &branch {
        // The branch's side of a rename is gone from its source.
        if c.src != c.dst && differs.contains_key(&c.src) {
            return Ok(false);
        }
        let Some(theirs) = differs.get(&c.dst) else {
            // The target holds exactly the branch's version.
            continue;
        };
        let ours = match &theirs.0 {
            Some(entry) => entry.clone(),
            None => {
                // Gone from the target: renamed there since the base?
                let renamed = match &mut renamed_on_target {
                    Some(r) => r,
                    slot => slot.insert(
                        diff_tree(repo, base, target, true)?
                            .into_iter()
                            .filter(|r| r.status == b'R')
                            .map(|r| (r.src, r.new))
                            .collect(),
                    ),
                };
                match renamed.get(&c.src).and_then(|s| s.0.clone()) {
                    Some(entry) => entry,
                    None => return Ok(false),
                }
            }
        };
        let (Some(base_side), Some(tip_side)) = (&c.old.0, &c.new.0) else {
            // Added or deleted on the branch, different on the target.
            return Ok(false);
        };
        if !merges_to_ours(repo, base_side, &ours, tip_side)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the three-way merge of one file, `ours` being the target's
/// version, is clean and leaves `ours` unchanged. Regular files only; the
/// result is printed by git, never written.
fn merges_to_ours(
    repo: &Repo,
    (base_mode, base): &(String, String),
    (our_mode, ours): &(String, String),
    (their_mode, theirs): &(String, String),
) -> Result<bool, String> {
    let regular = |m: &str| m == "100644" || m == "100755";
    if ![base_mode, our_mode, their_mode].iter().all(|m| regular(m)) {
        return Ok(false);
    }
    // A mode the branch changed must be the target's.
    if their_mode != base_mode && their_mode != our_mode {
        return Ok(false);
    }
    let merged = repo.run(repo.git()?.args([
        "merge-file",
        "-p",
        "--object-id",
        ours.as_str(),
        base.as_str(),
        theirs.as_str(),
    ]))?;
    match merged.code {
        Some(0) => {}
        // The number of conflicts.
        Some(n) if n > 0 && n < 128 => return Ok(false),
        _ => return Err(repo.failed("merge-file", merged)),
    }
    let content = repo.output(repo.git()?.args(["cat-file", "blob", ours.as_str()]))?;
    Ok(merged.stdout == content)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn raw_records_with_renames() {
        let out = format!(
            ":100644 000000 {A} {Z} D\0gone\0:100644 100644 {A} {B} R097\0old\0new\0\
             :000000 100755 {Z} {B} A\0added\0"
        );
        let c = parse_raw(out.as_bytes()).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].status, c[0].new.0.clone()), (b'D', None));
        assert_eq!(
            (c[1].src.as_slice(), c[1].dst.as_slice()),
            (&b"old"[..], &b"new"[..])
        );
        assert_eq!(c[1].old.0, Some(("100644".to_owned(), A.to_owned())));
        assert_eq!(c[2].new.0, Some(("100755".to_owned(), B.to_owned())));
        assert_eq!(c[2].old.0, None);
    }

    #[test]
    fn malformed_raw_output_fails_closed() {
        for bad in [
            ":100644 100644 a b\0p\0",
            "100644 100644 a b M\0p\0",
            ":100644 100644 a b R\0p\0",
        ] {
            assert!(parse_raw(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
