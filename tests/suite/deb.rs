//! The Debian package: built with cargo-deb from the metadata in Cargo.toml,
//! then inspected the way dpkg sees it (`dpkg-deb -c`, its conffiles, its
//! control fields), its binaries run from the unpacked tree, its man pages
//! rendered with `man`, and the whole judged by lintian; then installed with
//! `dpkg -i` into a throwaway systemd and used as README "Running under
//! systemd" says.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-deb, for the
//! lintian test lintian and man (man-db, with groff), and for the installed
//! package's test root, the systemd sandbox and a dpkg database (see
//! `common::sandbox`): without them a
//! test prints why it skips, except in CI (`CI=true`), where it fails. The
//! package is built once per run, in release mode into the usual target
//! dir; the first build takes a few minutes.

use crate::common;

use common::sandbox::{self, field, Sandbox, Units};
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
        let _busy = common::busy();
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

/// The agents' user inside the sandbox of
/// [`the_installed_package_sweeps_and_reaps_under_systemd`].
const AGENT: u32 = 4242;
/// The shipped configuration's root with `owner = "agent"`, and where the
/// agents' repositories are: the paths of the installed example drop-in's
/// `ReadWritePaths=`. Nothing installed needs editing for them.
const ROOT: &str = "/var/lib/agents/worktrees";
const REPOS: &str = "/var/lib/agents/repos";
const REPO: &str = "/var/lib/agents/repos/project";
/// The main process of the operator's agent service.
const AGENT_MAIN: &str = "/opt/agent/main";
/// What the agent runs git with: no user or system configuration, an
/// identity.
const AGENT_ENV: &str = "export HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1 \
    GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=Agent GIT_AUTHOR_EMAIL=agent@example.org \
    GIT_COMMITTER_NAME=Agent GIT_COMMITTER_EMAIL=agent@example.org\n";

/// The test's clock for the installed timer: a pass 1 s after it starts,
/// then 2 s after each pass, on time (as shipped: 10 min after boot, then
/// 15 min after each pass, ±2 min). An empty `OnBootSec=` drops every
/// shipped trigger.
const TIMER_NOW: &str = "[Timer]\nOnBootSec=\nOnUnitActiveSec=\nOnActiveSec=1s\n\
    OnUnitActiveSec=2s\nRandomizedDelaySec=0\nAccuracySec=10ms\n";

/// The commands of README "Running under systemd" (its first `sh` block),
/// which an operator runs once the package is installed.
fn readme_systemd_commands() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split_once("\n## Running under systemd\n")
        .expect("README has a section \"Running under systemd\"")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("README \"Running under systemd\" has an sh block")
        .1;
    block.split_once("```").unwrap().0.to_owned()
}

/// Every file (not directory) below `dir`, as `prefix` + its path from
/// `dir`.
fn files_below(dir: &Path, prefix: &str) -> Vec<String> {
    let mut files: Vec<String> = common::snapshot(dir)
        .into_iter()
        .filter(|(_, (mode, ..))| mode & 0o170000 != 0o040000)
        .map(|(path, _)| {
            format!(
                "{prefix}{}",
                path.strip_prefix(dir).unwrap().to_string_lossy()
            )
        })
        .collect();
    files.sort();
    files
}

/// The package installed for real, then used as README "Running under
/// systemd" says, in a throwaway systemd ([`Sandbox::boot_for_dpkg`]):
///
/// - `dpkg -i` installs it (real dpkg, real maintainer scripts): dpkg
///   records it as installed, puts its files — and nothing else — in
///   `/usr`, the shipped configuration in `/etc/treeward/config.toml`, and
///   its postinst creates `/var/lib/treeward`; nothing is enabled or started.
/// - An agent service (the operator's own unit) that starts on the residue
///   of a previous run — a clean worktree and a dirty one under the shipped
///   configuration's root `/var/lib/agents/worktrees` — fails its own check
///   (the control), and the installed reap service, without its drop-in,
///   refuses to start (no `User=`).
/// - The README's commands, run as written, copy the drop-ins from
///   `/usr/share/doc/treeward/examples/`, enable the boot sweep and the reap
///   timer (here a test drop-in makes the timer fire within seconds).
/// - Started again, the agent's `ExecStartPre=+/usr/bin/treeward-sweep`
///   removes the clean worktree and preserves the dirty one's work under
///   `refs/treeward/preserved/` before the agent's main process runs; the
///   journal holds the installed sweep's `TREEWARD_*` fields.
/// - The installed timer fires `/usr/bin/treeward-reap` as `agent`: a
///   finished worktree is left while it is not released (younger than the
///   grace), and reclaimed at the next pass once the agent has released it.
#[test]
fn the_installed_package_sweeps_and_reaps_under_systemd() {
    if !tools_available() || !sandbox::can_install_packages() {
        return;
    }
    let deb = package();
    let shared = sandbox::shared_dir();
    let copy = shared.path().join("treeward.deb");
    std::fs::copy(deb, &copy).unwrap();
    let usr = shared.path().join("usr");
    std::fs::create_dir(&usr).unwrap();
    let units = Units::new();
    units
        .add("agent.service", &sandbox::agent_unit(Path::new(AGENT_MAIN)))
        .add("treeward-reap.timer.d/test.conf", TIMER_NOW);
    let sb = Sandbox::boot_for_dpkg(&units, &[shared.path()], &usr);
    let run_ok = |what: &str, out: Output| {
        assert!(out.status.success(), "{what}: {}", sandbox::text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // Installed by dpkg.
    let out = run_ok("dpkg -i", sb.dpkg_install(&copy));
    assert!(out.contains("Setting up treeward"), "{out}");
    let status = run_ok(
        "dpkg-query",
        sb.exec(&["dpkg-query", "-W", "-f=${Status} ${Version}", "treeward"]),
    );
    assert_eq!(
        status,
        format!("install ok installed {}-1", env!("CARGO_PKG_VERSION"))
    );
    let mut packaged: Vec<String> = listing(deb)
        .into_iter()
        .filter(|(_, mode)| !mode.starts_with('d'))
        .filter_map(|(path, _)| {
            let path = match path.strip_prefix("/lib/") {
                Some(rest) => format!("/usr/lib/{rest}"),
                None => path,
            };
            path.starts_with("/usr/").then_some(path)
        })
        .collect();
    packaged.sort();
    assert_eq!(
        files_below(&usr, "/usr/"),
        packaged,
        "what dpkg put in /usr is the package's files"
    );
    assert_eq!(
        std::fs::read(sb.host_path("/etc/treeward/config.toml")).unwrap(),
        std::fs::read(repo().join("config/treeward.toml")).unwrap()
    );
    let state_dir = sb.host_path("/var/lib/treeward");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&state_dir).expect("the postinst creates /var/lib/treeward");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755));
    for unit in [
        "treeward-sweep.service",
        "treeward-reap.service",
        "treeward-reap.timer",
    ] {
        let path = sb.property(unit, "FragmentPath");
        assert!(
            path.ends_with(&format!("/lib/systemd/system/{unit}")),
            "{unit} at {path}"
        );
        let enabled = sb.systemctl(&["is-enabled", unit]);
        assert_eq!(
            String::from_utf8_lossy(&enabled.stdout).trim(),
            if unit.ends_with(".service") && unit.contains("reap") {
                "static"
            } else {
                "disabled"
            },
            "installing enables nothing: {unit}"
        );
        assert_eq!(sb.property(unit, "ActiveState"), "inactive", "{unit}");
    }

    // The residue of the agents' previous run, made by the agent: a clean
    // worktree and a dirty one.
    sb.adduser("agent", AGENT);
    run_ok(
        "the agents' directories",
        sb.exec(&[
            "sh",
            "-ec",
            &format!(
                "install -d -m 0755 /var/lib/agents\n\
                 install -d -o agent -g agent -m 0755 {REPOS} {ROOT}"
            ),
        ]),
    );
    let plant = format!(
        "{AGENT_ENV}set -e\ncd {REPOS}\n\
         git init -q --bare -b main origin.git\n\
         git init -q -b main project && cd project\n\
         echo hello > README && git add README && git commit -q -m initial\n\
         git remote add origin {REPOS}/origin.git\n\
         git push -q -u origin main && git remote set-head origin main\n\
         git worktree add -q -b task-clean {ROOT}/sess-clean main\n\
         git worktree add -q -b task-dirty {ROOT}/sess-dirty main\n\
         echo '{unsaved}' >> {ROOT}/sess-dirty/README\n\
         echo '{untracked}' > {ROOT}/sess-dirty/notes.txt\n",
        unsaved = sandbox::UNSAVED_WORK,
        untracked = sandbox::UNTRACKED_WORK,
    );
    run_ok("planting the residue", sb.sh_as("agent", &plant));
    sb.write(
        AGENT_MAIN,
        &sandbox::agent_main(Path::new(ROOT), Path::new(REPO), &[]),
        0o755,
    );
    let root = sb.host_path(ROOT);
    assert_eq!(common::live_names(&root), ["sess-clean", "sess-dirty"]);

    // The controls. Without the drop-in, the agent starts on the residue,
    // and its check says so.
    let out = sb.systemctl(&["start", "agent.service"]);
    assert!(!out.status.success(), "{}", sandbox::text(&out));
    assert_eq!(sb.outcome("agent.service"), ("exit-code".into(), 1));
    let agent_journal = || sb.journal(&["-u", "agent.service", "-o", "verbose"]);
    assert!(
        sb.wait_entry("agent.service", |e| field(e, "MESSAGE")
            .is_some_and(|m| m.contains("residue at start")))
            .is_some(),
        "{}",
        agent_journal()
    );
    assert!(
        sb.entries("agent.service")
            .iter()
            .all(|e| e.get("TREEWARD_SWEPT").is_none()),
        "no sweep ran: {}",
        agent_journal()
    );
    assert_eq!(common::live_names(&root), ["sess-clean", "sess-dirty"]);
    // Without its drop-in, the installed reaper refuses to start (its
    // placeholder User= names no account) rather than run as root.
    let out = sb.systemctl(&["start", "treeward-reap.service"]);
    assert!(!out.status.success(), "{}", sandbox::text(&out));
    assert_eq!(
        sb.outcome("treeward-reap.service"),
        ("exit-code".into(), 217),
        "217/USER"
    );

    // The README's commands, as written; the example drop-in's User= and
    // paths fit this host, so the editor changes nothing.
    let commands = readme_systemd_commands();
    run_ok(
        "README \"Running under systemd\"",
        sb.exec(&["env", "EDITOR=true", "sh", "-exc", &commands]),
    );
    for (installed, shipped) in [
        (
            "agent.service.d/treeward.conf",
            "units/examples/agent.service.d/treeward.conf",
        ),
        (
            "treeward-reap.service.d/user.conf",
            "units/examples/treeward-reap.service.d/user.conf",
        ),
    ] {
        assert_eq!(
            std::fs::read(units.path().join(installed)).unwrap(),
            std::fs::read(repo().join(shipped)).unwrap(),
            "/etc/systemd/system/{installed}"
        );
    }
    assert!(
        sb.property("agent.service", "DropInPaths")
            .contains("/etc/systemd/system/agent.service.d/treeward.conf"),
        "{}",
        sb.property("agent.service", "DropInPaths")
    );
    for unit in ["treeward-sweep.service", "treeward-reap.timer"] {
        let enabled = sb.systemctl(&["is-enabled", unit]);
        assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "enabled");
    }
    assert_eq!(sb.property("treeward-reap.timer", "ActiveState"), "active");

    // The agent starts again: the installed sweep clears the residue first,
    // as root, preserving the dirty work; then the agent's check passes.
    let out = sb.systemctl(&["start", "agent.service"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        sandbox::text(&out),
        agent_journal()
    );
    assert_eq!(sb.outcome("agent.service"), ("success".into(), 0));
    let summary = sb
        .wait_entry("agent.service", |e| e.get("TREEWARD_SWEPT").is_some())
        .unwrap_or_else(|| panic!("no TREEWARD_SWEPT in the journal:\n{}", agent_journal()));
    for (name, want) in [
        ("TREEWARD_SWEPT", "2"),
        ("TREEWARD_PRESERVED", "1"),
        ("TREEWARD_FAILED", "0"),
        ("TREEWARD_REFUSED", "0"),
        ("SYSLOG_IDENTIFIER", "treeward-sweep"),
        ("_EXE", "/usr/bin/treeward-sweep"),
        ("_UID", "0"),
    ] {
        assert_eq!(field(&summary, name), Some(want), "{name} in {summary:#}");
    }
    assert!(
        sb.wait_entry("agent.service", |e| field(e, "MESSAGE")
            .is_some_and(|m| m.starts_with("agent: clean start")))
            .is_some(),
        "{}",
        agent_journal()
    );
    assert!(common::live_names(&root).is_empty());
    let preserved = run_ok(
        "the preserved refs",
        sb.sh_as(
            "agent",
            &format!("{AGENT_ENV}git -C {REPO} for-each-ref --format='%(refname)' refs/treeward/"),
        ),
    );
    assert!(
        preserved.lines().any(|r| r.ends_with("/work"))
            && preserved
                .lines()
                .all(|r| r.starts_with("refs/treeward/preserved/sess-dirty/")),
        "{preserved}"
    );

    // While the agent works, the installed timer runs the reaper as the
    // agent. A worktree it has finished with stays until it is released
    // (it is younger than the grace)...
    let made = std::time::SystemTime::now();
    run_ok(
        "a worktree the agent finishes with",
        sb.sh_as(
            "agent",
            &format!("{AGENT_ENV}git -C {REPO} worktree add -q -b task-done {ROOT}/sess-done main"),
        ),
    );
    let reap_journal = || sb.journal(&["-u", "treeward-reap.service", "-o", "verbose"]);
    let patience = std::time::Duration::from_secs(30);
    let young = sb
        .wait_entry_for("treeward-reap.service", patience, |e| {
            sandbox::logged_after(e, made) && e.get("TREEWARD_YOUNG").is_some()
        })
        .unwrap_or_else(|| panic!("the timer ran no pass:\n{}", reap_journal()));
    assert_eq!(field(&young, "TREEWARD_YOUNG"), Some("1"), "{young:#}");
    assert_eq!(field(&young, "TREEWARD_SWEPT"), Some("0"), "{young:#}");
    assert_eq!(common::live_names(&root), ["sess-done"]);
    // (StateDirectory= gave the ledger's directory to the reaper's user.)
    assert_eq!(std::fs::metadata(&state_dir).unwrap().uid(), AGENT);

    // ...and goes at the next pass once the agent releases it.
    let released = std::time::SystemTime::now();
    let out = run_ok(
        "treeward release",
        sb.sh_as(
            "agent",
            &format!("{AGENT_ENV}treeward release --json {ROOT}/sess-done"),
        ),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["state"], "released", "{doc}");
    let id = doc["id"].as_str().unwrap().to_owned();
    let reaped = sb
        .wait_entry_for("treeward-reap.service", patience, |e| {
            sandbox::logged_after(e, released) && field(e, "TREEWARD_SWEPT") == Some("1")
        })
        .unwrap_or_else(|| panic!("no pass reclaimed it:\n{}", reap_journal()));
    for (name, want) in [
        ("TREEWARD_FAILED", "0"),
        ("TREEWARD_REFUSED", "0"),
        ("SYSLOG_IDENTIFIER", "treeward-reap"),
        ("_EXE", "/usr/bin/treeward-reap"),
        ("_UID", &AGENT.to_string()),
    ] {
        assert_eq!(field(&reaped, name), Some(want), "{name} in {reaped:#}");
    }
    assert!(common::live_names(&root).is_empty(), "{}", reap_journal());
    assert_eq!(
        common::ledger_state(&sb.host_path("/var/lib/treeward/ledger.json"), &id),
        "removed"
    );
    let left = run_ok(
        "git after the pass",
        sb.sh_as(
            "agent",
            &format!(
                "{AGENT_ENV}git -C {REPO} worktree list --porcelain; git -C {REPO} branch --list task-done"
            ),
        ),
    );
    assert!(
        !left.contains("sess-done") && !left.contains("task-done"),
        "{left}"
    );
    assert_eq!(sb.property("treeward-reap.service", "User"), "agent");
    assert_eq!(sb.property("treeward-reap.service", "Result"), "success");
}
