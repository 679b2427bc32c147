//! `treeward-check` as a user runs it: exit statuses, the JSON contract, the
//! table, strict read-only behaviour (also as root on another user's
//! repository), in-use detection with real processes, and bad configuration.

use crate::common;

use common::{config_file, git, git_output, is_root, snapshot, write, ChildGuard, Fixture};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn check(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treeward-check"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TREEWARD_CONFIG")
        .output()
        .unwrap()
}

fn check_json(config: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = check(config, &all);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), doc)
}

/// A fixture plus a config whose root holds its worktrees.
fn setup() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    std::fs::create_dir_all(f.tmp.path().join("wt")).unwrap();
    let cfg = config_file(f.tmp.path(), &f.tmp.path().join("wt"), "");
    (f, cfg)
}

#[test]
fn exit_status_follows_the_verdict() {
    let (f, cfg) = setup();
    let clean = f.worktree("clean", "b-clean");
    let dirty = f.worktree("dirty", "b-dirty");
    write(&dirty.join("wip.txt"), "work\n");

    assert_eq!(
        check(&cfg, &[clean.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(
        check(&cfg, &[dirty.to_str().unwrap()]).status.code(),
        Some(1)
    );
    assert_eq!(
        check(&cfg, &[clean.to_str().unwrap(), dirty.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    let missing = check(&cfg, &[f.tmp.path().join("wt/nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn default_path_is_the_current_directory() {
    let (f, cfg) = setup();
    let dirty = f.worktree("cwd", "b-cwd");
    write(&dirty.join("wip.txt"), "work\n");
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-check"))
        .args(["--json", "--config", cfg.to_str().unwrap()])
        .current_dir(&dirty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["worktrees"][0]["path"], dirty.to_str().unwrap());
    assert_eq!(
        doc["worktrees"][0]["in_use"], false,
        "the checker does not count itself"
    );
}

#[test]
fn json_document_carries_the_contract_fields() {
    let (f, cfg) = setup();
    let wt = f.worktree("review-1", "task-1");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    write(&wt.join("README"), "changed\n");
    let detached = f.detached_worktree("review-2");

    let (code, doc) = check_json(&cfg, &[wt.to_str().unwrap(), detached.to_str().unwrap()]);
    assert_eq!(code, 1);
    let w = &doc["worktrees"][0];
    for key in [
        "path",
        "repository",
        "branch",
        "head",
        "at_risk",
        "reasons",
        "integrated",
        "locked",
        "in_use",
        "error",
    ] {
        assert!(w.get(key).is_some(), "field {key} missing in {w}");
    }
    assert_eq!(w["path"], wt.to_str().unwrap());
    assert_eq!(w["repository"], f.repo.join(".git").to_str().unwrap());
    assert_eq!(w["branch"], "task-1");
    assert_eq!(w["head"], git(&wt, &["rev-parse", "HEAD"]));
    assert_eq!(w["at_risk"], true);
    assert_eq!(
        w["reasons"],
        serde_json::json!(["modified", "unpushed", "unmerged"])
    );
    assert_eq!(w["integrated"], false);
    assert_eq!(w["locked"], false);
    assert_eq!(w["in_use"], false);
    assert_eq!(w["error"], Value::Null);

    let d = &doc["worktrees"][1];
    assert_eq!(d["branch"], Value::Null, "detached: branch is null");
    assert_eq!(d["integrated"], Value::Null);
    assert_eq!(d["at_risk"], false);
}

#[test]
fn human_table_spells_out_reasons() {
    let (f, cfg) = setup();
    let wt = f.worktree("human", "b-human");
    write(&wt.join("a.txt"), "a\n");
    write(&wt.join("b.txt"), "b\n");
    let out = check(&cfg, &[wt.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("AT RISK"), "{text}");
    assert!(text.contains("2 untracked file(s)"), "{text}");
    assert!(text.contains("1 of 1 at risk"), "{text}");
    // What would be lost is apart from what is only worth knowing; no
    // colour when stdout is not a terminal.
    let lose = text.find("would lose:").expect("a would-lose list");
    assert!(text.find("2 untracked file(s)").unwrap() > lose, "{text}");
    assert!(!text.contains('\x1b'), "{text}");
    let busy = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&wt)
        .spawn()
        .unwrap();
    let _busy = common::ChildGuard(busy);
    let out = check(&cfg, &[wt.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("note: in use: pid") && text.contains("has its working directory inside"),
        "{text}"
    );
}

#[test]
fn all_covers_root_entries_and_ledger_records() {
    let (f, cfg) = setup();
    f.worktree("one", "b-one");
    let two = f.worktree("two", "b-two");
    write(&two.join("x"), "x\n");
    std::fs::create_dir(f.tmp.path().join("wt/plain")).unwrap();
    let (code, doc) = check_json(&cfg, &["--all"]);
    assert_eq!(code, 1);
    let paths: Vec<&str> = doc["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    let root = f.tmp.path().join("wt");
    let want: Vec<String> = ["one", "plain", "two"]
        .iter()
        .map(|n| root.join(n).display().to_string())
        .collect();
    assert_eq!(paths, want);
}

/// Refs, index, files and the mtimes of index and ledger are untouched.
fn assert_read_only_run(f: &Fixture, cfg: &Path, wt: &Path) -> Value {
    assert!(
        f.tmp.path().join("ledger.json").is_file(),
        "a ledger to watch"
    );
    let before = snapshot(f.tmp.path());
    let (code, doc) = check_json(cfg, &[wt.to_str().unwrap(), "--all"]);
    assert_eq!(code, 1, "{doc}");
    let after = snapshot(f.tmp.path());
    for (path, state) in &before {
        assert_eq!(after.get(path), Some(state), "{} changed", path.display());
    }
    let added: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(added.is_empty(), "the check created {added:?}");
    doc
}

/// A worktree with every kind of state, including a racily-clean index
/// (files written in the same second as the index), which tempts a status
/// implementation to refresh and rewrite the index.
fn busy_worktree(f: &Fixture) -> std::path::PathBuf {
    std::fs::write(
        f.tmp.path().join("ledger.json"),
        br#"{"schema":1,"records":[]}"#,
    )
    .unwrap();
    let wt = f.worktree("busy", "b-busy");
    f.commit(&wt, "feature.txt", "f\n", "feature");
    write(&wt.join("README"), "changed\n");
    write(&wt.join("new.txt"), "new\n");
    git(&wt, &["add", "new.txt"]);
    write(&wt.join("untracked.txt"), "u\n");
    wt
}

#[test]
fn check_is_strictly_read_only() {
    let (f, cfg) = setup();
    let wt = busy_worktree(&f);
    let doc = assert_read_only_run(&f, &cfg, &wt);
    assert_eq!(
        doc["worktrees"][0]["reasons"],
        serde_json::json!(["staged", "modified", "untracked", "unpushed", "unmerged"])
    );
}

#[test]
fn as_root_on_another_users_repository_reads_without_lying() {
    if !is_root() {
        eprintln!("skipped: needs root to own a repository as uid 4242 and check it as root");
        return;
    }
    let (f, cfg) = setup();
    let wt = busy_worktree(&f);
    let chown = Command::new("chown")
        .args(["-R", "4242:4242"])
        .arg(f.tmp.path())
        .status()
        .unwrap();
    assert!(chown.success());
    // As root, treeward trusts only a configuration only root can change.
    std::os::unix::fs::chown(&cfg, Some(0), Some(0)).unwrap();
    // git itself refuses this repository as root: the scenario is real.
    let refused = git_output(&wt, &["status"]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("dubious ownership")
    );

    let doc = assert_read_only_run(&f, &cfg, &wt);
    let w = &doc["worktrees"][0];
    assert_eq!(w["repository_owner"], 4242);
    assert_eq!(w["error"], Value::Null, "{w}");
    assert_eq!(
        w["reasons"],
        serde_json::json!(["staged", "modified", "untracked", "unpushed", "unmerged"])
    );
    assert_eq!(
        common::root_owned(&f.repo),
        Vec::<String>::new(),
        "root-owned files appeared in the repository"
    );
}

fn in_use_of(cfg: &Path, wt: &Path) -> Value {
    let (_, doc) = check_json(cfg, &[wt.to_str().unwrap()]);
    doc["worktrees"][0].clone()
}

#[test]
fn a_process_with_its_cwd_inside_is_in_use() {
    let (f, cfg) = setup();
    let wt = f.worktree("busy-cwd", "b-busy-cwd");
    let sibling = f.worktree("busy-cwd-2", "b-busy-cwd-2");
    std::fs::create_dir(wt.join("sub")).unwrap();
    let sleeper = ChildGuard(
        Command::new("sleep")
            .arg("30")
            .current_dir(wt.join("sub"))
            .spawn()
            .unwrap(),
    );
    let w = in_use_of(&cfg, &wt);
    assert_eq!(w["in_use"], true, "{w}");
    assert_eq!(w["in_use_by"][0]["pid"], sleeper.0.id());
    assert_eq!(w["in_use_by"][0]["how"], "cwd");
    assert_eq!(
        in_use_of(&cfg, &sibling)["in_use"],
        false,
        "a name sharing a prefix is not inside"
    );
    drop(sleeper);
    assert_eq!(in_use_of(&cfg, &wt)["in_use"], false);
}

#[test]
fn a_flock_on_the_directory_is_in_use() {
    let (f, cfg) = setup();
    let wt = f.worktree("locked-dir", "b-locked-dir");
    // The shell takes the lock on fd 9 and becomes `sleep`, so killing it
    // releases the lock (flock(1) with a command would leave a locked child).
    let holder = ChildGuard(
        Command::new("sh")
            .args(["-c", "exec 9<\"$1\"; flock -x 9; exec sleep 30", "sh"])
            .arg(&wt)
            .current_dir("/")
            .spawn()
            .unwrap(),
    );
    // Wait until the lock is taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while treeward::testing::in_use::flock_held(&wt).ok() != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "flock(1) never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let w = in_use_of(&cfg, &wt);
    assert_eq!(
        (w["in_use"].clone(), w["flock_held"].clone()),
        (Value::Bool(true), Value::Bool(true)),
        "{w}"
    );
    drop(holder);
    assert_eq!(in_use_of(&cfg, &wt)["in_use"], false);
}

/// Runs the checker on a bad config file and returns (status, stderr).
fn with_config_text(text: &str) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = check(&cfg, &[tmp.path().to_str().unwrap()]);
    assert!(
        out.stdout.is_empty(),
        "nothing is checked with a bad config"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_78_with_file_line_and_key() {
    let root = "[[root]]\npath = \"/srv/agents/wt\"\npatterns = [\"*\"]\n";
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "unknown key",
            format!("{root}colour = \"red\"\n"),
            "colour",
            ":4",
        ),
        (
            "missing key",
            "[[root]]\npatterns = [\"*\"]\n".to_owned(),
            "path",
            ":1",
        ),
        (
            "wrong type",
            format!("{root}sweep = \"yes\"\n"),
            "sweep",
            ":4",
        ),
        (
            "bad duration",
            format!("{root}grace = \"1 fortnight\"\n"),
            "grace",
            ":4",
        ),
        (
            "bad glob",
            "[[root]]\npath = \"/srv/agents/wt\"\npatterns = [\"review-[\"]\n".to_owned(),
            "patterns",
            ":3",
        ),
        (
            "relative root",
            "[[root]]\npath = \"agents/wt\"\npatterns = [\"*\"]\n".to_owned(),
            "path",
            ":2",
        ),
        (
            "overlapping",
            format!("{root}\n[[root]]\npath = \"/srv/agents/wt/inner\"\npatterns = [\"*\"]\n"),
            "path",
            ":6",
        ),
        (
            "slash",
            "[[root]]\npath = \"/\"\npatterns = [\"*\"]\n".to_owned(),
            "path",
            ":2",
        ),
        (
            "system dir",
            "[[root]]\npath = \"/usr\"\npatterns = [\"*\"]\n".to_owned(),
            "path",
            ":2",
        ),
        (
            "home dir",
            "[[root]]\npath = \"/root\"\npatterns = [\"*\"]\n".to_owned(),
            "path",
            ":2",
        ),
        ("syntax", "ledger = \n".to_owned(), "bad.toml", ":1"),
    ];
    for (what, text, key, line) in cases {
        let (code, err) = with_config_text(text);
        assert_eq!(code, Some(78), "{what}: {err}");
        assert!(err.contains("bad.toml"), "{what}: names the file: {err}");
        assert!(err.contains(key), "{what}: names {key}: {err}");
        assert!(err.contains(line), "{what}: names line {line}: {err}");
    }
}

#[test]
fn a_named_config_file_that_does_not_exist_is_78() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.toml");
    let out = check(&missing, &[tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));

    let out = Command::new(env!("CARGO_BIN_EXE_treeward-check"))
        .arg(tmp.path())
        .env("TREEWARD_CONFIG", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

// ------------------------------------------- as root, on another user's worktree

const OWNER: u32 = 4242;

/// `setup()` with its repository and worktrees handed to uid 4242 (the
/// config stays root's: as root, treeward trusts no other), readable by
/// everyone.
fn owned_setup(worktrees: &[&str]) -> (Fixture, std::path::PathBuf, Vec<std::path::PathBuf>) {
    let (f, cfg) = setup();
    let paths = worktrees
        .iter()
        .map(|n| f.worktree(n, &format!("b-{n}")))
        .collect();
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [&f.repo, &f.origin, &f.tmp.path().join("wt")] {
        common::chown_r(p, OWNER);
    }
    (f, cfg, paths)
}

/// `treeward-check --json args` run by `uid` (this process when `None`),
/// with `env` added; killed and failed after 30 s.
fn check_as(
    uid: Option<u32>,
    cfg: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &Path)],
) -> (i32, Value) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward-check"));
    cmd.arg("--json")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("TREEWARD_CONFIG")
        .current_dir("/");
    if let Some(uid) = uid {
        // As that user would: with a home of its own (none) unless given.
        cmd.uid(uid).gid(uid).env("HOME", "/nonexistent");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = common::output_within(&mut cmd, Duration::from_secs(30));
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn roots_own_excludes_file_never_hides_another_users_untracked_work() {
    if !common::prerequisite(is_root(), "checking uid 4242's worktree as root needs root") {
        return;
    }
    let (f, cfg, paths) = owned_setup(&["notes"]);
    let wt = &paths[0];
    write(&wt.join("notes.md"), "the only copy\n");
    common::chown_r(wt, OWNER);
    // Root's git configuration: every way git and libgit2 find one says
    // `*.md` is ignored.
    let home = common::strict_tempdir();
    let ignore = home.path().join("ignore");
    write(&ignore, "*.md\n");
    let config = format!("[core]\n\texcludesFile = {}\n", ignore.display());
    write(&home.path().join(".gitconfig"), &config);
    write(&home.path().join("xdg/git/config"), &config);
    write(&home.path().join("xdg/git/ignore"), "*.md\n");
    let xdg = home.path().join("xdg");
    let gitconfig = home.path().join(".gitconfig");
    let count = Path::new("1");
    let key = Path::new("core.excludesFile");
    let roots_config: Vec<(&str, &Path)> = vec![
        ("HOME", home.path()),
        ("XDG_CONFIG_HOME", &xdg),
        ("GIT_CONFIG_GLOBAL", &gitconfig),
        ("GIT_CONFIG_COUNT", count),
        ("GIT_CONFIG_KEY_0", key),
        ("GIT_CONFIG_VALUE_0", &ignore),
    ];

    // Control: with root's configuration in effect, git hides the file.
    let status = |with_roots_config: bool| {
        let mut cmd = Command::new("git");
        cmd.args(["--no-optional-locks", "-c", "safe.directory=*"])
            .args(["status", "--porcelain", "-uall"])
            .current_dir(wt)
            .env("GIT_CONFIG_NOSYSTEM", "1");
        if with_roots_config {
            for (k, v) in &roots_config {
                cmd.env(k, v);
            }
        } else {
            cmd.env("GIT_CONFIG_GLOBAL", "/dev/null");
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    assert!(!status(true).contains("notes.md"), "{}", status(true));
    assert!(status(false).contains("?? notes.md"), "{}", status(false));

    let (code, doc) = check_as(None, &cfg, &[wt.as_os_str()], &roots_config);
    let w = &doc["worktrees"][0];
    assert_eq!(code, 1, "{doc}");
    assert_eq!(w["error"], Value::Null, "{w}");
    assert_eq!(w["repository_owner"], OWNER);
    assert_eq!(w["reasons"], serde_json::json!(["untracked"]), "{w}");
    assert_eq!(w["changes"]["untracked"], 1, "{w}");
    assert_eq!(common::root_owned(&f.repo), Vec::<String>::new());
    assert_eq!(common::root_owned(wt), Vec::<String>::new());

    // Control: the owner's own configuration is the owner's to apply (git
    // runs with the HOME of the owner's account, so the owner's word is the
    // repository's config here), by root's check and the owner's alike.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    common::git_as(
        OWNER,
        &f.repo,
        &["config", "core.excludesFile", ignore.to_str().unwrap()],
    );
    for uid in [None, Some(OWNER)] {
        let (code, doc) = check_as(uid, &cfg, &[wt.as_os_str()], &[]);
        assert_eq!(code, 0, "{uid:?}: {doc}");
        assert_eq!(doc["worktrees"][0]["reasons"], serde_json::json!([]));
    }
}

#[test]
fn a_fifo_planted_in_a_worktree_never_hangs_the_check_and_is_at_risk() {
    if !common::prerequisite(
        is_root(),
        "checking uid 4242's worktrees as root needs root",
    ) {
        return;
    }
    let planted = ["locked", "HEAD", "gitdir", "commondir"];
    let names: Vec<String> = planted.iter().map(|p| format!("fifo-{p}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("calm");
    let (f, cfg, paths) = owned_setup(&all);
    for (file, path) in planted.iter().zip(&paths) {
        let admin = f
            .repo
            .join(".git/worktrees")
            .join(path.file_name().unwrap());
        common::plant_fifo(&admin.join(file));
    }
    // Control: a reader by path blocks on it.
    common::assert_blocks_a_reader(&f.repo.join(".git/worktrees/fifo-HEAD/HEAD"));

    // Named one by one, and found under the root by --all.
    let named: Vec<&std::ffi::OsStr> = paths.iter().map(|p| p.as_os_str()).collect();
    for args in [named, vec!["--all".as_ref()]] {
        let (code, doc) = check_as(None, &cfg, &args, &[]);
        assert_eq!(code, 1, "{doc}");
        let rows = doc["worktrees"].as_array().unwrap();
        assert_eq!(rows.len(), 5, "{doc}");
        for (file, path) in planted.iter().zip(&paths) {
            let w = rows
                .iter()
                .find(|w| w["path"] == path.to_str().unwrap())
                .unwrap();
            assert_eq!(w["at_risk"], true, "{file}: {w}");
            let error = w["error"].as_str().unwrap_or_else(|| panic!("{file}: {w}"));
            assert!(error.contains("FIFO"), "{file}: {error}");
        }
        let calm = rows
            .iter()
            .find(|w| w["path"] == paths[4].to_str().unwrap())
            .unwrap();
        assert_eq!(
            (calm["at_risk"].clone(), calm["error"].clone()),
            (false.into(), Value::Null),
            "the same check on an untouched worktree assesses it: {calm}"
        );
    }
}

#[test]
fn a_caller_neither_root_nor_the_owner_is_told_and_at_risk() {
    if !common::prerequisite(is_root(), "switching to uids 4242 and 4343 needs root") {
        return;
    }
    let (_f, cfg, paths) = owned_setup(&["theirs"]);
    let wt = paths[0].as_os_str();
    let (code, doc) = check_as(Some(4343), &cfg, &[wt], &[]);
    assert_eq!(code, 1, "{doc}");
    let w = &doc["worktrees"][0];
    assert_eq!(w["at_risk"], true);
    let error = w["error"].as_str().unwrap();
    assert!(
        error.contains("uid 4242") && error.contains("uid 4343"),
        "{error}"
    );
    // Control: its owner assesses it, in-process.
    let (code, doc) = check_as(Some(OWNER), &cfg, &[wt], &[]);
    assert_eq!(
        (code, doc["worktrees"][0]["error"].clone()),
        (0, Value::Null),
        "{doc}"
    );
}

// --------------------------------------------------- check from anywhere

#[test]
fn a_path_inside_a_worktree_is_checked_as_that_worktree() {
    let (f, cfg) = setup();
    let wt = f.worktree("inside", "b-inside");
    write(&wt.join("notes/wip.md"), "work\n");
    std::fs::create_dir(wt.join("empty")).unwrap();
    // Control: the worktree itself is at risk.
    let (code, doc) = check_json(&cfg, &[wt.to_str().unwrap()]);
    assert_eq!(
        (code, doc["worktrees"][0]["requested_path"].clone()),
        (1, Value::Null)
    );
    for inside in ["src", "src/lib.txt", "notes/wip.md", "notes", "empty"] {
        let asked = wt.join(inside);
        let (code, doc) = check_json(&cfg, &[asked.to_str().unwrap()]);
        let w = &doc["worktrees"][0];
        assert_eq!(code, 1, "{inside}: {doc}");
        assert_eq!(w["path"], wt.to_str().unwrap(), "{inside}");
        assert_eq!(w["requested_path"], asked.to_str().unwrap(), "{inside}");
        assert_eq!(w["reasons"], serde_json::json!(["untracked"]), "{inside}");
    }
    // And from a subdirectory as the current directory, in the table.
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-check"))
        .args(["--config", cfg.to_str().unwrap()])
        .current_dir(wt.join("empty"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!("AT RISK  {}", wt.display())),
        "{text}"
    );
}

#[test]
fn a_path_that_does_not_exist_is_an_error_never_safe() {
    let (f, cfg) = setup();
    let clean = f.worktree("clean", "b-clean");
    let nope = f.tmp.path().join("wt/nope");
    let out = check(&cfg, &[clean.to_str().unwrap(), nope.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "error: {}: no such file or directory",
            nope.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains(&format!("safe     {}", nope.display())),
        "{text}"
    );
    // Control: the clean worktree beside it is safe.
    assert!(
        text.contains(&format!("safe     {}", clean.display())),
        "{text}"
    );
    let (code, doc) = check_json(&cfg, &[nope.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(doc["worktrees"][0]["kind"], "missing");
    assert!(doc["worktrees"][0]["error"]
        .as_str()
        .unwrap()
        .ends_with("no such file or directory"));
}

#[test]
fn integration_by_squash_reads_only() {
    let (f, cfg) = setup();
    std::fs::write(
        f.tmp.path().join("ledger.json"),
        br#"{"schema":1,"records":[]}"#,
    )
    .unwrap();
    let wt = f.worktree("squashed", "b-squashed");
    f.commit(
        &wt,
        "src/lib.txt",
        "ONE\ntwo\nthree\nfour\n",
        "branch edit 1",
    );
    f.commit(
        &wt,
        "src/lib.txt",
        "ONE\nTWO\nthree\nfour\n",
        "branch edit 2",
    );
    git(&f.repo, &["merge", "-q", "--squash", "b-squashed"]);
    git(&f.repo, &["commit", "-q", "-m", "squash"]);
    f.commit(
        &f.repo,
        "src/lib.txt",
        "ONE\nTWO\nthree\nFOUR\n",
        "later edit",
    );
    // At risk (so that the whole check runs) by a hidden edit.
    git(&wt, &["update-index", "--assume-unchanged", "README"]);
    write(&wt.join("README"), "hidden\n");
    let doc = assert_read_only_run(&f, &cfg, &wt);
    let w = &doc["worktrees"][0];
    assert_eq!(w["integrated"], true, "{w}");
    assert_eq!(w["integration"]["how"], "changes_present", "{w}");
    assert_eq!(w["reasons"], serde_json::json!(["modified"]), "{w}");

    // Control: the merge simulation git offers (`merge-tree --write-tree`,
    // objects into a throwaway directory) touches the repository's objects.
    let scratch = tempfile::tempdir().unwrap();
    let before = snapshot(&f.repo.join(".git/objects"));
    let out = common::git_command(
        &f.repo,
        &["merge-tree", "--write-tree", "main", "b-squashed"],
    )
    .env("GIT_OBJECT_DIRECTORY", scratch.path())
    .env(
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        f.repo.join(".git/objects"),
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    assert_ne!(
        before,
        snapshot(&f.repo.join(".git/objects")),
        "git freshens what exists"
    );
}
