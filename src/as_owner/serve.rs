//! The operations a worker runs as the repository's owner: the one
//! dispatch of a [`Request`] ([`serve_request`]), each acting only on what
//! verifies again here, as the serving user. Root reaches it only through
//! [`super::transport`]; an owner's own pass (the reaper) calls it
//! in-process.
//!
//! Errors cross the pipe as strings: each operation's typed error becomes
//! the message of a [`Response::Failed`] here, where it is answered (the
//! protocol is a wire format, JSON between two processes).

use super::hooks::{self, HookError, HookOutcome};
use super::preserved;
use super::protocol::{Request, Response};
use super::rebuild;
use super::reclaim;
use crate::admin_dir;
use crate::check;
use crate::claim::{self, Claim, Claimed, Repository, Unclaimed};
use crate::risk::refs::SharedRefs;
use nix::unistd::{Gid, Uid};
use std::path::Path;
use std::time::{Duration, Instant};

/// Serves `requests` in order in this process, answering
/// [`Response::NotStarted`] to those whose turn comes `stop_after` or more
/// after the start. A run of consecutive locks, or of consecutive
/// relocations, is served as one batch whose writes are made durable
/// together ([`admin_dir::lock_all`], [`admin_dir::relocate_all`]): the
/// sweep sends one such run for all its entries while the service waits.
/// A run of consecutive reclaims lists each repository's shared refs once
/// ([`SharedRefs`]); any other request starts a new listing.
pub(super) fn serve_until(requests: &[Request], stop_after: Option<Duration>) -> Vec<Response> {
    let stop = stop_after.map(|d| Instant::now() + d);
    let started = || stop.is_none_or(|stop| Instant::now() < stop);
    let mut out = Vec::with_capacity(requests.len());
    let mut rest = requests;
    let mut shared = SharedRefs::default();
    while let Some(first) = rest.first() {
        if !matches!(first, Request::Reclaim { .. }) {
            shared = SharedRefs::default();
        }
        let Some(kind) = AdminWrite::of(first).map(|w| w.kind()) else {
            out.push(if started() {
                serve_request(first, &shared)
            } else {
                Response::NotStarted
            });
            rest = &rest[1..];
            continue;
        };
        let run: Vec<AdminWrite> = rest
            .iter()
            .map_while(|r| AdminWrite::of(r).filter(|w| w.kind() == kind))
            .collect();
        rest = &rest[run.len()..];
        out.extend(serve_admin_writes(&run, &started));
    }
    out
}

/// A request that writes into an admin dir, served in batches.
enum AdminWrite<'a> {
    Lock(&'a Claimed, &'a Option<String>),
    Relocate(&'a Claimed),
}

impl<'a> AdminWrite<'a> {
    fn of(request: &'a Request) -> Option<AdminWrite<'a>> {
        match request {
            Request::LockWorktree { claimed, reason } => Some(AdminWrite::Lock(claimed, reason)),
            Request::Relocate { claimed } => Some(AdminWrite::Relocate(claimed)),
            _ => None,
        }
    }

    /// Writes of one kind go in one batch.
    fn kind(&self) -> std::mem::Discriminant<AdminWrite<'a>> {
        std::mem::discriminant(self)
    }

    fn claimed(&self) -> &'a Claimed {
        match self {
            AdminWrite::Lock(claimed, _) | AdminWrite::Relocate(claimed) => claimed,
        }
    }
}

/// Serves a run of writes of one kind as one batch, each claim verified
/// again first; those whose turn comes after the stop are not started.
fn serve_admin_writes(run: &[AdminWrite], started: &dyn Fn() -> bool) -> Vec<Response> {
    let mut answers: Vec<Option<Response>> = Vec::with_capacity(run.len());
    let mut verified: Vec<(usize, Claim, &AdminWrite)> = Vec::new();
    for write in run {
        if !started() {
            answers.push(Some(Response::NotStarted));
            continue;
        }
        match write.claimed().verify() {
            Ok(claim) => {
                verified.push((answers.len(), claim, write));
                answers.push(None);
            }
            Err(e) => answers.push(Some(refused(write.claimed(), e))),
        }
    }
    let failed = |e: admin_dir::AdminDirError| Response::Failed {
        message: e.to_string(),
    };
    let served: Vec<Response> = match run.first() {
        Some(AdminWrite::Lock(..)) => {
            let locks: Vec<(&Claim, &Option<String>)> = verified
                .iter()
                .filter_map(|(_, c, w)| match w {
                    AdminWrite::Lock(_, reason) => Some((c, *reason)),
                    AdminWrite::Relocate(_) => None,
                })
                .collect();
            let asked: Vec<(&Claim, &str)> = locks
                .iter()
                .map(|(c, reason)| (*c, reason.as_deref().unwrap_or_default()))
                .collect();
            admin_dir::lock_all(&asked)
                .into_iter()
                .zip(locks)
                .map(|(answer, (_, reason))| match answer {
                    Ok(admin_dir::Lock::Taken) => Response::Locked {
                        newly_locked: true,
                        reason: reason.clone(),
                    },
                    Ok(admin_dir::Lock::Held(held)) => Response::Locked {
                        newly_locked: false,
                        reason: Some(held).filter(|r| !r.is_empty()),
                    },
                    Err(e) => failed(e),
                })
                .collect()
        }
        Some(AdminWrite::Relocate(_)) => {
            let moved: Vec<&Claim> = verified.iter().map(|(_, c, _)| c).collect();
            admin_dir::relocate_all(&moved)
                .into_iter()
                .map(|answer| answer.map_or_else(failed, |()| Response::Relocated))
                .collect()
        }
        None => Vec::new(),
    };
    for ((i, _, _), response) in verified.iter().zip(served) {
        answers[*i] = Some(response);
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or(Response::NotStarted))
        .collect()
}

/// Serves one request in this process: the one dispatch of every
/// operation. A reclaim takes its repository's shared refs from `shared`.
fn serve_request(request: &Request, shared: &SharedRefs) -> Response {
    match request {
        Request::Probe => probe(),
        Request::Assess { path } => Response::Assessed {
            assessment: Box::new(check::assess_verified(path, Uid::effective().as_raw())),
        },
        Request::LockWorktree { .. } | Request::Relocate { .. } => {
            let write = AdminWrite::of(request).into_iter().collect::<Vec<_>>();
            serve_admin_writes(&write, &|| true)
                .pop()
                .unwrap_or(Response::NotStarted)
        }
        Request::UnlockWorktree { claimed } => on_claim(claimed, |c| match admin_dir::unlock(c) {
            Ok(was_locked) => Response::Unlocked { was_locked },
            Err(e) => Response::Failed {
                message: e.to_string(),
            },
        }),
        Request::Reclaim {
            claimed,
            policy,
            dry_run,
        } => on_claim(claimed, |c| Response::Reclaimed {
            reclaimed: reclaim::reclaim(c, *policy, *dry_run, shared),
        }),
        Request::ReclaimBroken {
            entry,
            repository,
            admin,
            name,
            commits,
        } => on_repository(repository, |r| Response::Reclaimed {
            reclaimed: reclaim::reclaim_broken(
                r,
                entry,
                admin.as_deref(),
                name.as_os_str(),
                commits,
            ),
        }),
        Request::Restore {
            repository,
            prefix,
            path,
            dry_run,
        } => on_repository(repository, |r| {
            match rebuild::rebuild(r.common(), prefix, path, *dry_run) {
                Ok(restored) => Response::Restored { restored },
                Err(e) => Response::Failed {
                    message: e.to_string(),
                },
            }
        }),
        Request::PreservedSets { repository } => {
            on_repository(repository, |r| {
                match preserved::sets(r.common(), r.owner().uid) {
                    Ok(sets) => Response::PreservedSets { sets },
                    Err(e) => Response::Failed {
                        message: e.to_string(),
                    },
                }
            })
        }
        Request::DropSet {
            repository,
            set,
            dry_run,
        } => on_repository(repository, |r| {
            match preserved::drop(r.common(), r.owner().uid, set, *dry_run) {
                Ok(refs) => Response::Dropped { refs },
                Err(e) => Response::Failed {
                    message: e.to_string(),
                },
            }
        }),
        Request::InstallHook {
            repository,
            dry_run,
        } => on_repository(repository, |r| {
            hook_response(hooks::install(r.common(), *dry_run))
        }),
        Request::UninstallHook {
            repository,
            dry_run,
        } => on_repository(repository, |r| {
            hook_response(hooks::uninstall(r.common(), *dry_run))
        }),
        Request::HookState { repository } => {
            on_repository(repository, |r| match hooks::state(r.common()) {
                Ok(state) => Response::HookState { state },
                Err(e) => Response::Failed {
                    message: e.to_string(),
                },
            })
        }
    }
}

/// Verifies the repository again where it is served, as belonging to the
/// serving user on a strict path, and acts on it only if that holds.
fn on_repository(common: &Path, act: impl FnOnce(&Repository) -> Response) -> Response {
    match claim::verify_repository(common, Uid::effective().as_raw()) {
        Ok(repository) => act(&repository),
        Err(e) => Response::Failed {
            message: format!("not acted on: {e}"),
        },
    }
}

/// Verifies a claim again where it is served, as its owner, and acts on it
/// only if it still holds.
fn on_claim(claimed: &Claimed, act: impl FnOnce(&Claim) -> Response) -> Response {
    match claimed.verify() {
        Ok(claim) => act(&claim),
        Err(e) => refused(claimed, e),
    }
}

/// The answer to a request whose claim no longer verifies.
fn refused(claimed: &Claimed, e: Unclaimed) -> Response {
    Response::Failed {
        message: match e {
            Unclaimed::NotLinked => format!(
                "{}: not acted on: not a linked worktree",
                claimed.entry().display()
            ),
            e => format!("not acted on: {e}"),
        },
    }
}

fn hook_response(result: Result<HookOutcome, HookError>) -> Response {
    match result {
        Ok(outcome) => Response::Hook { outcome },
        Err(e) => Response::Failed {
            message: e.to_string(),
        },
    }
}

fn probe() -> Response {
    Response::Probe {
        uid: Uid::current().as_raw(),
        gid: Gid::current().as_raw(),
        groups: current_groups().unwrap_or_default(),
        pid: std::process::id(),
    }
}

/// The supplementary groups this process runs with, sorted, without
/// duplicates.
pub(super) fn current_groups() -> nix::Result<Vec<u32>> {
    let mut groups: Vec<u32> = nix::unistd::getgroups()?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_whose_turn_comes_after_the_stop_are_not_started() {
        let probes = [Request::Probe, Request::Probe];
        assert!(serve_until(&probes, None)
            .iter()
            .all(|r| matches!(r, Response::Probe { .. })));
        assert_eq!(
            serve_until(&probes, Some(Duration::ZERO)),
            vec![Response::NotStarted, Response::NotStarted]
        );
        let far = serve_until(&probes, Some(Duration::from_secs(60)));
        assert!(far.iter().all(|r| matches!(r, Response::Probe { .. })));
    }
}
