//! An orchestrator that embeds treeward: `orchestrator REPO ROOT LEDGER`.
//!
//! What a Rust agent orchestrator does with the library, in order:
//! 1. its `main` first lets a worker started from this binary serve
//!    ([`treeward::serve_if_worker`]): as root, treeward runs git as each
//!    repository's owner in a worker, and by default the worker is the
//!    running program;
//! 2. at start-up it sweeps ([`treeward::sweep`]): what agents of a
//!    previous run left under ROOT is reclaimed, their work preserved;
//! 3. per task, it creates a worktree with `git worktree add`, registers
//!    it ([`treeward::register`]: the ledger's record, as the hook would
//!    have made it) and holds a [`treeward::Lease`] while the agent works:
//!    should this process die, the next reap pass takes the worktree
//!    without waiting for the grace;
//! 4. when a task is done, it releases the worktree
//!    ([`treeward::release`]), and a reap pass ([`treeward::reap`], here
//!    run at once rather than from a timer) reclaims it.
//!
//! ROOT must be a directory of its own (not `/tmp` itself, not a home), and
//! LEDGER a file outside it; REPO a repository with a commit. The example
//! prints what each step did.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use treeward::{Config, Lease, ReapOptions, RootBuilder, SweepOptions, Worker};

fn main() -> ExitCode {
    // A worker started from this binary (see the crate's "owner worker")
    // serves its caller and exits here, before anything else runs.
    if let Some(code) = treeward::serve_if_worker() {
        return code;
    }
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [repo, root, ledger] = &args[..] else {
        eprintln!("usage: orchestrator REPO ROOT LEDGER");
        return ExitCode::from(treeward::EXIT_ERROR);
    };
    match run(repo, root, ledger) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestrator: {e}");
            ExitCode::from(treeward::EXIT_ERROR)
        }
    }
}

fn run(repo: &Path, root: &Path, ledger: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // Validated as a configuration file would be: a root of `/usr` fails here.
    let config = Config::builder()
        .ledger(ledger)
        .root(RootBuilder::new(root).patterns(["task-*"]))
        .build()?;
    let worker = Worker::current();

    let swept = treeward::sweep(&config, &SweepOptions::new(worker.clone()));
    println!("start-up sweep: {}", swept.summary());

    for task in ["task-1", "task-2"] {
        let path = root.join(task);
        git(
            repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                task,
                path.to_str().ok_or("path")?,
            ],
        )?;
        let registered = treeward::register(&config, &path)?;
        let lease = Lease::acquire(&config, &path)?;
        println!(
            "{task}: registered as {} and leased by pid {}",
            registered.id,
            lease.holder().pid
        );
        // The agent's work: a commit on the task's branch.
        std::fs::write(path.join("result.txt"), format!("{task} done\n"))?;
        git(&path, &["add", "result.txt"])?;
        git(
            &path,
            &[
                "-c",
                "user.name=agent",
                "-c",
                "user.email=agent@example.com",
                "commit",
                "-q",
                "-m",
                task,
            ],
        )?;
        lease.release()?;
        let released = treeward::release(&config, path.to_str().ok_or("path")?, &worker, false)?;
        println!("{task}: {}", released.state.words());
    }

    let reaped = treeward::reap(&config, &ReapOptions::new(worker))?;
    println!("reap: {}", reaped.summary());
    Ok(())
}

/// Runs `git -C dir args...`, failing on a non-zero status.
fn git(dir: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let status = Command::new("git").arg("-C").arg(dir).args(args).status()?;
    if !status.success() {
        return Err(format!("git {} failed: {status}", args.join(" ")).into());
    }
    Ok(())
}
