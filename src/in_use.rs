//! Is an entry in use? An entry in use is never removed (SPEC "in use").
//!
//! Three signals are gathered here: a process whose working directory, root
//! directory or an open file lies inside the entry ([`ProcessTable`]); a BSD
//! `flock` held on the entry's directory ([`flock_held`], the convention
//! `systemd-tmpfiles` honours, and what a lease holds); and whether a
//! process the ledger names is still alive ([`recorded_process_alive`]: its
//! `owner_pid` by [`pid_alive`], its lease holder by pid *and* start time,
//! [`holder_alive`], so that a reused pid is not taken for the holder).
//!
//! Failure mode: unknown is never "not in use". [`ProcessTable::scan`] reads
//! `/proc` once; a process whose links cannot be read (permissions) is counted
//! in [`ProcessTable::unreadable`], and so is a `/proc` that cannot be read at
//! all or that hides other users' processes. Callers must treat an entry as
//! possibly in use while `unreadable() > 0` unless they have other proof.
//! A process that exits during the scan is simply not there.

use crate::ledger::{Holder, Record};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The suffix the kernel appends to a `/proc` link whose target was unlinked.
const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// How a process uses a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Cwd,
    Root,
    OpenFile,
}

impl Use {
    /// What the process has inside, in words.
    pub fn words(self) -> &'static str {
        match self {
            Use::Cwd => "its working directory",
            Use::Root => "its root directory",
            Use::OpenFile => "an open file",
        }
    }
}

/// Who uses `path`, in words: up to three processes (`pid 12 (agent) has
/// its working directory inside`), how many more, and a held `flock`.
/// Empty when nothing in `processes` uses it and no `flock` is held.
pub fn describe_use(path: &std::path::Path, processes: &ProcessTable) -> Vec<String> {
    let users = processes.users_of(path);
    let mut parts: Vec<String> = users
        .iter()
        .take(3)
        .map(|u| format!("pid {} ({}) has {} inside", u.pid, u.comm, u.how.words()))
        .collect();
    if users.len() > 3 {
        parts.push(format!("and {} more", users.len() - 3));
    }
    if path.is_dir() && flock_held(path).unwrap_or(false) {
        parts.push("a flock is held on it".to_owned());
    }
    parts
}

/// One process with a foot inside some directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessUse {
    pub pid: u32,
    pub comm: String,
    pub how: Use,
    /// The path as the kernel reports it, without the " (deleted)" suffix.
    pub path: PathBuf,
    /// The kernel marked the target as deleted (unlinked while still in use).
    pub deleted: bool,
}

/// One `/proc/<pid>/{cwd,root,fd/N}` link as read, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLink {
    pub pid: u32,
    pub comm: String,
    pub how: Use,
    /// The link's target exactly as `readlink` returned it.
    pub target: PathBuf,
}

/// A snapshot of what every readable process has open.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Sorted by (pid, how, path) and free of duplicates.
    uses: Vec<ProcessUse>,
    unreadable: u32,
    problem: Option<String>,
}

impl ProcessTable {
    /// Reads `/proc` once, leaving out the calling process itself.
    pub fn scan() -> ProcessTable {
        ProcessTable::scan_excluding(std::process::id())
    }

    /// Reads `/proc` once, leaving out the calling process and every process
    /// it started, and theirs: for a program whose only children are its
    /// own helpers (`treeward-check`'s git and workers, which work inside
    /// the worktrees while the table is read), never for one whose children
    /// are the users looked for (an orchestrator's agents). Found in pid
    /// order, parents first: a child whose pid wrapped around below its
    /// parent's is seen as a user, which errs on the side of "in use".
    pub fn scan_excluding_own_tree() -> ProcessTable {
        scan_proc(Path::new("/proc"), std::process::id(), true)
    }

    /// Reads `/proc` once, leaving out process `exclude` (normally the caller:
    /// a checker started from inside a worktree must not see itself).
    pub fn scan_excluding(exclude: u32) -> ProcessTable {
        scan_proc(Path::new("/proc"), exclude, false)
    }

    /// Builds a table from links already read; `unreadable` processes could
    /// not be examined. This is [`ProcessTable::scan`] without the side effect.
    pub fn from_links(links: impl IntoIterator<Item = RawLink>, unreadable: u32) -> ProcessTable {
        let mut uses: Vec<ProcessUse> = links.into_iter().filter_map(interpret_link).collect();
        uses.sort_by(|a, b| (a.pid, a.how, &a.path).cmp(&(b.pid, b.how, &b.path)));
        uses.dedup_by(|a, b| a.pid == b.pid && a.how == b.how && a.path == b.path);
        ProcessTable {
            uses,
            unreadable,
            problem: None,
        }
    }

    /// The processes whose cwd, root or open files lie at or below `dir`,
    /// ordered by pid, then how, then path.
    ///
    /// `dir` is canonicalised for comparison except for its last component,
    /// which is never followed: an entry that is a symlink is removed as a
    /// link, and nothing a process holds can lie "inside" a link. A `dir`
    /// that does not exist (or not all of it) is compared as written.
    pub fn users_of(&self, dir: &Path) -> Vec<&ProcessUse> {
        let dir = comparable_path(dir);
        self.uses
            .iter()
            .filter(|u| use_is_inside(u, &dir))
            .collect()
    }

    /// Processes whose links could not be read (permission): unknown, not
    /// "not in use". At least 1 when `/proc` itself could not be read or
    /// hides other users' processes (how many is then unknown).
    pub fn unreadable(&self) -> u32 {
        self.unreadable
    }

    /// Why the scan is incomplete as a whole, if it is (`/proc` unreadable
    /// or mounted with `hidepid`), phrased for the user.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Every recorded use, ordered by pid, then how, then path.
    #[cfg(test)]
    pub fn uses(&self) -> &[ProcessUse] {
        &self.uses
    }
}

/// Whether `path` is `dir` or lies below it, compared component by component
/// (so `/tmp/a-1` is not below `/tmp/a`). Both are taken as given.
pub fn is_at_or_below(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// Whether the process `pid` exists (a zombie still counts until reaped).
/// EPERM means it exists but belongs to someone else: alive.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        // 0 and negatives address process groups, never one process.
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// What `/proc/<pid>/stat` says of a process: its state letter and its
/// start time (field 22, clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

/// Pure: parses a `/proc/<pid>/stat` line. The command name (field 2) is
/// in parentheses and may hold spaces and parentheses itself, so fields are
/// counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (_, after) = line.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    // Field 3 is the state; field 22 is 19 further.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Reads `/proc/<pid>/stat`. `Ok(None)`: no such process visible (gone, or
/// hidden by `hidepid`).
pub fn proc_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    if pid == 0 || i32::try_from(pid).is_err() {
        return Ok(None);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(line) => parse_stat(&line).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat: not a stat line"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The start time of this very process (field 22 of `/proc/self/stat`).
pub fn own_start_time() -> io::Result<u64> {
    let line = std::fs::read_to_string("/proc/self/stat")?;
    parse_stat(&line).map(|s| s.start_time).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/self/stat: not a stat line",
        )
    })
}

/// Pure: whether a lease holder is alive, from what `/proc/<pid>/stat` gave
/// (`None`: not visible) and whether the pid exists at all ([`pid_alive`]).
/// The same pid with another start time is another process: gone. A zombie
/// has closed its files, its `flock` with them: gone. A pid that exists but
/// whose stat cannot be read (`hidepid`, an error) is unknown, and unknown
/// is never "gone".
pub fn holder_alive_from(
    holder: &Holder,
    stat: io::Result<Option<ProcStat>>,
    pid_exists: bool,
) -> bool {
    match stat {
        Ok(Some(s)) => s.start_time == holder.start_time && !matches!(s.state, 'Z' | 'X' | 'x'),
        Ok(None) | Err(_) => pid_exists,
    }
}

/// Whether the process that took a lease still lives: same pid, same start
/// time (see [`holder_alive_from`]).
pub fn holder_alive(holder: &Holder) -> bool {
    let stat = proc_stat(holder.pid);
    let unseen = !matches!(stat, Ok(Some(_)));
    holder_alive_from(holder, stat, unseen && pid_alive(holder.pid))
}

/// Whether the record names a live process: its `owner_pid`, or its lease
/// holder ([`holder_alive`]).
pub fn recorded_process_alive(record: &Record) -> bool {
    record.owner_pid.is_some_and(pid_alive) || record.lease.as_ref().is_some_and(holder_alive)
}

/// Whether some process holds a BSD `flock` on the directory.
///
/// Opens `dir` with `O_NOFOLLOW|O_DIRECTORY` (a symlink or a non-directory
/// is an error, never followed) and tries a non-blocking exclusive lock,
/// which is released at once if it was granted. A lock held by this very
/// process through another open of the directory also counts as held.
pub fn flock_held(dir: &Path) -> io::Result<bool> {
    let fd = crate::fd::open_dir(dir).map_err(|errno| {
        // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP;
        // say which it was, without following anything.
        let is_symlink = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
        let why = match errno {
            Errno::ELOOP | Errno::ENOTDIR if is_symlink => "is a symlink (not followed)",
            Errno::ENOTDIR => "is not a directory",
            other => other.desc(),
        };
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("cannot check the flock on {}: {why}", dir.display()),
        )
    })?;
    match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // Release at once; dropping would too, but say so explicitly.
            drop(lock.unlock());
            Ok(false)
        }
        Err((_, Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, errno)) => Err(io::Error::new(
            io::Error::from(errno).kind(),
            format!(
                "cannot check the flock on {}: {}",
                dir.display(),
                errno.desc()
            ),
        )),
    }
}

/// Turns a raw link into a use, or `None` for targets that are not paths
/// (`socket:[..]`, `pipe:[..]`, `anon_inode:..`, …).
fn interpret_link(link: RawLink) -> Option<ProcessUse> {
    let bytes = link.target.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let (path, deleted) = match bytes.strip_suffix(DELETED_SUFFIX) {
        Some(stripped) if !stripped.is_empty() => (OsStr::from_bytes(stripped), true),
        _ => (OsStr::from_bytes(bytes), false),
    };
    Some(ProcessUse {
        pid: link.pid,
        comm: link.comm,
        how: link.how,
        path: PathBuf::from(path),
        deleted,
    })
}

/// Whether a use lies at or below `dir`. For a deleted target the kernel's
/// text is ambiguous (a file may really be named "x (deleted)"), so both
/// readings are tried: a false "in use" is safe, a false "free" is not.
fn use_is_inside(u: &ProcessUse, dir: &Path) -> bool {
    if is_at_or_below(&u.path, dir) {
        return true;
    }
    if u.deleted {
        let mut literal = u.path.as_os_str().to_os_string();
        literal.push(OsStr::from_bytes(DELETED_SUFFIX));
        return is_at_or_below(Path::new(&literal), dir);
    }
    false
}

/// `dir` made comparable with `/proc` links: absolute, its parent
/// canonicalised as far as it exists, its last component kept as written.
fn comparable_path(dir: &Path) -> PathBuf {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(dir),
            Err(_) => dir.to_path_buf(),
        }
    };
    match absolute.components().next_back() {
        Some(Component::Normal(last)) => match absolute.parent() {
            Some(parent) => canonical_prefix(parent).join(last),
            None => absolute,
        },
        // "/", or a path ending in "." or "..": resolve it as a whole.
        _ => canonical_prefix(&absolute),
    }
}

/// Canonicalises the longest existing ancestor of `path` and appends the
/// rest unchanged, so a path that does not exist still compares sensibly.
fn canonical_prefix(path: &Path) -> PathBuf {
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut current = path;
    loop {
        if let Ok(canonical) = std::fs::canonicalize(current) {
            return rest.iter().rev().fold(canonical, |acc, c| acc.join(c));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                current = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// What reading one process's links found.
#[derive(Debug, Default)]
struct ProcessLinks {
    links: Vec<RawLink>,
    /// Some link could not be read for a reason other than the process or
    /// the fd going away.
    unreadable: bool,
}

/// The side effect: one pass over `proc`, leaving out `exclude`, and with
/// `descendants` the processes descending from it.
fn scan_proc(proc: &Path, exclude: u32, descendants: bool) -> ProcessTable {
    let entries = match std::fs::read_dir(proc) {
        Ok(entries) => entries,
        Err(e) => {
            return ProcessTable {
                unreadable: 1,
                problem: Some(format!("cannot list {}: {e}", proc.display())),
                ..ProcessTable::default()
            }
        }
    };
    let mut links = Vec::new();
    let mut unreadable = 0u32;
    let mut pids: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .collect();
    pids.sort();
    let mut excluded = vec![exclude];
    for (pid, dir) in pids {
        if pid == exclude {
            continue;
        }
        if descendants && parent_of(&dir).is_some_and(|ppid| excluded.contains(&ppid)) {
            excluded.push(pid);
            continue;
        }
        let found = read_process(&dir, pid);
        if found.unreadable {
            unreadable = unreadable.saturating_add(1);
        }
        links.extend(found.links);
    }
    let mut table = ProcessTable::from_links(links, unreadable);
    if !nix::unistd::Uid::effective().is_root() {
        if let Ok(mountinfo) = std::fs::read_to_string(proc.join("self/mountinfo")) {
            if proc_hides_processes(&mountinfo, proc) {
                table.unreadable = table.unreadable.saturating_add(1);
                table.problem = Some(format!(
                    "{} is mounted with hidepid: other users' processes are invisible",
                    proc.display()
                ));
            }
        }
    }
    table
}

/// The parent pid of the process whose `/proc` directory is `dir`, from its
/// `stat` (after the command name, which may hold anything, in parentheses).
fn parent_of(dir: &Path) -> Option<u32> {
    let stat = std::fs::read(dir.join("stat")).ok()?;
    let after = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&stat[after + 1..]).ok()?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reads cwd, root and every fd link of one process.
fn read_process(dir: &Path, pid: u32) -> ProcessLinks {
    let mut found = ProcessLinks::default();
    let comm = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    for (name, how) in [("cwd", Use::Cwd), ("root", Use::Root)] {
        match std::fs::read_link(dir.join(name)) {
            Ok(target) => found.links.push(RawLink {
                pid,
                comm: comm.clone(),
                how,
                target,
            }),
            Err(e) if gone(&e) => {}
            Err(_) => found.unreadable = true,
        }
    }
    match std::fs::read_dir(dir.join("fd")) {
        Ok(fds) => {
            for fd in fds {
                match fd {
                    Ok(fd) => match std::fs::read_link(fd.path()) {
                        Ok(target) => found.links.push(RawLink {
                            pid,
                            comm: comm.clone(),
                            how: Use::OpenFile,
                            target,
                        }),
                        Err(e) if gone(&e) => {}
                        Err(_) => found.unreadable = true,
                    },
                    Err(e) if gone(&e) => {}
                    Err(_) => found.unreadable = true,
                }
            }
        }
        Err(e) if gone(&e) => {}
        Err(_) => found.unreadable = true,
    }
    found
}

/// The process (or one of its fds) went away while we looked: not an error.
/// A zombie or kernel thread has no cwd or fds to read, which reads the same.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT) | Some(Errno::ESRCH)
    )
}

/// Whether the mount of `proc` in `mountinfo` hides other users' processes
/// (`hidepid=2`/`invisible`, as `ProtectProc=invisible` sets up). With
/// `hidepid=1`/`noaccess` the directories stay visible and unreadable
/// processes are counted one by one.
fn proc_hides_processes(mountinfo: &str, proc: &Path) -> bool {
    let proc = proc.as_os_str().as_bytes();
    mountinfo.lines().any(|line| {
        let mut fields = line.split(' ');
        let mount_point = fields.nth(4);
        if mount_point.map(str::as_bytes) != Some(proc) {
            return false;
        }
        // After the optional fields comes "-", then fstype, source, options.
        let mut after_separator = fields.skip_while(|f| *f != "-").skip(1);
        let fstype = after_separator.next();
        let options = after_separator.nth(1).unwrap_or("");
        fstype == Some("proc")
            && options
                .split(',')
                .any(|o| o == "hidepid=2" || o == "hidepid=invisible")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn the_own_tree_scan_leaves_out_the_callers_children_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        assert_eq!(
            parent_of(Path::new(&format!("/proc/{}", child.id()))),
            Some(std::process::id())
        );
        let own_tree = ProcessTable::scan_excluding_own_tree()
            .users_of(dir.path())
            .len();
        // Control: the plain scan sees the child.
        let plain = ProcessTable::scan().users_of(dir.path()).len();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!((own_tree, plain), (0, 1));
    }

    fn link(pid: u32, how: Use, target: &str) -> RawLink {
        RawLink {
            pid,
            comm: format!("p{pid}"),
            how,
            target: PathBuf::from(target),
        }
    }

    /// Kills and reaps a spawned process whatever happens in the test.
    struct Reaped(Child);

    impl Reaped {
        fn spawn(cmd: &mut Command) -> Reaped {
            Reaped(cmd.spawn().expect("spawn test process"))
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
        fn kill(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Reaped {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// Polls `cond` for up to 5 s: a freshly spawned process needs a moment
    /// to exec and chdir/open/lock.
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn pids(uses: &[&ProcessUse]) -> Vec<u32> {
        uses.iter().map(|u| u.pid).collect()
    }

    #[test]
    fn at_or_below_compares_components_not_strings() {
        let dir = Path::new("/tmp/a");
        assert!(is_at_or_below(Path::new("/tmp/a"), dir));
        assert!(is_at_or_below(Path::new("/tmp/a/b/c"), dir));
        assert!(!is_at_or_below(Path::new("/tmp/a-1"), dir));
        assert!(!is_at_or_below(Path::new("/tmp/ab/c"), dir));
        assert!(!is_at_or_below(Path::new("/tmp"), dir));
        assert!(is_at_or_below(Path::new("/anything"), Path::new("/")));
    }

    #[test]
    fn non_path_links_are_skipped() {
        let table = ProcessTable::from_links(
            [
                link(1, Use::OpenFile, "socket:[1234]"),
                link(1, Use::OpenFile, "pipe:[99]"),
                link(1, Use::OpenFile, "anon_inode:[eventfd]"),
                link(1, Use::OpenFile, "/w/e/file"),
            ],
            0,
        );
        assert_eq!(table.uses().len(), 1);
        assert_eq!(table.uses()[0].path, Path::new("/w/e/file"));
    }

    #[test]
    fn users_of_finds_cwd_root_and_files_sorted_and_deduplicated() {
        let table = ProcessTable::from_links(
            [
                link(30, Use::OpenFile, "/w/e/x"),
                link(30, Use::OpenFile, "/w/e/x"), // the same file on two fds
                link(30, Use::Cwd, "/w/e"),
                link(20, Use::Root, "/w/e/chroot"),
                link(10, Use::Cwd, "/w/e-1"),
                link(10, Use::OpenFile, "/w/elsewhere"),
            ],
            0,
        );
        let users = table.users_of(Path::new("/w/e"));
        let got: Vec<(u32, Use, &Path)> = users
            .iter()
            .map(|u| (u.pid, u.how, u.path.as_path()))
            .collect();
        assert_eq!(
            got,
            vec![
                (20, Use::Root, Path::new("/w/e/chroot")),
                (30, Use::Cwd, Path::new("/w/e")),
                (30, Use::OpenFile, Path::new("/w/e/x")),
            ]
        );
        assert_eq!(users[0].comm, "p20");
        assert!(table.users_of(Path::new("/w/f")).is_empty());
    }

    #[test]
    fn deleted_targets_match_under_either_reading() {
        let table = ProcessTable::from_links(
            [
                link(1, Use::Cwd, "/w/e/sub (deleted)"),
                link(2, Use::OpenFile, "/w/x (deleted)"),
            ],
            0,
        );
        let users = table.users_of(Path::new("/w/e"));
        assert_eq!(pids(&users), vec![1]);
        assert_eq!(users[0].path, Path::new("/w/e/sub"));
        assert!(users[0].deleted);
        // A directory really named "x (deleted)" is matched too.
        assert_eq!(pids(&table.users_of(Path::new("/w/x (deleted)"))), vec![2]);
        assert_eq!(pids(&table.users_of(Path::new("/w/x"))), vec![2]);
    }

    #[test]
    fn users_of_compares_a_missing_dir_as_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let canonical = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        let missing = canonical.join("gone/deeper");
        let table = ProcessTable::from_links(
            [RawLink {
                pid: 7,
                comm: "x".into(),
                how: Use::Cwd,
                target: missing.join("f"),
            }],
            0,
        );
        assert_eq!(pids(&table.users_of(&missing)), vec![7]);
        assert!(table.users_of(&canonical.join("gone/deep")).is_empty());
    }

    #[test]
    fn users_of_does_not_follow_a_symlinked_entry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        std::fs::create_dir(base.join("real")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).expect("symlink");
        // Reached through a symlinked parent, the entry is still found.
        std::os::unix::fs::symlink(&base, base.join("alias")).expect("symlink");
        let table = ProcessTable::from_links(
            [RawLink {
                pid: 9,
                comm: "x".into(),
                how: Use::Cwd,
                target: base.join("real"),
            }],
            0,
        );
        assert!(table.users_of(&base.join("link")).is_empty());
        assert_eq!(pids(&table.users_of(&base.join("alias/real"))), vec![9]);
    }

    #[test]
    fn hidepid_invisible_is_detected_in_mountinfo() {
        let plain = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        let hidden = "22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw,hidepid=invisible\n";
        let old = "22 27 0:21 / /proc rw - proc proc rw,hidepid=2,gid=4\n";
        let noaccess = "22 27 0:21 / /proc rw - proc proc rw,hidepid=1\n";
        let other = "30 27 0:40 / /other rw - proc proc rw,hidepid=2\n";
        let proc = Path::new("/proc");
        assert!(!proc_hides_processes(plain, proc));
        assert!(proc_hides_processes(hidden, proc));
        assert!(proc_hides_processes(old, proc));
        assert!(!proc_hides_processes(noaccess, proc));
        assert!(!proc_hides_processes(other, proc));
    }

    #[test]
    fn scan_finds_a_process_by_its_cwd_but_not_from_a_sibling_prefix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = tmp.path().join("a");
        let sibling = tmp.path().join("a-1");
        std::fs::create_dir(&entry).expect("mkdir");
        std::fs::create_dir(&sibling).expect("mkdir");
        let sleeper = Reaped::spawn(Command::new("sleep").arg("30").current_dir(&entry));
        let pid = sleeper.pid();
        let mut table = ProcessTable::scan();
        assert!(eventually(|| {
            table = ProcessTable::scan();
            table.users_of(&entry).iter().any(|u| u.pid == pid)
        }));
        let users = table.users_of(&entry);
        let found = users.iter().find(|u| u.pid == pid).expect("listed");
        assert_eq!(found.how, Use::Cwd);
        assert_eq!(found.comm, "sleep");
        assert_eq!(
            found.path,
            std::fs::canonicalize(&entry).expect("canonical")
        );
        assert!(!table.users_of(&sibling).iter().any(|u| u.pid == pid));
    }

    #[test]
    fn scan_finds_an_open_file_and_forgets_a_killed_process() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = tmp.path().join("e");
        std::fs::create_dir(&entry).expect("mkdir");
        let file = entry.join("held");
        std::fs::write(&file, b"x").expect("write");
        let stdin = File::open(&file).expect("open");
        let mut sleeper = Reaped::spawn(
            Command::new("sleep")
                .arg("30")
                .current_dir(tmp.path())
                .stdin(Stdio::from(stdin)),
        );
        let pid = sleeper.pid();
        let held = |table: &ProcessTable| {
            table
                .users_of(&entry)
                .iter()
                .any(|u| u.pid == pid && u.how == Use::OpenFile)
        };
        assert!(eventually(|| held(&ProcessTable::scan())));
        let table = ProcessTable::scan();
        let only: Vec<_> = table
            .users_of(&entry)
            .into_iter()
            .filter(|u| u.pid == pid)
            .collect();
        assert_eq!(only.len(), 1, "only the file, not the cwd: {only:?}");
        assert_eq!(
            only[0].path,
            std::fs::canonicalize(&file).expect("canonical")
        );
        assert!(!only[0].deleted);

        // Unlinked while open: still inside, marked deleted.
        std::fs::remove_file(&file).expect("unlink");
        let table = ProcessTable::scan();
        let users = table.users_of(&entry);
        let gone_file = users.iter().find(|u| u.pid == pid).expect("still listed");
        assert!(gone_file.deleted);

        sleeper.kill();
        assert!(!ProcessTable::scan()
            .users_of(&entry)
            .iter()
            .any(|u| u.pid == pid));
        assert!(!pid_alive(pid));
    }

    #[test]
    fn scan_does_not_see_the_calling_process() {
        let here = std::env::current_dir().expect("cwd");
        let me = std::process::id();
        assert!(!ProcessTable::scan().uses().iter().any(|u| u.pid == me));
        // Excluding someone else instead, the caller shows up with its cwd.
        let table = ProcessTable::scan_excluding(0);
        assert!(table
            .users_of(&here)
            .iter()
            .any(|u| u.pid == me && u.how == Use::Cwd));
    }

    #[test]
    fn pid_alive_tells_live_from_gone() {
        assert!(pid_alive(std::process::id()));
        assert!(pid_alive(1));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!pid_alive(pid));
    }

    #[test]
    fn stat_lines_are_read_past_any_command_name() {
        // Fields 3.. after the name; starttime is field 22.
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21";
        for name in ["sleep", "a b", "x) (y", ")", "((("] {
            let line = format!("123 ({name}) {tail}");
            assert_eq!(
                parse_stat(&line),
                Some(ProcStat {
                    state: 'S',
                    start_time: 4242
                }),
                "{line}"
            );
        }
        assert_eq!(parse_stat("123 (short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_its_own_live_holder_and_another_start_is_not() {
        let start = own_start_time().expect("own start time");
        let me = std::process::id();
        assert_eq!(proc_stat(me).unwrap().map(|s| s.start_time), Some(start));
        let holder = |pid, start_time| Holder { pid, start_time };
        assert!(holder_alive(&holder(me, start)));
        assert!(!holder_alive(&holder(me, start + 1)), "a reused pid");
        assert!(!holder_alive(&holder(0, start)));
        assert!(!holder_alive(&holder(u32::MAX, start)));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!holder_alive(&holder(pid, start)), "gone");
    }

    #[test]
    fn holder_liveness_table() {
        let h = Holder {
            pid: 10,
            start_time: 500,
        };
        let stat = |state, start_time| Ok(Some(ProcStat { state, start_time }));
        let unreadable = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        // (what /proc says, whether the pid exists) -> alive
        let rows: Vec<(io::Result<Option<ProcStat>>, bool, bool)> = vec![
            (stat('S', 500), true, true),
            (stat('R', 500), true, true),
            (stat('S', 501), true, false),
            (stat('Z', 500), true, false),
            (Ok(None), false, false),
            (Ok(None), true, true),
            (unreadable(), true, true),
            (unreadable(), false, false),
        ];
        for (i, (s, exists, want)) in rows.into_iter().enumerate() {
            assert_eq!(holder_alive_from(&h, s, exists), want, "row {i}");
        }
    }

    #[test]
    fn flock_held_sees_a_lock_held_by_another_process() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = tmp.path().join("locked");
        std::fs::create_dir(&entry).expect("mkdir");
        assert!(!flock_held(&entry).expect("check"));
        // The shell opens the directory on fd 9, locks it with flock(1), and
        // becomes sleep, which keeps fd 9 and with it the lock.
        let mut holder = Reaped::spawn(
            Command::new("sh")
                .arg("-c")
                .arg("exec 9<\"$1\" && flock -x 9 && exec sleep 30")
                .arg("sh")
                .arg(&entry),
        );
        assert!(eventually(|| flock_held(&entry).unwrap_or(false)));
        // Checking did not take or break the lock.
        assert!(flock_held(&entry).expect("check again"));
        holder.kill();
        assert!(!flock_held(&entry).expect("check after exit"));
    }

    #[test]
    fn flock_held_refuses_symlinks_and_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = flock_held(&link).expect_err("a symlink must not be followed");
        assert!(err.to_string().contains("symlink"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("write");
        let err = flock_held(&file).expect_err("a file is not a directory");
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(flock_held(&tmp.path().join("missing")).is_err());
    }

    const PROBE_ENV: &str = "TREEWARD_TEST_INUSE_PROBE_DIR";

    /// Run by `unreadable_processes_are_counted` as uid 4242: scans and
    /// prints what it saw of the directory named in the environment.
    #[test]
    #[ignore = "helper: run as another user by unreadable_processes_are_counted"]
    fn unreadable_probe() {
        let Some(dir) = std::env::var_os(PROBE_ENV) else {
            return;
        };
        let table = ProcessTable::scan();
        println!(
            "PROBE unreadable={} users={}",
            table.unreadable(),
            table.users_of(Path::new(&dir)).len()
        );
    }

    #[test]
    fn unreadable_processes_are_counted() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to run a probe as uid 4242");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = tmp.path().join("root-owned");
        std::fs::create_dir(&entry).expect("mkdir");
        let _sleeper = Reaped::spawn(Command::new("sleep").arg("30").current_dir(&entry));
        assert!(eventually(|| !ProcessTable::scan()
            .users_of(&entry)
            .is_empty()));

        let exe = std::env::current_exe().expect("current_exe");
        let output = Command::new("setpriv")
            .args(["--reuid=4242", "--regid=4242", "--clear-groups", "--"])
            .arg(exe)
            .args([
                "--exact",
                "in_use::tests::unreadable_probe",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(PROBE_ENV, &entry)
            .current_dir("/")
            .output()
            .expect("run the probe as uid 4242");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no probe output: {stdout} {:?}", output.stderr));
        let value = |key: &str| -> u32 {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        // The root-owned sleep is invisible to uid 4242: not "not in use" but unknown.
        assert_eq!(value("users"), 0, "{line}");
        assert!(value("unreadable") > 0, "{line}");
    }
}
