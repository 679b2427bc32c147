//! `treeward`: the admin command — list the ledger, release a worktree,
//! hold a lease on one while a command runs, restore preserved work,
//! install or uninstall the hook, doctor.
//!
//! Exit status: 0 done, 1 `doctor` found problems, 2 an error or bad input
//! (nothing changed), 78 bad configuration (nothing touched). `lease`
//! exits with its command's status instead (see [`treeward::lease::run`]).

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use treeward::admin::{doctor, hooks, list, release, restore};
use treeward::as_owner::Worker;
use treeward::cli::{self, Common};
use treeward::config::Config;
use treeward::error::{Error, EXIT_AT_RISK, EXIT_ERROR, EXIT_OK};
use treeward::ledger::Ledger;

/// Administer treeward: the ledger, preserved work, the hook, the set-up.
#[derive(Debug, Parser)]
#[command(name = "treeward", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ledger records joined with what is on disk, plus unrecorded entries
    /// under the roots.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Mark a worktree done with: the reaper may take it without waiting
    /// for the grace period.
    Release {
        #[command(flatten)]
        common: Common,
        /// Change nothing; say what would change.
        #[arg(long)]
        dry_run: bool,
        /// A ledger record id, or the worktree's path.
        target: String,
    },
    /// Recreate a worktree from preserved refs, with its uncommitted state.
    Restore {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        dry_run: bool,
        /// Where to restore (default: the record's path). Something there
        /// is moved aside, never overwritten.
        #[arg(long, value_name = "P")]
        path: Option<PathBuf>,
        /// The repository, when no ledger record lists the refs.
        #[arg(long, value_name = "REPO")]
        repo: Option<PathBuf>,
        /// A ledger record id, a ref under refs/treeward/preserved/, or
        /// <name>/<stamp>.
        target: String,
    },
    /// Install the post-checkout shim, chaining an existing hook.
    InstallHook(HookArgs),
    /// Remove the shim and put back the hook it chained.
    UninstallHook(HookArgs),
    /// Run CMD while holding a lease on the worktree at PATH.
    ///
    /// Exits with CMD's status (128+N if signal N killed it, 127 not found,
    /// 126 not executable); 2 if no lease was taken (CMD then not started).
    /// A worktree already leased is refused at once, never waited for.
    Lease(LeaseArgs),
    /// Check the set-up; exit 1 listing each problem.
    Doctor {
        #[command(flatten)]
        common: Common,
        /// Look for systemd units here instead of the standard directories
        /// (repeatable).
        #[arg(long, value_name = "DIR")]
        unit_dir: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct HookArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    dry_run: bool,
    /// Repositories (a worktree top, a linked worktree or a git dir).
    #[arg(required = true, value_name = "REPO")]
    repos: Vec<PathBuf>,
}

/// `treeward lease [--config P] PATH -- CMD [ARGS...]`.
#[derive(Debug, clap::Args)]
struct LeaseArgs {
    /// Configuration file (default: $TREEWARD_CONFIG, else
    /// /etc/treeward/config.toml if it exists, else embedded defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The worktree: an entry of a configured root.
    path: PathBuf,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Runs `treeward lease`: the lease is taken, CMD run, the lease ended.
fn lease(args: LeaseArgs) -> Result<u8, Error> {
    let config = Config::load(args.config.as_deref())?;
    treeward::lease::run(&config, &args.path, &args.command)
}

fn main() -> ExitCode {
    cli::run("treeward", || run(Args::parse()))
}

fn run(args: Args) -> Result<u8, Error> {
    treeward::risk::allow_foreign_owners().map_err(|e| Error::Failed(e.message().to_owned()))?;
    let worker = Worker::current();
    match args.command {
        Command::List { common } => {
            let config = Config::load(common.config.as_deref())?;
            let (doc, error) = match Ledger::new(&config.ledger).read() {
                Ok(doc) => (doc, None),
                Err(e) => (Default::default(), Some(e.to_string())),
            };
            let failed = error.is_some();
            let listing = list::list(&config, &doc, error);
            print(common.json, &listing, || list::render_human(&listing))?;
            Ok(if failed { EXIT_ERROR } else { EXIT_OK })
        }
        Command::Release {
            common,
            dry_run,
            target,
        } => {
            let config = Config::load(common.config.as_deref())?;
            let r = release::release(&config, &target, &worker, dry_run)?;
            print(common.json, &r, || {
                let verb = match (r.changed, r.dry_run) {
                    (true, true) => "would be released",
                    (true, false) => "released",
                    (false, _) => "unchanged",
                };
                format!(
                    "{} ({}): {verb}, state {:?}\n",
                    r.path.display(),
                    r.id,
                    r.state
                )
            })?;
            Ok(EXIT_OK)
        }
        Command::Restore {
            common,
            dry_run,
            path,
            repo,
            target,
        } => {
            let config = Config::load(common.config.as_deref())?;
            let o = restore::restore(
                &config,
                &target,
                path.as_deref(),
                repo.as_deref(),
                &worker,
                dry_run,
            )?;
            print(common.json, &o, || restore::render_human(&o))?;
            Ok(EXIT_OK)
        }
        Command::Lease(a) => lease(a),
        Command::InstallHook(a) => hook(&a, false, &worker),
        Command::UninstallHook(a) => hook(&a, true, &worker),
        Command::Doctor { common, unit_dir } => {
            let config = Config::load(common.config.as_deref())?;
            let dirs = if unit_dir.is_empty() {
                doctor::UNIT_DIRS.iter().map(PathBuf::from).collect()
            } else {
                unit_dir
            };
            let d = doctor::doctor(&config, &dirs, &worker);
            print(common.json, &d, || doctor::render_human(&d))?;
            Ok(if d.problems > 0 {
                EXIT_AT_RISK
            } else {
                EXIT_OK
            })
        }
    }
}

fn hook(args: &HookArgs, remove: bool, worker: &Worker) -> Result<u8, Error> {
    Config::load(args.common.config.as_deref())?;
    let outcomes = hooks::install_all(&args.repos, remove, worker, args.dry_run)?;
    print(args.common.json, &outcomes, || {
        hooks::render_human(&outcomes)
    })?;
    Ok(EXIT_OK)
}

/// Prints `value` as one JSON document, or the human text.
fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) -> Result<(), Error> {
    if json {
        let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", human());
    }
    Ok(())
}
