//! Risk assessment against real repositories built with the `git` binary:
//! each reason alone and combined, and the branch shapes that are and are not
//! at risk.

use crate::common;

use common::{git, write, Fixture};
use std::fs;
use treeward::testing::risk::{assess, Kind, Reason};

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
    common::lock_worktree(&f.repo, &wt, "agent 7 is working");
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

// ------------------------------------------------ what git status does not show

/// `git status --porcelain` of `dir`, as a user would read it.
fn porcelain(dir: &std::path::Path) -> String {
    git(dir, &["status", "--porcelain"])
}

#[test]
fn edits_hidden_by_skip_worktree_and_assume_unchanged_are_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("hidden", "b-hidden");
    git(&wt, &["update-index", "--skip-worktree", "README"]);
    git(&wt, &["update-index", "--assume-unchanged", "src/lib.txt"]);
    // Control: flagged but unchanged files are nothing to lose.
    assert_eq!(reasons_of(&wt), Vec::<Reason>::new());

    write(&wt.join("README"), "edited behind git's back\n");
    assert_eq!(porcelain(&wt), "", "git status hides the edit");
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::Modified], "{a:?}");
    assert_eq!((a.changes.modified, a.changes.hidden), (1, 1));

    write(&wt.join("README"), "hello\n");
    fs::remove_file(wt.join("src/lib.txt")).unwrap();
    assert_eq!(porcelain(&wt), "", "git status hides the deletion");
    assert_eq!(reasons_of(&wt), vec![Reason::Deleted]);
}

/// The same verdicts on an index large enough (over 256 KiB) that `git
/// ls-files` and the refs wait for `git status` to reach its walk for
/// untracked files (a smaller one starts all three at once): what only
/// `ls-files` shows (a hidden edit) and what only the walk shows (an
/// untracked file) are both counted.
#[test]
fn a_large_index_is_read_as_a_small_one() {
    let f = Fixture::new();
    let wt = f.worktree("large", "b-large");
    for i in 0..4000 {
        write(&wt.join(format!("many/d{:02}/f{i:04}.txt", i / 100)), "x\n");
    }
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "many files"]);
    git(&wt, &["update-index", "--skip-worktree", "README"]);
    let index = f.repo.join(".git/worktrees/large/index");
    assert!(
        fs::metadata(&index).unwrap().len() >= 256 * 1024,
        "the index must be over risk::SMALL_INDEX for this test to mean anything"
    );
    assert_eq!(
        reasons_of(&wt),
        vec![Reason::Unpushed, Reason::Unmerged],
        "control: only its commit"
    );

    write(&wt.join("README"), "edited behind git's back\n");
    write(&wt.join("many/d07/new.txt"), "untracked\n");
    let a = assess(&wt);
    assert_eq!(
        a.reasons,
        vec![
            Reason::Modified,
            Reason::Untracked,
            Reason::Unpushed,
            Reason::Unmerged
        ],
        "{a:?}"
    );
    assert_eq!(
        (a.changes.modified, a.changes.hidden, a.changes.untracked),
        (1, 1, 1)
    );
}

#[test]
fn files_present_outside_the_sparse_patterns_are_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("sparse", "b-sparse");
    git(&wt, &["sparse-checkout", "set", "--no-cone", "/README"]);
    assert!(!wt.join("src/lib.txt").exists(), "outside the patterns");
    assert_eq!(
        reasons_of(&wt),
        Vec::<Reason>::new(),
        "control: a clean sparse checkout"
    );

    // A tracked file put back outside the patterns, edited, and kept
    // skip-worktree (git keeps the flag when told files may be there).
    git(
        &wt,
        &["config", "sparse.expectFilesOutsideOfPatterns", "true"],
    );
    write(&wt.join("src/lib.txt"), "edited outside the patterns\n");
    assert_eq!(porcelain(&wt), "", "git status hides it");
    let a = assess(&wt);
    assert_eq!(
        (a.reasons.clone(), a.changes.hidden),
        (vec![Reason::Modified], 1),
        "{a:?}"
    );

    // An untracked file outside the patterns.
    write(&wt.join("src/lib.txt"), "one\ntwo\nthree\nfour\n");
    assert_eq!(
        reasons_of(&wt),
        Vec::<Reason>::new(),
        "control: the same bytes again"
    );
    write(&wt.join("src/notes.md"), "only copy\n");
    assert_eq!(reasons_of(&wt), vec![Reason::Untracked]);
}

#[test]
fn refs_rewritten_and_bisect_refs_are_per_worktree_refs() {
    let f = Fixture::new();
    let wt = f.worktree("rewritten", "b-rewritten");
    git(&wt, &["update-ref", "refs/rewritten/onto", "HEAD"]);
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::WorktreeRefs]);
    assert_eq!(a.worktree_refs, vec!["refs/rewritten/onto".to_owned()]);
    // Control: the same name in a shared namespace survives the worktree.
    git(&wt, &["update-ref", "-d", "refs/rewritten/onto"]);
    git(&wt, &["update-ref", "refs/heads/rewritten/onto", "HEAD"]);
    assert_eq!(reasons_of(&wt), Vec::<Reason>::new());
}

#[test]
fn a_commit_only_refs_rewritten_keeps_is_counted_as_detached_unreachable() {
    let f = Fixture::new();
    let wt = f.detached_worktree("kept-by-rewritten");
    let sha = f.commit(&wt, "wip.txt", "w\n", "wip");
    git(&wt, &["update-ref", "refs/rewritten/wip", &sha]);
    let a = assess(&wt);
    assert_eq!(
        a.reasons,
        vec![Reason::DetachedUnreachable, Reason::WorktreeRefs],
        "a per-worktree ref dies with the worktree: it keeps nothing alive"
    );
    // Control: a shared ref does keep the commit.
    git(&wt, &["update-ref", "refs/heads/keep", &sha]);
    assert_eq!(assess(&wt).detached_unreachable, 0);
}

#[test]
fn operations_in_progress_are_at_risk() {
    let f = Fixture::new();
    let merge = f.worktree("merge", "b-merge");
    let rebase = f.worktree("rebase", "b-rebase");
    let pick = f.worktree("pick", "b-pick");
    f.commit(&f.repo, "other.txt", "main\n", "main moves on");

    // A merge stopped before its commit: no conflict, only staged files.
    f.commit(&merge, "mine.txt", "m\n", "branch work");
    git(&merge, &["merge", "-q", "--no-ff", "--no-commit", "main"]);
    let a = assess(&merge);
    assert!(a.reasons.contains(&Reason::InProgress), "{a:?}");
    assert_eq!(a.in_progress, vec!["merge".to_owned()]);

    // A rebase stopped by an `exec` that failed: the working tree is clean.
    f.commit(&rebase, "r.txt", "r\n", "to rebase");
    let out = common::git_output(&rebase, &["rebase", "-q", "-x", "false", "main"]);
    assert!(!out.status.success(), "the exec stops the rebase");
    assert_eq!(porcelain(&rebase), "", "nothing else to see");
    let a = assess(&rebase);
    assert!(a.reasons.contains(&Reason::InProgress), "{a:?}");
    assert_eq!(a.in_progress, vec!["rebase".to_owned()]);

    // A cherry-pick stopped by a conflict.
    f.commit(&pick, "other.txt", "mine\n", "conflicting");
    let out = common::git_output(&pick, &["cherry-pick", "main"]);
    assert!(!out.status.success(), "the cherry-pick conflicts");
    let a = assess(&pick);
    assert!(
        a.reasons.contains(&Reason::InProgress) && a.reasons.contains(&Reason::Conflicted),
        "{a:?}"
    );
    assert_eq!(a.in_progress, vec!["cherry-pick".to_owned()]);

    // Control: once the rebase is aborted, nothing is in progress.
    git(&rebase, &["rebase", "--abort"]);
    assert!(assess(&rebase).in_progress.is_empty());
}

/// A repository `sub` with one commit, pushed to its bare `sub.git`, added
/// as the submodule `sub` of the fixture's `main` (pushed too).
fn with_submodule(f: &Fixture) -> std::path::PathBuf {
    let origin = f.tmp.path().join("sub.git");
    let sub = f.tmp.path().join("sub");
    git(
        f.tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ],
    );
    git(
        f.tmp.path(),
        &["init", "-q", "-b", "main", sub.to_str().unwrap()],
    );
    f.commit(&sub, "s.txt", "s\n", "sub initial");
    git(&sub, &["push", "-q", origin.to_str().unwrap(), "main"]);
    git(
        &f.repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            origin.to_str().unwrap(),
            "sub",
        ],
    );
    git(&f.repo, &["commit", "-q", "-m", "add sub"]);
    git(&f.repo, &["push", "-q", "origin", "main"]);
    origin
}

#[test]
fn a_submodules_uncommitted_edit_and_unpushed_commit_are_at_risk() {
    let f = Fixture::new();
    with_submodule(&f);
    let wt = f.worktree("with-sub", "b-with-sub");
    git(
        &wt,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "update",
            "-q",
            "--init",
        ],
    );
    assert_eq!(
        reasons_of(&wt),
        Vec::<Reason>::new(),
        "control: a clean submodule"
    );

    write(&wt.join("sub/s.txt"), "edited in the submodule\n");
    let a = assess(&wt);
    assert!(a.reasons.contains(&Reason::Submodule), "{a:?}");
    assert_eq!(a.submodules, vec!["sub".to_owned()]);

    // Its commit recorded and the superproject's branch pushed: only the
    // submodule's commit, which no remote-tracking ref of its has, is lost.
    git(&wt.join("sub"), &["commit", "-q", "-am", "sub work"]);
    git(&wt, &["commit", "-q", "-am", "record sub"]);
    git(&wt, &["push", "-q", "-u", "origin", "b-with-sub"]);
    assert_eq!(reasons_of(&wt), vec![Reason::Submodule]);

    // Control: pushed, it is safe.
    git(&wt.join("sub"), &["push", "-q", "origin", "HEAD:main"]);
    git(&wt.join("sub"), &["fetch", "-q", "origin"]);
    assert_eq!(reasons_of(&wt), Vec::<Reason>::new());
}

#[test]
fn an_embedded_repositorys_commits_are_at_risk() {
    let f = Fixture::new();
    let wt = f.worktree("embedded", "b-embedded");
    let emb = wt.join("emb");
    git(&wt, &["init", "-q", "-b", "main", "emb"]);
    f.commit(&emb, "e.txt", "e\n", "embedded work");
    assert_eq!(
        reasons_of(&wt),
        vec![Reason::Untracked],
        "untracked, it is at risk already"
    );

    git(&wt, &["add", "emb"]);
    git(&wt, &["commit", "-q", "-m", "record emb"]);
    git(&wt, &["push", "-q", "-u", "origin", "b-embedded"]);
    assert_eq!(porcelain(&wt), "", "the superproject is clean and pushed");
    let a = assess(&wt);
    assert_eq!(a.reasons, vec![Reason::Submodule], "{a:?}");
    assert_eq!(a.submodules, vec!["emb".to_owned()]);
}

// ------------------------------------------------------ repository formats

/// A repository made by `git init <init...>` with one commit on `main` and a
/// linked worktree `wt` on branch `topic`.
fn formatted(init: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = common::strict_tempdir();
    let repo = tmp.path().join("repo");
    let mut args = vec!["init", "-q", "-b", "main"];
    args.extend_from_slice(init);
    args.push(repo.to_str().unwrap());
    git(tmp.path(), &args);
    write(&repo.join("README"), "hello\n");
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    let wt = tmp.path().join("wt");
    common::add_worktree(&repo, &wt, Some("topic"));
    (tmp, repo, wt)
}

#[test]
fn reftable_and_sha256_repositories_are_assessed() {
    for init in [
        &["--ref-format=reftable"][..],
        &["--object-format=sha256"],
        &["--ref-format=reftable", "--object-format=sha256"],
    ] {
        let (_tmp, repo, wt) = formatted(init);
        let a = assess(&wt);
        assert_eq!(
            (a.error.clone(), a.at_risk),
            (None, false),
            "{init:?}: {a:?}"
        );
        assert_eq!(a.head, Some(git(&repo, &["rev-parse", "main"])), "{init:?}");
        assert_eq!(a.integrated, Some(true), "{init:?}");

        write(&wt.join("README"), "changed\n");
        git(&wt, &["update-ref", "refs/worktree/keep", "HEAD"]);
        git(&wt, &["stash", "-q"]);
        let a = assess(&wt);
        assert_eq!(a.reasons, vec![Reason::WorktreeRefs], "{init:?}: {a:?}");
        assert_eq!(
            a.stashes, 1,
            "{init:?}: the stash is read from git, whatever the backend"
        );
        git(&wt, &["stash", "pop", "-q"]);
        git(&wt, &["checkout", "-q", "--detach"]);
        f_commit(&wt);
        let a = assess(&wt);
        assert_eq!(
            a.reasons,
            vec![
                Reason::Modified,
                Reason::DetachedUnreachable,
                Reason::WorktreeRefs
            ],
            "{init:?}: {a:?}"
        );
        // Control: the format took.
        let format = git(
            &repo,
            &["rev-parse", "--show-object-format", "--show-ref-format"],
        );
        for want in init.iter().map(|a| a.split('=').nth(1).unwrap()) {
            assert!(format.contains(want), "{init:?}: {format}");
        }
    }
}

/// Commits an empty commit in `dir`.
fn f_commit(dir: &std::path::Path) {
    git(
        dir,
        &["commit", "-q", "--allow-empty", "-m", "detached work"],
    );
}

#[test]
fn a_format_git_does_not_know_fails_closed_with_gits_message() {
    let (_tmp, repo, wt) = formatted(&[]);
    git(&repo, &["config", "core.repositoryformatversion", "1"]);
    git(&repo, &["config", "extensions.treewardFuture", "true"]);
    let a = assess(&wt);
    assert!(a.reasons.contains(&Reason::Error), "{a:?}");
    let e = a.error.unwrap();
    assert!(e.contains("treewardfuture"), "git's own message: {e}");
}

#[test]
fn a_partial_clones_missing_object_fails_closed() {
    let f = Fixture::new();
    git(&f.origin, &["config", "uploadpack.allowFilter", "true"]);
    let first = git(&f.repo, &["rev-parse", "main~1"]);
    let old_blob = git(&f.repo, &["rev-parse", "main~1:src/lib.txt"]);
    for partial in [false, true] {
        let clone = f.tmp.path().join(if partial { "partial" } else { "full" });
        let url = format!("file://{}", f.origin.display());
        let mut args = vec!["clone", "-q"];
        if partial {
            args.push("--filter=blob:none");
        }
        args.extend([url.as_str(), clone.to_str().unwrap()]);
        git(f.tmp.path(), &args);
        let wt = clone.with_extension("wt");
        common::add_worktree(&clone, &wt, Some("feat"));
        // The branch goes back to main~1 and commits there, all with
        // plumbing that needs no blob of main~1.
        git(&wt, &["reset", "-q", "--soft", &first]);
        // An edit of the file main~1..main changed: comparing the two
        // needs the old blob.
        write(&wt.join("src/lib.txt"), "ONE\ntwo\nthree\n");
        git(&wt, &["add", "src/lib.txt"]);
        let tree = git(&wt, &["write-tree"]);
        let commit = git(&wt, &["commit-tree", "-p", &first, "-m", "feature", &tree]);
        git(&wt, &["update-ref", "refs/heads/feat", &commit]);
        let missing = !common::git_command(&clone, &["cat-file", "-e", &old_blob])
            .env("GIT_NO_LAZY_FETCH", "1")
            .status()
            .unwrap()
            .success();
        assert_eq!(
            missing, partial,
            "the old blob is missing only from the partial clone"
        );
        let a = assess(&wt);
        if partial {
            assert!(a.reasons.contains(&Reason::Error), "{a:?}");
            assert!(a.at_risk);
            assert!(
                a.error.as_deref().is_some_and(|e| e.contains("git")),
                "{a:?}"
            );
        } else {
            assert_eq!(a.error, None, "control: the full clone is assessed: {a:?}");
            assert_eq!(a.reasons, vec![Reason::Unpushed, Reason::Unmerged]);
        }
        // Never fetched.
        let still_missing = !common::git_command(&clone, &["cat-file", "-e", &old_blob])
            .env("GIT_NO_LAZY_FETCH", "1")
            .status()
            .unwrap()
            .success();
        assert_eq!(still_missing, partial);
    }
}

// ------------------------------------------------------------- integration

#[test]
fn squash_merged_into_local_main_only_is_integrated() {
    let f = Fixture::new();
    let wt = f.worktree("local-squash", "b-local-squash");
    f.commit(&wt, "feature.txt", "f1\n", "feature 1");
    f.commit(&wt, "feature.txt", "f1\nf2\n", "feature 2");
    let a = assess(&wt);
    assert_eq!(a.integrated, Some(false), "control: not yet merged: {a:?}");
    git(&f.repo, &["merge", "-q", "--squash", "b-local-squash"]);
    git(&f.repo, &["commit", "-q", "-m", "squash, not pushed"]);
    let a = assess(&wt);
    assert_eq!(a.integrated, Some(true), "{a:?}");
    assert_eq!(
        a.integration_targets,
        vec!["main".to_owned()],
        "local main is ahead"
    );
    assert_eq!(
        a.integration,
        Some(treeward::testing::risk::Integration {
            target: "main".to_owned(),
            how: treeward::testing::risk::How::ChangesPresent
        })
    );
    assert!(!a.at_risk, "{a:?}");
}

#[test]
fn diverged_main_and_origin_main_are_both_targets() {
    let f = Fixture::new();
    let wt = f.worktree("diverged", "b-diverged");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    // origin/main takes the feature (cherry-picked there); local main moves
    // on differently.
    let other = f.tmp.path().join("other");
    git(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            f.origin.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    git(
        &other,
        &["fetch", "-q", f.repo.to_str().unwrap(), "b-diverged"],
    );
    f.commit(&other, "upstream.txt", "u\n", "upstream only");
    git(&other, &["cherry-pick", "FETCH_HEAD"]);
    git(&other, &["push", "-q", "origin", "main"]);
    f.commit(&f.repo, "local.txt", "l\n", "local only");
    git(&f.repo, &["fetch", "-q", "origin"]);
    let a = assess(&wt);
    assert_eq!(
        a.integration_targets,
        vec!["main".to_owned(), "origin/main".to_owned()],
        "{a:?}"
    );
    assert_eq!(
        a.integration.map(|i| (i.target, i.how)),
        Some((
            "origin/main".to_owned(),
            treeward::testing::risk::How::PatchEquivalent
        ))
    );
}

#[test]
fn squash_merged_then_renamed_on_main_is_integrated() {
    let f = Fixture::new();
    let wt = f.worktree("renamed", "b-renamed");
    let long: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    f.commit(&f.repo, "doc.txt", &long, "a long file");
    git(&wt, &["merge", "-q", "main"]);
    let edited = long.replace("line 3\n", "LINE THREE\n");
    f.commit(&wt, "doc.txt", &edited, "branch edits line 3");
    git(&f.repo, &["merge", "-q", "--squash", "b-renamed"]);
    git(&f.repo, &["commit", "-q", "-m", "squash"]);
    git(&f.repo, &["mv", "doc.txt", "guide.txt"]);
    git(&f.repo, &["commit", "-q", "-m", "rename"]);
    f.commit(
        &f.repo,
        "guide.txt",
        &edited.replace("line 39\n", "LINE 39\n"),
        "and edit it further",
    );
    let a = assess(&wt);
    assert_eq!((a.integrated, a.at_risk), (Some(true), false), "{a:?}");

    // Control: a branch edit the renamed file lacks is not integrated.
    f.commit(
        &wt,
        "doc.txt",
        &edited.replace("line 20\n", "LINE 20\n"),
        "more",
    );
    assert_eq!(assess(&wt).integrated, Some(false));
}

/// A format: its name, the git commands that set it up in a worktree, and
/// a file of the admin dir with the bytes that prove it took.
type Format = (
    &'static str,
    &'static [&'static [&'static str]],
    &'static str,
    &'static [u8],
);

#[test]
fn index_and_config_formats_git_supports_are_assessed() {
    // Each setup, and the bytes its index (or admin dir file) shows when it
    // took: the control that the format is really there.
    let setups: [Format; 7] = [
        (
            "split index",
            &[&["update-index", "--split-index"]],
            "index",
            b"link",
        ),
        (
            "untracked cache",
            &[
                &["config", "core.untrackedCache", "true"],
                &["update-index", "--untracked-cache"],
                &["status", "-uall"],
            ],
            "index",
            b"UNTR",
        ),
        (
            "fsmonitor configured",
            &[&["config", "core.fsmonitor", "true"]],
            "../../config",
            b"fsmonitor = true",
        ),
        (
            "worktree config",
            &[
                &["config", "extensions.worktreeConfig", "true"],
                &["config", "--worktree", "status.showUntrackedFiles", "no"],
            ],
            "config.worktree",
            b"showUntrackedFiles",
        ),
        (
            "index v4",
            &[&["update-index", "--index-version", "4"]],
            "index",
            b"DIRC\0\0\0\x04",
        ),
        (
            "skipHash",
            &[
                &["config", "index.skipHash", "true"],
                &["update-index", "--really-refresh"],
            ],
            "index",
            &[0; 20],
        ),
        (
            "sparse index",
            &[&["sparse-checkout", "set", "--cone", "--sparse-index", "src"]],
            "index",
            b"sdir",
        ),
    ];
    for (what, steps, file, proof) in setups {
        let f = Fixture::new();
        let wt = f.worktree("formats", "b-formats");
        for step in steps {
            git(&wt, step);
        }
        let bytes = fs::read(f.repo.join(".git/worktrees/formats").join(file)).unwrap();
        // skipHash: the index ends with a null hash instead of its own.
        let took = if what == "skipHash" {
            bytes.ends_with(proof)
        } else {
            bytes.windows(proof.len()).any(|w| w == proof)
        };
        assert!(took, "{what}: the setting did not take");
        assert_eq!(reasons_of(&wt), Vec::<Reason>::new(), "{what}: clean");
        write(&wt.join("src/lib.txt"), "changed\n");
        write(&wt.join("src/new.txt"), "new\n");
        let a = assess(&wt);
        assert_eq!(a.error, None, "{what}: {a:?}");
        assert_eq!(
            a.reasons,
            vec![Reason::Modified, Reason::Untracked],
            "{what}: {a:?}"
        );
    }
}
