//! Is an entry in use? STUB: contract only.

use std::path::{Path, PathBuf};

/// How a process uses a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Cwd,
    Root,
    OpenFile,
}

/// One process with a foot inside some directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessUse {
    pub pid: u32,
    pub comm: String,
    pub how: Use,
    pub path: PathBuf,
}

/// A snapshot of what every readable process has open.
#[derive(Debug, Default)]
pub struct ProcessTable;

impl ProcessTable {
    /// Reads `/proc` once.
    pub fn scan() -> ProcessTable {
        todo!()
    }
    /// The processes whose cwd, root or open files lie at or below `dir`.
    pub fn users_of(&self, _dir: &Path) -> Vec<&ProcessUse> {
        todo!()
    }
    /// Processes whose links could not be read (permission): unknown, not "not in use".
    pub fn unreadable(&self) -> u32 {
        todo!()
    }
}

/// Whether some process holds a BSD `flock` on the directory.
pub fn flock_held(_dir: &Path) -> std::io::Result<bool> {
    todo!()
}

/// Whether a process with this pid exists.
pub fn pid_alive(_pid: u32) -> bool {
    todo!()
}
