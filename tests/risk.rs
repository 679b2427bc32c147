//! Risk assessment against real repositories built with the `git` binary:
//! each reason alone and combined, and the branch shapes that are and are not
//! at risk.

mod common;

use common::{git, write, Fixture};
use std::fs;
use treeward::risk::{assess, Kind, Reason};

fn reasons_of(path: &std::path::Path) -> Vec<Reason> {
    let a = assess(path);
    assert_eq!(
        a.at_risk,
        !a.reasons.is_empty(),
        "at_risk agrees with reasons: {a:?}"
    );
    a.reasons
}

#[test]
fn fresh_worktree_is_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("review-1", "task-1");
    let a = assess(&wt);
    assert_eq!(a.kind, Kind::LinkedWorktree);
    assert!(!a.at_risk, "{a:?}");
    assert_eq!(a.branch.as_deref(), Some("task-1"));
    assert_eq!(a.integrated, Some(true));
    // The local default branch, level with its upstream: one target.
    assert_eq!(a.default_branch.as_deref(), Some("main"));
    assert_eq!(a.integration_targets, vec!["main".to_owned()]);
    assert_eq!(a.worktree_name.as_deref(), Some("review-1"));
    assert_eq!(a.repository.as_deref(), Some(f.repo.join(".git").as_path()));
    assert_eq!(a.head, Some(git(&f.repo, &["rev-parse", "main"])));
}

#[test]
fn each_uncommitted_kind_alone() {
    let f = Fixture::new();

    let staged = f.worktree("staged", "b-staged");
    write(&staged.join("new.txt"), "x\n");
    git(&staged, &["add", "new.txt"]);
    assert_eq!(reasons_of(&staged), vec![Reason::Staged]);

    let modified = f.worktree("modified", "b-modified");
    write(&modified.join("README"), "changed\n");
    assert_eq!(reasons_of(&modified), vec![Reason::Modified]);

    let deleted = f.worktree("deleted", "b-deleted");
    fs::remove_file(deleted.join("README")).unwrap();
    assert_eq!(reasons_of(&deleted), vec![Reason::Deleted]);

    let untracked = f.worktree("untracked", "b-untracked");
    write(&untracked.join("deep/er/notes.md"), "x\n");
    write(&untracked.join("deep/other.md"), "y\n");
    let a = assess(&untracked);
    assert_eq!(a.reasons, vec![Reason::Untracked]);
    assert_eq!(a.changes.untracked, 2, "untracked files counted one by one");
}

#[test]
fn ignored_files_alone_are_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("ignored", "b-ignored");
    write(&wt.join("build.log"), "noise\n");
    write(&wt.join("target/debug/out"), "bin\n");
    assert_eq!(reasons_of(&wt), Vec::<Reason>::new());
}

#[test]
fn changes_combined() {
    let f = Fixture::new();
    let wt = f.worktree("combo", "b-combo");
    write(&wt.join("a.txt"), "a\n");
    git(&wt, &["add", "a.txt"]);
    write(&wt.join("README"), "changed\n");
    fs::remove_file(wt.join("src/lib.txt")).unwrap();
    write(&wt.join("b.txt"), "b\n");
    let a = assess(&wt);
    assert_eq!(
        a.reasons,
        vec![
            Reason::Staged,
            Reason::Modified,
            Reason::Deleted,
            Reason::Untracked
        ]
    );
    assert_eq!(
        (
            a.changes.staged,
            a.changes.modified,
            a.changes.deleted,
            a.changes.untracked
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn conflict_is_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("conflict", "b-conflict");
    f.commit(&f.repo, "README", "main side\n", "main edit");
    f.commit(&wt, "README", "branch side\n", "branch edit");
    let out = common::git_output(&wt, &["merge", "-q", "main"]);
    assert!(!out.status.success(), "the merge must conflict");
    let a = assess(&wt);
    assert!(a.reasons.contains(&Reason::Conflicted), "{a:?}");
    assert_eq!(a.changes.conflicted, 1);
}

#[test]
fn branch_with_one_unpushed_unintegrated_commit_is_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("ahead", "b-ahead");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::Unpushed, Reason::Unmerged]);
    assert_eq!(a.integrated, Some(false));
    assert_eq!(a.upstream, None);
}

#[test]
fn pushed_branch_is_not_at_risk_and_ahead_is_counted() {
    let f = Fixture::new();
    let wt = f.worktree("pushed", "b-pushed");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    git(&wt, &["push", "-q", "-u", "origin", "b-pushed"]);
    let a = assess(&wt);
    assert!(!a.at_risk, "{a:?}");
    assert_eq!(
        a.upstream.as_ref().map(|u| (u.name.as_str(), u.ahead)),
        Some(("origin/b-pushed", 0))
    );

    f.commit(&wt, "more.txt", "m\n", "more");
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::Unpushed, Reason::Unmerged]);
    assert_eq!(a.upstream.map(|u| u.ahead), Some(1));
}

#[test]
fn squash_merged_branch_is_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("squash", "b-squash");
    f.commit(&wt, "feature.txt", "f1\n", "feature 1");
    f.commit(&wt, "feature.txt", "f1\nf2\n", "feature 2");
    f.commit(
        &f.repo,
        "other.txt",
        "main moved on\n",
        "unrelated main work",
    );
    git(&f.repo, &["merge", "-q", "--squash", "b-squash"]);
    git(&f.repo, &["commit", "-q", "-m", "squash"]);
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let a = assess(&wt);
    assert_eq!(a.integrated, Some(true), "{a:?}");
    assert!(!a.at_risk);
}

#[test]
fn rebase_merged_branch_is_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("rebase", "b-rebase");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    f.commit(
        &f.repo,
        "other.txt",
        "main moved on\n",
        "unrelated main work",
    );
    // The branch's commit lands on main rewritten (a rebase merge).
    git(&f.repo, &["cherry-pick", "b-rebase"]);
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let a = assess(&wt);
    assert_eq!(a.integrated, Some(true), "{a:?}");
    assert!(!a.at_risk);
}

#[test]
fn integrated_branch_without_upstream_is_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("merged", "b-merged");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    git(
        &f.repo,
        &["merge", "-q", "--no-ff", "-m", "merge", "b-merged"],
    );
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let a = assess(&wt);
    assert_eq!(
        (a.integrated, a.upstream.is_none(), a.at_risk),
        (Some(true), true, false),
        "{a:?}"
    );
}

#[test]
fn detached_head_with_new_commit_is_at_risk() {
    let f = Fixture::new();
    let wt = f.detached_worktree("detached");
    assert_eq!(
        reasons_of(&wt),
        Vec::<Reason>::new(),
        "detached on main: reachable"
    );
    f.commit(&wt, "wip.txt", "w\n", "wip");
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::DetachedUnreachable]);
    assert_eq!((a.branch, a.detached_unreachable), (None, 1));
}

#[test]
fn detached_commit_kept_by_another_worktree_is_not_counted() {
    let f = Fixture::new();
    let one = f.detached_worktree("one");
    let sha = f.commit(&one, "wip.txt", "w\n", "wip");
    let two = f.detached_worktree("two");
    git(&two, &["checkout", "-q", "--detach", &sha]);
    assert_eq!(
        assess(&one).detached_unreachable,
        0,
        "two's HEAD keeps the commit alive"
    );
}

#[test]
fn per_worktree_refs_are_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("refs", "b-refs");
    git(&wt, &["update-ref", "refs/worktree/checkpoint", "HEAD"]);
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::WorktreeRefs]);
    assert_eq!(a.worktree_refs, vec!["refs/worktree/checkpoint".to_owned()]);
}

#[test]
fn locked_and_stash_are_reported_not_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("locked", "b-locked");
    git(
        &f.repo,
        &[
            "worktree",
            "lock",
            "--reason",
            "agent 7 is working",
            wt.to_str().unwrap(),
        ],
    );
    write(&wt.join("README"), "stash me\n");
    git(&wt, &["stash", "-q"]);
    let a = assess(&wt);
    assert!(a.locked);
    assert_eq!(a.lock_reason.as_deref(), Some("agent 7 is working"));
    assert_eq!(a.stashes, 1);
    assert!(!a.at_risk, "{a:?}");
}

#[test]
fn broken_worktrees_are_a_clear_verdict() {
    let f = Fixture::new();
    let admin_gone = f.worktree("admin-gone", "b-1");
    fs::remove_dir_all(f.repo.join(".git/worktrees/admin-gone")).unwrap();
    let a = assess(&admin_gone);
    assert_eq!(
        (a.kind, a.reasons.clone()),
        (Kind::Broken, vec![Reason::Broken])
    );
    assert!(
        a.error.as_deref().unwrap().contains("does not exist"),
        "{a:?}"
    );

    let repo_gone = f.worktree("repo-gone", "b-2");
    fs::remove_dir_all(f.repo.join(".git")).unwrap();
    let a = assess(&repo_gone);
    assert_eq!(a.kind, Kind::Broken);
    assert!(a.at_risk);
}

#[test]
fn plain_directories_files_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let a = assess(&empty);
    assert_eq!((a.kind, a.at_risk), (Kind::NotAWorktree, false));

    let full = tmp.path().join("full");
    write(&full.join("notes.txt"), "only copy\n");
    assert_eq!(reasons_of(&full), vec![Reason::NotAWorktree]);

    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&full, &link).unwrap();
    let a = assess(&link);
    assert_eq!((a.kind, a.at_risk), (Kind::Symlink, false));

    let a = assess(&tmp.path().join("nothing"));
    assert_eq!(a.kind, Kind::Missing);
    assert!(a.error.is_some());
}

#[test]
fn a_directory_inside_a_repository_is_not_that_repository() {
    let f = Fixture::new();
    let a = assess(&f.repo.join("src"));
    assert_eq!(a.kind, Kind::NotAWorktree);
}

#[test]
fn main_worktree_is_at_risk_as_a_whole_repository() {
    let f = Fixture::new();
    let a = assess(&f.repo);
    assert_eq!(a.kind, Kind::MainWorktree);
    assert_eq!(a.reasons, vec![Reason::MainWorktree]);
}

#[test]
fn git_error_is_at_risk_with_its_text() {
    let f = Fixture::new();
    let wt = f.worktree("corrupt", "b-corrupt");
    fs::write(f.repo.join(".git/worktrees/corrupt/index"), b"DIRC garbage").unwrap();
    let a = assess(&wt);
    assert!(a.reasons.contains(&Reason::Error), "{a:?}");
    assert!(a.error.as_deref().is_some_and(|e| !e.is_empty()));
}

#[test]
fn squash_merged_then_edited_further_on_main_is_integrated() {
    let f = Fixture::new();
    let wt = f.worktree("further", "b-further");
    f.commit(
        &wt,
        "src/lib.txt",
        "ONE\ntwo\nthree\nfour\n",
        "branch edits line 1",
    );
    git(&f.repo, &["merge", "-q", "--squash", "b-further"]);
    git(&f.repo, &["commit", "-q", "-m", "squash"]);
    f.commit(
        &f.repo,
        "src/lib.txt",
        "ONE\ntwo\nthree\nFOUR\n",
        "main edits line 4 after",
    );
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let a = assess(&wt);
    assert_eq!((a.integrated, a.at_risk), (Some(true), false), "{a:?}");
}

#[test]
fn same_file_changed_differently_on_main_is_not_integrated() {
    let f = Fixture::new();
    let wt = f.worktree("differ", "b-differ");
    f.commit(
        &wt,
        "src/lib.txt",
        "ONE\ntwo\nthree\nfour\n",
        "branch edits line 1",
    );
    f.commit(
        &f.repo,
        "src/lib.txt",
        "one\ntwo\nthree\nFOUR\n",
        "main edits line 4",
    );
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let a = assess(&wt);
    assert_eq!((a.integrated, a.at_risk), (Some(false), true), "{a:?}");
}
