//! Names and shapes: entries named with newlines, non-UTF-8 bytes, leading
//! dashes and 255 bytes; a 10,000-entry root and 1,000-deep trees with
//! bounded memory and descriptors; a root on a different filesystem
//! (tmpfs) from its repository; a filesystem that fills up mid-preserve;
//! an unreadable file inside a worktree.

// Its own process (see tests/suite/main.rs), using a part of the fixtures.
#[allow(dead_code)]
mod common;

use common::{git, write, Fixture};
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep(cfg: &Path, extra: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--json", "--config"])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, doc)
}

/// A report path (a string, or an array of bytes when not UTF-8) as bytes.
fn path_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("not a path: {other}"),
    }
}

fn entry<'a>(doc: &'a Value, path: &Path) -> &'a Value {
    doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| path_bytes(&e["path"]) == path.as_os_str().as_bytes())
        .unwrap_or_else(|| panic!("no entry for {path:?}: {doc}"))
}

fn preserved_refs(repo: &Path) -> Vec<String> {
    git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/treeward/preserved",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

const ODD_NAMES: [&[u8]; 4] = [b"new\nline", b"a\xff\xfeb", b"-rf", &[b'n'; 255]];

#[test]
fn odd_entry_names_are_swept_reported_and_preserved_like_any_other() {
    if !common::prerequisite(common::is_root(), "the sweep runs as root") {
        return;
    }
    let f = Fixture::new();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = common::config_file(f.tmp.path(), &root, "policy = \"preserve\"");
    let mut clean = Vec::new();
    let mut dirty = Vec::new();
    let mut plain = Vec::new();
    for (i, name) in ODD_NAMES.iter().enumerate() {
        let mut wt = b"w".to_vec();
        wt.extend_from_slice(name);
        wt.truncate(255);
        let wt = root.join(OsStr::from_bytes(&wt));
        let branch = format!("t-odd-{i}");
        let mut add = Command::new("git");
        add.current_dir(&f.repo)
            .args(["worktree", "add", "-q", "-b", &branch])
            .arg(&wt);
        assert!(add.status().unwrap().success(), "{wt:?}");
        if i % 2 == 0 {
            // Its work, in a file with an odd name too.
            std::fs::write(wt.join(OsStr::from_bytes(name)), b"only copy\n").unwrap();
            dirty.push(wt);
        } else {
            clean.push(wt);
        }
        let dir = root.join(OsStr::from_bytes(name));
        std::fs::create_dir(&dir).unwrap();
        plain.push(dir);
    }

    let (out, doc) = sweep(&cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    for wt in &clean {
        assert_eq!(entry(&doc, wt)["action"], "removed", "{wt:?}: {doc}");
        assert!(!wt.exists());
    }
    for dir in &plain {
        assert_eq!(entry(&doc, dir)["action"], "removed", "{dir:?}: {doc}");
    }
    for wt in &dirty {
        assert_eq!(entry(&doc, wt)["action"], "preserved", "{wt:?}: {doc}");
        assert!(!wt.exists());
    }
    assert!(!preserved_refs(&f.repo).is_empty());
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "only the trash is left"
    );

    // The human report keeps one line per entry: odd names are quoted.
    for (i, name) in ODD_NAMES.iter().enumerate() {
        std::fs::create_dir(root.join(OsStr::from_bytes(name)))
            .unwrap_or_else(|e| panic!("{i}: {e}"));
    }
    let human = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(text.lines().count(), ODD_NAMES.len() + 1, "{text}");
    assert!(text.contains("new\\nline"), "{text}");
    assert!(text.contains("\\xFF\\xFE"), "{text}");
}

/// Peak RSS (KiB) and the exit status of `cmd`, run under an open-file
/// limit of `nofile` descriptors.
fn run_bounded(cmd: &mut Command, nofile: u64) -> (Output, u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's
    // own limit between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                nofile,
                nofile,
            )
            .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().unwrap();
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    (out, usage.max_rss() as u64)
}

#[test]
fn ten_thousand_entries_and_thousand_deep_trees_in_bounded_memory_and_descriptors() {
    if !common::prerequisite(common::is_root(), "the sweep runs as root") {
        return;
    }
    let dir = common::strict_tempdir();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for i in 0..10_000 {
        let e = root.join(format!("e{i:05}"));
        std::fs::create_dir(&e).unwrap();
        if i % 10 == 0 {
            // Residue with nothing that is work: sockets and FIFOs only.
            nix::unistd::mkfifo(
                &e.join("fifo"),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        }
    }
    // 1,000-deep trees, holding a file at the bottom (discard removes it).
    for t in 0..3 {
        let mut p = root.join(format!("deep{t}"));
        for _ in 0..1000 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("bottom.txt"), "x").unwrap();
    }
    let cfg = common::config_file(dir.path(), &root, "policy = \"discard\"");
    // 128 descriptors in all: the 64 directory descriptors of the drain's
    // two removals at once (32 each) and the pass's own, far too few for
    // one per entry or one per level.
    let (out, peak_kib) = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--json", "--budget", "120s", "--config"])
            .arg(&cfg),
        128,
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let not_removed: Vec<&Value> = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "removed")
        .collect();
    assert!(not_removed.is_empty(), "{not_removed:?}");
    assert_eq!(doc["swept_count"], 10_003);
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "only the trash is left"
    );
    eprintln!(
        "10,003 entries (3 of them 1,000 deep) swept under RLIMIT_NOFILE=128: peak RSS {peak_kib} KiB, {} ms",
        doc["duration_ms"]
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn a_root_on_tmpfs_apart_from_its_repository() {
    if !common::prerequisite(common::is_root(), "mounting a tmpfs needs root") {
        return;
    }
    let f = Fixture::new();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmount = Unmount(root.clone());
    let clean = f.worktree("clean", "t-clean");
    let dirty = f.worktree("dirty", "t-dirty");
    write(&dirty.join("work.txt"), "only copy\n");
    let cfg = common::config_file(f.tmp.path(), &root, "policy = \"preserve\"");
    let (out, doc) = sweep(&cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(entry(&doc, &clean)["action"], "removed", "{doc}");
    assert_eq!(entry(&doc, &dirty)["action"], "preserved", "{doc}");
    assert!(!clean.exists() && !dirty.exists());
    assert!(!preserved_refs(&f.repo).is_empty());
}

/// Unmounts when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_filesystem_mid_preserve_fails_cleanly_and_the_next_pass_finishes() {
    if !common::prerequisite(common::is_root(), "mounting a tmpfs needs root") {
        return;
    }
    // 512 KiB left: the quarantine's lock and move succeed, storing the
    // work does not.
    full_disk(512 << 10);
}

/// With no byte left even the quarantine's lock fails: the pass fails
/// that entry, leaves no half-written lock behind (an empty `locked` file
/// is an owner's lock to every later pass), and the next pass finishes.
#[test]
fn a_full_filesystem_at_the_lock_leaves_no_lock_behind() {
    if !common::prerequisite(common::is_root(), "mounting a tmpfs needs root") {
        return;
    }
    full_disk(0);
}

/// A worktree holding 3 MiB of random work whose repository is on a 4 MiB
/// tmpfs filled but for `spare` bytes: the first pass fails the entry
/// cleanly and loses nothing; once space is back the next one preserves.
fn full_disk(spare_bytes: usize) {
    // The repository lives on a small tmpfs; the worktree's work is larger
    // than what is left there.
    let base = common::strict_tempdir();
    let disk = base.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap()
        .success());
    let _unmount = Unmount(disk.clone());
    let f = Fixture::new_in(&disk);
    let root = base.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    let wt = root.join("big");
    common::add_worktree(&f.repo, &wt, Some("t-big"));
    // 3 MiB of incompressible work: fits on the worktree's disk (the base
    // filesystem), not in what the repository's tmpfs has left once it is
    // filled.
    let mut noise = vec![0u8; 3 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(wt.join("work.bin"), &noise).unwrap();
    // Fill the repository's filesystem but for `spare_bytes`.
    let spare = disk.join("spare");
    std::fs::write(&spare, vec![0u8; spare_bytes]).unwrap();
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    std::fs::remove_file(&spare).unwrap();
    let cfg = common::config_file(base.path(), &root, "policy = \"preserve\"");
    let (out, doc) = sweep(&cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    let e = entry(&doc, &wt);
    eprintln!("a full disk mid-preserve: {e}");
    assert_ne!(e["action"], "preserved", "{doc}");
    assert_ne!(e["action"], "removed", "{doc}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("space")
            || e["error"].as_str().unwrap_or("").contains("write"),
        "the error says the disk is full: {doc}"
    );
    // Nothing lost: the work is where it was (in the root or its trash).
    let found: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|p| p.file_name() == Some(OsStr::new("work.bin")))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(std::fs::read(&found[0]).unwrap(), noise);

    // Space comes back: the next pass preserves and finishes.
    std::fs::remove_file(&filler).unwrap();
    let (_, doc) = sweep(&cfg, &[]);
    let done = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "preserved");
    assert!(done, "{doc}");
    assert!(walk(&root)
        .iter()
        .all(|p| p.file_name() != Some(OsStr::new("work.bin"))));
    assert!(!preserved_refs(&f.repo).is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn an_unreadable_file_is_named_as_such_not_as_a_lock() {
    if !common::prerequisite(common::is_root(), "acts for uid 4242 as root") {
        return;
    }
    let f = Fixture::new();
    let root = f.tmp.path().join("wt");
    let wt = f.worktree("secret", "t-secret");
    // A file the owner cannot read (root's, mode 0600) inside its worktree.
    std::fs::write(wt.join("secret.txt"), "root's\n").unwrap();
    common::chown_r(f.tmp.path(), 4242);
    std::os::unix::fs::chown(wt.join("secret.txt"), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        wt.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cfg = common::config_file(
        f.tmp.path(),
        &root,
        "policy = \"preserve\"\nowner = \"4242\"",
    );
    let (_, doc) = sweep(&cfg, &[]);
    let e = entry(&doc, &wt);
    let error = e["error"].as_str().unwrap_or("");
    assert!(
        wt.join("secret.txt").exists() || walk(&root).iter().any(|p| p.ends_with("secret.txt"))
    );
    assert!(!error.contains("is locked"), "misleading: {doc}");
    assert!(
        error.contains("secret.txt")
            || error.contains("Permission denied")
            || error.contains("permission"),
        "the error names the unreadable file: {doc}"
    );
}
