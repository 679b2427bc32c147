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
        let out = Command::new(&sandbox.tool).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "systemd-sandbox {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox
    }

    pub fn name(&self) -> &str {
        &self.name
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

/// stdout and stderr of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
