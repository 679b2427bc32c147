//! Uncommitted changes of a worktree, counted the way `git status
//! --untracked-files=all` shows them, without refreshing or writing the index
//! (the checker is strictly read-only).

use super::verdict::Changes;
use git2::{Repository, Status, StatusOptions};

const STAGED: Status = Status::INDEX_NEW
    .union(Status::INDEX_MODIFIED)
    .union(Status::INDEX_DELETED)
    .union(Status::INDEX_RENAMED)
    .union(Status::INDEX_TYPECHANGE);
const MODIFIED: Status = Status::WT_MODIFIED
    .union(Status::WT_TYPECHANGE)
    .union(Status::WT_RENAMED);

/// Counts staged, modified, deleted, untracked (not ignored) and conflicted
/// paths. A path can count twice (staged and then modified again).
pub fn count(repo: &Repository) -> Result<Changes, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .renames_head_to_index(false)
        .renames_index_to_workdir(false)
        .update_index(false);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut c = Changes::default();
    for entry in statuses.iter() {
        tally(&mut c, entry.status());
    }
    Ok(c)
}

fn tally(c: &mut Changes, s: Status) {
    if s.contains(Status::CONFLICTED) {
        c.conflicted += 1;
        return;
    }
    c.staged += usize::from(s.intersects(STAGED));
    c.modified += usize::from(s.intersects(MODIFIED));
    c.deleted += usize::from(s.contains(Status::WT_DELETED));
    c.untracked += usize::from(s.contains(Status::WT_NEW));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_each_side_once() {
        let mut c = Changes::default();
        tally(&mut c, Status::INDEX_MODIFIED | Status::WT_MODIFIED);
        tally(&mut c, Status::WT_NEW);
        tally(&mut c, Status::WT_DELETED);
        tally(&mut c, Status::CONFLICTED | Status::WT_MODIFIED);
        tally(&mut c, Status::IGNORED);
        assert_eq!(
            c,
            Changes {
                staged: 1,
                modified: 1,
                deleted: 1,
                untracked: 1,
                conflicted: 1
            }
        );
    }
}
