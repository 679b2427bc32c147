//! What a worktree's admin dir says beyond refs: whether it is locked
//! (`git worktree lock`), and which operation is in progress there. Both
//! are files git writes in the admin dir (the git dir of a main worktree);
//! they are read relative to its descriptor, never through a symlink, never
//! blocking on a FIFO, size-capped. These are not refs, so the ref backend
//! (files or reftable) does not change where they are.

use super::RiskError;
use crate::fd;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

/// The largest `locked` file read.
const MAX_LOCKED: u64 = 4096;

/// The names git gives the state of an operation in progress, and the
/// operation. A directory or a file: any entry at that name counts.
const OPERATIONS: [(&str, &str); 8] = [
    ("MERGE_HEAD", "merge"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("BISECT_START", "bisect"),
    ("BISECT_LOG", "bisect"),
    ("sequencer", "sequencer"),
];

/// The operations in progress in the git dir `admin`, each once, in the
/// order of [`OPERATIONS`].
pub fn in_progress(admin: BorrowedFd<'_>) -> Result<Vec<String>, RiskError> {
    let mut ops: Vec<String> = Vec::new();
    for (name, op) in OPERATIONS {
        let found = fd::stat_at(admin, OsStr::new(name))
            .map_err(|source| RiskError::State { name, source })?;
        if found.is_some() && !ops.iter().any(|o| o == op) {
            ops.push(op.to_owned());
        }
    }
    Ok(ops)
}

/// Whether the git dir `admin`, whose refs are files, has no per-worktree
/// ref: its `refs` is missing or an empty directory. git keeps a worktree's
/// own refs there as loose files only (never packed: `packed-refs` is
/// shared), so an empty `refs` holds none. Anything else there (a file, a
/// subdirectory, even an empty one left by a deleted ref, or something
/// that is not a directory) answers `false`, and git is asked.
pub fn no_own_refs(admin: BorrowedFd<'_>) -> bool {
    match fd::open_dir_at(admin, OsStr::new("refs")) {
        Err(nix::errno::Errno::ENOENT) => true,
        Err(_) => false,
        Ok(refs) => crate::remove::list_names(std::os::fd::AsFd::as_fd(&refs))
            .is_ok_and(|names| names.is_empty()),
    }
}

/// Operations whose state is a root ref that a reftable keeps in the
/// table (no file in the admin dir).
pub const ROOT_REF_OPERATIONS: [(&str, &str); 2] = [
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
];

/// Whether the git dir `admin` keeps its refs in a reftable: its `HEAD`
/// file is git's stub (see [`crate::hook::is_reftable_stub`]).
pub fn refs_in_a_table(admin: BorrowedFd<'_>) -> bool {
    fd::read_at(admin, OsStr::new("HEAD"), 256)
        .ok()
        .flatten()
        .is_some_and(|b| crate::hook::is_reftable_stub(&String::from_utf8_lossy(&b)))
}

/// Whether the worktree is locked, and the reason given (trimmed; `None`
/// when empty). `Ok(None)`: not locked.
pub fn locked(admin: BorrowedFd<'_>) -> Result<Option<Option<String>>, RiskError> {
    match fd::read_at(admin, OsStr::new("locked"), MAX_LOCKED) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => {
            let reason = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            Ok(Some((!reason.is_empty()).then_some(reason)))
        }
        Err(e) => Err(RiskError::Locked(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn only_a_missing_or_empty_refs_dir_holds_no_ref_of_its_own() {
        let admin = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(admin.path()).unwrap();
        let refs = admin.path().join("refs");
        assert!(no_own_refs(fd.as_fd()), "no refs dir");
        std::fs::create_dir(&refs).unwrap();
        assert!(no_own_refs(fd.as_fd()), "as `git worktree add` leaves it");
        std::fs::create_dir(refs.join("bisect")).unwrap();
        assert!(!no_own_refs(fd.as_fd()), "an empty namespace: git is asked");
        std::fs::write(refs.join("bisect/bad"), "0\n").unwrap();
        assert!(!no_own_refs(fd.as_fd()), "a loose ref");
        std::fs::remove_dir_all(&refs).unwrap();
        std::os::unix::fs::symlink("/", &refs).unwrap();
        assert!(!no_own_refs(fd.as_fd()), "a symlink is not followed");
        std::fs::remove_file(&refs).unwrap();
        std::fs::write(&refs, "").unwrap();
        assert!(!no_own_refs(fd.as_fd()), "not a directory");
    }
}
