//! The sweep against an attacker racing it (SPEC invariant 1): a thread that
//! keeps swapping a directory deep inside an entry — and, separately, the
//! entry itself — for a symlink to a canary directory outside the root,
//! wherever the entry is (live in the root or quarantined in the trash),
//! while whole sweeps run. Over 2,000 sweeps the canary is never touched.
//! Also: a bind mount inside an entry is never crossed. Root only.

use crate::common;

use common::{is_root, snapshot, write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use treeward::testing::as_owner::Worker;
use treeward::testing::config::{Config, Source, SystemUsers};
use treeward::testing::sweep::{self, Options};

const ITERATIONS: usize = 1000;

struct Arena {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    canary: PathBuf,
    config: Config,
}

fn arena() -> Option<Arena> {
    if !is_root() {
        eprintln!("skipped: the race tests sweep as root");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let canary = tmp.path().join("canary");
    for i in 0..5 {
        write(&canary.join(format!("sub/file-{i}")), "precious\n");
    }
    let text = format!(
        "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"e-*\"]\n",
        tmp.path().join("ledger.json").display(),
        root.display()
    );
    let config = Config::from_toml(&text, Source::Embedded, &SystemUsers).unwrap();
    Some(Arena {
        _tmp: tmp,
        root,
        canary,
        config,
    })
}

/// Every place the entry `name` can be: live, or in any trash batch.
fn places(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = vec![root.join(name)];
    if let Ok(batches) = std::fs::read_dir(root.join(".treeward-trash")) {
        out.extend(batches.flatten().map(|b| b.path().join(name)));
    }
    out
}

/// Swaps `path` for a symlink to `canary` and back, once; whether it did.
fn swap(path: &Path, canary: &Path) -> bool {
    let aside = path.with_extension("aside");
    if std::fs::rename(path, &aside).is_err() {
        return false;
    }
    let planted = std::os::unix::fs::symlink(canary, path).is_ok();
    std::thread::yield_now();
    let _ = std::fs::remove_file(path);
    let _ = std::fs::rename(&aside, path);
    planted
}

/// Runs `ITERATIONS` sweeps, each against a fresh entry, with an attacker
/// thread swapping `target(entry place)` for a symlink to the canary.
fn race(a: &Arena, target: fn(&Path) -> PathBuf) {
    let _busy = common::busy();
    let before = snapshot(&a.canary);
    let opts = Options {
        dry_run: false,
        budget: std::time::Duration::from_secs(10),
        progress: false,
        worker: Worker::current(),
    };
    let mut planted = 0;
    for i in 0..ITERATIONS {
        let name = format!("e-{i}");
        write(&a.root.join(&name).join("a/b/c/data.txt"), "residue\n");
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = {
            let (stop, root, canary, name) =
                (stop.clone(), a.root.clone(), a.canary.clone(), name.clone());
            std::thread::spawn(move || {
                let mut planted = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for place in places(&root, &name) {
                        planted += usize::from(swap(&target(&place), &canary));
                    }
                }
                planted
            })
        };
        let report = sweep::sweep(&a.config, &opts);
        stop.store(true, Ordering::Relaxed);
        planted += attacker.join().unwrap();
        assert_eq!(
            snapshot(&a.canary),
            before,
            "iteration {i}: the canary changed; report: {report:?}"
        );
    }
    // The attacker really raced: it planted its symlink many times.
    assert!(
        planted >= ITERATIONS,
        "only {planted} symlinks planted in {ITERATIONS} sweeps"
    );
    // What the attacker left behind is swept without it.
    sweep::sweep(&a.config, &opts);
    assert_eq!(snapshot(&a.canary), before);
}

#[test]
fn a_deep_directory_swapped_for_a_symlink_never_redirects_the_sweep() {
    let Some(a) = arena() else { return };
    race(&a, |place| place.join("a/b"));
}

#[test]
fn the_entry_swapped_for_a_symlink_never_redirects_the_sweep() {
    let Some(a) = arena() else { return };
    race(&a, Path::to_path_buf);
}

#[test]
fn a_bind_mount_inside_an_entry_is_not_crossed() {
    let Some(a) = arena() else { return };
    let entry = a.root.join("e-mounted");
    write(&entry.join("own.txt"), "residue\n");
    std::fs::create_dir_all(entry.join("sub/mnt")).unwrap();
    let cfg = a.root.parent().unwrap().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"e-*\"]\npolicy = \"discard\"\n",
            a.root.parent().unwrap().join("ledger.json").display(),
            a.root.display()
        ),
    )
    .unwrap();
    // `discard`: the plain directory goes to the removal engine whatever it
    // holds (under `preserve` a directory with files behind a mount would be
    // kept in place, untouched), which must not cross the mount.
    let before = snapshot(&a.canary);
    // In a private mount namespace: bind the canary inside the entry, sweep.
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" && exec \"$3\" --json --config \"$4\"")
        .arg("sh")
        .arg(&a.canary)
        .arg(entry.join("sub/mnt"))
        .arg(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        snapshot(&a.canary),
        before,
        "the canary behind the mount is untouched"
    );
    let e = &doc["entries"][0];
    assert_eq!(e["action"], "failed", "{doc}");
    assert!(
        e["error"].as_str().unwrap().contains("mount point"),
        "{doc}"
    );
    assert!(!entry.exists(), "the entry left its live name");
    // Outside the namespace the mount is gone: the next sweep finishes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--json")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["swept_count"], 1, "{doc}");
    assert_eq!(snapshot(&a.canary), before);
}
