//! A [`Config`] built in code by an embedding program, validated exactly as
//! a file is.
//!
//! An orchestrator that links treeward has no TOML file, but it must not get
//! a way around validation either: a `Config` whose roots were never checked
//! could sweep `/usr` under `policy = discard`. So the builder does not fill
//! a `Config` itself. It writes the TOML an operator would have written and
//! hands it to the same two steps as a file ([`Config::from_toml`]), so a
//! built configuration is refused for the same reasons, with the same
//! messages, naming the same keys. Only the line numbers go (they would be
//! lines of text the caller never saw).

use super::{Config, ConfigError, Policy, Source, SystemUsers};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds a [`Config`] in code; see [`Config::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    doc: Doc,
    /// The paths as given, written into `doc` by [`ConfigBuilder::build`]
    /// (a path that is not UTF-8 cannot be written in TOML: it is refused
    /// there, not mangled here).
    ledger: Option<PathBuf>,
    metrics: Option<PathBuf>,
    roots: Vec<RootBuilder>,
}

/// One root of a [`ConfigBuilder`]: the keys of a `[[root]]` table.
#[derive(Debug, Clone)]
#[must_use]
pub struct RootBuilder {
    path: PathBuf,
    table: Table,
}

/// The TOML document the builder writes (the keys of `treeward.toml(5)`).
#[derive(Debug, Clone, Default, Serialize)]
struct Doc {
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backlog_warn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_record_anywhere: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<String>,
    root: Vec<Table>,
}

/// One `[[root]]` table.
#[derive(Debug, Clone, Serialize)]
struct Table {
    path: String,
    patterns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reap: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// A path as TOML text, or the error naming `key` when it is not UTF-8 (a
/// file could not hold it either).
fn text(path: &Path, key: &str) -> Result<String, ConfigError> {
    path.to_str().map(str::to_owned).ok_or_else(|| ConfigError {
        file: Source::Built,
        line: None,
        key: Some(key.to_owned()),
        message: format!("{path:?} is not UTF-8; a path must be written as text"),
    })
}

impl ConfigBuilder {
    /// The ledger file (default `/var/lib/treeward/ledger.json`).
    pub fn ledger(mut self, path: impl Into<PathBuf>) -> ConfigBuilder {
        self.ledger = Some(path.into());
        self
    }

    /// How many entries a pass may find before it warns (default 10).
    pub fn backlog_warn(mut self, entries: u64) -> ConfigBuilder {
        self.doc.backlog_warn = Some(entries);
        self
    }

    /// Whether the hook records worktrees created outside every root.
    pub fn hook_record_anywhere(mut self, yes: bool) -> ConfigBuilder {
        self.doc.hook_record_anywhere = Some(yes);
        self
    }

    /// The directory each pass writes its Prometheus textfile into.
    pub fn metrics(mut self, dir: impl Into<PathBuf>) -> ConfigBuilder {
        self.metrics = Some(dir.into());
        self
    }

    /// Adds a root.
    pub fn root(mut self, root: RootBuilder) -> ConfigBuilder {
        self.roots.push(root);
        self
    }

    /// Validates the configuration as [`Config::from_toml`] validates a file
    /// (owners are looked up in the system's user database).
    pub fn build(mut self) -> Result<Config, ConfigError> {
        if let Some(path) = &self.ledger {
            self.doc.ledger = Some(text(path, "ledger")?);
        }
        if let Some(dir) = &self.metrics {
            self.doc.metrics = Some(text(dir, "metrics")?);
        }
        for (i, root) in self.roots.into_iter().enumerate() {
            let mut table = root.table;
            table.path = text(&root.path, &format!("root[{i}].path"))?;
            self.doc.root.push(table);
        }
        let toml = toml::to_string(&self.doc).map_err(|e| ConfigError {
            file: Source::Built,
            line: None,
            key: None,
            message: format!("cannot be written as TOML: {e}"),
        })?;
        Config::from_toml(&toml, Source::Built, &SystemUsers)
            .map_err(|e| ConfigError { line: None, ..e })
    }
}

impl RootBuilder {
    /// A root at `path` whose every entry (pattern `*`) is treeward's, swept
    /// and reaped with the defaults: grace 1h, policy `preserve`.
    pub fn new(path: impl Into<PathBuf>) -> RootBuilder {
        RootBuilder {
            path: path.into(),
            table: Table {
                path: String::new(),
                patterns: vec!["*".to_owned()],
                sweep: None,
                reap: None,
                grace: None,
                policy: None,
                owner: None,
            },
        }
    }

    /// The glob patterns of the entry names that belong to this root.
    pub fn patterns<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.table.patterns = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the root-run sweep clears this root (default yes).
    pub fn sweep(mut self, yes: bool) -> RootBuilder {
        self.table.sweep = Some(yes);
        self
    }

    /// Whether the reaper reclaims this root's released worktrees (default yes).
    pub fn reap(mut self, yes: bool) -> RootBuilder {
        self.table.reap = Some(yes);
        self
    }

    /// How long an unreleased worktree is left alone, in whole seconds.
    pub fn grace(mut self, grace: Duration) -> RootBuilder {
        self.table.grace = Some(format!("{}s", grace.as_secs()));
        self
    }

    /// What happens to work at risk.
    pub fn policy(mut self, policy: Policy) -> RootBuilder {
        self.table.policy = Some(policy);
        self
    }

    /// The user whose agents own this root's worktrees.
    pub fn owner(mut self, user: impl Into<String>) -> RootBuilder {
        self.table.owner = Some(user.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_root_is_refused_like_a_written_one() {
        let err = Config::builder()
            .root(RootBuilder::new("/usr").policy(Policy::Discard))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration built in code: root[0].path: \"/usr\" is a top-level system \
             directory; a root must be a directory of its own such as /var/lib/agents/worktrees"
        );
        let relative = Config::builder()
            .root(RootBuilder::new("worktrees"))
            .build()
            .unwrap_err();
        assert!(relative.to_string().contains("is relative"), "{relative}");
        let none = Config::builder().build().unwrap_err();
        assert_eq!(none.key.as_deref(), Some("root"), "{none}");
        use std::os::unix::ffi::OsStrExt;
        let mangled = std::ffi::OsStr::from_bytes(b"/var/lib/a\xffb");
        let err = Config::builder()
            .root(RootBuilder::new(mangled))
            .build()
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("root[0].path"), "{err}");
        assert!(err.to_string().contains("is not UTF-8"), "{err}");
    }

    #[test]
    fn a_built_config_holds_what_was_asked() {
        let config = Config::builder()
            .ledger("/var/lib/orchestrator/ledger.json")
            .backlog_warn(3)
            .root(
                RootBuilder::new("/var/lib/agents/worktrees")
                    .patterns(["task-*"])
                    .grace(Duration::from_secs(90))
                    .policy(Policy::Keep)
                    .reap(false),
            )
            .build()
            .unwrap();
        assert_eq!(config.source, Source::Built);
        assert_eq!(
            config.ledger,
            PathBuf::from("/var/lib/orchestrator/ledger.json")
        );
        assert_eq!(config.backlog_warn, 3);
        let root = &config.roots[0];
        assert_eq!(root.path, PathBuf::from("/var/lib/agents/worktrees"));
        assert!(root.owns("task-1".as_ref()) && !root.owns("other".as_ref()));
        assert_eq!(root.grace, Duration::from_secs(90));
        assert_eq!(root.policy, Policy::Keep);
        assert!(root.sweep && !root.reap);
    }
}
