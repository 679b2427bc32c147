//! The layout of a preserved set, shared by the writer ([`super::capture`])
//! and the reader (`as_owner::rebuild`): the names in the set's `state` tree,
//! the metadata document, and the pure encodings both sides need.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the layout a `state` tree follows.
pub const FORMAT: u32 = 1;

/// The modes of a tree entry.
pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXECUTABLE: u32 = 0o100755;
pub const MODE_SYMLINK: u32 = 0o120000;
pub const MODE_GITLINK: u32 = 0o160000;

/// The metadata document (JSON).
pub const META: &str = "meta";
/// The index file as git wrote it.
pub const INDEX: &str = "index";
/// The split index's shared files, by their names in the git dir.
pub const SHARED_INDEX: &str = "sharedindex";
/// The in-progress state files and the per-worktree configuration, by their
/// paths below the worktree's git dir.
pub const ADMIN: &str = "admin";
/// The working files (tracked and untracked, not ignored), raw bytes.
pub const FILES: &str = "files";
/// Every object the index names, by stage (`<stage>/<path>`): keeps the
/// staged blobs alive, conflict stages included.
pub const STAGES: &str = "stages";
/// The trees and blobs the in-progress state names (`AUTO_MERGE`), by
/// name; the commits it names are parents of the `state` commit.
pub const KEEP: &str = "keep";
/// One state tree per submodule or embedded repository, by encoded path.
pub const MODULES: &str = "modules";

/// Files of the git dir that hold in-progress state or per-worktree
/// configuration, recorded raw. (The root refs, `ORIG_HEAD` and the other
/// `*_HEAD`, are read through git: with reftable they are not files.)
pub const STATE_FILES: &[&str] = &[
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "MERGE_RR",
    "MERGE_AUTOSTASH",
    "SQUASH_MSG",
    "BISECT_START",
    "BISECT_LOG",
    "BISECT_NAMES",
    "BISECT_TERMS",
    "BISECT_ANCESTORS_OK",
    "BISECT_FIRST_PARENT",
    "BISECT_RUN",
    "config.worktree",
    "info/sparse-checkout",
];
/// Directories of the git dir recorded whole.
pub const STATE_DIRS: &[&str] = &["rebase-merge", "rebase-apply", "sequencer"];
/// Recorded for a nested repository only (its whole git dir dies with the
/// worktree): its configuration, remotes included.
pub const MODULE_CONFIG: &str = "config";
/// A local fetch of a nested repository's objects (into the common
/// repository when preserving, back out when restoring): protocol v2 (which
/// fetches by object id), nothing else touched (no tags, no FETCH_HEAD, no
/// maintenance, no recursion, no pruning). The engine allows only the
/// `file` transport.
pub const LOCAL_FETCH: [&str; 9] = [
    "-c",
    "protocol.version=2",
    "fetch",
    "--quiet",
    "--no-tags",
    "--no-write-fetch-head",
    "--no-auto-maintenance",
    "--no-recurse-submodules",
    "--no-prune",
];
/// The ref namespaces git keeps per worktree.
pub const WORKTREE_REF_PREFIXES: &[&str] = &["refs/worktree/", "refs/bisect/", "refs/rewritten/"];

/// What kind of nested repository a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// Its `.git` is a directory inside the worktree (a clone, or a
    /// submodule whose git dir was never absorbed).
    Embedded,
    /// Its `.git` is a file naming a git dir elsewhere (an absorbed
    /// submodule: under the worktree's admin dir for a linked worktree).
    Absorbed,
}

/// One nested repository of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// The path inside the worktree, [`encode`]d: the name of its state
    /// tree under [`MODULES`] and of its refs under `modules/`.
    pub enc: String,
    pub kind: ModuleKind,
}

/// The metadata document of a set (`meta`): enough to restore without a
/// ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// The common git dir, the worktree's admin name and its path (for
    /// people: lossy where not UTF-8).
    pub repository: String,
    pub admin_name: Option<String>,
    pub path: String,
    pub stamp: String,
    /// `sha1` or `sha256`; `files` or `reftable`.
    pub object_format: String,
    pub ref_format: String,
    /// HEAD's commit; `None` on an unborn branch.
    pub head: Option<String>,
    /// The branch HEAD names (`refs/heads/…`); `None` when detached.
    pub branch: Option<String>,
    /// Root refs (`ORIG_HEAD`, `CHERRY_PICK_HEAD`, `AUTO_MERGE`, …).
    pub root_refs: BTreeMap<String, String>,
    /// Per-worktree refs (`refs/worktree/…`, `refs/bisect/…`,
    /// `refs/rewritten/…`).
    pub worktree_refs: BTreeMap<String, String>,
    pub modules: Vec<Module>,
}

/// Pure: a path made into one ref-name and tree-entry component: every
/// byte but `[A-Za-z0-9_-]` becomes `%XX` (so `.`, `/`, `..` and `.lock`
/// cannot appear).
pub fn encode(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pure: the path [`encode`] encoded; `None` for anything it cannot have
/// made.
pub fn decode(enc: &str) -> Option<Vec<u8>> {
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One entry of `git ls-tree -r -z -l` (or `git ls-files -s -z`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub oid: String,
    /// The size of a blob (`ls-tree -l`), or the stage (`ls-files -s`).
    pub extra: u64,
    pub path: Vec<u8>,
}

/// Pure: the records of `git ls-tree -r -z -l` (`<mode> <type> <oid>
/// <size>\t<path>`); `None` on anything else.
pub fn parse_ls_tree(out: &[u8]) -> Option<Vec<Entry>> {
    out.split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|record| {
            let tab = record.iter().position(|b| *b == b'\t')?;
            let head = std::str::from_utf8(&record[..tab]).ok()?;
            let mut fields = head.split_ascii_whitespace();
            let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
            let _kind = fields.next()?;
            let oid = fields.next()?.to_owned();
            let extra = match fields.next()? {
                "-" => 0,
                size => size.parse().ok()?,
            };
            Some(Entry {
                mode,
                oid,
                extra,
                path: record[tab + 1..].to_vec(),
            })
        })
        .collect()
}

/// Pure: the records of `git ls-files -s -v -z` ([`crate::git::ls_files`])
/// as entries, with the tag; `None` on anything else.
pub fn parse_ls_files(out: &[u8]) -> Option<Vec<(char, Entry)>> {
    crate::git::ls_files(out)
        .map(|rec| {
            let rec = rec.ok()?;
            Some((
                char::from(rec.tag),
                Entry {
                    mode: u32::from_str_radix(rec.mode, 8).ok()?,
                    oid: rec.oid.to_owned(),
                    extra: rec.stage.parse().ok()?,
                    path: rec.path.to_vec(),
                },
            ))
        })
        .collect()
}

/// Pure: `path` as one line of `git hash-object --stdin-paths`, which
/// unquotes a line that starts with `"` C-style: quoted when it holds a
/// control byte (a newline, a trailing carriage return) or starts with a
/// quote, else as it is.
pub fn stdin_path_line(path: &[u8]) -> Vec<u8> {
    let needs = path.first() == Some(&b'"') || path.iter().any(|b| *b < 0x20 || *b == 0x7f);
    if !needs {
        let mut line = path.to_vec();
        line.push(b'\n');
        return line;
    }
    let mut line = vec![b'"'];
    for &b in path {
        match b {
            b'"' | b'\\' => line.extend([b'\\', b]),
            b if b < 0x20 || b == 0x7f => line.extend(format!("\\{b:03o}").bytes()),
            b => line.push(b),
        }
    }
    line.extend(b"\"\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_is_one_safe_component() {
        for path in [
            &b"sub"[..],
            b"vendor/dep",
            b"a..b.lock",
            b".hidden",
            b"-dash",
            b"new\nline",
            b"\xff\xfe",
            b"%25",
        ] {
            let enc = encode(path);
            assert!(!enc.contains(['/', '.']), "{enc}");
            assert_eq!(decode(&enc).as_deref(), Some(path), "{enc}");
        }
        assert_eq!(encode(b"vendor/dep"), "vendor%2Fdep");
        assert_eq!(decode("a/b"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode(""), None);
    }

    #[test]
    fn ls_tree_and_ls_files_records() {
        let out =
            b"100644 blob 0123 12\ta b\x00120000 blob 4567 3\tl\n\x00160000 commit 89ab -\ts\x00";
        let e = parse_ls_tree(out).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].mode, e[0].extra, &e[0].path[..]),
            (0o100644, 12, &b"a b"[..])
        );
        assert_eq!(e[1].path, b"l\n");
        assert_eq!((e[2].mode, e[2].extra), (0o160000, 0));
        assert_eq!(parse_ls_tree(b"garbage\0"), None);
        let out = b"S 100644 0123 0\tsparse\0h 100755 4567 2\tx\0";
        let f = parse_ls_files(out).unwrap();
        assert_eq!((f[0].0, f[0].1.extra), ('S', 0));
        assert_eq!((f[1].0, f[1].1.mode, f[1].1.extra), ('h', 0o100755, 2));
    }

    #[test]
    fn stdin_path_lines_quote_only_what_git_would_misread() {
        assert_eq!(stdin_path_line(b"plain name"), b"plain name\n");
        assert_eq!(stdin_path_line(b"\xff-odd"), b"\xff-odd\n");
        assert_eq!(stdin_path_line(b"new\nline"), b"\"new\\012line\"\n");
        assert_eq!(stdin_path_line(b"cr\r"), b"\"cr\\015\"\n");
        assert_eq!(stdin_path_line(b"\"q\\"), b"\"\\\"q\\\\\"\n");
    }
}
