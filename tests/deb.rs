//! The Debian package: built with cargo-deb from the metadata in Cargo.toml,
//! then inspected the way dpkg sees it (`dpkg-deb -c`, its conffiles, its
//! control fields) and its binaries run from the unpacked tree.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`) and dpkg-deb: without
//! them the test prints why it skips, except in CI (`CI=true`), where it
//! fails. The package is built in release mode into the usual target dir;
//! the first build takes a few minutes.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not run: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        common::sandbox::text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools_available() -> bool {
    let cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    common::prerequisite(
        cargo_deb,
        "cargo-deb missing (cargo install cargo-deb --locked)",
    ) && common::prerequisite(
        common::sandbox::on_path("dpkg-deb").is_some(),
        "dpkg-deb missing (Debian package dpkg)",
    )
}

/// Builds the package into `dir` and returns its path.
fn build(dir: &Path) -> PathBuf {
    let deb = dir.join("treeward.deb");
    ok(Command::new(cargo())
        .args(["deb", "--locked", "--output"])
        .arg(&deb)
        .current_dir(repo()));
    deb
}

/// `dpkg-deb -c`: path (without the leading `.`) → permissions string.
fn listing(deb: &Path) -> BTreeMap<String, String> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let mode = cols.next()?.to_owned();
            let path = cols.last()?.strip_prefix('.')?.trim_end_matches('/');
            Some((path.to_owned(), mode))
        })
        .collect()
}

/// The binaries the crate builds: the stems of `src/bin/*.rs`.
fn crate_binaries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("src/bin"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "rs").then(|| path.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    names.sort();
    names
}

/// What the package must hold, from the repository: (installed path,
/// repository file, mode).
const FILES: [(&str, &str, &str); 8] = [
    (
        "/lib/systemd/system/treeward-sweep.service",
        "units/treeward-sweep.service",
        "-rw-r--r--",
    ),
    (
        "/lib/systemd/system/treeward-reap.service",
        "units/treeward-reap.service",
        "-rw-r--r--",
    ),
    (
        "/lib/systemd/system/treeward-reap.timer",
        "units/treeward-reap.timer",
        "-rw-r--r--",
    ),
    (
        "/etc/treeward/config.toml",
        "config/treeward.toml",
        "-rw-r--r--",
    ),
    (
        "/usr/share/treeward/hooks/post-checkout",
        "hooks/post-checkout",
        "-rwxr-xr-x",
    ),
    (
        "/usr/lib/tmpfiles.d/treeward.conf",
        "debian/tmpfiles.conf",
        "-rw-r--r--",
    ),
    (
        "/usr/share/doc/treeward/examples/agent.service.d/treeward.conf",
        "units/examples/agent.service.d/treeward.conf",
        "-rw-r--r--",
    ),
    (
        "/usr/share/doc/treeward/examples/treeward-reap.service.d/user.conf",
        "units/examples/treeward-reap.service.d/user.conf",
        "-rw-r--r--",
    ),
];

#[test]
fn the_package_installs_the_suite_and_its_binaries_run() {
    if !tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let deb = build(tmp.path());

    // What dpkg would install, and with which modes.
    let files = listing(&deb);
    let in_bin: Vec<&str> = files
        .keys()
        .filter_map(|p| p.strip_prefix("/usr/bin/"))
        .collect();
    assert_eq!(in_bin, crate_binaries(), "every binary, and only those");
    for bin in &in_bin {
        assert_eq!(files[&format!("/usr/bin/{bin}")], "-rwxr-xr-x", "{bin}");
    }
    for (installed, _, mode) in FILES {
        assert_eq!(
            files.get(installed).map(String::as_str),
            Some(mode),
            "{installed} in {files:#?}"
        );
    }

    // Only the configuration is a conffile: upgrades keep the admin's edits.
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/treeward/config.toml");
    let package = ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package"));
    assert_eq!(package.trim(), "treeward");

    // Unpacked, each file is the repository's.
    let root = tmp.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for (installed, source, _) in FILES {
        assert_eq!(
            std::fs::read(root.join(installed.trim_start_matches('/'))).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{installed}"
        );
    }

    // The ledger's directory: the postinst applies the tmpfiles entry.
    let postinst = ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    assert!(
        postinst.contains("systemd-tmpfiles --create treeward.conf"),
        "{postinst}"
    );
    if common::sandbox::on_path("systemd-tmpfiles").is_some() {
        ok(Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.display()))
            .arg("--create")
            .arg(root.join("usr/lib/tmpfiles.d/treeward.conf")));
        assert!(root.join("var/lib/treeward").is_dir());
    }

    // The installed binaries run.
    for bin in &in_bin {
        let version = ok(Command::new(root.join("usr/bin").join(bin)).arg("--version"));
        assert_eq!(
            version.trim(),
            format!("{bin} {}", env!("CARGO_PKG_VERSION")),
            "{bin} --version"
        );
    }
    sweep_plans_without_touching(&root.join("usr/bin/treeward-sweep"), tmp.path());
}

/// The packaged sweep, on a root with one plain directory: `--dry-run`
/// plans its removal and leaves it there.
fn sweep_plans_without_touching(sweep: &Path, tmp: &Path) {
    let wt = tmp.join("work/wt");
    common::write(&wt.join("sess-1/file"), "x\n");
    let cfg = common::config_file(&tmp.join("work"), &wt, "");
    let out = run(Command::new(sweep)
        .args(["--dry-run", "--json", "--config"])
        .arg(&cfg));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        common::sandbox::text(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["entries"][0]["action"], "planned", "{doc}");
    assert!(wt.join("sess-1/file").is_file());
}
