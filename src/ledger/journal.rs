//! The ledger's journal, `<ledger>.journal`: how `treeward-hook` records a
//! worktree in well under a millisecond however long the ledger is.
//!
//! One JSON object per line, each a [`Change`] with a unique line `id`:
//!
//! ```text
//! {"id":"…","op":"add","record":{…a Record…}}
//! {"id":"…","op":"branch","path":"/tmp/adf-worktrees/x","repository":"/srv/r/.git","branch":"b"}
//! ```
//!
//! Contract:
//! - [`super::Ledger::append`] adds one line with one `write(2)` on an
//!   `O_APPEND` descriptor, under the exclusive flock on `<ledger>.lock`
//!   (held for microseconds): a line torn by a crash is detected and fenced
//!   off with a newline, which is only sound when no other append is half
//!   way through its write (a reader can see a write that spans a page
//!   boundary half done). It does not fsync (see [`super::Ledger::append`]
//!   for why).
//! - Readers fold the journal, in order, into the document:
//!   an `add` is skipped when its record id is already there (so folding
//!   twice changes nothing) and otherwise supersedes any live record at the
//!   same path (`git worktree add` proves the old worktree is gone); a
//!   `branch` sets the branch of the newest live record at that path of that
//!   repository, and is dropped when there is none.
//! - [`super::Ledger::update`] compacts under the exclusive lock: it writes
//!   the folded document, stamped with the id of the last line it folded
//!   (`journal_folded`), atomically, then truncates the journal in place
//!   (keeping its owner and mode). A crash between the two leaves lines the
//!   stamp says are folded; the next fold skips them.
//! - A last line without its newline is a torn append (a crash, a full disk)
//!   or one still being written: readers ignore it; compaction drops it with
//!   a warning. Other lines that are not JSON are dropped with an error
//!   naming the line. A line whose `op` this build does not know was written
//!   by a newer treeward: the ledger is refused, and left untouched, rather
//!   than compacted without it.

use super::{Document, Record, State};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// One change recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A new record; skipped if its id is already in the ledger. (Boxed:
    /// a record is much larger than the other changes; the JSON is the
    /// same.)
    Add { record: Box<Record> },
    /// The worktree at `path` of `repository` is now on `branch` (`None`:
    /// detached).
    Branch {
        path: PathBuf,
        repository: PathBuf,
        branch: Option<String>,
    },
}

/// A journal line: a change and the line's unique id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Line {
    pub id: String,
    #[serde(flatten)]
    pub change: Change,
}

/// Only the `op`, to tell a newer treeward's line from garbage.
#[derive(Deserialize)]
struct OpProbe {
    op: String,
}

/// What a journal's bytes turned out to be.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    /// The complete, valid lines, in order.
    pub lines: Vec<Line>,
    /// Complete lines that are not journal entries: (1-based line number,
    /// parse error, the text).
    pub garbage: Vec<(usize, String, String)>,
    /// The text after the last newline, if any: torn or still being written.
    pub unterminated: Option<String>,
    /// The first line whose op this build does not know: (line number, op).
    pub unknown_op: Option<(usize, String)>,
}

impl Decoded {
    /// Whether the journal held anything at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
            && self.garbage.is_empty()
            && self.unterminated.is_none()
            && self.unknown_op.is_none()
    }
}

/// Pure: classifies every line of a journal.
pub(super) fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let (complete, rest) = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&bytes[..0], bytes),
    };
    if !rest.is_empty() {
        out.unterminated = Some(String::from_utf8_lossy(rest).into_owned());
    }
    if bytes.iter().all(|&b| b != b'\n') {
        return out;
    }
    for (i, text) in complete.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(line) => out.lines.push(line),
            Err(e) => match serde_json::from_slice::<OpProbe>(text) {
                Ok(p) if p.op != "add" && p.op != "branch" => {
                    out.unknown_op.get_or_insert((number, p.op));
                }
                _ => out.garbage.push((
                    number,
                    e.to_string(),
                    String::from_utf8_lossy(text).into_owned(),
                )),
            },
        }
    }
    out
}

/// Pure: the bytes appended for `change`, as line `id`: one JSON object
/// and a newline, preceded by a newline when the journal does not end with
/// one (a torn line must not swallow this one).
pub(super) fn encode_line(
    id: &str,
    change: &Change,
    after_torn_line: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let line = Line {
        id: id.to_owned(),
        change: change.clone(),
    };
    let mut bytes = Vec::with_capacity(512);
    if after_torn_line {
        bytes.push(b'\n');
    }
    serde_json::to_writer(&mut bytes, &line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Pure: the lines still to fold into a document stamped `folded` (the id
/// of the last line an earlier compaction folded): those after that line
/// when it is still in the journal (a compaction crashed before
/// truncating), else all of them.
pub(super) fn unfolded<'a>(lines: &'a [Line], folded: Option<&str>) -> &'a [Line] {
    match folded.and_then(|id| lines.iter().rposition(|l| l.id == id)) {
        Some(i) => &lines[i + 1..],
        None => lines,
    }
}

/// Whether a record in `state` describes a worktree that may still exist.
fn is_live(state: State) -> bool {
    !matches!(state, State::Removed | State::Preserved)
}

/// Pure: applies `lines` to `doc` in order. Idempotent: applying the same
/// lines again changes nothing more. Indexes the document once, so that
/// folding a journal into 10,000 records costs milliseconds, not a scan
/// per line.
pub(super) fn fold(doc: &mut Document, lines: &[Line]) {
    if lines.is_empty() {
        return;
    }
    let mut ids: HashSet<String> = doc.records.iter().map(|r| r.id.clone()).collect();
    // Indices of the live records at each path, oldest first.
    let mut live: HashMap<PathBuf, Vec<usize>> = HashMap::new();
    for (i, r) in doc.records.iter().enumerate() {
        if is_live(r.state) {
            live.entry(r.path.clone()).or_default().push(i);
        }
    }
    for line in lines {
        match &line.change {
            Change::Add { record } => {
                if !ids.insert(record.id.clone()) {
                    continue;
                }
                let at_path = live.entry(record.path.clone()).or_default();
                // The same worktree reported again (a hook run twice, say
                // after a crash): the live record stands, only its branch
                // follows.
                if let Some(&i) = at_path
                    .iter()
                    .find(|&&i| same_worktree(&doc.records[i], record))
                {
                    doc.records[i].branch.clone_from(&record.branch);
                    continue;
                }
                for i in at_path.drain(..) {
                    supersede(&mut doc.records[i], &record.id);
                }
                if is_live(record.state) {
                    at_path.push(doc.records.len());
                }
                doc.records.push(Record::clone(record));
            }
            Change::Branch {
                path,
                repository,
                branch,
            } => {
                let newest = live.get(path).and_then(|at_path| {
                    at_path
                        .iter()
                        .rev()
                        .find(|&&i| doc.records[i].repository == *repository)
                });
                if let Some(&i) = newest {
                    doc.records[i].branch = branch.clone();
                }
            }
        }
    }
}

/// Marks a live record removed: a new worktree (record `by`) was just
/// created at its path, so the one it describes is gone.
fn supersede(rec: &mut Record, by: &str) {
    rec.last_error = Some(format!(
        "superseded: a new worktree was created at this path (record {by})"
    ));
    rec.transition(State::Removed);
}

/// Pure: whether `added` reports the creation of the worktree `live`
/// already records: same path, repository, admin name and base commit.
fn same_worktree(live: &Record, added: &Record) -> bool {
    live.path == added.path
        && live.repository == added.repository
        && live.worktree_name.is_some()
        && live.worktree_name == added.worktree_name
        && live.base_commit == added.base_commit
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn record(path: &str) -> Record {
        let mut r = Record::new(Path::new(path), Path::new("/srv/r/.git"), 1000);
        r.branch = Some("b0".into());
        r
    }

    fn line(change: Change) -> Line {
        Line {
            id: Record::new_id(),
            change,
        }
    }

    fn branch(path: &str, to: Option<&str>) -> Change {
        Change::Branch {
            path: path.into(),
            repository: "/srv/r/.git".into(),
            branch: to.map(str::to_owned),
        }
    }

    fn text(lines: &[Line]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend(encode_line(&l.id, &l.change, false).unwrap());
        }
        out
    }

    #[test]
    fn lines_round_trip_in_the_documented_form() {
        let rec = record("/w/a");
        let l = line(Change::Add {
            record: Box::new(rec.clone()),
        });
        let bytes = encode_line(&l.id, &l.change, false).unwrap();
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            s.starts_with(&format!(
                "{{\"id\":\"{}\",\"op\":\"add\",\"record\":{{",
                l.id
            )),
            "{s}"
        );
        assert!(s.ends_with("}\n") && s.matches('\n').count() == 1, "{s}");
        let b = encode_line("x", &branch("/w/a", None), true).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "\n{\"id\":\"x\",\"op\":\"branch\",\"path\":\"/w/a\",\"repository\":\"/srv/r/.git\",\"branch\":null}\n"
        );
        let d = decode(&bytes);
        assert_eq!(d.lines, vec![l]);
        assert!(d.garbage.is_empty() && d.unterminated.is_none());
    }

    #[test]
    fn decode_sets_torn_garbage_and_unknown_lines_apart() {
        let good = line(branch("/w/a", Some("x")));
        let mut bytes = text(std::slice::from_ref(&good));
        bytes.extend(b"\n   \nnot json\n{\"id\":\"n\",\"op\":\"rename\",\"to\":\"/w/b\"}\n");
        bytes.extend(text(std::slice::from_ref(&good)));
        bytes.extend(b"{\"id\":\"t\",\"op\":\"ad");

        let d = decode(&bytes);

        assert_eq!(d.lines, vec![good.clone(), good]);
        assert_eq!(d.garbage.len(), 1);
        assert_eq!((d.garbage[0].0, d.garbage[0].2.as_str()), (4, "not json"));
        assert_eq!(d.unknown_op, Some((5, "rename".to_string())));
        assert_eq!(d.unterminated.as_deref(), Some("{\"id\":\"t\",\"op\":\"ad"));
        assert!(decode(b"").is_empty());
        let only_torn = decode(b"{\"id\":");
        assert!(only_torn.lines.is_empty() && only_torn.unterminated.is_some());
    }

    #[test]
    fn fold_adds_once_and_updates_the_branch_of_the_live_record() {
        let a = record("/w/a");
        let lines = vec![
            line(Change::Add {
                record: Box::new(a.clone()),
            }),
            line(branch("/w/a", Some("feature"))),
            line(branch("/w/unknown", Some("ignored"))),
        ];
        let mut doc = Document::empty();
        fold(&mut doc, &lines);
        fold(&mut doc, &lines);

        assert_eq!(doc.records.len(), 1, "an add is applied once");
        assert_eq!(doc.records[0].id, a.id);
        assert_eq!(doc.records[0].branch.as_deref(), Some("feature"));
        assert_eq!(doc.records[0].last_transition, a.last_transition);

        let mut other_repo = branch("/w/a", Some("nope"));
        if let Change::Branch { repository, .. } = &mut other_repo {
            *repository = "/srv/other/.git".into();
        }
        fold(&mut doc, &[line(other_repo), line(branch("/w/a", None))]);
        assert_eq!(doc.records[0].branch, None, "detached");
    }

    #[test]
    fn the_same_worktree_reported_twice_is_one_record() {
        let mut first = record("/w/a");
        first.worktree_name = Some("a".into());
        first.base_commit = Some("c0".into());
        let mut again = first.clone();
        again.id = Record::new_id();
        again.branch = Some("b1".into());
        let mut doc = Document::empty();
        let add = |r: &Record| {
            line(Change::Add {
                record: Box::new(r.clone()),
            })
        };
        fold(&mut doc, &[add(&first), add(&again)]);
        assert_eq!(doc.records.len(), 1, "{:?}", doc.records);
        assert_eq!(doc.records[0].id, first.id);
        assert_eq!(doc.records[0].branch.as_deref(), Some("b1"));
        // Control: another admin name at that path is a new worktree.
        let mut other = again.clone();
        other.id = Record::new_id();
        other.worktree_name = Some("a1".into());
        fold(&mut doc, &[add(&other)]);
        assert_eq!(doc.records.len(), 2);
    }

    #[test]
    fn a_new_worktree_at_a_known_path_supersedes_the_live_record_only() {
        let mut gone = record("/w/a");
        gone.transition(State::Removed);
        let released = {
            let mut r = record("/w/a");
            r.transition(State::Released);
            r
        };
        let elsewhere = record("/w/b");
        let mut doc = Document::empty();
        doc.records = vec![gone.clone(), released.clone(), elsewhere.clone()];
        let new = record("/w/a");

        fold(
            &mut doc,
            &[
                line(Change::Add {
                    record: Box::new(new.clone()),
                }),
                line(branch("/w/a", Some("after"))),
            ],
        );

        assert_eq!(doc.records.len(), 4);
        assert_eq!(doc.records[0], gone, "a terminal record is history");
        assert_eq!(doc.records[1].state, State::Removed);
        assert!(doc.records[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("superseded") && e.contains(&new.id)));
        assert_eq!(doc.records[2], elsewhere);
        assert_eq!(doc.records[3].branch.as_deref(), Some("after"));
        assert_eq!(doc.find_by_path(Path::new("/w/a")).unwrap().id, new.id);
    }

    #[test]
    fn unfolded_skips_what_a_crashed_compaction_already_folded() {
        let lines: Vec<Line> = (0..4).map(|_| line(branch("/w/a", None))).collect();
        assert_eq!(unfolded(&lines, None).len(), 4);
        assert_eq!(unfolded(&lines, Some(&lines[1].id)), &lines[2..]);
        assert_eq!(unfolded(&lines, Some(&lines[3].id)), &[] as &[Line]);
        assert_eq!(unfolded(&lines, Some("truncated-since")).len(), 4);
    }
}
