//! The `post-checkout` shim, as the repository's owner: put treeward's shim
//! (`hooks/post-checkout`, compiled in) into a repository's hooks directory,
//! chaining the hook that was there, and take it out again (`treeward
//! install-hook` / `uninstall-hook`, see [`crate::admin::hooks`]).
//!
//! Contract:
//! - The hooks directory is `core.hooksPath` from the repository's own
//!   config (relative: against the main worktree's top, or the git dir of a
//!   bare repository, as git resolves it), else `<common dir>/hooks`.
//! - Install: an existing `post-checkout` (file or symlink, whatever it is) is
//!   renamed to `post-checkout.treeward-chained`, which the shim execs after
//!   `treeward-hook`; then the shim is written (temp file, mode 0755, fsync,
//!   rename). Our shim is recognised by [`SHIM_MARKER`]: installing again
//!   changes nothing (an older shim is replaced, the chain kept).
//! - Uninstall: the chained hook is renamed back (same inode: same bytes,
//!   mode, owner, or the same symlink), or the shim is removed when nothing
//!   was chained. A `post-checkout` that is not ours is never touched.
//! - A chained hook without a shim in front of it is an interrupted install
//!   or uninstall: install finishes the install, uninstall the uninstall.
//! - These run as the repository's owner (see `as_owner`), once the
//!   repository is verified as that one user's on a strict path (see
//!   `claim`): root never writes into a user's repository, nor acts on one
//!   that others could have changed.
//! - The hooks directory must stay inside the repository: a `core.hooksPath`
//!   that leads outside it (absolute, through `..`, or through a symlink) is
//!   refused, and nothing is written.
//!
//! Failure mode: every problem is an error naming the path; the state on
//! disk is then one of the states above.

use crate::claim;
use crate::fd::{self, ReadError};
use crate::git::Git;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The shim's bytes, as shipped in `hooks/post-checkout`.
pub const SHIM: &[u8] = include_bytes!("../../hooks/post-checkout");
/// The line that marks a `post-checkout` as treeward's shim.
pub const SHIM_MARKER: &str = "# treeward-shim: post-checkout";
/// The hook's file name.
pub const HOOK: &str = "post-checkout";
/// Where the hook that was there before lives while the shim is installed.
pub const CHAINED: &str = "post-checkout.treeward-chained";
const SHIM_MODE: u32 = 0o755;

/// Whether these bytes are a treeward shim (any version).
pub fn is_shim(bytes: &[u8]) -> bool {
    bytes
        .split(|b| *b == b'\n')
        .any(|line| line.trim_ascii() == SHIM_MARKER.as_bytes())
}

/// What sits at `<hooks>/post-checkout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    Absent,
    /// Our shim; `current` when its bytes are this build's.
    Shim {
        current: bool,
    },
    /// Someone else's hook (a file, a symlink, anything).
    Other,
}

/// What a hooks directory holds, as far as treeward is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookState {
    /// The common git dir.
    pub repository: PathBuf,
    pub hooks_dir: PathBuf,
    pub hook: Found,
    /// `post-checkout.treeward-chained` exists.
    pub chained: bool,
}

impl HookState {
    /// The shim is in place.
    pub fn installed(&self) -> bool {
        matches!(self.hook, Found::Shim { .. })
    }
}

/// What install or uninstall does (or did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// Nothing to do: already in the asked state.
    Nothing,
    /// Wrote the shim where there was no hook.
    WriteShim,
    /// Replaced an older shim by this build's.
    UpdateShim,
    /// Renamed the existing hook to the chained name, then wrote the shim.
    ChainThenWriteShim,
    /// Removed the shim (nothing was chained).
    RemoveShim,
    /// Renamed the chained hook back over the shim.
    RestoreChained,
}

/// The result of one install or uninstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutcome {
    pub before: HookState,
    pub action: HookAction,
    pub dry_run: bool,
}

/// Pure: what installing does in this state.
pub fn plan_install(hook: Found, chained: bool) -> Result<HookAction, String> {
    match (hook, chained) {
        (Found::Shim { current: true }, _) => Ok(HookAction::Nothing),
        (Found::Shim { current: false }, _) => Ok(HookAction::UpdateShim),
        // A chained hook without a shim: an install was interrupted.
        (Found::Absent, _) => Ok(HookAction::WriteShim),
        (Found::Other, false) => Ok(HookAction::ChainThenWriteShim),
        (Found::Other, true) => Err(format!(
            "both {HOOK} (not treeward's) and {CHAINED} exist: chaining would overwrite one; \
             merge them by hand first"
        )),
    }
}

/// Pure: what uninstalling does in this state.
pub fn plan_uninstall(hook: Found, chained: bool) -> HookAction {
    match (hook, chained) {
        (Found::Shim { .. }, true) | (Found::Absent, true) => HookAction::RestoreChained,
        (Found::Shim { .. }, false) => HookAction::RemoveShim,
        (Found::Other, _) | (Found::Absent, false) => HookAction::Nothing,
    }
}

/// The repository's own (`--local`) value of `key`, read by git as the
/// repository's owner (this process: hooks are handled as the owner, see
/// `as_owner`) with `--type=<ty>`; `None` when unset.
fn local_config(common: &Path, key: &str, ty: &str) -> Result<Option<String>, String> {
    let owner = fs::metadata(common)
        .map_err(|e| format!("{}: {e}", common.display()))?
        .uid();
    let done = Git::new(common, owner)
        .map_err(|e| e.to_string())?
        .git_dir(common, None)
        .args(["config", "--local", "--get"])
        .arg(format!("--type={ty}"))
        .arg(key)
        .run()
        .map_err(|e| e.to_string())?;
    match done.code {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&done.stdout)
                .trim_end_matches('\n')
                .to_owned(),
        )),
        Some(1) => Ok(None),
        _ => Err(format!(
            "{}: reading its config ({key}): {}",
            common.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        )),
    }
}

/// The hooks directory of the repository whose common git dir is `common`
/// (absolute, normal), which must stay inside the repository ([`inside`]).
pub fn hooks_dir(common: &Path) -> Result<PathBuf, String> {
    let bare = local_config(common, "core.bare", "bool")?.as_deref() == Some("true");
    // The main worktree that holds the common dir as its `.git`: never where
    // the config says the worktree is (`core.worktree` is the config's word,
    // not the filesystem's).
    let holder = common
        .parent()
        .filter(|_| !bare && common.file_name() == Some(OsStr::new(".git")));
    let dir = match local_config(common, "core.hooksPath", "path")? {
        // Relative: against the main worktree's top, or a bare repository's
        // git dir, as git resolves it; `..` folded as the kernel would not
        // (a symlink on the way is refused below, so the two agree).
        Some(p) => claim::normalize(&holder.unwrap_or(common).join(p)),
        None => common.join("hooks"),
    };
    // Inside means under the common dir, or under the main worktree.
    let bases: Vec<&Path> = holder.into_iter().chain([common]).collect();
    inside(&dir, &bases)?;
    Ok(dir)
}

/// Pure: the one of `bases` that `dir` lies under, lexically (component by
/// component); `None` when it leads outside them all.
pub fn base_of<'b>(dir: &Path, bases: &[&'b Path]) -> Option<&'b Path> {
    bases.iter().copied().find(|b| dir.starts_with(b))
}

/// Checks that the hooks directory `dir` stays inside the repository: under
/// its main worktree's top or its common dir (`bases`), and every part of it
/// that exists reached from there without following a symlink (what is
/// missing is created later, as the owner). Git follows `core.hooksPath`
/// anywhere; treeward, asked to install into one repository, never writes
/// outside it (a repository's config must not steer a write, as root least
/// of all, into `/etc/cron.d`).
fn inside(dir: &Path, bases: &[&Path]) -> Result<(), String> {
    let Some(base) = base_of(dir, bases) else {
        let names: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
        return Err(format!(
            "core.hooksPath leads to {}, outside the repository ({}): treeward installs its \
             hook only inside the repository it is given",
            dir.display(),
            names.join(" or ")
        ));
    };
    let mut at = base.to_path_buf();
    let mut fd = fd::open_path(base).map_err(|e| {
        format!(
            "{}: cannot be opened without following a link: {e}",
            base.display()
        )
    })?;
    for name in dir.strip_prefix(base).unwrap_or(Path::new("")).iter() {
        at.push(name);
        fd = match fd::open_path_at(fd.as_fd(), name) {
            Ok(next) => next,
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "{}: not a directory reached without following a link ({e}): the hooks \
                     directory must be inside the repository",
                    at.display()
                ))
            }
        };
    }
    Ok(())
}

/// Reads what the hooks directory of `common` holds. Changes nothing, and
/// reads nothing by path: a FIFO or a symlink as the hook is someone
/// else's hook, never opened.
pub fn state(common: &Path) -> Result<HookState, String> {
    let dir = hooks_dir(common)?;
    let (hook, chained) = match fd::open_path(&dir) {
        Ok(fd) => (classify(&fd, &dir)?, exists(&fd, &dir, CHAINED)?),
        Err(nix::errno::Errno::ENOENT) => (Found::Absent, false),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    Ok(HookState {
        repository: common.to_path_buf(),
        hooks_dir: dir,
        hook,
        chained,
    })
}

/// The largest hook read to see whether it is the shim.
const MAX_HOOK: u64 = 1 << 20;

fn exists(dir: &OwnedFd, dir_path: &Path, name: &str) -> Result<bool, String> {
    fd::stat_at(dir.as_fd(), OsStr::new(name))
        .map(|st| st.is_some())
        .map_err(|e| format!("{}: {e}", dir_path.join(name).display()))
}

fn classify(dir: &OwnedFd, dir_path: &Path) -> Result<Found, String> {
    let failed = |e: String| format!("{}: {e}", dir_path.join(HOOK).display());
    let Some(st) = fd::stat_at(dir.as_fd(), OsStr::new(HOOK)).map_err(|e| failed(e.to_string()))?
    else {
        return Ok(Found::Absent);
    };
    match fd::read_at(dir.as_fd(), OsStr::new(HOOK), MAX_HOOK) {
        Ok(None) => Ok(Found::Absent),
        Ok(Some(bytes)) if is_shim(&bytes) => Ok(Found::Shim {
            current: bytes == SHIM && st.st_mode & 0o7777 == SHIM_MODE,
        }),
        Ok(Some(_)) | Err(ReadError::NotRegular(_) | ReadError::TooLarge { .. }) => {
            Ok(Found::Other)
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Installs the shim into the repository whose common git dir is `common`.
pub fn install(common: &Path, dry_run: bool) -> Result<HookOutcome, String> {
    let before = state(common)?;
    let action = plan_install(before.hook, before.chained)
        .map_err(|why| format!("{}: {why}", before.hooks_dir.display()))?;
    if !dry_run && action != HookAction::Nothing {
        apply_install(&before.hooks_dir, action)?;
        log::info!(
            "{}: {}",
            before.hooks_dir.display(),
            action.words(before.installed())
        );
    }
    Ok(HookOutcome {
        before,
        action,
        dry_run,
    })
}

/// Uninstalls the shim from the repository whose common git dir is `common`.
pub fn uninstall(common: &Path, dry_run: bool) -> Result<HookOutcome, String> {
    let before = state(common)?;
    let action = plan_uninstall(before.hook, before.chained);
    if !dry_run && action != HookAction::Nothing {
        let dir = &before.hooks_dir;
        match action {
            HookAction::RestoreChained => rename(&dir.join(CHAINED), &dir.join(HOOK), false)?,
            _ => fs::remove_file(dir.join(HOOK))
                .map_err(|e| format!("{}: removing the shim: {e}", dir.join(HOOK).display()))?,
        }
        log::info!("{}: {}", dir.display(), action.words(true));
    }
    Ok(HookOutcome {
        before,
        action,
        dry_run,
    })
}

fn apply_install(dir: &Path, action: HookAction) -> Result<(), String> {
    create_dir(dir)?;
    let temp = write_temp_shim(dir)?;
    let hook = dir.join(HOOK);
    let result = (|| {
        if action == HookAction::ChainThenWriteShim {
            rename(&hook, &dir.join(CHAINED), true)?;
        }
        rename(&temp, &hook, false)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

/// Creates the hooks directory (and its parents) if missing, mode 0755.
fn create_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("{}: creating the hooks directory: {e}", dir.display()))
}

/// Writes the shim to a new temp file in `dir` (mode 0755 whatever the
/// umask, fsynced) and returns its path.
fn write_temp_shim(dir: &Path) -> Result<PathBuf, String> {
    let temp = dir.join(format!(".{HOOK}.treeward-tmp.{}", std::process::id()));
    let _ = fs::remove_file(&temp); // ours from an earlier crash of this pid
    let write = || -> io::Result<()> {
        let mut f = fd::open_file(
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(SHIM_MODE),
            &temp,
        )?;
        f.set_permissions(fs::Permissions::from_mode(SHIM_MODE))?;
        f.write_all(SHIM)?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("{}: writing the shim: {e}", temp.display())
    })?;
    Ok(temp)
}

fn rename(from: &Path, to: &Path, no_replace: bool) -> Result<(), String> {
    let flags = if no_replace {
        RenameFlags::RENAME_NOREPLACE
    } else {
        RenameFlags::empty()
    };
    renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)
        .map_err(|e| format!("renaming {} to {}: {e}", from.display(), to.display()))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: syncing the directory: {e}", dir.display()))
}

impl HookAction {
    /// What was done, in words (`installed`: whether the shim was there
    /// before, for `Nothing`).
    pub fn words(self, installed: bool) -> &'static str {
        match self {
            HookAction::Nothing if installed => "already installed",
            HookAction::Nothing => "not installed; nothing to do",
            HookAction::WriteShim => "installed",
            HookAction::UpdateShim => "updated the shim",
            HookAction::ChainThenWriteShim => "installed, chaining the existing hook",
            HookAction::RemoveShim => "removed",
            HookAction::RestoreChained => "removed, the chained hook put back",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_shim_carries_the_marker() {
        assert!(is_shim(SHIM));
        assert!(!is_shim(
            b"#!/bin/sh\n# treeward-shim: post-checkout, sort of\n"
        ));
    }

    #[test]
    fn a_hooks_directory_must_lie_under_the_repository() {
        let (top, common) = (Path::new("/srv/r"), Path::new("/srv/r/.git"));
        let bases = [top, common];
        let under = |p: &str| base_of(&claim::normalize(&top.join(p)), &bases);
        assert_eq!(under(".githooks"), Some(top));
        assert_eq!(under(".git/hooks"), Some(top));
        assert_eq!(under("a/../.githooks"), Some(top));
        assert_eq!(under("../elsewhere"), None);
        assert_eq!(under("/etc/cron.d"), None);
        assert_eq!(
            under("/srv/r-other/hooks"),
            None,
            "a shared prefix is not inside"
        );
        // A bare repository, or a separate git dir: its own directory.
        let bare = [Path::new("/srv/bare.git")];
        assert!(base_of(Path::new("/srv/bare.git/hooks"), &bare).is_some());
        assert!(base_of(Path::new("/srv/hooks"), &bare).is_none());
    }

    #[test]
    fn install_table() {
        use Found::*;
        use HookAction::*;
        let cases = [
            (Absent, false, Ok(WriteShim)),
            (Absent, true, Ok(WriteShim)),
            (Shim { current: true }, false, Ok(Nothing)),
            (Shim { current: true }, true, Ok(Nothing)),
            (Shim { current: false }, true, Ok(UpdateShim)),
            (Other, false, Ok(ChainThenWriteShim)),
        ];
        for (hook, chained, want) in cases {
            assert_eq!(plan_install(hook, chained), want, "{hook:?} {chained}");
        }
        assert!(plan_install(Other, true).is_err());
    }

    #[test]
    fn uninstall_table() {
        use Found::*;
        use HookAction::*;
        let cases = [
            (Absent, false, Nothing),
            (Absent, true, RestoreChained),
            (Shim { current: false }, false, RemoveShim),
            (Shim { current: true }, true, RestoreChained),
            (Other, false, Nothing),
            (Other, true, Nothing),
        ];
        for (hook, chained, want) in cases {
            assert_eq!(plan_uninstall(hook, chained), want, "{hook:?} {chained}");
        }
    }
}
