//! The verdict: from facts about a worktree to the list of reasons its
//! removal would lose work. Pure, so every combination is unit-tested without
//! a repository.

use serde::{Deserialize, Serialize};

/// Why removing a worktree would lose work (or why that cannot be known).
/// The names are a contract (SPEC `treeward-check --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Changes in the index that no commit holds.
    Staged,
    /// Tracked files changed in the working tree.
    Modified,
    /// Tracked files deleted from the working tree.
    Deleted,
    /// Files git does not track and does not ignore.
    Untracked,
    /// An unresolved merge conflict.
    Conflicted,
    /// The branch has commits its upstream lacks, or has no upstream.
    Unpushed,
    /// The branch is not integrated into the default branch.
    Unmerged,
    /// A detached HEAD whose commits no ref reaches: they die with the
    /// worktree's admin dir.
    DetachedUnreachable,
    /// Per-worktree refs (`refs/worktree/*`, `refs/bisect/*`,
    /// `refs/rewritten/*`), which die with the admin dir.
    WorktreeRefs,
    /// An operation in progress (merge, rebase, cherry-pick, revert, bisect,
    /// a sequencer run): its state lives in the admin dir.
    InProgress,
    /// A submodule or embedded repository inside the worktree holds
    /// uncommitted changes, or commits none of its remote-tracking refs
    /// reaches: its git dir dies with the worktree (or its admin dir).
    Submodule,
    /// A directory or file that is not a git worktree: its contents are not
    /// in any repository.
    NotAWorktree,
    /// A worktree whose admin dir or repository is gone: nothing can be
    /// compared, so its files may be the only copy.
    Broken,
    /// The main worktree of a repository (a clone): removing it removes the
    /// repository with every branch in it.
    MainWorktree,
    /// Assessing failed; at risk because nothing was proven (fail closed).
    Error,
}

/// Counts of uncommitted changes, as `git status` would show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub staged: usize,
    pub modified: usize,
    pub deleted: usize,
    pub untracked: usize,
    pub conflicted: usize,
    /// Edits `git status` does not show: files marked skip-worktree or
    /// assume-unchanged whose content differs from the index (also counted
    /// in `modified` or `deleted`).
    pub hidden: usize,
}

/// What is known of the checked-out branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchFacts {
    /// Integrated into the default branch; `None` when there is no default
    /// branch to compare with.
    pub integrated: Option<bool>,
    /// Commits ahead of the upstream; `None` when there is no upstream.
    pub ahead_of_upstream: Option<usize>,
}

/// The facts about a worktree that decide its verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub changes: Changes,
    /// `None` when HEAD is detached or unborn.
    pub branch: Option<BranchFacts>,
    pub detached_unreachable: usize,
    pub worktree_refs: usize,
    /// Operations in progress (`merge`, `rebase`, …).
    pub in_progress: usize,
    /// Submodules and embedded repositories holding work of their own.
    pub submodules: usize,
}

/// The reasons removing the worktree (and, as the orchestrators that call the
/// checker do, deleting its branch) would lose work; empty means nothing
/// would be lost.
pub fn reasons(facts: &Facts) -> Vec<Reason> {
    let c = &facts.changes;
    let mut out = Vec::new();
    for (count, reason) in [
        (c.staged, Reason::Staged),
        (c.modified, Reason::Modified),
        (c.deleted, Reason::Deleted),
        (c.untracked, Reason::Untracked),
        (c.conflicted, Reason::Conflicted),
    ] {
        if count > 0 {
            out.push(reason);
        }
    }
    if let Some(b) = facts.branch {
        out.extend(branch_reasons(b));
    }
    if facts.detached_unreachable > 0 {
        out.push(Reason::DetachedUnreachable);
    }
    if facts.worktree_refs > 0 {
        out.push(Reason::WorktreeRefs);
    }
    if facts.in_progress > 0 {
        out.push(Reason::InProgress);
    }
    if facts.submodules > 0 {
        out.push(Reason::Submodule);
    }
    out
}

/// A branch's commits are safe when they are integrated into the default
/// branch or all pushed to its upstream; otherwise both facts are named.
fn branch_reasons(b: BranchFacts) -> Vec<Reason> {
    if b.integrated == Some(true) || b.ahead_of_upstream == Some(0) {
        return Vec::new();
    }
    vec![Reason::Unpushed, Reason::Unmerged]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(integrated: Option<bool>, ahead: Option<usize>) -> Facts {
        Facts {
            branch: Some(BranchFacts {
                integrated,
                ahead_of_upstream: ahead,
            }),
            ..Facts::default()
        }
    }

    #[test]
    fn clean_worktree_has_no_reasons() {
        assert!(reasons(&Facts::default()).is_empty());
    }

    #[test]
    fn each_change_kind_alone_and_together() {
        let cases = [
            (
                Changes {
                    staged: 1,
                    ..Changes::default()
                },
                vec![Reason::Staged],
            ),
            (
                Changes {
                    modified: 2,
                    ..Changes::default()
                },
                vec![Reason::Modified],
            ),
            (
                Changes {
                    deleted: 1,
                    ..Changes::default()
                },
                vec![Reason::Deleted],
            ),
            (
                Changes {
                    untracked: 5,
                    ..Changes::default()
                },
                vec![Reason::Untracked],
            ),
            (
                Changes {
                    conflicted: 1,
                    ..Changes::default()
                },
                vec![Reason::Conflicted],
            ),
            (
                Changes {
                    staged: 1,
                    modified: 1,
                    deleted: 1,
                    untracked: 1,
                    conflicted: 1,
                    hidden: 0,
                },
                vec![
                    Reason::Staged,
                    Reason::Modified,
                    Reason::Deleted,
                    Reason::Untracked,
                    Reason::Conflicted,
                ],
            ),
        ];
        for (changes, want) in cases {
            assert_eq!(
                reasons(&Facts {
                    changes,
                    ..Facts::default()
                }),
                want,
                "{changes:?}"
            );
        }
    }

    #[test]
    fn branch_table() {
        let both = vec![Reason::Unpushed, Reason::Unmerged];
        let cases: [(Option<bool>, Option<usize>, Vec<Reason>); 8] = [
            (Some(true), None, vec![]),
            (Some(true), Some(3), vec![]),
            (Some(false), Some(0), vec![]),
            (None, Some(0), vec![]),
            (Some(false), Some(1), both.clone()),
            (Some(false), None, both.clone()),
            (None, None, both.clone()),
            (None, Some(2), both),
        ];
        for (integrated, ahead, want) in cases {
            assert_eq!(
                reasons(&branch(integrated, ahead)),
                want,
                "{integrated:?} {ahead:?}"
            );
        }
    }

    #[test]
    fn detached_and_worktree_refs_combine_with_changes() {
        let f = Facts {
            changes: Changes {
                untracked: 1,
                ..Changes::default()
            },
            branch: None,
            detached_unreachable: 2,
            worktree_refs: 1,
            in_progress: 0,
            submodules: 0,
        };
        assert_eq!(
            reasons(&f),
            vec![
                Reason::Untracked,
                Reason::DetachedUnreachable,
                Reason::WorktreeRefs
            ]
        );
    }

    #[test]
    fn in_progress_and_submodules_alone_and_together() {
        let only = |in_progress, submodules| {
            reasons(&Facts {
                in_progress,
                submodules,
                ..Facts::default()
            })
        };
        assert_eq!(only(1, 0), vec![Reason::InProgress]);
        assert_eq!(only(0, 2), vec![Reason::Submodule]);
        assert_eq!(only(1, 1), vec![Reason::InProgress, Reason::Submodule]);
        assert!(only(0, 0).is_empty());
    }
}
