//! Running git operations as the repository's owner (SPEC invariant 4).
//!
//! Root never writes into a user's repository as root. Every operation that
//! may write there (locking a worktree, and later preserve, admin-dir
//! cleanup, prune, branch delete) is a [`Request`] served by a *worker*: the
//! current program re-executed with the hidden first argument
//! [`WORKER_FLAG`], whose uid, gid and supplementary groups are set to the
//! owner's between `fork` and `exec` (no work is ever done in a forked child
//! without `exec`: the callers are multi-threaded). The worker gets a clean
//! environment (no `GIT_*` variable, a fixed `PATH`, the owner's `HOME` or
//! `/nonexistent`), `/` as its working directory, the requests as one JSON
//! document on stdin, and answers with one JSON document on stdout; its
//! stderr is the parent's, for logs. One child serves a whole batch, so a
//! sweep spawns one child per owner, not one per entry.
//!
//! Before touching anything the worker checks that it really runs as the ids
//! it was sent (real, effective and saved uid and gid, and the group list),
//! that it is not root, that it holds no capability and cannot get root back
//! (`setuid(0)` fails, `no_new_privs` is set). Any mismatch, a malformed
//! request or extra arguments: it refuses, says why on stderr and in its
//! reply, exits 2 and does nothing. It never runs as root: when the owner is
//! root itself there is no boundary to cross and [`Worker::call_batch`] serves
//! the requests in-process; an unprivileged caller serves its own uid
//! in-process too and cannot act for anyone else ([`AsOwnerError::CannotSwitch`]).
//!
//! Groups: a file's group says nothing about who belongs to it, so for a uid
//! with an account the worker gets the account's primary group and
//! `getgrouplist` (the repository's group is ignored); only a uid without an
//! account gets the repository's group, alone, and never group 0.
//!
//! A call may carry a stop time ([`Worker::with_stop_after`]): requests
//! whose turn comes after it are not started and answered
//! [`Response::NotStarted`], so that a drain with a time budget can hand a
//! worker a whole chunk and still end on time, without killing a worker
//! in the middle of an operation (which [`Worker::timeout`] remains for).
//!
//! The reply is untrusted input: the worker runs as the owner, who may be
//! able to trace it. It is size-capped, parsed strictly, and must hold one
//! response per request. The child is killed (SIGKILL) when the parent's
//! calling thread dies (`PR_SET_PDEATHSIG`) and when the call's timeout
//! passes ([`AsOwnerError::TimedOut`]); a response that cannot be produced
//! is a [`Response::Failed`] for that request alone.
//!
//! Where it lives: everything in this directory runs, or speaks, across the
//! privilege boundary.
//! - [`protocol`]: what crosses it, [`Request`] and [`Response`], and how a
//!   path is written on the wire.
//! - [`transport`]: the caller's side (whose ids, spawning the worker with
//!   them, deadlines, reading the reply: [`Worker`]) and the worker's entry
//!   with its self-checks ([`serve_if_worker`]).
//! - [`serve`]: the one dispatch of a request, as the owner
//!   ([`serve_request`]), and the operations it runs: [`reclaim`],
//!   [`rebuild`] (restore's git side), [`hooks`] (the `post-checkout` shim)
//!   and [`preserved`] (reading and dropping preserved sets). The admin
//!   commands and the passes only build requests and read answers.

pub mod hooks;
pub mod preserved;
pub mod protocol;
pub mod rebuild;
pub mod reclaim;
pub mod serve;
pub mod transport;

pub use protocol::{wire_path, wire_path_opt, Request, Response};
pub use transport::{
    owner_of, route, serve_if_worker, AsOwnerError, Identity, Owner, Route, Worker,
};
