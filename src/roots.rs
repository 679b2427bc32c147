//! The configured roots and their entries: the direct children whose names a
//! root's patterns own, less treeward's own trash. A root is opened for
//! acting only after it passes [`vet`]: not a symlink, not writable by others
//! unless sticky (like `/tmp`), owned by root or its configured owner.

use crate::config::Root;
use crate::remove::open_dir_nofollow;
use nix::sys::stat::fstat;
use std::ffi::{OsStr, OsString};
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

/// Opens a root without following a symlink anywhere in its path and vets
/// it. `Ok(None)`: the root does not exist (nothing to do). `Err`: refused,
/// with the reason.
pub fn open(root: &Root) -> Result<Option<OpenRoot>, String> {
    // Validation refuses these already; repeated here, where a root is
    // opened, so that no `Root` built around validation sweeps one.
    crate::config::check_root(&root.path)?;
    if std::fs::symlink_metadata(&root.path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let fd = open_dir_nofollow(&root.path).map_err(|e| format!("cannot open safely: {e}"))?;
    let st = fstat(fd.as_fd()).map_err(|e| format!("cannot stat: {e}"))?;
    vet(st.st_mode, st.st_uid, root.owner.as_ref().map(|o| o.uid))?;
    Ok(Some(OpenRoot {
        fd,
        dev: st.st_dev,
        uid: st.st_uid,
        gid: st.st_gid,
    }))
}

/// Whether a root with this mode and owner may be acted on.
pub fn vet(mode: u32, uid: u32, configured_owner: Option<u32>) -> Result<(), String> {
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "writable by group or others (mode {:o}) without the sticky bit: anyone could plant entries; chmod o-w,g-w or +t",
            mode & 0o7777
        ));
    }
    if uid != 0 && Some(uid) != configured_owner {
        return Err(match configured_owner {
            Some(o) => {
                format!("owned by uid {uid}, neither root nor the configured owner (uid {o})")
            }
            None => format!("owned by uid {uid}, not root, and the root has no `owner` configured"),
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
            let refused = open(&root(path)).err().unwrap_or_default();
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
