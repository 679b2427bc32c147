//! Reading the whole state of one worktree (or nested repository) into
//! objects of its own repository, with the host's git, as its owner: the
//! `state` tree of [`super::layout`] and the stash-shaped trees. Nothing of
//! the worktree is written: every tree is built in a temporary index file in
//! the scratch directory, blobs are written with `git hash-object -w
//! --no-filters` (raw bytes, no attribute applied), and the git dir is read
//! relative to its descriptor, never through a symlink.

use super::layout::{
    self, Entry, Meta, Module, ModuleKind, ADMIN, FILES, FORMAT, INDEX, META, MODE_EXECUTABLE,
    MODE_FILE, MODE_GITLINK, MODE_SYMLINK, MODULE_CONFIG, SHARED_INDEX, STAGES, STATE_DIRS,
    STATE_FILES, WORKTREE_REF_PREFIXES,
};
use super::PreserveError;
use crate::fd::{self, ReadError};
use crate::git::Git;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The largest state file, index or shared index recorded.
const MAX_STATE_FILE: u64 = 1 << 30;

/// A private directory for temporary index files and blob sources, inside
/// the common git dir (the one place a preserve may write, also under the
/// reaper's `ProtectSystem=strict`); removed when dropped. Its name
/// (`treeward-preserve.<pid>-<start time>.XXXXXX`) says which process made
/// it, so that one left by a crash (its process gone: SIGKILL skips the
/// drop) is removed by the next [`Scratch::new`] in that repository.
pub struct Scratch {
    dir: PathBuf,
    next: std::cell::Cell<usize>,
}

/// How every scratch directory's name starts.
const SCRATCH_PREFIX: &str = "treeward-preserve.";

/// How old a scratch directory whose name does not say who made it (an
/// older treeward's) must be to be taken as stale.
const UNNAMED_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Scratch {
    pub fn new(common: &Path) -> Result<Scratch, PreserveError> {
        clear_stale(common);
        let me = crate::in_use::own_start_time().map_err(|source| PreserveError::Io {
            path: PathBuf::from("/proc/self/stat"),
            doing: "reading this process's start time".into(),
            source,
        })?;
        let template = common.join(format!(
            "{SCRATCH_PREFIX}{}-{me}.XXXXXX",
            std::process::id()
        ));
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| PreserveError::Io {
            path: template.clone(),
            doing: "creating a scratch directory".into(),
            source: io::Error::from(e),
        })?;
        Ok(Scratch {
            dir,
            next: std::cell::Cell::new(0),
        })
    }

    /// A fresh name in the scratch directory.
    pub fn path(&self, what: &str) -> PathBuf {
        let n = self.next.get();
        self.next.set(n + 1);
        self.dir.join(format!("{what}-{n}"))
    }

    /// Writes `bytes` to a fresh file and returns its path.
    fn file(&self, bytes: &[u8]) -> Result<PathBuf, PreserveError> {
        let path = self.path("blob");
        fs::write(&path, bytes).map_err(|source| PreserveError::Io {
            path: path.clone(),
            doing: "writing a scratch file".into(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            log::warn!("{}: not removed: {e}", self.dir.display());
        }
    }
}

/// Pure: the process a scratch directory's name says made it (`None`: a
/// name of another form, an older treeward's or not a scratch directory).
fn scratch_creator(name: &[u8]) -> Option<crate::ledger::Holder> {
    let rest = std::str::from_utf8(name.strip_prefix(SCRATCH_PREFIX.as_bytes())?).ok()?;
    let (process, _) = rest.split_once('.')?;
    let (pid, start) = process.split_once('-')?;
    Some(crate::ledger::Holder {
        pid: pid.parse().ok()?,
        start_time: start.parse().ok()?,
    })
}

/// Pure: whether the scratch directory `name` is stale: its creator is gone
/// (`alive` says), or, when its name does not say who made it, it is older
/// than [`UNNAMED_STALE_AFTER`] (`age`; unknown is not stale).
fn scratch_is_stale(
    name: &[u8],
    alive: impl Fn(&crate::ledger::Holder) -> bool,
    age: Option<std::time::Duration>,
) -> bool {
    if !name.starts_with(SCRATCH_PREFIX.as_bytes()) {
        return false;
    }
    match scratch_creator(name) {
        Some(creator) => !alive(&creator),
        None => age.is_some_and(|a| a >= UNNAMED_STALE_AFTER),
    }
}

/// Removes the stale scratch directories of the common dir `common` (see
/// [`Scratch`]), best effort: only directories of the current user's, with
/// the removal engine, relative to the common dir's descriptor.
fn clear_stale(common: &Path) {
    let Ok(dir) = fd::open_path_trusted(common) else {
        return;
    };
    let Ok(names) = crate::remove::list_names(dir.as_fd()) else {
        return;
    };
    let euid = nix::unistd::geteuid().as_raw();
    let now = std::time::SystemTime::now();
    for name in names {
        if !name.as_bytes().starts_with(SCRATCH_PREFIX.as_bytes()) {
            continue;
        }
        let Ok(Some(st)) = fd::stat_at(dir.as_fd(), &name) else {
            continue;
        };
        let is_dir = st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
        if !is_dir || st.st_uid != euid {
            continue;
        }
        let modified =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.st_mtime.max(0) as u64);
        let age = now.duration_since(modified).ok();
        if !scratch_is_stale(name.as_bytes(), crate::in_use::holder_alive, age) {
            continue;
        }
        match crate::remove::remove_entry(dir.as_fd(), &name) {
            Ok(r) if r.complete => log::info!(
                "removed the scratch directory {} of a preserve cut short",
                common.join(&name).display()
            ),
            Ok(r) => log::warn!(
                "{}: a stale scratch directory, partly removed: {}",
                common.join(&name).display(),
                r.describe()
            ),
            Err(e) => log::warn!(
                "{}: a stale scratch directory, not removed: {e}",
                common.join(&name).display()
            ),
        }
    }
}

/// Git commands in `dir`, as `owner`, their failures mapped into a
/// [`PreserveError`].
pub struct Repo<'a> {
    pub dir: &'a Path,
    pub owner: u32,
    /// The git dir named explicitly (`GIT_DIR`, with `dir` as the work
    /// tree), for a worktree whose `.git` does not lead to it; else found
    /// as git finds it.
    pub git_dir: Option<&'a Path>,
}

impl<'a> Repo<'a> {
    pub fn new(dir: &'a Path, owner: u32) -> Repo<'a> {
        Repo {
            dir,
            owner,
            git_dir: None,
        }
    }

    pub fn git(&self) -> Result<Git, PreserveError> {
        let git = Git::new(self.dir, self.owner).map_err(|source| PreserveError::Git {
            path: self.dir.to_path_buf(),
            doing: "running git".into(),
            source,
        })?;
        Ok(match self.git_dir {
            Some(g) => git.git_dir(g, Some(self.dir)),
            None => git,
        })
    }

    /// Runs `git` and returns its stdout.
    pub fn out(&self, git: Git, doing: &str) -> Result<Vec<u8>, PreserveError> {
        git.output().map_err(|source| PreserveError::Git {
            path: self.dir.to_path_buf(),
            doing: doing.to_owned(),
            source,
        })
    }

    /// `git <args>`'s stdout, trimmed, as text.
    pub fn text(&self, args: &[&str], doing: &str) -> Result<String, PreserveError> {
        let out = self.out(self.git()?.read_only().args(args), doing)?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    /// `git <args>`'s stdout, or `None` when git exits 1 (the answer "no":
    /// `symbolic-ref -q` of a detached HEAD, `rev-parse -q --verify` of an
    /// unborn one).
    pub fn maybe(&self, args: &[&str], doing: &str) -> Result<Option<String>, PreserveError> {
        let git = self.git()?.read_only().args(args);
        let command = git.shown();
        let done = git.run().map_err(|source| PreserveError::Git {
            path: self.dir.to_path_buf(),
            doing: doing.to_owned(),
            source,
        })?;
        match done.code {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&done.stdout).trim_end().to_owned(),
            )),
            Some(1) => Ok(None),
            code => Err(PreserveError::Git {
                path: self.dir.to_path_buf(),
                doing: doing.to_owned(),
                source: crate::git::GitError::Failed {
                    command,
                    code,
                    stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
                },
            }),
        }
    }

    /// Writes each source as a blob with `git hash-object -w --no-filters
    /// --stdin-paths` (one call); returns the ids in order.
    fn hash(&self, sources: &[Vec<u8>]) -> Result<Vec<String>, PreserveError> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let input: Vec<u8> = sources
            .iter()
            .flat_map(|s| layout::stdin_path_line(s))
            .collect();
        let out = self.out(
            self.git()?
                .args(["hash-object", "-w", "--no-filters", "--stdin-paths"])
                .stdin(input),
            "storing files",
        )?;
        let ids: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect();
        if ids.len() != sources.len() {
            return Err(self.odd("git hash-object", &out));
        }
        Ok(ids)
    }

    /// Writes the tree holding `entries` (`(mode, id, path)`), built in a
    /// temporary index.
    fn tree(
        &self,
        scratch: &Scratch,
        entries: &[(u32, String, Vec<u8>)],
    ) -> Result<String, PreserveError> {
        let index = scratch.path("index");
        let mut input = Vec::new();
        for (mode, oid, path) in entries {
            input.extend(format!("{mode:o} {oid}\t").bytes());
            input.extend(path);
            input.push(0);
        }
        self.out(
            self.temp_index(&index)?
                .args(["update-index", "-z", "--index-info"])
                .stdin(input),
            "building a tree",
        )?;
        let out = self.out(self.temp_index(&index)?.arg("write-tree"), "writing a tree")?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// A command on the temporary index file `index`, which no setting of
    /// the repository's may split or extend into its git dir.
    pub(super) fn temp_index(&self, index: &Path) -> Result<Git, PreserveError> {
        Ok(self.git()?.env("GIT_INDEX_FILE", index).args([
            "-c",
            "core.splitIndex=false",
            "-c",
            "index.sparse=false",
            "-c",
            "core.untrackedCache=false",
        ]))
    }

    /// `git mktree -z` of `entries` (`(mode, type, id, name)`).
    pub fn mktree(
        &self,
        entries: &[(u32, &str, String, Vec<u8>)],
    ) -> Result<String, PreserveError> {
        let mut input = Vec::new();
        for (mode, kind, oid, name) in entries {
            input.extend(format!("{mode:06o} {kind} {oid}\t").bytes());
            input.extend(name);
            input.push(0);
        }
        let out = self.out(
            self.git()?.args(["mktree", "-z"]).stdin(input),
            "writing a tree",
        )?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    pub(super) fn odd(&self, what: &str, out: &[u8]) -> PreserveError {
        PreserveError::Unpreservable {
            path: self.dir.to_path_buf(),
            why: format!(
                "unexpected output from {what}: {}",
                String::from_utf8_lossy(&out[..out.len().min(200)])
            ),
        }
    }
}

/// What [`capture`] read and wrote for one repository.
pub struct Captured {
    /// The `state` tree (without modules).
    pub tree: String,
    pub meta: Meta,
    /// The stash-shaped trees: the index (conflicts taken as ours), the
    /// tracked files as they are, the untracked files.
    pub index_tree: String,
    pub work_tree: String,
    pub untracked_tree: Option<String>,
    pub conflicted: bool,
    /// HEAD and the objects the recorded state names (root refs, ids
    /// written in state files), to be kept alive with the set.
    pub keep: Vec<Kept>,
    /// Nested repositories inside, by path relative to this one.
    pub nested: Vec<(Vec<u8>, ModuleKind)>,
}

/// What is known of a repository before its state is read.
pub struct Target<'a> {
    /// Its working directory.
    pub dir: &'a Path,
    /// Where it was, for the metadata (the sweep moves worktrees into its
    /// trash before preserving them).
    pub origin: &'a Path,
    /// Its (per-worktree) git dir.
    pub git_dir: &'a Path,
    pub owner: u32,
    /// Records the nested repository's configuration too.
    pub nested: bool,
    pub repository: &'a Path,
    pub admin_name: Option<String>,
    pub stamp: &'a str,
}

/// Reads everything of `t` into objects of its repository. See the module
/// documentation.
pub fn capture(t: &Target<'_>, scratch: &Scratch) -> Result<Captured, PreserveError> {
    let repo = Repo {
        dir: t.dir,
        owner: t.owner,
        git_dir: Some(t.git_dir),
    };
    let branch = repo.maybe(&["symbolic-ref", "-q", "HEAD"], "reading HEAD")?;
    let head = repo.maybe(
        &["rev-parse", "-q", "--verify", "HEAD^{commit}"],
        "reading HEAD",
    )?;
    let formats = repo.text(
        &[
            "rev-parse",
            "--show-object-format=storage",
            "--show-ref-format",
        ],
        "reading the repository's formats",
    )?;
    let mut formats = formats.lines().map(str::to_owned);
    let object_format = formats.next().unwrap_or_default();
    let ref_format = formats.next().unwrap_or_else(|| "files".to_owned());

    let listed = repo.out(
        repo.git()?.read_only().args(["ls-files", "-s", "-v", "-z"]),
        "reading the index",
    )?;
    let index =
        layout::parse_ls_files(&listed).ok_or_else(|| repo.odd("git ls-files -s", &listed))?;
    let untracked = repo.out(
        repo.git()?
            .read_only()
            .args(["ls-files", "-z", "--others", "--exclude-standard"]),
        "listing untracked files",
    )?;

    let mut disk = Disk::new(t.dir);
    let mut nested = Vec::new();
    let mut tracked: BTreeMap<Vec<u8>, (char, &Entry)> = BTreeMap::new();
    for (tag, e) in &index {
        tracked.entry(e.path.clone()).or_insert((*tag, e));
    }
    let mut files: Vec<(Vec<u8>, FileOnDisk)> = Vec::new();
    for (path, (_, e)) in &tracked {
        match disk.look(path)? {
            Some(FileOnDisk::Directory) if e.mode == MODE_GITLINK => {
                if let Some(kind) = disk.nested_kind(path)? {
                    nested.push((path.clone(), kind));
                }
            }
            Some(FileOnDisk::Directory) | None => {}
            Some(f) => files.push((path.clone(), f)),
        }
    }
    let mut untracked_paths = BTreeSet::new();
    for path in untracked.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        if let Some(dir) = path.strip_suffix(b"/") {
            match disk.nested_kind(dir)? {
                Some(kind) => nested.push((dir.to_vec(), kind)),
                None => log::warn!(
                    "{}: an untracked directory git does not list the files of; not recorded",
                    t.dir.join(OsStr::from_bytes(dir)).display()
                ),
            }
            continue;
        }
        match disk.look(path)? {
            Some(FileOnDisk::Directory) | None => {}
            Some(f) => {
                untracked_paths.insert(path.to_vec());
                files.push((path.to_vec(), f));
            }
        }
    }

    // The state files, the index and its shared files, read below the git
    // dir's descriptor.
    let admin = read_state_files(t.git_dir, t.nested)?;
    let git_dir_fd = fd::open_path_trusted(t.git_dir).map_err(|e| PreserveError::Io {
        path: t.git_dir.to_path_buf(),
        doing: "opening the git dir".into(),
        source: io::Error::from(e),
    })?;
    let index_bytes = read_capped(&git_dir_fd, t.git_dir, "index")?;
    let mut shared = Vec::new();
    let names = crate::remove::list_names(git_dir_fd.as_fd())
        .map_err(|e| io_error(t.git_dir, "listing the git dir", e))?;
    for name in names {
        if name.as_bytes().starts_with(b"sharedindex.") {
            if let Some(bytes) = read_capped(&git_dir_fd, t.git_dir, &name.to_string_lossy())? {
                shared.push((name.as_bytes().to_vec(), bytes));
            }
        }
    }

    let root_refs = root_refs(&repo)?;
    let worktree_refs = worktree_refs(&repo)?;
    let meta = Meta {
        format: FORMAT,
        repository: t.repository.to_string_lossy().into_owned(),
        admin_name: t.admin_name.clone(),
        path: t.origin.to_string_lossy().into_owned(),
        stamp: t.stamp.to_owned(),
        object_format,
        ref_format,
        head: head.clone(),
        branch,
        root_refs: root_refs.clone(),
        worktree_refs,
        modules: nested.iter().map(|(p, k)| module(p, *k)).collect(),
    };

    // Every blob in one `hash-object` call: working files by path, the
    // rest from scratch files.
    let mut sources: Vec<Vec<u8>> = Vec::new();
    for (path, f) in &files {
        sources.push(match f {
            FileOnDisk::Symlink(target) => scratch.file(target)?.as_os_str().as_bytes().to_vec(),
            _ => path.clone(),
        });
    }
    let meta_json =
        serde_json::to_vec_pretty(&meta).map_err(|e| repo.odd("meta", e.to_string().as_bytes()))?;
    let mut extra: Vec<(Vec<u8>, &[u8])> = vec![(META.as_bytes().to_vec(), &meta_json)];
    if let Some(bytes) = &index_bytes {
        extra.push((INDEX.as_bytes().to_vec(), bytes));
    }
    for (name, bytes) in &shared {
        extra.push((join(SHARED_INDEX, name), bytes));
    }
    for (rel, bytes) in &admin {
        extra.push((join(ADMIN, rel), bytes));
    }
    for (_, bytes) in &extra {
        sources.push(scratch.file(bytes)?.as_os_str().as_bytes().to_vec());
    }
    let ids = repo.hash(&sources)?;
    let (file_ids, extra_ids) = ids.split_at(files.len());

    // The trees.
    let mut state: Vec<(u32, String, Vec<u8>)> = Vec::new();
    let mut work: BTreeMap<Vec<u8>, (u32, String)> = BTreeMap::new();
    let mut untracked_entries = Vec::new();
    let mut on_disk: HashSet<&[u8]> = HashSet::new();
    for ((path, f), id) in files.iter().zip(file_ids) {
        let mode = f.mode();
        state.push((mode, id.clone(), join(FILES, path)));
        on_disk.insert(path);
        if untracked_paths.contains(path) {
            untracked_entries.push((mode, id.clone(), path.clone()));
        } else {
            work.insert(path.clone(), (mode, id.clone()));
        }
    }
    for ((name, _), id) in extra.iter().zip(extra_ids) {
        state.push((MODE_FILE, id.clone(), name.clone()));
    }
    let mut conflicted = false;
    let mut index_entries: BTreeMap<Vec<u8>, (u32, String)> = BTreeMap::new();
    for (tag, e) in &index {
        state.push((
            e.mode,
            e.oid.clone(),
            join(STAGES, &join(&e.extra.to_string(), &e.path)),
        ));
        conflicted |= e.extra != 0;
        // The index commit: stage 0, and "ours" (stage 2) for a conflict.
        if e.extra == 0 || e.extra == 2 {
            index_entries.insert(e.path.clone(), (e.mode, e.oid.clone()));
        }
        // A tracked path absent from the working tree is a deletion, unless
        // it is outside the sparse patterns (skip-worktree) or a gitlink.
        let absent = !on_disk.contains(&e.path[..]);
        if (e.extra == 0 || e.extra == 2) && absent && (*tag == 'S' || e.mode == MODE_GITLINK) {
            work.insert(e.path.clone(), (e.mode, e.oid.clone()));
        }
    }
    let tree = repo.tree(scratch, &state)?;
    let flat = |m: &BTreeMap<Vec<u8>, (u32, String)>| {
        m.iter()
            .map(|(p, (mode, oid))| (*mode, oid.clone(), p.clone()))
            .collect::<Vec<_>>()
    };
    let index_tree = repo.tree(scratch, &flat(&index_entries))?;
    let work_tree = repo.tree(scratch, &flat(&work))?;
    let untracked_tree = if untracked_entries.is_empty() {
        None
    } else {
        Some(repo.tree(scratch, &untracked_entries)?)
    };

    let mut keep: Vec<(String, String)> = root_refs.into_iter().collect();
    keep.extend(head.iter().map(|h| ("HEAD".to_owned(), h.clone())));
    let named: Vec<&[u8]> = admin.iter().map(|(_, b)| b.as_slice()).collect();
    for (n, oid) in ids_in(&named).into_iter().enumerate() {
        if !keep.iter().any(|(_, k)| *k == oid) {
            keep.push((format!("STATE-{n}"), oid));
        }
    }
    let kinds = object_types(&repo, keep.iter().map(|(_, oid)| oid.as_str()))?;
    let keep = keep
        .into_iter()
        .zip(kinds)
        .filter_map(|((name, oid), kind)| {
            Some(Kept {
                name,
                oid,
                kind: kind?,
            })
        })
        .collect();
    Ok(Captured {
        tree,
        meta,
        index_tree,
        work_tree,
        untracked_tree,
        conflicted,
        keep,
        nested,
    })
}

fn join(dir: &str, rest: &[u8]) -> Vec<u8> {
    let mut out = dir.as_bytes().to_vec();
    out.push(b'/');
    out.extend(rest);
    out
}

fn io_error(path: &Path, doing: &str, e: nix::errno::Errno) -> PreserveError {
    PreserveError::Io {
        path: path.to_path_buf(),
        doing: doing.into(),
        source: io::Error::from(e),
    }
}

/// The regular file `name` of the directory `dir` (at `path`), capped;
/// `None` when absent. Anything but a regular file is an error: a state
/// that cannot be read is not recorded as absent.
fn read_capped(
    dir: &std::os::fd::OwnedFd,
    path: &Path,
    name: &str,
) -> Result<Option<Vec<u8>>, PreserveError> {
    fd::read_below(dir.as_fd(), name, MAX_STATE_FILE).map_err(|e| match e {
        ReadError::Io(errno) => io_error(&path.join(name), "reading", errno),
        other => PreserveError::Unpreservable {
            path: path.join(name),
            why: other.to_string(),
        },
    })
}

/// A file of the git dir: its path there, its bytes.
type StateFile = (Vec<u8>, Vec<u8>);

/// The state files and directories of the git dir `git_dir` (relative
/// path, bytes), sorted.
fn read_state_files(git_dir: &Path, nested: bool) -> Result<Vec<StateFile>, PreserveError> {
    let dir = fd::open_path_trusted(git_dir).map_err(|e| io_error(git_dir, "opening", e))?;
    let mut out = Vec::new();
    let config = nested.then_some(MODULE_CONFIG);
    for name in STATE_FILES.iter().copied().chain(config) {
        if let Some(bytes) = read_capped(&dir, git_dir, name)? {
            out.push((name.as_bytes().to_vec(), bytes));
        }
    }
    for top in STATE_DIRS {
        let fd = match fd::open_dir_at(dir.as_fd(), OsStr::new(top)) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(io_error(&git_dir.join(top), "opening", e)),
        };
        walk_state_dir(&fd, &git_dir.join(top), top.as_bytes(), &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk_state_dir(
    dir: &std::os::fd::OwnedFd,
    path: &Path,
    rel: &[u8],
    out: &mut Vec<StateFile>,
) -> Result<(), PreserveError> {
    let names = crate::remove::list_names(dir.as_fd()).map_err(|e| io_error(path, "listing", e))?;
    for name in names {
        let child_rel = [rel, b"/", name.as_bytes()].concat();
        match fd::open_dir_at(dir.as_fd(), &name) {
            Ok(child) => walk_state_dir(&child, &path.join(&name), &child_rel, out)?,
            Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => {
                match fd::read_at(dir.as_fd(), &name, MAX_STATE_FILE) {
                    Ok(Some(bytes)) => out.push((child_rel, bytes)),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(PreserveError::Unpreservable {
                            path: path.join(&name),
                            why: e.to_string(),
                        })
                    }
                }
            }
            Err(e) => return Err(io_error(&path.join(&name), "opening", e)),
        }
    }
    Ok(())
}

/// The root refs of the worktree (`ORIG_HEAD`, `CHERRY_PICK_HEAD`, …; not
/// `HEAD`), through git: with reftable they are not files.
fn root_refs(repo: &Repo<'_>) -> Result<BTreeMap<String, String>, PreserveError> {
    let out = repo.text(
        &[
            "for-each-ref",
            "--include-root-refs",
            "--exclude=refs",
            "--format=%(refname) %(objectname)",
        ],
        "reading the root refs",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| *name != "HEAD")
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect())
}

/// This worktree's per-worktree refs.
pub fn worktree_refs(repo: &Repo<'_>) -> Result<BTreeMap<String, String>, PreserveError> {
    let mut args = vec!["for-each-ref", "--format=%(refname) %(objectname)"];
    args.extend(WORKTREE_REF_PREFIXES);
    let out = repo.text(&args, "reading the per-worktree refs")?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect())
}

/// An object the set must keep alive, by a name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub name: String,
    pub oid: String,
    /// `commit`, `tree`, `blob` or `tag`.
    pub kind: String,
}

/// Pure: the full object ids written out in `texts` (state files name
/// commits by full id: `MERGE_HEAD`, `rebase-merge/onto`, an autostash),
/// in order of appearance, each once.
fn ids_in(texts: &[&[u8]]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for text in texts {
        for word in text.split(|b| !b.is_ascii_hexdigit()) {
            if (word.len() == 40 || word.len() == 64) && seen.insert(word.to_ascii_lowercase()) {
                out.push(String::from_utf8_lossy(word).to_ascii_lowercase());
            }
        }
    }
    out
}

/// The type of each object (`None`: not in the repository), in order.
fn object_types<'a>(
    repo: &Repo<'_>,
    oids: impl Iterator<Item = &'a str>,
) -> Result<Vec<Option<String>>, PreserveError> {
    let input: Vec<u8> = oids.flat_map(|o| format!("{o}\n").into_bytes()).collect();
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let out = repo.out(
        repo.git()?
            .read_only()
            .args(["cat-file", "--batch-check=%(objecttype)"])
            .stdin(input),
        "finding the objects the state names",
    )?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(|l| (!l.ends_with(" missing")).then(|| l.to_owned()))
        .collect())
}

/// A working-tree path as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileOnDisk {
    Regular { executable: bool },
    Symlink(Vec<u8>),
    Directory,
}

impl FileOnDisk {
    fn mode(&self) -> u32 {
        match self {
            FileOnDisk::Regular { executable: true } => MODE_EXECUTABLE,
            FileOnDisk::Regular { executable: false } => MODE_FILE,
            FileOnDisk::Symlink(_) => MODE_SYMLINK,
            FileOnDisk::Directory => 0o040000,
        }
    }
}

/// Looks at working-tree paths without following a symlink on the way:
/// a path below a directory that has become a symlink is not there.
struct Disk<'a> {
    top: &'a Path,
    real_dirs: HashSet<Vec<u8>>,
}

impl<'a> Disk<'a> {
    fn new(top: &'a Path) -> Disk<'a> {
        Disk {
            top,
            real_dirs: HashSet::new(),
        }
    }

    /// Whether every directory above `path` is a real directory.
    fn parents_real(&mut self, path: &[u8]) -> Result<bool, PreserveError> {
        let mut at = 0;
        while let Some(slash) = path[at..].iter().position(|b| *b == b'/') {
            let dir = &path[..at + slash];
            if !self.real_dirs.contains(dir) {
                match fs::symlink_metadata(self.top.join(OsStr::from_bytes(dir))) {
                    Ok(m) if m.is_dir() => {
                        self.real_dirs.insert(dir.to_vec());
                    }
                    Ok(_) => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => return Ok(false),
                    Err(source) => {
                        return Err(PreserveError::Io {
                            path: self.top.join(OsStr::from_bytes(dir)),
                            doing: "reading file metadata".into(),
                            source,
                        })
                    }
                }
            }
            at += slash + 1;
        }
        Ok(true)
    }

    /// What is at `path`; `None` when nothing is (or a FIFO, socket or
    /// device: no content to record).
    fn look(&mut self, path: &[u8]) -> Result<Option<FileOnDisk>, PreserveError> {
        if !self.parents_real(path)? {
            return Ok(None);
        }
        let abs = self.top.join(OsStr::from_bytes(path));
        let failed = |source| PreserveError::Io {
            path: abs.clone(),
            doing: "reading file metadata".into(),
            source,
        };
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(failed(e)),
        };
        let ft = meta.file_type();
        Ok(if ft.is_symlink() {
            let target = fs::read_link(&abs).map_err(failed)?;
            Some(FileOnDisk::Symlink(target.as_os_str().as_bytes().to_vec()))
        } else if ft.is_file() {
            Some(FileOnDisk::Regular {
                executable: meta.permissions().mode() & 0o100 != 0,
            })
        } else if ft.is_dir() {
            Some(FileOnDisk::Directory)
        } else {
            log::warn!("not preserving {}: not a regular file", abs.display());
            None
        })
    }

    /// The kind of nested repository the directory `path` is, if it is
    /// one (its `.git` a directory or a file).
    fn nested_kind(&mut self, path: &[u8]) -> Result<Option<ModuleKind>, PreserveError> {
        if !self.parents_real(path)? {
            return Ok(None);
        }
        let dotgit = self.top.join(OsStr::from_bytes(path)).join(".git");
        Ok(match fs::symlink_metadata(&dotgit) {
            Ok(m) if m.is_dir() => Some(ModuleKind::Embedded),
            Ok(m) if m.is_file() => Some(ModuleKind::Absorbed),
            _ => None,
        })
    }
}

/// The record of a module in its parent's metadata.
fn module(path: &[u8], kind: ModuleKind) -> Module {
    Module {
        enc: layout::encode(path),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Holder;
    use std::time::Duration;

    #[test]
    fn a_scratch_name_says_who_made_it() {
        assert_eq!(
            scratch_creator(b"treeward-preserve.42-1234.AbC123"),
            Some(Holder {
                pid: 42,
                start_time: 1234
            })
        );
        assert_eq!(scratch_creator(b"treeward-preserve.AbC123"), None);
        assert_eq!(scratch_creator(b"objects"), None);
    }

    #[test]
    fn only_a_scratch_whose_creator_is_gone_is_stale() {
        let gone = |_: &Holder| false;
        let alive = |_: &Holder| true;
        let named = b"treeward-preserve.42-1234.AbC123";
        assert!(scratch_is_stale(named, gone, None));
        assert!(!scratch_is_stale(named, alive, None), "control: alive");
        let old = Some(Duration::from_secs(2 * 24 * 3600));
        let young = Some(Duration::from_secs(60));
        let unnamed = b"treeward-preserve.AbC123";
        assert!(scratch_is_stale(unnamed, alive, old));
        assert!(!scratch_is_stale(unnamed, alive, young));
        assert!(!scratch_is_stale(unnamed, alive, None));
        assert!(!scratch_is_stale(b"objects", gone, old), "not a scratch");
    }
}
