//! Preserve, remove, restore, against real repositories built with the
//! `git` binary: for each class of state a worktree can hold, what a person
//! (and git) can observe of the worktree after the round trip is what it
//! was before: `git status --porcelain=v2`, every file's bytes, mode and
//! symlink target, the index file byte for byte (flags, stages, sparse
//! entries), the per-worktree and root refs, the in-progress state files;
//! and an interrupted operation continues. The preserve itself leaves the
//! worktree as it was. Each test also shows that its state was really
//! there (the control), so that a restore that dropped it would fail.

use crate::common;

use common::{git, git_command, git_output, snapshot, write, Fixture};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use treeward::testing::as_owner::rebuild::rebuild;
use treeward::testing::preserve::preserve;

/// Everything the round trip must keep.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    status: String,
    /// Relative path → (mode, bytes or symlink target), `.git` of nested
    /// repositories and ignored files excluded.
    files: BTreeMap<PathBuf, (u32, Vec<u8>)>,
    index: Vec<u8>,
    stages: String,
    refs: String,
    /// The in-progress state files of the git dir, by relative path.
    state: BTreeMap<PathBuf, Vec<u8>>,
}

const STATE: &[&str] = &[
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "rebase-merge",
    "rebase-apply",
    "sequencer",
    "BISECT_LOG",
    "BISECT_START",
    "config.worktree",
    "info/sparse-checkout",
];

fn git_dir(wt: &Path) -> PathBuf {
    PathBuf::from(git(wt, &["rev-parse", "--absolute-git-dir"]))
}

fn observe(wt: &Path, ignored: &[&str]) -> Observed {
    let status = git(
        wt,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain=v2",
            "--branch",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ],
    );
    let files = snapshot(wt)
        .into_iter()
        .filter_map(|(path, (mode, _, _, _, _, bytes))| {
            let rel = path.strip_prefix(wt).ok()?.to_path_buf();
            if rel.components().any(|c| c.as_os_str() == ".git") {
                return None;
            }
            let first = rel.components().next()?.as_os_str().to_owned();
            if ignored.iter().any(|i| OsStr::new(i) == first) {
                return None;
            }
            (mode & 0o170000 != 0o040000).then_some((rel, (mode, bytes)))
        })
        .collect();
    let dir = git_dir(wt);
    let index = fs::read(dir.join("index")).unwrap_or_default();
    let stages = git(wt, &["--no-optional-locks", "ls-files", "-s", "-v", "-t"]);
    let refs = git(
        wt,
        &[
            "for-each-ref",
            "--include-root-refs",
            "--format=%(refname) %(objectname)",
            "refs/worktree",
            "refs/bisect",
            "refs/rewritten",
            "ORIG_HEAD",
            "CHERRY_PICK_HEAD",
            "REBASE_HEAD",
            "AUTO_MERGE",
        ],
    );
    let mut state = BTreeMap::new();
    for name in STATE {
        for (path, (mode, _, _, _, _, bytes)) in snapshot_if(&dir.join(name)) {
            if mode & 0o170000 == 0o100000 {
                state.insert(path.strip_prefix(&dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    Observed {
        status,
        files,
        index,
        stages,
        refs,
        state,
    }
}

/// The snapshot of a worktree that preserving must leave as it is: all of
/// it but the object stores of nested repositories (which get the objects
/// of their state written, to be fetched into the set).
fn untouched(wt: &Path) -> common::Snapshot {
    snapshot(wt)
        .into_iter()
        .filter(|(p, _)| {
            !p.strip_prefix(wt)
                .unwrap()
                .to_string_lossy()
                .contains(".git/objects")
        })
        .collect()
}

fn snapshot_if(path: &Path) -> common::Snapshot {
    if fs::symlink_metadata(path).is_ok() {
        snapshot(path)
    } else {
        common::Snapshot::new()
    }
}

/// Preserves `wt` (checking that it is left as it was), removes it with
/// git, restores the set to the same path with no ledger; returns the
/// set's prefix.
fn round_trip(repo: &Path, wt: &Path, ignored: &[&str]) -> (Observed, String) {
    let before = observe(wt, ignored);
    let wt_files = untouched(wt);
    let p = preserve(wt).unwrap();
    assert!(untouched(wt) == wt_files, "preserving changed nothing");
    let state = p.refs.iter().find(|r| r.ends_with("/state")).unwrap();
    let prefix = state.strip_suffix("/state").unwrap().to_owned();
    git(
        repo,
        &[
            "worktree",
            "remove",
            "--force",
            "--force",
            wt.to_str().unwrap(),
        ],
    );
    assert!(!wt.exists());
    let common = PathBuf::from(git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    ));
    let restored = rebuild(&common, &prefix, wt, false).unwrap();
    assert_eq!(restored.path, wt);
    let after = observe(wt, ignored);
    assert_eq!(after.status, before.status);
    assert_eq!(after.files, before.files);
    assert_eq!(after.stages, before.stages);
    assert_eq!(after.refs, before.refs);
    assert_eq!(after.state, before.state);
    assert!(after.index == before.index, "the index file, byte for byte");
    (before, prefix)
}

#[test]
fn every_kind_of_file_and_odd_names() {
    let f = Fixture::new();
    let wt = f.worktree("files", "t-files");
    write(&wt.join("tool.sh"), "#!/bin/sh\n");
    write(&wt.join("-dash"), "dash\n");
    git(&wt, &["add", "--", "tool.sh", "-dash"]);
    git(&wt, &["commit", "-q", "-m", "more"]);
    // Staged, staged then edited, unstaged, deleted, mode change.
    write(&wt.join("staged.txt"), "staged\n");
    git(&wt, &["add", "staged.txt"]);
    write(&wt.join("staged.txt"), "staged, then edited\n");
    write(&wt.join("README"), "unstaged\n");
    fs::remove_file(wt.join("src/lib.txt")).unwrap();
    fs::set_permissions(wt.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&wt.join("-dash"), "dash, edited\n");
    // Untracked: an executable, a symlink, odd names.
    write(&wt.join("run.sh"), "#!/bin/sh\necho\n");
    fs::set_permissions(wt.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("README", wt.join("link")).unwrap();
    symlink("/nonexistent/target", wt.join("dangling")).unwrap();
    write(&wt.join("new\nline.txt"), "newline\n");
    write(&wt.join("cr\r"), "carriage return\n");
    write(&wt.join("\"quoted\""), "quoted\n");
    let odd_dir = wt.join(OsStr::from_bytes(b"dir-\xff\xfe"));
    fs::create_dir(&odd_dir).unwrap();
    fs::write(odd_dir.join(OsStr::from_bytes(b"f\xe9")), "latin-1\n").unwrap();
    write(&wt.join("build.log"), "ignored\n");
    let (before, _) = round_trip(&f.repo, &wt, &["build.log"]);
    // The control: the state was all there.
    for needle in ["staged.txt", "run.sh", "? link", "? dangling", "new\\nline"] {
        assert!(
            before.status.contains(needle),
            "{needle}: {}",
            before.status
        );
    }
    assert!(before
        .files
        .keys()
        .any(|p| p.as_os_str().as_bytes().ends_with(b"f\xe9")));
    assert!(!wt.join("build.log").exists(), "ignored files are not kept");
}

/// Whether `git ls-files -s -v -t` shows `path` with `tag`.
fn tagged(stages: &str, tag: char, path: &str) -> bool {
    stages
        .lines()
        .any(|l| l.starts_with(tag) && l.ends_with(&format!("\t{path}")))
}

#[test]
fn index_flags_skip_worktree_assume_unchanged_intent_to_add() {
    let f = Fixture::new();
    let wt = f.worktree("flags", "t-flags");
    git(&wt, &["update-index", "--skip-worktree", "README"]);
    write(&wt.join("README"), "hidden edit under skip-worktree\n");
    git(&wt, &["update-index", "--assume-unchanged", "src/lib.txt"]);
    write(
        &wt.join("src/lib.txt"),
        "hidden edit under assume-unchanged\n",
    );
    write(&wt.join("ita.txt"), "intent to add\n");
    git(&wt, &["add", "--intent-to-add", "ita.txt"]);
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(tagged(&before.stages, 'S', "README"), "{}", before.stages);
    assert!(
        tagged(&before.stages, 'h', "src/lib.txt"),
        "{}",
        before.stages
    );
    assert!(before.status.contains(".A"), "{}", before.status);
    assert_eq!(
        fs::read_to_string(wt.join("README")).unwrap(),
        "hidden edit under skip-worktree\n"
    );
}

#[test]
fn sparse_checkout_with_a_file_outside_the_patterns() {
    let f = Fixture::new();
    write(&f.repo.join("a/one.txt"), "a\n");
    write(&f.repo.join("b/two.txt"), "b\n");
    git(&f.repo, &["add", "a", "b"]);
    git(&f.repo, &["commit", "-q", "-m", "dirs"]);
    let wt = f.worktree("sparse", "t-sparse");
    git(&wt, &["sparse-checkout", "set", "--cone", "a"]);
    assert!(!wt.join("b").exists());
    write(&wt.join("b/two.txt"), "present outside the patterns\n");
    write(&wt.join("a/one.txt"), "edited inside\n");
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.state.contains_key(Path::new("info/sparse-checkout")));
    // git clears skip-worktree from a file it finds present: the file
    // shows as a change.
    assert!(before.status.contains("b/two.txt"), "{}", before.status);
    assert!(
        tagged(&before.stages, 'H', "b/two.txt"),
        "{}",
        before.stages
    );
    assert_eq!(
        fs::read_to_string(wt.join("b/two.txt")).unwrap(),
        "present outside the patterns\n"
    );
    assert_eq!(
        git(&wt, &["sparse-checkout", "list"]),
        "a",
        "the sparse configuration is back"
    );
}

#[test]
fn a_present_file_that_keeps_its_skip_worktree_bit() {
    let f = Fixture::new();
    git(
        &f.repo,
        &["config", "sparse.expectFilesOutsideOfPatterns", "true"],
    );
    let wt = f.worktree("hidden", "t-hidden");
    git(&wt, &["sparse-checkout", "set", "--no-cone", "/README"]);
    assert!(!wt.join("src/lib.txt").exists());
    write(
        &wt.join("src/lib.txt"),
        "an edit git's status does not show\n",
    );
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(
        tagged(&before.stages, 'S', "src/lib.txt"),
        "{}",
        before.stages
    );
    assert!(
        !before.status.contains("lib.txt"),
        "hidden: {}",
        before.status
    );
    assert_eq!(
        fs::read_to_string(wt.join("src/lib.txt")).unwrap(),
        "an edit git's status does not show\n"
    );
}

/// A worktree on its own branch with a commit that conflicts with `main`.
fn conflicting(f: &Fixture, name: &str) -> PathBuf {
    let wt = f.worktree(name, &format!("t-{name}"));
    f.commit(&f.repo, "README", "main side\n", "main edit");
    f.commit(&wt, "README", "branch side\n", "branch edit");
    wt
}

fn resolve(wt: &Path) {
    write(&wt.join("README"), "resolved\n");
    git(wt, &["add", "README"]);
}

fn continues(wt: &Path, op: &[&str]) -> std::process::Output {
    let mut cmd = git_command(wt, op);
    cmd.env("GIT_EDITOR", "true");
    cmd.output().unwrap()
}

#[test]
fn interrupted_merge_with_conflict_stages_continues() {
    let f = Fixture::new();
    let wt = conflicting(&f, "merge");
    assert!(!git_output(&wt, &["merge", "-q", "main"]).status.success());
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.state.contains_key(Path::new("MERGE_HEAD")));
    assert!(before.stages.contains(" 3\tREADME"), "{}", before.stages);
    resolve(&wt);
    let done = continues(&wt, &["merge", "--continue"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        git(&wt, &["rev-list", "--count", "--merges", "HEAD^!"]),
        "1"
    );
}

#[test]
fn interrupted_rebase_continues() {
    let f = Fixture::new();
    let wt = conflicting(&f, "rebase");
    write(&wt.join("other.txt"), "second branch commit\n");
    git(&wt, &["add", "other.txt"]);
    git(&wt, &["commit", "-q", "-m", "second"]);
    assert!(!git_output(&wt, &["rebase", "-q", "main"]).status.success());
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.state.keys().any(|p| p.starts_with("rebase-merge")));
    resolve(&wt);
    let done = continues(&wt, &["rebase", "--continue"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        git(&wt, &["symbolic-ref", "HEAD"]),
        "refs/heads/t-rebase",
        "the rebase finished on its branch"
    );
    assert_eq!(
        git(&wt, &["merge-base", "HEAD", "main"]),
        git(&wt, &["rev-parse", "main"])
    );
    assert_eq!(
        fs::read_to_string(wt.join("other.txt")).unwrap(),
        "second branch commit\n"
    );
}

#[test]
fn interrupted_cherry_pick_continues() {
    let f = Fixture::new();
    let wt = f.worktree("pick", "t-pick");
    f.commit(&f.repo, "README", "main side\n", "main edit");
    let main_tip = git(&f.repo, &["rev-parse", "HEAD"]);
    f.commit(&wt, "README", "branch side\n", "branch edit");
    assert!(!git_output(&wt, &["cherry-pick", &main_tip])
        .status
        .success());
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.refs.contains("CHERRY_PICK_HEAD"), "{}", before.refs);
    resolve(&wt);
    let done = continues(&wt, &["cherry-pick", "--continue"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(git(&wt, &["log", "-1", "--format=%s"]), "main edit");
}

#[test]
fn per_worktree_refs_alone_restore_from_the_set() {
    let f = Fixture::new();
    let wt = f.detached_worktree("refs");
    let tip = f.commit(&wt, "x.txt", "x\n", "only in refs");
    git(&wt, &["update-ref", "refs/worktree/keep", "HEAD"]);
    git(&wt, &["update-ref", "refs/rewritten/onto", "HEAD"]);
    git(&wt, &["update-ref", "refs/bisect/bad", "HEAD"]);
    git(&wt, &["checkout", "-q", "--detach", "main"]);
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    for r in [
        "refs/worktree/keep",
        "refs/rewritten/onto",
        "refs/bisect/bad",
    ] {
        assert!(
            before.refs.contains(&format!("{r} {tip}")),
            "{}",
            before.refs
        );
    }
    git(&f.repo, &["gc", "-q", "--prune=now"]);
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%s", "refs/worktree/keep"]),
        "only in refs"
    );
}

#[test]
fn attributes_eol_and_filters_do_not_apply_twice() {
    let f = Fixture::new();
    write(
        &f.repo.join(".gitattributes"),
        "*.txt text eol=crlf\n*.up filter=upper\n",
    );
    write(&f.repo.join("crlf.txt"), "one\ntwo\n");
    git(&f.repo, &["add", ".gitattributes", "crlf.txt"]);
    git(&f.repo, &["commit", "-q", "-m", "attributes"]);
    git(&f.repo, &["config", "filter.upper.clean", "tr a-z A-Z"]);
    git(&f.repo, &["config", "filter.upper.smudge", "cat"]);
    let wt = f.worktree("attrs", "t-attrs");
    assert_eq!(fs::read(wt.join("crlf.txt")).unwrap(), b"one\r\ntwo\r\n");
    write(&wt.join("crlf.txt"), "one\r\ntwo\r\nthree\r\n");
    write(&wt.join("new.txt"), "lf only\n");
    write(&wt.join("shout.up"), "lower case\n");
    round_trip(&f.repo, &wt, &[]);
    assert_eq!(
        fs::read(wt.join("crlf.txt")).unwrap(),
        b"one\r\ntwo\r\nthree\r\n"
    );
    assert_eq!(fs::read(wt.join("shout.up")).unwrap(), b"lower case\n");
}

/// `git -c protocol.file.allow=always <args>` (local submodules).
fn git_file(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-c", "protocol.file.allow=always"];
    all.extend(args);
    git(dir, &all)
}

#[test]
fn submodule_with_an_edit_and_an_unpushed_commit() {
    let f = Fixture::new();
    let lib = f.tmp.path().join("lib");
    fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    write(&lib.join("lib.c"), "int x;\n");
    git(&lib, &["add", "lib.c"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    git_file(
        &f.repo,
        &["submodule", "add", "-q", lib.to_str().unwrap(), "lib"],
    );
    git(&f.repo, &["commit", "-q", "-m", "add lib"]);
    let wt = f.worktree("sub", "t-sub");
    git_file(&wt, &["submodule", "update", "--init", "-q"]);
    let sub = wt.join("lib");
    assert!(
        git_dir(&sub).starts_with(git_dir(&wt)),
        "the submodule's git dir lives in the admin dir"
    );
    git(&sub, &["switch", "-q", "-c", "work"]);
    let unpushed = f.commit(&sub, "lib.c", "int y;\n", "unpushed");
    write(&sub.join("lib.c"), "int z; /* uncommitted */\n");
    write(&sub.join("notes.txt"), "untracked in the submodule\n");
    let sub_before = observe(&sub, &[]);
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.status.contains("lib"), "{}", before.status);
    assert_eq!(observe(&sub, &[]), sub_before);
    assert_eq!(git(&sub, &["rev-parse", "HEAD"]), unpushed);
    assert!(
        git_dir(&sub).starts_with(git_dir(&wt)),
        "absorbed again into the new admin dir"
    );
}

#[test]
fn embedded_repository_with_its_own_state() {
    let f = Fixture::new();
    let wt = f.worktree("embedded", "t-embedded");
    let inner = wt.join("vendor/dep");
    fs::create_dir_all(&inner).unwrap();
    git(&inner, &["init", "-q", "-b", "trunk"]);
    write(&inner.join("a.txt"), "a\n");
    git(&inner, &["add", "a.txt"]);
    git(&inner, &["commit", "-q", "-m", "inner"]);
    write(&inner.join("b.txt"), "staged in the embedded repository\n");
    git(&inner, &["add", "b.txt"]);
    write(&inner.join("a.txt"), "edited\n");
    let inner_before = observe(&inner, &[]);
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.status.contains("vendor/dep/"), "{}", before.status);
    assert_eq!(observe(&inner, &[]), inner_before);
    assert_eq!(
        git(&inner, &["show", ":b.txt"]),
        "staged in the embedded repository"
    );
}

/// A repository in the given formats, with a commit on `main`, and a
/// worktree of it with uncommitted work.
fn formatted(object: &str, refs: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = common::strict_tempdir();
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(
        &repo,
        &[
            "init",
            "-q",
            "-b",
            "main",
            &format!("--object-format={object}"),
            &format!("--ref-format={refs}"),
        ],
    );
    write(&repo.join("README"), "hello\n");
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    let wt = tmp.path().join("wt");
    common::add_worktree(&repo, &wt, Some("t-fmt"));
    write(&wt.join("README"), "edited\n");
    write(&wt.join("new.txt"), "new\n");
    git(&wt, &["update-ref", "refs/worktree/mark", "HEAD"]);
    (tmp, repo, wt)
}

#[test]
fn sha256_and_reftable_repositories() {
    for (object, refs) in [
        ("sha256", "files"),
        ("sha1", "reftable"),
        ("sha256", "reftable"),
    ] {
        let (_tmp, repo, wt) = formatted(object, refs);
        assert_eq!(git(&repo, &["rev-parse", "--show-object-format"]), object);
        assert_eq!(git(&repo, &["rev-parse", "--show-ref-format"]), refs);
        let (before, _) = round_trip(&repo, &wt, &[]);
        assert!(
            before.refs.contains("refs/worktree/mark"),
            "{object} {refs}"
        );
    }
}

#[test]
fn interrupted_bisect_continues() {
    let f = Fixture::new();
    let wt = f.worktree("bisect", "t-bisect");
    let good = git(&wt, &["rev-parse", "HEAD"]);
    for n in 1..=4 {
        f.commit(&wt, "count.txt", &format!("{n}\n"), &format!("step {n}"));
    }
    git(&wt, &["bisect", "start"]);
    git(&wt, &["bisect", "bad"]);
    git(&wt, &["bisect", "good", &good]);
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.state.contains_key(Path::new("BISECT_START")));
    assert!(before.refs.contains("refs/bisect/bad"), "{}", before.refs);
    let next = git(&wt, &["bisect", "good"]);
    assert!(
        next.contains("Bisecting") || next.contains("is the first bad commit"),
        "{next}"
    );
    assert_eq!(git(&wt, &["bisect", "log"]).matches("# good").count(), 2);
}

#[test]
fn split_index_with_its_shared_file() {
    let f = Fixture::new();
    let wt = f.worktree("split", "t-split");
    git(&wt, &["update-index", "--split-index"]);
    write(&wt.join("staged.txt"), "staged\n");
    git(&wt, &["add", "staged.txt"]);
    let shared: Vec<_> = fs::read_dir(git_dir(&wt))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("sharedindex."))
        .collect();
    assert!(!shared.is_empty(), "a split index has its shared file");
    let (before, _) = round_trip(&f.repo, &wt, &[]);
    assert!(before.status.contains("staged.txt"), "{}", before.status);
}
