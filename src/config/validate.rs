//! Step two of loading: the raw TOML checked and turned into a [`Config`].
//!
//! Every rule that keeps a privileged cleanup from being aimed at the wrong
//! place lives here: roots are absolute, normalised, not `/`, not a
//! top-level directory, not a home directory nor above one, and never
//! overlap. The first violation ends validation with one [`ConfigError`]
//! naming the file, line and key. Lexical only: the filesystem is not
//! consulted (that is the roots module's job when it opens a root).

use super::duration::parse_duration;
use super::locate::line_of;
use super::raw::{RawConfig, RawRoot};
use super::users::UsersError;
use super::users::{Home, UserDb};
use super::{Config, ConfigError, Owner, Policy, Root, Source};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Default `ledger`.
pub const DEFAULT_LEDGER: &str = "/var/lib/treeward/ledger.json";
/// Default `backlog_warn`.
pub const DEFAULT_BACKLOG_WARN: u64 = 10;
/// Default `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

/// An example of a good root, quoted by messages about bad ones.
const GOOD_ROOT: &str = "/var/lib/agents/worktrees";

/// The text being validated and where it came from, for error messages.
pub(super) struct Doc<'a> {
    pub source: &'a Source,
    pub text: &'a str,
}

impl Doc<'_> {
    /// An error at byte `span.start` of the text, about `key`.
    fn error(&self, span: Range<usize>, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            line: Some(self.line(&span)),
            key: Some(key.to_owned()),
            message: message.to_string(),
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }
}

/// Checks `raw` and builds the [`Config`] it describes.
pub(super) fn validate(
    raw: RawConfig,
    doc: &Doc<'_>,
    users: &dyn UserDb,
) -> Result<Config, ConfigError> {
    let ledger = match &raw.ledger {
        None => PathBuf::from(DEFAULT_LEDGER),
        Some(path) => {
            check_absolute_normalised(
                path.get_ref(),
                "the ledger",
                "/var/lib/treeward/ledger.json",
            )
            .map_err(|m| doc.error(path.span(), "ledger", m))?;
            PathBuf::from(path.get_ref())
        }
    };
    let backlog_warn = match &raw.backlog_warn {
        None => DEFAULT_BACKLOG_WARN,
        Some(n) => u64::try_from(*n.get_ref()).map_err(|_| {
            doc.error(
                n.span(),
                "backlog_warn",
                format!("{} is negative; expected an integer >= 0", n.get_ref()),
            )
        })?,
    };
    let metrics = match &raw.metrics {
        None => None,
        Some(dir) => {
            check_absolute_normalised(
                dir.get_ref(),
                "the metrics directory",
                "/var/lib/prometheus/node-exporter",
            )
            .map_err(|m| doc.error(dir.span(), "metrics", m))?;
            Some(PathBuf::from(dir.get_ref()))
        }
    };
    let roots = validate_roots(raw.root, doc, users)?;
    check_outside_roots(&ledger, "ledger", raw.ledger.as_ref(), &roots, doc)?;
    if let Some(dir) = &metrics {
        check_outside_roots(dir, "metrics", raw.metrics.as_ref(), &roots, doc)?;
    }
    Ok(Config {
        source: doc.source.clone(),
        ledger,
        backlog_warn,
        hook_record_anywhere: raw.hook_record_anywhere.unwrap_or(false),
        metrics,
        roots: roots.into_iter().map(|(root, _)| root).collect(),
    })
}

/// All `[[root]]` tables, each with the span of its `path` value.
fn validate_roots(
    raw: Option<Spanned<Vec<Spanned<RawRoot>>>>,
    doc: &Doc<'_>,
    users: &dyn UserDb,
) -> Result<Vec<(Root, Range<usize>)>, ConfigError> {
    const NONE: &str = "no [[root]] table; a configuration file must name at least one root \
                        (the embedded defaults apply only when there is no file)";
    let Some(raw) = raw else {
        return Err(ConfigError {
            file: doc.source.clone(),
            line: None,
            key: Some("root".into()),
            message: NONE.into(),
        });
    };
    if raw.get_ref().is_empty() {
        return Err(doc.error(raw.span(), "root", NONE));
    }
    let homes = users.homes().map_err(|e| ConfigError {
        file: doc.source.clone(),
        line: None,
        key: None,
        message: e.to_string(),
    })?;
    let mut roots: Vec<(Root, Range<usize>)> = Vec::new();
    for (i, raw_root) in raw.into_inner().into_iter().enumerate() {
        let key = format!("root[{i}]");
        let raw_root = raw_root.into_inner();
        let path_span = raw_root.path.span();
        let root = validate_root(raw_root, &key, doc, users, &homes)?;
        check_no_overlap(&root.path, &path_span, &key, &roots, doc)?;
        roots.push((root, path_span));
    }
    Ok(roots)
}

/// One `[[root]]` table, `key` being `root[i]`.
fn validate_root(
    raw: RawRoot,
    key: &str,
    doc: &Doc<'_>,
    users: &dyn UserDb,
    homes: &[Home],
) -> Result<Root, ConfigError> {
    let path = raw.path.get_ref();
    check_root_path(path, homes)
        .map_err(|m| doc.error(raw.path.span(), &format!("{key}.path"), m))?;
    let patterns = validate_patterns(&raw.patterns, key, doc)?;
    let grace = match &raw.grace {
        None => DEFAULT_GRACE,
        Some(text) => parse_duration(text.get_ref())
            .map_err(|m| doc.error(text.span(), &format!("{key}.grace"), m))?,
    };
    let policy = match &raw.policy {
        None => Policy::Preserve,
        Some(text) => parse_policy(text.get_ref())
            .map_err(|m| doc.error(text.span(), &format!("{key}.policy"), m))?,
    };
    let owner = match &raw.owner {
        None => None,
        Some(name) => Some(
            resolve_owner(name.get_ref(), users)
                .map_err(|m| doc.error(name.span(), &format!("{key}.owner"), m))?,
        ),
    };
    Ok(Root {
        path: PathBuf::from(path),
        patterns,
        sweep: raw.sweep.unwrap_or(true),
        reap: raw.reap.unwrap_or(true),
        grace,
        policy,
        owner,
    })
}

/// Why a path in the configuration is not written as it must be: absolute
/// and already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    Empty {
        /// What the path is, such as `a root`.
        what: &'static str,
        /// A good path, quoted by the message.
        example: &'static str,
    },
    /// The path holds a NUL character.
    Nul(String),
    /// The path is relative.
    Relative {
        /// The path.
        path: String,
        /// What the path is, such as `a root`.
        what: &'static str,
        /// A good path, quoted by the message.
        example: &'static str,
    },
    /// The path has a `.`, `..` or empty component.
    NotNormalised {
        /// The path.
        path: String,
        /// The component, in words.
        problem: &'static str,
        /// A good path, quoted by the message.
        example: &'static str,
    },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty { what, example } => write!(
                f,
                "empty path; {what} must be an absolute path such as {example}"
            ),
            PathError::Nul(path) => write!(f, "{path:?} contains a NUL character"),
            PathError::Relative {
                path,
                what,
                example,
            } => write!(
                f,
                "{path:?} is relative; {what} must be an absolute path such as {example}"
            ),
            PathError::NotNormalised {
                path,
                problem,
                example,
            } => write!(
                f,
                "{path:?} is not normalised: it has {problem}; write the path as it is, such as {example}"
            ),
        }
    }
}

impl std::error::Error for PathError {}

/// Why a path cannot be a root: the configuration's refusal, repeated where
/// a root is opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum RootPathError {
    /// The path is not UTF-8 text.
    NotText(PathBuf),
    /// The home directories could not be read.
    Users(UsersError),
    /// The path is not absolute and normalised.
    Path(PathError),
    /// The path is `/`.
    FilesystemRoot,
    /// The path is a top-level directory, such as `/usr`.
    TopLevel(String),
    /// The path is directly under `/home`.
    UnderHome(String),
    /// The path is, or contains, a user's home directory.
    Home {
        /// The path.
        path: String,
        /// Whether it contains the home directory (else it is one).
        contains: bool,
        /// The user.
        user: String,
        /// The user's home directory.
        home: PathBuf,
    },
}

impl fmt::Display for RootPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootPathError::NotText(path) => {
                write!(f, "{path:?} is not text; a root is a path written in TOML")
            }
            RootPathError::Users(e) => write!(f, "{e}"),
            RootPathError::Path(e) => write!(f, "{e}"),
            RootPathError::FilesystemRoot => write!(
                f,
                "\"/\" is the filesystem root; a root must be a directory of its own such as {GOOD_ROOT}"
            ),
            RootPathError::TopLevel(path) => write!(
                f,
                "{path:?} is a top-level system directory; a root must be a directory of its own such as {GOOD_ROOT}"
            ),
            RootPathError::UnderHome(path) => write!(
                f,
                "{path:?} is a home directory (it is directly under /home); a root must be a directory of its own such as {GOOD_ROOT}"
            ),
            RootPathError::Home {
                path,
                contains,
                user,
                home,
            } => {
                let relation = if *contains { "contains" } else { "is" };
                write!(
                    f,
                    "{path:?} {relation} the home directory of user {user:?} ({}); a root must be a directory of its own such as {GOOD_ROOT}",
                    home.display()
                )
            }
        }
    }
}

impl std::error::Error for RootPathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RootPathError::Users(e) => Some(e),
            RootPathError::Path(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PathError> for RootPathError {
    fn from(e: PathError) -> RootPathError {
        RootPathError::Path(e)
    }
}

/// Why `path` cannot be written as it is, if it cannot: it must be
/// absolute and already normalised (no `.`, `..`, `//`, trailing `/`).
/// `what` and `example` phrase the message.
fn check_absolute_normalised(
    path: &str,
    what: &'static str,
    example: &'static str,
) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty { what, example });
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_owned()));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::Relative {
            path: path.to_owned(),
            what,
            example,
        });
    };
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        let problem = match component {
            "" => "an empty component (\"//\" or a trailing \"/\")",
            "." => "a \".\" component",
            ".." => "a \"..\" component",
            _ => continue,
        };
        return Err(PathError::NotNormalised {
            path: path.to_owned(),
            problem,
            example,
        });
    }
    Ok(())
}

/// Why `path` cannot be a root, if it cannot: the same refusal as the
/// configuration's, for the code that opens a root (so that no way of
/// building a [`super::Root`] sweeps `/usr` or a home directory).
pub fn check_root(path: &Path) -> Result<(), RootPathError> {
    let text = path
        .to_str()
        .ok_or_else(|| RootPathError::NotText(path.to_path_buf()))?;
    let homes = super::SystemUsers.homes().map_err(RootPathError::Users)?;
    check_root_path(text, &homes)
}

/// Why `path` cannot be a root, if it cannot.
fn check_root_path(path: &str, homes: &[Home]) -> Result<(), RootPathError> {
    check_absolute_normalised(path, "a root", GOOD_ROOT)?;
    let p = Path::new(path);
    let depth = p
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    if depth == 0 {
        return Err(RootPathError::FilesystemRoot);
    }
    if depth == 1 {
        return Err(RootPathError::TopLevel(path.to_owned()));
    }
    if p.parent() == Some(Path::new("/home")) {
        return Err(RootPathError::UnderHome(path.to_owned()));
    }
    if let Some(home) = homes.iter().find(|h| h.path.starts_with(p)) {
        return Err(RootPathError::Home {
            path: path.to_owned(),
            contains: home.path != p,
            user: home.user.clone(),
            home: home.path.clone(),
        });
    }
    Ok(())
}

/// The compiled `patterns` of root `key`.
fn validate_patterns(
    raw: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    doc: &Doc<'_>,
) -> Result<Vec<glob::Pattern>, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(doc.error(
            raw.span(),
            &format!("{key}.patterns"),
            "empty list; name the entries this root owns, such as [\"sess-*\"], or [\"*\"] for all",
        ));
    }
    raw.get_ref()
        .iter()
        .enumerate()
        .map(|(j, pattern)| {
            compile_pattern(pattern.get_ref())
                .map_err(|m| doc.error(pattern.span(), &format!("{key}.patterns[{j}]"), m))
        })
        .collect()
}

/// Why a value of a root's table is refused (never leaves this module: it
/// becomes the message of a [`ConfigError`]).
#[derive(Debug)]
enum ValueError {
    /// An empty pattern.
    EmptyPattern,
    /// A pattern with a `/`.
    PatternSlash(String),
    /// A pattern that is not a glob.
    Glob {
        text: String,
        error: glob::PatternError,
    },
    /// A policy other than the three.
    UnknownPolicy(String),
    /// An owner that is neither a user nor a number.
    UnknownUser(String),
    /// The user database failed.
    Users(UsersError),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::EmptyPattern => f.write_str("empty pattern; use \"*\" to own every entry"),
            ValueError::PatternSlash(text) => write!(
                f,
                "{text:?} contains \"/\"; a pattern matches an entry name directly under the root, not a path"
            ),
            ValueError::Glob { text, error } => write!(
                f,
                "{text:?} is not a valid glob: {} at character {}",
                error.msg, error.pos
            ),
            ValueError::UnknownPolicy(other) => write!(
                f,
                "unknown policy {other:?}; expected \"preserve\", \"keep\" or \"discard\""
            ),
            ValueError::UnknownUser(name) => write!(
                f,
                "unknown user {name:?}: not in the passwd database (a numeric uid is accepted too)"
            ),
            ValueError::Users(e) => write!(f, "{e}"),
        }
    }
}

/// An entry-name glob, or why it is not one.
fn compile_pattern(text: &str) -> Result<glob::Pattern, ValueError> {
    if text.is_empty() {
        return Err(ValueError::EmptyPattern);
    }
    if text.contains('/') {
        return Err(ValueError::PatternSlash(text.to_owned()));
    }
    glob::Pattern::new(text).map_err(|error| ValueError::Glob {
        text: text.to_owned(),
        error,
    })
}

/// `preserve` | `keep` | `discard`.
fn parse_policy(text: &str) -> Result<Policy, ValueError> {
    match text {
        "preserve" => Ok(Policy::Preserve),
        "keep" => Ok(Policy::Keep),
        "discard" => Ok(Policy::Discard),
        other => Err(ValueError::UnknownPolicy(other.to_owned())),
    }
}

/// The account named by `owner`; a number that names no account is taken
/// as a uid (hosts whose agents run under uids without a passwd entry, as
/// `chown` takes them), with the group of the same number.
fn resolve_owner(name: &str, users: &dyn UserDb) -> Result<Owner, ValueError> {
    match users.owner(name).map_err(ValueError::Users)? {
        Some(owner) => Ok(owner),
        None => match name.parse::<u32>() {
            Ok(uid) => Ok(Owner {
                name: name.to_owned(),
                uid,
                gid: uid,
            }),
            Err(_) => Err(ValueError::UnknownUser(name.to_owned())),
        },
    }
}

/// Refuses `path` (of root `key`) if it equals, lies inside, or contains
/// any root already accepted.
fn check_no_overlap(
    path: &Path,
    span: &Range<usize>,
    key: &str,
    earlier: &[(Root, Range<usize>)],
    doc: &Doc<'_>,
) -> Result<(), ConfigError> {
    for (i, (other, other_span)) in earlier.iter().enumerate() {
        let relation = if path == other.path {
            "is also"
        } else if path.starts_with(&other.path) {
            "is inside"
        } else if other.path.starts_with(path) {
            "contains"
        } else {
            continue;
        };
        return Err(doc.error(
            span.clone(),
            &format!("{key}.path"),
            format!(
                "{:?} {relation} root[{i}] {:?} (line {}); roots must not overlap",
                path.display().to_string(),
                other.path.display().to_string(),
                doc.line(other_span)
            ),
        ));
    }
    Ok(())
}

/// Refuses a path (`key`: the ledger, the metrics directory) inside a root,
/// where a sweep could delete it.
fn check_outside_roots(
    ledger: &Path,
    key: &str,
    raw: Option<&Spanned<String>>,
    roots: &[(Root, Range<usize>)],
    doc: &Doc<'_>,
) -> Result<(), ConfigError> {
    let Some((i, (root, _))) = roots
        .iter()
        .enumerate()
        .find(|(_, (root, _))| ledger.starts_with(&root.path))
    else {
        return Ok(());
    };
    let message = format!(
        "{:?} is inside root[{i}] {:?}, where a sweep could remove it; keep the {key} outside every root",
        ledger.display().to_string(),
        root.path.display().to_string()
    );
    Err(match raw {
        Some(raw) => doc.error(raw.span(), key, message),
        None => ConfigError {
            file: doc.source.clone(),
            line: None,
            key: Some(key.into()),
            message: format!("the default {key} {message}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_paths_must_be_absolute_and_normalised() {
        assert_eq!(
            check_root_path("/var/lib/agents/worktrees", &[]).map_err(|e| e.to_string()),
            Ok(())
        );
        let refusal = |p: &str| {
            check_root_path(p, &[])
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
        };
        assert!(refusal("var/lib/x").contains("is relative"));
        assert!(refusal("").contains("empty path"));
        assert!(refusal("/var/lib/x/").contains("empty component"));
        assert!(refusal("/var//lib/x").contains("empty component"));
        assert!(refusal("/var/lib/./x").contains("\".\" component"));
        assert!(refusal("/var/lib/x/..").contains("\"..\" component"));
        assert!(refusal("/var/lib\0/x").contains("NUL"));
    }

    #[test]
    fn root_paths_refuse_system_and_home_directories() {
        let homes = [
            Home {
                user: "root".into(),
                path: "/root".into(),
            },
            Home {
                user: "bob".into(),
                path: "/srv/people/bob".into(),
            },
        ];
        let refusal = |p: &str| {
            check_root_path(p, &homes)
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
        };
        assert!(refusal("/").contains("filesystem root"));
        for top in [
            "/usr",
            "/etc",
            "/var",
            "/home",
            "/tmp",
            "/root",
            "/opt",
            "/anything",
        ] {
            assert!(refusal(top).contains("top-level system directory"), "{top}");
        }
        assert!(refusal("/home/alice").contains("directly under /home"));
        assert!(refusal("/srv/people/bob").contains("is the home directory of user \"bob\""));
        assert!(refusal("/srv/people").contains("contains the home directory of user \"bob\""));
        assert_eq!(
            check_root_path("/srv/people/bob/worktrees", &homes).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(
            check_root_path("/srv/peoplex", &homes).map_err(|e| e.to_string()),
            Ok(())
        );
    }

    #[test]
    fn patterns_must_be_entry_name_globs() {
        assert!(compile_pattern("sess-*").is_ok());
        let refusal = |p: &str| {
            compile_pattern(p)
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
        };
        assert!(refusal("").contains("empty pattern"));
        assert!(refusal("a/*").contains("contains \"/\""));
        assert!(refusal("[a").contains("is not a valid glob"));
        assert!(refusal("***").contains("is not a valid glob"));
    }
}
