//! The shipped programs. Each binary in `src/bin/` is one line that calls
//! one of these functions: the code they run is private to the library
//! (its API is the curated list in `lib.rs`), so their bodies live here.
//! This module is public only for those binaries; it is hidden from the
//! documentation and is not part of the API.
//!
//! Every program takes the same steps, each in one place: `cli::run`
//! (logging; serving as an owner worker when started as one; errors and
//! panics turned into exit statuses), then `setup` (`-q`/`-v` applied,
//! the configuration loaded and validated, the worker that runs git as a
//! repository's owner).

mod admin;
mod check;
mod hook;
mod reap;
mod sweep;

use crate::args;
use crate::as_owner::Worker;
use crate::cli::{self, Common};
use crate::config::Config;
use crate::error::Error;
use crate::pass::report::Report as PassReport;
use clap::Parser;
use std::process::ExitCode;

/// `treeward-sweep`.
pub fn sweep() -> ExitCode {
    cli::run("treeward-sweep", || sweep::run(args::Sweep::parse()))
}

/// `treeward-reap`.
pub fn reap() -> ExitCode {
    cli::run("treeward-reap", || reap::run(args::Reap::parse()))
}

/// `treeward-check`.
pub fn check() -> ExitCode {
    cli::run("treeward-check", || check::run(args::Check::parse()))
}

/// `treeward-hook`.
pub fn hook() -> ExitCode {
    hook::main()
}

/// `treeward`, the admin command.
pub fn admin() -> ExitCode {
    cli::run("treeward", || admin::run(args::Admin::parse()))
}

/// What a program works with once its command line is read.
struct Setup {
    config: Config,
    worker: Worker,
}

/// The one set-up path: applies `-q`/`-v`, loads the configuration
/// (`--config`, else `TREEWARD_CONFIG`, else the default file, else the
/// embedded defaults) and makes the worker that runs git as a repository's
/// owner (this same binary, started again).
fn setup(common: &Common) -> Result<Setup, Error> {
    common.apply();
    let config = Config::load(common.config.as_deref())?;
    Ok(Setup {
        config,
        worker: Worker::current(),
    })
}

/// What a pass (a sweep or a reap) ends with, for [`publish`].
struct Pass<'a, R> {
    /// The binary's name: the metrics file is `<program>.prom`.
    program: &'static str,
    /// The whole report, for `--json`.
    report: &'a R,
    /// Its one-line summary and its journald fields.
    summary: String,
    fields: Vec<(&'static str, String)>,
    level: log::Level,
    /// The counts to sample for node_exporter; `None`: nothing worth a
    /// sample (a dry run, or a pass that found another one running).
    sample: Option<&'a PassReport>,
}

/// Publishes a pass's report: the summary logged once (under systemd, a
/// journal record with its fields), the service's status line, the
/// metrics file, then the report on stdout. With stdout on the journal the
/// summary is already there with its fields, so only the entries
/// (`entries`) are printed; else the human text (`human`).
fn publish<R: serde::Serialize>(
    common: &Common,
    config: &Config,
    pass: Pass<'_, R>,
    entries: impl FnOnce() -> String,
    human: impl FnOnce() -> String,
) -> Result<(), Error> {
    crate::logging::summary(
        pass.level,
        &pass.summary,
        &pass.fields,
        common.human_on_stdout(),
    );
    crate::logging::status(&pass.summary);
    if let Some(sample) = pass.sample {
        crate::metrics::write(config.metrics(), pass.program, sample);
    }
    common.print(pass.report, || {
        if crate::logging::stdout_is_journal() {
            entries()
        } else {
            human()
        }
    })
}
