//! Repository formats: every repository the host's git makes goes through
//! `treeward-check`, `treeward-sweep`, `treeward-reap` and `treeward
//! restore` — files or reftable refs × SHA-1 or SHA-256 objects × a plain
//! checkout, a sparse index, or a partial clone (`--filter=blob:none`, from
//! a local bare repository; treeward never fetches: the promisor packs do
//! not change while it runs, and the server is out of reach meanwhile).
//!
//! And the Git 3.0 defaults pass: under `TREEWARD_TEST_GIT3=1` (`.ci/run`'s
//! second pass, which puts `init.defaultObjectFormat = sha256` and
//! `init.defaultRefFormat = reftable` in every git the tests start), the
//! repositories the fixtures make must be SHA-256 and reftable, or that
//! pass proves nothing.
//!
//! Root-only (the sweep acts for uid 4242, the reaper runs as it): skipped
//! with a printed reason otherwise (CI runs as root).

mod common;

use common::{chown_r, git, git_as, Fixture};
use std::path::Path;

const OWNER: u32 = 4242;

/// `rev-parse --show-object-format` and `--show-ref-format` in `dir`.
fn formats_of(uid: Option<u32>, dir: &Path) -> (String, String) {
    let args = ["rev-parse", "--show-object-format", "--show-ref-format"];
    let out = match uid {
        Some(u) => git_as(u, dir, &args),
        None => git(dir, &args),
    };
    let mut lines = out.lines().map(str::to_owned);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn the_git3_defaults_pass_really_uses_sha256_and_reftable() {
    let expected = if std::env::var_os("TREEWARD_TEST_GIT3").is_some_and(|v| v == "1") {
        ("sha256", "reftable")
    } else {
        let (o, r) = formats_of(None, &Fixture::new().repo);
        eprintln!("git's own defaults in this pass: {o}, {r} (TREEWARD_TEST_GIT3 unset)");
        return;
    };
    let want = (expected.0.to_owned(), expected.1.to_owned());
    // The way the fixtures make repositories: git as the test runner...
    let f = Fixture::new();
    assert_eq!(formats_of(None, &f.repo), want, "Fixture::new's repository");
    assert_eq!(formats_of(None, &f.origin), want, "Fixture::new's origin");
    let wt = f.worktree("w", "w");
    assert_eq!(formats_of(None, &wt), want, "a linked worktree");
    // ...a clone, which takes its source's formats...
    let clone = f.tmp.path().join("clone");
    git(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            f.repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(formats_of(None, &clone), want, "a clone");
    // ...and as another user, directly and through a shell (as
    // tests/attacks.rs's users do).
    if common::prerequisite(
        common::is_root(),
        "creating a repository as uid 4242 needs root",
    ) {
        let dir = common::strict_tempdir();
        chown_r(dir.path(), OWNER);
        git_as(OWNER, dir.path(), &["init", "-q", "-b", "main", "mine"]);
        let mine = dir.path().join("mine");
        assert_eq!(
            formats_of(Some(OWNER), &mine),
            want,
            "git init as uid {OWNER}"
        );
        let out = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("sh")
                .args(["-euc", "git init -q -b main viash"])
                .current_dir(dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("HOME", "/nonexistent")
                .uid(OWNER)
                .gid(OWNER)
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{out:?}");
        let viash = dir.path().join("viash");
        assert_eq!(
            formats_of(Some(OWNER), &viash),
            want,
            "git init in sh as uid {OWNER}"
        );
    }
}
