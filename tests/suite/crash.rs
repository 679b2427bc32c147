//! Crash at any point: `treeward-sweep`, `treeward-reap`, `treeward-hook`,
//! `treeward restore` and `treeward release` are killed with SIGKILL at up
//! to 100 points each, picked from inside by the crash points the tests
//! compile in (`src/fault.rs`): a first, uninterrupted run numbers every
//! point it reaches; then, on a fresh copy of the same host for each point,
//! the run is killed exactly there. After each kill:
//!
//! - the ledger and its journal parse, and no record is lost;
//! - a rerun converges to the state the uninterrupted run reached (the
//!   same live entries, the same record states);
//! - no work is lost: every agent's work is on disk or in a preserved set;
//! - nothing is left locked by treeward, half-renamed in the trash, or
//!   pointing into the trash.

use crate::common;

use common::{git, write, Fixture};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How many points each binary is killed at, at most.
const POINTS: usize = 100;

/// One host: a repository (root's, so the whole run is one process tree
/// whose points all count) and a root of worktrees in several states,
/// recorded in the ledger.
struct Host {
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
    ledger: PathBuf,
    /// Worktree name → the token of its work (uncommitted).
    work: BTreeMap<String, String>,
    /// The preserved set a restore brings back (`<name>/<stamp>`).
    set: Option<String>,
}

fn host(state: &str) -> Host {
    let f = Fixture::new();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = common::config_file(f.tmp.path(), &root, "grace = \"0s\"\npolicy = \"preserve\"");
    let ledger = f.tmp.path().join("ledger.json");
    let mut work = BTreeMap::new();
    let clean = f.worktree("clean", "t-clean");
    let dirty = f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "work-of-dirty\n");
    write(&dirty.join("README"), "edited: work-of-dirty-2\n");
    work.insert("dirty".to_owned(), "work-of-dirty".to_owned());
    let detached = f.detached_worktree("detached");
    f.commit(&detached, "lone.txt", "work-of-detached\n", "lone");
    work.insert("detached".to_owned(), "work-of-detached".to_owned());
    std::fs::create_dir(root.join("plain-empty")).unwrap();
    let records: Vec<Value> = [&clean, &dirty, &detached]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({
                "id": format!("r{i}"), "path": p, "repository": f.repo.join(".git"),
                "uid": 0, "created_at": "2026-01-01T00:00:00Z",
                "last_transition": "2026-01-01T00:00:00Z", "state": state,
            })
        })
        .collect();
    std::fs::write(
        &ledger,
        serde_json::json!({"schema": 1, "records": records}).to_string(),
    )
    .unwrap();
    Host {
        f,
        root,
        cfg,
        ledger,
        work,
        set: None,
    }
}

/// How a campaign's host starts.
type Setup = fn() -> Host;

fn active() -> Host {
    host("active")
}

fn released() -> Host {
    host("released")
}

/// A host whose dirty worktree was swept (its work preserved), for
/// `treeward restore` to bring back.
fn swept() -> Host {
    let mut h = host("active");
    // On a loaded machine a pass may leave an entry for the next one (a
    // worker call past its deadline): sweep until nothing is left.
    for _ in 0..5 {
        let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--budget", "30s", "--config"])
            .arg(&h.cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        if common::live_names(&h.root).is_empty() {
            break;
        }
    }
    assert_eq!(common::live_names(&h.root), Vec::<String>::new());
    let refs = git(
        &h.f.repo,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/treeward/preserved/dirty/",
        ],
    );
    let set = refs
        .lines()
        .next()
        .and_then(|r| r.strip_prefix("refs/treeward/preserved/"))
        .map(|r| r.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"))
        .expect("the dirty worktree was preserved");
    h.set = Some(set);
    h
}

/// What a converged host looks like: its live entries and, per path, the
/// states of its records (ids are random: the hook makes new ones).
#[derive(Debug, PartialEq, Eq)]
struct State {
    live: Vec<String>,
    records: BTreeMap<PathBuf, Vec<String>>,
}

impl Host {
    fn state(&self) -> State {
        let doc = treeward::testing::ledger::Ledger::new(&self.ledger)
            .read()
            .expect("the ledger and its journal parse");
        State {
            live: common::live_names(&self.root),
            records: doc.records.iter().fold(BTreeMap::new(), |mut m, r| {
                let at = r.path.strip_prefix(&self.root).unwrap_or(&r.path);
                m.entry(at.to_path_buf())
                    .or_insert_with(Vec::new)
                    .push(r.state.words().to_owned());
                m
            }),
        }
    }

    /// Every piece of work is on disk or in a preserved set.
    fn work_is_somewhere(&self) -> Result<(), String> {
        let refs = git(
            &self.f.repo,
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/treeward/preserved/",
            ],
        );
        let refs: Vec<&str> = refs.lines().collect();
        for (name, token) in &self.work {
            let on_disk = common::contents(&self.root)
                .values()
                .any(|(_, bytes)| String::from_utf8_lossy(bytes).contains(token.as_str()));
            if on_disk {
                continue;
            }
            let preserved = !refs.is_empty()
                && (Command::new("git")
                    .current_dir(&self.f.repo)
                    .args(["grep", "-q", "-F", token.as_str()])
                    .args(&refs)
                    .arg("--")
                    .status()
                    .unwrap()
                    .success()
                    || Command::new("git")
                        .current_dir(&self.f.repo)
                        .args(["log", "--format=%H", "-S", token.as_str()])
                        .args(&refs)
                        .output()
                        .map(|o| !o.stdout.is_empty())
                        .unwrap_or(false));
            if !preserved {
                return Err(format!(
                    "{name}: its work {token} is neither on disk nor preserved"
                ));
            }
        }
        Ok(())
    }

    /// Nothing left locked by treeward, half-renamed, or pointing into the
    /// trash.
    fn nothing_left_behind(&self) -> Result<(), String> {
        let worktrees = self.f.repo.join(".git/worktrees");
        for admin in std::fs::read_dir(&worktrees)
            .into_iter()
            .flatten()
            .flatten()
        {
            let locked = std::fs::read_to_string(admin.path().join("locked")).unwrap_or_default();
            if locked.contains("treeward") {
                return Err(format!("{} left locked: {locked}", admin.path().display()));
            }
            let gitdir = std::fs::read_to_string(admin.path().join("gitdir")).unwrap_or_default();
            if gitdir.contains(".treeward-trash") {
                return Err(format!(
                    "{} points into the trash: {gitdir}",
                    admin.path().display()
                ));
            }
        }
        let trash = self.root.join(".treeward-trash");
        let left: Vec<PathBuf> = std::fs::read_dir(&trash)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|batch| {
                std::fs::read_dir(batch.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .collect();
        if !left.is_empty() {
            return Err(format!("left in the trash: {left:?}"));
        }
        Ok(())
    }
}

/// A binary's run on a host, with the crash points driven by `log`/`at`.
type Run = fn(&Host, &Path, Option<usize>) -> Output;

fn with_faults(cmd: &mut Command, log: &Path, at: Option<usize>) -> Output {
    cmd.env("TREEWARD_FAULT_LOG", log)
        .env_remove("TREEWARD_FAULT_AT");
    if let Some(n) = at {
        cmd.env("TREEWARD_FAULT_AT", n.to_string());
    }
    cmd.output().unwrap()
}

fn sweep(h: &Host, log: &Path, at: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"));
    c.args(["--json", "--budget", "30s", "--config"])
        .arg(&h.cfg);
    with_faults(&mut c, log, at)
}

fn release(h: &Host, log: &Path, at: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward"));
    c.args(["release", "r1", "--config"]).arg(&h.cfg);
    with_faults(&mut c, log, at)
}

/// `treeward restore` of the host's set to `<root>/restored`.
fn restore(h: &Host, log: &Path, at: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward"));
    c.arg("restore")
        .arg("--repo")
        .arg(h.f.repo.join(".git"))
        .arg("--path")
        .arg(h.root.join("restored"))
        .arg(h.set.as_deref().unwrap())
        .arg("--config")
        .arg(&h.cfg);
    with_faults(&mut c, log, at)
}

/// `git worktree add` of a new worktree, whose `post-checkout` hook is
/// treeward's (the hook is what is killed; a rerun runs it again, as the
/// shim would on the next checkout).
fn hook(h: &Host, log: &Path, at: Option<usize>) -> Output {
    let wt = h.root.join("new");
    if !wt.exists() {
        let hooks = h.f.repo.join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let shim = hooks.join("post-checkout");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-checkout"),
            &shim,
        )
        .unwrap();
        let mut c = common::git_command(&h.f.repo, &["worktree", "add", "-q", "-b", "t-new"]);
        c.arg(&wt)
            .arg("main")
            .env("TREEWARD_HOOK", env!("CARGO_BIN_EXE_treeward-hook"))
            .env("TREEWARD_CONFIG", &h.cfg);
        return with_faults(&mut c, log, at);
    }
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let zero = "0".repeat(head.trim().len());
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward-hook"));
    c.args([zero.as_str(), head.trim(), "1"])
        .current_dir(&wt)
        .env("TREEWARD_CONFIG", &h.cfg);
    with_faults(&mut c, log, at)
}

fn reap(h: &Host, log: &Path, at: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward-reap"));
    c.args(["--json", "--config"]).arg(&h.cfg);
    with_faults(&mut c, log, at)
}

/// Points reached by an uninterrupted run of `run` on a fresh host.
fn count_points(setup: Setup, run: Run) -> (usize, State) {
    let h = setup();
    let log = h.f.tmp.path().join("points.log");
    let out = run(&h, &log, None);
    assert!(out.status.code().is_some(), "{out:?}");
    let n =
        std::fs::metadata(&log).map_or(0, |m| m.len() as usize / treeward::testing::fault::LINE);
    // Converged: once more changes nothing.
    let _ = run(&h, &h.f.tmp.path().join("again.log"), None);
    (n, h.state())
}

/// Up to [`POINTS`] points spread over `1..=n`; `TREEWARD_CRASH_AT=<k>`
/// picks only point k (to look at one failure).
fn chosen(n: usize) -> Vec<usize> {
    if let Some(k) = std::env::var("TREEWARD_CRASH_AT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![k];
    }
    if n <= POINTS {
        return (1..=n).collect();
    }
    let mut v: Vec<usize> = (0..POINTS)
        .map(|i| 1 + i * (n - 1) / (POINTS - 1))
        .collect();
    v.dedup();
    v
}

/// Kills `run` at each chosen point on a fresh host, then checks the
/// invariants and convergence. Returns (points reached, kills).
fn campaign(what: &str, setup: Setup, run: Run) -> (usize, usize) {
    let (n, reference) = count_points(setup, run);
    assert!(n > 0, "{what}: no crash point reached");
    let mut kills = 0;
    for at in chosen(n) {
        // A run on a loaded machine may take another path (an entry left
        // for the next pass) and stop short of point `at`: up to three
        // fresh hosts are tried until one is killed there.
        let mut attempts = 0;
        let (h, ids_before) = loop {
            attempts += 1;
            let h = setup();
            let log = h.f.tmp.path().join("points.log");
            let ids_before: Vec<String> = treeward::testing::ledger::Ledger::new(&h.ledger)
                .read()
                .unwrap()
                .records
                .iter()
                .map(|r| r.id.clone())
                .collect();
            run(&h, &log, Some(at));
            let reached = std::fs::metadata(&log).map_or(0, |m| m.len() as usize)
                / treeward::testing::fault::LINE;
            if reached >= at || attempts == 3 {
                break (h, ids_before);
            }
        };
        let log = h.f.tmp.path().join("points.log");
        // A SIGKILLed treeward (or a git whose hook was killed) ends by
        // signal or reports it; either way the point was reached.
        let log_len = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        if log_len / treeward::testing::fault::LINE >= at {
            kills += 1;
        } else {
            eprintln!(
                "{what}: point {at} of {n} not reached (this run reached {}): {}",
                log_len / treeward::testing::fault::LINE,
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let fail = |why: String| -> ! {
            panic!(
                "{what}, killed at point {at} of {n} ({}): {why}",
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .nth(at - 1)
                    .unwrap_or("?")
                    .trim()
            )
        };
        let after = treeward::testing::ledger::Ledger::new(&h.ledger)
            .read()
            .unwrap_or_else(|e| fail(format!("the ledger does not parse: {e}")));
        for id in &ids_before {
            if after.find_by_id(id).is_none() {
                fail(format!("record {id} lost"));
            }
        }
        if let Err(e) = h.work_is_somewhere() {
            fail(e);
        }
        // Rerun until it converges (a killed pass leaves at most one more
        // pass of work), then compare with the uninterrupted run.
        let reruns: Vec<Output> = (0..3)
            .map(|_| run(&h, &h.f.tmp.path().join("rerun.log"), None))
            .collect();
        let converged = h.state();
        if converged != reference {
            let said: Vec<String> = reruns
                .iter()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .collect();
            fail(format!(
                "converged to {converged:?}, not {reference:?}; the reruns said: {said:#?}"
            ));
        }
        if let Err(e) = h.work_is_somewhere() {
            fail(e);
        }
        if let Err(e) = h.nothing_left_behind() {
            fail(e);
        }
    }
    eprintln!("{what}: {n} crash points, killed at {kills}, all converged, nothing lost");
    (n, kills)
}

#[test]
fn the_sweep_killed_at_any_point() {
    if !common::prerequisite(common::is_root(), "the sweep runs as root") {
        return;
    }
    let (n, kills) = campaign("treeward-sweep", active, sweep);
    assert_eq!(kills, chosen(n).len(), "every chosen point is reached");
}

#[test]
fn the_reaper_killed_at_any_point() {
    if !common::prerequisite(common::is_root(), "the fixtures are root's") {
        return;
    }
    let (n, kills) = campaign("treeward-reap", released, reap);
    assert_eq!(kills, chosen(n).len(), "every chosen point is reached");
}

#[test]
fn release_killed_at_any_point() {
    if !common::prerequisite(common::is_root(), "the fixtures are root's") {
        return;
    }
    let (n, kills) = campaign("treeward release", active, release);
    assert_eq!(kills, chosen(n).len(), "every chosen point is reached");
}

#[test]
fn the_hook_killed_at_any_point() {
    if !common::prerequisite(common::is_root(), "the fixtures are root's") {
        return;
    }
    let (n, kills) = campaign("treeward-hook", active, hook);
    assert_eq!(kills, chosen(n).len(), "every chosen point is reached");
}

#[test]
fn restore_killed_at_any_point() {
    if !common::prerequisite(common::is_root(), "the sweep before it runs as root") {
        return;
    }
    let (n, kills) = campaign("treeward restore", swept, restore);
    assert_eq!(kills, chosen(n).len(), "every chosen point is reached");
}
