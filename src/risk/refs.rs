//! The refs a worktree sees (`git for-each-ref`, one process, whatever the
//! ref backend: files or reftable): which of them die with the worktree
//! (per-worktree refs), and which branch is the repository's default, the
//! one a branch is integrated into.

use super::RiskError;

/// Ref namespaces git keeps per worktree, in the worktree's admin dir
/// (git-worktree(1), "Refs"): they die with it.
pub const PER_WORKTREE: [&str; 3] = ["refs/worktree/", "refs/bisect/", "refs/rewritten/"];

/// Whether `name` is a per-worktree ref.
pub fn is_per_worktree(name: &str) -> bool {
    PER_WORKTREE.iter().any(|p| name.starts_with(p))
}

/// The `git for-each-ref` format [`parse`] reads.
pub const FORMAT: &str = "--format=%(refname) %(objectname) %(symref) %(upstream)";

/// One ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub oid: String,
    /// What a symbolic ref points to.
    pub symref: Option<String>,
    /// A branch's configured upstream (full name).
    pub upstream: Option<String>,
}

/// Every ref the worktree sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs(pub Vec<Ref>);

/// Parses the output of `git for-each-ref` with [`FORMAT`] (ref names hold
/// no spaces: git forbids them).
pub fn parse(out: &[u8]) -> Result<Refs, RiskError> {
    let text = String::from_utf8_lossy(out);
    let mut refs = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let [name, oid, symref, upstream] = line.split(' ').collect::<Vec<_>>()[..] else {
            return Err(RiskError::unexpected(
                "git for-each-ref",
                "line",
                line.as_bytes(),
            ));
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        refs.push(Ref {
            name: name.to_owned(),
            oid: oid.to_owned(),
            symref: some(symref),
            upstream: some(upstream),
        });
    }
    Ok(Refs(refs))
}

/// The shared refs of repositories (every ref but the per-worktree ones),
/// each listed once for a run of reclaims rather than once per worktree:
/// one `git for-each-ref` per repository instead of one per entry.
///
/// A listing is as old as the run (the reaper's chunk: some 100 ms). It is
/// dropped by whoever changes refs through treeward (a reclaim that
/// preserves or has a branch it may delete: [`SharedRefs::changed`]); a
/// branch someone else deletes meanwhile is a race of the same kind as
/// one between the listing and the removal, which a listing per worktree
/// has too.
#[derive(Debug, Default)]
pub struct SharedRefs(std::sync::Mutex<std::collections::BTreeMap<std::path::PathBuf, Refs>>);

impl SharedRefs {
    /// The shared refs of the repository whose common dir is `common`,
    /// listed by `list` (whose per-worktree refs, the main worktree's, are
    /// left out) unless already listed.
    pub fn of(
        &self,
        common: &std::path::Path,
        list: impl FnOnce() -> Result<Refs, RiskError>,
    ) -> Result<Refs, RiskError> {
        let mut listed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(refs) = listed.get(common) {
            return Ok(refs.clone());
        }
        let mut refs = list()?;
        refs.0.retain(|r| !is_per_worktree(&r.name));
        listed.insert(common.to_path_buf(), refs.clone());
        Ok(refs)
    }

    /// The refs of the repository whose common dir is `common` may have
    /// changed: the next question lists them again.
    pub fn changed(&self, common: &std::path::Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(common);
    }
}

/// The repository's default branch: the local branch and its upstream,
/// each when it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultBranch {
    pub local: Option<Ref>,
    pub upstream: Option<Ref>,
}

impl DefaultBranch {
    /// The name people call it by: the local branch's short name, else the
    /// remote one's.
    pub fn name(&self) -> String {
        self.local
            .as_ref()
            .or(self.upstream.as_ref())
            .map(|r| short(&r.name).to_owned())
            .unwrap_or_default()
    }
}

/// A ref's short name (`main`, `origin/main`).
pub fn short(name: &str) -> &str {
    name.strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/remotes/"))
        .unwrap_or(name)
}

impl Refs {
    pub fn get(&self, name: &str) -> Option<&Ref> {
        self.0.iter().find(|r| r.name == name)
    }

    /// The per-worktree refs, sorted.
    pub fn per_worktree(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .iter()
            .filter(|r| is_per_worktree(&r.name))
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether a ref that outlives the worktree (any but a per-worktree
    /// one) points at `oid` itself: everything `oid` reaches, it reaches.
    pub fn survivor_at(&self, oid: &str) -> bool {
        self.0
            .iter()
            .any(|r| r.oid == oid && !is_per_worktree(&r.name))
    }

    /// The default branch: the one `origin/HEAD` names (locally, with its
    /// configured upstream, else `origin/HEAD`'s target as the upstream),
    /// else the first local `main` or `master` with its upstream, else
    /// `origin/main` or `origin/master` alone. `None` when there is none.
    pub fn default_branch(&self) -> Option<DefaultBranch> {
        let with_upstream = |local: &Ref, fallback: Option<&Ref>| DefaultBranch {
            upstream: local
                .upstream
                .as_deref()
                .and_then(|u| self.get(u))
                .or(fallback)
                .cloned(),
            local: Some(local.clone()),
        };
        let origin_head = self
            .get("refs/remotes/origin/HEAD")
            .and_then(|h| h.symref.as_deref())
            .and_then(|t| self.get(t));
        if let Some(remote) = origin_head {
            let name = remote.name.strip_prefix("refs/remotes/origin/")?;
            return Some(match self.get(&format!("refs/heads/{name}")) {
                Some(local) => with_upstream(local, Some(remote)),
                None => DefaultBranch {
                    local: None,
                    upstream: Some(remote.clone()),
                },
            });
        }
        for name in ["main", "master"] {
            if let Some(local) = self.get(&format!("refs/heads/{name}")) {
                return Some(with_upstream(local, None));
            }
        }
        ["main", "master"].iter().find_map(|name| {
            let remote = self.get(&format!("refs/remotes/origin/{name}"))?;
            Some(DefaultBranch {
                local: None,
                upstream: Some(remote.clone()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, oid, symref, upstream)` rows as `git for-each-ref` prints
    /// them.
    fn refs(rows: &[(&str, &str, &str, &str)]) -> Refs {
        let text: String = rows
            .iter()
            .map(|(n, o, s, u)| format!("{n} {o} {s} {u}\n"))
            .collect();
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn per_worktree_namespaces() {
        assert!(is_per_worktree("refs/worktree/wip"));
        assert!(is_per_worktree("refs/bisect/bad"));
        assert!(is_per_worktree("refs/rewritten/onto"));
        assert!(!is_per_worktree("refs/heads/worktree/x"));
        assert!(!is_per_worktree("refs/tags/v1"));
        let r = refs(&[
            ("refs/heads/main", "a", "", ""),
            ("refs/rewritten/x", "b", "", ""),
            ("refs/bisect/bad", "c", "", ""),
            ("refs/tags/t", "d", "", ""),
        ]);
        assert_eq!(
            r.per_worktree(),
            vec!["refs/bisect/bad", "refs/rewritten/x"]
        );
    }

    #[test]
    fn a_survivor_is_a_shared_ref_at_that_very_commit() {
        let r = refs(&[
            ("refs/heads/main", "a", "", ""),
            ("refs/worktree/wip", "b", "", ""),
            ("refs/treeward/preserved/w/1/head", "c", "", ""),
        ]);
        assert!(r.survivor_at("a"));
        assert!(r.survivor_at("c"));
        // Dies with the worktree: keeps nothing alive.
        assert!(!r.survivor_at("b"));
        assert!(!r.survivor_at("d"));
    }

    #[test]
    fn origin_head_names_the_default_and_its_upstream() {
        let r = refs(&[
            ("refs/heads/trunk", "a", "", "refs/remotes/origin/trunk"),
            ("refs/heads/main", "m", "", ""),
            (
                "refs/remotes/origin/HEAD",
                "b",
                "refs/remotes/origin/trunk",
                "",
            ),
            ("refs/remotes/origin/trunk", "b", "", ""),
        ]);
        let d = r.default_branch().unwrap();
        assert_eq!(d.local.unwrap().name, "refs/heads/trunk");
        assert_eq!(d.upstream.unwrap().name, "refs/remotes/origin/trunk");
    }

    #[test]
    fn origin_head_without_a_local_branch_is_the_remote_alone() {
        let r = refs(&[
            (
                "refs/remotes/origin/HEAD",
                "b",
                "refs/remotes/origin/main",
                "",
            ),
            ("refs/remotes/origin/main", "b", "", ""),
        ]);
        let d = r.default_branch().unwrap();
        assert_eq!((d.name(), d.local), ("origin/main".to_owned(), None));
    }

    #[test]
    fn local_main_with_or_without_an_upstream() {
        let r = refs(&[
            ("refs/heads/master", "x", "", ""),
            ("refs/heads/main", "a", "", ""),
        ]);
        let d = r.default_branch().unwrap();
        assert_eq!((d.name(), d.upstream), ("main".to_owned(), None));

        let r = refs(&[
            ("refs/heads/main", "a", "", "refs/remotes/up/main"),
            ("refs/remotes/up/main", "b", "", ""),
        ]);
        let d = r.default_branch().unwrap();
        assert_eq!(d.upstream.unwrap().oid, "b");

        assert_eq!(
            refs(&[("refs/heads/topic", "a", "", "")]).default_branch(),
            None
        );
    }

    #[test]
    fn shared_refs_are_listed_once_without_per_worktree_ones_until_changed() {
        let shared = SharedRefs::default();
        let common = std::path::Path::new("/r/.git");
        let listings = std::cell::Cell::new(0);
        let list = || {
            listings.set(listings.get() + 1);
            Ok(refs(&[
                ("refs/bisect/bad", "b", "", ""),
                ("refs/heads/main", "a", "", ""),
            ]))
        };
        let names = |r: Refs| r.0.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(shared.of(common, list).unwrap()), ["refs/heads/main"]);
        assert_eq!(names(shared.of(common, list).unwrap()), ["refs/heads/main"]);
        assert_eq!(
            listings.get(),
            1,
            "the second question is answered from the listing"
        );
        let other = std::path::Path::new("/s/.git");
        shared.of(other, list).unwrap();
        assert_eq!(listings.get(), 2, "another repository is listed for itself");
        shared.changed(common);
        shared.of(common, list).unwrap();
        assert_eq!(listings.get(), 3, "listed again once changed");
        let failed = shared.of(std::path::Path::new("/t/.git"), || {
            Err(RiskError::ReaderPanicked)
        });
        assert!(failed.is_err());
        shared.of(std::path::Path::new("/t/.git"), list).unwrap();
        assert_eq!(listings.get(), 4, "a failed listing is not kept");
    }

    #[test]
    fn malformed_lines_fail_closed() {
        assert!(parse(b"refs/heads/main a\n").is_err());
    }
}
