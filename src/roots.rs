//! The configured roots and their entries: the direct children whose names a
//! root's patterns own, less treeward's own trash. A root is opened for
//! acting only after it passes [`vet`]: not a symlink, not writable by others
//! unless sticky (like `/tmp`), owned by root or its configured owner.

use crate::config::{Root, RootPathError};
use crate::remove::{open_dir_nofollow, RemoveError};
use crate::trash::TrashError;
use nix::sys::stat::fstat;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The directory inside each root where the sweep quarantines entries. Never
/// an entry itself, whatever the patterns say.
pub const TRASH: &str = ".treeward-trash";

/// Whether `name` is an entry of `root`.
pub fn is_entry(root: &Root, name: &OsStr) -> bool {
    name != OsStr::new(TRASH) && root.owns(name)
}

/// The entries of `root`, sorted by name, for reading (symlinks are listed as
/// themselves). An absent root has no entries.
pub fn entries(root: &Root) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let dir = match std::fs::read_dir(&root.path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in dir {
        let entry = entry?;
        if is_entry(root, &entry.file_name()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A root opened for acting: its descriptor and what `fstat` said of it.
#[derive(Debug)]
pub struct OpenRoot {
    pub fd: OwnedFd,
    pub dev: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Why a root is refused: nothing under it is touched, the other roots are
/// still swept and reaped.
#[derive(Debug)]
#[non_exhaustive]
pub enum RootError {
    /// Its path is not one a root may have (`/usr`, a home directory...).
    NotARoot(RootPathError),
    /// It could not be opened without following a symlink.
    Open(RemoveError),
    /// It could not be `fstat`ed.
    Stat(nix::Error),
    /// Group or others may write it, and it is not sticky.
    Writable {
        /// Its mode.
        mode: u32,
    },
    /// Neither root nor the configured owner owns it.
    Owner {
        /// Its owner.
        uid: u32,
        /// The configured owner, if any.
        configured: Option<u32>,
    },
    /// Its entries could not be listed.
    List(io::Error),
    /// Its trash cannot be used.
    Trash(TrashError),
    /// Its trash is squatted, and only root may clear it.
    TrashSquatted,
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::NotARoot(e) => write!(f, "{e}"),
            RootError::Open(e) => write!(f, "cannot open safely: {e}"),
            RootError::Stat(e) => write!(f, "cannot stat: {e}"),
            RootError::Writable { mode } => write!(
                f,
                "writable by group or others (mode {:o}) without the sticky bit: anyone could plant entries; chmod o-w,g-w or +t",
                mode & 0o7777
            ),
            RootError::Owner {
                uid,
                configured: Some(o),
            } => write!(
                f,
                "owned by uid {uid}, neither root nor the configured owner (uid {o})"
            ),
            RootError::Owner {
                uid,
                configured: None,
            } => write!(
                f,
                "owned by uid {uid}, not root, and the root has no `owner` configured"
            ),
            RootError::List(e) => write!(f, "cannot list: {e}"),
            RootError::Trash(e) => write!(f, "{e}"),
            RootError::TrashSquatted => f.write_str(
                "its trash is squatted and this pass is not root: nothing can be quarantined",
            ),
        }
    }
}

impl std::error::Error for RootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RootError::NotARoot(e) => Some(e),
            RootError::Open(e) => Some(e),
            RootError::Stat(e) => Some(e),
            RootError::List(e) => Some(e),
            RootError::Trash(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TrashError> for RootError {
    fn from(e: TrashError) -> RootError {
        RootError::Trash(e)
    }
}

/// Opens a root without following a symlink anywhere in its path and vets
/// it. `Ok(None)`: the root does not exist (nothing to do). `Err`: refused,
/// with the reason.
pub fn open(root: &Root) -> Result<Option<OpenRoot>, RootError> {
    // Validation refuses these already; repeated here, where a root is
    // opened, so that no `Root` built around validation sweeps one.
    crate::config::check_root(&root.path).map_err(RootError::NotARoot)?;
    if std::fs::symlink_metadata(&root.path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let fd = open_dir_nofollow(&root.path).map_err(RootError::Open)?;
    let st = fstat(fd.as_fd()).map_err(RootError::Stat)?;
    vet(st.st_mode, st.st_uid, root.owner.as_ref().map(|o| o.uid))?;
    Ok(Some(OpenRoot {
        fd,
        dev: st.st_dev,
        uid: st.st_uid,
        gid: st.st_gid,
    }))
}

/// Whether a root with this mode and owner may be acted on.
pub fn vet(mode: u32, uid: u32, configured_owner: Option<u32>) -> Result<(), RootError> {
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(RootError::Writable { mode });
    }
    if uid != 0 && Some(uid) != configured_owner {
        return Err(RootError::Owner {
            uid,
            configured: configured_owner,
        });
    }
    Ok(())
}

/// The entry names of an open root, sorted.
pub fn entry_names(root: &Root, open: &OpenRoot) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = crate::remove::list_names(open.fd.as_fd())?
        .into_iter()
        .filter(|n| is_entry(root, n))
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Root` built without validation (its fields are public) is still
    /// refused where it is opened when it names a system directory.
    #[test]
    fn a_system_directory_is_refused_where_a_root_is_opened() {
        let root = |path: &str| Root {
            path: PathBuf::from(path),
            patterns: vec![glob::Pattern::new("*").unwrap()],
            sweep: true,
            reap: true,
            grace: std::time::Duration::ZERO,
            policy: crate::config::Policy::Discard,
            owner: None,
        };
        for path in ["/", "/usr", "/etc", "/root/.."] {
            let refused = open(&root(path))
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default();
            assert!(!refused.is_empty(), "{path} was opened");
        }
        // Control: an ordinary directory that does not exist is no refusal.
        assert!(matches!(
            open(&root("/srv/treeward-no-such-root")),
            Ok(None)
        ));
    }

    #[test]
    fn vet_table() {
        let cases: [(u32, u32, Option<u32>, bool); 9] = [
            (0o040755, 0, None, true),
            (0o041777, 0, None, true),  // /tmp-like
            (0o040777, 0, None, false), // world-writable, not sticky
            (0o040775, 0, None, false), // group-writable
            (0o040755, 4242, Some(4242), true),
            (0o040755, 4242, None, false),
            (0o040755, 4242, Some(1000), false),
            (0o041777, 4242, Some(4242), true),
            (0o040757, 4242, Some(4242), false),
        ];
        for (mode, uid, owner, ok) in cases {
            assert_eq!(
                vet(mode, uid, owner).is_ok(),
                ok,
                "{mode:o} uid {uid} owner {owner:?}"
            );
        }
    }
}
