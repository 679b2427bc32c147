//! Configuration: raw TOML (what the operator typed) turned into a validated
//! [`Config`] (what the programs will do).
//!
//! Two steps, as in ripgrep's flags: [`raw`] describes the file's shape and
//! lets serde refuse unknown keys, missing keys and wrong types; `validate`
//! then checks meaning (durations, globs, root paths, owners) and builds the
//! [`Config`]. Loading never touches anything but the configuration file and
//! the passwd database. Any problem is one [`ConfigError`] naming the file,
//! the line and the key; the programs exit 78 (EX_CONFIG) on it and do
//! nothing else.
//!
//! Where the file comes from: `--config` (`explicit`), else the
//! `TREEWARD_CONFIG` environment variable (empty counts as unset), else
//! [`DEFAULT_PATH`] if it exists, else [`EMBEDDED_DEFAULTS`]. A file named by
//! `--config` or `TREEWARD_CONFIG` must exist. A file that exists must name
//! its roots: the embedded root applies only when there is no file at all.

mod builder;
mod duration;
mod locate;
mod raw;
mod users;
pub(crate) mod validate;

pub use builder::{ConfigBuilder, RootBuilder};
pub use duration::parse_duration;
pub use users::{SystemUsers, UserDb};
pub use validate::check_root;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeTable;

/// The configuration file used when neither `--config` nor
/// `TREEWARD_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/treeward/config.toml";

/// The environment variable that names a configuration file.
pub const ENV_VAR: &str = "TREEWARD_CONFIG";

/// The configuration used when there is no file at all.
pub const EMBEDDED_DEFAULTS: &str = r#"ledger = "/var/lib/treeward/ledger.json"
backlog_warn = 10
hook_record_anywhere = false

[[root]]
path = "/tmp/adf-worktrees"
patterns = ["*"]
sweep = true
reap = true
grace = "1h"
policy = "preserve"
"#;

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No file: the embedded defaults.
    Embedded,
    /// This file.
    File(PathBuf),
    /// Built in code by an embedding program ([`Config::builder`]).
    Built,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => f.write_str("embedded defaults"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Built => f.write_str("configuration built in code"),
        }
    }
}

/// What to do with work at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Record the work in the repository (`refs/treeward/preserved/...`),
    /// then remove the worktree.
    Preserve,
    /// Leave a worktree with work at risk where it is.
    Keep,
    /// Remove the worktree and its work: for roots of throwaway checkouts.
    Discard,
}

/// A validated root.
#[derive(Debug, Clone)]
pub struct Root {
    pub(crate) path: PathBuf,
    pub(crate) patterns: Vec<glob::Pattern>,
    pub(crate) sweep: bool,
    pub(crate) reap: bool,
    pub(crate) grace: Duration,
    pub(crate) policy: Policy,
    /// The configured owner, resolved to a uid/gid.
    pub(crate) owner: Option<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// How entry names are matched: case-sensitively, and `*` matches a leading
/// dot too (`"*"` means every entry, as the configuration documents).
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Root {
    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an entry with this file name belongs to this root.
    ///
    /// `name` must be a single file name: `""`, `.`, `..` and anything
    /// containing `/` are never owned. Globs work on text, so a name that is
    /// not UTF-8 is owned only by a root with the pattern `"*"` (which
    /// claims everything); a narrower pattern never claims a name it cannot
    /// read.
    pub fn owns(&self, name: &OsStr) -> bool {
        if name.is_empty() || name == "." || name == ".." {
            return false;
        }
        match name.to_str() {
            Some(name) if name.contains('/') => false,
            Some(name) => self.patterns.iter().any(|p| p.matches_with(name, MATCH)),
            None => self.patterns.iter().any(|p| p.as_str() == "*"),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) source: Source,
    pub(crate) ledger: PathBuf,
    pub(crate) backlog_warn: u64,
    pub(crate) hook_record_anywhere: bool,
    /// node_exporter's textfile collector directory: each pass writes
    /// `<binary>.prom` there (see `crate::metrics`); `None`: no metrics.
    pub(crate) metrics: Option<PathBuf>,
    pub(crate) roots: Vec<Root>,
}

/// A configuration that cannot be used; names the file, line and key.
///
/// Displays as `FILE:LINE: KEY: MESSAGE`, leaving out the line or key when
/// they are not known (e.g. a file that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or the embedded defaults.
    pub file: Source,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// The key path, such as `root[1].path` (roots count from 0).
    pub key: Option<String>,
    /// What is wrong, and where possible what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which rule chose the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    Env,
    Default,
}

impl Config {
    /// A configuration built in code, validated as a file is when
    /// [`ConfigBuilder::build`] is called:
    ///
    /// ```
    /// use std::time::Duration;
    /// use treeward::{Config, Policy, RootBuilder};
    ///
    /// let config = Config::builder()
    ///     .ledger("/var/lib/orchestrator/treeward.json")
    ///     .root(
    ///         RootBuilder::new("/var/lib/orchestrator/worktrees")
    ///             .grace(Duration::from_secs(3600))
    ///             .policy(Policy::Preserve),
    ///     )
    ///     .build()?;
    /// assert!(Config::builder().root(RootBuilder::new("/usr")).build().is_err());
    /// # let _ = config;
    /// # Ok::<(), treeward::ConfigError>(())
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The roots, in the order configured.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// The ledger file.
    pub fn ledger(&self) -> &Path {
        &self.ledger
    }

    /// The backlog (entries found by one pass) above which a pass warns.
    pub fn backlog_warn(&self) -> u64 {
        self.backlog_warn
    }

    /// The directory each pass writes its Prometheus textfile into, if any.
    pub fn metrics(&self) -> Option<&Path> {
        self.metrics.as_deref()
    }

    /// Where the configuration came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The ledger, as the sweep writes it: a ledger root creates belongs to
    /// the owner every root names (see [`Config::roots_owner`]).
    pub fn ledger_store(&self) -> crate::ledger::Ledger {
        crate::ledger::Ledger::new(&self.ledger)
            .created_for(self.roots_owner().map(|o| (o.uid, o.gid)))
    }

    /// The one owner all roots are configured with; `None` when a root
    /// names none or two roots name different users.
    pub fn roots_owner(&self) -> Option<&Owner> {
        let first = self.roots.first()?.owner.as_ref()?;
        self.roots
            .iter()
            .all(|r| r.owner.as_ref().is_some_and(|o| o.uid == first.uid))
            .then_some(first)
    }

    /// Loads the configuration: `explicit` (from `--config`), else
    /// `TREEWARD_CONFIG`, else `/etc/treeward/config.toml` if it exists,
    /// else the embedded defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env = std::env::var_os(ENV_VAR);
        Config::load_from(
            explicit,
            env.as_deref(),
            Path::new(DEFAULT_PATH),
            &SystemUsers,
        )
    }

    /// [`Config::load`] with its inputs spelled out: the `--config` path,
    /// the value of `TREEWARD_CONFIG`, the default path, and the user
    /// database that resolves owners and home directories.
    pub fn load_from(
        explicit: Option<&Path>,
        env: Option<&OsStr>,
        default_path: &Path,
        users: &dyn UserDb,
    ) -> Result<Config, ConfigError> {
        let (path, origin) = choose_file(explicit, env, default_path);
        match read_file(&path, origin)? {
            Some(text) => Config::from_toml(&text, Source::File(path), users),
            None => Config::from_toml(EMBEDDED_DEFAULTS, Source::Embedded, users),
        }
    }

    /// Parses and validates configuration `text` that came from `source`.
    pub fn from_toml(
        text: &str,
        source: Source,
        users: &dyn UserDb,
    ) -> Result<Config, ConfigError> {
        let doc = validate::Doc {
            source: &source,
            text,
        };
        let tree = DeTable::parse(text).map_err(|e| syntax_error(&e, &doc))?;
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| shape_error(&e, tree.get_ref(), &doc))?;
        validate::validate(raw, &doc, users)
    }

    /// The root and entry name that `path` is a direct child of, if any.
    /// Purely lexical: `path` must be absolute and normalised by the caller.
    pub fn entry_of(&self, path: &Path) -> Option<(&Root, OsString)> {
        let parent = path.parent()?;
        let name = path.file_name()?;
        self.roots
            .iter()
            .find(|root| root.path == parent && root.owns(name))
            .map(|root| (root, name.to_os_string()))
    }
}

/// The file to read and the rule that chose it.
fn choose_file(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    default_path: &Path,
) -> (PathBuf, Origin) {
    match (explicit, env) {
        (Some(path), _) => (path.to_path_buf(), Origin::Flag),
        (None, Some(value)) if !value.is_empty() => (PathBuf::from(value), Origin::Env),
        _ => (default_path.to_path_buf(), Origin::Default),
    }
}

/// The text of `path`; `None` when it is the default path and nothing is
/// there, which means "use the embedded defaults".
fn read_file(path: &Path, origin: Origin) -> Result<Option<String>, ConfigError> {
    let error = |line: Option<usize>, message: String| ConfigError {
        file: Source::File(path.to_path_buf()),
        line,
        key: None,
        message,
    };
    let bytes = match read_trusted(path) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(why)) => return Err(error(None, why)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match origin {
                Origin::Flag => Err(error(
                    None,
                    "configuration file does not exist (named by --config)".into(),
                )),
                Origin::Env => Err(error(
                    None,
                    format!("configuration file does not exist (named by {ENV_VAR})"),
                )),
                // A dangling symlink is something an operator put there.
                Origin::Default if std::fs::symlink_metadata(path).is_ok() => Err(error(
                    None,
                    "configuration file is a symlink to nothing".into(),
                )),
                Origin::Default => Ok(None),
            };
        }
        Err(e) => return Err(error(None, format!("cannot read configuration file: {e}"))),
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        error(Some(line), "not valid UTF-8".into())
    })
}

/// Reads the file through one descriptor, checking first (on that
/// descriptor, so it cannot be swapped between check and read) that
/// [`trusted`] allows it. The inner `Err` is why it is not trusted.
fn read_trusted(path: &Path) -> io::Result<Result<Vec<u8>, String>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if let Err(why) = trusted(
        nix::unistd::Uid::effective().as_raw(),
        meta.uid(),
        meta.mode(),
    ) {
        return Ok(Err(why));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Ok(bytes))
}

/// Root acts on what the configuration names (deletes under its roots), so
/// a process running as root trusts only a file that no one but root can
/// change: owned by root, not writable by group or others (as sshd's
/// StrictModes). Other users read any configuration they can read.
fn trusted(euid: u32, file_uid: u32, mode: u32) -> Result<(), String> {
    if euid != 0 {
        return Ok(());
    }
    if file_uid != 0 {
        return Err(format!(
            "owned by uid {file_uid}: running as root, treeward trusts only a configuration only root can change (chown root)"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o}): running as root, treeward trusts only a configuration only root can change (chmod go-w)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A TOML syntax error (including duplicate keys) as a [`ConfigError`].
fn syntax_error(e: &toml::de::Error, doc: &validate::Doc<'_>) -> ConfigError {
    ConfigError {
        file: doc.source.clone(),
        line: e.span().map(|span| locate::line_of(doc.text, span.start)),
        key: None,
        message: format!("TOML syntax: {}", e.message()),
    }
}

/// A serde error (unknown key, missing key, wrong type) as a
/// [`ConfigError`], its key recovered from the document.
fn shape_error(e: &toml::de::Error, tree: &DeTable<'_>, doc: &validate::Doc<'_>) -> ConfigError {
    let span = e.span();
    let mut key = span.as_ref().and_then(|s| locate::key_at(tree, s.start));
    let mut message = e.message().to_owned();
    if let Some(field) = backquoted_after(&message, "missing field `") {
        key = Some(match key {
            Some(table) => format!("{table}.{field}"),
            None => field.clone(),
        });
        message = "required key is missing".into();
    } else if let Some(rest) = message.strip_prefix("unknown field") {
        message = format!(
            "unknown key{}",
            rest.replacen(", expected", "; expected", 1)
        );
    } else if key.as_deref() == Some("root") && message.contains("expected a sequence") {
        message.push_str("; write each root as a [[root]] table (double brackets)");
    }
    ConfigError {
        file: doc.source.clone(),
        line: span.map(|s| locate::line_of(doc.text, s.start)),
        key,
        message,
    }
}

/// The text between `prefix` and the next backquote in `message`.
fn backquoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::users::Home;
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    /// A passwd database with one user, `agent` (uid/gid 4242), and the
    /// given home directories.
    struct FakeUsers {
        homes: Vec<Home>,
    }

    impl FakeUsers {
        fn new() -> FakeUsers {
            FakeUsers {
                homes: vec![
                    Home {
                        user: "root".into(),
                        path: "/root".into(),
                    },
                    Home {
                        user: "bob".into(),
                        path: "/srv/people/bob".into(),
                    },
                ],
            }
        }
    }

    impl UserDb for FakeUsers {
        fn owner(&self, name: &str) -> Result<Option<Owner>, String> {
            Ok((name == "agent").then(|| Owner {
                name: "agent".into(),
                uid: 4242,
                gid: 4242,
            }))
        }
        fn homes(&self) -> Result<Vec<Home>, String> {
            Ok(self.homes.clone())
        }
    }

    const GOOD: &str = "[[root]]\npath = \"/var/lib/agents/worktrees\"\npatterns = [\"*\"]\n";

    fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, text).expect("write test config");
        path
    }

    fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let absent = path.with_extension("absent-default");
        Config::load_from(Some(path), None, &absent, &FakeUsers::new())
    }

    /// Loads `text` from a real file; also returns that file's path.
    fn load_text(text: &str) -> (PathBuf, Result<Config, ConfigError>) {
        let dir = TempDir::new().expect("tempdir");
        let path = write(&dir, "config.toml", text);
        let result = load_file(&path);
        (path, result)
    }

    /// Loads `text` from a real file and returns the error it must give.
    fn refusal(text: &str) -> (PathBuf, ConfigError) {
        match load_text(text) {
            (_, Ok(config)) => panic!("accepted:\n{text}\nas {config:?}"),
            (path, Err(e)) => (path, e),
        }
    }

    /// Asserts that `text` is refused at `line` for `key` with a message
    /// containing `fragment`, and that the displayed error says so.
    #[track_caller]
    fn assert_refused(text: &str, line: usize, key: &str, fragment: &str) {
        let (path, e) = refusal(text);
        let shown = e.to_string();
        let prefix = format!("{}:{line}: {key}: ", path.display());
        assert!(
            shown.starts_with(&prefix),
            "{shown:?} should start with {prefix:?}"
        );
        assert!(
            shown.contains(fragment),
            "{shown:?} should contain {fragment:?}"
        );
        assert_eq!(e.file, Source::File(path));
        assert_eq!(e.line, Some(line));
        assert_eq!(e.key.as_deref(), Some(key));
    }

    fn root_with(extra: &str) -> String {
        format!("{GOOD}{extra}\n")
    }

    #[test]
    fn documented_example_parses_and_shows_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/treeward.toml");
        let text = fs::read_to_string(&path).expect("config/treeward.toml exists");
        let config = Config::from_toml(&text, Source::File(path.clone()), &FakeUsers::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.source, Source::File(path));
        assert_eq!(config.ledger, Path::new("/var/lib/treeward/ledger.json"));
        assert_eq!(config.backlog_warn, 10);
        assert!(!config.hook_record_anywhere);
        assert_eq!(config.roots.len(), 2);
        let first = &config.roots[0];
        assert_eq!(first.path, Path::new("/var/lib/agents/worktrees"));
        let patterns: Vec<&str> = first.patterns.iter().map(|p| p.as_str()).collect();
        assert_eq!(patterns, ["review-*", "sess-*"]);
        assert!(first.sweep && first.reap);
        assert_eq!(first.grace, Duration::from_secs(3600));
        assert_eq!(first.policy, Policy::Preserve);
        assert_eq!(
            first.owner,
            Some(Owner {
                name: "agent".into(),
                uid: 4242,
                gid: 4242
            })
        );
        assert_eq!(config.roots[1].path, Path::new("/tmp/adf-worktrees"));
        assert_eq!(config.roots[1].owner, None);
        for key in [
            "ledger",
            "backlog_warn",
            "hook_record_anywhere",
            "[[root]]",
            "path",
            "patterns",
            "sweep",
            "reap",
            "grace",
            "policy",
            "owner",
        ] {
            let set = if key.starts_with('[') {
                key.to_owned()
            } else {
                format!("\n{key} = ")
            };
            assert!(text.contains(&set), "the example does not set {key}");
        }
    }

    #[test]
    fn no_file_means_embedded_defaults() {
        let dir = TempDir::new().expect("tempdir");
        let absent = dir.path().join("config.toml");
        let config = Config::load_from(None, None, &absent, &FakeUsers::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.source, Source::Embedded);
        assert_eq!(config.ledger, Path::new("/var/lib/treeward/ledger.json"));
        assert_eq!(config.backlog_warn, 10);
        assert!(!config.hook_record_anywhere);
        assert_eq!(config.roots.len(), 1);
        let root = &config.roots[0];
        assert_eq!(root.path, Path::new("/tmp/adf-worktrees"));
        let patterns: Vec<&str> = root.patterns.iter().map(|p| p.as_str()).collect();
        assert_eq!(patterns, ["*"]);
        assert!(root.sweep && root.reap);
        assert_eq!(root.grace, Duration::from_secs(3600));
        assert_eq!(root.policy, Policy::Preserve);
        assert_eq!(root.owner, None);
    }

    #[test]
    fn embedded_defaults_are_validated_too() {
        let users = FakeUsers {
            homes: vec![Home {
                user: "odd".into(),
                path: "/tmp/adf-worktrees/odd".into(),
            }],
        };
        let dir = TempDir::new().expect("tempdir");
        let e = Config::load_from(None, None, &dir.path().join("absent"), &users)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "embedded defaults:6: root[0].path: \"/tmp/adf-worktrees\" contains the home \
                 directory of user \"odd\" (/tmp/adf-worktrees/odd); a root must be a directory \
                 of its own such as /var/lib/agents/worktrees"
            )
        );
    }

    #[test]
    fn explicit_beats_env_beats_default_path() {
        let dir = TempDir::new().expect("tempdir");
        let flag = write(&dir, "flag.toml", &format!("backlog_warn = 1\n{GOOD}"));
        let env = write(&dir, "env.toml", &format!("backlog_warn = 2\n{GOOD}"));
        let default = write(&dir, "default.toml", &format!("backlog_warn = 3\n{GOOD}"));
        let users = FakeUsers::new();
        let chosen = |explicit: Option<&Path>, env: Option<&OsStr>| {
            Config::load_from(explicit, env, &default, &users)
                .map(|c| (c.backlog_warn, c.source))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            chosen(Some(&flag), Some(env.as_os_str())),
            (1, Source::File(flag.clone()))
        );
        assert_eq!(chosen(Some(&flag), None), (1, Source::File(flag.clone())));
        assert_eq!(
            chosen(None, Some(env.as_os_str())),
            (2, Source::File(env.clone()))
        );
        assert_eq!(chosen(None, None), (3, Source::File(default.clone())));
        assert_eq!(
            chosen(None, Some(OsStr::new(""))),
            (3, Source::File(default.clone()))
        );
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error() {
        let dir = TempDir::new().expect("tempdir");
        let missing = dir.path().join("missing.toml");
        let absent_default = dir.path().join("absent-default.toml");
        let users = FakeUsers::new();
        let by_flag = Config::load_from(Some(&missing), None, &absent_default, &users)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            by_flag,
            Some(format!(
                "{}: configuration file does not exist (named by --config)",
                missing.display()
            ))
        );
        let by_env = Config::load_from(None, Some(missing.as_os_str()), &absent_default, &users)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            by_env,
            Some(format!(
                "{}: configuration file does not exist (named by TREEWARD_CONFIG)",
                missing.display()
            ))
        );
    }

    #[test]
    fn an_unreadable_or_dangling_default_file_is_an_error() {
        let dir = TempDir::new().expect("tempdir");
        let users = FakeUsers::new();
        // A directory where the file should be cannot be read, even by root.
        let e = Config::load_from(None, None, dir.path(), &users).err();
        let shown = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            shown.starts_with(&format!(
                "{}: cannot read configuration file: ",
                dir.path().display()
            )),
            "{shown}"
        );
        let link = dir.path().join("config.toml");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).expect("symlink");
        let e = Config::load_from(None, None, &link, &users).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(format!(
                "{}: configuration file is a symlink to nothing",
                link.display()
            ))
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line() {
        let dir = TempDir::new().expect("tempdir");
        let path = dir.path().join("config.toml");
        fs::write(&path, b"backlog_warn = 1\n# caf\xe9\n").expect("write");
        let e = load_file(&path).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(format!("{}:2: not valid UTF-8", path.display()))
        );
    }

    #[test]
    fn the_error_reads_as_documented() {
        let text = "ledger = \"/var/lib/treeward/ledger.json\"\n\n[[root]]\npath = \"/srv/a/b\"\npatterns = [\"*\"]\n[[root]]\npath = \"/var\"\npatterns = [\"*\"]\n";
        let e = Config::from_toml(
            text,
            Source::File(PathBuf::from("/etc/treeward/config.toml")),
            &FakeUsers::new(),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "/etc/treeward/config.toml:7: root[1].path: \"/var\" is a top-level system \
                 directory; a root must be a directory of its own such as /var/lib/agents/worktrees"
            )
        );
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let (path, e) = refusal("backlog_warn = 1\nledger = \n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key, None);
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: TOML syntax: ", path.display())),
            "{e}"
        );
        let (_, e) = refusal(&format!("{GOOD}path = \"/srv/x/y\"\n"));
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("duplicate key"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert_refused(
            &format!("bogus = 1\n{GOOD}"),
            1,
            "bogus",
            "unknown key `bogus`",
        );
        assert_refused(
            &format!("{GOOD}\n[[root]]\npath = \"/srv/x/y\"\npatterns = [\"*\"]\ngarce = \"1h\"\n"),
            8,
            "root[1].garce",
            "unknown key `garce`; expected one of `path`, `patterns`",
        );
        assert_refused(
            &format!("{GOOD}[root.sub]\nq = 1\n"),
            4,
            "root[0].sub",
            "unknown key `sub`",
        );
    }

    #[test]
    fn missing_required_keys_are_refused() {
        assert_refused(
            &format!("{GOOD}\n[[root]]\npatterns = [\"*\"]\n"),
            5,
            "root[1].path",
            "required key is missing",
        );
        assert_refused(
            "\n[[root]]\npath = \"/srv/x/y\"\n",
            2,
            "root[0].patterns",
            "required key is missing",
        );
        let (path, e) = refusal("backlog_warn = 3\n");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: root: no [[root]] table; a configuration file must name at least one root \
                 (the embedded defaults apply only when there is no file)",
                path.display()
            )
        );
        assert_refused("root = []\n", 1, "root", "no [[root]] table");
    }

    #[test]
    fn wrong_types_are_refused() {
        assert_refused(
            &format!("backlog_warn = \"x\"\n{GOOD}"),
            1,
            "backlog_warn",
            "invalid type: string \"x\"",
        );
        assert_refused(
            &format!("ledger = 5\n{GOOD}"),
            1,
            "ledger",
            "expected a string",
        );
        assert_refused(
            &format!("hook_record_anywhere = 1\n{GOOD}"),
            1,
            "hook_record_anywhere",
            "expected a boolean",
        );
        assert_refused(
            &root_with("sweep = \"yes\""),
            4,
            "root[0].sweep",
            "expected a boolean",
        );
        assert_refused(
            &root_with("grace = 3600"),
            4,
            "root[0].grace",
            "expected a string",
        );
        assert_refused(
            "[[root]]\npath = \"/srv/x/y\"\npatterns = \"*\"\n",
            3,
            "root[0].patterns",
            "expected a sequence",
        );
        assert_refused(
            "[[root]]\npath = \"/srv/x/y\"\npatterns = [\"*\", 3]\n",
            3,
            "root[0].patterns[1]",
            "invalid type: integer `3`",
        );
        assert_refused(
            "\n[root]\npath = \"/srv/x/y\"\npatterns = [\"*\"]\n",
            2,
            "root",
            "write each root as a [[root]] table",
        );
        assert_refused(
            &format!("backlog_warn = -1\n{GOOD}"),
            1,
            "backlog_warn",
            "-1 is negative",
        );
    }

    #[test]
    fn bad_durations_are_refused() {
        for (grace, fragment) in [
            ("", "empty duration"),
            ("90", "has no unit"),
            ("2w", "unknown unit \"w\""),
            ("-1h", "is negative"),
            ("99999999999999999999d", "too large"),
        ] {
            assert_refused(
                &root_with(&format!("grace = {grace:?}")),
                4,
                "root[0].grace",
                fragment,
            );
        }
        let config = load_text(&root_with("grace = \"90s\"")).1;
        assert_eq!(
            config.map(|c| c.roots[0].grace).ok(),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn bad_globs_are_refused() {
        let with_patterns = |p: &str| format!("[[root]]\npath = \"/srv/x/y\"\npatterns = {p}\n");
        assert_refused(&with_patterns("[]"), 3, "root[0].patterns", "empty list");
        assert_refused(
            &with_patterns("[\"ok-*\", \"\"]"),
            3,
            "root[0].patterns[1]",
            "empty pattern",
        );
        assert_refused(
            &with_patterns("[\"a/*\"]"),
            3,
            "root[0].patterns[0]",
            "contains \"/\"",
        );
        assert_refused(
            &with_patterns("[\"[sess\"]"),
            3,
            "root[0].patterns[0]",
            "\"[sess\" is not a valid glob",
        );
    }

    #[test]
    fn bad_root_paths_are_refused() {
        let with_path = |p: &str| format!("\n[[root]]\npath = {p:?}\npatterns = [\"*\"]\n");
        for (path, fragment) in [
            ("srv/x/y", "\"srv/x/y\" is relative"),
            ("/srv/x/y/", "is not normalised"),
            ("/srv//x", "is not normalised"),
            ("/srv/./x", "\".\" component"),
            ("/srv/x/../y", "\"..\" component"),
            ("/", "\"/\" is the filesystem root"),
            ("/var", "\"/var\" is a top-level system directory"),
            ("/home", "is a top-level system directory"),
            ("/tmp", "is a top-level system directory"),
            ("/root", "is a top-level system directory"),
            ("/home/alice", "\"/home/alice\" is a home directory"),
            ("/srv/people/bob", "is the home directory of user \"bob\""),
            (
                "/srv/people",
                "contains the home directory of user \"bob\" (/srv/people/bob)",
            ),
        ] {
            assert_refused(&with_path(path), 3, "root[0].path", fragment);
        }
    }

    #[test]
    fn overlapping_roots_are_refused() {
        let two = |a: &str, b: &str| {
            format!("[[root]]\npath = {a:?}\npatterns = [\"*\"]\n[[root]]\npath = {b:?}\npatterns = [\"*\"]\n")
        };
        assert_refused(
            &two("/srv/a", "/srv/a"),
            5,
            "root[1].path",
            "\"/srv/a\" is also root[0] \"/srv/a\" (line 2); roots must not overlap",
        );
        assert_refused(
            &two("/srv/a", "/srv/a/b"),
            5,
            "root[1].path",
            "is inside root[0]",
        );
        assert_refused(
            &two("/srv/a/b", "/srv/a"),
            5,
            "root[1].path",
            "contains root[0]",
        );
        let apart = load_text(&two("/srv/a", "/srv/ab")).1;
        assert_eq!(
            apart.map(|c| c.roots.len()).ok(),
            Some(2),
            "/srv/ab is not inside /srv/a"
        );
    }

    #[test]
    fn unknown_owners_and_policies_are_refused() {
        assert_refused(
            &root_with("owner = \"mallory\""),
            4,
            "root[0].owner",
            "unknown user \"mallory\"",
        );
        assert_refused(
            &root_with("policy = \"delete\""),
            4,
            "root[0].policy",
            "unknown policy \"delete\"",
        );
    }

    #[test]
    fn metrics_name_a_directory_outside_the_roots() {
        assert_refused(
            &format!("metrics = \"prom\"\n{GOOD}"),
            1,
            "metrics",
            "is relative",
        );
        assert_refused(
            &format!("metrics = \"/var/lib/agents/worktrees/prom\"\n{GOOD}"),
            1,
            "metrics",
            "keep the metrics outside every root",
        );
        let text = format!("metrics = \"/var/lib/prometheus/node-exporter\"\n{GOOD}");
        let config = Config::from_toml(&text, Source::Embedded, &FakeUsers::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.metrics.as_deref(),
            Some(Path::new("/var/lib/prometheus/node-exporter"))
        );
    }

    #[test]
    fn bad_ledgers_are_refused() {
        assert_refused(
            &format!("ledger = \"ledger.json\"\n{GOOD}"),
            1,
            "ledger",
            "is relative",
        );
        assert_refused(
            &format!("ledger = \"/var/lib/agents/worktrees/ledger.json\"\n{GOOD}"),
            1,
            "ledger",
            "is inside root[0] \"/var/lib/agents/worktrees\"",
        );
    }

    #[test]
    fn policies_owners_and_flags_are_read() {
        let text = "backlog_warn = 0\nhook_record_anywhere = true\n[[root]]\npath = \"/srv/x/y\"\n\
                    patterns = [\"*\"]\nsweep = false\nreap = false\ngrace = \"2d\"\n\
                    policy = \"discard\"\nowner = \"agent\"\n[[root]]\npath = \"/srv/z/w\"\n\
                    patterns = [\"*\"]\npolicy = \"keep\"\n";
        let config = Config::from_toml(text, Source::Embedded, &FakeUsers::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.backlog_warn, 0);
        assert!(config.hook_record_anywhere);
        let r = &config.roots[0];
        assert!(!r.sweep && !r.reap);
        assert_eq!(r.grace, Duration::from_secs(2 * 86_400));
        assert_eq!(r.policy, Policy::Discard);
        assert_eq!(r.owner.as_ref().map(|o| o.uid), Some(4242));
        assert_eq!(config.roots[1].policy, Policy::Keep);
    }

    fn two_roots() -> Config {
        let text = "[[root]]\npath = \"/srv/agents/a\"\npatterns = [\"review-*\", \"sess-?\"]\n\
                    [[root]]\npath = \"/srv/agents/b\"\npatterns = [\"*\"]\n";
        Config::from_toml(text, Source::Embedded, &FakeUsers::new())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn owns_matches_entry_names_against_the_patterns() {
        use std::os::unix::ffi::OsStrExt;
        let config = two_roots();
        let (narrow, all) = (&config.roots[0], &config.roots[1]);
        assert!(narrow.owns(OsStr::new("review-42")));
        assert!(narrow.owns(OsStr::new("sess-x")));
        assert!(!narrow.owns(OsStr::new("sess-xy")));
        assert!(!narrow.owns(OsStr::new("Review-42")), "case-sensitive");
        assert!(!narrow.owns(OsStr::new("other")));
        assert!(all.owns(OsStr::new("anything")));
        assert!(all.owns(OsStr::new(".hidden")), "\"*\" owns dot names too");
        for not_a_name in ["", ".", "..", "a/b"] {
            assert!(!all.owns(OsStr::new(not_a_name)), "{not_a_name:?}");
        }
        let latin1 = OsStr::from_bytes(b"review-caf\xe9");
        assert!(
            !narrow.owns(latin1),
            "a narrow pattern never claims a non-UTF-8 name"
        );
        assert!(all.owns(latin1), "\"*\" claims every name");
    }

    #[test]
    fn entry_of_finds_the_direct_child_of_a_root() {
        let config = two_roots();
        let found = |p: &str| {
            config
                .entry_of(Path::new(p))
                .map(|(root, name)| (root.path.clone(), name))
        };
        assert_eq!(
            found("/srv/agents/a/review-1"),
            Some((PathBuf::from("/srv/agents/a"), OsString::from("review-1")))
        );
        assert_eq!(
            found("/srv/agents/b/x"),
            Some((PathBuf::from("/srv/agents/b"), OsString::from("x")))
        );
        assert_eq!(
            found("/srv/agents/a/other"),
            None,
            "not matched by the patterns"
        );
        assert_eq!(
            found("/srv/agents/a/review-1/sub"),
            None,
            "not a direct child"
        );
        assert_eq!(found("/srv/agents/a"), None, "a root is not its own entry");
        assert_eq!(found("/srv/agents/b/x/.."), None);
        assert_eq!(
            found("/srv/agents/b/../b/x"),
            None,
            "purely lexical: `..` is not resolved"
        );
        assert_eq!(found("srv/agents/b/x"), None, "relative");
        assert_eq!(found("/srv/agents/c/x"), None);
    }

    #[test]
    fn root_trusts_only_files_only_root_can_change() {
        assert!(trusted(0, 0, 0o100644).is_ok());
        assert!(trusted(0, 0, 0o100600).is_ok());
        assert!(trusted(0, 1000, 0o100644)
            .unwrap_err()
            .contains("owned by uid 1000"));
        assert!(trusted(0, 0, 0o100664)
            .unwrap_err()
            .contains("writable by group or others"));
        assert!(trusted(0, 0, 0o100646).is_err());
        assert!(
            trusted(1000, 1000, 0o100666).is_ok(),
            "other users read what they can"
        );
    }
}
