//! `treeward`: the admin command — list the ledger, release a worktree,
//! hold a lease on one while a command runs, restore preserved work,
//! install or uninstall the hook, doctor.
//!
//! Exit status: 0 done, 1 `doctor` found problems, 2 an error or bad input
//! (nothing changed), 78 bad configuration (nothing touched). `lease`
//! exits with its command's status instead (see [`crate::lease::run`]).

use super::{setup, Setup};
use crate::admin::{doctor, hooks, list, preserved, release, restore};
use crate::args::{Admin as Args, AdminCommand as Command, HookRepos, LeaseArgs};
use crate::config::Config;
use crate::error::{Error, EXIT_AT_RISK, EXIT_ERROR, EXIT_OK};
use crate::ledger::Ledger;
use std::path::PathBuf;

/// Runs `treeward lease`: the lease is taken, CMD run, the lease ended.
fn lease(args: LeaseArgs) -> Result<u8, Error> {
    let config = Config::load(args.config.as_deref())?;
    crate::lease::run(&config, &args.path, &args.command)
}

pub(super) fn run(args: Args) -> Result<u8, Error> {
    match args.command {
        Command::List { common, preserved } => {
            let Setup { config, worker } = setup(&common)?;
            let (doc, error) = match Ledger::new(config.ledger()).read() {
                Ok(doc) => (doc, None),
                Err(e) => (Default::default(), Some(e.to_string())),
            };
            if let Some(e) = &error {
                log::warn!(
                    "ledger {} not read: {e}; listing what is on disk",
                    config.ledger().display()
                );
            }
            let failed = error.is_some();
            if preserved {
                let listing = preserved::list(&config, &doc, &worker);
                for e in &listing.errors {
                    log::warn!("{e}");
                }
                common.print(&listing, || preserved::render_human(&listing))?;
                return Ok(if failed || !listing.errors.is_empty() {
                    EXIT_ERROR
                } else {
                    EXIT_OK
                });
            }
            let listing = list::list(&config, &doc, error);
            common.print(&listing, || list::render_human(&listing))?;
            Ok(if failed { EXIT_ERROR } else { EXIT_OK })
        }
        Command::Drop {
            common,
            dry_run,
            repo,
            target,
        } => {
            let Setup { config, worker } = setup(&common)?;
            let d = preserved::drop_set(&config, &target, repo.as_deref(), &worker, dry_run)?;
            common.print(&d, || preserved::render_dropped(&d))?;
            Ok(EXIT_OK)
        }
        Command::Release {
            common,
            dry_run,
            target,
        } => {
            let Setup { config, worker } = setup(&common)?;
            let r = release::release(&config, &target, &worker, dry_run)?;
            common.print(&r, || release::render_human(&r))?;
            Ok(EXIT_OK)
        }
        Command::Restore {
            common,
            dry_run,
            path,
            repo,
            target,
        } => {
            let Setup { config, worker } = setup(&common)?;
            let o = restore::restore(
                &config,
                &target,
                path.as_deref(),
                repo.as_deref(),
                &worker,
                dry_run,
            )?;
            common.print(&o, || restore::render_human(&o))?;
            Ok(EXIT_OK)
        }
        Command::Lease(a) => lease(a),
        Command::InstallHook(a) => hook(&a, false),
        Command::UninstallHook(a) => hook(&a, true),
        Command::Doctor { common, unit_dir } => {
            let Setup { config, worker } = setup(&common)?;
            let dirs = if unit_dir.is_empty() {
                doctor::UNIT_DIRS.iter().map(PathBuf::from).collect()
            } else {
                unit_dir
            };
            let d = doctor::doctor(&config, &dirs, &worker);
            common.print(&d, || doctor::render_human(&d))?;
            Ok(if d.problems > 0 {
                EXIT_AT_RISK
            } else {
                EXIT_OK
            })
        }
    }
}

fn hook(args: &HookRepos, remove: bool) -> Result<u8, Error> {
    let Setup { worker, .. } = setup(&args.common)?;
    let outcomes = hooks::install_all(&args.repos, remove, &worker, args.dry_run)?;
    args.common
        .print(&outcomes, || hooks::render_human(&outcomes))?;
    Ok(EXIT_OK)
}
