//! The `treeward` admin command against real repositories: list, release,
//! restore (a full round trip through the real `treeward-sweep`), the hook's
//! install and uninstall, and doctor. Parts that act for uid 4242 run only
//! as root (CI does) and print why they skip otherwise.

use crate::common;

use common::{chown_r, contents, git, git_as, root_owned, write, ChildGuard, Fixture};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use treeward::testing::ledger::{Ledger, Record, State};

const OWNER: u32 = 4242;

/// A fixture repository, a root `<tmp>/wt` owning every name, a config
/// naming both, and the ledger beside it.
struct Host {
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
    ledger: PathBuf,
}

fn host(root_keys: &str) -> Host {
    let f = Fixture::new();
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let cfg = common::config_file(f.tmp.path(), &root, root_keys);
    let ledger = f.tmp.path().join("ledger.json");
    Host {
        f,
        root,
        cfg,
        ledger,
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", self.stdout, self.stderr))
    }
}

impl Host {
    /// `treeward <args> --config <cfg>`.
    fn treeward(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward"))
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn sweep(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .arg("--json")
            .arg("--config")
            .arg(&self.cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn records(&self) -> Vec<Record> {
        Ledger::new(&self.ledger).read().unwrap().records
    }

    /// Adds an `active` record for `path` directly to the ledger.
    fn record(&self, path: &Path) -> String {
        let repo = self.f.repo.join(".git");
        Ledger::new(&self.ledger)
            .update(|doc| {
                let r = Record::new(path, &repo, 0);
                let id = r.id.clone();
                doc.records.push(r);
                id
            })
            .unwrap()
    }

    fn ledger_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.ledger).unwrap_or_default()
    }

    /// Makes the ledger `bytes` again (no file when empty).
    fn put_back_ledger(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            let _ = std::fs::remove_file(&self.ledger);
        } else {
            std::fs::write(&self.ledger, bytes).unwrap();
        }
    }
}

fn row<'a>(doc: &'a Value, path: &Path) -> &'a Value {
    doc["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["path"] == path.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not listed: {doc}", path.display()))
}

// ---------------------------------------------------------------- list

#[test]
fn list_joins_records_with_disk_and_shows_unrecorded_entries() {
    let h = host("");
    let recorded = h.f.worktree("recorded", "t-rec");
    let gone = h.root.join("gone");
    let id = h.record(&recorded);
    let gone_id = h.record(&gone);
    let locked = h.f.worktree("locked", "t-locked");
    common::lock_worktree(&h.f.repo, &locked, "agent 7");
    let busy = h.f.worktree("busy", "t-busy");
    let _sleeper = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .current_dir(&busy)
            .spawn()
            .unwrap(),
    );
    std::fs::create_dir(h.root.join("plain")).unwrap();

    let run = h.treeward(&["list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["worktrees"].as_array().unwrap().len(), 5, "{doc}");

    let r = row(&doc, &recorded);
    assert_eq!(r["id"], id.as_str());
    assert_eq!(
        (r["recorded"].clone(), r["state"].clone()),
        (true.into(), "active".into())
    );
    assert_eq!(
        (r["exists"].clone(), r["kind"].clone()),
        (true.into(), "linked_worktree".into())
    );
    assert_eq!(
        (r["locked"].clone(), r["in_use"].clone()),
        (false.into(), false.into())
    );
    assert!(r["age_seconds"].as_u64().unwrap() < 60);

    let g = row(&doc, &gone);
    assert_eq!(g["id"], gone_id.as_str());
    assert_eq!(
        (g["exists"].clone(), g["kind"].clone()),
        (false.into(), "missing".into())
    );

    let l = row(&doc, &locked);
    assert_eq!(
        (l["recorded"].clone(), l["id"].clone()),
        (false.into(), Value::Null)
    );
    assert_eq!(
        (l["locked"].clone(), l["lock_reason"].clone()),
        (true.into(), "agent 7".into())
    );
    assert_eq!(l["root"], h.root.to_str().unwrap());

    let b = row(&doc, &busy);
    assert_eq!(b["in_use"], true);
    assert!(!b["in_use_by"].as_array().unwrap().is_empty());

    assert_eq!(row(&doc, &h.root.join("plain"))["kind"], "not_a_worktree");

    let human = h.treeward(&["list"]);
    assert_eq!(human.code, 0);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(
        lines[0].starts_with("STATE") && lines[0].contains("PRESERVED"),
        "a header first: {}",
        human.stdout
    );
    // Aligned: every row's path starts in the header's PATH column.
    let column = lines[0].find("PATH").unwrap();
    for (line, path) in [(&recorded, "recorded"), (&locked, "locked")]
        .iter()
        .map(|(p, n)| (lines.iter().find(|l| l.contains(p.to_str().unwrap())), *n))
    {
        let line = line.unwrap_or_else(|| panic!("no row for {path}: {}", human.stdout));
        assert_eq!(line.find(h.root.to_str().unwrap()), Some(column), "{line}");
    }
    assert!(human.stdout.contains("unrecorded"), "{}", human.stdout);
    assert!(human.stdout.contains("locked: agent 7"), "{}", human.stdout);
    assert!(human.stdout.contains("in use"), "{}", human.stdout);
    // The gone record and the plain directory are not worktrees.
    assert!(
        human.stdout.contains("3 worktree(s), 2 other"),
        "{}",
        human.stdout
    );
}

#[test]
fn list_with_a_corrupt_ledger_still_lists_the_disk_and_exits_2() {
    let h = host("");
    h.f.worktree("a", "t-a");
    std::fs::write(&h.ledger, "{ not json").unwrap();
    let run = h.treeward(&["list", "--json"]);
    assert_eq!(run.code, 2);
    let doc = run.json();
    assert!(doc["ledger_error"].as_str().unwrap().contains("corrupt"));
    assert_eq!(doc["worktrees"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_to_string(&h.ledger).unwrap(), "{ not json");
    // A person gets the warning on stderr, the table alone on stdout.
    let human = h.treeward(&["list"]);
    assert_eq!(human.code, 2);
    assert!(human.stderr.contains("not read"), "{}", human.stderr);
    assert!(!human.stdout.contains("not read"), "{}", human.stdout);
    assert!(human.stdout.starts_with("STATE"), "{}", human.stdout);
}

// ---------------------------------------------------------------- release

#[test]
fn release_by_id_and_by_path() {
    let h = host("");
    let a = h.f.worktree("a", "t-a");
    let id = h.record(&a);
    let run = h.treeward(&["release", &id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(
        (doc["previous"].clone(), doc["state"].clone()),
        ("active".into(), "released".into())
    );
    assert_eq!(h.records()[0].state, State::Released);

    // Again: nothing changes, still success.
    let before = h.ledger_bytes();
    let again = h.treeward(&["release", &id, "--json"]);
    assert_eq!(
        (again.code, again.json()["changed"].clone()),
        (0, false.into())
    );
    assert_eq!(h.ledger_bytes(), before);

    // An unrecorded worktree by its path: a released record from the disk.
    let b = h.f.worktree("b", "t-b");
    let run = h.treeward(&["release", b.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = h.records();
    let rec = records
        .iter()
        .find(|r| r.path == b)
        .expect("a record for b");
    assert_eq!(rec.state, State::Released);
    assert_eq!(rec.branch.as_deref(), Some("t-b"));
    assert_eq!(rec.worktree_name.as_deref(), Some("b"));
    assert_eq!(rec.repository, h.f.repo.join(".git"));
    assert_eq!(
        rec.base_commit.as_deref(),
        Some(git(&b, &["rev-parse", "HEAD"]).as_str())
    );

    // A recorded path works like its id.
    let c = h.f.worktree("c", "t-c");
    h.record(&c);
    assert_eq!(h.treeward(&["release", c.to_str().unwrap()]).code, 0);
    assert!(h
        .records()
        .iter()
        .any(|r| r.path == c && r.state == State::Released));
}

#[test]
fn release_dry_run_changes_nothing() {
    let h = host("");
    let a = h.f.worktree("a", "t-a");
    let id = h.record(&a);
    let before = h.ledger_bytes();
    let run = h.treeward(&["release", &id, "--dry-run", "--json"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.json()["changed"], true);
    assert_eq!(h.ledger_bytes(), before);
}

#[test]
fn bad_release_input_is_exit_2_and_leaves_the_ledger_byte_identical() {
    let h = host("");
    let a = h.f.worktree("a", "t-a");
    h.record(&a);
    std::fs::create_dir(h.root.join("plain")).unwrap();
    let outside = h.f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let before = h.ledger_bytes();
    for (arg, says) in [
        ("no-such-id", "not an entry of any configured root"),
        (
            outside.to_str().unwrap(),
            "not an entry of any configured root",
        ),
        (h.root.join("missing").to_str().unwrap(), "no such file"),
        (
            h.root.join("plain").to_str().unwrap(),
            "not a linked worktree",
        ),
    ] {
        let run = h.treeward(&["release", arg]);
        assert_eq!(run.code, 2, "{arg}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{arg}: {}", run.stderr);
        assert_eq!(h.ledger_bytes(), before, "{arg}");
    }
}

// ---------------------------------------------------------------- restore

/// A worktree holding every kind of uncommitted work.
fn dirty(f: &Fixture, name: &str) -> PathBuf {
    let wt = f.worktree(name, &format!("task-{name}"));
    write(&wt.join("staged.txt"), "staged\n");
    git(&wt, &["add", "staged.txt"]);
    write(&wt.join("staged.txt"), "staged, then edited\n");
    write(&wt.join("README"), "unstaged edit\n");
    std::fs::remove_file(wt.join("src/lib.txt")).unwrap();
    write(&wt.join("notes/deep/untracked.md"), "only copy\n");
    write(&wt.join("run.sh"), "#!/bin/sh\n");
    std::fs::set_permissions(wt.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("README", wt.join("link")).unwrap();
    git(&wt, &["update-ref", "refs/worktree/checkpoint", "HEAD"]);
    wt
}

fn status(uid: Option<u32>, wt: &Path) -> String {
    let args = ["status", "--porcelain=v2", "--untracked-files=all"];
    match uid {
        Some(u) => git_as(u, wt, &args),
        None => git(wt, &args),
    }
}

#[test]
fn restore_round_trip_through_the_sweep_as_the_owner() {
    if !common::is_root() {
        eprintln!("skipped: the restore round trip runs as root (CI does) to act for uid {OWNER}");
        return;
    }
    let h = host(&format!("policy = \"preserve\"\nowner = \"{OWNER}\""));
    // Like /tmp: the owner creates its worktrees there.
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let wt = dirty(&h.f, "review-dirty");
    let status_before = status(None, &wt);
    let files_before = contents(&wt);
    assert!(status_before.contains("untracked.md") && status_before.contains("AM"));
    chown_r(&h.f.repo, OWNER);
    chown_r(&h.f.origin, OWNER);
    chown_r(&wt, OWNER);

    let run = h.treeward(&["release", wt.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = h.records()[0].id.clone();
    let swept = h.sweep();
    assert_eq!(swept["preserved_count"], 1, "{swept}");
    assert!(!wt.exists());
    let preserved = h.records()[0].clone();
    assert_eq!(preserved.state, State::Preserved);
    assert!(!preserved.preserved_refs.is_empty());

    let run = h.treeward(&["restore", &id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["path"], wt.to_str().unwrap());
    assert_eq!(doc["id"], id.as_str());

    assert_eq!(status(Some(OWNER), &wt), status_before);
    assert_eq!(contents(&wt), files_before);
    assert_eq!(
        git_as(OWNER, &wt, &["rev-parse", "refs/worktree/checkpoint"]),
        git_as(OWNER, &wt, &["rev-parse", "HEAD"])
    );
    // Written as the owner: nothing root-owned in the worktree or repository.
    assert!(root_owned(&wt).is_empty(), "{:?}", root_owned(&wt));
    assert!(
        root_owned(&h.f.repo).is_empty(),
        "{:?}",
        root_owned(&h.f.repo)
    );

    let rec = &h.records()[0];
    assert_eq!((rec.state, &rec.path), (State::Active, &wt));
    assert_eq!(rec.preserved_refs, preserved.preserved_refs, "refs kept");
    for r in &rec.preserved_refs {
        git_as(OWNER, &h.f.repo, &["rev-parse", "--verify", r]);
    }
}

/// Preserves `wt` with the library and removes it with git, as the sweep
/// would; returns the set's `<name>/<stamp>`.
fn preserve_and_remove(f: &Fixture, wt: &Path) -> String {
    let p = treeward::testing::preserve::preserve(wt).unwrap();
    git(
        &f.repo,
        &["worktree", "remove", "--force", wt.to_str().unwrap()],
    );
    let state = p.refs.iter().find(|r| r.ends_with("/state")).unwrap();
    let rest = state.strip_prefix("refs/treeward/preserved/").unwrap();
    rest.strip_suffix("/state").unwrap().to_owned()
}

/// `treeward restore <name>/<stamp> --repo <repo> --path <wt> <flag>`.
fn restore_set(h: &Host, set: &str, wt: &Path, flag: &str) -> Run {
    let (repo, path) = (h.f.repo.to_str().unwrap(), wt.to_str().unwrap());
    h.treeward(&["restore", set, "--repo", repo, "--path", path, flag])
}

#[test]
fn restore_by_ref_into_an_existing_path_moves_it_aside() {
    let h = host("");
    let wt = dirty(&h.f, "d1");
    let status_before = status(None, &wt);
    let files_before = contents(&wt);
    let set = preserve_and_remove(&h.f, &wt);
    // Something else took the path meanwhile.
    write(&wt.join("precious.txt"), "not treeward's\n");

    let run = restore_set(&h, &set, &wt, "--json");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let aside = PathBuf::from(doc["aside"].as_str().unwrap());
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("d1.treeward-aside-"),
        "{}",
        aside.display()
    );
    assert_eq!(
        std::fs::read_to_string(aside.join("precious.txt")).unwrap(),
        "not treeward's\n"
    );
    assert_eq!(status(None, &wt), status_before);
    assert_eq!(contents(&wt), files_before);
    // Its branch still points at HEAD and is free: the worktree is on it.
    assert_eq!(doc["branch"], "task-d1");
    assert_eq!(git(&wt, &["symbolic-ref", "HEAD"]), "refs/heads/task-d1");
    // No record listed the set: a new active one does.
    let records = h.records();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].state, &records[0].path), (State::Active, &wt));
    assert!(records[0]
        .preserved_refs
        .iter()
        .any(|r| r.ends_with("/work")));
}

#[test]
fn a_set_of_per_worktree_refs_alone_restores_without_a_ledger_record() {
    let h = host("");
    let wt = h.f.worktree("refs-only", "task-refs-only");
    let mark = h.f.commit(&wt, "x.txt", "x\n", "marked");
    git(&wt, &["update-ref", "refs/worktree/mark", "HEAD"]);
    git(&wt, &["reset", "-q", "--hard", "HEAD~1"]);
    let set = preserve_and_remove(&h.f, &wt);
    let refs = git(
        &h.f.repo,
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("refs/treeward/preserved/{set}/"),
        ],
    );
    assert!(
        refs.contains("/worktree/mark") && !refs.lines().any(|l| l.ends_with("/work")),
        "per-worktree refs alone: {refs}"
    );
    assert!(!h.ledger.exists(), "no ledger at all");

    let run = restore_set(&h, &set, &wt, "--json");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["branch"], "task-refs-only");
    assert_eq!(git(&wt, &["rev-parse", "refs/worktree/mark"]), mark);
    assert_eq!(
        git(&wt, &["symbolic-ref", "HEAD"]),
        "refs/heads/task-refs-only"
    );
}

#[test]
fn restore_dry_run_changes_nothing() {
    let h = host("");
    let wt = dirty(&h.f, "d2");
    let set = preserve_and_remove(&h.f, &wt);
    let run = restore_set(&h, &set, &wt, "--dry-run");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("would restore"), "{}", run.stdout);
    assert!(!wt.exists());
    assert!(!h.ledger.exists());
}

#[test]
fn bad_restore_input_is_exit_2_and_changes_nothing() {
    let h = host("");
    let wt = dirty(&h.f, "d3");
    let set = preserve_and_remove(&h.f, &wt);
    let live = h.f.worktree("live", "t-live");
    let id = h.record(&live); // a record without preserved refs
    let repo = h.f.repo.to_str().unwrap().to_owned();
    // Inside the root: restore creates worktrees nowhere else.
    let target = h.root.join("target");
    let t = target.to_str().unwrap().to_owned();
    let outside = h.f.tmp.path().join("outside");
    let o = outside.to_str().unwrap().to_owned();
    let refs_before = git(&h.f.repo, &["for-each-ref"]);
    let ledger_before = h.ledger_bytes();
    let live_before = contents(&live);
    let gone = h.f.tmp.path().join("gone-repo");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["refs/heads/main", "--repo", &repo, "--path", &t],
            "not a treeward ref",
        ),
        (vec!["no-such-id"], "no ledger record with id no-such-id"),
        (vec![&id], "has no preserved refs"),
        (
            vec!["d3/19990101T000000Z", "--repo", &repo, "--path", &t],
            "no such preserved refs",
        ),
        // No record lists it and no repository the ledger knows holds it.
        (vec!["d9/19990101T000000Z", "--path", &t], "--repo"),
        (
            vec![&set, "--repo", gone.to_str().unwrap(), "--path", &t],
            "not a git repository",
        ),
        (
            vec![&set, "--repo", &repo, "--path", live.to_str().unwrap()],
            "is a linked worktree",
        ),
        (
            vec![&set, "--repo", &repo, "--path", &o],
            "not an entry of any configured root",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["restore"];
        all.extend(&args);
        let run = h.treeward(&all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(!target.exists() && !outside.exists(), "{args:?}");
        assert_eq!(h.ledger_bytes(), ledger_before, "{args:?}");
        assert_eq!(git(&h.f.repo, &["for-each-ref"]), refs_before, "{args:?}");
        assert_eq!(contents(&live), live_before, "{args:?}");
    }
}

// ---------------------------------------------------------------- hooks

/// Every file of a hooks directory: name → (mode, bytes or link target).
fn hooks_of(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)> {
    contents(dir)
}

#[test]
fn install_and_uninstall_without_a_previous_hook() {
    let h = host("");
    let hooks = h.f.repo.join(".git/hooks");
    let before = hooks_of(&hooks);
    let repo = h.f.repo.to_str().unwrap();

    let run = h.treeward(&["install-hook", repo, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()[0]["action"], "write_shim");
    let shim = std::fs::read(hooks.join("post-checkout")).unwrap();
    assert_eq!(shim, treeward::testing::as_owner::hooks::SHIM);
    let mode = std::fs::metadata(hooks.join("post-checkout"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    let installed = hooks_of(&hooks);
    let again = h.treeward(&["install-hook", repo, "--json"]);
    assert_eq!(again.json()[0]["action"], "nothing");
    assert_eq!(
        hooks_of(&hooks),
        installed,
        "a second install changes nothing"
    );

    let run = h.treeward(&["uninstall-hook", repo]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(hooks_of(&hooks), before);
    let again = h.treeward(&["uninstall-hook", repo, "--json"]);
    assert_eq!(again.json()[0]["action"], "nothing");
    assert_eq!(hooks_of(&hooks), before);
}

#[test]
fn an_existing_hook_is_chained_keeps_running_and_comes_back_byte_and_mode_identical() {
    let h = host("");
    let hooks = h.f.repo.join(".git/hooks");
    let marker = h.f.tmp.path().join("chained-ran");
    let own = format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 0\n", marker.display());
    write(&hooks.join("post-checkout"), &own);
    std::fs::set_permissions(
        hooks.join("post-checkout"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let before = hooks_of(&hooks);
    let repo = h.f.repo.to_str().unwrap();

    let run = h.treeward(&["install-hook", repo, "--json"]);
    assert_eq!(
        run.json()[0]["action"],
        "chain_then_write_shim",
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-checkout.treeward-chained")).unwrap(),
        own
    );
    let installed = hooks_of(&hooks);
    assert_eq!(h.treeward(&["install-hook", repo]).code, 0);
    assert_eq!(hooks_of(&hooks), installed, "idempotent");

    // git runs the shim, which runs the chained hook with git's arguments.
    h.f.worktree("after-install", "t-after");
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert!(ran.trim_end().ends_with(" 1"), "{ran}");

    assert_eq!(h.treeward(&["uninstall-hook", repo]).code, 0);
    assert_eq!(hooks_of(&hooks), before, "bytes and mode put back");
    assert_eq!(h.treeward(&["uninstall-hook", repo]).code, 0);
    assert_eq!(hooks_of(&hooks), before);
}

#[test]
fn core_hooks_path_is_honoured() {
    let h = host("");
    git(&h.f.repo, &["config", "core.hooksPath", ".githooks"]);
    let hooks = h.f.repo.join(".githooks");
    write(&hooks.join("post-checkout"), "#!/bin/sh\nexit 0\n");
    let before = hooks_of(&hooks);
    let default_before = hooks_of(&h.f.repo.join(".git/hooks"));
    // Through a linked worktree too: the repository is the same.
    let wt = h.f.worktree("via", "t-via");
    let run = h.treeward(&["install-hook", wt.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()[0]["before"]["hooks_dir"],
        hooks.to_str().unwrap()
    );
    assert!(treeward::testing::as_owner::hooks::is_shim(
        &std::fs::read(hooks.join("post-checkout")).unwrap()
    ));
    assert!(hooks.join("post-checkout.treeward-chained").is_file());
    assert_eq!(hooks_of(&h.f.repo.join(".git/hooks")), default_before);
    assert_eq!(
        h.treeward(&["uninstall-hook", h.f.repo.to_str().unwrap()])
            .code,
        0
    );
    assert_eq!(hooks_of(&hooks), before);
}

#[test]
fn install_hook_on_a_non_repository_changes_nothing_anywhere() {
    let h = host("");
    let hooks = h.f.repo.join(".git/hooks");
    let before = hooks_of(&hooks);
    let plain = h.f.tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let run = h.treeward(&[
        "install-hook",
        h.f.repo.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not a git repository"),
        "{}",
        run.stderr
    );
    assert_eq!(
        hooks_of(&hooks),
        before,
        "the good repository was not touched either"
    );
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
}

#[test]
fn install_hook_as_root_writes_as_the_repository_owner() {
    if !common::is_root() {
        eprintln!("skipped: runs as root (CI does) to install for uid {OWNER}");
        return;
    }
    let h = host("");
    chown_r(&h.f.repo, OWNER);
    let run = h.treeward(&["install-hook", h.f.repo.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        root_owned(&h.f.repo).is_empty(),
        "{:?}",
        root_owned(&h.f.repo)
    );
    assert_eq!(
        h.treeward(&["uninstall-hook", h.f.repo.to_str().unwrap()])
            .code,
        0
    );
    assert!(!h.f.repo.join(".git/hooks/post-checkout").exists());
}

// ---------------------------------------------------------------- doctor

#[test]
fn doctor_on_a_healthy_and_a_broken_setup() {
    if !common::is_root() {
        eprintln!("skipped: doctor's root checks want root-owned roots (CI runs as root)");
        return;
    }
    let h = host("sweep = false\nreap = false");
    let wt = h.f.worktree("a", "t-a");
    h.record(&wt);
    assert_eq!(
        h.treeward(&["install-hook", h.f.repo.to_str().unwrap()])
            .code,
        0
    );
    let units = h.f.tmp.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let unit_dir = units.to_str().unwrap();

    let run = h.treeward(&["doctor", "--unit-dir", unit_dir, "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["problems"], 0);

    // Break it: the hook gone, a record of a vanished repository, a root
    // anyone may write into, a swept root without the sweep unit.
    assert_eq!(
        h.treeward(&["uninstall-hook", h.f.repo.to_str().unwrap()])
            .code,
        0
    );
    Ledger::new(&h.ledger)
        .update(|doc| {
            doc.records.push(Record::new(
                &h.root.join("b"),
                Path::new("/nonexistent/repo/.git"),
                0,
            ))
        })
        .unwrap();
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(
        &h.cfg,
        std::fs::read_to_string(&h.cfg)
            .unwrap()
            .replace("sweep = false", "sweep = true"),
    )
    .unwrap();
    let run = h.treeward(&["doctor", "--unit-dir", unit_dir, "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = run.json();
    let problems: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| format!("{} {}: {}", f["check"], f["subject"], f["detail"]))
        .collect();
    assert_eq!(doc["problems"], problems.len());
    let has = |s: &str| problems.iter().any(|p| p.contains(s));
    assert!(has("hook not installed"), "{problems:?}");
    assert!(has("/nonexistent/repo/.git") && has("gone"), "{problems:?}");
    assert!(has("without the sticky bit"), "{problems:?}");
    assert!(has("treeward-sweep.service"), "{problems:?}");
    assert_eq!(problems.len(), 4, "{problems:?}");
    let human = h.treeward(&["doctor", "--unit-dir", unit_dir]);
    assert_eq!(human.code, 1);
    assert_eq!(
        human.stdout.matches("PROBLEM").count(),
        4,
        "{}",
        human.stdout
    );
    // Each problem that a command fixes comes with it; running the
    // commands given for the hook and the root fixes those two.
    let fix_of = |needle: &str| -> String {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["ok"] == false && f["detail"].as_str().unwrap().contains(needle))
            .and_then(|f| f["fix"].as_str())
            .unwrap_or_else(|| panic!("no fix for {needle}: {doc}"))
            .to_owned()
    };
    let hook_fix = fix_of("hook not installed");
    assert_eq!(
        hook_fix,
        format!("treeward install-hook {}", h.f.repo.join(".git").display())
    );
    let root_fix = fix_of("without the sticky bit");
    assert_eq!(root_fix, format!("chmod +t {}", h.root.display()));
    assert!(fix_of("not installed, and").contains("units/treeward-sweep.service"));
    assert_eq!(
        human.stdout.matches("\n         fix: ").count(),
        3,
        "{}",
        human.stdout
    );
    let args: Vec<&str> = hook_fix.split(' ').skip(1).collect();
    assert_eq!(h.treeward(&args).code, 0);
    assert!(Command::new("sh")
        .args(["-c", &root_fix])
        .status()
        .unwrap()
        .success());
    let after = h.treeward(&["doctor", "--unit-dir", unit_dir, "--json"]);
    assert_eq!(after.json()["problems"], 2, "{}", after.stdout);

    // A corrupt ledger is a problem, and doctor does not repair it.
    std::fs::write(&h.ledger, "{").unwrap();
    let run = h.treeward(&["doctor", "--unit-dir", unit_dir]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("corrupt"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&h.ledger).unwrap(), "{");
}

#[test]
fn bad_configuration_is_exit_78_for_every_subcommand() {
    let h = host("");
    std::fs::write(&h.cfg, "ledger = 3\n").unwrap();
    for args in [
        vec!["list"],
        vec!["release", "x"],
        vec!["restore", "x"],
        vec!["install-hook", h.f.repo.to_str().unwrap()],
        vec!["doctor"],
    ] {
        let run = h.treeward(&args);
        assert_eq!(run.code, 78, "{args:?}: {}", run.stderr);
    }
    assert!(!h.f.repo.join(".git/hooks/post-checkout").exists());
}

#[test]
fn bad_arguments_are_exit_2() {
    let h = host("");
    assert_eq!(h.treeward(&["install-hook"]).code, 2);
    assert_eq!(h.treeward(&["frobnicate"]).code, 2);
}

// ------------------------------------------------- a hostile ledger, as root

/// Another user: owns repositories of its own, never the root's.
const ATTACKER: u32 = 4343;

fn need_root(what: &str) -> bool {
    common::prerequisite(
        common::is_root(),
        &format!("{what} runs as root (CI does) to act for uid {OWNER}"),
    )
}

/// A host whose root holds uid 4242's worktrees (`owner = "4242"`, sticky
/// like /tmp), its repository owned by 4242.
fn owned_host() -> Host {
    let h = host(&format!("owner = \"{OWNER}\""));
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    h
}

/// Hands the host's repository (and origin) to 4242.
fn hand_over(h: &Host) {
    chown_r(&h.f.repo, OWNER);
    chown_r(&h.f.origin, OWNER);
}

/// Another repository, outside the root, with a preserved set of its own
/// (so a restore there would succeed if it were attempted), owned by
/// `owner`; returns it and the set.
fn victim(owner: u32) -> (Fixture, String) {
    let v = Fixture::new();
    std::fs::set_permissions(v.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let wt = dirty(&v, "review-v");
    let set = preserve_and_remove(&v, &wt);
    chown_r(v.tmp.path(), owner);
    (v, set)
}

/// Adds a record to the ledger as written by an attacker: `path`,
/// `repository`, state preserved, listing `set`.
fn forge(h: &Host, path: &Path, repository: &Path, set: &str) -> String {
    Ledger::new(&h.ledger)
        .update(|doc| {
            let mut r = Record::new(path, repository, OWNER);
            r.state = State::Preserved;
            r.preserved_refs = vec![format!("refs/treeward/preserved/{set}/work")];
            let id = r.id.clone();
            doc.records.push(r);
            id
        })
        .unwrap()
}

#[test]
fn restore_as_root_refuses_a_forged_record_and_touches_nothing() {
    if !need_root("restore_as_root_refuses_a_forged_record_and_touches_nothing") {
        return;
    }
    let h = owned_host();
    let wt = dirty(&h.f, "review-legit");
    let status_before = status(None, &wt);
    let set = preserve_and_remove(&h.f, &wt);
    hand_over(&h);
    let (mine, mine_set) = victim(0);
    let (theirs, their_set) = victim(ATTACKER);
    let link = h.f.tmp.path().join("repo-link");
    std::os::unix::fs::symlink(&h.f.repo, &link).unwrap();
    let outside = h.f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();

    let repos = [&h.f.repo, &mine.repo, &theirs.repo];
    let watched = || -> Vec<common::Snapshot> {
        let mut s: Vec<_> = repos.iter().map(|r| common::snapshot(r)).collect();
        s.push(common::snapshot(&h.root));
        s.push(common::snapshot(&outside));
        s
    };
    let dot_git = |r: &Path| r.join(".git");
    let cases: Vec<(&str, PathBuf, PathBuf, &str, &str)> = vec![
        (
            "a root-owned repository",
            h.root.join("review-a"),
            dot_git(&mine.repo),
            &mine_set,
            "owned by uid 0",
        ),
        (
            "another user's repository",
            h.root.join("review-b"),
            dot_git(&theirs.repo),
            &their_set,
            "uid 4343",
        ),
        (
            "the owner's repository through a symlink",
            h.root.join("review-c"),
            dot_git(&link),
            &set,
            "without following a link",
        ),
        (
            "a path outside every root",
            outside.join("review-d"),
            dot_git(&h.f.repo),
            &set,
            "not an entry of any configured root",
        ),
    ];
    for (what, path, repository, set, says) in cases {
        let id = forge(&h, &path, &repository, set);
        let (ledger, before) = (h.ledger_bytes(), watched());
        for dry_run in [true, false] {
            let mut args = vec!["restore", id.as_str()];
            if dry_run {
                args.push("--dry-run");
            }
            let run = h.treeward(&args);
            assert_eq!(run.code, 2, "{what}: {}", run.stderr);
            assert!(run.stderr.contains(says), "{what}: {}", run.stderr);
        }
        assert!(std::fs::symlink_metadata(&path).is_err(), "{what}: created");
        assert_eq!(h.ledger_bytes(), ledger, "{what}: the ledger changed");
        assert!(
            watched() == before,
            "{what}: a repository or the root changed"
        );
        assert_eq!(root_owned(&h.root), Vec::<String>::new(), "{what}");
    }
    // Named on the command line instead of by a record: refused just the same.
    let before = watched();
    let run = h.treeward(&[
        "restore",
        &mine_set,
        "--repo",
        mine.repo.to_str().unwrap(),
        "--path",
        h.root.join("review-e").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("owned by uid 0"), "{}", run.stderr);
    assert!(watched() == before);

    // Control: the same command on a record that is the owner's, inside
    // the root, restores, as the owner.
    let id = forge(&h, &wt, &dot_git(&h.f.repo), &set);
    let run = h.treeward(&["restore", &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(status(Some(OWNER), &wt), status_before);
    assert_eq!(root_owned(&wt), Vec::<String>::new());
    assert_eq!(root_owned(&h.f.repo), Vec::<String>::new());
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&wt).unwrap()),
        OWNER
    );
}

#[test]
fn release_as_root_refuses_a_forged_record_and_writes_nothing() {
    if !need_root("release_as_root_refuses_a_forged_record_and_writes_nothing") {
        return;
    }
    let h = owned_host();
    let legit = h.f.worktree("review-ok", "t-ok");
    hand_over(&h);
    chown_r(&legit, OWNER);
    let (mine, _) = victim(0);
    let mine_wt = mine.worktree("review-m", "t-m"); // outside the root
    let (theirs, _) = victim(ATTACKER);
    // The attacker plants a worktree of its own repository in the root.
    let planted = h.root.join("review-planted");
    git_as(
        ATTACKER,
        &theirs.repo,
        &common::worktree_add_args(&planted, Some("t-p")),
    );
    let link = h.f.tmp.path().join("repo-link");
    std::os::unix::fs::symlink(&h.f.repo, &link).unwrap();

    let repos = [&h.f.repo, &mine.repo, &theirs.repo];
    let watched =
        || -> Vec<common::Snapshot> { repos.iter().map(|r| common::snapshot(r)).collect() };
    let before = watched();
    let dot_git = |r: &Path| r.join(".git");
    let records: Vec<(&str, &Path, PathBuf, &str)> = vec![
        (
            "a path outside every root",
            &mine_wt,
            dot_git(&mine.repo),
            "not an entry of any configured root",
        ),
        (
            "the owner's worktree, named as a root-owned repository's",
            &legit,
            dot_git(&mine.repo),
            "belongs to",
        ),
        (
            "the owner's worktree, its repository through a symlink",
            &legit,
            dot_git(&link),
            "belongs to",
        ),
        (
            "another user's worktree planted in the root",
            &planted,
            dot_git(&theirs.repo),
            "does not verify",
        ),
    ];
    for (what, path, repository, says) in records {
        let clean = h.ledger_bytes();
        let id = Ledger::new(&h.ledger)
            .update(|doc| {
                let r = Record::new(path, &repository, OWNER);
                let id = r.id.clone();
                doc.records.push(r);
                id
            })
            .unwrap();
        let forged = h.ledger_bytes();
        for args in [
            vec!["release", id.as_str()],
            vec!["release", id.as_str(), "--dry-run"],
        ] {
            let run = h.treeward(&args);
            assert_eq!(run.code, 2, "{what}: {}", run.stderr);
            assert!(run.stderr.contains(says), "{what}: {}", run.stderr);
            assert_eq!(h.ledger_bytes(), forged, "{what}");
        }
        h.put_back_ledger(&clean);
    }
    // Unrecorded: a worktree of another user's repository planted in the
    // root, and one of root's repository outside it.
    for (path, says) in [
        (&planted, "owned by uid 4343"),
        (&mine_wt, "not an entry of any configured root"),
    ] {
        let clean = h.ledger_bytes();
        let run = h.treeward(&["release", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{}: {}", path.display(), run.stderr);
        assert!(run.stderr.contains(says), "{}", run.stderr);
        assert_eq!(h.ledger_bytes(), clean);
    }
    assert!(watched() == before, "a repository changed");

    // Control: the owner's own worktree in the root is released, its HEAD
    // read (by the owner).
    let run = h.treeward(&["release", legit.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rec = h.records().into_iter().find(|r| r.path == legit).unwrap();
    assert_eq!(rec.state, State::Released);
    assert_eq!(rec.uid, OWNER);
    assert_eq!(rec.branch.as_deref(), Some("t-ok"));
    assert_eq!(
        rec.base_commit.as_deref(),
        Some(git_as(OWNER, &legit, &["rev-parse", "HEAD"]).as_str())
    );
    assert_eq!(root_owned(&h.f.repo), Vec::<String>::new());
}

#[test]
fn install_hook_as_root_never_follows_core_hooks_path_out_of_the_repository() {
    if !need_root("install_hook_as_root_never_follows_core_hooks_path_out_of_the_repository") {
        return;
    }
    let h = host("");
    // Root's own repository (served in-process, as root) and uid 4242's.
    let mine = Fixture::new();
    chown_r(&h.f.repo, OWNER);
    // Outside both: a root-owned directory like /etc/cron.d, and one the
    // owner can write (so that only the confinement stops a write there).
    let cron = h.f.tmp.path().join("cron.d");
    let shared = h.f.tmp.path().join("shared-hooks");
    std::fs::create_dir(&cron).unwrap();
    std::fs::create_dir(&shared).unwrap();
    chown_r(&shared, OWNER);
    let githooks = h.f.repo.join(".githooks");
    std::os::unix::fs::symlink(&shared, &githooks).unwrap();
    std::os::unix::fs::lchown(&githooks, Some(OWNER), Some(OWNER)).unwrap();

    let (cron_s, shared_s) = (cron.to_str().unwrap(), shared.to_str().unwrap());
    let cases: Vec<(&Fixture, u32, &str, &str)> = vec![
        (&mine, 0, cron_s, "outside the repository"),
        (&h.f, OWNER, cron_s, "outside the repository"),
        (&h.f, OWNER, shared_s, "outside the repository"),
        (&h.f, OWNER, "../shared-hooks", "outside the repository"),
        (&h.f, OWNER, ".githooks", "without following a link"),
    ];
    for (f, uid, hooks_path, says) in cases {
        let repo = f.repo.to_str().unwrap();
        git_as_or_root(uid, &f.repo, &["config", "core.hooksPath", hooks_path]);
        let before = common::snapshot(&f.repo);
        for command in ["install-hook", "uninstall-hook"] {
            let run = h.treeward(&[command, repo]);
            assert_eq!(run.code, 2, "{command} {hooks_path}: {}", run.stderr);
            assert!(run.stderr.contains(says), "{hooks_path}: {}", run.stderr);
        }
        assert!(common::snapshot(&f.repo) == before, "{hooks_path}");
        assert_eq!(std::fs::read_dir(&cron).unwrap().count(), 0, "{hooks_path}");
        assert_eq!(
            std::fs::read_dir(&shared).unwrap().count(),
            0,
            "{hooks_path}"
        );
    }

    // Control: a hooks directory inside the repository is installed into,
    // by its owner.
    std::fs::remove_file(&githooks).unwrap();
    for (f, uid) in [(&mine, 0), (&h.f, OWNER)] {
        let inside = f.repo.join("hooks-inside");
        git_as_or_root(uid, &f.repo, &["config", "core.hooksPath", "hooks-inside"]);
        let run = h.treeward(&["install-hook", f.repo.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let shim = inside.join("post-checkout");
        assert!(treeward::testing::as_owner::hooks::is_shim(
            &std::fs::read(&shim).unwrap()
        ));
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&shim).unwrap()),
            uid
        );
    }
}

/// git as `uid`, or as this process when `uid` is root.
fn git_as_or_root(uid: u32, dir: &Path, args: &[&str]) -> String {
    if uid == 0 {
        git(dir, args)
    } else {
        git_as(uid, dir, args)
    }
}

#[test]
fn list_as_root_is_never_blocked_by_a_planted_fifo() {
    if !need_root("list_as_root_is_never_blocked_by_a_planted_fifo") {
        return;
    }
    let h = owned_host();
    let calm = h.f.worktree("calm", "t-calm");
    common::lock_worktree(&h.f.repo, &calm, "agent 7");
    let planted = ["locked", "HEAD", "gitdir", "commondir"];
    let paths: Vec<PathBuf> = planted
        .iter()
        .map(|file| h.f.worktree(&format!("fifo-{file}"), &format!("t-{file}")))
        .collect();
    hand_over(&h);
    for p in paths.iter().chain([&calm]) {
        chown_r(p, OWNER);
    }
    for (file, path) in planted.iter().zip(&paths) {
        let name = path.file_name().unwrap();
        common::plant_fifo(&h.f.repo.join(".git/worktrees").join(name).join(file));
        h.record(path);
    }
    // Control: a reader by path blocks on it.
    common::assert_blocks_a_reader(&h.f.repo.join(".git/worktrees/fifo-locked/locked"));

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward"));
    cmd.args(["list", "--json", "--config"]).arg(&h.cfg);
    let out = common::output_within(&mut cmd, std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (file, path) in planted.iter().zip(&paths) {
        let r = row(&doc, path);
        assert_eq!(r["recorded"], true, "{file}: {r}");
        if *file == "commondir" {
            assert_eq!(r["kind"], "broken", "{r}");
        } else {
            let why = r["refused"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {r}"));
            assert!(why.contains("FIFO"), "{file}: {why}");
            assert_eq!(r["locked"], false, "{file}: {r}");
        }
    }
    // The claim is what is read: the calm worktree's lock is seen.
    let c = row(&doc, &calm);
    assert_eq!(
        (
            c["locked"].clone(),
            c["lock_reason"].clone(),
            c["refused"].clone()
        ),
        (true.into(), "agent 7".into(), Value::Null),
        "{c}"
    );
}

/// Right after the package is installed the ledger's directory is root's
/// and holds no ledger yet: doctor says the roots' owner cannot write it,
/// and its fix names only what exists; run, it fixes the problem.
#[test]
fn doctor_fixes_a_ledger_directory_the_owner_cannot_write() {
    if !common::prerequisite(common::is_root(), "gives a directory to uid 4242") {
        return;
    }
    let base = common::strict_tempdir();
    let state = base.path().join("state");
    let root = base.path().join("root");
    std::fs::create_dir(&state).unwrap();
    std::fs::create_dir(&root).unwrap();
    let cfg = base.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\nsweep = false\nreap = false\nowner = \"4242\"\n",
            state.join("ledger.json").display(),
            root.display()
        ),
    )
    .unwrap();
    let doctor = || {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward"))
            .args(["doctor", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let ledger_problems = |doc: &Value| -> Vec<Value> {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "ledger" && f["ok"] == false)
            .cloned()
            .collect()
    };
    let before = ledger_problems(&doctor());
    assert_eq!(before.len(), 1, "{before:?}");
    let fix = before[0]["fix"].as_str().unwrap().to_owned();
    assert_eq!(fix, format!("chown 4242:4242 {}", state.display()));
    assert!(Command::new("sh")
        .args(["-c", &fix])
        .status()
        .unwrap()
        .success());
    assert_eq!(ledger_problems(&doctor()), Vec::<Value>::new());
}

/// Preserved work in plain sight: a set the sweep made for an unrecorded
/// worktree gets a record; `list --preserved` shows it (where it was, what
/// is in it); `restore <name>/<stamp>` needs nothing else once the ledger
/// knows the repository, and names everything missing when it does not;
/// `drop` deletes it as the owner and closes the record.
#[test]
fn preserved_sets_are_listed_restored_by_name_and_dropped_as_the_owner() {
    if !common::prerequisite(common::is_root(), "sweeps and drops as root for uid 4242") {
        return;
    }
    let h = host(&format!("policy = \"preserve\"\nowner = \"{OWNER}\""));
    let wt = dirty(&h.f, "review-unrecorded");
    let kept = h.f.worktree("kept", "t-kept");
    h.record(&kept);
    chown_r(&h.f.repo, OWNER);
    chown_r(&h.f.origin, OWNER);
    chown_r(&h.root, OWNER);
    let swept = h.sweep();
    assert_eq!(swept["preserved_count"], 1, "{swept}");
    let rec = h
        .records()
        .into_iter()
        .find(|r| r.path == wt)
        .expect("a record for the preserved set");
    assert_eq!(rec.state, State::Preserved);

    let run = h.treeward(&["list", "--preserved", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let sets = doc["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{doc}");
    let set = sets[0]["set"].as_str().unwrap().to_owned();
    assert!(set.starts_with("review-unrecorded/"), "{set}");
    assert_eq!(sets[0]["path"], wt.to_str().unwrap());
    assert!(
        sets[0]["contents"][0].as_str().unwrap().contains("files"),
        "{doc}"
    );
    let human = h.treeward(&["list", "--preserved"]);
    assert!(human.stdout.starts_with("SET"), "{}", human.stdout);
    assert!(human.stdout.contains(&set), "{}", human.stdout);

    // Without the record, and nothing known about the repository, restore
    // names everything missing at once.
    let lone = Ledger::new(&h.ledger);
    let saved = std::fs::read(&h.ledger).unwrap();
    lone.update(|doc| doc.records.clear()).unwrap();
    let run = h.treeward(&["restore", &set]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--repo") && run.stderr.contains("--path"),
        "{}",
        run.stderr
    );
    std::fs::write(&h.ledger, &saved).unwrap();
    // The set's own record gone, the other record still names the
    // repository: restore finds the set there, and its path in the set.
    lone.update(|doc| doc.records.retain(|r| r.path != wt))
        .unwrap();
    let run = h.treeward(&["restore", &set, "--dry-run", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["path"], wt.to_str().unwrap());
    std::fs::write(&h.ledger, &saved).unwrap();

    // Drop: a dry run changes nothing; then the refs go, written by the
    // owner, and the record is closed.
    let refs = |h: &Host| {
        git_as(
            OWNER,
            &h.f.repo,
            &["for-each-ref", "refs/treeward/preserved/"],
        )
    };
    let before = refs(&h);
    let run = h.treeward(&["drop", &set, "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("would drop"), "{}", run.stdout);
    assert_eq!(refs(&h), before);
    let run = h.treeward(&["drop", &set, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(refs(&h), "");
    assert!(
        root_owned(&h.f.repo).is_empty(),
        "{:?}",
        root_owned(&h.f.repo)
    );
    let rec = h.records().into_iter().find(|r| r.path == wt).unwrap();
    assert_eq!(rec.state, State::Removed);
    assert!(rec.preserved_refs.is_empty());
    // A set that is gone is an error, and changes nothing.
    assert_eq!(h.treeward(&["drop", &set]).code, 2);
}
