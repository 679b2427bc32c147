//! End-to-end tests under a real systemd: a throwaway system booted by
//! `shared/tools/systemd-sandbox` (systemd-nspawn of the host's own `/usr`
//! with an empty, volatile `/` and `/etc`), into which a test puts units
//! (the shipped ones and its own), treeward's binaries and a shared
//! directory, then starts units and reads the journal.
//!
//! - [`Units`]: the unit directory the sandbox sees as `/etc/systemd/system`.
//!   Shipped files are copied from the repository with `/usr/bin/treeward-*`
//!   pointed at [`BIN_DIR`] (the container's `/usr` is the host's, read-only,
//!   so the binaries cannot be at `/usr/bin`); nothing else changes.
//! - [`Sandbox::boot`]: binds each binary read-only at `BIN_DIR/<name>` and
//!   each shared directory read-write at the *same* path inside, so a path
//!   means the same on both sides (keep shared directories out of `/tmp`: a
//!   container systemd may mount a tmpfs there; [`shared_dir`] uses
//!   `/var/tmp`). The sandbox is torn down when dropped, also when the test
//!   panics.
//! - [`available`]: whether this machine can boot one — root, the tool and
//!   systemd-nspawn; a skip with a printed reason elsewhere, a failure in CI.
//! - [`Sandbox::boot_for_dpkg`]: a sandbox where `dpkg -i` installs a package
//!   for real — a writable overlay over `/usr` (its upper directory, on the
//!   host, holds exactly what was installed there), the host's dpkg database
//!   (that of the `/usr` it runs) and a writable `/etc/systemd/system`, as
//!   on a host ([`can_install_packages`] says whether it can be had here).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where the binaries are inside the sandbox.
pub const BIN_DIR: &str = "/opt/treeward/bin";

/// The repository's own directory (units/, config/, …).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sandbox tool: `$SYSTEMD_SANDBOX` (`None` if it names no file), else `shared/tools/systemd-sandbox`
/// next to the repository or one of the directories above it (the repository
/// is `<work>/main` or a worktree `<work>/wt/<name>`), else on `PATH`.
pub fn tool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SYSTEMD_SANDBOX") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let beside = repo_dir()
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/tools/systemd-sandbox"))
        .find(|p| p.is_file());
    beside.or_else(|| on_path("systemd-sandbox"))
}

/// `name` found in a `PATH` directory.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether a sandbox can be booted here; prints why not (fails in CI).
pub fn available() -> bool {
    super::prerequisite(
        super::is_root(),
        "booting a systemd sandbox needs root (CI runs as root)",
    ) && super::prerequisite(
        tool().is_some(),
        "systemd-sandbox not found (shared/tools/systemd-sandbox, $SYSTEMD_SANDBOX or PATH)",
    ) && super::prerequisite(
        on_path("systemd-nspawn").is_some(),
        "systemd-nspawn missing (`systemd-sandbox install` gets it)",
    )
}

/// Whether a sandbox can be booted here with [`Sandbox::boot_for_dpkg`]:
/// [`available`], and the host has a dpkg database to start from; prints why
/// not (fails in CI).
pub fn can_install_packages() -> bool {
    available()
        && super::prerequisite(
            Path::new(HOST_DPKG).join("status").is_file(),
            "no dpkg database (/var/lib/dpkg/status): installing a package in the sandbox \
             starts from the host's",
        )
}

/// The host's dpkg database, which describes the `/usr` a sandbox runs.
const HOST_DPKG: &str = "/var/lib/dpkg";

/// A fresh directory under `/var/tmp`, mode 0755 so that the sandbox's
/// users can reach what is inside; bind it with [`Sandbox::boot`].
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("treeward-e2e-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The unit directory of a sandbox (its `/etc/systemd/system`).
pub struct Units {
    dir: tempfile::TempDir,
}

impl Default for Units {
    fn default() -> Self {
        Self::new()
    }
}

impl Units {
    pub fn new() -> Units {
        Units {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the repository's `shipped` file (e.g. `units/treeward-sweep.service`,
    /// `units/examples/agent.service.d/treeward.conf`) to `dest` (relative to
    /// `/etc/systemd/system`), with its `/usr/bin/treeward-*` paths moved to
    /// [`BIN_DIR`].
    pub fn ship(&self, shipped: &str, dest: &str) -> &Units {
        let text = std::fs::read_to_string(repo_dir().join(shipped))
            .unwrap_or_else(|e| panic!("{shipped}: {e}"));
        self.add(
            dest,
            &text.replace("/usr/bin/treeward-", &format!("{BIN_DIR}/treeward-")),
        )
    }

    /// Writes `text` to `dest` (relative to `/etc/systemd/system`).
    pub fn add(&self, dest: &str, text: &str) -> &Units {
        super::write(&self.dir.path().join(dest), text);
        self
    }

    /// `systemctl enable` done beforehand: `<target>.wants/<unit>`, so the
    /// unit starts at boot.
    pub fn enable(&self, unit: &str, target: &str) -> &Units {
        let wants = self.dir.path().join(format!("{target}.wants"));
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(format!("../{unit}"), wants.join(unit)).unwrap();
        self
    }
}

/// A booted sandbox; `down` when dropped.
pub struct Sandbox {
    tool: PathBuf,
    name: String,
}

static BOOTED: AtomicUsize = AtomicUsize::new(0);

impl Sandbox {
    /// Boots a sandbox with `units` as `/etc/systemd/system`, each
    /// `(name, host path)` binary read-only at `BIN_DIR/<name>`, and each
    /// `shared` directory read-write at the same path. Panics with the
    /// tool's output if it does not come up (and tears down what it left).
    pub fn boot(units: &Units, binaries: &[(&str, &Path)], shared: &[&Path]) -> Sandbox {
        Sandbox::boot_with(units, binaries, shared, &[])
    }

    /// [`Sandbox::boot`] with more arguments for systemd-nspawn
    /// (`--overlay=…`, `--setenv=…`).
    pub fn boot_with(
        units: &Units,
        binaries: &[(&str, &Path)],
        shared: &[&Path],
        nspawn: &[String],
    ) -> Sandbox {
        let tool = tool().expect("systemd-sandbox (check `available()` first)");
        let name = format!(
            "treeward-{}-{}",
            std::process::id(),
            BOOTED.fetch_add(1, Ordering::Relaxed)
        );
        // Built before `up`, so that whatever happens, drop brings it down.
        let sandbox = Sandbox { tool, name };
        let mut args: Vec<String> = vec!["up".into(), sandbox.name.clone()];
        args.push(units.path().display().to_string());
        for (bin, path) in binaries {
            args.push(format!("--bind-ro={}:{BIN_DIR}/{bin}", path.display()));
        }
        for dir in shared {
            args.push(format!("--bind={0}:{0}", dir.display()));
        }
        args.extend_from_slice(nspawn);
        let out = Command::new(&sandbox.tool).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "systemd-sandbox {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox
    }

    /// A sandbox into which a Debian package can be installed with a real
    /// `dpkg -i` ([`Sandbox::dpkg_install`]), as on a host:
    ///
    /// - `/usr` is a writable overlay (nspawn's `--overlay=`) over the
    ///   host's: what dpkg writes there lands in `usr_upper`, an empty
    ///   directory on the host, and the host's `/usr` stays as it was. Put
    ///   it in a directory the test removes (such as a [`shared_dir`]):
    ///   nspawn leaves the overlay's work directory (`.#…`) next to it. Debian's merged `/usr` holds inside too: `/lib` is a link
    ///   to `usr/lib`, so units a package puts in `/lib/systemd/system` are
    ///   in the overlay.
    /// - `/var/lib/dpkg` is a copy of the host's, the database of the very
    ///   `/usr` the sandbox runs, so dependencies resolve as on the host.
    ///   Its `statoverride` is emptied: it names host groups (`ssl-cert` …)
    ///   that the sandbox's `/etc` does not have, which stops dpkg, and
    ///   concerns only files of packages already installed.
    /// - `/etc/systemd/system` ([`Units`]) is writable from inside, so that
    ///   `systemctl enable` and an operator's `cp` of a drop-in work as
    ///   written; what they write lands in `units`.
    ///
    /// `/etc` and `/var` are the sandbox's own (empty at boot, volatile):
    /// what the package's maintainer scripts create there is gone with it.
    pub fn boot_for_dpkg(units: &Units, shared: &[&Path], usr_upper: &Path) -> Sandbox {
        let overlay = format!("--overlay=/usr:{}:/usr", usr_upper.display());
        let sb = Sandbox::boot_with(units, &[], shared, &[overlay]);
        let dpkg = sb.host_path(HOST_DPKG);
        let out = Command::new("cp")
            .arg("-a")
            .arg(HOST_DPKG)
            .arg(dpkg.parent().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "copying {HOST_DPKG}: {}", text(&out));
        std::fs::write(dpkg.join("statoverride"), "").unwrap();
        sb.units_writable();
        sb
    }

    /// Makes `/etc/systemd/system` writable from inside: the tool binds the
    /// unit directory read-only; this remounts that bind read-write in the
    /// sandbox's mount namespace.
    pub fn units_writable(&self) {
        let out = self.exec(&["mount", "-o", "remount,bind,rw", "/etc/systemd/system"]);
        assert!(out.status.success(), "remount: {}", text(&out));
    }

    /// `dpkg -i DEB` inside, as root (DEB: a path inside, such as a shared
    /// directory's), with the `PATH` dpkg wants (`ldconfig`,
    /// `start-stop-daemon` in the `sbin` directories).
    pub fn dpkg_install(&self, deb: &Path) -> Output {
        self.exec(&[
            "env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND=noninteractive",
            "dpkg",
            "-i",
            deb.to_str().expect("a UTF-8 path"),
        ])
    }

    fn tool(&self, args: &[&str]) -> Output {
        Command::new(&self.tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.tool.display()))
    }

    /// Adds a user (and its group, same id) to the sandbox's passwd.
    pub fn adduser(&self, user: &str, uid: u32) {
        let out = self.tool(&["adduser", &self.name, user, &uid.to_string()]);
        assert!(out.status.success(), "adduser {user}: {}", text(&out));
    }

    /// Runs `cmd` inside as root.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        self.tool(&args)
    }

    /// Runs a shell `script` inside as `user` (a name from the sandbox's
    /// passwd, with its groups).
    pub fn sh_as(&self, user: &str, script: &str) -> Output {
        let reuid = format!("--reuid={user}");
        let regid = format!("--regid={user}");
        self.exec(&[
            "setpriv",
            &reuid,
            &regid,
            "--init-groups",
            "/bin/sh",
            "-c",
            script,
        ])
    }

    /// `systemctl ARGS` inside.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut cmd = vec!["systemctl"];
        cmd.extend_from_slice(args);
        self.exec(&cmd)
    }

    /// One property of a unit (`systemctl show -P`).
    pub fn property(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", "-P", property, unit]);
        assert!(out.status.success(), "show {unit}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// How a unit's last run ended: `Result` and `ExecMainStatus`
    /// (`("success", 0)` for a clean exit).
    pub fn outcome(&self, unit: &str) -> (String, i32) {
        let status = self.property(unit, "ExecMainStatus");
        (
            self.property(unit, "Result"),
            status
                .parse()
                .unwrap_or_else(|_| panic!("{unit}: ExecMainStatus {status:?}")),
        )
    }

    /// `journalctl ARGS` of the sandbox, as text.
    pub fn journal(&self, args: &[&str]) -> String {
        let mut all = vec!["journal", self.name.as_str()];
        all.extend_from_slice(args);
        text(&self.tool(&all))
    }

    /// The journal entries of `unit` (`journalctl -u UNIT -o json`), each a
    /// JSON object of its fields.
    pub fn entries(&self, unit: &str) -> Vec<serde_json::Value> {
        let out = self.tool(&["journal", &self.name, "-u", unit, "-o", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The first journal entry of `unit` that `wanted` accepts, waiting up
    /// to 5 s for journald to store it; `None` if none came.
    pub fn wait_entry(
        &self,
        unit: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.wait_entry_for(unit, Duration::from_secs(5), wanted)
    }

    /// [`Sandbox::wait_entry`] with its own patience (a timer's unit logs
    /// only once the timer fires).
    pub fn wait_entry_for(
        &self,
        unit: &str,
        patience: Duration,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(e) = self.entries(unit).into_iter().find(|e| wanted(e)) {
                return Some(e);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host path of `inside` (an absolute path in the sandbox), through
    /// the sandbox's root (`/proc/<pid>/root`).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        let out = self.tool(&["root", &self.name]);
        assert!(out.status.success(), "root: {}", text(&out));
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        root.join(inside.trim_start_matches('/'))
    }

    /// Writes a root-owned file inside the sandbox (e.g. its
    /// `/etc/treeward/config.toml`) with `mode`.
    pub fn write(&self, inside: &str, contents: &str, mode: u32) {
        let path = self.host_path(inside);
        super::write(&path, contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = Command::new(&self.tool).args(["down", &self.name]).output();
        if let Ok(out) = out {
            if !out.status.success() {
                eprintln!("systemd-sandbox down {}: {}", self.name, text(&out));
            }
        }
    }
}

/// A field of a journal entry ([`Sandbox::entries`]) as text.
pub fn field<'a>(entry: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    entry.get(name).and_then(serde_json::Value::as_str)
}

/// Whether a journal entry ([`Sandbox::entries`]) was logged after `since`
/// (the sandbox shares the host's clock): for a unit that logs again and
/// again, such as a timer's, the entries of what a test did last.
pub fn logged_after(entry: &serde_json::Value, since: std::time::SystemTime) -> bool {
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    field(entry, "__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<u128>().ok())
        .is_some_and(|t| t > since)
}

/// What an agent leaves unsaved in its dirty worktree `sess-dirty`: a line
/// added to the tracked `README`, and an untracked `notes.txt` holding
/// [`UNTRACKED_WORK`].
pub const UNSAVED_WORK: &str = "unsaved agent work";
pub const UNTRACKED_WORK: &str = "untracked agent notes";

/// The main process of an agent service ([`agent_unit`]), a shell script
/// that checks, as the agent, what it finds when it starts: no `sess-*`
/// entry in its root `root` and nothing waiting in the root's trash; each
/// of `survivors` (entries the patterns do not own) still there; the work
/// of `sess-dirty` ([`UNSAVED_WORK`], [`UNTRACKED_WORK`]) under
/// `refs/treeward/preserved/` of `repo`; no `sess-` worktree left in git's
/// list. Exit 0 saying `agent: clean start`, or 1 with the reason on stderr
/// (the journal).
pub fn agent_main(root: &Path, repo: &Path, survivors: &[&str]) -> String {
    let survivors: String = survivors
        .iter()
        .map(|name| {
            format!("[ -e \"$root/{name}\" ] || fail \"{name}, not a sess-* entry, is gone\"\n")
        })
        .collect();
    format!(
        r#"#!/bin/sh
root='{root}'
repo='{repo}'
fail() {{ echo "agent: $*" >&2; exit 1; }}
for e in "$root"/sess-*; do
    if [ -e "$e" ] || [ -L "$e" ]; then fail "residue at start: $e"; fi
done
if [ -d "$root/.treeward-trash" ] && [ -n "$(find "$root/.treeward-trash" -mindepth 2 -maxdepth 2)" ]; then
    fail "residue waiting in the trash: $(ls -R "$root/.treeward-trash")"
fi
{survivors}work=$(git -C "$repo" for-each-ref --format='%(refname)' 'refs/treeward/preserved/' | grep '/sess-dirty/.*/work$') \
    || fail "no preserved work for sess-dirty: $(git -C "$repo" for-each-ref refs/treeward/)"
git -C "$repo" show "$work:README" | grep -q '{UNSAVED_WORK}' || fail "$work lacks the modified README"
git -C "$repo" show "$work^3:notes.txt" | grep -q '{UNTRACKED_WORK}' || fail "$work lacks the untracked notes"
if git -C "$repo" worktree list --porcelain | grep -q '/sess-'; then fail "git still lists a sess- worktree"; fi
echo "agent: clean start, preserved work at $work"
"#,
        root = root.display(),
        repo = repo.display(),
    )
}

/// An agent service as an operator writes one: oneshot, its own user
/// (`agent`), and its main process `main` ([`agent_main`]).
pub fn agent_unit(main: &Path) -> String {
    format!(
        "[Unit]\nDescription=treeward e2e: an agent that checks its root when it starts\n\n\
         [Service]\nType=oneshot\nUser=agent\nEnvironment=HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1\n\
         ExecStart={}\n",
        main.display()
    )
}

/// stdout and stderr of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
