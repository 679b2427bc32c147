//! Test fixtures built with the real `git` binary in temp dirs.
#![allow(dead_code)] // each test crate uses a different part of the kit

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs git in `dir` with a fixed identity and no user/system config, and
/// returns stdout; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    stdout_of_success(&out, &format!("git {args:?} in {}", dir.display()))
}

/// The trimmed stdout of a command that must have succeeded (`what` names
/// it in the panic, with its stderr, when it did not).
fn stdout_of_success(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    git_command(dir, args).output().expect("git runs")
}

/// The git command [`git`] runs, to add to (environment, stdin) first.
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

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// `worktree add -q -b <branch> <path> main`, or `--detach` for no branch.
pub fn worktree_add_args<'a>(path: &'a Path, branch: Option<&'a str>) -> Vec<&'a str> {
    let path = path.to_str().expect("a UTF-8 test path");
    let mut args = vec!["worktree", "add", "-q"];
    match branch {
        Some(b) => args.extend(["-b", b]),
        None => args.push("--detach"),
    }
    args.extend([path, "main"]);
    args
}

/// A repository with a `main` branch holding two commits, an `origin` (a bare
/// repository) that has `main`, and `origin/HEAD` set.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub origin: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
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
        git(&self.repo, &worktree_add_args(&path, Some(branch)));
        path
    }

    /// `git worktree add --detach <tmp>/wt/<name> main`.
    pub fn detached_worktree(&self, name: &str) -> PathBuf {
        let path = self.tmp.path().join("wt").join(name);
        git(&self.repo, &worktree_add_args(&path, None));
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

/// Kills and reaps a child when dropped, so a failing test leaves no process.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs git in `dir` as `uid` (gid = uid), the way the repository's owner
/// would; returns stdout, panics with stderr on failure.
pub fn git_as(uid: u32, dir: &Path, args: &[&str]) -> String {
    use std::os::unix::process::CommandExt;
    let out = git_command(dir, args)
        .uid(uid)
        .gid(uid)
        .env("HOME", "/nonexistent")
        .output()
        .expect("git runs");
    stdout_of_success(&out, &format!("git {args:?} as {uid} in {}", dir.display()))
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
