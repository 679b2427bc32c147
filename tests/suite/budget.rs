//! `treeward-sweep --budget` holds on a real backlog: 150 worktrees of 800
//! files each (one in five with work at risk), swept as root for uid 4242
//! with `--budget 1s`, three times. Each pass ends within the budget, plus
//! its blocking phase, plus one second; what a pass leaves waits in the
//! trash (half-deleted trees among it), and a pass with time enough
//! finishes it without losing anything: the dirty work is under
//! `refs/treeward/preserved/`, the clean worktrees are gone, each reported
//! once. And while the drain runs, systemd hears how far it got
//! (`sd_notify` `STATUS=` lines on a real `NOTIFY_SOCKET`).
//! Root-only: skipped with a printed reason otherwise (CI runs as root).

use crate::common;

use common::{chown_r, config_file, git, git_as, json_report, write, Fixture};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OWNER: u32 = 4242;
const WORKTREES: usize = 150;
/// 40 directories of 20 files: 800 files a worktree.
const DIRS: usize = 40;
const FILES: usize = 20;
/// One worktree in this many has work at risk.
const DIRTY_EVERY: usize = 5;
const BUDGET: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_secs(1);
/// The passes with `--budget 1s`.
const TIMED_PASSES: usize = 3;

/// A repository owned by uid 4242 whose `main` (pushed to its origin)
/// holds 800 files, and a root of its worktrees.
struct Host {
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
}

fn host(base: &Path) -> Host {
    let f = Fixture::new_in(base);
    for d in 0..DIRS {
        for n in 0..FILES {
            write(
                &f.repo.join(format!("tree/d{d:02}/f{n:02}.txt")),
                &format!("directory {d}, file {n}: a line of ordinary source text\n"),
            );
        }
    }
    git(&f.repo, &["add", "-A"]);
    git(&f.repo, &["commit", "-q", "-m", "a tree of 800 files"]);
    git(&f.repo, &["push", "-q", "origin", "main"]);
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let cfg = config_file(
        f.tmp.path(),
        &root,
        &format!("policy = \"preserve\"\nowner = \"{OWNER}\""),
    );
    Host { f, root, cfg }
}

impl Host {
    fn name(i: usize) -> String {
        format!("wt-{i:03}")
    }

    /// `count` worktrees on detached HEADs; the first is checked out by
    /// git, the others get a copy of its files and its index (git then
    /// finds them clean), which is twice as fast on a busy machine.
    /// Detached, because a reclaim that deletes an integrated branch first
    /// checks (in libgit2) that no worktree has it checked out, opening
    /// every worktree of the repository: with 150 of them that makes each
    /// reclaim a quarter slower, and this test slower still, without
    /// telling more about the budget. Every [`DIRTY_EVERY`]th gets an
    /// untracked file and an edit.
    fn worktrees(&self, count: usize) -> Vec<PathBuf> {
        let first = self.root.join(Host::name(0));
        common::add_worktree(&self.f.repo, &first, None);
        let admin = self.f.repo.join(".git/worktrees");
        let mut made = vec![first.clone()];
        for i in 1..count {
            let wt = self.root.join(Host::name(i));
            git(
                &self.f.repo,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "--no-checkout",
                    "--detach",
                    wt.to_str().unwrap(),
                    "main",
                ],
            );
            std::fs::copy(
                admin.join(Host::name(0)).join("index"),
                admin.join(Host::name(i)).join("index"),
            )
            .unwrap();
            let ok = Command::new("cp")
                .arg("-a")
                .args(["README", ".gitignore", "src", "tree"].map(|p| first.join(p)))
                .arg(&wt)
                .status()
                .unwrap();
            assert!(ok.success());
            made.push(wt);
        }
        for (i, wt) in made.iter().enumerate() {
            if i % DIRTY_EVERY == 0 {
                write(&wt.join("notes.md"), &format!("only copy of {i}\n"));
                write(&wt.join("tree/d00/f00.txt"), &format!("edited in {i}\n"));
            }
        }
        chown_r(&self.f.repo, OWNER);
        chown_r(&self.f.origin, OWNER);
        chown_r(&self.root, OWNER);
        made
    }

    /// One `--json` sweep: its wall time and report.
    fn sweep(&self, budget: &str, env: &[(&str, &Path)]) -> (Duration, Value) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"));
        cmd.args(["--json", "--budget", budget, "--config"])
            .arg(&self.cfg);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let (code, doc, stderr) = json_report(&out);
        assert_eq!(code, 0, "{doc:#} / {stderr}");
        assert!(
            !stderr.contains("draining ["),
            "a progress bar on a stderr that is not a terminal: {stderr}"
        );
        (took, doc)
    }

    fn git(&self, args: &[&str]) -> String {
        git_as(OWNER, &self.f.repo, args)
    }

    fn refs(&self, prefix: &str) -> Vec<String> {
        let out = self.git(&["for-each-ref", "--format=%(refname)", prefix]);
        out.lines().map(str::to_owned).collect()
    }

    fn trash_is_empty(&self) -> bool {
        let trash = self.root.join(".treeward-trash");
        std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none())
    }
}

#[test]
fn a_one_second_budget_holds_on_150_worktrees_of_800_files_and_loses_nothing() {
    if !common::prerequisite(common::is_root(), "the sweep acts for uid 4242 as root") {
        return;
    }
    let _timed = common::timed();
    let base = common::strict_tempdir();
    let h = host(base.path());
    let setup = Instant::now();
    let made = h.worktrees(WORKTREES);
    eprintln!(
        "{WORKTREES} worktrees of {} files made in {:?}",
        DIRS * FILES,
        setup.elapsed()
    );

    // Each path's final word (removed or preserved), and the passes' times.
    let mut finals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |doc: &Value| {
        for e in doc["entries"].as_array().unwrap() {
            let action = e["action"].as_str().unwrap();
            if matches!(action, "removed" | "preserved") {
                let path = e["path"].as_str().unwrap().to_owned();
                finals.entry(path).or_default().push(action.to_owned());
            }
        }
    };
    let mut times = Vec::new();
    for pass in 1..=TIMED_PASSES {
        let (took, doc) = h.sweep("1s", &[]);
        let blocking = Duration::from_millis(doc["blocking_ms"].as_u64().unwrap());
        let bound = BUDGET + blocking + SLACK;
        eprintln!(
            "pass {pass}: {took:?} (blocking {blocking:?}, bound {bound:?}): {} swept, {} deferred, {} failed",
            doc["swept_count"], doc["deferred_count"], doc["failed_count"],
        );
        assert!(took <= bound, "pass {pass} took {took:?}, over {bound:?}");
        assert_eq!(doc["failed_count"], 0, "{doc:#}");
        assert_eq!(doc["kept_count"], 0, "{doc:#}");
        assert!(doc["deferred_count"].as_u64().unwrap() > 0, "{doc:#}");
        note(&doc);
        times.push(took);
    }
    eprintln!("--budget 1s: {times:?}");
    // What they left (some of it half-deleted) is finished by a pass with
    // time enough, which assesses nothing twice.
    let (took, doc) = h.sweep("10m", &[]);
    eprintln!("the rest: {took:?}, {} swept", doc["swept_count"]);
    assert_eq!(
        (
            &doc["failed_count"],
            &doc["kept_count"],
            &doc["deferred_count"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "{doc:#}"
    );
    note(&doc);
    assert!(h.trash_is_empty());
    assert!(common::live_names(&h.root).is_empty());

    // Nothing lost: each worktree reported once, dirty ones preserved with
    // their files recoverable, clean ones removed; git keeps none of them.
    let preserved = h.refs("refs/treeward/preserved/");
    for (i, wt) in made.iter().enumerate() {
        let words = finals.get(wt.to_str().unwrap());
        let dirty = i % DIRTY_EVERY == 0;
        let expected = if dirty { "preserved" } else { "removed" };
        assert_eq!(words, Some(&vec![expected.to_owned()]), "{}", wt.display());
        let prefix = format!("refs/treeward/preserved/{}/", Host::name(i));
        let work: Vec<&String> = preserved
            .iter()
            .filter(|r| r.starts_with(&prefix) && r.ends_with("/work"))
            .collect();
        if !dirty {
            assert!(work.is_empty(), "{}: {work:?}", wt.display());
            continue;
        }
        assert_eq!(work.len(), 1, "{}: {preserved:?}", wt.display());
        assert_eq!(
            h.git(&["show", &format!("{}^3:notes.md", work[0])]),
            format!("only copy of {i}")
        );
        assert_eq!(
            h.git(&["show", &format!("{}:tree/d00/f00.txt", work[0])]),
            format!("edited in {i}")
        );
    }
    let list = h.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
}

#[test]
fn the_drain_tells_systemd_how_far_it_got() {
    if !common::prerequisite(common::is_root(), "the sweep acts for uid 4242 as root") {
        return;
    }
    let base = common::strict_tempdir();
    let h = host(base.path());
    h.worktrees(6);
    let socket_path = base.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let (_, doc) = h.sweep("30s", &[("NOTIFY_SOCKET", &socket_path)]);
    assert_eq!(doc["swept_count"], 6, "{doc:#}");
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        lines.extend(text.lines().map(str::to_owned));
    }
    let progress: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("STATUS=draining the trash: "))
        .collect();
    assert!(
        progress
            .first()
            .is_some_and(|l| l.contains("0 of 6 entries done, 0 B freed; 6 left")),
        "{lines:#?}"
    );
    assert!(
        progress
            .last()
            .is_some_and(|l| l.contains("6 of 6 entries done") && l.ends_with("; 0 left")),
        "{lines:#?}"
    );
    // The summary comes last, as before.
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("STATUS=") && l.contains("removed")),
        "{lines:#?}"
    );
}

/// What waits in a batch's remains is deleted without an assessment only
/// when it is the trash owner's: the owner can move anything of theirs
/// there (and could delete it anyway), but of another user's only what it
/// can rename, so that is judged again as residue: with files, it is work
/// no repository can record, and left alone; empty, it goes.
#[test]
fn only_the_owners_remains_are_deleted_unassessed() {
    if !common::prerequisite(common::is_root(), "the remains belong to uid 4242") {
        return;
    }
    let base = common::strict_tempdir();
    let root = base.path().join("wt");
    let removed = root.join(".treeward-trash/20260101T000000Z-1/.treeward-trash/removed");
    std::fs::create_dir_all(&removed).unwrap();
    write(
        &removed.join("mine/half/left.txt"),
        "rest of a reclaimed tree\n",
    );
    write(&removed.join("theirs/work.txt"), "uid 4343's only copy\n");
    std::fs::create_dir_all(removed.join("theirs-empty/sub")).unwrap();
    chown_r(&root, OWNER);
    chown_r(&removed.join("theirs"), 4343);
    chown_r(&removed.join("theirs-empty"), 4343);
    let mut dir = removed.clone();
    while dir != base.path() {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .unwrap();
        dir = dir.parent().unwrap().to_path_buf();
    }
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = config_file(
        base.path(),
        &root,
        &format!("policy = \"preserve\"\nowner = \"{OWNER}\""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let (code, doc, stderr) = json_report(&out);
    assert_eq!(code, 0, "{doc:#} / {stderr}");
    let entry = |name: &str| common::report_entry(&doc, &root.join(name)).clone();
    assert_eq!(entry("mine")["action"], "removed", "{doc:#}");
    assert!(entry("mine")["reason"]
        .as_str()
        .unwrap()
        .contains("reclaimed by an earlier pass"));
    assert_eq!(entry("theirs-empty")["action"], "removed", "{doc:#}");
    assert_eq!(entry("theirs")["action"], "refused", "{doc:#}");
    assert_eq!(
        std::fs::read_to_string(removed.join("theirs/work.txt")).unwrap(),
        "uid 4343's only copy\n"
    );
    assert!(!removed.join("mine").exists() && !removed.join("theirs-empty").exists());
}
