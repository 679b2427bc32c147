//! The entries of the configured roots: the direct children whose names a
//! root's patterns own. Read-only listing; acting on an entry is the job of
//! the code that opens it safely.

use crate::config::Root;
use std::io;
use std::path::PathBuf;

/// The entries of `root`, sorted by name. Symlinks are listed as themselves.
pub fn entries(root: &Root) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root.path)? {
        let entry = entry?;
        if root.owns(&entry.file_name()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}
