//! `treeward lease PATH -- CMD` run for real: its exit statuses (CMD's own,
//! a shell's 126/127/128+N, 2 when no lease was taken and CMD never ran),
//! the `flock` held while CMD runs (and by CMD itself), the holder written
//! and cleared in the ledger, a second lease refused at once, and a
//! SIGTERM passed on to CMD. The reaper's side of leases is in
//! `tests/suite/reap.rs`.

use crate::common;

use common::{Fixture, ProcessGroup};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Setup {
    f: Fixture,
    cfg: PathBuf,
    ledger: PathBuf,
    wt: PathBuf,
}

/// A repository with one linked worktree `<tmp>/wt/a` in a configured root.
fn setup() -> Setup {
    let f = Fixture::new();
    let wt = f.worktree("a", "t-a");
    let cfg = common::config_file(f.tmp.path(), &f.tmp.path().join("wt"), "grace = \"1h\"");
    Setup {
        ledger: f.tmp.path().join("ledger.json"),
        f,
        cfg,
        wt,
    }
}

impl Setup {
    /// `treeward lease --config <cfg> <path> -- <cmd...>`.
    fn lease(&self, path: &Path, cmd: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_treeward"));
        c.arg("lease")
            .arg("--config")
            .arg(&self.cfg)
            .arg(path)
            .arg("--")
            .args(cmd)
            .env_remove("TREEWARD_CONFIG");
        c
    }

    fn run(&self, path: &Path, cmd: &[&str]) -> Output {
        common::output_within(&mut self.lease(path, cmd), Duration::from_secs(60))
    }

    /// The records of the ledger (none when there is no ledger yet).
    fn records(&self) -> Vec<Value> {
        match std::fs::read(&self.ledger) {
            Ok(bytes) => {
                let doc: Value = serde_json::from_slice(&bytes).unwrap();
                doc["records"].as_array().unwrap().clone()
            }
            Err(_) => Vec::new(),
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn held(dir: &Path) -> bool {
    treeward::testing::in_use::flock_held(dir).unwrap()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_lease_exits_with_its_commands_status() {
    let s = setup();
    let out = s.run(&s.wt, &["sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let out = s.run(&s.wt, &["true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "silent");
    let out = s.run(&s.wt, &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(code(&out), 128 + 9, "a signal's death reads as a shell's");
    // Arguments reach the command as given, options included.
    let out = s.run(&s.wt, &["printf", "%s|", "--config", "a b", "-x"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "--config|a b|-x|");
}

#[test]
fn a_command_that_cannot_start_reads_as_a_shell_says() {
    let s = setup();
    let out = s.run(&s.wt, &["treeward-no-such-command"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("command not found"),
        "{}",
        stderr(&out)
    );
    let script = s.f.tmp.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = s.run(&s.wt, &[script.to_str().unwrap()]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    // The lease taken for it was ended all the same.
    assert!(!held(&s.wt));
    assert!(s.records().iter().all(|r| r["lease"].is_null()));
}

#[test]
fn a_bad_path_is_status_2_and_the_command_never_runs() {
    let s = setup();
    let marker = s.f.tmp.path().join("ran");
    let touch = ["touch", marker.to_str().unwrap()];
    let plain = s.f.tmp.path().join("wt/plain");
    std::fs::create_dir(&plain).unwrap();
    for (path, says) in [
        (s.f.tmp.path().join("wt/missing"), "no such file"),
        (s.f.repo.clone(), "not an entry of any configured root"),
        (plain, "not a linked worktree"),
    ] {
        let out = s.run(&path, &touch);
        assert_eq!(code(&out), 2, "{}: {}", path.display(), stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert!(stderr(&out).contains(&path.display().to_string()));
        assert!(!marker.exists(), "{}: the command ran", path.display());
    }
    assert!(s.records().is_empty(), "nothing recorded");
    // The control: a good path runs it.
    assert_eq!(code(&s.run(&s.wt, &touch)), 0);
    assert!(marker.exists());
}

#[test]
fn the_command_runs_under_the_lease_and_holds_its_flock() {
    let s = setup();
    assert!(!held(&s.wt));
    // Inside: another open of the directory cannot take the flock, and the
    // descriptor named in TREEWARD_LEASE_FD is the worktree's.
    let script = r#"flock -n -x "$1" true && echo free || echo held
        readlink "/proc/$$/fd/$TREEWARD_LEASE_FD""#;
    let out = s.run(&s.wt, &["sh", "-c", script, "sh", s.wt.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["held", s.wt.to_str().unwrap()], "{text}");
    // Afterwards the flock is gone, and an active record of the worktree
    // was created (as the hook would have) with its holder cleared.
    assert!(!held(&s.wt));
    let records = s.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["path"], s.wt.to_str().unwrap());
    assert_eq!(r["state"], "active");
    assert_eq!(r["branch"], "t-a");
    assert_eq!(r["worktree_name"], "a");
    assert_eq!(
        r["repository"],
        std::fs::canonicalize(s.f.repo.join(".git"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert!(r["lease"].is_null(), "{r}");
}

#[test]
fn the_holder_is_recorded_while_it_runs_and_a_second_lease_fails_at_once() {
    let s = setup();
    let first = ProcessGroup::spawn(&mut s.lease(&s.wt, &["sleep", "1000"]));
    let pid = first.pid();
    eventually("the holder is recorded", || {
        s.records().iter().any(|r| r["lease"]["pid"] == pid)
    });
    assert!(held(&s.wt));
    let r = &s.records()[0];
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = treeward::testing::in_use::parse_stat(&stat)
        .unwrap()
        .start_time;
    assert_eq!(r["lease"]["start_time"], start, "{r}");

    let marker = s.f.tmp.path().join("second-ran");
    let started = Instant::now();
    let out = s.run(&s.wt, &["touch", marker.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already leased") && stderr(&out).contains(&pid.to_string()),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait"
    );
    assert!(!marker.exists());
    assert_eq!(
        s.records()[0]["lease"]["pid"],
        pid,
        "the first holder stays"
    );
}

#[test]
fn a_sigterm_to_the_lease_stops_its_command_and_ends_the_lease_cleanly() {
    let s = setup();
    let mut lease = ProcessGroup::spawn(&mut s.lease(&s.wt, &["sleep", "1000"]));
    let pid = lease.pid();
    eventually("the holder is recorded", || {
        s.records().iter().any(|r| r["lease"]["pid"] == pid)
    });
    // To the lease's process alone, as an orchestrator stopping it would.
    let group = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = lease.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "sleep died of the SIGTERM passed on"
    );
    // No process of the group is left: sleep got it too.
    assert_eq!(
        nix::sys::signal::killpg(group, None),
        Err(nix::errno::Errno::ESRCH)
    );
    assert!(!held(&s.wt));
    assert!(s.records()[0]["lease"].is_null(), "ended cleanly");
    assert_eq!(s.records()[0]["state"], "active");
}

#[test]
fn lease_requires_a_command_after_the_double_dash() {
    let s = setup();
    let mut c = Command::new(env!("CARGO_BIN_EXE_treeward"));
    c.arg("lease").arg("--config").arg(&s.cfg).arg(&s.wt);
    let out = common::output_within(&mut c, Duration::from_secs(60));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(s.records().is_empty());
}

/// `register` (the library's hook, for an orchestrator that creates its
/// worktrees in-process): one `active` record from the worktree's claim,
/// the same record on a second call, and nothing written for a path that
/// is not a worktree of a configured root or whose record names another
/// repository.
#[test]
fn register_records_a_worktree_once_and_refuses_what_is_not_one() {
    let s = setup();
    let config = treeward::Config::load(Some(&s.cfg)).unwrap();
    let first = treeward::register(&config, &s.wt).unwrap();
    assert!(first.created);
    assert_eq!(first.path, s.wt);
    let records = s.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], first.id.as_str());
    assert_eq!(records[0]["state"], "active");
    assert_eq!(records[0]["branch"], "t-a");
    assert_eq!(records[0]["worktree_name"], "a");
    assert_eq!(
        records[0]["repository"],
        s.f.repo.join(".git").to_str().unwrap()
    );

    let again = treeward::register(&config, &s.wt).unwrap();
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false)
    );
    assert_eq!(s.records(), records, "registering twice changes nothing");

    let plain = s.f.tmp.path().join("wt/plain");
    std::fs::create_dir(&plain).unwrap();
    let outside = s.f.tmp.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    for (path, why) in [
        (&plain, "not a linked worktree"),
        (&outside, "not an entry of any configured root"),
        (&s.f.repo, "not an entry of any configured root"),
    ] {
        let err = treeward::register(&config, path).unwrap_err();
        assert!(err.to_string().contains(why), "{path:?}: {err}");
        assert!(err.to_string().contains("nothing was recorded"), "{err}");
    }
    // A record that names another repository at this path is not trusted.
    let other = common::Fixture::new();
    let doctored = std::fs::read_to_string(&s.ledger).unwrap().replace(
        s.f.repo.join(".git").to_str().unwrap(),
        other.repo.join(".git").to_str().unwrap(),
    );
    std::fs::write(&s.ledger, doctored).unwrap();
    let before = s.records();
    let err = treeward::register(&config, &s.wt).unwrap_err();
    assert!(err.to_string().contains("is not trusted"), "{err}");
    assert_eq!(s.records(), before, "nothing written");
}

/// `examples/orchestrator.rs`, the embedder's life cycle, run for real: it
/// sweeps at start-up, creates two worktrees, registers and leases each
/// while its "agent" commits, releases them, and reaps. Both worktrees are
/// gone, their branches and commits kept (not integrated), their records
/// `removed` with no holder left.
#[test]
fn the_orchestrator_example_runs_an_embedders_life_cycle() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/orchestrator");
    assert!(
        example.exists(),
        "{} is missing: `cargo test` builds the examples (or run `cargo build --example orchestrator`)",
        example.display()
    );
    let f = common::Fixture::new();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let ledger = f.tmp.path().join("ledger.json");
    let out = common::output_within(
        Command::new(&example)
            .arg(&f.repo)
            .arg(&root)
            .arg(&ledger)
            .env_remove("TREEWARD_CONFIG"),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", stderr(&out));
    assert!(stdout.contains("task-1: registered as"), "{stdout}");
    assert!(stdout.contains("reap: removed 2"), "{stdout}");
    for task in ["task-1", "task-2"] {
        assert!(!root.join(task).exists(), "{task} reclaimed");
        let log = common::git(&f.repo, &["log", "--format=%s", "-1", task]);
        assert_eq!(log.trim(), task, "{task}'s commit kept on its branch");
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    for r in records {
        assert_eq!(r["state"], "removed", "{r}");
        assert!(r["lease"].is_null(), "{r}");
    }
}
