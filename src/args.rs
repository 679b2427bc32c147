//! The command line of each binary, as clap derive structs.
//!
//! They live in the library, not in `src/bin/`, so that one definition
//! serves both the binaries (which parse with them) and the generated
//! documentation: [`commands`] is what `tests/suite/generated.rs` renders into the
//! man pages under `man/` and the shell completions under `completions/`.

use crate::cli::Common;
use crate::config::parse_duration;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Every binary's command: (binary name, its clap command), in the order
/// of the README's table. The tests generate and check the man pages,
/// completions and `doc/` references from it.
#[cfg(feature = "internals")]
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    use clap::CommandFactory;
    vec![
        ("treeward-check", Check::command()),
        ("treeward-sweep", Sweep::command()),
        ("treeward-reap", Reap::command()),
        ("treeward-hook", Hook::command()),
        ("treeward", Admin::command()),
    ]
}

/// What would be lost if these worktrees were removed. Changes nothing.
#[derive(Debug, Parser)]
#[command(name = "treeward-check", version, after_long_help = include_str!("../doc/treeward-check.txt"))]
pub struct Check {
    #[command(flatten)]
    pub common: Common,
    /// Every ledger record and every entry under the configured roots.
    #[arg(long)]
    pub all: bool,
    /// Worktrees to check, or paths inside them, each checked as the
    /// worktree it lies in (default: the current directory).
    pub paths: Vec<PathBuf>,
}

/// Clear worktree residue under the sweep roots, preserving work at risk.
#[derive(Debug, Parser)]
#[command(name = "treeward-sweep", version, after_long_help = include_str!("../doc/treeward-sweep.txt"))]
pub struct Sweep {
    #[command(flatten)]
    pub common: Common,
    /// Plan and report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long the drain (assess, preserve, delete) may run after the
    /// residue is out of the way; the rest waits in the trash for the next
    /// pass. Such as 10s, 2m.
    // Hyphen values reach `budget`, so that `--budget -1s` is refused as a
    // negative duration rather than taken for the flags `-1 -s`.
    #[arg(long, default_value = "10s", value_parser = budget, allow_hyphen_values = true)]
    pub budget: Duration,
}

/// `--budget`: a duration as the configuration writes them. A value that
/// starts with `-` but not `-<digit>` is most likely the next flag, not a
/// negative duration.
fn budget(text: &str) -> Result<Duration, String> {
    let mut chars = text.chars();
    if chars.next() == Some('-') && !chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return Err(format!("expected a duration such as 10s, found {text:?}"));
    }
    parse_duration(text)
}

/// Reclaim released and orphaned worktrees, never one in use.
#[derive(Debug, Parser)]
#[command(name = "treeward-reap", version, after_long_help = include_str!("../doc/treeward-reap.txt"))]
pub struct Reap {
    #[command(flatten)]
    pub common: Common,
    /// Plan and report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Record a new linked worktree in the treeward ledger (git post-checkout).
#[derive(Debug, Parser)]
#[command(name = "treeward-hook", version)]
pub struct Hook {
    #[command(flatten)]
    pub common: Common,
    /// Say what would be recorded; change nothing. Errors then exit 2 (78
    /// for bad configuration) instead of 0.
    #[arg(long)]
    pub dry_run: bool,
    /// <old-commit> <new-commit> <flag>, as git passes them.
    #[arg(value_name = "ARG")]
    pub args: Vec<OsString>,
}

/// Administer treeward: the ledger, preserved work, the hook, the set-up.
#[derive(Debug, Parser)]
#[command(name = "treeward", version, after_long_help = include_str!("../doc/treeward.txt"))]
pub struct Admin {
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The subcommands of `treeward`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Ledger records joined with what is on disk, plus unrecorded entries
    /// under the roots.
    List {
        #[command(flatten)]
        common: Common,
        /// List the preserved sets themselves (repository, set, where the
        /// worktree was, when, what is in it) instead of the worktrees.
        #[arg(long)]
        preserved: bool,
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
        /// Change nothing; say where the worktree would be restored and
        /// what would be moved aside.
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
    /// Delete a preserved set once it is no longer wanted, as the
    /// repository's owner, and forget it in the ledger.
    Drop {
        #[command(flatten)]
        common: Common,
        /// Change nothing; say which refs would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// The repository, when no ledger record lists the set and no
        /// repository the ledger knows holds it.
        #[arg(long, value_name = "REPO")]
        repo: Option<PathBuf>,
        /// A ledger record id (its newest set), a ref under
        /// refs/treeward/preserved/, or <name>/<stamp>.
        target: String,
    },
    /// Install the post-checkout shim, chaining an existing hook.
    InstallHook(HookRepos),
    /// Remove the shim and put back the hook it chained.
    UninstallHook(HookRepos),
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

/// The arguments of `treeward install-hook` and `uninstall-hook`.
#[derive(Debug, clap::Args)]
pub struct HookRepos {
    #[command(flatten)]
    pub common: Common,
    /// Change nothing; say what would be done to each hooks directory.
    #[arg(long)]
    pub dry_run: bool,
    /// Repositories (a worktree top, a linked worktree or a git dir).
    #[arg(required = true, value_name = "REPO")]
    pub repos: Vec<PathBuf>,
}

/// `treeward lease [--config P] PATH -- CMD [ARGS...]`.
#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    /// Configuration file (default: $TREEWARD_CONFIG, else
    /// /etc/treeward/config.toml if it exists, else embedded defaults).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The worktree: an entry of a configured root.
    pub path: PathBuf,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it does.
    #[test]
    fn every_argument_has_help() {
        fn walk(path: &str, cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(&format!("{path} {}", sub.get_name()), sub, missing);
            }
        }
        let mut missing = Vec::new();
        for (name, cmd) in commands() {
            walk(name, &cmd, &mut missing);
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn the_commands_are_consistent() {
        for (name, cmd) in commands() {
            assert_eq!(cmd.get_name(), name);
            cmd.debug_assert();
        }
    }

    #[test]
    fn every_flag_and_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no about",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        for (name, cmd) in commands() {
            assert!(cmd.get_about().is_some(), "{name} has no about");
            walk(&cmd, name);
        }
    }

    #[test]
    fn a_negative_or_missing_budget_is_refused_as_such() {
        let err = Sweep::try_parse_from(["treeward-sweep", "--budget", "-1s"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("\"-1s\" is negative"), "{err}");
        for flag in ["--dry-run", "-h", "-"] {
            let err = Sweep::try_parse_from(["treeward-sweep", "--budget", flag]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(
                err.to_string().contains("expected a duration such as 10s"),
                "{err}"
            );
        }
        let ok = Sweep::try_parse_from(["treeward-sweep", "--budget", "2m", "--dry-run"]).unwrap();
        assert_eq!(ok.budget, Duration::from_secs(120));
        assert!(ok.dry_run);
        let default = Sweep::try_parse_from(["treeward-sweep"]).unwrap();
        assert_eq!(default.budget, Duration::from_secs(10));
    }
}
