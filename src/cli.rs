//! What every treeward binary shares on its command line, and the one place
//! where a program's result becomes its exit status.

use crate::error::{Error, EXIT_ERROR};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Configuration file (default: $TREEWARD_CONFIG, else
    /// /etc/treeward/config.toml if it exists, else embedded defaults).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but warnings and errors (the exit status tells the
    /// result); `--json` still prints its document.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Common {
    /// Whether the human report goes to stdout (neither `--json` nor `-q`).
    pub fn human_on_stdout(&self) -> bool {
        !self.json && !self.quiet
    }

    /// Applies `-q`/`-v` to the log filter. Every program calls it first.
    pub fn apply(&self) {
        crate::logging::set_verbosity(self.quiet, self.verbose);
    }

    /// Prints a program's report on stdout: one pretty JSON document with
    /// `--json`, nothing under `-q`, else the human text.
    pub fn print<T: serde::Serialize>(
        &self,
        report: &T,
        human: impl FnOnce() -> String,
    ) -> Result<(), Error> {
        if self.json {
            let text =
                serde_json::to_string_pretty(report).map_err(|e| Error::Failed(e.to_string()))?;
            println!("{text}");
        } else if self.human_on_stdout() {
            print!("{}", human());
        }
        Ok(())
    }
}

/// Runs a program body and turns its result into the exit status.
///
/// Errors are printed once, here, prefixed with the program's name, so that
/// every binary reports them the same way. A panic is caught and reported as
/// an internal error with status 2 rather than Rust's 101: scripts only know
/// the statuses the SPEC documents.
///
/// Started with [`crate::as_owner::WORKER_FLAG`] as its first argument, any
/// binary is an `as_owner` worker instead and `body` is never called.
pub fn run(program: &str, body: impl FnOnce() -> Result<u8, Error>) -> ExitCode {
    crate::logging::init();
    // A worker serving another process (see `as_owner`) never runs the program.
    if let Some(code) = crate::as_owner::serve_if_worker() {
        return code;
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            eprintln!("{program}: error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(_) => {
            eprintln!("{program}: internal error (a bug in treeward; nothing further was done)");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Runs the body of a program whose exit status must never fail its caller
/// (`treeward-hook`: git makes a `post-checkout` hook's status its own).
///
/// Always exits 0. An error or a panic is logged at error level, prefixed
/// with the program's name — to stderr, or to journald when stderr is the
/// journal — and also sent to journald directly when the host runs one and
/// stderr goes elsewhere (a terminal, or git's output that nobody keeps),
/// so that an admin can find it later. Unlike [`run`] it never serves as an
/// `as_owner` worker.
pub fn run_hook(program: &str, body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
    crate::logging::init();
    let failure = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "internal error (a bug in treeward)".to_string(),
    };
    let message = format!("{program}: {failure}; nothing was recorded (git is not affected)");
    log::error!("{message}");
    if !libsystemd::logging::connected_to_journal() && Path::new(JOURNAL_SOCKET).exists() {
        let fields = [("SYSLOG_IDENTIFIER", program)];
        let _ = libsystemd::logging::journal_send(
            libsystemd::logging::Priority::Error,
            &message,
            fields.into_iter(),
        );
    }
    ExitCode::SUCCESS
}

/// Where journald listens for native records.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
