//! Logging: `env_logger` on a terminal, native journald records under
//! systemd (SPEC "Logging").
//!
//! [`init`] picks the backend once per process: when stderr is the journal
//! stream systemd handed us (`JOURNAL_STREAM`), records go to journald with
//! their priority, `SYSLOG_IDENTIFIER` and source location; otherwise
//! `env_logger` writes them to stderr. The filter is `TREEWARD_LOG`, else
//! `RUST_LOG`, in `env_logger` syntax, for both backends; else `info`,
//! moved by `-q` (warn) and `-v`/`-vv` (debug, trace).
//! [`event`] adds structured fields (`TREEWARD_SWEPT=12` in the journal,
//! ` swept=12` on a terminal).
//!
//! Failure mode: logging never panics and never stops a program. A record
//! journald refuses is written to stderr instead (with a `<N>` level prefix
//! that the journal stream understands); if the host process already
//! installed a logger (an orchestrator using the library), that one is kept.

use libsystemd::logging::Priority;
use log::{Level, Log, Metadata, Record};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

/// Prefix of every structured field treeward sends to the journal.
pub const FIELD_PREFIX: &str = "TREEWARD_";
/// journald's limit on the length of a field name.
const MAX_FIELD_NAME: usize = 64;

static INIT: Once = Once::new();
/// Set when no environment filter was given and our logger was installed:
/// only then do `-q`/`-v` move the level.
static LEVEL_FROM_FLAGS: AtomicBool = AtomicBool::new(false);
/// Set only when our journald logger became the process's logger.
static JOURNAL: OnceLock<&'static JournalLogger> = OnceLock::new();

/// Installs the logger once per process; later calls do nothing.
pub fn init() {
    INIT.call_once(|| {
        let from_env = filter_spec(env_nonempty("TREEWARD_LOG"), env_nonempty("RUST_LOG"));
        // Without an environment filter the logger passes everything and
        // the level gate (`log::set_max_level`) decides, so that `-v` can
        // raise it after the command line is parsed.
        let spec = from_env.clone().unwrap_or_else(|| "trace".to_owned());
        let installed = if libsystemd::logging::connected_to_journal() {
            install_journal_logger(&spec)
        } else {
            install_terminal_logger(&spec)
        };
        if installed && from_env.is_none() {
            LEVEL_FROM_FLAGS.store(true, Ordering::Relaxed);
            log::set_max_level(verbosity_level(false, 0));
        }
    });
}

/// Applies `-q` (warnings and errors only) and `-v`/`-vv` (debug, trace),
/// unless `TREEWARD_LOG` or `RUST_LOG` chose the filter, or the host
/// process has its own logger.
pub fn set_verbosity(quiet: bool, verbose: u8) {
    if LEVEL_FROM_FLAGS.load(Ordering::Relaxed) {
        log::set_max_level(verbosity_level(quiet, verbose));
    }
}

/// The level `-q`/`-v` ask for: `info` by default.
pub fn verbosity_level(quiet: bool, verbose: u8) -> log::LevelFilter {
    match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    }
}

/// Whether stdout is the journal stream systemd handed us
/// (`JOURNAL_STREAM` names its device and inode): what a program prints
/// there is a journal record already.
pub fn stdout_is_journal() -> bool {
    use std::os::fd::AsFd;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stdout().as_fd()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// Logs a program's end-of-pass summary: under journald as an [`event`]
/// with its structured fields at `level`; elsewhere at `level` only when
/// stdout does not already end with it (`on_stdout`: the human report),
/// else at debug, so a person reads it once.
pub fn summary(level: Level, message: &str, fields: &[(&str, String)], on_stdout: bool) {
    if JOURNAL.get().is_some() || !on_stdout {
        event(level, message, fields);
    } else {
        event(Level::Debug, message, fields);
    }
}

/// Tells systemd how a long pass is going (`sd_notify` `STATUS=`), when it
/// listens (`NOTIFY_SOCKET`); a no-op otherwise. Failures are ignored:
/// progress reports must never stop a pass.
pub fn status(message: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = libsystemd::daemon::notify(
            false,
            &[libsystemd::daemon::NotifyState::Status(message.to_owned())],
        );
    }
}

/// Logs `message` with structured `fields`. Under journald each field is
/// sent as its own journal field (names normalised by [`journal_field_name`],
/// unusable names dropped); elsewhere the line reads `message key=value …`
/// (see [`format_event`]) and goes through `log` at `level`.
pub fn event(level: Level, message: &str, fields: &[(&str, String)]) {
    match JOURNAL.get() {
        Some(journal) => journal.send_event(level, message, fields),
        None => log::log!(target: "treeward", level, "{}", format_event(message, fields)),
    }
}

/// The filter the environment chose: `TREEWARD_LOG` first, then
/// `RUST_LOG`; `None` leaves the level to `-q`/`-v` (`info` by default).
pub fn filter_spec(treeward_log: Option<String>, rust_log: Option<String>) -> Option<String> {
    treeward_log.or(rust_log)
}

/// A field name journald accepts, made from `name`: ASCII letters upper-cased,
/// anything outside `A-Z 0-9 _` turned into `_`, prefixed with `TREEWARD_`
/// (unless already there) so it can neither start with `_` or a digit nor
/// override journald's own fields (`MESSAGE`, `PRIORITY`, …), and cut to 64
/// characters. `None` for an empty name.
pub fn journal_field_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let upper: String = name
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    let mut field = if upper.starts_with(FIELD_PREFIX) && upper.len() > FIELD_PREFIX.len() {
        upper
    } else {
        format!("{FIELD_PREFIX}{upper}")
    };
    // Only ASCII is left, so any byte index is a character boundary.
    field.truncate(MAX_FIELD_NAME);
    Some(field)
}

/// The terminal form of an event: `message key=value key="two words"`.
/// Keys keep letters, digits, `_`, `-` and `.` (anything else becomes `_`);
/// values are quoted and escaped when empty or when they hold spaces,
/// quotes, `=` or control characters, so a line stays one parseable line.
pub fn format_event(message: &str, fields: &[(&str, String)]) -> String {
    let mut line = message.to_string();
    for (key, value) in fields {
        let key: String = key
            .chars()
            .map(|c| match c {
                c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') => c,
                _ => '_',
            })
            .collect();
        let needs_quotes = value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
        // Writing into a String cannot fail.
        let _ = if needs_quotes {
            write!(line, " {key}={value:?}")
        } else {
            write!(line, " {key}={value}")
        };
    }
    line
}

/// The journald priority of a `log` level.
pub fn priority(level: Level) -> Priority {
    match level {
        Level::Error => Priority::Error,
        Level::Warn => Priority::Warning,
        Level::Info => Priority::Info,
        Level::Debug | Level::Trace => Priority::Debug,
    }
}

/// The identifier journald files records under: the program's file name.
fn program_name(arg0: Option<&OsStr>) -> String {
    arg0.and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "treeward".to_string())
}

/// One line for the journal stream when journald itself refused a record:
/// `<N>` is the syslog level prefix the stream turns back into a priority.
fn stderr_fallback_line(priority: Priority, identifier: &str, message: &str) -> String {
    format!("<{}>{identifier}: {message}", u8::from(priority))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An `env_logger` configured with `spec`, used for writing or only for
/// its filter.
fn env_logger_builder(spec: &str) -> env_logger::Builder {
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(spec)
        .target(env_logger::Target::Stderr);
    builder
}

/// Installs `env_logger`; false when the host already has a logger (kept).
fn install_terminal_logger(spec: &str) -> bool {
    env_logger_builder(spec).try_init().is_ok()
}

/// Installs the journald logger; false when the host already has a logger.
fn install_journal_logger(spec: &str) -> bool {
    let journal = JournalLogger {
        filter: env_logger_builder(spec).build(),
        identifier: program_name(std::env::args_os().next().as_deref()),
    };
    let max_level = journal.filter.filter();
    // Runs once per process (inside `INIT`): the logger lives as long as it.
    let journal: &'static JournalLogger = Box::leak(Box::new(journal));
    // An error means the host already has a logger: keep it, and let events
    // go through it too.
    if log::set_logger(journal).is_ok() {
        log::set_max_level(max_level);
        let _ = JOURNAL.set(journal);
        return true;
    }
    false
}

/// Sends records to journald through its native protocol.
struct JournalLogger {
    /// Used only to decide which records pass `TREEWARD_LOG`/`RUST_LOG`.
    filter: env_logger::Logger,
    identifier: String,
}

impl JournalLogger {
    fn send_event(&self, level: Level, message: &str, fields: &[(&str, String)]) {
        if level > log::max_level() {
            return;
        }
        let metadata = Metadata::builder().level(level).target("treeward").build();
        if !self.filter.enabled(&metadata) {
            return;
        }
        let mut vars: Vec<(String, String)> = fields
            .iter()
            .filter_map(|(k, v)| Some((journal_field_name(k)?, v.clone())))
            .collect();
        vars.push(("SYSLOG_IDENTIFIER".into(), self.identifier.clone()));
        self.send(level, message, vars, || format_event(message, fields));
    }

    /// Sends one record; if journald refuses it, writes `fallback()` to stderr.
    fn send(
        &self,
        level: Level,
        message: &str,
        vars: Vec<(String, String)>,
        fallback: impl FnOnce() -> String,
    ) {
        let priority = priority(level);
        if libsystemd::logging::journal_send(priority, message, vars.into_iter()).is_err() {
            let line = stderr_fallback_line(priority, &self.identifier, &fallback());
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

impl Log for JournalLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() > log::max_level() || !self.filter.matches(record) {
            return;
        }
        let message = record.args().to_string();
        let mut vars = vec![("SYSLOG_IDENTIFIER".to_string(), self.identifier.clone())];
        if let Some(module) = record.module_path() {
            vars.push(("CODE_MODULE".into(), module.to_string()));
        }
        if let Some(file) = record.file() {
            vars.push(("CODE_FILE".into(), file.to_string()));
        }
        if let Some(line) = record.line() {
            vars.push(("CODE_LINE".into(), line.to_string()));
        }
        self.send(record.level(), &message, vars, || message.clone());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_prefers_treeward_log_then_rust_log_then_info() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(filter_spec(s("debug"), s("warn")), s("debug"));
        assert_eq!(filter_spec(None, s("warn")), s("warn"));
        assert_eq!(filter_spec(None, None), None);
        assert_eq!(verbosity_level(false, 0), log::LevelFilter::Info);
    }

    #[test]
    fn quiet_and_verbose_move_the_level() {
        assert_eq!(verbosity_level(true, 0), log::LevelFilter::Warn);
        assert_eq!(verbosity_level(false, 1), log::LevelFilter::Debug);
        assert_eq!(verbosity_level(false, 3), log::LevelFilter::Trace);
    }

    #[test]
    fn field_names_follow_journald_rules() {
        let name = |n: &str| journal_field_name(n);
        assert_eq!(name("swept").as_deref(), Some("TREEWARD_SWEPT"));
        assert_eq!(
            name("backlog_count").as_deref(),
            Some("TREEWARD_BACKLOG_COUNT")
        );
        assert_eq!(name("TREEWARD_SWEPT").as_deref(), Some("TREEWARD_SWEPT"));
        assert_eq!(
            name("in-use.count").as_deref(),
            Some("TREEWARD_IN_USE_COUNT")
        );
        assert_eq!(name("_pid").as_deref(), Some("TREEWARD__PID"));
        assert_eq!(name("2fa").as_deref(), Some("TREEWARD_2FA"));
        assert_eq!(name("MESSAGE").as_deref(), Some("TREEWARD_MESSAGE"));
        assert_eq!(name("größe").as_deref(), Some("TREEWARD_GR__E"));
        assert_eq!(name("treeward_").as_deref(), Some("TREEWARD_TREEWARD_"));
        assert_eq!(name(""), None);
        let long = name(&"x".repeat(100)).expect("a name");
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("TREEWARD_XXX"));
    }

    #[test]
    fn normalised_names_are_valid_for_journald() {
        for input in ["a", "_", "9", "é", " ", "a b", "TREEWARD_", &"é".repeat(70)] {
            let field = journal_field_name(input).expect("a name");
            assert!(field.len() <= 64, "{field}");
            assert!(!field.starts_with('_') && !field.starts_with(|c: char| c.is_ascii_digit()));
            assert!(
                field
                    .chars()
                    .all(|c| matches!(c, 'A'..='Z' | '0'..='9' | '_')),
                "{input:?} -> {field:?}"
            );
        }
    }

    #[test]
    fn terminal_events_read_as_key_value_pairs() {
        let fields = [
            ("swept", "12".to_string()),
            ("root", "/tmp/adf-worktrees".to_string()),
            ("error", "permission denied".to_string()),
            ("branch", String::new()),
            ("odd key=", "a\"b\nc".to_string()),
        ];
        assert_eq!(
            format_event("sweep done", &fields),
            "sweep done swept=12 root=/tmp/adf-worktrees error=\"permission denied\" \
             branch=\"\" odd_key_=\"a\\\"b\\nc\""
        );
        assert_eq!(format_event("nothing to do", &[]), "nothing to do");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(u8::from(priority(Level::Error)), 3);
        assert_eq!(u8::from(priority(Level::Warn)), 4);
        assert_eq!(u8::from(priority(Level::Info)), 6);
        assert_eq!(u8::from(priority(Level::Debug)), 7);
        assert_eq!(u8::from(priority(Level::Trace)), 7);
    }

    #[test]
    fn identifier_is_the_program_file_name() {
        let arg = |s: &str| Some(OsStr::new(s).to_os_string());
        assert_eq!(
            program_name(arg("/usr/bin/treeward-sweep").as_deref()),
            "treeward-sweep"
        );
        assert_eq!(
            program_name(arg("treeward-reap").as_deref()),
            "treeward-reap"
        );
        assert_eq!(program_name(arg("").as_deref()), "treeward");
        assert_eq!(program_name(None), "treeward");
    }

    #[test]
    fn journal_fallback_line_carries_a_level_prefix() {
        assert_eq!(
            stderr_fallback_line(Priority::Warning, "treeward-sweep", "backlog 14"),
            "<4>treeward-sweep: backlog 14"
        );
    }

    #[test]
    fn init_is_idempotent_and_event_never_panics() {
        init();
        init();
        event(Level::Info, "test event", &[("swept", "1".to_string())]);
        event(Level::Trace, "", &[("", String::new())]);
    }

    const PROBE_ENV: &str = "TREEWARD_TEST_JOURNAL_PROBE";

    /// Run by `journal_stream_without_journald_falls_back_to_stderr` with
    /// stderr on a file that `JOURNAL_STREAM` names.
    #[test]
    #[ignore = "helper: run with JOURNAL_STREAM by a test below"]
    fn journal_probe() {
        if std::env::var_os(PROBE_ENV).is_none() {
            return;
        }
        init();
        log::warn!("probe warning");
        log::debug!("probe hidden");
        event(Level::Info, "probe event", &[("swept", "3".to_string())]);
        event(Level::Debug, "probe hidden event", &[]);
    }

    #[test]
    fn journal_stream_without_journald_falls_back_to_stderr() {
        use std::os::unix::fs::MetadataExt;
        if Path::new("/run/systemd/journal/socket").exists() {
            eprintln!("skipped: a real journald listens here; tested under systemd instead");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("stderr");
        let file = std::fs::File::create(&path).expect("create");
        let meta = file.metadata().expect("stat");
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "logging::tests::journal_probe",
                "--ignored",
                "--nocapture",
            ])
            .env(PROBE_ENV, "1")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("TREEWARD_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .status()
            .expect("run probe");
        assert!(status.success());
        let out = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("<4>") && l.ends_with(": probe warning")),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("<6>") && l.ends_with(": probe event swept=3")),
            "{out}"
        );
        assert!(!out.contains("hidden"), "{out}");
    }
}
