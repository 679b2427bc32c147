//! What the index holds that `git status` does not report: entries marked
//! skip-worktree or assume-unchanged (git status trusts those flags and
//! never looks at the file, so an edit to one is invisible to it, yet dies
//! with the worktree), and gitlinks (submodules and embedded repositories,
//! whose own commits live in a git dir inside the worktree or its admin
//! dir).
//!
//! The index is read by git (`git ls-files -v -s -z`: the flags as tags,
//! with mode, object id and stage), whatever its format (split, sparse,
//! v4, skipHash); a flagged file present in the working tree is hashed by
//! git (`git hash-object --stdin-paths`, with the attributes and filters
//! `git add` would apply) and compared with the index. Parsing is pure.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The mode of a gitlink (a submodule's commit).
const GITLINK: &str = "160000";
/// The mode of a symbolic link.
const SYMLINK: &str = "120000";

/// An index entry whose working-tree file git status does not look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub path: Vec<u8>,
    pub mode: String,
    pub oid: String,
    /// Marked assume-unchanged (a lowercase tag); otherwise skip-worktree.
    pub assume_unchanged: bool,
    pub skip_worktree: bool,
}

/// The parsed listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub flagged: Vec<Flagged>,
    /// Paths of stage-0 gitlinks.
    pub gitlinks: Vec<Vec<u8>>,
}

/// What `git ls-files -v -s -z` ([`crate::git::ls_files`]) says the
/// status does not.
pub fn parse(out: &[u8]) -> Result<Index, String> {
    let mut index = Index::default();
    for rec in crate::git::ls_files(out) {
        let rec = rec.map_err(|rec| {
            format!(
                "git ls-files: unexpected line {:?}",
                String::from_utf8_lossy(rec)
            )
        })?;
        if rec.stage != "0" {
            // A conflict: git status reports it.
            continue;
        }
        if rec.mode == GITLINK {
            index.gitlinks.push(rec.path.to_vec());
        }
        let skip_worktree = rec.tag.eq_ignore_ascii_case(&b'S');
        let assume_unchanged = rec.tag.is_ascii_lowercase();
        if (skip_worktree || assume_unchanged) && rec.mode != GITLINK {
            index.flagged.push(Flagged {
                path: rec.path.to_vec(),
                mode: rec.mode.to_owned(),
                oid: rec.oid.to_owned(),
                assume_unchanged,
                skip_worktree,
            });
        }
    }
    Ok(index)
}

/// What a flagged entry's working-tree file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// Nothing there: the norm for skip-worktree (outside the sparse
    /// patterns), a deletion for assume-unchanged.
    Absent,
    /// A regular file where the index has one: its content must be hashed.
    File,
    /// Anything else (a directory, a link where a file was, a link at
    /// all): counted as an edit (fail closed; a link's target is not
    /// compared).
    Other,
}

/// Looks at `path` (relative to `worktree`) without following a symlink at
/// its last component.
pub fn on_disk(worktree: &Path, path: &[u8], mode: &str) -> io::Result<OnDisk> {
    match std::fs::symlink_metadata(worktree.join(OsStr::from_bytes(path))) {
        Ok(m) if m.is_file() && mode != SYMLINK => Ok(OnDisk::File),
        Ok(_) => Ok(OnDisk::Other),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            Ok(OnDisk::Absent)
        }
        Err(e) => Err(e),
    }
}

/// The verdict on one flagged entry, given what is on disk and (for a
/// file) the object id git hashes its content to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    Unchanged,
    Modified,
    Deleted,
}

/// Pure: whether a flagged entry hides an edit.
pub fn judge(entry: &Flagged, disk: OnDisk, hashed: Option<&str>) -> Hidden {
    match disk {
        // Outside the sparse patterns a file is meant to be absent.
        OnDisk::Absent if entry.skip_worktree => Hidden::Unchanged,
        OnDisk::Absent => Hidden::Deleted,
        OnDisk::Other => Hidden::Modified,
        OnDisk::File if hashed == Some(entry.oid.as_str()) => Hidden::Unchanged,
        OnDisk::File => Hidden::Modified,
    }
}

/// The input of `git hash-object --stdin-paths`: one path a line, quoted
/// the way git unquotes (C style) when it holds a byte a line cannot.
pub fn stdin_paths<'a>(paths: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        let needs_quote =
            p.first() == Some(&b'"') || p.iter().any(|b| *b < 0x20 || *b == b'\\' || *b == 0x7f);
        if !needs_quote {
            out.extend_from_slice(p);
        } else {
            out.push(b'"');
            for b in p {
                match b {
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', *b]),
                    0x20..=0x7e => out.push(*b),
                    _ => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
                }
            }
            out.push(b'"');
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn tags_modes_and_stages() {
        let out = format!(
            "H 100644 {OID} 0\tplain\0S 100644 {OID} 0\tsparse/out\0h 100755 {OID} 0\tassumed\0\
             s 100644 {OID} 0\tboth\0H 160000 {OID} 0\tsub\0M 100644 {OID} 1\tconflict\0\
             S 160000 {OID} 0\tsparse-sub\0"
        );
        let index = parse(out.as_bytes()).unwrap();
        let flags: Vec<(&[u8], bool, bool)> = index
            .flagged
            .iter()
            .map(|f| (f.path.as_slice(), f.skip_worktree, f.assume_unchanged))
            .collect();
        assert_eq!(
            flags,
            vec![
                (&b"sparse/out"[..], true, false),
                (&b"assumed"[..], false, true),
                (&b"both"[..], true, true),
            ]
        );
        assert_eq!(
            index.gitlinks,
            vec![b"sub".to_vec(), b"sparse-sub".to_vec()]
        );
    }

    #[test]
    fn malformed_listing_fails_closed() {
        for bad in ["H 100644 x\tp", "no tab", "HH 100644 x 0\tp"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn judging_table() {
        let entry = |skip, assume| Flagged {
            path: b"p".to_vec(),
            mode: "100644".to_owned(),
            oid: OID.to_owned(),
            assume_unchanged: assume,
            skip_worktree: skip,
        };
        let sparse = entry(true, false);
        let assumed = entry(false, true);
        assert_eq!(judge(&sparse, OnDisk::Absent, None), Hidden::Unchanged);
        assert_eq!(judge(&assumed, OnDisk::Absent, None), Hidden::Deleted);
        for e in [&sparse, &assumed] {
            assert_eq!(judge(e, OnDisk::File, Some(OID)), Hidden::Unchanged);
            assert_eq!(judge(e, OnDisk::File, Some("ffff")), Hidden::Modified);
            assert_eq!(judge(e, OnDisk::File, None), Hidden::Modified);
            assert_eq!(judge(e, OnDisk::Other, None), Hidden::Modified);
        }
    }

    #[test]
    fn odd_paths_are_quoted_for_git() {
        let input = stdin_paths([&b"plain"[..], b"new\nline", b"\"q", b"back\\slash", b"\xff"]);
        assert_eq!(
            input,
            b"plain\n\"new\\012line\"\n\"\\\"q\"\n\"back\\\\slash\"\n\xff\n".to_vec()
        );
    }
}
