//! `treeward install-hook` / `uninstall-hook`: put treeward's `post-checkout`
//! shim (`hooks/post-checkout`, compiled in) into a repository's hooks
//! directory, chaining the hook that was there, and take it out again.
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
//! - These run as the repository's owner (see `as_owner`): root never writes
//!   into a user's repository.
//!
//! Failure mode: every problem is an error naming the path; the state on
//! disk is then one of the states above.

use super::{call_as_owner, common_dir};
use crate::as_owner::{Request, Response, Worker};
use crate::error::Error;
use git2::{ConfigLevel, ErrorCode, Repository, RepositoryOpenFlags};
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

fn open(path: &Path) -> Result<Repository, git2::Error> {
    Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
}

/// The hooks directory of the repository whose common git dir is `common`.
pub fn hooks_dir(common: &Path) -> Result<PathBuf, String> {
    let failed =
        |e: git2::Error| format!("{}: reading its config: {}", common.display(), e.message());
    let repo = open(common).map_err(failed)?;
    let local = repo
        .config()
        .and_then(|c| c.open_level(ConfigLevel::Local))
        .map_err(failed)?;
    match local.get_path("core.hooksPath") {
        Ok(p) if p.is_absolute() => Ok(p),
        Ok(p) => Ok(repo.workdir().unwrap_or(repo.path()).join(p)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(common.join("hooks")),
        Err(e) => Err(failed(e)),
    }
}

/// Reads what the hooks directory of `common` holds. Changes nothing.
pub fn state(common: &Path) -> Result<HookState, String> {
    let dir = hooks_dir(common)?;
    let hook = classify(&dir.join(HOOK))?;
    let chained = exists(&dir.join(CHAINED))?;
    Ok(HookState {
        repository: common.to_path_buf(),
        hooks_dir: dir,
        hook,
        chained,
    })
}

fn exists(path: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn classify(path: &Path) -> Result<Found, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.is_file() {
        return Ok(Found::Other);
    }
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(if is_shim(&bytes) {
        Found::Shim {
            current: bytes == SHIM && meta.permissions().mode() & 0o7777 == SHIM_MODE,
        }
    } else {
        Found::Other
    })
}

/// Installs the shim into the repository whose common git dir is `common`.
pub fn install(common: &Path, dry_run: bool) -> Result<HookOutcome, String> {
    let before = state(common)?;
    let action = plan_install(before.hook, before.chained)
        .map_err(|why| format!("{}: {why}", before.hooks_dir.display()))?;
    if !dry_run && action != HookAction::Nothing {
        apply_install(&before.hooks_dir, action)?;
        log::info!("{}: {action:?}", before.hooks_dir.display());
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
        log::info!("{}: {action:?}", dir.display());
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
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SHIM_MODE)
            .open(&temp)?;
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

/// Installs (or with `remove`, uninstalls) the shim in each repository, as
/// its owner. Every path is checked to be a repository before any is
/// changed; the first failure after that stops the run.
pub fn install_all(
    repos: &[PathBuf],
    remove: bool,
    worker: &Worker,
    dry_run: bool,
) -> Result<Vec<HookOutcome>, Error> {
    let commons = repos
        .iter()
        .map(|r| common_dir(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for repository in commons {
        let request = if remove {
            Request::UninstallHook {
                repository: repository.clone(),
                dry_run,
            }
        } else {
            Request::InstallHook {
                repository: repository.clone(),
                dry_run,
            }
        };
        match call_as_owner(worker, &repository, &request)? {
            Response::Hook { outcome } => out.push(outcome),
            other => return Err(Error::Failed(format!("unexpected reply {other:?}"))),
        }
    }
    Ok(out)
}

/// One line per repository.
pub fn render_human(outcomes: &[HookOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let what = match o.action {
            HookAction::Nothing if o.before.installed() => "already installed",
            HookAction::Nothing => "not installed; nothing to do",
            HookAction::WriteShim => "installed",
            HookAction::UpdateShim => "updated the shim",
            HookAction::ChainThenWriteShim => "installed, chaining the existing hook",
            HookAction::RemoveShim => "removed",
            HookAction::RestoreChained => "removed, the chained hook put back",
        };
        let would = if o.dry_run && o.action != HookAction::Nothing {
            "would be: "
        } else {
            ""
        };
        out.push_str(&format!(
            "{}: {would}{what}\n",
            o.before.hooks_dir.display()
        ));
    }
    out
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
