//! The cheap facts about an entry that the blocking decision needs: what it
//! is (from `lstat` and its `.git`), whether its admin dir names it back,
//! whether it is locked, whether it is in use. No git status here: this runs
//! while the service's start waits.

use super::decide::{EntryKind, Seen};
use crate::in_use::{flock_held, ProcessTable};
use crate::risk::{locate, Location};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A linked worktree's place in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// `<common>/worktrees/<name>`.
    pub gitdir: PathBuf,
    /// The common git dir.
    pub common: PathBuf,
    /// The admin name.
    pub name: String,
    /// The owner of the common dir: git work on it runs as this user.
    pub uid: u32,
    pub gid: u32,
}

/// Everything the blocking decision and the quarantine need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub seen: Seen,
    pub admin: Option<Admin>,
    /// Why a worktree is not taken for what its `.git` says (its admin dir
    /// names another path).
    pub mismatch: Option<String>,
    /// The entry's own owner.
    pub uid: u32,
}

/// Inspects `path`, a direct child of a root on device `root_dev`.
pub fn inspect(path: &Path, root_dev: u64, processes: &ProcessTable) -> std::io::Result<Inspected> {
    let meta = std::fs::symlink_metadata(path)?;
    let is_dir = meta.is_dir();
    let (kind, admin, mismatch) = match locate(path) {
        Location::Symlink => (EntryKind::Symlink, None, None),
        Location::NotADirectory | Location::Missing => (EntryKind::NotADirectory, None, None),
        Location::Plain { .. } => (EntryKind::Plain, None, None),
        Location::Broken { .. } => (EntryKind::Broken, None, None),
        Location::Main { .. } => (EntryKind::Main, None, None),
        Location::Linked {
            gitdir,
            common,
            name,
        } => {
            let mismatch = backlink_mismatch(path, &gitdir);
            let owner = std::fs::metadata(&common)?;
            let admin = Admin {
                gitdir,
                common,
                name,
                uid: owner.uid(),
                gid: owner.gid(),
            };
            (EntryKind::Linked, Some(admin), mismatch)
        }
    };
    let locked = admin
        .as_ref()
        .is_some_and(|a| a.gitdir.join("locked").exists());
    let in_use =
        is_dir && (!processes.users_of(path).is_empty() || flock_held(path).unwrap_or(false));
    Ok(Inspected {
        seen: Seen {
            kind,
            locked,
            in_use,
            same_filesystem: meta.dev() == root_dev,
            foreign_admin: mismatch.is_some(),
        },
        admin,
        mismatch,
        uid: meta.uid(),
    })
}

/// A genuine linked worktree's admin dir names it back (`<gitdir>/gitdir`
/// holds `<worktree>/.git`). One that does not may be a copy, a moved
/// worktree or a forged `.git`: its admin entry belongs to someone else, and
/// treeward does not touch it. One linked by relative paths cannot be moved
/// without breaking the link, so it is not quarantined either.
fn backlink_mismatch(worktree: &Path, gitdir: &Path) -> Option<String> {
    let expected = worktree.join(".git");
    let dotgit = std::fs::read_to_string(&expected).unwrap_or_default();
    if Path::new(dotgit.trim_start_matches("gitdir:").trim()).is_relative() {
        return Some(RELATIVE.to_owned());
    }
    match std::fs::read_to_string(gitdir.join("gitdir")) {
        Ok(text) if Path::new(text.trim_end_matches(['\n', '\r'])) == expected => None,
        Ok(text) if Path::new(text.trim()).is_relative() => Some(RELATIVE.to_owned()),
        Ok(text) => Some(format!(
            "its admin dir {} belongs to {}, not to this path (git worktree repair fixes a moved worktree)",
            gitdir.display(),
            text.trim_end()
        )),
        Err(e) => Some(format!("cannot read {}/gitdir: {e}", gitdir.display())),
    }
}

/// Why a worktree linked to its repository by relative paths is left alone:
/// renaming it into the trash would break the link, and a worktree its
/// repository no longer knows would be assessed as broken.
const RELATIVE: &str = "linked to its repository by relative paths (worktree.useRelativePaths): \
     moving it would break the link, so it is left in place; with that setting off, \
     `git worktree repair` makes the paths absolute";
