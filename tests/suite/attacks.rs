//! The attack suite of issue 9: the sweep (as root) and the reaper (as the
//! agent) against the attack classes of SPEC "Privilege and security
//! invariants", each carried out by real processes of the attacking user.
//!
//! Uids (no accounts needed): 4242 the agent, owner of the repositories and
//! worktrees a root holds; 4343 the attacker, a second unprivileged user who
//! can write into sticky (1777) directories; 4444 another user whose
//! repository the attacker aims at.
//!
//! 1. forged `.git`, `commondir` and `gitdir` aimed at another user's
//!    repository and admin entries;
//! 2. a repository under a group- or world-writable directory;
//! 3. a symlink swapped into an admin dir, the repository or the worktree at
//!    the moment the sweep reads, locks, relocates, preserves, forgets or
//!    removes (inotify), and blindly in a loop; and at the moment
//!    `treeward restore` (as root) rebuilds a preserved worktree;
//! 4. FIFOs where git and treeward read pointers and state;
//! 5. the reaper against 1 and 4.
//!
//! Every attack has a control: the same scenario made legitimate (or the
//! same swap followed by a naive path-based write) is acted on, so each
//! "untouched" assertion is shown to detect action. Each test prints its
//! figures (attacks tried, iterations, breaks) on stderr.
//!
//! Root only: skipped with a printed reason otherwise, failed in CI (which
//! runs as root).

use crate::common;

use common::{chown_r, git_as, root_owned, snapshot, write, Fixture, Snapshot};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The agent: owns the repositories and worktrees of the roots.
const AGENT: u32 = 4242;
/// The attacker: another unprivileged user, writing into sticky roots.
const ATTACKER: u32 = 4343;
/// A third user whose repository the attacker aims at.
const VICTIM: u32 = 4444;
/// Longer than any sweep or reap here may take: past it, the run hangs.
const WATCHDOG: Duration = Duration::from_secs(60);
/// The environment variable that turns this test binary into the attacker
/// process (see [`attacker_process`]).
const ATTACK_SPEC: &str = "TREEWARD_ATTACK_SPEC";

fn root_only() -> bool {
    common::prerequisite(
        common::is_root(),
        "the attack tests run as root (CI does) to act as uids 4242, 4343 and 4444",
    )
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory `path` owned by root with `mode`.
fn root_dir(path: &Path, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    set_mode(path, mode);
    path.to_path_buf()
}

/// Runs `script` with `sh -eu` as `uid` (gid = uid) in `dir`, with git's
/// fixed identity and no user or system config, the `vars` in its
/// environment: what that user's own process does.
fn sh_as(uid: u32, dir: &Path, script: &str, vars: &[(&str, &Path)]) {
    let mut cmd = Command::new("sh");
    cmd.args(["-euc", script])
        .current_dir(dir)
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .uid(uid)
        .gid(uid);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "as uid {uid}: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Running the binaries under a watchdog.

/// What a bounded run left.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

fn read_all(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// Runs `cmd` in a process group of its own; `Err` when it is still running
/// after `limit` (the whole group is then killed).
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Ran, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot spawn: {e}"))?;
    let out = read_all(child.stdout.take().unwrap());
    let err = read_all(child.stderr.take().unwrap());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let elapsed = start.elapsed();
            let grace = Duration::from_secs(10);
            return Ok(Ran {
                code: status.code(),
                stdout: out.recv_timeout(grace).unwrap_or_default(),
                stderr: err.recv_timeout(grace).unwrap_or_default(),
                elapsed,
            });
        }
        if start.elapsed() >= limit {
            let stuck = stuck_in(child.id());
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "still running after {limit:?}: killed; it was at:\n{stuck}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the processes of the group `pgid` were doing: each one's command
/// line, where it waited, and its open files (for a hang's report).
fn stuck_in(pgid: u32) -> String {
    let mut out = String::new();
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = proc_dir.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let pgrp: Option<u32> = after.split_whitespace().nth(2).and_then(|p| p.parse().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
        out.push_str(&format!(
            "{} [{}{}] {}\n",
            dir.display(),
            wchan,
            opening(&dir),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        ));
        for fd in std::fs::read_dir(dir.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                out.push_str(&format!(
                    "    fd {:?} -> {}\n",
                    fd.file_name(),
                    target.display()
                ));
            }
        }
    }
    out
}

/// The path a process blocked in `open`/`openat` is opening (x86_64 only:
/// the path pointer from `/proc/<pid>/syscall`, read from its memory).
fn opening(proc_dir: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(call) = std::fs::read_to_string(proc_dir.join("syscall")) else {
        return String::new();
    };
    let words: Vec<&str> = call.split_whitespace().collect();
    let arg = |i: usize| {
        words
            .get(i)
            .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
    };
    let pointer = match words.first() {
        Some(&"2") if cfg!(target_arch = "x86_64") => arg(1), // open
        Some(&"257") if cfg!(target_arch = "x86_64") => arg(2), // openat
        _ => None,
    };
    let Some(pointer) = pointer else {
        return String::new();
    };
    let mut bytes = vec![0u8; 4096];
    let read = std::fs::File::open(proc_dir.join("mem")).and_then(|mut mem| {
        mem.seek(SeekFrom::Start(pointer))?;
        mem.read(&mut bytes)
    });
    match read {
        Ok(n) => {
            let text = &bytes[..n];
            let end = text.iter().position(|b| *b == 0).unwrap_or(n);
            format!(", opening {}", String::from_utf8_lossy(&text[..end]))
        }
        Err(_) => String::new(),
    }
}

/// The JSON report of a run that must finish within the watchdog and exit 0.
fn report_of(what: &str, cmd: Command) -> (Value, Duration) {
    let ran = run_bounded(cmd, WATCHDOG).unwrap_or_else(|e| panic!("{what} hung: {e}"));
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.code, Some(0), "{what} exit status; stderr: {stderr}");
    let doc = serde_json::from_slice(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {} / {stderr}",
            String::from_utf8_lossy(&ran.stdout)
        )
    });
    (doc, ran.elapsed)
}

/// `treeward-sweep --json --config cfg`, as root, under the watchdog.
fn sweep(cfg: &Path) -> (Value, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"));
    cmd.arg("--json")
        .arg("--config")
        .arg(cfg)
        .env_remove("TREEWARD_CONFIG")
        .current_dir("/");
    report_of("treeward-sweep", cmd)
}

/// `treeward-reap --json --config cfg` as `uid`, under the watchdog.
fn reap_as(uid: u32, cfg: &Path) -> (Value, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treeward-reap"));
    cmd.arg("--json")
        .arg("--config")
        .arg(cfg)
        .env_remove("TREEWARD_CONFIG")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .uid(uid)
        .gid(uid);
    report_of("treeward-reap", cmd)
}

fn entry<'a>(doc: &'a Value, path: &Path) -> &'a Value {
    doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not in the report {doc:#}", path.display()))
}

/// The action of `path` in the report, and its error.
fn action(doc: &Value, path: &Path) -> (String, String) {
    let e = entry(doc, path);
    (
        e["action"].as_str().unwrap_or_default().to_owned(),
        e["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A configuration with one `[[root]]` per `(path, owner, patterns)`.
fn write_config(cfg: &Path, ledger: &Path, roots: &[(&Path, u32, &str)], extra: &str) {
    let mut text = format!("ledger = \"{}\"\n", ledger.display());
    for (path, owner, patterns) in roots {
        text.push_str(&format!(
            "\n[[root]]\npath = \"{}\"\npatterns = {patterns}\npolicy = \"preserve\"\nowner = \"{owner}\"\n{extra}",
            path.display()
        ));
    }
    std::fs::write(cfg, text).unwrap();
}

/// The refs of the repository `repo`, as `uid` lists them.
fn refs(uid: u32, repo: &Path) -> Vec<String> {
    git_as(
        uid,
        repo,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

// ---------------------------------------------------------------------------
// Class 1 and 5: forged pointers at another user's worktree.

/// A user's repository (`<tmp>/repo`, origin beside it) with a worktree
/// outside every root (`<tmp>/wt/<name>`), locked, holding uncommitted work
/// (staged, modified, untracked): what the attacker aims at.
struct Victim {
    f: Fixture,
    uid: u32,
    name: String,
    wt: PathBuf,
}

impl Victim {
    /// The control's first step: the genuine worktree, unlocked and moved
    /// (`git worktree move`, as its owner) to `to`, in a root of its owner.
    fn move_into(&self, to: &Path) {
        let wt = self.wt.to_str().unwrap();
        git_as(self.uid, &self.f.repo, &["worktree", "unlock", wt]);
        git_as(
            self.uid,
            &self.f.repo,
            &["worktree", "move", wt, to.to_str().unwrap()],
        );
    }

    fn new(base: &Path, uid: u32, name: &str) -> Victim {
        let f = Fixture::new_in(base);
        set_mode(f.tmp.path(), 0o755);
        let wt = f.worktree(name, &format!("t-{name}"));
        common::lock_worktree(&f.repo, &wt, "agent 7 at work");
        write(&wt.join("staged.txt"), "staged\n");
        common::git(&wt, &["add", "staged.txt"]);
        write(&wt.join("README"), "edited, uncommitted\n");
        write(&wt.join("notes/only-copy.md"), "the only copy\n");
        chown_r(f.tmp.path(), uid);
        Victim {
            f,
            uid,
            name: name.to_owned(),
            wt,
        }
    }

    fn common(&self) -> PathBuf {
        self.f.repo.join(".git")
    }

    fn admin(&self) -> PathBuf {
        self.common().join("worktrees").join(&self.name)
    }

    /// Everything of the victim's: every file of its repository, origin and
    /// worktree (bytes, mode, owner, mtime), its refs and its worktree list
    /// (with the lock).
    fn state(&self) -> (Snapshot, Vec<String>, String) {
        (
            snapshot(self.f.tmp.path()),
            refs(self.uid, &self.f.repo),
            git_as(self.uid, &self.f.repo, &["worktree", "list", "--porcelain"]),
        )
    }

    /// `Ok` when nothing of the victim's changed since `before` and nothing
    /// root-owned is in its tree; else what did.
    fn untouched(&self, before: &(Snapshot, Vec<String>, String)) -> Result<(), String> {
        let now = self.state();
        let mut why = Vec::new();
        if now.0 != before.0 {
            let changed: std::collections::BTreeSet<String> = before
                .0
                .keys()
                .chain(now.0.keys())
                .filter(|p| before.0.get(*p) != now.0.get(*p))
                .map(|p| p.display().to_string())
                .collect();
            why.push(format!("files changed: {changed:?}"));
        }
        if now.1 != before.1 {
            why.push(format!("refs changed: {:?} -> {:?}", before.1, now.1));
        }
        if now.2 != before.2 {
            why.push(format!("worktrees changed: {} -> {}", before.2, now.2));
        }
        let rooty = root_owned(self.f.tmp.path());
        if !rooty.is_empty() {
            why.push(format!("root-owned: {rooty:?}"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }
}

/// The attacker's own repository, in a home of theirs (`<base>/home-4343`,
/// a strict path): the attacker is a legitimate user with repositories.
fn attacker_repo(base: &Path) -> PathBuf {
    let home = root_dir(&base.join("home-4343"), 0o755);
    chown_r(&home, ATTACKER);
    sh_as(
        ATTACKER,
        &home,
        "git init -q -b main evil && cd evil && echo evil > README && git add -A \
         && git commit -q -m evil && mkdir -p .git/worktrees",
        &[],
    );
    home.join("evil/.git")
}

/// The attacker (uid 4343) plants in `root`, against the victim, entries
/// named `<tag>-…`; returns them with what each is.
///
/// - `-admin`: its `.git` names the victim's real admin dir (a locked
///   worktree holding uncommitted work);
/// - `-commondir`: its `.git` names an admin dir in the attacker's own
///   repository whose `commondir` names the victim's repository;
/// - `-gitdir`: its `.git` names an admin dir of the attacker's whose
///   `gitdir` names the victim's worktree;
/// - `-linked`: its `.git` names `<repo>/.git/worktrees/<victim's name>` in
///   a repository of the attacker's whose `worktrees` is a symlink to the
///   victim's;
/// - `-link`: a symlink to the victim's worktree.
fn plant_forgeries(
    root: &Path,
    tag: &str,
    evil: &Path,
    v: &Victim,
) -> Vec<(PathBuf, &'static str)> {
    let home = evil.parent().unwrap().parent().unwrap().to_path_buf();
    let evil2 = home.join(format!("evil2-{tag}"));
    sh_as(
        ATTACKER,
        &home,
        r#"
        A="$ROOT/$TAG-admin"; mkdir "$A"; printf 'gitdir: %s\n' "$VADMIN" > "$A/.git"; echo x > "$A/f"

        B="$ROOT/$TAG-commondir"; BA="$EVIL/worktrees/$TAG-commondir"; mkdir "$B" "$BA"
        printf 'gitdir: %s\n' "$BA" > "$B/.git"
        printf '%s\n' "$VCOMMON" > "$BA/commondir"
        printf '%s/.git\n' "$B" > "$BA/gitdir"
        printf 'ref: refs/heads/main\n' > "$BA/HEAD"

        C="$ROOT/$TAG-gitdir"; CA="$EVIL/worktrees/$TAG-gitdir"; mkdir "$C" "$CA"
        printf 'gitdir: %s\n' "$CA" > "$C/.git"
        printf '../..\n' > "$CA/commondir"
        printf '%s/.git\n' "$VWT" > "$CA/gitdir"
        printf 'ref: refs/heads/main\n' > "$CA/HEAD"

        git init -q -b main "$EVIL2"
        ln -s "$VCOMMON/worktrees" "$EVIL2/.git/worktrees"
        D="$ROOT/$TAG-linked"; mkdir "$D"
        printf 'gitdir: %s/.git/worktrees/%s\n' "$EVIL2" "$VNAME" > "$D/.git"

        ln -s "$VWT" "$ROOT/$TAG-link"
        "#,
        &[
            ("ROOT", root),
            ("TAG", Path::new(tag)),
            ("EVIL", evil),
            ("EVIL2", &evil2),
            ("VADMIN", &v.admin()),
            ("VCOMMON", &v.common()),
            ("VWT", &v.wt),
            ("VNAME", Path::new(&v.name)),
        ],
    );
    [
        ("admin", ".git names the victim's admin dir"),
        (
            "commondir",
            "an admin dir whose commondir names the victim's repository",
        ),
        (
            "gitdir",
            "an admin dir whose gitdir names the victim's worktree",
        ),
        (
            "linked",
            "a repository whose worktrees dir links to the victim's",
        ),
        ("link", "a symlink to the victim's worktree"),
    ]
    .into_iter()
    .map(|(suffix, what)| (root.join(format!("{tag}-{suffix}")), what))
    .collect()
}

/// Class 1. In two sticky (1777) root-owned roots the attacker plants
/// forged worktrees aimed at another user's repository: root A belongs to
/// the agent (4242, the victim), so the attacker's entries are not even the
/// right owner's; root B belongs to the attacker (4343), so the entries are
/// the attacker's own and every deeper check must hold (victim 4444). After
/// the sweep: each victim's tree, refs and worktree list are byte-identical,
/// nothing root-owned appears, the forged worktrees are `refused` (and the
/// link entry removed as a link). Control: each victim's genuine worktree,
/// unlocked and moved into the root its owner is configured for, is
/// preserved by the same sweep, and the same checks see the change.
#[test]
fn forged_pointers_at_another_users_worktree_are_refused() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let agent = Victim::new(base, AGENT, "victim");
    let other = Victim::new(base, VICTIM, "other");
    let evil = attacker_repo(base);
    let root_a = root_dir(&base.join("root-a"), 0o1777);
    let root_b = root_dir(&base.join("root-b"), 0o1777);
    let mut planted = plant_forgeries(&root_a, "a", &evil, &agent);
    planted.extend(plant_forgeries(&root_b, "b", &evil, &other));
    let cfg = base.join("treeward.toml");
    let ledger = base.join("ledger.json");
    write_config(
        &cfg,
        &ledger,
        &[
            (&root_a, AGENT, r#"["*"]"#),
            (&root_b, ATTACKER, r#"["*"]"#),
        ],
        "",
    );
    let before_agent = agent.state();
    let before_other = other.state();
    let evil_refs = refs(ATTACKER, evil.parent().unwrap());

    let (doc, took) = sweep(&cfg);
    assert_eq!(doc["refused_roots"], json!([]), "{doc:#}");
    for (path, what) in &planted {
        let (act, error) = action(&doc, path);
        if what.starts_with("a symlink") {
            assert_eq!(act, "removed", "{what}: removed as a link: {doc:#}");
            assert!(std::fs::symlink_metadata(path).is_err());
        } else {
            assert_eq!(act, "refused", "{what} ({}): {doc:#}", path.display());
            assert!(!error.is_empty(), "{what}: a refusal says why");
            assert!(path.join(".git").is_file(), "{what}: left in place");
        }
    }
    // In root B the entries are the attacker's own: the deeper checks
    // refused them, each for its own reason.
    let why = |suffix: &str| action(&doc, &root_b.join(format!("b-{suffix}"))).1;
    assert!(
        why("admin").contains("owned by uid 4444"),
        "{}",
        why("admin")
    );
    assert!(
        why("commondir").contains("commondir names"),
        "{}",
        why("commondir")
    );
    assert!(why("gitdir").contains("belongs to"), "{}", why("gitdir"));
    assert!(
        why("linked").contains("without following a link"),
        "{}",
        why("linked")
    );
    agent
        .untouched(&before_agent)
        .unwrap_or_else(|e| panic!("the agent's worktree was touched: {e}"));
    other
        .untouched(&before_other)
        .unwrap_or_else(|e| panic!("uid 4444's worktree was touched: {e}"));
    assert_eq!(refs(ATTACKER, evil.parent().unwrap()), evil_refs);
    assert_eq!(root_owned(&base.join("home-4343")), Vec::<String>::new());

    // Control: the genuine worktrees, unlocked and moved into the root of
    // their owner, are acted on: the same checks see it.
    let moved_a = root_a.join("victim-moved");
    let moved_b = root_b.join("other-moved");
    for (v, to) in [(&agent, &moved_a), (&other, &moved_b)] {
        v.move_into(to);
    }
    write_config(
        &cfg,
        &ledger,
        &[(&root_a, AGENT, r#"["*"]"#), (&root_b, VICTIM, r#"["*"]"#)],
        "",
    );
    let (doc, _) = sweep(&cfg);
    for (v, moved, before) in [
        (&agent, &moved_a, &before_agent),
        (&other, &moved_b, &before_other),
    ] {
        assert_eq!(action(&doc, moved).0, "preserved", "control: {doc:#}");
        assert!(!moved.exists());
        let seen = v
            .untouched(before)
            .expect_err("control: the change is seen");
        assert!(seen.contains("refs changed"), "{seen}");
        assert!(
            refs(v.uid, &v.f.repo)
                .iter()
                .any(|r| r.starts_with("refs/treeward/preserved/")),
            "control: preserved"
        );
        assert_eq!(root_owned(v.f.tmp.path()), Vec::<String>::new());
    }
    for (path, what) in &planted {
        if !what.starts_with("a symlink") {
            assert_eq!(action(&doc, path).0, "refused", "still refused: {doc:#}");
        }
    }
    eprintln!(
        "attacks: class 1 (forged pointers, sweep): {} entries tried in 2 roots, 0 breaks; sweep {} ms; test {} ms",
        planted.len(),
        took.as_millis(),
        started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------
// Class 2: a repository under a group- or world-writable directory.

/// Class 2. The root (sticky, root-owned) is configured for the attacker
/// (4343), who builds real repositories with dirty worktrees in the root:
/// one repository under a /tmp-like 1777 directory outside the root, one
/// inside the root itself (not an entry), one under a group-writable (2775)
/// directory of the attacker's group. A group- or world-writable directory
/// on a repository's path makes it no repository: the sweep refuses each
/// worktree (neither preserved nor removed), and no git ran on them — every
/// byte, mtime and ref of the repositories and worktrees is as it was and
/// nothing root-owned appears. Control: the same directories made strict
/// (0755), the same sweep preserves and removes the three worktrees.
#[test]
fn a_repository_under_a_writable_directory_is_never_one() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let sticky = root_dir(&base.join("tmp"), 0o1777);
    let root = root_dir(&base.join("root"), 0o1777);
    let group = root_dir(&base.join("grp"), 0o2775);
    std::os::unix::fs::chown(&group, Some(0), Some(ATTACKER)).unwrap();
    set_mode(&group, 0o2775);
    let build = |repo: &Path, wt: &Path| {
        sh_as(
            ATTACKER,
            repo.parent().unwrap(),
            r#"
            git init -q -b main "$REPO" && cd "$REPO"
            echo one > README && git add -A && git commit -q -m one
            git worktree add -q -b "task-$(basename "$WT")" "$WT" main
            cd "$WT" && echo edited >> README && echo staged > staged.txt
            git add staged.txt && echo only-copy > untracked.txt
            "#,
            &[("REPO", repo), ("WT", wt)],
        );
    };
    let cases = [
        (sticky.join("repo"), root.join("wt-sticky")),
        (root.join("repo-inside"), root.join("wt-inside")),
        (group.join("repo"), root.join("wt-group")),
    ];
    for (repo, wt) in &cases {
        build(repo, wt);
    }
    let cfg = base.join("treeward.toml");
    write_config(
        &cfg,
        &base.join("ledger.json"),
        &[(&root, ATTACKER, r#"["wt-*"]"#)],
        "",
    );
    let state = || -> Vec<(Snapshot, Snapshot, Vec<String>)> {
        cases
            .iter()
            .map(|(repo, wt)| (snapshot(repo), snapshot(wt), refs(ATTACKER, repo)))
            .collect()
    };
    let before = state();

    let (doc, took) = sweep(&cfg);
    for (repo, wt) in &cases {
        let (act, error) = action(&doc, wt);
        assert_eq!(act, "refused", "{}: {doc:#}", wt.display());
        assert!(
            error.contains("writable by group or others"),
            "{}: {error}",
            wt.display()
        );
        assert_eq!(root_owned(repo), Vec::<String>::new());
        assert_eq!(root_owned(wt), Vec::<String>::new());
    }
    assert!(
        state() == before,
        "a worktree of a repository under a writable directory was touched"
    );
    let trash = root.join(".treeward-trash");
    assert!(
        !trash.exists() || std::fs::read_dir(&trash).unwrap().next().is_none(),
        "nothing was quarantined"
    );

    // Control: the same repositories under strict directories are acted on.
    for dir in [&sticky, &root, &group] {
        set_mode(dir, 0o755);
    }
    let (doc, _) = sweep(&cfg);
    for ((repo, wt), (repo_before, _, refs_before)) in cases.iter().zip(&before) {
        assert_eq!(action(&doc, wt).0, "preserved", "control: {doc:#}");
        assert!(!wt.exists());
        let refs_now = refs(ATTACKER, repo);
        assert_ne!(&refs_now, refs_before, "control: the refs changed");
        assert!(refs_now
            .iter()
            .any(|r| r.starts_with("refs/treeward/preserved/")));
        assert_ne!(
            &snapshot(repo),
            repo_before,
            "control: the repository changed"
        );
        assert_eq!(root_owned(repo), Vec::<String>::new());
    }
    eprintln!(
        "attacks: class 2 (repository under a writable directory): {} worktrees tried, 0 breaks; sweep {} ms; test {} ms",
        cases.len(),
        took.as_millis(),
        started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------
// Class 4 and 5: FIFOs.

/// Where a FIFO goes: a file of a worktree's admin dir, of its entry, or
/// of its repository (each in a repository of its own where it breaks the
/// whole repository).
#[derive(Clone, Copy)]
enum FifoAt {
    Admin(&'static str),
    Entry(&'static str),
    Common(&'static str),
}

/// Each FIFO, and whether it must stop treeward (`true`: a file the claim
/// or git reads first, so the worktree is refused) or must merely not be
/// blocked on (`false`: the worktree is reclaimed as usual).
const FIFOS: &[(&str, FifoAt, bool)] = &[
    ("fifo-commondir", FifoAt::Admin("commondir"), true),
    ("fifo-gitdir", FifoAt::Admin("gitdir"), true),
    ("fifo-head", FifoAt::Admin("HEAD"), true),
    ("fifo-index", FifoAt::Admin("index"), true),
    ("fifo-locked", FifoAt::Admin("locked"), true),
    ("fifo-dotgit", FifoAt::Entry(".git"), true),
    ("fifo-common-head", FifoAt::Common("HEAD"), true),
    ("fifo-common-config", FifoAt::Common("config"), true),
    ("fifo-reflog", FifoAt::Admin("logs/HEAD"), false),
    ("fifo-stash-log", FifoAt::Common("logs/refs/stash"), false),
];

/// A root (sticky, root-owned, configured for the agent) holding the agent's
/// worktrees, one FIFO in each of [`FIFOS`] (planted by the agent, who owns
/// the repositories), a FIFO entry, a plain directory holding a FIFO, and
/// three healthy worktrees of the same repository as most FIFOs (clean,
/// dirty, detached with a commit no ref reaches) in the same root.
struct FifoHost {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cfg: PathBuf,
    repos: Vec<Fixture>,
    /// Per FIFO entry: the file the FIFO replaced, its bytes, and whether
    /// the worktree must be refused.
    replaced: Vec<(PathBuf, PathBuf, Option<Vec<u8>>, bool)>,
}

fn fifo_host() -> FifoHost {
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let root = root_dir(&base.join("root"), 0o1777);
    let main = Fixture::new_in(base);
    let mut repos = Vec::new();
    let mut replaced = Vec::new();
    let mut pending = Vec::new();
    for (name, at, refused) in FIFOS {
        let wt = root.join(name);
        let file = match at {
            FifoAt::Admin(file) => {
                common::add_worktree(&main.repo, &wt, Some(&format!("t-{name}")));
                main.repo.join(".git/worktrees").join(name).join(file)
            }
            FifoAt::Entry(file) => {
                common::add_worktree(&main.repo, &wt, Some(&format!("t-{name}")));
                wt.join(file)
            }
            FifoAt::Common(file) => {
                let own = Fixture::new_in(base);
                common::add_worktree(&own.repo, &wt, Some(&format!("t-{name}")));
                let file = own.repo.join(".git").join(file);
                repos.push(own);
                file
            }
        };
        write(&wt.join("wip.txt"), "only copy\n");
        pending.push((wt, file, *refused));
    }
    let clean = root.join("healthy-clean");
    common::add_worktree(&main.repo, &clean, Some("t-clean"));
    let dirty = root.join("healthy-dirty");
    common::add_worktree(&main.repo, &dirty, Some("t-dirty"));
    write(&dirty.join("wip.txt"), "only copy\n");
    // A detached HEAD with a commit no ref reaches: assessing it reads the
    // other worktrees' HEADs.
    let detached = root.join("healthy-detached");
    common::add_worktree(&main.repo, &detached, None);
    main.commit(&detached, "wip.txt", "committed, detached\n", "wip");
    std::fs::create_dir(root.join("plain-with-fifo")).unwrap();
    repos.push(main);
    for f in &repos {
        set_mode(f.tmp.path(), 0o755);
        chown_r(f.tmp.path(), AGENT);
    }
    for e in std::fs::read_dir(&root).unwrap() {
        chown_r(&e.unwrap().path(), AGENT);
    }
    // The agent plants the FIFOs: its own repositories, its own worktrees.
    for (wt, file, refused) in pending {
        let bytes = std::fs::read(&file).ok();
        sh_as(
            AGENT,
            Path::new("/"),
            r#"mkdir -p "$(dirname "$F")"; rm -f "$F"; mkfifo "$F""#,
            &[("F", &file)],
        );
        replaced.push((wt, file, bytes, refused));
    }
    sh_as(
        AGENT,
        Path::new("/"),
        r#"mkfifo "$ROOT/fifo-entry" "$ROOT/plain-with-fifo/pipe""#,
        &[("ROOT", &root)],
    );
    let cfg = base.join("treeward.toml");
    let state = base.join("state");
    root_dir(&state, 0o755);
    chown_r(&state, AGENT);
    write_config(
        &cfg,
        &state.join("ledger.json"),
        &[(&root, AGENT, r#"["*"]"#)],
        "grace = \"0s\"\n",
    );
    FifoHost {
        _tmp: tmp,
        root,
        cfg,
        repos,
        replaced,
    }
}

impl FifoHost {
    /// Checks a run against the FIFOs: each worktree with a FIFO that must
    /// stop treeward reported (refused or failed, saying FIFO) and left in
    /// place, the others preserved; the FIFO entry and the plain directory
    /// removed, the healthy worktrees swept.
    fn check(&self, who: &str, doc: &Value) {
        for (wt, file, _, refused) in &self.replaced {
            let (act, error) = action(doc, wt);
            if !refused {
                assert_eq!(act, "preserved", "{who}: {}: {doc:#}", file.display());
                continue;
            }
            assert!(
                act == "refused" || act == "failed",
                "{who}: {} ({}) was {act}: {doc:#}",
                wt.display(),
                file.display()
            );
            assert!(error.contains("FIFO"), "{who}: {}: {error}", wt.display());
            assert!(wt.join("wip.txt").is_file(), "{who}: left in place");
        }
        for gone in ["fifo-entry", "plain-with-fifo", "healthy-clean"] {
            assert_eq!(
                action(doc, &self.root.join(gone)).0,
                "removed",
                "{who}: {doc:#}"
            );
        }
        for kept in ["healthy-dirty", "healthy-detached"] {
            assert_eq!(
                action(doc, &self.root.join(kept)).0,
                "preserved",
                "{who}: {doc:#}"
            );
        }
    }

    /// Control: the FIFOs that stopped treeward replaced by what they
    /// replaced; the same worktrees are now preserved (so the refusals above
    /// were the FIFOs').
    fn repair_and_check(&self, who: &str, run: impl Fn() -> Value) {
        let stopped = self.replaced.iter().filter(|r| r.3);
        for (_, file, bytes, _) in stopped.clone() {
            std::fs::remove_file(file).unwrap();
            if let Some(bytes) = bytes {
                std::fs::write(file, bytes).unwrap();
                std::os::unix::fs::chown(file, Some(AGENT), Some(AGENT)).unwrap();
            }
        }
        let doc = run();
        for (wt, _, _, _) in stopped {
            assert_eq!(
                action(&doc, wt).0,
                "preserved",
                "{who} control: {}: {doc:#}",
                wt.display()
            );
        }
        for f in &self.repos {
            assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
        }
    }
}

/// Class 4. FIFOs as `commondir`, `gitdir`, `HEAD`, `index` and `locked` in
/// the admin dir, as `HEAD` and `config` of the repository, as the entry's
/// `.git` (all refused), as the admin dir's `logs/HEAD` and the stash
/// reflog (reclaimed as usual), as an entry and inside a plain entry: the
/// sweep finishes within the watchdog, exits 0, reports each refused
/// worktree and still sweeps the healthy siblings (whose reclaim reads the
/// other worktrees' HEADs: before a6077a1 that read blocked on the FIFO).
/// Controls: the watchdog does catch a process blocked on a FIFO; with the
/// FIFOs replaced by the files they replaced, the same worktrees are
/// preserved.
///
/// Not here: a FIFO as a loose ref (`refs/heads/<branch>`) blocks git and
/// libgit2 themselves: the sweep's worker is killed at its 60 s timeout,
/// and the reaper, which reclaims in-process, waits until it is killed.
#[test]
fn fifos_never_hang_the_sweep() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let h = fifo_host();
    let (doc, took) = sweep(&h.cfg);
    h.check("treeward-sweep", &doc);
    h.repair_and_check("treeward-sweep", || sweep(&h.cfg).0);

    // Control: the watchdog sees a reader blocked on a FIFO.
    let fifo = h.root.join("control-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut cat = Command::new("cat");
    cat.arg(&fifo);
    assert!(run_bounded(cat, Duration::from_secs(1)).is_err());
    eprintln!(
        "attacks: class 4 (FIFOs, sweep): {} FIFOs tried, 0 hangs, 0 breaks; sweep {} ms; test {} ms",
        FIFOS.len() + 2,
        took.as_millis(),
        started.elapsed().as_millis()
    );
}

/// Class 5 (FIFOs). The same FIFOs against the reaper, run as the agent:
/// it finishes, exits 0, reports each refused worktree and reaps the
/// healthy entries (before a6077a1 it hung for good, its pass lock held).
/// Control: with the FIFOs repaired, it preserves them.
#[test]
fn fifos_never_hang_the_reaper() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let h = fifo_host();
    let (doc, took) = reap_as(AGENT, &h.cfg);
    h.check("treeward-reap", &doc);
    h.repair_and_check("treeward-reap", || reap_as(AGENT, &h.cfg).0);
    eprintln!(
        "attacks: class 5 (FIFOs, reaper): {} FIFOs tried, 0 hangs, 0 breaks; reap {} ms; test {} ms",
        FIFOS.len() + 2,
        took.as_millis(),
        started.elapsed().as_millis()
    );
}

/// Class 5 (forged pointers). The reaper runs as the agent (4242), the very
/// user whose locked worktree the attacker (4343) aims at from a sticky
/// root: the forged entries are refused (the attacker's, not the agent's).
/// And the reaper of the attacker's own root runs as the attacker, against
/// forgeries aimed at uid 4444's repository: refused by the deeper checks.
/// Both victims' worktrees, admin dirs, locks, files and refs are
/// byte-identical. Control: the agent's worktree, unlocked and moved into
/// the agent's root, is preserved by the same reaper, and the same checks
/// see it.
#[test]
fn the_reaper_refuses_forged_pointers() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let agent = Victim::new(base, AGENT, "victim");
    let other = Victim::new(base, VICTIM, "other");
    let evil = attacker_repo(base);
    // The agent's reaper and its root; the attacker's reaper and its root.
    let reapers = [(AGENT, "a", &agent), (ATTACKER, "b", &other)].map(|(uid, tag, v)| {
        let root = root_dir(&base.join(format!("root-{tag}")), 0o1777);
        let planted = plant_forgeries(&root, tag, &evil, v);
        let state = root_dir(&base.join(format!("state-{tag}")), 0o755);
        chown_r(&state, uid);
        let cfg = base.join(format!("treeward-{tag}.toml"));
        write_config(
            &cfg,
            &state.join("ledger.json"),
            &[(&root, uid, r#"["*"]"#)],
            "grace = \"0s\"\n",
        );
        (uid, root, planted, cfg)
    });
    let before_agent = agent.state();
    let before_other = other.state();

    let mut tried = 0;
    for (uid, _, planted, cfg) in &reapers {
        let (doc, took) = reap_as(*uid, cfg);
        for (path, what) in planted {
            let (act, error) = action(&doc, path);
            if *uid == ATTACKER && what.starts_with("a symlink") {
                assert_eq!(act, "removed", "{what}: removed as a link: {doc:#}");
                continue;
            }
            assert_eq!(act, "refused", "{what} ({}): {doc:#}", path.display());
            assert!(!error.is_empty());
            assert!(std::fs::symlink_metadata(path).is_ok(), "{what}: left");
            if *uid == ATTACKER && what.starts_with("an admin dir whose commondir") {
                assert!(error.contains("commondir names"), "{error}");
            }
        }
        tried += planted.len();
        eprintln!("reaper as uid {uid}: {} ms", took.as_millis());
    }
    agent
        .untouched(&before_agent)
        .unwrap_or_else(|e| panic!("the agent's worktree was touched: {e}"));
    other
        .untouched(&before_other)
        .unwrap_or_else(|e| panic!("uid 4444's worktree was touched: {e}"));

    // Control: the genuine worktree, released into the root, is reaped.
    let (_, root, _, cfg) = &reapers[0];
    let moved = root.join("victim-moved");
    agent.move_into(&moved);
    let (doc, _) = reap_as(AGENT, cfg);
    assert_eq!(action(&doc, &moved).0, "preserved", "control: {doc:#}");
    let seen = agent.untouched(&before_agent).expect_err("control: seen");
    assert!(seen.contains("refs changed"), "{seen}");
    eprintln!(
        "attacks: class 5 (forged pointers, reaper): {tried} entries tried against 2 reapers, 0 breaks; test {} ms",
        started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------
// Class 3: a symlink swapped in at the moment root acts.

/// A root-owned directory outside every root, with a file and a
/// subdirectory: what the attacker's symlinks point at. Only root's
/// privileges can change it.
struct Canary {
    dir: PathBuf,
    before: Snapshot,
}

impl Canary {
    fn new(tag: &str) -> Canary {
        let dir = PathBuf::from(format!(
            "/var/lib/treeward-attack-canary-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        root_dir(&dir, 0o755);
        // Its text is what a swapped `gitdir` or `.git` would say: a path
        // that leads nowhere (text that is not a path would make libgit2 in
        // the owner's worker take `/` for the working tree, and walk it).
        write(
            &dir.join("precious.txt"),
            "/nonexistent/treeward-attack-canary/.git\n",
        );
        write(&dir.join("sub/inner.txt"), "root's own bytes too\n");
        // An empty directory: what `git worktree add` accepts as the new
        // worktree's directory when a symlink at its path leads there.
        root_dir(&dir.join("empty"), 0o755);
        let before = snapshot(&dir);
        Canary { dir, before }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("precious.txt")
    }

    fn empty(&self) -> PathBuf {
        self.dir.join("empty")
    }

    /// `Ok` when every byte, mode, owner and mtime under the canary is as
    /// it was made.
    fn intact(&self) -> Result<(), String> {
        if !self.dir.is_dir() {
            return Err(format!("{} is gone", self.dir.display()));
        }
        let now = snapshot(&self.dir);
        if now == self.before {
            return Ok(());
        }
        let changed: std::collections::BTreeSet<String> = self
            .before
            .keys()
            .chain(now.keys())
            .filter(|p| self.before.get(*p) != now.get(*p))
            .map(|p| p.display().to_string())
            .collect();
        Err(format!("the canary changed: {changed:?}"))
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the attacker swaps for a symlink to the canary.
const TARGETS: &[&str] = &[
    "locked",    // <admin>/locked → the canary file
    "gitdir",    // <admin>/gitdir → the canary file
    "index",     // <admin>/index → the canary file
    "admin",     // <common>/worktrees/<name> → the canary dir
    "worktrees", // <common>/worktrees → the canary dir
    "dotgit",    // <worktree>/.git → the canary file
    "deep",      // <worktree>/deep (untracked files) → the canary dir
    "entry",     // <root>/<name> itself (the agent may rename it in a sticky root) → the canary dir
];

/// When the attacker swaps: the `count`-th event of kind `events` on the
/// watched dir whose name starts with `prefix`.
struct Trigger {
    watch: &'static str,
    events: &'static str,
    prefix: &'static str,
    count: u32,
    moment: &'static str,
}

const TRIGGERS: &[Trigger] = &[
    Trigger {
        watch: "admin",
        events: "any",
        prefix: "",
        count: 1,
        moment: "the claim's first read",
    },
    Trigger {
        watch: "admin",
        events: "any",
        prefix: "",
        count: 4,
        moment: "the claim's later reads",
    },
    Trigger {
        watch: "admin",
        events: "create",
        prefix: "locked",
        count: 1,
        moment: "the quarantine lock",
    },
    Trigger {
        watch: "admin",
        events: "create",
        prefix: "gitdir.treeward",
        count: 1,
        moment: "relocating",
    },
    Trigger {
        watch: "admin",
        events: "open",
        prefix: "index",
        count: 1,
        moment: "git assessing",
    },
    Trigger {
        watch: "admin",
        events: "any",
        prefix: "",
        count: 25,
        moment: "preserving",
    },
    Trigger {
        watch: "admin",
        events: "delete",
        prefix: "",
        count: 1,
        moment: "forgetting (prune)",
    },
    Trigger {
        watch: "worktree",
        events: "any",
        prefix: "",
        count: 1,
        moment: "the entry's first read",
    },
    Trigger {
        watch: "worktree",
        events: "open",
        prefix: "deep",
        count: 1,
        moment: "git status or the removal walking in",
    },
    Trigger {
        watch: "worktree",
        events: "delete",
        prefix: "",
        count: 1,
        moment: "root's removal",
    },
];

/// A repository of the agent's (strict path) and a sticky root-owned root
/// configured for the agent, whose worktrees the attacker races.
struct SwapHost {
    _tmp: tempfile::TempDir,
    f: Fixture,
    root: PathBuf,
    cfg: PathBuf,
    /// Who owns the repository and makes the worktrees.
    owner: u32,
}

fn swap_host() -> SwapHost {
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let f = Fixture::new_in(base);
    set_mode(f.tmp.path(), 0o755);
    chown_r(f.tmp.path(), AGENT);
    let root = root_dir(&base.join("root"), 0o1777);
    let cfg = base.join("treeward.toml");
    write_config(
        &cfg,
        &base.join("ledger.json"),
        &[(&root, AGENT, r#"["wt-*"]"#)],
        "",
    );
    SwapHost {
        _tmp: tmp,
        f,
        root,
        cfg,
        owner: AGENT,
    }
}

/// A repository of root's (strict path) and a sticky root-owned root with
/// no `owner` configured: root's own worktrees, which root restores
/// in-process, and where the attacker (4343) may create names.
fn root_swap_host() -> SwapHost {
    let tmp = common::strict_tempdir();
    let base = tmp.path();
    let f = Fixture::new_in(base);
    set_mode(f.tmp.path(), 0o755);
    let root = root_dir(&base.join("root"), 0o1777);
    let cfg = base.join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"wt-*\"]\npolicy = \"preserve\"\n",
            base.join("ledger.json").display(),
            root.display()
        ),
    )
    .unwrap();
    SwapHost {
        _tmp: tmp,
        f,
        root,
        cfg,
        owner: 0,
    }
}

impl SwapHost {
    fn common(&self) -> PathBuf {
        self.f.repo.join(".git")
    }

    fn admin(&self, name: &str) -> PathBuf {
        self.common().join("worktrees").join(name)
    }

    /// A new dirty worktree `<root>/<name>` of the owner's (detached; an
    /// untracked `deep/a/b/f.txt`, an edited README), made by the agent.
    fn add(&self, name: &str) -> PathBuf {
        let wt = self.root.join(name);
        sh_as(
            self.owner,
            &self.f.repo,
            r#"git worktree add -q --detach "$WT" main && cd "$WT" && mkdir -p deep/a/b \
               && echo only-copy > deep/a/b/f.txt && echo edited >> README"#,
            &[("WT", &wt)],
        );
        wt
    }

    fn spec(&self, name: &str, mode: &str, target: &str, t: &Trigger, canary: &Canary) -> Value {
        json!({
            "mode": mode,
            "target": target,
            "name": name,
            "root": self.root,
            "entry": self.root.join(name),
            "common": self.common(),
            "worktrees": self.common().join("worktrees"),
            "admin": self.admin(name),
            "canary_dir": canary.dir,
            "canary_file": canary.file(),
            "watch": t.watch,
            "events": t.events,
            "prefix": t.prefix,
            "count": t.count,
        })
    }

    /// Removes whatever is left of worktree `name` (live, aside, in the
    /// trash, its admin entry), as root, never through a link.
    fn clean(&self, name: &str) {
        let mut places = vec![
            self.root.join(name),
            self.root.join(format!(".aside-{name}")),
            self.admin(name),
            self.common()
                .join("worktrees")
                .join(format!("{name}.aside")),
        ];
        if let Ok(batches) = std::fs::read_dir(self.root.join(".treeward-trash")) {
            places.extend(batches.flatten().map(|b| b.path().join(name)));
        }
        let worktrees = self.common().join("worktrees");
        if worktrees.is_symlink() {
            std::fs::remove_file(&worktrees).unwrap();
            std::fs::rename(self.common().join("worktrees.aside"), &worktrees).unwrap();
        }
        for p in places {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                Ok(_) => std::fs::remove_file(&p).unwrap(),
                Err(_) => {}
            }
        }
    }
}

/// The attacker process, running as the agent (4242): the test binary
/// re-executed with [`ATTACK_SPEC`] set. It says `ATTACK-READY` once its
/// watches are set, `ATTACK-SWAPPED` when it swapped, and
/// `ATTACK-RESULT …` after it put things back, which it does when its
/// stdin is closed.
struct Attacker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Attacker {
    fn start(spec: &Value) -> Attacker {
        Attacker::start_as(AGENT, spec)
    }

    /// The attacker process as `uid` (gid = uid).
    fn start_as(uid: u32, spec: &Value) -> Attacker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                // Its name in the suite binary (tests/suite/main.rs).
                "attacks::attacker_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ATTACK_SPEC, spec.to_string())
            .env("HOME", "/nonexistent")
            .current_dir("/")
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let a = Attacker {
            child,
            stdin,
            lines,
        };
        a.wait_for("ATTACK-READY", Duration::from_secs(30))
            .expect("the attacker process got ready");
        a
    }

    /// The first line from the attacker saying `prefix`, from there on.
    fn wait_for(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                // libtest's "test attacker_process ... " may lead the line.
                Ok(line) if line.contains(prefix) => {
                    return line.find(prefix).map(|at| line[at..].to_owned())
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Tells the attacker to put things back; its `ATTACK-RESULT` line.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let result = self
            .wait_for("ATTACK-RESULT", Duration::from_secs(30))
            .expect("the attacker process reported");
        let _ = self.child.wait();
        result
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A number `key=N` of an `ATTACK-RESULT` line.
fn figure(result: &str, key: &str) -> u64 {
    result
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Not a test of its own: the attacker process that the symlink-swap tests
/// start as uid 4242 (the test binary re-executed with [`ATTACK_SPEC`]).
#[test]
#[ignore = "the attacker process of the symlink-swap tests, which start it as uid 4242"]
fn attacker_process() {
    let Ok(spec) = std::env::var(ATTACK_SPEC) else {
        return;
    };
    attacker::run(&serde_json::from_str(&spec).unwrap());
}

mod attacker {
    //! What the attacker does, by path, with the agent's own rights.
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use serde_json::Value;
    use std::os::fd::AsFd;
    use std::path::{Path, PathBuf};

    /// A name to swap: `dir/name` becomes a symlink to `link_to`, what was
    /// there waits at `dir/aside`.
    struct Place {
        dir: PathBuf,
        name: String,
        aside: String,
        link_to: PathBuf,
    }

    struct Swapped {
        dir: PathBuf,
        moved: bool,
        planted: bool,
    }

    fn path(spec: &Value, key: &str) -> PathBuf {
        PathBuf::from(spec[key].as_str().unwrap())
    }

    /// Where the worktree is now: its admin dir's `gitdir` says (the sweep
    /// points it at the trash); the attacker holds no descriptor inside the
    /// entry, which would make it "in use".
    fn worktree_now(spec: &Value) -> PathBuf {
        std::fs::read_to_string(path(spec, "admin").join("gitdir"))
            .ok()
            .and_then(|g| Path::new(g.trim_end()).parent().map(Path::to_path_buf))
            .unwrap_or_else(|| path(spec, "entry"))
    }

    fn place(spec: &Value) -> Place {
        let target = spec["target"].as_str().unwrap();
        let name = spec["name"].as_str().unwrap().to_owned();
        let file = path(spec, "canary_file");
        let dir = path(spec, "canary_dir");
        let at = |d: PathBuf, n: &str, aside: String, to: PathBuf| Place {
            dir: d,
            name: n.to_owned(),
            aside,
            link_to: to,
        };
        match target {
            "locked" | "gitdir" | "index" => {
                at(path(spec, "admin"), target, format!("{target}.aside"), file)
            }
            "admin" => at(path(spec, "worktrees"), &name, format!("{name}.aside"), dir),
            "worktrees" => at(
                path(spec, "common"),
                "worktrees",
                "worktrees.aside".into(),
                dir,
            ),
            "dotgit" => at(worktree_now(spec), ".git", ".git.aside".into(), file),
            "deep" => at(worktree_now(spec), "deep", "deep.aside".into(), dir),
            "entry" => at(path(spec, "root"), &name, format!(".aside-{name}"), dir),
            other => panic!("unknown target {other}"),
        }
    }

    fn swap(p: &Place) -> Swapped {
        let (name, aside) = (p.dir.join(&p.name), p.dir.join(&p.aside));
        let mut moved = std::fs::rename(&name, &aside).is_ok();
        let planted = std::os::unix::fs::symlink(&p.link_to, &name).is_ok();
        if !planted && moved {
            moved = std::fs::rename(&aside, &name).is_err();
        }
        Swapped {
            dir: p.dir.clone(),
            moved,
            planted,
        }
    }

    /// Puts back what was swapped, if the symlink is still there (if the
    /// sweep replaced or removed it, what it put there stays).
    fn restore(s: &Swapped, p: &Place) {
        let (name, aside) = (s.dir.join(&p.name), s.dir.join(&p.aside));
        let ours = std::fs::symlink_metadata(&name).is_ok_and(|m| m.is_symlink());
        if s.planted && ours {
            let _ = std::fs::remove_file(&name);
        }
        if s.moved && std::fs::symlink_metadata(&name).is_err() {
            let _ = std::fs::rename(&aside, &name);
        }
    }

    fn stdin_closed(timeout: PollTimeout) -> bool {
        let stdin = std::io::stdin();
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, timeout).unwrap_or(0) > 0
    }

    pub fn run(spec: &Value) {
        match spec["mode"].as_str().unwrap() {
            "inotify" => on_event(spec),
            "blind" => blind(spec),
            "restore" => on_restore(spec),
            other => panic!("unknown mode {other}"),
        }
    }

    /// Watches the admin dir and the worktree; at the trigger, swaps and
    /// leaves the symlink there until told to stop.
    fn on_event(spec: &Value) {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).unwrap();
        let mask = AddWatchFlags::IN_OPEN
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ACCESS
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF;
        let admin = ino.add_watch(&path(spec, "admin"), mask).unwrap();
        let worktree = ino.add_watch(&path(spec, "entry"), mask).unwrap();
        let watched = if spec["watch"] == "admin" {
            admin
        } else {
            worktree
        };
        let wanted = match spec["events"].as_str().unwrap() {
            "create" => AddWatchFlags::IN_CREATE,
            "delete" => AddWatchFlags::IN_DELETE | AddWatchFlags::IN_DELETE_SELF,
            "open" => AddWatchFlags::IN_OPEN,
            _ => mask,
        };
        let prefix = spec["prefix"].as_str().unwrap();
        let count = spec["count"].as_u64().unwrap();
        println!("ATTACK-READY");
        let (mut events, mut seen) = (0u64, 0u64);
        let mut swapped = None;
        loop {
            let stdin = std::io::stdin();
            let mut fds = [
                PollFd::new(ino.as_fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            let stop = fds[1].revents().is_some_and(|r| !r.is_empty());
            for ev in ino.read_events().unwrap_or_default() {
                events += 1;
                let named = ev.name.as_ref().map(|n| n.to_string_lossy().into_owned());
                let matches = ev.wd == watched
                    && ev.mask.intersects(wanted)
                    && (prefix.is_empty() || named.is_some_and(|n| n.starts_with(prefix)));
                if swapped.is_none() && matches {
                    seen += 1;
                    if seen == count {
                        let p = place(spec);
                        let s = swap(&p);
                        println!(
                            "ATTACK-SWAPPED {} planted={}",
                            p.dir.join(&p.name).display(),
                            s.planted
                        );
                        swapped = Some((s, p));
                    }
                }
            }
            if stop {
                break;
            }
        }
        let planted = swapped.as_ref().is_some_and(|(s, _)| s.planted);
        if let Some((s, p)) = &swapped {
            restore(s, p);
        }
        println!(
            "ATTACK-RESULT events={events} fired={} planted={}",
            u8::from(swapped.is_some()),
            u8::from(planted)
        );
    }

    /// Where a restore target appears (the place whose inotify events name
    /// it, and that name; `""`: any event there) and what is swapped.
    fn restore_place(spec: &Value) -> (&'static str, String, Place) {
        let target = spec["target"].as_str().unwrap();
        let name = spec["name"].as_str().unwrap().to_owned();
        let (file, dir) = (path(spec, "canary_file"), path(spec, "canary_dir"));
        let at = |d: PathBuf, n: &str, to: PathBuf| Place {
            dir: d,
            name: n.to_owned(),
            aside: if n == name {
                format!(".aside-{n}")
            } else {
                format!("{n}.aside")
            },
            link_to: to,
        };
        match target {
            "entry" => ("root", name.clone(), at(path(spec, "root"), &name, dir)),
            "worktrees" => (
                "common",
                "worktrees".into(),
                at(path(spec, "common"), "worktrees", dir),
            ),
            "admin" => (
                "worktrees",
                name.clone(),
                at(path(spec, "worktrees"), &name, dir),
            ),
            "gitdir" | "HEAD" | "commondir" | "index.lock" => (
                "admin",
                target.into(),
                at(path(spec, "admin"), target, file),
            ),
            "dotgit" => (
                "entry",
                ".git".into(),
                at(path(spec, "entry"), ".git", file),
            ),
            "README" => (
                "entry",
                target.into(),
                at(path(spec, "entry"), target, file),
            ),
            "src" | "deep" => ("entry", target.into(), at(path(spec, "entry"), target, dir)),
            // The attacker (4343) plants at the free path in the sticky
            // root: a symlink to an empty root-owned directory, or an empty
            // directory of its own (mode 0777) that it swaps for a symlink
            // once git writes into it; when the new admin dir is created
            // (git has found the path free), `-early` at the first event in
            // the common dir (the repository verified or read), `-again` as
            // soon as the file it left at the path is moved aside.
            squat if squat.starts_with("squat-") => {
                let to = if squat.starts_with("squat-link") {
                    path(spec, "canary_empty")
                } else {
                    dir
                };
                let (watch, wanted) = if squat.ends_with("-early") {
                    ("common", String::new())
                } else if squat.ends_with("-again") {
                    ("root", name.clone())
                } else {
                    ("worktrees", name.clone())
                };
                (watch, wanted, at(path(spec, "root"), &name, to))
            }
            other => panic!("unknown restore target {other}"),
        }
    }

    /// Against `treeward restore`: watches the root and the common dir, and
    /// `<common>/worktrees`, the new admin dir and the new worktree as they
    /// appear. At the event where the target appears — or, `later`, at the
    /// first event inside it (a directory) or the next one naming it (a
    /// file) — swaps it for a symlink to the canary and leaves that there
    /// until told to stop. The squats plant at the worktree's free path
    /// instead (see [`restore_place`]); `squat-dir` in two steps: an empty
    /// directory of its own (which git would accept), swapped for the
    /// symlink at the first event inside it.
    fn on_restore(spec: &Value) {
        use nix::sys::inotify::WatchDescriptor;
        use std::collections::HashMap;
        use std::os::unix::fs::PermissionsExt;
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).unwrap();
        let mask = AddWatchFlags::IN_ALL_EVENTS
            | AddWatchFlags::IN_DONT_FOLLOW
            | AddWatchFlags::IN_ONLYDIR;
        let (watch, wanted, place) = restore_place(spec);
        let target_path = place.dir.join(&place.name);
        let target = spec["target"].as_str().unwrap();
        let squat = target.starts_with("squat-");
        let squat_dir = target.starts_with("squat-dir");
        let later = spec["later"].as_bool().unwrap();
        let again = squat && target.ends_with("-again");
        let name = spec["name"].as_str().unwrap().to_owned();
        if again {
            std::fs::write(&target_path, "left here to be moved aside\n").unwrap();
        }
        let where_is = |at: &str| match at {
            "inside" => target_path.clone(),
            at => path(spec, at),
        };
        let mut places: HashMap<WatchDescriptor, &'static str> = HashMap::new();
        // Watches `at`; true when it has the target already (or, for the
        // inside of the target, anything).
        let add = |places: &mut HashMap<WatchDescriptor, &'static str>, at: &'static str| {
            let dir = where_is(at);
            let Ok(wd) = ino.add_watch(&dir, mask) else {
                return false;
            };
            places.insert(wd, at);
            match at {
                "inside" => std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()),
                at => {
                    at == watch
                        && !wanted.is_empty()
                        && dir.join(&wanted).symlink_metadata().is_ok()
                }
            }
        };
        // Where the events inside the target (a directory) arrive.
        let inside: Option<&'static str> = match target {
            "entry" => Some("entry"),
            "worktrees" => Some("worktrees"),
            "admin" => Some("admin"),
            "src" | "deep" => Some("inside"),
            t if t.starts_with("squat-dir") => Some("inside"),
            _ => None,
        };
        for at in ["root", "common", "worktrees"] {
            add(&mut places, at);
        }
        println!("ATTACK-READY");
        let mut events = 0u64;
        let mut swapped: Option<Swapped> = None;
        // The target appeared (a squat: was planted), waiting for `later`.
        let mut appeared = false;
        let mut squatted = false;
        loop {
            let stdin = std::io::stdin();
            let mut fds = [
                PollFd::new(ino.as_fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            let stop = fds[1].revents().is_some_and(|r| !r.is_empty());
            for ev in ino.read_events().unwrap_or_default() {
                events += 1;
                if swapped.is_some() {
                    continue;
                }
                let at = places.get(&ev.wd).copied().unwrap_or("");
                let named = ev
                    .name
                    .as_ref()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut hit = at == watch
                    && (wanted.is_empty() || named == wanted)
                    && (!again || ev.mask.contains(AddWatchFlags::IN_MOVED_FROM));
                // Follow the restore into what it creates.
                let created = ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                let next = match (at, named.as_str()) {
                    ("common", "worktrees") => Some("worktrees"),
                    ("worktrees", n) if n == name => Some("admin"),
                    ("root", n) if n == name && !squat => Some("entry"),
                    _ => None,
                };
                if let Some(next) = next.filter(|_| created) {
                    hit |= add(&mut places, next);
                }
                let fire = if appeared {
                    // Later: the first event inside, or the next naming it.
                    match inside {
                        Some(inside) => at == inside,
                        None => hit,
                    }
                } else if hit {
                    if squat_dir {
                        // Step one: an empty directory of the attacker's.
                        squatted = std::fs::create_dir(&target_path).is_ok()
                            && std::fs::set_permissions(
                                &target_path,
                                PermissionsExt::from_mode(0o777),
                            )
                            .is_ok();
                        appeared = squatted;
                        squatted && add(&mut places, "inside")
                    } else if later {
                        appeared = true;
                        inside.is_some_and(|i| i == "inside" && add(&mut places, i))
                    } else {
                        true
                    }
                } else {
                    false
                };
                if fire {
                    let s = swap(&place);
                    println!(
                        "ATTACK-SWAPPED {} planted={}",
                        target_path.display(),
                        s.planted
                    );
                    swapped = Some(s);
                }
            }
            if stop {
                break;
            }
        }
        let planted = swapped.as_ref().is_some_and(|s| s.planted);
        if let Some(s) = &swapped {
            restore(s, &place);
        }
        println!(
            "ATTACK-RESULT events={events} fired={} planted={} squatted={}",
            u8::from(swapped.is_some()),
            u8::from(planted),
            u8::from(squatted)
        );
    }

    /// Swaps and puts back in a tight loop until told to stop.
    fn blind(spec: &Value) {
        println!("ATTACK-READY");
        let (mut rounds, mut planted) = (0u64, 0u64);
        while !stdin_closed(PollTimeout::ZERO) {
            let p = place(spec);
            let s = swap(&p);
            std::thread::yield_now();
            restore(&s, &p);
            rounds += 1;
            planted += u64::from(s.planted);
        }
        println!("ATTACK-RESULT rounds={rounds} fired={rounds} planted={planted}");
    }
}

/// How many sweeps a swap loop runs: `TREEWARD_ATTACK_ITERATIONS`, or
/// `default`.
fn iterations(default: usize) -> usize {
    std::env::var("TREEWARD_ATTACK_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// `n` sweeps, each against a fresh dirty worktree of the agent's and an
/// attacker process (as the agent) in `mode`, cycling through the targets
/// (and, on events, the triggers). After each: the canary must be intact.
/// Returns the report line.
fn swap_loop(mode: &str, n: usize) -> String {
    let _busy = common::busy();
    let started = Instant::now();
    let h = swap_host();
    let canary = Canary::new(mode);
    let (mut fired, mut planted, mut breaks) = (0u64, 0u64, Vec::new());
    let mut outcomes: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut slowest = (Duration::ZERO, String::new());
    for i in 0..n {
        let name = format!("wt-{i}");
        h.add(&name);
        let target = TARGETS[i % TARGETS.len()];
        let trigger = &TRIGGERS[(i / TARGETS.len()) % TRIGGERS.len()];
        let attacker = Attacker::start(&h.spec(&name, mode, target, trigger, &canary));
        let (doc, took) = sweep(&h.cfg);
        let result = attacker.finish();
        if took > slowest.0 {
            slowest = (took, format!("{target} at {}", trigger.moment));
        }
        fired += figure(&result, "fired");
        planted += figure(&result, "planted");
        let act = doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == h.root.join(&name).to_str().unwrap())
            .map_or("not reported", |e| e["action"].as_str().unwrap_or("?"));
        *outcomes
            .entry(target)
            .or_default()
            .entry(act.to_owned())
            .or_default() += 1;
        if let Err(e) = canary.intact() {
            breaks.push(format!(
                "sweep {i}: target {target} at {}: {e}",
                trigger.moment
            ));
        }
        h.clean(&name);
    }
    assert_eq!(
        breaks,
        Vec::<String>::new(),
        "root wrote through the attacker's symlink"
    );
    canary.intact().unwrap();
    assert_eq!(root_owned(h.f.tmp.path()), Vec::<String>::new());
    // The attacker really raced: its symlinks were in place during sweeps.
    assert!(planted > 0, "{mode}: no symlink was ever planted");
    format!(
        "attacks: class 3 ({mode} symlink swaps): {n} sweeps, {fired} swaps fired, {planted} symlinks planted, {} breaks; entry outcomes by target {outcomes:?}; slowest sweep {} ms ({}); {} ms in all",
        breaks.len(),
        slowest.0.as_millis(),
        slowest.1,
        started.elapsed().as_millis()
    )
}

/// Class 3. An attacker process (the agent, 4242, who owns the repository
/// and may change its admin dir and its worktree) watches the admin dir and
/// the worktree with inotify and, at the first matching event of each
/// sweep — the claim's reads, the quarantine lock, relocating, git's
/// assessing, preserving, forgetting, root's removal — swaps `locked`,
/// `gitdir`, `index`, the admin dir, `<common>/worktrees`, `.git`, a
/// directory of the worktree or the entry itself for a symlink to a
/// root-owned canary outside the root. After every sweep the canary is
/// byte-for-byte intact; nothing root-owned appears in the repository.
/// Control: [`a_naive_write_after_the_swap_clobbers_the_canary`].
///
/// Seen on the way: `gitdir` swapped after the worker's claim is what
/// libgit2 takes the working tree from, so the owner can make its own
/// worker assess another tree (text that is not a path makes it walk `/`
/// as the owner, for seconds); the removal still acts on the claimed entry
/// only.
#[test]
fn symlinks_swapped_in_on_inotify_events_never_redirect_root() {
    if !root_only() {
        return;
    }
    eprintln!("{}", swap_loop("inotify", iterations(200)));
}

/// Class 3, blind: the attacker swaps and restores in a tight loop for the
/// whole sweep, each target in turn.
#[test]
fn symlinks_swapped_in_blindly_never_redirect_root() {
    if !root_only() {
        return;
    }
    eprintln!("{}", swap_loop("blind", iterations(200) / 4));
}

/// A write or removal as root by path, the way a naive implementation would.
type NaiveWrite = fn(&SwapHost, &str);

/// Control of class 3: the same attacker, the same trigger (root touching
/// the admin dir), then a naive path-based write or removal as root: it
/// goes through the symlink into the canary, and the canary check sees it.
#[test]
fn a_naive_write_after_the_swap_clobbers_the_canary() {
    if !root_only() {
        return;
    }
    let h = swap_host();
    let first = &TRIGGERS[0];
    let naive: [(&str, NaiveWrite); 4] = [
        ("gitdir", |h, name| {
            std::fs::write(h.admin(name).join("gitdir"), "/elsewhere/.git\n").unwrap()
        }),
        ("admin", |h, name| {
            std::fs::write(h.admin(name).join("locked"), "naive lock").unwrap()
        }),
        ("deep", |h, name| {
            std::fs::remove_file(h.root.join(name).join("deep/precious.txt")).unwrap()
        }),
        ("entry", |h, name| {
            std::fs::write(h.root.join(name).join("naive.txt"), "x").unwrap()
        }),
    ];
    let mut hits = 0;
    for (target, write_naively) in naive {
        let name = format!("wt-control-{target}");
        h.add(&name);
        let canary = Canary::new(&format!("control-{target}"));
        let attacker = Attacker::start(&h.spec(&name, "inotify", target, first, &canary));
        // Root touches the admin dir, as the claim does first.
        std::fs::read(h.admin(&name).join("HEAD")).unwrap();
        attacker
            .wait_for("ATTACK-SWAPPED", Duration::from_secs(10))
            .expect("the attacker swapped at the event");
        write_naively(&h, &name);
        let seen = canary
            .intact()
            .expect_err("the naive write reached the canary");
        eprintln!("control {target}: {seen}");
        hits += 1;
        attacker.finish();
        h.clean(&name);
    }
    eprintln!(
        "attacks: class 3 control: {hits} naive writes after the swap, {hits} reached the canary"
    );
}

// ---------------------------------------------------------------------------
// Class 3 at restore: a symlink swapped in while `treeward restore` rebuilds
// a preserved worktree.

/// What the attacker swaps while root restores, as whom, and when.
struct RestoreTarget {
    /// See `attacker::restore_place`.
    target: &'static str,
    uid: u32,
    moment: &'static str,
}

const RESTORE_TARGETS: &[RestoreTarget] = &[
    RestoreTarget {
        target: "entry",
        uid: AGENT,
        moment: "the new worktree's directory created (→ the canary dir)",
    },
    RestoreTarget {
        target: "worktrees",
        uid: AGENT,
        moment: "<common>/worktrees created (→ the canary dir)",
    },
    RestoreTarget {
        target: "admin",
        uid: AGENT,
        moment: "<common>/worktrees/<name> created (→ the canary dir)",
    },
    RestoreTarget {
        target: "gitdir",
        uid: AGENT,
        moment: "the admin dir's gitdir written (→ the canary file)",
    },
    RestoreTarget {
        target: "HEAD",
        uid: AGENT,
        moment: "the admin dir's HEAD written (→ the canary file)",
    },
    RestoreTarget {
        target: "commondir",
        uid: AGENT,
        moment: "the admin dir's commondir written (→ the canary file)",
    },
    RestoreTarget {
        target: "index.lock",
        uid: AGENT,
        moment: "the new index being written (→ the canary file)",
    },
    RestoreTarget {
        target: "dotgit",
        uid: AGENT,
        moment: "the worktree's .git written (→ the canary file)",
    },
    RestoreTarget {
        target: "README",
        uid: AGENT,
        moment: "a tracked file checked out (→ the canary file)",
    },
    RestoreTarget {
        target: "src",
        uid: AGENT,
        moment: "a tracked directory checked out (→ the canary dir)",
    },
    RestoreTarget {
        target: "deep",
        uid: AGENT,
        moment: "the untracked files written (→ the canary dir)",
    },
    RestoreTarget {
        target: "squat-link",
        uid: ATTACKER,
        moment: "git found the path free: a symlink there (→ an empty canary dir)",
    },
    RestoreTarget {
        target: "squat-dir",
        uid: ATTACKER,
        moment: "git found the path free: an empty 0777 dir there, swapped (→ the canary dir) at the first event in it",
    },
    RestoreTarget {
        target: "squat-link-early",
        uid: ATTACKER,
        moment: "the repository first read: a symlink at the path (→ an empty canary dir)",
    },
    RestoreTarget {
        target: "squat-dir-early",
        uid: ATTACKER,
        moment: "the repository first read: an empty 0777 dir at the path, swapped (→ the canary dir) at the first event in it",
    },
];

/// Against root's own repository, restored by root in-process in a sticky
/// root: the attacker (4343) can only create names in the root.
const ROOT_REPO_TARGETS: &[RestoreTarget] = &[
    RestoreTarget {
        target: "squat-link",
        uid: ATTACKER,
        moment: "root's repository; git found the path free: a symlink there (→ an empty canary dir)",
    },
    RestoreTarget {
        target: "squat-dir",
        uid: ATTACKER,
        moment: "root's repository; git found the path free: an empty 0777 dir there, swapped (→ the canary dir) at the first event in it",
    },
    RestoreTarget {
        target: "squat-link-early",
        uid: ATTACKER,
        moment: "root's repository, first read: a symlink at the path (→ an empty canary dir)",
    },
    RestoreTarget {
        target: "squat-dir-early",
        uid: ATTACKER,
        moment: "root's repository, first read: an empty 0777 dir at the path, swapped (→ the canary dir) at the first event in it",
    },
    RestoreTarget {
        target: "squat-link-again",
        uid: ATTACKER,
        moment: "root's repository; the attacker's file at the path moved aside: a symlink there (→ an empty canary dir)",
    },
    RestoreTarget {
        target: "squat-dir-again",
        uid: ATTACKER,
        moment: "root's repository; the attacker's file at the path moved aside: an empty 0777 dir there, swapped (→ the canary dir) at the first event in it",
    },
];

impl SwapHost {
    fn restore_spec(&self, name: &str, target: &str, later: bool, canary: &Canary) -> Value {
        json!({
            "mode": "restore",
            "target": target,
            "name": name,
            "root": self.root,
            "entry": self.root.join(name),
            "common": self.common(),
            "worktrees": self.common().join("worktrees"),
            "admin": self.admin(name),
            "canary_dir": canary.dir,
            "canary_file": canary.file(),
            "canary_empty": canary.empty(),
            "later": later,
        })
    }

    /// `treeward release <root>/<name>` as root: the record a restore by
    /// id names. Returns its id.
    fn release(&self, name: &str) -> String {
        let out = common::output_within(
            Command::new(env!("CARGO_BIN_EXE_treeward"))
                .args(["release", "--json", "--config"])
                .arg(&self.cfg)
                .arg(self.root.join(name))
                .env_remove("TREEWARD_CONFIG")
                .current_dir("/"),
            WATCHDOG,
        );
        let (code, doc, stderr) = common::json_report(&out);
        assert_eq!(code, 0, "release {name}: {stderr}");
        doc["id"].as_str().unwrap().to_owned()
    }

    /// `treeward restore <what> --json` as root (the repository's owner is
    /// the root's, 4242, whose worker does the work), under the watchdog.
    fn restore(&self, what: &[&str]) -> std::process::Output {
        common::output_within(
            Command::new(env!("CARGO_BIN_EXE_treeward"))
                .arg("restore")
                .args(what)
                .arg("--json")
                .arg("--config")
                .arg(&self.cfg)
                .env_remove("TREEWARD_CONFIG")
                .current_dir("/"),
            WATCHDOG,
        )
    }

    /// Removes, as root and never through a link, everything a restore and
    /// its attacker left: every name of the root but its trash, every
    /// admin dir (the sweep pruned those of the worktrees it preserved),
    /// and a swapped `<common>/worktrees`.
    fn clear_restores(&self) {
        let worktrees = self.common().join("worktrees");
        let aside = self.common().join("worktrees.aside");
        if worktrees.is_symlink() {
            std::fs::remove_file(&worktrees).unwrap();
        }
        if aside.is_dir() && std::fs::symlink_metadata(&worktrees).is_err() {
            std::fs::rename(&aside, &worktrees).unwrap();
        }
        let clear = |dir: &Path, keep: &str| {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name() == keep {
                    continue;
                }
                let p = e.path();
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                    Ok(_) => std::fs::remove_file(&p).unwrap(),
                    Err(_) => {}
                }
            }
        };
        clear(&self.root, ".treeward-trash");
        clear(&worktrees, "");
        if aside.is_dir() {
            std::fs::remove_dir_all(&aside).unwrap();
        }
    }

    /// Paths owned by root in the repository, or in the root outside its
    /// trash (the sweep's own, root-owned): in the restored worktree.
    fn root_owned_outside_the_trash(&self) -> Vec<String> {
        let trash = self.root.join(".treeward-trash");
        let mut found = root_owned(self.f.tmp.path());
        found.extend(
            root_owned(&self.root)
                .into_iter()
                .filter(|p| !Path::new(p).starts_with(&trash)),
        );
        found
    }
}

/// The figures of a restore swap loop.
#[derive(Default)]
struct RestoreTally {
    restores: usize,
    fired: u64,
    planted: u64,
    squatted: u64,
    breaks: Vec<String>,
    outcomes: BTreeMap<String, BTreeMap<String, usize>>,
    slowest: (Duration, String),
}

/// One round against `h`: a dirty worktree of its owner's per target,
/// every other one released (a ledger record); one sweep preserves them
/// all; each is then restored by root — by record id, or by its work ref
/// with `--repo` and `--path` — with its attacker at work. After each, what
/// may have broken goes to `tally.breaks`.
fn restore_round(
    h: &SwapHost,
    round: usize,
    targets: &[RestoreTarget],
    canary: &Canary,
    tally: &mut RestoreTally,
) {
    let tag = if h.owner == 0 { "r" } else { "a" };
    let names: Vec<String> = (0..targets.len())
        .map(|k| format!("wt-{tag}{round}-{k}"))
        .collect();
    let mut ids = Vec::new();
    for (k, name) in names.iter().enumerate() {
        h.add(name);
        ids.push((k % 2 == 0).then(|| h.release(name)));
    }
    let (doc, _) = sweep(&h.cfg);
    for ((name, t), id) in names.iter().zip(targets).zip(&ids) {
        let wt = h.root.join(name);
        assert_eq!(action(&doc, &wt).0, "preserved", "{doc:#}");
        let work = entry(&doc, &wt)["preserved_refs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|r| r.ends_with("/work"))
            .unwrap_or_else(|| panic!("{name}: no work ref: {doc:#}"))
            .to_owned();
        let (repo, path) = (h.f.repo.to_str().unwrap(), wt.to_str().unwrap());
        let what = match id {
            Some(id) => vec![id.as_str()],
            None => vec![work.as_str(), "--repo", repo, "--path", path],
        };
        // As the target appears, or at the first event inside it (the next
        // one naming it, for a file).
        let later = round % 2 == 1 && t.uid == AGENT;
        let moment = format!("{}{}", t.moment, if later { ", later" } else { "" });
        let attacker = Attacker::start_as(t.uid, &h.restore_spec(name, t.target, later, canary));
        let began = Instant::now();
        let out = h.restore(&what);
        let took = began.elapsed();
        let result = attacker.finish();
        tally.restores += 1;
        if took > tally.slowest.0 {
            tally.slowest = (took, moment.clone());
        }
        tally.fired += figure(&result, "fired");
        tally.planted += figure(&result, "planted");
        tally.squatted += figure(&result, "squatted");
        let code = out.status.code();
        let swap = match (figure(&result, "fired"), figure(&result, "planted")) {
            (_, 1) => "planted",
            (1, _) => "not planted",
            _ => "not fired",
        };
        *tally
            .outcomes
            .entry(format!(
                "{}{}",
                if h.owner == 0 { "root's " } else { "" },
                t.target
            ))
            .or_default()
            .entry(format!("{swap}, exit {}", code.unwrap_or(-1)))
            .or_default() += 1;
        let mut broke = Vec::new();
        if !matches!(code, Some(0 | 2)) {
            broke.push(format!(
                "exit {code:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Err(e) = canary.intact() {
            broke.push(e);
        }
        // Restored: into a directory of the owner's, not through a link.
        if code == Some(0) {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(&wt);
            if !m.as_ref().is_ok_and(|m| m.is_dir() && m.uid() == h.owner) {
                broke.push(format!("restored into {m:?}"));
            }
        }
        // Root's own repository and worktrees are root's; in the agent's,
        // root wrote nothing.
        if h.owner != 0 {
            let rooty = h.root_owned_outside_the_trash();
            if !rooty.is_empty() {
                broke.push(format!("root-owned: {rooty:?}"));
            }
        }
        if !broke.is_empty() {
            tally
                .breaks
                .push(format!("{name}: {moment}: {}", broke.join("; ")));
        }
        h.clear_restores();
    }
}

/// Class 3 at restore. Rounds of: a dirty worktree of the agent's (4242,
/// in a sticky root whose `owner` is 4242) per target of
/// [`RESTORE_TARGETS`], one sweep preserving them all, then `treeward
/// restore` of each as root (which verifies the repository and restores as
/// 4242 in a worker) — by record id or by preserved ref — while an
/// attacker process watches with inotify and, where the target appears or
/// at the first event inside it, swaps the new worktree's directory,
/// `<common>/worktrees`, the new admin dir, its `gitdir`, `HEAD`,
/// `commondir`, `index.lock`, the worktree's `.git`, a tracked file, a
/// tracked or untracked directory for a symlink to a root-owned canary (as
/// 4242, who owns the repository), or squats the path in the sticky root
/// (as 4343); and the same with a root's own repository in a sticky root
/// with no `owner`, which root restores in-process, against 4343's squats
/// ([`ROOT_REPO_TARGETS`]). After every restore: it ended within the
/// watchdog with 0 or 2, the canary is byte-for-byte intact (mtimes too),
/// a restored worktree is a directory of the owner's, and nothing
/// root-owned is in the agent's repository or root (the trash aside).
/// Control: [`a_naive_write_after_a_restore_swap_clobbers_the_canary`].
///
/// Found on the way: git takes an existing path that leads to an empty
/// directory for the new worktree's, so a symlink (or an empty directory
/// of 4343's, renamed away once git is inside) planted at the path after
/// it was found free had root write `.git` and the whole checkout into a
/// root-owned directory elsewhere, and git's clean-up of a failed add
/// emptied that directory as root; the worker now creates the directory
/// itself with `mkdir` first (`src/as_owner/rebuild.rs`).
#[test]
fn symlinks_swapped_in_while_root_restores_never_redirect_root() {
    if !root_only() {
        return;
    }
    let started = Instant::now();
    let agents = swap_host();
    let roots = root_swap_host();
    let canary = Canary::new("restore");
    let per_round = RESTORE_TARGETS.len() + ROOT_REPO_TARGETS.len();
    let rounds = iterations(120).div_ceil(per_round);
    let mut tally = RestoreTally::default();
    for round in 0..rounds {
        restore_round(&agents, round, RESTORE_TARGETS, &canary, &mut tally);
        restore_round(&roots, round, ROOT_REPO_TARGETS, &canary, &mut tally);
    }
    assert_eq!(
        tally.breaks,
        Vec::<String>::new(),
        "root wrote through the attacker's symlink, or the restore failed badly"
    );
    canary.intact().unwrap();
    assert!(tally.planted > 0, "no symlink was ever planted");
    eprintln!(
        "attacks: class 3 at restore (inotify symlink swaps): {} restores, {} swaps fired, {} symlinks planted, {} paths squatted, {} breaks; outcomes by target {:?}; slowest restore {} ms ({}); {} ms in all",
        tally.restores,
        tally.fired,
        tally.planted,
        tally.squatted,
        tally.breaks.len(),
        tally.outcomes,
        tally.slowest.0.as_millis(),
        tally.slowest.1,
        started.elapsed().as_millis()
    );
}

/// Control of class 3 at restore: the same attacker and trigger against
/// the same `treeward restore` — the new worktree's directory, the new
/// admin dir, the worktree's `.git` or its untracked directory swapped (as
/// 4242) as the restore makes it, or the path squatted (as 4343) at the
/// repository's first read — then what the restore writes there, written
/// as root by path, the way root restoring in-process did before the
/// worker made the directory itself: it goes through the symlink into the
/// canary, and the canary check sees it.
#[test]
fn a_naive_write_after_a_restore_swap_clobbers_the_canary() {
    if !root_only() {
        return;
    }
    let h = swap_host();
    let dotgit: NaiveWrite = |h, name| {
        let text = format!("gitdir: {}\n", h.admin(name).display());
        std::fs::write(h.root.join(name).join(".git"), text).unwrap()
    };
    let naive: [(&str, u32, NaiveWrite); 5] = [
        ("entry", AGENT, dotgit),
        ("admin", AGENT, |h, name| {
            let text = format!("{}/.git\n", h.root.join(name).display());
            std::fs::write(h.admin(name).join("gitdir"), text).unwrap()
        }),
        ("dotgit", AGENT, dotgit),
        ("deep", AGENT, |h, name| {
            let dir = h.root.join(name).join("deep/a/b");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f.txt"), "only-copy\n").unwrap()
        }),
        ("squat-link-early", ATTACKER, dotgit),
    ];
    let (mut hits, mut tries) = (0, 0);
    for (target, uid, write_naively) in naive {
        // The attacker may lose a race on a loaded machine: try again.
        let planted = (0..5).any(|attempt| {
            tries += 1;
            let name = format!("wt-control-{target}-{attempt}");
            let wt = h.add(&name);
            let (doc, _) = sweep(&h.cfg);
            assert_eq!(action(&doc, &wt).0, "preserved", "{doc:#}");
            let work = entry(&doc, &wt)["preserved_refs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .find(|r| r.ends_with("/work"))
                .unwrap()
                .to_owned();
            let canary = Canary::new(&format!("restore-control-{target}"));
            let attacker = Attacker::start_as(uid, &h.restore_spec(&name, target, false, &canary));
            let out = h.restore(&[
                &work,
                "--repo",
                h.f.repo.to_str().unwrap(),
                "--path",
                wt.to_str().unwrap(),
            ]);
            assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
            canary.intact().expect("the restore itself left it intact");
            let swapped = attacker.wait_for("ATTACK-SWAPPED", Duration::from_secs(10));
            if swapped.is_some_and(|s| s.ends_with("planted=true")) {
                write_naively(&h, &name);
                let seen = canary
                    .intact()
                    .expect_err("the naive write reached the canary");
                eprintln!("control {target}: {seen}");
                hits += 1;
            }
            let result = attacker.finish();
            h.clear_restores();
            figure(&result, "planted") == 1
        });
        assert!(planted, "{target}: the attacker never planted its symlink");
    }
    eprintln!(
        "attacks: class 3 at restore, control: {tries} restores, {hits} naive writes after the swap, {hits} reached the canary"
    );
}
