//! `treeward-hook`: git's `post-checkout` hook, which records each new
//! linked worktree in the ledger the moment `git worktree add` creates it.
//!
//! git calls it as `post-checkout <old> <new> <flag>` with the checked-out
//! worktree as the current directory (`git worktree add` clears `GIT_DIR`,
//! so the worktree's `.git` file is what says where it belongs). Then:
//! - `<old>` is the null id and the worktree is a linked one: `git worktree
//!   add` has just created it. If it is an entry of a configured root (or
//!   anywhere, with `hook_record_anywhere = true`), an `active` record is
//!   appended to the ledger's journal: path (as the root names it), common
//!   dir, admin name, branch, base commit (`<new>`), uid, created_at.
//! - `<flag>` is 1 (a branch checkout) in a linked worktree that qualifies
//!   the same way: its branch is recorded; the ledger applies it to the
//!   worktree's live record, and drops it when there is none.
//! - Anything else (a clone, a main worktree, a file checkout) records
//!   nothing.
//!
//! Failure mode: the hook's exit status becomes git's, so under git it
//! always exits 0; a failure (bad arguments, bad configuration, an
//! unwritable ledger) is logged, to stderr and to journald when there is
//! one (see [`crate::cli::run_hook`]). With `--dry-run` it only says what it
//! would do, and exits 2 on an error and 78 on bad configuration like every
//! other treeward program.
//!
//! [`decide`] is the pure decision; [`facts`] reads the little that git
//! left on disk; [`run`] puts them together and appends to the ledger.

use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Change, Ledger, Record};
use crate::risk::{locate, Location};
use crate::roots;
use serde::Serialize;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The arguments git passes to `post-checkout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The previous HEAD: the null id when a worktree or clone was just
    /// created.
    pub old: String,
    /// The new HEAD (the null id for an unborn branch).
    pub new: String,
    /// `<flag>` 1: a branch checkout; 0: a file checkout.
    pub branch_checkout: bool,
}

impl Checkout {
    /// Whether this checkout created the worktree (`<old>` is the null id).
    pub fn created(&self) -> bool {
        is_null_id(&self.old)
    }
}

/// Whether `id` is git's null object id (SHA-1 or SHA-256 length).
fn is_null_id(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// Whether `id` looks like a full object id: 40 (SHA-1) or 64 (SHA-256)
/// hex digits.
fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The usage line, for messages.
pub const USAGE: &str = "treeward-hook <old-commit> <new-commit> <0|1> \
    (the arguments git passes to post-checkout)";

/// Why git's arguments to `post-checkout` are not what the hook expects.
/// Every message ends with the usage line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// An argument is not UTF-8 text.
    NotText(OsString),
    /// Not three arguments.
    Count(usize),
    /// A commit that is not a full object id.
    NotAnObjectId {
        /// `old commit` or `new commit`.
        what: &'static str,
        /// The argument.
        id: String,
    },
    /// A flag other than `0` or `1`.
    Flag(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::NotText(a) => write!(f, "bad arguments: {a:?} is not text"),
            ArgsError::Count(n) => write!(f, "expected 3 arguments, got {n}"),
            ArgsError::NotAnObjectId { what, id } => write!(
                f,
                "{what} {id:?} is not a full object id (40 or 64 hex digits)"
            ),
            ArgsError::Flag(other) => write!(
                f,
                "flag {other:?} is neither 0 (file checkout) nor 1 (branch checkout)"
            ),
        }?;
        write!(f, "; usage: {USAGE}")
    }
}

impl std::error::Error for ArgsError {}

/// Pure: parses git's three arguments, or says clearly what is wrong.
pub fn parse_args(args: &[OsString]) -> Result<Checkout, ArgsError> {
    let texts: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().ok_or_else(|| ArgsError::NotText(a.clone())))
        .collect::<Result<_, _>>()?;
    let [old, new, flag] = texts[..] else {
        return Err(ArgsError::Count(texts.len()));
    };
    for (what, id) in [("old commit", old), ("new commit", new)] {
        if !is_object_id(id) {
            return Err(ArgsError::NotAnObjectId {
                what,
                id: id.to_owned(),
            });
        }
    }
    let branch_checkout = match flag {
        "1" => true,
        "0" => false,
        other => return Err(ArgsError::Flag(other.to_owned())),
    };
    Ok(Checkout {
        old: old.to_ascii_lowercase(),
        new: new.to_ascii_lowercase(),
        branch_checkout,
    })
}

/// What git left on disk about the worktree the hook runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The current directory (git's chdir into the worktree; symlinks
    /// resolved by the kernel).
    pub dir: PathBuf,
    /// What `dir` is.
    pub location: Location,
    /// The branch its HEAD names; `None` when detached or not read.
    pub branch: Option<String>,
}

/// Reads the facts of the worktree at `dir`: a few stats and two small
/// files, no git (starting git costs more than the whole hook) unless the
/// repository keeps HEAD in a reftable ([`is_reftable_stub`]).
pub fn facts(dir: &Path) -> Facts {
    let location = locate(dir);
    let branch = match &location {
        Location::Linked { gitdir, .. } => {
            match std::fs::read_to_string(gitdir.join("HEAD")).ok() {
                Some(t) if is_reftable_stub(&t) => head_by_git(dir).0,
                Some(t) => branch_of_head(&t),
                None => None,
            }
        }
        _ => None,
    };
    Facts {
        dir: dir.to_path_buf(),
        location,
        branch,
    }
}

/// Pure: whether a HEAD file is the stub git leaves in a repository whose
/// refs are in a reftable (`ref: refs/heads/.invalid`): HEAD itself is in
/// the table, and only git can read it.
pub fn is_reftable_stub(text: &str) -> bool {
    text.trim() == "ref: refs/heads/.invalid"
}

/// The branch HEAD names and the commit it is at, asked of git in the
/// worktree at `dir` as the current user (refused on another user's
/// repository: then neither is known).
pub fn head_by_git(dir: &Path) -> (Option<String>, Option<String>) {
    let euid = nix::unistd::geteuid().as_raw();
    let ask = |args: &[&str]| {
        crate::git::Git::new(dir, euid)
            .ok()?
            .read_only()
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let branch = ask(&["symbolic-ref", "-q", "--short", "HEAD"]);
    let commit = ask(&["rev-parse", "-q", "--verify", "HEAD^{commit}"]);
    (branch, commit)
}

/// Pure: the branch a HEAD file names (`ref: refs/heads/x` → `x`); `None`
/// when detached (an object id) or pointing outside `refs/heads/`.
pub fn branch_of_head(text: &str) -> Option<String> {
    let target = text.trim().strip_prefix("ref:")?.trim();
    let branch = target.strip_prefix("refs/heads/")?;
    (!branch.is_empty()).then(|| branch.to_owned())
}

/// Pure: the path to record a worktree at `dir` under: `dir` as the
/// configured root names it when it is an entry of one (comparing with each
/// root's real path, as `dir` has its symlinks resolved), else `None`.
/// `realpath` resolves a root's path (`None`: use it as written).
pub fn entry_path(
    dir: &Path,
    config: &Config,
    realpath: impl Fn(&Path) -> Option<PathBuf>,
) -> Option<PathBuf> {
    let parent = dir.parent()?;
    let name = dir.file_name()?;
    config
        .roots
        .iter()
        .filter(|root| roots::is_entry(root, name))
        .find(|root| root.path == parent || realpath(&root.path).is_some_and(|r| r == parent))
        .map(|root| root.path.join(name))
}

/// What the hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Record a new linked worktree.
    Record {
        path: PathBuf,
        repository: PathBuf,
        worktree_name: String,
        branch: Option<String>,
        base_commit: Option<String>,
    },
    /// Record the branch a worktree switched to.
    UpdateBranch {
        path: PathBuf,
        repository: PathBuf,
        branch: Option<String>,
    },
    /// Nothing to record, and why.
    Nothing { reason: String },
}

fn nothing(reason: impl Into<String>) -> Decision {
    Decision::Nothing {
        reason: reason.into(),
    }
}

/// Pure: what to record for `checkout` in the worktree described by
/// `facts`; `entry` is its path as a root names it ([`entry_path`]).
pub fn decide(
    checkout: &Checkout,
    facts: &Facts,
    entry: Option<PathBuf>,
    record_anywhere: bool,
) -> Decision {
    let (repository, name) = match &facts.location {
        Location::Linked { common, name, .. } => (common.clone(), name.clone()),
        Location::Main { .. } => {
            return nothing("a clone or main worktree: only linked worktrees are recorded")
        }
        other => {
            return nothing(format!(
                "{} is not a linked worktree ({other:?})",
                facts.dir.display()
            ))
        }
    };
    if !checkout.created() && !checkout.branch_checkout {
        return nothing("a file checkout: no branch changed");
    }
    let path = match entry {
        Some(p) => p,
        None if record_anywhere => facts.dir.clone(),
        None => {
            return nothing(format!(
                "{} is not an entry of any configured root (hook_record_anywhere = false)",
                facts.dir.display()
            ))
        }
    };
    if checkout.created() {
        Decision::Record {
            path,
            repository,
            worktree_name: name,
            branch: facts.branch.clone(),
            base_commit: (!is_null_id(&checkout.new)).then(|| checkout.new.clone()),
        }
    } else {
        Decision::UpdateBranch {
            path,
            repository,
            branch: facts.branch.clone(),
        }
    }
}

/// Pure: the ledger change for a decision, made by `uid` now.
pub fn change_for(decision: &Decision, uid: u32) -> Option<Change> {
    match decision {
        Decision::Record {
            path,
            repository,
            worktree_name,
            branch,
            base_commit,
        } => {
            let mut record = Record::new(path, repository, uid);
            record.worktree_name = Some(worktree_name.clone());
            record.branch = branch.clone();
            record.base_commit = base_commit.clone();
            Some(Change::Add {
                record: Box::new(record),
            })
        }
        Decision::UpdateBranch {
            path,
            repository,
            branch,
        } => Some(Change::Branch {
            path: path.clone(),
            repository: repository.clone(),
            branch: branch.clone(),
        }),
        Decision::Nothing { .. } => None,
    }
}

/// What [`run`] decided, and the ledger it is (or would be) recorded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub ledger: PathBuf,
}

/// Everything between git's arguments and the ledger: parses them, loads
/// the configuration (`--config`, else `TREEWARD_CONFIG`, else the default
/// file or embedded defaults), reads the worktree in the current directory
/// and decides; unless `dry_run`, appends the change to the ledger's
/// journal. Bad arguments are refused before anything is read.
pub fn run(config: Option<&Path>, args: &[OsString], dry_run: bool) -> Result<Outcome, Error> {
    let checkout = parse_args(args).map_err(|e| Error::Usage(e.to_string()))?;
    let config = Config::load(config)?;
    let dir = std::env::current_dir()
        .map_err(|e| Error::Failed(format!("cannot tell the current directory: {e}")))?;
    let facts = facts(&dir);
    let entry = entry_path(&dir, &config, |p| std::fs::canonicalize(p).ok());
    let decision = decide(&checkout, &facts, entry, config.hook_record_anywhere);
    if !dry_run {
        if let Some(change) = change_for(&decision, nix::unistd::getuid().as_raw()) {
            Ledger::new(&config.ledger).append(&change)?;
        }
    }
    Ok(Outcome {
        decision,
        ledger: config.ledger,
    })
}

/// The `--dry-run` summary for a person.
pub fn render_human(decision: &Decision, ledger: &Path) -> String {
    let or_detached = |b: &Option<String>| b.clone().unwrap_or_else(|| "(detached)".into());
    match decision {
        Decision::Record {
            path,
            branch,
            base_commit,
            ..
        } => format!(
            "would record {} (branch {}, base {}) in {}\n",
            path.display(),
            or_detached(branch),
            base_commit.as_deref().unwrap_or("(none)"),
            ledger.display()
        ),
        Decision::UpdateBranch { path, branch, .. } => format!(
            "would record that {} is now on branch {} in {}\n",
            path.display(),
            or_detached(branch),
            ledger.display()
        ),
        Decision::Nothing { reason } => format!("nothing to record: {reason}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, SystemUsers};

    const A: &str = "4c6cd2eb2e376f82d177c24b726c875c0badbde9";
    const B: &str = "1111111111111111111111111111111111111111";
    const NULL: &str = "0000000000000000000000000000000000000000";

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn checkout(old: &str, new: &str, flag: bool) -> Checkout {
        Checkout {
            old: old.into(),
            new: new.into(),
            branch_checkout: flag,
        }
    }

    fn linked(dir: &str, branch: Option<&str>) -> Facts {
        Facts {
            dir: dir.into(),
            location: Location::Linked {
                gitdir: "/srv/r/.git/worktrees/x".into(),
                common: "/srv/r/.git".into(),
                name: "x".into(),
            },
            branch: branch.map(str::to_owned),
        }
    }

    fn config(patterns: &str) -> Config {
        let text = format!(
            "ledger = \"/var/lib/treeward/ledger.json\"\n[[root]]\npath = \"/tmp/adf-worktrees\"\npatterns = {patterns}\n"
        );
        Config::from_toml(&text, Source::Embedded, &SystemUsers).unwrap()
    }

    #[test]
    fn git_arguments_parse() {
        assert_eq!(
            parse_args(&args(&[NULL, A, "1"])).unwrap(),
            checkout(NULL, A, true)
        );
        let upper = A.to_ascii_uppercase();
        assert_eq!(parse_args(&args(&[A, &upper, "0"])).unwrap().new, A);
        let sha256 = "ab".repeat(32);
        assert!(parse_args(&args(&[&sha256, &sha256, "0"])).is_ok());
        assert!(checkout(&"0".repeat(64), A, true).created());
    }

    #[test]
    fn wrong_arguments_say_what_is_wrong() {
        let cases: [(&[&str], &str); 6] = [
            (&[], "expected 3 arguments, got 0"),
            (&[NULL, A], "expected 3 arguments, got 2"),
            (&[NULL, A, "1", "x"], "expected 3 arguments, got 4"),
            (
                &["HEAD", A, "1"],
                "old commit \"HEAD\" is not a full object id",
            ),
            (
                &[NULL, "abc", "1"],
                "new commit \"abc\" is not a full object id",
            ),
            (&[NULL, A, "2"], "flag \"2\" is neither 0"),
        ];
        for (a, expected) in cases {
            let err = parse_args(&args(a)).unwrap_err().to_string();
            assert!(err.contains(expected), "{a:?}: {err}");
            assert!(err.contains("usage: treeward-hook"), "{err}");
        }
    }

    #[test]
    fn head_names_a_branch_or_nothing() {
        assert_eq!(
            branch_of_head("ref: refs/heads/review-1\n").as_deref(),
            Some("review-1")
        );
        assert_eq!(
            branch_of_head("ref: refs/heads/a/b").as_deref(),
            Some("a/b")
        );
        assert_eq!(branch_of_head(&format!("{A}\n")), None);
        assert_eq!(branch_of_head("ref: refs/remotes/origin/x\n"), None);
        assert_eq!(branch_of_head("ref: refs/heads/\n"), None);
    }

    #[test]
    fn entry_path_is_as_the_root_names_it() {
        let cfg = config("[\"review-*\"]");
        let none = |_: &Path| None;
        assert_eq!(
            entry_path(Path::new("/tmp/adf-worktrees/review-1"), &cfg, none),
            Some(PathBuf::from("/tmp/adf-worktrees/review-1"))
        );
        assert_eq!(
            entry_path(Path::new("/tmp/adf-worktrees/other"), &cfg, none),
            None,
            "a name the root's patterns do not own"
        );
        assert_eq!(
            entry_path(Path::new("/tmp/adf-worktrees/review-1/sub"), &cfg, none),
            None,
            "only direct children are entries"
        );
        // The root is a symlink to /data/wt: git's chdir resolved it.
        let real = |p: &Path| (p == Path::new("/tmp/adf-worktrees")).then(|| "/data/wt".into());
        assert_eq!(
            entry_path(Path::new("/data/wt/review-2"), &cfg, real),
            Some(PathBuf::from("/tmp/adf-worktrees/review-2"))
        );
        let all = config("[\"*\"]");
        assert_eq!(
            entry_path(Path::new("/tmp/adf-worktrees/.treeward-trash"), &all, none),
            None,
            "the trash is never an entry"
        );
    }

    #[test]
    fn a_new_linked_worktree_under_a_root_is_recorded() {
        let facts = linked("/tmp/adf-worktrees/x", Some("review-1"));
        let entry = Some(PathBuf::from("/tmp/adf-worktrees/x"));
        let d = decide(&checkout(NULL, A, true), &facts, entry, false);
        assert_eq!(
            d,
            Decision::Record {
                path: "/tmp/adf-worktrees/x".into(),
                repository: "/srv/r/.git".into(),
                worktree_name: "x".into(),
                branch: Some("review-1".into()),
                base_commit: Some(A.into()),
            }
        );
        let Some(Change::Add { record }) = change_for(&d, 4242) else {
            panic!("{d:?}")
        };
        assert_eq!(
            (record.uid, record.state, record.worktree_name.as_deref()),
            (4242, crate::ledger::State::Active, Some("x"))
        );
        assert_eq!(record.base_commit.as_deref(), Some(A));
        assert!(crate::ledger::parse_timestamp(&record.created_at).is_some());
    }

    #[test]
    fn outside_every_root_only_when_configured() {
        let facts = linked("/home/u/wt", None);
        let refused = decide(&checkout(NULL, A, true), &facts, None, false);
        assert!(
            matches!(&refused, Decision::Nothing { reason } if reason.contains("hook_record_anywhere")),
            "{refused:?}"
        );
        assert_eq!(change_for(&refused, 0), None);
        let d = decide(&checkout(NULL, A, true), &facts, None, true);
        assert!(
            matches!(&d, Decision::Record { path, branch: None, .. } if path == Path::new("/home/u/wt")),
            "{d:?}"
        );
    }

    #[test]
    fn a_branch_switch_updates_the_branch_and_a_file_checkout_nothing() {
        let facts = linked("/tmp/adf-worktrees/x", Some("next"));
        let entry = || Some(PathBuf::from("/tmp/adf-worktrees/x"));
        assert_eq!(
            decide(&checkout(A, B, true), &facts, entry(), false),
            Decision::UpdateBranch {
                path: "/tmp/adf-worktrees/x".into(),
                repository: "/srv/r/.git".into(),
                branch: Some("next".into()),
            }
        );
        assert!(matches!(
            decide(&checkout(A, B, false), &facts, entry(), false),
            Decision::Nothing { .. }
        ));
        assert!(matches!(
            decide(&checkout(A, B, true), &facts, None, false),
            Decision::Nothing { .. }
        ));
    }

    #[test]
    fn clones_and_other_directories_record_nothing() {
        let mut facts = linked("/tmp/adf-worktrees/c", Some("main"));
        facts.location = Location::Main {
            common: "/tmp/adf-worktrees/c/.git".into(),
        };
        let entry = Some(PathBuf::from("/tmp/adf-worktrees/c"));
        for anywhere in [false, true] {
            let d = decide(&checkout(NULL, A, true), &facts, entry.clone(), anywhere);
            assert!(
                matches!(&d, Decision::Nothing { reason } if reason.contains("clone")),
                "{d:?}"
            );
        }
        facts.location = Location::Plain { empty: false };
        assert!(matches!(
            decide(&checkout(NULL, A, true), &facts, entry, true),
            Decision::Nothing { .. }
        ));
    }

    #[test]
    fn an_unborn_branch_has_no_base_commit() {
        let facts = linked("/w/x", Some("orphan"));
        let d = decide(&checkout(NULL, NULL, true), &facts, None, true);
        assert!(
            matches!(
                &d,
                Decision::Record {
                    base_commit: None,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn dry_run_summaries() {
        let d = Decision::Record {
            path: "/w/x".into(),
            repository: "/r/.git".into(),
            worktree_name: "x".into(),
            branch: None,
            base_commit: Some(A.into()),
        };
        assert_eq!(
            render_human(&d, Path::new("/l.json")),
            format!("would record /w/x (branch (detached), base {A}) in /l.json\n")
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["action"], "record");
        assert_eq!(json["branch"], serde_json::Value::Null);
        assert_eq!(
            render_human(&nothing("why"), Path::new("/l")),
            "nothing to record: why\n"
        );
    }
}
