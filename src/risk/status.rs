//! What `git status --porcelain=v2 -z --branch --untracked-files=all
//! --ignore-submodules=none` says about a worktree, parsed. One git process
//! answers most of the checker's questions (HEAD, branch, upstream,
//! ahead/behind, every change, submodule state),
//! which is what keeps the checker as fast as `git status` itself.
//!
//! The format is git's documented machine format (git-status(1), "Porcelain
//! Format Version 2"); the parser is pure and strict: a line it does not
//! know is an error (fail closed), never skipped.

use super::verdict::Changes;
use super::RiskError;

/// The parsed output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The commit HEAD names; `None` on an unborn branch.
    pub head: Option<String>,
    /// The checked-out branch (short name); `None` when detached.
    pub branch: Option<String>,
    /// The branch's upstream (short name), if it has one.
    pub upstream: Option<String>,
    /// Commits ahead of and behind the upstream; `None` when there is no
    /// upstream or it is gone.
    pub ahead_behind: Option<(usize, usize)>,
    pub changes: Changes,
    /// Submodules (gitlinks) with modified content or untracked files
    /// inside.
    pub dirty_submodules: Vec<Vec<u8>>,
}

/// Parses the `-z` output.
pub fn parse(out: &[u8]) -> Result<Status, RiskError> {
    let mut s = Status::default();
    let mut detached = false;
    let mut records = out.split(|b| *b == 0);
    while let Some(rec) = records.next() {
        if rec.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(rec);
        let bad = || RiskError::unexpected("git status", "line", rec);
        match rec[0] {
            b'#' => header(&mut s, &mut detached, &text).ok_or_else(bad)?,
            b'1' => entry(&mut s, rec, 8).ok_or_else(bad)?,
            b'2' => {
                entry(&mut s, rec, 9).ok_or_else(bad)?;
                // The original path of a rename or copy follows.
                records.next().filter(|r| !r.is_empty()).ok_or_else(bad)?;
            }
            b'u' => {
                fields(rec, 10).ok_or_else(bad)?;
                s.changes.conflicted += 1;
            }
            b'?' => s.changes.untracked += 1,
            // Ignored files are not asked for; should git list them, they
            // are still not at risk.
            b'!' => {}
            _ => return Err(bad()),
        }
    }
    if detached {
        s.branch = None;
    }
    Ok(s)
}

/// A `# key value` header line.
fn header(s: &mut Status, detached: &mut bool, text: &str) -> Option<()> {
    let rest = text.strip_prefix("# ")?;
    let (key, value) = rest.split_once(' ')?;
    match key {
        "branch.oid" => s.head = (value != "(initial)").then(|| value.to_owned()),
        "branch.head" => {
            *detached = value == "(detached)";
            s.branch = Some(value.to_owned());
        }
        "branch.upstream" => s.upstream = Some(value.to_owned()),
        "branch.ab" => {
            let (a, b) = value.split_once(' ')?;
            let ahead = a.strip_prefix('+')?.parse().ok()?;
            let behind = b.strip_prefix('-')?.parse().ok()?;
            s.ahead_behind = Some((ahead, behind));
        }
        // Headers a later git may add say nothing about the verdict.
        _ => {}
    }
    Some(())
}

/// The first `n` space-separated fields of a record, the last one holding
/// the rest (the path, which may contain spaces).
fn fields(rec: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let f: Vec<&[u8]> = rec.splitn(n + 1, |b| *b == b' ').collect();
    (f.len() == n + 1).then_some(f)
}

/// An ordinary (`1`) or renamed/copied (`2`) entry: `XY`, the submodule
/// field, and the path last.
fn entry(s: &mut Status, rec: &[u8], n: usize) -> Option<()> {
    let f = fields(rec, n)?;
    let (&[x, y], sub) = (f[1], f[2]) else {
        return None;
    };
    let c = &mut s.changes;
    c.staged += usize::from(x != b'.');
    match y {
        b'.' => {}
        b'M' | b'T' => c.modified += 1,
        b'D' => c.deleted += 1,
        // Intent to add: the content exists only in the working tree.
        b'A' => c.untracked += 1,
        _ => return None,
    }
    // `S<c><m><u>`: a submodule whose commit changed (c), with modified
    // tracked content (m) or untracked files (u).
    if let [b'S', _, m, u] = sub {
        if *m == b'M' || *u == b'U' {
            s.dirty_submodules.push(f[n].to_vec());
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "0123456789abcdef0123456789abcdef01234567";

    fn z(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn branch_headers() {
        let s = parse(&z(&[
            &format!("# branch.oid {OID}"),
            "# branch.head task-1",
            "# branch.upstream origin/task-1",
            "# branch.ab +2 -3",
        ]))
        .unwrap();
        assert_eq!(s.head.as_deref(), Some(OID));
        assert_eq!(s.branch.as_deref(), Some("task-1"));
        assert_eq!(s.upstream.as_deref(), Some("origin/task-1"));
        assert_eq!(s.ahead_behind, Some((2, 3)));
        assert_eq!(s.changes, Changes::default());
    }

    #[test]
    fn detached_and_unborn() {
        let s = parse(&z(&[
            &format!("# branch.oid {OID}"),
            "# branch.head (detached)",
        ]))
        .unwrap();
        assert_eq!((s.head.as_deref(), s.branch), (Some(OID), None));
        let s = parse(&z(&["# branch.oid (initial)", "# branch.head main"])).unwrap();
        assert_eq!((s.head, s.branch.as_deref()), (None, Some("main")));
    }

    #[test]
    fn each_entry_kind() {
        let m = "100644 100644 100644";
        let s = parse(&z(&[
            &format!("1 M. N... {m} {OID} {OID} staged file"),
            &format!("1 .M N... {m} {OID} {OID} modified"),
            &format!("1 MD N... {m} {OID} {OID} both"),
            &format!("1 .A N... 000000 000000 100644 {OID} {OID} intent"),
            &format!("2 R. N... {m} {OID} {OID} R100 new name"),
            "old name",
            &format!("u UU N... {m} 100644 {OID} {OID} {OID} conflict"),
            "? notes/a b.md",
            "! ignored.log",
            &format!("1 .M S.M. 160000 160000 160000 {OID} {OID} sub"),
            &format!("1 .M SC.. 160000 160000 160000 {OID} {OID} moved-on"),
        ]))
        .unwrap();
        assert_eq!(
            s.changes,
            Changes {
                staged: 3,
                modified: 3,
                deleted: 1,
                untracked: 2,
                conflicted: 1,
                hidden: 0,
            }
        );
        assert_eq!(s.dirty_submodules, vec![b"sub".to_vec()]);
    }

    #[test]
    fn unknown_lines_fail_closed() {
        for bad in [
            "x what",
            "1 .M",
            "# branch.ab 2 3",
            "1 .Q N... a b c d e path",
        ] {
            assert!(parse(&z(&[bad])).is_err(), "{bad}");
        }
        // A rename without its original path.
        let m = "100644 100644 100644";
        let cut = format!("2 R. N... {m} {OID} {OID} R100 new\0");
        assert!(parse(cut.as_bytes()).is_err());
    }
}
