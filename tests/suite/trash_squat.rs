//! `treeward-sweep` as root against a sticky root (mode 1777, like `/tmp`)
//! where another user (uid 4343) squats the names treeward reserves: the
//! trash, and names inside it. The squat is removed as residue, never
//! followed and never blocked on, and the sweep carries on; a root the
//! sweep refuses fails it (exit 2) once the others are swept. Root-only:
//! skipped with a printed reason otherwise (CI runs as root).

use crate::common;

use common::{chown_r, output_within, snapshot, write, Fixture};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Owns the repository and its worktrees.
const AGENT: u32 = 4242;
/// Another unprivileged user who can write into the sticky root.
const SQUATTER: u32 = 4343;
/// How long a sweep may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

struct Host {
    f: Fixture,
    /// `<tmp>/wt`: root-owned, mode 1777.
    root: PathBuf,
    cfg: PathBuf,
    /// `<tmp>/canary`, outside the root: must survive every sweep.
    canary: PathBuf,
}

fn host() -> Option<Host> {
    if !common::prerequisite(
        common::is_root(),
        "the squat tests run as root (CI does): they squat as uid 4343 and sweep as root",
    ) {
        return None;
    }
    let f = Fixture::new();
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = f.tmp.path().join("wt");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let cfg = common::config_file(
        f.tmp.path(),
        &root,
        "policy = \"preserve\"\nowner = \"4242\"",
    );
    let canary = f.tmp.path().join("canary");
    write(&canary.join("precious.txt"), "keep me\n");
    Some(Host {
        f,
        root,
        cfg,
        canary,
    })
}

impl Host {
    fn trash(&self) -> PathBuf {
        self.root.join(".treeward-trash")
    }

    /// Runs `script` with `sh` as uid:gid 4343, with `$T` the trash's path
    /// and `$CANARY` the canary directory.
    fn as_squatter(&self, script: &str) {
        let out = Command::new("sh")
            .args(["-c", script])
            .env("T", self.trash())
            .env("CANARY", &self.canary)
            .current_dir("/")
            .uid(SQUATTER)
            .gid(SQUATTER)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "as uid {SQUATTER}: {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Residue in the root: a dirty worktree of uid 4242 (to be preserved),
    /// a plain empty directory and a file. Returns the worktree.
    fn residue(&self) -> PathBuf {
        let wt = self.root.join("sess-dirty");
        common::add_worktree(&self.f.repo, &wt, Some("t-dirty"));
        write(&wt.join("notes.txt"), "uncommitted\n");
        std::fs::create_dir(self.root.join("plain-dir")).unwrap();
        write(&self.root.join("stray-file"), "x\n");
        for p in [&self.f.repo, &self.f.origin, &wt] {
            chown_r(p, AGENT);
        }
        wt
    }

    /// Runs `treeward-sweep --json` as root; fails the test if it hangs.
    /// Exit status, the JSON document, stderr.
    fn sweep(&self, args: &[&str]) -> (i32, Value, String) {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
                .arg("--json")
                .arg("--config")
                .arg(&self.cfg)
                .args(args),
            LIMIT,
        );
        common::json_report(&out)
    }

    /// The trash is root's own private directory (the root's owner: root),
    /// drained.
    fn assert_own_trash(&self) {
        let m = std::fs::symlink_metadata(self.trash()).unwrap();
        assert!(m.is_dir(), "the trash is a directory again");
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o711));
        let left: Vec<_> = std::fs::read_dir(self.trash()).unwrap().collect();
        assert!(left.is_empty(), "drained: {left:?}");
    }
}

use common::report_entry as entry;

/// Squats the trash with `script` (run as uid 4343), adds residue, sweeps,
/// and checks that the squat went as residue (reported as `what`) and
/// everything else as usual.
fn squatted_trash_is_removed(script: &str, what: &str) {
    let Some(h) = host() else {
        return;
    };
    h.as_squatter(script);
    let squat = std::fs::symlink_metadata(h.trash()).unwrap();
    assert_eq!(squat.uid(), SQUATTER, "the squat is uid {SQUATTER}'s");
    let canary = snapshot(&h.canary);
    let wt = h.residue();

    let (code, doc, stderr) = h.sweep(&[]);
    assert_eq!(code, 0, "{stderr}\n{doc:#}");
    // The squat was removed as residue, and said so: with nothing to clear
    // it, the root would be refused or the trash reported as refused.
    let line = entry(&doc, &h.trash());
    assert_eq!(line["action"], "removed", "{doc:#}");
    let why = line["error"].as_str().unwrap();
    assert!(why.contains("squatted") && why.contains(what), "{why}");
    assert_eq!(doc["refused_roots"], serde_json::json!([]), "{doc:#}");
    // The sweep carried on: all residue gone (nothing moved aside is left
    // either), the dirty work preserved first.
    assert_eq!(common::live_names(&h.root), Vec::<String>::new());
    assert_eq!(entry(&doc, &wt)["action"], "preserved", "{doc:#}");
    assert_eq!(entry(&doc, &h.root.join("plain-dir"))["action"], "removed");
    assert_eq!(entry(&doc, &h.root.join("stray-file"))["action"], "removed");
    assert_eq!(
        snapshot(&h.canary),
        canary,
        "nothing outside the root moved"
    );
    h.assert_own_trash();
}

#[test]
fn a_trash_squatted_as_a_file_is_removed_and_the_sweep_goes_on() {
    squatted_trash_is_removed("printf x > \"$T\"", "a regular file of uid 4343");
}

#[test]
fn a_trash_squatted_as_a_symlink_is_removed_as_a_link() {
    squatted_trash_is_removed("ln -s \"$CANARY\" \"$T\"", "a symlink of uid 4343");
}

#[test]
fn a_trash_squatted_as_a_fifo_is_removed_without_blocking() {
    squatted_trash_is_removed("mkfifo \"$T\"", "a FIFO of uid 4343");
}

#[test]
fn a_trash_squatted_as_an_open_directory_is_removed() {
    squatted_trash_is_removed(
        "mkdir \"$T\" && chmod 0777 \"$T\" && ln -s \"$CANARY\" \"$T/link\" && printf x > \"$T/file\"",
        "a directory of uid 4343, mode 777",
    );
}

#[test]
fn a_trash_squatted_as_a_private_directory_with_a_batch_is_removed() {
    squatted_trash_is_removed(
        "mkdir -m 0711 \"$T\" && mkdir -m 0711 \"$T/20240101T000000Z-1\" \
         && mkdir \"$T/20240101T000000Z-1/sess-x\" && ln -s \"$CANARY\" \"$T/20240101T000000Z-1/sess-x/link\" \
         && mkfifo \"$T/20240101T000000Z-1/fifo\"",
        "a directory of uid 4343, mode 711",
    );
}

#[test]
fn a_dry_run_plans_the_squat_s_removal_and_changes_nothing() {
    let Some(h) = host() else {
        return;
    };
    h.as_squatter("mkdir -m 0777 \"$T\"");
    h.residue();
    let before = snapshot(h.f.tmp.path());
    let (code, doc, stderr) = h.sweep(&["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(snapshot(h.f.tmp.path()), before);
    let line = entry(&doc, &h.trash());
    assert_eq!(
        (&line["action"], &line["planned"]),
        (&Value::from("planned"), &Value::from("removed")),
        "{doc:#}"
    );
}

#[test]
fn strays_in_the_trash_are_removed_as_residue_and_open_batches_of_the_owner_kept() {
    let Some(h) = host() else {
        return;
    };
    // A genuine trash (root's, 0711), holding what no sweep makes: a
    // directory and a symlink of uid 4343 (as if a trash had once been
    // open), a FIFO, and a batch of root's own that others can read.
    let trash = h.trash();
    std::fs::create_dir(&trash).unwrap();
    std::fs::set_permissions(&trash, std::fs::Permissions::from_mode(0o711)).unwrap();
    let stray_dir = trash.join("20240101T000000Z-1");
    std::fs::create_dir(&stray_dir).unwrap();
    std::os::unix::fs::symlink(&h.canary, stray_dir.join("link")).unwrap();
    chown_r(&stray_dir, SQUATTER);
    std::fs::set_permissions(&stray_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stray_link = trash.join("20240101T000000Z-2");
    std::os::unix::fs::symlink(&h.canary, &stray_link).unwrap();
    std::os::unix::fs::lchown(&stray_link, Some(SQUATTER), Some(SQUATTER)).unwrap();
    let stray_fifo = trash.join("20240101T000000Z-3");
    nix::unistd::mkfifo(&stray_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let open_batch = trash.join("20240101T000000Z-4");
    write(&open_batch.join("sess-kept/file"), "maybe work\n");
    std::fs::set_permissions(&open_batch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let canary = snapshot(&h.canary);
    h.residue();

    let (code, doc, stderr) = h.sweep(&[]);
    assert_eq!(code, 0, "{stderr}\n{doc:#}");
    for p in [&stray_dir, &stray_link, &stray_fifo] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{} removed",
            p.display()
        );
        let line = entry(&doc, p);
        assert_eq!(line["action"], "removed", "{doc:#}");
        assert!(line["error"].as_str().unwrap().contains("not a batch"));
    }
    assert_eq!(
        snapshot(&h.canary),
        canary,
        "nothing outside the root moved"
    );
    // Root's own batch with a wrong mode may hold quarantined work: kept.
    assert!(open_batch.join("sess-kept/file").is_file());
    assert_eq!(entry(&doc, &open_batch)["action"], "refused", "{doc:#}");
    assert_eq!(common::live_names(&h.root), Vec::<String>::new());
}

#[test]
fn a_refused_root_fails_the_sweep_once_the_others_are_swept() {
    let Some(h) = host() else {
        return;
    };
    h.residue();
    // World-writable without the sticky bit: anyone could plant entries.
    let open = h.f.tmp.path().join("open-root");
    write(&open.join("victim/file"), "v\n");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut text = std::fs::read_to_string(&h.cfg).unwrap();
    text.push_str(&format!(
        "\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n",
        open.display()
    ));
    std::fs::write(&h.cfg, text).unwrap();

    // A dry run that would refuse the root fails too, and changes nothing.
    let before = snapshot(h.f.tmp.path());
    let (code, doc, stderr) = h.sweep(&["--dry-run"]);
    assert_eq!(code, 2, "{stderr}\n{doc:#}");
    assert_eq!(snapshot(h.f.tmp.path()), before);

    let (code, doc, stderr) = h.sweep(&[]);
    assert_eq!(code, 2, "{stderr}\n{doc:#}");
    assert!(stderr.contains("refused 1 root"), "{stderr}");
    // The report is still the whole JSON document, the refused root in it,
    let refused = doc["refused_roots"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{doc:#}");
    assert_eq!(refused[0]["path"], open.to_str().unwrap());
    assert!(refused[0]["error"].as_str().unwrap().contains("sticky"));
    // and the healthy root was swept; the refused one left alone.
    assert_eq!(common::live_names(&h.root), Vec::<String>::new());
    assert_eq!(doc["swept_count"], 3, "{doc:#}");
    assert!(open.join("victim/file").is_file());

    // Control: the same root made sticky is swept, and the sweep exits 0.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, doc, stderr) = h.sweep(&[]);
    assert_eq!(code, 0, "{stderr}\n{doc:#}");
    // Swept: its directory with a file, which no repository can record, is
    // kept with why; nothing is refused.
    assert_eq!(
        entry(&doc, &open.join("victim"))["action"],
        "kept",
        "{doc:#}"
    );
    assert_eq!(doc["refused_roots"], serde_json::json!([]), "{doc:#}");
}
