//! The Debian package: built with cargo-deb from the metadata in Cargo.toml,
//! then inspected the way dpkg sees it (`dpkg-deb -c`, its conffiles, its
//! control fields), its binaries run from the unpacked tree, its man pages
//! rendered with `man`, and the whole judged by lintian.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-deb, and for
//! the lintian test lintian and man (man-db, with groff): without them a
//! test prints why it skips, except in CI (`CI=true`), where it fails. The
//! package is built once per run, in release mode into the usual target
//! dir; the first build takes a few minutes.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// Builds the package, once for every test of this run, and returns its
/// path (under Cargo's target tmp dir).
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
        std::fs::create_dir_all(&dir).unwrap();
        let deb = dir.join("treeward.deb");
        let _ = std::fs::remove_file(&deb);
        ok(Command::new(cargo())
            .args(["deb", "--locked", "--output"])
            .arg(&deb)
            .current_dir(repo()));
        deb
    })
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
const FILES: [(&str, &str, &str); 10] = [
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
    (
        "/usr/share/doc/treeward/copyright",
        "debian/copyright",
        "-rw-r--r--",
    ),
    (
        "/usr/share/lintian/overrides/treeward",
        "debian/treeward.lintian-overrides",
        "-rw-r--r--",
    ),
];

#[test]
fn the_package_installs_the_suite_and_its_binaries_run() {
    if !tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let deb = package();

    // What dpkg would install, and with which modes.
    let files = listing(deb);
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
    let conffiles = ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/treeward/config.toml");
    let name = ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Package"));
    assert_eq!(name.trim(), "treeward");

    // Unpacked, each file is the repository's.
    let root = tmp.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    for (installed, source, _) in FILES {
        assert_eq!(
            std::fs::read(root.join(installed.trim_start_matches('/'))).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{installed}"
        );
    }

    // The ledger's directory: the postinst applies the tmpfiles entry.
    let postinst = ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("postinst"));
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

/// Where the package puts each binary's man page and completions, and the
/// repository file each comes from: (installed path, repository file).
/// Man pages are gzipped by cargo-deb.
fn docs_of(bin: &str) -> [(String, String); 4] {
    [
        (
            format!("/usr/share/man/man1/{bin}.1.gz"),
            format!("man/{bin}.1"),
        ),
        (
            format!("/usr/share/bash-completion/completions/{bin}"),
            format!("completions/bash/{bin}"),
        ),
        (
            format!("/usr/share/zsh/vendor-completions/_{bin}"),
            format!("completions/zsh/_{bin}"),
        ),
        (
            format!("/usr/share/fish/vendor_completions.d/{bin}.fish"),
            format!("completions/fish/{bin}.fish"),
        ),
    ]
}

/// lintian finds no error and no warning (overrides, each with its reason,
/// are in debian/treeward.lintian-overrides); the man pages and completions
/// are where man, bash-completion, zsh and fish look, and each page renders
/// without a warning from man and groff.
#[test]
fn lintian_passes_and_the_man_pages_and_completions_are_in_place() {
    if !tools_available()
        || !common::prerequisite(
            common::sandbox::on_path("lintian").is_some(),
            "lintian missing (Debian package lintian)",
        )
        || !common::prerequisite(
            common::sandbox::on_path("man").is_some()
                && common::sandbox::on_path("groff").is_some(),
            "man or groff missing (Debian packages man-db and groff-base)",
        )
    {
        return;
    }
    let deb = package();

    // --allow-root: CI runs as root, and lintian only reads the .deb.
    let out = run(Command::new("lintian")
        .args(["--allow-root", "--fail-on", "error,warning"])
        .arg(deb));
    let report = common::sandbox::text(&out);
    let count = |level: &str| report.lines().filter(|l| l.starts_with(level)).count();
    assert_eq!(
        (count("E: "), count("W: ")),
        (0, 0),
        "lintian: errors and warnings:\n{report}"
    );
    assert!(out.status.success(), "lintian failed:\n{report}");

    let files = listing(deb);
    let mut expected: Vec<(String, String)> = crate_binaries()
        .iter()
        .flat_map(|bin| docs_of(bin))
        .collect();
    expected.push((
        "/usr/share/man/man5/treeward.toml.5.gz".into(),
        "man/treeward.toml.5".into(),
    ));
    expected.push((
        "/usr/share/doc/treeward/changelog.Debian.gz".into(),
        "debian/changelog".into(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    for (installed, source) in &expected {
        assert_eq!(
            files.get(installed).map(String::as_str),
            Some("-rw-r--r--"),
            "{installed} in {files:#?}"
        );
        let unpacked = root.join(installed.trim_start_matches('/'));
        let bytes = if installed.ends_with(".gz") {
            run(Command::new("gzip").arg("-dc").arg(&unpacked)).stdout
        } else {
            std::fs::read(&unpacked).unwrap()
        };
        assert_eq!(
            bytes,
            std::fs::read(repo().join(source)).unwrap(),
            "{installed}"
        );
    }

    // Each page renders, and neither man nor groff has a word to say.
    let pages = expected
        .iter()
        .map(|(installed, _)| installed)
        .filter(|p| p.starts_with("/usr/share/man/"));
    for page in pages {
        let out = run(Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(root.join(page.trim_start_matches('/')))
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "80"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "man -l {page}: {}",
            common::sandbox::text(&out)
        );
        let name = Path::new(page).file_name().unwrap().to_string_lossy();
        let title = name.trim_end_matches(".gz").rsplit_once('.').unwrap().0;
        assert!(text.contains("NAME"), "{page}: {text}");
        assert!(text.contains(&title.to_uppercase()), "{page}: {text}");
    }

    // The package's maintainer is the changelog's.
    let maintainer = ok(Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Maintainer"));
    assert_eq!(maintainer.trim(), changelog_maintainer());
}

/// The newest entry of debian/changelog: its first line and its maintainer.
fn changelog() -> String {
    std::fs::read_to_string(repo().join("debian/changelog")).unwrap()
}

fn changelog_maintainer() -> String {
    let text = changelog();
    let trailer = text.lines().find(|l| l.starts_with(" -- ")).unwrap();
    trailer[4..].split_once(">  ").unwrap().0.to_owned() + ">"
}

/// debian/changelog's newest entry is this version, revision 1 (cargo-deb's
/// default), by the maintainer Cargo.toml names: lintian reads the
/// changelog, and the man pages take their date from it. Needs no tool.
#[test]
fn the_debian_changelog_is_this_version_by_this_maintainer() {
    let text = changelog();
    let first = text.lines().next().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        first.starts_with(&format!("treeward ({version}-1) ")),
        "debian/changelog starts with {first:?}: add an entry for {version}-1"
    );
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let maintainer = manifest["package"]["metadata"]["deb"]["maintainer"]
        .as_str()
        .unwrap();
    assert_eq!(changelog_maintainer(), maintainer);
}
