//! Crash points for the crash tests: `fault::point("name")` marks a place
//! where a SIGKILL must leave treeward's state recoverable (a rename about
//! to happen, a ledger half-written, a git command between two steps).
//!
//! Compiled in only with the `fault-injection` feature, which only the
//! tests enable (a dev-dependency of the crate on itself); in a build
//! without it `point` is an empty inline function. With the feature, two
//! variables drive it: `TREEWARD_FAULT_LOG=<file>` appends one fixed-width
//! line per point reached, by any treeward process of the run (owner
//! workers inherit both variables), so the line's position numbers the
//! points of the whole run; `TREEWARD_FAULT_AT=<n>` kills the process that
//! reaches point n with SIGKILL, so each point is reached for sure (random
//! delays alone do not reach them).

/// Marks a crash point (see the module doc).
#[inline(always)]
pub fn point(name: &'static str) {
    #[cfg(feature = "fault-injection")]
    imp::point(name);
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

/// The variables a worker inherits so that its points count too.
#[cfg(feature = "fault-injection")]
pub const VARIABLES: &[&str] = &["TREEWARD_FAULT_LOG", "TREEWARD_FAULT_AT"];
#[cfg(not(feature = "fault-injection"))]
pub const VARIABLES: &[&str] = &[];

/// The width of one line of the log: the line's offset numbers the point.
#[cfg(feature = "fault-injection")]
pub const LINE: usize = 64;

#[cfg(feature = "fault-injection")]
mod imp {
    use std::io::{Seek, Write};

    pub fn point(name: &'static str) {
        let Some(log) = std::env::var_os("TREEWARD_FAULT_LOG") else {
            return;
        };
        let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        else {
            return;
        };
        let mut line = format!("{} {name}", std::process::id());
        line.truncate(super::LINE - 1);
        let line = format!("{line:<width$}\n", width = super::LINE - 1);
        // One O_APPEND write is atomic for a line this short: the offset
        // after it numbers this point among every process's.
        if f.write_all(line.as_bytes()).is_err() {
            return;
        }
        let Ok(end) = f.stream_position() else {
            return;
        };
        let n = end / super::LINE as u64;
        let at = std::env::var("TREEWARD_FAULT_AT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if at == Some(n) {
            // SIGKILL, as the OOM killer or `kill -9` would: no unwinding,
            // no destructor, no flush.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}
