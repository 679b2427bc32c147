//! treeward under a real systemd (a `systemd-sandbox` container): the
//! shipped units and drop-in, started the way a host starts them.
//!
//! Root-only (the sandbox needs it): skipped with a printed reason
//! elsewhere, a failure in CI (`CI=true`), where `.ci/run` installs the
//! sandbox's systemd-container.

use crate::common;

use common::sandbox::{self, agent_unit, field, Sandbox, Units};
use common::{chown_r, git_as, write, Fixture};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const AGENT: u32 = 4242;
const SWEEP: &str = env!("CARGO_BIN_EXE_treeward-sweep");

/// A repository owned by the agent, and residue of a previous life under
/// its root `<shared>/wt` (patterns `sess-*`): a clean worktree, a dirty
/// one, an agent-owned plain directory (a crash between `mkdir` and
/// `git worktree add`) and a root-owned directory; `other-1`, a worktree the
/// patterns do not own, must survive.
struct Residue {
    f: Fixture,
    root: PathBuf,
}

impl Residue {
    fn plant() -> Residue {
        // Out of /tmp (where a container's systemd may mount a tmpfs), under a
        // directory only root can write: a repository treeward may act on.
        let f = Fixture::new_in(&common::strict_base());
        std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = f.tmp.path().join("wt");
        f.worktree("sess-clean", "task-clean");
        let dirty = f.worktree("sess-dirty", "task-dirty");
        write(
            &dirty.join("README"),
            &format!("hello\n{}\n", sandbox::UNSAVED_WORK),
        );
        write(
            &dirty.join("notes.txt"),
            &format!("{}\n", sandbox::UNTRACKED_WORK),
        );
        f.worktree("other-1", "task-other");
        // A crash between `mkdir` and `git worktree add`: directories only
        // (a directory with files would be work no repository can record,
        // kept under `preserve`).
        std::fs::create_dir_all(root.join("sess-plain/half-made")).unwrap();
        chown_r(&f.repo, AGENT);
        chown_r(&f.origin, AGENT);
        chown_r(&root, AGENT);
        // Root's residue the agent cannot remove: a directory tree of
        // root's, mode 0700 (no files in it: those would be kept, as work
        // no repository can record).
        let rooty = root.join("sess-root");
        std::fs::create_dir_all(rooty.join("cache")).unwrap();
        std::fs::set_permissions(&rooty, std::fs::Permissions::from_mode(0o700)).unwrap();
        Residue { f, root }
    }

    fn shared(&self) -> &Path {
        self.f.tmp.path()
    }

    /// Names in the root, the trash aside.
    fn live(&self) -> Vec<String> {
        common::live_names(&self.root)
    }

    /// The preserved sets (`<name>/<stamp>`) in the repository.
    fn preserved_sets(&self) -> Vec<String> {
        let mut sets: Vec<String> = self
            .preserved_refs()
            .iter()
            .filter_map(|r| {
                let rest = r.strip_prefix("refs/treeward/preserved/")?;
                let mut parts = rest.splitn(3, '/');
                Some(format!("{}/{}", parts.next()?, parts.next()?))
            })
            .collect();
        sets.dedup();
        sets
    }

    fn preserved_refs(&self) -> Vec<String> {
        git_as(
            AGENT,
            &self.f.repo,
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/treeward/preserved/",
            ],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// The configuration for this root.
    fn config(&self, owner: &str) -> String {
        format!(
            "ledger = \"/var/lib/treeward/ledger.json\"\n\n[[root]]\npath = \"{}\"\n\
             patterns = [\"sess-*\"]\npolicy = \"preserve\"\n{owner}",
            self.root.display()
        )
    }

    /// The agent's main process ([`sandbox::agent_main`]), in the shared
    /// directory: `other-1`, an entry the patterns do not own, must still be
    /// there.
    fn agent_script(&self) -> PathBuf {
        let path = self.shared().join("agent-main.sh");
        std::fs::write(
            &path,
            sandbox::agent_main(&self.root, &self.f.repo, &["other-1"]),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// SPEC "Service layout" (a): `systemctl start agent.service` with the
/// shipped drop-in sweeps first, as root; the agent's main process then
/// finds its root clear and its dirty work preserved, and the journal holds
/// the sweep's structured fields. A twin service without the drop-in, started
/// first on the same residue, fails its own check: the check can fail.
#[test]
fn the_drop_in_sweeps_before_the_agent_starts() {
    if !sandbox::available() {
        return;
    }
    let r = Residue::plant();
    let script = r.agent_script();
    let units = Units::new();
    units
        .add("agent.service", &agent_unit(&script))
        .ship(
            "units/examples/agent.service.d/treeward.conf",
            "agent.service.d/treeward.conf",
        )
        .add("bare-agent.service", &agent_unit(&script))
        .ship("units/treeward-sweep.service", "treeward-sweep.service");
    let sb = Sandbox::boot(
        &units,
        &[("treeward-sweep", Path::new(SWEEP))],
        &[r.shared()],
    );
    sb.adduser("agent", AGENT);
    sb.write(
        "/etc/treeward/config.toml",
        &r.config("owner = \"agent\"\n"),
        0o644,
    );

    // Without the drop-in the agent meets the residue.
    let out = sb.systemctl(&["start", "bare-agent.service"]);
    assert!(!out.status.success(), "{}", sandbox::text(&out));
    assert_eq!(sb.outcome("bare-agent.service"), ("exit-code".into(), 1));
    assert!(
        sb.wait_entry("bare-agent.service", |e| field(e, "MESSAGE")
            .is_some_and(|m| m.contains("residue at start")))
            .is_some(),
        "{}",
        sb.journal(&["-u", "bare-agent.service"])
    );
    assert_eq!(
        r.live(),
        [
            "other-1",
            "sess-clean",
            "sess-dirty",
            "sess-plain",
            "sess-root"
        ]
    );

    let out = sb.systemctl(&["start", "agent.service"]);
    let journal = || sb.journal(&["-u", "agent.service", "-o", "verbose"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        sandbox::text(&out),
        journal()
    );
    assert_eq!(
        sb.outcome("agent.service"),
        ("success".into(), 0),
        "{}",
        journal()
    );
    let summary = sb
        .wait_entry("agent.service", |e| e.get("TREEWARD_SWEPT").is_some())
        .unwrap_or_else(|| panic!("no TREEWARD_SWEPT in the journal:\n{}", journal()));
    for (name, want) in [
        ("TREEWARD_SWEPT", "4"),
        ("TREEWARD_PRESERVED", "1"),
        ("TREEWARD_FAILED", "0"),
        ("TREEWARD_BACKLOG", "4"),
        ("TREEWARD_ROOT_OWNED_SKIPPED", "0"),
        ("TREEWARD_PRUNE_SUCCEEDED", "true"),
        ("SYSLOG_IDENTIFIER", "treeward-sweep"),
    ] {
        assert_eq!(field(&summary, name), Some(want), "{name} in {summary:#}");
    }
    assert!(
        sb.wait_entry("agent.service", |e| field(e, "MESSAGE")
            .is_some_and(|m| m.starts_with("agent: clean start")))
            .is_some(),
        "{}",
        journal()
    );
    // And from outside: the root holds only what the patterns do not own.
    assert_eq!(r.live(), ["other-1"]);
    assert_eq!(r.preserved_sets().len(), 1, "{:?}", r.preserved_refs());
    // The summary is one journal record, with its fields: stdout, which is
    // the journal too, carries only the entries.
    let summaries = sb
        .entries("agent.service")
        .into_iter()
        .filter(|e| field(e, "MESSAGE").is_some_and(|m| m.contains("preserved then removed 1")))
        .count();
    assert_eq!(summaries, 1, "{}", journal());
    // The owner worker logs under the sweep's name, not as `exe`.
    assert!(
        sb.entries("agent.service")
            .iter()
            .all(|e| field(e, "SYSLOG_IDENTIFIER") != Some("exe")),
        "{}",
        journal()
    );
}

/// The shipped `treeward-sweep.service`, enabled, runs at boot before
/// multi-user.target is reached: the residue is gone (the dirty work
/// preserved) by the time the system is up, with nothing failed.
#[test]
fn the_boot_unit_sweeps_while_the_system_comes_up() {
    if !sandbox::available() {
        return;
    }
    let r = Residue::plant();
    // At boot the sandbox knows no `agent` account yet: a root owned by
    // root, and the agent's uid as its `owner` by number.
    std::os::unix::fs::chown(&r.root, Some(0), Some(0)).unwrap();
    let config = r.shared().join("treeward.toml");
    std::fs::write(&config, r.config(&format!("owner = \"{AGENT}\"\n"))).unwrap();
    let units = Units::new();
    units
        .ship("units/treeward-sweep.service", "treeward-sweep.service")
        .add(
            "treeward-sweep.service.d/e2e.conf",
            &format!(
                "[Service]\nEnvironment=TREEWARD_CONFIG={}\n",
                config.display()
            ),
        )
        .enable("treeward-sweep.service", "multi-user.target");
    let sb = Sandbox::boot(
        &units,
        &[("treeward-sweep", Path::new(SWEEP))],
        &[r.shared()],
    );
    let journal = || sb.journal(&["-u", "treeward-sweep.service", "-o", "verbose"]);
    assert_eq!(
        sb.outcome("treeward-sweep.service"),
        ("success".into(), 0),
        "{}",
        journal()
    );
    assert_ne!(
        sb.property("treeward-sweep.service", "ExecMainStartTimestampMonotonic"),
        "0",
        "it did not run at boot"
    );
    assert_eq!(r.live(), ["other-1"], "{}", journal());
    assert_eq!(r.preserved_sets().len(), 1, "{:?}", r.preserved_refs());
    let summary = sb
        .wait_entry("treeward-sweep.service", |e| {
            e.get("TREEWARD_SWEPT").is_some()
        })
        .unwrap_or_else(|| panic!("no summary in the journal:\n{}", journal()));
    assert_eq!(field(&summary, "TREEWARD_SWEPT"), Some("4"));
    assert_eq!(field(&summary, "TREEWARD_FAILED"), Some("0"));
}

const REAP: &str = env!("CARGO_BIN_EXE_treeward-reap");

/// The fixture's directory (shared with the sandbox, searchable by all) and
/// its root `<shared>/wt`, with the repository, its origin and the root
/// handed to the agent.
fn hand_to_agent(f: &Fixture) -> (&Path, PathBuf) {
    let shared = f.tmp.path();
    std::fs::set_permissions(shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = shared.join("wt");
    std::fs::create_dir_all(&root).unwrap();
    for p in [&f.repo, &f.origin, &root] {
        chown_r(p, AGENT);
    }
    (shared, root)
}

/// A ledger record, as the hook or `treeward release` writes one.
fn record(id: &str, path: &Path, repo: &Path, state: &str) -> Value {
    serde_json::json!({
        "id": id, "path": path, "repository": repo.join(".git"), "uid": AGENT,
        "created_at": "2026-01-01T00:00:00Z", "last_transition": "2026-01-01T00:00:00Z",
        "state": state,
    })
}

/// SPEC "Service layout" (b): the shipped `treeward-reap.timer`, shortened
/// by a test drop-in, fires the shipped, hardened `treeward-reap.service` as
/// the agent: a released worktree is reclaimed; a released worktree with a
/// running process inside is not.
#[test]
fn the_reap_timer_reclaims_released_worktrees_but_not_busy_ones() {
    if !sandbox::available() {
        return;
    }
    let f = Fixture::new_in(&common::strict_base());
    let released = f.worktree("sess-released", "task-released");
    let busy = f.worktree("sess-busy", "task-busy");
    let (shared, root) = hand_to_agent(&f);
    let units = Units::new();
    units
        .ship("units/treeward-reap.service", "treeward-reap.service")
        .ship("units/treeward-reap.timer", "treeward-reap.timer")
        .add(
            "treeward-reap.service.d/user.conf",
            &format!(
                "[Service]\nUser=agent\nReadWritePaths=\nReadWritePaths={}\n",
                shared.display()
            ),
        )
        .add(
            "treeward-reap.timer.d/e2e.conf",
            "[Timer]\nOnBootSec=\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=2s\n\
             RandomizedDelaySec=0\nAccuracySec=10ms\n",
        );
    let sb = Sandbox::boot(&units, &[("treeward-reap", Path::new(REAP))], &[shared]);
    sb.adduser("agent", AGENT);
    sb.write(
        "/etc/treeward/config.toml",
        &format!(
            "[[root]]\npath = \"{}\"\npatterns = [\"sess-*\"]\nowner = \"agent\"\n",
            root.display()
        ),
        0o644,
    );
    // The default ledger, in the directory the unit's StateDirectory= hands
    // to its user.
    let doc = serde_json::json!({"schema": 1, "records": [
        record("rel", &released, &f.repo, "released"),
        record("busy", &busy, &f.repo, "released"),
    ]});
    sb.write(
        "/var/lib/treeward/ledger.json",
        &serde_json::to_string_pretty(&doc).unwrap(),
        0o644,
    );
    let ledger = sb.host_path("/var/lib/treeward/ledger.json");
    chown_r(ledger.parent().unwrap(), AGENT);
    // An agent still working in sess-busy.
    let busy_dir = format!("--working-directory={}", busy.display());
    let out = sb.exec(&[
        "systemd-run",
        "--uid=agent",
        "--gid=agent",
        "--unit=busy-agent",
        &busy_dir,
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", sandbox::text(&out));

    let out = sb.systemctl(&["start", "treeward-reap.timer"]);
    assert!(out.status.success(), "{}", sandbox::text(&out));
    let journal = || sb.journal(&["-u", "treeward-reap.service", "-o", "verbose"]);
    let summary = sb
        .wait_entry_for(
            "treeward-reap.service",
            std::time::Duration::from_secs(30),
            |e| e.get("TREEWARD_SWEPT").is_some(),
        )
        .unwrap_or_else(|| panic!("the timer never ran a pass:\n{}", journal()));
    assert_eq!(field(&summary, "TREEWARD_SWEPT"), Some("1"), "{summary:#}");
    assert_eq!(field(&summary, "TREEWARD_IN_USE"), Some("1"), "{summary:#}");
    assert_eq!(field(&summary, "TREEWARD_FAILED"), Some("0"), "{summary:#}");
    assert_eq!(sb.outcome("treeward-reap.service"), ("success".into(), 0));
    assert_eq!(sb.property("treeward-reap.service", "User"), "agent");
    assert!(!released.exists(), "the released worktree was reclaimed");
    assert!(busy.join("README").is_file(), "the busy one was not");
    let state = |id: &str| common::ledger_state(&ledger, id);
    assert_eq!(
        (state("rel"), state("busy")),
        (Value::from("removed"), Value::from("released"))
    );
}

const HOOK: &str = env!("CARGO_BIN_EXE_treeward-hook");
const ADMIN: &str = env!("CARGO_BIN_EXE_treeward");

/// SPEC "Service layout" (c): `treeward install-hook` (run by root, which
/// installs it as the repository's owner), then the agent user creates a
/// worktree inside the container with plain `git worktree add`: the hook
/// records it in the ledger, as the agent, and `treeward list --json`
/// shows it `active`.
#[test]
fn a_worktree_the_agent_adds_is_recorded_by_the_installed_hook() {
    if !sandbox::available() {
        return;
    }
    let f = Fixture::new_in(&common::strict_base());
    let (shared, root) = hand_to_agent(&f);
    let units = Units::new();
    let sb = Sandbox::boot(
        &units,
        &[
            ("treeward-hook", Path::new(HOOK)),
            ("treeward", Path::new(ADMIN)),
        ],
        &[shared],
    );
    sb.adduser("agent", AGENT);
    sb.write(
        "/etc/treeward/config.toml",
        &format!(
            "[[root]]\npath = \"{}\"\npatterns = [\"sess-*\"]\nowner = \"agent\"\n",
            root.display()
        ),
        0o644,
    );
    let state = sb.host_path("/var/lib/treeward");
    std::fs::create_dir_all(&state).unwrap();
    chown_r(&state, AGENT);
    let bin = sandbox::BIN_DIR;
    let out = sb.exec(&[
        &format!("{bin}/treeward"),
        "install-hook",
        f.repo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", sandbox::text(&out));

    let wt = root.join("sess-new");
    let out = sb.sh_as(
        "agent",
        &format!(
            "export PATH={bin}:$PATH HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1; cd '{}' && git worktree add -q -b task-new '{}' main",
            f.repo.display(),
            wt.display()
        ),
    );
    assert!(out.status.success(), "{}", sandbox::text(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "the hook prints nothing: {}",
        sandbox::text(&out)
    );

    let out = sb.exec(&[&format!("{bin}/treeward"), "list", "--json"]);
    assert!(out.status.success(), "{}", sandbox::text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = list["worktrees"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["path"] == wt.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no record of {} in {list:#}", wt.display()));
    assert_eq!(rec["state"], "active", "{rec:#}");
    assert_eq!(rec["branch"], "task-new", "{rec:#}");
    let journal = sb.host_path("/var/lib/treeward/ledger.json.journal");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&journal).unwrap().uid(),
        AGENT,
        "written as the agent"
    );
}
