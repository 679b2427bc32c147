//! `treeward-sweep` as root against real repositories owned by uid 4242:
//! what is removed, what is preserved (and recovered with plain git), what
//! is left alone, and that nothing root-owned appears in the repository.
//! Root-only: skipped with a printed reason otherwise (CI runs as root).

use crate::common;

use common::{chown_r, git_as, root_owned, snapshot, write, ChildGuard, Fixture};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const OWNER: u32 = 4242;

struct Host {
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
}

/// A repository (and its worktrees, added later) under `<tmp>/wt`, a root
/// with `patterns` and `policy`, and a ledger.
fn host(patterns: &str, policy: &str) -> Option<Host> {
    if !common::is_root() {
        eprintln!("skipped: the sweep tests run as root (CI does) to act for uid {OWNER}");
        return None;
    }
    let f = Fixture::new();
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let cfg = f.tmp.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = {patterns}\npolicy = \"{policy}\"\nowner = \"{OWNER}\"\n",
            f.tmp.path().join("ledger.json").display(),
            root.display()
        ),
    )
    .unwrap();
    Some(Host { f, root, cfg })
}

impl Host {
    /// Hands the repository, its origin and every entry to uid 4242.
    fn hand_over(&self) {
        chown_r(&self.f.repo, OWNER);
        chown_r(&self.f.origin, OWNER);
        for e in std::fs::read_dir(&self.root).unwrap() {
            let p = e.unwrap().path();
            if !p.is_symlink() {
                chown_r(&p, OWNER);
            }
        }
    }

    fn sweep(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .arg("--json")
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} / {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), doc)
    }

    fn git(&self, args: &[&str]) -> String {
        git_as(OWNER, &self.f.repo, args)
    }

    fn refs(&self, prefix: &str) -> Vec<String> {
        let out = self.git(&["for-each-ref", "--format=%(refname)", prefix]);
        out.lines().map(str::to_owned).collect()
    }

    /// The live entries of the root (the trash aside).
    fn live(&self) -> Vec<String> {
        common::live_names(&self.root)
    }
}

use common::report_entry as action_of;

#[test]
fn prefixed_residue_goes_and_siblings_stay() {
    let Some(h) = host(r#"["review-*"]"#, "preserve") else {
        return;
    };
    let a = h.f.worktree("review-1", "task-1");
    let b = h.f.worktree("review-2", "task-2");
    let other = h.f.worktree("keepme", "task-3");
    std::fs::create_dir(h.root.join("review-plain")).unwrap();
    h.hand_over();
    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(h.live(), vec!["keepme"]);
    assert!(other.join("README").is_file());
    for p in [&a, &b] {
        assert_eq!(action_of(&doc, p)["action"], "removed");
    }
    assert_eq!(doc["swept_count"], 3);
    assert_eq!(doc["backlog_count"], 3);
    assert_eq!(doc["prune_succeeded"], true);
    // git forgot them, and the integrated branches went with them.
    let list = h.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("review-"), "{list}");
    assert!(h.refs("refs/heads/task-1").is_empty() && h.refs("refs/heads/task-2").is_empty());
    assert_eq!(h.refs("refs/heads/task-3").len(), 1);
}

#[test]
fn a_star_root_takes_every_name() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    h.f.worktree("anything", "t-1");
    h.f.worktree("sess-9", "t-2");
    write(&h.root.join("stray-file"), "x\n");
    h.hand_over();
    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc}");
    assert!(h.live().is_empty(), "{:?}", h.live());
}

#[test]
fn dirty_work_is_preserved_then_removed_and_recovered_with_plain_git() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let wt = h.f.worktree("review-dirty", "task-dirty");
    write(&wt.join("staged.txt"), "staged\n");
    common::git(&wt, &["add", "staged.txt"]);
    write(&wt.join("README"), "unstaged edit\n");
    std::fs::remove_file(wt.join("src/lib.txt")).unwrap();
    write(&wt.join("notes/untracked.md"), "only copy\n");
    write(&wt.join("debug.log"), "ignored\n");
    let status_before = common::git(&wt, &["status", "--porcelain=v2", "--untracked-files=all"]);
    h.hand_over();

    let (_, doc) = h.sweep(&[]);
    let e = action_of(&doc, &wt);
    assert_eq!(e["action"], "preserved", "{doc}");
    assert!(!wt.exists());
    let refs: Vec<String> = e["preserved_refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let work = refs
        .iter()
        .find(|r| r.ends_with("/work"))
        .expect("a work ref");
    assert!(
        work.starts_with("refs/treeward/preserved/review-dirty/"),
        "{work}"
    );
    assert_eq!(h.refs("refs/treeward/preserved/"), refs);

    // Its branch was integrated (no commits of its own), so it went; the
    // work is recovered with plain git in a fresh worktree at the same HEAD.
    assert!(h.refs("refs/heads/task-dirty").is_empty());
    let back = h.f.tmp.path().join("back");
    std::fs::create_dir(&back).unwrap();
    chown_r(&back, OWNER);
    h.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        back.to_str().unwrap(),
        &format!("{work}^1"),
    ]);
    git_as(OWNER, &back, &["stash", "apply", "--index", work]);
    let status_after = git_as(
        OWNER,
        &back,
        &["status", "--porcelain=v2", "--untracked-files=all"],
    );
    assert_eq!(status_after, status_before);
    assert_eq!(
        std::fs::read_to_string(back.join("notes/untracked.md")).unwrap(),
        "only copy\n"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("README")).unwrap(),
        "unstaged edit\n"
    );
    assert!(
        !back.join("debug.log").exists(),
        "ignored files are not preserved"
    );
    assert_eq!(doc["preserved_count"], 1);
}

#[test]
fn unmerged_branch_is_kept_and_detached_work_and_worktree_refs_are_preserved() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let unmerged = h.f.worktree("unmerged", "task-unmerged");
    let tip = h.f.commit(&unmerged, "feature.txt", "f\n", "feature");
    let detached = h.f.detached_worktree("detached");
    let lost = h.f.commit(&detached, "wip.txt", "w\n", "wip");
    common::git(
        &detached,
        &["update-ref", "refs/worktree/checkpoint", "HEAD"],
    );
    h.hand_over();
    let (_, doc) = h.sweep(&[]);
    assert_eq!(
        action_of(&doc, &unmerged)["action"],
        "removed",
        "branch commits live on in the branch"
    );
    assert_eq!(
        h.git(&["rev-parse", "refs/heads/task-unmerged"]),
        tip,
        "unmerged branch kept"
    );
    assert_eq!(action_of(&doc, &detached)["action"], "preserved");
    let refs = h.refs("refs/treeward/preserved/detached/");
    let head = refs
        .iter()
        .find(|r| r.ends_with("/head"))
        .expect("head ref");
    assert_eq!(h.git(&["rev-parse", head]), lost);
    assert!(
        refs.iter().any(|r| r.ends_with("/worktree/checkpoint")),
        "{refs:?}"
    );
}

#[test]
fn locked_in_use_and_flocked_entries_are_left() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let locked = h.f.worktree("locked", "t-locked");
    common::git(
        &h.f.repo,
        &[
            "worktree",
            "lock",
            "--reason",
            "agent 3",
            locked.to_str().unwrap(),
        ],
    );
    let busy = h.f.worktree("busy", "t-busy");
    let flocked = h.f.worktree("flocked", "t-flocked");
    h.hand_over();
    let _cwd = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .current_dir(&busy)
            .spawn()
            .unwrap(),
    );
    let _lock = ChildGuard(
        Command::new("sh")
            .args(["-c", "exec 9<\"$1\"; flock -x 9; exec sleep 60", "sh"])
            .arg(&flocked)
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while treeward::testing::in_use::flock_held(&flocked).ok() != Some(true) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, doc) = h.sweep(&[]);
    assert_eq!(action_of(&doc, &locked)["action"], "skipped_locked");
    assert_eq!(action_of(&doc, &busy)["action"], "skipped_in_use");
    assert_eq!(action_of(&doc, &flocked)["action"], "skipped_in_use");
    // Each skip says why: the lock's reason, who uses it.
    let why = |p: &Path| {
        action_of(&doc, p)["error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(why(&locked), "locked by its owner: agent 3", "{doc}");
    assert!(
        why(&busy).contains("(sleep) has its working directory inside"),
        "{doc}"
    );
    assert!(why(&flocked).ends_with("a flock is held on it"), "{doc}");
    assert_eq!(h.live(), vec!["busy", "flocked", "locked"]);
    assert_eq!(
        (doc["locked_count"].clone(), doc["in_use_count"].clone()),
        (Value::from(1), Value::from(2))
    );
}

#[test]
fn a_symlink_entry_is_removed_as_a_link() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let target = h.f.tmp.path().join("precious");
    write(&target.join("data.txt"), "keep me\n");
    std::os::unix::fs::symlink(&target, h.root.join("link")).unwrap();
    let before = snapshot(&target);
    let (_, doc) = h.sweep(&[]);
    assert_eq!(action_of(&doc, &h.root.join("link"))["action"], "removed");
    assert!(h.live().is_empty());
    assert_eq!(snapshot(&target), before);
}

#[test]
fn mode_000_subtrees_go_while_unrecordable_work_is_kept() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let closed = h.f.worktree("closed", "t-closed");
    write(&closed.join("vault/inner/secret.txt"), "s\n");
    let gone_repo = Fixture::new();
    let orphan = h.root.join("orphan");
    common::git(
        &gone_repo.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "o",
            orphan.to_str().unwrap(),
            "main",
        ],
    );
    write(&orphan.join("wip.txt"), "w\n");
    h.hand_over();
    std::fs::set_permissions(
        closed.join("vault/inner"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(closed.join("vault"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let rooty = h.root.join("root-owned");
    write(&rooty.join("deep/file"), "r\n");
    std::fs::remove_dir_all(gone_repo.repo.join(".git")).unwrap();
    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0);
    // The worktree with mode-000 subtrees is gone; what no repository can
    // record (a broken worktree's files, a directory of root's with files)
    // is kept under `preserve`, with why (SPEC, "preserve").
    assert!(!closed.exists());
    assert_eq!(h.live(), vec!["orphan", "root-owned"], "{doc}");
    for kept in [&orphan, &rooty] {
        let e = action_of(&doc, kept);
        assert_eq!(e["action"], "kept", "{doc}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("no repository can record"),
            "{e}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(orphan.join("wip.txt")).unwrap(),
        "w\n"
    );
    // Under `discard` they go.
    let cfg = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(&h.cfg, cfg.replace("\"preserve\"", "\"discard\"")).unwrap();
    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc}");
    assert!(h.live().is_empty(), "{:?} {doc}", h.live());
}

#[test]
fn nothing_root_owned_appears_in_the_repository() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    let merged = h.f.worktree("merged", "t-merged");
    h.f.commit(&merged, "m.txt", "m\n", "m");
    common::git(&h.f.repo, &["merge", "-q", "t-merged"]);
    common::git(&h.f.repo, &["push", "-q", "origin", "main"]);
    h.hand_over();
    let (_, doc) = h.sweep(&[]);
    assert_eq!(action_of(&doc, &dirty)["action"], "preserved");
    assert_eq!(action_of(&doc, &merged)["branch_deleted"], true, "{doc}");
    assert_eq!(root_owned(&h.f.repo.join(".git")), Vec::<String>::new());
}

#[test]
fn dry_run_changes_nothing_and_plans() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    let clean = h.f.worktree("clean", "t-clean");
    h.hand_over();
    let before = snapshot(h.f.tmp.path());
    let (code, doc) = h.sweep(&["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(snapshot(h.f.tmp.path()), before);
    assert_eq!(action_of(&doc, &dirty)["planned"], "preserved", "{doc}");
    assert_eq!(action_of(&doc, &clean)["planned"], "removed");
    assert_eq!(action_of(&doc, &clean)["action"], "planned");
    assert_eq!(
        (
            doc["swept_count"].clone(),
            doc["planned_swept_count"].clone(),
            doc["planned_preserved_count"].clone(),
            doc["planned_removed_count"].clone()
        ),
        (0.into(), 2.into(), 1.into(), 1.into()),
        "{doc}"
    );

    // A person reads plans, and the summary once: on stdout, not again in
    // the log on stderr.
    let human = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--dry-run", "--config"])
        .arg(&h.cfg)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&human.stdout),
        String::from_utf8_lossy(&human.stderr),
    );
    assert!(stdout.contains("would remove "), "{stdout}");
    assert!(stdout.contains("would preserve then remove "), "{stdout}");
    let summary = "dry run, nothing changed: would remove 1, would preserve then remove 1";
    assert_eq!(stdout.matches(summary).count(), 1, "{stdout}");
    assert!(!stderr.contains("would remove"), "{stderr}");
    assert_eq!(snapshot(h.f.tmp.path()), before);
    // -q: nothing on stdout.
    let quiet = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--dry-run", "-q", "--config"])
        .arg(&h.cfg)
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(0));
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
}

/// `--budget -1s` is refused as a negative duration (not as the unknown
/// flags `-1 -s`), and `--budget` followed by a flag says a duration was
/// expected; both exit 2 before any configuration is read. Needs no root.
#[test]
fn a_negative_or_missing_budget_is_a_usage_error() {
    for (value, says) in [
        ("-1s", "\"-1s\" is negative"),
        (
            "--dry-run",
            "expected a duration such as 10s, found \"--dry-run\"",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--config", "/nonexistent/treeward.toml", "--budget", value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--budget {value}: {stderr}");
        assert!(stderr.contains(says), "--budget {value}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn the_budget_leaves_the_rest_in_the_trash_for_the_next_pass() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    h.f.worktree("clean", "t-clean");
    h.hand_over();
    let (_, doc) = h.sweep(&["--budget", "0s"]);
    assert!(h.live().is_empty(), "the live names are free at once");
    assert_eq!(doc["deferred_count"], 2, "{doc}");
    // Quarantined worktrees stay valid, locked worktrees of their repository.
    let list = h.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches(".treeward-trash").count(), 2, "{list}");
    assert_eq!(list.matches("locked").count(), 2, "{list}");
    let (_, doc) = h.sweep(&[]);
    assert_eq!(doc["preserved_count"], 1, "{doc}");
    assert_eq!(doc["swept_count"], 2);
    assert!(
        std::fs::read_dir(h.root.join(".treeward-trash"))
            .unwrap()
            .next()
            .is_none(),
        "trash drained"
    );
    let sets = h.refs("refs/treeward/preserved/");
    assert_eq!(
        sets.iter().filter(|r| r.ends_with("/state")).count(),
        1,
        "{sets:?}"
    );
}

#[test]
fn the_ledger_follows_and_keeps_its_owner_and_mode() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    let clean = h.f.worktree("clean", "t-clean");
    let ledger = h.f.tmp.path().join("ledger.json");
    let rec = |id: &str, p: &Path| {
        format!(
            r#"{{"id":"{id}","path":"{}","repository":"{}","uid":{OWNER},"created_at":"2026-01-01T00:00:00Z","last_transition":"2026-01-01T00:00:00Z","state":"active"}}"#,
            p.display(),
            h.f.repo.join(".git").display()
        )
    };
    std::fs::write(
        &ledger,
        format!(
            r#"{{"schema":1,"records":[{},{}]}}"#,
            rec("a", &dirty),
            rec("b", &clean)
        ),
    )
    .unwrap();
    h.hand_over();
    std::os::unix::fs::chown(&ledger, Some(OWNER), Some(OWNER)).unwrap();
    std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o640)).unwrap();
    h.sweep(&[]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&ledger).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (OWNER, 0o640));
    let state = |id: &str| common::ledger_state(&ledger, id);
    assert_eq!(state("a"), "preserved");
    assert_eq!(state("b"), "removed");
}

#[test]
fn unsafe_roots_are_refused_and_the_others_still_swept() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    h.f.worktree("ok-entry", "t-ok");
    h.hand_over();
    let open = h.f.tmp.path().join("world-writable");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    write(&open.join("victim/file"), "v\n");
    let foreign = h.f.tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(1234), Some(1234)).unwrap();
    let linked = h.f.tmp.path().join("linked");
    std::os::unix::fs::symlink(&open, &linked).unwrap();
    let mut text = std::fs::read_to_string(&h.cfg).unwrap();
    for p in [&open, &foreign, &linked] {
        text.push_str(&format!(
            "\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n",
            p.display()
        ));
    }
    std::fs::write(&h.cfg, text).unwrap();
    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 2, "a refused root fails the sweep: {doc}");
    assert!(h.live().is_empty(), "the good root was swept");
    assert!(open.join("victim/file").exists());
    let refused: Vec<&str> = doc["refused_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(refused.len(), 3, "{doc}");
}

#[test]
fn bad_configuration_is_78_and_touches_nothing() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    h.f.worktree("entry", "t-entry");
    std::fs::write(
        &h.cfg,
        format!(
            "[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"soon\"\n",
            h.root.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--config")
        .arg(&h.cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grace"));
    assert_eq!(h.live(), vec!["entry"]);
}

#[test]
fn under_keep_work_at_risk_is_put_back_in_place_and_reported() {
    let Some(h) = host(r#"["*"]"#, "keep") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("untracked.txt"), "only copy\n");
    let detached = h.f.detached_worktree("detached");
    h.f.commit(&detached, "wip.txt", "w\n", "wip");
    let clean = h.f.worktree("clean", "t-clean");
    h.hand_over();
    let before = snapshot(&dirty);
    let (_, doc) = h.sweep(&[]);
    assert_eq!(action_of(&doc, &dirty)["action"], "kept", "{doc}");
    assert_eq!(action_of(&doc, &detached)["action"], "kept");
    assert_eq!(action_of(&doc, &clean)["action"], "removed");
    assert_eq!(h.live(), vec!["detached", "dirty"]);
    assert_eq!(snapshot(&dirty), before, "put back exactly as it was");
    // Still a valid, unlocked worktree of its repository, at its old path.
    let list = h.git(&["worktree", "list", "--porcelain"]);
    assert!(
        list.contains(&format!("worktree {}", dirty.display())),
        "{list}"
    );
    assert!(
        !list.contains("locked") && !list.contains(".treeward-trash"),
        "{list}"
    );
    assert_eq!(
        git_as(OWNER, &dirty, &["status", "--porcelain"]),
        "?? untracked.txt"
    );
    assert!(
        h.refs("refs/treeward/").is_empty(),
        "keep preserves nothing"
    );
    assert_eq!(doc["kept_count"], 2);
}

#[test]
fn under_discard_work_at_risk_goes_without_refs() {
    let Some(h) = host(r#"["*"]"#, "discard") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("untracked.txt"), "scratch\n");
    let detached = h.f.detached_worktree("detached");
    h.f.commit(&detached, "wip.txt", "w\n", "wip");
    let unmerged = h.f.worktree("unmerged", "t-unmerged");
    let tip = h.f.commit(&unmerged, "f.txt", "f\n", "feature");
    h.hand_over();
    let (_, doc) = h.sweep(&[]);
    for p in [&dirty, &detached, &unmerged] {
        assert_eq!(action_of(&doc, p)["action"], "removed", "{doc}");
    }
    assert!(h.live().is_empty());
    assert!(h.refs("refs/treeward/").is_empty());
    assert_eq!(
        h.git(&["rev-parse", "refs/heads/t-unmerged"]),
        tip,
        "branches are never discarded"
    );
}

#[test]
fn as_root_a_configuration_others_can_change_is_78() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    h.f.worktree("entry", "t-entry");
    std::os::unix::fs::chown(&h.cfg, Some(OWNER), Some(OWNER)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--config")
        .arg(&h.cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned by uid 4242"));
    std::os::unix::fs::chown(&h.cfg, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&h.cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--config")
        .arg(&h.cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(h.live(), vec!["entry"], "nothing touched");
}

#[test]
fn a_worktree_linked_by_relative_paths_is_left_in_place() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let wt = h.f.worktree("relative", "t-relative");
    write(&wt.join("wip.txt"), "only copy\n");
    // What `git worktree add` writes under worktree.useRelativePaths.
    let admin = h.f.repo.join(".git/worktrees/relative");
    std::fs::write(
        wt.join(".git"),
        "gitdir: ../../repo/.git/worktrees/relative\n",
    )
    .unwrap();
    std::fs::write(admin.join("gitdir"), "../../../wt/relative/.git\n").unwrap();
    h.hand_over();
    let before = snapshot(&wt);
    let (_, doc) = h.sweep(&[]);
    let e = action_of(&doc, &wt);
    assert_eq!(e["action"], "refused", "{doc}");
    assert!(
        e["error"].as_str().unwrap().contains("relative paths"),
        "{doc}"
    );
    assert_eq!(snapshot(&wt), before, "left exactly as it was");
}

/// Pids of live treeward workers running as `uid` that `parent` started
/// (their first argument is the worker flag).
fn workers_of(uid: u32, parent: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str, n: usize| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|ids| ids.split_whitespace().nth(n))
                .and_then(|v| v.parse::<u32>().ok())
        };
        if field("Uid:", 1) == Some(uid)
            && field("PPid:", 0) == Some(parent)
            && cmdline
                .split(|b| *b == 0)
                .nth(1)
                .is_some_and(|arg| arg == b"--treeward-owner-worker")
        {
            pids.push(pid);
        }
    }
    pids
}

/// A worker that is stopped (SIGSTOP, as a hostile owner or a debugger
/// would) cannot hold the sweep: the call is killed at its deadline, only
/// that owner's entry fails (its work still on disk), the other root is
/// swept, and the pass ends within the blocking deadline plus the budget.
/// The control: the same sweep with nobody stopping workers takes that
/// entry too, so the assertions below do tell a held pass from a free one.
#[test]
fn a_stopped_worker_fails_only_its_own_entries() {
    if !common::prerequisite(
        common::is_root(),
        "stopping another uid's worker needs root",
    ) {
        return;
    }
    const OTHER: u32 = 4343;
    let base = common::strict_tempdir();
    let (stuck_f, free_f) = (Fixture::new_in(base.path()), Fixture::new_in(base.path()));
    let mut roots = String::new();
    let mut made = Vec::new();
    // The free root first: the drain goes root by root, and a held worker
    // may spend what is left of the budget (the rest then waits in the
    // trash for the next pass).
    for (f, uid, name) in [(&free_f, OTHER, "free"), (&stuck_f, OWNER, "stuck")] {
        std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = f.tmp.path().join("wt");
        std::fs::create_dir(&root).unwrap();
        let wt = f.worktree(name, &format!("task-{name}"));
        write(&wt.join("notes.md"), "only copy\n");
        chown_r(&f.repo, uid);
        chown_r(&f.origin, uid);
        chown_r(&wt, uid);
        roots.push_str(&format!(
            "[[root]]\npath = \"{}\"\npatterns = [\"*\"]\nowner = \"{uid}\"\n\n",
            root.display()
        ));
        made.push(wt);
    }
    let cfg = base.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n\n{roots}",
            base.path().join("ledger.json").display()
        ),
    )
    .unwrap();
    let (free, stuck) = (&made[0], &made[1]);

    let started = std::time::Instant::now();
    let sweep = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--budget", "3s", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sweep_pid = sweep.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut stopped = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in workers_of(OWNER, sweep_pid) {
                    let pid = nix::unistd::Pid::from_raw(pid);
                    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).is_ok() {
                        stopped += 1;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            stopped
        })
    };
    let out = sweep.wait_with_output().unwrap();
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let stopped = stopper.join().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert!(stopped > 0, "no worker of uid {OWNER} was ever stopped");
    assert!(
        took < std::time::Duration::from_secs(5 + 3 + 2),
        "the pass took {took:?}"
    );
    let held = action_of(&doc, stuck);
    assert_eq!(held["action"], "failed", "{doc:#}");
    assert!(
        held["error"].as_str().unwrap().contains("was killed"),
        "{held}"
    );
    assert_eq!(action_of(&doc, free)["action"], "preserved", "{doc:#}");
    assert!(!free.exists());
    // The held entry's work is still on disk: in place, or in the trash.
    let on_disk = stuck.join("notes.md").exists()
        || Command::new("find")
            .arg(stuck.parent().unwrap())
            .args(["-name", "notes.md"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
    assert!(on_disk, "the held worktree's work vanished");

    // Control: with nobody stopping the worker, the next pass takes it:
    // preserved and removed; or, when the held worker had been killed after
    // it preserved the work and removed the admin entry (a broken worktree
    // now, which no repository can record), kept in place with why, its
    // work both on disk and under refs/treeward/preserved/.
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let taken = action_of(&doc, stuck);
    match taken["action"].as_str() {
        Some("preserved") => assert!(!stuck.exists()),
        Some("kept") => {
            assert!(
                taken["error"]
                    .as_str()
                    .unwrap()
                    .contains("no repository can record"),
                "{taken}"
            );
            assert_eq!(
                std::fs::read_to_string(stuck.join("notes.md")).unwrap(),
                "only copy\n"
            );
            let refs = git_as(
                OWNER,
                &stuck_f.repo,
                &["for-each-ref", "refs/treeward/preserved/"],
            );
            assert!(
                !refs.is_empty(),
                "kept, and its work preserved before: {doc:#}"
            );
        }
        _ => panic!("control: {doc:#}"),
    }
}

/// A sweep with no root present has nothing to record: it creates no
/// ledger, no lock file and no directory for them.
#[test]
fn a_sweep_with_no_root_present_writes_no_ledger() {
    let dir = common::strict_tempdir();
    let state = dir.path().join("state");
    let cfg = dir.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n",
            state.join("ledger.json").display(),
            dir.path().join("no-such-root").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("nothing to do"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!state.exists(), "the sweep created {}", state.display());
}

/// The `…/state` ref of an entry's report line.
fn state_ref(entry: &Value) -> String {
    entry["preserved_refs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|r| r.ends_with("/state"))
        .unwrap_or_else(|| panic!("no state ref: {entry}"))
        .to_owned()
}

#[test]
fn a_broken_worktree_whose_admin_dir_is_gone_is_preserved_into_its_repository() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let pruned = h.f.worktree("pruned", "t-pruned");
    write(&pruned.join("README"), "edited, then the admin dir went\n");
    write(&pruned.join("notes/only.md"), "only copy\n");
    std::fs::remove_dir_all(h.f.repo.join(".git/worktrees/pruned")).unwrap();
    // The control: a broken worktree whose repository is gone is kept.
    let gone = Fixture::new_in(&h.f.tmp.path().join("wt"));
    let orphan = h.root.join("orphan");
    common::add_worktree(&gone.repo, &orphan, Some("t-orphan"));
    write(&orphan.join("wip.txt"), "w\n");
    h.hand_over();
    std::fs::remove_dir_all(gone.repo.join(".git")).unwrap();

    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc:#}");
    let e = action_of(&doc, &pruned);
    assert_eq!(e["action"], "preserved", "{doc:#}");
    assert!(!pruned.exists());
    let state = state_ref(e);
    assert_eq!(
        h.git(&["cat-file", "blob", &format!("{state}:files/notes/only.md")]),
        "only copy"
    );
    assert_eq!(
        h.git(&["cat-file", "blob", &format!("{state}:files/README")]),
        "edited, then the admin dir went"
    );
    assert!(h.refs("refs/treeward/tmp").is_empty());
    assert_eq!(
        h.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1,
        "the stand-in worktree is gone"
    );
    assert_eq!(action_of(&doc, &orphan)["action"], "kept", "{doc:#}");
    assert_eq!(
        std::fs::read_to_string(orphan.join("wip.txt")).unwrap(),
        "w\n"
    );
}

/// SPEC (issue 10, point 5): a broken worktree whose files are exactly a
/// commit the repository has holds nothing of its own: it is removed, not
/// preserved (a clean worktree whose reclaim was cut short between
/// forgetting it and deleting its files). Controls: one whose files are a
/// commit only its gone HEAD reached, and one with an edit, are preserved.
#[test]
fn a_broken_worktree_whose_files_are_a_commit_is_removed_without_preserving() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let clean = h.f.worktree("clean", "t-clean");
    write(&clean.join("build.log"), "ignored\n");
    std::fs::write(h.f.repo.join(".git/info/exclude"), "*.log\n").unwrap();
    let committed = h.f.detached_worktree("committed");
    h.f.commit(&committed, "lone.txt", "only here\n", "lone");
    let edited = h.f.worktree("edited", "t-edited");
    write(&edited.join("README"), "edited\n");
    for name in ["clean", "committed", "edited"] {
        std::fs::remove_dir_all(h.f.repo.join(".git/worktrees").join(name)).unwrap();
    }
    // A preserve's scratch directory left by a crash (its process gone) is
    // cleared by the next preserve; a live one's is not (control).
    let stale = h.f.repo.join(".git/treeward-preserve.4000000-1.AbC123");
    write(&stale.join("index-0"), "left by a crash\n");
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap();
    let live = h.f.repo.join(format!(
        ".git/treeward-preserve.{}-{start}.XyZ789",
        std::process::id()
    ));
    std::fs::create_dir(&live).unwrap();
    h.hand_over();

    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc:#}");
    let e = action_of(&doc, &clean);
    assert_eq!(e["action"], "removed", "{doc:#}");
    assert!(!clean.exists());
    assert!(h.refs("refs/treeward/preserved/clean").is_empty());
    for wt in [&committed, &edited] {
        let e = action_of(&doc, wt);
        assert_eq!(e["action"], "preserved", "{doc:#}");
        assert!(!wt.exists());
    }
    let state = state_ref(action_of(&doc, &committed));
    assert_eq!(
        h.git(&["cat-file", "blob", &format!("{state}:files/lone.txt")]),
        "only here"
    );
    assert!(
        root_owned(&h.f.repo).is_empty(),
        "{:?}",
        root_owned(&h.f.repo)
    );
    let scratch: Vec<PathBuf> = std::fs::read_dir(h.f.repo.join(".git"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("treeward-")
        })
        .collect();
    assert_eq!(
        scratch,
        vec![live],
        "only the live process's scratch is left"
    );
}

#[test]
fn a_worktree_whose_repository_moved_is_preserved_whole_into_it() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let wt = h.f.worktree("moved", "t-moved");
    write(&wt.join("staged.txt"), "staged\n");
    common::git(&wt, &["add", "staged.txt"]);
    write(&wt.join("untracked.txt"), "untracked\n");
    h.hand_over();
    let moved = h.f.tmp.path().join("moved-repo");
    std::fs::rename(&h.f.repo, &moved).unwrap();
    let common_dir = moved.join(".git");
    // The ledger knows the repository where it is now (another record).
    treeward::testing::ledger::Ledger::new(&h.f.tmp.path().join("ledger.json"))
        .update(|doc| {
            let other = h.root.join("elsewhere");
            doc.records.push(treeward::testing::ledger::Record::new(
                &other,
                &common_dir,
                OWNER,
            ));
        })
        .unwrap();

    let (code, doc) = h.sweep(&[]);
    assert_eq!(code, 0, "{doc:#}");
    let e = action_of(&doc, &wt);
    assert_eq!(e["action"], "preserved", "{doc:#}");
    assert!(!wt.exists());
    let state = state_ref(e);
    let show = |what: &str| {
        git_as(
            OWNER,
            &moved,
            &["cat-file", "blob", &format!("{state}:{what}")],
        )
    };
    assert_eq!(show("files/untracked.txt"), "untracked");
    let meta: Value = serde_json::from_str(&show("meta")).unwrap();
    assert_eq!(
        meta["branch"], "refs/heads/t-moved",
        "HEAD came from its admin dir"
    );
    // The index came from its admin dir too: the staged file is in it.
    let index = show("index");
    assert!(
        index.contains("staged.txt"),
        "the index records the staged file"
    );
    assert!(
        !moved.join(".git/worktrees/moved").exists(),
        "its admin dir is forgotten"
    );
    assert!(root_owned(&moved).is_empty(), "{:?}", root_owned(&moved));
}

/// Nothing is taken while in use, even when use starts after the blocking
/// phase looked: an entry left in the trash by a pass out of budget, which
/// a process then enters, is put back by the next pass (its admin dir
/// naming it again, treeward's lock lifted), not reclaimed.
#[test]
fn the_drain_puts_back_an_entry_a_process_entered_in_the_trash() {
    let Some(h) = host(r#"["*"]"#, "preserve") else {
        return;
    };
    let wt = h.f.worktree("late", "t-late");
    write(&wt.join("work.txt"), "only copy\n");
    h.hand_over();
    let (_, doc) = h.sweep(&["--budget", "0s"]);
    assert_eq!(action_of(&doc, &wt)["action"], "deferred", "{doc}");
    let trashed: Vec<PathBuf> = std::fs::read_dir(h.root.join(".treeward-trash"))
        .unwrap()
        .flatten()
        .map(|b| b.path().join("late"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(trashed.len(), 1, "it waits in the trash");
    let _agent = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .current_dir(&trashed[0])
            .spawn()
            .unwrap(),
    );
    let (_, doc) = h.sweep(&[]);
    let e = action_of(&doc, &wt);
    assert_eq!(e["action"], "skipped_in_use", "{doc}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("(sleep) has its working directory inside"),
        "{doc}"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join("work.txt")).unwrap(),
        "only copy\n"
    );
    let admin = h.f.repo.join(".git/worktrees/late");
    assert_eq!(
        std::fs::read_to_string(admin.join("gitdir"))
            .unwrap()
            .trim(),
        wt.join(".git").to_str().unwrap()
    );
    assert!(!admin.join("locked").exists(), "treeward's lock is lifted");
}
