//! The integration tests, one test binary: one module per capability
//! (`sweep`, `reap`, `attacks`, ...), all sharing one copy of the fixtures
//! in `tests/common/`. Run one module with a name filter, e.g.
//! `cargo test --test suite differential::`.
//!
//! Two files keep a process of their own, because what they check is
//! process-wide: `tests/shapes.rs` reads the peak RSS of the process's
//! children (`getrusage(RUSAGE_CHILDREN)`), which any other test's child
//! would raise, and `tests/ledger_recovery_log.rs` installs the process's
//! one `log` logger.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod as_owner;
mod attacks;
mod budget;
mod check;
mod crash;
mod deb;
mod differential;
mod e2e_systemd;
mod formats;
mod fuzz;
mod generated;
mod hook;
mod lease;
mod metrics;
mod preserve;
mod reap;
mod restore;
mod risk;
mod storm;
mod sweep;
mod sweep_race;
mod trash_squat;
mod units;
