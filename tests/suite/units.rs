//! The shipped systemd units (`units/`): what the issue asks of each, clean
//! under `systemd-analyze verify`, and the reaper's exposure under
//! `systemd-analyze security --offline=true` at most 3.0, with every
//! remaining exposure one the README accepts.
//!
//! `verify` checks that each `Exec*=` program exists and is executable, and
//! the shipped units name `/usr/bin/treeward-*`, which a build host does not
//! have. So it runs with `--root` on a temp root holding a copy of the host's
//! unit library (for `sysinit.target` and the like), the units under
//! `etc/systemd/system` exactly as shipped, and an executable stub at each
//! program path they name. (The real binaries run under the same unit text
//! in tests/suite/e2e_systemd.rs.) Needs `systemd-analyze` (the systemd
//! package): skipped with a reason without it, a failure in CI.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The suite's binaries, all installed to /usr/bin.
const SUITE: [&str; 5] = [
    "treeward",
    "treeward-check",
    "treeward-hook",
    "treeward-reap",
    "treeward-sweep",
];

/// The units shipped in `units/`, installed to /lib/systemd/system.
const UNITS: [&str; 3] = [
    "treeward-sweep.service",
    "treeward-reap.service",
    "treeward-reap.timer",
];

/// The example drop-ins: (shipped file, unit it extends).
const DROP_INS: [(&str, &str); 2] = [
    ("examples/agent.service.d/treeward.conf", "agent.service"),
    (
        "examples/treeward-reap.service.d/user.conf",
        "treeward-reap.service",
    ),
];

/// The exposures `systemd-analyze security` may report for the reaper:
/// each accepted, and explained, in the README ("Running under systemd").
const ACCEPTED: [&str; 12] = [
    "PrivateTmp=",
    "ProtectHome=",
    "ProtectProc=",
    "ProcSubset=",
    "PrivateUsers=",
    "RemoveIPC=",
    "RootDirectory=/RootImage=",
    "RestrictAddressFamilies=~AF_UNIX",
    "SystemCallFilter=~@privileged",
    "SystemCallFilter=~@resources",
    "DeviceAllow=",
    "UMask=",
];

const MAX_EXPOSURE: f64 = 3.0;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("units")
}

fn analyze_available() -> bool {
    common::prerequisite(
        common::sandbox::on_path("systemd-analyze").is_some(),
        "systemd-analyze missing (Debian package systemd)",
    )
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(units_dir().join(rel)).unwrap_or_else(|e| panic!("units/{rel}: {e}"))
}

/// `(key, value)` of every assignment in a unit file's `section`, in order.
fn settings(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            if current == section {
                out.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    out
}

fn value<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The absolute program paths of a unit's `Exec*=` lines, prefixes
/// (`-`, `+`, `@`, `:`, `!`) stripped.
fn programs(text: &str) -> Vec<String> {
    settings(text, "Service")
        .into_iter()
        .filter(|(k, v)| k.starts_with("Exec") && !v.is_empty())
        .filter_map(|(_, v)| {
            let cmd = v.trim_start_matches(['-', '+', '@', ':', '!']);
            cmd.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not run: {e}"))
}

fn text(out: &Output) -> String {
    common::sandbox::text(out)
}

#[test]
fn units_are_what_the_issue_asks() {
    let sweep = read("treeward-sweep.service");
    let s = settings(&sweep, "Service");
    assert_eq!(value(&s, "Type"), Some("oneshot"));
    assert_eq!(value(&s, "User"), None, "the sweep runs as root");
    assert_eq!(programs(&sweep), ["/usr/bin/treeward-sweep"]);
    assert_eq!(
        value(&settings(&sweep, "Install"), "WantedBy"),
        Some("multi-user.target")
    );

    let reap = read("treeward-reap.service");
    let s = settings(&reap, "Service");
    for (key, want) in [
        ("Type", "oneshot"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("StateDirectory", "treeward"),
    ] {
        assert_eq!(value(&s, key), Some(want), "treeward-reap.service {key}=");
    }
    assert!(value(&s, "ProtectHome").is_some_and(|v| v != "no"));
    assert!(value(&s, "ReadWritePaths").is_some_and(|v| v.contains("/tmp/adf-worktrees")));
    assert_eq!(
        value(&s, "PrivateTmp"),
        None,
        "a private /tmp hides /tmp/adf-worktrees"
    );
    let user = value(&s, "User").unwrap();
    assert_ne!(
        user, "root",
        "without its drop-in the reaper must not run as root"
    );
    assert_eq!(programs(&reap), ["/usr/bin/treeward-reap"]);

    let timer = settings(&read("treeward-reap.timer"), "Timer");
    for key in ["OnBootSec", "OnUnitActiveSec", "RandomizedDelaySec"] {
        assert!(
            value(&timer, key).is_some(),
            "treeward-reap.timer lacks {key}="
        );
    }
    assert_eq!(value(&timer, "Persistent"), Some("yes"));

    let agent = read("examples/agent.service.d/treeward.conf");
    let pre: Vec<_> = settings(&agent, "Service")
        .into_iter()
        .filter(|(k, _)| k == "ExecStartPre")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(pre, ["+/usr/bin/treeward-sweep"]);
    assert_eq!(
        value(&settings(&agent, "Unit"), "After"),
        Some("treeward-sweep.service")
    );

    let drop_in = settings(
        &read("examples/treeward-reap.service.d/user.conf"),
        "Service",
    );
    assert!(value(&drop_in, "User").is_some_and(|u| u != "root"));
}

#[test]
fn every_program_the_units_name_is_a_suite_binary() {
    let mut named = BTreeSet::new();
    for rel in UNITS.iter().chain(DROP_INS.iter().map(|(f, _)| f)) {
        for p in programs(&read(rel)) {
            let name = p
                .strip_prefix("/usr/bin/")
                .unwrap_or_else(|| panic!("{rel}: {p} is not in /usr/bin"));
            assert!(SUITE.contains(&name), "{rel}: {p} is not a treeward binary");
            named.insert(name.to_owned());
        }
    }
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["treeward-reap", "treeward-sweep"]
    );
}

/// A root for `systemd-analyze --root`: the host's unit library, the given
/// `(file, path under etc/systemd/system)` pairs, and a stub at every
/// program path they name.
fn analyze_root(files: &[(String, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&lib).unwrap();
    let out = run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(&lib));
    assert!(
        out.status.success(),
        "copying the unit library: {}",
        text(&out)
    );
    for (text, dest) in files {
        common::write(&root.path().join("etc/systemd/system").join(dest), text);
        for program in programs(text) {
            let stub = root.path().join(program.trim_start_matches('/'));
            common::write(&stub, "#!/bin/sh\nexit 0\n");
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    root
}

/// An agent service for the example drop-in to extend.
const AGENT_UNIT: &str = "[Unit]\nDescription=an agent\n\n[Service]\nUser=agent\n\
                          ExecStart=/usr/bin/agent-main\n\n[Install]\nWantedBy=multi-user.target\n";

fn verify(root: &Path, units: &[&str]) {
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(units));
    // Clean means nothing said at all, warnings included.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {units:?}:\n{}",
        text(&out)
    );
}

#[test]
fn every_unit_passes_systemd_analyze_verify_alone_and_with_the_drop_ins() {
    if !analyze_available() {
        return;
    }
    let shipped: Vec<(String, String)> = UNITS.iter().map(|u| (read(u), u.to_string())).collect();
    let mut all = UNITS.to_vec();
    all.push("agent.service");
    let mut files = shipped.clone();
    files.push((AGENT_UNIT.to_owned(), "agent.service".into()));
    verify(analyze_root(&files).path(), &all);

    for (drop_in, unit) in DROP_INS {
        let name = Path::new(drop_in).file_name().unwrap().to_string_lossy();
        files.push((read(drop_in), format!("{unit}.d/{name}")));
    }
    verify(analyze_root(&files).path(), &all);
}

/// The overall exposure `systemd-analyze security` prints, and the names of
/// the settings it marks exposed (`✗`).
fn security(root: Option<&Path>, unit: &str) -> (f64, BTreeSet<String>) {
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["security", "--offline=true", "--no-pager"]);
    match root {
        Some(root) => cmd.arg(format!("--root={}", root.display())).arg(unit),
        None => cmd.arg(units_dir().join(unit)),
    };
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score = stdout
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{}", text(&out)));
    let exposed = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('✗'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    (score, exposed)
}

#[test]
fn the_reaper_exposure_is_at_most_3_and_every_exposure_is_accepted() {
    if !analyze_available() {
        return;
    }
    let with_drop_in = analyze_root(&[
        (
            read("treeward-reap.service"),
            "treeward-reap.service".into(),
        ),
        (
            read("examples/treeward-reap.service.d/user.conf"),
            "treeward-reap.service.d/user.conf".into(),
        ),
    ]);
    for (how, root) in [
        ("as shipped", None),
        ("with the example drop-in", Some(with_drop_in.path())),
    ] {
        let (score, exposed) = security(root, "treeward-reap.service");
        eprintln!("treeward-reap.service {how}: exposure {score:.1}, exposed: {exposed:?}");
        assert!(
            score <= MAX_EXPOSURE,
            "{how}: exposure {score} > {MAX_EXPOSURE}"
        );
        let unexplained: Vec<_> = exposed
            .iter()
            .filter(|e| !ACCEPTED.contains(&e.as_str()))
            .collect();
        assert!(
            unexplained.is_empty(),
            "{how}: exposures neither fixed nor accepted in the README: {unexplained:?}"
        );
    }
}

#[test]
fn the_readme_explains_every_accepted_exposure() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split_once("## Running under systemd")
        .map(|(_, s)| s)
        .expect("README has a \"Running under systemd\" section");
    for exposure in ACCEPTED {
        assert!(
            section.contains(&format!("`{exposure}`")),
            "README does not explain accepting {exposure}"
        );
    }
}
