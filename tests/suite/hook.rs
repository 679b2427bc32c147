//! `treeward-hook` under the real git: the shim `hooks/post-checkout` is
//! copied into each test repository's `.git/hooks/`, as `treeward
//! install-hook` does, and git runs it.

use crate::common;

use common::{config_file, git, git_command, worktree_add_args, write, Fixture};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use treeward::testing::ledger::{Ledger, State};

const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-checkout");
const HOOK: &str = env!("CARGO_BIN_EXE_treeward-hook");

/// Installs the shim into `repo`'s hooks directory.
fn install_shim(repo: &Path) -> PathBuf {
    let hooks = repo.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let path = hooks.join("post-checkout");
    std::fs::copy(SHIM, &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    hooks
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) {
    write(path, &format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// git in `dir` with treeward's hook and configuration `config`.
fn git_hooked(dir: &Path, config: &Path, args: &[&str]) -> Output {
    git_command(dir, args)
        .env("TREEWARD_HOOK", HOOK)
        .env("TREEWARD_CONFIG", config)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .output()
        .expect("git runs")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the command said `needle` on stderr.
fn assert_said(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

/// A fixture with the shim installed, a root at `<tmp>/wt` and a config.
struct Hooked {
    fx: Fixture,
    root: PathBuf,
    config: PathBuf,
    ledger: Ledger,
}

impl Hooked {
    fn new() -> Hooked {
        let fx = Fixture::new();
        install_shim(&fx.repo);
        let root = fx.tmp.path().join("wt");
        std::fs::create_dir_all(&root).unwrap();
        let config = config_file(fx.tmp.path(), &root, "");
        let ledger = Ledger::new(&fx.tmp.path().join("ledger.json"));
        Hooked {
            fx,
            root,
            config,
            ledger,
        }
    }

    fn add(&self, path: &Path, branch: &str) -> Output {
        git_hooked(
            &self.fx.repo,
            &self.config,
            &worktree_add_args(path, Some(branch)),
        )
    }
}

#[test]
fn worktree_add_records_an_active_record_with_the_right_fields() {
    let h = Hooked::new();
    let path = h.root.join("review-1");
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);

    let out = h.add(&path, "review-1");

    assert_ok(&out);
    assert_eq!(stderr(&out), "", "the hook prints nothing on success");
    let doc = h.ledger.read().unwrap();
    assert_eq!(doc.records.len(), 1, "{doc:?}");
    let r = &doc.records[0];
    assert_eq!(r.path, path);
    assert_eq!(r.repository, h.fx.repo.join(".git"));
    assert_eq!(r.worktree_name.as_deref(), Some("review-1"));
    assert_eq!(r.branch.as_deref(), Some("review-1"));
    assert_eq!(r.base_commit, Some(git(&h.fx.repo, &["rev-parse", "main"])));
    assert_eq!(r.uid, nix::unistd::getuid().as_raw());
    assert_eq!(r.state, State::Active);
    let created = treeward::testing::ledger::parse_timestamp(&r.created_at).unwrap();
    assert!(created >= before && created <= std::time::SystemTime::now());
    assert!(
        !h.ledger.path().exists(),
        "the hook appends to the journal; it does not rewrite the document"
    );
}

#[test]
fn a_clone_records_nothing() {
    let h = Hooked::new();
    // The clone gets the shim from a template, and a chained hook that
    // proves the shim ran.
    let template = h.fx.tmp.path().join("template");
    let hooks = template.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::copy(SHIM, hooks.join("post-checkout")).unwrap();
    let ran = h.fx.tmp.path().join("chained-ran");
    script(
        &hooks.join("post-checkout.treeward-chained"),
        &format!("echo \"$@\" > '{}'\n", ran.display()),
    );
    let clone = h.root.join("clone");

    let out = git_hooked(
        h.fx.tmp.path(),
        &h.config,
        &[
            "clone",
            "-q",
            "--template",
            template.to_str().unwrap(),
            h.fx.repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );

    assert_ok(&out);
    assert_eq!(stderr(&out), "");
    let args = std::fs::read_to_string(&ran).expect("the shim ran");
    // The null object name, as long as the repository's (SHA-1 or SHA-256).
    let null = "0".repeat(git(&h.fx.repo, &["rev-parse", "HEAD"]).len());
    assert!(args.starts_with(&format!("{null} ")), "{args}");
    assert!(h.ledger.read().unwrap().records.is_empty());
}

#[test]
fn a_branch_switch_in_a_recorded_worktree_updates_its_branch() {
    let h = Hooked::new();
    let path = h.root.join("sess-1");
    assert_ok(&h.add(&path, "sess-1"));

    assert_ok(&git_hooked(
        &path,
        &h.config,
        &["switch", "-q", "-c", "next"],
    ));
    let doc = h.ledger.read().unwrap();
    assert_eq!(doc.records.len(), 1);
    assert_eq!(doc.records[0].branch.as_deref(), Some("next"));

    // A file checkout changes no branch.
    write(&path.join("README"), "changed\n");
    assert_ok(&git_hooked(
        &path,
        &h.config,
        &["checkout", "-q", "--", "README"],
    ));
    assert_eq!(
        h.ledger.read().unwrap().records[0].branch.as_deref(),
        Some("next")
    );

    assert_ok(&git_hooked(&path, &h.config, &["switch", "-q", "--detach"]));
    let doc = h.ledger.read().unwrap();
    assert_eq!(doc.records.len(), 1);
    assert_eq!(doc.records[0].branch, None, "detached");

    // Folded for good by the next update.
    h.ledger.update(|_| ()).unwrap();
    assert_eq!(h.ledger.read().unwrap().records[0].branch, None);
}

#[test]
fn outside_every_root_nothing_is_recorded_unless_configured() {
    let h = Hooked::new();
    let outside = h.fx.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();

    assert_ok(&h.add(&outside.join("a"), "a"));
    assert!(h.ledger.read().unwrap().records.is_empty());

    let text = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, format!("hook_record_anywhere = true\n{text}")).unwrap();
    assert_ok(&h.add(&outside.join("b"), "b"));

    let doc = h.ledger.read().unwrap();
    assert_eq!(doc.records.len(), 1, "{doc:?}");
    assert_eq!(
        doc.records[0].path,
        std::fs::canonicalize(outside.join("b")).unwrap()
    );
    assert_eq!(doc.records[0].branch.as_deref(), Some("b"));
}

#[test]
fn a_broken_config_does_not_fail_git_and_is_logged() {
    let h = Hooked::new();
    std::fs::write(&h.config, "ledger = 5\n").unwrap();
    let path = h.root.join("x");

    let out = h.add(&path, "x");

    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("treeward-hook"), "{err}");
    assert!(err.contains(&h.config.display().to_string()), "{err}");
    assert!(err.contains("nothing was recorded"), "{err}");
    assert!(path.join(".git").is_file(), "the worktree was created");
    assert!(h.ledger.read().unwrap().records.is_empty());
    assert!(!h.ledger.journal_path().exists());
}

#[test]
fn an_unwritable_ledger_does_not_fail_git() {
    let h = Hooked::new();
    // The ledger's directory is a file: nothing can be created under it.
    let blocker = h.fx.tmp.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let text = std::fs::read_to_string(&h.config).unwrap();
    let text = text.replace(
        &h.ledger.path().display().to_string(),
        &blocker.join("ledger.json").display().to_string(),
    );
    std::fs::write(&h.config, text).unwrap();

    let out = h.add(&h.root.join("y"), "y");

    assert_ok(&out);
    assert_said(&out, "blocker");
}

/// A user hook that records its arguments and standard input, and exits
/// with `status`.
fn user_hook(path: &Path, log: &Path, status: u8) {
    script(
        path,
        &format!(
            "echo \"args: $@\" >> '{log}'\nprintf 'stdin: ' >> '{log}'\ncat >> '{log}'\necho >> '{log}'\nexit {status}\n",
            log = log.display()
        ),
    );
}

#[test]
fn a_chained_hook_runs_as_before_and_its_status_is_gits() {
    for status in [0u8, 3] {
        let h = Hooked::new();
        let hooks = h.fx.repo.join(".git/hooks");
        let plain_log = h.fx.tmp.path().join("plain.log");
        let chained_log = h.fx.tmp.path().join("chained.log");
        // The same checkout with the user's hook alone, as before treeward...
        std::fs::rename(hooks.join("post-checkout"), hooks.join("shim")).unwrap();
        user_hook(&hooks.join("post-checkout"), &plain_log, status);
        let plain = git_hooked(&h.fx.repo, &h.config, &["checkout", "-q", "-b", "one"]);
        // ...and with the shim in front of it.
        std::fs::rename(
            hooks.join("post-checkout"),
            hooks.join("post-checkout.treeward-chained"),
        )
        .unwrap();
        user_hook(
            &hooks.join("post-checkout.treeward-chained"),
            &chained_log,
            status,
        );
        std::fs::rename(hooks.join("shim"), hooks.join("post-checkout")).unwrap();
        let chained = git_hooked(&h.fx.repo, &h.config, &["checkout", "-q", "-b", "two"]);

        assert_eq!(
            plain.status.code(),
            chained.status.code(),
            "status {status}"
        );
        assert_eq!(chained.status.success(), status == 0);
        assert_eq!(
            std::fs::read_to_string(&plain_log).unwrap(),
            std::fs::read_to_string(&chained_log).unwrap(),
            "same arguments and standard input"
        );
        let logged = std::fs::read_to_string(&chained_log).unwrap();
        let head = git(&h.fx.repo, &["rev-parse", "HEAD"]);
        assert_eq!(logged, format!("args: {head} {head} 1\nstdin: \n"));

        // treeward failing changes nothing of that.
        std::fs::write(&h.config, "not = [toml\n").unwrap();
        let broken = git_hooked(&h.fx.repo, &h.config, &["checkout", "-q", "-b", "three"]);
        assert_eq!(
            broken.status.code(),
            plain.status.code(),
            "{}",
            stderr(&broken)
        );
        assert_said(&broken, "treeward-hook");
        assert_eq!(
            std::fs::read_to_string(&chained_log)
                .unwrap()
                .lines()
                .count(),
            4,
            "the chained hook ran again"
        );
    }
}

#[test]
fn the_shim_passes_arguments_and_standard_input_to_the_chained_hook() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::copy(SHIM, hooks.join("post-checkout")).unwrap();
    let log = dir.path().join("log");
    user_hook(&hooks.join("post-checkout.treeward-chained"), &log, 5);
    let run = |hook: &str| {
        let mut child = Command::new(hooks.join("post-checkout"))
            .args(["a b", "c", "1"])
            .current_dir(dir.path())
            .env("TREEWARD_HOOK", hook)
            .env("TREEWARD_CONFIG", dir.path().join("missing.toml"))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"given").unwrap();
        child.wait_with_output().unwrap()
    };

    // treeward-hook fails (bad arguments, missing config): logged, ignored.
    let out = run(HOOK);
    assert_eq!(out.status.code(), Some(5), "the chained hook's status");
    assert_said(&out, "treeward-hook");
    // A missing treeward-hook is said, and ignored too.
    let out = run("/nonexistent/treeward-hook");
    assert_eq!(out.status.code(), Some(5));
    assert_said(&out, "not found");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "args: a b c 1\nstdin: given\n".repeat(2)
    );

    // No chained hook: 0.
    std::fs::remove_file(hooks.join("post-checkout.treeward-chained")).unwrap();
    assert_eq!(run(HOOK).status.code(), Some(0));
}

#[test]
fn sixty_four_parallel_worktree_adds_across_four_repositories_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("wt");
    std::fs::create_dir_all(&root).unwrap();
    let config = config_file(tmp.path(), &root, "");
    let repos: Vec<PathBuf> = (0..4)
        .map(|r| {
            let repo = tmp.path().join(format!("repo{r}"));
            std::fs::create_dir_all(&repo).unwrap();
            git(&repo, &["init", "-q", "-b", "main"]);
            write(&repo.join("README"), &format!("repo {r}\n"));
            git(&repo, &["add", "-A"]);
            git(&repo, &["commit", "-q", "-m", "initial"]);
            install_shim(&repo);
            repo
        })
        .collect();

    let jobs: Vec<(&PathBuf, PathBuf)> = (0..64)
        .map(|i| (&repos[i % 4], root.join(format!("r{}-w{i:02}", i % 4))))
        .collect();
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 10, "git kept failing: {pending:?}");
        let children: Vec<(usize, std::process::Child)> = pending
            .iter()
            .map(|&i| {
                let (repo, path) = &jobs[i];
                let child = git_command(repo, &worktree_add_args(path, None))
                    .env("TREEWARD_HOOK", HOOK)
                    .env("TREEWARD_CONFIG", &config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (i, child)
            })
            .collect();
        pending.clear();
        for (i, child) in children {
            let out = child.wait_with_output().unwrap();
            if is_gits_own_race(&out) {
                // git itself, before it creates anything (so before the
                // hook): another add's admin dir was half written.
                eprintln!("round {rounds}: git raced itself: {}", stderr(&out));
                pending.push(i);
                continue;
            }
            assert_ok(&out);
            assert_eq!(stderr(&out), "", "{}", jobs[i].1.display());
        }
    }
    let paths: Vec<&PathBuf> = jobs.iter().map(|(_, p)| p).collect();

    let ledger = Ledger::new(&tmp.path().join("ledger.json"));
    let doc = ledger.read().unwrap();
    assert_eq!(doc.records.len(), 64);
    for path in &paths {
        let r = doc.find_by_path(path).expect("recorded");
        assert_eq!(r.branch, None);
        assert!(r.repository.starts_with(tmp.path()));
    }
    ledger.update(|_| ()).unwrap();
    let text = std::fs::read_to_string(ledger.path()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(value["records"].as_array().unwrap().len(), 64);
    assert_eq!(std::fs::metadata(ledger.journal_path()).unwrap().len(), 0);
    assert_eq!(ledger.read().unwrap().records.len(), 64);
}

/// Whether `git worktree add` failed on git's own race between parallel
/// adds in one repository: it reads every admin dir to validate the new
/// one, and another add may have created its dir but not yet its files.
fn is_gits_own_race(out: &Output) -> bool {
    let err = stderr(out);
    !out.status.success()
        && err.contains("fatal: failed to read .git/worktrees/")
        && (err.contains("/commondir") || err.contains("/gitdir"))
}

/// treeward-hook run by hand in `dir`.
fn hook(dir: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(HOOK)
        .args(args)
        .current_dir(dir)
        .env("TREEWARD_CONFIG", config)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

#[test]
fn wrong_arguments_are_logged_exit_0_and_change_nothing() {
    let h = Hooked::new();
    let wt = h.fx.worktree("x", "x");
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let cases: [(&[&str], &str); 4] = [
        (&[], "expected 3 arguments, got 0"),
        (&["HEAD", "HEAD", "1"], "is not a full object id"),
        (&[&head, &head, "yes"], "neither 0 (file checkout) nor 1"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
    ];
    for (args, expected) in cases {
        let out = hook(&wt, &h.config, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_said(&out, expected);
        assert_said(&out, "nothing was recorded");

        let mut dry = vec!["--dry-run"];
        dry.extend(args);
        let out = hook(&wt, &h.config, &dry);
        assert_eq!(out.status.code(), Some(2), "--dry-run {args:?}");
        assert_said(&out, expected);
    }
    assert_eq!(
        std::fs::read_dir(h.fx.tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ledger"))
            .count(),
        0,
        "no ledger, journal or lock"
    );
}

#[test]
fn dry_run_says_what_it_would_record_and_records_nothing() {
    let h = Hooked::new();
    let wt = h.fx.worktree("w", "w");
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let null = "0".repeat(head.len()); // SHA-1 or SHA-256

    let out = hook(&wt, &h.config, &["--dry-run", "--json", &null, &head, "1"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "record");
    assert_eq!(v["path"], wt.to_str().unwrap());
    assert_eq!(v["branch"], "w");
    assert_eq!(v["base_commit"], head.as_str());
    let out = hook(&wt, &h.config, &["--dry-run", &null, &head, "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("would record {}", wt.display())),
        "{text}"
    );
    assert!(!h.ledger.journal_path().exists());

    std::fs::write(&h.config, "ledger = 5\n").unwrap();
    let out = hook(&wt, &h.config, &["--dry-run", &null, &head, "1"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
}

#[test]
fn the_shim_is_posix_sh_and_carries_the_marker_install_hook_recognises() {
    let text = std::fs::read_to_string(SHIM).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"));
    assert!(
        text.lines()
            .any(|l| l.trim() == "# treeward-shim: post-checkout"),
        "`treeward install-hook` recognises its shim by this exact line"
    );
    let syntax = Command::new("sh").arg("-n").arg(SHIM).output().unwrap();
    assert_ok(&syntax);
}
