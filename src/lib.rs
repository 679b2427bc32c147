//! treeward: keeps the git worktrees that automated agents create from piling
//! up, without ever losing the work inside them.
//!
//! The binaries in `src/bin/` are thin entries over this crate, so that an
//! orchestrator written in Rust can call the same code in-process.

pub mod admin;
pub mod admin_dir;
pub mod as_owner;
pub mod check;
pub mod claim;
pub mod cli;
pub mod config;
pub mod drain;
pub mod error;
pub mod fd;
pub mod hook;
pub mod in_use;
pub mod ledger;
pub mod logging;
pub mod preserve;
pub mod reap;
pub mod reclaim;
pub mod remove;
pub mod risk;
pub mod roots;
pub mod sweep;
pub mod trash;
