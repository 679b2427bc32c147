//! The ledger: the JSON state file every treeward binary shares (SPEC
//! invariant 5), in two halves: the record model ([`record`]: what a known
//! worktree is, in which state) and its store ([`store`]: reading, writing,
//! locking and the append-only journal of changes).

mod journal;
mod record;
mod store;

pub use journal::Change;
pub use record::{format_timestamp, now, parse_timestamp, Document, Holder, Record, State};
pub use store::{Ledger, LedgerError};
