//! Test fixtures built with the real `git` binary in temp dirs.

pub mod sandbox;
pub mod worktree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs git in `dir` with a fixed identity and no user/system config, and
/// returns stdout; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    stdout_of(git_command(dir, args), args, dir)
}

/// `git worktree lock --reason <reason> <worktree>`, in `repo`: a lock a
/// person or an agent took.
pub fn lock_worktree(repo: &Path, worktree: &Path, reason: &str) {
    git(
        repo,
        &[
            "worktree",
            "lock",
            "--reason",
            reason,
            worktree.to_str().unwrap(),
        ],
    );
}

pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    git_command(dir, args).output().expect("git runs")
}

/// `git args` in `dir` as `uid` (gid = uid, `HOME=/nonexistent`), or as
/// the caller when `None`; its output, whatever its exit status.
pub fn git_output_as(uid: Option<u32>, dir: &Path, args: &[&str]) -> Output {
    git_command_as(uid, dir, args).output().expect("git runs")
}

/// [`git_command`] as `uid` (gid = uid, `HOME=/nonexistent`) when `Some`.
pub fn git_command_as(uid: Option<u32>, dir: &Path, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = git_command(dir, args);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid).env("HOME", "/nonexistent");
    }
    cmd
}

/// `git args` in `dir`, with a fixed identity and no user or system config
/// (to add to — environment, stdin — before running it).
pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
    cmd
}

/// Runs a git command and returns its trimmed stdout; panics with its
/// stderr when it fails.
fn stdout_of(mut cmd: Command, args: &[&str], dir: &Path) -> String {
    let out = cmd.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// A repository with a `main` branch holding two commits, an `origin` (a bare
/// repository) that has `main`, and `origin/HEAD` set.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub origin: PathBuf,
}

/// A directory for fixtures whose every ancestor only root (or the user
/// running the tests) can write: treeward never takes a repository under a
/// group- or world-writable directory such as `/tmp` for one it may act on
/// (SECURITY.md), so fixtures that treeward must act on live here. Cargo's
/// target tmp dir when its path is such; else `/var/lib/treeward-tests` as
/// root and `~/.cache/treeward-tests` as anyone else.
pub fn strict_base() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::Uid::effective().as_raw();
    let strict = |path: &Path| {
        path.ancestors().all(|dir| {
            std::fs::symlink_metadata(dir).is_ok_and(|m| {
                m.is_dir() && (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0
            })
        })
    };
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if strict(&target) {
        return target;
    }
    let fallback = if me == 0 {
        PathBuf::from("/var/lib/treeward-tests")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/treeward-tests")
    };
    std::fs::create_dir_all(&fallback).unwrap();
    std::fs::set_permissions(
        &fallback,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert!(
        strict(&fallback),
        "{}: not a directory only root and uid {me} can write",
        fallback.display()
    );
    fallback
}

/// A temp dir under [`strict_base`], mode 0755.
pub fn strict_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(strict_base()).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::new_in(&strict_base())
    }

    /// The same fixture in a temp dir under `parent`.
    pub fn new_in(parent: &Path) -> Fixture {
        let tmp = tempfile::tempdir_in(parent).unwrap();
        let repo = tmp.path().join("repo");
        let origin = tmp.path().join("origin.git");
        std::fs::create_dir_all(&repo).unwrap();
        git(
            tmp.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                origin.to_str().unwrap(),
            ],
        );
        git(&repo, &["init", "-q", "-b", "main"]);
        write(&repo.join("README"), "hello\n");
        write(&repo.join("src/lib.txt"), "one\ntwo\nthree\n");
        write(&repo.join(".gitignore"), "*.log\ntarget/\n");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        write(&repo.join("src/lib.txt"), "one\ntwo\nthree\nfour\n");
        git(&repo, &["commit", "-q", "-am", "second"]);
        git(
            &repo,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        git(&repo, &["push", "-q", "-u", "origin", "main"]);
        git(&repo, &["remote", "set-head", "origin", "main"]);
        Fixture { tmp, repo, origin }
    }

    /// `git worktree add -b <branch> <tmp>/wt/<name> main`.
    pub fn worktree(&self, name: &str, branch: &str) -> PathBuf {
        let path = self.tmp.path().join("wt").join(name);
        add_worktree(&self.repo, &path, Some(branch));
        path
    }

    /// `git worktree add --detach <tmp>/wt/<name> main`.
    pub fn detached_worktree(&self, name: &str) -> PathBuf {
        let path = self.tmp.path().join("wt").join(name);
        add_worktree(&self.repo, &path, None);
        path
    }

    /// Commits a change to `file` in `dir`.
    pub fn commit(&self, dir: &Path, file: &str, text: &str, message: &str) -> String {
        write(&dir.join(file), text);
        git(dir, &["add", file]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"])
    }
}

/// `git worktree add -q (-b <branch> | --detach) <path> main` in `repo`.
pub fn add_worktree(repo: &Path, path: &Path, branch: Option<&str>) {
    git(repo, &worktree_add_args(path, branch));
}

/// The arguments of [`add_worktree`]: `worktree add -q (-b <branch> |
/// --detach) <path> main`.
pub fn worktree_add_args<'a>(path: &'a Path, branch: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["worktree", "add", "-q"];
    match branch {
        Some(b) => args.extend(["-b", b]),
        None => args.push("--detach"),
    }
    args.extend([path.to_str().expect("a UTF-8 test path"), "main"]);
    args
}

/// Everything a user could notice about a tree: each path's type, mode,
/// owner, size, mtime and content (symlink targets for links).
pub type Snapshot = std::collections::BTreeMap<PathBuf, (u32, u32, u64, i64, i64, Vec<u8>)>;

pub fn snapshot(dir: &Path) -> Snapshot {
    use std::os::unix::fs::MetadataExt;
    let mut out = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Vec::new()
        };
        out.insert(
            p,
            (
                m.mode(),
                m.uid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                content,
            ),
        );
    }
    out
}

/// A config file in `dir` with one root and a ledger, and its path.
pub fn config_file(dir: &Path, root: &Path, extra_root_keys: &str) -> PathBuf {
    let path = dir.join("treeward.toml");
    let text = format!(
        "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n{extra_root_keys}\n",
        dir.join("ledger.json").display(),
        root.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A treeward binary (`treeward`, `treeward-check`, `treeward-sweep`,
/// `treeward-reap`) with `args` then `--config cfg`, from `/`, without
/// `TREEWARD_CONFIG`, as `uid` (gid = uid, `HOME=/nonexistent`) when
/// `Some`: to run (or to add paths to).
pub fn treeward_command<S: AsRef<std::ffi::OsStr>>(
    bin: &str,
    cfg: &Path,
    uid: Option<u32>,
    args: &[S],
) -> Command {
    use std::os::unix::process::CommandExt;
    let exe = match bin {
        "treeward" => env!("CARGO_BIN_EXE_treeward"),
        "treeward-check" => env!("CARGO_BIN_EXE_treeward-check"),
        "treeward-sweep" => env!("CARGO_BIN_EXE_treeward-sweep"),
        "treeward-reap" => env!("CARGO_BIN_EXE_treeward-reap"),
        other => panic!("no binary {other}"),
    };
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--config")
        .arg(cfg)
        .current_dir("/")
        .env_remove("TREEWARD_CONFIG");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid).env("HOME", "/nonexistent");
    }
    cmd
}

/// Kills and reaps a child when dropped, so a failing test leaves no process.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child started in a process group of its own (`process_group(0)`),
/// the whole group SIGKILLed when dropped, so that a test leaves none of
/// its processes behind, grandchildren included (a `treeward lease` and
/// its command).
pub struct ProcessGroup(pub std::process::Child);

impl ProcessGroup {
    pub fn spawn(cmd: &mut Command) -> ProcessGroup {
        use std::os::unix::process::CommandExt;
        ProcessGroup(cmd.process_group(0).spawn().unwrap())
    }

    /// The child's pid, which is also the group's id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILLs every process of the group, and reaps the child.
    pub fn kill_all(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The tests of the one test binary (`tests/suite/`) run side by side.
/// Those that load the machine for long (a storm of processes, a pool of
/// threads, an attacker spinning, a release build) hold [`busy`] while
/// they do; a test whose assertion is a wall-clock bound holds [`timed`],
/// so that it never runs beside one of them (as it never did when each
/// file was a binary of its own). Busy tests may run beside each other.
static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test loads the machine (see [`LOAD`]).
pub fn busy() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while a test measures wall-clock time (see [`LOAD`]).
pub fn timed() -> std::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write().unwrap_or_else(|e| e.into_inner())
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether this run is CI's (`CI=true`), where a test must never pass by
/// skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test can run here: `true` when `met`. Otherwise it prints
/// `skipped: <why>` and returns `false` — except in CI, where it fails the
/// test, so that CI cannot pass by skipping what it should have run.
#[track_caller]
pub fn prerequisite(met: bool, why: &str) -> bool {
    if met {
        return true;
    }
    assert!(
        !in_ci(),
        "CI=true, and {why}: .ci/run must provide it (tests do not skip in CI)"
    );
    eprintln!("skipped: {why}");
    false
}

/// Runs git in `dir` as `uid` (gid = uid), the way the repository's owner
/// would; returns stdout, panics with stderr on failure.
pub fn git_as(uid: u32, dir: &Path, args: &[&str]) -> String {
    stdout_of(git_command_as(Some(uid), dir, args), args, dir)
}

/// The names in a root, sorted, its trash (`.treeward-trash`) aside: what
/// a sweep or reap left live.
pub fn live_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".treeward-trash")
        .collect();
    names.sort();
    names
}

/// `chown -R uid:uid path`.
pub fn chown_r(path: &Path, uid: u32) {
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Paths under `dir` owned by uid 0 (`find -uid 0`), `dir` itself excluded.
pub fn root_owned(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-mindepth", "1", "-uid", "0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What a worktree's files hold, for comparing two checkouts: each file and
/// symlink below `dir` (relative, `.git` left out) with its mode and its
/// content (the target for a link). Directories are left out: git records
/// none, so an emptied one does not come back.
pub fn contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .filter_map(|(path, (mode, _, _, _, _, content))| {
            let rel = path.strip_prefix(dir).ok()?.to_path_buf();
            let is_dir = mode & 0o170000 == 0o040000;
            (!is_dir && !rel.starts_with(".git")).then_some((rel, (mode, content)))
        })
        .collect()
}

/// Sets the mtime of `path` itself (a link is not followed) to `when`, as
/// `touch -d` reads it ("2 hours ago").
pub fn set_mtime(path: &Path, when: &str) {
    let ok = Command::new("touch")
        .args(["-h", "-m", "-d", when])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "touch -d {when:?} {}", path.display());
}

/// The `state` of record `id` in the ledger file at `ledger` (as the JSON
/// reader of the documented contract sees it).
pub fn ledger_state(ledger: &Path, id: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(ledger).unwrap()).unwrap();
    doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record {id} in {doc}"))["state"]
        .clone()
}

/// Runs `cmd` to its end and returns its output, failing the test if it
/// has not ended within `limit` (it is killed then): for a program that
/// must not hang, such as one that meets a FIFO where it expects a
/// directory. stdout and stderr go to files, so a full pipe cannot stall it.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::{Read, Seek};
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut child = ChildGuard(
        cmd.stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < limit,
            "{cmd:?} still running after {limit:?}: killed (it hangs)"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let read = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}

/// A program's `--json` run: its exit status, the JSON document on stdout
/// (the test fails, showing both streams, if it is not one) and stderr.
pub fn json_report(out: &Output) -> (i32, serde_json::Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} / {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), doc, stderr)
}

/// The line of a sweep or reap report (`entries`) about `path`; the test
/// fails, showing the report, if there is none.
pub fn report_entry<'a>(doc: &'a serde_json::Value, path: &Path) -> &'a serde_json::Value {
    doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not in report {doc:#}", path.display()))
}

/// Replaces `path` (a file, or nothing) with a FIFO: what a hostile user
/// plants where treeward, or git, expects a small file.
pub fn plant_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Asserts that reading `path` by path (`cat`) blocks: the control showing
/// that a planted FIFO would hang a naive reader.
pub fn assert_blocks_a_reader(path: &Path) {
    let status = Command::new("timeout")
        .args(["2", "cat"])
        .arg(path)
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(124),
        "{}: reading it did not block",
        path.display()
    );
}
