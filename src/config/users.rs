//! The user accounts validation needs: resolving `owner = "name"` to a
//! uid/gid, and the home directories a root must never be or contain.
//!
//! Behind a trait so that tests (and orchestrators embedding the library)
//! can validate a configuration that names users this host does not have.
//! A failed lookup is an error value, never a silent "no such user".

use super::Owner;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A user's home directory, named for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub user: String,
    pub path: PathBuf,
}

/// Why the user database could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum UsersError {
    /// `getpwnam_r` failed for `name`.
    Lookup {
        /// The name looked up.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// [`PASSWD`] could not be read for its home directories.
    Passwd(io::Error),
    /// Another [`UserDb`]'s own failure (an embedder's user database).
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Lookup { name, source } => {
                write!(f, "cannot look up user {name:?}: {source}")
            }
            UsersError::Passwd(e) => write!(
                f,
                "cannot read {PASSWD} to check roots against home directories: {e}"
            ),
            UsersError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UsersError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UsersError::Lookup { source, .. } => Some(source),
            UsersError::Passwd(e) => Some(e),
            UsersError::Other(e) => Some(&**e),
        }
    }
}

/// Where validation looks users up.
pub trait UserDb {
    /// The account called `name`, `Ok(None)` if there is none.
    fn owner(&self, name: &str) -> Result<Option<Owner>, UsersError>;
    /// Every home directory this host knows of.
    fn homes(&self) -> Result<Vec<Home>, UsersError>;
}

/// The host's passwd database: `getpwnam_r` (so NSS sources such as LDAP
/// resolve owners) and, for home directories, `/etc/passwd`, the one
/// source that can be enumerated without `getpwent`'s global state.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemUsers;

/// The file [`SystemUsers::homes`] reads.
pub const PASSWD: &str = "/etc/passwd";

impl UserDb for SystemUsers {
    fn owner(&self, name: &str) -> Result<Option<Owner>, UsersError> {
        match nix::unistd::User::from_name(name) {
            Ok(user) => Ok(user.map(|u| Owner {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            })),
            Err(source) => Err(UsersError::Lookup {
                name: name.to_owned(),
                source,
            }),
        }
    }

    fn homes(&self) -> Result<Vec<Home>, UsersError> {
        match std::fs::read(PASSWD) {
            Ok(bytes) => Ok(parse_passwd(&String::from_utf8_lossy(&bytes))),
            Err(e) => Err(UsersError::Passwd(e)),
        }
    }
}

/// The home directories in passwd(5) text. Comments, blank and malformed
/// lines, and relative or empty home fields are skipped.
pub fn parse_passwd(text: &str) -> Vec<Home> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [user, _, _, _, _, home, ..] if home.starts_with('/') && !user.is_empty() => {
                    Some(Home {
                        user: (*user).to_owned(),
                        path: PathBuf::from(home),
                    })
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_passwd_reads_homes_and_skips_junk() {
        let text = "# comment\n\
                    root:x:0:0:root:/root:/bin/bash\n\
                    \n\
                    alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
                    broken:line\n\
                    nohome:x:5:5::relative/dir:/bin/sh\n\
                    +nis\n";
        assert_eq!(
            parse_passwd(text),
            vec![
                Home {
                    user: "root".into(),
                    path: "/root".into()
                },
                Home {
                    user: "alice".into(),
                    path: "/home/alice".into()
                },
            ]
        );
    }

    #[test]
    fn system_users_resolve_root_and_refuse_unknown_names() {
        let root = SystemUsers.owner("root").unwrap();
        assert_eq!(
            root,
            Some(Owner {
                name: "root".into(),
                uid: 0,
                gid: 0
            })
        );
        assert_eq!(
            SystemUsers.owner("no-such-user-treeward-test").unwrap(),
            None
        );
        let homes = SystemUsers.homes().unwrap_or_default();
        assert!(
            homes.iter().any(|h| h.user == "root"),
            "root's home is in {PASSWD}: {homes:?}"
        );
    }
}
