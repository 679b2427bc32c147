//! The errors a treeward program can end with, and the one place where they
//! become exit statuses.
//!
//! The statuses are a contract (SPEC "Exit status"): 0 done, 1 work at risk
//! (`treeward-check` only), 2 an error, 78 bad configuration (EX_CONFIG from
//! `sysexits.h`, which systemd and service supervisors already understand).

use crate::config::ConfigError;
use crate::ledger::LedgerError;
use std::fmt;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// `treeward-check` found work at risk.
pub const EXIT_AT_RISK: u8 = 1;
/// An error: bad arguments, unreadable state, a failed operation.
pub const EXIT_ERROR: u8 = 2;
/// The configuration cannot be used; nothing was touched.
pub const EXIT_CONFIG: u8 = 78;

/// An error that ends a program.
#[derive(Debug)]
pub enum Error {
    /// The configuration cannot be used (exit 78).
    Config(ConfigError),
    /// The ledger cannot be read or written.
    Ledger(LedgerError),
    /// The command line asked for something that cannot be done.
    Usage(String),
    /// Anything else, already phrased for the user.
    Failed(String),
}

impl Error {
    /// The exit status this error ends the program with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Ledger(_) | Error::Usage(_) | Error::Failed(_) => EXIT_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Ledger(e) => write!(f, "{e}"),
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Error {
        Error::Ledger(e)
    }
}
