//! Where is the repository of a path? Answered from the filesystem alone,
//! before git is asked anything, so that a directory that is not a
//! worktree, a `.git` file that points nowhere and a repository that is gone
//! each get a clear verdict instead of a git error.

use crate::claim::normalize;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a path is, as far as git is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Nothing at the path.
    Missing,
    /// A symbolic link: never followed; removing it removes only the link.
    Symlink,
    /// A regular file, FIFO, socket or device.
    NotADirectory,
    /// A directory with no `.git` (e.g. a crash between `mkdir` and
    /// `git worktree add`).
    Plain { empty: bool },
    /// A directory whose `.git` is the repository itself (a clone).
    Main { common: PathBuf },
    /// A linked worktree (`git worktree add`).
    Linked {
        /// The worktree's admin dir, `<common>/worktrees/<name>`.
        gitdir: PathBuf,
        common: PathBuf,
        name: String,
    },
    /// A `.git` that points at an admin dir or repository that no longer
    /// exists, or cannot be read.
    Broken { why: String },
}

/// Classifies `path` without following a symlink at `path` itself.
pub fn locate(path: &Path) -> Location {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Location::Missing,
        Err(e) => {
            return Location::Broken {
                why: format!("cannot stat {}: {e}", path.display()),
            }
        }
    };
    if meta.file_type().is_symlink() {
        return Location::Symlink;
    }
    if !meta.is_dir() {
        return Location::NotADirectory;
    }
    let dotgit = path.join(".git");
    match fs::symlink_metadata(&dotgit) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Location::Plain {
            empty: is_empty_dir(path),
        },
        Err(e) => Location::Broken {
            why: format!("cannot stat {}: {e}", dotgit.display()),
        },
        Ok(m) if m.is_dir() => Location::Main { common: dotgit },
        Ok(m) if m.is_file() => locate_gitfile(path, &dotgit),
        Ok(_) => Location::Broken {
            why: format!("{} is neither a file nor a directory", dotgit.display()),
        },
    }
}

/// The worktree a path inside it belongs to, found as git finds it: the
/// nearest directory, from `path` (or the directory holding it) upwards,
/// that holds a `.git`, without crossing into another filesystem (git's
/// discovery stops there too). `None` when `path` is itself such a
/// directory, is a symlink, does not exist, or lies in no worktree: it is
/// then judged as it is ([`locate`]). Used for paths a person names (the
/// checker's arguments), never for the entries of a root, which are judged
/// by what they are.
pub fn discover(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() || fs::symlink_metadata(path.join(".git")).is_ok() {
        return None;
    }
    let dev = meta.dev();
    for dir in path.ancestors().skip(1) {
        let here = fs::symlink_metadata(dir).ok()?;
        if here.dev() != dev {
            return None;
        }
        if fs::symlink_metadata(dir.join(".git")).is_ok() {
            return Some(dir.to_path_buf());
        }
    }
    None
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// The largest `.git` or `commondir` file read.
const MAX_POINTER: u64 = 4096;

/// Reads a small git pointer file without following a symlink at its name,
/// without blocking on a FIFO and without reading more than
/// [`MAX_POINTER`] bytes; the directory above it is opened as the caller
/// named it.
/// Bytes, not text: a worktree's name, and so its admin dir's, may be any
/// bytes but `/` and NUL.
fn read_pointer(dir: &Path, name: &str) -> io::Result<Vec<u8>> {
    let fd = crate::fd::open_dir(dir).map_err(io::Error::from)?;
    match crate::fd::read_at(fd.as_fd(), std::ffi::OsStr::new(name), MAX_POINTER) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(io::ErrorKind::NotFound.into()),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Follows a `.git` file (`gitdir: <path>`) to the admin dir and from there
/// (`commondir`) to the common repository.
fn locate_gitfile(worktree: &Path, dotgit: &Path) -> Location {
    let text = match read_pointer(worktree, ".git") {
        Ok(t) => t,
        Err(e) => {
            return Location::Broken {
                why: format!("cannot read {}: {e}", dotgit.display()),
            }
        }
    };
    let Some(target) = parse_gitfile(&text) else {
        return Location::Broken {
            why: format!("{} does not say `gitdir: <path>`", dotgit.display()),
        };
    };
    let gitdir = worktree.join(std::ffi::OsStr::from_bytes(target));
    if !gitdir.is_dir() {
        return Location::Broken {
            why: format!(
                "{} points to {}, which does not exist",
                dotgit.display(),
                gitdir.display()
            ),
        };
    }
    let common = match read_pointer(&gitdir, "commondir") {
        // A gitdir without `commondir` is a repository of its own (a
        // submodule or `--separate-git-dir` clone), not a linked worktree.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Location::Main { common: gitdir },
        Err(e) => {
            return Location::Broken {
                why: format!("cannot read {}/commondir: {e}", gitdir.display()),
            }
        }
        Ok(t) => gitdir.join(std::ffi::OsStr::from_bytes(trim_line(&t))),
    };
    if !common.join("HEAD").is_file() {
        return Location::Broken {
            why: format!(
                "the repository {} of this worktree no longer exists",
                common.display()
            ),
        };
    }
    let name = gitdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Location::Linked {
        gitdir,
        common: normalize(&common),
        name,
    }
}

/// The target of a `.git` file, if it has the one form git writes.
fn parse_gitfile(text: &[u8]) -> Option<&[u8]> {
    let target = text.strip_prefix(b"gitdir:")?.trim_ascii();
    (!target.is_empty()).then_some(target)
}

/// Pure: a pointer file's content without its line end.
fn trim_line(bytes: &[u8]) -> &[u8] {
    let mut b = bytes;
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitfile_forms() {
        assert_eq!(
            parse_gitfile(b"gitdir: /r/.git/worktrees/a\n"),
            Some(&b"/r/.git/worktrees/a"[..])
        );
        assert_eq!(
            parse_gitfile(b"gitdir: ../.git/worktrees/a"),
            Some(&b"../.git/worktrees/a"[..])
        );
        assert_eq!(parse_gitfile(b"gitdir:   \n"), None);
        assert_eq!(parse_gitfile(b"ref: refs/heads/main\n"), None);
    }
}
