//! A worktree's whole state as git and the filesystem show it, and an
//! oracle of what its removal would lose, both written with git plumbing
//! and plain file reads only (no treeward code): the judge of
//! `treeward-check`, of the sweep's preserve and of `treeward restore`.
//!
//! - [`capture`] records what SPEC says a restore brings back exactly:
//!   `git status --porcelain=v2 -z`, every file's bytes, executable bit and
//!   symlink target (ignored files, empty directories, FIFOs and sockets
//!   left out: SPEC's exceptions), the index (`git ls-files --sparse -s -v
//!   --eol`: stages, flags, sparse directories), HEAD, the per-worktree
//!   refs, the in-progress operation's state, the per-worktree config and
//!   sparse patterns, and each nested repository's status, HEAD and refs.
//!   [`differences`] names what differs between two captures.
//! - [`oracle`] says why removing the worktree would lose work, following
//!   SPEC's "at risk" (nothing when it would lose none).

use super::{git_command_as, git_output_as};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One file of a worktree: a regular file (bytes, executable bit as git
/// reads it: the owner's x bit) or a symlink (its target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum File {
    Regular { exec: bool, bytes: Vec<u8> },
    Link(Vec<u8>),
}

/// A repository nested in a worktree (a submodule, an embedded
/// repository): what a restore must bring back of it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Nested {
    pub status: Vec<u8>,
    pub head: String,
    pub refs: String,
}

/// Everything [`capture`] records of a worktree.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WorktreeState {
    pub status: Vec<u8>,
    pub files: BTreeMap<Vec<u8>, File>,
    pub index: Vec<u8>,
    pub head: String,
    pub head_ref: String,
    pub worktree_refs: String,
    pub operation: BTreeMap<String, Vec<u8>>,
    pub sparse: BTreeMap<String, Vec<u8>>,
    pub nested: BTreeMap<Vec<u8>, Nested>,
}

/// The per-worktree ref namespaces SPEC names.
pub const WORKTREE_REF_PREFIXES: [&str; 3] = ["refs/worktree/", "refs/bisect/", "refs/rewritten/"];

/// Pseudorefs of an operation in progress (read through git: under
/// reftable some are refs, not files).
const OPERATION_PSEUDOREFS: [&str; 4] = [
    "MERGE_HEAD",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "BISECT_EXPECTED_REV",
];

/// Files and directories of the worktree's git dir that hold an operation
/// in progress.
const OPERATION_FILES: [&str; 9] = [
    "MERGE_MSG",
    "MERGE_MODE",
    "BISECT_LOG",
    "BISECT_START",
    "BISECT_TERMS",
    "BISECT_NAMES",
    "rebase-merge",
    "rebase-apply",
    "sequencer",
];

/// `git --no-optional-locks args` in `dir` as `uid`: stdout, or `Err` with
/// git's stderr.
pub fn run(uid: Option<u32>, dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let all: Vec<&str> = ["--no-optional-locks"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let out = git_output_as(uid, dir, &all);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn text(uid: Option<u32>, dir: &Path, args: &[&str]) -> Result<String, String> {
    run(uid, dir, args).map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
}

/// `rev-parse -q --verify name`: its object, "" when it does not resolve.
fn resolve(uid: Option<u32>, dir: &Path, name: &str) -> String {
    text(uid, dir, &["rev-parse", "-q", "--verify", name]).unwrap_or_default()
}

/// The fields of `-z` output.
fn fields(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == 0).filter(|f| !f.is_empty())
}

fn join(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

/// The worktree's git dir (its admin dir for a linked worktree).
pub fn git_dir(uid: Option<u32>, wt: &Path) -> Result<PathBuf, String> {
    let dir = text(uid, wt, &["rev-parse", "--absolute-git-dir"])?;
    Ok(PathBuf::from(dir))
}

/// Paths (relative to `dir`) of everything `git status` calls ignored in
/// the repository at `dir`; a directory ends with `/`.
fn ignored(uid: Option<u32>, dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let out = run(
        uid,
        dir,
        &[
            "status",
            "--porcelain=v2",
            "-z",
            "--ignored=matching",
            "--untracked-files=all",
        ],
    )?;
    Ok(status_entries(&out)
        .into_iter()
        .filter_map(|e| e.strip_prefix(b"! ").map(<[u8]>::to_vec))
        .collect())
}

/// The entries of `status --porcelain=v2 -z` (a rename's second path
/// folded into its entry).
fn status_entries(out: &[u8]) -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    let mut it = out.split(|b| *b == 0);
    while let Some(e) = it.next() {
        if e.is_empty() {
            continue;
        }
        let mut e = e.to_vec();
        if e.starts_with(b"2 ") {
            e.push(0);
            e.extend(it.next().unwrap_or_default());
        }
        entries.push(e);
    }
    entries
}

/// Every file and symlink below `dir` (relative paths), `.git` entries at
/// any depth left out, and the directories holding one (nested
/// repositories).
fn walk(dir: &Path) -> (BTreeMap<Vec<u8>, File>, Vec<Vec<u8>>) {
    let mut files = BTreeMap::new();
    let mut nested = Vec::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let here = join(dir, &rel);
        let Ok(entries) = std::fs::read_dir(&here) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name();
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend(name.as_bytes());
            if name == ".git" {
                if !rel.is_empty() {
                    nested.push(rel.clone());
                }
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                files.insert(path, File::Link(target.as_os_str().as_bytes().to_vec()));
            } else if kind.is_file() {
                let exec = meta.permissions().mode() & 0o100 != 0;
                let bytes = std::fs::read(e.path()).unwrap();
                files.insert(path, File::Regular { exec, bytes });
            }
        }
    }
    nested.sort();
    (files, nested)
}

/// Whether `path` is `pattern` or lies below it (`pattern` a directory,
/// ending with `/`).
fn covered(path: &[u8], pattern: &[u8]) -> bool {
    path == pattern
        || (pattern.ends_with(b"/") && path.starts_with(pattern))
        || path.starts_with(&[pattern, b"/"].concat())
}

/// Records the worktree at `wt` as `uid` sees it, without writing to it
/// (`--no-optional-locks`).
pub fn capture(uid: Option<u32>, wt: &Path) -> Result<WorktreeState, String> {
    let status = run(
        uid,
        wt,
        &["status", "--porcelain=v2", "-z", "--untracked-files=all"],
    )?;
    let (mut files, nested_dirs) = walk(wt);
    let mut skip = ignored(uid, wt)?;
    let mut nested = BTreeMap::new();
    for rel in nested_dirs {
        let dir = join(wt, &rel);
        let mut prefix = rel.clone();
        prefix.push(b'/');
        for i in ignored(uid, &dir).unwrap_or_default() {
            skip.push([prefix.as_slice(), &i].concat());
        }
        let n = Nested {
            status: run(
                uid,
                &dir,
                &["status", "--porcelain=v2", "-z", "--untracked-files=all"],
            )
            .unwrap_or_else(|e| e.into_bytes()),
            head: resolve(uid, &dir, "HEAD"),
            refs: text(
                uid,
                &dir,
                &["for-each-ref", "--format=%(refname) %(objectname)"],
            )
            .unwrap_or_else(|e| e),
        };
        nested.insert(rel, n);
    }
    files.retain(|path, _| !skip.iter().any(|p| covered(path, p)));
    let gd = git_dir(uid, wt)?;
    let mut operation = BTreeMap::new();
    for name in OPERATION_PSEUDOREFS {
        let oid = resolve(uid, wt, name);
        if !oid.is_empty() {
            operation.insert(name.to_owned(), oid.into_bytes());
        }
    }
    for name in OPERATION_FILES {
        read_tree_into(&gd, name, &mut operation);
    }
    let mut sparse = BTreeMap::new();
    for name in ["config.worktree", "info/sparse-checkout"] {
        read_tree_into(&gd, name, &mut sparse);
    }
    let mut refs_args = vec!["for-each-ref", "--format=%(refname) %(objectname)"];
    refs_args.extend(WORKTREE_REF_PREFIXES);
    Ok(WorktreeState {
        status,
        files,
        index: run(
            uid,
            wt,
            &["ls-files", "-z", "--sparse", "--stage", "-v", "--eol"],
        )?,
        head: resolve(uid, wt, "HEAD"),
        head_ref: text(uid, wt, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_default(),
        worktree_refs: text(uid, wt, &refs_args)?,
        operation,
        sparse,
        nested,
    })
}

/// Reads the file `dir/name`, or every file below the directory
/// `dir/name`, into `out` (keyed by its path below `dir`).
fn read_tree_into(dir: &Path, name: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let path = dir.join(name);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if meta.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            read_tree_into(dir, &format!("{name}/{n}"), out);
        }
    } else if meta.is_file() {
        out.insert(name.to_owned(), std::fs::read(&path).unwrap());
    }
}

/// Parts of a worktree that differ, each with one example.
pub type Differences = Vec<(&'static str, String)>;

/// What differs between a worktree's capture `before` and `after` (a
/// restore): the names of the parts that differ, each with one example.
/// `files` (a file missing or with other bytes), `symlink` (a file became
/// a link or the reverse, or a link's target changed), `exec`,
/// `extra_files` (files that were not there), `status`, `index`, `head`
/// (another commit), `head_ref` (the branch HEAD is on, or detached),
/// `worktree_refs`, `operation`, `sparse`, `nested`.
pub fn differences(before: &WorktreeState, after: &WorktreeState) -> Differences {
    let mut out = Vec::new();
    let show = |p: &[u8]| String::from_utf8_lossy(p).escape_debug().to_string();
    let mut first = |what: &'static str, example: String| {
        if !out.iter().any(|(w, _)| *w == what) {
            out.push((what, example));
        }
    };
    for (path, file) in &before.files {
        match (file, after.files.get(path)) {
            (_, None) => first("files", format!("{} missing", show(path))),
            (a, Some(b)) if a == b => {}
            (File::Regular { exec: x, bytes: a }, Some(File::Regular { exec: y, bytes: b })) => {
                if a != b {
                    first(
                        "files",
                        format!(
                            "{}: {:?} became {:?}",
                            show(path),
                            show(&a[..a.len().min(60)]),
                            show(&b[..b.len().min(60)])
                        ),
                    );
                }
                if x != y {
                    first("exec", format!("{}: exec {x} became {y}", show(path)));
                }
            }
            (a, Some(b)) => first("symlink", format!("{}: {a:?} became {b:?}", show(path))),
        }
    }
    for path in after.files.keys() {
        if !before.files.contains_key(path) {
            first("extra_files", show(path));
        }
    }
    if before.status != after.status {
        first("status", first_difference(&before.status, &after.status));
    }
    if before.index != after.index {
        first("index", first_difference(&before.index, &after.index));
    }
    if before.head != after.head {
        first("head", format!("{} became {}", before.head, after.head));
    }
    if before.head_ref != after.head_ref {
        first(
            "head_ref",
            format!("{:?} became {:?}", before.head_ref, after.head_ref),
        );
    }
    if before.worktree_refs != after.worktree_refs {
        first(
            "worktree_refs",
            format!(
                "{:?} became {:?}",
                before.worktree_refs, after.worktree_refs
            ),
        );
    }
    if before.operation != after.operation {
        let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        let changed: Vec<&String> = before
            .operation
            .iter()
            .filter(|(k, v)| after.operation.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        let (b, a) = (names(&before.operation), names(&after.operation));
        let text = if b == a {
            format!("{changed:?} changed")
        } else {
            format!("{b:?} became {a:?}")
        };
        first("operation", text);
    }
    if before.sparse != after.sparse {
        let changed: Vec<&String> = before
            .sparse
            .keys()
            .chain(after.sparse.keys())
            .filter(|k| before.sparse.get(*k) != after.sparse.get(*k))
            .collect();
        first("sparse", format!("{changed:?} differ"));
    }
    if before.nested != after.nested {
        let which: Vec<String> = before
            .nested
            .iter()
            .filter(|(k, v)| after.nested.get(*k) != Some(v))
            .map(|(k, v)| match after.nested.get(k) {
                None => format!("{}: no repository", show(k)),
                Some(a) => {
                    let mut parts = Vec::new();
                    if v.status != a.status {
                        parts.push(format!("status {}", first_difference(&v.status, &a.status)));
                    }
                    if v.head != a.head {
                        parts.push(format!("HEAD {} became {}", v.head, a.head));
                    }
                    if v.refs != a.refs {
                        parts.push(format!("refs {:?} became {:?}", v.refs, a.refs));
                    }
                    format!("{}: {}", show(k), parts.join(", "))
                }
            })
            .collect();
        first("nested", which.join("; "));
    }
    out
}

/// The first `-z` record of `a` that `b` lacks and the first of `b` that
/// `a` lacks: what tells two listings apart.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let ra: Vec<&[u8]> = fields(a).collect();
    let rb: Vec<&[u8]> = fields(b).collect();
    let only = |x: &[&[u8]], y: &[&[u8]]| {
        x.iter()
            .find(|r| !y.contains(r))
            .map_or("nothing".to_owned(), |r| {
                format!("{:?}", String::from_utf8_lossy(r))
            })
    };
    format!("{} became {}", only(&ra, &rb), only(&rb, &ra))
}

/// The objects that every ref of the repository at `repo` names (run in
/// its main worktree: the shared refs, and the main worktree's own), which
/// outlive any linked worktree.
pub fn surviving_tips(uid: Option<u32>, repo: &Path) -> Vec<String> {
    let out = text(uid, repo, &["for-each-ref", "--format=%(objectname)"]).unwrap();
    let mut tips: Vec<String> = out.lines().map(str::to_owned).collect();
    tips.sort();
    tips.dedup();
    tips
}

/// Why removing the worktree at `wt` (its directory and admin dir) would
/// lose work, as SPEC defines at risk: empty when it would lose nothing.
/// `surviving` is [`surviving_tips`] of its repository. A git error is a
/// reason (`error: …`), as it is for treeward (fail closed).
pub fn oracle(uid: Option<u32>, wt: &Path, surviving: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    if let Err(e) = oracle_into(uid, wt, surviving, &mut why) {
        why.push(format!("error: {e}"));
    }
    why
}

fn oracle_into(
    uid: Option<u32>,
    wt: &Path,
    surviving: &[String],
    why: &mut Vec<String>,
) -> Result<(), String> {
    let mut add = |r: &str| {
        if !why.iter().any(|w| w == r) {
            why.push(r.to_owned());
        }
    };
    // Uncommitted changes git's status shows (staged, modified, deleted,
    // untracked and not ignored, conflicts, submodule changes).
    let status = run(
        uid,
        wt,
        &["status", "--porcelain=v2", "-z", "--untracked-files=all"],
    )?;
    if !status.is_empty() {
        add("changes");
    }
    // Edits status hides: a file marked skip-worktree or assume-unchanged
    // that is on disk and differs from its index entry.
    let index = run(uid, wt, &["ls-files", "-z", "--stage", "-v"])?;
    for entry in fields(&index) {
        let flagged = matches!(entry.first(), Some(b'S' | b'h' | b's'));
        let Some(tab) = entry.iter().position(|b| *b == b'\t') else {
            continue;
        };
        if !flagged {
            continue;
        }
        let meta: Vec<&[u8]> = entry[2..tab].split(|b| *b == b' ').collect();
        let (mode, oid, path) = (meta[0], meta[1], &entry[tab + 1..]);
        let file = join(wt, path);
        let Ok(m) = std::fs::symlink_metadata(&file) else {
            continue;
        };
        let actual = if m.file_type().is_symlink() {
            let target = std::fs::read_link(&file).unwrap();
            (
                "120000",
                hash_stdin(uid, wt, target.as_os_str().as_bytes())?,
            )
        } else if m.is_file() {
            let mode = if m.permissions().mode() & 0o100 != 0 {
                "100755"
            } else {
                "100644"
            };
            let rel = String::from_utf8_lossy(path).into_owned();
            let oid = if rel.as_bytes() == path {
                text(uid, wt, &["hash-object", "--", &rel])?
            } else {
                let bytes = std::fs::read(&file).unwrap();
                hash_stdin(uid, wt, &bytes)?
            };
            (mode, oid)
        } else {
            ("dir", String::new())
        };
        if actual.0.as_bytes() != mode || actual.1.as_bytes() != oid {
            add("hidden_edit");
        }
    }
    // Conflict stages.
    if !run(uid, wt, &["ls-files", "-z", "--unmerged"])?.is_empty() {
        add("conflicted");
    }
    // Per-worktree refs.
    let mut refs_args = vec!["for-each-ref", "--format=%(refname)"];
    refs_args.extend(WORKTREE_REF_PREFIXES);
    if !text(uid, wt, &refs_args)?.is_empty() {
        add("worktree_refs");
    }
    // An operation in progress.
    let gd = git_dir(uid, wt)?;
    let pseudo = OPERATION_PSEUDOREFS
        .iter()
        .any(|p| !resolve(uid, wt, p).is_empty());
    let files = OPERATION_FILES
        .iter()
        .any(|f| std::fs::symlink_metadata(gd.join(f)).is_ok());
    if pseudo || files {
        add("in_progress");
    }
    // A detached HEAD whose commits no surviving ref reaches.
    if text(uid, wt, &["symbolic-ref", "-q", "HEAD"]).is_err() {
        let head = resolve(uid, wt, "HEAD");
        if !head.is_empty() {
            let mut args = vec!["rev-list".to_owned(), "-n1".to_owned(), head];
            args.extend(surviving.iter().map(|t| format!("^{t}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if !text(uid, wt, &args)?.is_empty() {
                add("detached_unreachable");
            }
        }
    }
    // Nested repositories: their uncommitted changes and the commits none
    // of their remote-tracking refs reaches.
    let (_, nested) = walk(wt);
    for rel in nested {
        let dir = join(wt, &rel);
        let status = run(
            uid,
            &dir,
            &["status", "--porcelain", "-z", "--untracked-files=all"],
        )?;
        if !status.is_empty() {
            add("nested_changes");
        }
        let unpushed = text(
            uid,
            &dir,
            &["rev-list", "-n1", "--all", "--not", "--remotes"],
        )?;
        if !unpushed.is_empty() {
            add("nested_unpushed");
        }
    }
    Ok(())
}

/// `git hash-object --no-filters --stdin` of `bytes`.
fn hash_stdin(uid: Option<u32>, dir: &Path, bytes: &[u8]) -> Result<String, String> {
    use std::io::Write;
    let mut child = git_command_as(uid, dir, &["hash-object", "--no-filters", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
