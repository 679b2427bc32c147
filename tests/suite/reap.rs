//! `treeward-reap` run for real as an unprivileged service user (uid 4242)
//! against real repositories owned by that user, next to real processes:
//! what it takes, what it never takes, what it tells the ledger. The root is
//! root-owned and sticky like `/tmp`, so root's residue in it is out of the
//! reaper's reach. Root-only (to act as uid 4242): skipped with a printed
//! reason otherwise (CI runs as root).

use crate::common;

use common::{
    add_worktree, chown_r, git_as, set_mtime, snapshot, write, ChildGuard, Fixture, ProcessGroup,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const AGENT: u32 = 4242;
/// Every host has `nobody`; a root owned by a user needs an account to name
/// in `owner`, and uid 4242 has none.
const NOBODY: u32 = 65534;

struct Host {
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
    ledger: PathBuf,
    /// Who runs the reaper and owns the repository.
    user: u32,
}

/// A repository, a root `<tmp>/wt` (root-owned, sticky, mode 1777), a
/// ledger in a directory of the agent's, and a configuration with `grace`
/// and `policy`.
fn host(grace: &str, policy: &str) -> Option<Host> {
    if !common::is_root() {
        eprintln!("skipped: the reap tests run as root (CI does) to run the reaper as uid {AGENT}");
        return None;
    }
    let h = make_host(AGENT);
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    h.configure(grace, policy, "");
    Some(h)
}

fn make_host(user: u32) -> Host {
    let f = Fixture::new();
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let state = f.tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chown_r(&state, user);
    Host {
        cfg: f.tmp.path().join("treeward.toml"),
        ledger: state.join("ledger.json"),
        f,
        root,
        user,
    }
}

fn ago(seconds: u64) -> String {
    treeward::testing::ledger::format_timestamp(SystemTime::now() - Duration::from_secs(seconds))
}

impl Host {
    fn configure(&self, grace: &str, policy: &str, extra: &str) {
        std::fs::write(
            &self.cfg,
            format!(
                "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"{grace}\"\npolicy = \"{policy}\"\n{extra}",
                self.ledger.display(),
                self.root.display()
            ),
        )
        .unwrap();
    }

    /// Hands the repository, its origin and every entry so far to the user,
    /// and makes every entry two hours old.
    fn hand_over(&self) {
        chown_r(&self.f.repo, self.user);
        chown_r(&self.f.origin, self.user);
        for e in std::fs::read_dir(&self.root).unwrap() {
            let p = e.unwrap().path();
            chown_r(&p, self.user);
            set_mtime(&p, "2 hours ago");
        }
    }

    /// A record of the worktree at `path` in `state`, its last transition
    /// `since` seconds ago; `extra` overrides fields.
    fn rec(&self, id: &str, path: &Path, state: &str, since: u64, extra: Value) -> Value {
        let mut r = json!({
            "id": id,
            "path": path,
            "repository": self.f.repo.join(".git"),
            "worktree_name": path.file_name().unwrap().to_str().unwrap(),
            "uid": self.user,
            "created_at": ago(since + 60),
            "last_transition": ago(since),
            "state": state,
        });
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    fn write_ledger(&self, records: Vec<Value>) {
        let doc = json!({"schema": 1, "records": records});
        std::fs::write(&self.ledger, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::os::unix::fs::chown(&self.ledger, Some(self.user), Some(self.user)).unwrap();
    }

    fn records(&self) -> Vec<Value> {
        let doc: Value = serde_json::from_slice(&std::fs::read(&self.ledger).unwrap()).unwrap();
        doc["records"].as_array().unwrap().clone()
    }

    fn record(&self, id: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record {id}"))
    }

    /// `treeward-reap` as the user, from `/`, with `args`, to run.
    fn reaper(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward-reap"));
        cmd.arg("--config")
            .arg(&self.cfg)
            .args(args)
            .current_dir("/")
            .env("HOME", "/nonexistent")
            .env_remove("TREEWARD_CONFIG")
            .uid(self.user)
            .gid(self.user);
        cmd
    }

    /// Runs `treeward-reap` as the user, from `/`, with `args`.
    fn run_reaper(&self, args: &[&str]) -> std::process::Output {
        self.reaper(args).output().unwrap()
    }

    /// Runs `treeward-reap --json` as the user; exit status, the JSON
    /// document, stderr.
    fn reap(&self, args: &[&str]) -> (i32, Value, String) {
        let out = self.run_reaper(&[&["--json"], args].concat());
        common::json_report(&out)
    }

    /// [`Host::reap`] that must exit 0; the JSON document.
    fn reap_ok(&self, args: &[&str]) -> Value {
        let (code, doc, stderr) = self.reap(args);
        assert_eq!(code, 0, "{stderr}");
        doc
    }

    fn git(&self, args: &[&str]) -> String {
        git_as(self.user, &self.f.repo, args)
    }

    fn refs(&self, prefix: &str) -> Vec<String> {
        let out = self.git(&["for-each-ref", "--format=%(refname)", prefix]);
        out.lines().map(str::to_owned).collect()
    }

    fn admin_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.f.repo.join(".git/worktrees")) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// `treeward lease <wt> -- sleep 1000` as the user, in a process group
    /// of its own (killed whole when dropped), once its holder is recorded.
    fn lease(&self, wt: &Path) -> ProcessGroup {
        let lease = ProcessGroup::spawn(
            Command::new(env!("CARGO_BIN_EXE_treeward"))
                .arg("lease")
                .arg("--config")
                .arg(&self.cfg)
                .arg(wt)
                .args(["--", "sleep", "1000"])
                .current_dir("/")
                .env("HOME", "/nonexistent")
                .env_remove("TREEWARD_CONFIG")
                .uid(self.user)
                .gid(self.user),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.lease_holder(wt) != Some(json!(lease.pid())) {
            assert!(Instant::now() < deadline, "the lease was never recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
        lease
    }

    /// The lease holder's pid on the record of `wt` (`Some(null)`: none).
    fn lease_holder(&self, wt: &Path) -> Option<Value> {
        let doc: Value = serde_json::from_slice(&std::fs::read(&self.ledger).ok()?).ok()?;
        let records = doc["records"].as_array()?;
        let r = records
            .iter()
            .rev()
            .find(|r| r["path"] == wt.to_str().unwrap())?;
        Some(r["lease"]["pid"].clone())
    }

    /// The newest record of `wt`.
    fn record_of(&self, wt: &Path) -> Value {
        self.records()
            .into_iter()
            .rev()
            .find(|r| r["path"] == wt.to_str().unwrap())
            .unwrap_or_else(|| panic!("no record of {}", wt.display()))
    }

    /// Spawns `cmd` as the user, in the background.
    fn spawn_as_user(&self, cmd: &mut Command) -> ChildGuard {
        ChildGuard(cmd.uid(self.user).gid(self.user).spawn().unwrap())
    }
}

use common::report_entry as entry;

fn not_reported(doc: &Value, path: &Path) -> bool {
    !doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == path.to_str().unwrap())
}

fn wait_for_flock(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while treeward::testing::in_use::flock_held(dir).ok() != Some(true) {
        assert!(Instant::now() < deadline, "the flock was never taken");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_no_flock(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while treeward::testing::in_use::flock_held(dir).ok() != Some(false) {
        assert!(Instant::now() < deadline, "the flock was never let go");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text of `key` in a report line, "" when null.
fn text<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or("")
}

#[test]
fn released_and_old_orphans_go_young_orphans_and_active_ones_stay() {
    let Some(h) = host("1h", "preserve") else {
        return;
    };
    let released = h.f.worktree("released", "t-released");
    let orphan = h.f.worktree("orphan", "t-orphan");
    let young = h.f.worktree("young", "t-young");
    let just_released = h.f.worktree("just-released", "t-just");
    let active = h.f.worktree("active", "t-active");
    h.hand_over();
    set_mtime(&young, "now");
    h.write_ledger(vec![
        h.rec("rel", &released, "released", 7200, json!({})),
        h.rec("just", &just_released, "released", 600, json!({})),
        h.rec("act", &active, "active", 7200, json!({})),
    ]);

    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &released)["action"], "removed", "{doc:#}");
    assert_eq!(entry(&doc, &orphan)["action"], "removed");
    assert_eq!(entry(&doc, &young)["action"], "skipped_young");
    assert_eq!(
        entry(&doc, &just_released)["action"],
        "removed",
        "a release is taken at once: the grace is for orphans"
    );
    assert!(
        not_reported(&doc, &active),
        "an active worktree is not a candidate"
    );
    assert!(!released.exists() && !orphan.exists() && !just_released.exists());
    assert!(young.join("README").is_file());
    assert!(active.join("README").is_file());
    for key in treeward::testing::pass::report::CONTRACT_FIELDS {
        assert!(doc.get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        (doc["swept_count"].clone(), doc["young_count"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(doc["active_count"], 1);
    // git forgot them (and their integrated branches); the ledger followed.
    assert_eq!(h.admin_entries(), vec!["active", "young"]);
    assert!(h.refs("refs/heads/t-released").is_empty());
    assert_eq!(h.record("rel")["state"], "removed");
    assert_eq!(h.record("just")["state"], "removed");
    assert_eq!(h.record("act")["state"], "active");
}

#[test]
fn entries_in_use_are_never_taken() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let cwd = h.f.worktree("cwd", "t-cwd");
    let flocked = h.f.worktree("flocked", "t-flocked");
    let owned = h.f.worktree("owned", "t-owned");
    let pinned = h.f.worktree("pinned", "t-pinned");
    let free = h.f.worktree("free", "t-free");
    common::lock_worktree(&h.f.repo, &pinned, "agent 7");
    h.hand_over();
    let _sleeper = h.spawn_as_user(Command::new("sleep").arg("60").current_dir(&cwd));
    let _holder = ChildGuard(
        Command::new("sh")
            .args(["-c", "exec 9<\"$1\"; flock -x 9; exec sleep 60", "sh"])
            .arg(&flocked)
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    let owner = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    wait_for_flock(&flocked);
    h.write_ledger(vec![h.rec(
        "owned",
        &owned,
        "released",
        7200,
        json!({"owner_pid": owner.0.id()}),
    )]);

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &cwd);
    assert_eq!(e["action"], "skipped_in_use", "{doc:#}");
    assert!(
        e["error"].as_str().unwrap().contains("working directory"),
        "{e}"
    );
    assert_eq!(entry(&doc, &flocked)["action"], "skipped_in_use");
    let e = entry(&doc, &owned);
    assert_eq!(e["action"], "skipped_in_use");
    assert!(e["error"].as_str().unwrap().contains("owner pid"), "{e}");
    assert_eq!(entry(&doc, &pinned)["action"], "skipped_locked");
    assert_eq!(entry(&doc, &free)["action"], "removed");
    for p in [&cwd, &flocked, &owned, &pinned] {
        assert!(p.join("README").is_file(), "{}", p.display());
    }
    assert!(!free.exists());
    assert_eq!(
        (doc["in_use_count"].clone(), doc["locked_count"].clone()),
        (json!(3), json!(1))
    );
    // The owner's lock is untouched, and nothing else was left locked.
    let list = h.git(&["worktree", "list", "--porcelain"]);
    let locks: Vec<&str> = list.lines().filter(|l| l.starts_with("locked")).collect();
    assert_eq!(locks, vec!["locked agent 7"], "{list}");
    assert_eq!(h.record("owned")["state"], "released");
}

#[test]
fn root_owned_residue_is_counted_and_left_for_the_sweep() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let mine = h.f.worktree("mine", "t-mine");
    h.hand_over();
    let rooty = h.root.join("rooty");
    write(&rooty.join("deep/file"), "r\n");
    set_mtime(&rooty, "2 hours ago");
    let doc = h.reap_ok(&[]);
    assert_eq!(
        entry(&doc, &rooty)["action"],
        "root_owned_skipped",
        "{doc:#}"
    );
    assert_eq!(doc["root_owned_skipped"], 1);
    assert!(rooty.join("deep/file").is_file());
    assert_eq!(entry(&doc, &mine)["action"], "removed");
}

#[test]
fn a_record_whose_repository_is_gone_is_reported_and_the_pass_goes_on() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let other = Fixture::new();
    let stranded = h.root.join("stranded");
    add_worktree(&other.repo, &stranded, Some("s"));
    write(&stranded.join("wip.txt"), "only copy\n");
    let fine = h.f.worktree("fine", "t-fine");
    h.hand_over();
    let mut gone = h.rec("gone", &stranded, "released", 7200, json!({}));
    gone["repository"] = json!(other.repo.join(".git"));
    h.write_ledger(vec![
        gone,
        h.rec("fine", &fine, "released", 7200, json!({})),
    ]);
    std::fs::remove_dir_all(other.repo.join(".git")).unwrap();

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &stranded);
    assert_eq!(e["action"], "refused", "{doc:#}");
    assert!(e["error"].as_str().unwrap().contains("repository"), "{e}");
    assert_eq!(
        std::fs::read_to_string(stranded.join("wip.txt")).unwrap(),
        "only copy\n"
    );
    assert_eq!(entry(&doc, &fine)["action"], "removed");
    assert_eq!(h.record("gone")["state"], "released");
    assert_eq!(h.record("fine")["state"], "removed");
}

#[test]
fn records_whose_worktree_is_gone_become_removed_and_git_forgets_them() {
    let Some(h) = host("1h", "preserve") else {
        return;
    };
    let vanished = h.f.worktree("vanished", "t-vanished");
    let crashed = h.f.worktree("crashed", "t-crashed");
    let kept = h.f.worktree("kept", "t-kept");
    h.hand_over();
    h.write_ledger(vec![
        h.rec("v", &vanished, "released", 60, json!({})),
        h.rec("c", &crashed, "active", 60, json!({})),
        h.rec("k", &kept, "active", 60, json!({})),
    ]);
    std::fs::remove_dir_all(&vanished).unwrap();
    std::fs::remove_dir_all(&crashed).unwrap();
    assert_eq!(h.admin_entries(), vec!["crashed", "kept", "vanished"]);

    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &vanished)["action"], "removed", "{doc:#}");
    assert_eq!(entry(&doc, &crashed)["action"], "removed");
    assert_eq!(doc["reconciled_count"], 2);
    assert_eq!(h.admin_entries(), vec!["kept"]);
    assert_eq!(h.record("v")["state"], "removed");
    assert_eq!(h.record("c")["state"], "removed");
    assert_eq!(h.record("k")["state"], "active");
    // Converges: a second pass has nothing more to do.
    let again = h.reap_ok(&[]);
    assert_eq!(again["entries"], json!([]), "{again:#}");
}

#[test]
fn dirty_released_work_is_preserved_under_preserve() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("notes.md"), "only copy\n");
    write(&dirty.join("README"), "edited\n");
    h.hand_over();
    h.write_ledger(vec![h.rec("d", &dirty, "released", 7200, json!({}))]);

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &dirty);
    assert_eq!(e["action"], "preserved", "{doc:#}");
    assert!(!dirty.exists());
    let refs = h.refs("refs/treeward/preserved/");
    assert_eq!(e["preserved_refs"], json!(refs));
    let work = refs
        .iter()
        .find(|r| r.ends_with("/work"))
        .expect("a work ref");
    assert_eq!(h.git(&["show", &format!("{work}^3:notes.md")]), "only copy");
    let rec = h.record("d");
    assert_eq!(rec["state"], "preserved");
    assert_eq!(rec["preserved_refs"], json!(refs));
    assert_eq!(
        common::root_owned(&h.f.repo.join(".git")),
        Vec::<String>::new()
    );
}

#[test]
fn dirty_released_work_is_kept_in_place_under_keep() {
    let Some(h) = host("0s", "keep") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("notes.md"), "only copy\n");
    let clean = h.f.worktree("clean", "t-clean");
    h.hand_over();
    h.write_ledger(vec![
        h.rec("d", &dirty, "released", 7200, json!({})),
        h.rec("c", &clean, "released", 7200, json!({})),
    ]);
    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &dirty)["action"], "kept", "{doc:#}");
    assert_eq!(entry(&doc, &clean)["action"], "removed");
    assert_eq!(
        std::fs::read_to_string(dirty.join("notes.md")).unwrap(),
        "only copy\n"
    );
    assert!(h.refs("refs/treeward/preserved/").is_empty());
    assert_eq!(h.record("d")["state"], "kept");
    let list = h.git(&["worktree", "list", "--porcelain"]);
    assert!(
        !list.lines().any(|l| l.starts_with("locked")),
        "the reaper's lock was lifted: {list}"
    );
}

#[test]
fn a_failed_removal_backs_off_before_it_is_retried() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let recent = h.f.worktree("recent", "t-recent");
    let due = h.f.worktree("due", "t-due");
    h.hand_over();
    h.write_ledger(vec![
        h.rec("r", &recent, "retry_remove", 60, json!({"attempts": 3})),
        h.rec("d", &due, "retry_remove", 3600, json!({"attempts": 1})),
    ]);
    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &recent);
    assert_eq!(e["action"], "deferred", "{doc:#}");
    assert!(e["error"].as_str().unwrap().contains("20m"), "{e}");
    assert!(recent.join("README").is_file());
    assert_eq!(entry(&doc, &due)["action"], "removed");
    assert_eq!(h.record("r")["state"], "retry_remove");
    assert_eq!(h.record("r")["attempts"], 3);
    assert_eq!(h.record("d")["state"], "removed");
}

#[test]
fn one_pass_at_a_time() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let orphan = h.f.worktree("orphan", "t-orphan");
    h.hand_over();
    // Held by another process; the file is root's (a pass run by hand as
    // root), which must not stop the service user's passes later.
    let lock = PathBuf::from(format!("{}.reap.lock", h.ledger.display()));
    std::fs::write(&lock, "").unwrap();
    let mut holder = ChildGuard(
        Command::new("sh")
            .args(["-c", "exec 9<\"$1\"; flock -x 9; exec sleep 60", "sh"])
            .arg(&lock)
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n", "-s"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let (code, doc, stderr) = h.reap(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(5), "it did not wait");
    assert_eq!(doc["busy"], true, "{doc:#}");
    assert!(
        stderr.contains("another treeward-reap pass is running"),
        "{stderr}"
    );
    assert!(orphan.join("README").is_file());
    // Human output says it too.
    let out = h.run_reaper(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("another treeward-reap pass is running"));

    let _ = holder.0.kill();
    let _ = holder.0.wait();
    let doc = h.reap_ok(&[]);
    assert_eq!(doc["busy"], false);
    assert_eq!(entry(&doc, &orphan)["action"], "removed", "{doc:#}");
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    let clean = h.f.worktree("clean", "t-clean");
    let gone = h.f.worktree("gone", "t-gone");
    h.hand_over();
    h.write_ledger(vec![h.rec("g", &gone, "released", 60, json!({}))]);
    std::fs::remove_dir_all(&gone).unwrap();
    let before = common::snapshot(h.f.tmp.path());
    let doc = h.reap_ok(&["--dry-run"]);
    assert_eq!(common::snapshot(h.f.tmp.path()), before);
    assert_eq!(entry(&doc, &dirty)["planned"], "preserved", "{doc:#}");
    assert_eq!(entry(&doc, &clean)["planned"], "removed");
    assert_eq!(entry(&doc, &clean)["action"], "planned");
    assert_eq!(entry(&doc, &gone)["planned"], "removed");
}

#[test]
fn the_trash_a_budgeted_sweep_left_is_drained_by_its_owner() {
    if !common::is_root() {
        eprintln!("skipped: runs the sweep as root and the reaper as uid {NOBODY}");
        return;
    }
    let h = make_host(NOBODY);
    h.configure("1h", "preserve", "owner = \"nobody\"\n");
    let dirty = h.f.worktree("dirty", "t-dirty");
    write(&dirty.join("new.txt"), "n\n");
    let clean = h.f.worktree("clean", "t-clean");
    h.hand_over();
    chown_r(&h.root, NOBODY);
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    h.write_ledger(vec![h.rec("d", &dirty, "active", 60, json!({}))]);
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--budget", "0s", "--config"])
        .arg(&h.cfg)
        .output()
        .unwrap();
    let swept: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(swept["deferred_count"], 2, "{swept:#}");
    assert!(!dirty.exists() && !clean.exists());

    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &dirty)["action"], "preserved", "{doc:#}");
    assert_eq!(entry(&doc, &clean)["action"], "removed");
    let trash = h.root.join(".treeward-trash");
    assert!(
        std::fs::read_dir(&trash).unwrap().next().is_none(),
        "trash drained"
    );
    let sets = h.refs("refs/treeward/preserved/");
    assert_eq!(
        sets.iter().filter(|r| r.ends_with("/state")).count(),
        1,
        "{sets:?}"
    );
    assert_eq!(h.admin_entries(), Vec::<String>::new());
    assert_eq!(h.record("d")["state"], "preserved");
}

#[test]
fn root_owned_trash_is_left_to_the_sweep() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    // The agent's worktrees in a root-owned root: the sweep acts for 4242.
    h.configure("0s", "preserve", &format!("owner = \"{AGENT}\"\n"));
    h.f.worktree("quarantined", "t-q");
    h.hand_over();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--budget", "0s", "--config"])
        .arg(&h.cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc = h.reap_ok(&[]);
    assert_eq!(doc["entries"], json!([]), "{doc:#}");
    assert_eq!(h.admin_entries(), vec!["quarantined"]);
}

#[test]
fn bad_configuration_is_78_and_touches_nothing() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let orphan = h.f.worktree("orphan", "t-orphan");
    h.hand_over();
    h.configure("soon", "preserve", "");
    let out = h.run_reaper(&[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grace"));
    assert!(orphan.join("README").is_file());
}

#[test]
fn an_unusable_ledger_stops_the_pass_before_anything_is_touched() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let orphan = h.f.worktree("orphan", "t-orphan");
    h.hand_over();
    // A ledger the service user cannot read: an active record could hide in it.
    h.write_ledger(vec![h.rec("o", &orphan, "active", 60, json!({}))]);
    std::os::unix::fs::chown(&h.ledger, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&h.ledger, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = h.run_reaper(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ledger"));
    assert!(orphan.join("README").is_file());
}

#[test]
fn detached_and_unmerged_work_and_a_planted_symlink() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let detached = h.f.detached_worktree("detached");
    let lost =
        h.f.commit(&detached, "wip.txt", "w\n", "wip on a detached HEAD");
    let unmerged = h.f.worktree("unmerged", "t-unmerged");
    let tip = h.f.commit(&unmerged, "feature.txt", "f\n", "feature");
    let canary = h.f.tmp.path().join("canary");
    write(&canary.join("precious.txt"), "keep me\n");
    let planted = h.root.join("planted");
    std::os::unix::fs::symlink(&canary, &planted).unwrap();
    h.hand_over();
    std::os::unix::fs::lchown(&planted, Some(h.user), Some(h.user)).unwrap();
    let before = snapshot(&canary);
    h.write_ledger(vec![
        h.rec("d", &detached, "released", 7200, json!({})),
        h.rec("u", &unmerged, "released", 7200, json!({})),
    ]);

    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &detached)["action"], "preserved", "{doc:#}");
    assert_eq!(preserved_head(&h, "detached"), lost);
    assert_eq!(
        entry(&doc, &unmerged)["action"],
        "removed",
        "its commits live on in its branch"
    );
    assert_eq!(
        h.git(&["rev-parse", "refs/heads/t-unmerged"]),
        tip,
        "the unmerged branch is kept"
    );
    assert_eq!(entry(&doc, &planted)["action"], "removed");
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "the link is gone"
    );
    assert_eq!(snapshot(&canary), before, "its target is untouched");
}

#[test]
fn a_squatted_trash_is_reported_and_left_to_the_sweep_and_the_pass_goes_on() {
    if !common::is_root() {
        eprintln!("skipped: squats as uid 4343, reaps as uid {NOBODY}, sweeps as root");
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    // Two roots of the user's: the first sticky (mode 1777), where uid 4343
    // squats the trash with a FIFO; the second plain.
    let h = make_host(NOBODY);
    let second = h.f.tmp.path().join("wt2");
    std::fs::create_dir(&second).unwrap();
    h.configure(
        "0s",
        "preserve",
        &format!(
            "owner = \"nobody\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"0s\"\nowner = \"nobody\"\n",
            second.display()
        ),
    );
    let here = h.f.worktree("orphan-here", "t-here");
    let there = second.join("orphan-there");
    add_worktree(&h.f.repo, &there, Some("t-there"));
    h.hand_over();
    chown_r(&second, NOBODY);
    set_mtime(&there, "2 hours ago");
    chown_r(&h.root, NOBODY);
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    h.write_ledger(vec![]);
    let trash = h.root.join(".treeward-trash");
    let squat = Command::new("mkfifo")
        .arg(&trash)
        .uid(4343)
        .gid(4343)
        .status()
        .unwrap();
    assert!(squat.success());

    let out = common::output_within(&mut h.reaper(&["--json"]), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Reported: squatted, by whom, and who clears it.
    let line = entry(&doc, &trash);
    assert_eq!(line["action"], "refused", "{doc:#}");
    let why = line["error"].as_str().unwrap();
    assert!(
        why.contains("squatted")
            && why.contains("a FIFO of uid 4343")
            && why.contains("treeward-sweep"),
        "{why}"
    );
    // The pass went on: both roots' orphans reclaimed, nothing refused whole.
    assert_eq!(entry(&doc, &there)["action"], "removed", "{doc:#}");
    assert_eq!(entry(&doc, &here)["action"], "removed", "{doc:#}");
    assert_eq!(doc["refused_roots"], json!([]));
    assert!(!there.exists() && !here.exists());
    assert!(std::fs::symlink_metadata(&trash)
        .unwrap()
        .file_type()
        .is_fifo());

    // The sweep, as root, clears it: the trash is the root owner's again.
    let out = common::output_within(
        Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--json", "--config"])
            .arg(&h.cfg),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::symlink_metadata(&trash).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.mode() & 0o7777), (NOBODY, 0o711));
}

#[test]
fn a_killed_lease_holder_gives_its_worktree_up_at_the_next_pass() {
    let Some(h) = host("1h", "preserve") else {
        return;
    };
    let dirty = h.f.worktree("dirty", "t-dirty");
    let clean = h.f.worktree("clean", "t-clean");
    let never = h.f.worktree("never", "t-never");
    write(&dirty.join("notes.md"), "only copy\n");
    h.hand_over();
    for p in [&dirty, &clean, &never] {
        set_mtime(p, "now");
    }
    // A recorded worktree that never had a lease: active, left alone.
    h.write_ledger(vec![h.rec("never", &never, "active", 60, json!({}))]);
    // The leases create the records of the others (active, young).
    let mut leases = [h.lease(&dirty), h.lease(&clean)];
    let pids = [leases[0].pid(), leases[1].pid()];

    // The control: while their holders live, the same pass takes nothing.
    let doc = h.reap_ok(&[]);
    for (p, pid) in [(&dirty, pids[0]), (&clean, pids[1])] {
        let e = entry(&doc, p);
        assert_eq!(e["action"], "skipped_in_use", "{doc:#}");
        assert!(
            text(e, "error").contains(&format!("lease holder pid {pid} (treeward) is alive")),
            "{e}"
        );
        assert!(p.join("README").is_file());
    }
    assert!(not_reported(&doc, &never));

    // SIGKILL: each `treeward lease` and its command, as an OOM kill of
    // the agent's cgroup would. The kernel drops the flocks; the ledger
    // still names the holders.
    for lease in &mut leases {
        lease.kill_all();
    }
    for p in [&dirty, &clean] {
        wait_for_no_flock(p);
    }
    assert_eq!(h.lease_holder(&dirty), Some(json!(pids[0])));

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &dirty);
    assert_eq!(e["action"], "preserved", "{doc:#}");
    let e2 = entry(&doc, &clean);
    assert_eq!(e2["action"], "removed", "{doc:#}");
    for (e, pid) in [(e, pids[0]), (e2, pids[1])] {
        let why = text(e, "reason");
        assert!(
            why.contains(&format!("its lease holder (pid {pid}")) && why.contains("is gone"),
            "{e}"
        );
        assert!(why.contains("without waiting for the grace"), "{e}");
    }
    assert!(!dirty.exists() && !clean.exists());
    assert!(never.join("README").is_file());
    assert!(not_reported(&doc, &never));
    // The dirty work is in the repository, and the ledger followed.
    let refs = h.refs("refs/treeward/preserved/");
    assert!(!refs.is_empty());
    assert_eq!(e["preserved_refs"], json!(refs));
    let work = refs.iter().find(|r| r.ends_with("/work")).unwrap();
    assert_eq!(h.git(&["show", &format!("{work}^3:notes.md")]), "only copy");
    assert_eq!(h.record_of(&dirty)["state"], "preserved");
    assert_eq!(h.record_of(&clean)["state"], "removed");
    assert_eq!(h.record("never")["state"], "active");
}

#[test]
fn a_live_lease_is_in_use_and_one_ended_cleanly_leaves_the_worktree_active() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let wt = h.f.worktree("leased", "t-leased");
    h.hand_over();
    let mut lease = h.lease(&wt);
    let pid = lease.pid();

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &wt);
    assert_eq!(e["action"], "skipped_in_use", "{doc:#}");
    assert!(
        text(e, "error").contains(&format!("lease holder pid {pid} (treeward) is alive")),
        "{e}"
    );
    assert_eq!(doc["in_use_count"], 1);
    assert!(wt.join("README").is_file());
    assert_eq!(h.record_of(&wt)["state"], "active");

    // Stopped (its SIGTERM passed on to its command), the lease ends
    // cleanly: no holder, and an active record is left alone as before.
    let me = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(lease.0.wait().unwrap().code(), Some(128 + 15));
    assert_eq!(h.lease_holder(&wt), Some(Value::Null));
    let doc = h.reap_ok(&[]);
    assert!(not_reported(&doc, &wt), "{doc:#}");
    assert_eq!(doc["active_count"], 1);
    assert!(wt.join("README").is_file());
}

#[test]
fn a_lease_holder_is_a_pid_and_a_start_time_not_a_reused_pid() {
    let Some(h) = host("1h", "preserve") else {
        return;
    };
    let reused = h.f.worktree("reused", "t-reused");
    let matching = h.f.worktree("matching", "t-matching");
    h.hand_over();
    // An unrelated live process: the pid a dead holder's could have become.
    let other = ChildGuard(
        Command::new("sleep")
            .arg("1000")
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    let pid = other.0.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = treeward::testing::in_use::parse_stat(&stat)
        .unwrap()
        .start_time;
    h.write_ledger(vec![
        h.rec(
            "reused",
            &reused,
            "active",
            60,
            json!({"lease": {"pid": pid, "start_time": start + 1}}),
        ),
        h.rec(
            "matching",
            &matching,
            "active",
            60,
            json!({"lease": {"pid": pid, "start_time": start}}),
        ),
    ]);

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &matching);
    assert_eq!(e["action"], "skipped_in_use", "{doc:#}");
    assert!(
        text(e, "error").contains(&format!("lease holder pid {pid} (sleep) is alive")),
        "{e}"
    );
    let e = entry(&doc, &reused);
    assert_eq!(e["action"], "removed", "{doc:#}");
    assert!(
        text(e, "reason").contains(&format!("pid {pid}, that pid is another process now")),
        "{e}"
    );
    // The pid lived throughout: by pid alone, both were in use.
    assert!(treeward::testing::in_use::pid_alive(pid));
    assert!(!reused.exists() && matching.join("README").is_file());
    assert_eq!(h.record("reused")["state"], "removed");
    assert_eq!(h.record("matching")["state"], "active");
}

#[test]
fn a_lease_whose_holder_is_killed_stays_in_use_while_its_command_holds_the_flock() {
    let Some(h) = host("1h", "preserve") else {
        return;
    };
    let wt = h.f.worktree("agent", "t-agent");
    h.hand_over();
    let mut lease = h.lease(&wt);
    let pid = lease.pid();
    // Only `treeward lease` dies; `sleep` (its command) inherited the
    // lease's descriptor and lives on, holding the flock.
    let me = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGKILL).unwrap();
    lease.0.wait().unwrap();
    assert!(treeward::testing::in_use::flock_held(&wt).unwrap());

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &wt);
    assert_eq!(e["action"], "skipped_in_use", "{doc:#}");
    assert!(
        text(e, "error").contains(&format!("lease holder pid {pid} is gone, but its flock")),
        "{e}"
    );
    assert!(wt.join("README").is_file());

    // Its command gone too, the lease is abandoned: taken at once.
    lease.kill_all();
    wait_for_no_flock(&wt);
    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &wt);
    assert_eq!(e["action"], "removed", "{doc:#}");
    assert!(text(e, "reason").contains("lease holder"), "{e}");
    assert!(!wt.exists());
}

/// A FIFO the repository's owner planted as a loose ref blocks git itself
/// (git opens it to read a branch). The reaper serves its own uid in a
/// worker of its own ids, so the call is killed at its deadline: that
/// worktree fails with its work on disk, the other root's worktree is
/// taken, and the pass ends; the git it started dies with it (else it
/// would hold the worktree in use forever). The control: with the ref a
/// file again, the next pass preserves the worktree.
#[test]
fn a_fifo_ref_the_owner_planted_fails_only_its_worktree() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let stuck = h.f.worktree("stuck", "t-stuck");
    write(&stuck.join("notes.md"), "only copy\n");
    let free_f = Fixture::new_in(h.f.tmp.path());
    let free_root = free_f.tmp.path().join("wt");
    std::fs::create_dir(&free_root).unwrap();
    std::fs::set_permissions(&free_root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let free = free_root.join("free");
    common::add_worktree(&free_f.repo, &free, Some("t-free"));
    write(&free.join("notes.md"), "only copy\n");
    h.hand_over();
    for p in [&free_f.repo, &free_f.origin, &free] {
        chown_r(p, h.user);
    }
    std::fs::set_permissions(free_f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(
        &h.cfg,
        format!(
            "{cfg}\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"0s\"\n",
            free_root.display()
        ),
    )
    .unwrap();
    // The file git reads the branch from: its loose ref, or under reftable
    // (Git 3.0's default) the table list every ref lookup starts with.
    let ref_format = h.git(&["rev-parse", "--show-ref-format"]);
    let stuck_branch = match ref_format.as_str() {
        "reftable" => h.f.repo.join(".git/reftable/tables.list"),
        _ => h.f.repo.join(".git/refs/heads/t-stuck"),
    };
    let tip = std::fs::read(&stuck_branch).unwrap();
    common::plant_fifo(&stuck_branch);
    std::os::unix::fs::lchown(&stuck_branch, Some(h.user), Some(h.user)).unwrap();
    common::assert_blocks_a_reader(&stuck_branch);

    let started = std::time::Instant::now();
    let out = common::output_within(
        &mut h.reaper(&["--json"]),
        treeward::testing::as_owner::DEFAULT_TIMEOUT + Duration::from_secs(30),
    );
    let took = started.elapsed();
    let (code, doc, stderr) = common::json_report(&out);
    assert_eq!(code, 0, "{stderr}");
    let e = entry(&doc, &stuck);
    assert_eq!(e["action"], "failed", "{doc:#}");
    assert!(text(e, "error").contains("was killed"), "{e}");
    assert_eq!(
        std::fs::read_to_string(stuck.join("notes.md")).unwrap(),
        "only copy\n"
    );
    assert_eq!(entry(&doc, &free)["action"], "preserved", "{doc:#}");
    eprintln!("the reaper with a FIFO ref ended in {took:?}");

    // Control: the ref a file again, the worktree is taken.
    std::fs::remove_file(&stuck_branch).unwrap();
    std::fs::write(&stuck_branch, tip).unwrap();
    std::os::unix::fs::lchown(&stuck_branch, Some(h.user), Some(h.user)).unwrap();
    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &stuck)["action"], "preserved", "{doc:#}");
}

/// Orphans whose work no repository can record — a plain directory with a
/// file, a broken worktree whose repository is gone — are kept in place
/// under `preserve`, with why, their files untouched (SPEC, "preserve");
/// a plain directory holding only empty directories goes. Under `discard`
/// the kept ones go too: the control that shows the first pass could have
/// removed them.
#[test]
fn unrecordable_orphans_are_kept_under_preserve_and_go_under_discard() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let plain = h.root.join("plain");
    write(&plain.join("notes.md"), "only copy\n");
    let empty = h.root.join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let gone = Fixture::new_in(h.f.tmp.path());
    let broken = h.root.join("broken");
    common::add_worktree(&gone.repo, &broken, Some("t-broken"));
    write(&broken.join("wip.txt"), "w\n");
    std::fs::remove_dir_all(gone.repo.join(".git")).unwrap();
    h.hand_over();

    let doc = h.reap_ok(&[]);
    for kept in [&plain, &broken] {
        let e = entry(&doc, kept);
        assert_eq!(e["action"], "kept", "{doc:#}");
        assert!(text(e, "error").contains("no repository can record"), "{e}");
    }
    assert_eq!(entry(&doc, &empty)["action"], "removed", "{doc:#}");
    assert_eq!(
        std::fs::read_to_string(plain.join("notes.md")).unwrap(),
        "only copy\n"
    );
    assert_eq!(
        std::fs::read_to_string(broken.join("wip.txt")).unwrap(),
        "w\n"
    );

    h.configure("0s", "discard", "");
    let doc = h.reap_ok(&[]);
    for gone in [&plain, &broken] {
        assert_eq!(entry(&doc, gone)["action"], "removed", "{doc:#}");
        assert!(!gone.exists());
    }
}

/// A broken worktree whose repository still exists (its admin dir was
/// pruned) keeps its work: the reaper preserves its files into that
/// repository, as its owner, then removes it. The control, a broken
/// worktree whose repository is gone, is kept (see
/// `unrecordable_orphans_are_kept_under_preserve_and_go_under_discard`).
#[test]
fn a_broken_worktree_whose_repository_exists_is_preserved_then_removed() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let pruned = h.f.worktree("pruned", "t-pruned");
    write(&pruned.join("wip.txt"), "only copy\n");
    std::fs::remove_dir_all(h.f.repo.join(".git/worktrees/pruned")).unwrap();
    h.hand_over();

    let dry = h.reap_ok(&["--dry-run"]);
    assert_eq!(entry(&dry, &pruned)["planned"], "preserved", "{dry:#}");
    assert!(pruned.exists());

    let doc = h.reap_ok(&[]);
    let e = entry(&doc, &pruned);
    assert_eq!(e["action"], "preserved", "{doc:#}");
    assert!(!pruned.exists());
    let state = e["preserved_refs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|r| r.ends_with("/state"))
        .unwrap()
        .to_owned();
    assert_eq!(
        h.git(&["cat-file", "blob", &format!("{state}:files/wip.txt")]),
        "only copy"
    );
    assert!(h.refs("refs/treeward/tmp/").is_empty());
}

/// Two worktrees detached at the one commit no ref reaches, reclaimed in
/// one run: the first goes (the second's HEAD keeps the commit); the
/// second is assessed without the first, forgotten by then, and its
/// commit is preserved, not lost with both (as it would be if the second
/// were assessed before the first was forgotten).
#[test]
fn a_commit_two_detached_worktrees_share_outlives_their_run() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let first = h.f.detached_worktree("a-first");
    let only = h.f.commit(&first, "wip.txt", "w\n", "only here");
    let second = detached_at(&h, "b-second", &only);
    h.hand_over();
    h.write_ledger(vec![
        h.rec("a", &first, "released", 7200, json!({})),
        h.rec("b", &second, "released", 7200, json!({})),
    ]);

    let doc = h.reap_ok(&[]);
    assert_eq!(
        entry(&doc, &first)["action"],
        "removed",
        "the second's HEAD kept its commit: {doc:#}"
    );
    assert_eq!(entry(&doc, &second)["action"], "preserved", "{doc:#}");
    assert_eq!(preserved_head(&h, "b-second"), only);
    assert!(!first.exists() && !second.exists());
}

/// A run of reclaims lists the repository's shared refs once, and again
/// after a reclaim changed them: the squash-integrated branch of
/// `a-squashed`, deleted with its worktree, no longer keeps the commit that
/// `b-detached` (reclaimed next, in the same run) is detached at. That
/// commit is preserved, not taken as kept by a branch that is gone.
#[test]
fn a_branch_the_pass_deletes_keeps_nothing_for_the_rest_of_its_run() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let squashed = h.f.worktree("a-squashed", "t-squashed");
    let tip = h.f.commit(&squashed, "feature.txt", "f\n", "feature");
    common::git(&h.f.repo, &["merge", "-q", "--squash", "t-squashed"]);
    common::git(&h.f.repo, &["commit", "-q", "-m", "squash"]);
    let detached = detached_at(&h, "b-detached", &tip);
    h.hand_over();
    h.write_ledger(vec![
        h.rec("a", &squashed, "released", 7200, json!({})),
        h.rec("b", &detached, "released", 7200, json!({})),
    ]);

    let doc = h.reap_ok(&[]);
    assert_eq!(entry(&doc, &squashed)["action"], "removed", "{doc:#}");
    assert!(
        h.refs("refs/heads/t-squashed").is_empty(),
        "the integrated branch went with its worktree"
    );
    assert_eq!(entry(&doc, &detached)["action"], "preserved", "{doc:#}");
    assert_eq!(preserved_head(&h, "b-detached"), tip);
}

/// Forty worktrees in one pass: three chunks of reclaims (16, 16 and 8),
/// each chunk locked while the one before is reclaimed. Each gets the
/// verdict it gets alone: the clean ones removed; a modified file, an
/// untracked file and both preserved, one in each chunk; of two detached
/// worktrees in different chunks at the one commit no ref reaches, the
/// first removed and the second preserved with that commit; one a person
/// locked left as it was. No lock of the reaper's is left behind.
#[test]
fn forty_worktrees_in_three_chunks_each_get_their_own_verdict() {
    let Some(h) = host("0s", "preserve") else {
        return;
    };
    let (shared_first, shared_second, modified, untracked, both, pinned) = (3, 19, 5, 20, 35, 36);
    let mut only = String::new();
    let mut paths = Vec::new();
    for i in 0..40 {
        let name = format!("n{i:02}");
        let wt = if i == shared_second {
            detached_at(&h, &name, &only)
        } else {
            h.f.detached_worktree(&name)
        };
        if i == shared_first {
            only = h.f.commit(&wt, "wip.txt", "w\n", "only here");
        }
        if i == modified || i == both {
            write(&wt.join("README"), "edited, never committed\n");
        }
        if i == untracked || i == both {
            write(&wt.join("notes.md"), "only copy\n");
        }
        if i == pinned {
            common::lock_worktree(&h.f.repo, &wt, "agent 7");
        }
        paths.push(wt);
    }
    h.hand_over();
    h.write_ledger(vec![]);

    let doc = h.reap_ok(&[]);
    for (i, wt) in paths.iter().enumerate() {
        let e = entry(&doc, wt);
        let expected = match i {
            i if i == pinned => "skipped_locked",
            i if [shared_second, modified, untracked, both].contains(&i) => "preserved",
            _ => "removed",
        };
        assert_eq!(e["action"], expected, "{}: {e}", wt.display());
        assert_eq!(wt.exists(), i == pinned, "{}", wt.display());
    }
    assert_eq!(preserved_head(&h, "n19"), only);
    for name in ["n05", "n20", "n35"] {
        let refs = h.refs(&format!("refs/treeward/preserved/{name}/"));
        assert!(!refs.is_empty(), "{name}: its work is preserved");
    }
    let locked = std::fs::read_to_string(h.f.repo.join(".git/worktrees/n36/locked")).unwrap();
    assert_eq!(locked.trim(), "agent 7");
    let listed = h.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("\nworktree ").count(), 1, "{listed}");
}

/// `git worktree add --detach <root>/<name> <commit>`.
fn detached_at(h: &Host, name: &str, commit: &str) -> PathBuf {
    let path = h.root.join(name);
    common::git(
        &h.f.repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            path.to_str().unwrap(),
            commit,
        ],
    );
    path
}

/// The commit the preserved set of the worktree `name` keeps its HEAD at.
fn preserved_head(h: &Host, name: &str) -> String {
    let head = h
        .refs(&format!("refs/treeward/preserved/{name}/"))
        .into_iter()
        .find(|r| r.ends_with("/head"))
        .expect("the detached commit is kept under a head ref");
    h.git(&["rev-parse", &head])
}
