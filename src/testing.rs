//! The internals this crate's own tests and benchmarks use, under the
//! names of the modules they live in (`treeward::testing::ledger::Ledger`).
//!
//! The modules are private so that the API is the curated list in
//! `lib.rs`; the tests still need to forge a ledger, count crash points or
//! call a worker directly. This module exists only with the `internals`
//! feature, which the crate's dev-dependency on itself turns on: it is in
//! no release build and is no part of the API.

#![allow(missing_docs)]

pub mod args {
    pub use crate::args::commands;
}

pub mod as_owner {
    pub use crate::as_owner::transport::{DEFAULT_TIMEOUT, WORKER_FLAG};
    pub use crate::as_owner::{AsOwnerError, Owner, Request, Response, Worker};
    pub mod hooks {
        pub use crate::as_owner::hooks::{is_shim, SHIM};
    }
    pub mod rebuild {
        pub use crate::as_owner::rebuild::rebuild;
    }
}

pub mod claim {
    pub use crate::claim::{verify, Claimed, Expect};
}

pub mod config {
    pub use crate::config::validate::{DEFAULT_BACKLOG_WARN, DEFAULT_LEDGER};
    pub use crate::config::{Config, Source, SystemUsers, DEFAULT_PATH};
}

pub mod fault {
    pub use crate::fault::LINE;
}

pub mod git {
    pub mod branch {
        pub use crate::git::branch::{delete_branch_if_integrated, BranchFate};
    }
}

pub mod hook {
    pub use crate::hook::parse_args;
}

pub mod in_use {
    pub use crate::in_use::{flock_held, parse_stat, pid_alive};
}

pub mod ledger {
    pub use crate::ledger::{format_timestamp, parse_timestamp, Change, Ledger, Record, State};
}

pub mod pass {
    pub mod report {
        pub use crate::pass::report::CONTRACT_FIELDS;
    }
}

pub mod preserve {
    pub use crate::preserve::{preserve, preserve_at, PreserveError};
}

pub mod risk {
    pub use crate::risk::{assess, How, Integration, Kind, Reason};
}

pub mod sweep {
    pub use crate::sweep::{sweep, Options};
}
