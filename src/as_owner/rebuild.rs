//! The git side of `treeward restore`: turn one preserved set
//! (`refs/treeward/preserved/<name>/<stamp>/…`, laid out as `preserve`
//! documents) back into a linked worktree in exactly the state it was
//! preserved in. Runs as the repository's owner (through `as_owner` when
//! the caller is root), with the host's git; needs nothing but the set
//! (its `meta` names HEAD, the branch and the refs).
//!
//! What it builds:
//! - a linked worktree at the path (`git worktree add --no-checkout`, hooks
//!   off, so no `post-checkout` records it: the caller updates the ledger),
//!   on the original branch when it still exists, still points at HEAD and
//!   is checked out nowhere, else detached at HEAD; an unborn branch comes
//!   back as an orphan branch;
//! - its git dir: the in-progress state files (merge, rebase, cherry-pick,
//!   revert, bisect), `config.worktree`, `info/sparse-checkout`, the index
//!   file as git wrote it (flags, stages, sparse entries) and the split
//!   index's shared files, byte for byte;
//! - every working file, byte for byte (the bytes were stored raw, so no
//!   attribute applies twice), with its executable bit (0666 or 0777 less
//!   the umask, as git does) or as the symlink it was; written relative to
//!   directory descriptors, never through a symlink, never over a file;
//! - each nested repository: `git init` with its formats, its
//!   configuration, its refs and objects fetched back from the common
//!   repository, its HEAD, state files, index and files the same way; an
//!   absorbed submodule's git dir is absorbed again (`git submodule
//!   absorbgitdirs`);
//! - the root refs (`ORIG_HEAD`, `CHERRY_PICK_HEAD`, …) and the per-worktree
//!   refs, in one `git update-ref --stdin` transaction.
//!
//! The index's stat data is the original files': git finds them changed by
//! stat, compares their content and shows what `git status` showed (it may
//! refresh the index the first time it runs).
//!
//! A restore is resumable: the worktree is created locked (`git worktree
//! add --lock --reason 'treeward: restoring <set>'`, one step, no window)
//! and left locked: the caller unlocks it once the restore is recorded in
//! the ledger (`treeward restore` does). A restore cut short (SIGKILL at any
//! point) leaves at the path either an empty directory it made, or a
//! worktree locked with that reason whose admin entry names the path; a
//! rerun of the same restore recognises it as its own unfinished attempt and
//! discards it (the admin entry and the directory, with the removal engine,
//! as the owner) before restoring again ([`discard_unfinished`]).
//!
//! Anything else already at the path is renamed aside to
//! `<path>.treeward-aside-<stamp>` (never overwritten), unless it is a live
//! linked worktree, which is refused. The directory is then created with
//! `mkdir` before git runs, so that nothing planted at the path meanwhile
//! (a symlink, someone else's empty directory) is ever written through.
//! Everything is checked before anything changes; a failing `git worktree
//! add` puts the aside back. The preserved refs are never deleted. A set
//! written before the `state` ref existed is refused with how to recover it
//! by hand (`git stash apply --index <…/work>`).

use crate::preserve::layout::{
    self, Entry, Meta, ModuleKind, ADMIN, FILES, INDEX, KEEP, META, MODULES, MODULE_CONFIG,
    SHARED_INDEX, STAGES,
};
use crate::preserve::{Repo, NAMESPACE};
use crate::risk::{self, Location};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most bytes of blobs one `git cat-file --batch` call returns.
const BLOB_BATCH: u64 = 64 << 20;

/// What a restore did (or, under dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub path: PathBuf,
    /// Where what was at the path went.
    pub aside: Option<PathBuf>,
    /// The new worktree's admin name (null under dry run).
    pub worktree_name: Option<String>,
    /// The branch checked out; null when detached.
    pub branch: Option<String>,
    /// The HEAD commit; null on an unborn branch.
    pub head: Option<String>,
    /// The work commit of the set, if there was uncommitted work.
    pub work: Option<String>,
    /// Per-worktree refs recreated.
    pub worktree_refs: Vec<String>,
    /// The refs of the set restored from (kept).
    pub preserved_refs: Vec<String>,
    pub dry_run: bool,
}

/// Where the new worktree's HEAD goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Checkout {
    Branch(String),
    /// The branch is gone (the sweep deleted it as integrated): made again
    /// at HEAD.
    NewBranch(String, String),
    Detached(String),
    Orphan(String),
}

/// One repository's part of the set: the files of its layer, by kind.
#[derive(Debug, Default)]
struct Layer {
    meta: Option<Entry>,
    index: Option<Entry>,
    shared: Vec<Entry>,
    admin: Vec<Entry>,
    files: Vec<Entry>,
}

/// Restores the set `prefix` (`refs/treeward/preserved/<name>/<stamp>`) of
/// the repository whose common dir is `common` into a new worktree at
/// `path`.
pub fn rebuild(
    common: &Path,
    prefix: &str,
    path: &Path,
    dry_run: bool,
) -> Result<Restored, String> {
    if !prefix.starts_with(&format!("{NAMESPACE}/")) || !path.is_absolute() {
        return Err(format!(
            "refusing to restore {prefix} to {}",
            path.display()
        ));
    }
    let owner = crate::as_owner::owner_of(common)
        .map_err(|e| format!("{}: {e}", common.display()))?
        .uid;
    let repo = Repo::new(common, owner);
    let names = set_refs(&repo, prefix)?;
    let state = names
        .get(&format!("{prefix}/state"))
        .ok_or_else(|| legacy(prefix, &names))?
        .clone();
    let layers = layers(&repo, &state)?;
    let top = layers
        .get("")
        .ok_or_else(|| format!("{prefix}: the set has no metadata"))?;
    let meta = read_meta(&repo, top)?;
    let tip = match &meta.branch {
        Some(b) => repo
            .maybe(
                &["rev-parse", "-q", "--verify", "--end-of-options", b],
                "reading the branch",
            )
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let free = match (&meta.branch, &tip) {
        (Some(b), Some(t)) if meta.head.as_ref() == Some(t) => {
            let short = b.strip_prefix("refs/heads/").unwrap_or(b);
            !crate::git::branch::checked_out_anywhere(common, owner, short)
                .map_err(|e| e.to_string())?
        }
        _ => false,
    };
    let checkout = choose_checkout(&meta, tip.as_deref(), free)?;
    let reason = restoring(prefix);
    if !dry_run {
        discard_unfinished(common, owner, path, &reason)?;
    }
    let aside = plan_aside(path)?;
    let mut out = Restored {
        path: path.to_path_buf(),
        aside: aside.clone(),
        worktree_name: None,
        branch: match &checkout {
            Checkout::Branch(b) | Checkout::NewBranch(b, _) | Checkout::Orphan(b) => {
                Some(b.clone())
            }
            Checkout::Detached(_) => None,
        },
        head: meta.head.clone(),
        work: names.get(&format!("{prefix}/work")).cloned(),
        worktree_refs: meta.worktree_refs.keys().cloned().collect(),
        preserved_refs: names.keys().cloned().collect(),
        dry_run,
    };
    if dry_run {
        return Ok(out);
    }
    if let Some(aside) = &aside {
        move_aside(path, aside)?;
    }
    if let Err(e) = make_worktree_dir(path) {
        if let Some(aside) = &aside {
            if let Err(back) = rename_no_replace(aside, path) {
                log::error!("{back}");
            }
        }
        return Err(e);
    }
    if let Err(e) = add_worktree(&repo, path, &checkout, &reason) {
        // git removes the directory when it fails after taking it; when
        // it fails before, the directory is still ours and still empty.
        let _ = fs::remove_dir(path);
        if let Some(aside) = &aside {
            if let Err(back) = rename_no_replace(aside, path) {
                log::error!("{back}");
            }
        }
        return Err(e);
    }
    let wt = Repo::new(path, owner);
    let git_dir = PathBuf::from(
        wt.text(
            &["rev-parse", "--absolute-git-dir"],
            "finding the new worktree's git dir",
        )
        .map_err(|e| e.to_string())?,
    );
    out.worktree_name = git_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let filled = fill(&repo, &wt, &git_dir, top, &meta)
        .and_then(|()| fill_modules(&repo, path, owner, prefix, &state, &layers, &meta, &names));
    filled.map_err(|e| {
        format!(
            "{e}; the new worktree at {} is incomplete (the preserved refs are intact): \
                 restore again, which starts over",
            path.display()
        )
    })?;
    log::info!("restored {prefix} to {}", path.display());
    Ok(out)
}

/// The refs of the set (full name → id); an error when there are none.
fn set_refs(repo: &Repo<'_>, prefix: &str) -> Result<BTreeMap<String, String>, String> {
    let out = repo
        .text(
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                &format!("{prefix}/"),
            ],
            "reading the preserved refs",
        )
        .map_err(|e| e.to_string())?;
    let names: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect();
    if names.is_empty() {
        return Err(format!(
            "{prefix}: no such preserved refs in this repository"
        ));
    }
    Ok(names)
}

/// Why a set without a `state` ref is not restored, and how to get its
/// work back by hand.
fn legacy(prefix: &str, names: &BTreeMap<String, String>) -> String {
    let work = format!("{prefix}/work");
    if names.contains_key(&work) {
        format!(
            "{prefix} was preserved by an earlier treeward (no state ref): recover it by hand \
             in a worktree at its HEAD with `git stash apply --index {work}`"
        )
    } else {
        format!(
            "{prefix} was preserved by an earlier treeward (no state ref): its refs are {}",
            names.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

/// The state tree's files, by repository (`""` for the worktree itself,
/// the encoded path for a nested repository).
fn layers(repo: &Repo<'_>, state: &str) -> Result<BTreeMap<String, Layer>, String> {
    let listed = repo
        .out(
            repo.git().map_err(|e| e.to_string())?.read_only().args([
                "ls-tree",
                "-r",
                "-z",
                "-l",
                "--full-tree",
                state,
            ]),
            "reading the preserved state",
        )
        .map_err(|e| e.to_string())?;
    let entries = layout::parse_ls_tree(&listed)
        .ok_or_else(|| format!("{state}: not a state tree treeward wrote"))?;
    let mut out: BTreeMap<String, Layer> = BTreeMap::new();
    for mut e in entries {
        let (key, rest) = match e.path.strip_prefix(format!("{MODULES}/").as_bytes()) {
            Some(rest) => {
                let slash = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
                (
                    String::from_utf8_lossy(&rest[..slash]).into_owned(),
                    rest.get(slash + 1..).unwrap_or_default().to_vec(),
                )
            }
            None => (String::new(), e.path.clone()),
        };
        let layer = out.entry(key).or_default();
        let under = |dir: &str| {
            rest.strip_prefix(format!("{dir}/").as_bytes())
                .map(<[u8]>::to_vec)
        };
        if rest == META.as_bytes() {
            layer.meta = Some(e);
        } else if rest == INDEX.as_bytes() {
            layer.index = Some(e);
        } else if let Some(p) = under(SHARED_INDEX) {
            e.path = p;
            layer.shared.push(e);
        } else if let Some(p) = under(ADMIN) {
            e.path = p;
            layer.admin.push(e);
        } else if let Some(p) = under(FILES) {
            e.path = p;
            layer.files.push(e);
        } else if under(STAGES).is_none() && under(KEEP).is_none() {
            log::warn!(
                "{state}: unknown entry {}",
                String::from_utf8_lossy(&e.path)
            );
        }
    }
    Ok(out)
}

fn read_meta(repo: &Repo<'_>, layer: &Layer) -> Result<Meta, String> {
    let entry = layer
        .meta
        .as_ref()
        .ok_or("the preserved state has no metadata")?;
    let mut meta = None;
    for_each_blob(repo, std::slice::from_ref(entry), |_, bytes| {
        meta = Some(
            serde_json::from_slice::<Meta>(bytes)
                .map_err(|e| format!("the preserved metadata: {e}"))?,
        );
        Ok(())
    })?;
    let meta = meta.ok_or("the preserved metadata could not be read")?;
    if meta.format != layout::FORMAT {
        return Err(format!(
            "the set is in format {} (this treeward reads {})",
            meta.format,
            layout::FORMAT
        ));
    }
    Ok(meta)
}

/// Pure: where the new worktree's HEAD goes. The branch when it still
/// points at HEAD and is checked out nowhere (`free`); the branch made
/// again at HEAD when it is gone (an integrated branch the sweep deleted);
/// else detached at HEAD; an unborn branch that still does not exist comes
/// back unborn.
fn choose_checkout(meta: &Meta, tip: Option<&str>, free: bool) -> Result<Checkout, String> {
    let short = |b: &str| b.strip_prefix("refs/heads/").unwrap_or(b).to_owned();
    match (&meta.head, &meta.branch, tip) {
        (Some(h), Some(b), Some(t)) if t == h && free => Ok(Checkout::Branch(short(b))),
        (Some(h), Some(b), None) => Ok(Checkout::NewBranch(short(b), h.clone())),
        (Some(h), _, _) => Ok(Checkout::Detached(h.clone())),
        (None, Some(b), None) => Ok(Checkout::Orphan(short(b))),
        (None, Some(b), Some(_)) => Err(format!(
            "the set was preserved on the unborn branch {b}, which exists now: restore it with \
             --path elsewhere after deleting or renaming that branch"
        )),
        (None, None, _) => Err("the set names neither a HEAD commit nor a branch".to_owned()),
    }
}

/// The lock reason of a worktree being restored from the set `prefix`.
fn restoring(prefix: &str) -> String {
    format!("treeward: restoring {prefix}")
}

/// Pure: whether an admin entry is an unfinished restore of the same set to
/// the same path: locked with exactly `reason`, its `gitdir` naming
/// `<path>/.git`.
fn is_unfinished(locked: Option<&[u8]>, gitdir: Option<&[u8]>, reason: &str, path: &Path) -> bool {
    let trim = |b: &[u8]| b.strip_suffix(b"\n").unwrap_or(b).to_vec();
    locked.map(trim).as_deref() == Some(reason.as_bytes())
        && gitdir.map(trim).as_deref() == Some(path.join(".git").as_os_str().as_bytes())
}

/// Discards what a restore of the same set to `path`, cut short, left (see
/// the module doc): each admin entry of `common` that [`is_unfinished`]
/// says is one, and the directory at `path` when its `.git` names that
/// entry or it is empty. Runs as the owner; everything is opened relative
/// to directory descriptors, and removed with the removal engine.
fn discard_unfinished(common: &Path, owner: u32, path: &Path, reason: &str) -> Result<(), String> {
    let worktrees = match crate::claim::open_worktrees_of(common, owner) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    let names = crate::remove::list_names(worktrees.as_fd())
        .map_err(|e| format!("{}/worktrees: listing: {e}", common.display()))?;
    let (Some(parent), Some(leaf)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    for name in names {
        let Ok(admin) = crate::fd::open_dir_at(worktrees.as_fd(), &name) else {
            continue;
        };
        let read = |file: &str| {
            crate::fd::read_at(admin.as_fd(), OsStr::new(file), 4096)
                .ok()
                .flatten()
        };
        if !is_unfinished(
            read("locked").as_deref(),
            read("gitdir").as_deref(),
            reason,
            path,
        ) {
            continue;
        }
        let admin_path = common.join("worktrees").join(&name);
        let parent_fd = crate::fd::open_path(parent)
            .map_err(|e| format!("{}: opening: {e}", parent.display()))?;
        let dotgit = crate::fd::open_dir_at(parent_fd.as_fd(), leaf)
            .ok()
            .and_then(|d| crate::fd::read_at(d.as_fd(), OsStr::new(".git"), 4096).ok())
            .flatten();
        let names_admin = dotgit
            .as_deref()
            .map(|b| b.strip_suffix(b"\n").unwrap_or(b))
            == Some(format!("gitdir: {}", admin_path.display()).as_bytes());
        if names_admin || fs::remove_dir(path).is_ok() {
            remove_all(parent_fd.as_fd(), leaf, path)?;
        }
        remove_all(worktrees.as_fd(), &name, &admin_path)?;
        log::warn!(
            "discarded an unfinished restore at {} (admin entry {})",
            path.display(),
            admin_path.display()
        );
    }
    if let Ok(dir) = fs::symlink_metadata(path) {
        // An empty directory the restore made before git ran (nothing to
        // move aside: removing an empty directory loses nothing).
        if dir.is_dir() {
            let _ = fs::remove_dir(path);
        }
    }
    Ok(())
}

/// Removes `name` of `parent` (at `path`) whole, with the removal engine;
/// already gone is done.
fn remove_all(
    parent: std::os::fd::BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
) -> Result<(), String> {
    match crate::remove::remove_entry(parent, name) {
        Ok(r) if r.complete => Ok(()),
        Ok(r) => Err(format!(
            "{}: only partly removed: {}",
            path.display(),
            r.describe()
        )),
        Err(crate::remove::RemoveError::NotFound { .. }) => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `git worktree add --no-checkout`, locked with `reason` from the start
/// (hooks off: the engine's fixed configuration).
fn add_worktree(
    repo: &Repo<'_>,
    path: &Path,
    checkout: &Checkout,
    reason: &str,
) -> Result<(), String> {
    let git = repo
        .git()
        .map_err(|e| e.to_string())?
        .args(["worktree", "add", "--quiet", "--lock", "--reason", reason]);
    let git = match checkout {
        Checkout::Branch(b) => git.arg("--no-checkout").arg(path).arg(b),
        Checkout::NewBranch(b, h) => git.args(["--no-checkout", "-b", b]).arg(path).arg(h),
        Checkout::Detached(h) => git.args(["--no-checkout", "--detach"]).arg(path).arg(h),
        Checkout::Orphan(b) => git.args(["--orphan", "-b", b]).arg(path),
    };
    repo.out(git, "adding the worktree")
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Fills a restored repository from its layer: state files and index into
/// its git dir, files into its working directory, then its refs.
fn fill(
    common: &Repo<'_>,
    wt: &Repo<'_>,
    git_dir: &Path,
    layer: &Layer,
    meta: &Meta,
) -> Result<(), String> {
    let git_fd = crate::fd::open_path(git_dir)
        .map_err(|e| format!("{}: opening the git dir: {e}", git_dir.display()))?;
    let mut in_git_dir = Writer::git_dir(git_fd, git_dir);
    let admin: Vec<Entry> = layer
        .admin
        .iter()
        .filter(|e| e.path != MODULE_CONFIG.as_bytes())
        .cloned()
        .collect();
    let mut git_files = admin;
    git_files.extend(layer.index.iter().map(|e| Entry {
        path: INDEX.as_bytes().to_vec(),
        ..e.clone()
    }));
    git_files.extend(layer.shared.iter().cloned());
    for_each_blob(common, &git_files, |e, bytes| {
        in_git_dir.replace(&e.path, bytes)
    })?;

    let top = crate::fd::open_path(wt.dir)
        .map_err(|e| format!("{}: opening the worktree: {e}", wt.dir.display()))?;
    let mut files = Writer::working_tree(top, wt.dir);
    for_each_blob(common, &layer.files, |e, bytes| {
        files.create(&e.path, e.mode, bytes)
    })?;

    let mut input = Vec::new();
    for (name, oid) in meta.worktree_refs.iter().chain(&meta.root_refs) {
        input.extend(format!("update {name}\0{oid}\0\0").bytes());
    }
    if !input.is_empty() {
        wt.out(
            wt.git()
                .map_err(|e| e.to_string())?
                .args(["update-ref", "--stdin", "-z"])
                .stdin(input),
            "recreating the refs",
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Restores the nested repositories the metadata lists, parents first.
#[allow(clippy::too_many_arguments)]
fn fill_modules(
    common: &Repo<'_>,
    top: &Path,
    owner: u32,
    prefix: &str,
    state: &str,
    layers: &BTreeMap<String, Layer>,
    meta: &Meta,
    names: &BTreeMap<String, String>,
) -> Result<(), String> {
    // (path from the top, kind, path of the repository that holds it)
    let mut queue: std::collections::VecDeque<(Vec<u8>, ModuleKind, PathBuf)> = meta
        .modules
        .iter()
        .filter_map(|m| Some((layout::decode(&m.enc)?, m.kind, top.to_path_buf())))
        .collect();
    while let Some((path, kind, parent)) = queue.pop_front() {
        let enc = layout::encode(&path);
        let layer = layers
            .get(&enc)
            .ok_or_else(|| format!("{prefix}: the set lists {enc} but holds no state for it"))?;
        let m = read_meta(common, layer)?;
        let dir = top.join(OsStr::from_bytes(&path));
        let top_fd = crate::fd::open_path(top)
            .map_err(|e| format!("{}: opening the worktree: {e}", top.display()))?;
        Writer::working_tree(top_fd, top).make_dirs(&path)?;
        let repo = Repo::new(&dir, owner);
        let git = |args: &[&str], doing: &str| -> Result<Vec<u8>, String> {
            repo.out(repo.git().map_err(|e| e.to_string())?.args(args), doing)
                .map_err(|e| e.to_string())
        };
        git(
            &[
                "init",
                "--quiet",
                &format!("--object-format={}", m.object_format),
                &format!("--ref-format={}", m.ref_format),
            ],
            "creating a nested repository",
        )?;
        let git_dir = dir.join(".git");
        let config: Vec<Entry> = layer
            .admin
            .iter()
            .filter(|e| e.path == MODULE_CONFIG.as_bytes())
            .cloned()
            .collect();
        let git_fd = crate::fd::open_path(&git_dir)
            .map_err(|e| format!("{}: opening the git dir: {e}", git_dir.display()))?;
        let mut in_git_dir = Writer::git_dir(git_fd, &git_dir);
        for_each_blob(common, &config, |e, bytes| {
            in_git_dir.replace(&e.path, bytes)
        })?;
        // Its recorded core.worktree names where it was: git would fail to
        // start there, so it is dropped from the file with git run outside
        // any repository.
        let nowhere = Repo::new(Path::new("/"), owner);
        let unset = nowhere
            .git()
            .map_err(|e| e.to_string())?
            .arg("config")
            .arg("--file")
            .arg(git_dir.join("config"))
            .args(["--unset-all", "core.worktree"])
            .run()
            .map_err(|e| e.to_string())?;
        if !matches!(unset.code, Some(0 | 5)) {
            return Err(format!(
                "{}: unsetting core.worktree: {}",
                dir.display(),
                String::from_utf8_lossy(&unset.stderr).trim()
            ));
        }
        // Its refs, and every object its state names, back from the set.
        let set = format!("{prefix}/{MODULES}/{enc}");
        let mut wanted = vec![format!("+{set}/refs/*:refs/*")];
        wanted.extend(
            names
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("{set}/keep/")))
                .map(|(_, oid)| oid.clone()),
        );
        if let Some(stages) = common
            .maybe(
                &[
                    "rev-parse",
                    "-q",
                    "--verify",
                    &format!("{state}:{MODULES}/{enc}/{STAGES}"),
                ],
                "reading a nested repository's index objects",
            )
            .map_err(|e| e.to_string())?
        {
            wanted.push(stages);
        }
        let mut fetch: Vec<&str> = crate::preserve::layout::LOCAL_FETCH.to_vec();
        fetch.extend(["--update-head-ok", "--end-of-options"]);
        let source = common.dir.to_string_lossy().into_owned();
        fetch.push(&source);
        fetch.extend(wanted.iter().map(String::as_str));
        git(&fetch, "fetching a nested repository's objects")?;
        match (&m.branch, &m.head) {
            (Some(b), _) => git(&["symbolic-ref", "HEAD", b], "setting HEAD")?,
            (None, Some(h)) => git(&["update-ref", "--no-deref", "HEAD", h], "setting HEAD")?,
            (None, None) => Vec::new(),
        };
        fill(common, &repo, &git_dir, layer, &m)?;
        if kind == ModuleKind::Absorbed {
            let rel = path
                .strip_prefix(
                    parent
                        .strip_prefix(top)
                        .unwrap_or(Path::new(""))
                        .as_os_str()
                        .as_bytes(),
                )
                .map(|r| r.strip_prefix(b"/").unwrap_or(r))
                .unwrap_or(&path);
            let holder = Repo::new(&parent, owner);
            let absorbed = holder
                .git()
                .map_err(|e| e.to_string())?
                .args(["submodule", "absorbgitdirs", "--"])
                .arg(OsStr::from_bytes(rel))
                .output();
            if let Err(e) = absorbed {
                log::warn!(
                    "{}: restored with its git dir inside (not absorbed): {e}",
                    dir.display()
                );
            }
        }
        for child in &m.modules {
            if let Some(c) = layout::decode(&child.enc) {
                queue.push_back(([&path[..], b"/", &c].concat(), child.kind, dir.clone()));
            }
        }
    }
    Ok(())
}

/// Calls `each` with the bytes of every blob of `entries`, in order, read
/// with `git cat-file --batch` in calls of at most [`BLOB_BATCH`] bytes.
fn for_each_blob(
    repo: &Repo<'_>,
    entries: &[Entry],
    mut each: impl FnMut(&Entry, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut size = 0;
        while end < entries.len() && (end == start || size + entries[end].extra <= BLOB_BATCH) {
            size += entries[end].extra;
            end += 1;
        }
        let chunk = &entries[start..end];
        let input: Vec<u8> = chunk
            .iter()
            .flat_map(|e| format!("{}\n", e.oid).into_bytes())
            .collect();
        let out = repo
            .out(
                repo.git()
                    .map_err(|e| e.to_string())?
                    .read_only()
                    .args(["cat-file", "--batch"])
                    .stdin(input),
                "reading preserved files",
            )
            .map_err(|e| e.to_string())?;
        let mut at = 0;
        for e in chunk {
            let nl = out[at..]
                .iter()
                .position(|b| *b == b'\n')
                .ok_or("git cat-file: truncated output")?;
            let header = String::from_utf8_lossy(&out[at..at + nl]).into_owned();
            let len: usize = header
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|_| header.starts_with(&e.oid) && header.contains(" blob "))
                .ok_or_else(|| format!("git cat-file: {header}"))?;
            at += nl + 1;
            let bytes = out
                .get(at..at + len)
                .ok_or("git cat-file: truncated output")?;
            each(e, bytes)?;
            at += len + 1;
        }
        start = end;
    }
    Ok(())
}

/// Writes below one directory, relative to its descriptor: directories on
/// the way are created (or opened) without following a symlink, files are
/// created new (`O_EXCL | O_NOFOLLOW`) or replaced by rename.
struct Writer<'a> {
    top: OwnedFd,
    top_path: &'a Path,
    /// Refuses a `.git` anywhere on a path (a working tree's writer: a set
    /// must not plant files in a git dir).
    working_tree: bool,
    /// The directories open along the last path written (paths come sorted).
    open: Vec<(Vec<u8>, OwnedFd)>,
}

/// Pure: whether `path` is a plain relative path: no empty, `.` or `..`
/// component, and, in a working tree, no `.git` (in any case: git's own
/// checkout refuses it too).
fn plain_path(path: &[u8], working_tree: bool) -> bool {
    path.split(|b| *b == b'/').all(|part| {
        !part.is_empty()
            && part != b"."
            && part != b".."
            && !(working_tree && part.eq_ignore_ascii_case(b".git"))
    })
}

impl<'a> Writer<'a> {
    /// Writes below the git dir `top`.
    fn git_dir(top: OwnedFd, top_path: &'a Path) -> Writer<'a> {
        Writer {
            top,
            top_path,
            working_tree: false,
            open: Vec::new(),
        }
    }

    /// Writes below the working tree `top`.
    fn working_tree(top: OwnedFd, top_path: &'a Path) -> Writer<'a> {
        Writer {
            working_tree: true,
            ..Writer::git_dir(top, top_path)
        }
    }

    fn failed(&self, path: &[u8], doing: &str, e: impl std::fmt::Display) -> String {
        format!(
            "{}: {doing}: {e}",
            self.top_path.join(OsStr::from_bytes(path)).display()
        )
    }

    /// The directory that holds `path` (every directory on the way made),
    /// and the last name.
    fn parent<'p>(&mut self, path: &'p [u8]) -> Result<(&OwnedFd, &'p [u8]), String> {
        if !plain_path(path, self.working_tree) {
            return Err(self.failed(path, "writing", "not a plain relative path"));
        }
        let (dirs, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], path),
        };
        let parts: Vec<&[u8]> = dirs
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let keep = self
            .open
            .iter()
            .zip(&parts)
            .take_while(|((n, _), p)| n == *p)
            .count();
        self.open.truncate(keep);
        for part in &parts[keep..] {
            let at = self
                .open
                .last()
                .map_or(self.top.as_fd(), |(_, fd)| fd.as_fd());
            let part_os = OsStr::from_bytes(part);
            match nix::sys::stat::mkdirat(at, part_os, Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(self.failed(path, "creating a directory", e)),
            }
            let fd = crate::fd::open_dir_at(at, part_os)
                .map_err(|e| self.failed(path, "opening a directory (not through a symlink)", e))?;
            self.open.push((part.to_vec(), fd));
        }
        let at = self.open.last().map_or(&self.top, |(_, fd)| fd);
        Ok((at, name))
    }

    /// Makes the directory `path` and every one on the way.
    fn make_dirs(&mut self, path: &[u8]) -> Result<(), String> {
        let mut with_name = path.to_vec();
        with_name.extend(b"/x");
        self.parent(&with_name).map(drop)
    }

    /// Creates the new file `path`: a symlink for mode 120000, else a
    /// regular file, 0777 for mode 100755 and 0666 otherwise, less the
    /// umask.
    fn create(&mut self, path: &[u8], mode: u32, bytes: &[u8]) -> Result<(), String> {
        let (dir, name) = self.parent(path)?;
        let dir = dir.as_fd();
        let name = OsStr::from_bytes(name);
        let result = if mode == layout::MODE_SYMLINK {
            nix::unistd::symlinkat(OsStr::from_bytes(bytes), dir, name).map_err(|e| e.to_string())
        } else {
            let perm = if mode == layout::MODE_EXECUTABLE {
                0o777
            } else {
                0o666
            };
            crate::fd::create_new_with_mode_at(dir, name, perm)
                .map_err(|e| e.to_string())
                .and_then(|mut file| file.write_all(bytes).map_err(|e| e.to_string()))
        };
        result.map_err(|e| self.failed(path, "writing a file", e))
    }

    /// Replaces the file `path` with `bytes` (a git dir file).
    fn replace(&mut self, path: &[u8], bytes: &[u8]) -> Result<(), String> {
        let (dir, name) = self.parent(path)?;
        crate::fd::replace_at(dir.as_fd(), OsStr::from_bytes(name), bytes)
            .map_err(|e| self.failed(path, "writing", e))
    }
}

/// Where what is at `path` would go; `None` when nothing is there. A live
/// linked worktree is refused: moving it would break it.
fn plan_aside(path: &Path) -> Result<Option<PathBuf>, String> {
    match risk::locate(path) {
        Location::Missing => Ok(None),
        Location::Linked { common, .. } => Err(format!(
            "{} is a linked worktree of {}: remove or move it with git first, or restore \
             elsewhere with --path",
            path.display(),
            common.display()
        )),
        _ => {
            let stamp: String = crate::ledger::now()
                .chars()
                .filter(|c| *c != '-' && *c != ':')
                .collect();
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".treeward-aside-{stamp}"));
            let base = PathBuf::from(name);
            (0..1000)
                .map(|n| {
                    if n == 0 {
                        base.clone()
                    } else {
                        PathBuf::from(format!("{}-{n}", base.display()))
                    }
                })
                .find(|p| fs::symlink_metadata(p).is_err())
                .map(Some)
                .ok_or_else(|| format!("{}: no free aside name", path.display()))
        }
    }
}

/// Creates the new worktree's directory, as the serving user, before git
/// runs: `mkdir` takes the name or fails, and never follows a symlink there.
/// In a sticky root anyone may create names, and `git worktree add` accepts
/// whatever is at the path if it leads to an empty directory: a symlink
/// (to an empty directory anywhere) or an empty directory of someone else's
/// (renamed away for a symlink once git is inside) planted after the path
/// was found free would have git write `.git` and libgit2 write the whole
/// checkout through it — as root when the repository is root's (restored
/// in-process), and git's own clean-up on failure empties the directory
/// the symlink leads to. A directory this user created in a sticky root
/// can be renamed or replaced by no one else.
fn make_worktree_dir(path: &Path) -> Result<(), String> {
    fs::create_dir(path).map_err(|e| {
        format!(
            "{}: creating the worktree's directory: {e} (something took the path after it was \
             found free: nothing was written there)",
            path.display()
        )
    })
}

fn move_aside(path: &Path, aside: &Path) -> Result<(), String> {
    rename_no_replace(path, aside)?;
    log::warn!("moved {} aside to {}", path.display(), aside.display());
    Ok(())
}

fn rename_no_replace(from: &Path, to: &Path) -> Result<(), String> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| format!("renaming {} to {}: {e}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(head: Option<&str>, branch: Option<&str>) -> Meta {
        Meta {
            format: layout::FORMAT,
            repository: "/r/.git".into(),
            admin_name: Some("wt".into()),
            path: "/w/wt".into(),
            stamp: "S".into(),
            object_format: "sha1".into(),
            ref_format: "files".into(),
            head: head.map(str::to_owned),
            branch: branch.map(str::to_owned),
            root_refs: BTreeMap::new(),
            worktree_refs: BTreeMap::new(),
            modules: Vec::new(),
        }
    }

    #[test]
    fn only_its_own_unfinished_restore_is_recognised() {
        let path = Path::new("/r/restored");
        let reason = restoring("refs/treeward/preserved/wt/20260101T000000Z");
        let gitdir = b"/r/restored/.git\n";
        assert!(is_unfinished(
            Some(reason.as_bytes()),
            Some(gitdir),
            &reason,
            path
        ));
        // Controls: another set, another lock, no lock, another path.
        let other = restoring("refs/treeward/preserved/wt/20260102T000000Z");
        assert!(!is_unfinished(
            Some(other.as_bytes()),
            Some(gitdir),
            &reason,
            path
        ));
        assert!(!is_unfinished(Some(b"mine"), Some(gitdir), &reason, path));
        assert!(!is_unfinished(None, Some(gitdir), &reason, path));
        assert!(!is_unfinished(
            Some(reason.as_bytes()),
            Some(b"/r/elsewhere/.git"),
            &reason,
            path
        ));
    }

    #[test]
    fn only_plain_paths_are_written() {
        assert!(plain_path(b"a/b c/\xff", true));
        assert!(plain_path(b"rebase-merge/done", false));
        assert!(
            plain_path(b"x/.git/config", false),
            "a git dir's own writer"
        );
        for bad in [&b""[..], b"/abs", b"a//b", b"a/./b", b"../x", b"a/.."] {
            assert!(!plain_path(bad, false), "{bad:?}");
        }
        for bad in [&b".git/hooks/pre-commit"[..], b"sub/.GIT/config", b".git"] {
            assert!(!plain_path(bad, true), "{bad:?}");
        }
    }

    #[test]
    fn checkout_follows_the_branch_only_when_it_is_where_it_was_and_free() {
        let on = meta(Some("aa"), Some("refs/heads/task"));
        assert_eq!(
            choose_checkout(&on, Some("aa"), true),
            Ok(Checkout::Branch("task".into()))
        );
        for (tip, free) in [(Some("bb"), true), (Some("aa"), false)] {
            assert_eq!(
                choose_checkout(&on, tip, free),
                Ok(Checkout::Detached("aa".into())),
                "{tip:?} {free}"
            );
        }
        // The branch is gone (deleted as integrated): made again at HEAD.
        assert_eq!(
            choose_checkout(&on, None, true),
            Ok(Checkout::NewBranch("task".into(), "aa".into()))
        );
        let detached = meta(Some("aa"), None);
        assert_eq!(
            choose_checkout(&detached, None, false),
            Ok(Checkout::Detached("aa".into()))
        );
        let unborn = meta(None, Some("refs/heads/new"));
        assert_eq!(
            choose_checkout(&unborn, None, false),
            Ok(Checkout::Orphan("new".into()))
        );
        assert!(choose_checkout(&unborn, Some("cc"), true).is_err());
        assert!(choose_checkout(&meta(None, None), None, true).is_err());
    }
}
