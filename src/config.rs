//! Configuration: raw TOML (what the operator typed) turned into a validated
//! [`Config`] (what the programs will do). STUB: contract only.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No file: the embedded defaults.
    Embedded,
    /// This file.
    File(PathBuf),
}

/// What to do with work at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Preserve,
    Keep,
    Discard,
}

/// A validated root.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
    pub patterns: Vec<glob::Pattern>,
    pub sweep: bool,
    pub reap: bool,
    pub grace: Duration,
    pub policy: Policy,
    /// The configured owner, resolved to a uid/gid.
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Root {
    /// Whether an entry with this file name belongs to this root.
    pub fn owns(&self, _name: &std::ffi::OsStr) -> bool {
        todo!()
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub ledger: PathBuf,
    pub backlog_warn: u64,
    pub hook_record_anywhere: bool,
    pub roots: Vec<Root>,
}

/// A configuration that cannot be used; names the file, line and key.
#[derive(Debug)]
pub struct ConfigError;

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the configuration: `explicit` (from `--config`), else
    /// `TREEWARD_CONFIG`, else `/etc/treeward/config.toml` if it exists,
    /// else the embedded defaults.
    pub fn load(_explicit: Option<&Path>) -> Result<Config, ConfigError> {
        todo!()
    }

    /// The root and entry name that `path` is a direct child of, if any.
    /// Purely lexical: `path` must be absolute and normalised by the caller.
    pub fn entry_of(&self, _path: &Path) -> Option<(&Root, std::ffi::OsString)> {
        todo!()
    }
}
