//! Preserve against real repositories built with the `git` binary: the work
//! commit round-trips through plain `git stash apply --index`, the worktree
//! is left byte-identical, and what only the admin dir held (a detached
//! HEAD's commits, per-worktree refs) survives the worktree's removal and a
//! `git gc`. Then the branch deletion that follows a removal.

use crate::common;

use common::{git, git_output, snapshot, write, Fixture};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use treeward::testing::git::branch::{delete_branch_if_integrated, BranchFate};
use treeward::testing::preserve::{preserve, preserve_at, PreserveError};

/// Every file and symlink under `dir` except `.git` and the `skip` names:
/// its relative path, permission and type bits, and bytes (symlink targets
/// for links).
fn contents(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .filter_map(|(path, (mode, _, _, _, _, bytes))| {
            let rel = path.strip_prefix(dir).ok()?.to_path_buf();
            let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
            if first == ".git" || skip.contains(&first.as_str()) {
                return None;
            }
            // Directories are not something git records (an emptied one
            // stays behind in the original); their files are compared.
            (mode & 0o170000 != 0o040000).then_some((rel, (mode, bytes)))
        })
        .collect()
}

/// `git status` as a user sees it, without git refreshing the index.
fn status(dir: &Path) -> String {
    git(
        dir,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain=v2",
            "--untracked-files=all",
        ],
    )
}

fn admin_dir(f: &Fixture, name: &str) -> PathBuf {
    f.repo.join(".git/worktrees").join(name)
}

fn refs_under(repo: &Path, prefix: &str) -> Vec<String> {
    let out = git(repo, &["for-each-ref", "--format=%(refname)", prefix]);
    out.lines().map(str::to_owned).collect()
}

fn exists(repo: &Path, object: &str) -> bool {
    git_output(repo, &["cat-file", "-e", &format!("{object}^{{commit}}")])
        .status
        .success()
}

fn tree_names(repo: &Path, treeish: &str) -> Vec<String> {
    git(repo, &["ls-tree", "-r", "--name-only", treeish])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A worktree with every kind of uncommitted work, plus ignored files.
fn dirty_worktree(f: &Fixture, name: &str) -> PathBuf {
    let wt = f.worktree(name, &format!("b-{name}"));
    write(&wt.join("tool.sh"), "#!/bin/sh\necho tool\n");
    write(&wt.join("docs/a.md"), "a\n");
    write(&wt.join("docs/b.md"), "b\n");
    git(&wt, &["add", "tool.sh", "docs"]);
    git(&wt, &["commit", "-q", "-m", "more files"]);

    // Staged: a new file, a modification, a deletion.
    write(&wt.join("staged-new.txt"), "new and staged\n");
    write(&wt.join("README"), "staged version\n");
    git(&wt, &["add", "staged-new.txt", "README"]);
    git(&wt, &["rm", "-q", "docs/b.md"]);
    // Unstaged on top of staged, a plain modification, a deletion, a mode
    // change.
    write(&wt.join("README"), "staged version\nand more, unstaged\n");
    write(&wt.join("src/lib.txt"), "changed in the working tree\n");
    fs::remove_file(wt.join("docs/a.md")).unwrap();
    fs::set_permissions(wt.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    // Untracked: nested directories, an executable, a symlink.
    write(&wt.join("notes/deep/er/n.md"), "deep note\n");
    write(&wt.join("notes/top.md"), "top note\n");
    write(&wt.join("run.sh"), "#!/bin/sh\necho run\n");
    fs::set_permissions(wt.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("README", wt.join("link")).unwrap();
    // Ignored (by the fixture's .gitignore).
    write(&wt.join("build.log"), "noise\n");
    write(&wt.join("target/debug/out"), "binary\n");
    wt
}

#[test]
fn dirty_worktree_round_trips_through_git_stash_and_is_left_untouched() {
    let f = Fixture::new();
    let wt = dirty_worktree(&f, "review-1");
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let status_before = status(&wt);
    let files_before = contents(&wt, &["build.log", "target"]);
    assert!(status_before.contains("staged-new.txt") && status_before.contains("? run.sh"));
    let wt_before = snapshot(&wt);
    let admin_before = snapshot(&admin_dir(&f, "review-1"));

    let p = preserve(&wt).unwrap();

    assert_eq!(snapshot(&wt), wt_before, "worktree files unchanged");
    assert_eq!(
        snapshot(&admin_dir(&f, "review-1")),
        admin_before,
        "index, HEAD and the rest of the admin dir unchanged (mtimes too)"
    );
    let work = p.work.clone().expect("a work commit");
    assert_eq!(p.refs.len(), 2, "{p:?}");
    assert!(p.refs[0].ends_with("/state"), "{p:?}");
    let work_ref = &p.refs[1];
    assert!(
        work_ref.starts_with("refs/treeward/preserved/review-1/") && work_ref.ends_with("/work"),
        "{work_ref}"
    );
    assert_eq!(git(&f.repo, &["rev-parse", work_ref]), work);
    // Stash-shaped: parents HEAD, index, untracked.
    let parents = git(&f.repo, &["rev-list", "--parents", "-n1", &work]);
    let parents: Vec<&str> = parents.split(' ').skip(1).collect();
    assert_eq!(parents.len(), 3, "{parents:?}");
    assert_eq!(parents[0], head);
    assert_eq!(
        git(&f.repo, &["rev-list", "--parents", "-n1", parents[1]]),
        format!("{} {head}", parents[1]),
        "the index commit is parented on HEAD"
    );
    assert_eq!(
        git(&f.repo, &["log", "-1", "--format=%an <%ae>|%s", &work]),
        format!(
            "treeward <treeward@localhost>|WIP on b-review-1: {} more files",
            &head[..7]
        )
    );
    // Ignored files are in none of the three trees.
    for tree in [work.clone(), format!("{work}^2"), format!("{work}^3")] {
        let names = tree_names(&f.repo, &tree);
        assert!(
            !names
                .iter()
                .any(|n| n == "build.log" || n.starts_with("target/")),
            "{tree}: {names:?}"
        );
    }
    assert_eq!(
        tree_names(&f.repo, &format!("{work}^3")),
        vec!["link", "notes/deep/er/n.md", "notes/top.md", "run.sh"]
    );

    // The worktree goes; a fresh one at the same HEAD gets the work back
    // with plain git.
    git(
        &f.repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
    assert!(!wt.exists());
    let again = f.tmp.path().join("wt/restored");
    git(
        &f.repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            again.to_str().unwrap(),
            &head,
        ],
    );
    git(&again, &["stash", "apply", "-q", "--index", work_ref]);
    assert_eq!(status(&again), status_before);
    assert_eq!(contents(&again, &[]), files_before);
    assert!(fs::symlink_metadata(again.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn clean_worktrees_get_a_state_and_no_work_commit() {
    let f = Fixture::new();
    let wt = f.worktree("clean", "b-clean");
    write(&wt.join("build.log"), "ignored only\n");
    let det = f.detached_worktree("clean-detached");
    for path in [&wt, &det] {
        let p = preserve(path).unwrap();
        assert_eq!(p.work, None, "{}", path.display());
        assert_eq!(p.refs.len(), 1, "{p:?}");
        assert!(p.refs[0].ends_with("/state"), "{p:?}");
        let files = tree_names(&f.repo, &format!("{}:files", p.refs[0]));
        assert!(files.contains(&"README".to_owned()), "{files:?}");
        assert!(
            !files.contains(&"build.log".to_owned()),
            "ignored: {files:?}"
        );
    }
    assert_eq!(refs_under(&f.repo, "refs/treeward").len(), 2);
    assert!(
        refs_under(&f.repo, "refs/treeward/tmp").is_empty(),
        "no scratch ref left"
    );
}

#[test]
fn detached_head_commits_outlive_the_worktree_and_gc() {
    let f = Fixture::new();
    let kept = f.detached_worktree("det-kept");
    let kept_commit = f.commit(&kept, "d.txt", "detached work\n", "detached work");
    // Control: the same situation without preserve loses the commit.
    let lost = f.detached_worktree("det-lost");
    let lost_commit = f.commit(&lost, "e.txt", "lost work\n", "lost work");

    let p = preserve(&kept).unwrap();
    assert_eq!(p.work, None, "nothing uncommitted");
    assert_eq!(p.refs.len(), 2, "{p:?}");
    assert!(p.refs[0].ends_with("/head"), "{p:?}");
    assert_eq!(git(&f.repo, &["rev-parse", &p.refs[0]]), kept_commit);

    for wt in [&kept, &lost] {
        git(
            &f.repo,
            &["worktree", "remove", "--force", wt.to_str().unwrap()],
        );
    }
    git(&f.repo, &["worktree", "prune"]);
    git(&f.repo, &["gc", "-q", "--prune=now"]);
    assert!(
        exists(&f.repo, &kept_commit),
        "preserved commit survives gc"
    );
    assert!(
        !exists(&f.repo, &lost_commit),
        "control: unpreserved is gone"
    );
}

#[test]
fn detached_head_reachable_from_a_branch_is_not_recorded_but_dirty_work_is() {
    let f = Fixture::new();
    let wt = f.detached_worktree("det-dirty");
    write(&wt.join("README"), "changed\n");
    let p = preserve(&wt).unwrap();
    assert_eq!(p.refs.len(), 2, "{p:?}");
    assert!(p.refs[1].ends_with("/work"), "{p:?}");
    let subject = git(&f.repo, &["log", "-1", "--format=%s", &p.refs[1]]);
    assert!(subject.starts_with("WIP on (no branch): "), "{subject}");
}

#[test]
fn per_worktree_refs_are_kept() {
    let f = Fixture::new();
    let wt = f.worktree("wtrefs", "b-wtrefs");
    let wip = f.commit(&wt, "wip.txt", "wip\n", "wip");
    git(&wt, &["update-ref", "refs/worktree/wip/one", "HEAD"]);
    git(&wt, &["update-ref", "refs/bisect/bad", "HEAD"]);
    git(&wt, &["reset", "-q", "--hard", "HEAD~1"]);
    let admin_before = snapshot(&admin_dir(&f, "wtrefs"));

    let p = preserve(&wt).unwrap();
    assert_eq!(snapshot(&admin_dir(&f, "wtrefs")), admin_before);
    let names: Vec<&str> = p
        .refs
        .iter()
        .map(|r| r.rsplit_once("Z/").map_or(r.as_str(), |(_, rest)| rest))
        .collect();
    assert_eq!(
        names,
        vec!["bisect/bad", "state", "worktree/wip/one"],
        "{p:?}"
    );
    assert_eq!(p.work, None);

    git(
        &f.repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
    git(&f.repo, &["worktree", "prune"]);
    git(&f.repo, &["gc", "-q", "--prune=now"]);
    for r in p.refs.iter().filter(|r| !r.ends_with("/state")) {
        assert_eq!(git(&f.repo, &["rev-parse", r]), wip);
    }
    assert!(exists(&f.repo, &wip));
}

#[test]
fn preserves_in_the_same_second_get_distinct_refs() {
    let f = Fixture::new();
    let wt = f.worktree("twice", "b-twice");
    write(&wt.join("untracked.txt"), "u\n");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let refs: Vec<String> = (0..3)
        .map(|_| {
            let p = preserve_at(&wt, &wt, t).unwrap();
            assert_eq!(p.refs.len(), 2, "{p:?}");
            p.refs[1].clone()
        })
        .collect();
    let base = "refs/treeward/preserved/twice/20270115T080000Z";
    assert_eq!(
        refs,
        vec![
            format!("{base}/work"),
            format!("{base}-1/work"),
            format!("{base}-2/work")
        ]
    );
    assert_eq!(refs_under(&f.repo, "refs/treeward").len(), 6);
}

#[test]
fn conflicted_worktree_keeps_its_markers() {
    let f = Fixture::new();
    let wt = f.worktree("conflict", "b-conflict");
    f.commit(&f.repo, "README", "main side\n", "main edit");
    let head = f.commit(&wt, "README", "branch side\n", "branch edit");
    assert!(!git_output(&wt, &["merge", "-q", "main"]).status.success());
    let marked = fs::read_to_string(wt.join("README")).unwrap();
    assert!(marked.contains("<<<<<<<"), "{marked}");
    let wt_before = snapshot(&wt);
    let admin_before = snapshot(&admin_dir(&f, "conflict"));

    let p = preserve(&wt).unwrap();
    assert_eq!(snapshot(&wt), wt_before);
    assert_eq!(snapshot(&admin_dir(&f, "conflict")), admin_before);
    let work = p.work.expect("conflict is work");
    assert_eq!(
        git(&f.repo, &["show", &format!("{work}:README")]),
        marked.trim_end()
    );
    assert_eq!(
        git(&f.repo, &["show", &format!("{work}^2:README")]),
        "branch side",
        "the index commit takes our side"
    );

    git(
        &f.repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
    let again = f.tmp.path().join("wt/conflict-again");
    git(
        &f.repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            again.to_str().unwrap(),
            &head,
        ],
    );
    git(&again, &["stash", "apply", "-q", "--index", &p.refs[1]]);
    assert_eq!(fs::read_to_string(again.join("README")).unwrap(), marked);
}

#[test]
fn unborn_head_work_has_no_head_parent() {
    let f = Fixture::new();
    let wt = f.tmp.path().join("wt/orphan");
    git(
        &f.repo,
        &[
            "worktree",
            "add",
            "-q",
            "--orphan",
            "-b",
            "b-orphan",
            wt.to_str().unwrap(),
        ],
    );
    write(&wt.join("first.txt"), "first\n");
    git(&wt, &["add", "first.txt"]);
    write(&wt.join("loose.txt"), "loose\n");

    let work = preserve(&wt).unwrap().work.expect("work");
    let parents = git(&f.repo, &["rev-list", "--parents", "-n1", &work]);
    assert_eq!(parents.split(' ').count(), 3, "W, I and U: {parents}");
    assert_eq!(
        git(
            &f.repo,
            &["rev-list", "--parents", "-n1", &format!("{work}^1")]
        ),
        git(&f.repo, &["rev-parse", &format!("{work}^1")]),
        "the index commit has no parent"
    );
    assert_eq!(tree_names(&f.repo, &work), vec!["first.txt"]);
    assert_eq!(tree_names(&f.repo, &format!("{work}^2")), vec!["loose.txt"]);
}

#[test]
fn untracked_nested_repository_is_recorded_with_its_history() {
    let f = Fixture::new();
    let wt = f.worktree("nested", "b-nested");
    let inner = wt.join("vendor/dep");
    fs::create_dir_all(&inner).unwrap();
    git(&inner, &["init", "-q", "-b", "trunk"]);
    write(&inner.join("file"), "committed\n");
    git(&inner, &["add", "file"]);
    git(&inner, &["commit", "-q", "-m", "inner"]);
    let inner_head = git(&inner, &["rev-parse", "HEAD"]);
    write(&inner.join("file"), "edited\n");
    let inner_before = snapshot(&inner.join(".git"));

    let p = preserve(&wt).unwrap();
    let state = p.refs.iter().find(|r| r.ends_with("/state")).unwrap();
    let module = format!("{state}:modules/vendor%2Fdep");
    assert_eq!(
        git(
            &f.repo,
            &["cat-file", "blob", &format!("{module}/files/file")]
        ),
        "edited"
    );
    let set = state.strip_suffix("/state").unwrap();
    assert_eq!(
        git(
            &f.repo,
            &[
                "rev-parse",
                &format!("{set}/modules/vendor%2Fdep/refs/heads/trunk")
            ]
        ),
        inner_head,
        "its commits are fetched into the common repository"
    );
    assert_eq!(
        snapshot(&inner.join(".git"))
            .into_iter()
            .filter(|(p, _)| !p.starts_with(inner.join(".git/objects")))
            .collect::<Vec<_>>(),
        inner_before
            .into_iter()
            .filter(|(p, _)| !p.starts_with(inner.join(".git/objects")))
            .collect::<Vec<_>>(),
        "its git dir is only read (objects aside)"
    );
    assert!(refs_under(&f.repo, "refs/treeward/tmp").is_empty());
}

#[test]
fn main_worktree_and_plain_directories_are_refused() {
    let f = Fixture::new();
    for path in [f.repo.clone(), f.tmp.path().to_path_buf()] {
        let err = preserve(&path).unwrap_err();
        assert!(
            matches!(err, PreserveError::NotALinkedWorktree { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    }
}

fn branch_exists(repo: &Path, branch: &str) -> bool {
    git_output(
        repo,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/{branch}"),
        ],
    )
    .status
    .success()
}

fn remove_worktree(f: &Fixture, wt: &Path) {
    git(
        &f.repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
}

#[test]
fn integrated_branch_is_deleted_after_its_worktree_goes() {
    let f = Fixture::new();
    let common = f.repo.join(".git");
    let at_main = f.worktree("int", "b-int");
    let merged = f.worktree("merged", "b-merged");
    f.commit(&merged, "feature.txt", "f\n", "feature");
    git(
        &f.repo,
        &["merge", "-q", "--no-ff", "-m", "merge", "b-merged"],
    );
    git(&f.repo, &["push", "-q", "origin", "main"]);
    for (wt, branch) in [(&at_main, "b-int"), (&merged, "b-merged")] {
        remove_worktree(&f, wt);
        assert_eq!(
            delete_branch_if_integrated(&common, branch).unwrap(),
            BranchFate::Deleted
        );
        assert!(!branch_exists(&f.repo, branch));
    }
}

#[test]
fn unintegrated_branch_is_kept() {
    let f = Fixture::new();
    let wt = f.worktree("unint", "b-unint");
    let tip = f.commit(&wt, "feature.txt", "f\n", "feature");
    remove_worktree(&f, &wt);
    assert_eq!(
        delete_branch_if_integrated(&f.repo.join(".git"), "refs/heads/b-unint").unwrap(),
        BranchFate::KeptUnintegrated
    );
    assert_eq!(git(&f.repo, &["rev-parse", "b-unint"]), tip);
}

#[test]
fn checked_out_branch_is_kept() {
    let f = Fixture::new();
    let _wt = f.worktree("busy", "b-busy");
    assert_eq!(
        delete_branch_if_integrated(&f.repo.join(".git"), "b-busy").unwrap(),
        BranchFate::KeptCheckedOut
    );
    assert!(branch_exists(&f.repo, "b-busy"));
}

#[test]
fn default_branch_is_kept_and_missing_is_reported() {
    let f = Fixture::new();
    git(&f.repo, &["switch", "-q", "-c", "elsewhere"]);
    assert_eq!(
        delete_branch_if_integrated(&f.repo.join(".git"), "main").unwrap(),
        BranchFate::KeptDefaultBranch
    );
    assert!(branch_exists(&f.repo, "main"));
    assert_eq!(
        delete_branch_if_integrated(&f.repo.join(".git"), "no-such-branch").unwrap(),
        BranchFate::Missing
    );
}
