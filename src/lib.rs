// Everything the API exposes is documented. The `internals` feature (this
// crate's own tests) re-exports undocumented internals in `testing`, so the
// lint is held on the build without it: `cargo check --lib`, as CI runs it.
#![cfg_attr(not(feature = "internals"), deny(missing_docs))]
//! treeward keeps the git worktrees that automated agents create from
//! piling up, without ever losing the work inside them.
//!
//! The binaries (`treeward-sweep`, `treeward-reap`, `treeward-check`,
//! `treeward-hook`, `treeward`) are thin entries over this crate, and an
//! orchestrator written in Rust calls the same code in-process. This page
//! is that API; everything else is private.
//!
//! | what | how |
//! |---|---|
//! | configuration | [`Config::load`] (the file the binaries read), [`Config::from_toml`], [`Config::builder`]: all validated; there is no other way to make one |
//! | at start-up, as root | [`sweep`]: clears the residue under the sweep roots before agents start |
//! | while agents run | [`Lease`] (a guard: the worktree is in use while it lives), [`register`] (record a worktree made in-process), [`release`] (done with it) |
//! | on a timer | [`reap`]: reclaims released and orphaned worktrees |
//! | before deleting anything yourself | [`check`]: what would be lost |
//! | the owner worker | [`Worker`], [`serve_if_worker`] |
//! | errors | [`Error`] (and its exit status), [`ConfigError`], [`LeaseError`], [`RegisterError`], [`WorkerError`] |
//!
//! Two modules are public without being API, both hidden from these docs:
//! `programs`, the `main` of each shipped binary (a binary is one line that
//! calls it), and `testing`, which exists only when this crate's own tests
//! build it (the `internals` feature).
//!
//! # Trust model
//!
//! Everything under a root, and the ledger, is hostile input: entries may be
//! forged, swapped for symlinks or FIFOs mid-pass, or squatted by another
//! user. A git operation on an entry needs a claim: the one proof that the
//! entry is a linked worktree of the repository it names, and that entry,
//! admin dir and repository belong to one owner on a path no one else can
//! write. It then runs as that owner, in a worker process started from a
//! treeward binary. Files in someone else's directory are read and written
//! only relative to directory descriptors, and deleted only by the one
//! removal engine, which never follows a symlink, never blocks on a FIFO
//! and never crosses a mount. `SECURITY.md` lists each promise with the
//! test that backs it.
//!
//! # The owner worker
//!
//! As root, treeward never runs git as root on another user's repository:
//! it starts a worker, a treeward binary run again as the repository's
//! owner, and sends it the operation. By default the worker is the running
//! program itself ([`Worker::current`], through `/proc/self/exe`), so an
//! embedding program must either call [`serve_if_worker`] first thing in
//! its `main`, or name an installed treeward binary
//! ([`Worker::new`]`("/usr/bin/treeward")`).
//!
//! # Example
//!
//! An orchestrator's life cycle (see also `examples/orchestrator.rs`):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use treeward::{Config, Lease, RootBuilder, SweepOptions, Worker};
//!
//! fn main() -> ExitCode {
//!     // A worker started from this binary serves and exits here.
//!     if let Some(code) = treeward::serve_if_worker() {
//!         return code;
//!     }
//!     let config = Config::builder()
//!         .ledger("/var/lib/orchestrator/treeward.json")
//!         .root(RootBuilder::new("/var/lib/orchestrator/worktrees").owner("agent"))
//!         .build()
//!         .expect("a valid configuration");
//!     // At start-up (as root): clear what crashed agents left.
//!     let report = treeward::sweep(&config, &SweepOptions::new(Worker::current()));
//!     println!("{}", report.summary());
//!
//!     // Per task: the agent's worktree, made by `git worktree add`.
//!     let path = std::path::Path::new("/var/lib/orchestrator/worktrees/task-1");
//!     treeward::register(&config, path).expect("recorded");
//!     let lease = Lease::acquire(&config, path).expect("leased");
//!     // ... the agent works; if this process dies, the reaper takes the
//!     // worktree at its next pass, preserving its work ...
//!     drop(lease);
//!     treeward::release(&config, "/var/lib/orchestrator/worktrees/task-1", &Worker::current(), false)
//!         .expect("released");
//!     ExitCode::SUCCESS
//! }
//! ```

mod admin;
mod admin_dir;
mod args;
mod as_owner;
mod check;
mod claim;
mod cli;
mod config;
mod error;
mod fault;
mod fd;
mod git;
mod hook;
mod in_use;
mod lease;
mod ledger;
mod logging;
mod metrics;
mod pace;
mod pass;
mod preserve;
#[doc(hidden)]
pub mod programs;
mod progress;
mod reap;
mod register;
mod remove;
mod risk;
mod roots;
mod style;
mod sweep;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod testing;
mod trash;

pub use admin::release::{release, Released};
pub use as_owner::{serve_if_worker, AsOwnerError as WorkerError, Worker};
pub use check::{check_paths as check, Checked, Report as CheckReport};
pub use config::{Config, ConfigBuilder, ConfigError, Policy, Root, RootBuilder, Source};
pub use error::{Error, EXIT_AT_RISK, EXIT_CONFIG, EXIT_ERROR, EXIT_OK};
pub use lease::{Lease, LeaseError};
pub use ledger::{Holder, LedgerError, State};
pub use pass::report::Report as SweepReport;
pub use reap::{reap, Options as ReapOptions, Report as ReapReport};
pub use register::{register, RegisterError, Registered};
pub use risk::{Assessment, How, Integration, Kind, Reason};
pub use sweep::{sweep, Options as SweepOptions};
