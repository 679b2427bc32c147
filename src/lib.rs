//! treeward: keeps the git worktrees that automated agents create from piling
//! up, without ever losing the work inside them.
//!
//! The binaries in `src/bin/` are thin entries over this crate, so that an
//! orchestrator written in Rust can call the same code in-process.
//!
//! # Trust model
//!
//! Everything under a root, and the ledger, is hostile input: entries may be
//! forged, swapped for symlinks or FIFOs mid-pass, or squatted by another
//! user. A git operation on an entry needs a [`claim::Claim`], the one proof
//! that the entry is a linked worktree of the repository it names and that
//! entry, admin dir and repository belong to one owner on a path no one else
//! can write; it then runs as that owner ([`as_owner`]). Files in someone
//! else's directory are read and written only relative to directory
//! descriptors ([`fd`]), and deleted only by [`remove`]. `SECURITY.md` lists
//! each promise with the test that backs it.

pub mod admin;
pub mod admin_dir;
pub mod args;
pub mod as_owner;
pub mod check;
pub mod claim;
pub mod cli;
pub mod config;
pub mod error;
pub mod fault;
pub mod fd;
pub mod git;
pub mod hook;
pub mod in_use;
pub mod lease;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod pace;
pub mod pass;
pub mod preserve;
pub mod progress;
pub mod reap;
pub mod reclaim;
pub mod register;
pub mod remove;
pub mod risk;
pub mod roots;
pub mod style;
pub mod sweep;
pub mod trash;

pub use config::{Config, ConfigBuilder, ConfigError, Policy, RootBuilder};
pub use register::{register, RegisterError, Registered};
